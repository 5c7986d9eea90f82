/*
 * post.h - the wormhole and transit actors' API calls: each posts one
 * control event (from any thread) to the actor and returns.
 */
#ifndef WB_WORMHOLE_POST_H
#define WB_WORMHOLE_POST_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"
#include "runtime/event.h"
#include "runtime/rt.h"

/* Post event `type` with a copy of data[0..len) (none when data is NULL) and
 * cookie to actor id. Returns 0, WB_ENOMEM, or wb_rt_send's error. */
static inline int wb_wh_post(wb_rt_t *rt, uint64_t id, int type, const void *data, size_t len,
                             uint64_t cookie)
{
    wb_event_t *ev = data != NULL ? wb_event_new_copy((uint16_t)type, data, len)
                                  : wb_event_new((uint16_t)type, 0);
    if (ev == NULL)
        return WB_ENOMEM;
    ev->flags |= WB_EVF_CONTROL;
    ev->cookie = cookie;
    wb_event_route(ev, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, id);
    int rc = wb_rt_send(rt, ev);
    if (rc != 0)
        wb_event_free(ev);
    return rc;
}

#endif
