/*
 * actor.h - state machines on the actor lane.
 *
 * An actor is a handler and a state pointer with an id. Actors are created by
 * another actor (which becomes their parent) or by the runtime (no parent).
 * When an actor ends, its parent gets a WB_EV_ACTOR_DONE event (src = the
 * child's id, status = its exit status); the actors it created are discarded
 * with it (their fini runs, they send no completion), its timers are
 * cancelled and its unread mail freed.
 *
 * Each actor handles at most `actor_batch` messages per run, then the next
 * actor with mail goes, so one busy actor cannot starve the others.
 *
 * Threads: everything here runs on the actor lane only (or, before start and
 * in deterministic mode, on the runtime's own thread). Other threads reach
 * actors with wb_rt_send() (dst_lane = WB_LANE_ACTOR, dst = actor id) and
 * create them with wb_rt_call().
 */
#ifndef WB_ACTOR_H
#define WB_ACTOR_H

#include <stdint.h>

#include "runtime/event.h"
#include "runtime/rt.h"

typedef struct wb_actor_s wb_actor_t;

/* Handle one event. The handler owns ev: free it, keep it or send it on. */
typedef void (*wb_actor_cb)(wb_actor_t *self, wb_event_t *ev);

/* The actor is gone (ended or discarded): release its state. */
typedef void (*wb_actor_fini_cb)(wb_actor_t *self);

typedef struct {
    const char *name; /* for logs and traces */
    wb_actor_cb handle;
    wb_actor_fini_cb fini; /* may be NULL */
} wb_actor_def_t;

/* Create an actor with parent `parent` (NULL: the runtime). def must outlive
 * the actor. On success *id is its id (ids are never reused). */
int wb_actor_spawn(wb_rt_t *rt, wb_actor_t *parent, const wb_actor_def_t *def, void *state,
                   uint64_t *id);

/* Send ev to actor `to` on this lane, as `self` (ev->src is set to self's id;
 * self may be NULL for the runtime). On 0 the runtime owns ev. Otherwise the
 * caller keeps ev: WB_ENOENT when no such actor; WB_EAGAIN when ev is a data
 * event and the target's mailbox already holds mailbox_limit messages — self
 * then gets one WB_EV_RESUME (src = the target) when that mailbox has drained
 * to half, or the target is gone; WB_ENOMEM when self could not be noted. */
int wb_actor_send(wb_rt_t *rt, wb_actor_t *self, uint64_t to, wb_event_t *ev);

/* End self once its handler returns: children discarded, parent told. */
void wb_actor_exit(wb_actor_t *self, int status);

/* End another actor as if it had exited (status WB_ECANCELED): for parents
 * cancelling a child. Returns WB_ENOENT if it is already gone. */
int wb_actor_kill(wb_rt_t *rt, uint64_t id);

uint64_t wb_actor_id(const wb_actor_t *a);
void *wb_actor_state(const wb_actor_t *a);
wb_rt_t *wb_actor_rt(const wb_actor_t *a);
uint64_t wb_actor_parent(const wb_actor_t *a);
const char *wb_actor_name(const wb_actor_t *a);

/* The live actor with this id, or NULL. */
wb_actor_t *wb_actor_lookup(wb_rt_t *rt, uint64_t id);

/* Number of live actors. */
size_t wb_actor_count(wb_rt_t *rt);

/* Start a one-shot timer for self: after delay_ms, self receives a
 * WB_EV_TIMER event with cookie = *timer_id and status = 0. A control event:
 * it is never refused. Returns 0 or WB_ENOMEM. */
int wb_timer_start(wb_actor_t *self, uint64_t delay_ms, uint64_t *timer_id);

/* Cancel a timer of self's. After a 0 return its event will not be delivered,
 * even if it had already fired. WB_ENOENT: no such live timer. */
int wb_timer_cancel(wb_actor_t *self, uint64_t timer_id);

/* Number of timers started and not yet delivered or cancelled. */
size_t wb_timer_count(wb_rt_t *rt);

#endif
