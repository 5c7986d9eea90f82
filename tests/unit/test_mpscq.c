/*
 * test_mpscq.c - the inbox queue: FIFO per producer, nothing lost or
 * doubled, the busy flag for a half-done push, and the idle mark: exactly one
 * push per idle period asks for a wake-up.
 * Runs under TSan too (label "threaded").
 */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "runtime/event.h"
#include "runtime/mpscq.h"
#include "runtime/pool.h"

static wb_event_t *mk(uint32_t producer, uint32_t seq)
{
    uint32_t p[2] = {producer, seq};
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, p, sizeof(p));
    assert_non_null(ev);
    ev->src = producer;
    ev->cookie = seq;
    return ev;
}

static uint32_t seq_of(const wb_event_t *ev)
{
    uint32_t p[2];
    memcpy(p, ev->data, sizeof(p));
    return p[1];
}

static wb_event_t *pop(wb_mpscq_t *q)
{
    int busy = -1;
    wb_event_t *ev = wb_mpscq_pop(q, &busy);
    /* Without a producer half-way through a push, busy is always 0. */
    assert_int_equal(busy, 0);
    return ev;
}

/* ---- one thread ----------------------------------------------------------- */

static void test_fifo(void **state)
{
    (void)state;
    wb_mpscq_t q;
    wb_mpscq_init(&q);
    assert_true(wb_mpscq_empty(&q));
    assert_null(pop(&q));

    /* Interleave pushes and pops; order is kept across the stub's returns. */
    uint32_t pushed = 0, popped = 0;
    for (int round = 0; round < 50; round++) {
        int npush = 1 + (round * 7) % 13, npop = (round * 5) % 11;
        for (int i = 0; i < npush; i++) {
            wb_mpscq_push(&q, mk(0, pushed++));
            assert_false(wb_mpscq_empty(&q));
        }
        for (int i = 0; i < npop && popped < pushed; i++) {
            wb_event_t *ev = pop(&q);
            assert_non_null(ev);
            assert_int_equal(seq_of(ev), popped++);
            wb_event_free(ev);
        }
        assert_int_equal(wb_mpscq_empty(&q), popped == pushed);
    }
    wb_event_t *ev;
    while ((ev = pop(&q)) != NULL) {
        assert_int_equal(seq_of(ev), popped++);
        wb_event_free(ev);
    }
    assert_int_equal(popped, pushed);
    assert_true(wb_mpscq_empty(&q));
    assert_null(pop(&q));
    assert_int_equal(wb_pool_trim(), 0);
}

static void test_idle_protocol(void **state)
{
    (void)state;
    wb_mpscq_t q;
    wb_event_t *ev;
    wb_mpscq_init(&q);

    /* A fresh queue is idle and empty: marking it idle again is a success
     * that changes nothing, and the first push asks for the wake-up. */
    assert_int_equal(wb_mpscq_try_idle(&q), 1);
    assert_int_equal(wb_mpscq_try_idle(&q), 1);
    assert_int_equal(wb_mpscq_push(&q, mk(0, 0)), 1);
    /* The consumer is awake now: no more wake-ups. */
    for (uint32_t i = 1; i < 10; i++)
        assert_int_equal(wb_mpscq_push(&q, mk(0, i)), 0);
    /* try_idle fails while anything is queued, and leaves the consumer awake. */
    assert_int_equal(wb_mpscq_try_idle(&q), 0);
    assert_int_equal(wb_mpscq_push(&q, mk(0, 10)), 0);
    for (uint32_t i = 0; i < 10; i++) {
        ev = pop(&q);
        assert_int_equal(seq_of(ev), i);
        wb_event_free(ev);
        assert_int_equal(wb_mpscq_try_idle(&q), 0);
    }
    ev = pop(&q);
    assert_int_equal(seq_of(ev), 10);
    wb_event_free(ev);
    assert_null(pop(&q));

    /* Empty but not marked: the consumer has not said it sleeps, so a push
     * must not wake it. */
    assert_int_equal(wb_mpscq_push(&q, mk(0, 11)), 0);
    wb_event_free(pop(&q));
    assert_null(pop(&q));

    /* Marked: exactly the next push asks for a wake-up. */
    assert_int_equal(wb_mpscq_try_idle(&q), 1);
    assert_true(wb_mpscq_empty(&q));
    assert_null(pop(&q));
    assert_int_equal(wb_mpscq_push(&q, mk(0, 12)), 1);
    assert_int_equal(wb_mpscq_push(&q, mk(0, 13)), 0);
    assert_int_equal(wb_mpscq_try_idle(&q), 0);
    assert_int_equal(seq_of(ev = pop(&q)), 12);
    wb_event_free(ev);
    assert_int_equal(seq_of(ev = pop(&q)), 13);
    wb_event_free(ev);

    /* Many idle periods: one wake-up each, whatever the batch size. */
    uint32_t seq = 14;
    for (int period = 0; period < 100; period++) {
        assert_int_equal(wb_mpscq_try_idle(&q), 1);
        int n = 1 + period % 7;
        for (int i = 0; i < n; i++)
            assert_int_equal(wb_mpscq_push(&q, mk(0, seq + (uint32_t)i)), i == 0);
        for (int i = 0; i < n; i++) {
            ev = pop(&q);
            assert_non_null(ev);
            assert_int_equal(seq_of(ev), seq++);
            wb_event_free(ev);
        }
        assert_null(pop(&q));
    }
    assert_int_equal(wb_pool_trim(), 0);
}

/* The two steps of wb_mpscq_push, taken apart to stop a producer between
 * them: after the exchange the event is the queue's head but not yet linked. */
static wb_event_t *half_push(wb_mpscq_t *q, wb_event_t *ev, int *was_idle)
{
    atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    uintptr_t prev = atomic_exchange_explicit(&q->head, (uintptr_t)ev, memory_order_acq_rel);
    *was_idle = (int)(prev & WB__MPSCQ_IDLE);
    return (wb_event_t *)(prev & ~WB__MPSCQ_IDLE);
}

static void finish_push(wb_event_t *prev, wb_event_t *ev)
{
    atomic_store_explicit(&prev->next, ev, memory_order_release);
}

static void expect_busy(wb_mpscq_t *q)
{
    int busy = 0;
    assert_null(wb_mpscq_pop(q, &busy));
    assert_int_equal(busy, 1);
    assert_false(wb_mpscq_empty(q));
    /* Not empty: the consumer must not go idle on a half-done push. */
    assert_int_equal(wb_mpscq_try_idle(q), 0);
}

static void test_busy_flag(void **state)
{
    (void)state;
    wb_mpscq_t q;
    wb_event_t *ev, *prev;
    int was_idle;
    wb_mpscq_init(&q);

    /* On the fresh, idle queue: the half-done push is the one that wakes. */
    wb_event_t *a = mk(0, 0);
    prev = half_push(&q, a, &was_idle);
    assert_int_equal(was_idle, 1);
    expect_busy(&q);
    expect_busy(&q);
    finish_push(prev, a);
    assert_ptr_equal(pop(&q), a);
    wb_event_free(a);
    assert_null(pop(&q));

    /* Behind the stub of an awake, empty queue. */
    wb_event_t *b = mk(0, 1);
    prev = half_push(&q, b, &was_idle);
    assert_int_equal(was_idle, 0);
    expect_busy(&q);
    finish_push(prev, b);
    assert_ptr_equal(pop(&q), b);
    wb_event_free(b);

    /* Behind a real event: the consumer has taken c's place as tail and must
     * not hand c out before it knows c's successor. */
    wb_event_t *c = mk(0, 2), *d = mk(0, 3);
    assert_int_equal(wb_mpscq_push(&q, c), 0);
    prev = half_push(&q, d, &was_idle);
    assert_ptr_equal(prev, c);
    expect_busy(&q);
    expect_busy(&q);
    finish_push(prev, d);
    assert_ptr_equal(ev = pop(&q), c);
    wb_event_free(ev);
    assert_ptr_equal(ev = pop(&q), d);
    wb_event_free(ev);
    assert_null(pop(&q));
    assert_true(wb_mpscq_empty(&q));
    assert_int_equal(wb_mpscq_try_idle(&q), 1);
    assert_int_equal(wb_pool_trim(), 0);
}

/* The consumer re-queues the stub behind what it believes is the last event;
 * a producer that slips in first leaves the stub as head with an event still
 * ahead of it. The head alone then looks empty, but the queue is not. */
static void test_try_idle_stub_behind_event(void **state)
{
    (void)state;
    wb_mpscq_t q;
    wb_event_t *ev;
    wb_mpscq_init(&q);
    wb_event_t *a = mk(0, 0), *b = mk(0, 1);
    assert_int_equal(wb_mpscq_push(&q, a), 1);
    assert_int_equal(wb_mpscq_push(&q, b), 0);
    assert_ptr_equal(ev = pop(&q), a); /* tail is b now */
    wb_event_free(ev);
    /* What wb_mpscq_pop does when it takes the last event. */
    assert_int_equal(wb_mpscq_push(&q, &q.stub), 0);
    assert_int_equal(atomic_load(&q.head), (uintptr_t)&q.stub);
    assert_false(wb_mpscq_empty(&q));
    assert_int_equal(wb_mpscq_try_idle(&q), 0);
    /* So the next push must not wake anyone: the consumer is still awake. */
    wb_event_t *c = mk(0, 2);
    assert_int_equal(wb_mpscq_push(&q, c), 0);
    assert_ptr_equal(ev = pop(&q), b);
    wb_event_free(ev);
    assert_ptr_equal(ev = pop(&q), c);
    wb_event_free(ev);
    assert_null(pop(&q));
    assert_int_equal(wb_mpscq_try_idle(&q), 1);
    assert_int_equal(wb_pool_trim(), 0);
}

/* ---- four producers, one consumer ---------------------------------------- */

enum {
    PRODUCERS = 4,
    PER_PRODUCER = 200000,
    TOTAL = PRODUCERS * PER_PRODUCER,
    ROUNDS = 8, /* the producers stop together until the consumer sleeps */
};

typedef struct {
    wb_mpscq_t q;
    sem_t wake;
    atomic_long wakes_given;  /* pushes that returned 1 */
    atomic_int wakes_pending; /* wake-ups given and not yet taken */
    atomic_int double_wake;   /* a push returned 1 while a wake-up was pending */
    atomic_long taken;        /* events the consumer has taken */
    atomic_int asleep;        /* the consumer is idle, waiting for a wake-up */
    pthread_barrier_t round;
    long idles;        /* consumer: successful try_idle calls */
    long idle_refused; /* consumer: try_idle found events */
    long busy_seen;    /* consumer: pops that saw a half-done push */
    long received;
    long bad; /* out of order, duplicated or foreign */
    uint32_t next[PRODUCERS];
} shared_t;

typedef struct {
    shared_t *s;
    uint32_t id;
} producer_t;

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    shared_t *s = p->s;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        if (i % (PER_PRODUCER / ROUNDS) == 0 && i > 0) {
            /* All stop; once the consumer has taken everything and gone to
             * sleep, all four race for the one push that wakes it. */
            pthread_barrier_wait(&s->round);
            if (p->id == 0)
                while (atomic_load(&s->taken) != (long)i * PRODUCERS || !atomic_load(&s->asleep))
                    sched_yield();
            pthread_barrier_wait(&s->round);
        }
        wb_event_t *ev = wb_event_new(WB_EV_USER, 8);
        if (ev == NULL)
            abort();
        uint32_t pl[2] = {p->id, i};
        memcpy(ev->data, pl, sizeof(pl));
        if (wb_mpscq_push(&s->q, ev)) {
            atomic_fetch_add(&s->wakes_given, 1);
            if (atomic_fetch_add(&s->wakes_pending, 1) != 0)
                atomic_fetch_add(&s->double_wake, 1);
            sem_post(&s->wake);
        }
        /* Pause now and then so the consumer runs dry and goes idle. */
        if (i % 4096 == 4095) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void take_wake(shared_t *s)
{
    atomic_store(&s->asleep, 1);
    while (sem_wait(&s->wake) != 0)
        ;
    atomic_store(&s->asleep, 0);
    atomic_fetch_sub(&s->wakes_pending, 1);
}

static void *consumer_main(void *arg)
{
    shared_t *s = arg;
    /* The queue starts idle: sleep until the first push wakes us. */
    take_wake(s);
    for (;;) {
        int busy;
        wb_event_t *ev = wb_mpscq_pop(&s->q, &busy);
        if (ev != NULL) {
            uint32_t pl[2];
            memcpy(pl, ev->data, sizeof(pl));
            if (ev->type != WB_EV_USER || ev->len != 8 || pl[0] >= PRODUCERS ||
                pl[1] != s->next[pl[0]])
                s->bad++;
            else
                s->next[pl[0]]++;
            s->received++;
            atomic_store(&s->taken, s->received);
            wb_event_free(ev);
            continue;
        }
        if (busy) {
            s->busy_seen++;
            sched_yield();
            continue;
        }
        if (wb_mpscq_try_idle(&s->q)) {
            s->idles++;
            if (s->received == TOTAL)
                break; /* idle for good; no push will come */
            take_wake(s);
        } else {
            s->idle_refused++;
        }
    }
    return NULL;
}

static void test_producers_consumer(void **state)
{
    (void)state;
    shared_t *s = calloc(1, sizeof(*s));
    producer_t p[PRODUCERS];
    pthread_t pt[PRODUCERS], ct;
    assert_non_null(s);
    wb_mpscq_init(&s->q);
    assert_int_equal(sem_init(&s->wake, 0, 0), 0);
    assert_int_equal(pthread_barrier_init(&s->round, NULL, PRODUCERS), 0);
    assert_int_equal(pthread_create(&ct, NULL, consumer_main, s), 0);
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        p[i].s = s;
        p[i].id = i;
        assert_int_equal(pthread_create(&pt[i], NULL, producer_main, &p[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(pt[i], NULL), 0);
    assert_int_equal(pthread_join(ct, NULL), 0);

    print_message("mpscq: %ld idle periods, %ld idle refused, %ld busy pops\n", s->idles,
                  s->idle_refused, s->busy_seen);
    /* Nothing lost, nothing doubled, FIFO per producer. */
    assert_int_equal(s->bad, 0);
    assert_int_equal(s->received, TOTAL);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(s->next[i], PER_PRODUCER);
    /* The idle mark: the queue started idle, and every idle period but the
     * last (which no push ended) was ended by exactly one push returning 1.
     * So wake-ups given = 1 + idles - 1. */
    assert_int_equal(atomic_load(&s->wakes_given), s->idles);
    /* No push asked for a wake-up while the consumer was awake... */
    assert_int_equal(atomic_load(&s->double_wake), 0);
    /* ...and every wake-up given was taken. */
    int left = -1;
    sem_getvalue(&s->wake, &left);
    assert_int_equal(left, 0);
    assert_int_equal(atomic_load(&s->wakes_pending), 0);
    /* The consumer slept at least between rounds, and at the end. */
    assert_true(s->idles >= ROUNDS);
    assert_true(wb_mpscq_empty(&s->q));
    assert_int_equal(wb_mpscq_try_idle(&s->q), 1);

    sem_destroy(&s->wake);
    pthread_barrier_destroy(&s->round);
    free(s);
    /* Events were allocated on four threads and freed on a fifth. */
    assert_int_equal(wb_pool_trim(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_idle_protocol),
        cmocka_unit_test(test_busy_flag),
        cmocka_unit_test(test_try_idle_stub_behind_event),
        cmocka_unit_test(test_producers_consumer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
