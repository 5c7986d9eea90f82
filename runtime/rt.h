/*
 * rt.h - the runtime: three lanes (network, actor, database), each a thread
 * with one inbox, exchanging events.
 *
 * Threaded mode: every lane runs a libuv loop on its own thread; its inbox is
 * drained in batches by one uv_async_t, woken once per empty-to-non-empty
 * transition. Deterministic mode: no threads at all; wb_rt_step() picks, with
 * a seeded generator, which lane takes its next event, and timers run on a
 * virtual clock, so a run is repeatable from its seed.
 *
 * Lanes serve events through a wb_lane_service_t. The actor lane's service is
 * built in (actors, timers: see actor.h); db/ installs the database lane's and
 * sockets/ the network lane's. Events a lane has no service for are counted
 * as dropped and freed.
 *
 * Backpressure: each inbox holds at most `inbox_limit` data events. A send
 * that would pass it fails with WB_EAGAIN (the caller keeps the event) and the
 * sender, (ev->src_lane, ev->src), is sent one WB_EV_RESUME when the inbox has
 * drained to half. Control events are never refused.
 *
 * Threads: wb_rt_send, wb_rt_call, wb_rt_request_stop and wb_rt_stats may be
 * called from any thread once the runtime is started; the rest from the
 * thread that created the runtime. In deterministic mode everything runs on
 * the creating thread.
 */
#ifndef WB_RT_H
#define WB_RT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/event.h"

typedef struct wb_rt_s wb_rt_t;
typedef struct uv_loop_s uv_loop_t;

typedef void (*wb_lane_event_cb)(wb_rt_t *rt, void *ctx, wb_event_t *ev);
typedef int (*wb_lane_start_cb)(wb_rt_t *rt, void *ctx);
typedef void (*wb_lane_hook_cb)(wb_rt_t *rt, void *ctx);
typedef void (*wb_call_cb)(wb_rt_t *rt, void *arg);

typedef struct {
    /* An event arrived for this lane; the callback owns it. */
    wb_lane_event_cb on_event;
    /* On the lane's thread before its first event; a negative return fails
     * wb_rt_start with that code. A service whose on_start failed (or never
     * ran because another failed first) gets no more calls: its queued events
     * are freed unread, in both modes. May be NULL. */
    wb_lane_start_cb on_start;
    /* The inbox is empty for now: flush writes, commit the batch. May be NULL. */
    wb_lane_hook_cb before_sleep;
    /* The lane is stopping: on the lane's thread, uv_close every handle the
     * service owns. The lane then runs its loop until those closes have
     * completed, so the last close callback is where the service may free
     * its state. May be NULL. */
    wb_lane_hook_cb on_stop;
    void *ctx;
} wb_lane_service_t;

/* Data events an inbox holds before it refuses more. Small on purpose: the
 * events in flight should stay in the last-level cache (4096 events of 128 to
 * 256 bytes is 0.5 to 1 MiB); at 65536 the hand-off rate fell from about
 * 12 M/s to 3 M/s on the reference machine (tests/bench/bench_handoff.c). */
#define WB_RT_DEFAULT_INBOX_LIMIT 4096

typedef struct {
    int deterministic;      /* 1: single-threaded, seeded stepping, virtual clock */
    uint64_t seed;          /* deterministic mode's scheduling seed */
    uint32_t inbox_limit;   /* data events an inbox may hold (default WB_RT_DEFAULT_INBOX_LIMIT) */
    uint32_t actor_batch;   /* messages an actor handles per run before others go (default 64) */
    uint32_t mailbox_limit; /* messages an actor's mailbox holds before local data sends
                               are refused (default WB_RT_DEFAULT_INBOX_LIMIT) */
    /* Called on the actor lane when an actor created by the runtime (no
     * parent) ends. May be NULL. */
    void (*root_done_cb)(wb_rt_t *rt, uint64_t actor, int status, void *user);
    void *user;
} wb_rt_config_t;

typedef struct {
    uint64_t events;    /* events handled by the lane */
    uint64_t batches;   /* inbox drains that found work */
    uint64_t wakeups;   /* wake-ups producers had to give (uv_async_send calls) */
    uint64_t dropped;   /* events with no one to take them */
    uint64_t refused;   /* sends refused with WB_EAGAIN */
    uint64_t max_depth; /* largest number of counted data events seen waiting */
} wb_lane_stats_t;

void wb_rt_config_init(wb_rt_config_t *cfg);

/* A new runtime, not yet running. Returns 0, WB_EINVAL or WB_ENOMEM. */
int wb_rt_new(wb_rt_t **out, const wb_rt_config_t *cfg);

/* Install the service for the network or database lane. Before start only. */
int wb_rt_set_service(wb_rt_t *rt, wb_lane_t lane, const wb_lane_service_t *svc);

/* Start the lanes (threads, or nothing in deterministic mode) and run every
 * service's on_start. Returns 0 or the first on_start error, in which case
 * the runtime is stopped again and may only be freed. */
int wb_rt_start(wb_rt_t *rt);

/* Queue ev for (ev->dst_lane, ev->dst). On 0 the runtime owns ev. On
 * WB_EAGAIN (data event, inbox full: a WB_EV_RESUME will follow),
 * WB_ECLOSED (the lane has stopped) or WB_ENOMEM (inbox full and no memory
 * to note the sender: no resume will follow) the caller still owns ev. */
int wb_rt_send(wb_rt_t *rt, wb_event_t *ev);

/* Run fn(rt, arg) on `lane`'s thread, in order with its events. A control
 * event: never refused while the lane runs. Returns 0, WB_ENOMEM or WB_ECLOSED. */
int wb_rt_call(wb_rt_t *rt, wb_lane_t lane, wb_call_cb fn, void *arg);

/* Ask the owner's wb_rt_wait() to return. Any thread; idempotent. */
void wb_rt_request_stop(wb_rt_t *rt);

/* Block until wb_rt_request_stop() is called. Threaded mode only. */
void wb_rt_wait(wb_rt_t *rt);

/* Stop every lane in order (network, actor, database): each finishes the
 * events already queued to it, its service's on_stop runs, and its thread is
 * joined. Actors are discarded and timers cancelled. Later sends fail with
 * WB_ECLOSED. Idempotent. */
void wb_rt_stop(wb_rt_t *rt);

/* Stop if needed, free every event still queued, and free the runtime. */
void wb_rt_free(wb_rt_t *rt);

/* The lane's libuv loop (threaded mode), or NULL. Touch it only from the
 * lane's own thread. */
uv_loop_t *wb_rt_loop(wb_rt_t *rt, wb_lane_t lane);

/* Milliseconds on the actor lane's clock (virtual in deterministic mode). */
uint64_t wb_rt_now_ms(wb_rt_t *rt);

/* Counters of a lane; any thread; values are read without a lock. */
void wb_rt_stats(wb_rt_t *rt, wb_lane_t lane, wb_lane_stats_t *out);

/* Note that the lane dropped an event nobody could take (services call this). */
void wb_rt_count_drop(wb_rt_t *rt, wb_lane_t lane);

int wb_rt_is_deterministic(const wb_rt_t *rt);

/* Deterministic mode: take one step. Returns 1 when something ran, 0 when
 * every inbox and run queue is empty and no timer is pending. When only
 * timers are pending, the virtual clock jumps to the earliest and it fires. */
int wb_rt_step(wb_rt_t *rt);

/* Deterministic mode: step until idle or max_steps; returns steps taken. */
size_t wb_rt_run(wb_rt_t *rt, size_t max_steps);

/* Deterministic mode: move the virtual clock forward by ms, firing what is due. */
void wb_rt_advance(wb_rt_t *rt, uint64_t ms);

/* A hook called for every event a lane takes, before it is handled, on that
 * lane's thread. For traces and replay tests; NULL turns it off. */
typedef void (*wb_rt_trace_cb)(wb_rt_t *rt, wb_lane_t lane, const wb_event_t *ev, void *arg);
void wb_rt_set_trace(wb_rt_t *rt, wb_rt_trace_cb cb, void *arg);

#endif
