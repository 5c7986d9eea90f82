/*
 * bench_actor.c - the actor lane alone: messages between actors, spawning,
 * timers.
 *
 * Each case runs twice, named by mode:
 *   det  deterministic mode (cfg.deterministic = 1, wb_rt_run): the pure cost
 *        on one thread, plus the stepper's coin toss per step;
 *   thr  threaded mode: the work runs on the actor lane's thread, started
 *        with wb_rt_call; the clock stops when the last handler runs.
 *
 * Cases:
 *   pingpong   two actors forward one event back and forth (wb_actor_send,
 *              no allocation per message)
 *   fresh      one actor sends newly allocated 16-byte events to another,
 *              which frees them; windows of 64, the receiver handing the
 *              sender's go event back after each window
 *   spawn      a parent spawns a child, pokes it, the child exits, the
 *              parent gets WB_EV_ACTOR_DONE and spawns the next
 *   timer      one actor starts TIMERS timers with random delays 0-50 ms:
 *              start rate, start+cancel rate (all cancelled right away),
 *              fire rate (det: virtual clock, so pure cost) and, threaded,
 *              how late timers fire against their real-time deadline
 * Each figure is the median of RUNS runs, each on a new runtime; a run that
 * takes longer than RUN_CAP_NS stops early and counts what it did.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/event.h"
#include "runtime/rt.h"
#include "tests/bench/bench_common.h"

#define RUNS         5
#define PINGPONG_N   4000000u
#define FRESH_N      4000000u
#define FRESH_BURST  64u
#define SPAWN_N      500000u
#define TIMERS       100000u
#define TIMER_MAX_MS 50u
#define RUN_CAP_NS   500000000ull /* a run stops early after this long */
#define WAIT_CAP_NS  10000000000ull

#define EV_GO   (WB_EV_USER + 1)
#define EV_DATA (WB_EV_USER + 2)
#define EV_POKE (WB_EV_USER + 3)

typedef struct bench_s bench_t;

typedef struct {
    bench_t *b;
    uint64_t peer; /* pingpong: the other actor; fresh: the receiver */
    uint64_t id;
} actor_st_t;

struct bench_s {
    wb_rt_t *rt;
    int det;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    uint64_t t0, t1;

    uint64_t n, count, sent, result;
    actor_st_t a, c; /* two actors' states */
    wb_event_t *poke;

    /* timers */
    uint64_t *ids;
    uint64_t *deadline_ns;
    double *late_ms;
    uint64_t fired;
    uint64_t t_started, t_cancelled;
    int cancel;
    uint64_t rng;
};

static uint64_t rnd(bench_t *b)
{
    uint64_t x = b->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b->rng = x;
    return x;
}

static void finish(bench_t *b)
{
    b->t1 = bench_now_ns();
    b->result = b->count; /* in-flight messages may still arrive afterwards */
    pthread_mutex_lock(&b->lock);
    b->done = 1;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* Called every message: end the run early once it has taken RUN_CAP_NS. */
static inline void maybe_cap(bench_t *b)
{
    if ((b->count & 0xffff) == 0 && b->count > 0 && bench_now_ns() - b->t0 > RUN_CAP_NS)
        b->n = b->count;
}

/* ---- harness ---------------------------------------------------------------- */

typedef void (*setup_cb)(bench_t *b);
typedef void (*kick_cb)(wb_rt_t *rt, void *arg);

static void bench_open(bench_t *b, int det)
{
    wb_rt_config_t cfg;
    pthread_condattr_t ca;
    uint64_t *ids = b->ids, *dl = b->deadline_ns;
    double *late = b->late_ms;

    memset(b, 0, sizeof(*b));
    b->ids = ids;
    b->deadline_ns = dl;
    b->late_ms = late;
    b->det = det;
    b->rng = 0x9E3779B97F4A7C15ull;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    wb_rt_config_init(&cfg);
    cfg.deterministic = det;
    cfg.seed = 42;
    if (wb_rt_new(&b->rt, &cfg) != 0)
        BENCH_FAIL("wb_rt_new failed");
}

/* Start the runtime, run kick on the actor lane, wait until finish(). */
static void bench_go(bench_t *b, kick_cb kick)
{
    if (wb_rt_start(b->rt) != 0)
        BENCH_FAIL("wb_rt_start failed");
    if (b->det) {
        kick(b->rt, b);
        wb_rt_run(b->rt, SIZE_MAX);
        if (!b->done)
            BENCH_FAIL("deterministic run went idle before the end");
        return;
    }
    if (wb_rt_call(b->rt, WB_LANE_ACTOR, kick, b) != 0)
        BENCH_FAIL("wb_rt_call failed");
    uint64_t deadline = bench_now_ns() + WAIT_CAP_NS;
    struct timespec ts = {(time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u)};
    pthread_mutex_lock(&b->lock);
    while (!b->done)
        if (pthread_cond_timedwait(&b->cond, &b->lock, &ts) != 0 && !b->done)
            BENCH_FAIL("run did not finish: %llu of %llu", (unsigned long long)b->count,
                       (unsigned long long)b->n);
    pthread_mutex_unlock(&b->lock);
}

static void bench_close(bench_t *b)
{
    wb_rt_free(b->rt);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
}

static uint64_t spawn(bench_t *b, const wb_actor_def_t *def, actor_st_t *st)
{
    st->b = b;
    if (wb_actor_spawn(b->rt, NULL, def, st, &st->id) != 0)
        BENCH_FAIL("wb_actor_spawn failed");
    return st->id;
}

static void send_or_fail(wb_rt_t *rt, wb_actor_t *self, uint64_t to, wb_event_t *ev)
{
    int rc = wb_actor_send(rt, self, to, ev);
    if (rc != 0)
        BENCH_FAIL("wb_actor_send: %s", wb_strerror(rc));
}

/* ---- pingpong --------------------------------------------------------------- */

static void pp_handle(wb_actor_t *self, wb_event_t *ev)
{
    actor_st_t *st = wb_actor_state(self);
    bench_t *b = st->b;
    ++b->count;
    maybe_cap(b);
    if (b->count >= b->n) {
        wb_event_free(ev);
        finish(b);
        return;
    }
    send_or_fail(b->rt, self, st->peer, ev);
}

static const wb_actor_def_t pp_def = {"pingpong", pp_handle, NULL};

static void pp_kick(wb_rt_t *rt, void *arg)
{
    bench_t *b = arg;
    wb_event_t *ev = wb_event_new(EV_DATA, 16);
    if (ev == NULL)
        BENCH_FAIL("out of memory");
    memset(ev->data, 0, 16);
    b->t0 = bench_now_ns();
    send_or_fail(rt, NULL, b->a.id, ev);
}

static double run_pingpong(bench_t *b, int det)
{
    bench_open(b, det);
    b->n = PINGPONG_N;
    spawn(b, &pp_def, &b->a);
    spawn(b, &pp_def, &b->c);
    b->a.peer = b->c.id;
    b->c.peer = b->a.id;
    bench_go(b, pp_kick);
    double r = bench_rate(b->result, b->t1 - b->t0);
    bench_close(b);
    return r;
}

/* ---- fresh events ------------------------------------------------------------- */

/* The sender sends a window of FRESH_BURST events and then its go event,
 * which the receiver hands back once it has taken the window: credit-based
 * flow control, so the receiver's mailbox stays one window deep. */
static void fresh_send(wb_actor_t *self, wb_event_t *ev)
{
    actor_st_t *st = wb_actor_state(self);
    bench_t *b = st->b;
    for (unsigned i = 0; i < FRESH_BURST && b->sent < b->n; i++) {
        wb_event_t *m = wb_event_new(EV_DATA, 16);
        if (m == NULL)
            BENCH_FAIL("out of memory");
        memcpy(m->data, &b->sent, sizeof(b->sent));
        memset((char *)m->data + 8, 0, 8);
        send_or_fail(b->rt, self, st->peer, m);
        b->sent++;
    }
    if (b->sent < b->n)
        send_or_fail(b->rt, self, st->peer, ev);
    else
        wb_event_free(ev);
}

static void fresh_recv(wb_actor_t *self, wb_event_t *ev)
{
    actor_st_t *st = wb_actor_state(self);
    bench_t *b = st->b;
    if (ev->type == EV_GO) {
        send_or_fail(b->rt, self, st->peer, ev);
        return;
    }
    uint64_t seq;
    memcpy(&seq, ev->data, sizeof(seq));
    if (seq != b->count)
        BENCH_FAIL("message %llu arrived, expected %llu", (unsigned long long)seq,
                   (unsigned long long)b->count);
    wb_event_free(ev);
    ++b->count;
    maybe_cap(b);
    if (b->count == b->n)
        finish(b);
}

static const wb_actor_def_t fresh_send_def = {"fresh-sender", fresh_send, NULL};
static const wb_actor_def_t fresh_recv_def = {"fresh-receiver", fresh_recv, NULL};

static void fresh_kick(wb_rt_t *rt, void *arg)
{
    bench_t *b = arg;
    wb_event_t *ev = wb_event_new(EV_GO, 0);
    if (ev == NULL)
        BENCH_FAIL("out of memory");
    b->t0 = bench_now_ns();
    send_or_fail(rt, NULL, b->a.id, ev);
}

static double run_fresh(bench_t *b, int det)
{
    bench_open(b, det);
    b->n = FRESH_N;
    spawn(b, &fresh_send_def, &b->a);
    spawn(b, &fresh_recv_def, &b->c);
    b->a.peer = b->c.id;
    b->c.peer = b->a.id;
    bench_go(b, fresh_kick);
    double r = bench_rate(b->result, b->t1 - b->t0);
    bench_close(b);
    return r;
}

/* ---- spawn and exit ------------------------------------------------------------ */

static void child_handle(wb_actor_t *self, wb_event_t *ev)
{
    /* Hand the poke back, then end: the parent gets it before the DONE. */
    send_or_fail(wb_actor_rt(self), self, wb_actor_parent(self), ev);
    wb_actor_exit(self, 0);
}

static const wb_actor_def_t child_def = {"child", child_handle, NULL};

static void spawn_next(wb_actor_t *self, bench_t *b)
{
    uint64_t id;
    int rc = wb_actor_spawn(b->rt, self, &child_def, NULL, &id);
    if (rc != 0)
        BENCH_FAIL("wb_actor_spawn: %s", wb_strerror(rc));
    wb_event_t *ev = b->poke;
    b->poke = NULL;
    send_or_fail(b->rt, self, id, ev);
}

static void parent_handle(wb_actor_t *self, wb_event_t *ev)
{
    actor_st_t *st = wb_actor_state(self);
    bench_t *b = st->b;
    switch (ev->type) {
    case EV_POKE:
        b->poke = ev;
        if (b->count == 0 && b->sent == 0) {
            b->sent = 1;
            spawn_next(self, b);
        }
        return;
    case WB_EV_ACTOR_DONE:
        if (ev->status != 0)
            BENCH_FAIL("child ended with %d", ev->status);
        wb_event_free(ev);
        ++b->count;
        maybe_cap(b);
        if (b->count == b->n) {
            wb_event_free(b->poke);
            b->poke = NULL;
            if (wb_actor_count(b->rt) != 1)
                BENCH_FAIL("%zu actors left, expected the parent only", wb_actor_count(b->rt));
            finish(b);
            return;
        }
        if (b->poke == NULL)
            BENCH_FAIL("poke not back before DONE");
        spawn_next(self, b);
        return;
    default:
        wb_event_free(ev);
    }
}

static const wb_actor_def_t parent_def = {"parent", parent_handle, NULL};

static void spawn_kick(wb_rt_t *rt, void *arg)
{
    bench_t *b = arg;
    wb_event_t *ev = wb_event_new(EV_POKE, 0);
    if (ev == NULL)
        BENCH_FAIL("out of memory");
    b->t0 = bench_now_ns();
    send_or_fail(rt, NULL, b->a.id, ev);
}

static double run_spawn(bench_t *b, int det)
{
    bench_open(b, det);
    b->n = SPAWN_N;
    spawn(b, &parent_def, &b->a);
    bench_go(b, spawn_kick);
    double r = bench_rate(b->result, b->t1 - b->t0);
    bench_close(b);
    return r;
}

/* ---- timers ------------------------------------------------------------------ */

static void timer_handle(wb_actor_t *self, wb_event_t *ev)
{
    actor_st_t *st = wb_actor_state(self);
    bench_t *b = st->b;

    if (ev->type == EV_GO) {
        wb_event_free(ev);
        uint64_t t = bench_now_ns();
        b->t0 = t;
        int stamp = !b->det && !b->cancel; /* lateness wanted: clock each start */
        for (unsigned i = 0; i < TIMERS; i++) {
            uint64_t delay = rnd(b) % (TIMER_MAX_MS + 1);
            if (stamp)
                t = bench_now_ns();
            int rc = wb_timer_start(self, delay, &b->ids[i]);
            if (rc != 0)
                BENCH_FAIL("wb_timer_start: %s", wb_strerror(rc));
            b->deadline_ns[i] = t + delay * 1000000u;
        }
        b->t_started = bench_now_ns();
        if (b->cancel) {
            for (unsigned i = 0; i < TIMERS; i++)
                if (wb_timer_cancel(self, b->ids[i]) != 0)
                    BENCH_FAIL("wb_timer_cancel failed");
            b->t_cancelled = bench_now_ns();
            if (wb_timer_count(b->rt) != 0)
                BENCH_FAIL("%zu timers left after cancelling all", wb_timer_count(b->rt));
            finish(b);
        }
        return;
    }
    if (ev->type != WB_EV_TIMER)
        BENCH_FAIL("unexpected event %u", ev->type);
    /* Timer ids are handed out in order from the first. */
    uint64_t i = ev->cookie - b->ids[0];
    if (i >= TIMERS || b->ids[i] != ev->cookie)
        BENCH_FAIL("unknown timer %llu", (unsigned long long)ev->cookie);
    if (!b->det)
        b->late_ms[b->fired] = ((double)bench_now_ns() - (double)b->deadline_ns[i]) / 1e6;
    wb_event_free(ev);
    if (++b->fired == TIMERS)
        finish(b);
}

static const wb_actor_def_t timer_def = {"timers", timer_handle, NULL};

static void timer_kick(wb_rt_t *rt, void *arg)
{
    bench_t *b = arg;
    wb_event_t *ev = wb_event_new(EV_GO, 0);
    if (ev == NULL)
        BENCH_FAIL("out of memory");
    send_or_fail(rt, NULL, b->a.id, ev);
}

typedef struct {
    double start_rate, cancel_rate, fire_rate, late_p50, late_max;
} timer_res_t;

static timer_res_t run_timers(bench_t *b, int det, int cancel)
{
    timer_res_t r = {0, 0, 0, 0, 0};
    bench_open(b, det);
    b->cancel = cancel;
    b->n = TIMERS;
    spawn(b, &timer_def, &b->a);
    bench_go(b, timer_kick);
    r.start_rate = bench_rate(TIMERS, b->t_started - b->t0);
    if (cancel) {
        /* The start rate is taken here, where starts are not clocked one by one. */
        r.cancel_rate = bench_rate(TIMERS, b->t_cancelled - b->t0);
    } else {
        /* det: the virtual clock jumps, so this is the cost of firing and
         * delivering; threaded: it follows the 50 ms schedule. */
        r.fire_rate = bench_rate(TIMERS, b->t1 - b->t_started);
        if (!det) {
            r.late_max = b->late_ms[0];
            for (unsigned i = 1; i < TIMERS; i++)
                if (b->late_ms[i] > r.late_max)
                    r.late_max = b->late_ms[i];
            r.late_p50 = bench_median(b->late_ms, TIMERS);
        }
    }
    bench_close(b);
    return r;
}

/* ---- main --------------------------------------------------------------------- */

int main(void)
{
    static bench_t b;
    static const char *mode[2] = {"thr", "det"};
    char name[96];

    bench_cpus();
    b.ids = calloc(TIMERS, sizeof(*b.ids));
    b.deadline_ns = calloc(TIMERS, sizeof(*b.deadline_ns));
    b.late_ms = calloc(TIMERS, sizeof(*b.late_ms));
    if (b.ids == NULL || b.deadline_ns == NULL || b.late_ms == NULL)
        BENCH_FAIL("out of memory");

    for (int det = 1; det >= 0; det--) {
        bench_samples_t pp = {0}, fr = {0}, sp = {0};
        bench_samples_t t_start = {0}, t_cancel = {0}, t_fire = {0}, t_p50 = {0}, t_max = {0};
        for (int r = 0; r < RUNS; r++) {
            bench_add(&pp, run_pingpong(&b, det));
            bench_add(&fr, run_fresh(&b, det));
            bench_add(&sp, run_spawn(&b, det));
            timer_res_t tr = run_timers(&b, det, 0);
            bench_add(&t_fire, tr.fire_rate);
            bench_add(&t_p50, tr.late_p50);
            bench_add(&t_max, tr.late_max);
            tr = run_timers(&b, det, 1);
            bench_add(&t_start, tr.start_rate);
            bench_add(&t_cancel, tr.cancel_rate);
        }
        snprintf(name, sizeof(name), "actor_%s_pingpong_msgs_per_s", mode[det]);
        bench_print(name, bench_med(&pp), "msgs/s");
        snprintf(name, sizeof(name), "actor_%s_fresh_msgs_per_s", mode[det]);
        bench_print(name, bench_med(&fr), "msgs/s");
        snprintf(name, sizeof(name), "actor_%s_spawn_exit_per_s", mode[det]);
        bench_print(name, bench_med(&sp), "actors/s");
        snprintf(name, sizeof(name), "timer_%s_start_per_s", mode[det]);
        bench_print(name, bench_med(&t_start), "timers/s");
        snprintf(name, sizeof(name), "timer_%s_start_cancel_per_s", mode[det]);
        bench_print(name, bench_med(&t_cancel), "pairs/s");
        if (det) {
            snprintf(name, sizeof(name), "timer_%s_fire_per_s", mode[det]);
            bench_print(name, bench_med(&t_fire), "timers/s");
        } else {
            snprintf(name, sizeof(name), "timer_%s_late_p50_ms", mode[det]);
            bench_print2(name, bench_med(&t_p50), "ms");
            snprintf(name, sizeof(name), "timer_%s_late_max_ms", mode[det]);
            bench_print2(name, bench_med(&t_max), "ms");
        }
    }
    free(b.ids);
    free(b.deadline_ns);
    free(b.late_ms);
    return 0;
}
