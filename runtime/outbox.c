/*
 * outbox.c - see outbox.h.
 */
#include "runtime/outbox.h"

#include "runtime/error.h"

void wb_evq_push(wb_evq_t *q, wb_event_t *ev)
{
    atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    if (q->tail != NULL)
        atomic_store_explicit(&q->tail->next, ev, memory_order_relaxed);
    else
        q->head = ev;
    q->tail = ev;
}

void wb_evq_push_front(wb_evq_t *q, wb_event_t *ev)
{
    atomic_store_explicit(&ev->next, q->head, memory_order_relaxed);
    q->head = ev;
    if (q->tail == NULL)
        q->tail = ev;
}

wb_event_t *wb_evq_pop(wb_evq_t *q)
{
    wb_event_t *ev = q->head;
    if (ev != NULL) {
        q->head = atomic_load_explicit(&ev->next, memory_order_relaxed);
        if (q->head == NULL)
            q->tail = NULL;
        atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    }
    return ev;
}

void wb_evq_append(wb_evq_t *dst, wb_evq_t *src)
{
    if (src->head == NULL)
        return;
    if (dst->tail != NULL)
        atomic_store_explicit(&dst->tail->next, src->head, memory_order_relaxed);
    else
        dst->head = src->head;
    dst->tail = src->tail;
    src->head = src->tail = NULL;
}

void wb_evq_clear(wb_evq_t *q)
{
    wb_event_t *ev;
    while ((ev = wb_evq_pop(q)) != NULL)
        wb_event_free(ev);
}

void wb_outbox_init(wb_outbox_t *o, wb_outbox_send_cb send, void *ctx)
{
    o->q.head = o->q.tail = NULL;
    o->send = send;
    o->ctx = ctx;
}

int wb_outbox_send(wb_outbox_t *o, wb_event_t *ev)
{
    if (wb_evq_empty(&o->q) && o->send(o->ctx, ev) != WB_EAGAIN)
        return 0;
    wb_evq_push(&o->q, ev);
    return 1;
}

void wb_outbox_queue(wb_outbox_t *o, wb_event_t *ev)
{
    wb_evq_push(&o->q, ev);
}

int wb_outbox_resume(wb_outbox_t *o)
{
    wb_event_t *ev;
    while ((ev = wb_evq_pop(&o->q)) != NULL) {
        if (o->send(o->ctx, ev) == WB_EAGAIN) {
            wb_evq_push_front(&o->q, ev); /* the lane's resume will come */
            return 0;
        }
    }
    return 1;
}

void wb_outbox_fini(wb_outbox_t *o)
{
    wb_evq_clear(&o->q);
}
