/*
 * bench_db.c - small-row inserts through the database lane against raw
 * SQLite doing the same inserts on one thread.
 *
 * Table kv(id INTEGER PRIMARY KEY, k TEXT (16 chars), v BLOB (64 bytes),
 * t REAL), WAL, synchronous=NORMAL, a fresh file per run.
 *
 *   runtime          threaded mode; one actor keeps WINDOW insert requests
 *                    (named op) outstanding and sends one more per result;
 *                    the lane commits a batch each time its inbox runs dry.
 *                    The clock runs from the first send to the last result.
 *   raw              the same rows, same count, with one prepared INSERT in
 *                    one transaction on the calling thread (commit timed).
 *   runtime_durable  as runtime, every request WB_DB_DURABLE (each batch
 *                    commits with synchronous=FULL: one WAL fsync per batch).
 *
 * Each run stops at N_ROWS rows or RUN_CAP_NS, whichever comes first; raw
 * inserts as many rows as the runtime run before it. Figures are medians of
 * RUNS runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/db.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/event.h"
#include "runtime/log.h"
#include "runtime/rt.h"
#include "tests/bench/bench_common.h"

#define RUNS        5
#define N_ROWS      500000u
#define WINDOW      4096u
#define RUN_CAP_NS  3000000000ull
#define WAIT_CAP_NS 60000000000ull

#define EV_GO (WB_EV_USER + 1)

static const char *const migrations[] = {
    "CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT, v BLOB, t REAL)",
};
static const wb_db_op_t ops[] = {
    {"put", "INSERT INTO kv(k, v, t) VALUES(?1, ?2, ?3)"},
};

/* Rows per run: N_ROWS, or WB_BENCH_DB_ROWS for a quick or profiled run. */
static uint64_t n_rows = N_ROWS;

/* Row i's values; key and blob live in the caller's buffers. */
static void make_row(uint64_t i, char key[17], unsigned char blob[64], wb_value_t out[3])
{
    snprintf(key, 17, "k%015llu", (unsigned long long)i);
    memset(blob, (int)(i & 0xff), 64);
    memcpy(blob, &i, sizeof(i));
    out[0] = (wb_value_t){.type = WB_VAL_TEXT, .u.s = {key, 16}};
    out[1] = wb_val_blob(blob, 64);
    out[2] = wb_val_real((double)i * 0.5);
}

/* ---- through the runtime ------------------------------------------------- */

typedef struct {
    wb_rt_t *rt;
    unsigned flags;
    uint64_t sent, got, limit;
    uint64_t t0, t1, deadline;
    wb_event_t *stalled; /* refused with WB_EAGAIN, waiting for WB_EV_RESUME */
    wb_db_stats_t st;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} loader_t;

static void finish(loader_t *l)
{
    pthread_mutex_lock(&l->mu);
    l->done = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* Send ev, or keep it until the lane has room again. Returns 0 when sent. */
static int send_or_stall(wb_actor_t *self, loader_t *l, wb_event_t *ev)
{
    int rc = wb_rt_send(l->rt, ev);
    if (rc == WB_EAGAIN) {
        l->stalled = ev;
        return -1;
    }
    if (rc != 0)
        BENCH_FAIL("send: %s", wb_err_name(rc));
    (void)self;
    return 0;
}

static void fill(wb_actor_t *self, loader_t *l)
{
    char key[17];
    unsigned char blob[64];
    wb_value_t v[3];
    while (l->stalled == NULL && l->sent < l->limit && l->sent - l->got < WINDOW) {
        make_row(l->sent, key, blob, v);
        wb_event_t *ev = wb_db_request_op(0, v, 3, l->flags);
        if (ev == NULL)
            BENCH_FAIL("request: out of memory");
        wb_event_route(ev, WB_LANE_ACTOR, wb_actor_id(self), WB_LANE_DB, 0);
        ev->cookie = l->sent++;
        send_or_stall(self, l, ev);
    }
}

static void loader_handle(wb_actor_t *self, wb_event_t *ev)
{
    loader_t *l = wb_actor_state(self);
    switch (ev->type) {
    case EV_GO:
        l->t0 = bench_now_ns();
        l->deadline = l->t0 + RUN_CAP_NS;
        fill(self, l);
        break;
    case WB_EV_RESUME:
        if (l->stalled != NULL) {
            wb_event_t *s = l->stalled;
            l->stalled = NULL;
            if (send_or_stall(self, l, s) == 0)
                fill(self, l);
        }
        break;
    case WB_EV_DB_RESULT:
        if (ev->cookie == UINT64_MAX) { /* the stats request */
            if (wb_db_result_stats(ev, &l->st) != 0)
                BENCH_FAIL("stats result");
            finish(l);
            break;
        }
        if (ev->status != 0)
            BENCH_FAIL("insert %llu: %s: %s", (unsigned long long)ev->cookie,
                       wb_err_name(ev->status), wb_db_result_errmsg(ev));
        if (ev->cookie != l->got)
            BENCH_FAIL("result %llu arrived as number %llu", (unsigned long long)ev->cookie,
                       (unsigned long long)l->got);
        l->got++;
        if ((l->got & 1023) == 0 && l->limit == n_rows && bench_now_ns() > l->deadline)
            l->limit = l->sent; /* time is up: finish what is in flight */
        fill(self, l);
        if (l->got == l->sent && l->sent == l->limit) {
            l->t1 = bench_now_ns();
            wb_event_t *q = wb_db_request_stats();
            wb_event_route(q, WB_LANE_ACTOR, wb_actor_id(self), WB_LANE_DB, 0);
            q->cookie = UINT64_MAX;
            q->flags |= WB_EVF_CONTROL;
            if (wb_rt_send(l->rt, q) != 0)
                BENCH_FAIL("stats request");
        }
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t loader_def = {"loader", loader_handle, NULL};

static void remove_db(const char *path)
{
    char p[512];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
    /* Let the last run's dirty pages reach the disk now, not during the
     * next run's clock. */
    sync();
}

/* One run through the runtime; returns rows/s and the rows inserted. */
static double run_runtime(const char *path, unsigned flags, uint64_t *rows, double *batch)
{
    wb_db_config_t cfg = {
        .path = path, .migrations = migrations, .n_migrations = 1, .ops = ops, .n_ops = 1};
    loader_t l = {.flags = flags, .limit = n_rows};
    wb_rt_t *rt;
    uint64_t id;
    int rc;

    remove_db(path);
    pthread_mutex_init(&l.mu, NULL);
    pthread_cond_init(&l.cv, NULL);
    if ((rc = wb_rt_new(&rt, NULL)) != 0 || (rc = wb_db_attach(rt, &cfg)) != 0 ||
        (rc = wb_actor_spawn(rt, NULL, &loader_def, &l, &id)) != 0 || (rc = wb_rt_start(rt)) != 0)
        BENCH_FAIL("runtime: %s", wb_err_name(rc));
    l.rt = rt;
    wb_event_t *go = wb_event_new(EV_GO, 0);
    wb_event_route(go, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, id);
    if (wb_rt_send(rt, go) != 0)
        BENCH_FAIL("go");

    uint64_t give_up = bench_now_ns() + WAIT_CAP_NS;
    pthread_mutex_lock(&l.mu);
    while (!l.done && bench_now_ns() < give_up) {
        pthread_mutex_unlock(&l.mu);
        bench_sleep_us(2000);
        pthread_mutex_lock(&l.mu);
    }
    int done = l.done;
    pthread_mutex_unlock(&l.mu);
    if (!done)
        BENCH_FAIL("runtime run did not finish: %llu of %llu answered", (unsigned long long)l.got,
                   (unsigned long long)l.sent);
    wb_rt_free(rt);
    pthread_mutex_destroy(&l.mu);
    pthread_cond_destroy(&l.cv);
    if (l.st.requests != l.got)
        BENCH_FAIL("lane counted %llu requests, %llu answered", (unsigned long long)l.st.requests,
                   (unsigned long long)l.got);
    *rows = l.got;
    *batch = l.st.commits > 0 ? (double)l.st.requests / (double)l.st.commits : 0.0;
    return bench_rate(l.got, l.t1 - l.t0);
}

/* ---- raw SQLite ------------------------------------------------------------ */

static void raw_check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        BENCH_FAIL("raw %s: %s", what, sqlite3_errmsg(db));
}

static double run_raw(const char *path, uint64_t rows)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char key[17];
    unsigned char blob[64];
    wb_value_t v[3];

    remove_db(path);
    raw_check(NULL,
              sqlite3_open_v2(path, &db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                              NULL),
              "open");
    raw_check(
        db,
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL, NULL),
        "pragmas");
    raw_check(db, sqlite3_exec(db, migrations[0], NULL, NULL, NULL), "schema");
    raw_check(db, sqlite3_prepare_v3(db, ops[0].sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL),
              "prepare");

    uint64_t t0 = bench_now_ns();
    raw_check(db, sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), "begin");
    for (uint64_t i = 0; i < rows; i++) {
        make_row(i, key, blob, v);
        sqlite3_bind_text(st, 1, v[0].u.s.p, (int)v[0].u.s.n, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, v[1].u.s.p, (int)v[1].u.s.n, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, v[2].u.d);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
            raw_check(db, rc, "insert");
        sqlite3_reset(st);
    }
    raw_check(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "commit");
    uint64_t t1 = bench_now_ns();
    sqlite3_finalize(st);
    sqlite3_close(db);
    return bench_rate(rows, t1 - t0);
}

/* ---- main ------------------------------------------------------------------ */

int main(void)
{
    char dir[] = "/tmp/wb_bench_db_XXXXXX";
    char path[256];
    bench_samples_t rt_s = {0}, raw_s = {0}, ratio_s = {0}, dur_s = {0}, batch_s = {0};

    if (getenv("WAYBILL_LOG") == NULL)
        wb_log_set_level(WB_LOG_WARN);
    const char *env = getenv("WB_BENCH_DB_ROWS");
    if (env != NULL && strtoull(env, NULL, 10) > 0)
        n_rows = strtoull(env, NULL, 10);
    if (mkdtemp(dir) == NULL)
        BENCH_FAIL("mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof(path), "%s/bench.db", dir);

    for (int r = 0; r < RUNS; r++) {
        uint64_t rows;
        double batch;
        double a = run_runtime(path, 0, &rows, &batch);
        double b = run_raw(path, rows);
        bench_add(&rt_s, a);
        bench_add(&raw_s, b);
        bench_add(&ratio_s, b > 0 ? a / b : 0.0);
        bench_add(&batch_s, batch);
    }
    for (int r = 0; r < RUNS; r++) {
        uint64_t rows;
        double batch;
        bench_add(&dur_s, run_runtime(path, WB_DB_DURABLE, &rows, &batch));
    }
    remove_db(path);
    rmdir(dir);

    bench_print("db_insert_runtime", bench_med(&rt_s), "rows/s");
    bench_print("db_insert_raw", bench_med(&raw_s), "rows/s");
    bench_print2("db_insert_ratio", bench_med(&ratio_s), "x");
    bench_print("db_insert_runtime_durable", bench_med(&dur_s), "rows/s");
    bench_print("db_insert_batch", bench_med(&batch_s), "requests/commit");
    return 0;
}
