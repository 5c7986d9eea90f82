/*
 * test_rt.c - the threaded runtime: handoff between lanes, ordering per
 * producer, backpressure and resume, ownership on failure, shutdown.
 * Runs under TSan too (label "threaded").
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/pool.h"
#include "runtime/rt.h"

/* A latch the test thread waits on while lanes work. */
typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int n;
} latch_t;

static void latch_init(latch_t *l)
{
    pthread_mutex_init(&l->m, NULL);
    pthread_cond_init(&l->c, NULL);
    l->n = 0;
}

static void latch_add(latch_t *l, int k)
{
    pthread_mutex_lock(&l->m);
    l->n += k;
    pthread_cond_broadcast(&l->c);
    pthread_mutex_unlock(&l->m);
}

/* Wait until n >= want or 10 s pass; returns n. */
static int latch_wait(latch_t *l, int want)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&l->m);
    while (l->n < want)
        if (pthread_cond_timedwait(&l->c, &l->m, &ts) != 0)
            break;
    int n = l->n;
    pthread_mutex_unlock(&l->m);
    return n;
}

static void latch_fini(latch_t *l)
{
    pthread_mutex_destroy(&l->m);
    pthread_cond_destroy(&l->c);
}

/* ---- a counting sink actor ------------------------------------------------ */

enum { PRODUCERS = 2, PER_PRODUCER = 100000 };

typedef struct {
    latch_t done;
    uint32_t next[PRODUCERS]; /* next sequence number expected per producer */
    int out_of_order;
    int received;
    pthread_t thread;
    int thread_mismatch;
    int block_first; /* first message blocks until `release` */
    atomic_int release;
    atomic_int entered; /* the blocking handler is running */
} sink_t;

typedef struct {
    uint32_t producer, seq;
} item_t;

static void sink_handle(wb_actor_t *self, wb_event_t *ev)
{
    sink_t *s = wb_actor_state(self);
    if (s->received == 0)
        s->thread = pthread_self();
    else if (!pthread_equal(s->thread, pthread_self()))
        s->thread_mismatch = 1;
    if (s->block_first && s->received == 0) {
        atomic_store(&s->entered, 1);
        while (!atomic_load(&s->release))
            sched_yield();
    }
    if (ev->type == WB_EV_USER && ev->len == sizeof(item_t)) {
        item_t it;
        memcpy(&it, ev->data, sizeof(it));
        if (it.producer < PRODUCERS) {
            if (it.seq != s->next[it.producer])
                s->out_of_order = 1;
            s->next[it.producer] = it.seq + 1;
        }
    }
    s->received++;
    wb_event_free(ev);
    latch_add(&s->done, 1);
}

static const wb_actor_def_t sink_def = {"sink", sink_handle, NULL};

/* ---- producers on the net and db lanes ------------------------------------- */

typedef struct {
    uint64_t sink;
    uint32_t producer;
    wb_lane_t lane;
    uint32_t seq;
    int refused;
} producer_t;

static void produce(wb_rt_t *rt, void *arg);

/* The lanes' services: a resume restarts the producer parked there. */
typedef struct {
    producer_t *p;
    latch_t resumes;
    uint64_t last_resume_dst;
} lane_ctx_t;

static void lane_event(wb_rt_t *rt, void *ctx, wb_event_t *ev)
{
    lane_ctx_t *c = ctx;
    if (ev->type == WB_EV_RESUME) {
        c->last_resume_dst = ev->dst;
        latch_add(&c->resumes, 1);
        if (c->p != NULL)
            produce(rt, c->p);
    }
    wb_event_free(ev);
}

static void produce(wb_rt_t *rt, void *arg)
{
    producer_t *p = arg;
    /* A slice at a time, then yield the loop by posting ourselves again. */
    for (int i = 0; i < 4096 && p->seq < PER_PRODUCER; i++) {
        item_t it = {p->producer, p->seq};
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, &it, sizeof(it));
        assert_non_null(ev);
        wb_event_route(ev, p->lane, 100 + p->producer, WB_LANE_ACTOR, p->sink);
        int rc = wb_rt_send(rt, ev);
        if (rc == WB_EAGAIN) {
            wb_event_free(ev);
            p->refused++;
            return; /* the lane service restarts us on WB_EV_RESUME */
        }
        assert_int_equal(rc, 0);
        p->seq++;
    }
    if (p->seq < PER_PRODUCER)
        assert_int_equal(wb_rt_call(rt, p->lane, produce, p), 0);
}

static wb_rt_t *start_rt(uint32_t limit, lane_ctx_t *net, lane_ctx_t *db)
{
    wb_rt_config_t cfg;
    wb_rt_t *rt;
    wb_rt_config_init(&cfg);
    if (limit)
        cfg.inbox_limit = limit;
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    wb_lane_service_t svc = {.on_event = lane_event};
    if (net != NULL) {
        latch_init(&net->resumes);
        svc.ctx = net;
        assert_int_equal(wb_rt_set_service(rt, WB_LANE_NET, &svc), 0);
    }
    if (db != NULL) {
        latch_init(&db->resumes);
        svc.ctx = db;
        assert_int_equal(wb_rt_set_service(rt, WB_LANE_DB, &svc), 0);
    }
    return rt;
}

static void test_two_producers_order(void **state)
{
    (void)state;
    lane_ctx_t net = {0}, db = {0};
    /* A small bound so both producers hit it and must resume. */
    wb_rt_t *rt = start_rt(256, &net, &db);
    static sink_t s;
    memset(&s, 0, sizeof(s));
    latch_init(&s.done);
    uint64_t sink;
    assert_int_equal(wb_actor_spawn(rt, NULL, &sink_def, &s, &sink), 0);
    producer_t p0 = {sink, 0, WB_LANE_NET, 0, 0}, p1 = {sink, 1, WB_LANE_DB, 0, 0};
    net.p = &p0;
    db.p = &p1;
    assert_int_equal(wb_rt_start(rt), 0);
    assert_int_equal(wb_rt_call(rt, WB_LANE_NET, produce, &p0), 0);
    assert_int_equal(wb_rt_call(rt, WB_LANE_DB, produce, &p1), 0);
    assert_int_equal(latch_wait(&s.done, 2 * PER_PRODUCER), 2 * PER_PRODUCER);
    wb_rt_stop(rt);
    assert_int_equal(s.received, 2 * PER_PRODUCER);
    assert_int_equal(s.out_of_order, 0);
    assert_int_equal(s.thread_mismatch, 0);
    assert_int_equal(s.next[0], PER_PRODUCER);
    assert_int_equal(s.next[1], PER_PRODUCER);
    wb_lane_stats_t st;
    wb_rt_stats(rt, WB_LANE_ACTOR, &st);
    assert_true(st.max_depth <= 256 + 2);
    assert_true(st.events >= 2 * PER_PRODUCER);
    /* Every refusal was followed by a resume (the producers finished). */
    assert_int_equal(p0.seq, PER_PRODUCER);
    assert_int_equal(p1.seq, PER_PRODUCER);
    wb_rt_free(rt);
    latch_fini(&s.done);
    latch_fini(&net.resumes);
    latch_fini(&db.resumes);
    assert_int_equal(wb_pool_trim(), 0);
}

/* The actor lane is held inside a handler; the bound must hold exactly, a
 * control event must still pass, and the refused sender must be resumed. */
static void test_backpressure_signal(void **state)
{
    (void)state;
    enum { LIMIT = 32 };
    lane_ctx_t net = {0};
    wb_rt_t *rt = start_rt(LIMIT, &net, NULL);
    static sink_t s;
    memset(&s, 0, sizeof(s));
    latch_init(&s.done);
    s.block_first = 1;
    uint64_t sink;
    assert_int_equal(wb_actor_spawn(rt, NULL, &sink_def, &s, &sink), 0);
    assert_int_equal(wb_rt_start(rt), 0);

    /* The first event is taken and blocks the lane. */
    wb_event_t *ev = wb_event_new(WB_EV_USER, 0);
    wb_event_route(ev, WB_LANE_NET, 77, WB_LANE_ACTOR, sink);
    assert_int_equal(wb_rt_send(rt, ev), 0);
    while (!atomic_load(&s.entered))
        sched_yield();
    int accepted = 0, rc = 0;
    for (int i = 0; i < 10 * LIMIT; i++) {
        ev = wb_event_new(WB_EV_USER, 0);
        wb_event_route(ev, WB_LANE_NET, 77, WB_LANE_ACTOR, sink);
        rc = wb_rt_send(rt, ev);
        if (rc != 0) {
            wb_event_free(ev); /* refused: still ours */
            break;
        }
        accepted++;
    }
    assert_int_equal(rc, WB_EAGAIN);
    assert_int_equal(accepted, LIMIT);
    /* Control events pass the bound. */
    ev = wb_event_new(WB_EV_USER, 0);
    ev->flags |= WB_EVF_CONTROL;
    wb_event_route(ev, WB_LANE_NET, 77, WB_LANE_ACTOR, sink);
    assert_int_equal(wb_rt_send(rt, ev), 0);
    assert_int_equal(net.resumes.n, 0);

    atomic_store(&s.release, 1);
    assert_int_equal(latch_wait(&net.resumes, 1), 1);
    assert_int_equal(net.last_resume_dst, 77);
    assert_int_equal(latch_wait(&s.done, LIMIT + 2), LIMIT + 2);
    wb_lane_stats_t st;
    wb_rt_stats(rt, WB_LANE_ACTOR, &st);
    assert_int_equal(st.refused, 1);
    wb_rt_free(rt);
    latch_fini(&s.done);
    latch_fini(&net.resumes);
    assert_int_equal(wb_pool_trim(), 0);
}

static atomic_int ext_freed;
static void ext_free(void *data, size_t len)
{
    (void)len;
    atomic_fetch_add(&ext_freed, 1);
    free(data);
}

/* Events still queued at stop are freed, never leaked or run twice. */
static void test_shutdown_frees_queued(void **state)
{
    (void)state;
    wb_rt_t *rt = start_rt(32768, NULL, NULL);
    static sink_t s;
    memset(&s, 0, sizeof(s));
    latch_init(&s.done);
    uint64_t sink;
    assert_int_equal(wb_actor_spawn(rt, NULL, &sink_def, &s, &sink), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    atomic_store(&ext_freed, 0);
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        wb_event_t *ev = wb_event_new_ext(WB_EV_USER, malloc(16), 16, ext_free);
        wb_event_route(ev, WB_LANE_NET, 1, WB_LANE_ACTOR, i % 2 ? sink : 12345);
        assert_int_equal(wb_rt_send(rt, ev), 0);
    }
    wb_rt_stop(rt);
    /* After stop: refused with WB_ECLOSED, and the event is still ours. */
    wb_event_t *ev = wb_event_new_ext(WB_EV_USER, malloc(16), 16, ext_free);
    wb_event_route(ev, WB_LANE_NET, 1, WB_LANE_ACTOR, sink);
    assert_int_equal(wb_rt_send(rt, ev), WB_ECLOSED);
    assert_int_equal(wb_rt_call(rt, WB_LANE_DB, NULL, NULL), WB_ECLOSED);
    assert_int_equal(atomic_load(&ext_freed), N);
    wb_event_free(ev);
    wb_rt_free(rt);
    assert_int_equal(atomic_load(&ext_freed), N + 1);
    latch_fini(&s.done);
    assert_int_equal(wb_pool_trim(), 0);
}

/* ---- calls run on their lane's thread ------------------------------------------ */

static pthread_t call_thread[WB_LANE_COUNT];
static latch_t call_latch;
static void record_thread(wb_rt_t *rt, void *arg)
{
    (void)rt;
    call_thread[(intptr_t)arg] = pthread_self();
    latch_add(&call_latch, 1);
}

static void test_calls_on_lane_threads(void **state)
{
    (void)state;
    wb_rt_t *rt = start_rt(0, NULL, NULL);
    assert_int_equal(wb_rt_start(rt), 0);
    latch_init(&call_latch);
    for (intptr_t i = 0; i < WB_LANE_COUNT; i++)
        assert_int_equal(wb_rt_call(rt, (wb_lane_t)i, record_thread, (void *)i), 0);
    assert_int_equal(latch_wait(&call_latch, 3), 3);
    pthread_t me = pthread_self();
    for (int i = 0; i < WB_LANE_COUNT; i++) {
        assert_false(pthread_equal(call_thread[i], me));
        for (int j = i + 1; j < WB_LANE_COUNT; j++)
            assert_false(pthread_equal(call_thread[i], call_thread[j]));
    }
    wb_rt_free(rt);
    latch_fini(&call_latch);
}

/* ---- timers on the real clock ---------------------------------------------------- */

typedef struct {
    latch_t fired;
    uint64_t started_at, fired_at;
    uint64_t keep, cancel;
    uint64_t got;
} tstate_t;

static void tactor(wb_actor_t *self, wb_event_t *ev)
{
    tstate_t *t = wb_actor_state(self);
    if (ev->type == WB_EV_USER) {
        t->started_at = wb_rt_now_ms(wb_actor_rt(self));
        assert_int_equal(wb_timer_start(self, 30, &t->keep), 0);
        assert_int_equal(wb_timer_start(self, 10, &t->cancel), 0);
        assert_int_equal(wb_timer_cancel(self, t->cancel), 0);
    } else if (ev->type == WB_EV_TIMER) {
        t->got = ev->cookie;
        t->fired_at = wb_rt_now_ms(wb_actor_rt(self));
        latch_add(&t->fired, 1);
    }
    wb_event_free(ev);
}
static const wb_actor_def_t tactor_def = {"timer", tactor, NULL};

static void test_timers_threaded(void **state)
{
    (void)state;
    wb_rt_t *rt = start_rt(0, NULL, NULL);
    static tstate_t t;
    memset(&t, 0, sizeof(t));
    latch_init(&t.fired);
    uint64_t id;
    assert_int_equal(wb_actor_spawn(rt, NULL, &tactor_def, &t, &id), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    wb_event_t *ev = wb_event_new(WB_EV_USER, 0);
    wb_event_route(ev, WB_LANE_NET, 0, WB_LANE_ACTOR, id);
    assert_int_equal(wb_rt_send(rt, ev), 0);
    assert_int_equal(latch_wait(&t.fired, 1), 1);
    /* Give a wrongly delivered cancelled timer time to show up. */
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    wb_rt_stop(rt);
    assert_int_equal(t.fired.n, 1);
    assert_int_equal(t.got, t.keep);
    assert_true(t.fired_at >= t.started_at + 30);
    wb_rt_free(rt);
    latch_fini(&t.fired);
}

/* ---- start failure ----------------------------------------------------------------- */

static int failing_start(wb_rt_t *rt, void *ctx)
{
    (void)rt;
    (void)ctx;
    return WB_ECORRUPT;
}

static void test_start_failure(void **state)
{
    (void)state;
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    wb_lane_service_t svc = {.on_start = failing_start};
    assert_int_equal(wb_rt_set_service(rt, WB_LANE_DB, &svc), 0);
    assert_int_equal(wb_rt_start(rt), WB_ECORRUPT);
    wb_rt_free(rt);
    assert_int_equal(wb_pool_trim(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_producers_order),   cmocka_unit_test(test_backpressure_signal),
        cmocka_unit_test(test_shutdown_frees_queued), cmocka_unit_test(test_calls_on_lane_threads),
        cmocka_unit_test(test_timers_threaded),       cmocka_unit_test(test_start_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
