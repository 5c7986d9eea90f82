#include "runtime/event.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/assert.h"
#include "runtime/pool.h"

#define HDR      sizeof(wb_event_t)
#define MALLOCED 0xff

static wb_event_t *alloc_event(size_t room)
{
    wb_event_t *ev;
    int c = wb_pool_class(HDR + room);
    if (c >= 0) {
        ev = wb_pool_alloc(c);
        if (ev == NULL)
            return NULL;
        ev->pool_class = (uint8_t)c;
    } else {
        ev = malloc(HDR + room);
        if (ev == NULL)
            return NULL;
        ev->pool_class = MALLOCED;
    }
    atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    ev->type = 0;
    ev->flags = 0;
    ev->src_lane = ev->dst_lane = 0;
    ev->reserved = 0;
    ev->status = 0;
    ev->len = 0;
    ev->src = ev->dst = ev->cookie = 0;
    ev->data = NULL;
    ev->free_cb = NULL;
    return ev;
}

wb_event_t *wb_event_new(uint16_t type, size_t len)
{
    if (len > WB_EVENT_MAX_LEN)
        return NULL;
    wb_event_t *ev = alloc_event(len);
    if (ev == NULL)
        return NULL;
    ev->type = type;
    ev->len = (uint32_t)len;
    ev->data = (char *)ev + HDR;
    return ev;
}

wb_event_t *wb_event_new_copy(uint16_t type, const void *data, size_t len)
{
    wb_event_t *ev = wb_event_new(type, len);
    if (ev != NULL && len > 0)
        memcpy(ev->data, data, len);
    return ev;
}

wb_event_t *wb_event_new_ext(uint16_t type, void *data, size_t len, wb_payload_free_cb free_cb)
{
    if (len > WB_EVENT_MAX_LEN)
        return NULL;
    wb_event_t *ev = alloc_event(0);
    if (ev == NULL)
        return NULL;
    ev->type = type;
    ev->flags = WB_EVF_EXTERNAL;
    ev->len = (uint32_t)len;
    ev->data = data;
    ev->free_cb = free_cb;
    return ev;
}

void wb_event_free(wb_event_t *ev)
{
    if (ev == NULL)
        return;
    if ((ev->flags & WB_EVF_EXTERNAL) && ev->free_cb != NULL)
        ev->free_cb(ev->data, ev->len);
    if (ev->pool_class == MALLOCED)
        free(ev);
    else
        wb_pool_free(ev->pool_class, ev);
}
