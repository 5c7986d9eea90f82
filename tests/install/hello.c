/*
 * hello.c - the smallest program built against an installed waybill: the
 * test command installs the library, builds this with pkg-config (shared and
 * static) and runs it. An actor receives one event from another lane.
 */
#include <runtime/actor.h>
#include <runtime/error.h>
#include <runtime/rt.h>
#include <stdio.h>

static int got;

static void hello(wb_actor_t *self, wb_event_t *ev)
{
    got = ev->type == WB_EV_USER && ev->src_lane == WB_LANE_NET;
    wb_event_free(ev);
    wb_rt_request_stop(wb_actor_rt(self));
}

static const wb_actor_def_t hello_def = {"hello", hello, NULL};

int main(void)
{
    wb_rt_t *rt;
    uint64_t id;
    int rc = wb_rt_new(&rt, NULL);
    if (rc == 0)
        rc = wb_actor_spawn(rt, NULL, &hello_def, NULL, &id);
    if (rc == 0)
        rc = wb_rt_start(rt);
    if (rc != 0) {
        fprintf(stderr, "hello: %s\n", wb_strerror(rc));
        return 1;
    }
    wb_event_t *ev = wb_event_new(WB_EV_USER, 0);
    wb_event_route(ev, WB_LANE_NET, 0, WB_LANE_ACTOR, id);
    if (wb_rt_send(rt, ev) != 0)
        return 1;
    wb_rt_wait(rt);
    wb_rt_free(rt);
    printf("hello: %s\n", got ? "an event crossed from the network lane to an actor" : "FAILED");
    return got ? 0 : 1;
}
