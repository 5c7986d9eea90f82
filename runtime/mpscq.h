/*
 * mpscq.h - the inbox queue: intrusive, multi-producer, single-consumer.
 *
 * D. Vyukov's node-based MPSC queue with Pony's idle mark: a push is one
 * atomic exchange and one release store, wait-free; the consumer pops without
 * atomic read-modify-write in the common case. The low bit of `head` says the
 * consumer has gone idle; the one push that finds it set returns 1 and must
 * wake the consumer, every other push returns 0. So a busy consumer is never
 * woken, and an idle one exactly once per empty-to-non-empty transition.
 *
 * Why our own and not liburcu's wfcqueue or Concurrency Kit's FIFOs: both are
 * written with inline assembly that ThreadSanitizer cannot see, and neither
 * has the idle mark (wfcqueue's enqueue tells whether the queue was empty,
 * but empty is not idle: it would wake a consumer that is still draining or
 * spinning). This one is C11 atomics throughout. It is not faster than
 * wfcqueue (parity within noise, tests/bench/bench_queue.c; figures in
 * docs/architecture.md): we keep it for what the tools can check.
 *
 * Threads: any thread may push; only the queue's one consumer may pop or
 * try_idle. The queue never owns memory; events are linked through their
 * `next` field.
 */
#ifndef WB_MPSCQ_H
#define WB_MPSCQ_H

#include <stdatomic.h>
#include <stdint.h>

#include "runtime/event.h"

typedef struct {
    _Atomic(uintptr_t) head; /* newest node; low bit set = consumer idle */
    char pad_[64 - sizeof(uintptr_t)];
    wb_event_t *tail; /* oldest node (or the stub); consumer only */
    wb_event_t stub;
} wb_mpscq_t;

#define WB__MPSCQ_IDLE ((uintptr_t)1)

/* Starts empty and idle: the first push asks for a wake-up. */
static inline void wb_mpscq_init(wb_mpscq_t *q)
{
    atomic_store_explicit(&q->stub.next, NULL, memory_order_relaxed);
    q->tail = &q->stub;
    atomic_store_explicit(&q->head, (uintptr_t)&q->stub | WB__MPSCQ_IDLE, memory_order_release);
}

/* Append ev. Returns 1 when the consumer was idle and must be woken. */
static inline int wb_mpscq_push(wb_mpscq_t *q, wb_event_t *ev)
{
    atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    uintptr_t prev = atomic_exchange_explicit(&q->head, (uintptr_t)ev, memory_order_acq_rel);
    wb_event_t *p = (wb_event_t *)(prev & ~WB__MPSCQ_IDLE);
    atomic_store_explicit(&p->next, ev, memory_order_release);
    return (int)(prev & WB__MPSCQ_IDLE);
}

/* The oldest event, or NULL. NULL with *busy set means a producer is half-way
 * through a push: the queue is not empty, try again shortly. */
static inline wb_event_t *wb_mpscq_pop(wb_mpscq_t *q, int *busy)
{
    wb_event_t *tail = q->tail;
    wb_event_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    *busy = 0;
    if (tail == &q->stub) {
        if (next == NULL) {
            uintptr_t h = atomic_load_explicit(&q->head, memory_order_acquire);
            *busy = (h & ~WB__MPSCQ_IDLE) != (uintptr_t)&q->stub;
            return NULL;
        }
        q->tail = next;
        tail = next;
        next = atomic_load_explicit(&tail->next, memory_order_acquire);
    }
    if (next != NULL) {
        q->tail = next;
        return tail;
    }
    uintptr_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    if ((wb_event_t *)head != tail) {
        *busy = 1;
        return NULL;
    }
    wb_mpscq_push(q, &q->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next != NULL) {
        q->tail = next;
        return tail;
    }
    *busy = 1;
    return NULL;
}

/* Mark the consumer idle if the queue is empty. Returns 1 when marked (the
 * next push will ask for a wake-up), 0 when events arrived meanwhile. */
static inline int wb_mpscq_try_idle(wb_mpscq_t *q)
{
    if (q->tail != &q->stub || atomic_load_explicit(&q->stub.next, memory_order_acquire) != NULL)
        return 0;
    uintptr_t stub = (uintptr_t)&q->stub;
    uintptr_t expect = stub;
    if (atomic_compare_exchange_strong_explicit(&q->head, &expect, stub | WB__MPSCQ_IDLE,
                                                memory_order_acq_rel, memory_order_acquire))
        return 1;
    /* Already idle: woken without a push (at start, or by the lane itself). */
    return expect == (stub | WB__MPSCQ_IDLE);
}

/* Consumer only: is the queue (probably) empty? Exact when no push races. */
static inline int wb_mpscq_empty(wb_mpscq_t *q)
{
    return q->tail == &q->stub &&
           atomic_load_explicit(&q->stub.next, memory_order_acquire) == NULL &&
           (atomic_load_explicit(&q->head, memory_order_acquire) & ~WB__MPSCQ_IDLE) ==
               (uintptr_t)&q->stub;
}

#endif
