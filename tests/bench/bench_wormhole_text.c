/*
 * bench_wormhole_text.c - wall time of a complete Magic Wormhole text
 * exchange on loopback, as a user lives it: two command-line processes, a
 * sender and a receiver, from the moment both are started until the text is
 * on the receiver's stdout and the processes have exited.
 *
 * Pairs: waybill -> waybill (`waybill send --text` / `waybill receive`),
 * python -> python (Debian's `/usr/bin/wormhole`, magic-wormhole 0.12.0 under
 * /usr/bin/python3) and go -> go (`wormhole-william` 1.0.6). Each pair runs
 * through `waybill mailbox-server` and through Debian's Python server
 * (`twist3 wormhole-mailbox`, 0.4.1); each server is started once, on a fresh
 * database, and stopped by pid when its pairs are done.
 *
 * One run: the sender (`--code N-purple-sausages`, a new nameplate every run)
 * and the receiver (the same code) are forked back to back; t0 is taken just
 * before the first fork. The receiver's stdout is a pipe read as it comes;
 * exits are seen through a signalfd for SIGCHLD, so every time is to the
 * microsecond, not to a polling period. Three times per run:
 *   printed   the whole text and its newline were on the receiver's stdout
 *             (Python clients run with PYTHONUNBUFFERED=1, as on a terminal:
 *             otherwise a pipe holds their output until they exit)
 *   receiver  the receiver exited (the headline figure: "printed the text and
 *             exited 0")
 *   both      both processes exited.
 * The cpu time both processes used (wait4) is printed beside them: on a
 * machine shared with other work the wall time of the Python pair, about a
 * second of cpu at start-up, moves with the load; its cpu time does not.
 * Every run is checked: both exit 0 and the receiver printed exactly the text
 * (a space and non-ASCII) and a newline. A failure or a hang (RUN_TIMEOUT_NS)
 * is broken, not slow: the pair stops, `# ERROR:` shows both programs' exit
 * statuses and last lines, the other pairs go on and the exit status is 1.
 *
 * Each pair first makes one warm-up exchange (checked, not counted: the page
 * cache then holds its binary, Python's modules, the server's code paths);
 * then the pairs through a server take turns, run by run, so a disturbance
 * of the shared machine falls on all of them rather than on one. Figures:
 *   wormhole_text_S_R_via_V_ms       median receiver time, S -> R through V
 *   wormhole_text_S_R_via_V_p90_ms   its 90th percentile (nearest rank)
 *   wormhole_text_S_R_via_V_both_ms / _both_p90_ms   both exited
 *   wormhole_text_ratio_python_over_waybill  python->python via python over
 *            waybill->waybill via waybill (each stack as shipped)
 *   wormhole_text_ratio_go_over_waybill      go->go via python (the server
 *            Go clients meet in the wild) over waybill->waybill via waybill
 *   wormhole_text_ratio_{python,go}_over_waybill_via_waybill  the clients
 *            alone: all three pairs through the same, waybill, server
 *
 * The run happens in a private network namespace when the process may make
 * one (root): only loopback, so the clients see no other address and fixed
 * ports collide with nothing; otherwise in the host's namespace with a note.
 * The whole benchmark is bounded by BUDGET_NS of exchanges (runs left when it
 * is spent are skipped with a note; a figure is the median of those done).
 * A program or server that is not installed gives a `not available` line.
 *
 * Environment: WB_BENCH_WAYBILL=PATH measures another waybill binary;
 * WB_BENCH_NO_NETNS=1 stays in the host's network namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/bench/bench_common.h"
#include "tests/bench/bench_proc.h"

#ifndef WAYBILL_BIN
#define WAYBILL_BIN "waybill"
#endif
#define PY_WORMHOLE    "/usr/bin/wormhole"
#define GO_WORMHOLE    "/usr/bin/wormhole-william"
#define TWIST3         "/usr/bin/twist3"
#define TEXT           "hello w\xc3\xb6rmhole \xe2\x98\x83 42"
#define WORDS          "purple-sausages"
#define RUN_TIMEOUT_NS 10000000000ull
#define BUDGET_NS      100000000000ull
#define START_WAIT_S   15
#define OUT_CAP        4096
#define TAIL_LINES     6

enum { CL_WAYBILL, CL_PYTHON, CL_GO, NCLIENT };
enum { SV_WAYBILL, SV_PYTHON, NSERVER };

static const struct {
    const char *name;
    const char *pkg; /* where it comes from, for `not available` */
    int runs;        /* measured runs per server */
} CLIENTS[NCLIENT] = {
    [CL_WAYBILL] = {"waybill", "this build", 15},
    [CL_PYTHON] = {"python", "package magic-wormhole", 5},
    [CL_GO] = {"go", "package wormhole-william", 10},
};
static const char *const SERVERS[NSERVER] = {"waybill", "python"};

/* One pair through one server. */
typedef struct {
    int client, server;
    int available;
    int broken;
    int runs_done;
    bench_samples_t printed, receiver, both, cpu;
} pair_res_t;

static pair_res_t results[NSERVER][NCLIENT];
static char tmpdir[] = "/tmp/wb_bench_wormhole_text_XXXXXX";
static int have_tmpdir;
static char *child_env[16];
static int sigfd = -1;
static int nameplate = 10;
static uint64_t t_start;
static int budget_noted;

static const char *waybill_bin(void)
{
    const char *b = getenv("WB_BENCH_WAYBILL");
    return b != NULL ? b : WAYBILL_BIN;
}

static const char *client_path(int client)
{
    return client == CL_WAYBILL ? waybill_bin() : client == CL_PYTHON ? PY_WORMHOLE : GO_WORMHOLE;
}

static void cleanup(void)
{
    bench_proc_kill_all();
    if (have_tmpdir) {
        bench_rm_tree(tmpdir);
        have_tmpdir = 0;
    }
}

/* The children's environment: fixed, so that no WORMHOLE_RELAY_URL or locale
 * of the caller changes what is measured; HOME and TMPDIR in our directory. */
static void env_init(void)
{
    static char home[128], tmp[128], log[64];
    static char *keep[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS"};
    int n = 0;
    snprintf(home, sizeof(home), "HOME=%s/home", tmpdir);
    snprintf(tmp, sizeof(tmp), "TMPDIR=%s/home", tmpdir);
    snprintf(log, sizeof(log), "WAYBILL_LOG=%s",
             getenv("WAYBILL_LOG") != NULL ? getenv("WAYBILL_LOG") : "warn");
    child_env[n++] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    child_env[n++] = home;
    child_env[n++] = tmp;
    child_env[n++] = "LANG=C.UTF-8";
    child_env[n++] = "LC_ALL=C.UTF-8";
    child_env[n++] = "PYTHONIOENCODING=utf-8";
    child_env[n++] = "PYTHONUNBUFFERED=1";
    child_env[n++] = log;
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const char *v = getenv(keep[i]);
        if (v != NULL) {
            static char buf[2][512];
            snprintf(buf[i], sizeof(buf[i]), "%s=%s", keep[i], v);
            child_env[n++] = buf[i];
        }
    }
    child_env[n] = NULL;
}

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        BENCH_FAIL("open %s: %s", path, strerror(errno));
    return fd;
}

/* Print the last TAIL_LINES lines of a file as `#   label| line`. */
static void print_tail(const char *label, const char *path)
{
    char buf[8192];
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f != NULL) {
        if (fseek(f, 0, SEEK_END) == 0) {
            long size = ftell(f);
            fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    while (n > 0 && buf[n - 1] == '\n')
        n--;
    buf[n] = '\0';
    char *start = buf + n;
    for (int lines = 0; start > buf; start--)
        if (start[-1] == '\n' && ++lines == TAIL_LINES)
            break;
    if (*start == '\0') {
        printf("#   %s| (nothing)\n", label);
        return;
    }
    for (char *line = strtok(start, "\n"); line != NULL; line = strtok(NULL, "\n"))
        printf("#   %s| %.200s\n", label, line);
}

/* src[0..n-1] as C-like text in dst: control bytes escaped, UTF-8 kept. */
static const char *escape(char *dst, size_t cap, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '\n')
            o += (size_t)snprintf(dst + o, cap - o, "\\n");
        else if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        else
            dst[o++] = (char)c;
    }
    dst[o] = '\0';
    return dst;
}

/* ---- servers -------------------------------------------------------------- */

/* Start a server on a fresh database; its pid, or -1 with why set. */
static pid_t server_start(int server, uint16_t port, char *why, size_t cap)
{
    char dir[128], db[160], logpath[160], portarg[64], portnum[16];
    snprintf(dir, sizeof(dir), "%s/server-%s", tmpdir, SERVERS[server]);
    snprintf(db, sizeof(db), "%s/relay.sqlite", dir);
    snprintf(logpath, sizeof(logpath), "%s/server.log", dir);
    snprintf(portnum, sizeof(portnum), "%u", port);
    snprintf(portarg, sizeof(portarg), "tcp:%u:interface=127.0.0.1", port);
    if (mkdir(dir, 0700) != 0)
        BENCH_FAIL("mkdir %s: %s", dir, strerror(errno));
    int lfd = open_log(logpath);
    pid_t pid;
    if (server == SV_PYTHON) {
        char *argv[] = {TWIST3, "wormhole-mailbox", "--port", portarg, "--channel-db", db, NULL};
        pid = bench_proc_spawn(argv, child_env, dir, -1, lfd, lfd);
    } else {
        char *argv[] = {(char *)waybill_bin(),
                        "mailbox-server",
                        "--listen",
                        "127.0.0.1",
                        "--port",
                        portnum,
                        "--channel-db",
                        db,
                        NULL};
        pid = bench_proc_spawn(argv, child_env, dir, -1, lfd, lfd);
    }
    close(lfd);
    uint64_t deadline = bench_now_ns() + START_WAIT_S * 1000000000ull;
    while (bench_now_ns() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            char st[48], first[200] = "";
            bench_proc_forget(pid);
            FILE *f = fopen(logpath, "r");
            while (f != NULL && fgets(first, sizeof(first), f) != NULL && first[0] == '\n')
                ;
            if (f != NULL)
                fclose(f);
            first[strcspn(first, "\n")] = '\0';
            snprintf(why, cap, "%s at start: %s", bench_proc_status_text(status, st, sizeof(st)),
                     first);
            return -1;
        }
        int http = bench_http_status(port);
        if (http == 200)
            return pid;
        if (http > 0) {
            printf("# %s server: GET / answered %d, not 200\n", SERVERS[server], http);
            return pid;
        }
        bench_sleep_us(20000);
    }
    bench_proc_stop(pid);
    snprintf(why, cap, "GET / did not answer within %d s", START_WAIT_S);
    return -1;
}

/* ---- one exchange --------------------------------------------------------- */

static void client_argv(int client, int sender, const char *url, const char *code, char **argv)
{
    int n = 0;
    argv[n++] = (char *)client_path(client);
    if (client == CL_PYTHON) { /* global options before the command */
        argv[n++] = "--relay-url";
        argv[n++] = (char *)url;
    }
    argv[n++] = sender ? "send" : "receive";
    if (client != CL_PYTHON) {
        argv[n++] = "--relay-url";
        argv[n++] = (char *)url;
    }
    if (sender) {
        argv[n++] = "--code";
        argv[n++] = (char *)code;
        argv[n++] = "--text";
        argv[n++] = TEXT;
    } else {
        argv[n++] = (char *)code;
    }
    argv[n] = NULL;
}

typedef struct {
    double printed_ms, receiver_ms, both_ms, cpu_ms;
} times_t;

/* Reap pid if it has exited: when, and the cpu time it used (ms) added. */
static void reap(pid_t pid, int *done, int *status, uint64_t *t, uint64_t now, double *cpu_ms)
{
    struct rusage ru;
    if (*done)
        return;
    pid_t r = wait4(pid, status, WNOHANG, &ru);
    if (r == pid) {
        bench_proc_forget(pid);
        *done = 1;
        *t = now;
        *cpu_ms += (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    } else if (r < 0) {
        BENCH_FAIL("waitpid %d: %s", (int)pid, strerror(errno));
    }
}

/* One exchange of `client` with itself through url. 0 with the times, or -1
 * after printing why (`# ERROR:` and both programs' last lines). */
static int exchange(int client, const char *url, const char *tag, times_t *out)
{
    char code[64], snd_log[160], rcv_err[160];
    char *snd_argv[12], *rcv_argv[12];
    char got[OUT_CAP + 1];
    size_t ngot = 0;
    const size_t want = strlen(TEXT) + 1;
    int p[2];

    snprintf(code, sizeof(code), "%d-%s", ++nameplate, WORDS);
    snprintf(snd_log, sizeof(snd_log), "%s/sender.log", tmpdir);
    snprintf(rcv_err, sizeof(rcv_err), "%s/receiver.err", tmpdir);
    client_argv(client, 1, url, code, snd_argv);
    client_argv(client, 0, url, code, rcv_argv);
    int sfd = open_log(snd_log), efd = open_log(rcv_err);
    if (pipe2(p, O_CLOEXEC) != 0)
        BENCH_FAIL("pipe: %s", strerror(errno));
    char home[160];
    snprintf(home, sizeof(home), "%s/home", tmpdir);

    uint64_t t0 = bench_now_ns();
    pid_t snd = bench_proc_spawn(snd_argv, child_env, home, -1, sfd, sfd);
    pid_t rcv = bench_proc_spawn(rcv_argv, child_env, home, -1, p[1], efd);
    close(p[1]);
    close(sfd);
    close(efd);
    fcntl(p[0], F_SETFL, O_NONBLOCK);

    uint64_t deadline = t0 + RUN_TIMEOUT_NS, t_print = 0, t_snd = 0, t_rcv = 0;
    double cpu_ms = 0;
    int snd_done = 0, rcv_done = 0, snd_st = 0, rcv_st = 0, out_open = 1, timed_out = 0;
    while (!snd_done || !rcv_done) {
        uint64_t now = bench_now_ns();
        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        struct pollfd pf[2] = {{sigfd, POLLIN, 0}, {out_open ? p[0] : -1, POLLIN, 0}};
        int ms = (int)((deadline - now + 999999) / 1000000);
        if (poll(pf, 2, ms) < 0 && errno != EINTR)
            BENCH_FAIL("poll: %s", strerror(errno));
        now = bench_now_ns();
        if (pf[1].revents != 0) {
            for (;;) {
                ssize_t r = read(p[0], got + ngot, OUT_CAP - ngot);
                if (r > 0) {
                    ngot += (size_t)r;
                    if (t_print == 0 && ngot >= want)
                        t_print = now;
                    if (ngot < OUT_CAP)
                        continue;
                }
                if (r == 0 || ngot == OUT_CAP)
                    out_open = 0; /* EOF, or more than the text: checked below */
                break;
            }
        }
        if (pf[0].revents != 0) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                ;
            reap(snd, &snd_done, &snd_st, &t_snd, now, &cpu_ms);
            reap(rcv, &rcv_done, &rcv_st, &t_rcv, now, &cpu_ms);
        }
    }
    /* What the receiver wrote just before it exited may still be in the pipe. */
    while (out_open && ngot < OUT_CAP) {
        ssize_t r = read(p[0], got + ngot, OUT_CAP - ngot);
        if (r <= 0)
            break;
        ngot += (size_t)r;
        if (t_print == 0 && ngot >= want)
            t_print = t_rcv;
    }
    close(p[0]);
    got[ngot] = '\0';

    char why[320] = "", s1[48] = "running", s2[48] = "running", shown[200];
    if (snd_done)
        bench_proc_status_text(snd_st, s1, sizeof(s1));
    if (rcv_done)
        bench_proc_status_text(rcv_st, s2, sizeof(s2));
    if (timed_out) {
        snprintf(why, sizeof(why), "not done after %.0f s (sender %s, receiver %s): hung",
                 RUN_TIMEOUT_NS / 1e9, s1, s2);
        bench_proc_stop(snd);
        bench_proc_stop(rcv);
    } else if (!WIFEXITED(snd_st) || WEXITSTATUS(snd_st) != 0 || !WIFEXITED(rcv_st) ||
               WEXITSTATUS(rcv_st) != 0) {
        snprintf(why, sizeof(why), "sender %s, receiver %s", s1, s2);
    } else if (ngot != want || memcmp(got, TEXT "\n", want) != 0) {
        snprintf(why, sizeof(why), "the receiver printed %zu bytes \"%s\", not \"%s\\n\"", ngot,
                 escape(shown, sizeof(shown), got, ngot < 60 ? ngot : 60), TEXT);
    }
    if (why[0] != '\0') {
        printf("# ERROR: %s: code %s: %s\n", tag, code, why);
        printf("#   sender:   %s", snd_argv[0]);
        for (int i = 1; snd_argv[i] != NULL; i++)
            printf(" %s", snd_argv[i]);
        printf("\n#   receiver: %s", rcv_argv[0]);
        for (int i = 1; rcv_argv[i] != NULL; i++)
            printf(" %s", rcv_argv[i]);
        printf("\n");
        print_tail("sender out+err", snd_log);
        print_tail("receiver stderr", rcv_err);
        printf("#   receiver stdout| \"%s\"\n", escape(shown, sizeof(shown), got, ngot));
        fflush(stdout);
        return -1;
    }
    out->printed_ms = (t_print - t0) / 1e6;
    out->cpu_ms = cpu_ms;
    out->receiver_ms = (t_rcv - t0) / 1e6;
    out->both_ms = ((t_snd > t_rcv ? t_snd : t_rcv) - t0) / 1e6;
    return 0;
}

/* ---- figures -------------------------------------------------------------- */

/* The q-th percentile by nearest rank (q = 90: the 9th of 10, the 5th of 5). */
static double pct(const bench_samples_t *s, int q)
{
    double tmp[BENCH_MAX_RUNS];
    if (s->n == 0)
        return 0.0;
    memcpy(tmp, s->v, sizeof(double) * (size_t)s->n);
    qsort(tmp, (size_t)s->n, sizeof(double), bench_cmp_double);
    int rank = (q * s->n + 99) / 100;
    return tmp[rank > 0 ? rank - 1 : 0];
}

static double smin(const bench_samples_t *s)
{
    return pct(s, 0);
}

static double smax(const bench_samples_t *s)
{
    return pct(s, 100);
}

static void pair_name(char *buf, size_t cap, const pair_res_t *r, const char *suffix)
{
    const char *c = CLIENTS[r->client].name;
    snprintf(buf, cap, "wormhole_text_%s_%s_via_%s%s", c, c, SERVERS[r->server], suffix);
}

static void print_pair(pair_res_t *r)
{
    char name[128];
    if (!r->available || r->broken || r->runs_done == 0)
        return;
    const char *c = CLIENTS[r->client].name;
    printf("# %s->%s via %s: %d runs (after 1 warm-up); printed at median %.2f ms; receiver "
           "exited %.2f..%.2f ms, both %.2f..%.2f ms; cpu of both processes %.1f ms (median)\n",
           c, c, SERVERS[r->server], r->runs_done, bench_med(&r->printed), smin(&r->receiver),
           smax(&r->receiver), smin(&r->both), smax(&r->both), bench_med(&r->cpu));
    pair_name(name, sizeof(name), r, "_ms");
    bench_print2(name, bench_med(&r->receiver), "ms");
    pair_name(name, sizeof(name), r, "_p90_ms");
    bench_print2(name, pct(&r->receiver, 90), "ms");
    pair_name(name, sizeof(name), r, "_both_ms");
    bench_print2(name, bench_med(&r->both), "ms");
    pair_name(name, sizeof(name), r, "_both_p90_ms");
    bench_print2(name, pct(&r->both, 90), "ms");
}

static int usable(pair_res_t *r)
{
    return r->available && !r->broken && r->runs_done > 0;
}

static void print_ratio(const char *name, pair_res_t *num, pair_res_t *den)
{
    if (usable(num) && usable(den) && bench_med(&den->receiver) > 0)
        bench_print2(name, bench_med(&num->receiver) / bench_med(&den->receiver), "x");
}

/* ---- a server and its pairs ----------------------------------------------- */

static int over_budget(void)
{
    if (bench_now_ns() - t_start < BUDGET_NS)
        return 0;
    if (!budget_noted)
        printf("# the budget of %.0f s of exchanges is spent: the runs left are skipped\n",
               BUDGET_NS / 1e9);
    budget_noted = 1;
    return 1;
}

static void run_one(pair_res_t *r, const char *url, int counted)
{
    char tag[96];
    times_t t;
    const char *c = CLIENTS[r->client].name;
    snprintf(tag, sizeof(tag), "%s->%s via %s, %s %d", c, c, SERVERS[r->server],
             counted ? "run" : "warm-up", counted ? r->runs_done + 1 : 1);
    if (exchange(r->client, url, tag, &t) != 0) {
        r->broken = 1;
        return;
    }
    if (counted) {
        bench_add(&r->printed, t.printed_ms);
        bench_add(&r->cpu, t.cpu_ms);
        bench_add(&r->receiver, t.receiver_ms);
        bench_add(&r->both, t.both_ms);
        r->runs_done++;
    }
}

static void run_server(int server)
{
    char why[256], url[64];
    int any = 0;
    for (int c = 0; c < NCLIENT; c++) {
        pair_res_t *r = &results[server][c];
        r->client = c;
        r->server = server;
        r->available = access(client_path(c), X_OK) == 0;
        any |= r->available;
    }
    if (!any)
        return;
    if (server == SV_PYTHON && access(TWIST3, X_OK) != 0) {
        printf("wormhole_text_via_python: not available (%s not installed: package "
               "python3-magic-wormhole-mailbox-server)\n",
               TWIST3);
        for (int c = 0; c < NCLIENT; c++)
            results[server][c].available = 0;
        return;
    }
    uint16_t port = bench_free_port();
    uint64_t t0 = bench_now_ns();
    pid_t pid = server_start(server, port, why, sizeof(why));
    if (pid < 0) {
        printf("wormhole_text_via_%s: not available (server %s)\n", SERVERS[server], why);
        for (int c = 0; c < NCLIENT; c++)
            results[server][c].available = 0;
        return;
    }
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/v1", port);
    printf("# %s server: pid %d on %s, fresh database, ready in %.0f ms\n", SERVERS[server],
           (int)pid, url, (bench_now_ns() - t0) / 1e6);
    fflush(stdout);

    for (int c = 0; c < NCLIENT; c++)
        if (results[server][c].available && !over_budget())
            run_one(&results[server][c], url, 0);
    for (int i = 0; i < BENCH_MAX_RUNS; i++)
        for (int c = 0; c < NCLIENT; c++) {
            pair_res_t *r = &results[server][c];
            if (r->available && !r->broken && i < CLIENTS[c].runs && !over_budget())
                run_one(r, url, 1);
        }

    int st = bench_proc_stop(pid);
    if (st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
        !(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM)) {
        char s[48];
        printf("# %s server: %s when stopped\n", SERVERS[server],
               bench_proc_status_text(st, s, sizeof(s)));
    }
    for (int c = 0; c < NCLIENT; c++)
        print_pair(&results[server][c]);
}

int main(void)
{
    char note[160], load[64], home[160];
    int in_netns = bench_netns_enter(note, sizeof(note));
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(tmpdir) == NULL)
        BENCH_FAIL("mkdtemp: %s", strerror(errno));
    have_tmpdir = 1;
    atexit(cleanup);
    snprintf(home, sizeof(home), "%s/home", tmpdir);
    if (mkdir(home, 0700) != 0)
        BENCH_FAIL("mkdir %s: %s", home, strerror(errno));
    env_init();

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0 ||
        (sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        BENCH_FAIL("signalfd: %s", strerror(errno));

    if (in_netns)
        printf("# private network namespace: only loopback\n");
    else
        printf("# host network namespace (%s): the clients also see the host's addresses\n", note);
    printf("# /proc/loadavg at start (other work shares the %d cpus): %s\n", bench_ncpus(),
           bench_loadavg(load, sizeof(load)));
    printf("# one run: sender (--code N-%s --text \"%s\") and receiver forked back to back; "
           "time to the receiver's exit (0, text checked) and to both exits\n",
           WORDS, TEXT);
    for (int c = 0; c < NCLIENT; c++)
        if (access(client_path(c), X_OK) != 0)
            printf("wormhole_text_%s_%s: not available (%s not installed: %s)\n", CLIENTS[c].name,
                   CLIENTS[c].name, client_path(c), CLIENTS[c].pkg);
    fflush(stdout);

    t_start = bench_now_ns();
    for (int s = 0; s < NSERVER; s++)
        run_server(s);

    pair_res_t *wb = &results[SV_WAYBILL][CL_WAYBILL];
    print_ratio("wormhole_text_ratio_python_over_waybill", &results[SV_PYTHON][CL_PYTHON], wb);
    print_ratio("wormhole_text_ratio_go_over_waybill", &results[SV_PYTHON][CL_GO], wb);
    print_ratio("wormhole_text_ratio_python_over_waybill_via_waybill",
                &results[SV_WAYBILL][CL_PYTHON], wb);
    print_ratio("wormhole_text_ratio_go_over_waybill_via_waybill", &results[SV_WAYBILL][CL_GO], wb);

    int broken = 0;
    for (int s = 0; s < NSERVER; s++)
        for (int c = 0; c < NCLIENT; c++)
            if (results[s][c].broken) {
                fprintf(stderr, "bench_wormhole_text: %s->%s via %s is broken (see # ERROR)\n",
                        CLIENTS[c].name, CLIENTS[c].name, SERVERS[s]);
                broken = 1;
            }
    return broken;
}
