/*
 * addrbook.h - the address book: the peers we know of, kept so that no one
 * source can fill it (btcd's address manager as tendermint uses it,
 * peers.md 1.7, with the intended rules where tendermint's code differs).
 *
 * One record per node id. A record is "new" (heard of, never connected)
 * and sits in 1 to 4 of 256 new buckets, or "old" (we had a good connection)
 * and sits in exactly one of 64 old buckets; each bucket holds 64. Placement
 * is salted by the book's 32-byte random key, so nobody can aim at a bucket:
 *
 *   DSHA256(x) = SHA-256(SHA-256(x)); be8(h) = first 8 bytes, big-endian
 *   new: h = be8(DSHA256(key | group(addr) NUL | group(src) NUL)) % 32
 *        bucket = be8(DSHA256(key | group(src) NUL | h as 8 bytes BE)) % 256
 *   old: h = be8(DSHA256(key | text(addr) NUL)) % 4
 *        bucket = be8(DSHA256(key | group(addr) NUL | h as 8 bytes BE)) % 64
 *
 * group() is wb_netaddr_group with the book's `strict` (masked /16 or /32),
 * text() is "ID@IP:port"; the NULs keep the concatenation unambiguous. So
 * the addresses one source group tells us land in at most 32 new buckets,
 * and one address group's vetted addresses in at most 4 old buckets.
 *
 * Rules:
 *   add(addr, src)  refused: no id, one of our own ids or endpoints, a
 *                   banned id, an invalid address or port 0, an unroutable
 *                   one when strict.
 *                   A known old record is left as it is; a known new one
 *                   gains one more new bucket (at most 4) with probability
 *                   1/(2 * its bucket count). A known id keeps its recorded
 *                   address: gossip cannot move an id to another IP
 *                   (tendermint#1581). A full bucket first loses a bad
 *                   entry, else the one with the oldest last attempt.
 *   mark_attempt    a dial was tried (attempts + 1); past
 *                   WB_ADDRBOOK_MAX_ATTEMPTS the book gives up: mark_bad.
 *   mark_good       a connection worked: attempts 0, moved to its old
 *                   bucket; when that is full its oldest entry moves back
 *                   to a new bucket (really moved, unlike tendermint).
 *   mark_bad        removed, and the id banned for ban_ms (a bounded list:
 *                   when full the ban ending soonest is forgotten).
 *   is_bad          btcd's rules: a new record not tried in the last minute
 *                   is bad when last_seen is more than 10 minutes in the
 *                   future, or 7 days past, or after 3 failures with no
 *                   success ever, or 10 failures with no success in 7 days.
 *   dial backoff    after a attempts, not before last_attempt + 2^a s plus a
 *                   jitter below 1 s (stable per id and attempt count).
 *
 * pick, selection and selection_with_bias run bounded loops (no retry
 * that can spin: tendermint's selection with bias could).
 *
 * Sans-io: no threads, no clock, no sockets. Times are wall-clock
 * milliseconds since the epoch, passed in (they are persisted, so not a
 * monotonic clock); 0 means never. Randomness comes from a generator kept
 * in the book (xoshiro256**), seeded from config.seed (0: from libsodium);
 * with a fixed seed and no key given, the key is drawn from it too, for
 * repeatable tests only.
 *
 * Persistence: write-through. When a hook is set, every change to a record
 * (created, its buckets, counters or times changed, removed) is reported
 * at once through it, after the change, with the record as it now is (or
 * as it was, its buckets cleared, when removed); the owner turns each into
 * a database request (addrbook_store.h). A hook must not call back into the book. The key is
 * not reported: the owner stores it once (wb_addrbook_key) when it created
 * the book without a stored key.
 *
 * Threads: one owner (the PEX actor); no locking.
 */
#ifndef WB_PEER_ADDRBOOK_H
#define WB_PEER_ADDRBOOK_H

#include <stddef.h>
#include <stdint.h>

#include "apps/peer/netaddr.h"

#define WB_ADDRBOOK_NEW_BUCKETS           256
#define WB_ADDRBOOK_OLD_BUCKETS           64
#define WB_ADDRBOOK_BUCKET_SIZE           64
#define WB_ADDRBOOK_NEW_BUCKETS_PER_GROUP 32
#define WB_ADDRBOOK_OLD_BUCKETS_PER_GROUP 4
#define WB_ADDRBOOK_MAX_NEW_PER_ADDR      4
#define WB_ADDRBOOK_NEED_ADDRESSES        1000 /* need_more below this size */
#define WB_ADDRBOOK_MAX_ATTEMPTS          16   /* dial attempts before giving up */
#define WB_ADDRBOOK_SELECTION_PERCENT     23
#define WB_ADDRBOOK_MIN_SELECTION         32
#define WB_ADDRBOOK_MAX_SELECTION         250
/* Every bucket slot filled by a different record: the most a book holds. */
#define WB_ADDRBOOK_MAX_ENTRIES                                                                    \
    ((WB_ADDRBOOK_NEW_BUCKETS + WB_ADDRBOOK_OLD_BUCKETS) * WB_ADDRBOOK_BUCKET_SIZE)
#define WB_ADDRBOOK_DEFAULT_BAN_MS   (24 * 3600 * 1000)
#define WB_ADDRBOOK_DEFAULT_MAX_BANS 1024

enum { WB_ADDRBOOK_NEW = 1, WB_ADDRBOOK_OLD = 2 };

typedef struct {
    wb_netaddr_t addr;    /* has_id always 1 */
    wb_netaddr_t src;     /* who told us (may lack an id) */
    uint32_t attempts;    /* dials since the last success */
    int64_t last_attempt; /* ms; 0 never */
    int64_t last_success; /* ms; 0 never */
    int64_t last_seen;    /* ms: added or last gossiped to us */
    uint8_t type;         /* WB_ADDRBOOK_NEW / _OLD */
    uint8_t nbuckets;     /* new: 1..4; old: 1 */
    uint16_t buckets[WB_ADDRBOOK_MAX_NEW_PER_ADDR];
} wb_addrbook_rec_t;

/* A change to record r (removed = 1: r is gone, r shows it as it was). r is
 * valid during the call only. */
typedef void (*wb_addrbook_changed_cb)(void *arg, const wb_addrbook_rec_t *r, int removed);

/* Nonzero: skip this record (connected, being dialed, in its backoff...). */
typedef int (*wb_addrbook_exclude_cb)(void *arg, const wb_addrbook_rec_t *r);

typedef struct {
    uint64_t seed;        /* 0: random */
    const uint8_t *key;   /* 32 bytes (copied); NULL: a new random key */
    int strict;           /* 1: only routable addresses, "local"/"unroutable" groups */
    uint32_t max_entries; /* 0: WB_ADDRBOOK_MAX_ENTRIES */
    uint32_t ban_ms;      /* mark_bad's ban (0: WB_ADDRBOOK_DEFAULT_BAN_MS) */
    uint32_t max_bans;    /* 0: WB_ADDRBOOK_DEFAULT_MAX_BANS */
    wb_addrbook_changed_cb changed;
    void *changed_arg;
} wb_addrbook_config_t;

typedef struct wb_addrbook_s wb_addrbook_t;

void wb_addrbook_config_init(wb_addrbook_config_t *cfg);

/* A new empty book (cfg NULL: defaults). 0, WB_ENOMEM. */
int wb_addrbook_new(const wb_addrbook_config_t *cfg, wb_addrbook_t **out);
void wb_addrbook_free(wb_addrbook_t *b);

void wb_addrbook_set_hook(wb_addrbook_t *b, wb_addrbook_changed_cb cb, void *arg);

/* The key (to store it), and replacing it (a stored one, loaded before any
 * record: WB_ESTATE once the book holds records). */
void wb_addrbook_key(const wb_addrbook_t *b, uint8_t key[32]);
int wb_addrbook_set_key(wb_addrbook_t *b, const uint8_t key[32]);

/* Our own ids: never added (a record already there is removed). 0,
 * WB_ENOMEM. */
int wb_addrbook_add_own(wb_addrbook_t *b, const uint8_t id[32]);
int wb_addrbook_is_own(const wb_addrbook_t *b, const uint8_t id[32]);

/* Our own endpoints (IP and port; the id ignored): a dial that reached
 * ourselves under another id (tendermint#1275). Never added, whatever id
 * comes with them; records already there are removed. 0, WB_ENOMEM. */
int wb_addrbook_add_own_addr(wb_addrbook_t *b, const wb_netaddr_t *addr);
int wb_addrbook_is_own_addr(const wb_addrbook_t *b, const wb_netaddr_t *addr);

/* Add addr, told to us by src. 1: a new record; 0: the id was known (its
 * record may have gained a bucket); WB_EINVAL: refused (see above);
 * WB_EFULL: max_entries reached; WB_ENOMEM. */
int wb_addrbook_add(wb_addrbook_t *b, const wb_netaddr_t *addr, const wb_netaddr_t *src,
                    int64_t now);

/* 0; 1 when this attempt was one too many and the record was given up
 * (mark_bad); WB_ENOENT for an unknown id. */
int wb_addrbook_mark_attempt(wb_addrbook_t *b, const uint8_t id[32], int64_t now);

/* 0 or WB_ENOENT. */
int wb_addrbook_mark_good(wb_addrbook_t *b, const uint8_t id[32], int64_t now);

/* Remove and ban until now + ban_ms. The id is banned even when unknown
 * (then WB_ENOENT, else 0). */
int wb_addrbook_mark_bad(wb_addrbook_t *b, const uint8_t id[32], int64_t now);
int wb_addrbook_is_banned(const wb_addrbook_t *b, const uint8_t id[32], int64_t now);

/* Remove without banning. 0 or WB_ENOENT. */
int wb_addrbook_remove(wb_addrbook_t *b, const uint8_t id[32]);

int wb_addrbook_has(const wb_addrbook_t *b, const uint8_t id[32]);

/* Copy the record of id. 0 or WB_ENOENT. */
int wb_addrbook_lookup(const wb_addrbook_t *b, const uint8_t id[32], wb_addrbook_rec_t *out);

/* btcd's isBad (see above); old records are never bad. */
int wb_addrbook_rec_is_bad(const wb_addrbook_rec_t *r, int64_t now);

/* Earliest time (ms) the record's address may be dialed again: 0 when never
 * attempted, else last_attempt + 2^attempts s + jitter [0, 1000) ms. */
int64_t wb_addrbook_next_dial(const wb_addrbook_t *b, const wb_addrbook_rec_t *r);

/* A random address to dial: old or new by the weights sqrt(n_old) *
 * (100 - bias_new) : sqrt(n_new) * bias_new (bias_new 0..100, clamped),
 * then a random non-empty bucket of that kind, then a random entry;
 * records exclude accepts are skipped (exclude may be NULL). When random
 * tries keep hitting excluded records, a scan from a random place takes the
 * first acceptable one (that kind first, then the other). 0 with *out, or
 * WB_ENOENT when nothing is acceptable. */
int wb_addrbook_pick(wb_addrbook_t *b, int bias_new, wb_addrbook_exclude_cb exclude, void *arg,
                     wb_addrbook_rec_t *out);

/* Addresses to answer a PEX request with: n = max(min(32, size),
 * size * 23 / 100), at most 250 and at most max, drawn uniformly without
 * repetition (partial Fisher-Yates), skipping excluded records. Returns how
 * many were written to out. */
size_t wb_addrbook_selection(wb_addrbook_t *b, wb_addrbook_exclude_cb exclude, void *arg,
                             wb_netaddr_t *out, size_t max);

/* The same n, bias_new % of it from new records and the rest from old
 * ones, the other kind making up for one that runs short; in random order. */
size_t wb_addrbook_selection_with_bias(wb_addrbook_t *b, int bias_new,
                                       wb_addrbook_exclude_cb exclude, void *arg, wb_netaddr_t *out,
                                       size_t max);

/* Copy up to max records (in no particular order): the seed's crawl list,
 * listings. Returns how many. */
size_t wb_addrbook_list(const wb_addrbook_t *b, wb_addrbook_rec_t *out, size_t max);

size_t wb_addrbook_size(const wb_addrbook_t *b);
size_t wb_addrbook_n_new(const wb_addrbook_t *b);
size_t wb_addrbook_n_old(const wb_addrbook_t *b);
int wb_addrbook_need_more(const wb_addrbook_t *b);

/* The bucket index r's address would get: new (from src) or old. */
uint32_t wb_addrbook_new_bucket(const wb_addrbook_t *b, const wb_netaddr_t *addr,
                                const wb_netaddr_t *src);
uint32_t wb_addrbook_old_bucket(const wb_addrbook_t *b, const wb_netaddr_t *addr);

/* Put back a stored record (rebuilding the book at start, after
 * wb_addrbook_set_key). Its stored buckets are kept when they are still
 * valid (in range, not repeated, room left; an old record's must be the one
 * the key gives), else placed afresh (an old record whose bucket is full
 * goes back to new) and reported through the hook. 0; WB_EINVAL for a
 * record that cannot be kept (bad address, own or banned id, no room);
 * WB_EEXIST for an id already loaded; WB_ENOMEM. */
int wb_addrbook_load(wb_addrbook_t *b, const wb_addrbook_rec_t *r);

/* Uniform random number in [0, n) from the book's generator (n > 0). */
uint64_t wb_addrbook_rand(wb_addrbook_t *b, uint64_t n);

#endif
