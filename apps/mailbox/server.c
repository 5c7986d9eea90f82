/*
 * server.c - the mailbox server actor (see server.h).
 *
 * Sends that a lane refuses (its inbox is full: WB_EAGAIN) wait in one FIFO,
 * the outbox, in the order they were made, and go out when the lane's
 * WB_EV_RESUME comes; while the outbox is not empty every new send joins it,
 * so nothing overtakes anything.
 *
 * Durability: the database requests made while handling one event (a turn)
 * go out in order, all but the last quiet; the last carries the next
 * sequence number and is answered. Results come back in request order. The
 * messages for connections made in that turn wait for the turn's end; if
 * requests are then outstanding they wait in the held queue, tagged with the
 * last sequence number issued, until that result is in. So a connection gets
 * a command's ack and answer in one write, after the change is committed.
 */
#include "apps/mailbox/server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apps/mailbox/store.h"
#include "db/db.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/idmap.h"
#include "runtime/log.h"
#include "runtime/outbox.h"
#include "sockets/tcp.h"
#include "sockets/websocket.h"

#define MOD         "mailbox"
#define LOAD_COOKIE (1ull << 62) /* | table: a load page's result */
/* In the queues below, not sent: "close this connection (code in status,
 * reason as payload)" in its place among the messages. */
#define EV_CLOSE_MARK (WB_EV_USER + 1)

typedef struct {
    mb_conn_t *mb;
    uint64_t id;
    int paused; /* reading stopped while its write queue drains */
    uint64_t opened_ms;
    char peer[64];
} conn_t;

typedef struct {
    wb_rt_t *rt;
    uint64_t self;
    const mb_server_config_t *cfg;
    mb_core_t *core;
    wb_idmap_t conns; /* tcp connection id -> conn_t */
    wb_ws_opts_t ws;

    wb_outbox_t out; /* refused sends, in order */
    wb_evq_t held;   /* replies waiting for a commit; seq in cookie */
    uint64_t seq_issued, seq_done;
    wb_event_t *last_req; /* this turn's latest database request, not yet sent */
    wb_evq_t turn;        /* this turn's messages for connections */
    uint64_t db_errors;

    int loading; /* table being loaded + 1, 0 when done */
    int64_t load_rowid;
    uint64_t loaded;
    uint64_t listener, prune_timer;
    int listening;
} srv_t;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- sending ----------------------------------------------------------------- */

/* Try one send; WB_EAGAIN leaves ev with the caller. */
static int try_send(void *ctx, wb_event_t *ev)
{
    srv_t *s = ctx;
    if (ev->type == EV_CLOSE_MARK) {
        if (wb_tcp_close_ws(s->rt, ev->dst, (uint16_t)ev->status, (const char *)ev->data) != 0)
            wb_tcp_close(s->rt, ev->dst);
        wb_event_free(ev);
        return 0;
    }
    int rc = ev->dst_lane == WB_LANE_NET ? wb_tcp_send(s->rt, ev->dst, ev) : wb_rt_send(s->rt, ev);
    if (rc == WB_EAGAIN)
        return rc;
    if (rc != 0) {
        if (ev->dst_lane == WB_LANE_DB)
            wb_error(MOD, "database lane refused a request: %s", wb_strerror(rc));
        wb_event_free(ev);
    }
    return 0;
}

static void out(srv_t *s, wb_event_t *ev)
{
    wb_outbox_send(&s->out, ev);
}

static void io_send(void *ctx, mb_conn_t *c, const char *json, size_t len)
{
    srv_t *s = ctx;
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, json, len);
    if (ev == NULL) {
        wb_error(MOD, "out of memory: a message to connection %" PRIu64 " is lost", mb_conn_id(c));
        return;
    }
    wb_event_route(ev, WB_LANE_ACTOR, s->self, WB_LANE_NET, mb_conn_id(c));
    wb_evq_push(&s->turn, ev);
}

static void io_close(void *ctx, mb_conn_t *c, int code, const char *reason)
{
    srv_t *s = ctx;
    /* In line with the messages for it, so that they go out first. */
    wb_event_t *ev = wb_event_new_copy(EV_CLOSE_MARK, reason, strlen(reason) + 1);
    if (ev == NULL) {
        wb_tcp_close(s->rt, mb_conn_id(c));
        return;
    }
    wb_event_route(ev, WB_LANE_ACTOR, s->self, WB_LANE_NET, mb_conn_id(c));
    ev->status = code;
    wb_evq_push(&s->turn, ev);
}

/* The requests of one turn (one event handled) go out in order; all but
 * the last are quiet (answered only if they fail), the last is answered with
 * its sequence number when the turn ends (end_turn): one result per command
 * rather than one per row. */
static void io_persist(void *ctx, wb_event_t *req)
{
    srv_t *s = ctx;
    wb_event_route(req, WB_LANE_ACTOR, s->self, WB_LANE_DB, 0);
    if (s->last_req != NULL) {
        wb_db_request_set_quiet(s->last_req);
        s->last_req->cookie = 0;
        out(s, s->last_req);
    }
    s->last_req = req;
}

static void end_turn(srv_t *s)
{
    if (s->last_req != NULL) {
        s->last_req->cookie = ++s->seq_issued;
        out(s, s->last_req);
        s->last_req = NULL;
    }
    if (wb_evq_empty(&s->turn))
        return;
    if (s->seq_done < s->seq_issued || !wb_evq_empty(&s->held)) {
        for (wb_event_t *ev = s->turn.head; ev != NULL;
             ev = atomic_load_explicit(&ev->next, memory_order_relaxed))
            ev->cookie = s->seq_issued;
        wb_evq_append(&s->held, &s->turn);
    } else {
        wb_event_t *ev;
        while ((ev = wb_evq_pop(&s->turn)) != NULL)
            out(s, ev);
    }
}

/* Results are in up to seq_done: release what waited for them. */
static void release_held(srv_t *s)
{
    while (!wb_evq_empty(&s->held) && s->held.head->cookie <= s->seq_done)
        out(s, wb_evq_pop(&s->held));
}

/* ---- loading ----------------------------------------------------------------- */

static void listen_now(srv_t *s);

static void load_request(srv_t *s)
{
    int t = s->loading - 1;
    wb_value_t v[] = {wb_val_int(s->load_rowid), wb_val_int(MB_LOAD_PAGE)};
    wb_event_t *req = wb_db_request_sql(mb_store_load_sql(t), v, 2, 0);
    if (req == NULL) {
        wb_error(MOD, "out of memory loading the channel database");
        wb_rt_request_stop(s->rt);
        return;
    }
    wb_event_route(req, WB_LANE_ACTOR, s->self, WB_LANE_DB, 0);
    req->cookie = LOAD_COOKIE | (uint64_t)t;
    out(s, req);
}

static const char *text(const wb_event_t *res, size_t row, size_t col, char *buf, size_t n)
{
    wb_value_t v;
    if (wb_db_result_value(res, row, col, &v) != 0 || v.type == WB_VAL_NULL)
        return NULL;
    if (v.type == WB_VAL_TEXT || v.type == WB_VAL_BLOB) {
        size_t k = v.u.s.n < n - 1 ? v.u.s.n : n - 1;
        memcpy(buf, v.u.s.p, k);
        buf[k] = 0;
        return buf;
    }
    return NULL;
}

static char *text_dup(const wb_event_t *res, size_t row, size_t col)
{
    wb_value_t v;
    if (wb_db_result_value(res, row, col, &v) != 0 || v.type == WB_VAL_NULL ||
        (v.type != WB_VAL_TEXT && v.type != WB_VAL_BLOB))
        return NULL;
    char *p = malloc(v.u.s.n + 1);
    if (p != NULL) {
        memcpy(p, v.u.s.p, v.u.s.n);
        p[v.u.s.n] = 0;
    }
    return p;
}

static double num(const wb_event_t *res, size_t row, size_t col)
{
    wb_value_t v;
    if (wb_db_result_value(res, row, col, &v) != 0)
        return 0;
    return v.type == WB_VAL_REAL ? v.u.d : v.type == WB_VAL_INT ? (double)v.u.i : 0;
}

/* One row of table t into the core. */
static int load_row(srv_t *s, int t, const wb_event_t *res, size_t r)
{
    char a[MB_APPID_MAX + 2], b[MB_MBID_MAX + 2], c[MB_SIDE_MAX + 2], d[MB_PHASE_MAX + 2],
        m[MB_MOOD_MAX + 2];
    const char *app = text(res, r, 1, a, sizeof(a)), *k2 = text(res, r, 2, b, sizeof(b));
    if (app == NULL || k2 == NULL)
        return 0;
    switch (t) {
    case MB_LOAD_MAILBOXES:
        return mb_restore_mailbox(s->core, app, k2, (int)num(res, r, 3), num(res, r, 4),
                                  (int)num(res, r, 5));
    case MB_LOAD_MBSIDES: {
        const char *side = text(res, r, 3, c, sizeof(c));
        return side == NULL
                   ? 0
                   : mb_restore_mailbox_side(s->core, app, k2, side, (int)num(res, r, 4),
                                             text(res, r, 5, m, sizeof(m)), num(res, r, 6));
    }
    case MB_LOAD_MESSAGES: {
        const char *side = text(res, r, 3, c, sizeof(c)), *phase = text(res, r, 4, d, sizeof(d));
        char *body = text_dup(res, r, 5), *id = text_dup(res, r, 7);
        int rc = side != NULL && phase != NULL && body != NULL
                     ? mb_restore_message(s->core, app, k2, side, phase, body, num(res, r, 6), id)
                     : 0;
        free(body);
        free(id);
        return rc;
    }
    case MB_LOAD_NAMEPLATES: {
        const char *mbid = text(res, r, 3, c, sizeof(c));
        return mbid == NULL ? 0 : mb_restore_nameplate(s->core, app, k2, mbid, (int)num(res, r, 4));
    }
    case MB_LOAD_NPSIDES: {
        const char *side = text(res, r, 3, c, sizeof(c));
        return side == NULL ? 0
                            : mb_restore_nameplate_side(s->core, app, k2, side, (int)num(res, r, 4),
                                                        num(res, r, 5));
    }
    }
    return 0;
}

static void load_result(srv_t *s, const wb_event_t *res)
{
    int t = (int)(res->cookie & 0xff);
    if (res->status != 0) {
        wb_error(MOD, "%s: cannot load: %s", s->cfg->channel_db, wb_db_result_errmsg(res));
        if (s->cfg->on_listening != NULL)
            s->cfg->on_listening(res->status, 0, s->cfg->user);
        wb_rt_request_stop(s->rt);
        return;
    }
    size_t n = wb_db_result_nrows(res);
    for (size_t r = 0; r < n; r++) {
        if (load_row(s, t, res, r) != 0) {
            wb_error(MOD, "out of memory loading the channel database");
            wb_rt_request_stop(s->rt);
            return;
        }
        wb_value_t v;
        if (wb_db_result_value(res, r, 0, &v) == 0 && v.type == WB_VAL_INT)
            s->load_rowid = v.u.i;
    }
    s->loaded += n;
    if (n < MB_LOAD_PAGE) {
        s->load_rowid = 0;
        if (++s->loading > MB_LOAD_TABLES) {
            s->loading = 0;
            mb_stats_t st;
            mb_core_stats(s->core, &st);
            wb_info(MOD,
                    "%s: %" PRIu64 " nameplates, %" PRIu64 " mailboxes, %" PRIu64
                    " messages restored (%" PRIu64 " rows skipped)",
                    s->cfg->channel_db, st.nameplates, st.mailboxes, st.messages,
                    mb_restore_skipped(s->core));
            listen_now(s);
            return;
        }
    }
    load_request(s);
}

/* ---- connections ------------------------------------------------------------- */

static void listen_now(srv_t *s)
{
    const mb_server_config_t *cfg = s->cfg;
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.ws = &s->ws;
    to.max_message = cfg->max_message + 64;
    to.max_connections = cfg->max_connections;
    to.max_per_ip = cfg->max_per_ip;
    to.backlog = 1024;
    /* A client whose machine vanished (no FIN) would keep its mailbox alive
     * as a listener forever: let the kernel probe idle connections. */
    to.keepalive_s = 60;
    /* A client that stops reading gets 1 MiB queued before we stop reading
     * it; past the hard cap it is disconnected. */
    to.write_high = 1u << 20;
    to.write_low = 256u << 10;
    int rc = wb_tcp_listen(s->rt, WB_LANE_ACTOR, s->self, cfg->host, cfg->port, &to, &s->listener);
    if (rc != 0) {
        wb_error(MOD, "cannot listen on %s port %u: %s", cfg->host, cfg->port, wb_strerror(rc));
        if (cfg->on_listening != NULL)
            cfg->on_listening(rc, 0, cfg->user);
        wb_rt_request_stop(s->rt);
    }
}

static void on_listening(srv_t *s, wb_event_t *ev)
{
    const mb_server_config_t *cfg = s->cfg;
    if (ev->status != 0) {
        wb_error(MOD, "cannot listen on %s port %u: %.*s", cfg->host, cfg->port, (int)ev->len,
                 (const char *)ev->data);
        if (cfg->on_listening != NULL)
            cfg->on_listening(ev->status, 0, cfg->user);
        wb_rt_request_stop(s->rt);
        return;
    }
    s->listening = 1;
    const char *addr = ev->data;
    wb_info(MOD, "listening on ws://%s/v1 (channel db %s%s%s)", addr, cfg->channel_db,
            cfg->usage_db ? ", usage db " : "", cfg->usage_db ? cfg->usage_db : "");
    wb_timer_start(wb_actor_lookup(s->rt, s->self), cfg->prune_interval_ms, &s->prune_timer);
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
    snprintf(c->peer, sizeof(c->peer), "%.*s", (int)ev->len, (const char *)ev->data);
    c->mb = mb_conn_new(s->core, ev->src, c->peer, c, wall_now());
    if (c->mb == NULL) {
        wb_idmap_del(&s->conns, ev->src);
        free(c);
        wb_tcp_close(s->rt, ev->src);
        return;
    }
    c->opened_ms = wb_rt_now_ms(s->rt);
    wb_debug(MOD, "connection %" PRIu64 " from %s", c->id, c->peer);
}

static void on_closed(srv_t *s, wb_event_t *ev)
{
    if (ev->src == s->listener) {
        s->listening = 0;
        return;
    }
    conn_t *c = wb_idmap_del(&s->conns, ev->src);
    if (c == NULL)
        return;
    const char *app = mb_conn_appid(c->mb), *side = mb_conn_side(c->mb);
    wb_info(MOD, "connection %" PRIu64 " from %s, %s%s%s%s, %.1f s: %.*s", c->id, c->peer,
            app != NULL ? "app " : "never bound", app != NULL ? app : "",
            side != NULL ? " side " : "", side != NULL ? side : "",
            (double)(wb_rt_now_ms(s->rt) - c->opened_ms) / 1000.0, (int)ev->len,
            (const char *)ev->data);
    mb_conn_free(c->mb);
    free(c);
}

/* ---- the actor --------------------------------------------------------------- */

static void handle(wb_actor_t *self, wb_event_t *ev)
{
    srv_t *s = wb_actor_state(self);
    conn_t *c;
    switch (ev->type) {
    case WB_EV_USER:
        if (s->self == 0) { /* the go from mb_server_setup */
            s->self = wb_actor_id(self);
            s->loading = 1;
            load_request(s);
        }
        break;
    case WB_EV_DB_RESULT:
        if (ev->cookie & LOAD_COOKIE) {
            load_result(s, ev);
            break;
        }
        if (ev->status != 0 && s->db_errors++ < 10)
            wb_error(MOD, "%s: a change was not saved: %s", s->cfg->channel_db,
                     wb_db_result_errmsg(ev));
        if (ev->cookie == 0)
            break; /* a quiet request's failure */
        if (ev->cookie > s->seq_done)
            s->seq_done = ev->cookie;
        release_held(s);
        break;
    case WB_EV_RESUME:
        wb_outbox_resume(&s->out);
        break;
    case WB_EV_TCP_LISTENING:
        on_listening(s, ev);
        break;
    case WB_EV_TCP_OPENED:
        on_opened(s, ev);
        break;
    case WB_EV_TCP_BLOB:
        if ((c = wb_idmap_get(&s->conns, ev->src)) != NULL)
            mb_conn_input(c->mb, ev->data, ev->len, wall_now());
        break;
    case WB_EV_TCP_CLOSED:
        on_closed(s, ev);
        break;
    case WB_EV_TCP_BACKPRESSURE:
        /* It does not read what it is sent: stop reading what it sends. */
        if ((c = wb_idmap_get(&s->conns, ev->src)) != NULL && !c->paused) {
            c->paused = 1;
            wb_tcp_pause(s->rt, c->id);
        }
        break;
    case WB_EV_TCP_WRITABLE:
        if ((c = wb_idmap_get(&s->conns, ev->src)) != NULL && c->paused) {
            c->paused = 0;
            wb_tcp_resume(s->rt, c->id);
        }
        break;
    case WB_EV_TIMER:
        if (ev->cookie == s->prune_timer) {
            mb_core_prune(s->core, wall_now());
            wb_timer_start(self, s->cfg->prune_interval_ms, &s->prune_timer);
        }
        break;
    default:
        break;
    }
    end_turn(s);
    wb_event_free(ev);
}

static void free_conn(uint64_t id, void *val, void *arg)
{
    conn_t *c = val;
    mb_conn_free(c->mb);
    free(c);
}

static void fini(wb_actor_t *self)
{
    srv_t *s = wb_actor_state(self);
    wb_idmap_each(&s->conns, free_conn, s);
    wb_idmap_fini(&s->conns);
    wb_outbox_fini(&s->out);
    wb_evq_clear(&s->held);
    wb_evq_clear(&s->turn);
    wb_event_free(s->last_req);
    mb_core_free(s->core);
    free(s);
}

static const wb_actor_def_t server_def = {"mailbox-server", handle, fini};

void mb_server_config_init(mb_server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "::";
    cfg->port = 4000;
    cfg->channel_db = "relay.sqlite";
    mb_config_init(&cfg->core);
    cfg->max_connections = 20000;
    cfg->max_message = 1u << 20;
    cfg->prune_interval_ms = 5 * 60 * 1000;
    cfg->handshake_timeout_ms = 10000;
}

int mb_server_setup(wb_rt_t *rt, const mb_server_config_t *cfg)
{
    srv_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WB_ENOMEM;
    s->rt = rt;
    s->cfg = cfg;
    wb_idmap_init(&s->conns);
    wb_outbox_init(&s->out, try_send, s);
    wb_ws_opts_init(&s->ws);
    s->ws.path = "/v1";
    s->ws.page = "Wormhole Relay\n";
    s->ws.max_message = cfg->max_message;
    s->ws.handshake_timeout_ms = cfg->handshake_timeout_ms;
    mb_config_t core = cfg->core;
    core.usage = cfg->usage_db != NULL;
    mb_io_t io = {s, io_send, io_close, io_persist};
    int rc = mb_core_new(&s->core, &core, &io);
    if (rc != 0) {
        free(s);
        return rc;
    }
    /* The database lane reads its config until the runtime is freed, after
     * this actor is gone: keep it in static storage (one server a process). */
    static wb_db_config_t dbc;
    static wb_db_attached_t usage;
    mb_store_config(&dbc, &usage, cfg->channel_db, cfg->usage_db);
    if ((rc = wb_db_attach(rt, &dbc)) != 0 || (rc = wb_sockets_attach(rt, NULL)) != 0) {
        mb_core_free(s->core);
        free(s);
        return rc;
    }
    uint64_t id;
    if ((rc = wb_actor_spawn(rt, NULL, &server_def, s, &id)) != 0) {
        mb_core_free(s->core);
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
