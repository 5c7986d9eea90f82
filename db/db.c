/*
 * db.c - the database lane: one SQLite connection, requests in, results out.
 *
 * The contract is in db.h and docs/db.md. How it is kept:
 *
 * Transactions. The first request of a drain that writes (or asks for
 * durability) opens BEGIN IMMEDIATE; every later request of the drain runs
 * inside it and its result waits in `pend`. before_sleep (the inbox ran dry),
 * a full batch (BATCH_MAX) or on_stop commits and only then sends the held
 * results, in request order. Reads that arrive while no transaction is open
 * run in autocommit mode and are answered at once: nothing is held before
 * them, so order is kept. A failing statement is undone by SQLite alone; if
 * SQLite had to roll back the whole transaction (it tells: autocommit is on
 * again), the held results are replaced by the error. A failed COMMIT does the
 * same for the whole batch.
 *
 * Durability. SQLite refuses to change PRAGMA synchronous inside a
 * transaction, so a durable request that finds a synchronous=NORMAL
 * transaction open commits it first (its results go out: they were not asked
 * to be durable) and opens a new one under synchronous=FULL, which the rest of
 * the drain joins. Its COMMIT syncs the WAL, with it every frame before; the
 * connection goes back to NORMAL after it.
 *
 * Transaction statements in requests (BEGIN, COMMIT, SAVEPOINT...) would tear
 * the batch apart; an authorizer refuses them at prepare time with WB_EINVAL.
 *
 * Lifetime. wb_db_attach allocates the lane's state and queues it to the lane
 * as the payload of a control event (WB__EV_DB_STATE) whose free_cb releases
 * it. The lane takes that event first and keeps it; on_stop frees it last. So
 * every way a runtime can end frees the state exactly once, without a hook
 * rt.h does not have: on_stop after a run; wb_rt_free freeing the queued event
 * when the runtime never started; a lane whose on_start failed freeing its
 * events unread (threaded mode) or passing them to on_event before on_stop
 * (deterministic mode). on_start allocates the rest and frees it if it fails.
 */
#include "db/db.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db_internal.h"
#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/log.h"

#define BATCH_MAX       10000 /* requests per transaction before an early commit */
#define CACHE_SIZE      64    /* prepared statements kept for SQL text requests */
#define CACHE_BUCKETS   128
#define DEFAULT_BUSY_MS 5000
#define OPEN_FLAGS      (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX)
/* WAL pages after which the checkpointer is asked to run (8 MiB), and after
 * which the lane checkpoints itself (64 MiB): see wb_db_config_t. */
#define CKPT_PAGES      2048
#define WAL_LIMIT_PAGES 16384

typedef struct {
    sqlite3_stmt *stmt; /* NULL: free entry */
    char *sql;
    size_t len;
    uint64_t hash;
    uint64_t used; /* tick of the last use: the least recent goes first */
    int next;      /* next entry in the bucket, -1 ends */
} cache_ent_t;

/* The checkpointer: a thread with its own connection that copies the WAL
 * back into the database file (PASSIVE: it never waits for, nor blocks, the
 * lane's writes), so the lane never stalls for a checkpoint's writes and
 * fsync. The lane's WAL hook asks for a run once the WAL has CKPT_PAGES. */
typedef struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int live, want, stop;
    uint64_t runs; /* under mu */
    sqlite3 *db;
} ckpt_t;

typedef struct {
    wb_rt_t *rt;
    const wb_db_config_t *cfg;
    ckpt_t ck;
    int wal;           /* the main file is in WAL mode */
    wb_event_t *token; /* the event whose payload this state is, once taken */

    sqlite3 *db; /* NULL when not open */
    sqlite3_stmt **ops;
    sqlite3_stmt *begin, *commit, *rollback;
    int allow_txn;  /* our own transaction statements may pass the authorizer */
    int denied_txn; /* the authorizer refused one since the last prepare */

    int in_txn;
    int txn_full;      /* this transaction commits with synchronous=FULL */
    wb_event_t **pend; /* results held until the commit, BATCH_MAX slots */
    size_t npend;
    size_t nquiet; /* quiet requests done in this transaction (no result held) */

    cache_ent_t cache[CACHE_SIZE];
    int buckets[CACHE_BUCKETS];
    uint64_t tick;

    wb__db_resbuf_t rb;
    wb_db_stats_t st;
    char msg[WB__DB_MAX_ERRMSG + 1]; /* message of the last failure */
} db_t;

/* ---- errors ----------------------------------------------------------------- */

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return WB_ECONSTRAINT;
    case SQLITE_FULL:
        return WB_EFULL;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return WB_EBUSY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return WB_ECORRUPT;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        return WB_EIO;
    case SQLITE_NOMEM:
        return WB_ENOMEM;
    case SQLITE_TOOBIG:
        return WB_ETOOBIG;
    default:
        return WB_EDB;
    }
}

/* Keep SQLite's message about the failure rc; returns rc's code. */
static int sql_fail(db_t *s, int rc)
{
    const char *m = s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    snprintf(s->msg, sizeof(s->msg), "%s", m);
    return map_rc(rc);
}

/* A request we refuse: WB_EINVAL with our own message. */
__attribute__((format(printf, 2, 3))) static int bad(db_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
    va_end(ap);
    return WB_EINVAL;
}

static int oom(db_t *s)
{
    snprintf(s->msg, sizeof(s->msg), "out of memory");
    return WB_ENOMEM;
}

static int too_big(db_t *s)
{
    snprintf(s->msg, sizeof(s->msg), "result larger than %u bytes", WB_DB_MAX_PAYLOAD);
    return WB_ETOOBIG;
}

static int authorize(void *arg, int action, const char *a, const char *b, const char *c,
                     const char *d)
{
    db_t *s = arg;
    (void)a, (void)b, (void)c, (void)d;
    if ((action == SQLITE_TRANSACTION || action == SQLITE_SAVEPOINT) && !s->allow_txn) {
        s->denied_txn = 1;
        return SQLITE_DENY;
    }
    return SQLITE_OK;
}

/* ---- statements ------------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Prepare exactly one statement from sql[0..len). */
static int prepare(db_t *s, const char *sql, size_t len, sqlite3_stmt **out)
{
    const char *tail = NULL;
    *out = NULL;
    if (len > INT_MAX)
        return bad(s, "statement too long");
    s->denied_txn = 0;
    int rc = sqlite3_prepare_v3(s->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, out, &tail);
    if (rc != SQLITE_OK) {
        if (s->denied_txn)
            return bad(s, "transaction statements are not allowed: the lane makes the "
                          "transactions");
        return sql_fail(s, rc);
    }
    if (*out == NULL)
        return bad(s, "no statement in the SQL text");
    while (tail != NULL && tail < sql + len && (is_space(*tail) || *tail == ';'))
        tail++;
    if (tail != NULL && tail < sql + len) {
        sqlite3_finalize(*out);
        *out = NULL;
        return bad(s, "more than one statement in the SQL text");
    }
    return 0;
}

/* Run one of our own statements (BEGIN, COMMIT, ROLLBACK) to completion. */
static int step_ctl(db_t *s, sqlite3_stmt *st)
{
    s->allow_txn = 1; /* a schema change re-prepares it inside step */
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        sql_fail(s, rc);
    sqlite3_reset(st);
    s->allow_txn = 0;
    return rc;
}

/* sqlite3_exec of our own SQL; the message of a failure lands in s->msg. */
static int exec(db_t *s, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        snprintf(s->msg, sizeof(s->msg), "%s", err != NULL ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    return rc;
}

/* ---- the statement cache ---------------------------------------------------- */

static uint64_t hash_sql(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

static void cache_drop(db_t *s, int i)
{
    cache_ent_t *e = &s->cache[i];
    int *link = &s->buckets[e->hash & (CACHE_BUCKETS - 1)];
    while (*link != i) {
        WB_ASSERT(*link >= 0);
        link = &s->cache[*link].next;
    }
    *link = e->next;
    sqlite3_finalize(e->stmt);
    free(e->sql);
    memset(e, 0, sizeof(*e));
    e->next = -1;
}

/* The prepared statement for sql[0..len), preparing and caching it on a
 * miss. NULL with *code set when it cannot be prepared. */
static sqlite3_stmt *cache_get(db_t *s, const char *sql, size_t len, int *code)
{
    uint64_t h = hash_sql(sql, len);
    int b = (int)(h & (CACHE_BUCKETS - 1));
    for (int i = s->buckets[b]; i >= 0; i = s->cache[i].next) {
        cache_ent_t *e = &s->cache[i];
        if (e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0) {
            e->used = ++s->tick;
            s->st.cache_hits++;
            return e->stmt;
        }
    }
    s->st.cache_misses++;
    sqlite3_stmt *st;
    *code = prepare(s, sql, len, &st);
    if (*code != 0)
        return NULL;
    char *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
        sqlite3_finalize(st);
        *code = oom(s);
        return NULL;
    }
    memcpy(copy, sql, len);
    int victim = 0;
    for (int i = 0; i < CACHE_SIZE; i++) {
        if (s->cache[i].stmt == NULL) {
            victim = i;
            break;
        }
        if (s->cache[i].used < s->cache[victim].used)
            victim = i;
    }
    if (s->cache[victim].stmt != NULL)
        cache_drop(s, victim);
    cache_ent_t *e = &s->cache[victim];
    e->stmt = st;
    e->sql = copy;
    e->len = len;
    e->hash = h;
    e->used = ++s->tick;
    e->next = s->buckets[b];
    s->buckets[b] = victim;
    return st;
}

/* ---- results ---------------------------------------------------------------- */

static void send_result(db_t *s, wb_event_t *res)
{
    if (res->status < 0)
        s->st.errors++;
    if (res->dst_lane >= WB_LANE_COUNT || wb_rt_send(s->rt, res) != 0) {
        /* The requester's lane has stopped (shutdown) or never was. */
        wb_rt_count_drop(s->rt, WB_LANE_DB);
        wb_event_free(res);
    }
}

static void flush_pending(db_t *s)
{
    for (size_t i = 0; i < s->npend; i++)
        send_result(s, s->pend[i]);
    s->npend = 0;
}

/* Nothing of the transaction stays: every held success becomes the error.
 * A request that failed on its own keeps its own, more precise, error. */
static void fail_pending(db_t *s, int code, const char *msg)
{
    for (size_t i = 0; i < s->npend; i++) {
        wb_event_t *old = s->pend[i];
        if (old->status < 0)
            continue;
        wb_event_t *e = wb__db_res_error(code, msg);
        if (e == NULL) {
            old->status = code; /* readers then see no rows, only the code */
            continue;
        }
        wb_event_route(e, WB_LANE_DB, 0, (wb_lane_t)old->dst_lane, old->dst);
        e->cookie = old->cookie;
        e->flags |= WB_EVF_CONTROL;
        wb_event_free(old);
        s->pend[i] = e;
    }
}

static void end_txn(db_t *s)
{
    if (s->npend + s->nquiet > s->st.max_batch)
        s->st.max_batch = s->npend + s->nquiet;
    s->nquiet = 0;
    s->in_txn = 0;
    if (s->txn_full) {
        s->txn_full = 0;
        if (exec(s, "PRAGMA synchronous=NORMAL") != SQLITE_OK)
            wb_error("db", "%s: back to synchronous=NORMAL: %s", s->cfg->path, s->msg);
    }
    flush_pending(s);
}

static void txn_commit(db_t *s)
{
    if (!s->in_txn)
        return;
    int rc = step_ctl(s, s->commit);
    if (rc == SQLITE_DONE) {
        s->st.commits++;
        if (s->txn_full)
            s->st.durable_commits++;
    } else {
        int code = map_rc(rc);
        wb_error("db", "%s: commit of %zu requests failed: %s", s->cfg->path, s->npend, s->msg);
        char msg[sizeof(s->msg)];
        memcpy(msg, s->msg, sizeof(msg));
        if (!sqlite3_get_autocommit(s->db) && step_ctl(s, s->rollback) != SQLITE_DONE)
            wb_error("db", "%s: rollback failed: %s", s->cfg->path, s->msg);
        s->st.rollbacks++;
        fail_pending(s, code, msg);
    }
    end_txn(s);
}

/* SQLite rolled the whole transaction back after the failure in s->msg. */
static void txn_lost(db_t *s, int code)
{
    wb_warn("db", "%s: transaction of %zu requests rolled back: %s", s->cfg->path, s->npend,
            s->msg);
    s->st.rollbacks++;
    fail_pending(s, code, s->msg);
    end_txn(s);
}

static int txn_begin(db_t *s, int full)
{
    if (full && exec(s, "PRAGMA synchronous=FULL") != SQLITE_OK)
        return map_rc(sqlite3_errcode(s->db));
    int rc = step_ctl(s, s->begin);
    if (rc != SQLITE_DONE) {
        int code = map_rc(rc);
        if (full) {
            char msg[sizeof(s->msg)];
            memcpy(msg, s->msg, sizeof(msg));
            exec(s, "PRAGMA synchronous=NORMAL");
            memcpy(s->msg, msg, sizeof(msg));
        }
        return code;
    }
    s->in_txn = 1;
    s->txn_full = full;
    return 0;
}

/* Route res back to the requester; hold it if a transaction is open. */
static void deliver(db_t *s, const wb_event_t *req, wb_event_t *res)
{
    wb_event_route(res, WB_LANE_DB, 0, (wb_lane_t)req->src_lane, req->src);
    res->cookie = req->cookie;
    res->flags |= WB_EVF_CONTROL; /* the requester bounds its own outstanding requests */
    if (!s->in_txn) {
        send_result(s, res);
        return;
    }
    s->pend[s->npend++] = res;
    if (s->npend + s->nquiet >= BATCH_MAX)
        txn_commit(s);
}

/* The counters as one row in the result buffer. */
static void stats_rows(db_t *s)
{
    enum { N = sizeof(wb_db_stats_t) / sizeof(uint64_t) };
    uint64_t f[N];
    if (s->ck.live) {
        pthread_mutex_lock(&s->ck.mu);
        s->st.checkpoints = s->ck.runs;
        pthread_mutex_unlock(&s->ck.mu);
    }
    memcpy(f, &s->st, sizeof(f));
    wb__db_res_begin(&s->rb, N);
    wb__db_res_row(&s->rb);
    for (size_t i = 0; i < N; i++) {
        wb_value_t v = wb_val_int((int64_t)f[i]);
        wb__db_res_value(&s->rb, &v);
    }
}

/* ---- requests --------------------------------------------------------------- */

static int bind_all(db_t *s, sqlite3_stmt *st, const unsigned char *p, size_t len, uint32_t n)
{
    int want = sqlite3_bind_parameter_count(st);
    if ((int64_t)n != want)
        return bad(s, "the statement takes %d values, the request has %" PRIu32, want, n);
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        wb_value_t v;
        size_t k = wb__db_val_get(p + off, len - off, &v);
        if (k == 0)
            return bad(s, "value %" PRIu32 " of the request is malformed", i + 1);
        off += k;
        int rc = SQLITE_OK, at = (int)i + 1;
        switch (v.type) {
        case WB_VAL_NULL:
            rc = sqlite3_bind_null(st, at);
            break;
        case WB_VAL_INT:
            rc = sqlite3_bind_int64(st, at, v.u.i);
            break;
        case WB_VAL_REAL:
            rc = sqlite3_bind_double(st, at, v.u.d);
            break;
        case WB_VAL_TEXT: /* the request outlives the statement's run */
            rc = sqlite3_bind_text(st, at, v.u.s.p, (int)v.u.s.n, SQLITE_STATIC);
            break;
        case WB_VAL_BLOB:
            rc = sqlite3_bind_blob(st, at, v.u.s.p, (int)v.u.s.n, SQLITE_STATIC);
            break;
        }
        if (rc != SQLITE_OK)
            return sql_fail(s, rc);
    }
    if (off != len)
        return bad(s, "%zu stray bytes after the request's values", len - off);
    return 0;
}

static void collect_row(db_t *s, sqlite3_stmt *st, int ncols)
{
    wb__db_res_row(&s->rb);
    for (int c = 0; c < ncols; c++) {
        wb_value_t v;
        switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER:
            v = wb_val_int(sqlite3_column_int64(st, c));
            break;
        case SQLITE_FLOAT:
            v = wb_val_real(sqlite3_column_double(st, c));
            break;
        case SQLITE_TEXT:
            v.type = WB_VAL_TEXT;
            v.u.s.p = sqlite3_column_text(st, c);
            v.u.s.n = (size_t)sqlite3_column_bytes(st, c);
            if (v.u.s.p == NULL) {
                s->rb.err = WB_ENOMEM;
                return;
            }
            break;
        case SQLITE_BLOB:
            v.type = WB_VAL_BLOB;
            v.u.s.n = (size_t)sqlite3_column_bytes(st, c);
            v.u.s.p = sqlite3_column_blob(st, c);
            if (v.u.s.p == NULL && v.u.s.n > 0) {
                s->rb.err = WB_ENOMEM;
                return;
            }
            break;
        default:
            v = wb_val_null();
            break;
        }
        wb__db_res_value(&s->rb, &v);
    }
}

/* Run the bound statement; on success its rows are in s->rb. */
static int execute(db_t *s, sqlite3_stmt *st, int durable, int64_t *rowid, int64_t *changes)
{
    if (s->in_txn && durable && !s->txn_full)
        txn_commit(s);
    if (!s->in_txn && (durable || !sqlite3_stmt_readonly(st))) {
        int code = txn_begin(s, durable);
        if (code != 0)
            return code;
    }

    int ncols = sqlite3_column_count(st), rc;
    wb__db_res_begin(&s->rb, (uint32_t)ncols);
    sqlite3_set_last_insert_rowid(s->db, 0);
    int64_t before = sqlite3_total_changes64(s->db);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        collect_row(s, st, ncols);
        if (s->rb.err != 0)
            break;
    }
    if (rc == SQLITE_DONE) {
        /* sqlite3_changes64 keeps the last DML's count through other statements. */
        *changes = sqlite3_total_changes64(s->db) != before ? sqlite3_changes64(s->db) : 0;
        *rowid = sqlite3_last_insert_rowid(s->db);
        return 0;
    }
    if (rc == SQLITE_ROW) {
        /* The rows do not fit; for a write statement (RETURNING) what it
         * did so far stays, as with any statement reset before its end. */
        return s->rb.err == WB_ETOOBIG ? too_big(s) : oom(s);
    }
    int code = sql_fail(s, rc);
    sqlite3_reset(st);
    if (s->in_txn && sqlite3_get_autocommit(s->db))
        txn_lost(s, code);
    return code;
}

/* ---- handlers on the database thread ---------------------------------------- */

struct wb_db_call_s {
    db_t *s;
    int64_t rowid, changes;
};

#define CALL_MAX_COLS 64

static int bind_values(db_t *s, sqlite3_stmt *st, const wb_value_t *v, size_t n)
{
    if ((int64_t)n != sqlite3_bind_parameter_count(st))
        return bad(s, "the operation takes %d values, the handler gave %zu",
                   sqlite3_bind_parameter_count(st), n);
    for (size_t i = 0; i < n; i++) {
        int rc = SQLITE_OK, at = (int)i + 1;
        switch (v[i].type) {
        case WB_VAL_NULL:
            rc = sqlite3_bind_null(st, at);
            break;
        case WB_VAL_INT:
            rc = sqlite3_bind_int64(st, at, v[i].u.i);
            break;
        case WB_VAL_REAL:
            rc = sqlite3_bind_double(st, at, v[i].u.d);
            break;
        case WB_VAL_TEXT:
        case WB_VAL_BLOB:
            if (v[i].u.s.n > (size_t)INT32_MAX)
                return too_big(s);
            rc = v[i].type == WB_VAL_TEXT
                     ? sqlite3_bind_text(st, at, v[i].u.s.p, (int)v[i].u.s.n, SQLITE_STATIC)
                     : sqlite3_bind_blob(st, at, v[i].u.s.p, (int)v[i].u.s.n, SQLITE_STATIC);
            break;
        default:
            return bad(s, "value %zu has no type", i + 1);
        }
        if (rc != SQLITE_OK)
            return sql_fail(s, rc);
    }
    return 0;
}

static void column_value(sqlite3_stmt *st, int c, wb_value_t *v)
{
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_INTEGER:
        *v = wb_val_int(sqlite3_column_int64(st, c));
        break;
    case SQLITE_FLOAT:
        *v = wb_val_real(sqlite3_column_double(st, c));
        break;
    case SQLITE_TEXT:
        v->type = WB_VAL_TEXT;
        v->u.s.p = sqlite3_column_text(st, c);
        v->u.s.n = (size_t)sqlite3_column_bytes(st, c);
        break;
    case SQLITE_BLOB:
        v->type = WB_VAL_BLOB;
        v->u.s.n = (size_t)sqlite3_column_bytes(st, c);
        v->u.s.p = sqlite3_column_blob(st, c);
        break;
    default:
        *v = wb_val_null();
        break;
    }
}

int wb_db_call_exec(wb_db_call_t *call, uint32_t op, const wb_value_t *binds, size_t n,
                    wb_db_row_cb row, void *arg)
{
    db_t *s = call->s;
    wb_value_t cols[CALL_MAX_COLS];
    if (op >= s->cfg->n_ops)
        return bad(s, "no operation %" PRIu32 " (there are %zu)", op, s->cfg->n_ops);
    sqlite3_stmt *st = s->ops[op];
    int ncols = sqlite3_column_count(st);
    if (ncols > CALL_MAX_COLS)
        return bad(s, "operation %" PRIu32 " has more than %d columns", op, CALL_MAX_COLS);
    int code = bind_values(s, st, binds, n);
    int rc = SQLITE_DONE;
    if (code == 0) {
        int64_t before = sqlite3_total_changes64(s->db);
        sqlite3_set_last_insert_rowid(s->db, 0);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (row == NULL)
                continue;
            for (int c = 0; c < ncols; c++)
                column_value(st, c, &cols[c]);
            if (row(arg, cols, (size_t)ncols) != 0) {
                rc = SQLITE_DONE;
                break;
            }
        }
        if (rc == SQLITE_DONE) {
            call->changes = sqlite3_total_changes64(s->db) != before ? sqlite3_changes64(s->db) : 0;
            call->rowid = sqlite3_last_insert_rowid(s->db);
        } else {
            code = sql_fail(s, rc);
        }
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (code != 0 && s->in_txn && sqlite3_get_autocommit(s->db))
        txn_lost(s, code);
    return code;
}

int64_t wb_db_call_rowid(const wb_db_call_t *call)
{
    return call->rowid;
}

int64_t wb_db_call_changes(const wb_db_call_t *call)
{
    return call->changes;
}

int wb_db_call_reply(wb_db_call_t *call, const void *body, size_t len)
{
    db_t *s = call->s;
    wb_value_t v = wb_val_blob(body, len);
    wb__db_res_begin(&s->rb, 1);
    wb__db_res_row(&s->rb);
    wb__db_res_value(&s->rb, &v);
    return s->rb.err;
}

int wb_db_call_fail(wb_db_call_t *call, int code, const char *msg)
{
    snprintf(call->s->msg, sizeof(call->s->msg), "%s", msg);
    return code;
}

/* Run handler h.arg for the request's row. Its writes join the batch. */
static int run_call(db_t *s, const wb__db_req_hdr_t *h, const unsigned char *p, size_t len,
                    int64_t *rowid, int64_t *changes)
{
    wb_value_t key, body;
    size_t k1, k2;
    if (h->arg >= s->cfg->n_handlers)
        return bad(s, "no handler %" PRIu32 " (there are %zu)", h->arg, s->cfg->n_handlers);
    if (h->nbinds != 2 || (k1 = wb__db_val_get(p, len, &key)) == 0 || key.type != WB_VAL_INT ||
        (k2 = wb__db_val_get(p + k1, len - k1, &body)) == 0 || body.type != WB_VAL_BLOB ||
        k1 + k2 != len)
        return bad(s, "malformed handler request");
    int durable = h->flags & WB_DB_DURABLE;
    if (s->in_txn && durable && !s->txn_full)
        txn_commit(s);
    if (!s->in_txn) {
        int code = txn_begin(s, durable);
        if (code != 0)
            return code;
    }
    const wb_db_handler_t *hd = &s->cfg->handlers[h->arg];
    wb_db_call_t call = {s, 0, 0};
    wb__db_res_begin(&s->rb, 0); /* no reply: no rows */
    s->msg[0] = '\0';
    int code = hd->fn(&call, key.u.i, body.u.s.p, body.u.s.n, hd->arg);
    if (code > 0)
        code = bad(s, "handler %s returned %d", hd->name ? hd->name : "?", code);
    if (code < 0 && s->msg[0] == '\0')
        snprintf(s->msg, sizeof(s->msg), "%s", wb_strerror(code));
    *rowid = call.rowid;
    *changes = call.changes;
    return code;
}

/* Answer req. Returns 1 when req itself became the result (then it is no
 * longer the caller's), 0 when the caller still owns and must free it. */
static int handle_request(db_t *s, wb_event_t *req)
{
    const unsigned char *p = req->data;
    size_t len = req->len, off = sizeof(wb__db_req_hdr_t);
    wb__db_req_hdr_t h;
    sqlite3_stmt *st = NULL;
    wb_event_t *res = NULL;
    int64_t rowid = 0, changes = 0;
    int code = WB_EINVAL;

    if (p == NULL || len < sizeof(h)) {
        code = bad(s, "request shorter than its header");
        goto reply;
    }
    memcpy(&h, p, sizeof(h));
    if (h.magic != WB__DB_REQ_MAGIC || (h.flags & ~(unsigned)(WB_DB_DURABLE | WB_DB_QUIET)) != 0) {
        code = bad(s, "not a database request");
        goto reply;
    }
    if (h.kind == WB__DB_REQ_STATS) {
        stats_rows(s);
        code = 0;
        goto reply;
    }
    s->st.requests++;
    if (h.kind == WB__DB_REQ_CALL) {
        code = run_call(s, &h, p + off, len - off, &rowid, &changes);
        goto reply;
    }
    if (h.kind == WB__DB_REQ_OP) {
        if (h.arg >= s->cfg->n_ops) {
            code = bad(s, "no operation %" PRIu32 " (there are %zu)", h.arg, s->cfg->n_ops);
            goto reply;
        }
        st = s->ops[h.arg];
    } else if (h.kind == WB__DB_REQ_SQL) {
        if (h.arg > len - off) {
            code = bad(s, "SQL text runs past the request");
            goto reply;
        }
        st = cache_get(s, (const char *)p + off, h.arg, &code);
        if (st == NULL)
            goto reply;
        off += h.arg;
    } else {
        code = bad(s, "unknown request kind %u", h.kind);
        goto reply;
    }
    code = bind_all(s, st, p + off, len - off, h.nbinds);
    if (code == 0)
        code = execute(s, st, h.flags & WB_DB_DURABLE, &rowid, &changes);

reply:
    if (st != NULL) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st); /* they point into req, overwritten or freed next */
    }
    if (code == 0 && (h.flags & WB_DB_QUIET) && h.kind != WB__DB_REQ_STATS) {
        /* Success goes unanswered: the request ends here, but it counts
         * towards the transaction's size like an answered one. */
        wb_event_free(req);
        if (s->in_txn && ++s->nquiet + s->npend >= BATCH_MAX)
            txn_commit(s);
        return 1;
    }
    if (code == 0) {
        /* Most results (a write's rowid and changes, a few small rows) fit
         * in the request's own block: it goes back as the answer, and no
         * pool block has to cross threads. */
        if (wb__db_res_finish_into(&s->rb, req, rowid, changes) == 0)
            res = req;
        else if ((res = wb__db_res_finish(&s->rb, rowid, changes)) == NULL)
            code = s->rb.err == WB_ETOOBIG ? too_big(s) : oom(s);
    }
    if (res == NULL) {
        WB_ASSERT(code < 0);
        res = wb__db_res_error(code, s->msg);
        if (res == NULL) {
            wb_error("db", "out of memory: request %llu of lane %u goes unanswered",
                     (unsigned long long)req->cookie, req->src_lane);
            wb_rt_count_drop(s->rt, WB_LANE_DB);
            return 0;
        }
    }
    deliver(s, req, res);
    return res == req;
}

/* ---- open and close --------------------------------------------------------- */

static int open_fail(db_t *s, int code, const char *what)
{
    wb_error("db", "%s: %s: %s", s->cfg->path, what, s->msg);
    return code;
}

static int set_wal(db_t *s, const char *schema)
{
    sqlite3_stmt *st;
    char sql[96];
    snprintf(sql, sizeof(sql), "PRAGMA %s.journal_mode=WAL", schema);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, rc);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        int code = sql_fail(s, rc);
        sqlite3_finalize(st);
        return code;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (mode == NULL || (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0))
        wb_warn("db", "%s: journal mode is %s, not wal", s->cfg->path, mode ? mode : "?");
    if (strcmp(schema, "main") == 0)
        s->wal = mode != NULL && strcmp(mode, "wal") == 0;
    sqlite3_finalize(st);
    return 0;
}

static int user_version(db_t *s, const char *schema, int64_t *v)
{
    sqlite3_stmt *st;
    char sql[96];
    snprintf(sql, sizeof(sql), "PRAGMA %s.user_version", schema);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, rc);
    rc = sqlite3_step(st);
    int code = rc == SQLITE_ROW ? 0 : sql_fail(s, rc);
    *v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return code;
}

/* Bring a schema ("main" or an attached one) from its user_version to
 * n_migrations, one transaction each. */
static int migrate(db_t *s, const char *schema, const char *path, const char *const *migrations,
                   size_t n_migrations)
{
    int64_t v = 0;
    int code = user_version(s, schema, &v);
    if (code != 0)
        return open_fail(s, code, "reading user_version");
    if (v < 0 || (uint64_t)v > n_migrations) {
        bad(s, "%s: schema version %lld is not one of this program's 0..%zu", path, (long long)v,
            n_migrations);
        return open_fail(s, WB_EDB, "migrations");
    }
    for (size_t i = (size_t)v; i < n_migrations; i++) {
        char setv[128];
        snprintf(setv, sizeof(setv), "PRAGMA %s.user_version=%zu", schema, i + 1);
        s->allow_txn = 1;
        int rc = exec(s, "BEGIN IMMEDIATE");
        s->allow_txn = 0;
        if (rc == SQLITE_OK) {
            s->denied_txn = 0;
            rc = exec(s, migrations[i]);
            if (rc != SQLITE_OK && s->denied_txn)
                bad(s, "transaction statements are not allowed in a migration");
        }
        if (rc == SQLITE_OK)
            rc = exec(s, setv);
        if (rc == SQLITE_OK) {
            s->allow_txn = 1;
            rc = exec(s, "COMMIT");
            s->allow_txn = 0;
        }
        if (rc != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof(what), "migration to version %zu", i + 1);
            open_fail(s, map_rc(rc), what);
            s->allow_txn = 1;
            if (!sqlite3_get_autocommit(s->db))
                exec(s, "ROLLBACK");
            s->allow_txn = 0;
            return map_rc(rc);
        }
        wb_info("db", "%s: migrated to version %zu", path, i + 1);
    }
    return 0;
}

/* ---- the checkpointer ------------------------------------------------------- */

static void *ckpt_main(void *arg)
{
    ckpt_t *ck = arg;
    pthread_mutex_lock(&ck->mu);
    for (;;) {
        while (!ck->want && !ck->stop)
            pthread_cond_wait(&ck->cv, &ck->mu);
        if (ck->stop)
            break;
        ck->want = 0;
        pthread_mutex_unlock(&ck->mu);
        int rc = sqlite3_wal_checkpoint_v2(ck->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            wb_warn("db", "checkpoint: %s", sqlite3_errmsg(ck->db));
        pthread_mutex_lock(&ck->mu);
        ck->runs++;
    }
    pthread_mutex_unlock(&ck->mu);
    return NULL;
}

/* Start the checkpointer; if it cannot start, SQLite's own inline
 * checkpoints stay (the WAL hook runs them). */
static void ckpt_start(db_t *s)
{
    ckpt_t *ck = &s->ck;
    if (sqlite3_open_v2(s->cfg->path, &ck->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        wb_warn("db", "%s: no background checkpointer: %s", s->cfg->path,
                ck->db != NULL ? sqlite3_errmsg(ck->db) : "out of memory");
        sqlite3_close(ck->db);
        ck->db = NULL;
        return;
    }
    sqlite3_busy_timeout(ck->db, 1000);
    pthread_mutex_init(&ck->mu, NULL);
    pthread_cond_init(&ck->cv, NULL);
    ck->want = ck->stop = 0;
    if (pthread_create(&ck->thread, NULL, ckpt_main, ck) != 0) {
        pthread_mutex_destroy(&ck->mu);
        pthread_cond_destroy(&ck->cv);
        sqlite3_close(ck->db);
        ck->db = NULL;
        return;
    }
    ck->live = 1;
}

static void ckpt_stop(db_t *s)
{
    ckpt_t *ck = &s->ck;
    if (!ck->live)
        return;
    pthread_mutex_lock(&ck->mu);
    ck->stop = 1;
    pthread_cond_signal(&ck->cv);
    pthread_mutex_unlock(&ck->mu);
    pthread_join(ck->thread, NULL);
    pthread_mutex_destroy(&ck->mu);
    pthread_cond_destroy(&ck->cv);
    sqlite3_close(ck->db);
    ck->db = NULL;
    ck->live = 0;
}

/* After each commit, per file: past the soft mark the main file's WAL goes
 * to the checkpointer, an attached file's is checkpointed here; past the
 * hard mark the main file's is checkpointed here too (BUSY when the
 * checkpointer is at it: then the next commit tries again). */
static int wal_hook(void *arg, sqlite3 *db, const char *schema, int pages)
{
    db_t *s = arg;
    uint32_t soft = s->cfg->ckpt_pages ? s->cfg->ckpt_pages : CKPT_PAGES;
    uint32_t hard = s->cfg->wal_limit_pages ? s->cfg->wal_limit_pages : WAL_LIMIT_PAGES;
    if ((uint32_t)pages < soft)
        return SQLITE_OK;
    if (s->ck.live && strcmp(schema, "main") == 0 && (uint32_t)pages < hard) {
        pthread_mutex_lock(&s->ck.mu);
        s->ck.want = 1;
        pthread_cond_signal(&s->ck.cv);
        pthread_mutex_unlock(&s->ck.mu);
    } else {
        sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    return SQLITE_OK;
}

static void db_close(db_t *s, int send)
{
    if (s->db != NULL && send)
        txn_commit(s);
    for (size_t i = 0; i < s->npend; i++) /* only when not sending */
        wb_event_free(s->pend[i]);
    s->npend = 0;
    s->in_txn = s->txn_full = 0;
    for (int i = 0; i < CACHE_SIZE; i++)
        if (s->cache[i].stmt != NULL)
            cache_drop(s, i);
    if (s->ops != NULL)
        for (size_t i = 0; i < s->cfg->n_ops; i++)
            sqlite3_finalize(s->ops[i]);
    free(s->ops);
    s->ops = NULL;
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->rollback);
    s->begin = s->commit = s->rollback = NULL;
    ckpt_stop(s);
    if (s->db != NULL) {
        int rc = sqlite3_close_v2(s->db);
        if (rc != SQLITE_OK)
            wb_error("db", "%s: close: %s", s->cfg->path, sqlite3_errstr(rc));
        s->db = NULL;
    }
    free(s->pend);
    s->pend = NULL;
    wb__db_resbuf_fini(&s->rb);
}

/* ATTACH one more database file under its schema name, in WAL mode, and
 * migrate it. Done before any statement is prepared, outside transactions. */
static int attach(db_t *s, const wb_db_attached_t *a)
{
    sqlite3_stmt *st;
    char what[128];
    snprintf(what, sizeof(what), "attach %s as %s", a->path, a->schema);
    int rc = sqlite3_prepare_v2(s->db, "ATTACH DATABASE ?1 AS ?2", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return open_fail(s, sql_fail(s, rc), what);
    sqlite3_bind_text(st, 1, a->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->schema, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int code = rc == SQLITE_DONE ? 0 : sql_fail(s, rc);
    sqlite3_finalize(st);
    if (code != 0)
        return open_fail(s, code, what);
    if ((code = set_wal(s, a->schema)) != 0)
        return open_fail(s, code, what);
    return migrate(s, a->schema, a->path, a->migrations, a->n_migrations);
}

static int db_open(db_t *s)
{
    const wb_db_config_t *cfg = s->cfg;
    int rc, code;

    s->pend = malloc(BATCH_MAX * sizeof(*s->pend));
    s->ops = calloc(cfg->n_ops > 0 ? cfg->n_ops : 1, sizeof(*s->ops));
    if (s->pend == NULL || s->ops == NULL)
        return open_fail(s, oom(s), "open");
    rc = sqlite3_open_v2(cfg->path, &s->db, OPEN_FLAGS, NULL);
    if (rc != SQLITE_OK)
        return open_fail(s, sql_fail(s, rc), "open");
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, cfg->busy_timeout_ms > 0   ? cfg->busy_timeout_ms
                                : cfg->busy_timeout_ms < 0 ? 0
                                                           : DEFAULT_BUSY_MS);
    sqlite3_set_authorizer(s->db, authorize, s);

    if ((code = set_wal(s, "main")) != 0)
        return open_fail(s, code, "journal_mode=WAL");
    if ((rc = exec(s, "PRAGMA synchronous=NORMAL")) != SQLITE_OK)
        return open_fail(s, map_rc(rc), "synchronous=NORMAL");
    /* The one connection may keep a large page cache, and checkpoints (each
     * an fsync of the database on this thread) come every 32 MiB of WAL
     * rather than every 4 MiB. */
    if ((rc = exec(s, "PRAGMA cache_size=-65536")) != SQLITE_OK)
        return open_fail(s, map_rc(rc), "cache_size");
    if ((code = migrate(s, "main", cfg->path, cfg->migrations, cfg->n_migrations)) != 0)
        return code;
    for (size_t i = 0; i < cfg->n_attach; i++)
        if ((code = attach(s, &cfg->attach[i])) != 0)
            return code;

    s->allow_txn = 1;
    if ((code = prepare(s, "BEGIN IMMEDIATE", 15, &s->begin)) != 0 ||
        (code = prepare(s, "COMMIT", 6, &s->commit)) != 0 ||
        (code = prepare(s, "ROLLBACK", 8, &s->rollback)) != 0) {
        s->allow_txn = 0;
        return open_fail(s, code, "preparing transaction statements");
    }
    s->allow_txn = 0;
    for (size_t i = 0; i < cfg->n_ops; i++) {
        const char *sql = cfg->ops[i].sql;
        if ((code = prepare(s, sql, strlen(sql), &s->ops[i])) != 0) {
            char what[128];
            snprintf(what, sizeof(what), "operation %zu (%s)", i,
                     cfg->ops[i].name != NULL ? cfg->ops[i].name : "unnamed");
            return open_fail(s, code, what);
        }
    }
    /* Checkpoints: the main file's in the background, attached ones inline
     * (the hook replaces SQLite's own autocheckpoint). */
    if (s->wal)
        ckpt_start(s);
    sqlite3_wal_hook(s->db, wal_hook, s);
    wb_debug("db", "%s: open, %zu operations", cfg->path, cfg->n_ops);
    return 0;
}

/* ---- the lane service ------------------------------------------------------- */

static void free_state(void *data, size_t len)
{
    db_t *s = data;
    (void)len;
    db_close(s, 0); /* a no-op unless on_stop never ran after a start */
    free(s);
}

static int on_start(wb_rt_t *rt, void *ctx)
{
    db_t *s = ctx;
    (void)rt;
    wb__db_resbuf_init(&s->rb);
    int code = db_open(s);
    if (code != 0)
        db_close(s, 0);
    return code;
}

static void on_event(wb_rt_t *rt, void *ctx, wb_event_t *ev)
{
    db_t *s = ctx;
    if (ev->type == WB__EV_DB_STATE && ev->data == s && s->token == NULL) {
        s->token = ev;
        return;
    }
    if (ev->type != WB_EV_DB_REQUEST) {
        wb_rt_count_drop(rt, WB_LANE_DB);
        wb_event_free(ev);
        return;
    }
    if (s->db != NULL) {
        if (handle_request(s, ev))
            return;
    } else {
        wb_event_t *res = wb__db_res_error(WB_ECLOSED, "the database is not open");
        if (res != NULL)
            deliver(s, ev, res);
    }
    wb_event_free(ev);
}

static void before_sleep(wb_rt_t *rt, void *ctx)
{
    db_t *s = ctx;
    (void)rt;
    if (s->db != NULL)
        txn_commit(s);
}

static void on_stop(wb_rt_t *rt, void *ctx)
{
    db_t *s = ctx;
    (void)rt;
    db_close(s, 1);
    wb_event_t *token = s->token;
    if (token != NULL)
        wb_event_free(token); /* frees s */
}

int wb_db_attach(wb_rt_t *rt, const wb_db_config_t *cfg)
{
    if (rt == NULL || cfg == NULL || cfg->path == NULL || (cfg->n_ops > 0 && cfg->ops == NULL) ||
        (cfg->n_migrations > 0 && cfg->migrations == NULL) || cfg->n_ops > UINT32_MAX)
        return WB_EINVAL;
    for (size_t i = 0; i < cfg->n_ops; i++)
        if (cfg->ops[i].sql == NULL)
            return WB_EINVAL;
    if (cfg->n_handlers > 0 && cfg->handlers == NULL)
        return WB_EINVAL;
    for (size_t i = 0; i < cfg->n_handlers; i++)
        if (cfg->handlers[i].fn == NULL)
            return WB_EINVAL;
    for (size_t i = 0; i < cfg->n_migrations; i++)
        if (cfg->migrations[i] == NULL)
            return WB_EINVAL;
    if (cfg->n_attach > 0 && cfg->attach == NULL)
        return WB_EINVAL;
    for (size_t i = 0; i < cfg->n_attach; i++) {
        const wb_db_attached_t *a = &cfg->attach[i];
        if (a->schema == NULL || a->path == NULL ||
            (a->n_migrations > 0 && a->migrations == NULL) || strlen(a->schema) > 64 ||
            strspn(a->schema, "abcdefghijklmnopqrstuvwxyz_") != strlen(a->schema))
            return WB_EINVAL;
        for (size_t j = 0; j < a->n_migrations; j++)
            if (a->migrations[j] == NULL)
                return WB_EINVAL;
    }

    db_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WB_ENOMEM;
    s->rt = rt;
    s->cfg = cfg;
    for (int i = 0; i < CACHE_BUCKETS; i++)
        s->buckets[i] = -1;
    for (int i = 0; i < CACHE_SIZE; i++)
        s->cache[i].next = -1;
    wb_event_t *token = wb_event_new_ext(WB__EV_DB_STATE, s, sizeof(*s), free_state);
    if (token == NULL) {
        free(s);
        return WB_ENOMEM;
    }
    token->flags |= WB_EVF_CONTROL;
    wb_event_route(token, WB_LANE_DB, 0, WB_LANE_DB, 0);

    wb_lane_service_t svc = {
        .on_event = on_event,
        .on_start = on_start,
        .before_sleep = before_sleep,
        .on_stop = on_stop,
        .ctx = s,
    };
    int rc = wb_rt_set_service(rt, WB_LANE_DB, &svc);
    if (rc != 0) {
        wb_event_free(token);
        return rc;
    }
    rc = wb_rt_send(rt, token);
    if (rc != 0) {
        wb_lane_service_t none = {0};
        wb_rt_set_service(rt, WB_LANE_DB, &none);
        wb_event_free(token);
        return rc;
    }
    return 0;
}

/* ---- building requests ------------------------------------------------------ */

wb_value_t wb_val_text(const char *s)
{
    if (s == NULL)
        return wb_val_null();
    wb_value_t v = {.type = WB_VAL_TEXT, .u.s = {s, strlen(s)}};
    return v;
}

int wb_db_request_set_quiet(wb_event_t *req)
{
    wb__db_req_hdr_t h;
    if (req == NULL || req->type != WB_EV_DB_REQUEST || req->len < sizeof(h))
        return WB_EINVAL;
    memcpy(&h, req->data, sizeof(h));
    if (h.magic != WB__DB_REQ_MAGIC)
        return WB_EINVAL;
    h.flags |= WB_DB_QUIET;
    memcpy(req->data, &h, sizeof(h));
    return 0;
}

static wb_event_t *request_new(uint8_t kind, uint32_t arg, const char *sql, size_t sqllen,
                               const wb_value_t *binds, size_t n, unsigned flags)
{
    size_t total = sizeof(wb__db_req_hdr_t);
    if ((flags & ~(unsigned)(WB_DB_DURABLE | WB_DB_QUIET)) != 0 || (n > 0 && binds == NULL) ||
        n > UINT32_MAX || sqllen > WB_DB_MAX_PAYLOAD - total)
        return NULL;
    total += sqllen;
    for (size_t i = 0; i < n; i++) {
        size_t k = wb__db_val_size(&binds[i]);
        if (k == 0 || k > WB_DB_MAX_PAYLOAD - total)
            return NULL;
        total += k;
    }
    wb_event_t *ev = wb_event_new(WB_EV_DB_REQUEST, total);
    if (ev == NULL)
        return NULL;
    wb__db_req_hdr_t h = {
        .magic = WB__DB_REQ_MAGIC,
        .kind = kind,
        .flags = (uint8_t)flags,
        .arg = kind == WB__DB_REQ_SQL ? (uint32_t)sqllen : arg,
        .nbinds = (uint32_t)n,
    };
    unsigned char *p = ev->data;
    memcpy(p, &h, sizeof(h));
    size_t off = sizeof(h);
    if (sqllen > 0)
        memcpy(p + off, sql, sqllen);
    off += sqllen;
    for (size_t i = 0; i < n; i++)
        off += wb__db_val_put(p + off, &binds[i]);
    WB_ASSERT(off == total);
    return ev;
}

wb_event_t *wb_db_request_sql(const char *sql, const wb_value_t *binds, size_t n, unsigned flags)
{
    if (sql == NULL)
        return NULL;
    return request_new(WB__DB_REQ_SQL, 0, sql, strlen(sql), binds, n, flags);
}

wb_event_t *wb_db_request_op(uint32_t op, const wb_value_t *binds, size_t n, unsigned flags)
{
    return request_new(WB__DB_REQ_OP, op, NULL, 0, binds, n, flags);
}

wb_event_t *wb_db_request_call(uint32_t handler, int64_t rowid, const void *body, size_t len,
                               unsigned flags)
{
    wb_value_t v[2] = {wb_val_int(rowid), wb_val_blob(body, len)};
    if (len > 0 && body == NULL)
        return NULL;
    return request_new(WB__DB_REQ_CALL, handler, NULL, 0, v, 2, flags);
}

wb_event_t *wb_db_request_stats(void)
{
    return request_new(WB__DB_REQ_STATS, 0, NULL, 0, NULL, 0, 0);
}
