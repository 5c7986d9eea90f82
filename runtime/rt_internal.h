/*
 * rt_internal.h - what rt.c and actor.c share. Not installed; not for apps.
 */
#ifndef WB_RT_INTERNAL_H
#define WB_RT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "runtime/actor.h"
#include "runtime/idmap.h"
#include "runtime/mpscq.h"
#include "runtime/rt.h"
#include "runtime/timerheap.h"

typedef struct {
    uint8_t lane;
    uint64_t addr;
} wb__waiter_t;

typedef struct wb__lane_s {
    wb_mpscq_t q;
    _Atomic long counted; /* data events queued and not yet taken */
    char pad_[64 - sizeof(long)];

    wb_rt_t *rt;
    wb_lane_t id;
    long limit, low;
    _Atomic int closed; /* sends now fail with WB_ECLOSED */
    int stopping;       /* lane thread saw WB_EV_STOP */
    int start_failed;   /* its service's on_start failed: events are dropped */
    int has_loop;       /* uv loop and handles initialised */
    wb_lane_service_t svc;

    pthread_mutex_t wait_lock;
    wb__waiter_t *waiters;
    size_t nwaiters, capwaiters;
    _Atomic int has_waiters;

    uv_loop_t loop;
    int wake_fd;     /* eventfd a producer writes to wake the lane (-1: none) */
    uv_poll_t waker; /* the lane's loop watching wake_fd */
    uv_idle_t idle;  /* active while work remains after a turn */
    pthread_t thread;
    int thread_started;

    _Atomic uint64_t st_events, st_batches, st_wakeups, st_dropped, st_refused, st_max_depth;
} wb__lane_t;

typedef struct wb__timer_s wb__timer_t;
struct wb__timer_s {
    wb_theap_entry_t entry; /* first: heap entries are cast back to timers */
    uint64_t id;
    wb_actor_t *owner;
    wb_event_t *ev;           /* the event to deliver; NULL once fired */
    wb__timer_t *prev, *next; /* owner's list */
};

typedef struct {
    wb_idmap_t actors;
    uint64_t next_actor;
    wb_actor_t *runq_head, *runq_tail;
    unsigned run_used;       /* messages the runq head has had in its current run (det mode) */
    wb_actor_t *pending_end; /* actors to end once no handler is on the stack */
    int in_handler;

    wb_idmap_t timers;
    uint64_t next_timer;
    wb_theap_t heap;
    uv_timer_t uvtimer;
    int timer_live;    /* uvtimer initialised and not closed */
    uint64_t armed_at; /* deadline the uv timer is set for, UINT64_MAX when none */
} wb__actsys_t;

struct wb_rt_s {
    wb_rt_config_t cfg;
    wb__lane_t lanes[WB_LANE_COUNT];
    int started, stopped;

    uint64_t rng;    /* deterministic mode */
    uint64_t vclock; /* deterministic mode, ms */

    wb__actsys_t as;

    pthread_mutex_t lock; /* start barrier and stop requests */
    pthread_cond_t cond;
    int start_pending, start_err;
    int stop_requested;

    wb_rt_trace_cb trace;
    void *trace_arg;
};

/* actor.c: the actor lane's service. */
void wb__actsys_init(wb_rt_t *rt);
void wb__actsys_fini(wb_rt_t *rt);
int wb__actsys_start(wb_rt_t *rt);
void wb__actsys_stop(wb_rt_t *rt);
void wb__actsys_deliver(wb_rt_t *rt, wb_event_t *ev);
/* Run queued actors for up to `budget` messages; returns messages handled. */
size_t wb__actsys_run(wb_rt_t *rt, size_t budget);
int wb__actsys_has_work(wb_rt_t *rt);
/* Fire due timers at `now`; returns how many fired. */
size_t wb__actsys_fire(wb_rt_t *rt, uint64_t now);
/* Earliest timer deadline, or UINT64_MAX. */
uint64_t wb__actsys_next_deadline(wb_rt_t *rt);
/* Threaded mode: point the uv timer at the earliest deadline. */
void wb__actsys_arm(wb_rt_t *rt);
/* rt.c: the actor lane's uv timer callback. */
void wb__rt_on_uvtimer(uv_timer_t *t);
/* Lane-level control events (dst 0) other than those rt.c handles. */
void wb__actsys_after_callback(wb_rt_t *rt);

#endif
