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

/* A registered row type (rule 5). */
typedef struct {
    uint32_t handler, reply_type;
    unsigned flags;
} row_type_t;

/* A row request in flight: whom to answer. */
typedef struct {
    uint64_t peer, msg_id, regards;
    uint32_t type, reply_type;
} row_req_t;

struct wb_endpoint_s {
    wb_endpoint_config_t cfg;
    wb_actor_t *owner;
    wb_rt_t *rt;
    wb_dispatch_t *d;
    wb_idmap_t conns;
    wb_idmap_t dialers; /* ids of our dials and dialers: connections from them are ours */
    uint64_t timer;     /* 0: none armed */
    uint64_t timer_at;
    wb_idmap_t row_types; /* type + 1 -> row_type_t */
    wb_idmap_t row_reqs;  /* cookie -> row_req_t */
    uint64_t next_cookie;
    wb_event_t *db_head, *db_tail; /* database requests the lane refused, in order */
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

/* Put ev back at the head, where held_pop took it from. */
static void held_unpop(conn_t *c, wb_event_t *ev)
{
    atomic_store_explicit(&ev->next, c->held_head, memory_order_relaxed);
    c->held_head = ev;
    if (c->held_tail == NULL)
        c->held_tail = ev;
    c->nheld++;
}

static void held_free(conn_t *c)
{
    wb_event_t *ev;
    while ((ev = held_pop(c)) != NULL)
        wb_event_free(ev);
}

/* Push held messages out until the lane refuses again. Each is taken off
 * the list before it is sent: once sent, its `next` link belongs to the
 * network lane's queue (and the event may already be written and freed). */
static void flush(wb_endpoint_t *ep, conn_t *c)
{
    wb_event_t *ev;
    while ((ev = held_pop(c)) != NULL) {
        int rc = wb_tcp_send(ep->rt, c->id, ev);
        if (rc == WB_EAGAIN) {
            held_unpop(c, ev);
            return;
        }
        if (rc != 0)
            wb_event_free(ev);
    }
}

/* ---- the database lane ------------------------------------------------------ */

static void db_hold(wb_endpoint_t *ep, wb_event_t *ev)
{
    atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    if (ep->db_tail != NULL)
        atomic_store_explicit(&ep->db_tail->next, ev, memory_order_relaxed);
    else
        ep->db_head = ev;
    ep->db_tail = ev;
}

static void db_flush(wb_endpoint_t *ep)
{
    while (ep->db_head != NULL) {
        wb_event_t *ev = ep->db_head;
        wb_event_t *next = atomic_load_explicit(&ev->next, memory_order_relaxed);
        atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
        int rc = wb_rt_send(ep->rt, ev);
        if (rc == WB_EAGAIN) {
            atomic_store_explicit(&ev->next, next, memory_order_relaxed);
            return;
        }
        ep->db_head = next;
        if (next == NULL)
            ep->db_tail = NULL;
        if (rc != 0)
            wb_event_free(ev); /* the lane has stopped: shutting down */
    }
}

int wb_endpoint_db_send(wb_endpoint_t *ep, wb_event_t *req)
{
    wb_event_route(req, WB_LANE_ACTOR, wb_actor_id(ep->owner), WB_LANE_DB, 0);
    if (ep->db_head == NULL) {
        int rc = wb_rt_send(ep->rt, req);
        if (rc == 0)
            return 0;
        if (rc != WB_EAGAIN) {
            wb_event_free(req);
            return rc;
        }
    }
    db_hold(ep, req);
    return 0;
}

static void on_row(wb_dispatch_t *d, const wb_msg_t *m, int64_t rowid, void *arg)
{
    wb_endpoint_t *ep = arg;
    row_type_t *rt = wb_idmap_get(&ep->row_types, (uint64_t)m->env.type + 1);
    row_req_t *r = calloc(1, sizeof(*r));
    wb_event_t *req = NULL;
    uint64_t cookie = WB_ENDPOINT_COOKIE_BASE | ++ep->next_cookie;
    (void)d;
    if (rt == NULL || r == NULL ||
        (req = wb_db_request_call(rt->handler, rowid, m->env.body, m->env.body_len, rt->flags)) ==
            NULL ||
        wb_idmap_put(&ep->row_reqs, cookie, r) != 0) {
        free(r);
        wb_event_free(req);
        if (ep->cfg.on_row_error != NULL)
            ep->cfg.on_row_error(ep, m, WB_ENOMEM, "out of memory", ep->cfg.user);
        return;
    }
    r->peer = m->peer;
    r->msg_id = m->env.id;
    r->regards = m->env.regards;
    r->type = m->env.type;
    r->reply_type = rt->reply_type;
    req->cookie = cookie;
    if (wb_endpoint_db_send(ep, req) != 0)
        free(wb_idmap_del(&ep->row_reqs, cookie));
}

int wb_endpoint_on_row(wb_endpoint_t *ep, uint32_t type, uint32_t handler, uint32_t reply_type,
                       unsigned flags)
{
    row_type_t *rt = wb_idmap_get(&ep->row_types, (uint64_t)type + 1);
    if (rt == NULL) {
        rt = calloc(1, sizeof(*rt));
        if (rt == NULL || wb_idmap_put(&ep->row_types, (uint64_t)type + 1, rt) != 0) {
            free(rt);
            return WB_ENOMEM;
        }
    }
    rt->handler = handler;
    rt->reply_type = reply_type;
    rt->flags = flags;
    return wb_dispatch_on_row(ep->d, type, on_row, ep);
}

/* A row request's answer: back to the peer that asked. */
static void row_result(wb_endpoint_t *ep, row_req_t *r, const wb_event_t *res)
{
    wb_value_t v = {0};
    if (res->status == 0) {
        const void *body = NULL;
        size_t len = 0;
        if (wb_db_result_nrows(res) > 0 && wb_db_result_value(res, 0, 0, &v) == 0 &&
            v.type == WB_VAL_BLOB) {
            body = v.u.s.p;
            len = v.u.s.n;
        }
        /* The peer may be gone; then there is nobody to tell. */
        wb_dispatch_send(ep->d, r->peer, r->reply_type, r->msg_id, r->regards, body, len, NULL);
        return;
    }
    wb_msg_t m = {.peer = r->peer,
                  .env = {.type = r->type, .id = r->msg_id, .regards = r->regards}};
    if (ep->cfg.on_row_error != NULL)
        ep->cfg.on_row_error(ep, &m, res->status, wb_db_result_errmsg(res), ep->cfg.user);
    else
        wb_warn("endpoint", "row request %llu of connection %llu: %s",
                (unsigned long long)r->msg_id, (unsigned long long)r->peer,
                wb_db_result_errmsg(res));
}

/* ---- sending ------------------------------------------------------------------ */

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
    wb_idmap_init(&ep->row_types);
    wb_idmap_init(&ep->row_reqs);
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

static void free_plain(uint64_t key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    free(val);
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
    wb_idmap_each(&ep->row_types, free_plain, NULL);
    wb_idmap_fini(&ep->row_types);
    wb_idmap_each(&ep->row_reqs, free_plain, NULL);
    wb_idmap_fini(&ep->row_reqs);
    while (ep->db_head != NULL) {
        wb_event_t *ev = ep->db_head;
        ep->db_head = atomic_load_explicit(&ev->next, memory_order_relaxed);
        wb_event_free(ev);
    }
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
    /* A timer set for no later than the next deadline may stay: if it fires
     * early, tick finds nothing due and this re-arms. Replies that arrive in
     * order so cost no timer restart each. */
    if (ep->timer != 0 && ep->timer_at <= next)
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
        wb_dispatch_input(ep->d, ev->src, ev, ep->cfg.trace ? wb_tcp_blob_queued_ns(ev) : 0);
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
        if (ev->src_lane == WB_LANE_NET)
            wb_idmap_each(&ep->conns, flush_all, ep);
        else if (ev->src_lane == WB_LANE_DB)
            db_flush(ep);
        else
            return 0;
        break;
    case WB_EV_DB_RESULT: {
        if (ev->cookie < WB_ENDPOINT_COOKIE_BASE)
            return 0;
        row_req_t *r = wb_idmap_del(&ep->row_reqs, ev->cookie);
        if (r != NULL) {
            row_result(ep, r, ev);
            free(r);
        }
        break;
    }
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
