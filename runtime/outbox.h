/*
 * outbox.h - sends a lane refused, kept in order until it has room.
 *
 * An actor that sends to other lanes (sockets, the database) gets WB_EAGAIN
 * when a lane's inbox is full, then one WB_EV_RESUME (rt.h). An outbox keeps
 * the refused event and every later one behind it, so nothing overtakes
 * anything: wb_outbox_send tries at once only when nothing waits, and
 * wb_outbox_resume (on WB_EV_RESUME) sends what waits until a lane refuses
 * again. The actual send is the owner's callback, so the same outbox serves
 * wb_tcp_send, wb_rt_send and markers of the owner's own (a close queued in
 * line with the data before it).
 *
 * wb_evq_t is the FIFO underneath (events chained through their `next`
 * field, which is free while the caller owns them): also for owners that
 * hold events back for reasons of their own.
 *
 * One thread at a time, the owner's.
 */
#ifndef WB_OUTBOX_H
#define WB_OUTBOX_H

#include <stddef.h>

#include "runtime/event.h"

typedef struct {
    wb_event_t *head, *tail;
} wb_evq_t;

void wb_evq_push(wb_evq_t *q, wb_event_t *ev);
void wb_evq_push_front(wb_evq_t *q, wb_event_t *ev);
wb_event_t *wb_evq_pop(wb_evq_t *q);
/* Move all of src to the end of dst. */
void wb_evq_append(wb_evq_t *dst, wb_evq_t *src);
/* Free every event in q. */
void wb_evq_clear(wb_evq_t *q);
static inline int wb_evq_empty(const wb_evq_t *q)
{
    return q->head == NULL;
}

/* Send ev: 0 when it was taken (or dropped: the callback's business),
 * WB_EAGAIN when the lane refused it and the caller still owns it. */
typedef int (*wb_outbox_send_cb)(void *ctx, wb_event_t *ev);

typedef struct {
    wb_evq_t q;
    wb_outbox_send_cb send;
    void *ctx;
} wb_outbox_t;

void wb_outbox_init(wb_outbox_t *o, wb_outbox_send_cb send, void *ctx);
/* Send ev now, or queue it behind what waits. Returns 0 when it went out,
 * 1 when it waits (the owner may want to slow its producers). */
int wb_outbox_send(wb_outbox_t *o, wb_event_t *ev);
/* Queue ev behind what waits without trying (a marker that must not pass). */
void wb_outbox_queue(wb_outbox_t *o, wb_event_t *ev);
/* Send what waits, in order, until a lane refuses. Returns 1 when all went. */
int wb_outbox_resume(wb_outbox_t *o);
static inline int wb_outbox_idle(const wb_outbox_t *o)
{
    return wb_evq_empty(&o->q);
}
/* Free what still waits. */
void wb_outbox_fini(wb_outbox_t *o);

#endif
