/*
 * test_mconn.c - the multiplexed connection (sockets/mconn.h) sans io: two
 * mconns back to back in memory, the write() output of one fed to the read()
 * of the other in chunks of seeded random sizes, the test playing the owner
 * (taking messages, calling wb_mconn_delivered, or holding them back).
 * Checked: random messages on several channels both ways reassemble exactly
 * and in order; max_message passes and one byte more fails; every protocol
 * violation fails once with a one-line reason and stays; a full send queue;
 * priority shares; decay; credit holds back only the slow channel; a message
 * larger than the window gets through; ping, pong, timeout, coalescing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/error.h"
#include "runtime/event.h"
#include "sockets/mconn.h"

/* ---- a seeded generator ---- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static size_t rnd_in(uint64_t *s, size_t lo, size_t hi)
{
    return lo + (size_t)(rnd(s) % (hi - lo + 1));
}

/* ---- one side: an mconn and its owner ---- */

enum { MAX_CH = 4, MAX_MSGS = 2048 };

typedef struct {
    uint8_t *data;
    size_t len;
} msg_t;

typedef struct {
    wb_mconn_t *m;
    size_t nch;
    uint8_t ids[MAX_CH];
    /* Sent (what we queued) and got (what we read), per channel index. */
    msg_t sent[MAX_CH][MAX_MSGS];
    size_t nsent[MAX_CH];
    msg_t got[MAX_CH][MAX_MSGS];
    size_t ngot[MAX_CH];
    int hold[MAX_CH];    /* the owner does not deliver on this channel */
    size_t held[MAX_CH]; /* messages read and not yet delivered */
    uint64_t rng;
} side_t;

static size_t chan_index(const side_t *s, uint8_t id)
{
    for (size_t i = 0; i < s->nch; i++)
        if (s->ids[i] == id)
            return i;
    fail_msg("no channel 0x%02x", id);
    return 0;
}

static side_t *side_new(const wb_mconn_config_t *cfg, const wb_mconn_chan_t *chans, size_t n,
                        uint64_t seed)
{
    side_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    assert_int_equal(wb_mconn_new(&s->m, cfg, chans, n, 0), 0);
    s->nch = n;
    for (size_t i = 0; i < n; i++)
        s->ids[i] = chans[i].id;
    s->rng = seed;
    return s;
}

static void side_free(side_t *s)
{
    for (size_t i = 0; i < MAX_CH; i++) {
        for (size_t k = 0; k < s->nsent[i]; k++)
            free(s->sent[i][k].data);
        for (size_t k = 0; k < s->ngot[i]; k++)
            free(s->got[i][k].data);
    }
    wb_mconn_free(s->m);
    free(s);
}

/* Queue a message of len bytes (random content) on channel index i. */
static int side_send(side_t *s, size_t i, size_t len)
{
    wb_event_t *ev = wb_event_new(0, len);
    assert_non_null(ev);
    for (size_t k = 0; k < len; k++)
        ((uint8_t *)ev->data)[k] = (uint8_t)rnd(&s->rng);
    uint8_t *copy = malloc(len + 1);
    memcpy(copy, ev->data, len);
    int rc = wb_mconn_send(s->m, s->ids[i], ev);
    if (rc != 0) {
        wb_event_free(ev);
        free(copy);
        return rc;
    }
    assert_true(s->nsent[i] < MAX_MSGS);
    s->sent[i][s->nsent[i]++] = (msg_t){copy, len};
    return 0;
}

/* Feed bytes to `to` in random chunks (1 byte to all of it); the owner takes
 * each message and delivers it unless its channel is held. Returns 0 or the
 * read's error. */
static int feed(side_t *to, const uint8_t *buf, size_t n)
{
    size_t off = 0;
    while (off < n) {
        size_t chunk = rnd(&to->rng) % 4 == 0 ? 1 : rnd_in(&to->rng, 1, n - off);
        if (chunk > n - off)
            chunk = n - off;
        size_t left = chunk;
        while (left > 0) {
            size_t used;
            uint8_t ch, *msg;
            size_t mlen;
            int rc = wb_mconn_read(to->m, buf + off, left, &used, &ch, &msg, &mlen);
            assert_true(used <= left);
            off += used;
            left -= used;
            if (rc < 0)
                return rc;
            if (rc == 0) {
                assert_int_equal(left, 0);
                break;
            }
            assert_int_equal(rc, 1);
            size_t i = chan_index(to, ch);
            assert_true(to->ngot[i] < MAX_MSGS);
            if (mlen == 0)
                assert_null(msg);
            to->got[i][to->ngot[i]++] = (msg_t){msg, mlen};
            if (to->hold[i])
                to->held[i]++;
            else
                wb_mconn_delivered(to->m, ch);
        }
    }
    return 0;
}

/* One write of random capacity from `from`, fed to `to`. Returns the bytes
 * moved, or an error. */
static long pump(side_t *from, side_t *to, size_t maxcap)
{
    static uint8_t buf[70000];
    size_t cap = rnd_in(&from->rng, WB_MCONN_MSG_HEADER + 1, maxcap);
    long n = wb_mconn_write(from->m, buf, cap);
    if (n <= 0)
        return n;
    assert_true((size_t)n <= cap);
    int rc = feed(to, buf, (size_t)n);
    return rc < 0 ? rc : n;
}

/* Pump both ways until neither side has anything to write. */
static void settle(side_t *a, side_t *b)
{
    for (int i = 0; i < 100000; i++) {
        if (!wb_mconn_want_write(a->m) && !wb_mconn_want_write(b->m))
            return;
        assert_true(pump(a, b, 4096) >= 0);
        assert_true(pump(b, a, 4096) >= 0);
    }
    fail_msg("did not settle");
}

static void deliver_held(side_t *s, size_t i)
{
    while (s->held[i] > 0) {
        wb_mconn_delivered(s->m, s->ids[i]);
        s->held[i]--;
    }
}

/* What `from` sent equals what `to` got, message by message. */
static void check_same(const side_t *from, const side_t *to)
{
    for (size_t i = 0; i < from->nch; i++) {
        assert_int_equal(to->ngot[i], from->nsent[i]);
        for (size_t k = 0; k < from->nsent[i]; k++) {
            assert_int_equal(to->got[i][k].len, from->sent[i][k].len);
            if (from->sent[i][k].len > 0)
                assert_memory_equal(to->got[i][k].data, from->sent[i][k].data,
                                    from->sent[i][k].len);
        }
    }
}

static wb_mconn_chan_stats_t stats(const wb_mconn_t *m, size_t i)
{
    wb_mconn_chan_stats_t st;
    assert_int_equal(wb_mconn_chan_stats(m, i, &st), 0);
    return st;
}

/* Everything one side writes now, written and dropped (e.g. its first
 * grants, when the test hand-crafts the peer's stream). */
static void drain(wb_mconn_t *m)
{
    uint8_t buf[4096];
    while (wb_mconn_write(m, buf, sizeof(buf)) > 0)
        ;
}

/* Feed all of buf in one call sequence; return the last code. */
static int feed_raw(wb_mconn_t *m, const uint8_t *buf, size_t n, size_t *nmsgs)
{
    size_t off = 0;
    *nmsgs = 0;
    while (off < n) {
        size_t used;
        uint8_t ch, *msg;
        size_t mlen;
        int rc = wb_mconn_read(m, buf + off, n - off, &used, &ch, &msg, &mlen);
        off += used;
        if (rc < 0)
            return rc;
        if (rc == 1) {
            free(msg);
            (*nmsgs)++;
            wb_mconn_delivered(m, ch);
        }
    }
    return 0;
}

static size_t put_msg(uint8_t *out, uint8_t ch, uint8_t flags, size_t len, uint8_t fill)
{
    out[0] = WB_MCONN_PKT_MSG;
    out[1] = ch;
    out[2] = flags;
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    memset(out + 5, fill, len);
    return 5 + len;
}

/* Walk a write's output: count packets by type (index 1..4). */
static void count_packets(const uint8_t *buf, size_t n, size_t counts[5])
{
    memset(counts, 0, 5 * sizeof(size_t));
    size_t off = 0;
    while (off < n) {
        uint8_t t = buf[off];
        assert_true(t >= 1 && t <= 4);
        counts[t]++;
        if (t <= 2)
            off += 1;
        else if (t == WB_MCONN_PKT_CREDIT)
            off += WB_MCONN_CREDIT_LEN;
        else
            off += WB_MCONN_MSG_HEADER + ((size_t)buf[off + 3] << 8 | buf[off + 4]);
    }
    assert_int_equal(off, n);
}

/* ---- tests ---- */

/* Random sizes 0..max_message on three channels, both ways at once, several
 * seeds; max_message above recv_window so big messages need credit returned
 * mid-message. */
static void test_roundtrip_random(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        wb_mconn_config_t cfg;
        wb_mconn_config_init(&cfg);
        cfg.max_packet = (uint32_t)(seed % 2 ? 512 : 100);
        wb_mconn_chan_t chans[3] = {
            {.id = 0x20,
             .priority = 1,
             .send_queue_capacity = 4,
             .max_message = 5000,
             .recv_window = 2048},
            {.id = 0x21,
             .priority = 5,
             .send_queue_capacity = 2,
             .max_message = 300,
             .recv_window = 512},
            {.id = 0x40,
             .priority = 2,
             .send_queue_capacity = 8,
             .max_message = 9000,
             .recv_window = 4096},
        };
        side_t *a = side_new(&cfg, chans, 3, seed * 7919);
        side_t *b = side_new(&cfg, chans, 3, seed * 104729);
        const size_t per = 60;
        for (int round = 0; round < 100000; round++) {
            int more = 0;
            side_t *sides[2] = {a, b};
            for (int s = 0; s < 2; s++) {
                side_t *x = sides[s];
                for (size_t i = 0; i < 3; i++) {
                    if (x->nsent[i] >= per)
                        continue;
                    more = 1;
                    if (!wb_mconn_sendable(x->m, x->ids[i]))
                        continue;
                    size_t max = chans[i].max_message;
                    uint64_t r = rnd(&x->rng) % 10;
                    size_t len = r == 0 ? 0 : r == 1 ? max : rnd_in(&x->rng, 0, max);
                    assert_int_equal(side_send(x, i, len), 0);
                }
            }
            assert_true(pump(a, b, 3000) >= 0);
            assert_true(pump(b, a, 3000) >= 0);
            if (!more)
                break;
        }
        settle(a, b);
        check_same(a, b);
        check_same(b, a);
        for (size_t i = 0; i < 3; i++) {
            wb_mconn_chan_stats_t st = stats(a->m, i);
            assert_int_equal(st.queued, 0);
            assert_int_equal(st.msgs_sent, per);
            assert_int_equal(st.msgs_recv, per);
            assert_int_equal(st.recv_undelivered, 0);
            /* All credit came back. */
            assert_int_equal(st.send_credit, chans[i].recv_window);
        }
        assert_int_equal(wb_mconn_errcode(a->m), 0);
        assert_int_equal(wb_mconn_errcode(b->m), 0);
        assert_string_equal(wb_mconn_error(a->m), "");
        side_free(a);
        side_free(b);
    }
}

/* The sender refuses max_message + 1 (caller keeps it); exactly max passes.
 * A hand-crafted stream one byte over fails the receiver with one error. */
static void test_max_message(void **state)
{
    (void)state;
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    wb_mconn_chan_t ch = {.id = 0x20, .priority = 1, .max_message = 3000, .recv_window = 4096};
    side_t *a = side_new(&cfg, &ch, 1, 11);
    side_t *b = side_new(&cfg, &ch, 1, 12);
    wb_event_t *big = wb_event_new(0, 3001);
    assert_int_equal(wb_mconn_send(a->m, 0x20, big), WB_ETOOBIG);
    wb_event_free(big); /* still ours */
    assert_int_equal(side_send(a, 0, 3000), 0);
    settle(a, b);
    check_same(a, b);
    assert_int_equal(wb_mconn_errcode(a->m), 0);
    side_free(a);
    side_free(b);

    /* Receiver: 3 packets of 1000 then EOF-less 1000 + 1 byte EOF. */
    uint8_t buf[8192];
    for (int over = 0; over <= 1; over++) {
        wb_mconn_t *m;
        assert_int_equal(wb_mconn_new(&m, &cfg, &ch, 1, 0), 0);
        drain(m);
        size_t n = 0;
        n += put_msg(buf + n, 0x20, 0, 1000, 1);
        n += put_msg(buf + n, 0x20, 0, 1000, 2);
        n += put_msg(buf + n, 0x20, over ? 0 : 1, 1000, 3);
        if (over)
            n += put_msg(buf + n, 0x20, 1, 1, 4);
        size_t msgs;
        int rc = feed_raw(m, buf, n, &msgs);
        if (over) {
            assert_int_equal(rc, WB_ETOOBIG);
            assert_int_equal(msgs, 0);
            assert_string_equal(wb_mconn_error(m), "message on channel 0x20 exceeds 3000 bytes");
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(msgs, 1);
            assert_int_equal(stats(m, 0).bytes_recv, 3000);
        }
        wb_mconn_free(m);
    }
}

typedef struct {
    const char *name;
    uint8_t bytes[16];
    size_t n;
    int code;
    const char *text;
} bad_t;

/* Each violation fails with its one-line reason; the error stays for every
 * call afterwards; wb_mconn_fail keeps it. */
static void test_protocol_errors(void **state)
{
    (void)state;
    const bad_t cases[] = {
        {"unknown channel", {3, 0x33, 1, 0, 1, 'x'}, 6, WB_EPROTO, "unknown channel 0x33"},
        {"unknown type", {1, 2, 9}, 3, WB_EPROTO, "unknown packet type 0x09"},
        {"type zero", {0}, 1, WB_EPROTO, "unknown packet type 0x00"},
        {"bad flags", {3, 0x20, 3, 0, 1, 'x'}, 6, WB_EPROTO, "channel 0x20: bad flags 0x03"},
        {"flag bit 7", {3, 0x20, 0x80, 0, 1, 'x'}, 6, WB_EPROTO, "channel 0x20: bad flags 0x80"},
        {"empty no eof",
         {3, 0x20, 0, 0, 0},
         5,
         WB_EPROTO,
         "channel 0x20: empty msg packet without EOF"},
        {"len over max_packet",
         {3, 0x20, 1, 0x04, 0x01},
         5,
         WB_EPROTO,
         "channel 0x20: packet of 1025 bytes exceeds 1024"},
        {"credit zero", {4, 0x20, 0, 0, 0, 0}, 6, WB_EPROTO, "channel 0x20: credit of 0 bytes"},
        {"credit overflow",
         {4, 0x20, 0xff, 0xff, 0xff, 0xff, 4, 0x20, 0, 0, 0, 1},
         12,
         WB_EPROTO,
         "channel 0x20: credit of 1 bytes over 4294967295 held exceeds 2^32 - 1"},
    };
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    wb_mconn_chan_t ch = {.id = 0x20, .priority = 1};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (int bytewise = 0; bytewise <= 1; bytewise++) {
            wb_mconn_t *m;
            assert_int_equal(wb_mconn_new(&m, &cfg, &ch, 1, 0), 0);
            drain(m);
            int rc = 0;
            size_t msgs = 0;
            if (bytewise) {
                for (size_t k = 0; k < cases[c].n && rc == 0; k++)
                    rc = feed_raw(m, cases[c].bytes + k, 1, &msgs);
            } else {
                rc = feed_raw(m, cases[c].bytes, cases[c].n, &msgs);
            }
            if (rc != cases[c].code || strcmp(wb_mconn_error(m), cases[c].text) != 0)
                fail_msg("%s: got %d \"%s\"", cases[c].name, rc, wb_mconn_error(m));
            /* Sticky. */
            size_t used;
            uint8_t id, *msg;
            size_t mlen;
            uint8_t ping = WB_MCONN_PKT_PING, out[64];
            assert_int_equal(wb_mconn_read(m, &ping, 1, &used, &id, &msg, &mlen), rc);
            assert_int_equal(used, 0);
            assert_int_equal(wb_mconn_write(m, out, sizeof(out)), rc);
            assert_int_equal(wb_mconn_tick(m, 1000000), rc);
            assert_false(wb_mconn_want_write(m));
            assert_false(wb_mconn_sendable(m, 0x20));
            wb_event_t *ev = wb_event_new(0, 1);
            assert_int_equal(wb_mconn_send(m, 0x20, ev), rc);
            wb_event_free(ev);
            assert_int_equal(wb_mconn_fail(m, WB_ECLOSED, "socket closed"), rc);
            assert_string_equal(wb_mconn_error(m), cases[c].text);
            assert_int_equal(wb_mconn_errcode(m), rc);
            wb_mconn_free(m);
        }
    }
}

/* A credit packet for a channel we lack is ignored; so is a pong we did not
 * ask for. */
static void test_ignored_packets(void **state)
{
    (void)state;
    wb_mconn_chan_t ch = {.id = 0x20, .priority = 1};
    wb_mconn_t *m;
    assert_int_equal(wb_mconn_new(&m, NULL, &ch, 1, 0), 0);
    const uint8_t in[] = {4, 0x77, 0, 0, 1, 0, 2, 2};
    size_t msgs;
    assert_int_equal(feed_raw(m, in, sizeof(in), &msgs), 0);
    assert_int_equal(wb_mconn_errcode(m), 0);
    uint64_t pings, pongs, rtt;
    wb_mconn_ping_stats(m, &pings, &pongs, &rtt);
    assert_int_equal(pongs, 0);
    assert_int_equal(rtt, 0);
    wb_mconn_free(m);
}

/* Bytes beyond the grant fail: a fresh mconn has granted nothing until it
 * writes; after the grant, a window's worth passes and one byte more fails
 * (the credit returned but not yet written does not count). */
static void test_msg_without_credit(void **state)
{
    (void)state;
    wb_mconn_chan_t ch = {.id = 0x20, .priority = 1, .recv_window = 1024};
    uint8_t buf[4096];
    size_t msgs;

    wb_mconn_t *m;
    assert_int_equal(wb_mconn_new(&m, NULL, &ch, 1, 0), 0);
    size_t n = put_msg(buf, 0x20, 1, 10, 0);
    assert_int_equal(feed_raw(m, buf, n, &msgs), WB_EPROTO);
    assert_string_equal(wb_mconn_error(m),
                        "channel 0x20: 10 bytes sent without credit (packet of 10, credit 0)");
    wb_mconn_free(m);

    assert_int_equal(wb_mconn_new(&m, NULL, &ch, 1, 0), 0);
    drain(m);
    n = put_msg(buf, 0x20, 0, 1000, 0);
    n += put_msg(buf + n, 0x20, 1, 24, 0);
    n += put_msg(buf + n, 0x20, 1, 5, 0);
    assert_int_equal(feed_raw(m, buf, n, &msgs), WB_EPROTO);
    assert_int_equal(msgs, 1);
    assert_string_equal(wb_mconn_error(m),
                        "channel 0x20: 5 bytes sent without credit (packet of 5, credit 0)");
    wb_mconn_free(m);
}

/* An empty message costs one byte of credit: a window of 1024 lets 1024 of
 * them through and not one more until credit is written back. */
static void test_empty_message_credit(void **state)
{
    (void)state;
    wb_mconn_chan_t ch = {.id = 0x20, .priority = 1, .recv_window = 1024};
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.max_packet = 1024;
    wb_mconn_t *m;
    assert_int_equal(wb_mconn_new(&m, &cfg, &ch, 1, 0), 0);
    drain(m);
    static uint8_t buf[1025 * 5];
    size_t n = 0;
    for (int i = 0; i < 1025; i++)
        n += put_msg(buf + n, 0x20, 1, 0, 0);
    size_t msgs;
    assert_int_equal(feed_raw(m, buf, n - 5, &msgs), 0);
    assert_int_equal(msgs, 1024);
    assert_int_equal(feed_raw(m, buf + n - 5, 5, &msgs), WB_EPROTO);
    assert_string_equal(wb_mconn_error(m),
                        "channel 0x20: 1 bytes sent without credit (packet of 1, credit 0)");
    wb_mconn_free(m);

    /* And the sender side spends it: 1024 empty messages, then it waits. */
    wb_mconn_chan_t c2 = {
        .id = 0x20, .priority = 1, .recv_window = 1024, .send_queue_capacity = 2000};
    side_t *a = side_new(&cfg, &c2, 1, 5);
    side_t *b = side_new(&cfg, &c2, 1, 6);
    b->hold[0] = 1;
    for (int i = 0; i < 1500; i++)
        assert_int_equal(side_send(a, 0, 0), 0);
    settle(a, b);
    assert_int_equal(b->ngot[0], 1024);
    assert_int_equal(stats(a->m, 0).send_credit, 0);
    assert_int_equal(stats(a->m, 0).queued, 1500 - 1024);
    deliver_held(b, 0);
    b->hold[0] = 0;
    settle(a, b);
    check_same(a, b);
    side_free(a);
    side_free(b);
}

/* A full queue refuses with WB_EAGAIN (the caller keeps the event) and
 * sendable() says 0 until a write sends a message whole. */
static void test_send_queue_full(void **state)
{
    (void)state;
    wb_mconn_chan_t ch[2] = {{.id = 1, .priority = 1, .send_queue_capacity = 3},
                             {.id = 2, .priority = 1, .send_queue_capacity = 1}};
    side_t *a = side_new(NULL, ch, 2, 21);
    side_t *b = side_new(NULL, ch, 2, 22);
    for (int i = 0; i < 3; i++) {
        assert_true(wb_mconn_sendable(a->m, 1));
        assert_int_equal(side_send(a, 0, 100), 0);
    }
    assert_false(wb_mconn_sendable(a->m, 1));
    assert_true(wb_mconn_sendable(a->m, 2));
    wb_event_t *ev = wb_event_new(0, 10);
    assert_int_equal(wb_mconn_send(a->m, 1, ev), WB_EAGAIN);
    assert_int_equal(wb_mconn_send(a->m, 9, ev), WB_ENOENT);
    assert_false(wb_mconn_sendable(a->m, 9));
    wb_event_free(ev);
    assert_int_equal(stats(a->m, 0).queued, 3);

    /* No credit yet: a's write carries its grants only and frees nothing. */
    uint8_t buf[4096];
    long n = wb_mconn_write(a->m, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(feed(b, buf, (size_t)n), 0);
    assert_false(wb_mconn_sendable(a->m, 1));
    /* b's grants arrive; a write of 60 bytes cuts but does not finish one. */
    assert_true(pump(b, a, 4096) > 0);
    assert_int_equal(wb_mconn_write(a->m, buf, 60), 60);
    assert_false(wb_mconn_sendable(a->m, 1));
    assert_int_equal(feed(b, buf, 60), 0);
    n = wb_mconn_write(a->m, buf, sizeof(buf));
    assert_true(n > 0);
    assert_true(wb_mconn_sendable(a->m, 1));
    assert_int_equal(stats(a->m, 0).queued, 0);
    assert_int_equal(feed(b, buf, (size_t)n), 0);
    check_same(a, b);
    side_free(a);
    side_free(b);
}

/* Two saturated channels of priority 1 and 3 share the link 1:3. */
static void test_priority_share(void **state)
{
    (void)state;
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.max_packet = 1000;
    wb_mconn_chan_t ch[2] = {
        {.id = 1, .priority = 1, .max_message = 10000, .recv_window = 65536},
        {.id = 2, .priority = 3, .max_message = 10000, .recv_window = 65536},
    };
    side_t *a = side_new(&cfg, ch, 2, 31);
    side_t *b = side_new(&cfg, ch, 2, 32);
    for (int round = 0; round < 400; round++) {
        for (size_t i = 0; i < 2; i++)
            while (wb_mconn_sendable(a->m, ch[i].id) && a->nsent[i] < MAX_MSGS)
                assert_int_equal(side_send(a, i, 10000), 0);
        assert_true(pump(a, b, 8000) >= 0);
        assert_true(pump(b, a, 8000) >= 0);
    }
    uint64_t lo = stats(a->m, 0).bytes_sent, hi = stats(a->m, 1).bytes_sent;
    assert_true(lo + hi > 1000000);
    double ratio = (double)hi / (double)lo;
    if (ratio < 2.85 || ratio > 3.15)
        fail_msg("priority 3 : 1 sent %llu : %llu (%.3f)", (unsigned long long)hi,
                 (unsigned long long)lo, ratio);
    /* The scheduler's state agrees: recently_sent / priority are within one
     * packet of each other. */
    uint64_t r0 = stats(a->m, 0).recently_sent, r1 = stats(a->m, 1).recently_sent;
    assert_true(r0 * 3 + 3000 >= r1 && r1 + 3000 >= r0 * 3);
    side_free(a);
    side_free(b);
}

/* recently_sent is multiplied by 0.8 each decay_ms (late ticks catch up);
 * a channel that sent much yields to one that sent nothing until it has
 * decayed. */
static void test_decay(void **state)
{
    (void)state;
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.decay_ms = 100;
    cfg.max_packet = 1000;
    cfg.ping_ms = 1u << 30; /* no ping in the way */
    wb_mconn_chan_t ch[2] = {{.id = 1, .priority = 1}, {.id = 2, .priority = 1}};
    side_t *a = side_new(&cfg, ch, 2, 41);
    side_t *b = side_new(&cfg, ch, 2, 42);
    settle(a, b); /* grants */
    assert_int_equal(side_send(a, 0, 10000), 0);
    settle(a, b);
    assert_int_equal(stats(a->m, 0).recently_sent, 10000);
    assert_int_equal(wb_mconn_next_deadline(a->m), 100);
    assert_int_equal(wb_mconn_tick(a->m, 99), 0);
    assert_int_equal(stats(a->m, 0).recently_sent, 10000);
    assert_int_equal(wb_mconn_tick(a->m, 100), 0);
    assert_int_equal(stats(a->m, 0).recently_sent, 8000);
    assert_int_equal(wb_mconn_next_deadline(a->m), 200);
    assert_int_equal(wb_mconn_tick(a->m, 399), 0); /* 200, 300 */
    assert_int_equal(stats(a->m, 0).recently_sent, 5120);
    assert_int_equal(wb_mconn_next_deadline(a->m), 400);
    assert_int_equal(wb_mconn_tick(a->m, 699), 0); /* 400, 500, 600 */
    assert_int_equal(stats(a->m, 0).recently_sent, 2620);
    assert_int_equal(wb_mconn_next_deadline(a->m), 700);

    /* Channel 2 (0 sent) goes first though channel 1 has the lower index. */
    assert_int_equal(side_send(a, 0, 1000), 0);
    assert_int_equal(side_send(a, 1, 1000), 0);
    uint8_t buf[1005];
    assert_int_equal(wb_mconn_write(a->m, buf, sizeof(buf)), 1005);
    assert_int_equal(buf[1], 2);
    assert_int_equal(feed(b, buf, 1005), 0);
    /* Decayed to nothing (integer), channel 1 wins the tie on its index. */
    assert_int_equal(wb_mconn_tick(a->m, 100000), 0);
    assert_int_equal(stats(a->m, 0).recently_sent, 0);
    assert_int_equal(stats(a->m, 1).recently_sent, 0);
    assert_int_equal(side_send(a, 1, 1000), 0);
    assert_int_equal(wb_mconn_write(a->m, buf, sizeof(buf)), 1005);
    assert_int_equal(buf[1], 1);
    assert_int_equal(feed(b, buf, 1005), 0);
    settle(a, b);
    check_same(a, b);
    side_free(a);
    side_free(b);
}

/* The receiver holds channel A's messages: A's sender stalls after about a
 * window (plus the first message, whose credit went back at once) while B
 * keeps flowing; once A's messages are delivered, A resumes. */
static void test_credit_stall(void **state)
{
    (void)state;
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.max_packet = 512;
    const uint32_t win = 4096, maxmsg = 2000;
    wb_mconn_chan_t ch[2] = {
        {.id = 0xa, .priority = 1, .max_message = maxmsg, .recv_window = win},
        {.id = 0xb, .priority = 1, .max_message = maxmsg, .recv_window = win},
    };
    side_t *a = side_new(&cfg, ch, 2, 51);
    side_t *b = side_new(&cfg, ch, 2, 52);
    b->hold[0] = 1;
    uint64_t a_sent_mid = 0, b_sent_mid = 0;
    for (int round = 0; round < 600; round++) {
        for (size_t i = 0; i < 2; i++)
            while (wb_mconn_sendable(a->m, ch[i].id) && a->nsent[i] < MAX_MSGS)
                assert_int_equal(side_send(a, i, rnd_in(&a->rng, 1, maxmsg)), 0);
        assert_true(pump(a, b, 2000) >= 0);
        assert_true(pump(b, a, 2000) >= 0);
        if (round == 299) {
            a_sent_mid = stats(a->m, 0).bytes_sent;
            b_sent_mid = stats(a->m, 1).bytes_sent;
        }
    }
    uint64_t a_sent = stats(a->m, 0).bytes_sent, b_sent = stats(a->m, 1).bytes_sent;
    assert_true(a_sent <= maxmsg + win);
    assert_true(a_sent >= win);
    assert_int_equal(a_sent, a_sent_mid); /* stalled */
    assert_true(b_sent > b_sent_mid + 100000);
    assert_int_equal(stats(a->m, 0).send_credit, 0);
    assert_true(stats(b->m, 0).recv_undelivered > 0);

    /* Delivered: A resumes and everything arrives in order. */
    deliver_held(b, 0);
    b->hold[0] = 0;
    for (int round = 0; round < 50; round++) {
        assert_true(pump(a, b, 2000) >= 0);
        assert_true(pump(b, a, 2000) >= 0);
    }
    assert_true(stats(a->m, 0).bytes_sent > a_sent + 10000);
    settle(a, b);
    check_same(a, b);
    side_free(a);
    side_free(b);
}

/* A message much larger than the window gets through when delivered
 * promptly, and the one queued behind it too. */
static void test_big_message(void **state)
{
    (void)state;
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.max_packet = 1024;
    wb_mconn_chan_t ch = {.id = 7, .priority = 1, .recv_window = 1024};
    side_t *a = side_new(&cfg, &ch, 1, 61);
    side_t *b = side_new(&cfg, &ch, 1, 62);
    assert_int_equal(side_send(a, 0, 1u << 20), 0);
    assert_int_equal(side_send(a, 0, 5000), 0);
    settle(a, b);
    check_same(a, b);
    assert_int_equal(stats(a->m, 0).send_credit, 1024);
    side_free(a);
    side_free(b);
}

/* A ping at ping_ms, answered; the round trip on the tick clock; a missing
 * pong fails at pong_timeout_ms; deadlines. */
static void test_ping_pong(void **state)
{
    (void)state;
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.ping_ms = 1000;
    cfg.pong_timeout_ms = 500;
    cfg.decay_ms = 10000;
    wb_mconn_chan_t ch = {.id = 1, .priority = 1};
    side_t *a = side_new(&cfg, &ch, 1, 71);
    side_t *b = side_new(&cfg, &ch, 1, 72);
    settle(a, b);
    assert_int_equal(wb_mconn_next_deadline(a->m), 1000);
    assert_int_equal(wb_mconn_tick(a->m, 999), 0);
    assert_false(wb_mconn_want_write(a->m));
    assert_int_equal(wb_mconn_tick(a->m, 1000), 0);
    assert_true(wb_mconn_want_write(a->m));
    assert_int_equal(wb_mconn_next_deadline(a->m), 1500);
    uint8_t buf[64];
    assert_int_equal(wb_mconn_write(a->m, buf, sizeof(buf)), 1);
    assert_int_equal(buf[0], WB_MCONN_PKT_PING);
    assert_int_equal(feed(b, buf, 1), 0);
    assert_int_equal(wb_mconn_write(b->m, buf, sizeof(buf)), 1);
    assert_int_equal(buf[0], WB_MCONN_PKT_PONG);
    assert_int_equal(wb_mconn_tick(a->m, 1120), 0);
    assert_int_equal(feed(a, buf, 1), 0);
    uint64_t pings, pongs, rtt;
    wb_mconn_ping_stats(a->m, &pings, &pongs, &rtt);
    assert_int_equal(pings, 1);
    assert_int_equal(pongs, 1);
    assert_int_equal(rtt, 120);
    /* Answered: no timeout at 1500; next ping at 2000. */
    assert_int_equal(wb_mconn_next_deadline(a->m), 2000);
    assert_int_equal(wb_mconn_tick(a->m, 1600), 0);
    assert_int_equal(wb_mconn_tick(a->m, 2000), 0);
    assert_int_equal(wb_mconn_write(a->m, buf, sizeof(buf)), 1);
    /* This one goes unanswered. */
    assert_int_equal(wb_mconn_tick(a->m, 2499), 0);
    /* Data is not a pong. */
    assert_int_equal(side_send(b, 0, 100), 0);
    settle(b, a);
    assert_int_equal(a->ngot[0], 1);
    assert_int_equal(wb_mconn_tick(a->m, 2500), WB_ETIMEDOUT);
    assert_string_equal(wb_mconn_error(a->m), "pong timeout after 500 ms");
    assert_int_equal(wb_mconn_tick(a->m, 2600), WB_ETIMEDOUT);
    side_free(a);
    side_free(b);
}

/* Many pings before a write: one pong. Pings and pongs come first in a
 * write, before credit and messages. */
static void test_pings_coalesce(void **state)
{
    (void)state;
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.ping_ms = 1000;
    cfg.pong_timeout_ms = 500;
    wb_mconn_chan_t ch[2] = {{.id = 1, .priority = 1}, {.id = 2, .priority = 1}};
    side_t *a = side_new(&cfg, ch, 2, 81);
    side_t *b = side_new(&cfg, ch, 2, 82);
    settle(a, b);
    uint8_t pings[5] = {1, 1, 1, 1, 1};
    assert_int_equal(feed(b, pings, 5), 0);
    assert_int_equal(side_send(b, 1, 50), 0);
    assert_int_equal(wb_mconn_tick(b->m, 1000), 0); /* b's own ping too */
    uint8_t buf[4096];
    long n = wb_mconn_write(b->m, buf, sizeof(buf));
    assert_true(n > 0);
    size_t counts[5];
    count_packets(buf, (size_t)n, counts);
    assert_int_equal(counts[WB_MCONN_PKT_PONG], 1);
    assert_int_equal(counts[WB_MCONN_PKT_PING], 1);
    assert_int_equal(counts[WB_MCONN_PKT_MSG], 1);
    assert_int_equal(buf[0], WB_MCONN_PKT_PONG);
    assert_int_equal(buf[1], WB_MCONN_PKT_PING);
    assert_int_equal(buf[n - 55], WB_MCONN_PKT_MSG);
    assert_int_equal(wb_mconn_write(b->m, buf, sizeof(buf)), 0);
    side_free(a);
    side_free(b);
}

/* Credit: the first write of a fresh mconn is each channel's grant; credit
 * goes back at once while nothing waits, and held back to a quarter of the
 * window while a message waits for delivery. */
static void test_credit_grants(void **state)
{
    (void)state;
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.max_packet = 100;
    wb_mconn_chan_t ch[2] = {{.id = 1, .priority = 1, .recv_window = 1000},
                             {.id = 2, .priority = 1}};
    wb_mconn_t *m;
    assert_int_equal(wb_mconn_new(&m, &cfg, ch, 2, 0), 0);
    assert_true(wb_mconn_want_write(m));
    uint8_t buf[64];
    assert_int_equal(wb_mconn_write(m, buf, sizeof(buf)), 12);
    const uint8_t want[12] = {4, 1, 0, 0, 0x03, 0xe8, 4, 2, 0, 4, 0, 0};
    assert_memory_equal(buf, want, 12);
    assert_false(wb_mconn_want_write(m));

    /* 10 bytes, no message waiting: 10 back at once. */
    uint8_t in[512];
    size_t n = put_msg(in, 1, 0, 10, 0), msgs;
    assert_int_equal(feed_raw(m, in, n, &msgs), 0);
    assert_int_equal(wb_mconn_write(m, buf, sizeof(buf)), 6);
    assert_int_equal(buf[5], 10);

    /* A message waits (not delivered): its last packet's 5 bytes are
     * returned but below a quarter of the window they wait; later bytes are
     * held; all goes once it is delivered. */
    n = put_msg(in, 1, 1, 5, 0);
    size_t used;
    uint8_t id, *msg;
    size_t mlen;
    assert_int_equal(wb_mconn_read(m, in, n, &used, &id, &msg, &mlen), 1);
    free(msg);
    assert_false(wb_mconn_want_write(m));
    assert_int_equal(wb_mconn_write(m, buf, sizeof(buf)), 0);
    n = put_msg(in, 1, 0, 100, 0);
    n += put_msg(in + n, 1, 0, 100, 0);
    n += put_msg(in + n, 1, 0, 100, 0);
    assert_int_equal(wb_mconn_read(m, in, n, &used, &id, &msg, &mlen), 0);
    assert_false(wb_mconn_want_write(m));
    assert_int_equal(stats(m, 0).recv_undelivered, 1);
    wb_mconn_delivered(m, 1);
    assert_int_equal(stats(m, 0).recv_undelivered, 0);
    assert_int_equal(wb_mconn_write(m, buf, sizeof(buf)), 6);
    assert_int_equal(buf[4] << 8 | buf[5], 305);
    /* Two messages wait: held credit goes only when both are delivered. */
    n = put_msg(in, 1, 1, 7, 0);
    n += put_msg(in + n, 1, 1, 9, 0);
    for (int k = 0; k < 3; k++)
        n += put_msg(in + n, 1, 0, 100, 0);
    size_t off = 0;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(wb_mconn_read(m, in + off, n - off, &used, &id, &msg, &mlen), 1);
        free(msg);
        off += used;
    }
    assert_int_equal(wb_mconn_read(m, in + off, n - off, &used, &id, &msg, &mlen), 0);
    assert_int_equal(stats(m, 0).recv_undelivered, 2);
    wb_mconn_delivered(m, 1);
    assert_false(wb_mconn_want_write(m));
    wb_mconn_delivered(m, 1);
    assert_int_equal(wb_mconn_write(m, buf, sizeof(buf)), 6);
    assert_int_equal(buf[4] << 8 | buf[5], 316);
    /* Unknown channel, or nothing undelivered: no effect. */
    wb_mconn_delivered(m, 1);
    wb_mconn_delivered(m, 99);
    assert_int_equal(stats(m, 0).recv_undelivered, 0);
    wb_mconn_free(m);
}

/* An empty message in a hand-crafted stream comes up as NULL, 0. */
static void test_empty_message(void **state)
{
    (void)state;
    wb_mconn_chan_t ch = {.id = 3, .priority = 1};
    wb_mconn_t *m;
    assert_int_equal(wb_mconn_new(&m, NULL, &ch, 1, 0), 0);
    drain(m);
    uint8_t in[5];
    put_msg(in, 3, 1, 0, 0);
    size_t used, mlen = 99;
    uint8_t id = 0, *msg = (uint8_t *)in;
    assert_int_equal(wb_mconn_read(m, in, 5, &used, &id, &msg, &mlen), 1);
    assert_int_equal(used, 5);
    assert_int_equal(id, 3);
    assert_null(msg);
    assert_int_equal(mlen, 0);
    assert_int_equal(stats(m, 0).msgs_recv, 1);
    wb_mconn_free(m);
}

/* wb_mconn_fail keeps the first error; a fresh mconn has none. */
static void test_fail_first_kept(void **state)
{
    (void)state;
    wb_mconn_chan_t ch = {.id = 3, .priority = 1};
    wb_mconn_t *m;
    assert_int_equal(wb_mconn_new(&m, NULL, &ch, 1, 0), 0);
    assert_int_equal(wb_mconn_errcode(m), 0);
    assert_string_equal(wb_mconn_error(m), "");
    assert_int_equal(wb_mconn_fail(m, WB_ECLOSED, "socket closed by %s", "peer"), WB_ECLOSED);
    assert_int_equal(wb_mconn_fail(m, WB_EIO, "later"), WB_ECLOSED);
    assert_string_equal(wb_mconn_error(m), "socket closed by peer");
    uint8_t buf[16];
    assert_int_equal(wb_mconn_write(m, buf, sizeof(buf)), WB_ECLOSED);
    size_t used;
    uint8_t id, *msg;
    size_t mlen;
    assert_int_equal(wb_mconn_read(m, buf, 1, &used, &id, &msg, &mlen), WB_ECLOSED);
    assert_false(wb_mconn_want_write(m));
    /* Stats still answer. */
    assert_int_equal(wb_mconn_nchannels(m), 1);
    wb_mconn_chan_stats_t st;
    assert_int_equal(wb_mconn_chan_stats(m, 1, &st), WB_ENOENT);
    wb_mconn_free(m);
}

static void test_new_invalid(void **state)
{
    (void)state;
    wb_mconn_t *m = (wb_mconn_t *)1;
    wb_mconn_chan_t two[2] = {{.id = 1, .priority = 1}, {.id = 1, .priority = 2}};
    assert_int_equal(wb_mconn_new(&m, NULL, two, 2, 0), WB_EINVAL);
    assert_null(m);
    wb_mconn_chan_t zero = {.id = 1, .priority = 0};
    assert_int_equal(wb_mconn_new(&m, NULL, &zero, 1, 0), WB_EINVAL);
    wb_mconn_chan_t ok = {.id = 1, .priority = 1};
    /* No channel at all: a connection of pings and pongs (a node with no
     * reactor); a msg on any channel is then an unknown channel. */
    assert_int_equal(wb_mconn_new(&m, NULL, &ok, 0, 0), 0);
    assert_int_equal(wb_mconn_nchannels(m), 0);
    assert_int_equal(wb_mconn_want_write(m), 0);
    static const uint8_t stray[] = {WB_MCONN_PKT_MSG, 1, 1, 0, 1, 'x'};
    size_t used;
    uint8_t ch, *msg;
    size_t mlen;
    assert_int_equal(wb_mconn_read(m, stray, sizeof(stray), &used, &ch, &msg, &mlen), WB_EPROTO);
    wb_mconn_free(m);
    wb_mconn_chan_t many[65];
    for (int i = 0; i < 65; i++)
        many[i] = (wb_mconn_chan_t){.id = (uint8_t)i, .priority = 1};
    assert_int_equal(wb_mconn_new(&m, NULL, many, 65, 0), WB_EINVAL);
    assert_int_equal(wb_mconn_new(&m, NULL, many, 64, 0), 0);
    wb_mconn_free(m);
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.pong_timeout_ms = cfg.ping_ms;
    assert_int_equal(wb_mconn_new(&m, &cfg, &ok, 1, 0), WB_EINVAL);
    wb_mconn_config_init(&cfg);
    cfg.max_packet = 65536;
    assert_int_equal(wb_mconn_new(&m, &cfg, &ok, 1, 0), WB_EINVAL);
    wb_mconn_config_init(&cfg);
    cfg.max_packet = 2048;
    wb_mconn_chan_t small = {.id = 1, .priority = 1, .recv_window = 1024};
    assert_int_equal(wb_mconn_new(&m, &cfg, &small, 1, 0), WB_EINVAL);
    wb_mconn_chan_t huge = {.id = 1, .priority = 1, .max_message = WB_EVENT_MAX_LEN + 1u};
    assert_int_equal(wb_mconn_new(&m, NULL, &huge, 1, 0), WB_EINVAL);
    wb_mconn_free(NULL);
}

/* Freed with messages queued, half-cut and half-reassembled (ASan and
 * valgrind see the leaks if any). */
static void test_free_busy(void **state)
{
    (void)state;
    wb_mconn_chan_t ch = {.id = 1, .priority = 1};
    side_t *a = side_new(NULL, &ch, 1, 91);
    side_t *b = side_new(NULL, &ch, 1, 92);
    settle(a, b);
    for (int i = 0; i < 4; i++)
        assert_int_equal(side_send(a, 0, 5000), 0);
    uint8_t buf[3000];
    long n = wb_mconn_write(a->m, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(feed(b, buf, (size_t)n - 7), 0);
    side_free(a);
    side_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_ignored_packets),
        cmocka_unit_test(test_msg_without_credit),
        cmocka_unit_test(test_empty_message_credit),
        cmocka_unit_test(test_send_queue_full),
        cmocka_unit_test(test_priority_share),
        cmocka_unit_test(test_decay),
        cmocka_unit_test(test_credit_stall),
        cmocka_unit_test(test_big_message),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_pings_coalesce),
        cmocka_unit_test(test_credit_grants),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_fail_first_kept),
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_free_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
