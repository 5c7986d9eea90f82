/*
 * bench_handoff.c - events from the network lane to one actor, threaded mode,
 * against libzmq inproc PUSH -> PULL moving the same messages.
 *
 * waybill: a producer runs on the network lane's thread (started there with
 * wb_rt_call) and sends N data events of 16 or 128 payload bytes, each made
 * with wb_event_new_copy, to one actor with wb_rt_send. It sends CHUNK events
 * per call and re-posts itself, so the lane's loop keeps turning. On
 * WB_EAGAIN it keeps the refused event and stops; the network lane's service
 * restarts it on WB_EV_RESUME. The actor checks the sequence numbers, counts
 * and frees. The clock runs from the first send to the handling of an end
 * marker (a control event queued behind the last data event).
 *
 * libzmq: one producer thread, one consumer thread, zmq_msg_init_size +
 * zmq_msg_send, default high-water marks; the clock runs from the first
 * message received to the last, and the rate is messages / that time, as in
 * libzmq's perf/inproc_thr.cpp.
 *
 * Rounds interleave the cases (waybill and zmq, 16 and 128 bytes) so that
 * drift in the machine's speed hits them alike; ratios are taken within a
 * round and the median printed. Wake-ups, refusals and batches come from
 * wb_rt_stats() deltas over each waybill run of the default runtime.
 *
 * WARMUP rounds run first and are not counted: the event pool hands out
 * blocks in address order at first and in recycled order later, and a
 * process that has been up for a while sees the latter. A second runtime with
 * inbox_limit SMALL_LIMIT runs the same producer, for comparison with the
 * default limit (the `_inbox4096_` lines). WB_BENCH_VERBOSE=1 prints every
 * run on stderr.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/event.h"
#include "runtime/rt.h"
#include "tests/bench/bench_common.h"

#if WB_HAVE_ZMQ
#include <zmq.h>
#endif

#define COUNT         1000000u /* events per run */
#define RUNS          5
#define WARMUP        3
#define SMALL_LIMIT   4096         /* the inbox_limit of the second runtime, for comparison */
#define CHUNK         1024u        /* sends per producer call before it re-posts itself */
#define RUN_CAP_NS    500000000ull /* a producer stops sending after this long */
#define WAIT_CAP_NS   10000000000ull
#define EV_DATA       (WB_EV_USER + 1)
#define EV_END        (WB_EV_USER + 2)
#define PRODUCER_ADDR 1 /* the producer's address on the network lane */

typedef struct {
    wb_rt_t *rt;
    uint64_t actor;
    size_t size;
    uint64_t n;

    /* Network lane only. */
    uint64_t sent;
    wb_event_t *held; /* refused, to be sent again on resume */
    int waiting;
    uint64_t resumes;
    uint64_t t_first;

    /* Actor lane only, until done. */
    uint64_t received;
    uint64_t t_last;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
} handoff_t;

static void produce(wb_rt_t *rt, void *arg);

static void finish_sending(handoff_t *h)
{
    wb_event_t *ev = wb_event_new(EV_END, 0);
    if (ev == NULL)
        BENCH_FAIL("out of memory");
    ev->flags |= WB_EVF_CONTROL;
    ev->cookie = h->sent;
    wb_event_route(ev, WB_LANE_NET, PRODUCER_ADDR, WB_LANE_ACTOR, h->actor);
    if (wb_rt_send(h->rt, ev) != 0)
        BENCH_FAIL("control event refused");
}

static void produce(wb_rt_t *rt, void *arg)
{
    handoff_t *h = arg;
    unsigned char buf[256];

    if (h->sent == 0 && h->held == NULL)
        h->t_first = bench_now_ns();
    memset(buf, 0xab, sizeof(buf));
    for (unsigned i = 0; i < CHUNK && h->sent < h->n; i++) {
        wb_event_t *ev = h->held;
        h->held = NULL;
        if (ev == NULL) {
            memcpy(buf, &h->sent, sizeof(h->sent));
            ev = wb_event_new_copy(EV_DATA, buf, h->size);
            if (ev == NULL)
                BENCH_FAIL("out of memory");
            wb_event_route(ev, WB_LANE_NET, PRODUCER_ADDR, WB_LANE_ACTOR, h->actor);
        }
        int rc = wb_rt_send(rt, ev);
        if (rc == WB_EAGAIN) {
            h->held = ev;
            h->waiting = 1;
            return; /* the service calls us again on WB_EV_RESUME */
        }
        if (rc != 0)
            BENCH_FAIL("wb_rt_send: %s", wb_strerror(rc));
        h->sent++;
    }
    if (h->sent < h->n && bench_now_ns() - h->t_first < RUN_CAP_NS) {
        if (wb_rt_call(rt, WB_LANE_NET, produce, h) != 0)
            BENCH_FAIL("wb_rt_call failed");
        return;
    }
    finish_sending(h);
}

/* The network lane's service: restart the producer when the actor lane has
 * room again. */
static void net_on_event(wb_rt_t *rt, void *ctx, wb_event_t *ev)
{
    handoff_t *h = ctx;
    if (ev->type == WB_EV_RESUME && ev->dst == PRODUCER_ADDR && h->waiting) {
        wb_event_free(ev);
        h->waiting = 0;
        h->resumes++;
        produce(rt, h);
        return;
    }
    wb_rt_count_drop(rt, WB_LANE_NET);
    wb_event_free(ev);
}

static void counter_handle(wb_actor_t *self, wb_event_t *ev)
{
    handoff_t *h = wb_actor_state(self);
    if (ev->type == EV_DATA) {
        uint64_t seq;
        memcpy(&seq, ev->data, sizeof(seq));
        if (seq != h->received || ev->len != h->size)
            BENCH_FAIL("event %llu arrived, expected %llu", (unsigned long long)seq,
                       (unsigned long long)h->received);
        h->received++;
    } else if (ev->type == EV_END) {
        if (ev->cookie != h->received)
            BENCH_FAIL("%llu events sent, %llu received", (unsigned long long)ev->cookie,
                       (unsigned long long)h->received);
        h->t_last = bench_now_ns();
        pthread_mutex_lock(&h->lock);
        h->done = 1;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->lock);
    }
    wb_event_free(ev);
}

static const wb_actor_def_t counter_def = {"bench-counter", counter_handle, NULL};

typedef struct {
    double rate;
    wb_lane_stats_t actor, net; /* deltas over the run */
    uint64_t resumes;
} wb_result_t;

static void stats_delta(wb_lane_stats_t *d, const wb_lane_stats_t *a, const wb_lane_stats_t *b)
{
    d->events = b->events - a->events;
    d->batches = b->batches - a->batches;
    d->wakeups = b->wakeups - a->wakeups;
    d->dropped = b->dropped - a->dropped;
    d->refused = b->refused - a->refused;
    d->max_depth = b->max_depth;
}

static wb_result_t run_wb(handoff_t *h, size_t size)
{
    wb_result_t res;
    wb_lane_stats_t a0, n0, a1, n1;

    /* Both lanes are idle between runs: nothing else touches h now. */
    h->size = size;
    h->n = COUNT;
    h->sent = h->received = h->resumes = 0;
    h->held = NULL;
    h->waiting = 0;
    h->t_first = h->t_last = 0;
    h->done = 0;
    wb_rt_stats(h->rt, WB_LANE_ACTOR, &a0);
    wb_rt_stats(h->rt, WB_LANE_NET, &n0);
    if (wb_rt_call(h->rt, WB_LANE_NET, produce, h) != 0)
        BENCH_FAIL("wb_rt_call failed");

    uint64_t deadline = bench_now_ns() + WAIT_CAP_NS;
    struct timespec ts = {(time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u)};
    pthread_mutex_lock(&h->lock);
    while (!h->done) {
        if (pthread_cond_timedwait(&h->cond, &h->lock, &ts) != 0 && !h->done)
            BENCH_FAIL("handoff run did not finish: %llu of %llu received",
                       (unsigned long long)h->received, (unsigned long long)h->n);
    }
    pthread_mutex_unlock(&h->lock);
    /* Let the lanes settle (the producer's lane may still be turning). */
    bench_sleep_us(2000);
    wb_rt_stats(h->rt, WB_LANE_ACTOR, &a1);
    wb_rt_stats(h->rt, WB_LANE_NET, &n1);
    stats_delta(&res.actor, &a0, &a1);
    stats_delta(&res.net, &n0, &n1);
    res.resumes = h->resumes;
    res.rate = bench_rate(h->received, h->t_last - h->t_first);
    return res;
}

#if WB_HAVE_ZMQ
typedef struct {
    void *ctx;
    size_t size;
    uint64_t n;
} zmq_prod_t;

static void *zmq_producer(void *arg)
{
    zmq_prod_t *p = arg;
    void *s = zmq_socket(p->ctx, ZMQ_PUSH);
    if (s == NULL || zmq_connect(s, "inproc://bench_handoff") != 0)
        BENCH_FAIL("zmq push: %s", zmq_strerror(zmq_errno()));
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < p->n; i++) {
        zmq_msg_t msg;
        if (zmq_msg_init_size(&msg, p->size) != 0)
            BENCH_FAIL("zmq_msg_init_size: %s", zmq_strerror(zmq_errno()));
        memset(zmq_msg_data(&msg), 0xab, p->size);
        memcpy(zmq_msg_data(&msg), &i, sizeof(i));
        if (zmq_msg_send(&msg, s, 0) < 0)
            BENCH_FAIL("zmq_msg_send: %s", zmq_strerror(zmq_errno()));
        if ((i & 4095) == 4095 && bench_now_ns() - t0 > RUN_CAP_NS)
            break;
    }
    /* An empty message ends the run. */
    zmq_msg_t end;
    zmq_msg_init_size(&end, 0);
    if (zmq_msg_send(&end, s, 0) < 0)
        BENCH_FAIL("zmq_msg_send: %s", zmq_strerror(zmq_errno()));
    zmq_close(s);
    return NULL;
}

static double run_zmq(size_t size)
{
    void *ctx = zmq_ctx_new();
    void *s = ctx != NULL ? zmq_socket(ctx, ZMQ_PULL) : NULL;
    if (s == NULL || zmq_bind(s, "inproc://bench_handoff") != 0)
        BENCH_FAIL("zmq pull: %s", zmq_strerror(zmq_errno()));
    zmq_prod_t p = {ctx, size, COUNT};
    pthread_t th;
    if (pthread_create(&th, NULL, zmq_producer, &p) != 0)
        BENCH_FAIL("pthread_create failed");

    zmq_msg_t msg;
    zmq_msg_init(&msg);
    uint64_t got = 0, t_first = 0, t_last;
    for (;;) {
        if (zmq_msg_recv(&msg, s, 0) < 0)
            BENCH_FAIL("zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
        if (got == 0)
            t_first = bench_now_ns();
        size_t len = zmq_msg_size(&msg);
        if (len == 0)
            break;
        uint64_t seq;
        memcpy(&seq, zmq_msg_data(&msg), sizeof(seq));
        if (len != size || seq != got)
            BENCH_FAIL("zmq: message %llu arrived, expected %llu", (unsigned long long)seq,
                       (unsigned long long)got);
        got++;
    }
    t_last = bench_now_ns();
    zmq_msg_close(&msg);
    pthread_join(th, NULL);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return bench_rate(got, t_last - t_first);
}
#endif

/* A runtime with one counting actor and the producer's network service. */
static void setup(handoff_t *h, uint32_t inbox_limit)
{
    wb_rt_config_t cfg;
    wb_lane_service_t net = {0};
    pthread_condattr_t ca;

    memset(h, 0, sizeof(*h));
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines come from bench_now_ns */
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, &ca);
    pthread_condattr_destroy(&ca);
    wb_rt_config_init(&cfg);
    if (inbox_limit != 0)
        cfg.inbox_limit = inbox_limit;
    if (wb_rt_new(&h->rt, &cfg) != 0)
        BENCH_FAIL("wb_rt_new failed");
    net.on_event = net_on_event;
    net.ctx = h;
    if (wb_rt_set_service(h->rt, WB_LANE_NET, &net) != 0)
        BENCH_FAIL("wb_rt_set_service failed");
    if (wb_actor_spawn(h->rt, NULL, &counter_def, h, &h->actor) != 0)
        BENCH_FAIL("wb_actor_spawn failed");
    if (wb_rt_start(h->rt) != 0)
        BENCH_FAIL("wb_rt_start failed");
}

static void teardown(handoff_t *h)
{
    wb_rt_free(h->rt);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
}

static void verbose_wb(const char *what, size_t size, const wb_result_t *res)
{
    if (getenv("WB_BENCH_VERBOSE") == NULL)
        return;
    fprintf(stderr,
            "  %s %zuB: %.2f M/s wakeups %llu refused %llu resumes %llu batches %llu events %llu "
            "max_depth %llu net_wakeups %llu\n",
            what, size, res->rate / 1e6, (unsigned long long)res->actor.wakeups,
            (unsigned long long)res->actor.refused, (unsigned long long)res->resumes,
            (unsigned long long)res->actor.batches, (unsigned long long)res->actor.events,
            (unsigned long long)res->actor.max_depth, (unsigned long long)res->net.wakeups);
}

int main(void)
{
    static handoff_t def, small;
    static const size_t sizes[2] = {16, 128};
    bench_samples_t wb_rate[2] = {0}, zmq_rate[2] = {0}, ratio[2] = {0}, small_rate[2] = {0};
    bench_samples_t small_ratio[2] = {0};
    double z = 0;
    bench_samples_t wakeups = {0}, refused = {0}, per_batch = {0}, net_wakeups = {0};

    bench_cpus();
    setup(&def, 0);
    setup(&small, SMALL_LIMIT);

    /* Warm up: the event pool's blocks start out in address order and lose
     * it as they are recycled; a process that has run a while sees the
     * latter, so that is what is measured. */
    for (int r = 0; r < WARMUP; r++) {
        for (int s = 0; s < 2; s++) {
            wb_result_t res = run_wb(&def, sizes[s]);
            verbose_wb("warmup", sizes[s], &res);
        }
    }

    for (int r = 0; r < RUNS; r++) {
        for (int s = 0; s < 2; s++) {
            wb_result_t res = run_wb(&def, sizes[s]);
            double per_m = 1e6 / (double)(def.received ? def.received : 1);
            verbose_wb("wb", sizes[s], &res);
            bench_add(&wb_rate[s], res.rate);
            bench_add(&wakeups, (double)res.actor.wakeups * per_m);
            bench_add(&refused, (double)res.actor.refused * per_m);
            bench_add(&net_wakeups, (double)res.net.wakeups * per_m);
            if (res.actor.batches > 0)
                bench_add(&per_batch, (double)res.actor.events / (double)res.actor.batches);
#if WB_HAVE_ZMQ
            z = run_zmq(sizes[s]);
            bench_add(&zmq_rate[s], z);
            if (z > 0)
                bench_add(&ratio[s], res.rate / z);
            if (getenv("WB_BENCH_VERBOSE"))
                fprintf(stderr, "  zmq %zuB: %.2f M/s\n", sizes[s], z / 1e6);
#endif
            wb_result_t sm = run_wb(&small, sizes[s]);
            verbose_wb("wb_inbox_small", sizes[s], &sm);
            bench_add(&small_rate[s], sm.rate);
            if (z > 0)
                bench_add(&small_ratio[s], sm.rate / z);
        }
    }
    teardown(&def);
    teardown(&small);

    bench_print("handoff_16b_events_per_s", bench_med(&wb_rate[0]), "events/s");
    bench_print("handoff_128b_events_per_s", bench_med(&wb_rate[1]), "events/s");
#if WB_HAVE_ZMQ
    bench_print("zmq_inproc_16b_msgs_per_s", bench_med(&zmq_rate[0]), "msgs/s");
    bench_print("zmq_inproc_128b_msgs_per_s", bench_med(&zmq_rate[1]), "msgs/s");
    bench_print2("handoff_16b_vs_zmq", bench_med(&ratio[0]), "ratio");
    bench_print2("handoff_128b_vs_zmq", bench_med(&ratio[1]), "ratio");
#endif
    bench_print("handoff_wakeups_per_million", bench_med(&wakeups), "wakeups");
    bench_print("handoff_refused_per_million", bench_med(&refused), "refusals");
    bench_print("handoff_net_wakeups_per_million", bench_med(&net_wakeups), "wakeups");
    bench_print("handoff_events_per_batch", bench_med(&per_batch), "events");
    bench_print("handoff_16b_inbox4096_events_per_s", bench_med(&small_rate[0]), "events/s");
    bench_print("handoff_128b_inbox4096_events_per_s", bench_med(&small_rate[1]), "events/s");
#if WB_HAVE_ZMQ
    bench_print2("handoff_16b_inbox4096_vs_zmq", bench_med(&small_ratio[0]), "ratio");
    bench_print2("handoff_128b_inbox4096_vs_zmq", bench_med(&small_ratio[1]), "ratio");
#endif
    return 0;
}
