/*
 * server.c - the kv server actor.
 */
#include "apps/kv/server.h"

#include <stdlib.h>
#include <string.h>

#include "apps/kv/proto.h"
#include "db/db.h"
#include "dispatch/endpoint.h"
#include "runtime/actor.h"
#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/idmap.h"
#include "runtime/log.h"
#include "sockets/tcp.h"

#define WATCH_BATCH 256

/* ---- the schema --------------------------------------------------------------- */

static const char *const migrations[] = {
    "CREATE TABLE changes (rev INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL,"
    " op INTEGER NOT NULL, value BLOB);"
    "CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL, rev INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TRIGGER changes_apply AFTER INSERT ON changes BEGIN"
    "  INSERT INTO kv(key, value, rev) SELECT NEW.key, NEW.value, NEW.rev WHERE NEW.op = 1"
    "    ON CONFLICT(key) DO UPDATE SET value = excluded.value, rev = excluded.rev;"
    "  DELETE FROM kv WHERE NEW.op = 2 AND key = NEW.key;"
    "END;",
    "CREATE TABLE cursors (id INTEGER PRIMARY KEY, prefix BLOB NOT NULL, prefix_end BLOB,"
    " pos INTEGER NOT NULL);",
};

enum {
    OP_PUT,
    OP_DEL,
    OP_GET,
    OP_LIST,
    OP_CHANGES,
    OP_HEAD,
    OP_CURSOR_NEW,
    OP_CURSOR_GET,
    OP_CURSOR_ACK,
    OP_CURSOR_DROP,
};

static const wb_db_op_t ops[] = {
    [OP_PUT] = {"put", "INSERT INTO changes(key, op, value) VALUES (?1, 1, ?2)"},
    [OP_DEL] = {"delete", "INSERT INTO changes(key, op, value) SELECT ?1, 2, NULL"
                          " WHERE EXISTS (SELECT 1 FROM kv WHERE key = ?1)"},
    [OP_GET] = {"get", "SELECT value, rev FROM kv WHERE key = ?1"},
    [OP_LIST] = {"list", "SELECT key, value, rev FROM kv WHERE key >= ?1"
                         " AND (?2 IS NULL OR key < ?2) AND (?3 IS NULL OR key > ?3)"
                         " ORDER BY key LIMIT ?4"},
    [OP_CHANGES] = {"changes", "SELECT rev, op, key, value FROM changes WHERE rev > ?1"
                               " AND key >= ?2 AND (?3 IS NULL OR key < ?3)"
                               " ORDER BY rev LIMIT ?4"},
    [OP_HEAD] = {"head", "SELECT COALESCE(MAX(rev), 0) FROM changes"},
    [OP_CURSOR_NEW] = {"cursor-new", "INSERT INTO cursors(prefix, prefix_end, pos)"
                                     " VALUES (?1, ?2, MIN(?3, (SELECT COALESCE(MAX(rev), 0)"
                                     " FROM changes)))"},
    [OP_CURSOR_GET] = {"cursor-get", "SELECT prefix, prefix_end, pos FROM cursors WHERE id = ?1"},
    [OP_CURSOR_ACK] = {"cursor-ack", "UPDATE cursors SET pos = ?2 WHERE id = ?1 AND pos < ?2"},
    [OP_CURSOR_DROP] = {"cursor-drop", "DELETE FROM cursors WHERE id = ?1"},
};

/* ---- cursors: handlers on the database thread (rule 5) ---------------------------- */

enum { H_CURSOR_NEXT, H_CURSOR_DROP };

typedef struct {
    uint8_t prefix[KV_MAX_KEY], end[KV_MAX_KEY];
    size_t prefix_n, end_n;
    int has_end, found;
    int64_t pos;
} cursor_row_t;

static int cursor_row(void *arg, const wb_value_t *cols, size_t ncols)
{
    cursor_row_t *c = arg;
    if (ncols != 3 || cols[0].u.s.n > KV_MAX_KEY || cols[1].u.s.n > KV_MAX_KEY)
        return 1;
    memcpy(c->prefix, cols[0].u.s.p, cols[0].u.s.n);
    c->prefix_n = cols[0].u.s.n;
    c->has_end = cols[1].type != WB_VAL_NULL;
    if (c->has_end) {
        memcpy(c->end, cols[1].u.s.p, cols[1].u.s.n);
        c->end_n = cols[1].u.s.n;
    }
    c->pos = cols[2].u.i;
    c->found = 1;
    return 1;
}

typedef struct {
    kv_buf_t items;
    uint32_t count, max;
    size_t max_bytes;
    int more;
} changes_acc_t;

static int change_row(void *arg, const wb_value_t *cols, size_t ncols)
{
    changes_acc_t *a = arg;
    if (ncols != 4)
        return 1;
    kv_entry_t e = {.rev = (uint64_t)cols[0].u.i,
                    .op = (int)cols[1].u.i,
                    .key = {cols[2].u.s.p, cols[2].u.s.n},
                    .value = {cols[3].u.s.p, cols[3].u.s.n},
                    .has_value = cols[3].type != WB_VAL_NULL};
    size_t sz = e.key.n + e.value.n + 32;
    /* One more than asked, or than fits one message, says there is more. */
    if (a->count == a->max || (a->count > 0 && a->items.len + sz > a->max_bytes)) {
        a->more = 1;
        return 1;
    }
    kv_enc_event(&a->items, &e);
    a->count++;
    return 0;
}

static int cursor_next(wb_db_call_t *call, int64_t rowid, const uint8_t *body, size_t len,
                       void *arg)
{
    const kv_server_config_t *cfg = arg;
    uint32_t max;
    uint64_t ack;
    cursor_row_t c = {0};
    int rc;
    if (kv_dec_next(body, len, &max, &ack) != 0)
        return wb_db_call_fail(call, WB_EPROTO, "malformed next");
    wb_value_t id = wb_val_int(rowid);
    if (ack > 0) {
        wb_value_t b[2] = {id, wb_val_int((int64_t)ack)};
        if ((rc = wb_db_call_exec(call, OP_CURSOR_ACK, b, 2, NULL, NULL)) != 0)
            return rc;
    }
    if ((rc = wb_db_call_exec(call, OP_CURSOR_GET, &id, 1, cursor_row, &c)) != 0)
        return rc;
    if (!c.found)
        return wb_db_call_fail(call, WB_ENOENT, "no such cursor");
    changes_acc_t a = {.max = max, .max_bytes = cfg->max_value + KV_OVERHEAD - 256};
    kv_buf_init(&a.items);
    wb_value_t q[4] = {wb_val_int(c.pos), wb_val_blob(c.prefix, c.prefix_n),
                       c.has_end ? wb_val_blob(c.end, c.end_n) : wb_val_null(),
                       wb_val_int((int64_t)max + 1)};
    rc = wb_db_call_exec(call, OP_CHANGES, q, 4, change_row, &a);
    if (rc == 0) {
        kv_buf_t out;
        kv_buf_init(&out);
        rc = kv_enc_changes(&out, &a.items, a.count, a.more);
        if (rc == 0)
            rc = wb_db_call_reply(call, out.p, out.len);
        kv_buf_fini(&out);
    }
    kv_buf_fini(&a.items);
    return rc;
}

static int cursor_drop(wb_db_call_t *call, int64_t rowid, const uint8_t *body, size_t len,
                       void *arg)
{
    (void)body;
    (void)len;
    (void)arg;
    wb_value_t id = wb_val_int(rowid);
    int rc = wb_db_call_exec(call, OP_CURSOR_DROP, &id, 1, NULL, NULL);
    if (rc != 0)
        return rc;
    if (wb_db_call_changes(call) == 0)
        return wb_db_call_fail(call, WB_ENOENT, "no such cursor");
    kv_buf_t out;
    kv_buf_init(&out);
    kv_enc_rev(&out, 0);
    rc = out.oom ? WB_ENOMEM : wb_db_call_reply(call, out.p, out.len);
    kv_buf_fini(&out);
    return rc;
}

/* ---- state -------------------------------------------------------------------------- */

typedef struct watch_s watch_t;
typedef struct server_s server_t;

typedef struct {
    int op;
    uint64_t peer, msg_id, regards; /* whom to answer */
    watch_t *watch;                 /* OP_CHANGES: the watch it feeds (NULL once it ended) */
    uint8_t *key;                   /* OP_PUT / OP_DEL: copies for the watches */
    size_t key_n;
    uint8_t *value;
    size_t value_n;
} pending_t;

struct watch_s {
    server_t *s;
    wb_conv_t *conv;
    uint8_t *prefix, *prefix_end; /* prefix_end NULL: no upper bound */
    size_t prefix_n, end_n;
    uint64_t cursor; /* every matching change up to here has been sent */
    int live;        /* caught up: new changes are pushed as they commit */
    uint64_t query;  /* cookie of the catch-up query in flight, 0 if none */
    int want_credit; /* stopped for lack of credit */
    watch_t *prev, *next;
};

typedef struct {
    uint64_t id;
    uint32_t inflight;
    int paused;
    int blocked; /* write queue above its watermark */
} conn_t;

struct server_s {
    const kv_server_config_t *cfg;
    wb_rt_t *rt;
    wb_actor_t *self;
    wb_endpoint_t *ep;
    wb_dispatch_t *d;
    uint64_t listener;
    uint64_t head_rev;
    int head_known;
    wb_idmap_t pending; /* cookie -> pending_t */
    uint64_t next_cookie;
    wb_idmap_t conns;
    watch_t *watches;
    kv_buf_t buf;
    uint64_t served, errors;
};

static void conn_settle(server_t *s, conn_t *c);

/* ---- talking to the database lane ----------------------------------------------------- */

static void pending_free(pending_t *p)
{
    free(p->key);
    free(p->value);
    free(p);
}

/* Send a database request for p; the result comes back with its cookie. */
static int db_request(server_t *s, pending_t *p, const wb_value_t *binds, size_t n, unsigned flags,
                      uint64_t *cookie_out)
{
    wb_event_t *ev = wb_db_request_op((uint32_t)p->op, binds, n, flags);
    if (ev == NULL)
        return WB_ENOMEM;
    uint64_t cookie = ++s->next_cookie;
    if (wb_idmap_put(&s->pending, cookie, p) != 0) {
        wb_event_free(ev);
        return WB_ENOMEM;
    }
    ev->cookie = cookie;
    int rc = wb_endpoint_db_send(s->ep, ev); /* held in order if the lane is full */
    if (rc != 0) {
        wb_idmap_del(&s->pending, cookie);
        return rc;
    }
    if (cookie_out != NULL)
        *cookie_out = cookie;
    return 0;
}

/* ---- answering ----------------------------------------------------------------------------- */

static void answer(server_t *s, uint64_t peer, uint64_t msg_id, uint64_t regards, uint32_t type)
{
    if (s->buf.oom) {
        s->errors++;
        return;
    }
    if (wb_dispatch_send(s->d, peer, type, msg_id, regards, s->buf.p, s->buf.len, NULL) == 0)
        s->served++;
}

static void answer_err(server_t *s, uint64_t peer, uint64_t msg_id, uint64_t regards, int code,
                       const char *text)
{
    kv_buf_reset(&s->buf);
    kv_enc_err(&s->buf, code, text);
    s->errors++;
    answer(s, peer, msg_id, regards, KV_ERR);
}

static conn_t *conn_of(server_t *s, uint64_t peer)
{
    return wb_idmap_get(&s->conns, peer);
}

/* A request from peer starts / ends being served. */
static void inflight(server_t *s, uint64_t peer, int delta)
{
    conn_t *c = conn_of(s, peer);
    if (c == NULL)
        return;
    c->inflight = (uint32_t)((int)c->inflight + delta);
    conn_settle(s, c);
}

/* Stop reading a connection that has too much in flight or cannot take
 * answers; start again when it can. */
static void conn_settle(server_t *s, conn_t *c)
{
    int want_pause = c->inflight >= s->cfg->max_inflight || c->blocked;
    if (want_pause && !c->paused) {
        c->paused = 1;
        wb_tcp_pause(s->rt, c->id);
    } else if (!want_pause && c->paused && c->inflight <= s->cfg->max_inflight / 2) {
        c->paused = 0;
        wb_tcp_resume(s->rt, c->id);
    }
}

/* ---- watches ------------------------------------------------------------------------------------
 */

static int matches(const watch_t *w, const uint8_t *key, size_t n)
{
    return n >= w->prefix_n && memcmp(key, w->prefix, w->prefix_n) == 0;
}

/* Send one change into the watch; 0, or WB_EAGAIN when out of credit. */
static int watch_send(watch_t *w, const kv_entry_t *e)
{
    server_t *s = w->s;
    kv_buf_reset(&s->buf);
    if (kv_enc_event(&s->buf, e) != 0)
        return WB_ENOMEM;
    int rc = wb_conv_send(w->conv, KV_EVENT, s->buf.p, s->buf.len, NULL);
    if (rc == 0)
        w->cursor = e->rev;
    return rc;
}

static void watch_synced(watch_t *w)
{
    server_t *s = w->s;
    kv_buf_reset(&s->buf);
    kv_enc_rev(&s->buf, w->cursor);
    wb_conv_send(w->conv, KV_SYNCED, s->buf.p, s->buf.len, NULL);
}

/* Ask the database for the next changes after the cursor. */
static void watch_catch_up(watch_t *w)
{
    server_t *s = w->s;
    if (w->query != 0 || w->live)
        return;
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return;
    p->op = OP_CHANGES;
    p->watch = w;
    wb_value_t b[4] = {wb_val_int((int64_t)w->cursor), wb_val_blob(w->prefix, w->prefix_n),
                       w->prefix_end ? wb_val_blob(w->prefix_end, w->end_n) : wb_val_null(),
                       wb_val_int(WATCH_BATCH)};
    if (db_request(s, p, b, 4, 0, &w->query) != 0) {
        pending_free(p);
        wb_conv_close(w->conv, WB_ENOMEM);
    }
}

static void watch_rows(watch_t *w, const wb_event_t *res)
{
    size_t n = wb_db_result_nrows(res);
    w->query = 0;
    if (res->status != 0) {
        wb_warn("kv", "watch %llu: %s", (unsigned long long)wb_conv_id(w->conv),
                wb_db_result_errmsg(res));
        wb_conv_close(w->conv, res->status);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        wb_value_t rev, op, key, value;
        wb_db_result_value(res, i, 0, &rev);
        wb_db_result_value(res, i, 1, &op);
        wb_db_result_value(res, i, 2, &key);
        wb_db_result_value(res, i, 3, &value);
        kv_entry_t e = {.rev = (uint64_t)rev.u.i,
                        .op = (int)op.u.i,
                        .key = {key.u.s.p, key.u.s.n},
                        .value = {value.u.s.p, value.u.s.n},
                        .has_value = value.type != WB_VAL_NULL};
        int rc = watch_send(w, &e);
        if (rc == WB_EAGAIN) {
            w->want_credit = 1; /* on_credit asks again from the cursor */
            return;
        }
        if (rc != 0) {
            wb_conv_close(w->conv, rc);
            return;
        }
    }
    if (n == WATCH_BATCH) {
        watch_catch_up(w);
        return;
    }
    /* Every change that committed before the query has been seen, and every
     * write answered since came after it: caught up to the head. */
    if (w->cursor < w->s->head_rev)
        w->cursor = w->s->head_rev;
    w->live = 1;
    watch_synced(w);
}

/* A write committed: push it to every watch that is live. */
static void watches_push(server_t *s, const kv_entry_t *e)
{
    watch_t *next_w;
    for (watch_t *w = s->watches; w != NULL; w = next_w) {
        next_w = w->next;
        if (!w->live)
            continue;
        if (!matches(w, e->key.p, e->key.n)) {
            w->cursor = e->rev;
            continue;
        }
        int rc = watch_send(w, e);
        if (rc == WB_EAGAIN) {
            w->live = 0;
            w->want_credit = 1;
        } else if (rc != 0) {
            wb_conv_close(w->conv, rc); /* frees w; next_w is already read */
        }
    }
}

static void watch_on_msg(wb_conv_t *c, const wb_msg_t *m)
{
    /* Clients send nothing in a watch but its end; consume whatever comes. */
    wb_conv_consumed(c, m->env.body_len);
}

static void watch_on_credit(wb_conv_t *c)
{
    watch_t *w = wb_conv_state(c);
    if (w->want_credit) {
        w->want_credit = 0;
        watch_catch_up(w);
    }
}

static void watch_on_end(wb_conv_t *c, int status)
{
    watch_t *w = wb_conv_state(c);
    server_t *s = w->s;
    (void)status;
    if (w->query != 0) {
        pending_t *p = wb_idmap_get(&s->pending, w->query);
        if (p != NULL)
            p->watch = NULL;
    }
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        s->watches = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    free(w->prefix);
    free(w->prefix_end);
    free(w);
}

static const wb_conv_def_t watch_def = {"kv-watch", watch_on_msg, watch_on_credit, watch_on_end};

/* ---- request handlers (rule 1)
 * --------------------------------------------------------------------------- */

static pending_t *pending_for(server_t *s, const wb_msg_t *m, int op)
{
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_ENOMEM, "out of memory");
        return NULL;
    }
    p->op = op;
    p->peer = m->peer;
    p->msg_id = m->env.id;
    p->regards = m->env.regards;
    return p;
}

static void submit(server_t *s, const wb_msg_t *m, pending_t *p, const wb_value_t *b, size_t n,
                   unsigned flags)
{
    int rc = db_request(s, p, b, n, flags, NULL);
    if (rc != 0) {
        answer_err(s, m->peer, m->env.id, m->env.regards, rc, wb_strerror(rc));
        pending_free(p);
        return;
    }
    inflight(s, m->peer, +1);
}

static void on_put(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    server_t *s = arg;
    kv_bytes_t key, value;
    (void)d;
    if (kv_dec_key_value(m->env.body, m->env.body_len, &key, &value) != 0) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_EPROTO, "malformed put");
        return;
    }
    if (value.n > s->cfg->max_value) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_ETOOBIG, "value too large");
        return;
    }
    pending_t *p = pending_for(s, m, OP_PUT);
    if (p == NULL)
        return;
    p->key = malloc(key.n);
    p->value = malloc(value.n ? value.n : 1);
    if (p->key == NULL || p->value == NULL) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_ENOMEM, "out of memory");
        pending_free(p);
        return;
    }
    memcpy(p->key, key.p, key.n);
    memcpy(p->value, value.p, value.n);
    p->key_n = key.n;
    p->value_n = value.n;
    wb_value_t b[2] = {wb_val_blob(key.p, key.n), wb_val_blob(value.p, value.n)};
    submit(s, m, p, b, 2, s->cfg->durable ? WB_DB_DURABLE : 0);
}

static void on_get_or_delete(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    server_t *s = arg;
    kv_bytes_t key;
    (void)d;
    if (kv_dec_key(m->env.body, m->env.body_len, &key) != 0) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_EPROTO, "malformed request");
        return;
    }
    int del = m->env.type == KV_DELETE;
    pending_t *p = pending_for(s, m, del ? OP_DEL : OP_GET);
    if (p == NULL)
        return;
    p->key = malloc(key.n);
    if (p->key == NULL) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_ENOMEM, "out of memory");
        pending_free(p);
        return;
    }
    memcpy(p->key, key.p, key.n);
    p->key_n = key.n;
    wb_value_t b = wb_val_blob(key.p, key.n);
    submit(s, m, p, &b, 1, del && s->cfg->durable ? WB_DB_DURABLE : 0);
}

static void on_list(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    server_t *s = arg;
    kv_bytes_t prefix, after;
    int has_after;
    uint32_t limit;
    uint8_t end[KV_MAX_KEY];
    (void)d;
    if (kv_dec_list(m->env.body, m->env.body_len, &prefix, &after, &has_after, &limit) != 0) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_EPROTO, "malformed list");
        return;
    }
    int end_n = kv_prefix_end(prefix, end);
    pending_t *p = pending_for(s, m, OP_LIST);
    if (p == NULL)
        return;
    p->value_n = limit; /* remembered to tell whether there is more */
    wb_value_t b[4] = {wb_val_blob(prefix.p, prefix.n),
                       end_n >= 0 ? wb_val_blob(end, (size_t)end_n) : wb_val_null(),
                       has_after ? wb_val_blob(after.p, after.n) : wb_val_null(),
                       wb_val_int((int64_t)limit + 1)};
    submit(s, m, p, b, 4, 0);
}

static void on_watch(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    server_t *s = arg;
    kv_bytes_t prefix;
    uint64_t from;
    uint8_t end[KV_MAX_KEY];
    if (kv_dec_watch(m->env.body, m->env.body_len, &prefix, &from) != 0) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_EPROTO, "malformed watch");
        return;
    }
    watch_t *w = calloc(1, sizeof(*w));
    int end_n = kv_prefix_end(prefix, end);
    if (w != NULL) {
        w->prefix = malloc(prefix.n ? prefix.n : 1);
        w->prefix_end = end_n > 0 ? malloc((size_t)end_n) : NULL;
    }
    if (w == NULL || w->prefix == NULL || (end_n > 0 && w->prefix_end == NULL) ||
        wb_conv_accept(d, m, &watch_def, w, &w->conv) != 0) {
        if (w != NULL) {
            free(w->prefix);
            free(w->prefix_end);
        }
        free(w);
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_ENOMEM, "cannot open the watch");
        return;
    }
    memcpy(w->prefix, prefix.p, prefix.n);
    w->prefix_n = prefix.n;
    if (end_n > 0) {
        memcpy(w->prefix_end, end, (size_t)end_n);
        w->end_n = (size_t)end_n;
    }
    w->s = s;
    w->cursor = from > s->head_rev ? s->head_rev : from;
    w->next = s->watches;
    if (w->next != NULL)
        w->next->prev = w;
    s->watches = w;
    watch_catch_up(w);
}

static void on_cursor(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    server_t *s = arg;
    kv_bytes_t prefix;
    uint64_t from;
    uint8_t end[KV_MAX_KEY];
    (void)d;
    if (kv_dec_watch(m->env.body, m->env.body_len, &prefix, &from) != 0) {
        answer_err(s, m->peer, m->env.id, m->env.regards, WB_EPROTO, "malformed cursor");
        return;
    }
    int end_n = kv_prefix_end(prefix, end);
    pending_t *p = pending_for(s, m, OP_CURSOR_NEW);
    if (p == NULL)
        return;
    wb_value_t b[3] = {wb_val_blob(prefix.p, prefix.n),
                       end_n > 0 ? wb_val_blob(end, (size_t)end_n) : wb_val_null(),
                       wb_val_int((int64_t)from)};
    submit(s, m, p, b, 3, 0);
}

static void on_row_error(wb_endpoint_t *ep, const wb_msg_t *m, int code, const char *msg,
                         void *user)
{
    (void)ep;
    answer_err(user, m->peer, m->env.id, m->env.regards, code, msg);
}

/* ---- database results
 * ------------------------------------------------------------------------------------- */

typedef struct {
    server_t *s;
    size_t count, limit, bytes, max_bytes;
    int cut;
} list_ctx_t;

static void on_result(server_t *s, wb_event_t *res)
{
    pending_t *p = wb_idmap_del(&s->pending, res->cookie);
    if (p == NULL)
        return;
    if (p->op == OP_CHANGES) {
        if (p->watch != NULL)
            watch_rows(p->watch, res);
        pending_free(p);
        return;
    }
    if (p->op == OP_HEAD) {
        wb_value_t v;
        if (res->status == 0 && wb_db_result_value(res, 0, 0, &v) == 0)
            s->head_rev = (uint64_t)v.u.i;
        pending_free(p);
        return;
    }
    inflight(s, p->peer, -1);
    if (res->status != 0) {
        answer_err(s, p->peer, p->msg_id, p->regards, res->status, wb_db_result_errmsg(res));
        pending_free(p);
        return;
    }
    kv_buf_reset(&s->buf);
    switch (p->op) {
    case OP_PUT:
    case OP_DEL: {
        if (wb_db_result_changes(res) == 0) {
            answer_err(s, p->peer, p->msg_id, p->regards, WB_ENOENT, "no such key");
            break;
        }
        uint64_t rev = (uint64_t)wb_db_result_rowid(res);
        if (rev > s->head_rev)
            s->head_rev = rev;
        kv_enc_rev(&s->buf, rev);
        answer(s, p->peer, p->msg_id, p->regards, KV_OK);
        kv_entry_t e = {.rev = rev,
                        .op = p->op == OP_PUT ? KV_OP_PUT : KV_OP_DELETE,
                        .key = {p->key, p->key_n},
                        .value = {p->value, p->value_n},
                        .has_value = p->op == OP_PUT};
        watches_push(s, &e);
        break;
    }
    case OP_CURSOR_NEW:
        kv_enc_rev(&s->buf, (uint64_t)wb_db_result_rowid(res));
        answer(s, p->peer, p->msg_id, p->regards, KV_OK);
        break;
    case OP_GET: {
        wb_value_t v, r;
        if (wb_db_result_nrows(res) == 0) {
            answer_err(s, p->peer, p->msg_id, p->regards, WB_ENOENT, "no such key");
            break;
        }
        wb_db_result_value(res, 0, 0, &v);
        wb_db_result_value(res, 0, 1, &r);
        kv_enc_value(&s->buf, (kv_bytes_t){p->key, p->key_n}, (kv_bytes_t){v.u.s.p, v.u.s.n},
                     (uint64_t)r.u.i);
        answer(s, p->peer, p->msg_id, p->regards, KV_VALUE);
        break;
    }
    case OP_LIST: {
        size_t n = wb_db_result_nrows(res), limit = p->value_n;
        size_t max_bytes = s->cfg->max_value + KV_OVERHEAD - 64, bytes = 16, take = 0;
        /* As many entries as fit one message; the client asks again after
         * the last key when `more` says so. */
        while (take < n && take < limit) {
            wb_value_t k, v;
            wb_db_result_value(res, take, 0, &k);
            wb_db_result_value(res, take, 1, &v);
            size_t sz = k.u.s.n + v.u.s.n + 32;
            if (take > 0 && bytes + sz > max_bytes)
                break;
            bytes += sz;
            take++;
        }
        kv_enc_entries_begin(&s->buf, (uint32_t)take);
        for (size_t i = 0; i < take; i++) {
            wb_value_t k, v, r;
            wb_db_result_value(res, i, 0, &k);
            wb_db_result_value(res, i, 1, &v);
            wb_db_result_value(res, i, 2, &r);
            kv_enc_entry(&s->buf, (kv_bytes_t){k.u.s.p, k.u.s.n}, (kv_bytes_t){v.u.s.p, v.u.s.n},
                         (uint64_t)r.u.i);
        }
        kv_enc_entries_end(&s->buf, take < n);
        answer(s, p->peer, p->msg_id, p->regards, KV_ENTRIES);
        break;
    }
    }
    pending_free(p);
}

/* ---- the actor
 * ------------------------------------------------------------------------------------------------
 */

static void ep_open(wb_endpoint_t *ep, uint64_t conn, int dialed, const char *addr, uint64_t cookie,
                    void *user)
{
    server_t *s = user;
    (void)ep;
    (void)dialed;
    (void)cookie;
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL || wb_idmap_put(&s->conns, conn, c) != 0) {
        free(c);
        wb_tcp_close(s->rt, conn);
        return;
    }
    c->id = conn;
    wb_info("kv", "connection %llu from %s", (unsigned long long)conn, addr);
}

static void ep_close(wb_endpoint_t *ep, uint64_t conn, int status, const char *reason, void *user)
{
    server_t *s = user;
    (void)ep;
    conn_t *c = wb_idmap_del(&s->conns, conn);
    if (c == NULL)
        return;
    int normal = status == 0 || status == WB_ECLOSED;
    wb_info("kv", "connection %llu closed: %s%s%s", (unsigned long long)conn, reason,
            normal ? "" : " ", normal ? "" : wb_err_name(status));
    free(c);
}

static void ep_writable(wb_endpoint_t *ep, uint64_t conn, int writable, void *user)
{
    server_t *s = user;
    (void)ep;
    conn_t *c = conn_of(s, conn);
    if (c != NULL) {
        c->blocked = !writable;
        conn_settle(s, c);
    }
}

static void server_start(server_t *s)
{
    wb_endpoint_config_t ec = {.max_message = s->cfg->max_value + KV_OVERHEAD,
                               .trace = s->cfg->trace,
                               .on_open = ep_open,
                               .on_close = ep_close,
                               .on_writable = ep_writable,
                               .on_row_error = on_row_error,
                               .user = s};
    wb_tcp_opts_t opts;
    wb_tcp_opts_init(&opts);
    opts.max_message = s->cfg->max_value + KV_OVERHEAD;
    opts.max_connections = s->cfg->max_connections;
    if (wb_endpoint_new(&s->ep, s->self, &ec) != 0) {
        wb_error("kv", "out of memory");
        wb_rt_request_stop(s->rt);
        return;
    }
    s->d = wb_endpoint_dispatch(s->ep);
    wb_dispatch_on_type(s->d, KV_PUT, on_put, s);
    wb_dispatch_on_type(s->d, KV_GET, on_get_or_delete, s);
    wb_dispatch_on_type(s->d, KV_DELETE, on_get_or_delete, s);
    wb_dispatch_on_type(s->d, KV_LIST, on_list, s);
    wb_dispatch_on_type(s->d, KV_WATCH, on_watch, s);
    wb_dispatch_on_type(s->d, KV_CURSOR, on_cursor, s);
    wb_endpoint_on_row(s->ep, KV_NEXT, H_CURSOR_NEXT, KV_CHANGES, 0);
    wb_endpoint_on_row(s->ep, KV_DROP, H_CURSOR_DROP, KV_OK, s->cfg->durable ? WB_DB_DURABLE : 0);
    pending_t *p = calloc(1, sizeof(*p));
    if (p != NULL) {
        p->op = OP_HEAD;
        if (db_request(s, p, NULL, 0, 0, NULL) != 0)
            pending_free(p);
    }
    int rc = wb_endpoint_listen(s->ep, s->cfg->host, s->cfg->port, &opts, &s->listener);
    if (rc != 0) {
        wb_error("kv", "listen: %s", wb_strerror(rc));
        if (s->cfg->on_listening != NULL)
            s->cfg->on_listening(rc, 0, s->cfg->user);
        wb_rt_request_stop(s->rt);
    }
}

static void server_handle(wb_actor_t *self, wb_event_t *ev)
{
    server_t *s = wb_actor_state(self);
    if (s->ep != NULL && wb_endpoint_handle(s->ep, ev))
        return; /* connections, held sends, row requests, timeouts */
    if (ev->type == WB_EV_USER) {
        server_start(s);
    } else if (ev->type == WB_EV_DB_RESULT) {
        on_result(s, ev);
    } else if (ev->type == WB_EV_TCP_LISTENING) {
        if (ev->status == 0) {
            wb_info("kv", "listening on %s (db %s, %s writes)", (const char *)ev->data,
                    s->cfg->db_path, s->cfg->durable ? "durable" : "group-committed");
        } else {
            wb_error("kv", "cannot listen on %s:%u: %s", s->cfg->host, s->cfg->port,
                     ev->len ? (const char *)ev->data : wb_strerror(ev->status));
            wb_rt_request_stop(s->rt);
        }
        if (s->cfg->on_listening != NULL)
            s->cfg->on_listening(ev->status, (uint16_t)ev->cookie, s->cfg->user);
    }
    wb_event_free(ev);
}

static void free_pending(uint64_t key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    pending_free(val);
}

static void free_conn(uint64_t key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    free(val);
}

static void server_fini(wb_actor_t *self)
{
    server_t *s = wb_actor_state(self);
    wb_endpoint_free(s->ep); /* ends the watches */
    wb_idmap_each(&s->pending, free_pending, NULL);
    wb_idmap_fini(&s->pending);
    wb_idmap_each(&s->conns, free_conn, NULL);
    wb_idmap_fini(&s->conns);
    kv_buf_fini(&s->buf);
    free(s);
}

static const wb_actor_def_t server_def = {"kv-server", server_handle, server_fini};

void kv_server_config_init(kv_server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 7400;
    cfg->db_path = "kv.db";
    cfg->max_connections = 1024;
    cfg->max_value = KV_DEFAULT_MAX_VALUE;
    cfg->max_inflight = 256;
}

int kv_server_setup(wb_rt_t *rt, const kv_server_config_t *cfg)
{
    static wb_db_config_t dbc;
    static wb_db_handler_t handlers[2];
    handlers[H_CURSOR_NEXT] = (wb_db_handler_t){"cursor-next", cursor_next, (void *)cfg};
    handlers[H_CURSOR_DROP] = (wb_db_handler_t){"cursor-drop", cursor_drop, (void *)cfg};
    memset(&dbc, 0, sizeof(dbc));
    dbc.handlers = handlers;
    dbc.n_handlers = 2;
    dbc.path = cfg->db_path;
    dbc.migrations = migrations;
    dbc.n_migrations = sizeof(migrations) / sizeof(migrations[0]);
    dbc.ops = ops;
    dbc.n_ops = sizeof(ops) / sizeof(ops[0]);
    int rc = wb_db_attach(rt, &dbc);
    if (rc == 0)
        rc = wb_sockets_attach(rt, NULL);
    if (rc != 0)
        return rc;
    server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WB_ENOMEM;
    s->cfg = cfg;
    s->rt = rt;
    wb_idmap_init(&s->pending);
    wb_idmap_init(&s->conns);
    kv_buf_init(&s->buf);
    uint64_t id;
    rc = wb_actor_spawn(rt, NULL, &server_def, s, &id);
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->self = wb_actor_lookup(rt, id);
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
