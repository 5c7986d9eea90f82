/*
 * fuzz_actors.c - the actor runtime in deterministic mode, driven by a
 * script of operations read from the input and checked against a model.
 *
 * Input: 8 bytes of scheduling seed, one byte of configuration (inbox bound
 * 2 + b % 8, actor batch 1 + (b >> 3) % 8, bit 7: free without running to
 * quiescence first), then operations, one byte each plus arguments (see
 * driver_op): spawn a root or a child, wb_actor_send, wb_rt_send to any lane,
 * start or cancel a timer, exit, kill, step, advance the clock, run until
 * quiet, wb_rt_call on a lane. Messages carry a small program the receiving
 * actor runs (see run_program): forward, re-send through the lane, exit,
 * spawn, start or cancel a timer, kill, send a copy. Everything is bounded:
 * actors, messages, timers, operations, program length.
 *
 * The model knows which actors live, who their parents are, which
 * completions are owed, which timers are live, which messages were accepted
 * and by which path, how many data events wait in each inbox, and who was
 * refused. After every operation (and before every handler) it is compared
 * with the runtime; a mismatch aborts. At the end the runtime is freed and
 * every event block must be back in the pool.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/event.h"
#include "runtime/pool.h"
#include "runtime/rt.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_actors: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum {
    MAX_ACT = 128,         /* actors spawned per input */
    MAX_LIVE = 64,         /* actors alive at once */
    MAX_TIMERS = 512,      /* timers started per input */
    MAX_MSGS = 4096,       /* messages accepted per input */
    MAX_OPS = 256,         /* operations per input */
    PROG_MAX = 24,         /* program bytes per message */
    BIG_PAD = 5000,        /* payload padding that takes events off the pool */
    QUIESCE_MAX = 1000000, /* steps; the work of an input is far smaller */
    BOGUS = MAX_ACT + 1,   /* model index of an id that never existed */
};

#define BOGUS_ID 0xFFFFFFFF00ull
#define FZ_TYPE  (WB_EV_USER + 7)
#define FZ_MAGIC 0x7a66u
#define ST_MAGIC 0x5eedf00du

enum { DEAD_NEVER = 0, LIVE, DEAD };
enum { PATH_AS = 1, PATH_RT };
enum { T_STARTED = 1, T_CANCELLED, T_DELIVERED, T_GONE };

typedef struct {
    uint32_t magic;
    uint32_t serial;
    uint8_t pc;
    uint8_t plen;
    uint8_t prog[PROG_MAX];
} payload_t;

typedef struct {
    uint32_t magic;
    int idx;
} astate_t;

typedef struct {
    uint64_t id;
    int parent; /* model index; 0 = the runtime */
    int state;
    int ending; /* exit or kill called, not yet applied */
    int dying;  /* scratch for flush */
    int finis;
    int notify; /* its parent is owed a completion */
    int notify_status;
    int done_received;
    uint32_t last_append; /* mailbox order of the last message handled */
} mact_t;

typedef struct {
    uint64_t id;
    int owner;
    int state;
    uint64_t deadline;
} mtimer_t;

typedef struct {
    int dst; /* model index (actor lane) */
    uint8_t lane, path, counted, taken, delivered;
    uint8_t src_lane;
    int src;           /* model index of the sender */
    uint32_t appended; /* order of arrival in the mailbox; 0 = not yet */
} mmsg_t;

typedef struct {
    int idx, status;
} pend_t;

typedef struct {
    wb_rt_t *rt;
    const uint8_t *in;
    size_t n, pos;

    long limit, low;
    int stopping;

    mact_t act[MAX_ACT + 2];
    int nact, nlive;
    pend_t pend[4 * MAX_ACT];
    int npend;
    pend_t rootlog[4 * MAX_ACT];
    int nrootlog;

    mtimer_t tim[MAX_TIMERS];
    int ntim, tim_live;

    mmsg_t msg[MAX_MSGS];
    int nmsgs;
    uint32_t append_clock;

    long counted[WB_LANE_COUNT];
    uint64_t refused[WB_LANE_COUNT];
    int has_waiters[WB_LANE_COUNT];
    uint8_t waiting[WB_LANE_COUNT][MAX_ACT + 2];
    int resume_owed[WB_LANE_COUNT][MAX_ACT + 2];

    long ext_made, ext_freed;
    long calls_made, calls_run;
    uint64_t clock;
} fz_t;

static fz_t Z;
static int verbose = -1; /* FUZZ_ACTORS_VERBOSE=1: a summary line per input */

static const wb_actor_def_t fz_def;

/* ---- input ------------------------------------------------------------------ */

static uint8_t get(fz_t *z)
{
    return z->pos < z->n ? z->in[z->pos++] : 0;
}

/* ---- model helpers ---------------------------------------------------------- */

static uint64_t id_of(fz_t *z, int idx)
{
    if (idx == 0)
        return 0;
    if (idx == BOGUS)
        return BOGUS_ID;
    return z->act[idx].id;
}

static int idx_of(fz_t *z, uint64_t id)
{
    if (id == 0)
        return 0;
    for (int i = 1; i <= z->nact; i++)
        if (z->act[i].id == id)
            return i;
    return BOGUS;
}

/* Any index, including "the runtime" (0) and an id that never existed. */
static int pick_any(fz_t *z, uint8_t b)
{
    int i = b % (z->nact + 2);
    return i == z->nact + 1 ? BOGUS : i;
}

/* A live actor that is not ending, or 0. */
static int pick_live(fz_t *z, uint8_t b)
{
    int cand[MAX_ACT], n = 0;
    for (int i = 1; i <= z->nact; i++)
        if (z->act[i].state == LIVE && !z->act[i].ending)
            cand[n++] = i;
    return n ? cand[b % n] : 0;
}

static int sendable(fz_t *z, int idx)
{
    return idx >= 1 && idx <= z->nact && z->act[idx].state == LIVE && !z->act[idx].ending;
}

static int lane_closed(fz_t *z, int lane)
{
    /* wb_rt_free stops net, then actor, then db; actors only run while the
     * actor lane stops, when net and actor are closed and db is not. */
    return z->stopping && lane != WB_LANE_DB;
}

/* Exit or kill was called on idx (by a handler, or by the driver). */
static void mark_ending(fz_t *z, int idx, int status)
{
    mact_t *a = &z->act[idx];
    if (a->state != LIVE || a->ending)
        return;
    a->ending = 1;
    CHECK(z->npend < (int)(sizeof(z->pend) / sizeof(z->pend[0])));
    z->pend[z->npend].idx = idx;
    z->pend[z->npend].status = status;
    z->npend++;
}

static void mark_dying(fz_t *z, int idx)
{
    z->act[idx].dying = 1;
    for (int c = 1; c <= z->nact; c++)
        if (z->act[c].parent == idx && z->act[c].state == LIVE && !z->act[c].dying)
            mark_dying(z, c);
}

/* The runtime ends pending actors as soon as no handler runs; the model
 * catches up here, before the next handler and after every operation. */
static void flush_ends(fz_t *z)
{
    for (int k = 0; k < z->npend; k++)
        if (z->act[z->pend[k].idx].state == LIVE)
            mark_dying(z, z->pend[k].idx);
    for (int k = 0; k < z->npend; k++) {
        int i = z->pend[k].idx, st = z->pend[k].status;
        int p = z->act[i].parent;
        if (p == 0) {
            /* A root: the runtime's callback, exactly once, with the status. */
            int found = -1;
            for (int r = 0; r < z->nrootlog && found < 0; r++)
                if (z->rootlog[r].idx == i && z->rootlog[r].status == st)
                    found = r;
            CHECK(found >= 0);
            z->rootlog[found] = z->rootlog[--z->nrootlog];
        } else if (z->act[p].state == LIVE && !z->act[p].dying) {
            z->act[i].notify = 1;
            z->act[i].notify_status = st;
        }
    }
    z->npend = 0;
    for (int i = 1; i <= z->nact; i++) {
        mact_t *a = &z->act[i];
        if (!a->dying)
            continue;
        a->dying = 0;
        a->ending = 0;
        a->state = DEAD;
        z->nlive--;
        CHECK(a->finis == 1);
        for (int t = 0; t < z->ntim; t++)
            if (z->tim[t].owner == i && z->tim[t].state == T_STARTED) {
                z->tim[t].state = T_GONE;
                z->tim_live--;
            }
    }
    /* No completion reached the runtime's callback that the model did not owe. */
    CHECK(z->nrootlog == 0);
}

/* An inbox that drained to half sends a resume to every producer it refused. */
static void flush_resumes(fz_t *z)
{
    for (int l = 0; l < WB_LANE_COUNT; l++) {
        if (!z->has_waiters[l] || z->counted[l] > z->low)
            continue;
        z->has_waiters[l] = 0;
        for (int i = 1; i <= z->nact; i++) {
            if (!z->waiting[l][i])
                continue;
            z->waiting[l][i] = 0;
            if (!z->stopping)
                z->resume_owed[l][i]++;
        }
    }
}

static void checkpoint(fz_t *z)
{
    flush_ends(z);
    flush_resumes(z);
}

static void check_state(fz_t *z)
{
    wb_rt_t *rt = z->rt;
    CHECK(wb_actor_count(rt) == (size_t)z->nlive);
    for (int i = 1; i <= z->nact; i++) {
        mact_t *a = &z->act[i];
        wb_actor_t *p = wb_actor_lookup(rt, a->id);
        CHECK((p != NULL) == (a->state == LIVE));
        CHECK(a->finis == (a->state == DEAD));
        if (p != NULL) {
            astate_t *st = wb_actor_state(p);
            CHECK(st != NULL && st->magic == ST_MAGIC && st->idx == i);
            CHECK(wb_actor_parent(p) == id_of(z, a->parent));
            CHECK(wb_actor_rt(p) == rt);
        }
    }
    CHECK(wb_actor_lookup(rt, 0) == NULL);
    CHECK(wb_actor_lookup(rt, BOGUS_ID) == NULL);
    CHECK(wb_timer_count(rt) == (size_t)z->tim_live);
    for (int l = 0; l < WB_LANE_COUNT; l++) {
        wb_lane_stats_t s;
        wb_rt_stats(rt, (wb_lane_t)l, &s);
        CHECK(s.refused == z->refused[l]);
        CHECK(z->counted[l] >= 0 && z->counted[l] <= z->limit);
    }
    uint64_t now = wb_rt_now_ms(rt);
    CHECK(now >= z->clock);
    z->clock = now;
}

/* ---- events ----------------------------------------------------------------- */

static void ext_free(void *data, size_t len)
{
    (void)len;
    Z.ext_freed++;
    free(data);
}

/* flags: bit 0 big payload (malloc'd event), bit 1 external payload. */
static wb_event_t *make_msg(fz_t *z, const uint8_t *prog, size_t plen, uint8_t flags)
{
    size_t len = sizeof(payload_t) + ((flags & 1) ? BIG_PAD : 0);
    wb_event_t *ev;
    if (flags & 2) {
        void *data = calloc(1, len);
        CHECK(data != NULL);
        ev = wb_event_new_ext(FZ_TYPE, data, len, ext_free);
        CHECK(ev != NULL);
        z->ext_made++;
    } else {
        ev = wb_event_new(FZ_TYPE, len);
        CHECK(ev != NULL);
        memset(ev->data, 0, len);
    }
    CHECK(ev->len == len && ev->type == FZ_TYPE);
    payload_t *pl = ev->data;
    pl->magic = FZ_MAGIC;
    pl->plen = (uint8_t)(plen > PROG_MAX ? PROG_MAX : plen);
    if (pl->plen > 0)
        memcpy(pl->prog, prog, pl->plen);
    return ev;
}

static payload_t *payload(wb_event_t *ev)
{
    CHECK(ev->type == FZ_TYPE && ev->len >= sizeof(payload_t));
    payload_t *pl = ev->data;
    CHECK(pl->magic == FZ_MAGIC && pl->plen <= PROG_MAX && pl->pc <= pl->plen);
    return pl;
}

/* wb_actor_send as `from` (model index, 0 = runtime). Returns 1 when the
 * runtime took ev; otherwise the caller still owns it. */
static int send_as(fz_t *z, int from, int to, wb_event_t *ev)
{
    payload_t *pl = payload(ev);
    if (z->nmsgs >= MAX_MSGS)
        return 0;
    wb_actor_t *self = from ? wb_actor_lookup(z->rt, id_of(z, from)) : NULL;
    CHECK(from == 0 || self != NULL);
    pl->serial = (uint32_t)z->nmsgs;
    int rc = wb_actor_send(z->rt, self, id_of(z, to), ev);
    CHECK(rc == (sendable(z, to) ? 0 : WB_ENOENT));
    if (rc != 0) {
        /* Still ours, untouched. */
        CHECK(ev->type == FZ_TYPE && pl->magic == FZ_MAGIC);
        return 0;
    }
    mmsg_t *m = &z->msg[z->nmsgs++];
    memset(m, 0, sizeof(*m));
    m->dst = to;
    m->lane = WB_LANE_ACTOR;
    m->path = PATH_AS;
    m->src_lane = WB_LANE_ACTOR;
    m->src = from;
    m->appended = ++z->append_clock;
    return 1;
}

/* wb_rt_send to (lane, to) from (src_lane, src). */
static int send_rt(fz_t *z, int lane, int to, int src_lane, int src, int control, wb_event_t *ev)
{
    payload_t *pl = payload(ev);
    if (z->nmsgs >= MAX_MSGS)
        return 0;
    pl->serial = (uint32_t)z->nmsgs;
    wb_event_route(ev, (wb_lane_t)src_lane, id_of(z, src), (wb_lane_t)lane,
                   lane == WB_LANE_ACTOR ? id_of(z, to) : 0);
    if (control)
        ev->flags |= WB_EVF_CONTROL;
    else
        ev->flags &= (uint8_t)~WB_EVF_CONTROL;
    int want = 0;
    if (lane_closed(z, lane))
        want = WB_ECLOSED;
    else if (!control && z->counted[lane] >= z->limit)
        want = WB_EAGAIN;
    int rc = wb_rt_send(z->rt, ev);
    CHECK(rc == want);
    if (rc == WB_EAGAIN) {
        z->refused[lane]++;
        z->has_waiters[lane] = 1;
        if (src_lane == WB_LANE_ACTOR && src >= 1 && src <= z->nact)
            z->waiting[lane][src] = 1;
    }
    if (rc != 0) {
        CHECK(ev->type == FZ_TYPE && pl->magic == FZ_MAGIC);
        return 0;
    }
    mmsg_t *m = &z->msg[z->nmsgs++];
    memset(m, 0, sizeof(*m));
    m->dst = lane == WB_LANE_ACTOR ? to : 0;
    m->lane = (uint8_t)lane;
    m->path = PATH_RT;
    m->counted = !control;
    m->src_lane = (uint8_t)src_lane;
    m->src = src;
    if (!control)
        z->counted[lane]++;
    return 1;
}

/* ---- runtime hooks ------------------------------------------------------------ */

/* Every event a lane takes, and every message an actor handles. */
static void on_trace(wb_rt_t *rt, wb_lane_t lane, const wb_event_t *ev, void *arg)
{
    fz_t *z = arg;
    (void)rt;
    if (ev->type != FZ_TYPE)
        return;
    const payload_t *pl = ev->data;
    CHECK(ev->len >= sizeof(*pl) && pl->magic == FZ_MAGIC && pl->serial < (uint32_t)z->nmsgs);
    mmsg_t *m = &z->msg[pl->serial];
    CHECK(!m->delivered);
    if (m->path == PATH_RT && !m->taken) {
        /* Taken from the inbox: it no longer counts against the bound, and
         * (actor lane) it goes to the end of the mailbox now. */
        CHECK(lane == m->lane);
        m->taken = 1;
        if (m->counted)
            z->counted[lane]--;
        if (lane == WB_LANE_ACTOR)
            m->appended = ++z->append_clock;
    } else {
        CHECK(lane == WB_LANE_ACTOR && m->lane == WB_LANE_ACTOR);
    }
}

static void on_root_done(wb_rt_t *rt, uint64_t id, int status, void *user)
{
    fz_t *z = user;
    CHECK(rt == z->rt);
    int i = idx_of(z, id);
    CHECK(i >= 1 && i <= z->nact && z->act[i].parent == 0 && z->act[i].finis == 1);
    CHECK(z->nrootlog < (int)(sizeof(z->rootlog) / sizeof(z->rootlog[0])));
    z->rootlog[z->nrootlog].idx = i;
    z->rootlog[z->nrootlog].status = status;
    z->nrootlog++;
}

static void on_fini(wb_actor_t *self)
{
    fz_t *z = &Z;
    astate_t *st = wb_actor_state(self);
    CHECK(st != NULL && st->magic == ST_MAGIC);
    int i = st->idx;
    CHECK(i >= 1 && i <= z->nact && wb_actor_id(self) == z->act[i].id);
    /* Ended once, and only what the model still has alive. */
    CHECK(z->act[i].state == LIVE);
    CHECK(z->act[i].finis == 0);
    z->act[i].finis = 1;
    st->magic = 0;
    free(st);
}

/* ---- operations shared by the driver and the handlers --------------------------- */

static void do_spawn(fz_t *z, int parent)
{
    if (z->nact >= MAX_ACT || z->nlive >= MAX_LIVE)
        return;
    wb_actor_t *p = NULL;
    if (parent) {
        p = wb_actor_lookup(z->rt, id_of(z, parent));
        CHECK(p != NULL);
    }
    astate_t *st = malloc(sizeof(*st));
    CHECK(st != NULL);
    st->magic = ST_MAGIC;
    st->idx = z->nact + 1;
    uint64_t id = 0;
    int want = 0;
    if (parent && z->act[parent].ending)
        want = WB_EINVAL;
    else if (z->stopping)
        want = WB_ECLOSED;
    int rc = wb_actor_spawn(z->rt, p, &fz_def, st, &id);
    CHECK(rc == want);
    if (rc != 0) {
        free(st);
        return;
    }
    /* Ids are never reused. */
    CHECK(id != 0 && id != BOGUS_ID && idx_of(z, id) == BOGUS);
    int i = ++z->nact;
    memset(&z->act[i], 0, sizeof(z->act[i]));
    z->act[i].id = id;
    z->act[i].parent = parent;
    z->act[i].state = LIVE;
    z->nlive++;
    wb_actor_t *a = wb_actor_lookup(z->rt, id);
    CHECK(a != NULL && wb_actor_state(a) == st && wb_actor_id(a) == id);
    CHECK(wb_actor_parent(a) == id_of(z, parent));
    CHECK(strcmp(wb_actor_name(a), "fz") == 0);
}

static void do_timer_start(fz_t *z, int owner, uint64_t delay)
{
    if (z->ntim >= MAX_TIMERS)
        return;
    wb_actor_t *a = wb_actor_lookup(z->rt, id_of(z, owner));
    CHECK(a != NULL);
    uint64_t tid = 0;
    uint64_t now = wb_rt_now_ms(z->rt);
    CHECK(wb_timer_start(a, delay, &tid) == 0);
    for (int t = 0; t < z->ntim; t++)
        CHECK(z->tim[t].id != tid);
    mtimer_t *m = &z->tim[z->ntim++];
    m->id = tid;
    m->owner = owner;
    m->state = T_STARTED;
    m->deadline = now + delay;
    z->tim_live++;
}

static void do_timer_cancel(fz_t *z, int by, int t)
{
    wb_actor_t *a = wb_actor_lookup(z->rt, id_of(z, by));
    CHECK(a != NULL);
    mtimer_t *m = &z->tim[t];
    int rc = wb_timer_cancel(a, m->id);
    if (m->state == T_STARTED && m->owner == by) {
        CHECK(rc == 0);
        m->state = T_CANCELLED;
        z->tim_live--;
    } else {
        CHECK(rc == WB_ENOENT);
    }
}

/* ---- the actor ------------------------------------------------------------------ */

enum { P_NOP, P_FWD, P_RTSEND, P_EXIT, P_SPAWN, P_TSTART, P_TCANCEL, P_KILL, P_COPY, P_COUNT };

/* Run the rest of the message's program; consumes ev. */
static void run_program(fz_t *z, wb_actor_t *self, int me, wb_event_t *ev)
{
    payload_t *pl = payload(ev);
    while (pl->pc < pl->plen) {
        uint8_t op = pl->prog[pl->pc++];
        uint8_t arg = pl->pc < pl->plen ? pl->prog[pl->pc++] : 0;
        switch (op % P_COUNT) {
        case P_NOP:
            break;
        case P_FWD:
            if (send_as(z, me, pick_any(z, arg), ev))
                return;
            wb_event_free(ev);
            return;
        case P_RTSEND: {
            int lane = (op >> 4) % 4 == 0 ? WB_LANE_DB : WB_LANE_ACTOR;
            if (send_rt(z, lane, pick_any(z, arg), WB_LANE_ACTOR, me, (op >> 6) & 1, ev))
                return;
            wb_event_free(ev);
            return;
        }
        case P_EXIT:
            wb_actor_exit(self, -(int)(arg % 64));
            mark_ending(z, me, -(int)(arg % 64));
            break;
        case P_SPAWN:
            do_spawn(z, me);
            break;
        case P_TSTART:
            do_timer_start(z, me, arg % 64);
            break;
        case P_TCANCEL:
            if (z->ntim > 0)
                do_timer_cancel(z, me, arg % z->ntim);
            break;
        case P_KILL: {
            int t = pick_any(z, arg);
            int want = t >= 1 && t <= z->nact && z->act[t].state == LIVE ? 0 : WB_ENOENT;
            CHECK(wb_actor_kill(z->rt, id_of(z, t)) == want);
            if (want == 0)
                mark_ending(z, t, WB_ECANCELED);
            break;
        }
        case P_COPY: {
            wb_event_t *c = make_msg(z, NULL, 0, op >> 6);
            if (!send_as(z, me, pick_any(z, arg), c))
                wb_event_free(c);
            break;
        }
        }
    }
    wb_event_free(ev);
}

static void on_event(wb_actor_t *self, wb_event_t *ev)
{
    fz_t *z = &Z;
    astate_t *st = wb_actor_state(self);
    CHECK(st != NULL && st->magic == ST_MAGIC);
    int me = st->idx;
    CHECK(me >= 1 && me <= z->nact && wb_actor_id(self) == z->act[me].id);
    CHECK(wb_actor_rt(self) == z->rt);
    checkpoint(z);
    /* Only live actors get mail, and only their own. */
    CHECK(z->act[me].state == LIVE && !z->act[me].ending);
    CHECK(wb_actor_count(z->rt) == (size_t)z->nlive);
    CHECK(ev->dst_lane == WB_LANE_ACTOR && ev->dst == z->act[me].id);

    switch (ev->type) {
    case FZ_TYPE: {
        payload_t *pl = payload(ev);
        CHECK(pl->serial < (uint32_t)z->nmsgs);
        mmsg_t *m = &z->msg[pl->serial];
        CHECK(m->lane == WB_LANE_ACTOR && m->dst == me && !m->delivered);
        CHECK(m->appended != 0);
        /* The mailbox is a FIFO. */
        CHECK(m->appended > z->act[me].last_append);
        z->act[me].last_append = m->appended;
        m->delivered = 1;
        /* From whom it was sent, or whom the sender named. */
        CHECK(ev->src_lane == m->src_lane && ev->src == id_of(z, m->src));
        run_program(z, self, me, ev);
        return;
    }
    case WB_EV_ACTOR_DONE: {
        int c = idx_of(z, ev->src);
        CHECK(ev->src_lane == WB_LANE_ACTOR);
        CHECK(c >= 1 && c <= z->nact && z->act[c].parent == me);
        CHECK(z->act[c].state == DEAD && z->act[c].notify && !z->act[c].done_received);
        CHECK(ev->status == z->act[c].notify_status);
        z->act[c].done_received = 1;
        break;
    }
    case WB_EV_TIMER: {
        int t = 0;
        while (t < z->ntim && z->tim[t].id != ev->cookie)
            t++;
        CHECK(t < z->ntim);
        mtimer_t *m = &z->tim[t];
        /* Never a cancelled one, never twice, never early, only its owner. */
        CHECK(m->state == T_STARTED && m->owner == me);
        CHECK(ev->status == 0 && ev->src_lane == WB_LANE_ACTOR && ev->src == 0);
        CHECK(wb_rt_now_ms(z->rt) >= m->deadline);
        m->state = T_DELIVERED;
        z->tim_live--;
        CHECK(wb_timer_count(z->rt) == (size_t)z->tim_live);
        break;
    }
    case WB_EV_RESUME: {
        int l = ev->status;
        CHECK(l >= 0 && l < WB_LANE_COUNT && ev->src_lane == l);
        CHECK(z->resume_owed[l][me] > 0 || z->stopping);
        if (z->resume_owed[l][me] > 0)
            z->resume_owed[l][me]--;
        break;
    }
    default:
        CHECK(!"unexpected event type");
    }
    wb_event_free(ev);
}

static const wb_actor_def_t fz_def = {"fz", on_event, on_fini};

/* ---- calls: control events that run a function on a lane --------------------------- */

typedef struct {
    uint32_t magic;
    uint8_t lane, action, arg;
} call_t;

/* Not a handler: ends happen at once, as for the driver. Nothing here
 * depends on which lanes are closed, so a call may also run while freeing. */
static void on_call(wb_rt_t *rt, void *arg)
{
    fz_t *z = &Z;
    call_t *c = arg;
    CHECK(rt == z->rt && c->magic == ST_MAGIC);
    checkpoint(z);
    /* The db lane stops last: by then every actor has been discarded. */
    int gone = z->stopping && c->lane == WB_LANE_DB;
    if (gone)
        CHECK(wb_actor_count(rt) == 0);
    switch (gone ? 4 : c->action % 4) {
    case 0:
        do_spawn(z, 0);
        break;
    case 1: {
        int t = pick_any(z, c->arg);
        int want = t >= 1 && t <= z->nact && z->act[t].state == LIVE ? 0 : WB_ENOENT;
        CHECK(wb_actor_kill(rt, id_of(z, t)) == want);
        if (want == 0)
            mark_ending(z, t, WB_ECANCELED);
        break;
    }
    case 2: {
        wb_event_t *ev = make_msg(z, NULL, 0, c->arg >> 6);
        if (!send_as(z, 0, pick_any(z, c->arg), ev))
            wb_event_free(ev);
        break;
    }
    case 3: {
        int a = pick_live(z, c->arg);
        if (a)
            do_timer_start(z, a, c->arg % 16);
        break;
    }
    }
    z->calls_run++;
    c->magic = 0;
    free(c);
}

/* ---- the driver ------------------------------------------------------------------- */

/* Step until nothing is left, then everything owed must have arrived. */
static void quiesce(fz_t *z)
{
    size_t n = wb_rt_run(z->rt, QUIESCE_MAX);
    CHECK(n < QUIESCE_MAX);
    CHECK(wb_rt_step(z->rt) == 0);
    checkpoint(z);
    check_state(z);
    CHECK(z->tim_live == 0 && wb_timer_count(z->rt) == 0);
    CHECK(z->calls_made == z->calls_run);
    for (int l = 0; l < WB_LANE_COUNT; l++) {
        CHECK(z->counted[l] == 0);
        CHECK(!z->has_waiters[l]);
    }
    for (int k = 0; k < z->nmsgs; k++) {
        mmsg_t *m = &z->msg[k];
        if (m->path == PATH_RT)
            CHECK(m->taken);
        if (m->lane == WB_LANE_ACTOR && m->dst >= 1 && m->dst <= z->nact &&
            z->act[m->dst].state == LIVE)
            CHECK(m->delivered);
    }
    for (int i = 1; i <= z->nact; i++) {
        mact_t *a = &z->act[i];
        if (a->notify && !a->done_received)
            CHECK(z->act[a->parent].state == DEAD);
        if (a->state == LIVE)
            for (int l = 0; l < WB_LANE_COUNT; l++)
                CHECK(z->resume_owed[l][i] == 0);
    }
}

static void read_prog(fz_t *z, uint8_t *prog, size_t *plen)
{
    *plen = get(z) % (PROG_MAX + 1);
    for (size_t i = 0; i < *plen; i++)
        prog[i] = get(z);
}

static void driver_op(fz_t *z)
{
    uint8_t op = get(z);
    uint8_t prog[PROG_MAX];
    size_t plen;
    switch (op % 12) {
    case 0:
        do_spawn(z, 0);
        break;
    case 1: {
        int p = pick_live(z, get(z));
        if (p)
            do_spawn(z, p);
        break;
    }
    case 2: {
        uint8_t fl = get(z), sb = get(z), tb = get(z);
        int from = (sb & 1) ? pick_live(z, sb >> 1) : 0;
        int to = pick_any(z, tb);
        read_prog(z, prog, &plen);
        wb_event_t *ev = make_msg(z, prog, plen, fl);
        if (!send_as(z, from, to, ev))
            wb_event_free(ev);
        break;
    }
    case 3: {
        uint8_t fl = get(z), tb = get(z), sb = get(z);
        int lane = (fl >> 3) % 4 == 0   ? WB_LANE_NET
                   : (fl >> 3) % 4 == 1 ? WB_LANE_DB
                                        : WB_LANE_ACTOR;
        int src_lane = (fl >> 5) & 1 ? WB_LANE_NET : WB_LANE_ACTOR;
        read_prog(z, prog, &plen);
        wb_event_t *ev = make_msg(z, prog, plen, fl);
        if (!send_rt(z, lane, pick_any(z, tb), src_lane, pick_any(z, sb), (fl >> 2) & 1, ev))
            wb_event_free(ev);
        break;
    }
    case 4: {
        int a = pick_live(z, get(z));
        uint8_t d = get(z);
        if (a)
            do_timer_start(z, a, d % 64);
        break;
    }
    case 5: {
        uint8_t tb = get(z), ab = get(z);
        if (z->ntim == 0)
            break;
        int t = tb % z->ntim;
        /* Usually the owner, sometimes someone else (who must be refused). */
        int by = (ab & 3) && z->act[z->tim[t].owner].state == LIVE ? z->tim[t].owner
                                                                   : pick_live(z, ab >> 2);
        if (by)
            do_timer_cancel(z, by, t);
        break;
    }
    case 6: {
        int a = pick_live(z, get(z));
        int status = -(int)(get(z) % 64);
        if (!a)
            break;
        /* Not in a handler: the actor ends right away. */
        wb_actor_exit(wb_actor_lookup(z->rt, id_of(z, a)), status);
        mark_ending(z, a, status);
        CHECK(wb_actor_lookup(z->rt, id_of(z, a)) == NULL);
        break;
    }
    case 7: {
        int t = pick_any(z, get(z));
        int want = t >= 1 && t <= z->nact && z->act[t].state == LIVE ? 0 : WB_ENOENT;
        CHECK(wb_actor_kill(z->rt, id_of(z, t)) == want);
        if (want == 0) {
            mark_ending(z, t, WB_ECANCELED);
            CHECK(wb_actor_lookup(z->rt, id_of(z, t)) == NULL);
        }
        break;
    }
    case 8:
        wb_rt_run(z->rt, 1 + get(z) % 64);
        break;
    case 9: {
        uint64_t ms = get(z) % 100;
        uint64_t before = wb_rt_now_ms(z->rt);
        wb_rt_advance(z->rt, ms);
        CHECK(wb_rt_now_ms(z->rt) == before + ms);
        break;
    }
    case 10:
        quiesce(z);
        break;
    case 11: {
        call_t *c = malloc(sizeof(*c));
        CHECK(c != NULL);
        c->magic = ST_MAGIC;
        c->action = get(z);
        c->arg = get(z);
        c->lane = (uint8_t)(c->action / 4 % WB_LANE_COUNT);
        /* A control event: never refused. */
        CHECK(wb_rt_call(z->rt, (wb_lane_t)c->lane, on_call, c) == 0);
        z->calls_made++;
        break;
    }
    }
    checkpoint(z);
    check_state(z);
}

static void summary(fz_t *z)
{
    int delivered = 0, fired = 0, cancelled = 0, dones = 0, owed = 0, resumes = 0;
    for (int k = 0; k < z->nmsgs; k++)
        delivered += z->msg[k].delivered;
    for (int t = 0; t < z->ntim; t++) {
        fired += z->tim[t].state == T_DELIVERED;
        cancelled += z->tim[t].state == T_CANCELLED;
    }
    for (int i = 1; i <= z->nact; i++) {
        dones += z->act[i].done_received;
        owed += z->act[i].notify;
    }
    for (int l = 0; l < WB_LANE_COUNT; l++)
        for (int i = 1; i <= z->nact; i++)
            resumes += z->resume_owed[l][i];
    fprintf(stderr,
            "fuzz_actors: %d actors, %d messages (%d handled), refused %llu/%llu/%llu, "
            "%d timers (%d fired, %d cancelled), %d/%d completions, %d resumes unread, "
            "clock %llu\n",
            z->nact, z->nmsgs, delivered, (unsigned long long)z->refused[0],
            (unsigned long long)z->refused[1], (unsigned long long)z->refused[2], z->ntim, fired,
            cancelled, dones, owed, resumes, (unsigned long long)z->clock);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t *z = &Z;
    memset(z, 0, sizeof(*z));
    z->in = data;
    z->n = size;

    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    cfg.deterministic = 1;
    for (int i = 0; i < 8; i++)
        cfg.seed = (cfg.seed << 8) | get(z);
    uint8_t conf = get(z);
    cfg.inbox_limit = 2 + conf % 8;
    cfg.mailbox_limit = UINT32_MAX; /* the model does not count mailboxes (test_actor does) */
    cfg.actor_batch = 1 + (conf >> 3) % 8;
    cfg.root_done_cb = on_root_done;
    cfg.user = z;
    int quiesce_at_end = !(conf & 0x80);
    z->limit = cfg.inbox_limit;
    z->low = z->limit / 2;

    CHECK(wb_rt_new(&z->rt, &cfg) == 0);
    CHECK(wb_rt_is_deterministic(z->rt));
    CHECK(wb_rt_start(z->rt) == 0);
    wb_rt_set_trace(z->rt, on_trace, z);

    for (int ops = 0; ops < MAX_OPS && z->pos < z->n; ops++)
        driver_op(z);
    if (quiesce_at_end)
        quiesce(z);

    /* Freeing finishes what is queued (handlers still run), then discards
     * every actor without completions. */
    z->stopping = 1;
    wb_rt_free(z->rt);
    z->rt = NULL;
    checkpoint(z);
    if (verbose < 0)
        verbose = getenv("FUZZ_ACTORS_VERBOSE") != NULL;
    if (verbose)
        summary(z);
    for (int i = 1; i <= z->nact; i++)
        CHECK(z->act[i].finis == 1);
    CHECK(z->nrootlog == 0);
    CHECK(z->ext_made == z->ext_freed);
    /* Calls are control events: every one ran, none was dropped. */
    CHECK(z->calls_made == z->calls_run);
    /* Every event went back to the pool. */
    CHECK(wb_pool_trim() == 0);
    return 0;
}
