/*
 * db.h - the database lane: one SQLite connection, requests in, results out.
 *
 * Only code under db/ touches SQLite, and only on the database lane's thread.
 * Any thread builds a request event (wb_db_request_sql / wb_db_request_op),
 * addresses its source (the actor or connection to answer) and cookie, and
 * sends it with wb_rt_send(); ownership passes on success as always. The
 * answer is a WB_EV_DB_RESULT event sent back to (src_lane, src) with the same
 * cookie: status 0 and rows / rowid / changes, or a negative code with
 * SQLite's own message (wb_db_result_errmsg).
 *
 * Group commit: every request taken in one drain of the lane's inbox runs in
 * one transaction, committed when the inbox runs dry; results are sent after
 * the commit. A request flagged WB_DB_DURABLE is answered only once its
 * transaction is synced to disk (the batch commits with synchronous=FULL);
 * others commit with synchronous=NORMAL (WAL): durable at the next checkpoint
 * or sync, never torn.
 *
 * Failures come back as results, never crashes: WB_ECONSTRAINT, WB_EFULL
 * (disk or max_page_count), WB_EBUSY (locked past the busy timeout),
 * WB_ECORRUPT, WB_EIO, WB_EDB for the rest. A failing statement undoes only
 * itself; if SQLite had to roll the whole transaction back, every request of
 * that batch gets the error, and what committed before stays.
 *
 * Migrations: an array of SQL scripts; script i brings the schema to version
 * i+1 (PRAGMA user_version), each in its own transaction, applied at open.
 */
#ifndef WB_DB_H
#define WB_DB_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/event.h"
#include "runtime/rt.h"

enum {
    WB_EV_DB_REQUEST = 256, /* to the database lane */
    WB_EV_DB_RESULT,        /* back to the requester */
};

typedef enum { WB_VAL_NULL = 0, WB_VAL_INT, WB_VAL_REAL, WB_VAL_TEXT, WB_VAL_BLOB } wb_val_type_t;

typedef struct {
    wb_val_type_t type;
    union {
        int64_t i;
        double d;
        struct {
            const void *p; /* TEXT is not NUL-terminated in results; n excludes any NUL */
            size_t n;
        } s;
    } u;
} wb_value_t;

static inline wb_value_t wb_val_int(int64_t i)
{
    wb_value_t v = {.type = WB_VAL_INT, .u.i = i};
    return v;
}
static inline wb_value_t wb_val_real(double d)
{
    wb_value_t v = {.type = WB_VAL_REAL, .u.d = d};
    return v;
}
wb_value_t wb_val_text(const char *s); /* strlen(s) bytes; NULL gives a NULL value */
static inline wb_value_t wb_val_blob(const void *p, size_t n)
{
    wb_value_t v = {.type = WB_VAL_BLOB, .u.s = {p, n}};
    return v;
}
static inline wb_value_t wb_val_null(void)
{
    wb_value_t v = {.type = WB_VAL_NULL};
    return v;
}

typedef struct {
    const char *name; /* for logs */
    const char *sql;  /* one statement, prepared once at open */
} wb_db_op_t;

/* ---- handlers that run on the database thread (dispatch rule 5) -------------
 *
 * A handler is a function of the app's that runs on the database thread,
 * inside the current group-commit transaction, for a request keyed by a
 * rowid (wb_db_request_call): it reads and writes rows through the config's
 * named operations (wb_db_call_exec) and answers with bytes
 * (wb_db_call_reply), which come back as the result's one row with one BLOB
 * column. Returning a negative code answers with that error and the message
 * of the last failure (or wb_db_call_fail's). Its writes commit with the
 * batch; a failing handler's own writes are not undone unless SQLite rolled
 * the transaction back, so write last, or fail before writing. */
typedef struct wb_db_call_s wb_db_call_t;

typedef int (*wb_db_handler_cb)(wb_db_call_t *call, int64_t rowid, const uint8_t *body, size_t len,
                                void *arg);

typedef struct {
    const char *name; /* for logs */
    wb_db_handler_cb fn;
    void *arg;
} wb_db_handler_t;

/* Each row of a wb_db_call_exec: its columns, valid during the call. Return
 * nonzero to stop reading rows. */
typedef int (*wb_db_row_cb)(void *arg, const wb_value_t *cols, size_t ncols);

/* Run named operation `op` with binds; rows go to row (may be NULL). 0 or the
 * error code (the message is kept for the answer). */
int wb_db_call_exec(wb_db_call_t *call, uint32_t op, const wb_value_t *binds, size_t n,
                    wb_db_row_cb row, void *arg);

/* rowid and changes of the last wb_db_call_exec. */
int64_t wb_db_call_rowid(const wb_db_call_t *call);
int64_t wb_db_call_changes(const wb_db_call_t *call);

/* The answer's bytes (copied; a later call replaces them). 0 or WB_ENOMEM. */
int wb_db_call_reply(wb_db_call_t *call, const void *body, size_t len);

/* Set the message an error answer carries; returns code, for
 * `return wb_db_call_fail(call, WB_ENOENT, "no such cursor");`. */
int wb_db_call_fail(wb_db_call_t *call, int code, const char *msg);

/* A further database file on the same connection (ATTACH): its tables are
 * named `schema.table` in SQL, and a transaction spans both files. */
typedef struct {
    const char *schema;            /* the name SQL uses: "usage" (an SQL identifier) */
    const char *path;              /* database file; ":memory:" allowed */
    const char *const *migrations; /* as for the main file, on its own user_version; name
                                      new tables and indexes `schema.name` */
    size_t n_migrations;
} wb_db_attached_t;

typedef struct {
    const char *path;              /* database file; ":memory:" for tests */
    const char *const *migrations; /* migrations[i] brings user_version i -> i+1 */
    size_t n_migrations;
    const wb_db_op_t *ops; /* named operations, addressed by index */
    size_t n_ops;
    const wb_db_handler_t *handlers; /* database-thread handlers, addressed by index */
    size_t n_handlers;
    int busy_timeout_ms;            /* default 5000 */
    const wb_db_attached_t *attach; /* attached at open, after the main file's migrations */
    size_t n_attach;
    /* WAL checkpoints. Past ckpt_pages WAL pages a background thread with its
     * own connection checkpoints (PASSIVE: it neither waits for nor blocks
     * the lane's writes). Under writes that never pause it cannot finish a
     * pass, and the WAL would grow; past wal_limit_pages the lane checkpoints
     * itself between two transactions, a bounded stall. 0: defaults (2048 =
     * 8 MiB, 16384 = 64 MiB with 4 KiB pages). */
    uint32_t ckpt_pages;
    uint32_t wal_limit_pages;
} wb_db_config_t;

enum {
    WB_DB_DURABLE = 1u << 0, /* answer only once the write is synced to disk */
    /* Answer only a failure: a write whose success the requester learns from
     * a later, answered request of the same lane (results come in order, so
     * that one's answer means this one committed too). */
    WB_DB_QUIET = 1u << 1,
};

/* Largest request or result payload (bound values, rows) in bytes. */
#define WB_DB_MAX_PAYLOAD (64u << 20)

/* A request running `sql` (one statement) with `n` bound values, copied into
 * the event. NULL on ENOMEM or when too large. The caller sets src_lane, src
 * and cookie (wb_event_route / ev->cookie) before sending. */
wb_event_t *wb_db_request_sql(const char *sql, const wb_value_t *binds, size_t n, unsigned flags);

/* A request running handler number `handler` of the config's handlers for
 * the row `rowid`, with `body` (copied) as its input. */
wb_event_t *wb_db_request_call(uint32_t handler, int64_t rowid, const void *body, size_t len,
                               unsigned flags);

/* A request running named operation number `op` of the config's ops. */
wb_event_t *wb_db_request_op(uint32_t op, const wb_value_t *binds, size_t n, unsigned flags);

/* Mark a request built above WB_DB_QUIET after the fact (a requester that
 * learns only later which of its requests is the last of a group). Returns
 * 0, or WB_EINVAL when req is not a database request. */
int wb_db_request_set_quiet(wb_event_t *req);

/* Install the database lane's service on rt (before wb_rt_start). The
 * database is opened and migrated on the database thread when the runtime
 * starts; an open or migration failure makes wb_rt_start fail with its code.
 * cfg and everything it points to must outlive the runtime. */
int wb_db_attach(wb_rt_t *rt, const wb_db_config_t *cfg);

/* The lane's counters, snapshot when the stats request is taken (in order
 * with other requests: a transaction still open then is not yet counted). */
typedef struct {
    uint64_t requests;        /* SQL and op requests taken (not stats ones) */
    uint64_t errors;          /* of which answered with an error */
    uint64_t commits;         /* transactions committed */
    uint64_t durable_commits; /* of which with synchronous=FULL */
    uint64_t rollbacks;       /* transactions undone whole (by SQLite or a failed COMMIT) */
    uint64_t max_batch;       /* most requests in one transaction */
    uint64_t cache_hits;      /* SQL requests that found their statement prepared */
    uint64_t cache_misses;    /* SQL requests that had to prepare it */
    uint64_t checkpoints;     /* WAL checkpoints run by the background checkpointer */
} wb_db_stats_t;

/* A request for the lane's counters; route and send it like any other. */
wb_event_t *wb_db_request_stats(void);

/* Read the counters from the result of wb_db_request_stats(). Returns 0, or
 * WB_EINVAL when res is not such a result. */
int wb_db_result_stats(const wb_event_t *res, wb_db_stats_t *out);

/* Reading a WB_EV_DB_RESULT event. All return 0/NULL-safe values for an
 * error result. Values point into the event: valid while it lives.
 * wb_db_result_value returns 0, WB_ENOENT when row or col is out of range,
 * or WB_EINVAL for an error result or a malformed event; *out is then NULL. */
int64_t wb_db_result_rowid(const wb_event_t *res);   /* last insert rowid */
int64_t wb_db_result_changes(const wb_event_t *res); /* rows changed */
size_t wb_db_result_nrows(const wb_event_t *res);
size_t wb_db_result_ncols(const wb_event_t *res);
int wb_db_result_value(const wb_event_t *res, size_t row, size_t col, wb_value_t *out);
const char *wb_db_result_errmsg(const wb_event_t *res); /* "" when none */

#endif
