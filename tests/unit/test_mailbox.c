/*
 * test_mailbox.c - the mailbox server's state machine (apps/mailbox/core.h),
 * driven through a fake io: every JSON message a connection is sent is
 * parsed and kept per connection (and checked on the way: an object with a
 * string "type" and a float "server_tx" equal to the `now` of the call, those
 * two keys last), closes are counted, and every persisted database request
 * is decoded into its operation number and values (and, for the restart
 * test, run against a real in-memory SQLite database with the store's own
 * schema and statements).
 *
 * What is checked: the welcome; the ack rule (one ack, first, with the id
 * copied); every error string of the protocol with its `orig`; bad JSON and
 * non-objects (error, then a close with 1007 / 1003); field types and
 * lengths; allocation (fewest digits, random among the free); claim, open,
 * add, replay; crowding refused without being sticky; reclaimed; release and
 * close deleting state; reconnection; open once per connection; the limits;
 * pruning; usage rows; restoring; restarting from the database rows the
 * core wrote; and that freeing the core leaves nothing allocated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "apps/mailbox/core.h"
#include "apps/mailbox/store.h"
#include "db/db.h"
#include "db/db_internal.h"
#include "runtime/error.h"

#define APP "lothar.com/wormhole/text-or-file-xfer"
#define T0  1700000000.25 /* exact in a double, with a fraction */

enum { MAXPEERS = 512, MAXV = 8 };

/* ---- the fake io ----------------------------------------------------------- */

typedef struct {
    mb_conn_t *c;
    json_t **msgs; /* everything sent to it, in order */
    int n, cap, next;
    int closes, close_code;
    char reason[64];
    int freed; /* mb_conn_free'd */
} peer_t;

/* One persisted request: its operation and values (TEXT copied, NUL-ended). */
typedef struct {
    uint32_t op, n;
    wb_value_t v[MAXV];
} row_t;

static struct {
    mb_core_t *core;
    mb_config_t cfg;
    double now;
    peer_t *peers[MAXPEERS];
    int npeers;
    uint64_t next_id;
    row_t *rows;
    int nrows, caprows;
    sqlite3 *db; /* when set, every request also runs here */
} H;

/* Values per operation, as store.h lists them. */
static const uint32_t arity[MB_OP_COUNT] = {
    [MB_OP_MAILBOX_PUT] = 5,   [MB_OP_MAILBOX_TOUCH] = 3, [MB_OP_MAILBOX_DEL] = 2,
    [MB_OP_MBSIDE_PUT] = 6,    [MB_OP_MESSAGE_ADD] = 7,   [MB_OP_NAMEPLATE_PUT] = 4,
    [MB_OP_NAMEPLATE_DEL] = 2, [MB_OP_NPSIDE_PUT] = 5,    [MB_OP_USAGE_NAMEPLATE] = 5,
    [MB_OP_USAGE_MAILBOX] = 6, [MB_OP_USAGE_CLIENT] = 5,  [MB_OP_USAGE_CURRENT_DEL] = 0,
    [MB_OP_USAGE_CURRENT] = 4,
};

static wb_db_config_t store_cfg;
static wb_db_attached_t store_usage;

/* Rotating buffers for formatted text, so helpers can nest. */
static char *scratch(void)
{
    static char bufs[64][8192];
    static int k;
    return bufs[k++ % 64];
}

static const char *F(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *F(const char *fmt, ...)
{
    char *b = scratch();
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, 8192, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && n < 8192);
    return b;
}

/* n copies of ch. */
static const char *rep(char ch, size_t n)
{
    char *b = scratch();
    assert_true(n < 8192);
    memset(b, ch, n);
    b[n] = 0;
    return b;
}

static const char *dump(const json_t *o)
{
    char *b = scratch();
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(b, 8192, "%s", s != NULL ? s : "(null)");
    free(s);
    return b;
}

static json_t *parse(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("test bug: cannot parse %s: %s", s, e.text);
    return v;
}

static void expect_json(const json_t *got, const char *want)
{
    json_t *w = parse(want);
    if (got == NULL || !json_equal((json_t *)got, w))
        fail_msg("got %s, want %s", got != NULL ? dump(got) : "(absent)", want);
    json_decref(w);
}

static const char *jstr(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("'%s' is not a string in %s", key, dump(o));
    return json_string_value(v);
}

/* The object's keys are exactly keys[0..n), in that order. */
static void check_keys(const json_t *o, const char *const *keys, size_t n)
{
    size_t i = 0;
    for (void *it = json_object_iter((json_t *)o); it != NULL;
         it = json_object_iter_next((json_t *)o, it), i++)
        if (i >= n || strcmp(json_object_iter_key(it), keys[i]) != 0)
            fail_msg("key %zu of %s is not \"%s\"", i, dump(o), i < n ? keys[i] : "(end)");
    if (i != n)
        fail_msg("%s has %zu keys, want %zu", dump(o), i, n);
}

static void io_send(void *ctx, mb_conn_t *c, const char *json, size_t len)
{
    assert_ptr_equal(ctx, &H);
    peer_t *p = mb_conn_user(c);
    assert_non_null(p);
    if (p->freed)
        fail_msg("sent to a freed connection: %.*s", (int)len, json);
    if (p->closes > 0)
        fail_msg("sent after close: %.*s", (int)len, json);
    json_error_t e;
    json_t *o = json_loadb(json, len, 0, &e);
    if (o == NULL || !json_is_object(o))
        fail_msg("not a JSON object: %.*s (%s)", (int)len, json, e.text);
    const char *type = jstr(o, "type");
    json_t *tx = json_object_get(o, "server_tx");
    if (!json_is_real(tx) || json_real_value(tx) != H.now)
        fail_msg("%s message: server_tx is not the float %.17g: %.*s", type, H.now, (int)len, json);
    /* The Python server's order: the message's own keys, then type, then
     * server_tx. */
    void *it = json_object_iter(o);
    size_t k = 0, size = json_object_size(o);
    for (; it != NULL; it = json_object_iter_next(o, it), k++) {
        const char *key = json_object_iter_key(it);
        if ((k == size - 2 && strcmp(key, "type") != 0) ||
            (k == size - 1 && strcmp(key, "server_tx") != 0))
            fail_msg("type and server_tx are not last: %.*s", (int)len, json);
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->msgs = realloc(p->msgs, (size_t)p->cap * sizeof(*p->msgs));
        assert_non_null(p->msgs);
    }
    p->msgs[p->n++] = o;
}

static void io_close(void *ctx, mb_conn_t *c, int code, const char *reason)
{
    peer_t *p = mb_conn_user(c);
    assert_non_null(p);
    assert_false(p->freed);
    p->closes++;
    p->close_code = code;
    snprintf(p->reason, sizeof(p->reason), "%s", reason);
}

/* Run one request on the test database, as the database lane would. */
static void db_apply(const row_t *r)
{
    sqlite3_stmt *st;
    const char *sql = store_cfg.ops[r->op].sql;
    if (sqlite3_prepare_v2(H.db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("prepare %s: %s", sql, sqlite3_errmsg(H.db));
    for (uint32_t i = 0; i < r->n; i++) {
        const wb_value_t *v = &r->v[i];
        int rc = SQLITE_OK;
        switch (v->type) {
        case WB_VAL_NULL:
            rc = sqlite3_bind_null(st, (int)i + 1);
            break;
        case WB_VAL_INT:
            rc = sqlite3_bind_int64(st, (int)i + 1, v->u.i);
            break;
        case WB_VAL_REAL:
            rc = sqlite3_bind_double(st, (int)i + 1, v->u.d);
            break;
        default:
            rc = sqlite3_bind_text(st, (int)i + 1, v->u.s.p, (int)v->u.s.n, SQLITE_TRANSIENT);
            break;
        }
        assert_int_equal(rc, SQLITE_OK);
    }
    if (sqlite3_step(st) != SQLITE_DONE)
        fail_msg("%s: %s", store_cfg.ops[r->op].name, sqlite3_errmsg(H.db));
    sqlite3_finalize(st);
}

static void io_persist(void *ctx, wb_event_t *req)
{
    assert_ptr_equal(ctx, &H);
    assert_non_null(req);
    assert_int_equal(req->type, WB_EV_DB_REQUEST);
    const unsigned char *p = req->data;
    size_t len = req->len, off = sizeof(wb__db_req_hdr_t);
    wb__db_req_hdr_t h;
    assert_true(len >= sizeof(h));
    memcpy(&h, p, sizeof(h));
    assert_int_equal(h.magic, WB__DB_REQ_MAGIC);
    assert_int_equal(h.kind, WB__DB_REQ_OP);
    assert_int_equal(h.flags, 0);
    assert_true(h.arg < MB_OP_COUNT);
    if (h.nbinds != arity[h.arg])
        fail_msg("operation %u with %u values, want %u", h.arg, h.nbinds, arity[h.arg]);
    if (H.nrows == H.caprows) {
        H.caprows = H.caprows ? H.caprows * 2 : 256;
        H.rows = realloc(H.rows, (size_t)H.caprows * sizeof(*H.rows));
        assert_non_null(H.rows);
    }
    row_t *r = &H.rows[H.nrows++];
    memset(r, 0, sizeof(*r));
    r->op = h.arg;
    for (uint32_t i = 0; i < h.nbinds; i++) {
        wb_value_t v;
        size_t k = wb__db_val_get(p + off, len - off, &v);
        assert_true(k > 0);
        off += k;
        if (v.type == WB_VAL_TEXT || v.type == WB_VAL_BLOB) {
            assert_int_equal(v.type, WB_VAL_TEXT); /* the core binds no blobs */
            char *s = malloc(v.u.s.n + 1);
            assert_non_null(s);
            memcpy(s, v.u.s.p, v.u.s.n);
            s[v.u.s.n] = 0;
            v.u.s.p = s;
        }
        r->v[r->n++] = v;
    }
    assert_int_equal(off, len);
    wb_event_free(req);
    if (H.db != NULL)
        db_apply(r);
}

static const mb_io_t io = {&H, io_send, io_close, io_persist};

/* ---- rows --------------------------------------------------------------------- */

static const row_t *row(int i)
{
    assert_true(i >= 0 && i < H.nrows);
    return &H.rows[i];
}

static const char *rtext(const row_t *r, uint32_t i)
{
    assert_true(i < r->n);
    if (r->v[i].type != WB_VAL_TEXT)
        fail_msg("value %u of operation %u is not TEXT (type %d)", i, r->op, r->v[i].type);
    return r->v[i].u.s.p;
}

static int64_t rowint(const row_t *r, uint32_t i)
{
    assert_true(i < r->n);
    assert_int_equal(r->v[i].type, WB_VAL_INT);
    return r->v[i].u.i;
}

static double rreal(const row_t *r, uint32_t i)
{
    assert_true(i < r->n);
    if (r->v[i].type != WB_VAL_REAL)
        fail_msg("value %u of operation %u is not REAL (type %d)", i, r->op, r->v[i].type);
    return r->v[i].u.d;
}

static int rnull(const row_t *r, uint32_t i)
{
    assert_true(i < r->n);
    return r->v[i].type == WB_VAL_NULL;
}

/* The first row of operation op at or after index from, or -1. */
static int row_next(uint32_t op, int from)
{
    for (int i = from; i < H.nrows; i++)
        if (H.rows[i].op == op)
            return i;
    return -1;
}

static int count_op(uint32_t op, int from)
{
    int n = 0;
    for (int i = from; i < H.nrows; i++)
        n += H.rows[i].op == op;
    return n;
}

/* Some row at or after from has a TEXT value equal to s. */
static int rows_mention(const char *s, int from)
{
    for (int i = from; i < H.nrows; i++)
        for (uint32_t k = 0; k < H.rows[i].n; k++)
            if (H.rows[i].v[k].type == WB_VAL_TEXT && strcmp(H.rows[i].v[k].u.s.p, s) == 0)
                return 1;
    return 0;
}

/* The row of operation op whose value `col` is the text key, at or after from. */
static const row_t *row_with(uint32_t op, uint32_t col, const char *key, int from)
{
    for (int i = from; (i = row_next(op, i)) >= 0; i++)
        if (H.rows[i].v[col].type == WB_VAL_TEXT && strcmp(H.rows[i].v[col].u.s.p, key) == 0)
            return &H.rows[i];
    fail_msg("no operation %u with \"%s\" as value %u", op, key, col);
    return NULL;
}

static void rows_free(void)
{
    for (int i = 0; i < H.nrows; i++)
        for (uint32_t k = 0; k < H.rows[i].n; k++)
            if (H.rows[i].v[k].type == WB_VAL_TEXT)
                free((void *)H.rows[i].v[k].u.s.p);
    free(H.rows);
    H.rows = NULL;
    H.nrows = H.caprows = 0;
}

/* ---- cores and connections ------------------------------------------------------ */

static void start(const mb_config_t *cfg)
{
    H.cfg = *cfg;
    H.now = T0;
    assert_int_equal(mb_core_new(&H.core, &H.cfg, &io), 0);
}

static void peers_free(void)
{
    for (int i = 0; i < H.npeers; i++) {
        peer_t *p = H.peers[i];
        if (!p->freed)
            mb_conn_free(p->c);
        for (int k = 0; k < p->n; k++)
            json_decref(p->msgs[k]);
        free(p->msgs);
        free(p);
    }
    H.npeers = 0;
}

static void stop(void)
{
    peers_free(); /* the glue's order: connections, then the core */
    mb_core_free(H.core);
    H.core = NULL;
    rows_free();
    if (H.db != NULL)
        sqlite3_close(H.db);
    H.db = NULL;
}

static int setup(void **state)
{
    (void)state;
    mb_config_t cfg;
    memset(&H, 0, sizeof(H));
    mb_config_init(&cfg);
    start(&cfg);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop();
    return 0;
}

static void restart_with(const mb_config_t *cfg)
{
    stop();
    start(cfg);
}

static peer_t *conn_raw(void)
{
    assert_true(H.npeers < MAXPEERS);
    peer_t *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    H.peers[H.npeers++] = p;
    p->c = mb_conn_new(H.core, ++H.next_id, "198.51.100.7", p, H.now);
    assert_non_null(p->c);
    assert_int_equal(mb_conn_id(p->c), H.next_id);
    assert_ptr_equal(mb_conn_user(p->c), p);
    return p;
}

static void drop(peer_t *p)
{
    assert_false(p->freed);
    mb_conn_free(p->c);
    p->freed = 1;
}

static json_t *take(peer_t *p)
{
    if (p->next >= p->n)
        fail_msg("connection %llu: no message (got %d)", (unsigned long long)mb_conn_id(p->c),
                 p->n);
    return p->msgs[p->next++];
}

static json_t *take_type(peer_t *p, const char *type)
{
    json_t *o = take(p);
    if (strcmp(jstr(o, "type"), type) != 0)
        fail_msg("want a %s message, got %s", type, dump(o));
    return o;
}

static void none(peer_t *p)
{
    if (p->next < p->n)
        fail_msg("unexpected message %s", dump(p->msgs[p->next]));
}

/* Forget what p was sent so far (checked only by io_send). */
static void drain(peer_t *p)
{
    p->next = p->n;
}

static peer_t *conn(void)
{
    peer_t *p = conn_raw();
    take_type(p, "welcome");
    none(p);
    return p;
}

static void put(peer_t *p, const char *json)
{
    mb_conn_input(p->c, (const uint8_t *)json, strlen(json), H.now);
}

/* Send a command; its ack comes first, with the command's id (null when it
 * has none). */
static void cmd(peer_t *p, const char *json)
{
    json_t *sent = parse(json);
    json_t *id = json_object_get(sent, "id");
    put(p, json);
    json_t *a = take_type(p, "ack");
    static const char *const keys[] = {"id", "type", "server_tx"};
    check_keys(a, keys, 3);
    if (!json_equal(json_object_get(a, "id"), id != NULL ? id : json_null()))
        fail_msg("ack %s for %s", dump(a), json);
    json_decref(sent);
}

/* The next message is error `text`, with orig equal to the JSON text orig
 * (or no orig when orig is NULL). */
static void error_is(peer_t *p, const char *text, const char *orig)
{
    json_t *e = take_type(p, "error");
    if (strcmp(jstr(e, "error"), text) != 0)
        fail_msg("error \"%s\", want \"%s\"", jstr(e, "error"), text);
    if (orig != NULL) {
        static const char *const keys[] = {"error", "orig", "type", "server_tx"};
        check_keys(e, keys, 4);
        expect_json(json_object_get(e, "orig"), orig);
    } else {
        static const char *const keys[] = {"error", "type", "server_tx"};
        check_keys(e, keys, 3);
    }
}

/* A command answered with an ack and error `text` (orig: the command), and
 * nothing else; the connection stays open. */
static void cmd_err(peer_t *p, const char *json, const char *text)
{
    cmd(p, json);
    error_is(p, text, json);
    none(p);
    assert_int_equal(p->closes, 0);
}

static void bind_as(peer_t *p, const char *app, const char *side)
{
    cmd(p, F("{\"type\":\"bind\",\"appid\":\"%s\",\"side\":\"%s\",\"id\":\"b0\"}", app, side));
    none(p);
}

static peer_t *side_conn(const char *side)
{
    peer_t *p = conn();
    bind_as(p, APP, side);
    return p;
}

static const char *claim(peer_t *p, const char *name)
{
    cmd(p, F("{\"type\":\"claim\",\"nameplate\":\"%s\",\"id\":\"c0\"}", name));
    json_t *o = take_type(p, "claimed");
    static const char *const keys[] = {"mailbox", "type", "server_tx"};
    check_keys(o, keys, 3);
    return jstr(o, "mailbox");
}

static void open_mb(peer_t *p, const char *mailbox)
{
    cmd(p, F("{\"type\":\"open\",\"mailbox\":\"%s\",\"id\":\"o0\"}", mailbox));
}

/* id_json: the command's id as JSON text, or NULL for none. */
static void add(peer_t *p, const char *phase, const char *body, const char *id_json)
{
    if (id_json != NULL)
        cmd(p, F("{\"type\":\"add\",\"phase\":\"%s\",\"body\":\"%s\",\"id\":%s}", phase, body,
                 id_json));
    else
        cmd(p, F("{\"type\":\"add\",\"phase\":\"%s\",\"body\":\"%s\"}", phase, body));
}

static void release(peer_t *p, const char *name)
{
    if (name != NULL)
        cmd(p, F("{\"type\":\"release\",\"nameplate\":\"%s\",\"id\":\"r0\"}", name));
    else
        cmd(p, "{\"type\":\"release\",\"id\":\"r0\"}");
    json_t *o = take_type(p, "released");
    assert_int_equal(json_object_size(o), 2);
}

static void close_mb(peer_t *p, const char *mailbox, const char *mood)
{
    char m[128] = "", d[128] = "";
    if (mailbox != NULL)
        snprintf(m, sizeof(m), ",\"mailbox\":\"%s\"", mailbox);
    if (mood != NULL)
        snprintf(d, sizeof(d), ",\"mood\":\"%s\"", mood);
    cmd(p, F("{\"type\":\"close\"%s%s,\"id\":\"x0\"}", m, d));
    json_t *o = take_type(p, "closed");
    assert_int_equal(json_object_size(o), 2);
}

/* The next message is the `message` (side, phase, body, server_rx, id). */
static void expect_msg(peer_t *p, const char *side, const char *phase, const char *body, double rx,
                       const char *id_json)
{
    json_t *m = take_type(p, "message");
    static const char *const keys[] = {"side", "phase", "body",     "server_rx",
                                       "id",   "type",  "server_tx"};
    check_keys(m, keys, 7);
    assert_string_equal(jstr(m, "side"), side);
    assert_string_equal(jstr(m, "phase"), phase);
    assert_string_equal(jstr(m, "body"), body);
    json_t *r = json_object_get(m, "server_rx");
    if (!json_is_real(r) || json_real_value(r) != rx)
        fail_msg("server_rx of %s is not %.17g", dump(m), rx);
    expect_json(json_object_get(m, "id"), id_json);
}

/* `list` answers exactly want (JSON text of the nameplates array). */
static void list_is(peer_t *p, const char *want)
{
    cmd(p, "{\"type\":\"list\",\"id\":\"l0\"}");
    json_t *o = take_type(p, "nameplates");
    static const char *const keys[] = {"nameplates", "type", "server_tx"};
    check_keys(o, keys, 3);
    expect_json(json_object_get(o, "nameplates"), want);
    none(p);
}

static mb_stats_t st(void)
{
    mb_stats_t s;
    mb_core_stats(H.core, &s);
    return s;
}

static int is_mailbox_id(const char *id)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    if (strlen(id) != 13 || strspn(id, alphabet) != 13)
        return 0;
    /* 64 bits in 13 characters: the last carries 4 bits and a zero pad bit. */
    return (strchr(alphabet, id[12]) - alphabet) % 2 == 0;
}

/* ---- welcome and acks ------------------------------------------------------------ */

static void test_welcome_default(void **state)
{
    (void)state;
    peer_t *p = conn_raw();
    json_t *w = take_type(p, "welcome");
    static const char *const keys[] = {"welcome", "type", "server_tx"};
    check_keys(w, keys, 3);
    expect_json(json_object_get(w, "welcome"), "{}");
    assert_true(json_real_value(json_object_get(w, "server_tx")) == T0);
    none(p);

    /* server_tx is the time of the call, whatever it is. */
    H.now = T0 + 3.5;
    peer_t *q = conn_raw();
    w = take_type(q, "welcome");
    assert_true(json_real_value(json_object_get(w, "server_tx")) == T0 + 3.5);
    none(q);
    none(p);
    assert_int_equal(st().connections, 2);
    drop(p);
    assert_int_equal(st().connections, 1);
    assert_int_equal(H.nrows, 0); /* a connection is not state */
}

static void test_welcome_configured(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.motd = "Be nice.";
    cfg.advertise_version = "0.12.0";
    cfg.signal_error = "this server is going away";
    restart_with(&cfg);
    peer_t *p = conn_raw();
    json_t *w = take_type(p, "welcome");
    expect_json(json_object_get(w, "welcome"),
                "{\"motd\":\"Be nice.\",\"current_cli_version\":"
                "\"0.12.0\",\"error\":\"this server is going away\"}");
    none(p);

    cfg.signal_error = NULL;
    cfg.motd = NULL;
    restart_with(&cfg);
    p = conn_raw();
    w = take_type(p, "welcome");
    expect_json(json_object_get(w, "welcome"), "{\"current_cli_version\":\"0.12.0\"}");
}

static void test_ack_rules(void **state)
{
    (void)state;
    peer_t *p = conn();

    /* ping works before bind; the ack carries the id as it was. */
    cmd(p, "{\"type\":\"ping\",\"ping\":5,\"id\":\"abc\"}");
    json_t *o = take_type(p, "pong");
    static const char *const keys[] = {"pong", "type", "server_tx"};
    check_keys(o, keys, 3);
    expect_json(json_object_get(o, "pong"), "5");
    none(p);
    cmd(p, "{\"type\":\"ping\",\"ping\":{\"a\":[1,\"x\",null]},\"id\":7}");
    expect_json(json_object_get(take_type(p, "pong"), "pong"), "{\"a\":[1,\"x\",null]}");
    none(p);
    cmd(p, "{\"type\":\"ping\",\"ping\":\"p\"}"); /* no id: null */
    take_type(p, "pong");
    cmd(p, "{\"type\":\"ping\",\"ping\":1,\"id\":null}");
    take_type(p, "pong");
    cmd(p, "{\"id\":{\"k\":[1,2.5]},\"type\":\"ping\",\"ping\":1}");
    take_type(p, "pong");
    none(p);

    /* ping without 'ping' */
    cmd_err(p, "{\"type\":\"ping\",\"id\":\"q\"}", "ping requires 'ping'");

    /* No type: an error and no ack. */
    put(p, "{\"id\":\"x\",\"ping\":1}");
    error_is(p, "missing 'type'", "{\"id\":\"x\",\"ping\":1}");
    none(p);

    /* Anything else before bind. */
    cmd_err(p, "{\"type\":\"list\",\"id\":\"l\"}", "must bind first");
    cmd_err(p, "{\"type\":\"claim\",\"nameplate\":\"4\"}", "must bind first");
    cmd_err(p, "{\"type\":\"frob\",\"id\":1}", "must bind first");
    cmd_err(p, "{\"type\":5,\"id\":2}", "must bind first");
    cmd_err(p, "{\"type\":null}", "must bind first");

    bind_as(p, APP, "a");
    cmd_err(p, "{\"type\":\"frob\",\"id\":3}", "unknown type");
    cmd_err(p, "{\"type\":5}", "unknown type");
    cmd_err(p, "{\"type\":\"ack\"}", "unknown type");
    cmd_err(p, "{\"type\":\"\"}", "unknown type");
    cmd_err(p, "{\"type\":\"CLAIM\",\"nameplate\":\"4\"}", "unknown type");
    /* ping still works after bind. */
    cmd(p, "{\"type\":\"ping\",\"ping\":[],\"id\":\"z\"}");
    expect_json(json_object_get(take_type(p, "pong"), "pong"), "[]");
    none(p);
    assert_int_equal(p->closes, 0);
    mb_stats_t s = st();
    assert_int_equal(s.errors, 12);
    assert_int_equal(s.commands, 19);
    assert_int_equal(H.nrows, 0); /* usage is off: a bind writes nothing */
}

/* ---- every error of the protocol ---------------------------------------------- */

#define BIND_S1 "{\"type\":\"bind\",\"appid\":\"app\",\"side\":\"s1\",\"id\":\"b\"}"

typedef struct {
    const char *setup[4]; /* commands first, each answered without an error */
    const char *bad;
    const char *error;
} err_case_t;

static const err_case_t protocol_errors[] = {
    {{NULL}, "{\"type\":\"allocate\",\"id\":\"1\"}", "must bind first"},
    {{BIND_S1}, "{\"type\":\"frob\",\"id\":\"1\"}", "unknown type"},
    {{NULL}, "{\"type\":\"ping\",\"id\":\"1\"}", "ping requires 'ping'"},
    {{BIND_S1}, BIND_S1, "already bound"},
    {{NULL}, "{\"type\":\"bind\",\"side\":\"s1\",\"id\":\"1\"}", "bind requires 'appid'"},
    {{NULL}, "{\"type\":\"bind\",\"appid\":\"app\",\"id\":\"1\"}", "bind requires 'side'"},
    {{BIND_S1, "{\"type\":\"allocate\"}"},
     "{\"type\":\"allocate\",\"id\":\"2\"}",
     "you already allocated one, don't be greedy"},
    {{BIND_S1}, "{\"type\":\"claim\",\"id\":\"1\"}", "claim requires 'nameplate'"},
    {{BIND_S1, "{\"type\":\"claim\",\"nameplate\":\"5\"}"},
     "{\"type\":\"claim\",\"nameplate\":\"6\"}",
     "only one claim per connection"},
    {{BIND_S1, "{\"type\":\"claim\",\"nameplate\":\"5\"}"},
     "{\"type\":\"claim\",\"nameplate\":\"5\"}",
     "only one claim per connection"},
    {{BIND_S1, "{\"type\":\"claim\",\"nameplate\":\"5\"}", "{\"type\":\"release\"}"},
     "{\"type\":\"release\",\"nameplate\":\"5\"}",
     "only one release per connection"},
    {{BIND_S1, "{\"type\":\"claim\",\"nameplate\":\"5\"}"},
     "{\"type\":\"release\",\"nameplate\":\"6\"}",
     "release and claim must use same nameplate"},
    {{BIND_S1}, "{\"type\":\"release\",\"id\":9}", "release without nameplate must follow claim"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"open\",\"mailbox\":\"m2\"}",
     "only one open per connection"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"open\",\"mailbox\":\"m1\"}",
     "only one open per connection"},
    {{BIND_S1}, "{\"type\":\"open\"}", "open requires 'mailbox'"},
    {{BIND_S1},
     "{\"type\":\"add\",\"phase\":\"p\",\"body\":\"b\"}",
     "must open mailbox before adding"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"add\",\"body\":\"b\"}",
     "missing 'phase'"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"add\",\"phase\":\"p\"}",
     "missing 'body'"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}", "{\"type\":\"close\"}"},
     "{\"type\":\"close\",\"mailbox\":\"m1\"}",
     "only one close per connection"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"close\",\"mailbox\":\"m2\"}",
     "open and close must use same mailbox"},
    {{BIND_S1},
     "{\"type\":\"close\",\"mood\":\"happy\"}",
     "close without mailbox must follow open"},
    /* Wrong types and lengths of fields. */
    {{NULL}, "{\"type\":\"bind\",\"appid\":1,\"side\":\"s1\"}", "'appid' must be a string"},
    {{NULL}, "{\"type\":\"bind\",\"appid\":\"app\",\"side\":null}", "'side' must be a string"},
    {{NULL}, "{\"type\":\"bind\",\"appid\":\"app\",\"side\":[\"s1\"]}", "'side' must be a string"},
    {{BIND_S1}, "{\"type\":\"claim\",\"nameplate\":5}", "'nameplate' must be a string"},
    {{BIND_S1, "{\"type\":\"claim\",\"nameplate\":\"5\"}"},
     "{\"type\":\"release\",\"nameplate\":[]}",
     "'nameplate' must be a string"},
    {{BIND_S1}, "{\"type\":\"open\",\"mailbox\":{}}", "'mailbox' must be a string"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"add\",\"phase\":1,\"body\":\"b\"}",
     "'phase' must be a string"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"add\",\"phase\":\"p\",\"body\":{\"x\":1}}",
     "'body' must be a string"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"close\",\"mood\":true}",
     "'mood' must be a string"},
    {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
     "{\"type\":\"close\",\"mailbox\":1}",
     "'mailbox' must be a string"},
};

/* Run each case on a fresh core and connection. */
static void run_err_cases(const err_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const err_case_t *k = &cases[i];
        mb_config_t cfg;
        mb_config_init(&cfg);
        restart_with(&cfg);
        peer_t *p = conn();
        for (int s = 0; s < 4 && k->setup[s] != NULL; s++) {
            cmd(p, k->setup[s]);
            while (p->next < p->n) {
                json_t *o = take(p);
                if (strcmp(jstr(o, "type"), "error") == 0)
                    fail_msg("case %zu: setup %s got %s", i, k->setup[s], dump(o));
            }
        }
        uint64_t errors = st().errors;
        cmd_err(p, k->bad, k->error);
        assert_int_equal(st().errors, errors + 1);
        /* The connection carries on. */
        cmd(p, "{\"type\":\"ping\",\"ping\":1}");
        take_type(p, "pong");
        none(p);
    }
}

static void test_protocol_errors(void **state)
{
    (void)state;
    run_err_cases(protocol_errors, sizeof(protocol_errors) / sizeof(protocol_errors[0]));
    /* crowded and reclaimed need other connections: test_crowded_not_sticky,
     * test_reclaimed. */
}

static void test_field_lengths(void **state)
{
    (void)state;
    const char *s64 = rep('s', 64), *s65 = rep('s', 65);
    const char *a256 = rep('a', 256), *a257 = rep('a', 257);
    const char *p256 = rep('p', 256), *p257 = rep('p', 257);
    const err_case_t cases[] = {
        {{NULL},
         F("{\"type\":\"bind\",\"appid\":\"app\",\"side\":\"%s\"}", s65),
         "'side' is too long (at most 64 bytes)"},
        {{NULL},
         F("{\"type\":\"bind\",\"appid\":\"%s\",\"side\":\"s\"}", a257),
         "'appid' is too long (at most 256 bytes)"},
        {{BIND_S1},
         F("{\"type\":\"claim\",\"nameplate\":\"%s\"}", s65),
         "'nameplate' is too long (at most 64 bytes)"},
        {{BIND_S1},
         F("{\"type\":\"open\",\"mailbox\":\"%s\"}", s65),
         "'mailbox' is too long (at most 64 bytes)"},
        {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
         F("{\"type\":\"add\",\"phase\":\"%s\",\"body\":\"b\"}", p257),
         "'phase' is too long (at most 256 bytes)"},
        {{BIND_S1, "{\"type\":\"open\",\"mailbox\":\"m1\"}"},
         F("{\"type\":\"close\",\"mood\":\"%s\"}", s65),
         "'mood' is too long (at most 64 bytes)"},
    };
    run_err_cases(cases, sizeof(cases) / sizeof(cases[0]));

    /* At the maximum, everything is taken; a multi-byte character counts
     * its bytes. */
    mb_config_t cfg;
    mb_config_init(&cfg);
    restart_with(&cfg);
    peer_t *p = conn();
    bind_as(p, a256, s64);
    const char *mb = claim(p, s64);
    open_mb(p, mb);
    add(p, p256, "", NULL);
    expect_msg(p, s64, p256, "", T0, "null");
    close_mb(p, NULL, s64);
    none(p);
    /* 32 two-byte characters are 64 bytes; 33 are too many. */
    p = conn();
    bind_as(p, APP, "a");
    cmd_err(p, F("{\"type\":\"claim\",\"nameplate\":\"%s\\u00e9\"}", rep('x', 63)),
            "'nameplate' is too long (at most 64 bytes)");
}

/* A refused bind leaves the connection unbound, and a refused claim does
 * not use up the connection's one claim. */
static void test_refused_commands_change_nothing(void **state)
{
    (void)state;
    peer_t *p = conn();
    cmd_err(p, "{\"type\":\"bind\",\"appid\":\"app\",\"side\":null}", "'side' must be a string");
    cmd_err(p, "{\"type\":\"list\"}", "must bind first");
    cmd_err(p, "{\"type\":\"bind\",\"appid\":7,\"side\":\"a\"}", "'appid' must be a string");
    cmd_err(p, "{\"type\":\"bind\",\"side\":\"a\"}", "bind requires 'appid'");
    cmd_err(p, "{\"type\":\"list\"}", "must bind first");
    bind_as(p, APP, "a"); /* not "already bound" */
    cmd_err(p, "{\"type\":\"claim\",\"nameplate\":4}", "'nameplate' must be a string");
    cmd_err(p, "{\"type\":\"claim\"}", "claim requires 'nameplate'");
    assert_int_equal(st().nameplates, 0);
    assert_int_equal(H.nrows, 0);
    const char *mb = claim(p, "4");
    assert_true(is_mailbox_id(mb));
    cmd_err(p, "{\"type\":\"open\",\"mailbox\":null}", "'mailbox' must be a string");
    open_mb(p, mb);
    none(p);
    cmd_err(p, "{\"type\":\"add\",\"phase\":\"p\",\"body\":5}", "'body' must be a string");
    assert_int_equal(st().messages, 0);
    add(p, "p", "b", "1");
    expect_msg(p, "a", "p", "b", T0, "1");
    none(p);
}

static void test_not_json(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len;
    } bad[] = {
        {"{\"type\":", 8},
        {"{\"type\":\"ping\",\"ping\":1} x", 26},
        {"{\"type\":\"ping\",\"ping\":1}{}", 26},
        {"\xff\xfe", 2},
        {"{\"type\":\"ping\",\"ping\":\"\xc3\"}", 26},
        {"{\"type\":\"ping\",\"ping\":1e999999}", 31},
        {"{\"type\":\"ping\",\"ping\":\"a\0b\"}", 28},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        peer_t *p = conn();
        mb_conn_input(p->c, (const uint8_t *)bad[i].text, bad[i].len, H.now);
        json_t *e = take_type(p, "error");
        static const char *const keys[] = {"error", "type", "server_tx"};
        check_keys(e, keys, 3);
        const char *prefix = "message is not valid JSON: ";
        if (strncmp(jstr(e, "error"), prefix, strlen(prefix)) != 0 ||
            strlen(jstr(e, "error")) <= strlen(prefix))
            fail_msg("case %zu: error \"%s\"", i, jstr(e, "error"));
        none(p); /* no ack */
        assert_int_equal(p->closes, 1);
        assert_int_equal(p->close_code, 1007);
        assert_string_equal(p->reason, "invalid JSON");
        drop(p); /* as the glue does, later */
    }
    static const struct {
        const char *text, *error;
    } nonobj[] = {
        {"[1]", "message is not a JSON object: got an array"},
        {"\"bind\"", "message is not a JSON object: got a string"},
        {"42", "message is not a JSON object: got a number"},
        {"null", "message is not a JSON object: got null"},
        {"[{\"type\":\"ping\",\"ping\":1}]\n", "message is not a JSON object: got an array"},
    };
    for (size_t i = 0; i < sizeof(nonobj) / sizeof(nonobj[0]); i++) {
        peer_t *p = conn();
        put(p, nonobj[i].text);
        error_is(p, nonobj[i].error, NULL);
        none(p);
        assert_int_equal(p->closes, 1);
        assert_int_equal(p->close_code, 1003);
        assert_string_equal(p->reason, "not a JSON object");
        drop(p);
    }
    /* Trailing whitespace is JSON (Go ends each message with a newline). */
    peer_t *p = conn();
    cmd(p, "{\"type\":\"ping\",\"ping\":1}\n");
    take_type(p, "pong");
    cmd(p, " \t{\"type\":\"ping\",\"ping\":2} \r\n");
    expect_json(json_object_get(take_type(p, "pong"), "pong"), "2");
    none(p);
    assert_int_equal(p->closes, 0);
    assert_int_equal(st().connections, 1);
}

/* ---- allocate ---------------------------------------------------------------------- */

static void test_allocate_one_digit(void **state)
{
    (void)state;
    peer_t *p = side_conn("a");
    cmd(p, "{\"type\":\"allocate\",\"id\":\"al\"}");
    json_t *o = take_type(p, "allocated");
    static const char *const keys[] = {"nameplate", "type", "server_tx"};
    check_keys(o, keys, 3);
    const char *name = jstr(o, "nameplate");
    assert_int_equal(strlen(name), 1);
    assert_true(name[0] >= '1' && name[0] <= '9');
    none(p);
    list_is(p, F("[{\"id\":\"%s\"}]", name));
    assert_int_equal(st().nameplates, 1);
    assert_int_equal(st().mailboxes, 1);
    /* The allocator holds it already; its claim just names the mailbox the
     * nameplate was made with. */
    const row_t *np = row_with(MB_OP_NAMEPLATE_PUT, 1, name, 0);
    const char *mb = claim(p, name);
    assert_string_equal(mb, rtext(np, 2));
    assert_true(is_mailbox_id(mb));
    assert_int_equal(st().mailboxes, 1);
    /* Another side claiming it gets the same mailbox. */
    peer_t *q = side_conn("b");
    assert_string_equal(claim(q, name), mb);
}

static const char *allocate(peer_t *p)
{
    cmd(p, "{\"type\":\"allocate\"}");
    const char *name = jstr(take_type(p, "allocated"), "nameplate");
    none(p);
    return name;
}

static void test_allocate_fewest_digits(void **state)
{
    (void)state;
    char side[16];
    /* 1..9 but 5 taken: 5 is the only one-digit choice. */
    for (int i = 1; i <= 9; i++) {
        if (i == 5)
            continue;
        snprintf(side, sizeof(side), "s%d", i);
        claim(side_conn(side), F("%d", i));
    }
    assert_string_equal(allocate(side_conn("x")), "5");
    /* All nine taken: two digits, one not in use. */
    const char *two = allocate(side_conn("y"));
    assert_int_equal(strlen(two), 2);
    assert_true(atoi(two) >= 10 && atoi(two) <= 99);
    assert_int_equal(st().nameplates, 10);
    /* Sorted as strings. */
    peer_t *p = side_conn("z");
    json_t *want = parse("[]");
    const char *names[10] = {"1", "2", "3", "4", "5", "6", "7", "8", "9", two};
    for (int i = 0; i < 10; i++) {
        /* insert in string order: two digits "NM" sort after "N" */
        json_t *e = json_pack("{s:s}", "id", names[i]);
        json_array_append_new(want, e);
    }
    int pos = two[0] - '0'; /* after "N", before "N+1" */
    json_array_insert(want, (size_t)pos, json_array_get(want, 9));
    json_array_remove(want, 10);
    char *w = json_dumps(want, JSON_COMPACT);
    list_is(p, w);
    free(w);
    json_decref(want);

    /* All of 1..99 taken: three digits. */
    for (int i = 10; i <= 99; i++) {
        if (i == atoi(two))
            continue;
        snprintf(side, sizeof(side), "t%d", i);
        claim(side_conn(side), F("%d", i));
    }
    assert_int_equal(st().nameplates, 99);
    const char *three = allocate(side_conn("w"));
    assert_int_equal(strlen(three), 3);
    assert_true(atoi(three) >= 100 && atoi(three) <= 999);
}

static void test_allocate_random(void **state)
{
    (void)state;
    int counts[10] = {0};
    for (int i = 0; i < 50; i++) {
        mb_config_t cfg;
        mb_config_init(&cfg);
        restart_with(&cfg);
        const char *name = allocate(side_conn("a"));
        assert_int_equal(strlen(name), 1);
        assert_true(name[0] >= '1' && name[0] <= '9');
        counts[name[0] - '0']++;
    }
    /* Uniform over nine: 50 draws cover at least four values except with
     * probability below 1e-20; always the lowest (or any fixed one) fails. */
    int distinct = 0, max = 0;
    for (int d = 1; d <= 9; d++) {
        distinct += counts[d] > 0;
        max = counts[d] > max ? counts[d] : max;
    }
    if (distinct < 4 || max > 25)
        fail_msg("first allocation over 50 servers: %d %d %d %d %d %d %d %d %d", counts[1],
                 counts[2], counts[3], counts[4], counts[5], counts[6], counts[7], counts[8],
                 counts[9]);
}

/* ---- claim, open, add --------------------------------------------------------------- */

static void test_claim_open_add_replay(void **state)
{
    (void)state;
    peer_t *a = side_conn("a"), *b = side_conn("b");
    const char *mb = claim(a, "4");
    assert_true(is_mailbox_id(mb));
    H.now = T0 + 0.5;
    assert_string_equal(claim(b, "4"), mb);
    none(a);
    /* Another nameplate, another mailbox. */
    peer_t *c = side_conn("c");
    const char *other = claim(c, "5");
    assert_true(is_mailbox_id(other));
    assert_string_not_equal(other, mb);

    open_mb(a, mb);
    open_mb(b, mb);
    none(a); /* nothing stored yet */
    none(b);
    assert_int_equal(st().listeners, 2);

    /* An add goes to every listener, the sender included. */
    H.now = T0 + 1;
    add(a, "pake", "aa01", "\"m1\"");
    expect_msg(a, "a", "pake", "aa01", T0 + 1, "\"m1\"");
    expect_msg(b, "a", "pake", "aa01", T0 + 1, "\"m1\"");
    none(a);
    none(b);
    none(c); /* not a listener */
    H.now = T0 + 2;
    add(b, "pake", "bb02", NULL);
    expect_msg(b, "b", "pake", "bb02", T0 + 2, "null");
    expect_msg(a, "b", "pake", "bb02", T0 + 2, "null");
    H.now = T0 + 3;
    add(a, "version", "cc03", "{\"n\":[5]}");
    expect_msg(a, "a", "version", "cc03", T0 + 3, "{\"n\":[5]}");
    expect_msg(b, "a", "version", "cc03", T0 + 3, "{\"n\":[5]}");
    none(a);
    none(b);

    /* A second connection of side a opens: all messages, in order, with
     * their own server_rx and ids (server_tx is now). */
    H.now = T0 + 4;
    peer_t *a2 = side_conn("a");
    open_mb(a2, mb);
    expect_msg(a2, "a", "pake", "aa01", T0 + 1, "\"m1\"");
    expect_msg(a2, "b", "pake", "bb02", T0 + 2, "null");
    expect_msg(a2, "a", "version", "cc03", T0 + 3, "{\"n\":[5]}");
    none(a2);
    none(a);
    none(b);
    mb_stats_t s = st();
    assert_int_equal(s.listeners, 3);
    assert_int_equal(s.connections, 4);
    assert_int_equal(s.mailboxes, 2);
    assert_int_equal(s.nameplates, 2);
    assert_int_equal(s.messages, 3);
    assert_int_equal(s.apps, 1);
    /* At least the sides, phases and bodies (3 + 15 + 12 bytes). */
    assert_true(s.stored_bytes >= 30);
    assert_int_equal(s.errors, 0);

    /* Each listener gets later adds once. */
    add(a2, "0", "dd", NULL);
    expect_msg(a2, "a", "0", "dd", T0 + 4, "null");
    expect_msg(a, "a", "0", "dd", T0 + 4, "null");
    expect_msg(b, "a", "0", "dd", T0 + 4, "null");
    none(a);
    none(b);
    none(a2);
}

/* Bodies, phases and sides are echoed exactly, whatever they hold. */
static void test_add_echoes_exactly(void **state)
{
    (void)state;
    peer_t *a = side_conn("a");
    open_mb(a, "mbx");
    cmd(a,
        "{\"type\":\"add\",\"phase\":\"ph\\u00e9\\n\",\"body\":\"\\\"q\\\" \\\\ \\ud83d\\ude00\","
        "\"id\":1.5,\"extra\":true}");
    expect_msg(a, "a", "ph\xc3\xa9\n", "\"q\" \\ \xf0\x9f\x98\x80", T0, "1.5");
    none(a);
}

static void test_crowded_not_sticky(void **state)
{
    (void)state;
    peer_t *a = side_conn("a"), *b = side_conn("b");
    const char *mb = claim(a, "4");
    assert_string_equal(claim(b, "4"), mb);
    open_mb(a, mb);
    open_mb(b, mb);
    H.now = T0 + 1;
    add(a, "pake", "aa", "\"1\"");
    expect_msg(a, "a", "pake", "aa", T0 + 1, "\"1\"");
    expect_msg(b, "a", "pake", "aa", T0 + 1, "\"1\"");
    mb_stats_t before = st();
    int mark = H.nrows;

    /* A third side: refused at claim and at open. */
    H.now = T0 + 2;
    peer_t *c = side_conn("c");
    cmd_err(c, "{\"type\":\"claim\",\"nameplate\":\"4\",\"id\":\"c3\"}", "crowded");
    peer_t *c2 = side_conn("c");
    cmd_err(c2, F("{\"type\":\"open\",\"mailbox\":\"%s\"}", mb), "crowded");
    none(a);
    none(b);
    /* Not recorded: no row names side c. */
    assert_false(rows_mention("c", mark));
    mb_stats_t after = st();
    assert_int_equal(after.listeners, before.listeners);
    assert_int_equal(after.mailboxes, before.mailboxes);
    assert_int_equal(after.nameplates, before.nameplates);
    assert_int_equal(after.messages, before.messages);
    /* c2 is not listening: an add is refused. */
    cmd_err(c2, "{\"type\":\"add\",\"phase\":\"x\",\"body\":\"y\"}",
            "must open mailbox before adding");

    /* The real pair reconnects and carries on. */
    H.now = T0 + 3;
    drop(a);
    drop(b);
    peer_t *a2 = side_conn("a"), *b2 = side_conn("b");
    assert_string_equal(claim(a2, "4"), mb);
    assert_string_equal(claim(b2, "4"), mb);
    open_mb(a2, mb);
    expect_msg(a2, "a", "pake", "aa", T0 + 1, "\"1\"");
    none(a2);
    open_mb(b2, mb);
    expect_msg(b2, "a", "pake", "aa", T0 + 1, "\"1\"");
    none(b2);
    add(b2, "pake", "bb", "\"2\"");
    expect_msg(b2, "b", "pake", "bb", T0 + 3, "\"2\"");
    expect_msg(a2, "b", "pake", "bb", T0 + 3, "\"2\"");
    assert_int_equal(st().errors, before.errors + 3);

    /* And an intruder is refused again. */
    peer_t *c3 = side_conn("c");
    cmd_err(c3, "{\"type\":\"claim\",\"nameplate\":\"4\"}", "crowded");
    peer_t *c4 = side_conn("c");
    cmd_err(c4, F("{\"type\":\"open\",\"mailbox\":\"%s\"}", mb), "crowded");
    /* Also for a mailbox opened directly by two sides. */
    peer_t *x = side_conn("x"), *y = side_conn("y"), *z = side_conn("z");
    open_mb(x, "direct");
    open_mb(y, "direct");
    cmd_err(z, "{\"type\":\"open\",\"mailbox\":\"direct\"}", "crowded");
    none(x);
    none(y);
    assert_false(rows_mention("z", mark));
    assert_false(rows_mention("c", mark));
}

static void test_reclaimed(void **state)
{
    (void)state;
    peer_t *a = side_conn("a"), *b = side_conn("b");
    const char *mb = claim(a, "4");
    claim(b, "4");
    release(a, "4");
    list_is(b, "[{\"id\":\"4\"}]"); /* b still holds it */
    peer_t *a2 = side_conn("a");
    cmd_err(a2, "{\"type\":\"claim\",\"nameplate\":\"4\",\"id\":\"again\"}", "reclaimed");
    /* b's claim is untouched, and a re-claim by b is idempotent. */
    peer_t *b2 = side_conn("b");
    assert_string_equal(claim(b2, "4"), mb);
    release(b2, "4");
    list_is(b2, "[]");
    /* Once the nameplate is gone, its number is free for anyone. */
    peer_t *a3 = side_conn("a");
    const char *mb2 = claim(a3, "4");
    assert_string_not_equal(mb2, mb);
}

static void test_release_close_delete(void **state)
{
    (void)state;
    peer_t *a = side_conn("a"), *b = side_conn("b");
    const char *mb = claim(a, "4");
    claim(b, "4");
    open_mb(a, mb);
    open_mb(b, mb);
    add(a, "pake", "aa", NULL);
    expect_msg(a, "a", "pake", "aa", T0, "null");
    expect_msg(b, "a", "pake", "aa", T0, "null");

    release(a, NULL); /* the claimed one */
    list_is(a, "[{\"id\":\"4\"}]");
    assert_int_equal(st().nameplates, 1);
    release(b, "4");
    list_is(a, "[]");
    assert_int_equal(st().nameplates, 0);
    assert_int_equal(st().mailboxes, 1); /* the mailbox lives on */
    add(b, "version", "bb", NULL);
    expect_msg(b, "b", "version", "bb", T0, "null");
    expect_msg(a, "b", "version", "bb", T0, "null");

    close_mb(a, mb, "happy");
    mb_stats_t s = st();
    assert_int_equal(s.mailboxes, 1);
    assert_int_equal(s.messages, 2);
    assert_int_equal(s.listeners, 1);
    /* a no longer listens. */
    add(b, "0", "cc", NULL);
    expect_msg(b, "b", "0", "cc", T0, "null");
    none(a);
    close_mb(b, NULL, "happy");
    s = st();
    assert_int_equal(s.mailboxes, 0);
    assert_int_equal(s.messages, 0);
    assert_int_equal(s.stored_bytes, 0);
    assert_int_equal(s.listeners, 0);
    assert_int_equal(s.nameplates, 0);
    assert_int_equal(s.apps, 0);
    assert_int_equal(count_op(MB_OP_MAILBOX_DEL, 0), 1);
    assert_int_equal(count_op(MB_OP_NAMEPLATE_DEL, 0), 1);
    none(a);
    none(b);

    /* Closing a mailbox that is not there still answers closed, and leaves
     * nothing behind. */
    peer_t *c = side_conn("c");
    close_mb(c, "nosuchmailbox", "lonely");
    none(c);
    s = st();
    assert_int_equal(s.mailboxes, 0);
    assert_int_equal(s.apps, 0);
    /* Releasing a nameplate that is not there still answers released. */
    peer_t *d = side_conn("d");
    release(d, "77");
    assert_int_equal(st().nameplates, 0);
    assert_int_equal(st().errors, 0);
}

/* A client that loses its connection reconnects with the same side and
 * re-sends what it has not seen answered; nothing is lost or doubled. */
static void test_reconnect(void **state)
{
    (void)state;
    peer_t *a = side_conn("a"), *b = side_conn("b");
    const char *mb = claim(a, "4");
    claim(b, "4");
    open_mb(a, mb);
    open_mb(b, mb);
    H.now = T0 + 1;
    add(a, "pake", "aa", "\"a1\"");
    expect_msg(a, "a", "pake", "aa", T0 + 1, "\"a1\"");
    expect_msg(b, "a", "pake", "aa", T0 + 1, "\"a1\"");

    /* a's connection goes away; b keeps talking to the mailbox. */
    drop(a);
    assert_int_equal(st().listeners, 1);
    assert_int_equal(st().connections, 1);
    H.now = T0 + 2;
    add(b, "pake", "bb", "\"b1\"");
    expect_msg(b, "b", "pake", "bb", T0 + 2, "\"b1\"");
    none(b);

    /* a comes back: bind, claim, open (replay of both), then re-sends the
     * add it did not see echoed. */
    H.now = T0 + 3;
    peer_t *a2 = side_conn("a");
    assert_string_equal(claim(a2, "4"), mb);
    open_mb(a2, mb);
    expect_msg(a2, "a", "pake", "aa", T0 + 1, "\"a1\"");
    expect_msg(a2, "b", "pake", "bb", T0 + 2, "\"b1\"");
    none(a2);
    add(a2, "version", "av", "\"a2\"");
    expect_msg(a2, "a", "version", "av", T0 + 3, "\"a2\"");
    expect_msg(b, "a", "version", "av", T0 + 3, "\"a2\"");
    release(a2, "4");
    assert_int_equal(st().messages, 3);

    /* a drops again before seeing `closed`; the new connection re-sends
     * release (already done: still released) and close without opening. */
    close_mb(a2, mb, "happy");
    drop(a2);
    peer_t *a3 = side_conn("a");
    release(a3, "4");
    close_mb(a3, mb, "happy");
    none(a3);
    mb_stats_t s = st();
    assert_int_equal(s.mailboxes, 1);
    assert_int_equal(s.messages, 3); /* b has not closed: all kept */
    assert_int_equal(s.nameplates, 1);

    /* b finishes. */
    release(b, "4");
    close_mb(b, mb, "happy");
    s = st();
    assert_int_equal(s.nameplates, 0);
    assert_int_equal(s.mailboxes, 0);
    assert_int_equal(s.messages, 0);
    assert_int_equal(s.stored_bytes, 0);
    assert_int_equal(s.errors, 0);
    none(b);
}

/* A connection still listening when its mailbox is deleted under it (its
 * side closed from a newer connection, the half-open old one not yet gone):
 * it is simply no longer subscribed. */
static void test_mailbox_deleted_under_listener(void **state)
{
    (void)state;
    peer_t *a = side_conn("a"), *b = side_conn("b");
    open_mb(a, "mbx");
    open_mb(b, "mbx");
    peer_t *a2 = side_conn("a");
    close_mb(a2, "mbx", "happy");
    assert_int_equal(st().listeners, 2);
    close_mb(b, "mbx", "happy");
    mb_stats_t s = st();
    assert_int_equal(s.mailboxes, 0);
    assert_int_equal(s.listeners, 0);
    none(a);
    cmd_err(a, "{\"type\":\"add\",\"phase\":\"p\",\"body\":\"b\"}",
            "must open mailbox before adding");
    /* A new mailbox of the same id is not a's. */
    peer_t *c = side_conn("c");
    open_mb(c, "mbx");
    add(c, "p", "c", NULL);
    expect_msg(c, "c", "p", "c", T0, "null");
    none(a);
    /* a's close (of what is now another mailbox of that id) answers closed
     * and leaves the mailbox open for c. */
    close_mb(a, NULL, "happy");
    assert_int_equal(st().mailboxes, 1);
    assert_int_equal(st().messages, 1);
    drop(a);
    assert_int_equal(st().listeners, 1);
}

static void test_open_once(void **state)
{
    (void)state;
    peer_t *a = side_conn("a");
    open_mb(a, "mbx");
    close_mb(a, "mbx", NULL);
    assert_int_equal(st().mailboxes, 0);
    cmd_err(a, "{\"type\":\"open\",\"mailbox\":\"mbx\"}", "only one open per connection");
    cmd_err(a, "{\"type\":\"open\",\"mailbox\":\"other\"}", "only one open per connection");
    assert_int_equal(st().mailboxes, 0);
    assert_int_equal(st().listeners, 0);
    cmd_err(a, "{\"type\":\"add\",\"phase\":\"p\",\"body\":\"b\"}",
            "must open mailbox before adding");
    cmd_err(a, "{\"type\":\"close\",\"mailbox\":\"mbx\"}", "only one close per connection");
}

/* Apps are separate namespaces for nameplates and mailbox ids. */
static void test_apps_scoped(void **state)
{
    (void)state;
    peer_t *a = side_conn("a"), *b = side_conn("b");
    peer_t *x = conn(), *y = conn();
    bind_as(x, "other-app", "a");
    bind_as(y, "other-app", "b");
    const char *m1 = claim(a, "4");
    claim(b, "4");
    const char *m2 = claim(x, "4"); /* not crowded: another app */
    assert_string_not_equal(m1, m2);
    claim(y, "4");
    list_is(a, "[{\"id\":\"4\"}]");
    assert_int_equal(st().apps, 2);
    assert_int_equal(st().nameplates, 2);
    /* The other app opening this app's mailbox id gets a mailbox of its own. */
    peer_t *z = conn();
    bind_as(z, "other-app", "z");
    open_mb(z, m1);
    none(z);
    open_mb(a, m1);
    add(a, "p", "secret", NULL);
    expect_msg(a, "a", "p", "secret", T0, "null");
    none(z);
    assert_int_equal(st().mailboxes, 3);
    close_mb(z, m1, NULL);
    assert_int_equal(st().mailboxes, 2);
    assert_int_equal(st().messages, 1);
}

static void test_list_sorted_and_disallowed(void **state)
{
    (void)state;
    peer_t *p = side_conn("a");
    list_is(p, "[]");
    claim(side_conn("b"), "10");
    claim(side_conn("c"), "9");
    claim(side_conn("d"), "2");
    claim(side_conn("e"), "word");
    list_is(p, "[{\"id\":\"10\"},{\"id\":\"2\"},{\"id\":\"9\"},{\"id\":\"word\"}]");

    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.disallow_list = 1;
    restart_with(&cfg);
    p = side_conn("a");
    claim(side_conn("b"), "3");
    list_is(p, "[]");
}

/* ---- limits ------------------------------------------------------------------------ */

static void test_limit_messages(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.max_messages = 3;
    restart_with(&cfg);
    peer_t *a = side_conn("a"), *b = side_conn("b");
    open_mb(a, "mbx");
    open_mb(b, "mbx");
    for (int i = 0; i < 3; i++) {
        add(a, F("p%d", i), "x", NULL);
        expect_msg(a, "a", F("p%d", i), "x", T0, "null");
        expect_msg(b, "a", F("p%d", i), "x", T0, "null");
    }
    mb_stats_t before = st();
    int mark = H.nrows;
    cmd_err(a, "{\"type\":\"add\",\"phase\":\"p3\",\"body\":\"x\"}", "mailbox is full");
    cmd_err(b, "{\"type\":\"add\",\"phase\":\"q\",\"body\":\"y\",\"id\":5}", "mailbox is full");
    none(a);
    none(b);
    assert_int_equal(H.nrows, mark);
    assert_int_equal(st().messages, before.messages);
    assert_int_equal(st().stored_bytes, before.stored_bytes);
    /* Another mailbox has its own count. */
    peer_t *c = side_conn("c");
    open_mb(c, "other");
    add(c, "p", "x", NULL);
    expect_msg(c, "c", "p", "x", T0, "null");
    assert_int_equal(st().messages, 4);
}

static void test_limit_stored_bytes(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.max_stored_bytes = 1000;
    restart_with(&cfg);
    const char *big = rep('b', 600);
    peer_t *a = side_conn("a"), *b = side_conn("b");
    open_mb(a, "mbx");
    open_mb(b, "mbx");
    add(a, "1", big, NULL);
    expect_msg(a, "a", "1", big, T0, "null");
    expect_msg(b, "a", "1", big, T0, "null");
    mb_stats_t before = st();
    assert_true(before.stored_bytes >= 600 && before.stored_bytes <= 1000);
    int mark = H.nrows;
    cmd_err(b, F("{\"type\":\"add\",\"phase\":\"2\",\"body\":\"%s\"}", big), "server is full");
    none(a);
    assert_int_equal(H.nrows, mark);
    assert_int_equal(st().messages, before.messages);
    assert_int_equal(st().stored_bytes, before.stored_bytes);
    /* The limit is on all mailboxes together. */
    peer_t *c = side_conn("c");
    open_mb(c, "other");
    cmd_err(c, F("{\"type\":\"add\",\"phase\":\"2\",\"body\":\"%s\"}", big), "server is full");
    /* What fits still goes in. */
    add(b, "2", "small", NULL);
    expect_msg(b, "b", "2", "small", T0, "null");
    expect_msg(a, "b", "2", "small", T0, "null");
    assert_int_equal(st().messages, 2);
    /* Deleting the mailbox gives the room back. */
    close_mb(a, NULL, NULL);
    close_mb(b, NULL, NULL);
    assert_int_equal(st().stored_bytes, 0);
    add(c, "3", big, NULL);
    expect_msg(c, "c", "3", big, T0, "null");
}

static void test_limit_mailboxes(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.max_mailboxes = 2;
    restart_with(&cfg);
    peer_t *a = side_conn("a"), *b = side_conn("b");
    const char *m1 = claim(a, "1");
    const char *m2 = claim(b, "2");
    mb_stats_t before = st();
    assert_int_equal(before.mailboxes, 2);
    int mark = H.nrows;

    cmd_err(side_conn("c"), "{\"type\":\"claim\",\"nameplate\":\"3\"}", "server is full");
    cmd_err(side_conn("d"), "{\"type\":\"open\",\"mailbox\":\"newbox\"}", "server is full");
    cmd_err(side_conn("e"), "{\"type\":\"allocate\"}", "server is full");
    peer_t *o = conn();
    bind_as(o, "other-app", "f");
    cmd_err(o, "{\"type\":\"claim\",\"nameplate\":\"1\"}", "server is full");

    /* Nothing changed. */
    mb_stats_t after = st();
    assert_int_equal(H.nrows, mark);
    assert_int_equal(after.mailboxes, before.mailboxes);
    assert_int_equal(after.nameplates, before.nameplates);
    assert_int_equal(after.apps, before.apps);
    assert_int_equal(after.listeners, before.listeners);
    list_is(a, "[{\"id\":\"1\"},{\"id\":\"2\"}]");

    /* Existing mailboxes are still usable. */
    peer_t *h = side_conn("h");
    assert_string_equal(claim(h, "1"), m1);
    open_mb(h, m1);
    none(h);
    /* A deleted mailbox makes room. */
    open_mb(b, m2);
    close_mb(b, NULL, NULL);
    assert_int_equal(st().mailboxes, 1);
    peer_t *d2 = side_conn("d");
    open_mb(d2, "newbox");
    none(d2);
    assert_int_equal(st().mailboxes, 2);
}

/* Closing a mailbox that is not there answers `closed` (wormhole.md 1.6; a
 * reconnecting client re-sends its close), also when no new mailbox could be
 * made: the close leaves none behind anyway. */
static void test_close_at_mailbox_limit(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.max_mailboxes = 1;
    restart_with(&cfg);
    open_mb(side_conn("a"), "mbx");
    peer_t *b = side_conn("b");
    int mark = H.nrows;
    put(b, "{\"type\":\"close\",\"mailbox\":\"gone\",\"mood\":\"happy\"}");
    take_type(b, "ack");
    json_t *o = take(b);
    if (strcmp(jstr(o, "type"), "closed") != 0)
        fail_msg("close of a mailbox that is not there, at max_mailboxes: got %s", dump(o));
    assert_int_equal(st().mailboxes, 1);
    assert_false(rows_mention("gone", mark)); /* no channel row made and deleted */
    none(b);
}

/* ---- pruning and usage ----------------------------------------------------------------- */

static void test_prune(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.expiry_s = 600;
    cfg.usage = 1;
    restart_with(&cfg);
    /* a: nameplate 1, listening to its mailbox. */
    peer_t *a = side_conn("a");
    const char *m1 = claim(a, "1");
    open_mb(a, m1);
    /* b: nameplate 2, one message, then gone. */
    peer_t *b = side_conn("b");
    const char *m2 = claim(b, "2");
    open_mb(b, m2);
    add(b, "pake", "bb", NULL);
    expect_msg(b, "b", "pake", "bb", T0, "null");
    drop(b);
    /* d: nameplate 3, mailbox closed (deleted), never released. */
    peer_t *d = side_conn("d");
    const char *m3 = claim(d, "3");
    open_mb(d, m3);
    close_mb(d, m3, "lonely");
    /* e: a mailbox opened by id, then gone. */
    peer_t *e = side_conn("e");
    open_mb(e, "direct");
    drop(e);
    mb_stats_t s = st();
    assert_int_equal(s.nameplates, 3);
    assert_int_equal(s.mailboxes, 3);
    assert_int_equal(s.messages, 1);

    /* Not old yet: nothing goes. */
    H.now = T0 + 100;
    mb_core_prune(H.core, H.now);
    s = st();
    assert_int_equal(s.nameplates, 3);
    assert_int_equal(s.mailboxes, 3);
    assert_int_equal(count_op(MB_OP_USAGE_CURRENT, 0), 1);

    /* Past expiry: the idle ones go, with their nameplates; the one with a
     * listener is refreshed and stays. */
    H.now = T0 + 700;
    int mark = H.nrows;
    mb_core_prune(H.core, H.now);
    s = st();
    assert_int_equal(s.nameplates, 1);
    assert_int_equal(s.mailboxes, 1);
    assert_int_equal(s.messages, 0);
    assert_int_equal(s.stored_bytes, 0);
    assert_int_equal(s.listeners, 1);
    list_is(a, "[{\"id\":\"1\"}]");
    const row_t *touch = row_with(MB_OP_MAILBOX_TOUCH, 1, m1, mark);
    assert_true(rreal(touch, 2) == T0 + 700);
    row_with(MB_OP_MAILBOX_DEL, 1, m2, mark);
    row_with(MB_OP_MAILBOX_DEL, 1, "direct", mark);
    row_with(MB_OP_NAMEPLATE_DEL, 1, "2", mark);
    row_with(MB_OP_NAMEPLATE_DEL, 1, "3", mark);
    assert_int_equal(count_op(MB_OP_MAILBOX_DEL, mark), 2);
    assert_int_equal(count_op(MB_OP_NAMEPLATE_DEL, mark), 2);
    assert_int_equal(count_op(MB_OP_USAGE_NAMEPLATE, mark), 2);
    assert_int_equal(count_op(MB_OP_USAGE_MAILBOX, mark), 2);
    for (int i = mark; (i = row_next(MB_OP_USAGE_NAMEPLATE, i)) >= 0; i++)
        assert_string_equal(rtext(row(i), 4), "pruney");
    for (int i = mark; (i = row_next(MB_OP_USAGE_MAILBOX, i)) >= 0; i++)
        assert_string_equal(rtext(row(i), 5), "pruney");
    /* Each usage row before the deletion it describes; the current row is
     * rewritten last (delete, then insert), counting listeners. */
    assert_true(row_next(MB_OP_USAGE_MAILBOX, mark) < row_next(MB_OP_MAILBOX_DEL, mark));
    assert_true(row_next(MB_OP_USAGE_NAMEPLATE, mark) < row_next(MB_OP_NAMEPLATE_DEL, mark));
    assert_int_equal(row(H.nrows - 2)->op, MB_OP_USAGE_CURRENT_DEL);
    const row_t *cur = row(H.nrows - 1);
    assert_int_equal(cur->op, MB_OP_USAGE_CURRENT);
    assert_true(rreal(cur, 1) == T0 + 700);
    assert_true(rnull(cur, 2)); /* no blurring */
    assert_int_equal(rowint(cur, 3), 1);

    /* a goes; its mailbox was refreshed at T0+700, so it lives until
     * T0+1300. */
    H.now = T0 + 800;
    drop(a);
    H.now = T0 + 1200;
    mb_core_prune(H.core, H.now);
    assert_int_equal(st().mailboxes, 1);
    assert_int_equal(st().nameplates, 1);
    H.now = T0 + 1301;
    mb_core_prune(H.core, H.now);
    s = st();
    assert_int_equal(s.mailboxes, 0);
    assert_int_equal(s.nameplates, 0);
    assert_int_equal(s.apps, 0);
    assert_int_equal(s.listeners, 0);
    assert_int_equal(s.messages, 0);
    assert_int_equal(s.stored_bytes, 0);
}

/* The usage `current` row says when the server started (`rebooted`) and
 * when it was last rewritten (`updated`): the first must not move. */
static void test_prune_current_row(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.usage = 1;
    cfg.blur_usage = 60;
    restart_with(&cfg);
    peer_t *a = side_conn("a");
    open_mb(a, "mbx");
    H.now = T0 + 300;
    mb_core_prune(H.core, H.now);
    const row_t *c1 = row(row_next(MB_OP_USAGE_CURRENT, 0));
    assert_true(rreal(c1, 1) == T0 + 300);
    assert_int_equal(rowint(c1, 2), 60);
    assert_int_equal(rowint(c1, 3), 1);
    double rebooted = rreal(c1, 0);
    H.now = T0 + 600;
    mb_core_prune(H.core, H.now);
    const row_t *c2 = row(row_next(MB_OP_USAGE_CURRENT, row_next(MB_OP_USAGE_CURRENT, 0) + 1));
    assert_true(rreal(c2, 1) == T0 + 600);
    if (rreal(c2, 0) != rebooted || rebooted > T0 + 300)
        fail_msg("usage current.rebooted moved with the clock: %.17g at the first prune (T0+300),"
                 " %.17g at the second (T0+600); it should stay the server's start time",
                 rebooted, rreal(c2, 0));
}

static void test_usage_happy(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.usage = 1;
    restart_with(&cfg);
    peer_t *a = conn(), *b = conn();
    cmd(a, "{\"type\":\"bind\",\"appid\":\"" APP "\",\"side\":\"a\","
           "\"client_version\":[\"python\",\"0.12.0\"]}");
    H.now = T0 + 1;
    bind_as(b, APP, "b");
    assert_int_equal(count_op(MB_OP_USAGE_CLIENT, 0), 2);
    const row_t *ca = row(row_next(MB_OP_USAGE_CLIENT, 0));
    assert_string_equal(rtext(ca, 0), APP);
    assert_string_equal(rtext(ca, 1), "a");
    assert_true(rreal(ca, 2) == T0);
    assert_string_equal(rtext(ca, 3), "python");
    assert_string_equal(rtext(ca, 4), "0.12.0");
    const row_t *cb = row(row_next(MB_OP_USAGE_CLIENT, row_next(MB_OP_USAGE_CLIENT, 0) + 1));
    assert_string_equal(rtext(cb, 1), "b");
    assert_true(rreal(cb, 2) == T0 + 1);
    assert_true(rnull(cb, 3) && rnull(cb, 4));

    H.now = T0 + 2;
    const char *name = allocate(a);
    const char *mb = claim(a, name);
    H.now = T0 + 5;
    assert_string_equal(claim(b, name), mb);
    open_mb(a, mb);
    open_mb(b, mb);
    add(a, "pake", "aa", NULL);
    expect_msg(a, "a", "pake", "aa", T0 + 5, "null");
    expect_msg(b, "a", "pake", "aa", T0 + 5, "null");
    add(b, "pake", "bb", NULL);
    expect_msg(b, "b", "pake", "bb", T0 + 5, "null");
    expect_msg(a, "b", "pake", "bb", T0 + 5, "null");
    H.now = T0 + 10;
    release(a, name);
    assert_int_equal(count_op(MB_OP_USAGE_NAMEPLATE, 0), 0);
    H.now = T0 + 12;
    int mark = H.nrows;
    release(b, name);
    int u = row_next(MB_OP_USAGE_NAMEPLATE, mark);
    assert_true(u >= 0 && u < row_next(MB_OP_NAMEPLATE_DEL, mark));
    const row_t *un = row(u);
    assert_string_equal(rtext(un, 0), APP);
    assert_true(rreal(un, 1) == T0 + 2); /* started: the first claim */
    assert_true(rreal(un, 2) == 3);      /* waiting: the second claim after the first */
    assert_true(rreal(un, 3) == 10);     /* total */
    assert_string_equal(rtext(un, 4), "happy");

    H.now = T0 + 20;
    close_mb(a, mb, "happy");
    assert_int_equal(count_op(MB_OP_USAGE_MAILBOX, 0), 0);
    H.now = T0 + 21;
    mark = H.nrows;
    close_mb(b, mb, "happy");
    u = row_next(MB_OP_USAGE_MAILBOX, mark);
    assert_true(u >= 0 && u < row_next(MB_OP_MAILBOX_DEL, mark));
    const row_t *um = row(u);
    assert_string_equal(rtext(um, 0), APP);
    assert_int_equal(rowint(um, 1), 1); /* for a nameplate */
    assert_true(rreal(um, 2) == T0 + 2);
    assert_true(rreal(um, 3) == 19); /* total */
    assert_true(rreal(um, 4) == 3);  /* waiting */
    assert_string_equal(rtext(um, 5), "happy");
    /* A reconnect is another client_versions row. */
    bind_as(conn(), APP, "a");
    assert_int_equal(count_op(MB_OP_USAGE_CLIENT, 0), 3);
}

static void test_usage_blurred(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.usage = 1;
    cfg.blur_usage = 3600;
    restart_with(&cfg);
    const double hour = 1699999200; /* T0 rounded down to the hour */
    peer_t *a = side_conn("a");
    assert_true(rreal(row(row_next(MB_OP_USAGE_CLIENT, 0)), 2) == hour);
    claim(a, "4");
    H.now = T0 + 30;
    release(a, "4");
    const row_t *un = row(row_next(MB_OP_USAGE_NAMEPLATE, 0));
    assert_true(rreal(un, 1) == hour);
    assert_true(rnull(un, 2));       /* one side: no waiting time */
    assert_true(rreal(un, 3) == 30); /* durations are not blurred */
    assert_string_equal(rtext(un, 4), "lonely");
}

/* The mailbox usage result when two sides (or one) close with these moods. */
static const char *mailbox_result(const char *mood_a, const char *mood_b, int two)
{
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.usage = 1;
    restart_with(&cfg);
    peer_t *a = side_conn("a"), *b = two ? side_conn("b") : NULL;
    open_mb(a, "mbx");
    if (b != NULL)
        open_mb(b, "mbx");
    close_mb(a, NULL, mood_a);
    if (b != NULL)
        close_mb(b, NULL, mood_b);
    assert_int_equal(count_op(MB_OP_USAGE_MAILBOX, 0), 1);
    const row_t *u = row(row_next(MB_OP_USAGE_MAILBOX, 0));
    assert_int_equal(rowint(u, 1), 0); /* opened by id, not for a nameplate */
    return F("%s", rtext(u, 5));
}

static void test_usage_moods(void **state)
{
    (void)state;
    assert_string_equal(mailbox_result("happy", "happy", 1), "happy");
    assert_string_equal(mailbox_result(NULL, NULL, 1), "happy");
    assert_string_equal(mailbox_result("lonely", "happy", 1), "lonely");
    assert_string_equal(mailbox_result("happy", "errory", 1), "errory");
    assert_string_equal(mailbox_result("lonely", "errory", 1), "errory");
    assert_string_equal(mailbox_result("errory", "scary", 1), "scary");
    assert_string_equal(mailbox_result("scary", "lonely", 1), "scary");
    assert_string_equal(mailbox_result("unwelcome", "happy", 1), "happy");
    assert_string_equal(mailbox_result("happy", NULL, 0), "lonely");

    /* Closing a mailbox that is not there: re-made with this side, lonely. */
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.usage = 1;
    restart_with(&cfg);
    close_mb(side_conn("a"), "nosuch", "happy");
    assert_string_equal(rtext(row(row_next(MB_OP_USAGE_MAILBOX, 0)), 5), "lonely");

    /* A crowded mailbox and nameplate say so, whatever the moods. */
    restart_with(&cfg);
    peer_t *a = side_conn("a"), *b = side_conn("b");
    const char *mb = claim(a, "6");
    claim(b, "6");
    cmd_err(side_conn("c"), "{\"type\":\"claim\",\"nameplate\":\"6\"}", "crowded");
    release(a, "6");
    release(b, "6");
    assert_string_equal(rtext(row(row_next(MB_OP_USAGE_NAMEPLATE, 0)), 4), "crowded");
    close_mb(a, mb, "happy");
    close_mb(b, mb, "happy");
    assert_string_equal(rtext(row(row_next(MB_OP_USAGE_MAILBOX, 0)), 5), "crowded");

    /* Usage off: no usage rows at all. */
    mb_config_init(&cfg);
    restart_with(&cfg);
    a = side_conn("a");
    b = side_conn("b");
    mb = claim(a, "6");
    claim(b, "6");
    release(a, "6");
    release(b, "6");
    close_mb(a, mb, "happy");
    close_mb(b, mb, "happy");
    H.now = T0 + 10000;
    mb_core_prune(H.core, H.now);
    for (int i = 0; i < H.nrows; i++)
        assert_true(H.rows[i].op < MB_OP_USAGE_NAMEPLATE);
    assert_true(H.nrows > 0);
}

/* The rows a claim, an add, a close and a release write: what a restarted
 * server reads back. */
static void test_records(void **state)
{
    (void)state;
    peer_t *a = side_conn("a");
    int mark = H.nrows;
    const char *mb = claim(a, "4");
    int mp = row_next(MB_OP_MAILBOX_PUT, mark), np = row_next(MB_OP_NAMEPLATE_PUT, mark),
        ns = row_next(MB_OP_NPSIDE_PUT, mark), ms = row_next(MB_OP_MBSIDE_PUT, mark);
    assert_true(mp >= 0 && np >= 0 && ns >= 0 && ms >= 0);
    /* Parents before children. */
    assert_true(mp < np && np < ns && mp < ms);
    const row_t *r = row(mp);
    assert_string_equal(rtext(r, 0), APP);
    assert_string_equal(rtext(r, 1), mb);
    assert_int_equal(rowint(r, 2), 1);
    assert_true(rreal(r, 3) == T0);
    assert_int_equal(rowint(r, 4), 0);
    r = row(np);
    assert_string_equal(rtext(r, 1), "4");
    assert_string_equal(rtext(r, 2), mb);
    assert_int_equal(rowint(r, 3), 0);
    r = row(ns);
    assert_string_equal(rtext(r, 1), "4");
    assert_string_equal(rtext(r, 2), "a");
    assert_int_equal(rowint(r, 3), 1);
    assert_true(rreal(r, 4) == T0);
    r = row(ms);
    assert_string_equal(rtext(r, 1), mb);
    assert_string_equal(rtext(r, 2), "a");
    assert_int_equal(rowint(r, 3), 1);
    assert_true(rnull(r, 4));
    assert_true(rreal(r, 5) == T0);

    open_mb(a, mb);
    H.now = T0 + 1;
    mark = H.nrows;
    add(a, "pake", "aa", "\"m1\"");
    expect_msg(a, "a", "pake", "aa", T0 + 1, "\"m1\"");
    add(a, "version", "bb", NULL);
    expect_msg(a, "a", "version", "bb", T0 + 1, "null");
    add(a, "0", "cc", "{\"x\":5}");
    expect_msg(a, "a", "0", "cc", T0 + 1, "{\"x\":5}");
    int i1 = row_next(MB_OP_MESSAGE_ADD, mark), i2 = row_next(MB_OP_MESSAGE_ADD, i1 + 1),
        i3 = row_next(MB_OP_MESSAGE_ADD, i2 + 1);
    assert_true(i1 >= 0 && i2 >= 0 && i3 >= 0);
    r = row(i1);
    assert_string_equal(rtext(r, 0), APP);
    assert_string_equal(rtext(r, 1), mb);
    assert_string_equal(rtext(r, 2), "a");
    assert_string_equal(rtext(r, 3), "pake");
    assert_string_equal(rtext(r, 4), "aa");
    assert_true(rreal(r, 5) == T0 + 1);
    assert_string_equal(rtext(r, 6), "\"m1\"");
    assert_true(rnull(row(i2), 6));
    assert_string_equal(rtext(row(i3), 6), "{\"x\":5}");
    /* The mailbox's updated time follows the adds. */
    r = row(row_next(MB_OP_MAILBOX_TOUCH, i3));
    assert_true(rreal(r, 2) == T0 + 1);

    H.now = T0 + 2;
    mark = H.nrows;
    close_mb(a, mb, "happy");
    r = row_with(MB_OP_MBSIDE_PUT, 2, "a", mark);
    assert_int_equal(rowint(r, 3), 0);
    assert_string_equal(rtext(r, 4), "happy");
    assert_true(rreal(r, 5) == T0); /* added stays */
    assert_true(row_next(MB_OP_MBSIDE_PUT, mark) < row_next(MB_OP_MAILBOX_DEL, mark));
    row_with(MB_OP_MAILBOX_DEL, 1, mb, mark);

    mark = H.nrows;
    release(a, "4");
    r = row_with(MB_OP_NPSIDE_PUT, 2, "a", mark);
    assert_int_equal(rowint(r, 3), 0);
    assert_true(row_next(MB_OP_NPSIDE_PUT, mark) < row_next(MB_OP_NAMEPLATE_DEL, mark));
    row_with(MB_OP_NAMEPLATE_DEL, 1, "4", mark);
}

/* ---- restoring ------------------------------------------------------------------------ */

static void test_restore(void **state)
{
    (void)state;
    const char *id = "ysl6c635kfmva";
    mb_core_t *c = H.core;
    assert_int_equal(mb_restore_mailbox(c, APP, id, 1, T0 - 100, 0), 0);
    assert_int_equal(mb_restore_mailbox_side(c, APP, id, "a", 1, NULL, T0 - 100), 0);
    assert_int_equal(mb_restore_mailbox_side(c, APP, id, "b", 1, NULL, T0 - 90), 0);
    assert_int_equal(mb_restore_message(c, APP, id, "a", "pake", "aa", T0 - 95, "\"m1\""), 0);
    assert_int_equal(mb_restore_message(c, APP, id, "b", "pake", "bb", T0 - 89, NULL), 0);
    assert_int_equal(mb_restore_message(c, APP, id, "a", "version", "cc", T0 - 80, "7"), 0);
    assert_int_equal(mb_restore_nameplate(c, APP, "4", id, 0), 0);
    assert_int_equal(mb_restore_nameplate_side(c, APP, "4", "a", 1, T0 - 100), 0);
    assert_int_equal(mb_restore_nameplate_side(c, APP, "4", "b", 1, T0 - 90), 0);
    /* A nameplate whose mailbox row is missing: the claim makes it. */
    assert_int_equal(mb_restore_nameplate(c, APP, "7", "qqqqqqqqqqqqq", 0), 0);
    /* Rows that make no sense are skipped and counted. */
    assert_int_equal(mb_restore_skipped(c), 0);
    assert_int_equal(mb_restore_message(c, APP, "nosuch", "a", "p", "b", T0, NULL), 0);
    assert_int_equal(mb_restore_mailbox_side(c, APP, id, "c", 1, NULL, T0), 0); /* a third side */
    assert_int_equal(mb_restore_mailbox_side(c, APP, id, "a", 1, NULL, T0), 0); /* twice */
    assert_int_equal(mb_restore_nameplate_side(c, APP, "9", "a", 1, T0), 0);    /* no nameplate */
    assert_int_equal(mb_restore_mailbox(c, APP, id, 1, T0, 0), 0);              /* twice */
    assert_int_equal(mb_restore_mailbox_side(c, "noapp", id, "a", 1, NULL, T0), 0);
    assert_int_equal(mb_restore_mailbox(c, APP, rep('m', 65), 1, T0, 0), 0); /* too long */
    assert_int_equal(mb_restore_skipped(c), 7);
    assert_int_equal(H.nrows, 0); /* restoring records nothing */
    mb_stats_t s = st();
    assert_int_equal(s.mailboxes, 1);
    assert_int_equal(s.nameplates, 2);
    assert_int_equal(s.messages, 3);
    assert_int_equal(s.apps, 1);
    assert_int_equal(s.connections, 0);
    assert_true(s.stored_bytes > 0);

    /* a reconnects: same mailbox, everything replayed in order. */
    peer_t *a = side_conn("a");
    assert_string_equal(claim(a, "4"), id);
    open_mb(a, id);
    expect_msg(a, "a", "pake", "aa", T0 - 95, "\"m1\"");
    expect_msg(a, "b", "pake", "bb", T0 - 89, "null");
    expect_msg(a, "a", "version", "cc", T0 - 80, "7");
    none(a);
    /* The restored sides hold the nameplate and the mailbox. */
    cmd_err(side_conn("c"), "{\"type\":\"claim\",\"nameplate\":\"4\"}", "crowded");
    cmd_err(side_conn("c"), F("{\"type\":\"open\",\"mailbox\":\"%s\"}", id), "crowded");
    peer_t *b = side_conn("b");
    open_mb(b, id);
    expect_msg(b, "a", "pake", "aa", T0 - 95, "\"m1\"");
    expect_msg(b, "b", "pake", "bb", T0 - 89, "null");
    expect_msg(b, "a", "version", "cc", T0 - 80, "7");
    add(b, "1", "dd", NULL);
    expect_msg(b, "b", "1", "dd", T0, "null");
    expect_msg(a, "b", "1", "dd", T0, "null");
    assert_int_equal(st().messages, 4);

    assert_string_equal(claim(side_conn("x"), "7"), "qqqqqqqqqqqqq");
    assert_int_equal(st().mailboxes, 2);
}

/* Text that is not UTF-8 in a row (a damaged or hand-edited database; no
 * client can send such text, the JSON decoder refuses it) must not turn
 * into protocol messages with members missing: jansson makes no string of
 * it, and a `claimed` without its mailbox or a `message` without its body
 * breaks both clients. */
static void test_restore_invalid_utf8(void **state)
{
    (void)state;
    mb_core_t *c = H.core;
    assert_int_equal(mb_restore_mailbox(c, APP, "mbx", 0, T0, 0), 0);
    assert_int_equal(mb_restore_mailbox_side(c, APP, "mbx", "a", 1, NULL, T0), 0);
    assert_int_equal(mb_restore_message(c, APP, "mbx", "a", "pake",
                                        "\xff"
                                        "body",
                                        T0, NULL),
                     0);
    assert_int_equal(mb_restore_message(c, APP, "mbx", "s\xc3", "pake", "aa", T0, NULL), 0);
    assert_int_equal(mb_restore_message(c, APP, "mbx", "a", "ph\xe2\x82", "bb", T0, NULL), 0);
    assert_int_equal(mb_restore_message(c, APP, "mbx", "a", "version", "ok", T0 + 1, NULL), 0);
    assert_int_equal(mb_restore_nameplate(c, APP, "7", "q\x8eq", 0), 0);

    peer_t *x = side_conn("x");
    cmd(x, "{\"type\":\"claim\",\"nameplate\":\"7\"}");
    json_t *o = take_type(x, "claimed");
    if (!json_is_string(json_object_get(o, "mailbox")))
        fail_msg("claim of a nameplate restored with a non-UTF-8 mailbox id: %s", dump(o));

    peer_t *a = side_conn("a");
    open_mb(a, "mbx");
    int good = 0;
    while (a->next < a->n) {
        o = take_type(a, "message");
        if (!json_is_string(json_object_get(o, "side")) ||
            !json_is_string(json_object_get(o, "phase")) ||
            !json_is_string(json_object_get(o, "body")))
            fail_msg("replay of a message restored with non-UTF-8 text: %s", dump(o));
        good += strcmp(jstr(o, "phase"), "version") == 0 && strcmp(jstr(o, "body"), "ok") == 0;
    }
    assert_int_equal(good, 1); /* the sound row is there */
}

/* Load the test database into the core, as the server does at start. */
static void db_load(void)
{
    for (int t = 0; t < MB_LOAD_TABLES; t++) {
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_prepare_v2(H.db, mb_store_load_sql(t), -1, &q, NULL), SQLITE_OK);
        sqlite3_bind_int64(q, 1, 0);
        sqlite3_bind_int64(q, 2, MB_LOAD_PAGE);
        while (sqlite3_step(q) == SQLITE_ROW) {
#define S(i) ((const char *)sqlite3_column_text(q, i))
#define N(i) sqlite3_column_double(q, i)
            int rc = -1;
            switch (t) {
            case MB_LOAD_MAILBOXES:
                rc = mb_restore_mailbox(H.core, S(1), S(2), (int)N(3), N(4), (int)N(5));
                break;
            case MB_LOAD_MBSIDES:
                rc = mb_restore_mailbox_side(H.core, S(1), S(2), S(3), (int)N(4), S(5), N(6));
                break;
            case MB_LOAD_MESSAGES:
                rc = mb_restore_message(H.core, S(1), S(2), S(3), S(4), S(5), N(6), S(7));
                break;
            case MB_LOAD_NAMEPLATES:
                rc = mb_restore_nameplate(H.core, S(1), S(2), S(3), (int)N(4));
                break;
            case MB_LOAD_NPSIDES:
                rc = mb_restore_nameplate_side(H.core, S(1), S(2), S(3), (int)N(4), N(5));
                break;
            }
#undef S
#undef N
            assert_int_equal(rc, 0);
        }
        sqlite3_finalize(q);
    }
}

static void db_exec(const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(H.db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

static int64_t db_count(const char *sql)
{
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(H.db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

/* The server stops mid-exchange and starts again from the rows the core
 * wrote (run through the store's own schema and statements): the clients
 * reconnect and find everything as it was. */
static void test_restart_from_database(void **state)
{
    (void)state;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.usage = 1;
    restart_with(&cfg);
    mb_store_config(&store_cfg, &store_usage, ":memory:", NULL);
    assert_int_equal(sqlite3_open(":memory:", &H.db), SQLITE_OK);
    for (size_t i = 0; i < store_cfg.n_migrations; i++)
        db_exec(store_cfg.migrations[i]);
    db_exec("ATTACH ':memory:' AS usage");
    for (size_t i = 0; i < store_usage.n_migrations; i++)
        db_exec(store_usage.migrations[i]);

    peer_t *a = side_conn("a"), *b = side_conn("b");
    char mb[16], m8[16];
    snprintf(mb, sizeof(mb), "%s", claim(a, "4"));
    H.now = T0 + 1;
    claim(b, "4");
    open_mb(a, mb);
    open_mb(b, mb);
    H.now = T0 + 2;
    add(a, "pake", "aa", "\"a1\"");
    drain(b);
    H.now = T0 + 3;
    add(b, "pake", "bb", NULL);
    drain(a);
    H.now = T0 + 4;
    add(a, "version", "av", "{\"n\":1}");
    drain(a);
    release(a, "4");
    /* Another pair finished already; a lonely side waits on nameplate 8. */
    peer_t *x = side_conn("x");
    open_mb(x, "gone");
    add(x, "p", "q", NULL);
    drain(x);
    close_mb(x, "gone", "lonely");
    peer_t *d = side_conn("d");
    snprintf(m8, sizeof(m8), "%s", claim(d, "8"));
    mb_stats_t before = st();
    assert_int_equal(before.mailboxes, 2);
    assert_int_equal(before.nameplates, 2);
    assert_int_equal(before.messages, 3);

    /* Restart: the old core goes (connections first), a new one loads. */
    peers_free();
    mb_core_free(H.core);
    assert_int_equal(mb_core_new(&H.core, &H.cfg, &io), 0);
    db_load();
    assert_int_equal(mb_restore_skipped(H.core), 0);
    mb_stats_t after = st();
    assert_int_equal(after.apps, before.apps);
    assert_int_equal(after.mailboxes, before.mailboxes);
    assert_int_equal(after.nameplates, before.nameplates);
    assert_int_equal(after.messages, before.messages);
    assert_int_equal(after.stored_bytes, before.stored_bytes);
    assert_int_equal(after.connections, 0);
    assert_int_equal(after.listeners, 0);

    H.now = T0 + 100;
    /* a released before the restart: that is remembered. */
    peer_t *a2 = side_conn("a");
    cmd_err(a2, "{\"type\":\"claim\",\"nameplate\":\"4\"}", "reclaimed");
    peer_t *a3 = side_conn("a");
    open_mb(a3, mb);
    expect_msg(a3, "a", "pake", "aa", T0 + 2, "\"a1\"");
    expect_msg(a3, "b", "pake", "bb", T0 + 3, "null");
    expect_msg(a3, "a", "version", "av", T0 + 4, "{\"n\":1}");
    none(a3);
    peer_t *b2 = side_conn("b");
    assert_string_equal(claim(b2, "4"), mb);
    open_mb(b2, mb);
    expect_msg(b2, "a", "pake", "aa", T0 + 2, "\"a1\"");
    expect_msg(b2, "b", "pake", "bb", T0 + 3, "null");
    expect_msg(b2, "a", "version", "av", T0 + 4, "{\"n\":1}");
    none(b2);
    cmd_err(side_conn("c"), "{\"type\":\"claim\",\"nameplate\":\"4\"}", "crowded");
    add(b2, "version", "bv", NULL);
    expect_msg(b2, "b", "version", "bv", T0 + 100, "null");
    expect_msg(a3, "b", "version", "bv", T0 + 100, "null");
    assert_string_equal(claim(side_conn("e"), "8"), m8);
    list_is(b2, "[{\"id\":\"4\"},{\"id\":\"8\"}]");
    release(b2, "4");
    list_is(b2, "[{\"id\":\"8\"}]");
    close_mb(a3, mb, "happy");
    close_mb(b2, mb, "happy");
    assert_int_equal(st().messages, 0);
    assert_int_equal(db_count("SELECT count(*) FROM messages"), 0);
    assert_int_equal(db_count("SELECT count(*) FROM mailboxes"), 1);
    assert_int_equal(db_count("SELECT count(*) FROM nameplates"), 1);
    assert_int_equal(db_count("SELECT count(*) FROM nameplate_sides"), 2);
    /* Usage rows went to the attached database. */
    assert_int_equal(db_count("SELECT count(*) FROM usage.client_versions"), 9);
    assert_int_equal(db_count("SELECT count(*) FROM usage.mailboxes WHERE result = 'lonely'"), 1);
    assert_int_equal(db_count("SELECT count(*) FROM usage.mailboxes WHERE result = 'crowded'"), 1);
    assert_int_equal(db_count("SELECT count(*) FROM usage.nameplates WHERE result = 'crowded'"), 1);
}

/* ---- memory --------------------------------------------------------------------------- */

static void quiet_send(void *ctx, mb_conn_t *c, const char *json, size_t len)
{
    ++*(int *)ctx;
}

static void quiet_close(void *ctx, mb_conn_t *c, int code, const char *reason)
{
}

static void quiet_persist(void *ctx, wb_event_t *req)
{
    wb_event_free(req);
}

/* A server with state of every kind and live connections (listening,
 * bound, closed by the core), freed with mb_core_free; first the
 * connections too when free_conns_first (the glue's order). */
static void session_then_free(int free_conns_first)
{
    static const char *const script[][2] = {
        {"a", "{\"type\":\"bind\",\"appid\":\"app\",\"side\":\"a\"}"},
        {"b", "{\"type\":\"bind\",\"appid\":\"app\",\"side\":\"b\"}"},
        {"c", "{\"type\":\"bind\",\"appid\":\"app\",\"side\":\"c\"}"},
        {"a", "{\"type\":\"claim\",\"nameplate\":\"4\"}"},
        {"b", "{\"type\":\"claim\",\"nameplate\":\"4\"}"},
        {"c", "{\"type\":\"claim\",\"nameplate\":\"4\"}"},
        {"a", "{\"type\":\"open\",\"mailbox\":\"mbx\"}"},
        {"b", "{\"type\":\"open\",\"mailbox\":\"mbx\"}"},
        {"a", "{\"type\":\"add\",\"phase\":\"pake\",\"body\":\"aa\",\"id\":\"1\"}"},
        {"b", "{\"type\":\"add\",\"phase\":\"pake\",\"body\":\"bb\",\"id\":{\"x\":[1]}}"},
        {"c", "{\"type\":\"allocate\"}"},
        {"c", "{\"type\":\"ping\",\"ping\":[1,2]}"},
        {"d", "{\"type\":"},
    };
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.usage = 1;
    int sent = 0;
    mb_io_t qio = {&sent, quiet_send, quiet_close, quiet_persist};
    mb_core_t *core;
    assert_int_equal(mb_core_new(&core, &cfg, &qio), 0);
    assert_int_equal(mb_restore_mailbox(core, "app", "restored", 0, T0, 0), 0);
    assert_int_equal(mb_restore_mailbox_side(core, "app", "restored", "r", 1, "happy", T0), 0);
    assert_int_equal(mb_restore_message(core, "app", "restored", "r", "p", "b", T0, "\"i\""), 0);
    assert_int_equal(mb_restore_nameplate(core, "app", "9", "restored", 0), 0);
    assert_int_equal(mb_restore_nameplate_side(core, "app", "9", "r", 1, T0), 0);
    mb_conn_t *c[4];
    for (int i = 0; i < 4; i++)
        assert_non_null(c[i] = mb_conn_new(core, (uint64_t)i + 1, "peer", NULL, T0));
    for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++)
        mb_conn_input(c[script[i][0][0] - 'a'], (const uint8_t *)script[i][1], strlen(script[i][1]),
                      T0);
    mb_stats_t s;
    mb_core_stats(core, &s);
    assert_int_equal(s.connections, 4);
    assert_int_equal(s.listeners, 2);
    assert_int_equal(s.messages, 3);
    assert_int_equal(s.nameplates, 3);
    assert_true(sent > 20);
    if (free_conns_first)
        for (int i = 0; i < 4; i++)
            mb_conn_free(c[i]);
    mb_core_free(core);
}

/* Run under LeakSanitizer (the ASan build) and valgrind: glibc's own
 * counters cannot tell a leak from its thread cache. */
static void test_core_free_leaks_nothing(void **state)
{
    (void)state;
    session_then_free(1);
    /* core.h: mb_core_free frees "everything, connections included". */
    session_then_free(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_welcome_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_welcome_configured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_lengths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_commands_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocate_one_digit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocate_fewest_digits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocate_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_open_add_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_echoes_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crowded_not_sticky, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaimed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_close_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_deleted_under_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apps_scoped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_sorted_and_disallowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_stored_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_mailboxes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_at_mailbox_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_current_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_happy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_blurred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_moods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_from_database, setup, teardown),
        cmocka_unit_test(test_core_free_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
