/*
 * test_actor.c - actors and timers, in deterministic mode (no threads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/pool.h"
#include "runtime/rt.h"

#define MAXLOG 4096

/* What every test actor records. */
typedef struct {
    uint64_t id;
    int fini_calls;
    int nlog;
    uint16_t type[MAXLOG];
    uint64_t src[MAXLOG];
    uint64_t cookie[MAXLOG];
    int32_t status[MAXLOG];
    uint32_t value[MAXLOG]; /* first 4 payload bytes, if any */
    int exit_on;            /* exit when a message carries this value (0: never) */
    int spawn_children;     /* on value 1000: spawn this many children */
    uint64_t children[16];
} rec_t;

static int global_order_n;
static uint64_t global_order[MAXLOG];

static void rec_handle(wb_actor_t *self, wb_event_t *ev)
{
    rec_t *r = wb_actor_state(self);
    uint32_t v = 0;
    if (ev->len >= 4)
        memcpy(&v, ev->data, 4);
    if (r->nlog < MAXLOG) {
        r->type[r->nlog] = ev->type;
        r->src[r->nlog] = ev->src;
        r->cookie[r->nlog] = ev->cookie;
        r->status[r->nlog] = ev->status;
        r->value[r->nlog] = v;
        r->nlog++;
    }
    if (global_order_n < MAXLOG)
        global_order[global_order_n++] = wb_actor_id(self);
    wb_event_free(ev);
    if (v == 1000) {
        extern const wb_actor_def_t rec_def;
        for (int i = 0; i < r->spawn_children && i < 16; i++) {
            rec_t *c = calloc(1, sizeof(*c));
            assert_int_equal(wb_actor_spawn(wb_actor_rt(self), self, &rec_def, c, &c->id), 0);
            r->children[i] = c->id;
        }
    }
    if (r->exit_on != 0 && (int)v == r->exit_on)
        wb_actor_exit(self, 42);
}

static int fini_total;
static void rec_fini(wb_actor_t *self)
{
    rec_t *r = wb_actor_state(self);
    r->fini_calls++;
    fini_total++;
    /* Children allocated by rec_handle are owned by their actor. */
    if (wb_actor_parent(self) != 0)
        free(r);
}

const wb_actor_def_t rec_def = {"rec", rec_handle, rec_fini};

static wb_rt_t *new_rt(uint32_t batch)
{
    wb_rt_config_t cfg;
    wb_rt_t *rt;
    wb_rt_config_init(&cfg);
    cfg.deterministic = 1;
    cfg.seed = 7;
    if (batch)
        cfg.actor_batch = batch;
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    global_order_n = 0;
    fini_total = 0;
    return rt;
}

static void finish(wb_rt_t *rt)
{
    wb_rt_free(rt);
    assert_int_equal(wb_pool_trim(), 0);
}

static wb_event_t *msg(uint32_t v)
{
    wb_event_t *ev = wb_event_new(WB_EV_USER, 4);
    assert_non_null(ev);
    memcpy(ev->data, &v, 4);
    return ev;
}

/* Payloads that count their own release: ownership made visible. */
static int ext_freed;
static void ext_free(void *data, size_t len)
{
    (void)len;
    ext_freed++;
    free(data);
}

static wb_event_t *ext_msg(void)
{
    wb_event_t *ev = wb_event_new_ext(WB_EV_USER, calloc(1, 8), 8, ext_free);
    assert_non_null(ev);
    return ev;
}

static void test_send_order(void **state)
{
    (void)state;
    wb_rt_t *rt = new_rt(0);
    rec_t a = {0};
    assert_int_equal(wb_actor_spawn(rt, NULL, &rec_def, &a, &a.id), 0);
    for (uint32_t i = 1; i <= 500; i++)
        assert_int_equal(wb_actor_send(rt, NULL, a.id, msg(i)), 0);
    /* Half through the inbox, as another thread would send. */
    for (uint32_t i = 501; i <= 1000; i++) {
        wb_event_t *ev = msg(i);
        wb_event_route(ev, WB_LANE_NET, 9, WB_LANE_ACTOR, a.id);
        assert_int_equal(wb_rt_send(rt, ev), 0);
    }
    wb_rt_run(rt, 100000);
    assert_int_equal(a.nlog, 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(a.value[i], (uint32_t)i + 1);
    assert_int_equal(a.src[0], 0);
    assert_int_equal(a.src[999], 9);
    finish(rt);
    assert_int_equal(a.fini_calls, 1); /* discarded at shutdown */
}

static void test_completion_to_creator(void **state)
{
    (void)state;
    wb_rt_t *rt = new_rt(0);
    rec_t p = {.spawn_children = 2};
    assert_int_equal(wb_actor_spawn(rt, NULL, &rec_def, &p, &p.id), 0);
    assert_int_equal(wb_actor_send(rt, NULL, p.id, msg(1000)), 0);
    wb_rt_run(rt, 1000);
    assert_int_equal(wb_actor_count(rt), 3);
    uint64_t c0 = p.children[0], c1 = p.children[1];
    rec_t *r0 = wb_actor_state(wb_actor_lookup(rt, c0));
    r0->exit_on = 7;
    assert_int_equal(wb_actor_send(rt, NULL, c0, msg(7)), 0);
    wb_rt_run(rt, 1000);
    assert_null(wb_actor_lookup(rt, c0));
    assert_non_null(wb_actor_lookup(rt, c1));
    /* The parent heard: one WB_EV_ACTOR_DONE from c0 with its status. */
    assert_int_equal(p.nlog, 2);
    assert_int_equal(p.type[1], WB_EV_ACTOR_DONE);
    assert_int_equal(p.src[1], c0);
    assert_int_equal(p.status[1], 42);
    /* Killing the other child reports WB_ECANCELED. */
    assert_int_equal(wb_actor_kill(rt, c1), 0);
    wb_rt_run(rt, 1000);
    assert_int_equal(p.nlog, 3);
    assert_int_equal(p.type[2], WB_EV_ACTOR_DONE);
    assert_int_equal(p.src[2], c1);
    assert_int_equal(p.status[2], WB_ECANCELED);
    assert_int_equal(wb_actor_kill(rt, c1), WB_ENOENT);
    finish(rt);
}

static int root_done_calls;
static uint64_t root_done_id;
static int root_done_status;
static void on_root_done(wb_rt_t *rt, uint64_t id, int status, void *user)
{
    (void)rt;
    (void)user;
    root_done_calls++;
    root_done_id = id;
    root_done_status = status;
}

static void test_children_discarded(void **state)
{
    (void)state;
    wb_rt_config_t cfg;
    wb_rt_t *rt;
    wb_rt_config_init(&cfg);
    cfg.deterministic = 1;
    cfg.root_done_cb = on_root_done;
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    fini_total = 0;
    root_done_calls = 0;

    rec_t p = {.spawn_children = 3, .exit_on = 5};
    assert_int_equal(wb_actor_spawn(rt, NULL, &rec_def, &p, &p.id), 0);
    assert_int_equal(wb_actor_send(rt, NULL, p.id, msg(1000)), 0);
    wb_rt_run(rt, 1000);
    /* Grandchildren under the first child. */
    rec_t *c0 = wb_actor_state(wb_actor_lookup(rt, p.children[0]));
    c0->spawn_children = 2;
    assert_int_equal(wb_actor_send(rt, NULL, p.children[0], msg(1000)), 0);
    wb_rt_run(rt, 1000);
    assert_int_equal(wb_actor_count(rt), 6);
    /* Mail waiting for a child is freed when it is discarded. */
    ext_freed = 0;
    assert_int_equal(wb_actor_send(rt, NULL, p.children[1], ext_msg()), 0);
    assert_int_equal(wb_actor_send(rt, NULL, p.id, msg(5)), 0);
    /* Run only the parent's message: the child's is still queued. */
    while (p.fini_calls == 0)
        assert_int_equal(wb_rt_step(rt), 1);
    assert_int_equal(wb_actor_count(rt), 0);
    assert_int_equal(fini_total, 6);
    assert_int_equal(ext_freed, 1);
    assert_int_equal(root_done_calls, 1);
    assert_int_equal(root_done_id, p.id);
    assert_int_equal(root_done_status, 42);
    /* Nothing from the discarded reached anyone. */
    assert_int_equal(wb_rt_run(rt, 1000), 0);
    finish(rt);
}

static void test_batch_cap_fairness(void **state)
{
    (void)state;
    wb_rt_t *rt = new_rt(4);
    rec_t a = {0}, b = {0};
    assert_int_equal(wb_actor_spawn(rt, NULL, &rec_def, &a, &a.id), 0);
    assert_int_equal(wb_actor_spawn(rt, NULL, &rec_def, &b, &b.id), 0);
    for (uint32_t i = 0; i < 100; i++)
        assert_int_equal(wb_actor_send(rt, NULL, a.id, msg(i)), 0);
    assert_int_equal(wb_actor_send(rt, NULL, b.id, msg(1)), 0);
    wb_rt_run(rt, 1000);
    assert_int_equal(a.nlog, 100);
    assert_int_equal(b.nlog, 1);
    /* a ran 4, then b had its turn. */
    int pos = -1;
    for (int i = 0; i < global_order_n; i++)
        if (global_order[i] == b.id)
            pos = i;
    assert_int_equal(pos, 4);
    finish(rt);
}

static void test_ownership(void **state)
{
    (void)state;
    wb_rt_t *rt = new_rt(0);
    rec_t a = {.exit_on = 3};
    assert_int_equal(wb_actor_spawn(rt, NULL, &rec_def, &a, &a.id), 0);
    ext_freed = 0;
    /* Refused: the caller keeps it. */
    wb_event_t *ev = ext_msg();
    assert_int_equal(wb_actor_send(rt, NULL, 999, ev), WB_ENOENT);
    assert_int_equal(ext_freed, 0);
    wb_event_free(ev);
    assert_int_equal(ext_freed, 1);
    /* Accepted then left unread when the actor exits: the runtime frees it. */
    assert_int_equal(wb_actor_send(rt, NULL, a.id, msg(3)), 0);
    assert_int_equal(wb_actor_send(rt, NULL, a.id, ext_msg()), 0);
    wb_rt_run(rt, 1000);
    assert_int_equal(a.nlog, 1);
    assert_int_equal(ext_freed, 2);
    /* Through the inbox to a dead actor: dropped, freed, counted. */
    ev = ext_msg();
    wb_event_route(ev, WB_LANE_NET, 1, WB_LANE_ACTOR, a.id);
    assert_int_equal(wb_rt_send(rt, ev), 0);
    wb_rt_run(rt, 1000);
    assert_int_equal(ext_freed, 3);
    wb_lane_stats_t st;
    wb_rt_stats(rt, WB_LANE_ACTOR, &st);
    assert_true(st.dropped >= 2);
    /* After stop, sends fail and ownership stays. */
    wb_rt_stop(rt);
    ev = ext_msg();
    wb_event_route(ev, WB_LANE_NET, 1, WB_LANE_ACTOR, a.id);
    assert_int_equal(wb_rt_send(rt, ev), WB_ECLOSED);
    assert_int_equal(ext_freed, 3);
    wb_event_free(ev);
    finish(rt);
}

/* A local sender that fills a mailbox is refused, then told to go on. */
typedef struct {
    uint64_t to;
    int sent, refused, resumed;
    uint64_t resume_src;
} flooder_t;

static void flooder(wb_actor_t *self, wb_event_t *ev)
{
    flooder_t *f = wb_actor_state(self);
    if (ev->type == WB_EV_RESUME) {
        f->resumed++;
        f->resume_src = ev->src;
    }
    wb_event_free(ev);
    for (;;) {
        wb_event_t *m = msg((uint32_t)f->sent);
        int rc = wb_actor_send(wb_actor_rt(self), self, f->to, m);
        if (rc != 0) {
            assert_int_equal(rc, WB_EAGAIN);
            wb_event_free(m);
            f->refused++;
            return;
        }
        if (++f->sent == 100)
            return;
    }
}
static const wb_actor_def_t flooder_def = {"flooder", flooder, NULL};

static void test_mailbox_bound(void **state)
{
    (void)state;
    wb_rt_config_t cfg;
    wb_rt_t *rt;
    wb_rt_config_init(&cfg);
    cfg.deterministic = 1;
    cfg.mailbox_limit = 8;
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    global_order_n = 0;
    rec_t sink = {0};
    flooder_t f = {0};
    uint64_t fid;
    assert_int_equal(wb_actor_spawn(rt, NULL, &rec_def, &sink, &sink.id), 0);
    f.to = sink.id;
    assert_int_equal(wb_actor_spawn(rt, NULL, &flooder_def, &f, &fid), 0);
    assert_int_equal(wb_actor_send(rt, NULL, fid, msg(0)), 0);
    /* One step: the flooder fills the sink's mailbox to exactly its bound. */
    while (f.refused == 0)
        assert_int_equal(wb_rt_step(rt), 1);
    assert_int_equal(f.sent, 8);
    /* Control events still pass the bound. */
    wb_event_t *c = msg(999);
    c->flags |= WB_EVF_CONTROL;
    assert_int_equal(wb_actor_send(rt, NULL, sink.id, c), 0);
    wb_rt_run(rt, 100000);
    /* Resumed as often as refused, everything arrived, in order. */
    assert_int_equal(f.sent, 100);
    assert_true(f.refused > 1);
    assert_int_equal(f.resumed, f.refused);
    assert_int_equal(f.resume_src, sink.id);
    assert_int_equal(sink.nlog, 101);
    int next = 0;
    for (int i = 0; i < sink.nlog; i++)
        if (sink.value[i] != 999)
            assert_int_equal(sink.value[i], (uint32_t)next++);
    finish(rt);
}

/* ---- timers -------------------------------------------------------------- */

typedef struct {
    int n;
    uint64_t fired[12000];
    uint64_t at[12000];
} tlog_t;

static void timer_handle(wb_actor_t *self, wb_event_t *ev)
{
    tlog_t *t = wb_actor_state(self);
    assert_int_equal(ev->type, WB_EV_TIMER);
    t->fired[t->n] = ev->cookie;
    t->at[t->n] = wb_rt_now_ms(wb_actor_rt(self));
    t->n++;
    wb_event_free(ev);
}
static const wb_actor_def_t timer_def = {"timers", timer_handle, NULL};

static void test_timer_order(void **state)
{
    (void)state;
    wb_rt_t *rt = new_rt(0);
    static tlog_t tl;
    memset(&tl, 0, sizeof(tl));
    uint64_t id;
    assert_int_equal(wb_actor_spawn(rt, NULL, &timer_def, &tl, &id), 0);
    wb_actor_t *a = wb_actor_lookup(rt, id);
    enum { N = 10000 };
    static uint64_t tid[N], delay[N];
    srand(3);
    for (int i = 0; i < N; i++) {
        delay[i] = (uint64_t)(rand() % 5000);
        assert_int_equal(wb_timer_start(a, delay[i], &tid[i]), 0);
    }
    assert_int_equal(wb_timer_count(rt), N);
    /* Cancel every third before anything fires. */
    for (int i = 0; i < N; i += 3)
        assert_int_equal(wb_timer_cancel(a, tid[i]), 0);
    assert_int_equal(wb_timer_cancel(a, tid[0]), WB_ENOENT);
    wb_rt_run(rt, 10 * N);
    int expect = N - (N + 2) / 3;
    assert_int_equal(tl.n, expect);
    assert_int_equal(wb_timer_count(rt), 0);
    /* Fired in deadline order, ties in start order, each at its deadline. */
    for (int i = 0; i < tl.n; i++) {
        int idx = (int)(tl.fired[i] - tid[0]);
        assert_true(idx % 3 != 0);
        assert_int_equal(tl.at[i], delay[idx]);
        if (i > 0) {
            int prev = (int)(tl.fired[i - 1] - tid[0]);
            assert_true(delay[prev] < delay[idx] || (delay[prev] == delay[idx] && prev < idx));
        }
    }
    finish(rt);
}

static void test_timer_cancel_after_fire(void **state)
{
    (void)state;
    wb_rt_t *rt = new_rt(0);
    static tlog_t tl;
    memset(&tl, 0, sizeof(tl));
    uint64_t id, t1, t2;
    assert_int_equal(wb_actor_spawn(rt, NULL, &timer_def, &tl, &id), 0);
    wb_actor_t *a = wb_actor_lookup(rt, id);
    assert_int_equal(wb_timer_start(a, 10, &t1), 0);
    assert_int_equal(wb_timer_start(a, 10, &t2), 0);
    wb_rt_advance(rt, 10); /* both fired: their events wait in the mailbox */
    assert_int_equal(tl.n, 0);
    assert_int_equal(wb_timer_cancel(a, t1), 0);
    wb_rt_run(rt, 100);
    assert_int_equal(tl.n, 1);
    assert_int_equal(tl.fired[0], t2);
    /* Timers die with their actor. */
    assert_int_equal(wb_timer_start(a, 50, &t1), 0);
    assert_int_equal(wb_actor_kill(rt, id), 0);
    assert_int_equal(wb_timer_count(rt), 0);
    assert_int_equal(wb_rt_run(rt, 100), 0);
    finish(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_order),         cmocka_unit_test(test_completion_to_creator),
        cmocka_unit_test(test_children_discarded), cmocka_unit_test(test_batch_cap_fairness),
        cmocka_unit_test(test_ownership),          cmocka_unit_test(test_mailbox_bound),
        cmocka_unit_test(test_timer_order),        cmocka_unit_test(test_timer_cancel_after_fire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
