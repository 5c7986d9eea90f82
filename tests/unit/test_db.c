/*
 * test_db.c - the database lane, driven through the runtime in deterministic
 * and threaded mode, with a collector actor taking the results.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/db.h"
#include "db/db_internal.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/pool.h"
#include "runtime/rt.h"

static char tmpdir[] = "/tmp/wb_test_db_XXXXXX";
static int path_seq;

static int DET = 1, THR = 0;

/* A fresh database path in the test directory. */
static void tpath(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s-%d.db", tmpdir, name, path_seq++);
}

/* ---- the collector -------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wb_event_t **res;
    int64_t *seen; /* rows a separate connection saw when each result arrived */
    size_t n, cap;
    sqlite3 *peek; /* optional: that separate connection */
    const char *peek_sql;
} coll_t;

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -2;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void coll_handle(wb_actor_t *self, wb_event_t *ev)
{
    coll_t *c = wb_actor_state(self);
    if (ev->type != WB_EV_DB_RESULT) {
        wb_event_free(ev);
        return;
    }
    int64_t seen = c->peek != NULL ? raw_int(c->peek, c->peek_sql) : -1;
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->res = realloc(c->res, c->cap * sizeof(*c->res));
        c->seen = realloc(c->seen, c->cap * sizeof(*c->seen));
        assert_non_null(c->res);
        assert_non_null(c->seen);
    }
    c->res[c->n] = ev;
    c->seen[c->n] = seen;
    c->n++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static const wb_actor_def_t coll_def = {"collector", coll_handle, NULL};

/* ---- the harness ---------------------------------------------------------- */

typedef struct {
    wb_rt_t *rt;
    wb_db_config_t cfg;
    uint64_t coll;
    coll_t c;
    int det;
    size_t taken;
} h_t;

static int h_start(h_t *h, int det, const wb_db_config_t *cfg)
{
    wb_rt_config_t rc;
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->c.mu, NULL);
    pthread_cond_init(&h->c.cv, NULL);
    h->det = det;
    h->cfg = *cfg;
    wb_rt_config_init(&rc);
    rc.deterministic = det;
    rc.seed = 7;
    rc.inbox_limit = 65536; /* tests queue whole batches before the lane runs */
    assert_int_equal(wb_rt_new(&h->rt, &rc), 0);
    assert_int_equal(wb_db_attach(h->rt, &h->cfg), 0);
    assert_int_equal(wb_actor_spawn(h->rt, NULL, &coll_def, &h->c, &h->coll), 0);
    return wb_rt_start(h->rt);
}

static void h_stop(h_t *h)
{
    wb_rt_free(h->rt);
    h->rt = NULL;
    for (size_t i = 0; i < h->c.n; i++)
        wb_event_free(h->c.res[i]);
    free(h->c.res);
    free(h->c.seen);
    pthread_mutex_destroy(&h->c.mu);
    pthread_cond_destroy(&h->c.cv);
}

static void h_send(h_t *h, wb_event_t *req, uint64_t cookie)
{
    assert_non_null(req);
    wb_event_route(req, WB_LANE_ACTOR, h->coll, WB_LANE_DB, 0);
    req->cookie = cookie;
    assert_int_equal(wb_rt_send(h->rt, req), 0);
}

/* Wait until `n` results have arrived in all. */
static void h_wait(h_t *h, size_t n)
{
    if (h->det) {
        wb_rt_run(h->rt, SIZE_MAX);
        assert_true(h->c.n >= n);
        return;
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&h->c.mu);
    while (h->c.n < n)
        if (pthread_cond_timedwait(&h->c.cv, &h->c.mu, &dl) == ETIMEDOUT)
            break;
    size_t got = h->c.n;
    pthread_mutex_unlock(&h->c.mu);
    assert_true(got >= n);
}

/* The next result, in arrival order; the harness frees it. */
static wb_event_t *h_take(h_t *h)
{
    pthread_mutex_lock(&h->c.mu);
    assert_true(h->taken < h->c.n);
    wb_event_t *ev = h->c.res[h->taken++];
    pthread_mutex_unlock(&h->c.mu);
    return ev;
}

static uint64_t next_cookie = 1000;

/* Send one request, wait for its answer. */
static wb_event_t *h_req(h_t *h, wb_event_t *req)
{
    uint64_t cookie = next_cookie++;
    h_send(h, req, cookie);
    h_wait(h, h->taken + 1);
    wb_event_t *res = h_take(h);
    assert_int_equal(res->cookie, cookie);
    assert_int_equal(res->src_lane, WB_LANE_DB);
    assert_int_equal(res->dst_lane, WB_LANE_ACTOR);
    assert_int_equal(res->dst, h->coll);
    return res;
}

static wb_event_t *h_sql(h_t *h, const char *sql, const wb_value_t *b, size_t n)
{
    return h_req(h, wb_db_request_sql(sql, b, n, 0));
}

/* Run sql and expect success. */
static wb_event_t *h_ok(h_t *h, const char *sql, const wb_value_t *b, size_t n)
{
    wb_event_t *res = h_sql(h, sql, b, n);
    if (res->status != 0)
        print_error("%s: %s: %s\n", sql, wb_err_name(res->status), wb_db_result_errmsg(res));
    assert_int_equal(res->status, 0);
    return res;
}

static int64_t h_int(h_t *h, const char *sql)
{
    wb_event_t *res = h_ok(h, sql, NULL, 0);
    wb_value_t v;
    assert_int_equal(wb_db_result_value(res, 0, 0, &v), 0);
    assert_int_equal(v.type, WB_VAL_INT);
    return v.u.i;
}

static void h_stats(h_t *h, wb_db_stats_t *st)
{
    wb_event_t *res = h_req(h, wb_db_request_stats());
    assert_int_equal(res->status, 0);
    assert_int_equal(wb_db_result_stats(res, st), 0);
}

static wb_db_config_t simple_cfg(const char *path, const char *const *mig, size_t nmig)
{
    wb_db_config_t cfg = {.path = path, .migrations = mig, .n_migrations = nmig};
    return cfg;
}

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    return db;
}

/* ---- values round trip ------------------------------------------------------ */

static const char *const mig_vals[] = {"CREATE TABLE v(id INTEGER PRIMARY KEY, x)"};

static void check_value(const wb_event_t *res, size_t row, const wb_value_t *want)
{
    wb_value_t got;
    assert_int_equal(wb_db_result_value(res, row, 0, &got), 0);
    assert_int_equal(got.type, want->type);
    switch (want->type) {
    case WB_VAL_NULL:
        break;
    case WB_VAL_INT:
        assert_true(got.u.i == want->u.i);
        break;
    case WB_VAL_REAL:
        assert_memory_equal(&got.u.d, &want->u.d, sizeof(double));
        break;
    case WB_VAL_TEXT:
    case WB_VAL_BLOB:
        assert_int_equal(got.u.s.n, want->u.s.n);
        if (want->u.s.n > 0)
            assert_memory_equal(got.u.s.p, want->u.s.p, want->u.s.n);
        break;
    }
}

static void test_roundtrip_types(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "types");
    wb_db_config_t cfg = simple_cfg(path, mig_vals, 1);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);

    static const char nul_text[] = "a\0b\0c";
    static const unsigned char nul_blob[] = {0, 1, 0, 2, 0, 0, 255};
    size_t big_n = 1u << 20;
    unsigned char *big = malloc(big_n);
    assert_non_null(big);
    for (size_t i = 0; i < big_n; i++)
        big[i] = (unsigned char)(i * 131 + (i >> 9));
    wb_value_t vals[] = {
        wb_val_null(),
        wb_val_int(0),
        wb_val_int(INT64_MIN),
        wb_val_int(INT64_MAX),
        wb_val_real(3.25),
        wb_val_real(-1e300),
        wb_val_text("h\xc3\xa9llo, w\xc3\xb6rld"),
        wb_val_text(""),
        {.type = WB_VAL_TEXT, .u.s = {nul_text, sizeof(nul_text) - 1}},
        wb_val_blob(nul_blob, sizeof(nul_blob)),
        wb_val_blob(NULL, 0),
        wb_val_blob(big, big_n),
    };
    size_t nv = sizeof(vals) / sizeof(vals[0]);
    for (size_t i = 0; i < nv; i++) {
        wb_value_t b[2] = {wb_val_int((int64_t)i + 1), vals[i]};
        wb_event_t *res = h_ok(&h, "INSERT INTO v(id, x) VALUES(?, ?)", b, 2);
        assert_int_equal(wb_db_result_rowid(res), i + 1);
        assert_int_equal(wb_db_result_changes(res), 1);
    }
    wb_event_t *res = h_ok(&h, "SELECT x, typeof(x) FROM v ORDER BY id", NULL, 0);
    assert_int_equal(wb_db_result_nrows(res), nv);
    assert_int_equal(wb_db_result_ncols(res), 2);
    for (size_t i = 0; i < nv; i++)
        check_value(res, i, &vals[i]);
    /* the empty blob stays a blob, not NULL */
    wb_value_t t;
    assert_int_equal(wb_db_result_value(res, 10, 1, &t), 0);
    assert_int_equal(t.type, WB_VAL_TEXT);
    assert_int_equal(t.u.s.n, 4);
    assert_memory_equal(t.u.s.p, "blob", 4);
    /* out of range */
    assert_int_equal(wb_db_result_value(res, nv, 0, &t), WB_ENOENT);
    assert_int_equal(t.type, WB_VAL_NULL);
    assert_int_equal(wb_db_result_value(res, 0, 2, &t), WB_ENOENT);
    assert_string_equal(wb_db_result_errmsg(res), "");

    /* a value bound by op and read back through a WHERE clause */
    wb_value_t key = wb_val_blob(big, big_n);
    res = h_ok(&h, "SELECT id FROM v WHERE x = ?", &key, 1);
    assert_int_equal(wb_db_result_nrows(res), 1);
    wb_value_t id;
    assert_int_equal(wb_db_result_value(res, 0, 0, &id), 0);
    assert_int_equal(id.u.i, (int64_t)nv);
    free(big);
    h_stop(&h);
}

static void test_rowid_changes(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "rowid");
    wb_db_config_t cfg = simple_cfg(path, mig_vals, 1);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);

    for (int i = 1; i <= 3; i++) {
        wb_value_t b = wb_val_int(i * 10);
        wb_event_t *res = h_ok(&h, "INSERT INTO v(x) VALUES(?)", &b, 1);
        assert_int_equal(wb_db_result_rowid(res), i);
        assert_int_equal(wb_db_result_changes(res), 1);
        assert_int_equal(wb_db_result_nrows(res), 0);
        assert_int_equal(wb_db_result_ncols(res), 0);
    }
    wb_event_t *res = h_ok(&h, "UPDATE v SET x = x + 1", NULL, 0);
    assert_int_equal(wb_db_result_changes(res), 3);
    assert_int_equal(wb_db_result_rowid(res), 0);
    res = h_ok(&h, "DELETE FROM v WHERE x > 15", NULL, 0);
    assert_int_equal(wb_db_result_changes(res), 2);
    res = h_ok(&h, "SELECT count(*) FROM v", NULL, 0);
    assert_int_equal(wb_db_result_changes(res), 0);
    assert_int_equal(wb_db_result_nrows(res), 1);
    res = h_ok(&h, "CREATE TABLE w(a)", NULL, 0);
    assert_int_equal(wb_db_result_changes(res), 0);
    res = h_ok(&h, "INSERT INTO w SELECT x FROM v UNION ALL SELECT 5", NULL, 0);
    assert_int_equal(wb_db_result_changes(res), 2);
    assert_int_equal(wb_db_result_rowid(res), 2);
    h_stop(&h);
}

/* ---- named operations --------------------------------------------------------- */

static const char *const mig_kv[] = {
    "CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT UNIQUE NOT NULL, v BLOB)",
};

static const wb_db_op_t kv_ops[] = {
    {"put", "INSERT INTO kv(k, v) VALUES(?1, ?2)"},
    {"get", "SELECT v FROM kv WHERE k = ?1"},
    {"count", "SELECT count(*) FROM kv"},
};

static wb_db_config_t kv_cfg(const char *path)
{
    wb_db_config_t cfg = {
        .path = path, .migrations = mig_kv, .n_migrations = 1, .ops = kv_ops, .n_ops = 3};
    return cfg;
}

static void test_named_ops(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "ops");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);

    wb_value_t put[2] = {wb_val_text("alpha"), wb_val_blob("\x01\x00\x02", 3)};
    wb_event_t *res = h_req(&h, wb_db_request_op(0, put, 2, 0));
    assert_int_equal(res->status, 0);
    assert_int_equal(wb_db_result_rowid(res), 1);

    wb_value_t k = wb_val_text("alpha");
    res = h_req(&h, wb_db_request_op(1, &k, 1, 0));
    assert_int_equal(res->status, 0);
    assert_int_equal(wb_db_result_nrows(res), 1);
    check_value(res, 0, &put[1]);

    k = wb_val_text("missing");
    res = h_req(&h, wb_db_request_op(1, &k, 1, 0));
    assert_int_equal(res->status, 0);
    assert_int_equal(wb_db_result_nrows(res), 0);
    assert_int_equal(wb_db_result_ncols(res), 1);

    /* no such op, wrong number of values */
    res = h_req(&h, wb_db_request_op(3, NULL, 0, 0));
    assert_int_equal(res->status, WB_EINVAL);
    assert_non_null(strstr(wb_db_result_errmsg(res), "no operation 3"));
    res = h_req(&h, wb_db_request_op(0, put, 1, 0));
    assert_int_equal(res->status, WB_EINVAL);
    res = h_req(&h, wb_db_request_op(2, put, 1, 0));
    assert_int_equal(res->status, WB_EINVAL);

    res = h_req(&h, wb_db_request_op(2, NULL, 0, 0));
    wb_value_t n;
    assert_int_equal(wb_db_result_value(res, 0, 0, &n), 0);
    assert_int_equal(n.u.i, 1);
    h_stop(&h);
}

/* WB_DB_QUIET: a success goes unanswered, a failure is answered; the
 * answered request after them sees their writes. */
static void test_quiet(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "quiet");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);
    wb_value_t a[2] = {wb_val_text("a"), wb_val_null()};
    wb_value_t b[2] = {wb_val_text("b"), wb_val_null()};
    h_send(&h, wb_db_request_op(0, a, 2, WB_DB_QUIET), 1);
    wb_event_t *later = wb_db_request_op(0, b, 2, 0);
    assert_int_equal(wb_db_request_set_quiet(later), 0);
    h_send(&h, later, 2);
    /* A duplicate key fails: answered although quiet. */
    h_send(&h, wb_db_request_op(0, a, 2, WB_DB_QUIET), 3);
    h_send(&h, wb_db_request_op(2, NULL, 0, 0), 4);
    h_wait(&h, 2);
    /* The failure came first, then the count: no answers for 1 and 2. */
    wb_event_t *err = h_take(&h), *res = h_take(&h);
    assert_int_equal(h.c.n, 2);
    assert_int_equal(err->cookie, 3);
    assert_int_equal(res->cookie, 4);
    assert_int_equal(err->status, WB_ECONSTRAINT);
    wb_value_t n;
    assert_int_equal(wb_db_result_value(res, 0, 0, &n), 0);
    assert_int_equal(n.u.i, 2);
    assert_int_equal(wb_db_request_set_quiet(NULL), WB_EINVAL);
    wb_event_t *notreq = wb_event_new(WB_EV_USER, 64);
    assert_int_equal(wb_db_request_set_quiet(notreq), WB_EINVAL);
    wb_event_free(notreq);
    h_stop(&h);
}

/* A second database file attached under a schema name, migrated on its own
 * user_version; one transaction spans both. */
static const char *const mig_usage[] = {"CREATE TABLE usage.hist(x)",
                                        "CREATE INDEX usage.hist_x ON hist(x)"};

static void test_attach(void **state)
{
    int det = *(int *)*state;
    char path[256], upath[256];
    tpath(path, sizeof(path), "main");
    tpath(upath, sizeof(upath), "attached");
    wb_db_attached_t at = {"usage", upath, mig_usage, 2};
    wb_db_config_t cfg = kv_cfg(path);
    cfg.attach = &at;
    cfg.n_attach = 1;
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);
    wb_value_t x = wb_val_int(42);
    wb_event_t *res = h_ok(&h, "INSERT INTO usage.hist(x) VALUES (?1)", &x, 1);
    (void)res;
    assert_int_equal(h_int(&h, "SELECT count(*) FROM usage.hist"), 1);
    assert_int_equal(h_int(&h, "PRAGMA usage.user_version"), 2);
    assert_int_equal(h_int(&h, "PRAGMA main.user_version"), 1);
    h_stop(&h);
    /* The row is in the attached file, not in the main one. */
    sqlite3 *db = raw_open(upath);
    assert_int_equal(raw_int(db, "SELECT x FROM hist"), 42);
    sqlite3_close(db);
    db = raw_open(path);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'hist'"), 0);
    sqlite3_close(db);
    /* Reopening does not migrate again. */
    assert_int_equal(h_start(&h, det, &cfg), 0);
    assert_int_equal(h_int(&h, "SELECT count(*) FROM usage.hist"), 1);
    h_stop(&h);
    /* A bad schema name is refused up front. */
    wb_db_attached_t bad = {"Usage; DROP", upath, NULL, 0};
    cfg.attach = &bad;
    wb_rt_t *rt;
    wb_rt_config_t rc;
    wb_rt_config_init(&rc);
    assert_int_equal(wb_rt_new(&rt, &rc), 0);
    assert_int_equal(wb_db_attach(rt, &cfg), WB_EINVAL);
    wb_rt_free(rt);
}

/* The WAL is checkpointed in the background, and its size stays bounded
 * even under writes that never pause (the lane checkpoints itself past
 * wal_limit_pages). Small marks here: 256 pages (1 MiB) and 1024 (4 MiB). */
static void test_background_checkpoint(void **state)
{
    int det = *(int *)*state;
    char path[256], wal[300];
    tpath(path, sizeof(path), "ckpt");
    snprintf(wal, sizeof(wal), "%s-wal", path);
    wb_db_config_t cfg = kv_cfg(path);
    cfg.ckpt_pages = 256;
    cfg.wal_limit_pages = 1024;
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);
    char blob[200];
    memset(blob, 'x', sizeof(blob));
    long maxwal = 0;
    /* 60,000 rows of ~220 bytes (~13 MiB of pages) as fast as they go. */
    enum { ROWS = 60000, STEP = 2000 };
    for (int i = 0; i < ROWS; i += STEP) {
        for (int k = i; k < i + STEP; k++) {
            char key[32];
            snprintf(key, sizeof(key), "k%d", k);
            wb_value_t v[2] = {wb_val_text(key), wb_val_blob(blob, sizeof(blob))};
            h_send(&h, wb_db_request_op(0, v, 2, WB_DB_QUIET), 1);
        }
        struct stat sb;
        if (stat(wal, &sb) == 0 && sb.st_size > maxwal)
            maxwal = sb.st_size;
    }
    assert_int_equal(h_int(&h, "SELECT count(*) FROM kv"), ROWS);
    struct stat sb;
    if (stat(wal, &sb) == 0 && sb.st_size > maxwal)
        maxwal = sb.st_size;
    wb_db_stats_t st;
    h_stats(&h, &st);
    /* Without checkpoints the WAL would hold all ~13 MiB (and more: pages
     * are written again by later transactions). One transaction may take
     * up to BATCH_MAX requests (~2.5 MiB here) past the hard mark. */
    print_message("WAL high water %ld kB, %llu background checkpoints\n", maxwal / 1024,
                  (unsigned long long)st.checkpoints);
    assert_true(maxwal < 8L << 20);
    h_stop(&h);
}

static void test_bad_op_fails_start(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "badop");
    static const wb_db_op_t ops[] = {{"ok", "SELECT 1"}, {"broken", "SELEKT nothing"}};
    wb_db_config_t cfg = {.path = path, .ops = ops, .n_ops = 2};
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), WB_EDB);
    h_stop(&h);
}

/* ---- group commit and durability ------------------------------------------------ */

static void test_group_commit_det(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof(path), "group");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, 1, &cfg), 0);
    wb_rt_run(h.rt, SIZE_MAX);

    /* Every result must arrive after the one commit: another connection
     * counts the rows each time one arrives. */
    h.c.peek = raw_open(path);
    h.c.peek_sql = "SELECT count(*) FROM kv";
    enum { N = 1000 };
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key-%d", i);
        wb_value_t b[2] = {wb_val_text(key), wb_val_int(i)};
        h_send(&h, wb_db_request_op(0, b, 2, 0), (uint64_t)i);
    }
    h_wait(&h, N);
    for (int i = 0; i < N; i++) {
        wb_event_t *res = h_take(&h);
        assert_int_equal(res->status, 0);
        assert_int_equal(res->cookie, (uint64_t)i);
        assert_int_equal(wb_db_result_rowid(res), i + 1);
        assert_int_equal(h.c.seen[i], N);
    }
    sqlite3_close(h.c.peek);
    h.c.peek = NULL;

    wb_db_stats_t st;
    h_stats(&h, &st);
    assert_int_equal(st.requests, N);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.durable_commits, 0);
    assert_int_equal(st.max_batch, N);
    assert_int_equal(st.errors, 0);
    h_stop(&h);
}

/* Under constant load a batch is cut at 10000 requests. */
static void test_batch_bound(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof(path), "bound");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, 1, &cfg), 0);
    enum { N = 25000 };
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        wb_value_t b[2] = {wb_val_text(key), wb_val_null()};
        h_send(&h, wb_db_request_op(0, b, 2, 0), (uint64_t)i);
    }
    h_wait(&h, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(h_take(&h)->status, 0);
    wb_db_stats_t st;
    h_stats(&h, &st);
    assert_int_equal(st.commits, 3);
    assert_int_equal(st.max_batch, 10000);
    h_stop(&h);
}

static void *sender_main(void *arg)
{
    h_t *h = arg;
    for (int i = 0; i < 1000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "t%d", i);
        wb_value_t b[2] = {wb_val_text(key), wb_val_int(i)};
        h_send(h, wb_db_request_op(0, b, 2, 0), (uint64_t)i);
    }
    return NULL;
}

static void test_group_commit_threaded(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof(path), "group-thr");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, 0, &cfg), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sender_main, &h), 0);
    pthread_join(t, NULL);
    h_wait(&h, 1000);
    for (int i = 0; i < 1000; i++) {
        wb_event_t *res = h_take(&h);
        assert_int_equal(res->status, 0);
        assert_int_equal(res->cookie, (uint64_t)i);
    }
    assert_int_equal(h_int(&h, "SELECT count(*) FROM kv"), 1000);
    wb_db_stats_t st;
    h_stats(&h, &st);
    assert_int_equal(st.requests, 1001);
    assert_true(st.commits >= 1 && st.commits <= 1000);
    h_stop(&h);
}

static void test_durable(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof(path), "durable");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, 1, &cfg), 0);
    wb_rt_run(h.rt, SIZE_MAX);
    h.c.peek = raw_open(path);
    h.c.peek_sql = "SELECT count(*) FROM kv";

    /* plain, durable, plain in one drain: the plain part before the durable
     * one commits on its own (synchronous cannot change inside a
     * transaction), the rest commits with synchronous=FULL. */
    static const char *keys[] = {"p1", "d1", "p2"};
    for (int i = 0; i < 3; i++) {
        wb_value_t b[2] = {wb_val_text(keys[i]), wb_val_null()};
        h_send(&h, wb_db_request_op(0, b, 2, i == 1 ? WB_DB_DURABLE : 0), (uint64_t)i);
    }
    h_wait(&h, 3);
    for (int i = 0; i < 3; i++) {
        wb_event_t *res = h_take(&h);
        assert_int_equal(res->status, 0);
        /* p1 may be read before or after the FULL commit; d1, p2 only after */
        assert_true(h.c.seen[i] == 3 || (i == 0 && h.c.seen[i] == 1));
    }
    wb_db_stats_t st;
    h_stats(&h, &st);
    assert_int_equal(st.commits, 2);
    assert_int_equal(st.durable_commits, 1);

    /* a durable batch on its own: one FULL commit, and back to NORMAL (1) */
    for (int i = 0; i < 10; i++) {
        char key[16];
        snprintf(key, sizeof(key), "D%d", i);
        wb_value_t b[2] = {wb_val_text(key), wb_val_null()};
        h_send(&h, wb_db_request_op(0, b, 2, WB_DB_DURABLE), 100 + (uint64_t)i);
    }
    h_wait(&h, h.taken + 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(h_take(&h)->status, 0);
        assert_int_equal(h.c.seen[h.taken - 1], 13);
    }
    sqlite3_close(h.c.peek);
    h.c.peek = NULL;
    h_stats(&h, &st);
    assert_int_equal(st.commits, 3);
    assert_int_equal(st.durable_commits, 2);
    assert_int_equal(h_int(&h, "PRAGMA synchronous"), 1);
    h_stop(&h);
}

/* ---- failures ----------------------------------------------------------------- */

static void test_constraint(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "constraint");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);
    if (det)
        wb_rt_run(h.rt, SIZE_MAX);

    static const char *keys[] = {"a", "b", "a", "c"};
    for (int i = 0; i < 4; i++) {
        wb_value_t b[2] = {wb_val_text(keys[i]), wb_val_int(i)};
        h_send(&h, wb_db_request_op(0, b, 2, 0), (uint64_t)i);
    }
    /* a failing statement undoes only itself: neither row of it stays */
    h_send(&h, wb_db_request_sql("INSERT INTO kv(k) VALUES('x'), ('b')", NULL, 0, 0), 4);
    h_wait(&h, 5);
    for (int i = 0; i < 5; i++) {
        wb_event_t *res = h_take(&h);
        assert_int_equal(res->cookie, (uint64_t)i);
        if (i == 2 || i == 4) {
            assert_int_equal(res->status, WB_ECONSTRAINT);
            assert_string_equal(wb_db_result_errmsg(res), "UNIQUE constraint failed: kv.k");
            assert_int_equal(wb_db_result_nrows(res), 0);
            assert_int_equal(wb_db_result_rowid(res), 0);
        } else {
            assert_int_equal(res->status, 0);
        }
    }
    wb_event_t *res =
        h_ok(&h, "SELECT group_concat(k, ',') FROM (SELECT k FROM kv ORDER BY k)", NULL, 0);
    wb_value_t v;
    assert_int_equal(wb_db_result_value(res, 0, 0, &v), 0);
    assert_int_equal(v.u.s.n, 5);
    assert_memory_equal(v.u.s.p, "a,b,c", 5);
    wb_db_stats_t st;
    h_stats(&h, &st);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.rollbacks, 0);
    if (det)
        assert_int_equal(st.commits, 1);
    h_stop(&h);

    /* committed: another connection sees it after the runtime is gone */
    sqlite3 *db = raw_open(path);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM kv"), 3);
    sqlite3_close(db);
}

static void test_full(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "full");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);

    for (int i = 0; i < 10; i++) {
        char key[16];
        snprintf(key, sizeof(key), "early%d", i);
        wb_value_t b[2] = {wb_val_text(key), wb_val_int(i)};
        assert_int_equal(h_req(&h, wb_db_request_op(0, b, 2, 0))->status, 0);
    }
    int64_t pages = h_int(&h, "PRAGMA page_count");
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", (long long)pages + 3);
    assert_int_equal(h_int(&h, sql), pages + 3);

    /* One drain of big rows: some fit, then the file is full. */
    static unsigned char blob[6000];
    memset(blob, 0x5a, sizeof(blob));
    enum { N = 12 };
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof(key), "late%d", i);
        wb_value_t b[2] = {wb_val_text(key), wb_val_blob(blob, sizeof(blob))};
        h_send(&h, wb_db_request_op(0, b, 2, 0), (uint64_t)i);
    }
    h_wait(&h, h.taken + N);
    int full = 0;
    int late_ok = 0;
    for (int i = 0; i < N; i++) {
        wb_event_t *res = h_take(&h);
        if (res->status == WB_EFULL) {
            full++;
            assert_non_null(strstr(wb_db_result_errmsg(res), "full"));
        } else {
            assert_int_equal(res->status, 0);
            late_ok++;
        }
    }
    assert_true(full > 0);
    h_stop(&h);

    /* what was answered with success is there, and nothing else */
    sqlite3 *db = raw_open(path);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM kv WHERE k LIKE 'early%'"), 10);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM kv WHERE k LIKE 'late%'"), late_ok);
    sqlite3_close(db);
}

static void test_busy(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "busy");
    wb_db_config_t cfg = kv_cfg(path);
    cfg.busy_timeout_ms = 50;
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);
    wb_value_t b[2] = {wb_val_text("first"), wb_val_null()};
    assert_int_equal(h_req(&h, wb_db_request_op(0, b, 2, 0))->status, 0);

    sqlite3 *other = raw_open(path);
    assert_int_equal(
        sqlite3_exec(other, "BEGIN EXCLUSIVE; INSERT INTO kv(k) VALUES('other')", NULL, NULL, NULL),
        SQLITE_OK);
    b[0] = wb_val_text("second");
    wb_event_t *res = h_req(&h, wb_db_request_op(0, b, 2, 0));
    assert_int_equal(res->status, WB_EBUSY);
    assert_string_equal(wb_db_result_errmsg(res), "database is locked");
    /* WAL: reads still go while another connection writes */
    res = h_req(&h, wb_db_request_op(2, NULL, 0, 0));
    assert_int_equal(res->status, 0);

    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    assert_int_equal(h_req(&h, wb_db_request_op(0, b, 2, 0))->status, 0);
    assert_int_equal(h_int(&h, "SELECT count(*) FROM kv"), 3);
    h_stop(&h);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void test_corrupt(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "corrupt");
    unsigned char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)(i * 7 + 3);
    write_file(path, junk, sizeof(junk));
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), WB_ECORRUPT);
    h_stop(&h);
}

/* ---- migrations ----------------------------------------------------------------- */

static const char *const mig_three[] = {
    "CREATE TABLE a(x INTEGER)",
    "INSERT INTO a VALUES(1); CREATE TABLE b(y TEXT)",
    "ALTER TABLE b ADD COLUMN z; INSERT INTO b VALUES('v3', 3)",
};

static const char *const mig_four_bad[] = {
    "CREATE TABLE a(x INTEGER)",
    "INSERT INTO a VALUES(1); CREATE TABLE b(y TEXT)",
    "ALTER TABLE b ADD COLUMN z; INSERT INTO b VALUES('v3', 3)",
    "CREATE TABLE c(q); INSERT INTO a VALUES(2); INSERT INTO nowhere VALUES(1)",
};

static void test_migrations(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "migrate");
    wb_db_config_t cfg = simple_cfg(path, mig_three, 3);
    h_t h;

    assert_int_equal(h_start(&h, det, &cfg), 0);
    assert_int_equal(h_int(&h, "PRAGMA user_version"), 3);
    assert_int_equal(h_int(&h, "SELECT count(*) FROM a"), 1);
    assert_int_equal(h_int(&h, "SELECT z FROM b WHERE y = 'v3'"), 3);
    h_stop(&h);

    /* reopen: nothing applied twice (the CREATE TABLEs would fail) */
    assert_int_equal(h_start(&h, det, &cfg), 0);
    assert_int_equal(h_int(&h, "PRAGMA user_version"), 3);
    assert_int_equal(h_int(&h, "SELECT count(*) FROM a"), 1);
    h_stop(&h);

    /* a failing fourth: start fails, version 3 and its tables stay as they were */
    cfg = simple_cfg(path, mig_four_bad, 4);
    assert_int_equal(h_start(&h, det, &cfg), WB_EDB);
    h_stop(&h);
    sqlite3 *db = raw_open(path);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM a"), 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'c'"), 0);
    sqlite3_close(db);

    /* a database newer than the program */
    cfg = simple_cfg(path, mig_three, 2);
    assert_int_equal(h_start(&h, det, &cfg), WB_EDB);
    h_stop(&h);

    /* migrations on a fresh database run in order */
    tpath(path, sizeof(path), "migrate-order");
    static const char *const order[] = {
        "CREATE TABLE log(step)",
        "INSERT INTO log VALUES(1)",
        "INSERT INTO log VALUES((SELECT max(step) FROM log) * 10 + 2)",
    };
    cfg = simple_cfg(path, order, 3);
    assert_int_equal(h_start(&h, det, &cfg), 0);
    assert_int_equal(h_int(&h, "SELECT max(step) FROM log"), 12);
    h_stop(&h);

    /* a migration may not run its own transaction */
    tpath(path, sizeof(path), "migrate-txn");
    static const char *const txn[] = {"CREATE TABLE t(a); COMMIT; BEGIN"};
    cfg = simple_cfg(path, txn, 1);
    assert_int_equal(h_start(&h, det, &cfg), WB_EDB);
    h_stop(&h);
    db = raw_open(path);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 0);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema"), 0);
    sqlite3_close(db);
}

/* ---- malformed requests ------------------------------------------------------------ */

static wb_event_t *raw_req(const void *p, size_t n)
{
    return wb_event_new_copy(WB_EV_DB_REQUEST, p, n);
}

static void free_ext(void *data, size_t len)
{
    (void)len;
    free(data);
}

static void test_malformed(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "malformed");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);

    wb__db_req_hdr_t hdr = {.magic = WB__DB_REQ_MAGIC, .kind = WB__DB_REQ_OP, .arg = 2};
    unsigned char buf[256];
    memset(buf, 0, sizeof(buf));

    /* empty, short, bad magic, bad kind, bad flags */
    assert_int_equal(h_req(&h, raw_req(NULL, 0))->status, WB_EINVAL);
    assert_int_equal(h_req(&h, raw_req(&hdr, sizeof(hdr) - 1))->status, WB_EINVAL);
    wb__db_req_hdr_t x = hdr;
    x.magic ^= 1;
    assert_int_equal(h_req(&h, raw_req(&x, sizeof(x)))->status, WB_EINVAL);
    x = hdr;
    x.kind = 9;
    assert_int_equal(h_req(&h, raw_req(&x, sizeof(x)))->status, WB_EINVAL);
    x = hdr;
    x.flags = 0x80;
    assert_int_equal(h_req(&h, raw_req(&x, sizeof(x)))->status, WB_EINVAL);
    /* a well-formed header works */
    assert_int_equal(h_req(&h, raw_req(&hdr, sizeof(hdr)))->status, 0);
    /* op out of range */
    x = hdr;
    x.arg = UINT32_MAX;
    assert_int_equal(h_req(&h, raw_req(&x, sizeof(x)))->status, WB_EINVAL);
    /* SQL length past the end */
    x = hdr;
    x.kind = WB__DB_REQ_SQL;
    x.arg = 1000;
    memcpy(buf, &x, sizeof(x));
    memcpy(buf + sizeof(x), "SELECT 1", 8);
    assert_int_equal(h_req(&h, raw_req(buf, sizeof(x) + 8))->status, WB_EINVAL);
    /* too many values claimed */
    x = hdr;
    x.arg = 0;
    x.nbinds = UINT32_MAX;
    assert_int_equal(h_req(&h, raw_req(&x, sizeof(x)))->status, WB_EINVAL);
    /* a blob whose length runs past the end */
    x = hdr;
    x.arg = 1;
    x.nbinds = 1;
    memcpy(buf, &x, sizeof(x));
    buf[sizeof(x)] = WB_VAL_BLOB;
    uint32_t big = 100;
    memcpy(buf + sizeof(x) + 1, &big, 4);
    assert_int_equal(h_req(&h, raw_req(buf, sizeof(x) + 5 + 10))->status, WB_EINVAL);
    /* an unknown value type; a truncated int */
    buf[sizeof(x)] = 17;
    assert_int_equal(h_req(&h, raw_req(buf, sizeof(x) + 9))->status, WB_EINVAL);
    buf[sizeof(x)] = WB_VAL_INT;
    assert_int_equal(h_req(&h, raw_req(buf, sizeof(x) + 5))->status, WB_EINVAL);
    /* stray bytes after the values */
    buf[sizeof(x)] = WB_VAL_NULL;
    assert_int_equal(h_req(&h, raw_req(buf, sizeof(x) + 3))->status, WB_EINVAL);
    assert_int_equal(h_req(&h, raw_req(buf, sizeof(x) + 1))->status, 0);

    /* a request whose payload lives outside the event */
    wb_event_t *in = wb_db_request_sql("SELECT 7 * 6", NULL, 0, 0);
    void *copy = malloc(in->len);
    memcpy(copy, in->data, in->len);
    wb_event_t *ext = wb_event_new_ext(WB_EV_DB_REQUEST, copy, in->len, free_ext);
    wb_event_free(in);
    wb_event_t *r = h_req(&h, ext);
    assert_int_equal(r->status, 0);
    wb_value_t v42;
    assert_int_equal(wb_db_result_value(r, 0, 0, &v42), 0);
    assert_int_equal(v42.u.i, 42);

    /* SQL the lane refuses */
    wb_event_t *res = h_sql(&h, "SELECT 1; SELECT 2", NULL, 0);
    assert_int_equal(res->status, WB_EINVAL);
    assert_non_null(strstr(wb_db_result_errmsg(res), "more than one statement"));
    assert_int_equal(h_sql(&h, "BEGIN", NULL, 0)->status, WB_EINVAL);
    assert_int_equal(h_sql(&h, "COMMIT", NULL, 0)->status, WB_EINVAL);
    assert_int_equal(h_sql(&h, "SAVEPOINT s", NULL, 0)->status, WB_EINVAL);
    assert_int_equal(h_sql(&h, "  -- nothing\n", NULL, 0)->status, WB_EINVAL);
    assert_int_equal(h_sql(&h, "SELECT 1;;  \n", NULL, 0)->status, 0);
    res = h_sql(&h, "SELEKT 1", NULL, 0);
    assert_int_equal(res->status, WB_EDB);
    assert_non_null(strstr(wb_db_result_errmsg(res), "syntax error"));
    wb_value_t one = wb_val_int(1);
    assert_int_equal(h_sql(&h, "SELECT 1", &one, 1)->status, WB_EINVAL);

    /* builders refuse what cannot be sent */
    assert_null(wb_db_request_sql(NULL, NULL, 0, 0));
    assert_null(wb_db_request_op(0, NULL, 1, 0));
    assert_null(wb_db_request_op(0, NULL, 0, 0x40));
    wb_value_t badv = {.type = WB_VAL_BLOB, .u.s = {NULL, 5}};
    assert_null(wb_db_request_op(0, &badv, 1, 0));
    badv.type = (wb_val_type_t)42;
    assert_null(wb_db_request_op(0, &badv, 1, 0));
    wb_value_t huge = wb_val_blob(buf, (size_t)WB_DB_MAX_PAYLOAD);
    assert_null(wb_db_request_op(0, &huge, 1, 0));

    /* a reply nobody can take, an event of a foreign type: dropped, no crash */
    wb_event_t *lost = wb_db_request_sql("SELECT 1", NULL, 0, 0);
    wb_event_route(lost, WB_LANE_ACTOR, 1, WB_LANE_DB, 0);
    lost->src_lane = 200;
    assert_int_equal(wb_rt_send(h.rt, lost), 0);
    wb_event_t *foreign = wb_event_new(WB_EV_USER, 4);
    wb_event_route(foreign, WB_LANE_ACTOR, h.coll, WB_LANE_DB, 0);
    assert_int_equal(wb_rt_send(h.rt, foreign), 0);

    /* and the lane still works, in the same transaction order */
    assert_int_equal(h_int(&h, "SELECT 40 + 2"), 42);
    wb_db_stats_t st;
    h_stats(&h, &st);
    assert_int_equal(st.errors, 19);
    wb_lane_stats_t ls;
    wb_rt_stats(h.rt, WB_LANE_DB, &ls);
    assert_true(ls.dropped >= 2);
    h_stop(&h);
}

/* ---- result decoding --------------------------------------------------------------- */

static void test_result_bounds(void **state)
{
    (void)state;
    wb__db_resbuf_t rb;
    wb__db_resbuf_init(&rb);
    wb__db_res_begin(&rb, 2);
    for (int r = 0; r < 3; r++) {
        wb__db_res_row(&rb);
        wb_value_t a = wb_val_int(r), b = wb_val_text("xyz");
        wb__db_res_value(&rb, &a);
        wb__db_res_value(&rb, &b);
    }
    wb_event_t *good = wb__db_res_finish(&rb, 7, 3);
    assert_non_null(good);
    assert_int_equal(wb_db_result_nrows(good), 3);
    assert_int_equal(wb_db_result_rowid(good), 7);
    wb_value_t v;
    assert_int_equal(wb_db_result_value(good, 2, 1, &v), 0);
    assert_int_equal(v.u.s.n, 3);

    /* every truncation of a good result is refused without reading past it */
    for (size_t n = 0; n < good->len; n++) {
        wb_event_t *t = wb_event_new_copy(WB_EV_DB_RESULT, good->data, n);
        assert_int_equal(wb_db_result_nrows(t), 0);
        assert_int_equal(wb_db_result_ncols(t), 0);
        assert_int_equal(wb_db_result_value(t, 0, 0, &v), WB_EINVAL);
        assert_string_equal(wb_db_result_errmsg(t), "");
        wb_event_free(t);
    }
    /* every single-byte corruption: no crash, and any value found lies inside */
    for (size_t i = 0; i < good->len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            wb_event_t *t = wb_event_new_copy(WB_EV_DB_RESULT, good->data, good->len);
            ((unsigned char *)t->data)[i] ^= (unsigned char)(1u << bit);
            const char *base = t->data;
            size_t nr = wb_db_result_nrows(t), nc = wb_db_result_ncols(t);
            for (size_t r = 0; r < nr && r < 8; r++)
                for (size_t c = 0; c < nc && c < 8; c++)
                    if (wb_db_result_value(t, r, c, &v) == 0 &&
                        (v.type == WB_VAL_TEXT || v.type == WB_VAL_BLOB))
                        assert_true((const char *)v.u.s.p >= base &&
                                    (const char *)v.u.s.p + v.u.s.n <= base + t->len);
            (void)wb_db_result_errmsg(t);
            wb_event_free(t);
        }
    }
    /* an error result reads as empty; the wrong event type as nothing */
    wb_event_t *err = wb__db_res_error(WB_EBUSY, "database is locked");
    assert_int_equal(err->status, WB_EBUSY);
    assert_string_equal(wb_db_result_errmsg(err), "database is locked");
    assert_int_equal(wb_db_result_value(err, 0, 0, &v), WB_EINVAL);
    good->status = WB_EIO;
    assert_int_equal(wb_db_result_nrows(good), 0);
    assert_int_equal(wb_db_result_rowid(good), 0);
    good->status = 0;
    good->type = WB_EV_USER;
    assert_int_equal(wb_db_result_nrows(good), 0);
    wb_db_stats_t st;
    assert_int_equal(wb_db_result_stats(good, &st), WB_EINVAL);
    assert_int_equal(wb_db_result_nrows(NULL), 0);
    assert_string_equal(wb_db_result_errmsg(NULL), "");
    wb_event_free(err);
    wb_event_free(good);
    wb__db_resbuf_fini(&rb);
}

/* ---- the statement cache ------------------------------------------------------------ */

static void test_stmt_cache(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof(path), "cache");
    wb_db_config_t cfg = simple_cfg(path, NULL, 0);
    h_t h;
    assert_int_equal(h_start(&h, 1, &cfg), 0);
    /* 100 texts, more than the cache holds, twice over: answers stay right */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 100; i++) {
            char sql[64];
            snprintf(sql, sizeof(sql), "SELECT %d + ?", i);
            wb_value_t b = wb_val_int(round);
            wb_event_t *res = h_ok(&h, sql, &b, 1);
            wb_value_t v;
            assert_int_equal(wb_db_result_value(res, 0, 0, &v), 0);
            assert_int_equal(v.u.i, i + round);
        }
    for (int i = 0; i < 10; i++)
        h_ok(&h, "SELECT 99 + ?", (wb_value_t[]){wb_val_int(0)}, 1);
    wb_db_stats_t st;
    h_stats(&h, &st);
    assert_int_equal(st.cache_misses, 200);
    assert_int_equal(st.cache_hits, 10);
    h_stop(&h);
}

/* ---- shutdown ------------------------------------------------------------------------ */

/* Results that cannot be delivered (the actor lane stops first) are freed:
 * every pool block comes home. */
static void test_shutdown_no_leak(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "shutdown");
    wb_db_config_t cfg = kv_cfg(path);
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);
    for (int i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof(key), "s%d", i);
        wb_value_t b[2] = {wb_val_text(key), wb_val_int(i)};
        h_send(&h, wb_db_request_op(0, b, 2, i % 7 == 0 ? WB_DB_DURABLE : 0), (uint64_t)i);
    }
    h_stop(&h);
    assert_int_equal(wb_pool_trim(), 0);
    /* whatever was taken before the stop was committed */
    sqlite3 *db = raw_open(path);
    int64_t n = raw_int(db, "SELECT count(*) FROM kv");
    assert_int_equal(n, 300); /* a stopping lane finishes what was queued */
    sqlite3_close(db);

    /* attached, never started: the lane's state goes with the runtime */
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    assert_int_equal(wb_db_attach(rt, &cfg), 0);
    wb_event_t *req = wb_db_request_op(2, NULL, 0, 0);
    wb_event_route(req, WB_LANE_ACTOR, 1, WB_LANE_DB, 0);
    assert_int_equal(wb_rt_send(rt, req), 0);
    wb_rt_free(rt);
    assert_int_equal(wb_pool_trim(), 0);

    /* attach refuses bad configurations and a started runtime */
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    wb_db_config_t bad = {.path = NULL};
    assert_int_equal(wb_db_attach(rt, &bad), WB_EINVAL);
    bad.path = path;
    bad.n_ops = 1;
    assert_int_equal(wb_db_attach(rt, &bad), WB_EINVAL);
    wb_rt_free(rt);
}

/* ---- an actor as the client ----------------------------------------------------------- */

typedef struct {
    uint64_t sent, got, ok, total, window;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} client_t;

static void client_send_one(wb_actor_t *self, client_t *c)
{
    char key[32];
    snprintf(key, sizeof(key), "c%llu", (unsigned long long)c->sent);
    wb_value_t b[2] = {wb_val_text(key), wb_val_int((int64_t)c->sent)};
    wb_event_t *ev = wb_db_request_op(0, b, 2, 0);
    assert_non_null(ev);
    wb_event_route(ev, WB_LANE_ACTOR, wb_actor_id(self), WB_LANE_DB, 0);
    ev->cookie = c->sent++;
    assert_int_equal(wb_rt_send(wb_actor_rt(self), ev), 0);
}

static void client_handle(wb_actor_t *self, wb_event_t *ev)
{
    client_t *c = wb_actor_state(self);
    if (ev->type == WB_EV_USER) {
        while (c->sent < c->window && c->sent < c->total)
            client_send_one(self, c);
    } else if (ev->type == WB_EV_DB_RESULT) {
        assert_int_equal(ev->cookie, c->got);
        c->got++;
        if (ev->status == 0 && wb_db_result_rowid(ev) == (int64_t)c->got)
            c->ok++;
        if (c->sent < c->total)
            client_send_one(self, c);
        if (c->got == c->total) {
            pthread_mutex_lock(&c->mu);
            c->done = 1;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
        }
    }
    wb_event_free(ev);
}

static const wb_actor_def_t client_def = {"client", client_handle, NULL};

static void test_actor_client(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "client");
    wb_db_config_t cfg = kv_cfg(path);
    wb_rt_config_t rc;
    wb_rt_config_init(&rc);
    rc.deterministic = det;
    rc.seed = 99;
    wb_rt_t *rt;
    client_t c = {.total = 5000, .window = 256};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    uint64_t id;
    assert_int_equal(wb_rt_new(&rt, &rc), 0);
    assert_int_equal(wb_db_attach(rt, &cfg), 0);
    assert_int_equal(wb_actor_spawn(rt, NULL, &client_def, &c, &id), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    wb_event_t *kick = wb_event_new(WB_EV_USER, 0);
    wb_event_route(kick, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, id);
    assert_int_equal(wb_rt_send(rt, kick), 0);
    if (det) {
        wb_rt_run(rt, SIZE_MAX);
    } else {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 30;
        pthread_mutex_lock(&c.mu);
        while (!c.done && pthread_cond_timedwait(&c.cv, &c.mu, &dl) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(&c.mu);
    }
    wb_rt_free(rt);
    assert_int_equal(c.got, c.total);
    assert_int_equal(c.ok, c.total);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(tmpdir);
}

/* ---- handlers on the database thread (rule 5) ------------------------------------ */

static const char *const mig_counters[] = {
    "CREATE TABLE counters(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"};
static const wb_db_op_t counter_ops[] = {
    {"get", "SELECT n FROM counters WHERE id = ?1"},
    {"set", "UPDATE counters SET n = ?2 WHERE id = ?1"},
    {"new", "INSERT INTO counters(n) VALUES (?1)"},
};

static int got_n(void *arg, const wb_value_t *cols, size_t ncols)
{
    assert_int_equal(ncols, 1);
    *(int64_t *)arg = cols[0].u.i;
    return 1; /* one row is all we want */
}

/* Add the body's decimal number to counter `rowid`; answer the new value. */
static int bump(wb_db_call_t *call, int64_t rowid, const uint8_t *body, size_t len, void *arg)
{
    char num[32];
    int64_t n = -1, by;
    (void)arg;
    snprintf(num, sizeof(num), "%.*s", (int)len, (const char *)body);
    by = atoll(num);
    wb_value_t id = wb_val_int(rowid);
    int rc = wb_db_call_exec(call, 0, &id, 1, got_n, &n);
    if (rc != 0)
        return rc;
    if (n < 0)
        return wb_db_call_fail(call, WB_ENOENT, "no such counter");
    wb_value_t set[2] = {id, wb_val_int(n + by)};
    if ((rc = wb_db_call_exec(call, 1, set, 2, NULL, NULL)) != 0)
        return rc;
    assert_int_equal(wb_db_call_changes(call), 1);
    snprintf(num, sizeof(num), "%lld", (long long)(n + by));
    return wb_db_call_reply(call, num, strlen(num));
}

/* Bad handlers: wrong bind count; a positive return. */
static int broken(wb_db_call_t *call, int64_t rowid, const uint8_t *body, size_t len, void *arg)
{
    (void)rowid;
    (void)body;
    (void)len;
    (void)arg;
    return wb_db_call_exec(call, 1, NULL, 0, NULL, NULL);
}

static const wb_db_handler_t counter_handlers[] = {{"bump", bump, NULL}, {"broken", broken, NULL}};

static void reply_is(const wb_event_t *res, const char *want)
{
    wb_value_t v;
    assert_int_equal(res->status, 0);
    assert_int_equal(wb_db_result_nrows(res), 1);
    assert_int_equal(wb_db_result_value(res, 0, 0, &v), 0);
    assert_int_equal(v.type, WB_VAL_BLOB);
    assert_int_equal(v.u.s.n, strlen(want));
    assert_memory_equal(v.u.s.p, want, strlen(want));
}

static void test_handlers(void **state)
{
    int det = *(int *)*state;
    char path[256];
    tpath(path, sizeof(path), "handlers");
    wb_db_config_t cfg = {.path = path,
                          .migrations = mig_counters,
                          .n_migrations = 1,
                          .ops = counter_ops,
                          .n_ops = 3,
                          .handlers = counter_handlers,
                          .n_handlers = 2};
    h_t h;
    assert_int_equal(h_start(&h, det, &cfg), 0);
    wb_value_t zero = wb_val_int(10);
    wb_event_t *res = h_req(&h, wb_db_request_op(2, &zero, 1, 0));
    int64_t row = wb_db_result_rowid(res);
    assert_true(row > 0);
    /* The handler runs keyed by the row, reads and writes it. */
    reply_is(h_req(&h, wb_db_request_call(0, row, "5", 1, 0)), "15");
    reply_is(h_req(&h, wb_db_request_call(0, row, "-3", 2, WB_DB_DURABLE)), "12");
    /* Its own error, with its message. */
    res = h_req(&h, wb_db_request_call(0, row + 100, "1", 1, 0));
    assert_int_equal(res->status, WB_ENOENT);
    assert_string_equal(wb_db_result_errmsg(res), "no such counter");
    /* A handler misusing an operation, and no such handler. */
    res = h_req(&h, wb_db_request_call(1, row, NULL, 0, 0));
    assert_int_equal(res->status, WB_EINVAL);
    assert_non_null(strstr(wb_db_result_errmsg(res), "takes 2 values"));
    res = h_req(&h, wb_db_request_call(7, row, NULL, 0, 0));
    assert_int_equal(res->status, WB_EINVAL);
    assert_non_null(strstr(wb_db_result_errmsg(res), "no handler 7"));
    /* The handler's writes were committed with the batch. */
    wb_value_t id = wb_val_int(row), n;
    res = h_req(&h, wb_db_request_op(0, &id, 1, 0));
    assert_int_equal(wb_db_result_value(res, 0, 0, &n), 0);
    assert_int_equal(n.u.i, 12);
    h_stop(&h);
}

#define BOTH(f) cmocka_unit_test_prestate(f, &DET), cmocka_unit_test_prestate(f, &THR)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_roundtrip_types),
        BOTH(test_rowid_changes),
        BOTH(test_named_ops),
        BOTH(test_quiet),
        BOTH(test_attach),
        BOTH(test_background_checkpoint),
        BOTH(test_handlers),
        BOTH(test_bad_op_fails_start),
        cmocka_unit_test(test_group_commit_det),
        cmocka_unit_test(test_batch_bound),
        cmocka_unit_test(test_group_commit_threaded),
        cmocka_unit_test(test_durable),
        BOTH(test_constraint),
        BOTH(test_full),
        BOTH(test_busy),
        BOTH(test_corrupt),
        BOTH(test_migrations),
        BOTH(test_malformed),
        cmocka_unit_test(test_result_bounds),
        cmocka_unit_test(test_stmt_cache),
        BOTH(test_shutdown_no_leak),
        BOTH(test_actor_client),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
