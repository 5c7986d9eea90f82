/*
 * addrbook.c - the address book (see addrbook.h).
 *
 * Records live in one dense array; an open-addressed table (linear
 * probing, keyed SipHash of the id, backward-shift deletion) finds a record
 * by id; buckets hold record indexes. Removing a record moves the last one
 * into its place, so an index is only good until the next removal: code
 * that may expire or demote records looks its own records up again by id.
 */
#include "apps/peer/addrbook.h"

#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

#define MINUTE_MS    (60 * 1000LL)
#define DAY_MS       (24 * 3600 * 1000LL)
#define MISSING_DAYS 7
#define MIN_BAD_DAYS 7
#define NUM_RETRIES  3
#define MAX_FAILURES 10
#define PICK_TRIES   32

typedef struct {
    uint8_t id[32];
    int64_t until;
} ban_t;

typedef struct {
    uint32_t e[WB_ADDRBOOK_BUCKET_SIZE];
    uint32_t n;
} bucket_t;

struct wb_addrbook_s {
    wb_addrbook_config_t cfg;
    uint8_t key[32];
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    uint64_t s[4];

    wb_addrbook_rec_t *recs;
    uint32_t n, cap;
    uint32_t *scratch; /* cap entries, for selections */
    uint32_t *slots;   /* record index + 1; 0 empty */
    uint32_t nslots;   /* power of two */

    bucket_t newb[WB_ADDRBOOK_NEW_BUCKETS];
    bucket_t oldb[WB_ADDRBOOK_OLD_BUCKETS];
    uint32_t n_new, n_old;
    uint32_t new_used, old_used; /* non-empty buckets */

    uint8_t (*own)[32];
    size_t nown;
    wb_netaddr_t *own_addr;
    size_t nown_addr;
    ban_t *bans;
    size_t nbans;
};

/* ---- randomness ----------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next64(wb_addrbook_t *b)
{
    uint64_t *s = b->s;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* [0, n) by multiply-shift: no rejection loop; the bias is below n / 2^64. */
uint64_t wb_addrbook_rand(wb_addrbook_t *b, uint64_t n)
{
    assert(n > 0);
    return (uint64_t)(((unsigned __int128)next64(b) * n) >> 64);
}

/* Square root of a count (below 2^32), without libm: Newton's method from
 * above, a fixed number of steps. */
static double sqrt_count(uint32_t n)
{
    if (n == 0)
        return 0;
    double x = n < 2 ? 1 : (double)n / 2 + 1;
    for (int i = 0; i < 40; i++)
        x = (x + n / x) / 2;
    return x;
}

static double rand_unit(wb_addrbook_t *b)
{
    return (double)(next64(b) >> 11) * 0x1.0p-53;
}

/* ---- hashing -------------------------------------------------------------- */

static uint64_t be8(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be8(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* be8(DSHA256(key | a NUL | b NUL | c)), b and c optional. */
static uint64_t dsha_be8(const uint8_t key[32], const char *a, const char *bs, const uint8_t *c,
                         size_t clen)
{
    crypto_hash_sha256_state st;
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, key, 32);
    crypto_hash_sha256_update(&st, (const uint8_t *)a, strlen(a) + 1);
    if (bs != NULL)
        crypto_hash_sha256_update(&st, (const uint8_t *)bs, strlen(bs) + 1);
    if (c != NULL)
        crypto_hash_sha256_update(&st, c, clen);
    crypto_hash_sha256_final(&st, h);
    crypto_hash_sha256(h, h, sizeof(h));
    return be8(h);
}

uint32_t wb_addrbook_new_bucket(const wb_addrbook_t *b, const wb_netaddr_t *addr,
                                const wb_netaddr_t *src)
{
    char ga[WB_NETADDR_GROUPLEN], gs[WB_NETADDR_GROUPLEN];
    uint8_t h8[8];
    wb_netaddr_group(addr, b->cfg.strict, ga);
    wb_netaddr_group(src, b->cfg.strict, gs);
    uint64_t h = dsha_be8(b->key, ga, gs, NULL, 0) % WB_ADDRBOOK_NEW_BUCKETS_PER_GROUP;
    put_be8(h8, h);
    return (uint32_t)(dsha_be8(b->key, gs, NULL, h8, 8) % WB_ADDRBOOK_NEW_BUCKETS);
}

uint32_t wb_addrbook_old_bucket(const wb_addrbook_t *b, const wb_netaddr_t *addr)
{
    char text[WB_NETADDR_STRLEN], ga[WB_NETADDR_GROUPLEN];
    uint8_t h8[8];
    wb_netaddr_str(addr, 1, text, sizeof(text));
    wb_netaddr_group(addr, b->cfg.strict, ga);
    uint64_t h = dsha_be8(b->key, text, NULL, NULL, 0) % WB_ADDRBOOK_OLD_BUCKETS_PER_GROUP;
    put_be8(h8, h);
    return (uint32_t)(dsha_be8(b->key, ga, NULL, h8, 8) % WB_ADDRBOOK_OLD_BUCKETS);
}

/* ---- the id index --------------------------------------------------------- */

static uint32_t home(const wb_addrbook_t *b, const uint8_t id[32])
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, id, 32, b->hkey);
    return (uint32_t)be8(h) & (b->nslots - 1);
}

/* The slot holding id, or the empty slot where it would go. */
static uint32_t slot_of(const wb_addrbook_t *b, const uint8_t id[32])
{
    uint32_t mask = b->nslots - 1, i = home(b, id);
    while (b->slots[i] != 0 && memcmp(b->recs[b->slots[i] - 1].addr.id, id, 32) != 0)
        i = (i + 1) & mask;
    return i;
}

static int64_t find(const wb_addrbook_t *b, const uint8_t id[32])
{
    uint32_t s = slot_of(b, id);
    return b->slots[s] ? (int64_t)b->slots[s] - 1 : -1;
}

static int index_grow(wb_addrbook_t *b)
{
    uint32_t ns = b->nslots * 2;
    uint32_t *old = b->slots, on = b->nslots;
    uint32_t *slots = calloc(ns, sizeof(*slots));
    if (slots == NULL)
        return WB_ENOMEM;
    b->slots = slots;
    b->nslots = ns;
    for (uint32_t i = 0; i < on; i++)
        if (old[i] != 0)
            b->slots[slot_of(b, b->recs[old[i] - 1].addr.id)] = old[i];
    free(old);
    return 0;
}

static void index_del(wb_addrbook_t *b, uint32_t i)
{
    uint32_t mask = b->nslots - 1, j = i;
    b->slots[i] = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (b->slots[j] == 0)
            return;
        uint32_t k = home(b, b->recs[b->slots[j] - 1].addr.id);
        /* Leave slots[j] where it is if its home lies cyclically in (i, j]. */
        int stays = i <= j ? (k > i && k <= j) : (k > i || k <= j);
        if (!stays) {
            b->slots[i] = b->slots[j];
            b->slots[j] = 0;
            i = j;
        }
    }
}

/* ---- buckets and records -------------------------------------------------- */

static bucket_t *bucket(wb_addrbook_t *b, int type, uint32_t k)
{
    return type == WB_ADDRBOOK_OLD ? &b->oldb[k] : &b->newb[k];
}

static void bucket_add(wb_addrbook_t *b, int type, uint32_t k, uint32_t idx)
{
    bucket_t *bk = bucket(b, type, k);
    assert(bk->n < WB_ADDRBOOK_BUCKET_SIZE);
    if (bk->n == 0)
        (*(type == WB_ADDRBOOK_OLD ? &b->old_used : &b->new_used))++;
    bk->e[bk->n++] = idx;
}

static void bucket_del(wb_addrbook_t *b, int type, uint32_t k, uint32_t idx)
{
    bucket_t *bk = bucket(b, type, k);
    for (uint32_t i = 0; i < bk->n; i++) {
        if (bk->e[i] == idx) {
            bk->e[i] = bk->e[--bk->n];
            if (bk->n == 0)
                (*(type == WB_ADDRBOOK_OLD ? &b->old_used : &b->new_used))--;
            return;
        }
    }
    assert(!"record not in its bucket");
}

static void bucket_renumber(wb_addrbook_t *b, int type, uint32_t k, uint32_t from, uint32_t to)
{
    bucket_t *bk = bucket(b, type, k);
    for (uint32_t i = 0; i < bk->n; i++)
        if (bk->e[i] == from)
            bk->e[i] = to;
}

static int in_bucket(const wb_addrbook_rec_t *r, uint32_t k)
{
    for (uint32_t i = 0; i < r->nbuckets; i++)
        if (r->buckets[i] == k)
            return 1;
    return 0;
}

static void changed(wb_addrbook_t *b, const wb_addrbook_rec_t *r, int removed)
{
    if (b->cfg.changed != NULL)
        b->cfg.changed(b->cfg.changed_arg, r, removed);
}

static int reserve(wb_addrbook_t *b)
{
    if (b->n == b->cap) {
        uint32_t nc = b->cap ? b->cap * 2 : 64;
        wb_addrbook_rec_t *r = realloc(b->recs, nc * sizeof(*r));
        if (r == NULL)
            return WB_ENOMEM;
        b->recs = r;
        uint32_t *s = realloc(b->scratch, nc * sizeof(*s));
        if (s == NULL)
            return WB_ENOMEM;
        b->scratch = s;
        b->cap = nc;
    }
    if ((b->n + 1) * 2 > b->nslots)
        return index_grow(b);
    return 0;
}

/* Append r (its buckets not yet holding it); returns its index. reserve()
 * must have succeeded. */
static uint32_t rec_insert(wb_addrbook_t *b, const wb_addrbook_rec_t *r)
{
    uint32_t idx = b->n++;
    b->recs[idx] = *r;
    b->slots[slot_of(b, r->addr.id)] = idx + 1;
    (*(r->type == WB_ADDRBOOK_OLD ? &b->n_old : &b->n_new))++;
    for (uint32_t i = 0; i < r->nbuckets; i++)
        bucket_add(b, r->type, r->buckets[i], idx);
    return idx;
}

/* Remove record idx from its buckets and the book; report it. */
static void rec_delete(wb_addrbook_t *b, uint32_t idx)
{
    wb_addrbook_rec_t gone = b->recs[idx];
    for (uint32_t i = 0; i < gone.nbuckets; i++)
        bucket_del(b, gone.type, gone.buckets[i], idx);
    (*(gone.type == WB_ADDRBOOK_OLD ? &b->n_old : &b->n_new))--;
    index_del(b, slot_of(b, gone.addr.id));
    uint32_t last = b->n - 1;
    if (idx != last) {
        wb_addrbook_rec_t *m = &b->recs[last];
        for (uint32_t i = 0; i < m->nbuckets; i++)
            bucket_renumber(b, m->type, m->buckets[i], last, idx);
        b->slots[slot_of(b, m->addr.id)] = idx + 1;
        b->recs[idx] = *m;
    }
    b->n--;
    gone.nbuckets = 0;
    changed(b, &gone, 1);
}

/* Take record idx out of new bucket k; a record left in no bucket goes. */
static void new_unlink(wb_addrbook_t *b, uint32_t idx, uint32_t k)
{
    wb_addrbook_rec_t *r = &b->recs[idx];
    bucket_del(b, WB_ADDRBOOK_NEW, k, idx);
    for (uint32_t i = 0; i < r->nbuckets; i++) {
        if (r->buckets[i] == k) {
            r->buckets[i] = r->buckets[--r->nbuckets];
            break;
        }
    }
    if (r->nbuckets == 0) {
        rec_delete(b, idx);
    } else {
        changed(b, r, 0);
    }
}

/* Make room in full new bucket k: a bad entry goes, else the one tried
 * longest ago. Indexes may move. */
static void expire_new(wb_addrbook_t *b, uint32_t k, int64_t now)
{
    bucket_t *bk = &b->newb[k];
    uint32_t victim = bk->e[0];
    for (uint32_t i = 0; i < bk->n; i++) {
        const wb_addrbook_rec_t *r = &b->recs[bk->e[i]];
        if (wb_addrbook_rec_is_bad(r, now)) {
            victim = bk->e[i];
            break;
        }
        if (r->last_attempt < b->recs[victim].last_attempt)
            victim = bk->e[i];
    }
    new_unlink(b, victim, k);
}

/* Put existing record id into new bucket k (expiring another if full).
 * The record must be new and not in k. */
static void new_link(wb_addrbook_t *b, const uint8_t id[32], uint32_t k, int64_t now)
{
    if (b->newb[k].n >= WB_ADDRBOOK_BUCKET_SIZE)
        expire_new(b, k, now);
    int64_t idx = find(b, id);
    assert(idx >= 0);
    wb_addrbook_rec_t *r = &b->recs[idx];
    assert(r->type == WB_ADDRBOOK_NEW && r->nbuckets < WB_ADDRBOOK_MAX_NEW_PER_ADDR);
    r->buckets[r->nbuckets++] = (uint16_t)k;
    bucket_add(b, WB_ADDRBOOK_NEW, k, (uint32_t)idx);
}

/* ---- lifecycle ------------------------------------------------------------ */

void wb_addrbook_config_init(wb_addrbook_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
}

int wb_addrbook_new(const wb_addrbook_config_t *cfg, wb_addrbook_t **out)
{
    *out = NULL;
    if (sodium_init() < 0)
        return WB_ENOMEM;
    wb_addrbook_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return WB_ENOMEM;
    if (cfg != NULL)
        b->cfg = *cfg;
    if (b->cfg.max_entries == 0 || b->cfg.max_entries > WB_ADDRBOOK_MAX_ENTRIES)
        b->cfg.max_entries = WB_ADDRBOOK_MAX_ENTRIES;
    if (b->cfg.ban_ms == 0)
        b->cfg.ban_ms = WB_ADDRBOOK_DEFAULT_BAN_MS;
    if (b->cfg.max_bans == 0)
        b->cfg.max_bans = WB_ADDRBOOK_DEFAULT_MAX_BANS;
    b->cfg.key = NULL;
    if (b->cfg.seed != 0) {
        uint64_t x = b->cfg.seed;
        for (int i = 0; i < 4; i++)
            b->s[i] = splitmix64(&x);
        for (int i = 0; i < 4; i++)
            put_be8(b->key + 8 * i, next64(b));
    } else {
        do
            randombytes_buf(b->s, sizeof(b->s));
        while ((b->s[0] | b->s[1] | b->s[2] | b->s[3]) == 0);
        randombytes_buf(b->key, sizeof(b->key));
    }
    put_be8(b->hkey, next64(b));
    put_be8(b->hkey + 8, next64(b));
    if (cfg != NULL && cfg->key != NULL)
        memcpy(b->key, cfg->key, 32);
    b->nslots = 64;
    b->slots = calloc(b->nslots, sizeof(*b->slots));
    b->bans = calloc(b->cfg.max_bans, sizeof(*b->bans));
    if (b->slots == NULL || b->bans == NULL) {
        wb_addrbook_free(b);
        return WB_ENOMEM;
    }
    *out = b;
    return 0;
}

void wb_addrbook_free(wb_addrbook_t *b)
{
    if (b == NULL)
        return;
    sodium_memzero(b->key, sizeof(b->key));
    free(b->recs);
    free(b->scratch);
    free(b->slots);
    free(b->own);
    free(b->own_addr);
    free(b->bans);
    free(b);
}

void wb_addrbook_set_hook(wb_addrbook_t *b, wb_addrbook_changed_cb cb, void *arg)
{
    b->cfg.changed = cb;
    b->cfg.changed_arg = arg;
}

void wb_addrbook_key(const wb_addrbook_t *b, uint8_t key[32])
{
    memcpy(key, b->key, 32);
}

int wb_addrbook_set_key(wb_addrbook_t *b, const uint8_t key[32])
{
    if (b->n != 0)
        return WB_ESTATE;
    memcpy(b->key, key, 32);
    return 0;
}

/* ---- own ids and bans ----------------------------------------------------- */

int wb_addrbook_is_own(const wb_addrbook_t *b, const uint8_t id[32])
{
    for (size_t i = 0; i < b->nown; i++)
        if (memcmp(b->own[i], id, 32) == 0)
            return 1;
    return 0;
}

int wb_addrbook_add_own(wb_addrbook_t *b, const uint8_t id[32])
{
    if (!wb_addrbook_is_own(b, id)) {
        uint8_t(*o)[32] = realloc(b->own, (b->nown + 1) * sizeof(*o));
        if (o == NULL)
            return WB_ENOMEM;
        b->own = o;
        memcpy(b->own[b->nown++], id, 32);
    }
    int64_t idx = find(b, id);
    if (idx >= 0)
        rec_delete(b, (uint32_t)idx);
    return 0;
}

int wb_addrbook_is_own_addr(const wb_addrbook_t *b, const wb_netaddr_t *addr)
{
    for (size_t i = 0; i < b->nown_addr; i++)
        if (wb_netaddr_same_endpoint(&b->own_addr[i], addr))
            return 1;
    return 0;
}

int wb_addrbook_add_own_addr(wb_addrbook_t *b, const wb_netaddr_t *addr)
{
    if (!wb_addrbook_is_own_addr(b, addr)) {
        wb_netaddr_t *o = realloc(b->own_addr, (b->nown_addr + 1) * sizeof(*o));
        if (o == NULL)
            return WB_ENOMEM;
        b->own_addr = o;
        o[b->nown_addr] = *addr;
        memset(o[b->nown_addr].id, 0, 32);
        o[b->nown_addr].has_id = 0;
        if (addr->family == 4)
            memset(o[b->nown_addr].ip + 4, 0, 12);
        b->nown_addr++;
    }
    for (uint32_t i = b->n; i-- > 0;)
        if (wb_netaddr_same_endpoint(&b->recs[i].addr, addr))
            rec_delete(b, i);
    return 0;
}

int wb_addrbook_is_banned(const wb_addrbook_t *b, const uint8_t id[32], int64_t now)
{
    for (size_t i = 0; i < b->nbans; i++)
        if (b->bans[i].until > now && memcmp(b->bans[i].id, id, 32) == 0)
            return 1;
    return 0;
}

static void ban(wb_addrbook_t *b, const uint8_t id[32], int64_t until)
{
    size_t slot = b->nbans, soonest = 0;
    for (size_t i = 0; i < b->nbans; i++) {
        if (memcmp(b->bans[i].id, id, 32) == 0) {
            slot = i;
            break;
        }
        if (b->bans[i].until < b->bans[soonest].until)
            soonest = i;
    }
    if (slot == b->nbans) {
        if (b->nbans < b->cfg.max_bans)
            b->nbans++;
        else
            slot = soonest;
    } else if (b->bans[slot].until > until) {
        return;
    }
    memcpy(b->bans[slot].id, id, 32);
    b->bans[slot].until = until;
}

/* ---- the rules ------------------------------------------------------------ */

int wb_addrbook_rec_is_bad(const wb_addrbook_rec_t *r, int64_t now)
{
    if (r->type == WB_ADDRBOOK_OLD)
        return 0;
    if (r->last_attempt != 0 && r->last_attempt > now - MINUTE_MS)
        return 0;
    if (r->last_seen > now + 10 * MINUTE_MS)
        return 1;
    if (r->last_seen < now - MISSING_DAYS * DAY_MS)
        return 1;
    if (r->last_success == 0 && r->attempts >= NUM_RETRIES)
        return 1;
    if (r->last_success < now - MIN_BAD_DAYS * DAY_MS && r->attempts >= MAX_FAILURES)
        return 1;
    return 0;
}

static int acceptable(const wb_addrbook_t *b, const wb_netaddr_t *a)
{
    if (!a->has_id || a->port == 0 || !wb_netaddr_valid(a))
        return 0;
    if (b->cfg.strict && !wb_netaddr_routable(a))
        return 0;
    return !wb_addrbook_is_own(b, a->id) && !wb_addrbook_is_own_addr(b, a);
}

int wb_addrbook_add(wb_addrbook_t *b, const wb_netaddr_t *addr, const wb_netaddr_t *src,
                    int64_t now)
{
    if (!acceptable(b, addr) || wb_addrbook_is_banned(b, addr->id, now))
        return WB_EINVAL;
    int64_t idx = find(b, addr->id);
    if (idx >= 0) {
        wb_addrbook_rec_t *r = &b->recs[idx];
        if (r->type == WB_ADDRBOOK_OLD)
            return 0;
        r->last_seen = now;
        if (r->nbuckets < WB_ADDRBOOK_MAX_NEW_PER_ADDR &&
            wb_addrbook_rand(b, 2 * (uint64_t)r->nbuckets) == 0) {
            uint32_t k = wb_addrbook_new_bucket(b, &r->addr, src);
            if (!in_bucket(r, k)) {
                new_link(b, addr->id, k, now);
                idx = find(b, addr->id);
            }
        }
        changed(b, &b->recs[idx], 0);
        return 0;
    }
    uint32_t k = wb_addrbook_new_bucket(b, addr, src);
    if (b->newb[k].n >= WB_ADDRBOOK_BUCKET_SIZE)
        expire_new(b, k, now);
    if (b->n >= b->cfg.max_entries)
        return WB_EFULL;
    int rc = reserve(b);
    if (rc != 0)
        return rc;
    wb_addrbook_rec_t r;
    memset(&r, 0, sizeof(r));
    r.addr = *addr;
    if (r.addr.family == 4)
        memset(r.addr.ip + 4, 0, 12);
    /* Keep only what the source's text keeps (what persists). */
    if (src->family == 4 || src->family == 6) {
        r.src = *src;
        if (!r.src.has_id)
            memset(r.src.id, 0, sizeof(r.src.id));
    }
    r.last_seen = now;
    r.type = WB_ADDRBOOK_NEW;
    r.nbuckets = 1;
    r.buckets[0] = (uint16_t)k;
    changed(b, &b->recs[rec_insert(b, &r)], 0);
    return 1;
}

int wb_addrbook_mark_attempt(wb_addrbook_t *b, const uint8_t id[32], int64_t now)
{
    int64_t idx = find(b, id);
    if (idx < 0)
        return WB_ENOENT;
    wb_addrbook_rec_t *r = &b->recs[idx];
    r->last_attempt = now;
    if (r->attempts < UINT32_MAX)
        r->attempts++;
    if (r->attempts > WB_ADDRBOOK_MAX_ATTEMPTS) {
        wb_addrbook_mark_bad(b, id, now);
        return 1;
    }
    changed(b, r, 0);
    return 0;
}

int wb_addrbook_mark_good(wb_addrbook_t *b, const uint8_t id[32], int64_t now)
{
    int64_t idx = find(b, id);
    if (idx < 0)
        return WB_ENOENT;
    wb_addrbook_rec_t *r = &b->recs[idx];
    r->last_attempt = r->last_success = now;
    r->attempts = 0;
    if (r->type == WB_ADDRBOOK_OLD) {
        changed(b, r, 0);
        return 0;
    }
    /* Out of every new bucket, into its old one. */
    for (uint32_t i = 0; i < r->nbuckets; i++)
        bucket_del(b, WB_ADDRBOOK_NEW, r->buckets[i], (uint32_t)idx);
    uint32_t ok = wb_addrbook_old_bucket(b, &r->addr);
    bucket_t *ob = &b->oldb[ok];
    int64_t demoted = -1;
    if (ob->n >= WB_ADDRBOOK_BUCKET_SIZE) {
        uint32_t oldest = ob->e[0];
        for (uint32_t i = 1; i < ob->n; i++)
            if (b->recs[ob->e[i]].last_attempt < b->recs[oldest].last_attempt)
                oldest = ob->e[i];
        bucket_del(b, WB_ADDRBOOK_OLD, ok, oldest);
        wb_addrbook_rec_t *d = &b->recs[oldest];
        d->type = WB_ADDRBOOK_NEW;
        d->nbuckets = 0;
        b->n_old--;
        b->n_new++;
        demoted = oldest;
    }
    r->type = WB_ADDRBOOK_OLD;
    r->nbuckets = 1;
    r->buckets[0] = (uint16_t)ok;
    b->n_new--;
    b->n_old++;
    bucket_add(b, WB_ADDRBOOK_OLD, ok, (uint32_t)idx);
    changed(b, r, 0);
    if (demoted >= 0) {
        /* Back to a new bucket, as if its source had told us again. */
        wb_addrbook_rec_t *d = &b->recs[demoted];
        uint8_t did[32];
        memcpy(did, d->addr.id, 32);
        new_link(b, did, wb_addrbook_new_bucket(b, &d->addr, &d->src), now);
        changed(b, &b->recs[find(b, did)], 0);
    }
    return 0;
}

int wb_addrbook_mark_bad(wb_addrbook_t *b, const uint8_t id[32], int64_t now)
{
    ban(b, id, now + (int64_t)b->cfg.ban_ms);
    return wb_addrbook_remove(b, id);
}

int wb_addrbook_remove(wb_addrbook_t *b, const uint8_t id[32])
{
    int64_t idx = find(b, id);
    if (idx < 0)
        return WB_ENOENT;
    rec_delete(b, (uint32_t)idx);
    return 0;
}

int wb_addrbook_has(const wb_addrbook_t *b, const uint8_t id[32])
{
    return find(b, id) >= 0;
}

int wb_addrbook_lookup(const wb_addrbook_t *b, const uint8_t id[32], wb_addrbook_rec_t *out)
{
    int64_t idx = find(b, id);
    if (idx < 0)
        return WB_ENOENT;
    *out = b->recs[idx];
    return 0;
}

int64_t wb_addrbook_next_dial(const wb_addrbook_t *b, const wb_addrbook_rec_t *r)
{
    if (r->attempts == 0)
        return 0;
    uint32_t a = r->attempts > WB_ADDRBOOK_MAX_ATTEMPTS ? WB_ADDRBOOK_MAX_ATTEMPTS : r->attempts;
    uint8_t in[36], h[crypto_shorthash_BYTES];
    memcpy(in, r->addr.id, 32);
    in[32] = (uint8_t)(a >> 24);
    in[33] = (uint8_t)(a >> 16);
    in[34] = (uint8_t)(a >> 8);
    in[35] = (uint8_t)a;
    crypto_shorthash(h, in, sizeof(in), b->hkey);
    return r->last_attempt + ((int64_t)1000 << a) + (int64_t)(be8(h) % 1000);
}

/* ---- choosing ------------------------------------------------------------- */

static int excluded(wb_addrbook_exclude_cb ex, void *arg, const wb_addrbook_rec_t *r)
{
    return ex != NULL && ex(arg, r);
}

/* A uniformly random non-empty bucket of type, or -1. */
static int64_t random_bucket(wb_addrbook_t *b, int type)
{
    uint32_t used = type == WB_ADDRBOOK_OLD ? b->old_used : b->new_used;
    uint32_t nb = type == WB_ADDRBOOK_OLD ? WB_ADDRBOOK_OLD_BUCKETS : WB_ADDRBOOK_NEW_BUCKETS;
    if (used == 0)
        return -1;
    uint64_t want = wb_addrbook_rand(b, used);
    for (uint32_t k = 0; k < nb; k++)
        if (bucket(b, type, k)->n > 0 && want-- == 0)
            return k;
    return -1;
}

/* First acceptable record of type, scanning from a random place. */
static int64_t scan_kind(wb_addrbook_t *b, int type, wb_addrbook_exclude_cb ex, void *arg)
{
    uint32_t start = (uint32_t)wb_addrbook_rand(b, b->n);
    for (uint32_t i = 0; i < b->n; i++) {
        uint32_t idx = (start + i) % b->n;
        if (b->recs[idx].type == type && !excluded(ex, arg, &b->recs[idx]))
            return idx;
    }
    return -1;
}

int wb_addrbook_pick(wb_addrbook_t *b, int bias_new, wb_addrbook_exclude_cb exclude, void *arg,
                     wb_addrbook_rec_t *out)
{
    if (b->n == 0)
        return WB_ENOENT;
    if (bias_new < 0)
        bias_new = 0;
    if (bias_new > 100)
        bias_new = 100;
    double w_old = sqrt_count(b->n_old) * (100 - bias_new);
    double w_new = sqrt_count(b->n_new) * bias_new;
    int type;
    if (w_old + w_new <= 0)
        type = b->n_new > 0 ? WB_ADDRBOOK_NEW : WB_ADDRBOOK_OLD;
    else
        type = rand_unit(b) * (w_old + w_new) < w_new ? WB_ADDRBOOK_NEW : WB_ADDRBOOK_OLD;
    for (int t = 0; t < PICK_TRIES; t++) {
        int64_t k = random_bucket(b, type);
        if (k < 0)
            break;
        bucket_t *bk = bucket(b, type, (uint32_t)k);
        const wb_addrbook_rec_t *r = &b->recs[bk->e[wb_addrbook_rand(b, bk->n)]];
        if (!excluded(exclude, arg, r)) {
            *out = *r;
            return 0;
        }
    }
    int64_t idx = scan_kind(b, type, exclude, arg);
    if (idx < 0)
        idx =
            scan_kind(b, type == WB_ADDRBOOK_NEW ? WB_ADDRBOOK_OLD : WB_ADDRBOOK_NEW, exclude, arg);
    if (idx < 0)
        return WB_ENOENT;
    *out = b->recs[idx];
    return 0;
}

static size_t selection_size(const wb_addrbook_t *b, size_t max)
{
    size_t size = b->n;
    size_t n = size < WB_ADDRBOOK_MIN_SELECTION ? size : WB_ADDRBOOK_MIN_SELECTION;
    size_t pct = size * WB_ADDRBOOK_SELECTION_PERCENT / 100;
    if (pct > n)
        n = pct;
    if (n > WB_ADDRBOOK_MAX_SELECTION)
        n = WB_ADDRBOOK_MAX_SELECTION;
    return n < max ? n : max;
}

/* Partial Fisher-Yates over scratch[*pos, end): take acceptable records
 * into out until *got reaches want. */
static void take_from(wb_addrbook_t *b, uint32_t *pos, uint32_t end, wb_addrbook_exclude_cb ex,
                      void *arg, wb_netaddr_t *out, size_t *got, size_t want)
{
    uint32_t *s = b->scratch;
    while (*got < want && *pos < end) {
        uint32_t i = *pos, j = i + (uint32_t)wb_addrbook_rand(b, end - i);
        uint32_t t = s[i];
        s[i] = s[j];
        s[j] = t;
        (*pos)++;
        if (!excluded(ex, arg, &b->recs[s[i]]))
            out[(*got)++] = b->recs[s[i]].addr;
    }
}

size_t wb_addrbook_selection(wb_addrbook_t *b, wb_addrbook_exclude_cb exclude, void *arg,
                             wb_netaddr_t *out, size_t max)
{
    size_t want = selection_size(b, max), got = 0;
    uint32_t pos = 0;
    for (uint32_t i = 0; i < b->n; i++)
        b->scratch[i] = i;
    take_from(b, &pos, b->n, exclude, arg, out, &got, want);
    return got;
}

size_t wb_addrbook_selection_with_bias(wb_addrbook_t *b, int bias_new,
                                       wb_addrbook_exclude_cb exclude, void *arg, wb_netaddr_t *out,
                                       size_t max)
{
    if (bias_new < 0)
        bias_new = 0;
    if (bias_new > 100)
        bias_new = 100;
    size_t want = selection_size(b, max), got = 0;
    size_t want_new = want * (size_t)bias_new / 100;
    if (want > b->n_old && want - b->n_old > want_new)
        want_new = want - b->n_old;
    /* New records' indexes first, then old ones'. */
    uint32_t nn = 0, no = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->recs[i].type == WB_ADDRBOOK_NEW)
            b->scratch[nn++] = i;
    }
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->recs[i].type == WB_ADDRBOOK_OLD)
            b->scratch[nn + no++] = i;
    }
    uint32_t pn = 0, po = nn;
    take_from(b, &pn, nn, exclude, arg, out, &got, want_new < want ? want_new : want);
    take_from(b, &po, nn + no, exclude, arg, out, &got, want);
    take_from(b, &pn, nn, exclude, arg, out, &got, want);
    for (size_t i = got; i > 1; i--) {
        size_t j = (size_t)wb_addrbook_rand(b, i);
        wb_netaddr_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
    return got;
}

size_t wb_addrbook_list(const wb_addrbook_t *b, wb_addrbook_rec_t *out, size_t max)
{
    size_t n = b->n < max ? b->n : max;
    if (n > 0)
        memcpy(out, b->recs, n * sizeof(*out));
    return n;
}

size_t wb_addrbook_size(const wb_addrbook_t *b)
{
    return b->n;
}

size_t wb_addrbook_n_new(const wb_addrbook_t *b)
{
    return b->n_new;
}

size_t wb_addrbook_n_old(const wb_addrbook_t *b)
{
    return b->n_old;
}

int wb_addrbook_need_more(const wb_addrbook_t *b)
{
    return b->n < WB_ADDRBOOK_NEED_ADDRESSES;
}

/* ---- loading -------------------------------------------------------------- */

int wb_addrbook_load(wb_addrbook_t *b, const wb_addrbook_rec_t *in)
{
    if (find(b, in->addr.id) >= 0)
        return WB_EEXIST;
    wb_addrbook_rec_t r = *in;
    if (!acceptable(b, &r.addr) || (r.type != WB_ADDRBOOK_NEW && r.type != WB_ADDRBOOK_OLD) ||
        b->n >= b->cfg.max_entries) {
        changed(b, in, 1);
        return WB_EINVAL;
    }
    int rc = reserve(b);
    if (rc != 0)
        return rc;
    int moved = 0;
    if (r.type == WB_ADDRBOOK_OLD) {
        uint32_t ok = wb_addrbook_old_bucket(b, &r.addr);
        if (b->oldb[ok].n < WB_ADDRBOOK_BUCKET_SIZE) {
            moved = !(r.nbuckets == 1 && r.buckets[0] == ok);
            r.nbuckets = 1;
            r.buckets[0] = (uint16_t)ok;
        } else {
            r.type = WB_ADDRBOOK_NEW;
            r.nbuckets = 0;
            moved = 1;
        }
    } else {
        uint8_t keep = 0;
        uint8_t nb = r.nbuckets <= WB_ADDRBOOK_MAX_NEW_PER_ADDR ? r.nbuckets : 0;
        moved = nb != r.nbuckets;
        for (uint8_t i = 0; i < nb; i++) {
            uint16_t k = r.buckets[i];
            int dup = 0;
            for (uint8_t j = 0; j < keep; j++)
                dup |= r.buckets[j] == k;
            if (k >= WB_ADDRBOOK_NEW_BUCKETS || dup || b->newb[k].n >= WB_ADDRBOOK_BUCKET_SIZE) {
                moved = 1;
                continue;
            }
            r.buckets[keep++] = k;
        }
        r.nbuckets = keep;
    }
    if (r.type == WB_ADDRBOOK_NEW && r.nbuckets == 0) {
        uint32_t k = wb_addrbook_new_bucket(b, &r.addr, &r.src);
        if (b->newb[k].n >= WB_ADDRBOOK_BUCKET_SIZE) {
            changed(b, in, 1);
            return WB_EINVAL;
        }
        r.nbuckets = 1;
        r.buckets[0] = (uint16_t)k;
    }
    for (uint8_t i = r.nbuckets; i < WB_ADDRBOOK_MAX_NEW_PER_ADDR; i++)
        r.buckets[i] = 0;
    uint32_t idx = rec_insert(b, &r);
    if (moved)
        changed(b, &b->recs[idx], 0);
    return 0;
}
