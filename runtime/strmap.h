/*
 * strmap.h - a hash map from byte strings to pointers, for one thread.
 *
 * Keys are copied into the map; values are the caller's. Hashing is keyed
 * SipHash (libsodium's crypto_shorthash) with a random key per map, so a
 * peer who picks the keys (nameplates, mailbox ids) cannot pile them into one
 * bucket. Chained buckets; the table doubles past one entry per bucket and
 * halves below one per eight, so memory follows the live count.
 */
#ifndef WB_STRMAP_H
#define WB_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct wb_strmap_ent_s wb_strmap_ent_t;

typedef struct {
    wb_strmap_ent_t **buckets;
    size_t nbuckets; /* a power of two, or 0 before the first put */
    size_t count;
    uint8_t key[16]; /* SipHash key */
} wb_strmap_t;

/* An empty map (allocates nothing yet). */
void wb_strmap_init(wb_strmap_t *m);
/* Free the map's entries (not the values). The map is empty afterwards. */
void wb_strmap_fini(wb_strmap_t *m);

/* The value stored under key[0..len), or NULL. */
void *wb_strmap_get(const wb_strmap_t *m, const void *key, size_t len);
/* Store val under key (replacing any value). Returns 0 or WB_ENOMEM. */
int wb_strmap_put(wb_strmap_t *m, const void *key, size_t len, void *val);
/* Remove key; returns the value it had, or NULL. */
void *wb_strmap_del(wb_strmap_t *m, const void *key, size_t len);

static inline size_t wb_strmap_count(const wb_strmap_t *m)
{
    return m->count;
}

/* Visit every entry, in no particular order. The map must not change
 * during the walk (collect first, then delete). fn returns nonzero to stop. */
typedef int (*wb_strmap_visit_cb)(void *arg, const void *key, size_t len, void *val);
void wb_strmap_each(wb_strmap_t *m, wb_strmap_visit_cb fn, void *arg);

#endif
