/*
 * bench_mailbox.c - the mailbox (rendezvous) server under load: `waybill
 * mailbox-server` and Debian's Python server (`twist3 wormhole-mailbox`,
 * python3-magic-wormhole-mailbox-server 0.4.1) in the same run, driven by one
 * load generator written on our runtime.
 *
 * An exchange is what two real clients do to meet (shared/notes/wormhole.md
 * section 1): two fresh WebSocket connections A and B to ws://127.0.0.1:PORT/v1,
 * each waiting for `welcome`, then sending `bind` {appid, side, client_version}
 * and `claim` {nameplate} (a decimal nameplate unique to the exchange); on
 * `claimed`, `open` {mailbox} and `add` {phase "pake", 64 hex chars}; when the
 * peer's message arrives, `release`; on `released`, `close` {mood "happy"};
 * on `closed` the connection is dropped, as the Python client does. The
 * exchange is complete when both sides got `closed`; its duration runs from
 * the first dial to the second `closed`.
 *
 * Every reply is checked: each command's `ack` comes first and in command
 * order, each typed answer only after its command's ack, both sides got the
 * same mailbox, the peer's message and our own echo carry exactly the side,
 * phase and body that were sent, the echo arrived before `closed`. An `error`,
 * anything unexpected, or a connection the server drops mid-exchange is
 * broken, not slow: the server's remaining phases are skipped, the rest of the
 * run goes on, `# ERROR:` says what happened and the exit status is 1.
 *
 *   exchanges_per_s_pN   N pairs in a closed loop (each starts its next
 *                        exchange when the last completed): completions per
 *                        second, the median of NWIN windows of WIN_NS after
 *                        WARM_NS of warm-up (a stall of the shared machine
 *                        then moves one window, not the figure).
 *                        Ours with N = 50 and 200, Python with N = 10.
 *   exchange_p50/p99_at_peak      durations of the exchanges that completed in
 *                        those windows (the N with the best rate).
 *   exchange_p50/p99_at_half_peak an open loop: exchanges started on a fixed
 *                        schedule at half the best rate for HALF_NS, every one
 *                        timed (a 1 ms timer starts those due).
 *   rss_10k_idle         the server's VmRSS with IDLE_CONNS WebSocket
 *                        connections open, each bound (bind acked), idle.
 *                        Python gets IDLE_PY_NS to get there; what it reached
 *                        is printed if it does not.
 *
 * The whole run happens in a private network namespace when the process may
 * make one (root): loopback up, ephemeral ports 1024-65000 and
 * tcp_tw_reuse=1 there, so tens of thousands of short connections per second
 * do not run out of ports. Otherwise it runs in the host's namespace with a
 * note. Servers are children started on fresh databases in a temporary
 * directory and stopped by pid. Without `waybill mailbox-server` (or twist3)
 * that server's lines are replaced by a `not available` line and the ratios
 * are omitted.
 *
 * The load generator is one actor handling every connection: WebSocket
 * framing by sockets/websocket.h on raw TCP dials, requests written into a
 * stack buffer, replies scanned in place (no allocation per message beyond
 * the runtime's events and wslay's queue). Even so it is not free: on
 * loopback the sender's write also runs the receiver's TCP input, and a
 * client costs about 0.3 ms of cpu per exchange here, most of it in the
 * kernel. Client and server share the machine's cpus, so the peak windows
 * print how busy the server, the load generator and the machine were, and
 * say when the machine, not the server, was the limit.
 *
 * Environment: WB_BENCH_WAYBILL=PATH measures another waybill binary;
 * WB_BENCH_MAILBOX_ONLY=waybill|python runs one server alone;
 * WB_BENCH_NO_NETNS=1 stays in the host's network namespace.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/event.h"
#include "runtime/idmap.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"
#include "sockets/websocket.h"
#include "tests/bench/bench_common.h"

#ifndef WAYBILL_BIN
#define WAYBILL_BIN "waybill"
#endif
#define TWIST3 "/usr/bin/twist3"

#define APPID        "waybill.bench/mailbox"
#define BODY_HEX     64
#define MAILBOX_MAX  255
#define WARM_NS      500000000ull
#define WIN_NS       1000000000ull
#define NWIN         3
#define HALF_NS      2000000000ull
#define DRAIN_NS     8000000000ull /* in-flight exchanges must finish this soon after a phase */
#define IDLE_CONNS   10000
#define IDLE_NS      30000000000ull /* ours: time allowed to open IDLE_CONNS */
#define IDLE_PY_NS   60000000000ull /* the Python server's */
#define IDLE_SETTLE  500000         /* us between the last bind and reading RSS */
#define MAX_PAIRS    4096           /* exchanges in flight at most (open loop) */
#define LAT_CAP      (1u << 21)
#define START_WAIT_S 15
#define TICK_MS      1
#define RAMP_NS      100000000ull /* closed loop: pairs start spread over this (listen backlogs) */

/* ---- processes ----------------------------------------------------------- */

static pid_t children[4];
static char tmpdir[] = "/tmp/wb_bench_mailbox_XXXXXX";
static int have_tmpdir;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* SIGTERM, then SIGKILL after 5 s; by pid only, and only a child not yet
 * reaped (its pid cannot have been reused). */
static void stop_child(pid_t pid)
{
    int status, ours = 0;
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        ours |= pid > 0 && children[i] == pid;
    if (!ours)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            goto reaped;
        bench_sleep_us(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
reaped:
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] == pid)
            children[i] = 0;
}

static void cleanup(void)
{
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    if (have_tmpdir) {
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        have_tmpdir = 0;
    }
}

/* fork + exec argv in dir, stdout and stderr to log_fd. */
static pid_t spawn(char *const argv[], const char *dir, int log_fd)
{
    size_t slot = 0;
    while (slot < sizeof(children) / sizeof(children[0]) && children[slot] != 0)
        slot++;
    if (slot == sizeof(children) / sizeof(children[0]))
        BENCH_FAIL("too many children");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        BENCH_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(log_fd >= 0 ? log_fd : null, 1);
        dup2(log_fd >= 0 ? log_fd : null, 2);
        if (chdir(dir) != 0)
            _exit(126);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    children[slot] = pid;
    return pid;
}

static uint16_t free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        BENCH_FAIL("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* The HTTP status of GET / on 127.0.0.1:port, or 0 (no answer within 1 s). */
static int http_get_root(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {1, 0};
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char buf[64] = "";
    int status = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1)) {
        size_t got = 0;
        while (got < sizeof(buf) - 1) {
            ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
            buf[got] = '\0';
            if (strchr(buf, '\n') != NULL)
                break;
        }
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
            status = 0;
    }
    close(fd);
    return status;
}

/* VmRSS of pid in MB, or -1. */
static double rss_mb(pid_t pid)
{
    char path[64], line[256];
    double mb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long kb;
        if (sscanf(line, "VmRSS: %lu kB", &kb) == 1) {
            mb = kb / 1024.0;
            break;
        }
    }
    fclose(f);
    return mb;
}

/* CPU time used by pid (utime + stime), in seconds, or -1. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The machine's idle and total jiffies so far (all cpus), from /proc/stat. */
static void machine_jiffies(double *idle, double *total)
{
    unsigned long long v[8] = {0};
    *idle = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        *idle = (double)(v[3] + v[4]);
        for (int i = 0; i < 8; i++)
            *total += (double)v[i];
    }
    fclose(f);
}

/* ---- the environment ----------------------------------------------------- */

/* Descriptors: 10,000 connections on each side, plus whatever closes linger. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 65536) {
        struct rlimit up = {65536, 65536};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Move the process (before any thread exists: threads and children inherit
 * it) into a network namespace of its own, where loopback may reuse ports in
 * TIME_WAIT and use 64k ephemeral ports without touching the host. Returns
 * 1 when done; 0 with a note when the run stays in the host's namespace. */
static int netns_setup(char *note, size_t cap)
{
    if (getenv("WB_BENCH_NO_NETNS") != NULL) {
        snprintf(note, cap, "WB_BENCH_NO_NETNS set");
        return 0;
    }
    int orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (unshare(CLONE_NEWNET) != 0) {
        snprintf(note, cap, "unshare(CLONE_NEWNET): %s", strerror(errno));
        if (orig >= 0)
            close(orig);
        return 0;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int up = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
    if (up) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        up = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
    }
    if (fd >= 0)
        close(fd);
    if (!up) {
        snprintf(note, cap, "loopback in a new namespace: %s", strerror(errno));
        if (orig < 0 || setns(orig, CLONE_NEWNET) != 0)
            BENCH_FAIL("cannot return to the original network namespace");
        close(orig);
        return 0;
    }
    if (orig >= 0)
        close(orig);
    note[0] = '\0';
    if (write_file("/proc/sys/net/ipv4/ip_local_port_range", "1024 65000") != 0)
        snprintf(note, cap, "ip_local_port_range not set: %s", strerror(errno));
    if (write_file("/proc/sys/net/ipv4/tcp_tw_reuse", "1") != 0)
        snprintf(note, cap, "tcp_tw_reuse not set: %s", strerror(errno));
    return 1;
}

/* ---- replies: a strict JSON object scanner -------------------------------- */

/* Top-level members of a server message that the checks read. Values are
 * spans of the message (strings without their quotes, escapes left in). */
enum { F_TYPE, F_ID, F_MAILBOX, F_SIDE, F_PHASE, F_BODY, F_ERROR, F_WELCOME, F_N };
static const char *const FIELD_NAMES[F_N] = {"type",  "id",   "mailbox", "side",
                                             "phase", "body", "error",   "welcome"};

typedef struct {
    const char *p;
    uint32_t n;
    char kind; /* 0 absent, 's' string, 'o' object, 'a' array, 'n' number, 'l' literal */
    char esc;  /* the string holds escapes */
} jval_t;

typedef struct {
    jval_t f[F_N];
} jmsg_t;

static const char *j_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int j_hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* p at '"': the end of the string, or NULL. UTF-8 was checked by the
 * WebSocket layer (text frames). */
static const char *j_string(const char *p, const char *e, char *esc)
{
    *esc = 0;
    for (p++; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            *esc = 1;
            if (++p >= e)
                return NULL;
            if (*p == 'u') {
                if (e - p < 5 || j_hex(p[1]) < 0 || j_hex(p[2]) < 0 || j_hex(p[3]) < 0 ||
                    j_hex(p[4]) < 0)
                    return NULL;
                p += 4;
            } else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0') {
                return NULL;
            }
        }
    }
    return NULL;
}

static const char *j_number(const char *p, const char *e)
{
    const char *s;
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (p < e && *p == '.') {
        s = ++p;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        if (p == s)
            return NULL;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        s = p;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        if (p == s)
            return NULL;
    }
    return p;
}

/* One value at p (whitespace skipped before); its end, or NULL. */
static const char *j_value(const char *p, const char *e, int depth, jval_t *out)
{
    char esc = 0, kind;
    const char *start = p;
    if (p >= e || depth > 32)
        return NULL;
    switch (*p) {
    case '"':
        kind = 's';
        p = j_string(p, e, &esc);
        break;
    case '{':
    case '[': {
        char close = *p == '{' ? '}' : ']';
        kind = *p == '{' ? 'o' : 'a';
        p = j_ws(p + 1, e);
        if (p < e && *p == close) {
            p++;
            break;
        }
        for (;;) {
            jval_t skip;
            if (kind == 'o') {
                if (p >= e || *p != '"' || (p = j_string(p, e, &esc)) == NULL)
                    return NULL;
                p = j_ws(p, e);
                if (p >= e || *p != ':')
                    return NULL;
                p = j_ws(p + 1, e);
            }
            if ((p = j_value(p, e, depth + 1, &skip)) == NULL)
                return NULL;
            p = j_ws(p, e);
            if (p < e && *p == ',') {
                p = j_ws(p + 1, e);
                continue;
            }
            if (p < e && *p == close) {
                p++;
                break;
            }
            return NULL;
        }
        esc = 0;
        break;
    }
    case 't':
    case 'f':
    case 'n': {
        const char *lit = *p == 't' ? "true" : *p == 'f' ? "false" : "null";
        size_t n = strlen(lit);
        kind = 'l';
        p = (size_t)(e - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
        break;
    }
    default:
        kind = 'n';
        p = j_number(p, e);
        break;
    }
    if (p == NULL)
        return NULL;
    if (kind == 's')
        *out = (jval_t){start + 1, (uint32_t)(p - start - 2), 's', esc};
    else
        *out = (jval_t){start, (uint32_t)(p - start), kind, 0};
    return p;
}

/* Scan one message: a JSON object (with whitespace around it) and nothing
 * else. Returns 0, or -1 when it is not one. */
static int j_scan(const char *p, size_t n, jmsg_t *m)
{
    const char *e = p + n;
    memset(m, 0, sizeof(*m));
    p = j_ws(p, e);
    if (p >= e || *p != '{')
        return -1;
    p = j_ws(p + 1, e);
    if (p < e && *p == '}')
        return j_ws(p + 1, e) == e ? 0 : -1;
    for (;;) {
        jval_t key, val;
        char esc;
        const char *k = p;
        if (p >= e || *p != '"' || (p = j_string(p, e, &esc)) == NULL)
            return -1;
        key = (jval_t){k + 1, (uint32_t)(p - k - 2), 's', esc};
        p = j_ws(p, e);
        if (p >= e || *p != ':')
            return -1;
        if ((p = j_value(j_ws(p + 1, e), e, 1, &val)) == NULL)
            return -1;
        if (!key.esc)
            for (int f = 0; f < F_N; f++)
                if (strlen(FIELD_NAMES[f]) == key.n && memcmp(FIELD_NAMES[f], key.p, key.n) == 0)
                    m->f[f] = val;
        p = j_ws(p, e);
        if (p < e && *p == ',') {
            p = j_ws(p + 1, e);
            continue;
        }
        if (p < e && *p == '}')
            return j_ws(p + 1, e) == e ? 0 : -1;
        return -1;
    }
}

static void put_utf8(char *out, size_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | cp >> 6);
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xE0 | cp >> 12);
        out[(*o)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | cp >> 18);
        out[(*o)++] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static uint32_t j_u4(const char *p)
{
    return (uint32_t)(j_hex(p[0]) << 12 | j_hex(p[1]) << 8 | j_hex(p[2]) << 4 | j_hex(p[3]));
}

/* The string's text into out (cap bytes, NUL added); its length, or -1 when
 * it is not a string or does not fit. */
static int j_text(const jval_t *v, char *out, size_t cap)
{
    size_t o = 0;
    if (v->kind != 's')
        return -1;
    for (uint32_t i = 0; i < v->n; i++) {
        if (o + 5 > cap)
            return -1;
        char c = v->p[i];
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        c = v->p[++i];
        switch (c) {
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            uint32_t cp = j_u4(v->p + i + 1);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < v->n && v->p[i + 1] == '\\' &&
                v->p[i + 2] == 'u') {
                uint32_t lo = j_u4(v->p + i + 3);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            put_utf8(out, &o, cp);
            break;
        }
        default: /* " \ / */
            out[o++] = c;
            break;
        }
    }
    out[o] = '\0';
    return (int)o;
}

/* Is v the string s[0..n)? */
static int j_eq(const jval_t *v, const char *s, size_t n)
{
    if (v->kind != 's')
        return 0;
    if (!v->esc)
        return v->n == n && memcmp(v->p, s, n) == 0;
    char buf[MAILBOX_MAX + 1];
    int len = j_text(v, buf, sizeof(buf));
    return len >= 0 && (size_t)len == n && memcmp(buf, s, n) == 0;
}

#define J_IS(v, lit) j_eq((v), lit, sizeof(lit) - 1)

/* ---- requests: a small JSON writer into a stack buffer -------------------- */

typedef struct {
    char b[512];
    size_t n;
} jw_t;

static void jw_raw(jw_t *w, const char *s, size_t n)
{
    if (w->n + n > sizeof(w->b))
        BENCH_FAIL("request too long");
    memcpy(w->b + w->n, s, n);
    w->n += n;
}

#define JW_LIT(w, lit) jw_raw((w), lit, sizeof(lit) - 1)

/* s as a JSON string's contents (the quotes are the caller's). */
static void jw_esc(jw_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jw_raw(w, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            jw_raw(w, e, 6);
        } else {
            jw_raw(w, (const char *)&c, 1);
        }
    }
}

/* ---- the load generator ---------------------------------------------------- */

enum {
    S_FREE = 0,
    S_WELCOME, /* dialled: the 101 and `welcome` come first */
    S_CLAIM,   /* bind + claim sent */
    S_MSG,     /* open + add sent: waiting for the peer's message */
    S_RELEASE, /* release sent */
    S_CLOSE,   /* close sent */
    S_DONE,    /* `closed` received */
    S_BIND,    /* idle connection: bind sent */
    S_BOUND,   /* idle connection: bind acked */
};
static const char *const STEP_WAITS[] = {"nothing",  "welcome", "claimed", "the peer's message",
                                         "released", "closed",  "nothing", "the bind ack",
                                         "nothing"};

/* Commands in the order each connection sends them; command k carries
 * id = id0 + k (4 hex chars). */
enum { C_BIND, C_CLAIM, C_OPEN, C_ADD, C_RELEASE, C_CLOSE };

typedef struct pair_s pair_t;

typedef struct {
    pair_t *pair;     /* NULL for an idle connection */
    wb_ws_conn_t *ws; /* NULL when closed */
    uint64_t conn;    /* the dial's id; 0 when closed */
    wb_event_t *held; /* output refused by a full network inbox, sent on RESUME */
    uint8_t step, role, opened, in_held;
    uint8_t sent, acked, echo, peer_msg;
    uint16_t id0;
    char side[11];
    char body[BODY_HEX + 1];
} side_t;

struct pair_s {
    side_t s[2];
    pair_t *next_free;
    uint64_t t_start;
    uint64_t nameplate;
    char nameplate_s[24];
    char mailbox[MAILBOX_MAX + 1];
    int mailbox_len; /* -1 until a side got `claimed` */
    int live;
};

enum { PH_NONE, PH_CLOSED, PH_OPEN, PH_IDLE, PH_IDLE_CLOSE };
enum { CMD_GO = 1 };

static struct {
    wb_rt_t *rt;
    wb_actor_t *actor; /* valid inside the handler */
    uint64_t self;
    uint16_t port;
    wb_idmap_t conns; /* dial id -> side_t */
    wb_tcp_opts_t topts;
    wb_ws_opts_t wopts;

    /* the phase: set by main before CMD_GO, read back after done */
    int kind;
    int npairs;          /* PH_CLOSED */
    double rate;         /* PH_OPEN: exchanges per second */
    int idle_target;     /* PH_IDLE */
    int idle_max_flight; /* PH_IDLE: connections opening at once */
    uint64_t idle_ns;    /* PH_IDLE: time allowed */

    uint64_t t0, t_meas0, t_meas1, t_drain;
    int stopping;
    pair_t *pairs, *free_pairs;
    int live_pairs;
    uint64_t started, completed, in_window, scheduled, skipped, behind_max_ns;
    uint64_t win[NWIN]; /* PH_CLOSED: completions per window */
    uint64_t t_last;    /* the last completion */
    int ramped;         /* PH_CLOSED: pairs started so far */
    uint32_t *lat;      /* microseconds */
    size_t nlat;
    uint64_t seq, nameplate_seq, side_base, tick_timer;

    side_t *idle;
    int idle_started, idle_bound, idle_flight;

    uint64_t connect_fail;
    char connect_err[160];
    int broken;
    char err[1024];

    side_t **held;
    size_t nheld, held_cap;
    _Atomic int done;
} L;

static void lat_add(uint64_t ns)
{
    if (L.nlat < LAT_CAP)
        L.lat[L.nlat++] = (uint32_t)(ns / 1000);
}

/* Something is wrong with a reply: stop the phase (after the WebSocket
 * callback has returned) and say what, once. */
__attribute__((format(printf, 2, 3))) static void fail(const side_t *s, const char *fmt, ...)
{
    if (L.broken)
        return;
    L.broken = 1;
    size_t n = 0;
    if (s != NULL && s->pair != NULL)
        n = (size_t)snprintf(L.err, sizeof(L.err),
                             "exchange with nameplate %s, side %c (%s), "
                             "waiting for %s: ",
                             s->pair->nameplate_s, s->role ? 'B' : 'A', s->side,
                             STEP_WAITS[s->step]);
    else if (s != NULL)
        n = (size_t)snprintf(L.err, sizeof(L.err),
                             "idle connection, side %s, waiting for %s: ", s->side,
                             STEP_WAITS[s->step]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L.err + n, sizeof(L.err) - n, fmt, ap);
    va_end(ap);
}

static void held_push(side_t *s)
{
    if (s->in_held)
        return;
    if (L.nheld == L.held_cap) {
        L.held_cap = L.held_cap ? 2 * L.held_cap : 256;
        L.held = realloc(L.held, L.held_cap * sizeof(*L.held));
        if (L.held == NULL)
            BENCH_FAIL("out of memory");
    }
    L.held[L.nheld++] = s;
    s->in_held = 1;
}

static int side_send_ev(side_t *s, wb_event_t *ev)
{
    wb_event_route(ev, WB_LANE_ACTOR, L.self, WB_LANE_NET, s->conn);
    int rc = wb_tcp_send(L.rt, s->conn, ev);
    if (rc == WB_EAGAIN) {
        s->held = ev;
        held_push(s);
    } else if (rc != 0) {
        wb_event_free(ev); /* the connection is gone: its CLOSED says why */
    }
    return rc;
}

/* Write out what the WebSocket has for the wire, behind anything held. */
static void side_flush(side_t *s)
{
    const uint8_t *p;
    size_t n = wb_ws_output(s->ws, &p);
    if (n == 0)
        return;
    wb_event_t *ev;
    if (s->held != NULL) {
        ev = wb_event_new(WB_EV_USER, s->held->len + n);
        if (ev == NULL)
            BENCH_FAIL("out of memory");
        memcpy(ev->data, s->held->data, s->held->len);
        memcpy((uint8_t *)ev->data + s->held->len, p, n);
        wb_event_free(s->held);
        s->held = ev;
    } else {
        ev = wb_event_new_copy(WB_EV_USER, p, n);
        if (ev == NULL)
            BENCH_FAIL("out of memory");
        side_send_ev(s, ev);
    }
    wb_ws_output_done(s->ws);
}

/* The network inbox has room again: send what it refused, in order. */
static void held_retry(void)
{
    size_t i = 0;
    for (; i < L.nheld; i++) {
        side_t *s = L.held[i];
        if (s->held == NULL) {
            s->in_held = 0;
            continue;
        }
        wb_event_t *ev = s->held;
        s->held = NULL;
        if (side_send_ev(s, ev) == WB_EAGAIN)
            break; /* re-held; another RESUME will come */
        s->in_held = 0;
    }
    memmove(L.held, L.held + i, (L.nheld - i) * sizeof(*L.held));
    L.nheld -= i;
}

/* Close the connection and forget it. */
static void side_end(side_t *s)
{
    if (s->conn != 0) {
        wb_idmap_del(&L.conns, s->conn);
        wb_tcp_close(L.rt, s->conn);
        s->conn = 0;
    }
    wb_event_free(s->held);
    s->held = NULL;
    wb_ws_free(s->ws);
    s->ws = NULL;
}

static void id_hex(uint16_t v, char out[4])
{
    static const char hex[] = "0123456789abcdef";
    out[0] = hex[v >> 12];
    out[1] = hex[v >> 8 & 15];
    out[2] = hex[v >> 4 & 15];
    out[3] = hex[v & 15];
}

/* Finish a request with its id and queue it on the WebSocket. */
static void cmd_send(side_t *s, jw_t *w)
{
    char id[4];
    id_hex((uint16_t)(s->id0 + s->sent), id);
    JW_LIT(w, ",\"id\":\"");
    jw_raw(w, id, 4);
    JW_LIT(w, "\"}");
    int rc = wb_ws_send(s->ws, WB_WS_TEXT, (const uint8_t *)w->b, w->n);
    if (rc != 0)
        fail(s, "cannot send: %s", wb_strerror(rc));
    s->sent++;
}

static void send_bind(side_t *s)
{
    jw_t w = {.n = 0};
    JW_LIT(&w, "{\"type\":\"bind\",\"appid\":\"" APPID "\",\"side\":\"");
    jw_raw(&w, s->side, 10);
    JW_LIT(&w, "\",\"client_version\":[\"waybill-bench\",\"0\"]");
    cmd_send(s, &w);
}

static void send_nameplate(side_t *s, const char *type_lit, size_t type_len)
{
    jw_t w = {.n = 0};
    jw_raw(&w, type_lit, type_len);
    JW_LIT(&w, ",\"nameplate\":\"");
    jw_raw(&w, s->pair->nameplate_s, strlen(s->pair->nameplate_s));
    JW_LIT(&w, "\"");
    cmd_send(s, &w);
}

static void send_open_add(side_t *s)
{
    pair_t *p = s->pair;
    jw_t w = {.n = 0};
    JW_LIT(&w, "{\"type\":\"open\",\"mailbox\":\"");
    jw_esc(&w, p->mailbox, (size_t)p->mailbox_len);
    JW_LIT(&w, "\"");
    cmd_send(s, &w);
    w.n = 0;
    JW_LIT(&w, "{\"type\":\"add\",\"phase\":\"pake\",\"body\":\"");
    jw_raw(&w, s->body, BODY_HEX);
    JW_LIT(&w, "\"");
    cmd_send(s, &w);
}

static void send_close(side_t *s)
{
    pair_t *p = s->pair;
    jw_t w = {.n = 0};
    JW_LIT(&w, "{\"type\":\"close\",\"mailbox\":\"");
    jw_esc(&w, p->mailbox, (size_t)p->mailbox_len);
    JW_LIT(&w, "\",\"mood\":\"happy\"");
    cmd_send(s, &w);
}

/* A short, printable copy of a message for error texts. */
static const char *quote(const uint8_t *d, size_t n)
{
    static char buf[400];
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof(buf) - 4; i++)
        buf[o++] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '?';
    if (o < n)
        buf[o++] = '.', buf[o++] = '.', buf[o++] = '.';
    buf[o] = '\0';
    return buf;
}

static void on_message(wb_ws_conn_t *ws, void *user, int op, const uint8_t *d, size_t n)
{
    side_t *s = user;
    pair_t *p = s->pair;
    jmsg_t m;
    const jval_t *type = &m.f[F_TYPE];
    (void)ws;
    if (L.broken)
        return;
    if (op != WB_WS_TEXT) {
        fail(s, "a binary message (%zu bytes)", n);
        return;
    }
    if (j_scan((const char *)d, n, &m) != 0) {
        fail(s, "not a JSON object: %s", quote(d, n));
        return;
    }
    if (type->kind != 's') {
        fail(s, "no string 'type': %s", quote(d, n));
        return;
    }
    if (J_IS(type, "ack")) {
        char want[4];
        id_hex((uint16_t)(s->id0 + s->acked), want);
        if (s->acked >= s->sent)
            fail(s, "an ack with no command outstanding: %s", quote(d, n));
        else if (!j_eq(&m.f[F_ID], want, 4))
            fail(s, "ack for id \"%.4s\" expected (one ack per command, in order): %s", want,
                 quote(d, n));
        else if (++s->acked == 1 && s->step == S_BIND) {
            s->step = S_BOUND;
            L.idle_bound++;
            L.idle_flight--;
        }
        return;
    }
    if (J_IS(type, "error")) {
        char text[256];
        if (j_text(&m.f[F_ERROR], text, sizeof(text)) < 0)
            snprintf(text, sizeof(text), "?");
        fail(s, "the server answered error \"%s\": %s", text, quote(d, n));
        return;
    }
    switch (s->step) {
    case S_WELCOME:
        if (!J_IS(type, "welcome") || m.f[F_WELCOME].kind != 'o')
            break;
        send_bind(s);
        if (p == NULL) {
            s->step = S_BIND;
            return;
        }
        send_nameplate(s, "{\"type\":\"claim\"", 15);
        s->step = S_CLAIM;
        return;
    case S_CLAIM: {
        if (!J_IS(type, "claimed"))
            break;
        if (s->acked < C_CLAIM + 1) {
            fail(s, "claimed before the claim's ack: %s", quote(d, n));
            return;
        }
        char mb[MAILBOX_MAX + 1];
        int len = j_text(&m.f[F_MAILBOX], mb, sizeof(mb));
        if (len <= 0) {
            fail(s, "claimed without a mailbox: %s", quote(d, n));
            return;
        }
        if (p->mailbox_len < 0) {
            memcpy(p->mailbox, mb, (size_t)len + 1);
            p->mailbox_len = len;
        } else if (p->mailbox_len != len || memcmp(p->mailbox, mb, (size_t)len) != 0) {
            fail(s, "mailbox \"%s\", but the peer got \"%s\" for the same nameplate", mb,
                 p->mailbox);
            return;
        }
        send_open_add(s);
        s->step = S_MSG;
        return;
    }
    case S_MSG:
    case S_RELEASE:
    case S_CLOSE:
        if (J_IS(type, "message")) {
            const side_t *peer = &p->s[!s->role];
            const jval_t *side = &m.f[F_SIDE];
            if (s->acked < C_OPEN + 1) {
                fail(s, "a message before the open's ack: %s", quote(d, n));
                return;
            }
            if (!J_IS(&m.f[F_PHASE], "pake")) {
                fail(s, "a message with phase other than \"pake\": %s", quote(d, n));
                return;
            }
            if (j_eq(side, s->side, 10)) {
                if (s->echo)
                    fail(s, "our own message echoed twice: %s", quote(d, n));
                else if (s->acked < C_ADD + 1)
                    fail(s, "our own message echoed before the add's ack: %s", quote(d, n));
                else if (!j_eq(&m.f[F_BODY], s->body, BODY_HEX))
                    fail(s, "our own message echoed with another body than we sent (%s): %s",
                         s->body, quote(d, n));
                else
                    s->echo = 1;
                return;
            }
            if (!j_eq(side, peer->side, 10)) {
                fail(s, "a message from a side that is neither ours nor the peer's (%s): %s",
                     peer->side, quote(d, n));
                return;
            }
            if (s->peer_msg) {
                fail(s, "the peer's message twice: %s", quote(d, n));
                return;
            }
            if (!j_eq(&m.f[F_BODY], peer->body, BODY_HEX)) {
                fail(s, "the peer's message with another body than it sent (%s): %s", peer->body,
                     quote(d, n));
                return;
            }
            s->peer_msg = 1;
            if (s->step == S_MSG) {
                send_nameplate(s, "{\"type\":\"release\"", 17);
                s->step = S_RELEASE;
            }
            return;
        }
        if (s->step == S_RELEASE && J_IS(type, "released")) {
            if (s->acked < C_RELEASE + 1) {
                fail(s, "released before the release's ack: %s", quote(d, n));
                return;
            }
            send_close(s);
            s->step = S_CLOSE;
            return;
        }
        if (s->step == S_CLOSE && J_IS(type, "closed")) {
            if (s->acked < C_CLOSE + 1 || !s->echo) {
                fail(s, "closed before the close's ack or before our own message's echo: %s",
                     quote(d, n));
                return;
            }
            s->step = S_DONE;
            return;
        }
        break;
    default:
        break;
    }
    fail(s, "an unexpected message: %s", quote(d, n));
}

static const wb_ws_cb_t ws_cb = {NULL, on_message, NULL};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Dial a fresh connection for s: a new side (10 hex chars, distinct), ids and
 * body. */
static void side_start(side_t *s, pair_t *p, int role)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = ++L.seq;
    uint64_t side = (L.side_base + n) & 0xFFFFFFFFFFull;
    uint64_t x = n ^ L.side_base;
    memset(s, 0, sizeof(*s));
    s->pair = p;
    s->role = (uint8_t)role;
    s->step = S_WELCOME;
    s->id0 = (uint16_t)(n * 8);
    for (int i = 9; i >= 0; i--, side >>= 4)
        s->side[i] = hex[side & 15];
    for (int i = 0; i < BODY_HEX; i += 16) {
        uint64_t r = splitmix(&x);
        for (int j = 0; j < 16; j++, r >>= 4)
            s->body[i + j] = hex[r & 15];
    }
    int rc = wb_ws_new(&s->ws, WB_WS_CLIENT, &L.wopts, &ws_cb, s);
    if (rc == 0)
        rc = wb_tcp_dial(L.rt, WB_LANE_ACTOR, L.self, "127.0.0.1", L.port, &L.topts, &s->conn);
    if (rc == 0)
        rc = wb_idmap_put(&L.conns, s->conn, s);
    if (rc != 0)
        BENCH_FAIL("cannot dial: %s", wb_strerror(rc));
    side_flush(s); /* the upgrade request waits for the connection */
}

static void pair_start(pair_t *p)
{
    p->live = 1;
    p->t_start = bench_now_ns();
    p->nameplate = ++L.nameplate_seq;
    p->mailbox_len = -1;
    snprintf(p->nameplate_s, sizeof(p->nameplate_s), "%llu", (unsigned long long)p->nameplate);
    side_start(&p->s[0], p, 0);
    side_start(&p->s[1], p, 1);
    L.live_pairs++;
    L.started++;
}

static void pair_free(pair_t *p)
{
    side_end(&p->s[0]);
    side_end(&p->s[1]);
    p->live = 0;
    L.live_pairs--;
    p->next_free = L.free_pairs;
    L.free_pairs = p;
}

static void pair_done(pair_t *p)
{
    uint64_t t = bench_now_ns();
    L.completed++;
    L.t_last = t;
    if (L.kind == PH_CLOSED && t >= L.t_meas0 && t < L.t_meas1)
        L.win[(t - L.t_meas0) / WIN_NS]++;
    if (L.kind == PH_OPEN || (t >= L.t_meas0 && t < L.t_meas1)) {
        L.in_window++;
        lat_add(t - p->t_start);
    }
    if (L.kind == PH_CLOSED && !L.stopping && !L.broken && t < L.t_meas1) {
        side_end(&p->s[0]);
        side_end(&p->s[1]);
        L.live_pairs--;
        pair_start(p);
        return;
    }
    pair_free(p);
}

static void idle_more(void)
{
    while (!L.broken && L.idle_started < L.idle_target && L.idle_flight < L.idle_max_flight &&
           bench_now_ns() < L.t_meas1) {
        side_start(&L.idle[L.idle_started++], NULL, 0);
        L.idle_flight++;
    }
}

/* End every connection of the phase; the figures so far stay. */
static void close_all(void)
{
    for (int i = 0; i < MAX_PAIRS; i++)
        if (L.pairs[i].live)
            pair_free(&L.pairs[i]);
    for (int i = 0; i < L.idle_started; i++)
        side_end(&L.idle[i]);
    L.idle_started = L.idle_bound = L.idle_flight = 0;
}

static void phase_end(void)
{
    if (L.broken)
        close_all();
    L.kind = PH_NONE;
    wb_timer_cancel(L.actor, L.tick_timer);
    L.tick_timer = 0;
    atomic_store_explicit(&L.done, 1, memory_order_release);
}

static void side_closed(side_t *s, int status, const char *why)
{
    pair_t *p = s->pair;
    if (!s->opened || s->step == S_WELCOME) {
        /* Never connected, or refused before `welcome`: the machine, the
         * server's backlog or its connection limit, not a wrong answer.
         * Noted; the exchange (or idle connection) is given up. */
        L.connect_fail++;
        snprintf(L.connect_err, sizeof(L.connect_err), "%s%s",
                 s->opened ? "closed before welcome: " : "", why);
        if (p != NULL) {
            pair_free(p);
        } else {
            side_end(s);
            L.idle_flight--;
        }
        return;
    }
    fail(s, "the connection ended (%s: %s)", wb_err_name(status), why);
}

static void on_blob(side_t *s, const uint8_t *d, size_t n)
{
    int rc = wb_ws_feed(s->ws, d, n);
    if (L.broken)
        return;
    side_flush(s);
    if (s->step == S_DONE) {
        pair_t *p = s->pair;
        side_end(s);
        if (p->s[!s->role].step == S_DONE)
            pair_done(p);
    } else if (rc != 0 || wb_ws_state(s->ws) == WB_WS_DONE) {
        if (wb_ws_http_status(s->ws) != 101)
            fail(s, "the WebSocket upgrade failed (HTTP status %d, %s)", wb_ws_http_status(s->ws),
                 wb_strerror(rc));
        else
            fail(s, "the WebSocket ended (%s, close code %u)", rc ? wb_strerror(rc) : "no error",
                 wb_ws_close_code(s->ws));
    } else if (s->step == S_BOUND && L.kind == PH_IDLE) {
        idle_more();
    }
}

static void tick(void)
{
    uint64_t now = bench_now_ns();
    if (L.broken) {
        phase_end();
        return;
    }
    switch (L.kind) {
    case PH_CLOSED: {
        int want = now - L.t0 >= RAMP_NS ? L.npairs
                                         : (int)((uint64_t)L.npairs * (now - L.t0) / RAMP_NS) + 1;
        while (L.ramped < want && L.free_pairs != NULL && !L.stopping) {
            pair_t *p = L.free_pairs;
            L.free_pairs = p->next_free;
            L.ramped++;
            pair_start(p);
        }
        if (now >= L.t_meas1)
            L.stopping = 1;
        break;
    }
    case PH_OPEN: {
        /* Start what is due by now on the schedule (exchange k at t0 + k /
         * rate); when MAX_PAIRS are in flight the server has fallen behind:
         * skip and count. */
        uint64_t total = (uint64_t)(L.rate * HALF_NS / 1e9);
        uint64_t due = (uint64_t)((double)(now - L.t0) * L.rate / 1e9) + 1;
        if (due > total)
            due = total;
        while (L.scheduled < due) {
            uint64_t sched = L.t0 + (uint64_t)((double)L.scheduled * 1e9 / L.rate);
            L.scheduled++;
            if (now - sched > L.behind_max_ns)
                L.behind_max_ns = now - sched;
            if (L.free_pairs == NULL) {
                L.skipped++;
                continue;
            }
            pair_t *p = L.free_pairs;
            L.free_pairs = p->next_free;
            pair_start(p);
        }
        if (L.scheduled >= total)
            L.stopping = 1;
        break;
    }
    case PH_IDLE:
        idle_more();
        if (L.idle_bound == L.idle_target ||
            (now >= L.t_meas1 && (L.idle_flight == 0 || now >= L.t_meas1 + 2000000000ull)) ||
            (L.idle_started == L.idle_target && L.idle_flight == 0)) {
            phase_end();
            return;
        }
        break;
    default:
        return;
    }
    if (L.stopping && L.live_pairs == 0) {
        phase_end();
        return;
    }
    if (now >= L.t_drain) {
        for (int i = 0; i < MAX_PAIRS; i++) {
            pair_t *p = &L.pairs[i];
            if (p->live) {
                side_t *s = p->s[0].step != S_DONE ? &p->s[0] : &p->s[1];
                fail(s, "%d exchanges unfinished %.0f s after the phase ended (a lost reply?)",
                     L.live_pairs, DRAIN_NS / 1e9);
                break;
            }
        }
        phase_end();
        return;
    }
    wb_timer_start(L.actor, TICK_MS, &L.tick_timer);
}

static void phase_start(void)
{
    uint64_t now = bench_now_ns();
    L.t0 = now;
    L.stopping = 0;
    L.started = L.completed = L.in_window = L.scheduled = L.skipped = L.behind_max_ns = 0;
    memset(L.win, 0, sizeof(L.win));
    L.nlat = 0;
    L.connect_fail = 0;
    L.connect_err[0] = '\0';
    switch (L.kind) {
    case PH_CLOSED:
        L.t_meas0 = now + WARM_NS;
        L.t_meas1 = L.t_meas0 + NWIN * WIN_NS;
        L.t_drain = L.t_meas1 + DRAIN_NS;
        L.ramped = 0;
        tick(); /* starts the first pairs and the timer */
        return;
    case PH_OPEN:
        L.t_meas0 = now;
        L.t_meas1 = now + HALF_NS;
        L.t_drain = L.t_meas1 + DRAIN_NS;
        break;
    case PH_IDLE:
        L.t_meas0 = now;
        L.t_meas1 = now + L.idle_ns;
        L.t_drain = UINT64_MAX;
        idle_more();
        break;
    case PH_IDLE_CLOSE:
        close_all();
        L.kind = PH_NONE;
        atomic_store_explicit(&L.done, 1, memory_order_release);
        return;
    }
    wb_timer_start(L.actor, TICK_MS, &L.tick_timer);
}

static void lg_handle(wb_actor_t *self, wb_event_t *ev)
{
    side_t *s;
    L.actor = self;
    L.self = wb_actor_id(self);
    switch (ev->type) {
    case WB_EV_USER:
        if (ev->cookie == CMD_GO)
            phase_start();
        break;
    case WB_EV_TIMER:
        if (ev->cookie == L.tick_timer)
            tick();
        break;
    case WB_EV_TCP_OPENED:
        if ((s = wb_idmap_get(&L.conns, ev->src)) != NULL)
            s->opened = 1;
        break;
    case WB_EV_TCP_BLOB:
        if ((s = wb_idmap_get(&L.conns, ev->src)) != NULL && !L.broken)
            on_blob(s, ev->data, ev->len);
        break;
    case WB_EV_TCP_CLOSED:
        if ((s = wb_idmap_get(&L.conns, ev->src)) != NULL && !L.broken) {
            wb_idmap_del(&L.conns, s->conn);
            s->conn = 0;
            side_closed(s, ev->status, ev->data ? (const char *)ev->data : "");
        }
        break;
    case WB_EV_RESUME:
        held_retry();
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t lg_def = {"mailbox-loadgen", lg_handle, NULL};

/* Run the phase set up in L on the actor; wait at most limit_ns. */
static void run_phase(uint64_t limit_ns)
{
    atomic_store(&L.done, 0);
    wb_event_t *go = wb_event_new(WB_EV_USER, 0);
    if (go == NULL)
        BENCH_FAIL("out of memory");
    go->cookie = CMD_GO;
    go->flags |= WB_EVF_CONTROL;
    wb_event_route(go, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, L.self);
    if (wb_rt_send(L.rt, go) != 0)
        BENCH_FAIL("cannot reach the load generator");
    uint64_t deadline = bench_now_ns() + limit_ns;
    while (!atomic_load_explicit(&L.done, memory_order_acquire)) {
        if (bench_now_ns() > deadline)
            BENCH_FAIL("the load generator did not finish a phase in %.0f s", limit_ns / 1e9);
        bench_sleep_us(2000);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* p-th percentile of the phase's durations, in ms (0 when none). */
static double lat_pct(int pct)
{
    if (L.nlat == 0)
        return 0;
    qsort(L.lat, L.nlat, sizeof(L.lat[0]), cmp_u32);
    size_t i = L.nlat * (size_t)pct / 100;
    if (i >= L.nlat)
        i = L.nlat - 1;
    return L.lat[i] / 1000.0;
}

/* ---- one server, all phases ------------------------------------------------ */

typedef struct {
    const char *name; /* "waybill", "python" */
    int available, broken;
    double best_rate;
    int best_p;
    double rss_idle;
    int idle_reached;
} srv_res_t;

static void fig_name(char *out, size_t cap, const srv_res_t *r, const char *fig)
{
    snprintf(out, cap, "mailbox_%s_%s", r->name, fig);
}

static void note_phase(const srv_res_t *r, const char *what)
{
    if (L.connect_fail > 0)
        printf("# %s %s: %llu connections failed to open (last: %s)\n", r->name, what,
               (unsigned long long)L.connect_fail, L.connect_err);
}

static int check_broken(srv_res_t *r, pid_t pid, const char *what)
{
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
        for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
            if (children[i] == pid)
                children[i] = 0;
        size_t n = L.broken ? strlen(L.err) : 0;
        snprintf(L.err + n, sizeof(L.err) - n, "%sthe server %s %d", L.broken ? "; " : "",
                 WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        L.broken = 1;
    }
    if (!L.broken)
        return 0;
    printf("# ERROR: %s %s: %s\n", r->name, what, L.err);
    fprintf(stderr, "bench_mailbox: ERROR: %s %s: %s\n", r->name, what, L.err);
    fflush(stdout);
    r->broken = 1;
    return 1;
}

/* Start the server; its pid, or -1 with why set. */
static pid_t server_start(const srv_res_t *r, uint16_t port, char *why, size_t cap)
{
    char dir[128], db[160], logpath[160], portarg[64], portnum[16];
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, r->name);
    snprintf(db, sizeof(db), "%s/relay.sqlite", dir);
    snprintf(logpath, sizeof(logpath), "%s/server.log", dir);
    snprintf(portnum, sizeof(portnum), "%u", port);
    snprintf(portarg, sizeof(portarg), "tcp:%u:interface=127.0.0.1", port);
    if (mkdir(dir, 0700) != 0)
        BENCH_FAIL("mkdir %s: %s", dir, strerror(errno));
    int lfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_t pid;
    if (strcmp(r->name, "python") == 0) {
        char *argv[] = {TWIST3, "wormhole-mailbox", "--port", portarg, "--channel-db", db, NULL};
        pid = spawn(argv, dir, lfd);
    } else {
        char *bin = getenv("WB_BENCH_WAYBILL") ? getenv("WB_BENCH_WAYBILL") : WAYBILL_BIN;
        char *argv[] = {bin,     "mailbox-server", "--listen", "127.0.0.1", "--port",
                        portnum, "--channel-db",   db,         NULL};
        pid = spawn(argv, dir, lfd);
    }
    if (lfd >= 0)
        close(lfd);
    uint64_t deadline = bench_now_ns() + START_WAIT_S * 1000000000ull;
    while (bench_now_ns() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
                if (children[i] == pid)
                    children[i] = 0;
            /* The first line of its log says why ("unknown command"). */
            char first[200] = "";
            FILE *f = fopen(logpath, "r");
            while (f != NULL && fgets(first, sizeof(first), f) != NULL && first[0] == '\n')
                ;
            if (f != NULL)
                fclose(f);
            first[strcspn(first, "\n")] = '\0';
            snprintf(why, cap, "exited with status %d at start: %s",
                     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), first);
            return -1;
        }
        int http = http_get_root(port);
        if (http == 200)
            return pid;
        if (http > 0) {
            printf("# %s: GET / answered %d, not 200\n", r->name, http);
            return pid;
        }
        bench_sleep_us(50000);
    }
    stop_child(pid);
    snprintf(why, cap, "GET / did not answer within %d s", START_WAIT_S);
    return -1;
}

/* Closed loop with npairs pairs; prints the rate, returns it. */
static double run_closed(srv_res_t *r, pid_t pid, int npairs, double *p50, double *p99)
{
    char name[96], what[32];
    struct rusage ru0, ru1;
    *p50 = *p99 = 0;
    L.kind = PH_CLOSED;
    L.npairs = npairs;
    snprintf(what, sizeof(what), "closed loop p%d", npairs);
    double idle0, total0, idle1, total1;
    machine_jiffies(&idle0, &total0);
    getrusage(RUSAGE_SELF, &ru0);
    double c0 = cpu_s(pid);
    uint64_t t0 = bench_now_ns();
    run_phase(WARM_NS + NWIN * WIN_NS + DRAIN_NS + 10000000000ull);
    double wall = (bench_now_ns() - t0) / 1e9;
    double c1 = cpu_s(pid);
    getrusage(RUSAGE_SELF, &ru1);
    machine_jiffies(&idle1, &total1);
    double idle = total1 > total0 ? (idle1 - idle0) / (total1 - total0) : 1;
    note_phase(r, what);
    if (check_broken(r, pid, what))
        return 0;
    bench_samples_t wins = {{0}, 0};
    for (int i = 0; i < NWIN; i++)
        bench_add(&wins, bench_rate(L.win[i], WIN_NS));
    double rate = bench_med(&wins);
    *p50 = lat_pct(50);
    *p99 = lat_pct(99);
    snprintf(name, sizeof(name), "mailbox_%s_exchanges_per_s_p%d", r->name, npairs);
    bench_print(name, rate, "ex/s");
    double self =
        (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
        (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
         ru0.ru_stime.tv_usec) /
            1e6;
    double srv_cpu = (c1 - c0) / wall, gen_cpu = self / wall;
    printf("# %s p%d: %llu exchanges in %d windows of %.1f s (%llu in all); p50 %.2f ms, p99 "
           "%.2f ms; cpu over %.1f s: server %.0f%%, load generator %.0f%%, machine idle %.0f%% "
           "(of %d cpus)\n",
           r->name, npairs, (unsigned long long)L.in_window, NWIN, WIN_NS / 1e9,
           (unsigned long long)L.completed, *p50, *p99, wall, srv_cpu * 100, gen_cpu * 100,
           idle * 100, bench_ncpus());
    if (idle < 0.1)
        printf("# %s p%d: the machine was saturated (the server shares its cpus with the load "
               "generator%s): the rate is what this machine allowed, a floor for the server\n",
               r->name, npairs, srv_cpu + gen_cpu < 0.8 * bench_ncpus() ? " and other work" : "");
    fflush(stdout);
    return rate;
}

static void run_server(srv_res_t *r, const int *pairs, int npairs_runs)
{
    char why[256], name[96];
    uint16_t port = free_port();
    pid_t pid = server_start(r, port, why, sizeof(why));
    if (pid < 0) {
        printf("mailbox_%s: not available (%s)\n", r->name, why);
        fflush(stdout);
        return;
    }
    r->available = 1;
    L.port = port;
    printf("# %s: pid %d on 127.0.0.1:%u, fresh database; RSS at start %.1f MB\n", r->name,
           (int)pid, port, rss_mb(pid));

    /* Peak: closed loops. */
    double best = 0, bp50 = 0, bp99 = 0;
    for (int i = 0; i < npairs_runs; i++) {
        double p50, p99;
        double rate = run_closed(r, pid, pairs[i], &p50, &p99);
        if (r->broken)
            goto out;
        if (rate > best) {
            best = rate;
            bp50 = p50;
            bp99 = p99;
            r->best_p = pairs[i];
        }
    }
    r->best_rate = best;
    fig_name(name, sizeof(name), r, "exchange_p50_at_peak");
    bench_print2(name, bp50, "ms");
    fig_name(name, sizeof(name), r, "exchange_p99_at_peak");
    bench_print2(name, bp99, "ms");

    /* Latency at half the peak rate: an open loop. */
    if (best >= 2) {
        L.kind = PH_OPEN;
        L.rate = best / 2;
        run_phase(HALF_NS + DRAIN_NS + 10000000000ull);
        note_phase(r, "open loop");
        if (check_broken(r, pid, "open loop at half peak"))
            goto out;
        printf("# %s open loop: %llu exchanges scheduled at %.0f/s for %.1f s, %llu completed "
               "(the last %.2f s after the first started), %llu skipped (%d in flight at most), "
               "starts at most %.1f ms behind schedule\n",
               r->name, (unsigned long long)L.scheduled, L.rate, HALF_NS / 1e9,
               (unsigned long long)L.completed, L.t_last > L.t0 ? (L.t_last - L.t0) / 1e9 : 0.0,
               (unsigned long long)L.skipped, MAX_PAIRS, L.behind_max_ns / 1e6);
        fig_name(name, sizeof(name), r, "exchange_p50_at_half_peak");
        bench_print2(name, lat_pct(50), "ms");
        fig_name(name, sizeof(name), r, "exchange_p99_at_half_peak");
        bench_print2(name, lat_pct(99), "ms");
    }

    /* RSS with IDLE_CONNS bound, idle connections. */
    int python = strcmp(r->name, "python") == 0;
    L.kind = PH_IDLE;
    L.idle_target = IDLE_CONNS;
    L.idle_ns = python ? IDLE_PY_NS : IDLE_NS;
    L.idle_max_flight = python ? 40 : 100; /* within each server's listen backlog */
    uint64_t t0 = bench_now_ns();
    run_phase(L.idle_ns + 20000000000ull);
    double took = (bench_now_ns() - t0) / 1e9;
    note_phase(r, "idle connections");
    if (!check_broken(r, pid, "idle connections")) {
        bench_sleep_us(IDLE_SETTLE);
        r->rss_idle = rss_mb(pid);
        r->idle_reached = L.idle_bound;
        printf("# %s: %d bound idle connections opened in %.1f s\n", r->name, L.idle_bound, took);
        if (L.idle_bound == IDLE_CONNS) {
            fig_name(name, sizeof(name), r, "rss_10k_idle");
            bench_print2(name, r->rss_idle, "MB");
        } else {
            printf("# %s: gave up at %d of %d idle connections after %.0f s\n", r->name,
                   L.idle_bound, IDLE_CONNS, L.idle_ns / 1e9);
            fig_name(name, sizeof(name), r, "idle_conns_reached");
            bench_print(name, L.idle_bound, "conns");
            fig_name(name, sizeof(name), r, "rss_idle_reached");
            bench_print2(name, r->rss_idle, "MB");
        }
    }
    L.kind = PH_IDLE_CLOSE;
    run_phase(10000000000ull);
out:
    L.broken = 0;
    stop_child(pid);
}

int main(void)
{
    char netns_note[160];
    raise_nofile();
    int in_netns = netns_setup(netns_note, sizeof(netns_note));
    if (getenv("WAYBILL_LOG") == NULL)
        setenv("WAYBILL_LOG", "warn", 1);
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(tmpdir) == NULL)
        BENCH_FAIL("mkdtemp: %s", strerror(errno));
    have_tmpdir = 1;
    atexit(cleanup);

    L.lat = malloc(LAT_CAP * sizeof(L.lat[0]));
    L.pairs = calloc(MAX_PAIRS, sizeof(pair_t));
    L.idle = calloc(IDLE_CONNS, sizeof(side_t));
    if (L.lat == NULL || L.pairs == NULL || L.idle == NULL)
        BENCH_FAIL("out of memory");
    for (int i = MAX_PAIRS - 1; i >= 0; i--) {
        L.pairs[i].next_free = L.free_pairs;
        L.free_pairs = &L.pairs[i];
    }
    uint64_t seed = bench_now_ns() ^ (uint64_t)getpid() << 32;
    L.side_base = splitmix(&seed);
    wb_idmap_init(&L.conns);
    wb_tcp_opts_init(&L.topts);
    L.topts.raw = 1;
    L.topts.max_message = 1u << 16;
    L.topts.linger_ms = 2000;
    L.topts.connect_timeout_ms = 5000;
    wb_ws_opts_init(&L.wopts);
    L.wopts.path = "/v1";
    L.wopts.host = "127.0.0.1";
    L.wopts.max_message = 1u << 16;

    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    wb_sockets_config_t scfg;
    wb_sockets_config_init(&scfg);
    scfg.max_connections = 2 * IDLE_CONNS + 4 * MAX_PAIRS;
    if (wb_rt_new(&L.rt, &cfg) != 0 || wb_sockets_attach(L.rt, &scfg) != 0 ||
        wb_rt_start(L.rt) != 0)
        BENCH_FAIL("cannot start the runtime");
    if (wb_actor_spawn(L.rt, NULL, &lg_def, NULL, &L.self) != 0)
        BENCH_FAIL("cannot spawn the load generator");

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (in_netns)
        printf("# private network namespace: loopback, ephemeral ports 1024-65000, "
               "tcp_tw_reuse=1%s%s\n",
               netns_note[0] ? "; " : "", netns_note);
    else
        printf("# host network namespace (%s): many short connections may run out of ports\n",
               netns_note);
    printf("# exchange: 2 fresh WebSocket connections; welcome, bind, claim, open, add, the "
           "peer's message, release, close; every reply checked; RLIMIT_NOFILE %llu\n",
           (unsigned long long)rl.rlim_cur);
    char load[64] = "?";
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf != NULL) {
        if (fgets(load, sizeof(load), lf) == NULL)
            snprintf(load, sizeof(load), "?");
        fclose(lf);
    }
    load[strcspn(load, "\n")] = '\0';
    printf("# /proc/loadavg at start (other work shares the cpus): %s\n", load);
    printf("# peak: closed loop, %.1f s warm-up, median of %d windows of %.1f s; half peak: open "
           "loop for %.1f s; idle: %d bound WebSocket connections\n",
           WARM_NS / 1e9, NWIN, WIN_NS / 1e9, HALF_NS / 1e9, IDLE_CONNS);
    fflush(stdout);

    srv_res_t ours = {.name = "waybill"}, py = {.name = "python"};
    static const int our_pairs[] = {50, 200}, py_pairs[] = {10};
    /* WB_BENCH_MAILBOX_ONLY=waybill (or python) runs one server alone. */
    const char *only = getenv("WB_BENCH_MAILBOX_ONLY");
    if (only == NULL || strcmp(only, "waybill") == 0)
        run_server(&ours, our_pairs, 2);
    if (only != NULL && strcmp(only, "python") != 0)
        ;
    else if (access(TWIST3, X_OK) == 0)
        run_server(&py, py_pairs, 1);
    else
        printf("mailbox_python: not available (%s not installed: package "
               "python3-magic-wormhole-mailbox-server)\n",
               TWIST3);

    if (ours.available && py.available && !ours.broken && !py.broken && py.best_rate > 0)
        bench_print2("mailbox_exchanges_ratio_waybill_over_python", ours.best_rate / py.best_rate,
                     "x");
    if (ours.idle_reached == IDLE_CONNS && py.idle_reached == IDLE_CONNS && py.rss_idle > 0)
        bench_print2("mailbox_rss_ratio_waybill_over_python", ours.rss_idle / py.rss_idle, "x");

    wb_rt_stop(L.rt);
    wb_rt_free(L.rt);
    wb_idmap_fini(&L.conns);
    return ours.broken || py.broken;
}
