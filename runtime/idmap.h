/*
 * idmap.h - a map from non-zero 64-bit ids to pointers.
 *
 * Open addressing with linear probing and backward-shift deletion, so lookups
 * never walk tombstones; grows at 50% load, never shrinks below its start.
 * Used for actors, timers and, in dispatch/, reply and conversation handlers.
 *
 * Not thread-safe: each map belongs to one thread (that is the runtime's rule
 * for all state). The map does not own the values.
 */
#ifndef WB_IDMAP_H
#define WB_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t key; /* 0 = free slot */
    void *val;
} wb_idmap_slot_t;

typedef struct {
    wb_idmap_slot_t *slots;
    size_t cap; /* power of two, or 0 before the first insert */
    size_t count;
} wb_idmap_t;

void wb_idmap_init(wb_idmap_t *m);
void wb_idmap_fini(wb_idmap_t *m);

/* Insert or replace. Returns 0, WB_EINVAL for key 0, or WB_ENOMEM. */
int wb_idmap_put(wb_idmap_t *m, uint64_t key, void *val);

/* The value for key, or NULL. */
void *wb_idmap_get(const wb_idmap_t *m, uint64_t key);

/* Remove key and return its value (NULL when absent). */
void *wb_idmap_del(wb_idmap_t *m, uint64_t key);

static inline size_t wb_idmap_count(const wb_idmap_t *m)
{
    return m->count;
}

/* Visit every entry; the callback must not change the map. */
void wb_idmap_each(const wb_idmap_t *m, void (*cb)(uint64_t key, void *val, void *arg), void *arg);

#endif
