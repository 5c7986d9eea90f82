/*
 * timerheap.h - a binary min-heap of deadlines, with O(log n) removal.
 *
 * Sans-io: it knows no clock. The caller says what time it is; entries with
 * equal deadlines come out in the order they went in. Each entry remembers its
 * own heap index, so cancelling any of thousands of timers is cheap.
 *
 * Not thread-safe; the runtime keeps one on the actor thread. The heap does
 * not own its entries.
 */
#ifndef WB_TIMERHEAP_H
#define WB_TIMERHEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t deadline; /* milliseconds on the caller's clock */
    uint64_t seq;      /* insertion order, breaks ties */
    size_t index;      /* position in the heap; SIZE_MAX when not in it */
} wb_theap_entry_t;

typedef struct {
    wb_theap_entry_t **v;
    size_t n, cap;
    uint64_t seq;
} wb_theap_t;

void wb_theap_init(wb_theap_t *h);
void wb_theap_fini(wb_theap_t *h);

/* Insert e with e->deadline set. Returns 0 or WB_ENOMEM. */
int wb_theap_push(wb_theap_t *h, wb_theap_entry_t *e);

/* Remove e, which must be in the heap. */
void wb_theap_remove(wb_theap_t *h, wb_theap_entry_t *e);

/* The earliest entry, or NULL. */
static inline wb_theap_entry_t *wb_theap_peek(const wb_theap_t *h)
{
    return h->n ? h->v[0] : NULL;
}

/* Remove and return the earliest entry whose deadline is <= now, or NULL. */
wb_theap_entry_t *wb_theap_pop_due(wb_theap_t *h, uint64_t now);

static inline size_t wb_theap_count(const wb_theap_t *h)
{
    return h->n;
}

#endif
