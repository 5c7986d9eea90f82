/*
 * cmd_selfcheck.c - `waybill selfcheck`: start a node and prove every lane
 * works, end to end, printing what each check measured.
 *
 * One checker actor walks through the checks as a state machine: actors
 * exchanging messages, a timer, a durable write and a read on the database
 * lane, and a round trip through the network lane. Any failure or a check
 * that takes longer than 10 s ends the run with exit status 1.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apps/cli/cli.h"
#include "db/db.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rt.h"

enum { EV_BEGIN = WB_EV_USER, EV_PING, EV_PINGS_DONE, EV_NET_ECHO };
enum { ST_PING, ST_TIMER, ST_DB_WRITE, ST_DB_READ, ST_NET, ST_DONE };

#define PING_ROUNDS 1000000u
#define TIMER_MS    20
#define WATCHDOG_MS 10000

typedef struct {
    int step;
    int failed;
    uint64_t t0_ns;
    uint64_t timer, watchdog;
    int64_t rowid;
} checker_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void report(checker_t *c, const char *what, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(checker_t *c, const char *what, int ok, const char *fmt, ...)
{
    va_list ap;
    printf("selfcheck: %-22s %s  ", what, ok ? "ok  " : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!ok)
        c->failed = 1;
}

/* Two pingers bounce one event until its counter runs out. */
static void pinger(wb_actor_t *self, wb_event_t *ev)
{
    uint32_t left;
    memcpy(&left, ev->data, sizeof(left));
    wb_rt_t *rt = wb_actor_rt(self);
    if (left == 0) {
        ev->type = EV_PINGS_DONE;
        if (wb_actor_send(rt, self, wb_actor_parent(self), ev) != 0)
            wb_event_free(ev);
        return;
    }
    left--;
    memcpy(ev->data, &left, sizeof(left));
    if (wb_actor_send(rt, self, ev->src, ev) != 0)
        wb_event_free(ev);
}
static const wb_actor_def_t pinger_def = {"pinger", pinger, NULL};

/* Runs on the network lane: answer the checker from there. */
static void net_echo(wb_rt_t *rt, void *arg)
{
    uint64_t checker = (uint64_t)(uintptr_t)arg;
    wb_event_t *ev = wb_event_new(EV_NET_ECHO, 0);
    if (ev == NULL)
        return;
    wb_event_route(ev, WB_LANE_NET, 0, WB_LANE_ACTOR, checker);
    if (wb_rt_send(rt, ev) != 0)
        wb_event_free(ev);
}

static int db_send(wb_actor_t *self, wb_event_t *req)
{
    if (req == NULL)
        return WB_ENOMEM;
    wb_event_route(req, WB_LANE_ACTOR, wb_actor_id(self), WB_LANE_DB, 0);
    int rc = wb_rt_send(wb_actor_rt(self), req);
    if (rc != 0)
        wb_event_free(req);
    return rc;
}

static void finish(wb_actor_t *self, checker_t *c)
{
    c->step = ST_DONE;
    wb_timer_cancel(self, c->watchdog);
    wb_rt_request_stop(wb_actor_rt(self));
}

static void checker(wb_actor_t *self, wb_event_t *ev)
{
    checker_t *c = wb_actor_state(self);
    wb_rt_t *rt = wb_actor_rt(self);
    double ms = (double)(now_ns() - c->t0_ns) / 1e6;

    if (ev->type == WB_EV_TIMER && ev->cookie == c->watchdog) {
        report(c, "watchdog", 0, "step %d did not finish in %d ms", c->step, WATCHDOG_MS);
        finish(self, c);
    } else if (ev->type == EV_BEGIN) {
        uint64_t a, b;
        uint32_t rounds = PING_ROUNDS;
        wb_timer_start(self, WATCHDOG_MS, &c->watchdog);
        if (wb_actor_spawn(rt, self, &pinger_def, NULL, &a) != 0 ||
            wb_actor_spawn(rt, self, &pinger_def, NULL, &b) != 0) {
            report(c, "actor spawn", 0, "out of memory");
            finish(self, c);
        } else {
            wb_event_t *ping = wb_event_new_copy(EV_PING, &rounds, sizeof(rounds));
            c->t0_ns = now_ns();
            if (ping == NULL || wb_actor_send(rt, wb_actor_lookup(rt, b), a, ping) != 0) {
                wb_event_free(ping);
                report(c, "actor send", 0, "could not send the first ping");
                finish(self, c);
            }
        }
    } else if (ev->type == EV_PINGS_DONE && c->step == ST_PING) {
        report(c, "actor messages", 1, "%u in %.1f ms (%.1f M/s)", PING_ROUNDS + 1, ms,
               (PING_ROUNDS + 1) / ms / 1000.0);
        c->step = ST_TIMER;
        c->t0_ns = now_ns();
        wb_timer_start(self, TIMER_MS, &c->timer);
    } else if (ev->type == WB_EV_TIMER && c->step == ST_TIMER && ev->cookie == c->timer) {
        report(c, "timer", ms >= TIMER_MS, "asked %d ms, fired after %.1f ms", TIMER_MS, ms);
        c->step = ST_DB_WRITE;
        c->t0_ns = now_ns();
        wb_value_t v[2] = {wb_val_text("selfcheck"), wb_val_int(42)};
        if (db_send(self, wb_db_request_sql("INSERT INTO selfcheck(k, v) VALUES (?, ?)", v, 2,
                                            WB_DB_DURABLE)) != 0) {
            report(c, "db write", 0, "could not send the request");
            finish(self, c);
        }
    } else if (ev->type == WB_EV_DB_RESULT && c->step == ST_DB_WRITE) {
        c->rowid = wb_db_result_rowid(ev);
        report(c, "db durable write", ev->status == 0 && c->rowid > 0, "rowid %lld in %.2f ms%s%s",
               (long long)c->rowid, ms, ev->status ? ": " : "", wb_db_result_errmsg(ev));
        c->step = ST_DB_READ;
        c->t0_ns = now_ns();
        wb_value_t v = wb_val_int(c->rowid);
        if (db_send(self, wb_db_request_sql("SELECT k, v FROM selfcheck WHERE id = ?", &v, 1, 0)))
            finish(self, c);
    } else if (ev->type == WB_EV_DB_RESULT && c->step == ST_DB_READ) {
        wb_value_t k = {0}, v = {0};
        int ok = ev->status == 0 && wb_db_result_nrows(ev) == 1 &&
                 wb_db_result_value(ev, 0, 0, &k) == 0 && wb_db_result_value(ev, 0, 1, &v) == 0 &&
                 k.type == WB_VAL_TEXT && k.u.s.n == 9 && memcmp(k.u.s.p, "selfcheck", 9) == 0 &&
                 v.type == WB_VAL_INT && v.u.i == 42;
        report(c, "db read back", ok, "%zu row in %.2f ms", wb_db_result_nrows(ev), ms);
        c->step = ST_NET;
        c->t0_ns = now_ns();
        if (wb_rt_call(rt, WB_LANE_NET, net_echo, (void *)(uintptr_t)wb_actor_id(self)) != 0)
            finish(self, c);
    } else if (ev->type == EV_NET_ECHO && c->step == ST_NET) {
        report(c, "network lane", ev->src_lane == WB_LANE_NET, "round trip %.3f ms", ms);
        finish(self, c);
    }
    wb_event_free(ev);
}
static const wb_actor_def_t checker_def = {"selfcheck", checker, NULL};

static const char *const migrations[] = {
    "CREATE TABLE selfcheck (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER)",
};

static void usage(FILE *f)
{
    fprintf(f, "usage: waybill selfcheck [--db PATH]\n\n"
               "Starts a node (network, actor and database threads), checks each lane end to\n"
               "end and prints what it measured. --db keeps the check's database at PATH\n"
               "(default: a temporary file, removed afterwards).\n");
}

int wb_cmd_selfcheck(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *db_path = NULL;
    char tmpdir[] = "/tmp/waybill-selfcheck-XXXXXX";
    char tmpdb[sizeof(tmpdir) + 16];
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'd') {
            db_path = optarg;
        } else {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (db_path == NULL) {
        if (mkdtemp(tmpdir) == NULL) {
            perror("waybill selfcheck: mkdtemp");
            return 1;
        }
        snprintf(tmpdb, sizeof(tmpdb), "%s/node.db", tmpdir);
        db_path = tmpdb;
    }

    wb_rt_t *rt;
    checker_t state = {0};
    uint64_t id;
    wb_db_config_t dbc = {.path = db_path, .migrations = migrations, .n_migrations = 1};
    int rc = wb_rt_new(&rt, NULL);
    if (rc == 0)
        rc = wb_db_attach(rt, &dbc);
    if (rc == 0)
        rc = wb_actor_spawn(rt, NULL, &checker_def, &state, &id);
    if (rc == 0)
        rc = wb_rt_start(rt);
    if (rc != 0) {
        fprintf(stderr, "waybill selfcheck: cannot start the node: %s\n", wb_strerror(rc));
        wb_rt_free(rt);
        return 1;
    }
    printf("selfcheck: node started (network, actor and database threads; db %s)\n", db_path);
    wb_event_t *begin = wb_event_new(EV_BEGIN, 0);
    wb_event_route(begin, WB_LANE_NET, 0, WB_LANE_ACTOR, id);
    if (begin == NULL || wb_rt_send(rt, begin) != 0) {
        wb_event_free(begin);
        state.failed = 1;
    } else {
        wb_rt_wait(rt);
    }
    wb_rt_stop(rt);
    wb_lane_stats_t st;
    wb_rt_stats(rt, WB_LANE_ACTOR, &st);
    printf("selfcheck: actor lane took %llu events in %llu batches with %llu wake-ups\n",
           (unsigned long long)st.events, (unsigned long long)st.batches,
           (unsigned long long)st.wakeups);
    wb_rt_free(rt);
    if (db_path == tmpdb) {
        char p[sizeof(tmpdb) + 8];
        unlink(tmpdb);
        snprintf(p, sizeof(p), "%s-wal", tmpdb);
        unlink(p);
        snprintf(p, sizeof(p), "%s-shm", tmpdb);
        unlink(p);
        rmdir(tmpdir);
    }
    printf("selfcheck: %s\n", state.failed ? "FAILED" : "all checks passed");
    return state.failed ? 1 : 0;
}
