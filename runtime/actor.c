/*
 * actor.c - the actor lane: actors, their mailboxes, the run queue, timers.
 *
 * Everything here runs on the actor lane's thread. Events for an actor are
 * moved from the lane's inbox into the actor's mailbox (a plain FIFO linked
 * through the events' own `next` field) and the actor joins the run queue;
 * each run handles at most actor_batch messages.
 *
 * Ending an actor never happens under a running handler: wb_actor_exit and
 * wb_actor_kill put it on a pending list that is processed as soon as the
 * handler (or call, or timer firing) returns.
 */
#include "runtime/rt_internal.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/log.h"

struct wb_actor_s {
    uint64_t id;
    uint64_t parent;
    const wb_actor_def_t *def;
    void *state;
    wb_rt_t *rt;

    wb_event_t *mb_head, *mb_tail; /* mailbox */
    size_t mb_count;
    wb_actor_t *run_next;
    int in_runq;

    wb_actor_t *first_child, *sib_prev, *sib_next;
    wb__timer_t *timers;
    wb_event_t *done_ev; /* completion for the parent, allocated up front */
    uint64_t *waiters;   /* actors refused by a full mailbox, owed a resume */
    size_t nwaiters, capwaiters;

    int ending; /* on the pending list */
    int exit_status;
    int dead; /* ended; freed when it leaves the run queue */
    wb_actor_t *pending_next;
};

static inline void link_set(wb_event_t *ev, wb_event_t *next)
{
    atomic_store_explicit(&ev->next, next, memory_order_relaxed);
}

static inline wb_event_t *link_get(wb_event_t *ev)
{
    return atomic_load_explicit(&ev->next, memory_order_relaxed);
}

void wb__actsys_init(wb_rt_t *rt)
{
    wb__actsys_t *as = &rt->as;
    memset(as, 0, sizeof(*as));
    wb_idmap_init(&as->actors);
    wb_idmap_init(&as->timers);
    wb_theap_init(&as->heap);
    as->next_actor = 1;
    as->next_timer = 1;
    as->armed_at = UINT64_MAX;
}

int wb__actsys_start(wb_rt_t *rt)
{
    (void)rt;
    return 0;
}

/* An ended actor's memory goes only when nothing points at it: not the run
 * queue, not the pending-end list. */
static void maybe_free(wb_actor_t *a)
{
    if (a->dead && !a->in_runq && !a->ending)
        free(a);
}

/* ---- mailbox and run queue ----------------------------------------------- */

static void runq_push(wb__actsys_t *as, wb_actor_t *a)
{
    a->run_next = NULL;
    a->in_runq = 1;
    if (as->runq_tail != NULL)
        as->runq_tail->run_next = a;
    else
        as->runq_head = a;
    as->runq_tail = a;
}

static wb_actor_t *runq_pop(wb__actsys_t *as)
{
    wb_actor_t *a = as->runq_head;
    if (a == NULL)
        return NULL;
    as->runq_head = a->run_next;
    if (as->runq_head == NULL)
        as->runq_tail = NULL;
    a->in_runq = 0;
    a->run_next = NULL;
    return a;
}

static void mail_append(wb_actor_t *a, wb_event_t *ev)
{
    link_set(ev, NULL);
    if (a->mb_tail != NULL)
        link_set(a->mb_tail, ev);
    else
        a->mb_head = ev;
    a->mb_tail = ev;
    a->mb_count++;
    if (!a->in_runq)
        runq_push(&a->rt->as, a);
}

static wb_event_t *mail_take(wb_actor_t *a)
{
    wb_event_t *ev = a->mb_head;
    if (ev == NULL)
        return NULL;
    a->mb_head = link_get(ev);
    if (a->mb_head == NULL)
        a->mb_tail = NULL;
    a->mb_count--;
    link_set(ev, NULL);
    return ev;
}

/* Tell every actor refused by a's full mailbox that it may send again. */
static void resume_waiters(wb_actor_t *a)
{
    wb__actsys_t *as = &a->rt->as;
    for (size_t i = 0; i < a->nwaiters; i++) {
        wb_actor_t *w = wb_idmap_get(&as->actors, a->waiters[i]);
        if (w == NULL || w->dead)
            continue;
        wb_event_t *ev = wb_event_new(WB_EV_RESUME, 0);
        if (ev == NULL)
            continue;
        ev->flags |= WB_EVF_CONTROL;
        ev->status = WB_LANE_ACTOR;
        wb_event_route(ev, WB_LANE_ACTOR, a->id, WB_LANE_ACTOR, w->id);
        mail_append(w, ev);
    }
    a->nwaiters = 0;
}

static int add_waiter(wb_actor_t *a, uint64_t id)
{
    for (size_t i = 0; i < a->nwaiters; i++)
        if (a->waiters[i] == id)
            return 0;
    if (a->nwaiters == a->capwaiters) {
        size_t ncap = a->capwaiters ? a->capwaiters * 2 : 4;
        uint64_t *nw = realloc(a->waiters, ncap * sizeof(*nw));
        if (nw == NULL)
            return WB_ENOMEM;
        a->waiters = nw;
        a->capwaiters = ncap;
    }
    a->waiters[a->nwaiters++] = id;
    return 0;
}

/* ---- timers ------------------------------------------------------------- */

static void timer_unlink(wb__timer_t *t)
{
    wb_actor_t *a = t->owner;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        a->timers = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/* Forget timer t entirely: out of heap, map and owner's list. */
static void timer_drop(wb_rt_t *rt, wb__timer_t *t)
{
    if (t->entry.index != SIZE_MAX)
        wb_theap_remove(&rt->as.heap, &t->entry);
    wb_idmap_del(&rt->as.timers, t->id);
    timer_unlink(t);
    wb_event_free(t->ev);
    free(t);
}

int wb_timer_start(wb_actor_t *self, uint64_t delay_ms, uint64_t *timer_id)
{
    wb_rt_t *rt = self->rt;
    wb__actsys_t *as = &rt->as;
    WB_ASSERT(!self->dead);
    wb__timer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return WB_ENOMEM;
    t->ev = wb_event_new(WB_EV_TIMER, 0);
    if (t->ev == NULL) {
        free(t);
        return WB_ENOMEM;
    }
    t->id = as->next_timer++;
    t->owner = self;
    t->ev->flags |= WB_EVF_CONTROL;
    t->ev->cookie = t->id;
    wb_event_route(t->ev, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, self->id);
    t->entry.deadline = wb_rt_now_ms(rt) + delay_ms;
    t->entry.index = SIZE_MAX;
    if (wb_idmap_put(&as->timers, t->id, t) != 0 || wb_theap_push(&as->heap, &t->entry) != 0) {
        wb_idmap_del(&as->timers, t->id);
        wb_event_free(t->ev);
        free(t);
        return WB_ENOMEM;
    }
    t->next = self->timers;
    if (t->next != NULL)
        t->next->prev = t;
    self->timers = t;
    if (timer_id != NULL)
        *timer_id = t->id;
    return 0;
}

int wb_timer_cancel(wb_actor_t *self, uint64_t timer_id)
{
    wb__timer_t *t = wb_idmap_get(&self->rt->as.timers, timer_id);
    if (t == NULL || t->owner != self)
        return WB_ENOENT;
    /* If it already fired, its event waits in the mailbox without a map
     * entry and is dropped when taken. */
    timer_drop(self->rt, t);
    return 0;
}

size_t wb_timer_count(wb_rt_t *rt)
{
    return wb_idmap_count(&rt->as.timers);
}

size_t wb__actsys_fire(wb_rt_t *rt, uint64_t now)
{
    wb__actsys_t *as = &rt->as;
    wb_theap_entry_t *e;
    size_t n = 0;
    while ((e = wb_theap_pop_due(&as->heap, now)) != NULL) {
        wb__timer_t *t = (wb__timer_t *)e;
        wb_event_t *ev = t->ev;
        t->ev = NULL;
        mail_append(t->owner, ev);
        n++;
    }
    return n;
}

uint64_t wb__actsys_next_deadline(wb_rt_t *rt)
{
    wb_theap_entry_t *e = wb_theap_peek(&rt->as.heap);
    return e != NULL ? e->deadline : UINT64_MAX;
}

void wb__actsys_arm(wb_rt_t *rt)
{
    wb__actsys_t *as = &rt->as;
    if (!as->timer_live)
        return;
    uint64_t next = wb__actsys_next_deadline(rt);
    if (next == as->armed_at)
        return;
    if (next == UINT64_MAX) {
        uv_timer_stop(&as->uvtimer);
    } else {
        uint64_t now = wb_rt_now_ms(rt);
        uv_timer_start(&as->uvtimer, wb__rt_on_uvtimer, next > now ? next - now : 0, 0);
    }
    as->armed_at = next;
}

/* ---- life and death ------------------------------------------------------ */

int wb_actor_spawn(wb_rt_t *rt, wb_actor_t *parent, const wb_actor_def_t *def, void *state,
                   uint64_t *id)
{
    wb__actsys_t *as = &rt->as;
    if (def == NULL || def->handle == NULL || (parent != NULL && (parent->dead || parent->ending)))
        return WB_EINVAL;
    if (rt->stopped)
        return WB_ECLOSED;
    wb_actor_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return WB_ENOMEM;
    a->done_ev = wb_event_new(WB_EV_ACTOR_DONE, 0);
    if (a->done_ev == NULL) {
        free(a);
        return WB_ENOMEM;
    }
    a->id = as->next_actor++;
    a->parent = parent != NULL ? parent->id : 0;
    a->def = def;
    a->state = state;
    a->rt = rt;
    if (wb_idmap_put(&as->actors, a->id, a) != 0) {
        wb_event_free(a->done_ev);
        free(a);
        return WB_ENOMEM;
    }
    if (parent != NULL) {
        a->sib_next = parent->first_child;
        if (a->sib_next != NULL)
            a->sib_next->sib_prev = a;
        parent->first_child = a;
    }
    if (id != NULL)
        *id = a->id;
    wb_debug("actor", "spawned %s #%llu parent #%llu", def->name ? def->name : "?",
             (unsigned long long)a->id, (unsigned long long)a->parent);
    return 0;
}

/* End a (and, first, everything it created). `notify`: tell the parent. */
static void end_actor(wb_rt_t *rt, wb_actor_t *a, int status, int notify)
{
    wb__actsys_t *as = &rt->as;
    wb_event_t *ev;

    WB_ASSERT(!a->dead);
    a->dead = 1;
    while (a->first_child != NULL)
        end_actor(rt, a->first_child, WB_ECANCELED, 0);
    while (a->timers != NULL)
        timer_drop(rt, a->timers);
    while ((ev = mail_take(a)) != NULL) {
        wb_rt_count_drop(rt, WB_LANE_ACTOR);
        wb_event_free(ev);
    }
    wb_actor_t *parent = a->parent ? wb_idmap_get(&as->actors, a->parent) : NULL;
    if (parent != NULL) {
        if (a->sib_prev != NULL)
            a->sib_prev->sib_next = a->sib_next;
        else
            parent->first_child = a->sib_next;
        if (a->sib_next != NULL)
            a->sib_next->sib_prev = a->sib_prev;
    }
    resume_waiters(a); /* their next send learns it is gone */
    free(a->waiters);
    a->waiters = NULL;
    wb_idmap_del(&as->actors, a->id);
    wb_debug("actor", "ended %s #%llu status %d", a->def->name ? a->def->name : "?",
             (unsigned long long)a->id, status);
    if (a->def->fini != NULL)
        a->def->fini(a);

    ev = a->done_ev;
    a->done_ev = NULL;
    if (notify && parent != NULL && !parent->dead) {
        ev->flags |= WB_EVF_CONTROL;
        ev->status = status;
        wb_event_route(ev, WB_LANE_ACTOR, a->id, WB_LANE_ACTOR, parent->id);
        mail_append(parent, ev);
    } else {
        wb_event_free(ev);
        if (notify && a->parent == 0 && rt->cfg.root_done_cb != NULL)
            rt->cfg.root_done_cb(rt, a->id, status, rt->cfg.user);
    }
    maybe_free(a);
}

static void mark_ending(wb_rt_t *rt, wb_actor_t *a, int status)
{
    if (a->ending || a->dead)
        return;
    a->ending = 1;
    a->exit_status = status;
    a->pending_next = rt->as.pending_end;
    rt->as.pending_end = a;
}

void wb_actor_exit(wb_actor_t *self, int status)
{
    mark_ending(self->rt, self, status);
    if (!self->rt->as.in_handler)
        wb__actsys_after_callback(self->rt);
}

int wb_actor_kill(wb_rt_t *rt, uint64_t id)
{
    wb_actor_t *a = wb_idmap_get(&rt->as.actors, id);
    if (a == NULL || a->dead)
        return WB_ENOENT;
    mark_ending(rt, a, WB_ECANCELED);
    if (!rt->as.in_handler)
        wb__actsys_after_callback(rt);
    return 0;
}

void wb__actsys_after_callback(wb_rt_t *rt)
{
    wb__actsys_t *as = &rt->as;
    while (as->pending_end != NULL) {
        wb_actor_t *a = as->pending_end;
        as->pending_end = a->pending_next;
        a->pending_next = NULL;
        a->ending = 0; /* off the list */
        /* It may have died meanwhile as the child of another ending actor. */
        if (!a->dead)
            end_actor(rt, a, a->exit_status, 1);
        else
            maybe_free(a);
    }
}

/* ---- delivery and running ------------------------------------------------ */

void wb__actsys_deliver(wb_rt_t *rt, wb_event_t *ev)
{
    wb_actor_t *a = wb_idmap_get(&rt->as.actors, ev->dst);
    if (a == NULL || a->dead || a->ending) {
        wb_rt_count_drop(rt, WB_LANE_ACTOR);
        wb_event_free(ev);
        return;
    }
    mail_append(a, ev);
}

int wb_actor_send(wb_rt_t *rt, wb_actor_t *self, uint64_t to, wb_event_t *ev)
{
    wb_actor_t *a = wb_idmap_get(&rt->as.actors, to);
    if (a == NULL || a->dead || a->ending)
        return WB_ENOENT;
    if (!(ev->flags & WB_EVF_CONTROL) && a->mb_count >= rt->cfg.mailbox_limit) {
        if (self != NULL && add_waiter(a, self->id) != 0)
            return WB_ENOMEM;
        return WB_EAGAIN;
    }
    wb_event_route(ev, WB_LANE_ACTOR, self != NULL ? self->id : 0, WB_LANE_ACTOR, to);
    mail_append(a, ev);
    return 0;
}

/* Hand one mail to a's handler. */
static void run_one(wb_rt_t *rt, wb_actor_t *a, wb_event_t *ev)
{
    if (ev->type == WB_EV_TIMER && ev->src_lane == WB_LANE_ACTOR && ev->src == 0) {
        wb__timer_t *t = wb_idmap_get(&rt->as.timers, ev->cookie);
        /* Only the timer's own event, once it has fired (t->ev handed over). */
        if (t == NULL || t->owner != a || t->ev != NULL) {
            wb_event_free(ev); /* cancelled after it fired */
            return;
        }
        wb_idmap_del(&rt->as.timers, t->id);
        timer_unlink(t);
        free(t);
    }
    /* Mail that came through the inbox was traced when the lane took it;
     * local sends and timers are traced here, once. */
    if (rt->trace != NULL && !(ev->flags & WB_EVF_TRACED))
        rt->trace(rt, WB_LANE_ACTOR, ev, rt->trace_arg);
    ev->flags &= (uint8_t)~WB_EVF_TRACED;
    rt->as.in_handler = 1;
    a->def->handle(a, ev);
    rt->as.in_handler = 0;
    wb__actsys_after_callback(rt);
}

size_t wb__actsys_run(wb_rt_t *rt, size_t budget)
{
    wb__actsys_t *as = &rt->as;
    size_t done = 0;
    unsigned batch = rt->cfg.actor_batch;

    while (done < budget) {
        wb_actor_t *a = as->runq_head;
        if (a == NULL)
            break;
        if (a->dead) {
            runq_pop(as);
            as->run_used = 0;
            maybe_free(a);
            continue;
        }
        wb_event_t *ev = mail_take(a);
        if (a->nwaiters > 0 && a->mb_count <= rt->cfg.mailbox_limit / 2)
            resume_waiters(a);
        if (ev != NULL) {
            run_one(rt, a, ev);
            done++;
            as->run_used++;
        }
        /* a may have died in its handler; it is still the runq head then. */
        if (a->dead || a->mb_head == NULL || as->run_used >= batch) {
            runq_pop(as);
            as->run_used = 0;
            if (a->dead)
                maybe_free(a);
            else if (a->mb_head != NULL)
                runq_push(as, a);
        }
    }
    return done;
}

int wb__actsys_has_work(wb_rt_t *rt)
{
    return rt->as.runq_head != NULL;
}

/* ---- shutdown ------------------------------------------------------------- */

static void collect_roots(uint64_t key, void *val, void *arg)
{
    wb_actor_t *a = val;
    wb_actor_t **list = arg;
    (void)key;
    if (a->parent == 0) {
        a->pending_next = *list;
        *list = a;
    }
}

void wb__actsys_stop(wb_rt_t *rt)
{
    wb__actsys_t *as = &rt->as;
    wb_actor_t *roots = NULL;
    /* Forget pending ends: everything goes now, without completions. */
    while (as->pending_end != NULL) {
        wb_actor_t *a = as->pending_end;
        as->pending_end = a->pending_next;
        a->pending_next = NULL;
        a->ending = 0;
        maybe_free(a);
    }
    /* Discard every tree from its root; no completions at shutdown. */
    wb_idmap_each(&as->actors, collect_roots, &roots);
    while (roots != NULL) {
        wb_actor_t *a = roots;
        roots = a->pending_next;
        a->pending_next = NULL;
        if (!a->dead)
            end_actor(rt, a, WB_ECANCELED, 0);
    }
    while (as->runq_head != NULL)
        maybe_free(runq_pop(as));
    if (as->timer_live) {
        uv_timer_stop(&as->uvtimer);
        as->armed_at = UINT64_MAX;
    }
}

void wb__actsys_fini(wb_rt_t *rt)
{
    wb__actsys_t *as = &rt->as;
    if (!rt->started || wb_idmap_count(&as->actors) > 0) {
        /* Never started, or never stopped: discard what is left. */
        wb__actsys_stop(rt);
    }
    wb_idmap_fini(&as->actors);
    wb_idmap_fini(&as->timers);
    wb_theap_fini(&as->heap);
}

/* ---- accessors ------------------------------------------------------------ */

uint64_t wb_actor_id(const wb_actor_t *a)
{
    return a->id;
}

void *wb_actor_state(const wb_actor_t *a)
{
    return a->state;
}

wb_rt_t *wb_actor_rt(const wb_actor_t *a)
{
    return a->rt;
}

uint64_t wb_actor_parent(const wb_actor_t *a)
{
    return a->parent;
}

const char *wb_actor_name(const wb_actor_t *a)
{
    return a->def->name != NULL ? a->def->name : "?";
}

wb_actor_t *wb_actor_lookup(wb_rt_t *rt, uint64_t id)
{
    wb_actor_t *a = wb_idmap_get(&rt->as.actors, id);
    return (a != NULL && !a->dead) ? a : NULL;
}

size_t wb_actor_count(wb_rt_t *rt)
{
    return wb_idmap_count(&rt->as.actors);
}
