/*
 * test_det.c - deterministic mode: one thread steps all three lanes in a
 * seeded order, so an interleaving found once can be replayed.
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

#define MAXTRACE 8192

typedef struct {
    int n;
    uint64_t h[MAXTRACE]; /* one hash per event taken: lane, type, src, dst, cookie */
} trace_t;

static void on_trace(wb_rt_t *rt, wb_lane_t lane, const wb_event_t *ev, void *arg)
{
    (void)rt;
    trace_t *t = arg;
    if (t->n < MAXTRACE)
        t->h[t->n++] = ((uint64_t)lane << 60) ^ ((uint64_t)ev->type << 40) ^ (ev->src << 20) ^
                       (ev->dst << 8) ^ ev->cookie;
}

/* The net and db lanes forward what they receive to the actor named in the
 * cookie, as a real service would answer a request. */
static void forward(wb_rt_t *rt, void *ctx, wb_event_t *ev)
{
    wb_lane_t lane = (wb_lane_t)(intptr_t)ctx;
    wb_event_route(ev, lane, ev->src, WB_LANE_ACTOR, ev->cookie);
    if (wb_rt_send(rt, ev) != 0)
        wb_event_free(ev);
}

/* The racer records which lane's answer reached it first. */
typedef struct {
    int first_lane; /* -1 until the first answer */
    int answers;
    uint64_t timer;
    int timer_fired;
} racer_t;

static void racer(wb_actor_t *self, wb_event_t *ev)
{
    racer_t *r = wb_actor_state(self);
    if (ev->type == WB_EV_TIMER) {
        r->timer_fired++;
    } else if (ev->type == WB_EV_USER) {
        if (r->first_lane < 0)
            r->first_lane = ev->src_lane;
        r->answers++;
        if (r->answers == 2)
            assert_int_equal(wb_timer_start(self, 5, &r->timer), 0);
    }
    wb_event_free(ev);
}
static const wb_actor_def_t racer_def = {"racer", racer, NULL};

/* Ping-pong partners to give the scheduler more to interleave. */
static void pinger(wb_actor_t *self, wb_event_t *ev)
{
    uint32_t left;
    memcpy(&left, ev->data, 4);
    if (left > 0) {
        left--;
        memcpy(ev->data, &left, 4);
        uint64_t to = ev->src;
        if (wb_actor_send(wb_actor_rt(self), self, to, ev) == 0)
            return;
    }
    wb_event_free(ev);
}
static const wb_actor_def_t pinger_def = {"pinger", pinger, NULL};

/* One run of the scenario; returns which lane answered first. */
static int scenario(uint64_t seed, trace_t *trace)
{
    wb_rt_config_t cfg;
    wb_rt_t *rt;
    wb_rt_config_init(&cfg);
    cfg.deterministic = 1;
    cfg.seed = seed;
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    wb_lane_service_t net = {.on_event = forward, .ctx = (void *)(intptr_t)WB_LANE_NET};
    wb_lane_service_t db = {.on_event = forward, .ctx = (void *)(intptr_t)WB_LANE_DB};
    assert_int_equal(wb_rt_set_service(rt, WB_LANE_NET, &net), 0);
    assert_int_equal(wb_rt_set_service(rt, WB_LANE_DB, &db), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    if (trace != NULL) {
        trace->n = 0;
        wb_rt_set_trace(rt, on_trace, trace);
    }
    racer_t r = {.first_lane = -1};
    uint64_t rid, p1, p2;
    assert_int_equal(wb_actor_spawn(rt, NULL, &racer_def, &r, &rid), 0);
    assert_int_equal(wb_actor_spawn(rt, NULL, &pinger_def, NULL, &p1), 0);
    assert_int_equal(wb_actor_spawn(rt, NULL, &pinger_def, NULL, &p2), 0);
    uint32_t rounds = 20;
    wb_event_t *ping = wb_event_new_copy(WB_EV_USER, &rounds, 4);
    wb_event_route(ping, WB_LANE_ACTOR, p2, WB_LANE_ACTOR, p1);
    assert_int_equal(wb_rt_send(rt, ping), 0);
    /* Two requests race: one through the net lane, one through the db lane. */
    for (int lane = WB_LANE_NET; lane <= WB_LANE_DB; lane += 2) {
        wb_event_t *ev = wb_event_new(WB_EV_USER, 0);
        wb_event_route(ev, WB_LANE_ACTOR, rid, (wb_lane_t)lane, 0);
        ev->cookie = rid;
        assert_int_equal(wb_rt_send(rt, ev), 0);
    }
    wb_rt_run(rt, 100000);
    assert_int_equal(r.answers, 2);
    assert_int_equal(r.timer_fired, 1);
    assert_int_equal(wb_rt_now_ms(rt), 5);
    int first = r.first_lane;
    wb_rt_free(rt);
    return first;
}

static void test_same_seed_same_run(void **state)
{
    (void)state;
    static trace_t a, b;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        int fa = scenario(seed, &a);
        int fb = scenario(seed, &b);
        assert_int_equal(fa, fb);
        assert_int_equal(a.n, b.n);
        assert_memory_equal(a.h, b.h, sizeof(uint64_t) * (size_t)a.n);
    }
    assert_int_equal(wb_pool_trim(), 0);
}

static void test_seeds_differ(void **state)
{
    (void)state;
    static trace_t a, b;
    int differ = 0;
    scenario(1, &a);
    for (uint64_t seed = 2; seed <= 20 && !differ; seed++) {
        scenario(seed, &b);
        differ = a.n != b.n || memcmp(a.h, b.h, sizeof(uint64_t) * (size_t)a.n) != 0;
    }
    assert_true(differ);
}

/* The workflow the mode exists for: scan seeds until the rare order shows
 * up, then replay that seed and see it again, every time. */
static void test_race_replays(void **state)
{
    (void)state;
    int seen[WB_LANE_COUNT] = {0};
    uint64_t found[WB_LANE_COUNT] = {0};
    for (uint64_t seed = 1; seed <= 200; seed++) {
        int first = scenario(seed, NULL);
        assert_true(first == WB_LANE_NET || first == WB_LANE_DB);
        if (!seen[first])
            found[first] = seed;
        seen[first]++;
    }
    /* Both orders happen across seeds... */
    assert_true(seen[WB_LANE_NET] > 0);
    assert_true(seen[WB_LANE_DB] > 0);
    /* ...and each is reproduced by its seed. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(scenario(found[WB_LANE_NET], NULL), WB_LANE_NET);
        assert_int_equal(scenario(found[WB_LANE_DB], NULL), WB_LANE_DB);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_run),
        cmocka_unit_test(test_seeds_differ),
        cmocka_unit_test(test_race_replays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
