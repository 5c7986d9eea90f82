/*
 * server.c - the transit relay actor (see server.h).
 *
 * Connections live in one id map. A connection that has sent its handshake
 * and waits for a partner sits in the waiting list of its token (a map from
 * token to a FIFO of connections). Paired connections point at each other.
 *
 * Pairing hands the two connections to the network lane (wb_tcp_splice):
 * both are paused first, then get "ok\n", then the splice request follows in
 * the same order. Reading is paused before either peer can have seen its
 * "ok", so no byte sent after it can reach the actor: a BLOB that still
 * arrives for a paired connection was sent before "ok" (impatient), and the
 * pair is closed. The actor then waits for WB_EV_TCP_SPLICED: bytes each
 * way, who ended it and why, for the log line and the usage row. When the
 * lane refuses the splice (a connection closed meanwhile) the pair ends as
 * if closed; when both ended before the request was taken no SPLICED comes,
 * and the second CLOSED ends the pair.
 *
 * Sends the network or database lane refuses (WB_EAGAIN: its inbox is full)
 * wait in one FIFO, the outbox, in the order they were made; while it is not
 * empty every new send joins it, so nothing overtakes anything (a reply
 * before the close, the "ok" before the splice).
 */
#include "apps/relay/server.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apps/relay/handshake.h"
#include "apps/relay/store.h"
#include "db/db.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/idmap.h"
#include "runtime/log.h"
#include "runtime/outbox.h"
#include "runtime/strmap.h"
#include "sockets/tcp.h"

#define MOD "relay"
/* In the outbox, not sent: "close connection dst" in its place. */
#define EV_CLOSE_MARK (WB_EV_USER + 1)
/* In the outbox, not sent: "splice dst with cookie" in its place. */
#define EV_SPLICE_MARK (WB_EV_USER + 2)

/* C_REDUNDANT: handshake done, taken off its waiting list, being closed.
 * C_PAIRED: handed to the splice, waiting for its end. */
enum { C_HANDSHAKE, C_WAITING, C_PAIRED, C_REDUNDANT };

typedef struct conn_s conn_t;
struct conn_s {
    uint64_t id;
    int state;
    uint8_t got_bytes; /* sent anything at all */
    uint8_t impatient; /* paired: sent bytes before its "ok" */
    uint8_t closed;    /* paired: its CLOSED came before the splice's end */
    conn_t *buddy;
    conn_t *wnext;  /* next in its token's waiting list */
    uint64_t timer; /* wait timer */
    uint64_t opened_ms;
    double started;    /* wall clock at accept */
    uint64_t bytes_in; /* received from this connection and relayed (at the pair's end) */
    tr_hs_t hs;
    char peer[64];
};

typedef struct {
    conn_t *head, *tail;
} wlist_t;

typedef struct {
    wb_rt_t *rt;
    wb_actor_t *actor;
    uint64_t self;
    const tr_server_config_t *cfg;
    wb_idmap_t conns;    /* tcp connection id -> conn_t */
    wb_idmap_t timers;   /* timer id -> conn_t */
    wb_strmap_t waiting; /* token -> wlist_t */
    wb_outbox_t out;
    wb_tcp_splice_opts_t splice;
    uint64_t listener, stats_timer;
    uint64_t pairs; /* live pairs */
    uint64_t db_errors;
    double rebooted;
} srv_t;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- sending ----------------------------------------------------------------- */

/* One send; WB_EAGAIN leaves ev with the caller. */
static int try_send(void *ctx, wb_event_t *ev)
{
    srv_t *s = ctx;
    if (ev->type == EV_CLOSE_MARK) {
        wb_tcp_close(s->rt, ev->dst);
        wb_event_free(ev);
        return 0;
    }
    if (ev->type == EV_SPLICE_MARK) {
        int rc = wb_tcp_splice(s->rt, ev->dst, ev->cookie, &s->splice);
        if (rc != 0) {
            /* No SPLICED will come: the two CLOSED end the pair. */
            wb_warn(MOD, "cannot splice connections %" PRIu64 " and %" PRIu64 ": %s", ev->dst,
                    ev->cookie, wb_strerror(rc));
            wb_tcp_close(s->rt, ev->dst);
            wb_tcp_close(s->rt, ev->cookie);
        }
        wb_event_free(ev);
        return 0;
    }
    int rc = ev->dst_lane == WB_LANE_NET ? wb_tcp_send(s->rt, ev->dst, ev) : wb_rt_send(s->rt, ev);
    if (rc == WB_EAGAIN)
        return rc;
    if (rc != 0) {
        if (ev->dst_lane == WB_LANE_DB && s->db_errors++ < 10)
            wb_error(MOD, "database lane refused a request: %s", wb_strerror(rc));
        wb_event_free(ev);
    }
    return 0;
}

/* Send ev now, or after what waits; returns 1 when it had to wait. */
static int out(srv_t *s, wb_event_t *ev)
{
    return wb_outbox_send(&s->out, ev);
}

static void out_resume(srv_t *s)
{
    wb_outbox_resume(&s->out); /* when not all went, the lane's resume will come */
}

static void send_text(srv_t *s, uint64_t conn, const char *text)
{
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, text, strlen(text));
    if (ev == NULL)
        return; /* the close that follows still goes */
    wb_event_route(ev, WB_LANE_ACTOR, s->self, WB_LANE_NET, conn);
    out(s, ev);
}

/* Close conn after everything sent to it so far. */
static void close_after(srv_t *s, uint64_t conn)
{
    if (wb_outbox_idle(&s->out)) {
        wb_tcp_close(s->rt, conn);
        return;
    }
    wb_event_t *ev = wb_event_new(EV_CLOSE_MARK, 0);
    if (ev == NULL) {
        wb_tcp_close(s->rt, conn); /* early, but closed */
        return;
    }
    wb_event_route(ev, WB_LANE_ACTOR, s->self, WB_LANE_NET, conn);
    wb_outbox_queue(&s->out, ev);
}

/* ---- usage ------------------------------------------------------------------- */

static void db_op(srv_t *s, uint32_t op, const wb_value_t *v, size_t n)
{
    wb_event_t *req = wb_db_request_op(op, v, n, WB_DB_QUIET);
    if (req == NULL) {
        if (s->db_errors++ < 10)
            wb_error(MOD, "out of memory: a usage row is lost");
        return;
    }
    wb_event_route(req, WB_LANE_ACTOR, s->self, WB_LANE_DB, 0);
    out(s, req);
}

static void write_current(srv_t *s)
{
    if (s->cfg->usage_db == NULL)
        return;
    db_op(s, TR_OP_CURRENT_DEL, NULL, 0);
    /* incomplete_bytes: the lane moves a pair's bytes and counts them for
     * the actor only when the pair ends, so live pairs count 0. */
    wb_value_t v[] = {wb_val_real(s->rebooted), wb_val_real(wall_now()),
                      wb_val_int((int64_t)s->pairs),
                      wb_val_int((int64_t)wb_strmap_count(&s->waiting)), wb_val_int(0)};
    db_op(s, TR_OP_CURRENT, v, 5);
}

/* waiting < 0: NULL (never paired). */
static void usage(srv_t *s, double started, double total, double waiting, uint64_t bytes,
                  const char *result)
{
    if (s->cfg->usage_db == NULL)
        return;
    uint32_t blur = s->cfg->blur_usage;
    if (blur != 0) {
        started = blur * floor(started / blur);
        bytes = tr_blur_size(bytes);
    }
    wb_value_t v[] = {wb_val_real(started), wb_val_real(total),
                      waiting < 0 ? wb_val_null() : wb_val_real(waiting),
                      wb_val_int((int64_t)bytes), wb_val_text(result)};
    db_op(s, TR_OP_USAGE, v, 5);
    write_current(s);
}

/* ---- connections ------------------------------------------------------------- */

static const char *token16(const conn_t *c, char buf[17])
{
    if (c->state == C_HANDSHAKE)
        return "-";
    memcpy(buf, c->hs.token, 16);
    buf[16] = 0;
    return buf;
}

static void timer_stop(srv_t *s, conn_t *c)
{
    if (c->timer != 0) {
        wb_timer_cancel(s->actor, c->timer);
        wb_idmap_del(&s->timers, c->timer);
        c->timer = 0;
    }
}

static void timer_set(srv_t *s, conn_t *c, uint64_t ms)
{
    timer_stop(s, c);
    if (wb_timer_start(s->actor, ms, &c->timer) != 0 ||
        wb_idmap_put(&s->timers, c->timer, c) != 0) {
        if (c->timer != 0)
            wb_timer_cancel(s->actor, c->timer);
        c->timer = 0;
        wb_warn(MOD, "out of memory: connection %" PRIu64 " has no timer", c->id);
    }
}

static void waiting_remove(srv_t *s, conn_t *c)
{
    wlist_t *w = wb_strmap_get(&s->waiting, c->hs.token, TR_TOKEN_LEN);
    if (w == NULL)
        return;
    conn_t **pp = &w->head, *prev = NULL;
    while (*pp != NULL && *pp != c) {
        prev = *pp;
        pp = &(*pp)->wnext;
    }
    if (*pp == c) {
        *pp = c->wnext;
        if (w->tail == c)
            w->tail = prev;
        c->wnext = NULL;
    }
    if (w->head == NULL) {
        wb_strmap_del(&s->waiting, c->hs.token, TR_TOKEN_LEN);
        free(w);
    }
}

/* Forget c (not yet paired): its usage row, a log line, the close. reply:
 * a line to send first, or NULL. close: whether we close it (not when the
 * peer already did). */
static void conn_end(srv_t *s, conn_t *c, const char *result, const char *why, const char *reply,
                     int close)
{
    char t[17];
    double total = (double)(wb_rt_now_ms(s->rt) - c->opened_ms) / 1000.0;
    if (c->state == C_WAITING)
        waiting_remove(s, c);
    if (reply != NULL)
        send_text(s, c->id, reply);
    if (close)
        close_after(s, c->id);
    timer_stop(s, c);
    wb_idmap_del(&s->conns, c->id);
    if (result != NULL) {
        wb_info(MOD, "connection %" PRIu64 " from %s, token %s%s%s: %s after %.1f s (%s)", c->id,
                c->peer, token16(c, t), c->hs.has_side ? " side " : "",
                c->hs.has_side ? c->hs.side : "", result, total, why);
        usage(s, c->started, total, -1, 0, result);
    } else {
        wb_debug(MOD, "connection %" PRIu64 " from %s closed before a handshake (%s)", c->id,
                 c->peer, why);
    }
    free(c);
}

/* The pair of c ends: c ended for `why`. close: close both (after what is
 * queued for them); else the lane has closed them or is closing them. */
static void pair_end(srv_t *s, conn_t *c, const char *result, const char *why, int close)
{
    conn_t *b = c->buddy;
    /* a: the one that waited, b: the one that completed the pair. */
    conn_t *a = c->started <= b->started ? c : b;
    conn_t *z = a == c ? b : c;
    double first = a->started < z->started ? a->started : z->started;
    double last = a->started < z->started ? z->started : a->started;
    double total = wall_now() - first;
    char t[17];
    wb_info(MOD,
            "pair %s: %s -> %s %" PRIu64 " bytes, %s -> %s %" PRIu64 " bytes, %.3f s"
            " (waited %.3f s), %s: connection %" PRIu64 " %s",
            token16(c, t), a->peer, z->peer, a->bytes_in, z->peer, a->peer, z->bytes_in, total,
            last - first, result, c->id, why);
    usage(s, first, total, last - first, a->bytes_in + b->bytes_in, result);
    s->pairs--;
    if (close) {
        close_after(s, c->id);
        close_after(s, b->id);
    }
    timer_stop(s, c);
    timer_stop(s, b);
    wb_idmap_del(&s->conns, c->id);
    wb_idmap_del(&s->conns, b->id);
    free(c);
    free(b);
}

static void pair(srv_t *s, conn_t *a, conn_t *b)
{
    char t[17];
    timer_stop(s, a);
    timer_stop(s, b);
    a->buddy = b;
    b->buddy = a;
    a->state = b->state = C_PAIRED;
    /* Paused before the "ok"s, so nothing sent after them comes up here;
     * the splice takes over in order after them. */
    wb_tcp_pause(s->rt, a->id);
    wb_tcp_pause(s->rt, b->id);
    send_text(s, a->id, TR_REPLY_OK);
    send_text(s, b->id, TR_REPLY_OK);
    wb_event_t *mark = wb_event_new(EV_SPLICE_MARK, 0);
    if (mark != NULL) {
        wb_event_route(mark, WB_LANE_ACTOR, s->self, WB_LANE_NET, a->id);
        mark->cookie = b->id;
        out(s, mark);
    } else {
        wb_warn(MOD, "out of memory: closing the pair of %" PRIu64 " and %" PRIu64, a->id, b->id);
        close_after(s, a->id);
        close_after(s, b->id);
    }
    s->pairs++;
    wb_debug(MOD, "pair %s: connections %" PRIu64 " (%s) and %" PRIu64 " (%s)", token16(a, t),
             a->id, a->peer, b->id, b->peer);
}

static int sides_fit(const conn_t *a, const conn_t *b)
{
    return !a->hs.has_side || !b->hs.has_side || strcmp(a->hs.side, b->hs.side) != 0;
}

static void got_handshake(srv_t *s, conn_t *c)
{
    wlist_t *w = wb_strmap_get(&s->waiting, c->hs.token, TR_TOKEN_LEN);
    if (w != NULL) {
        conn_t **pp = &w->head, *prev = NULL;
        for (; *pp != NULL; prev = *pp, pp = &(*pp)->wnext)
            if (sides_fit(*pp, c))
                break;
        conn_t *o = *pp;
        if (o != NULL) {
            *pp = o->wnext;
            if (w->tail == o)
                w->tail = prev;
            o->wnext = NULL;
            /* Every other connection waiting on the token is redundant. */
            wb_strmap_del(&s->waiting, c->hs.token, TR_TOKEN_LEN);
            conn_t *r = w->head;
            free(w);
            while (r != NULL) {
                conn_t *next = r->wnext;
                r->wnext = NULL;
                r->state = C_REDUNDANT;
                conn_end(s, r, "redundant", "another connection got the pair", NULL, 1);
                r = next;
            }
            pair(s, o, c);
            return;
        }
    } else {
        w = calloc(1, sizeof(*w));
        if (w == NULL || wb_strmap_put(&s->waiting, c->hs.token, TR_TOKEN_LEN, w) != 0) {
            free(w);
            conn_end(s, c, "errory", "out of memory", NULL, 1);
            return;
        }
    }
    c->state = C_WAITING;
    if (w->tail != NULL)
        w->tail->wnext = c;
    else
        w->head = c;
    w->tail = c;
}

/* ---- events ------------------------------------------------------------------ */

static void on_listening(srv_t *s, wb_event_t *ev)
{
    const tr_server_config_t *cfg = s->cfg;
    if (ev->status != 0) {
        wb_error(MOD, "cannot listen on %s port %u: %.*s", cfg->host, cfg->port, (int)ev->len,
                 (const char *)ev->data);
        if (cfg->on_listening != NULL)
            cfg->on_listening(ev->status, 0, cfg->user);
        wb_rt_request_stop(s->rt);
        return;
    }
    wb_info(MOD, "listening on tcp:%s (wait timeout %u s, idle timeout %u s%s%s)",
            (const char *)ev->data, cfg->wait_timeout_ms / 1000, cfg->idle_timeout_ms / 1000,
            cfg->usage_db ? ", usage db " : "", cfg->usage_db ? cfg->usage_db : "");
    if (cfg->usage_db != NULL) {
        write_current(s);
        wb_timer_start(s->actor, cfg->stats_interval_ms, &s->stats_timer);
    }
    if (cfg->on_listening != NULL)
        cfg->on_listening(0, (uint16_t)ev->cookie, cfg->user);
}

static void on_opened(srv_t *s, wb_event_t *ev)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL || wb_idmap_put(&s->conns, ev->src, c) != 0) {
        free(c);
        wb_tcp_close(s->rt, ev->src);
        return;
    }
    c->id = ev->src;
    c->state = C_HANDSHAKE;
    tr_hs_init(&c->hs);
    snprintf(c->peer, sizeof(c->peer), "%.*s", (int)ev->len, (const char *)ev->data);
    c->opened_ms = wb_rt_now_ms(s->rt);
    c->started = wall_now();
    if (s->cfg->wait_timeout_ms != 0)
        timer_set(s, c, s->cfg->wait_timeout_ms);
    wb_debug(MOD, "connection %" PRIu64 " from %s", c->id, c->peer);
}

/* Takes ev. */
static void on_blob(srv_t *s, wb_event_t *ev)
{
    conn_t *c = wb_idmap_get(&s->conns, ev->src);
    if (c == NULL) {
        wb_event_free(ev);
        return;
    }
    if (c->state == C_PAIRED) {
        /* Read before the pause, so sent before "ok": the splice cannot
         * place these bytes. Closing ends the pair. */
        wb_event_free(ev);
        if (!c->impatient) {
            c->impatient = 1;
            wb_tcp_close(s->rt, c->id);
        }
        return;
    }
    c->got_bytes = 1;
    tr_hs_result_t r = tr_hs_feed(&c->hs, ev->data, ev->len, NULL);
    wb_event_free(ev);
    if (c->state == C_WAITING && r == TR_HS_IMPATIENT) {
        conn_end(s, c, "errory", "data before ok", TR_REPLY_IMPATIENT, 1);
        return;
    }
    switch (r) {
    case TR_HS_MORE:
        break;
    case TR_HS_DONE:
        got_handshake(s, c);
        break;
    case TR_HS_BAD:
        conn_end(s, c, "errory", "bad handshake", TR_REPLY_BAD, 1);
        break;
    case TR_HS_IMPATIENT:
        conn_end(s, c, "errory", "data after the handshake", TR_REPLY_IMPATIENT, 1);
        break;
    }
}

static void on_closed(srv_t *s, wb_event_t *ev)
{
    if (ev->src == s->listener)
        return;
    conn_t *c = wb_idmap_get(&s->conns, ev->src);
    if (c == NULL)
        return;
    char why[160];
    snprintf(why, sizeof(why), "%.*s", (int)ev->len, (const char *)ev->data);
    if (c->state == C_PAIRED) {
        /* Before the splice's end: it was refused or is yet to be (then its
         * SPLICED comes), unless both are gone before it was taken. */
        c->closed = 1;
        if (c->buddy->closed)
            pair_end(s, c, c->impatient || c->buddy->impatient ? "errory" : "happy", why, 0);
        return;
    }
    if (c->state == C_WAITING)
        conn_end(s, c, "lonely", why, NULL, 0);
    else
        conn_end(s, c, c->got_bytes ? "errory" : NULL, why, NULL, 0);
}

static void on_timer(srv_t *s, uint64_t id)
{
    if (id == s->stats_timer) {
        write_current(s);
        wb_timer_start(s->actor, s->cfg->stats_interval_ms, &s->stats_timer);
        return;
    }
    conn_t *c = wb_idmap_del(&s->timers, id);
    if (c == NULL)
        return;
    c->timer = 0;
    if (c->state == C_PAIRED)
        return; /* the splice keeps the idle timeout */
    char why[64];
    snprintf(why, sizeof(why), "not paired within %u s", s->cfg->wait_timeout_ms / 1000);
    conn_end(s, c, c->state == C_WAITING ? "lonely" : "errory", why, NULL, 1);
}

/* The splice of a pair ended (or was refused): the pair's usage row and log
 * line; the lane closes both (a refused pair is closed here). */
static void on_spliced(srv_t *s, wb_event_t *ev)
{
    if (ev->len != sizeof(wb_tcp_spliced_t))
        return;
    const wb_tcp_spliced_t *r = (const wb_tcp_spliced_t *)ev->data;
    conn_t *a = wb_idmap_get(&s->conns, r->a);
    if (a == NULL || a->state != C_PAIRED || a->buddy->id != r->b)
        return;
    conn_t *b = a->buddy;
    a->bytes_in = r->a_to_b;
    b->bytes_in = r->b_to_a;
    if (!r->started) {
        pair_end(s, a, a->impatient || b->impatient ? "errory" : "happy", r->reason, 1);
        return;
    }
    conn_t *c = r->ended_by == b->id ? b : a;
    char why[sizeof(r->reason)];
    const char *result = "happy";
    if (a->impatient || b->impatient) {
        result = "errory";
        snprintf(why, sizeof(why), "data before ok");
    } else if (ev->status == WB_ETIMEDOUT && r->ended_by == 0) {
        result = "pruney";
        snprintf(why, sizeof(why), "idle for %u s", s->cfg->idle_timeout_ms / 1000);
    } else {
        /* "connection 7: peer closed": the log names the connection itself. */
        const char *p = strstr(r->reason, ": ");
        snprintf(why, sizeof(why), "%s", p != NULL ? p + 2 : r->reason);
    }
    pair_end(s, c, result, why, 0);
}

static void handle(wb_actor_t *self, wb_event_t *ev)
{
    srv_t *s = wb_actor_state(self);
    s->actor = self;
    switch (ev->type) {
    case WB_EV_TCP_BLOB:
        on_blob(s, ev);
        return; /* on_blob took it */
    case WB_EV_USER:
        if (s->self == 0) { /* the go from tr_server_setup */
            s->self = wb_actor_id(self);
            const tr_server_config_t *cfg = s->cfg;
            wb_tcp_opts_t to;
            wb_tcp_opts_init(&to);
            to.raw = 1;
            to.max_message = cfg->read_buffer > 4096 ? cfg->read_buffer : 4096;
            to.max_connections = cfg->max_connections;
            to.max_per_ip = cfg->max_per_ip;
            to.backlog = 1024;
            to.keepalive_s = 60; /* as the Python relay: notice peers that vanished */
            to.write_high = cfg->write_high;
            to.write_low = cfg->write_high / 4;
            to.write_hard_cap = tr_server_hard_cap(cfg);
            wb_tcp_splice_opts_init(&s->splice);
            s->splice.idle_timeout_ms = cfg->idle_timeout_ms;
            if (cfg->splice_pipe != 0)
                s->splice.pipe_size = cfg->splice_pipe;
            s->splice.copy = cfg->splice_copy;
            int rc = wb_tcp_listen(s->rt, WB_LANE_ACTOR, s->self, cfg->host, cfg->port, &to,
                                   &s->listener);
            if (rc != 0) {
                wb_error(MOD, "cannot listen on %s port %u: %s", cfg->host, cfg->port,
                         wb_strerror(rc));
                if (cfg->on_listening != NULL)
                    cfg->on_listening(rc, 0, cfg->user);
                wb_rt_request_stop(s->rt);
            }
        }
        break;
    case WB_EV_DB_RESULT:
        if (ev->status != 0 && s->db_errors++ < 10)
            wb_error(MOD, "%s: a usage row was not saved: %s", s->cfg->usage_db,
                     wb_db_result_errmsg(ev));
        break;
    case WB_EV_RESUME:
        out_resume(s);
        break;
    case WB_EV_TCP_LISTENING:
        on_listening(s, ev);
        break;
    case WB_EV_TCP_OPENED:
        on_opened(s, ev);
        break;
    case WB_EV_TCP_CLOSED:
        on_closed(s, ev);
        break;
    case WB_EV_TCP_SPLICED:
        on_spliced(s, ev);
        break;
    case WB_EV_TIMER:
        on_timer(s, ev->cookie);
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static void free_conn(uint64_t id, void *val, void *arg)
{
    (void)id;
    (void)arg;
    free(val);
}

static int free_wlist(void *arg, const void *key, size_t len, void *val)
{
    (void)arg;
    (void)key;
    (void)len;
    free(val);
    return 0;
}

static void fini(wb_actor_t *self)
{
    srv_t *s = wb_actor_state(self);
    wb_idmap_each(&s->conns, free_conn, s);
    wb_idmap_fini(&s->conns);
    wb_idmap_fini(&s->timers);
    wb_strmap_each(&s->waiting, free_wlist, NULL);
    wb_strmap_fini(&s->waiting);
    wb_outbox_fini(&s->out);
    free(s);
}

static const wb_actor_def_t relay_def = {"transit-relay", handle, fini};

size_t tr_server_hard_cap(const tr_server_config_t *cfg)
{
    /* Before pairing only the relay's short replies are written; after it
     * the splice writes, not the queue. Kept generous so that no reply is
     * ever refused: 2 * write_high and a read buffer per inbox slot. */
    size_t rb = cfg->read_buffer > 4096 ? cfg->read_buffer : 4096;
    return 2 * (size_t)cfg->write_high + (2 * (size_t)cfg->inbox_limit + 64) * rb;
}

void tr_server_rt_config(wb_rt_config_t *rtc, const tr_server_config_t *cfg)
{
    rtc->inbox_limit = cfg->inbox_limit;
    rtc->mailbox_limit = cfg->inbox_limit;
}

void tr_server_config_init(tr_server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "::";
    cfg->port = 4001;
    cfg->max_connections = 10000;
    cfg->wait_timeout_ms = 60000;
    cfg->idle_timeout_ms = 600000;
    cfg->read_buffer = 128u << 10;
    cfg->inbox_limit = 128;
    cfg->write_high = 1u << 20;
    cfg->stats_interval_ms = 300000;
}

int tr_server_setup(wb_rt_t *rt, const tr_server_config_t *cfg)
{
    srv_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WB_ENOMEM;
    s->rt = rt;
    s->cfg = cfg;
    s->rebooted = wall_now();
    wb_idmap_init(&s->conns);
    wb_outbox_init(&s->out, try_send, s);
    wb_idmap_init(&s->timers);
    wb_strmap_init(&s->waiting);
    int rc = 0;
    if (cfg->usage_db != NULL) {
        /* The database lane reads its config until the runtime is freed:
         * static storage (one relay a process). */
        static wb_db_config_t dbc;
        tr_store_config(&dbc, cfg->usage_db);
        rc = wb_db_attach(rt, &dbc);
    }
    wb_sockets_config_t sc;
    wb_sockets_config_init(&sc);
    sc.read_buffer = cfg->read_buffer;
    sc.max_connections = cfg->max_connections + 64;
    if (rc == 0)
        rc = wb_sockets_attach(rt, &sc);
    uint64_t id;
    if (rc == 0)
        rc = wb_actor_spawn(rt, NULL, &relay_def, s, &id);
    if (rc != 0) {
        wb_strmap_fini(&s->waiting);
        free(s);
        return rc;
    }
    wb_event_t *go = wb_event_new(WB_EV_USER, 0);
    if (go == NULL)
        return WB_ENOMEM;
    wb_event_route(go, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, id);
    go->flags |= WB_EVF_CONTROL;
    rc = wb_rt_send(rt, go);
    if (rc != 0)
        wb_event_free(go);
    return rc;
}
