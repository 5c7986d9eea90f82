/*
 * rt.c - lanes, their threads and inboxes, deterministic stepping, shutdown.
 */
#include "runtime/rt_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/pool.h"

#define DRAIN_BUDGET 1024 /* events taken from an inbox per loop turn */
#define ACTOR_BUDGET 4096 /* actor messages handled per loop turn */
#define IDLE_SPINS   256  /* polls of an empty inbox before the lane goes idle */

static const char *lane_names[WB_LANE_COUNT] = {"net", "actor", "db"};

typedef struct {
    wb_call_cb fn;
    void *arg;
} call_t;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

static inline void stat_add(_Atomic uint64_t *s, uint64_t n)
{
    atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void wb_rt_config_init(wb_rt_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->inbox_limit = WB_RT_DEFAULT_INBOX_LIMIT;
    cfg->actor_batch = 64;
    cfg->mailbox_limit = WB_RT_DEFAULT_INBOX_LIMIT;
}

int wb_rt_is_deterministic(const wb_rt_t *rt)
{
    return rt->cfg.deterministic;
}

int wb_rt_new(wb_rt_t **out, const wb_rt_config_t *cfg)
{
    wb_rt_config_t def;
    if (out == NULL)
        return WB_EINVAL;
    if (cfg == NULL) {
        wb_rt_config_init(&def);
        cfg = &def;
    }
    wb_rt_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return WB_ENOMEM;
    rt->cfg = *cfg;
    if (rt->cfg.inbox_limit == 0)
        rt->cfg.inbox_limit = WB_RT_DEFAULT_INBOX_LIMIT;
    if (rt->cfg.actor_batch == 0)
        rt->cfg.actor_batch = 64;
    if (rt->cfg.mailbox_limit == 0)
        rt->cfg.mailbox_limit = WB_RT_DEFAULT_INBOX_LIMIT;
    rt->rng = cfg->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (rt->rng == 0)
        rt->rng = 1;
    pthread_mutex_init(&rt->lock, NULL);
    pthread_cond_init(&rt->cond, NULL);
    for (int i = 0; i < WB_LANE_COUNT; i++) {
        wb__lane_t *l = &rt->lanes[i];
        wb_mpscq_init(&l->q);
        l->rt = rt;
        l->id = (wb_lane_t)i;
        l->limit = (long)rt->cfg.inbox_limit;
        l->wake_fd = -1;
        l->low = l->limit / 2;
        pthread_mutex_init(&l->wait_lock, NULL);
    }
    wb__actsys_init(rt);
    *out = rt;
    return 0;
}

int wb_rt_set_service(wb_rt_t *rt, wb_lane_t lane, const wb_lane_service_t *svc)
{
    if (rt->started || lane == WB_LANE_ACTOR || lane >= WB_LANE_COUNT || svc == NULL)
        return WB_EINVAL;
    rt->lanes[lane].svc = *svc;
    return 0;
}

uv_loop_t *wb_rt_loop(wb_rt_t *rt, wb_lane_t lane)
{
    WB_ASSERT(lane < WB_LANE_COUNT);
    return rt->lanes[lane].has_loop ? &rt->lanes[lane].loop : NULL;
}

uint64_t wb_rt_now_ms(wb_rt_t *rt)
{
    if (rt->cfg.deterministic)
        return rt->vclock;
    return uv_hrtime() / 1000000u;
}

void wb_rt_set_trace(wb_rt_t *rt, wb_rt_trace_cb cb, void *arg)
{
    rt->trace = cb;
    rt->trace_arg = arg;
}

void wb_rt_count_drop(wb_rt_t *rt, wb_lane_t lane)
{
    stat_add(&rt->lanes[lane].st_dropped, 1);
}

void wb_rt_stats(wb_rt_t *rt, wb_lane_t lane, wb_lane_stats_t *out)
{
    wb__lane_t *l = &rt->lanes[lane];
    out->events = atomic_load_explicit(&l->st_events, memory_order_relaxed);
    out->batches = atomic_load_explicit(&l->st_batches, memory_order_relaxed);
    out->wakeups = atomic_load_explicit(&l->st_wakeups, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&l->st_dropped, memory_order_relaxed);
    out->refused = atomic_load_explicit(&l->st_refused, memory_order_relaxed);
    out->max_depth = atomic_load_explicit(&l->st_max_depth, memory_order_relaxed);
}

/* ---- sending and backpressure ------------------------------------------ */

static void wake(wb__lane_t *l)
{
    if (l->rt->cfg.deterministic || !l->has_loop)
        return;
    /* An eventfd write, not uv_async_send: libuv 1.44's async handle spins
     * (then sched_yields) in the woken loop while the sender is still in
     * write(), which cost 80-90 us per round trip on the reference machine
     * against ~6 us for the bare eventfd (bench_kv's profile). The consumer
     * is told at most once per idle period (mpscq's idle mark), so no
     * coalescing is needed here. */
    atomic_fetch_add_explicit(&l->st_wakeups, 1, memory_order_relaxed);
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(l->wake_fd, &one, sizeof(one));
    while (w < 0 && errno == EINTR);
}

static void push(wb__lane_t *l, wb_event_t *ev)
{
    if (wb_mpscq_push(&l->q, ev))
        wake(l);
}

/* Tell every producer refused by l that it may send again. */
static void resume_waiters(wb__lane_t *l)
{
    wb__waiter_t *w;
    size_t n;

    pthread_mutex_lock(&l->wait_lock);
    w = l->waiters;
    n = l->nwaiters;
    l->waiters = NULL;
    l->nwaiters = l->capwaiters = 0;
    atomic_store(&l->has_waiters, 0);
    pthread_mutex_unlock(&l->wait_lock);

    for (size_t i = 0; i < n; i++) {
        wb_event_t *ev = wb_event_new(WB_EV_RESUME, 0);
        if (ev == NULL) {
            wb_error("rt", "out of memory: lost a resume for lane %s addr %llu",
                     lane_names[w[i].lane], (unsigned long long)w[i].addr);
            continue;
        }
        ev->flags |= WB_EVF_CONTROL;
        wb_event_route(ev, l->id, 0, (wb_lane_t)w[i].lane, w[i].addr);
        ev->status = (int32_t)l->id;
        if (wb_rt_send(l->rt, ev) != 0)
            wb_event_free(ev);
    }
    free(w);
}

static int refuse(wb__lane_t *l, wb_event_t *ev)
{
    int dup = 0;
    stat_add(&l->st_refused, 1);
    pthread_mutex_lock(&l->wait_lock);
    for (size_t i = 0; i < l->nwaiters; i++)
        if (l->waiters[i].lane == ev->src_lane && l->waiters[i].addr == ev->src)
            dup = 1;
    if (!dup) {
        if (l->nwaiters == l->capwaiters) {
            size_t ncap = l->capwaiters ? l->capwaiters * 2 : 8;
            wb__waiter_t *nw = realloc(l->waiters, ncap * sizeof(*nw));
            if (nw == NULL) {
                pthread_mutex_unlock(&l->wait_lock);
                return WB_ENOMEM;
            }
            l->waiters = nw;
            l->capwaiters = ncap;
        }
        l->waiters[l->nwaiters].lane = ev->src_lane;
        l->waiters[l->nwaiters].addr = ev->src;
        l->nwaiters++;
    }
    atomic_store(&l->has_waiters, 1);
    pthread_mutex_unlock(&l->wait_lock);
    /* The consumer may have drained past its check before it could see us:
     * then nobody else will send the resume. */
    if (atomic_load(&l->counted) <= l->low)
        resume_waiters(l);
    return WB_EAGAIN;
}

int wb_rt_send(wb_rt_t *rt, wb_event_t *ev)
{
    WB_ASSERT(ev != NULL && ev->dst_lane < WB_LANE_COUNT);
    wb__lane_t *l = &rt->lanes[ev->dst_lane];
    if (atomic_load_explicit(&l->closed, memory_order_acquire))
        return WB_ECLOSED;
    if (!(ev->flags & WB_EVF_CONTROL)) {
        long n = atomic_fetch_add_explicit(&l->counted, 1, memory_order_relaxed);
        if (n >= l->limit) {
            atomic_fetch_sub_explicit(&l->counted, 1, memory_order_relaxed);
            return refuse(l, ev);
        }
        ev->flags |= WB_EVF_COUNTED;
    }
    push(l, ev);
    return 0;
}

int wb_rt_call(wb_rt_t *rt, wb_lane_t lane, wb_call_cb fn, void *arg)
{
    call_t c = {fn, arg};
    wb_event_t *ev = wb_event_new_copy(WB_EV_CALL, &c, sizeof(c));
    if (ev == NULL)
        return WB_ENOMEM;
    ev->flags |= WB_EVF_CONTROL;
    wb_event_route(ev, lane, 0, lane, 0);
    int rc = wb_rt_send(rt, ev);
    if (rc != 0)
        wb_event_free(ev);
    return rc;
}

/* ---- taking events ------------------------------------------------------ */

/* Hand one event to the lane's owner. The event is no longer counted. */
static void handle(wb__lane_t *l, wb_event_t *ev)
{
    wb_rt_t *rt = l->rt;
    stat_add(&l->st_events, 1);
    if (rt->trace != NULL) {
        ev->flags |= WB_EVF_TRACED; /* actor.c does not trace it again */
        rt->trace(rt, l->id, ev, rt->trace_arg);
    }
    if ((l->stopping || l->start_failed) && !(ev->dst == 0 && ev->type == WB_EV_STOP)) {
        wb_event_free(ev);
        return;
    }
    if (ev->dst == 0 && ev->type == WB_EV_CALL) {
        call_t c;
        memcpy(&c, ev->data, sizeof(c));
        wb_event_free(ev);
        c.fn(rt, c.arg);
        if (l->id == WB_LANE_ACTOR)
            wb__actsys_after_callback(rt);
        return;
    }
    if (ev->dst == 0 && ev->type == WB_EV_STOP) {
        wb_event_free(ev);
        int started = !l->start_failed; /* a lane whose start failed has nothing to stop */
        l->stopping = 1;
        if (l->id == WB_LANE_ACTOR)
            wb__actsys_stop(rt);
        else if (started && l->svc.on_stop != NULL)
            l->svc.on_stop(rt, l->svc.ctx);
        if (l->has_loop) {
            uv_unref((uv_handle_t *)&l->waker);
            uv_idle_stop(&l->idle);
            if (l->id == WB_LANE_ACTOR) {
                rt->as.timer_live = 0;
                uv_close((uv_handle_t *)&rt->as.uvtimer, NULL);
            }
        }
        return;
    }
    if (l->id == WB_LANE_ACTOR) {
        wb__actsys_deliver(rt, ev);
    } else if (l->svc.on_event != NULL) {
        l->svc.on_event(rt, l->svc.ctx, ev);
    } else {
        stat_add(&l->st_dropped, 1);
        wb_event_free(ev);
    }
}

/* Give back the bound taken by `k` counted events. */
static void uncount(wb__lane_t *l, long k)
{
    if (k == 0)
        return;
    long depth = atomic_fetch_sub(&l->counted, k);
    if ((uint64_t)depth > atomic_load_explicit(&l->st_max_depth, memory_order_relaxed))
        atomic_store_explicit(&l->st_max_depth, (uint64_t)depth, memory_order_relaxed);
    if (atomic_load(&l->has_waiters) && depth - k <= l->low)
        resume_waiters(l);
}

/* Take up to `budget` events. Returns how many; *busy when a push was half
 * done and the inbox must be looked at again. */
static size_t drain(wb__lane_t *l, size_t budget, int *busy)
{
    size_t n = 0;
    long k = 0;
    *busy = 0;
    while (n < budget) {
        wb_event_t *ev = wb_mpscq_pop(&l->q, busy);
        if (ev == NULL)
            break;
        if (ev->flags & WB_EVF_COUNTED) {
            ev->flags &= (uint8_t)~WB_EVF_COUNTED;
            /* Return the bound in batches: one atomic per 64 events. */
            if (++k == 64) {
                uncount(l, k);
                k = 0;
            }
        }
        n++;
        handle(l, ev);
    }
    uncount(l, k);
    return n;
}

/* ---- threaded mode ------------------------------------------------------ */

static void on_idle(uv_idle_t *h);

/* One turn of a lane: drain, run actors, and either go idle or ask for
 * another turn through the idle handle. */
static void lane_turn(wb__lane_t *l)
{
    wb_rt_t *rt = l->rt;
    int busy = 0;
    for (;;) {
        size_t n = drain(l, DRAIN_BUDGET, &busy);
        size_t m = 0;
        if (l->id == WB_LANE_ACTOR && !l->stopping)
            m = wb__actsys_run(rt, ACTOR_BUDGET);
        if (n > 0 || m > 0)
            stat_add(&l->st_batches, 1);
        if (l->stopping)
            return;
        if (n == DRAIN_BUDGET || busy || (l->id == WB_LANE_ACTOR && wb__actsys_has_work(rt))) {
            /* More to do: come back after the loop has polled I/O and timers. */
            if (l->id == WB_LANE_ACTOR)
                wb__actsys_arm(rt);
            uv_idle_start(&l->idle, on_idle);
            return;
        }
        /* Dry for now. Spin briefly: under steady load the next event is
         * usually microseconds away, and a wake-up costs more than that. */
        if (n > 0) {
            for (int i = 0; i < IDLE_SPINS && wb_mpscq_empty(&l->q); i++)
                cpu_relax();
            if (!wb_mpscq_empty(&l->q))
                continue;
        }
        if (l->svc.before_sleep != NULL && !l->start_failed)
            l->svc.before_sleep(rt, l->svc.ctx);
        if (l->id == WB_LANE_ACTOR)
            wb__actsys_arm(rt);
        if (wb_mpscq_try_idle(&l->q)) {
            uv_idle_stop(&l->idle);
            return;
        }
    }
}

static void on_wake(uv_poll_t *h, int status, int events)
{
    wb__lane_t *l = h->data;
    uint64_t n;
    (void)status;
    (void)events;
    if (read(l->wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        wb_warn("rt", "lane %s: wake-up read: %s", lane_names[l->id], strerror(errno));
    lane_turn(l);
}

static void on_idle(uv_idle_t *h)
{
    lane_turn(h->data);
}

void wb__rt_on_uvtimer(uv_timer_t *t)
{
    wb_rt_t *rt = t->data;
    rt->as.armed_at = UINT64_MAX;
    wb__actsys_fire(rt, wb_rt_now_ms(rt));
    lane_turn(&rt->lanes[WB_LANE_ACTOR]);
}

static int lane_loop_init(wb__lane_t *l)
{
    if (uv_loop_init(&l->loop) != 0)
        return WB_ESYS;
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_fd < 0 || uv_poll_init(&l->loop, &l->waker, l->wake_fd) != 0) {
        if (l->wake_fd >= 0)
            close(l->wake_fd);
        l->wake_fd = -1;
        uv_loop_close(&l->loop);
        return WB_ESYS;
    }
    l->waker.data = l;
    uv_poll_start(&l->waker, UV_READABLE, on_wake);
    uv_idle_init(&l->loop, &l->idle);
    l->idle.data = l;
    if (l->id == WB_LANE_ACTOR) {
        uv_timer_init(&l->loop, &l->rt->as.uvtimer);
        l->rt->as.uvtimer.data = l->rt;
        l->rt->as.timer_live = 1;
    }
    l->has_loop = 1;
    return 0;
}

static void close_cb_ignore(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void lane_loop_fini(wb__lane_t *l)
{
    if (!l->has_loop)
        return;
    uv_walk(&l->loop, close_cb_ignore, NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&l->loop);
    if (rc != 0)
        wb_error("rt", "lane %s: loop close: %s", lane_names[l->id], uv_strerror(rc));
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    l->wake_fd = -1;
    l->has_loop = 0;
}

static void start_done(wb_rt_t *rt, int err)
{
    pthread_mutex_lock(&rt->lock);
    if (err != 0 && rt->start_err == 0)
        rt->start_err = err;
    rt->start_pending--;
    pthread_cond_broadcast(&rt->cond);
    pthread_mutex_unlock(&rt->lock);
}

static int lane_start_service(wb__lane_t *l)
{
    if (l->id == WB_LANE_ACTOR)
        return wb__actsys_start(l->rt);
    if (l->svc.on_start != NULL)
        return l->svc.on_start(l->rt, l->svc.ctx);
    return 0;
}

static void *lane_main(void *arg)
{
    wb__lane_t *l = arg;
    int err = lane_start_service(l);
    if (err != 0)
        l->start_failed = 1;
    start_done(l->rt, err);
    /* A wake-up may already be pending; run until WB_EV_STOP unrefs the waker
     * and the service has closed its own handles. */
    uv_run(&l->loop, UV_RUN_DEFAULT);
    wb_pool_flush_thread();
    return NULL;
}

/* ---- start and stop ----------------------------------------------------- */

int wb_rt_start(wb_rt_t *rt)
{
    if (rt->started)
        return WB_ESTATE;
    rt->started = 1;
    if (rt->cfg.deterministic) {
        for (int i = 0; i < WB_LANE_COUNT; i++) {
            int err = lane_start_service(&rt->lanes[i]);
            if (err != 0) {
                /* As in threaded mode: a service that did not start (this
                 * one, and those after it) sees no events and no stop. */
                for (int j = i; j < WB_LANE_COUNT; j++)
                    rt->lanes[j].start_failed = 1;
                wb_rt_stop(rt);
                return err;
            }
        }
        return 0;
    }
    for (int i = 0; i < WB_LANE_COUNT; i++) {
        int rc = lane_loop_init(&rt->lanes[i]);
        if (rc != 0) {
            wb_rt_stop(rt);
            return rc;
        }
    }
    rt->start_pending = WB_LANE_COUNT;
    for (int i = 0; i < WB_LANE_COUNT; i++) {
        wb__lane_t *l = &rt->lanes[i];
        if (pthread_create(&l->thread, NULL, lane_main, l) != 0) {
            start_done(rt, WB_ESYS);
            continue;
        }
        l->thread_started = 1;
        /* Anything sent before start is waiting: make sure it is seen. */
        wake(l);
    }
    pthread_mutex_lock(&rt->lock);
    while (rt->start_pending > 0)
        pthread_cond_wait(&rt->cond, &rt->lock);
    int err = rt->start_err;
    pthread_mutex_unlock(&rt->lock);
    if (err != 0) {
        wb_error("rt", "start failed: %s", wb_strerror(err));
        wb_rt_stop(rt);
        return err;
    }
    wb_debug("rt", "started: lanes net, actor, db");
    return 0;
}

static void stop_lane(wb_rt_t *rt, wb__lane_t *l)
{
    atomic_store_explicit(&l->closed, 1, memory_order_release);
    if (rt->cfg.deterministic) {
        /* Finish what is queued, then shut the service. */
        int busy;
        drain(l, SIZE_MAX, &busy);
        if (l->id == WB_LANE_ACTOR) {
            while (wb__actsys_run(rt, SIZE_MAX) > 0)
                ;
            wb__actsys_stop(rt);
        } else if (!l->start_failed) {
            if (l->svc.before_sleep != NULL)
                l->svc.before_sleep(rt, l->svc.ctx);
            if (l->svc.on_stop != NULL)
                l->svc.on_stop(rt, l->svc.ctx);
        }
        l->stopping = 1;
        return;
    }
    if (!l->thread_started)
        return;
    wb_event_t *ev = wb_event_new(WB_EV_STOP, 0);
    WB_ASSERT(ev != NULL);
    ev->flags |= WB_EVF_CONTROL;
    wb_event_route(ev, l->id, 0, l->id, 0);
    push(l, ev);
    pthread_join(l->thread, NULL);
    l->thread_started = 0;
}

void wb_rt_stop(wb_rt_t *rt)
{
    if (!rt->started || rt->stopped)
        return;
    rt->stopped = 1;
    stop_lane(rt, &rt->lanes[WB_LANE_NET]);
    stop_lane(rt, &rt->lanes[WB_LANE_ACTOR]);
    stop_lane(rt, &rt->lanes[WB_LANE_DB]);
    wb_rt_request_stop(rt);
}

void wb_rt_request_stop(wb_rt_t *rt)
{
    pthread_mutex_lock(&rt->lock);
    rt->stop_requested = 1;
    pthread_cond_broadcast(&rt->cond);
    pthread_mutex_unlock(&rt->lock);
}

void wb_rt_wait(wb_rt_t *rt)
{
    pthread_mutex_lock(&rt->lock);
    while (!rt->stop_requested)
        pthread_cond_wait(&rt->cond, &rt->lock);
    pthread_mutex_unlock(&rt->lock);
}

void wb_rt_free(wb_rt_t *rt)
{
    if (rt == NULL)
        return;
    wb_rt_stop(rt);
    for (int i = 0; i < WB_LANE_COUNT; i++) {
        wb__lane_t *l = &rt->lanes[i];
        int busy;
        wb_event_t *ev;
        /* Whatever raced in after the lane stopped is freed unread. */
        while ((ev = wb_mpscq_pop(&l->q, &busy)) != NULL || busy)
            wb_event_free(ev);
        lane_loop_fini(l);
        free(l->waiters);
        pthread_mutex_destroy(&l->wait_lock);
    }
    wb__actsys_fini(rt);
    pthread_mutex_destroy(&rt->lock);
    pthread_cond_destroy(&rt->cond);
    free(rt);
}

/* ---- deterministic mode ------------------------------------------------- */

static uint64_t next_rand(wb_rt_t *rt)
{
    uint64_t x = rt->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rt->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Take one event from lane l. */
static void step_lane(wb__lane_t *l)
{
    int busy;
    wb_event_t *ev = wb_mpscq_pop(&l->q, &busy);
    WB_ASSERT(ev != NULL);
    if (ev->flags & WB_EVF_COUNTED) {
        ev->flags &= (uint8_t)~WB_EVF_COUNTED;
        handle(l, ev);
        uncount(l, 1);
    } else {
        handle(l, ev);
    }
    stat_add(&l->st_batches, 1);
    if (wb_mpscq_empty(&l->q) && l->svc.before_sleep != NULL && l->id != WB_LANE_ACTOR)
        l->svc.before_sleep(l->rt, l->svc.ctx);
}

int wb_rt_step(wb_rt_t *rt)
{
    WB_ASSERT(rt->cfg.deterministic);
    if (!rt->started || rt->stopped)
        return 0;
    /* Choices: the three inboxes, and the actor run queue. */
    int choice[WB_LANE_COUNT + 1];
    int n = 0;
    for (int i = 0; i < WB_LANE_COUNT; i++)
        if (!wb_mpscq_empty(&rt->lanes[i].q))
            choice[n++] = i;
    if (wb__actsys_has_work(rt))
        choice[n++] = WB_LANE_COUNT;
    if (n == 0) {
        uint64_t next = wb__actsys_next_deadline(rt);
        if (next == UINT64_MAX)
            return 0;
        if (next > rt->vclock)
            rt->vclock = next;
        wb__actsys_fire(rt, rt->vclock);
        return 1;
    }
    int pick = choice[next_rand(rt) % (uint64_t)n];
    if (pick == WB_LANE_COUNT)
        wb__actsys_run(rt, 1);
    else
        step_lane(&rt->lanes[pick]);
    return 1;
}

size_t wb_rt_run(wb_rt_t *rt, size_t max_steps)
{
    size_t n = 0;
    while (n < max_steps && wb_rt_step(rt))
        n++;
    return n;
}

void wb_rt_advance(wb_rt_t *rt, uint64_t ms)
{
    WB_ASSERT(rt->cfg.deterministic);
    rt->vclock += ms;
    wb__actsys_fire(rt, rt->vclock);
}
