/*
 * endpoint.c - dispatch over TCP connections for one actor.
 */
#include "dispatch/endpoint.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/idmap.h"
#include "runtime/log.h"

typedef struct {
    uint64_t id;
    wb_event_t *held_head, *held_tail; /* refused by the network lane, in order */
    size_t nheld;
    int blocked; /* write queue above its high watermark */
} conn_t;

struct wb_endpoint_s {
    wb_endpoint_config_t cfg;
    wb_actor_t *owner;
    wb_rt_t *rt;
    wb_dispatch_t *d;
    wb_idmap_t conns;
    wb_idmap_t dialers; /* ids of our dials and dialers: connections from them are ours */
    uint64_t timer;     /* 0: none armed */
    uint64_t timer_at;
};

static void held_push(conn_t *c, wb_event_t *ev)
{
    atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    if (c->held_tail != NULL)
        atomic_store_explicit(&c->held_tail->next, ev, memory_order_relaxed);
    else
        c->held_head = ev;
    c->held_tail = ev;
    c->nheld++;
}

static wb_event_t *held_pop(conn_t *c)
{
    wb_event_t *ev = c->held_head;
    if (ev != NULL) {
        c->held_head = atomic_load_explicit(&ev->next, memory_order_relaxed);
        if (c->held_head == NULL)
            c->held_tail = NULL;
        c->nheld--;
        atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    }
    return ev;
}

static void held_free(conn_t *c)
{
    wb_event_t *ev;
    while ((ev = held_pop(c)) != NULL)
        wb_event_free(ev);
}

/* Push held messages out until the lane refuses again. */
static void flush(wb_endpoint_t *ep, conn_t *c)
{
    while (c->held_head != NULL) {
        wb_event_t *ev = c->held_head;
        int rc = wb_tcp_send(ep->rt, c->id, ev);
        if (rc == WB_EAGAIN)
            return;
        held_pop(c);
        if (rc != 0)
            wb_event_free(ev);
    }
}

static int ep_send(void *ctx, uint64_t peer, wb_event_t *blob)
{
    wb_endpoint_t *ep = ctx;
    conn_t *c = wb_idmap_get(&ep->conns, peer);
    if (c == NULL)
        return WB_ENOENT;
    wb_event_route(blob, WB_LANE_ACTOR, wb_actor_id(ep->owner), WB_LANE_NET, peer);
    if (c->held_head == NULL) {
        int rc = wb_tcp_send(ep->rt, peer, blob);
        if (rc != WB_EAGAIN)
            return rc;
    }
    if (c->nheld >= ep->cfg.max_held) {
        wb_warn("endpoint", "connection %llu: %zu messages held, closing", (unsigned long long)peer,
                c->nheld);
        wb_tcp_close(ep->rt, peer);
        return WB_ETOOBIG;
    }
    held_push(c, blob);
    return 0;
}

int wb_endpoint_new(wb_endpoint_t **out, wb_actor_t *owner, const wb_endpoint_config_t *cfg)
{
    wb_endpoint_t *ep = calloc(1, sizeof(*ep));
    if (ep == NULL)
        return WB_ENOMEM;
    if (cfg != NULL)
        ep->cfg = *cfg;
    if (ep->cfg.codec == NULL)
        ep->cfg.codec = &wb_codec_msgpack;
    if (ep->cfg.max_held == 0)
        ep->cfg.max_held = 4096;
    ep->owner = owner;
    ep->rt = wb_actor_rt(owner);
    wb_idmap_init(&ep->conns);
    wb_idmap_init(&ep->dialers);
    wb_dispatch_config_t dc = {.send = ep_send,
                               .ctx = ep,
                               .credit_window = ep->cfg.credit_window,
                               .max_message = ep->cfg.max_message,
                               .trace = ep->cfg.trace};
    int rc = wb_dispatch_new(&ep->d, &dc);
    if (rc != 0) {
        free(ep);
        return rc;
    }
    *out = ep;
    return 0;
}

static void free_conn(uint64_t key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    held_free(val);
    free(val);
}

void wb_endpoint_free(wb_endpoint_t *ep)
{
    if (ep == NULL)
        return;
    wb_dispatch_free(ep->d);
    wb_idmap_each(&ep->conns, free_conn, NULL);
    wb_idmap_fini(&ep->conns);
    wb_idmap_fini(&ep->dialers);
    if (ep->timer != 0)
        wb_timer_cancel(ep->owner, ep->timer);
    free(ep);
}

wb_dispatch_t *wb_endpoint_dispatch(wb_endpoint_t *ep)
{
    return ep->d;
}

int wb_endpoint_writable(wb_endpoint_t *ep, uint64_t conn)
{
    conn_t *c = wb_idmap_get(&ep->conns, conn);
    return c != NULL && !c->blocked && c->held_head == NULL;
}

uint64_t wb_endpoint_now(wb_endpoint_t *ep)
{
    return wb_rt_now_ms(ep->rt);
}

void wb_endpoint_rearm(wb_endpoint_t *ep)
{
    uint64_t next = wb_dispatch_tick(ep->d, wb_rt_now_ms(ep->rt));
    if (ep->timer != 0 && ep->timer_at == next)
        return;
    if (ep->timer != 0) {
        wb_timer_cancel(ep->owner, ep->timer);
        ep->timer = 0;
    }
    if (next == UINT64_MAX)
        return;
    uint64_t now = wb_rt_now_ms(ep->rt);
    if (wb_timer_start(ep->owner, next > now ? next - now : 0, &ep->timer) == 0)
        ep->timer_at = next;
    else
        ep->timer = 0;
}

static int remember(wb_endpoint_t *ep, int rc, uint64_t id)
{
    if (rc == 0)
        rc = wb_idmap_put(&ep->dialers, id, ep);
    return rc;
}

int wb_endpoint_listen(wb_endpoint_t *ep, const char *host, uint16_t port,
                       const wb_tcp_opts_t *opts, uint64_t *listener_id)
{
    return wb_tcp_listen(ep->rt, WB_LANE_ACTOR, wb_actor_id(ep->owner), host, port, opts,
                         listener_id);
}

int wb_endpoint_dial(wb_endpoint_t *ep, const char *host, uint16_t port, const wb_tcp_opts_t *opts,
                     uint64_t *conn_id)
{
    int rc = wb_tcp_dial(ep->rt, WB_LANE_ACTOR, wb_actor_id(ep->owner), host, port, opts, conn_id);
    return remember(ep, rc, *conn_id);
}

int wb_endpoint_dial_persistent(wb_endpoint_t *ep, const char *host, uint16_t port,
                                const wb_tcp_opts_t *opts, uint64_t *dialer_id)
{
    int rc = wb_tcp_dial_persistent(ep->rt, WB_LANE_ACTOR, wb_actor_id(ep->owner), host, port, opts,
                                    dialer_id);
    return remember(ep, rc, *dialer_id);
}

static void flush_all(uint64_t key, void *val, void *arg)
{
    (void)key;
    flush(arg, val);
}

int wb_endpoint_handle(wb_endpoint_t *ep, wb_event_t *ev)
{
    const char *text = ev->len > 0 ? (const char *)ev->data : "";
    conn_t *c;

    switch (ev->type) {
    case WB_EV_TCP_OPENED: {
        /* A one-shot dial's connection has the dial's id, a dialer's names it
         * in the cookie; anything else was accepted. */
        int dialed = wb_idmap_get(&ep->dialers, ev->src) != NULL ||
                     (ev->cookie != 0 && wb_idmap_get(&ep->dialers, ev->cookie) != NULL);
        c = calloc(1, sizeof(*c));
        int rc = c == NULL ? WB_ENOMEM : wb_idmap_put(&ep->conns, ev->src, c);
        if (rc == 0) {
            rc = wb_dispatch_peer_add(ep->d, ev->src, ep->cfg.codec, dialed);
            if (rc != 0)
                wb_idmap_del(&ep->conns, ev->src);
        }
        if (rc != 0) {
            free(c);
            wb_error("endpoint", "connection %llu: %s, closing it", (unsigned long long)ev->src,
                     wb_strerror(rc));
            wb_tcp_close(ep->rt, ev->src);
            break;
        }
        c->id = ev->src;
        if (ep->cfg.on_open != NULL)
            ep->cfg.on_open(ep, ev->src, dialed, text, ev->cookie, ep->cfg.user);
        break;
    }
    case WB_EV_TCP_BLOB:
        if (wb_idmap_get(&ep->conns, ev->src) == NULL) {
            wb_event_free(ev);
            return 1;
        }
        wb_dispatch_input(ep->d, ev->src, ev, 0);
        wb_endpoint_rearm(ep);
        return 1;
    case WB_EV_TCP_CLOSED:
        c = wb_idmap_del(&ep->conns, ev->src);
        if (c == NULL) {
            /* A listener or dialer ended, or a dial that never connected. */
            wb_idmap_del(&ep->dialers, ev->src);
            if (ep->cfg.on_close != NULL && ev->cookie == 0)
                ep->cfg.on_close(ep, ev->src, ev->status, text, ep->cfg.user);
            break;
        }
        held_free(c);
        free(c);
        wb_idmap_del(&ep->dialers, ev->src);
        wb_dispatch_peer_remove(ep->d, ev->src, ev->status != 0 ? ev->status : WB_ECLOSED);
        if (ep->cfg.on_close != NULL)
            ep->cfg.on_close(ep, ev->src, ev->status, text, ep->cfg.user);
        wb_endpoint_rearm(ep);
        break;
    case WB_EV_TCP_BACKPRESSURE:
    case WB_EV_TCP_WRITABLE:
        c = wb_idmap_get(&ep->conns, ev->src);
        if (c != NULL) {
            c->blocked = ev->type == WB_EV_TCP_BACKPRESSURE;
            if (ep->cfg.on_writable != NULL)
                ep->cfg.on_writable(ep, ev->src, !c->blocked, ep->cfg.user);
        }
        break;
    case WB_EV_RESUME:
        if (ev->src_lane != WB_LANE_NET)
            return 0;
        wb_idmap_each(&ep->conns, flush_all, ep);
        break;
    case WB_EV_TIMER:
        if (ep->timer == 0 || ev->cookie != ep->timer)
            return 0;
        ep->timer = 0;
        wb_endpoint_rearm(ep);
        break;
    case WB_EV_TCP_LISTENING:
    case WB_EV_TCP_RETRY:
        return 0; /* the owner's business */
    default:
        return 0;
    }
    wb_event_free(ev);
    return 1;
}
