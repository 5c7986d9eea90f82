/*
 * event.h - the unit that moves between threads.
 *
 * An event is a 64-byte header followed, usually, by its payload in the same
 * block. It owns its payload: wb_event_free() releases both. Sending an event
 * (wb_rt_send, wb_actor_send) hands ownership to the runtime only when the
 * send returns 0; on any error the caller still owns it and must free or
 * retry it.
 *
 * Addressing: an event goes from (src_lane, src) to (dst_lane, dst). On the
 * actor lane, src/dst are actor ids; on other lanes they name whatever that
 * lane serves (0 is the lane itself). A reply goes to the request's source.
 *
 * Control events (WB_EVF_CONTROL) bypass inbox bounds: they are never refused
 * for lack of room and never dropped. Data events count against the
 * destination inbox's bound.
 *
 * Any thread may create and free events; an event is touched by one thread at
 * a time, the one that owns it.
 */
#ifndef WB_EVENT_H
#define WB_EVENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    WB_LANE_NET = 0, /* network thread: libuv loop, all sockets */
    WB_LANE_ACTOR,   /* actor thread: state machines and timers */
    WB_LANE_DB,      /* database thread: the one SQLite connection */
    WB_LANE_COUNT
} wb_lane_t;

/* Event types. 0-255 belong to the runtime, 256-511 to db/, 512-1023 to
 * sockets/ and dispatch/, 1024 and up to apps. */
enum {
    WB_EV_NONE = 0,
    WB_EV_CALL,        /* run a function on the destination lane (control) */
    WB_EV_STOP,        /* lane shutdown (control, runtime-internal) */
    WB_EV_RESUME,      /* the inbox you were refused by has room again (control) */
    WB_EV_ACTOR_DONE,  /* a child actor ended: src = child, status = its exit status */
    WB_EV_TIMER,       /* a timer fired: cookie = timer id */
    WB_EV_SPAWN,       /* runtime-internal: create an actor on the actor lane */
    WB_EV_USER = 1024, /* first type free for applications */
};

enum {
    WB_EVF_CONTROL = 1u << 0,  /* exempt from inbox bounds */
    WB_EVF_EXTERNAL = 1u << 1, /* payload is external, released by free_cb */
    WB_EVF_COUNTED = 1u << 2,  /* runtime-internal: counted against an inbox bound */
    WB_EVF_TRACED = 1u << 3,   /* runtime-internal: the trace hook has seen it */
    /* Bits 4-7 are never set or cleared by the runtime: they belong to the
     * service that made the event (sockets/: 1u << 4 is WB_TCP_BLOB_BINARY). */
};

typedef void (*wb_payload_free_cb)(void *data, size_t len);

typedef struct wb_event_s wb_event_t;
struct wb_event_s {
    _Atomic(wb_event_t *) next; /* queue link; owned by whichever queue holds the event */
    uint16_t type;
    uint8_t flags;
    uint8_t pool_class; /* runtime-internal: block size class, 0xff = malloc */
    uint8_t src_lane;
    uint8_t dst_lane;
    uint16_t reserved;
    int32_t status; /* result code carried by replies and completions */
    uint32_t len;   /* payload length in bytes */
    uint64_t src;
    uint64_t dst;
    uint64_t cookie; /* correlation value, echoed by replies */
    void *data;      /* the payload: inline after the header, or external */
    wb_payload_free_cb free_cb;
};

/* Largest payload ever accepted in one event (1 GiB); bigger work is split. */
#define WB_EVENT_MAX_LEN (1u << 30)

/* A new event of `type` with room for `len` payload bytes (uninitialised),
 * addressed nowhere. NULL when out of memory or len > WB_EVENT_MAX_LEN. */
wb_event_t *wb_event_new(uint16_t type, size_t len);

/* A new event with `len` bytes copied from `data`. */
wb_event_t *wb_event_new_copy(uint16_t type, const void *data, size_t len);

/* A new event whose payload is `data`, released with free_cb(data, len) when
 * the event is freed. On failure (NULL) the caller still owns `data`. */
wb_event_t *wb_event_new_ext(uint16_t type, void *data, size_t len, wb_payload_free_cb free_cb);

/* Release the event and its payload. NULL is ignored. */
void wb_event_free(wb_event_t *ev);

/* Set source and destination in one call; returns ev. */
static inline wb_event_t *wb_event_route(wb_event_t *ev, wb_lane_t src_lane, uint64_t src,
                                         wb_lane_t dst_lane, uint64_t dst)
{
    ev->src_lane = (uint8_t)src_lane;
    ev->src = src;
    ev->dst_lane = (uint8_t)dst_lane;
    ev->dst = dst;
    return ev;
}

/* Turn an event around: it will go back to where it came from. */
static inline void wb_event_reverse(wb_event_t *ev)
{
    uint8_t l = ev->src_lane;
    uint64_t a = ev->src;
    ev->src_lane = ev->dst_lane;
    ev->src = ev->dst;
    ev->dst_lane = l;
    ev->dst = a;
}

#endif
