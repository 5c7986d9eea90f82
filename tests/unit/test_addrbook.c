/*
 * test_addrbook.c - the address book, sans-io with a fake clock, and its
 * persistence through a real database lane.
 *
 * What is checked: refusals (no id, our own ids and endpoints, invalid,
 * port 0, unroutable when strict, banned); one record per id, a known id keeps its address,
 * an old record untouched by gossip, new records gaining at most 4 buckets;
 * masked groups (many addresses of one /16 told by one source share one
 * new bucket, so they hold at most 64 slots: tendermint's unmasked groups
 * gave each its own); the spread of one source over at most 32 new buckets
 * and of many sources over many; a full bucket expiring a bad entry, else
 * the one tried longest ago; promotion to old, and a full old bucket's
 * oldest entry going back to a new bucket (still in the book); mark_bad
 * and the bounded ban list; removal; pick's old/new proportions over many
 * draws, exclusion never returned and no spin when all is excluded;
 * selection sizes and distinctness; selection_with_bias proportions and
 * ending with few old entries; dial backoff and giving up; every is_bad
 * rule; a random run whose hook reports, replayed into a shadow map, match
 * the book; and a book written through a threaded runtime's database lane
 * to a file, loaded by a new runtime into an equal book (records, key,
 * buckets), with a corrupt row dropped and deleted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "apps/peer/addrbook.h"
#include "apps/peer/addrbook_store.h"
#include "db/db.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/rt.h"

#define T0  1700000000000LL /* a wall-clock ms */
#define MIN (60 * 1000LL)
#define DAY (24 * 60 * MIN)

/* A routable IPv4 address a.b.c.d:port with id number k. */
static wb_netaddr_t A(uint32_t k, int a, int b, int c, int d)
{
    wb_netaddr_t x;
    memset(&x, 0, sizeof(x));
    x.has_id = 1;
    x.id[0] = 0xab;
    x.id[28] = (uint8_t)(k >> 24);
    x.id[29] = (uint8_t)(k >> 16);
    x.id[30] = (uint8_t)(k >> 8);
    x.id[31] = (uint8_t)k;
    x.family = 4;
    x.ip[0] = (uint8_t)a;
    x.ip[1] = (uint8_t)b;
    x.ip[2] = (uint8_t)c;
    x.ip[3] = (uint8_t)d;
    x.port = 26656;
    return x;
}

/* Address number k spread over many /16 groups (first octet 20..119). */
static wb_netaddr_t spread(uint32_t k)
{
    return A(k, 20 + (int)(k % 100), (int)((k / 100) % 256), (int)(k % 7), 1 + (int)(k % 200));
}

static wb_addrbook_t *book(uint64_t seed, int strict)
{
    wb_addrbook_config_t cfg;
    wb_addrbook_t *b;
    wb_addrbook_config_init(&cfg);
    cfg.seed = seed;
    cfg.strict = strict;
    assert_int_equal(wb_addrbook_new(&cfg, &b), 0);
    return b;
}

static void check_counts(const wb_addrbook_t *b)
{
    assert_int_equal(wb_addrbook_n_new(b) + wb_addrbook_n_old(b), wb_addrbook_size(b));
}

/* ---- adding ----------------------------------------------------------------- */

static void test_add_refusals(void **state)
{
    wb_addrbook_t *b = book(1, 1);
    wb_netaddr_t src = A(999, 9, 9, 9, 9), a = A(1, 8, 8, 8, 8);
    assert_int_equal(wb_addrbook_add(b, &a, &src, T0), 1);
    assert_true(wb_addrbook_has(b, a.id));

    wb_netaddr_t x = A(2, 8, 8, 8, 9);
    x.has_id = 0;
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), WB_EINVAL);
    x = A(3, 0, 0, 0, 0);
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), WB_EINVAL);
    x = A(4, 255, 255, 255, 255);
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), WB_EINVAL);
    x = A(5, 8, 8, 8, 10);
    x.port = 0;
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), WB_EINVAL);
    x = A(6, 10, 0, 0, 1); /* RFC1918: refused when strict */
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), WB_EINVAL);
    x = A(7, 127, 0, 0, 1);
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), WB_EINVAL);
    /* Our own id: refused, and adding it as ours removes a record. */
    x = A(8, 8, 8, 8, 11);
    assert_int_equal(wb_addrbook_add_own(b, x.id), 0);
    assert_true(wb_addrbook_is_own(b, x.id));
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), WB_EINVAL);
    assert_int_equal(wb_addrbook_add_own(b, a.id), 0);
    assert_false(wb_addrbook_has(b, a.id));
    assert_int_equal(wb_addrbook_size(b), 0);
    /* Our own endpoint, under any id: refused, and records there removed. */
    wb_netaddr_t me = A(20, 8, 8, 4, 4), other = A(21, 8, 8, 4, 5);
    assert_int_equal(wb_addrbook_add(b, &me, &src, T0), 1);
    assert_int_equal(wb_addrbook_add(b, &other, &src, T0), 1);
    wb_netaddr_t me2 = me;
    me2.has_id = 0;
    assert_int_equal(wb_addrbook_add_own_addr(b, &me2), 0);
    assert_true(wb_addrbook_is_own_addr(b, &me));
    assert_false(wb_addrbook_has(b, me.id));
    assert_true(wb_addrbook_has(b, other.id));
    wb_netaddr_t fake = A(22, 8, 8, 4, 4);
    assert_int_equal(wb_addrbook_add(b, &fake, &src, T0), WB_EINVAL);
    fake.port = 1;
    assert_int_equal(wb_addrbook_add(b, &fake, &src, T0), 1);
    wb_addrbook_free(b);

    /* Loose (a test network on loopback): local addresses are fine. */
    b = book(1, 0);
    x = A(6, 10, 0, 0, 1);
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), 1);
    x = A(7, 127, 0, 0, 1);
    assert_int_equal(wb_addrbook_add(b, &x, &x, T0), 1);
    x = A(3, 0, 0, 0, 0);
    assert_int_equal(wb_addrbook_add(b, &x, &src, T0), WB_EINVAL);
    assert_int_equal(wb_addrbook_size(b), 2);
    wb_addrbook_free(b);
}

static void test_duplicates(void **state)
{
    wb_addrbook_t *b = book(2, 1);
    wb_netaddr_t a = A(1, 8, 8, 8, 8), src = A(999, 9, 9, 9, 9);
    assert_int_equal(wb_addrbook_add(b, &a, &src, T0), 1);
    /* Told again by many sources: one record, at most 4 buckets. */
    for (uint32_t i = 0; i < 2000; i++) {
        wb_netaddr_t s = spread(100000 + i);
        assert_int_equal(wb_addrbook_add(b, &a, &s, T0 + i), 0);
    }
    wb_addrbook_rec_t r;
    assert_int_equal(wb_addrbook_lookup(b, a.id, &r), 0);
    assert_int_equal(wb_addrbook_size(b), 1);
    assert_int_equal(r.nbuckets, WB_ADDRBOOK_MAX_NEW_PER_ADDR);
    for (int i = 0; i < r.nbuckets; i++)
        for (int j = 0; j < i; j++)
            assert_int_not_equal(r.buckets[i], r.buckets[j]);
    assert_int_equal(r.last_seen, T0 + 1999);
    /* Same id at another IP: the recorded address stays (tendermint#1581). */
    wb_netaddr_t moved = a;
    moved.ip[3] = 99;
    assert_int_equal(wb_addrbook_add(b, &moved, &src, T0), 0);
    assert_int_equal(wb_addrbook_lookup(b, a.id, &r), 0);
    assert_true(wb_netaddr_equal(&r.addr, &a));
    /* An old record is left as it is. */
    assert_int_equal(wb_addrbook_mark_good(b, a.id, T0 + 5000), 0);
    wb_addrbook_rec_t before, after;
    assert_int_equal(wb_addrbook_lookup(b, a.id, &before), 0);
    assert_int_equal(before.type, WB_ADDRBOOK_OLD);
    assert_int_equal(wb_addrbook_add(b, &a, &src, T0 + 9000), 0);
    assert_int_equal(wb_addrbook_lookup(b, a.id, &after), 0);
    assert_memory_equal(&before, &after, sizeof(before));
    check_counts(b);
    wb_addrbook_free(b);
}

/* The first new bucket of a's record. */
static int bucket_of(wb_addrbook_t *b, const wb_netaddr_t *a)
{
    wb_addrbook_rec_t r;
    if (wb_addrbook_lookup(b, a->id, &r) != 0)
        return -1;
    return r.buckets[0];
}

static void test_group_masking(void **state)
{
    wb_addrbook_t *b = book(3, 1);
    wb_netaddr_t src = A(999, 9, 9, 9, 9);
    /* Two addresses of one /16, one source: one group, one bucket. */
    wb_netaddr_t x = A(1, 50, 60, 1, 2), y = A(2, 50, 60, 200, 7);
    assert_int_equal(wb_addrbook_new_bucket(b, &x, &src), wb_addrbook_new_bucket(b, &y, &src));
    assert_int_equal(wb_addrbook_old_bucket(b, &x), wb_addrbook_old_bucket(b, &x));
    /* 1000 addresses of that /16 from that source fill one bucket and no
     * more: an unmasked group would have let them take 1000 slots. */
    for (uint32_t i = 0; i < 1000; i++) {
        wb_netaddr_t a = A(10 + i, 50, 60, (int)(i / 250), 1 + (int)(i % 250));
        assert_true(wb_addrbook_add(b, &a, &src, T0) >= 0);
    }
    assert_int_equal(wb_addrbook_size(b), WB_ADDRBOOK_BUCKET_SIZE);
    /* Their old buckets: at most 4 for the group. */
    int seen[WB_ADDRBOOK_OLD_BUCKETS] = {0}, distinct = 0;
    for (uint32_t i = 0; i < 1000; i++) {
        wb_netaddr_t a = A(10 + i, 50, 60, (int)(i / 250), 1 + (int)(i % 250));
        uint32_t k = wb_addrbook_old_bucket(b, &a);
        assert_true(k < WB_ADDRBOOK_OLD_BUCKETS);
        if (!seen[k]++)
            distinct++;
    }
    assert_true(distinct >= 2 && distinct <= WB_ADDRBOOK_OLD_BUCKETS_PER_GROUP);
    check_counts(b);
    wb_addrbook_free(b);
}

static void test_bucket_spread(void **state)
{
    wb_addrbook_t *b = book(4, 1);
    /* One source, addresses from many groups: at most 32 new buckets. */
    wb_netaddr_t src = A(999, 9, 9, 9, 9);
    int seen[WB_ADDRBOOK_NEW_BUCKETS] = {0}, distinct = 0;
    for (uint32_t i = 0; i < 3000; i++) {
        wb_netaddr_t a = spread(i);
        uint32_t k = wb_addrbook_new_bucket(b, &a, &src);
        if (!seen[k]++)
            distinct++;
    }
    assert_true(distinct > 20 && distinct <= WB_ADDRBOOK_NEW_BUCKETS_PER_GROUP);
    /* Many sources (distinct groups): spread over most new buckets. */
    memset(seen, 0, sizeof(seen));
    distinct = 0;
    for (uint32_t i = 0; i < 3000; i++) {
        wb_netaddr_t a = spread(i), s = spread(50000 + i * 37);
        int k = (int)wb_addrbook_new_bucket(b, &a, &s);
        assert_true(wb_addrbook_add(b, &a, &s, T0) >= 0);
        if (!seen[k]++)
            distinct++;
    }
    assert_true(distinct > 200);
    assert_true(wb_addrbook_size(b) > 2500);
    assert_false(wb_addrbook_need_more(b));
    /* Every record sits in the bucket the hash gives it. */
    for (uint32_t i = 0; i < 3000; i++) {
        wb_netaddr_t a = spread(i), s = spread(50000 + i * 37);
        int k = bucket_of(b, &a);
        if (k >= 0)
            assert_int_equal(k, wb_addrbook_new_bucket(b, &a, &s));
    }
    check_counts(b);
    wb_addrbook_free(b);
}

/* 65 addresses sharing one new bucket (same /16, same source). */
static void fill_one_bucket(wb_addrbook_t *b, wb_netaddr_t *out, int n, const wb_netaddr_t *src)
{
    for (int i = 0; i < n; i++)
        out[i] = A((uint32_t)(100 + i), 70, 80, 1, 1 + i);
}

static void test_expire_full_bucket(void **state)
{
    wb_addrbook_t *b = book(5, 1);
    wb_netaddr_t src = A(999, 9, 9, 9, 9), a[66];
    fill_one_bucket(b, a, 66, &src);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(wb_addrbook_add(b, &a[i], &src, T0), 1);
        /* All tried, at different times, more than a minute ago. */
        assert_int_equal(wb_addrbook_mark_attempt(b, a[i].id, T0 + 1000 + (i == 10 ? -500 : i)), 0);
    }
    /* Entry 20 is bad: 3 failures, never a success. */
    wb_addrbook_mark_attempt(b, a[20].id, T0 + 2000);
    wb_addrbook_mark_attempt(b, a[20].id, T0 + 2000);
    int64_t now = T0 + 10 * MIN;
    assert_int_equal(wb_addrbook_add(b, &a[64], &src, now), 1);
    assert_false(wb_addrbook_has(b, a[20].id)); /* the bad one went */
    assert_true(wb_addrbook_has(b, a[10].id));
    assert_int_equal(wb_addrbook_size(b), 64);
    /* Never tried counts as tried longest ago: try the newcomer. */
    assert_int_equal(wb_addrbook_mark_attempt(b, a[64].id, now), 0);
    /* No bad entry left: the one tried longest ago (10) goes. */
    assert_int_equal(wb_addrbook_add(b, &a[65], &src, now), 1);
    assert_false(wb_addrbook_has(b, a[10].id));
    assert_true(wb_addrbook_has(b, a[65].id));
    assert_int_equal(wb_addrbook_size(b), 64);
    check_counts(b);
    wb_addrbook_free(b);
}

static void test_promote_and_demote(void **state)
{
    wb_addrbook_t *b = book(6, 1);
    /* 65 addresses of one old bucket (one /16; sources from many groups so
     * that their new buckets do not overflow). */
    wb_netaddr_t probe = A(0, 60, 70, 0, 1);
    (void)probe;
    wb_netaddr_t a[65];
    int n = 0;
    uint32_t target = UINT32_MAX;
    for (uint32_t i = 0; n < 65 && i < 100000; i++) {
        wb_netaddr_t x = A(1000 + i, 60, 70, (int)(i / 250), 1 + (int)(i % 250));
        uint32_t k = wb_addrbook_old_bucket(b, &x);
        if (target == UINT32_MAX)
            target = k;
        if (k == target)
            a[n++] = x;
    }
    assert_int_equal(n, 65);
    for (int i = 0; i < 65; i++) {
        wb_netaddr_t s = spread(7000 + (uint32_t)i * 101);
        assert_int_equal(wb_addrbook_add(b, &a[i], &s, T0), 1);
    }
    assert_int_equal(wb_addrbook_size(b), 65);
    for (int i = 0; i < 64; i++)
        assert_int_equal(wb_addrbook_mark_good(b, a[i].id, T0 + 1000 + i), 0);
    assert_int_equal(wb_addrbook_n_old(b), 64);
    assert_int_equal(wb_addrbook_n_new(b), 1);
    wb_addrbook_rec_t r;
    assert_int_equal(wb_addrbook_lookup(b, a[5].id, &r), 0);
    assert_int_equal(r.type, WB_ADDRBOOK_OLD);
    assert_int_equal(r.nbuckets, 1);
    assert_int_equal(r.buckets[0], target);
    assert_int_equal(r.attempts, 0);
    assert_int_equal(r.last_success, T0 + 1005);
    /* The 65th promoted: the oldest (a[0]) goes back to a new bucket. */
    assert_int_equal(wb_addrbook_mark_good(b, a[64].id, T0 + 5000), 0);
    assert_int_equal(wb_addrbook_size(b), 65);
    assert_int_equal(wb_addrbook_n_old(b), 64);
    assert_int_equal(wb_addrbook_n_new(b), 1);
    assert_int_equal(wb_addrbook_lookup(b, a[0].id, &r), 0);
    assert_int_equal(r.type, WB_ADDRBOOK_NEW);
    assert_int_equal(r.nbuckets, 1);
    assert_int_equal(r.buckets[0], wb_addrbook_new_bucket(b, &r.addr, &r.src));
    assert_int_equal(wb_addrbook_lookup(b, a[64].id, &r), 0);
    assert_int_equal(r.type, WB_ADDRBOOK_OLD);
    /* The demoted one can be picked as new. */
    wb_addrbook_rec_t p;
    assert_int_equal(wb_addrbook_pick(b, 100, NULL, NULL, &p), 0);
    assert_memory_equal(p.addr.id, a[0].id, 32);
    /* mark_good on an old record only updates its times. */
    assert_int_equal(wb_addrbook_mark_good(b, a[3].id, T0 + 9000), 0);
    assert_int_equal(wb_addrbook_n_old(b), 64);
    uint8_t unknown[32] = {1};
    assert_int_equal(wb_addrbook_mark_good(b, unknown, T0), WB_ENOENT);
    assert_int_equal(wb_addrbook_mark_attempt(b, unknown, T0), WB_ENOENT);
    check_counts(b);
    wb_addrbook_free(b);
}

static void test_remove_and_ban(void **state)
{
    wb_addrbook_config_t cfg;
    wb_addrbook_t *b;
    wb_addrbook_config_init(&cfg);
    cfg.seed = 7;
    cfg.strict = 1;
    cfg.ban_ms = 3600 * 1000;
    cfg.max_bans = 4;
    assert_int_equal(wb_addrbook_new(&cfg, &b), 0);
    wb_netaddr_t src = A(999, 9, 9, 9, 9), a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = spread((uint32_t)i);
        assert_int_equal(wb_addrbook_add(b, &a[i], &src, T0), 1);
    }
    assert_int_equal(wb_addrbook_remove(b, a[0].id), 0);
    assert_false(wb_addrbook_has(b, a[0].id));
    assert_int_equal(wb_addrbook_remove(b, a[0].id), WB_ENOENT);
    assert_int_equal(wb_addrbook_add(b, &a[0], &src, T0), 1); /* not banned */

    assert_int_equal(wb_addrbook_mark_bad(b, a[1].id, T0), 0);
    assert_false(wb_addrbook_has(b, a[1].id));
    assert_true(wb_addrbook_is_banned(b, a[1].id, T0 + 1));
    assert_int_equal(wb_addrbook_add(b, &a[1], &src, T0 + 1000), WB_EINVAL);
    /* The ban ends. */
    assert_false(wb_addrbook_is_banned(b, a[1].id, T0 + 3600 * 1000));
    assert_int_equal(wb_addrbook_add(b, &a[1], &src, T0 + 3600 * 1000), 1);
    /* Bounded: the ban ending soonest is forgotten first. */
    for (int i = 2; i < 7; i++)
        assert_int_equal(wb_addrbook_mark_bad(b, a[i].id, T0 + i * 1000), 0);
    assert_false(wb_addrbook_is_banned(b, a[2].id, T0 + 7000));
    for (int i = 3; i < 7; i++)
        assert_true(wb_addrbook_is_banned(b, a[i].id, T0 + 7000));
    /* An unknown id can be banned too. */
    assert_int_equal(wb_addrbook_mark_bad(b, a[2].id, T0 + 8000), WB_ENOENT);
    assert_true(wb_addrbook_is_banned(b, a[2].id, T0 + 8001));
    assert_int_equal(wb_addrbook_size(b), 3);
    check_counts(b);
    wb_addrbook_free(b);
}

/* ---- choosing --------------------------------------------------------------- */

/* A book with n_new new and n_old old records over many groups. */
static wb_addrbook_t *mixed(uint64_t seed, int n_new, int n_old)
{
    wb_addrbook_t *b = book(seed, 1);
    int made = 0;
    for (uint32_t i = 0; made < n_new + n_old; i++) {
        wb_netaddr_t a = spread(i), s = spread(90000 + i * 13);
        if (wb_addrbook_add(b, &a, &s, T0) == 1)
            made++;
    }
    /* Promote n_old of them (old buckets have room for all here). */
    wb_addrbook_rec_t *all = calloc((size_t)made, sizeof(*all));
    size_t n = wb_addrbook_list(b, all, (size_t)made);
    for (size_t i = 0; i < n && (int)wb_addrbook_n_old(b) < n_old; i++)
        wb_addrbook_mark_good(b, all[i].addr.id, T0 + 1);
    free(all);
    assert_int_equal(wb_addrbook_n_old(b), n_old);
    assert_int_equal(wb_addrbook_n_new(b), n_new);
    return b;
}

static void test_pick_bias(void **state)
{
    wb_addrbook_t *b = mixed(8, 400, 100);
    struct {
        int bias;
        double want;
    } t[] = {{0, 0}, {100, 1}, {50, 2.0 / 3.0}, {30, 0}, {90, 0}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        double wn = 20.0 * t[i].bias, wo = 10.0 * (100 - t[i].bias); /* sqrt(400), sqrt(100) */
        double want = wn / (wn + wo);
        int draws = 20000, got_new = 0;
        for (int d = 0; d < draws; d++) {
            wb_addrbook_rec_t r;
            assert_int_equal(wb_addrbook_pick(b, t[i].bias, NULL, NULL, &r), 0);
            got_new += r.type == WB_ADDRBOOK_NEW;
        }
        double p = (double)got_new / draws;
        if (p - want > 0.02 || want - p > 0.02)
            print_error("bias %d: %.3f new, want %.3f\n", t[i].bias, p, want);
        assert_true(p - want <= 0.02 && want - p <= 0.02);
    }
    /* A kind with no records falls back to the other. */
    wb_addrbook_free(b);
    b = mixed(9, 50, 0);
    wb_addrbook_rec_t r;
    for (int d = 0; d < 100; d++) {
        assert_int_equal(wb_addrbook_pick(b, 0, NULL, NULL, &r), 0);
        assert_int_equal(r.type, WB_ADDRBOOK_NEW);
    }
    wb_addrbook_free(b);
    b = book(10, 1);
    assert_int_equal(wb_addrbook_pick(b, 50, NULL, NULL, &r), WB_ENOENT);
    wb_addrbook_free(b);
}

static int odd_id(void *arg, const wb_addrbook_rec_t *r)
{
    (*(int *)arg)++;
    return r->addr.id[31] & 1;
}

static int all_but(void *arg, const wb_addrbook_rec_t *r)
{
    return memcmp(r->addr.id, arg, 32) != 0;
}

static int all(void *arg, const wb_addrbook_rec_t *r)
{
    (*(int *)arg)++;
    return 1;
}

static void test_pick_exclusion(void **state)
{
    wb_addrbook_t *b = mixed(11, 300, 100);
    wb_addrbook_rec_t r;
    int calls = 0;
    for (int d = 0; d < 5000; d++) {
        assert_int_equal(wb_addrbook_pick(b, d % 101, odd_id, &calls, &r), 0);
        assert_int_equal(r.addr.id[31] & 1, 0);
    }
    /* Only one acceptable: found every time, by the scan when need be. */
    wb_addrbook_rec_t list[400];
    assert_int_equal(wb_addrbook_list(b, list, 400), 400);
    for (int k = 0; k < 400; k += 37) {
        for (int bias = 0; bias <= 100; bias += 50) {
            assert_int_equal(wb_addrbook_pick(b, bias, all_but, list[k].addr.id, &r), 0);
            assert_memory_equal(r.addr.id, list[k].addr.id, 32);
        }
    }
    /* Nothing acceptable: WB_ENOENT, after a bounded number of looks. */
    calls = 0;
    assert_int_equal(wb_addrbook_pick(b, 50, all, &calls, &r), WB_ENOENT);
    assert_true(calls <= 32 + 400);
    wb_addrbook_free(b);
}

static size_t expect_n(size_t size)
{
    size_t n = size < 32 ? size : 32;
    if (size * 23 / 100 > n)
        n = size * 23 / 100;
    return n > 250 ? 250 : n;
}

static void test_selection_sizes(void **state)
{
    static wb_netaddr_t out[300];
    size_t sizes[] = {0, 1, 10, 32, 33, 100, 139, 140, 200, 1000, 1087, 1088, 2000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        wb_addrbook_t *b = mixed(12 + i, (int)sizes[i], 0);
        size_t n = wb_addrbook_selection(b, NULL, NULL, out, 300);
        assert_int_equal(n, expect_n(sizes[i]));
        for (size_t x = 0; x < n; x++) {
            assert_true(wb_addrbook_has(b, out[x].id));
            for (size_t y = 0; y < x; y++)
                assert_false(wb_netaddr_equal(&out[x], &out[y]));
        }
        /* The caller's max caps it. */
        assert_int_equal(wb_addrbook_selection(b, NULL, NULL, out, 5), n < 5 ? n : 5);
        wb_addrbook_free(b);
    }
    /* Exclusion: never an excluded one. */
    wb_addrbook_t *b = mixed(40, 200, 0);
    int calls = 0;
    size_t n = wb_addrbook_selection(b, odd_id, &calls, out, 300);
    assert_true(n > 0 && n <= expect_n(200));
    for (size_t x = 0; x < n; x++)
        assert_int_equal(out[x].id[31] & 1, 0);
    wb_addrbook_free(b);
}

static void count_kinds(wb_addrbook_t *b, const wb_netaddr_t *out, size_t n, size_t *nn, size_t *no)
{
    *nn = *no = 0;
    for (size_t i = 0; i < n; i++) {
        wb_addrbook_rec_t r;
        assert_int_equal(wb_addrbook_lookup(b, out[i].id, &r), 0);
        if (r.type == WB_ADDRBOOK_NEW)
            (*nn)++;
        else
            (*no)++;
        for (size_t j = 0; j < i; j++)
            assert_false(wb_netaddr_equal(&out[i], &out[j]));
    }
}

static void test_selection_with_bias(void **state)
{
    static wb_netaddr_t out[300];
    size_t nn, no, n;
    wb_addrbook_t *b = mixed(41, 500, 500);
    n = wb_addrbook_selection_with_bias(b, 30, NULL, NULL, out, 300);
    assert_int_equal(n, 230);
    count_kinds(b, out, n, &nn, &no);
    assert_int_equal(nn, 69);
    assert_int_equal(no, 161);
    n = wb_addrbook_selection_with_bias(b, 100, NULL, NULL, out, 300);
    count_kinds(b, out, n, &nn, &no);
    assert_int_equal(nn, 230);
    /* Shuffled: the new ones are not all in front. */
    size_t front_new = 0;
    n = wb_addrbook_selection_with_bias(b, 50, NULL, NULL, out, 300);
    count_kinds(b, out, 115, &front_new, &no);
    assert_true(front_new > 30 && front_new < 85);
    wb_addrbook_free(b);

    /* Few old records: ends at once, the new ones make up the rest. */
    b = mixed(42, 300, 2);
    n = wb_addrbook_selection_with_bias(b, 0, NULL, NULL, out, 300);
    assert_int_equal(n, expect_n(302));
    count_kinds(b, out, n, &nn, &no);
    assert_int_equal(no, 2);
    assert_int_equal(nn, n - 2);
    wb_addrbook_free(b);
    /* No new records and bias 100. */
    b = mixed(43, 0, 40);
    n = wb_addrbook_selection_with_bias(b, 100, NULL, NULL, out, 300);
    assert_int_equal(n, 32);
    count_kinds(b, out, n, &nn, &no);
    assert_int_equal(no, 32);
    wb_addrbook_free(b);
    /* Everything excluded: 0, no spin. */
    b = mixed(44, 50, 50);
    int calls = 0;
    assert_int_equal(wb_addrbook_selection_with_bias(b, 30, all, &calls, out, 300), 0);
    assert_int_equal(calls, 100);
    wb_addrbook_free(b);
}

/* ---- time ------------------------------------------------------------------- */

static void test_dial_backoff(void **state)
{
    wb_addrbook_t *b = book(50, 1);
    wb_netaddr_t a = spread(1), src = spread(2);
    wb_addrbook_rec_t r;
    assert_int_equal(wb_addrbook_add(b, &a, &src, T0), 1);
    assert_int_equal(wb_addrbook_lookup(b, a.id, &r), 0);
    assert_int_equal(wb_addrbook_next_dial(b, &r), 0);
    int64_t t = T0;
    for (uint32_t n = 1; n <= WB_ADDRBOOK_MAX_ATTEMPTS; n++) {
        t += 1000;
        assert_int_equal(wb_addrbook_mark_attempt(b, a.id, t), 0);
        assert_int_equal(wb_addrbook_lookup(b, a.id, &r), 0);
        assert_int_equal(r.attempts, n);
        int64_t next = wb_addrbook_next_dial(b, &r);
        assert_true(next >= t + (1000LL << n));
        assert_true(next < t + (1000LL << n) + 1000);
        /* Stable: the same answer when asked again. */
        assert_int_equal(wb_addrbook_next_dial(b, &r), next);
    }
    /* One more: given up, removed, banned. */
    assert_int_equal(wb_addrbook_mark_attempt(b, a.id, t + 1), 1);
    assert_false(wb_addrbook_has(b, a.id));
    assert_true(wb_addrbook_is_banned(b, a.id, t + 2));
    /* A success clears the count. */
    wb_netaddr_t c = spread(3);
    assert_int_equal(wb_addrbook_add(b, &c, &src, T0), 1);
    wb_addrbook_mark_attempt(b, c.id, T0 + 1);
    wb_addrbook_mark_attempt(b, c.id, T0 + 2);
    wb_addrbook_mark_good(b, c.id, T0 + 3);
    assert_int_equal(wb_addrbook_lookup(b, c.id, &r), 0);
    assert_int_equal(r.attempts, 0);
    assert_int_equal(wb_addrbook_next_dial(b, &r), 0);
    wb_addrbook_free(b);
}

static void test_is_bad(void **state)
{
    int64_t now = T0 + 30 * DAY;
    wb_addrbook_rec_t r;
    memset(&r, 0, sizeof(r));
    r.type = WB_ADDRBOOK_NEW;
    r.last_seen = now - DAY;
    assert_false(wb_addrbook_rec_is_bad(&r, now)); /* fresh, untried */
    /* Claims a future time. */
    r.last_seen = now + 11 * MIN;
    assert_true(wb_addrbook_rec_is_bad(&r, now));
    r.last_seen = now + 9 * MIN;
    assert_false(wb_addrbook_rec_is_bad(&r, now));
    /* Not seen for 7 days. */
    r.last_seen = now - 7 * DAY - 1;
    assert_true(wb_addrbook_rec_is_bad(&r, now));
    r.last_seen = now - 7 * DAY + 1;
    assert_false(wb_addrbook_rec_is_bad(&r, now));
    /* ... but tried within the last minute: not bad. */
    r.last_seen = now - 8 * DAY;
    r.last_attempt = now - 30 * 1000;
    assert_false(wb_addrbook_rec_is_bad(&r, now));
    r.last_attempt = now - 2 * MIN;
    assert_true(wb_addrbook_rec_is_bad(&r, now));
    /* 3 failures, never a success. */
    r.last_seen = now - DAY;
    r.attempts = 2;
    assert_false(wb_addrbook_rec_is_bad(&r, now));
    r.attempts = 3;
    assert_true(wb_addrbook_rec_is_bad(&r, now));
    r.last_attempt = now - 10 * 1000;
    assert_false(wb_addrbook_rec_is_bad(&r, now));
    r.last_attempt = now - 2 * MIN;
    /* Succeeded once: 3..9 failures are not enough ... */
    r.last_success = now - 20 * DAY;
    r.attempts = 9;
    assert_false(wb_addrbook_rec_is_bad(&r, now));
    /* ... 10 with no success in 7 days is. */
    r.attempts = 10;
    assert_true(wb_addrbook_rec_is_bad(&r, now));
    r.last_success = now - 6 * DAY;
    assert_false(wb_addrbook_rec_is_bad(&r, now));
    /* Old records are never bad. */
    r.last_success = 0;
    r.attempts = 50;
    r.last_seen = now - 100 * DAY;
    r.type = WB_ADDRBOOK_OLD;
    assert_false(wb_addrbook_rec_is_bad(&r, now));
}

/* ---- the hook --------------------------------------------------------------- */

typedef struct {
    wb_addrbook_rec_t *r;
    size_t n, cap;
    size_t calls, removes;
} shadow_t;

static long shadow_find(shadow_t *s, const uint8_t id[32])
{
    for (size_t i = 0; i < s->n; i++)
        if (memcmp(s->r[i].addr.id, id, 32) == 0)
            return (long)i;
    return -1;
}

static void shadow_hook(void *arg, const wb_addrbook_rec_t *r, int removed)
{
    shadow_t *s = arg;
    long i = shadow_find(s, r->addr.id);
    s->calls++;
    if (removed) {
        s->removes++;
        if (i >= 0)
            s->r[i] = s->r[--s->n];
        return;
    }
    if (i < 0) {
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 256;
            s->r = realloc(s->r, s->cap * sizeof(*s->r));
            assert_non_null(s->r);
        }
        i = (long)s->n++;
    }
    s->r[i] = *r;
}

/* The shadow equals the book, record for record. */
static void shadow_check(shadow_t *s, wb_addrbook_t *b)
{
    assert_int_equal(s->n, wb_addrbook_size(b));
    for (size_t i = 0; i < s->n; i++) {
        wb_addrbook_rec_t r;
        assert_int_equal(wb_addrbook_lookup(b, s->r[i].addr.id, &r), 0);
        assert_memory_equal(&r, &s->r[i], sizeof(r));
    }
}

static void test_hook_random_run(void **state)
{
    shadow_t s = {0};
    wb_addrbook_config_t cfg;
    wb_addrbook_t *b;
    wb_addrbook_config_init(&cfg);
    cfg.seed = 60;
    cfg.strict = 1;
    cfg.changed = shadow_hook;
    cfg.changed_arg = &s;
    assert_int_equal(wb_addrbook_new(&cfg, &b), 0);
    uint64_t x = 12345;
    int64_t now = T0;
    for (int step = 0; step < 60000; step++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(x >> 33), op = r % 100;
        /* A small world (few groups) so buckets fill and evict. */
        uint32_t k = (r >> 8) % 6000;
        wb_netaddr_t a = A(k, 30 + (int)(k % 3), (int)(k % 5), 1, 1 + (int)(k % 250));
        wb_netaddr_t src = spread((r >> 4) % 40);
        now += 100 + (r % 5000);
        if (op < 60)
            wb_addrbook_add(b, &a, &src, now);
        else if (op < 75)
            wb_addrbook_mark_attempt(b, a.id, now);
        else if (op < 92)
            wb_addrbook_mark_good(b, a.id, now);
        else if (op < 95)
            wb_addrbook_mark_bad(b, a.id, now);
        else if (op < 98)
            wb_addrbook_remove(b, a.id);
        else {
            wb_addrbook_rec_t p;
            wb_addrbook_pick(b, (int)(r % 101), NULL, NULL, &p);
        }
        if (step % 5000 == 0) {
            check_counts(b);
            shadow_check(&s, b);
        }
    }
    check_counts(b);
    shadow_check(&s, b);
    assert_true(wb_addrbook_n_old(b) > 0 && wb_addrbook_n_new(b) > 0);
    assert_true(s.removes > 0);
    wb_addrbook_free(b);
    free(s.r);
}

/* ---- persistence through a real database lane ------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wb_event_t **res;
    size_t n, cap;
} coll_t;

static void coll_handle(wb_actor_t *self, wb_event_t *ev)
{
    coll_t *c = wb_actor_state(self);
    if (ev->type != WB_EV_DB_RESULT) {
        wb_event_free(ev);
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->res = realloc(c->res, c->cap * sizeof(*c->res));
    }
    c->res[c->n++] = ev;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static const wb_actor_def_t coll_def = {"collector", coll_handle, NULL};

typedef struct {
    wb_rt_t *rt;
    wb_db_config_t cfg;
    uint64_t coll;
    coll_t c;
    size_t sent, taken;
} h_t;

static void h_start(h_t *h, const char *path)
{
    wb_rt_config_t rc;
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->c.mu, NULL);
    pthread_cond_init(&h->c.cv, NULL);
    wb_rt_config_init(&rc);
    rc.inbox_limit = 65536;
    assert_int_equal(wb_rt_new(&h->rt, &rc), 0);
    wb_addrbook_store_config(&h->cfg, path);
    assert_int_equal(wb_db_attach(h->rt, &h->cfg), 0);
    assert_int_equal(wb_actor_spawn(h->rt, NULL, &coll_def, &h->c, &h->coll), 0);
    assert_int_equal(wb_rt_start(h->rt), 0);
}

static void h_stop(h_t *h)
{
    wb_rt_free(h->rt);
    for (size_t i = 0; i < h->c.n; i++)
        wb_event_free(h->c.res[i]);
    free(h->c.res);
    pthread_mutex_destroy(&h->c.mu);
    pthread_cond_destroy(&h->c.cv);
}

static void h_send(h_t *h, wb_event_t *req)
{
    assert_non_null(req);
    wb_event_route(req, WB_LANE_ACTOR, h->coll, WB_LANE_DB, 0);
    req->cookie = ++h->sent;
    assert_int_equal(wb_rt_send(h->rt, req), 0);
}

/* Wait for every answer so far; each must be a success. Returns the last. */
static wb_event_t *h_drain(h_t *h)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&h->c.mu);
    while (h->c.n < h->sent)
        if (pthread_cond_timedwait(&h->c.cv, &h->c.mu, &dl) == ETIMEDOUT)
            break;
    size_t n = h->c.n;
    pthread_mutex_unlock(&h->c.mu);
    assert_int_equal(n, h->sent);
    wb_event_t *last = NULL;
    for (; h->taken < n; h->taken++) {
        last = h->c.res[h->taken];
        if (last->status != 0)
            print_error("db: %s: %s\n", wb_err_name(last->status), wb_db_result_errmsg(last));
        assert_int_equal(last->status, 0);
        assert_int_equal(last->cookie, h->taken + 1);
    }
    return last;
}

/* The book's hook: write each change through the lane. */
static void write_through(void *arg, const wb_addrbook_rec_t *r, int removed)
{
    h_send(arg, wb_addrbook_store_change(r, removed, 0));
}

static void count_hook(void *arg, const wb_addrbook_rec_t *r, int removed)
{
    (*(int *)arg)++;
}

/* Load a book from the lane: key, then pages. */
static void load(h_t *h, wb_addrbook_t *b, size_t *pages)
{
    h_send(h, wb_addrbook_store_key_request());
    assert_int_equal(wb_addrbook_store_take_key(b, h_drain(h)), 0);
    int64_t last = 0;
    *pages = 0;
    for (;;) {
        size_t nrows, kept;
        h_send(h, wb_addrbook_store_page_request(last));
        assert_int_equal(wb_addrbook_store_take_page(b, h_drain(h), &last, &nrows, &kept), 0);
        (*pages)++;
        if (nrows < WB_ADDRBOOK_LOAD_PAGE)
            break;
    }
}

static void test_persist_roundtrip(void **state)
{
    char dir[] = "/tmp/wb_test_addrbook_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/addrbook.sqlite", dir);

    /* First run: a new book, its key stored, changes written through. */
    h_t h;
    h_start(&h, path);
    wb_addrbook_t *b = book(70, 1);
    h_send(&h, wb_addrbook_store_key_request());
    assert_int_equal(wb_addrbook_store_take_key(b, h_drain(&h)), WB_ENOENT);
    uint8_t key[32];
    wb_addrbook_key(b, key);
    h_send(&h, wb_addrbook_store_put_key(key, 0));
    wb_addrbook_set_hook(b, write_through, &h);
    int64_t now = T0;
    for (uint32_t i = 0; i < 2500; i++) {
        wb_netaddr_t a = spread(i), s = spread(80000 + i % 300);
        wb_addrbook_add(b, &a, &s, now += 10);
    }
    /* Some IPv6 too. */
    for (uint32_t i = 0; i < 50; i++) {
        wb_netaddr_t a = spread(20000 + i), s = spread(7);
        a.family = 6;
        memset(a.ip, 0, 16);
        a.ip[0] = 0x2a;
        a.ip[1] = 0x01;
        a.ip[2] = (uint8_t)i;
        a.ip[15] = 1;
        wb_addrbook_add(b, &a, &s, now += 10);
    }
    /* Sources without an id, and an unknown one. */
    for (uint32_t i = 0; i < 20; i++) {
        wb_netaddr_t a = spread(30000 + i), s = spread(31000 + i);
        s.has_id = 0;
        if (i % 2)
            memset(&s, 0, sizeof(s));
        assert_int_equal(wb_addrbook_add(b, &a, &s, now += 10), 1);
    }
    wb_addrbook_rec_t *list = calloc(4000, sizeof(*list));
    size_t n = wb_addrbook_list(b, list, 4000);
    for (size_t i = 0; i < n; i += 3)
        wb_addrbook_mark_attempt(b, list[i].addr.id, now += 10);
    for (size_t i = 0; i < n; i += 7)
        wb_addrbook_mark_good(b, list[i].addr.id, now += 10);
    for (size_t i = 1; i < n; i += 50)
        wb_addrbook_mark_bad(b, list[i].addr.id, now += 10);
    for (size_t i = 2; i < n; i += 60)
        wb_addrbook_remove(b, list[i].addr.id);
    h_drain(&h);
    assert_true(wb_addrbook_size(b) > WB_ADDRBOOK_LOAD_PAGE * 2);
    assert_true(wb_addrbook_n_old(b) > 100);
    /* A corrupt row: dropped at load, and its row deleted. */
    uint8_t bad_id[32];
    memset(bad_id, 0xee, 32);
    wb_value_t bv[] = {wb_val_blob(bad_id, 32)};
    h_send(&h, wb_db_request_sql("INSERT INTO known_addr VALUES (?1, 'not an address', '', 0, 0,"
                                 " 0, 0, 1, '3')",
                                 bv, 1, 0));
    h_drain(&h);
    h_stop(&h);

    /* Second run: a book with another seed (another key) loads it back. */
    h_start(&h, path);
    wb_addrbook_t *b2 = book(71, 1);
    uint8_t key2[32];
    wb_addrbook_key(b2, key2);
    assert_memory_not_equal(key, key2, 32);
    wb_addrbook_set_hook(b2, write_through, &h);
    size_t pages;
    size_t sent_before = h.sent;
    load(&h, b2, &pages);
    assert_true(pages >= 3);
    wb_addrbook_key(b2, key2);
    assert_memory_equal(key, key2, 32);
    /* Only the corrupt row was reported (removed): every stored bucket was
     * reused. */
    assert_int_equal(h.sent - sent_before, 1 + pages + 1); /* key, pages, one delete */
    h_drain(&h);
    assert_int_equal(wb_addrbook_size(b2), wb_addrbook_size(b));
    assert_int_equal(wb_addrbook_n_new(b2), wb_addrbook_n_new(b));
    assert_int_equal(wb_addrbook_n_old(b2), wb_addrbook_n_old(b));
    n = wb_addrbook_list(b, list, 4000);
    for (size_t i = 0; i < n; i++) {
        wb_addrbook_rec_t r;
        assert_int_equal(wb_addrbook_lookup(b2, list[i].addr.id, &r), 0);
        assert_memory_equal(&r, &list[i], sizeof(r));
    }
    assert_false(wb_addrbook_has(b2, bad_id));
    /* The corrupt row is gone from the file. */
    h_send(&h, wb_db_request_sql("SELECT count(*) FROM known_addr", NULL, 0, 0));
    wb_event_t *res = h_drain(&h);
    wb_value_t v;
    assert_int_equal(wb_db_result_value(res, 0, 0, &v), 0);
    assert_int_equal(v.u.i, (int64_t)wb_addrbook_size(b));
    h_stop(&h);

    /* Third: a book with another key than the rows' (the meta row lost):
     * old records' buckets no longer match and are placed afresh, and
     * reported so their rows are rewritten. */
    h_start(&h, path);
    wb_addrbook_t *b3 = book(72, 1);
    int reported = 0;
    wb_addrbook_set_hook(b3, count_hook, &reported);
    int64_t last = 0;
    for (;;) {
        size_t nrows, kept;
        h_send(&h, wb_addrbook_store_page_request(last));
        assert_int_equal(wb_addrbook_store_take_page(b3, h_drain(&h), &last, &nrows, &kept), 0);
        if (nrows < WB_ADDRBOOK_LOAD_PAGE)
            break;
    }
    assert_true(reported > 0);
    assert_true(wb_addrbook_size(b3) > 0);
    check_counts(b3);
    /* Every kept record sits where the new key puts old records. */
    n = wb_addrbook_list(b3, list, 4000);
    for (size_t i = 0; i < n; i++)
        if (list[i].type == WB_ADDRBOOK_OLD)
            assert_int_equal(list[i].buckets[0], wb_addrbook_old_bucket(b3, &list[i].addr));
    /* A key cannot be replaced under records. */
    assert_int_equal(wb_addrbook_set_key(b3, key), WB_ESTATE);
    h_stop(&h);

    free(list);
    wb_addrbook_free(b);
    wb_addrbook_free(b2);
    wb_addrbook_free(b3);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Request builders: a put and a delete build for any record (the round
 * trip reads what they write). */
static void test_store_rows(void **state)
{
    wb_addrbook_rec_t r;
    memset(&r, 0, sizeof(r));
    r.addr = spread(5);
    r.type = WB_ADDRBOOK_NEW;
    r.nbuckets = 3;
    r.buckets[0] = 255;
    r.buckets[1] = 0;
    r.buckets[2] = 17;
    wb_event_t *ev = wb_addrbook_store_put(&r, 0);
    assert_non_null(ev);
    wb_event_free(ev);
    ev = wb_addrbook_store_change(&r, 1, WB_DB_QUIET);
    assert_non_null(ev);
    wb_event_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_refusals),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_group_masking),
        cmocka_unit_test(test_bucket_spread),
        cmocka_unit_test(test_expire_full_bucket),
        cmocka_unit_test(test_promote_and_demote),
        cmocka_unit_test(test_remove_and_ban),
        cmocka_unit_test(test_pick_bias),
        cmocka_unit_test(test_pick_exclusion),
        cmocka_unit_test(test_selection_sizes),
        cmocka_unit_test(test_selection_with_bias),
        cmocka_unit_test(test_dial_backoff),
        cmocka_unit_test(test_is_bad),
        cmocka_unit_test(test_hook_random_run),
        cmocka_unit_test(test_store_rows),
        cmocka_unit_test(test_persist_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
