/*
 * transit.c - the transit actor (see transit.h): the connection race over
 * sockets/tcp.h raw streams, then records sealed and opened on the actor
 * lane, so that a transfer's work spreads over three threads: the network
 * lane (reads and writes), the actor lane (crypto) and the application's
 * own thread (disk and hashing).
 *
 * Everything sent to the network lane is a control event: the memory in
 * flight is bounded by the application's window (WB_TRANSIT_EV_SENT) and
 * the connection's write_high (while the connection is under
 * BACKPRESSURE, chunks wait here unsealed and no SENT goes up, so the
 * application stops reading its file).
 */
#include "apps/wormhole/transit.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/wormhole/post.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "sockets/tcp.h"

#define MOD       "transit"
#define MAX_CONNS 64
#define MAX_WAYS  (2 * WB_TRANSIT_MAX_HINTS)

enum {
    EV_START = WB_EV_USER + 0x5780,
    EV_CONNECT,
    EV_SEND,
    EV_CONSUMED,
    EV_CLOSE,
};

typedef struct {
    uint64_t id;
    int relay, accepted;
    wb_transit_hs_t hs;
    char desc[WB_TRANSIT_HOST_MAX + 16];
} tconn_t;

typedef struct {
    char host[WB_TRANSIT_HOST_MAX + 1];
    uint16_t port;
    double priority; /* of the relay it reaches; gives delay_ms */
    uint64_t delay_ms;
} way_t;

typedef struct {
    wb_rt_t *rt;
    uint64_t self;
    wb_transit_config_t cfg;
    wb_transit_relay_t *relays; /* ours, copied */
    char **advertise;
    char listen_host[64];
    wb_transit_keys_t keys;
    char side[WB_TRANSIT_SIDE_LEN + 1];
    wb_tcp_opts_t to;
    uint64_t listener;
    uint16_t port;
    tconn_t conns[MAX_CONNS];
    size_t nconns;
    int connecting, hints_sent;
    way_t ways[MAX_WAYS]; /* relays to dial, by delay */
    size_t nways, next_way;
    uint64_t relay_timer, connect_timer;
    int relay_timer_on, connect_timer_on;
    char tried[1024]; /* what failed, for the final reason */
    /* after the race */
    uint64_t conn;
    int won;
    char via[8], peer[WB_TRANSIT_HOST_MAX + 16];
    wb_transit_sealer_t sealer;
    wb_transit_opener_t opener;
    wb_event_t *pend_head, *pend_tail; /* chunks waiting (unsealed) */
    int backpressured, paused, closing, ended;
    uint64_t undelivered, received;
} tr_t;

static void tr_emit(tr_t *t, wb_transit_event_t *ev)
{
    if (t->cfg.on_event != NULL)
        t->cfg.on_event(t->self, ev, t->cfg.user);
}

static void add_tried(tr_t *t, const char *what, const char *why)
{
    size_t l = strlen(t->tried);
    if (l + 8 < sizeof(t->tried))
        snprintf(t->tried + l, sizeof(t->tried) - l, "%s%s: %s", l ? "; " : "", what, why);
}

static void send_text(tr_t *t, uint64_t conn, const char *s, size_t len)
{
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, s, len);
    if (ev == NULL)
        return;
    ev->flags |= WB_EVF_CONTROL;
    wb_event_route(ev, WB_LANE_ACTOR, t->self, WB_LANE_NET, conn);
    if (wb_tcp_send(t->rt, conn, ev) != 0)
        wb_event_free(ev);
}

static tconn_t *find_conn(tr_t *t, uint64_t id)
{
    for (size_t i = 0; i < t->nconns; i++)
        if (t->conns[i].id == id)
            return &t->conns[i];
    return NULL;
}

static void drop_conn(tr_t *t, tconn_t *c, int close)
{
    if (close)
        wb_tcp_close(t->rt, c->id);
    *c = t->conns[--t->nconns];
}

static void cancel_timers(tr_t *t)
{
    wb_actor_t *a = wb_actor_lookup(t->rt, t->self);
    if (a == NULL)
        return;
    if (t->relay_timer_on)
        wb_timer_cancel(a, t->relay_timer);
    if (t->connect_timer_on)
        wb_timer_cancel(a, t->connect_timer);
    t->relay_timer_on = t->connect_timer_on = 0;
}

/* Close every candidate connection and the listener; no more dials. */
static void end_race(tr_t *t)
{
    cancel_timers(t);
    for (size_t i = 0; i < t->nconns; i++)
        wb_tcp_close(t->rt, t->conns[i].id);
    t->nconns = 0;
    if (t->listener != 0)
        wb_tcp_close(t->rt, t->listener);
    t->listener = 0;
    t->next_way = t->nways;
}

/* The end: one CLOSED event, then the actor exits. */
static void finish(tr_t *t, int status, const char *why)
{
    if (t->ended)
        return;
    t->ended = 1;
    end_race(t);
    if (t->won && t->conn != 0)
        wb_tcp_close(t->rt, t->conn); /* flushes what is queued, then FIN */
    t->conn = 0;
    wb_transit_event_t ev = {.type = WB_TRANSIT_EV_CLOSED, .status = status, .text = why};
    tr_emit(t, &ev);
    wb_actor_t *a = wb_actor_lookup(t->rt, t->self);
    if (a != NULL)
        wb_actor_exit(a, status);
}

/* ---- hints ----------------------------------------------------------------------------- */

static void send_hints(tr_t *t)
{
    if (t->hints_sent)
        return;
    t->hints_sent = 1;
    wb_transit_hints_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        finish(t, WB_ENOMEM, "out of memory");
        return;
    }
    if (t->port != 0) {
        if (t->advertise != NULL) {
            for (size_t i = 0; i < t->cfg.nadvertise && h->ndirect < WB_TRANSIT_MAX_HINTS; i++) {
                snprintf(h->direct[h->ndirect].host, sizeof(h->direct[0].host), "%s",
                         t->advertise[i]);
                h->direct[h->ndirect++].port = t->port;
            }
        } else {
            struct ifaddrs *ifa = NULL;
            int have_lo = 0;
            if (getifaddrs(&ifa) == 0) {
                for (struct ifaddrs *p = ifa; p != NULL; p = p->ifa_next) {
                    if (p->ifa_addr == NULL || p->ifa_addr->sa_family != AF_INET)
                        continue;
                    char ip[INET_ADDRSTRLEN];
                    const struct sockaddr_in *sin = (const struct sockaddr_in *)p->ifa_addr;
                    if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)) == NULL)
                        continue;
                    if (strcmp(ip, "127.0.0.1") == 0) {
                        have_lo = 1;
                        continue;
                    }
                    if (h->ndirect < WB_TRANSIT_MAX_HINTS) {
                        snprintf(h->direct[h->ndirect].host, sizeof(h->direct[0].host), "%s", ip);
                        h->direct[h->ndirect++].port = t->port;
                    }
                }
                freeifaddrs(ifa);
            }
            if (h->ndirect == 0 && have_lo) {
                strcpy(h->direct[0].host, "127.0.0.1");
                h->direct[h->ndirect++].port = t->port;
            }
        }
    }
    for (size_t i = 0; i < t->cfg.nrelays && h->nrelays < WB_TRANSIT_MAX_HINTS; i++)
        h->relays[h->nrelays++] = t->relays[i];
    json_t *o = wb_transit_hints_json(h);
    free(h);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL) {
        finish(t, WB_ENOMEM, "out of memory");
        return;
    }
    wb_transit_event_t ev = {.type = WB_TRANSIT_EV_HINTS, .text = s};
    tr_emit(t, &ev);
    free(s);
}

/* ---- the race -------------------------------------------------------------------------- */

static void dial(tr_t *t, const char *host, uint16_t port, int relay)
{
    if (t->nconns == MAX_CONNS)
        return;
    tconn_t *c = &t->conns[t->nconns];
    memset(c, 0, sizeof(*c));
    snprintf(c->desc, sizeof(c->desc), "%s%s:%u", relay ? "relay " : "", host, port);
    if (wb_tcp_dial(t->rt, WB_LANE_ACTOR, t->self, host, port, &t->to, &c->id) != 0) {
        add_tried(t, c->desc, "cannot dial");
        return;
    }
    c->relay = relay;
    wb_transit_hs_init(&c->hs, &t->keys, relay);
    t->nconns++;
    wb_debug(MOD, "dialing %s", c->desc);
}

static void arm_relay_timer(tr_t *t, uint64_t elapsed_ms)
{
    wb_actor_t *a = wb_actor_lookup(t->rt, t->self);
    if (a == NULL || t->next_way >= t->nways)
        return;
    uint64_t d = t->ways[t->next_way].delay_ms;
    t->relay_timer_on =
        wb_timer_start(a, d > elapsed_ms ? d - elapsed_ms : 0, &t->relay_timer) == 0;
}

static void dial_due_relays(tr_t *t)
{
    if (t->next_way >= t->nways)
        return;
    uint64_t due = t->ways[t->next_way].delay_ms;
    while (t->next_way < t->nways && t->ways[t->next_way].delay_ms <= due) {
        way_t *w = &t->ways[t->next_way++];
        dial(t, w->host, w->port, 1);
    }
    arm_relay_timer(t, due);
}

static int cmp_way(const void *a, const void *b)
{
    const way_t *x = a, *y = b;
    return x->delay_ms < y->delay_ms ? -1 : x->delay_ms > y->delay_ms;
}

static void add_relay(tr_t *t, const wb_transit_relay_t *r, double *tiers, size_t *ntiers)
{
    for (size_t j = 0; j < r->nways && t->nways < MAX_WAYS; j++) {
        const wb_transit_hint_t *h = &r->ways[j];
        int dup = 0;
        for (size_t k = 0; k < t->nways; k++)
            dup |= t->ways[k].port == h->port && strcmp(t->ways[k].host, h->host) == 0;
        if (dup)
            continue;
        way_t *w = &t->ways[t->nways++];
        snprintf(w->host, sizeof(w->host), "%s", h->host);
        w->port = h->port;
        w->priority = r->priority;
        int seen = 0;
        for (size_t k = 0; k < *ntiers; k++)
            seen |= tiers[k] == r->priority;
        if (!seen && *ntiers < MAX_WAYS)
            tiers[(*ntiers)++] = r->priority;
    }
}

static void on_connect(tr_t *t, const char *json)
{
    if (t->connecting || t->ended)
        return;
    t->connecting = 1;
    json_t *o = json_loads(json, 0, NULL);
    wb_transit_hints_t *peer = calloc(1, sizeof(*peer));
    char err[200];
    if (peer == NULL || wb_transit_hints_parse(o, peer, err, sizeof(err)) != 0) {
        json_decref(o);
        free(peer);
        finish(t, WB_EPROTO, peer == NULL ? "out of memory" : err);
        return;
    }
    json_decref(o);
    for (size_t i = 0; i < peer->ndirect; i++)
        dial(t, peer->direct[i].host, peer->direct[i].port, 0);
    /* relays: ours first, then the peer's; tiers by priority, highest first */
    double tiers[MAX_WAYS];
    size_t ntiers = 0;
    wb_transit_relay_t *rel = t->relays;
    for (size_t i = 0; i < t->cfg.nrelays; i++)
        add_relay(t, &rel[i], tiers, &ntiers);
    for (size_t i = 0; i < peer->nrelays; i++)
        add_relay(t, &peer->relays[i], tiers, &ntiers);
    uint64_t base = peer->ndirect > 0 ? t->cfg.relay_delay_ms : 0;
    for (size_t i = 0; i < t->nways; i++) {
        double p = t->ways[i].priority;
        size_t higher = 0;
        for (size_t k = 0; k < ntiers; k++)
            higher += tiers[k] > p + 1e-9;
        t->ways[i].delay_ms = base + higher * t->cfg.relay_delay_ms;
    }
    qsort(t->ways, t->nways, sizeof(t->ways[0]), cmp_way);
    free(peer);
    arm_relay_timer(t, 0);
    wb_actor_t *a = wb_actor_lookup(t->rt, t->self);
    if (a != NULL)
        t->connect_timer_on = wb_timer_start(a, t->cfg.connect_timeout_ms, &t->connect_timer) == 0;
}

/* Nothing left that could still connect (and nobody can dial us). */
static void check_exhausted(tr_t *t)
{
    if (t->won || t->ended || !t->connecting || t->nconns > 0 || t->next_way < t->nways ||
        t->listener != 0)
        return;
    char why[1200];
    snprintf(why, sizeof(why), "no transit connection could be made (%s)",
             t->tried[0] ? t->tried : "no hints to try");
    finish(t, WB_EIO, why);
}

static void send_sealed(tr_t *t, wb_event_t *chunk);

static void win(tr_t *t, tconn_t *c)
{
    t->won = 1;
    t->conn = c->id;
    snprintf(t->via, sizeof(t->via), "%s", c->relay ? "relay" : "direct");
    snprintf(t->peer, sizeof(t->peer), "%s", c->relay ? c->desc + 6 : c->desc);
    drop_conn(t, c, 0);
    end_race(t);
    wb_debug(MOD, "connected %s to %s", t->via, t->peer);
    wb_transit_event_t ev = {.type = WB_TRANSIT_EV_CONNECTED, .text = t->via, .text2 = t->peer};
    tr_emit(t, &ev);
    while (!t->ended && t->pend_head != NULL && !t->backpressured) {
        wb_event_t *p = t->pend_head;
        t->pend_head = atomic_load_explicit(&p->next, memory_order_relaxed);
        if (t->pend_head == NULL)
            t->pend_tail = NULL;
        send_sealed(t, p);
    }
}

/* ---- records --------------------------------------------------------------------------- */

static void send_sealed(tr_t *t, wb_event_t *chunk)
{
    size_t len = chunk->len, rs = t->cfg.record_size;
    size_t nrec = len == 0 ? 0 : (len + rs - 1) / rs;
    if (nrec == 0) {
        wb_event_free(chunk);
        return;
    }
    wb_event_t *out = wb_event_new(WB_EV_USER, len + nrec * WB_TRANSIT_RECORD_OVERHEAD);
    if (out == NULL) {
        wb_event_free(chunk);
        finish(t, WB_ENOMEM, "out of memory");
        return;
    }
    const uint8_t *p = chunk->data;
    uint8_t *o = out->data;
    for (size_t off = 0; off < len; off += rs)
        o += wb_transit_seal(&t->sealer, p + off, len - off < rs ? len - off : rs, o);
    wb_event_free(chunk);
    out->flags |= WB_EVF_CONTROL;
    wb_event_route(out, WB_LANE_ACTOR, t->self, WB_LANE_NET, t->conn);
    if (wb_tcp_send(t->rt, t->conn, out) != 0) {
        wb_event_free(out);
        return; /* CLOSED follows */
    }
    wb_transit_event_t ev = {.type = WB_TRANSIT_EV_SENT, .n = len};
    tr_emit(t, &ev);
}

static void flush_pending(tr_t *t)
{
    while (!t->ended && t->won && !t->backpressured && t->pend_head != NULL) {
        wb_event_t *p = t->pend_head;
        t->pend_head = atomic_load_explicit(&p->next, memory_order_relaxed);
        if (t->pend_head == NULL)
            t->pend_tail = NULL;
        send_sealed(t, p);
    }
    if (!t->ended && t->closing && t->pend_head == NULL)
        finish(t, 0, NULL);
}

typedef struct {
    tr_t *t;
    size_t end; /* in-buffer plaintext [0, end) */
} feed_ctx_t;

static void free_owned(void *data, size_t len)
{
    free(data);
}

static void on_plain(void *user, uint8_t *owned, size_t off, size_t len)
{
    feed_ctx_t *f = user;
    if (owned == NULL) {
        f->end = off + len;
        return;
    }
    wb_event_t *e = wb_event_new_ext(WB_EV_USER, owned, off + len, free_owned);
    if (e == NULL) {
        free(owned);
        return; /* the count below will be short: the application sees it */
    }
    wb_transit_event_t ev = {.type = WB_TRANSIT_EV_DATA, .blob = e, .off = off, .len = len};
    f->t->undelivered += len;
    tr_emit(f->t, &ev);
    if (ev.blob != NULL)
        wb_event_free(ev.blob);
}

/* Records in blob->data[skip..len) (blob taken): opened into a fresh
 * buffer (one pass), which goes up; the blob goes back to the heap at once,
 * where the network lane's next read finds it warm. */
static void on_records(tr_t *t, wb_event_t *blob, size_t skip)
{
    char err[200];
    feed_ctx_t f = {t, 0};
    size_t len = blob->len - skip;
    wb_event_t *out = wb_event_new(WB_EV_USER, len ? len : 1);
    int rc = out == NULL ? WB_ENOMEM
                         : wb_transit_open_feed_to(&t->opener, (const uint8_t *)blob->data + skip,
                                                   len, out->data, on_plain, &f, err, sizeof(err));
    wb_event_free(blob);
    if (out == NULL)
        snprintf(err, sizeof(err), "out of memory");
    if (f.end > 0) {
        wb_transit_event_t ev = {.type = WB_TRANSIT_EV_DATA, .blob = out, .off = 0, .len = f.end};
        t->undelivered += f.end;
        tr_emit(t, &ev);
        out = ev.blob;
    }
    wb_event_free(out);
    if (rc != 0) {
        wb_warn(MOD, "%s: %s", t->peer, err);
        finish(t, rc, err);
        return;
    }
    if (!t->paused && t->undelivered > t->cfg.recv_window) {
        t->paused = 1;
        wb_tcp_pause(t->rt, t->conn);
    }
}

/* ---- events ---------------------------------------------------------------------------- */

static void on_blob(tr_t *t, wb_event_t *ev)
{
    if (t->won && ev->src == t->conn) {
        on_records(t, ev, 0);
        return;
    }
    tconn_t *c = find_conn(t, ev->src);
    if (c == NULL || t->won) {
        wb_event_free(ev);
        return;
    }
    size_t pos = 0;
    char err[200];
    for (;;) {
        size_t used;
        wb_transit_hs_result_t r = wb_transit_hs_feed(&c->hs, (const uint8_t *)ev->data + pos,
                                                      ev->len - pos, &used, err, sizeof(err));
        pos += used;
        if (r == WB_TRANSIT_HS_NEED_MORE)
            break;
        if (r == WB_TRANSIT_HS_RELAY_OK) {
            size_t l;
            const char *line = wb_transit_hs_first(&c->hs, &l);
            send_text(t, c->id, line, l);
            continue;
        }
        if (r == WB_TRANSIT_HS_BAD) {
            wb_debug(MOD, "%s: %s", c->desc, err);
            add_tried(t, c->desc, err);
            drop_conn(t, c, 1);
            check_exhausted(t);
            break;
        }
        if (r == WB_TRANSIT_HS_PEER_OK) { /* sender */
            if (t->won) {
                send_text(t, c->id, "nevermind\n", 10);
                drop_conn(t, c, 1);
                break;
            }
            send_text(t, c->id, "go\n", 3);
            win(t, c);
            break; /* the receiver sends nothing before go: anything here was BAD */
        }
        /* WB_TRANSIT_HS_GO (receiver): the rest are records */
        win(t, c);
        if (pos < ev->len && !t->ended) {
            on_records(t, ev, pos);
            return;
        }
        break;
    }
    wb_event_free(ev);
}

static void on_opened(tr_t *t, wb_event_t *ev)
{
    if (ev->cookie != 0 && ev->cookie == t->listener) { /* accepted */
        if (t->won || t->ended || t->nconns == MAX_CONNS) {
            wb_tcp_close(t->rt, ev->src);
            return;
        }
        tconn_t *c = &t->conns[t->nconns++];
        memset(c, 0, sizeof(*c));
        c->id = ev->src;
        c->accepted = 1;
        snprintf(c->desc, sizeof(c->desc), "%.*s", (int)ev->len, (const char *)ev->data);
        wb_transit_hs_init(&c->hs, &t->keys, 0);
    }
    tconn_t *c = find_conn(t, ev->src);
    if (c == NULL)
        return;
    size_t l;
    const char *line = wb_transit_hs_first(&c->hs, &l);
    send_text(t, c->id, line, l);
}

static void on_closed(tr_t *t, wb_event_t *ev)
{
    if (ev->src == t->listener && t->listener != 0) {
        t->listener = 0;
        if (!t->hints_sent) /* listening failed: relays only */
            send_hints(t);
        check_exhausted(t);
        return;
    }
    if (t->won && ev->src == t->conn) {
        char why[300];
        if (ev->status == WB_ECLOSED && wb_transit_opener_partial(&t->opener))
            snprintf(why, sizeof(why), "connection lost in the middle of a record (%.*s)",
                     (int)ev->len, (const char *)ev->data);
        else
            snprintf(why, sizeof(why), "%.*s", (int)ev->len, (const char *)ev->data);
        t->conn = 0;
        finish(t, ev->status != 0 ? ev->status : WB_ECLOSED, why);
        return;
    }
    tconn_t *c = find_conn(t, ev->src);
    if (c == NULL)
        return;
    char why[300];
    snprintf(why, sizeof(why), "%.*s", (int)ev->len, (const char *)ev->data);
    add_tried(t, c->desc, why);
    drop_conn(t, c, 0);
    check_exhausted(t);
}

static void handle(wb_actor_t *self, wb_event_t *ev)
{
    tr_t *t = wb_actor_state(self);
    if (t->ended) {
        wb_event_free(ev);
        return;
    }
    switch (ev->type) {
    case EV_START:
        if (t->cfg.no_listen || wb_tcp_listen(t->rt, WB_LANE_ACTOR, t->self, t->listen_host, 0,
                                              &t->to, &t->listener) != 0)
            send_hints(t);
        break;
    case EV_CONNECT:
        on_connect(t, ev->data);
        break;
    case EV_SEND: /* the chunk itself */
        atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
        if (t->won && !t->backpressured && t->pend_head == NULL) {
            send_sealed(t, ev);
        } else {
            if (t->pend_tail != NULL)
                atomic_store_explicit(&t->pend_tail->next, ev, memory_order_relaxed);
            else
                t->pend_head = ev;
            t->pend_tail = ev;
        }
        return; /* taken */
    case EV_CONSUMED:
        t->undelivered = ev->cookie > t->undelivered ? 0 : t->undelivered - ev->cookie;
        if (t->paused && t->undelivered <= t->cfg.recv_window / 4) {
            t->paused = 0;
            wb_tcp_resume(t->rt, t->conn);
        }
        break;
    case EV_CLOSE:
        t->closing = 1;
        if (!t->won)
            finish(t, WB_ECANCELED, "closed before a transit connection was made");
        else
            flush_pending(t);
        break;
    case WB_EV_TCP_LISTENING:
        if (ev->src == t->listener) {
            if (ev->status == 0) {
                t->port = (uint16_t)ev->cookie;
            } else {
                wb_warn(MOD, "cannot listen: %.*s", (int)ev->len, (const char *)ev->data);
                t->listener = 0;
            }
            send_hints(t);
        }
        break;
    case WB_EV_TCP_OPENED:
        on_opened(t, ev);
        break;
    case WB_EV_TCP_BLOB:
        on_blob(t, ev);
        return; /* taken */
    case WB_EV_TCP_CLOSED:
        on_closed(t, ev);
        break;
    case WB_EV_TCP_BACKPRESSURE:
        if (ev->src == t->conn)
            t->backpressured = 1;
        break;
    case WB_EV_TCP_WRITABLE:
        if (ev->src == t->conn) {
            t->backpressured = 0;
            flush_pending(t);
        }
        break;
    case WB_EV_TIMER:
        if (t->relay_timer_on && ev->cookie == t->relay_timer) {
            t->relay_timer_on = 0;
            dial_due_relays(t);
        } else if (t->connect_timer_on && ev->cookie == t->connect_timer) {
            t->connect_timer_on = 0;
            if (!t->won) {
                char why[1200];
                snprintf(why, sizeof(why), "no transit connection within %u s (%s)",
                         t->cfg.connect_timeout_ms / 1000,
                         t->tried[0] ? t->tried : "nothing answered");
                finish(t, WB_ETIMEDOUT, why);
            }
        }
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static void fini(wb_actor_t *self)
{
    tr_t *t = wb_actor_state(self);
    for (size_t i = 0; i < t->nconns; i++)
        wb_tcp_close(t->rt, t->conns[i].id);
    if (t->listener != 0)
        wb_tcp_close(t->rt, t->listener);
    if (t->conn != 0)
        wb_tcp_close(t->rt, t->conn);
    while (t->pend_head != NULL) {
        wb_event_t *p = t->pend_head;
        t->pend_head = atomic_load_explicit(&p->next, memory_order_relaxed);
        wb_event_free(p);
    }
    wb_transit_opener_fini(&t->opener);
    sodium_memzero(&t->sealer, sizeof(t->sealer));
    wb_transit_keys_wipe(&t->keys);
    sodium_memzero(t->cfg.key, sizeof(t->cfg.key));
    free(t->relays);
    for (size_t i = 0; t->advertise != NULL && i < t->cfg.nadvertise; i++)
        free(t->advertise[i]);
    free(t->advertise);
    free(t);
}

static const wb_actor_def_t transit_def = {"transit", handle, fini};

/* ---- the API --------------------------------------------------------------------------- */

void wb_transit_config_init(wb_transit_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->relay_delay_ms = 2000;
    cfg->connect_timeout_ms = 120000;
    cfg->record_size = 65536;
    cfg->recv_window = 16u << 20;
    cfg->max_record = WB_TRANSIT_MAX_RECORD;
}

static void tr_free(tr_t *t)
{
    free(t->relays);
    for (size_t i = 0; t->advertise != NULL && i < t->cfg.nadvertise; i++)
        free(t->advertise[i]);
    free(t->advertise);
    sodium_memzero(t, sizeof(*t));
    free(t);
}

int wb_transit_open(wb_rt_t *rt, const wb_transit_config_t *cfg, uint64_t *id)
{
    if (cfg == NULL || cfg->record_size == 0 || cfg->record_size > WB_TRANSIT_MAX_RECORD ||
        (cfg->nrelays > 0 && cfg->relays == NULL) || cfg->nrelays > WB_TRANSIT_MAX_HINTS)
        return WB_EINVAL;
    if (sodium_init() < 0)
        return WB_ESYS;
    tr_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return WB_ENOMEM;
    t->rt = rt;
    t->cfg = *cfg;
    if (t->cfg.relay_delay_ms == 0)
        t->cfg.relay_delay_ms = 2000;
    if (t->cfg.connect_timeout_ms == 0)
        t->cfg.connect_timeout_ms = 120000;
    if (t->cfg.recv_window == 0)
        t->cfg.recv_window = 16u << 20;
    snprintf(t->listen_host, sizeof(t->listen_host), "%s",
             cfg->listen_host ? cfg->listen_host : "0.0.0.0");
    t->cfg.listen_host = NULL;
    if (cfg->nrelays > 0) {
        t->relays = malloc(cfg->nrelays * sizeof(*t->relays));
        if (t->relays == NULL)
            goto oom;
        memcpy(t->relays, cfg->relays, cfg->nrelays * sizeof(*t->relays));
    }
    t->cfg.relays = t->relays;
    if (cfg->advertise != NULL) {
        t->advertise = calloc(cfg->nadvertise + 1, sizeof(char *));
        if (t->advertise == NULL)
            goto oom;
        for (size_t i = 0; i < cfg->nadvertise; i++)
            if ((t->advertise[i] = strdup(cfg->advertise[i])) == NULL)
                goto oom;
    }
    t->cfg.advertise = NULL;
    uint8_t rnd[WB_TRANSIT_SIDE_LEN / 2];
    randombytes_buf(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(t->side + 2 * i, 3, "%02x", rnd[i]);
    wb_transit_keys_init(&t->keys, cfg->key, cfg->sender, t->side);
    wb_transit_sealer_init(&t->sealer, t->keys.send_key);
    wb_transit_opener_init(&t->opener, t->keys.recv_key, cfg->max_record);
    wb_tcp_opts_init(&t->to);
    t->to.raw = 1;
    t->to.max_message = (uint32_t)(4u << 20) + 4096;
    t->to.write_high = 4u << 20;
    t->to.write_low = 1u << 20;
    /* BACKPRESSURE reaches the actor a little late: what it may send
     * meanwhile is the application's window (transit.h) plus one chunk */
    t->to.write_hard_cap = 64u << 20;
    t->to.max_connections = MAX_CONNS;
    t->to.keepalive_s = 60;
    int rc = wb_actor_spawn(rt, NULL, &transit_def, t, &t->self);
    if (rc != 0) {
        tr_free(t);
        return rc;
    }
    *id = t->self;
    return wb_wh_post(rt, t->self, EV_START, NULL, 0, 0);
oom:
    tr_free(t);
    return WB_ENOMEM;
}

int wb_transit_connect(wb_rt_t *rt, uint64_t id, const char *peer_transit_json)
{
    return wb_wh_post(rt, id, EV_CONNECT, peer_transit_json, strlen(peer_transit_json) + 1, 0);
}

int wb_transit_send(wb_rt_t *rt, uint64_t id, wb_event_t *chunk)
{
    chunk->type = EV_SEND;
    chunk->flags |= WB_EVF_CONTROL; /* bounded by the application's window */
    wb_event_route(chunk, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, id);
    int rc = wb_rt_send(rt, chunk);
    if (rc != 0)
        wb_event_free(chunk);
    return rc;
}

int wb_transit_consumed(wb_rt_t *rt, uint64_t id, uint64_t n)
{
    return wb_wh_post(rt, id, EV_CONSUMED, NULL, 0, n);
}

int wb_transit_close(wb_rt_t *rt, uint64_t id)
{
    return wb_wh_post(rt, id, EV_CLOSE, NULL, 0, 0);
}
