/*
 * bench_kv.c - a real `waybill kv-server` driven over loopback by a C load
 * generator, against Debian's redis-server measured by redis-benchmark.
 *
 * The server is the waybill binary (WAYBILL_BIN, or $WB_BENCH_WAYBILL to
 * measure another build), started with --port 0 on a fresh database in a
 * temporary directory, and stopped (by pid) when done.
 * The load generator speaks the kv protocol itself: framed envelopes (4-byte
 * big-endian length, msgpack codec, odd ids as the dialer) with kv bodies,
 * 16-byte keys ("key:" and 12 digits, random over KEYSPACE, like
 * redis-benchmark -r) and 16-byte values (-d 16). One thread, epoll, no
 * pipelining: every connection has one request outstanding and sends the next
 * when the answer comes.
 *
 *   kv_set_c1, kv_get_c1      1 connection, sequential round trips
 *   kv_set_c50, kv_get_c50    50 connections, one request outstanding each;
 *                             p50 / p99 latency of every round trip timed
 *   kv_watch_w1, _w100        1 or 100 watchers (each a conversation on its
 *                             own connection, opened with KV_WATCH from now,
 *                             credit granted back by a real dispatcher in this
 *                             process) while 50 connections write; changes/s
 *                             reaching every watcher, from the first write to
 *                             the last event, and events/s delivered in all
 *   kv_watch_catchup          one watcher replaying every change so far
 *   *_durable                 the server with --durable (synchronous=FULL:
 *                             one fsync per group commit before answering)
 *
 * A rate is the median of NWIN windows after a warm-up; a redis figure the
 * median of REDIS_RUNS runs of redis-benchmark. Redis runs with
 * --save '' --appendonly no (memory only), then for writes with
 * --appendonly yes --appendfsync everysec; redis-benchmark -c 1 / -c 50,
 * -d 16 -r KEYSPACE, no pipelining. Without redis-server the anchor lines
 * are skipped with a comment. A watcher that misses events is broken, not
 * slow: every figure still prints, an `# ERROR` line says what was lost, and
 * the exit status is 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apps/kv/proto.h"
#include "dispatch/dispatch.h"
#include "dispatch/envelope.h"
#include "runtime/error.h"
#include "runtime/event.h"
#include "runtime/log.h"
#include "tests/bench/bench_common.h"

#ifndef WAYBILL_BIN
#define WAYBILL_BIN "waybill"
#endif

#define KEYSPACE      100000u
#define VALUE_LEN     16u
#define NCONN         50
#define NWATCH_MAX    100
#define WARM_NS       200000000ull
#define WIN_NS        800000000ull
#define NWIN          3
#define DRAIN_NS      5000000000ull
#define WATCH_WINDOWS 2
#define CATCHUP_NS    10000000000ull
#define MAX_FRAME     (4u << 20)
#define LAT_CAP       (1u << 22)
#define REDIS_N_C1    20000
#define REDIS_N_C50   50000
#define REDIS_RUNS    3
#define START_WAIT_S  10

/* ---- processes ----------------------------------------------------------- */

static pid_t children[8];
static int n_children;
static char tmpdir[] = "/tmp/wb_bench_kv_XXXXXX";
static int have_tmpdir;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int finished; /* main returned: a normal exit */

/* The servers' logs, to stderr, when the run failed. */
static void dump_logs(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tail -n 20 %s/*.log 1>&2", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "(no server logs)\n");
}

/* Stop what we started (by pid) and remove the temporary directory: also on
 * the way out of a failure, saying how the children ended. */
static void cleanup(void)
{
    for (int i = 0; i < n_children; i++) {
        int status;
        if (children[i] <= 0)
            continue;
        if (waitpid(children[i], &status, WNOHANG) == children[i]) {
            if (WIFSIGNALED(status))
                fprintf(stderr, "child %d was killed by signal %d\n", (int)children[i],
                        WTERMSIG(status));
            else
                fprintf(stderr, "child %d exited with status %d\n", (int)children[i],
                        WEXITSTATUS(status));
        } else {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
        children[i] = 0;
    }
    n_children = 0;
    if (have_tmpdir && !finished)
        dump_logs();
    if (have_tmpdir) {
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        have_tmpdir = 0;
    }
}

static pid_t spawn(char *const argv[], int out_fd, int err_fd)
{
    int slot = 0;
    while (slot < n_children && children[slot] != 0)
        slot++;
    if (slot == (int)(sizeof(children) / sizeof(children[0])))
        BENCH_FAIL("too many children");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        BENCH_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(out_fd >= 0 ? out_fd : null, 1);
        dup2(err_fd >= 0 ? err_fd : null, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    children[slot] = pid;
    if (slot == n_children)
        n_children++;
    return pid;
}

/* SIGTERM, then SIGKILL after 5 s. */
static void stop_child(pid_t pid)
{
    int status;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            goto reaped;
        bench_sleep_us(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
reaped:
    for (int i = 0; i < n_children; i++)
        if (children[i] == pid)
            children[i] = 0;
}

/* Is prog on PATH? */
static int have_program(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[512];
    if (path == NULL)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
        if (access(buf, X_OK) == 0)
            return 1;
        path += n;
        if (*path == ':')
            path++;
    }
    return 0;
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

/* A blocking connection to 127.0.0.1:port, or -1. */
static int dial(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {fd, POLLOUT, 0};
            poll(&pf, 1, 1000);
        } else if (w < 0 && errno != EINTR) {
            BENCH_FAIL("send: %s", strerror(errno));
        }
    }
}

/* ---- the kv-server ------------------------------------------------------- */

/* Start `waybill kv-server` on a new database; returns its port. */
static uint16_t kv_start(pid_t *pid, const char *name, int durable)
{
    char db[128], logpath[128], line[512];
    int pfd[2];
    size_t got = 0;
    snprintf(db, sizeof(db), "%s/%s.db", tmpdir, name);
    snprintf(logpath, sizeof(logpath), "%s/%s.log", tmpdir, name);
    if (pipe2(pfd, O_CLOEXEC) != 0)
        BENCH_FAIL("pipe: %s", strerror(errno));
    int lfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char *bin = getenv("WB_BENCH_WAYBILL") != NULL ? getenv("WB_BENCH_WAYBILL") : WAYBILL_BIN;
    char *argv[] = {bin, "kv-server", "--port", "0", "--db", db, durable ? "--durable" : NULL,
                    NULL};
    *pid = spawn(argv, pfd[1], lfd);
    close(pfd[1]);
    if (lfd >= 0)
        close(lfd);
    uint64_t deadline = bench_now_ns() + START_WAIT_S * 1000000000ull;
    unsigned port = 0;
    while (bench_now_ns() < deadline && got < sizeof(line) - 1) {
        struct pollfd pf = {pfd[0], POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t r = read(pfd[0], line + got, sizeof(line) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        line[got] = '\0';
        char *at = strstr(line, "listening on port ");
        if (at != NULL && strchr(at, '\n') != NULL) {
            port = (unsigned)strtoul(at + strlen("listening on port "), NULL, 10);
            break;
        }
    }
    close(pfd[0]);
    if (port == 0 || port > 65535)
        BENCH_FAIL("%s kv-server did not start (see its log, %s)", bin, logpath);
    return (uint16_t)port;
}

/* ---- connections and the loop -------------------------------------------- */

enum { K_RAW, K_WATCH };

typedef struct {
    int fd, kind;
    uint64_t peer; /* K_WATCH: the dispatcher's peer id */
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint64_t next_id, wait_id, t_sent;
    int busy;
} lconn_t;

typedef struct {
    uint64_t events, last_rev;
    int synced, ended;
} watcher_t;

static struct {
    int ep;
    uint16_t port;
    lconn_t raw[NCONN];
    lconn_t watch[NWATCH_MAX];
    watcher_t watchers[NWATCH_MAX];
    int nwatch;
    wb_dispatch_t *d;
    /* the phase running */
    int op, running, record;
    const char *prefix;
    uint64_t t_start, t_end;
    uint64_t done, win[NWIN], errors, misses, max_rev;
    uint64_t oks; /* OK answers, in the windows or not */
    int busy;
    uint32_t *lat;
    size_t nlat;
    /* keys written with the "key:" prefix, for GET */
    uint8_t *written;
    uint32_t *wlist, nw;
    uint64_t rng;
    kv_buf_t body;
    /* watch counters */
    uint64_t events, synced, last_event_ns;
} L;

static uint32_t rnd(void)
{
    L.rng ^= L.rng << 13;
    L.rng ^= L.rng >> 7;
    L.rng ^= L.rng << 17;
    return (uint32_t)(L.rng >> 16);
}

static void conn_init(lconn_t *c, int fd, int kind, uint64_t peer)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->kind = kind;
    c->peer = peer;
    c->next_id = 1;
    c->rcap = 64 * 1024;
    c->rbuf = malloc(c->rcap);
    if (c->rbuf == NULL)
        BENCH_FAIL("out of memory");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(L.ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        BENCH_FAIL("epoll_ctl: %s", strerror(errno));
}

static void conn_close(lconn_t *c)
{
    if (c->fd < 0)
        return;
    epoll_ctl(L.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->rbuf);
    c->fd = -1;
    c->rbuf = NULL;
}

static void send_frame(int fd, const wb_envelope_t *env)
{
    uint8_t frame[4 + 256];
    size_t len;
    if (wb_codec_msgpack.encode(env, frame + 4, sizeof(frame) - 4, &len) != 0)
        BENCH_FAIL("encode");
    frame[0] = (uint8_t)(len >> 24);
    frame[1] = (uint8_t)(len >> 16);
    frame[2] = (uint8_t)(len >> 8);
    frame[3] = (uint8_t)len;
    write_all(fd, frame, 4 + len);
}

/* The next request of the phase on c. */
static void send_request(lconn_t *c)
{
    static const uint8_t value[VALUE_LEN] = "vvvvvvvvvvvvvvvv";
    char key[32];
    uint32_t k;
    if (L.op == KV_GET) {
        k = L.wlist[rnd() % L.nw];
    } else {
        k = rnd() % KEYSPACE;
        if (strcmp(L.prefix, "key:") == 0 && !L.written[k]) {
            L.written[k] = 1;
            L.wlist[L.nw++] = k;
        }
    }
    int kn = snprintf(key, sizeof(key), "%s%012u", L.prefix, k);
    kv_bytes_t kb = {(const uint8_t *)key, (size_t)kn};
    kv_buf_reset(&L.body);
    if (L.op == KV_GET)
        kv_enc_key(&L.body, kb);
    else
        kv_enc_key_value(&L.body, kb, (kv_bytes_t){value, VALUE_LEN});
    if (L.body.oom)
        BENCH_FAIL("out of memory");
    wb_envelope_t env = {(uint32_t)L.op, c->next_id, 0, 0, L.body.p, L.body.len};
    c->wait_id = c->next_id;
    c->next_id += 2;
    c->busy = 1;
    L.busy++;
    c->t_sent = bench_now_ns();
    send_frame(c->fd, &env);
}

static void raw_answer(lconn_t *c, const uint8_t *p, size_t n)
{
    wb_envelope_t env;
    uint64_t now = bench_now_ns();
    if (wb_codec_msgpack.decode(p, n, &env) != 0 || !c->busy || env.reply_to != c->wait_id)
        BENCH_FAIL("unexpected answer from the server");
    c->busy = 0;
    L.busy--;
    if (env.type == KV_OK) {
        uint64_t rev;
        if (kv_dec_rev(env.body, env.body_len, &rev) != 0)
            BENCH_FAIL("malformed OK");
        if (rev > L.max_rev)
            L.max_rev = rev;
        L.oks++;
    } else if (env.type == KV_ERR) {
        int code;
        kv_bytes_t text;
        if (kv_dec_err(env.body, env.body_len, &code, &text) == 0 && code == WB_ENOENT &&
            L.op == KV_GET)
            L.misses++;
        else
            L.errors++;
    } else if (env.type != KV_VALUE) {
        BENCH_FAIL("answer of type %u", env.type);
    }
    if (now >= L.t_start && now < L.t_end) {
        L.done++;
        L.win[(now - L.t_start) / WIN_NS]++;
        if (L.record && L.nlat < LAT_CAP)
            L.lat[L.nlat++] = (uint32_t)((now - c->t_sent) / 100); /* 0.1 us */
    }
    if (L.running && now < L.t_end)
        send_request(c);
}

static void conn_read(lconn_t *c)
{
    for (;;) {
        if (c->rlen == c->rcap) {
            c->rcap *= 2;
            c->rbuf = realloc(c->rbuf, c->rcap);
            if (c->rbuf == NULL)
                BENCH_FAIL("out of memory");
        }
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            BENCH_FAIL("the server closed a connection (%s)", r < 0 ? strerror(errno) : "eof");
        c->rlen += (size_t)r;
        size_t off = 0;
        while (c->rlen - off >= 4) {
            const uint8_t *h = c->rbuf + off;
            uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
            if (n > MAX_FRAME)
                BENCH_FAIL("frame of %u bytes", n);
            if (c->rlen - off - 4 < n)
                break; /* the buffer grows at the top when it fills */
            if (c->kind == K_RAW) {
                raw_answer(c, h + 4, n);
            } else {
                wb_event_t *ev = wb_event_new_copy(WB_EV_DISPATCH_BLOB, h + 4, n);
                if (ev == NULL)
                    BENCH_FAIL("out of memory");
                wb_dispatch_input(L.d, c->peer, ev, 0);
            }
            off += 4 + n;
        }
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
}

/* Run the loop until done() says so or the deadline passes; 0 on time out. */
static int loop_until(int (*done)(void), uint64_t deadline)
{
    struct epoll_event evs[128];
    while (!done()) {
        if (bench_now_ns() >= deadline)
            return 0;
        int n = epoll_wait(L.ep, evs, 128, 10);
        if (n < 0 && errno != EINTR)
            BENCH_FAIL("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            conn_read(evs[i].data.ptr);
    }
    return 1;
}

static int phase_over(void)
{
    return bench_now_ns() >= L.t_end && L.busy == 0;
}

/* ---- request phases ------------------------------------------------------ */

typedef struct {
    double rate, p50_us, p99_us;
} phase_t;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* nconn connections, one `op` outstanding on each, for the warm-up and NWIN
 * windows; the rate is the median window's. */
static phase_t run_phase(int nconn, int op, const char *prefix, uint64_t warm, int windows)
{
    phase_t res = {0};
    bench_samples_t s = {0};
    L.op = op;
    L.prefix = prefix;
    L.done = L.errors = L.misses = L.oks = 0;
    memset(L.win, 0, sizeof(L.win));
    L.nlat = 0;
    L.t_start = bench_now_ns() + warm;
    L.t_end = L.t_start + (uint64_t)windows * WIN_NS;
    L.running = 1;
    for (int i = 0; i < nconn; i++)
        send_request(&L.raw[i]);
    if (!loop_until(phase_over, L.t_end + DRAIN_NS))
        BENCH_FAIL("requests unanswered %.1f s after the phase ended", DRAIN_NS / 1e9);
    L.running = 0;
    for (int i = 0; i < windows; i++)
        bench_add(&s, bench_rate(L.win[i], WIN_NS));
    res.rate = bench_med(&s);
    if (L.nlat > 0) {
        qsort(L.lat, L.nlat, sizeof(L.lat[0]), cmp_u32);
        res.p50_us = L.lat[L.nlat / 2] / 10.0;
        res.p99_us = L.lat[L.nlat * 99 / 100] / 10.0;
    }
    if (L.errors > 0)
        printf("# %s %s: %llu error answers\n", op == KV_PUT ? "put" : "get", prefix,
               (unsigned long long)L.errors);
    if (L.misses > 0)
        printf("# get: %llu misses\n", (unsigned long long)L.misses);
    return res;
}

/* ---- watches ------------------------------------------------------------- */

static int watch_send(void *ctx, uint64_t peer, wb_event_t *blob)
{
    (void)ctx;
    if (peer == 0 || peer > NWATCH_MAX || L.watch[peer - 1].fd < 0)
        return WB_ENOENT;
    uint8_t hdr[4] = {(uint8_t)(blob->len >> 24), (uint8_t)(blob->len >> 16),
                      (uint8_t)(blob->len >> 8), (uint8_t)blob->len};
    write_all(L.watch[peer - 1].fd, hdr, 4);
    write_all(L.watch[peer - 1].fd, blob->data, blob->len);
    wb_event_free(blob);
    return 0;
}

static void watch_msg(wb_conv_t *cv, const wb_msg_t *m)
{
    watcher_t *w = wb_conv_state(cv);
    if (m->env.type == KV_EVENT) {
        kv_entry_t e;
        if (kv_dec_event(m->env.body, m->env.body_len, &e) != 0 || e.rev <= w->last_rev)
            BENCH_FAIL("watch: malformed or out-of-order event");
        w->last_rev = e.rev;
        w->events++;
        L.events++;
        L.last_event_ns = bench_now_ns();
    } else if (m->env.type == KV_SYNCED) {
        uint64_t rev;
        if (kv_dec_rev(m->env.body, m->env.body_len, &rev) != 0)
            BENCH_FAIL("watch: malformed SYNCED");
        if (rev > w->last_rev)
            w->last_rev = rev;
        if (!w->synced) {
            w->synced = 1;
            L.synced++;
        }
    } else {
        BENCH_FAIL("watch: message of type %u", m->env.type);
    }
    wb_conv_consumed(cv, m->env.body_len);
}

static void watch_end(wb_conv_t *cv, int status)
{
    watcher_t *w = wb_conv_state(cv);
    w->ended = 1;
    (void)status;
}

static const wb_conv_def_t watch_def = {"bench-watch", watch_msg, NULL, watch_end};

static int all_synced(void)
{
    return L.synced == (uint64_t)L.nwatch;
}

static uint64_t watch_target;
static int broken; /* a watcher lost events: exit 1 after printing everything */

static int all_caught_up(void)
{
    for (int i = 0; i < L.nwatch; i++)
        if (L.watchers[i].last_rev < watch_target)
            return 0;
    return 1;
}

/* Open n watches of prefix from from_rev, each on its own connection. */
static void watches_open(int n, const char *prefix, uint64_t from_rev)
{
    wb_dispatch_config_t cfg = {.send = watch_send};
    if (wb_dispatch_new(&L.d, &cfg) != 0)
        BENCH_FAIL("wb_dispatch_new");
    L.nwatch = n;
    L.synced = L.events = 0;
    memset(L.watchers, 0, sizeof(L.watchers));
    for (int i = 0; i < n; i++) {
        int fd = dial(L.port);
        if (fd < 0)
            BENCH_FAIL("connect: %s", strerror(errno));
        conn_init(&L.watch[i], fd, K_WATCH, (uint64_t)i + 1);
        if (wb_dispatch_peer_add(L.d, (uint64_t)i + 1, &wb_codec_msgpack, 1) != 0)
            BENCH_FAIL("peer_add");
        kv_buf_reset(&L.body);
        kv_enc_watch(&L.body, (kv_bytes_t){(const uint8_t *)prefix, strlen(prefix)}, from_rev);
        if (wb_conv_open(L.d, (uint64_t)i + 1, KV_WATCH, L.body.p, L.body.len, &watch_def,
                         &L.watchers[i], NULL) != 0)
            BENCH_FAIL("conv_open");
    }
}

static void watches_close(void)
{
    for (int i = 0; i < L.nwatch; i++) {
        conn_close(&L.watch[i]);
        wb_dispatch_peer_remove(L.d, (uint64_t)i + 1, WB_ECLOSED);
    }
    wb_dispatch_free(L.d);
    L.d = NULL;
    L.nwatch = 0;
}

typedef struct {
    double changes, events, writes;
} watch_res_t;

/* n watchers of "w:" from now, while NCONN connections write "w:" keys for
 * WATCH_WINDOWS windows. */
static watch_res_t run_watch(int n)
{
    watch_res_t res = {0};
    watches_open(n, "w:", KV_FROM_NOW);
    if (!loop_until(all_synced, bench_now_ns() + DRAIN_NS))
        BENCH_FAIL("watches not synced after %.1f s", DRAIN_NS / 1e9);
    L.events = 0;
    L.max_rev = 0;
    uint64_t t0 = bench_now_ns();
    run_phase(NCONN, KV_PUT, "w:", 0, WATCH_WINDOWS);
    uint64_t t_writes = bench_now_ns();
    uint64_t writes = L.oks;
    watch_target = L.max_rev;
    int ok = loop_until(all_caught_up, bench_now_ns() + DRAIN_NS);
    uint64_t lost = 0, short_of = 0;
    for (int i = 0; i < n; i++) {
        if (L.watchers[i].events < writes)
            lost += writes - L.watchers[i].events;
        if (L.watchers[i].last_rev < watch_target)
            short_of++;
    }
    if (lost > 0) {
        /* Broken, not slow: the figures still print, the exit status says so. */
        printf("# ERROR: watch %d: %llu events missing of %llu writes x %d watchers; %llu "
               "watchers short of the last revision\n",
               n, (unsigned long long)lost, (unsigned long long)writes, n,
               (unsigned long long)short_of);
        broken = 1;
    }
    (void)ok;
    uint64_t span = L.last_event_ns > t0 ? L.last_event_ns - t0 : 0;
    res.events = bench_rate(L.events, span);
    res.changes = res.events / n;
    res.writes = bench_rate(writes, t_writes - t0);
    watches_close();
    return res;
}

/* One watcher replaying every "w:" change from rev 0. */
static double run_catchup(uint64_t expect)
{
    uint64_t t0 = bench_now_ns();
    watches_open(1, "w:", 0);
    int ok = loop_until(all_synced, t0 + CATCHUP_NS);
    uint64_t t1 = bench_now_ns();
    uint64_t got = L.watchers[0].events;
    watches_close();
    if (!ok) {
        printf("# catch-up: %llu of %llu changes in %.1f s\n", (unsigned long long)got,
               (unsigned long long)expect, CATCHUP_NS / 1e9);
    } else if (got != expect) {
        printf("# ERROR: catch-up replayed %llu of %llu changes\n", (unsigned long long)got,
               (unsigned long long)expect);
        broken = 1;
    }
    return bench_rate(got, t1 - t0);
}

/* ---- redis --------------------------------------------------------------- */

typedef struct {
    double rps, p50_us, p99_us;
    int ok;
} redis_res_t;

static pid_t redis_start(uint16_t *port, int aof)
{
    char portbuf[16];
    for (int attempt = 0; attempt < 3; attempt++) {
        *port = free_port();
        snprintf(portbuf, sizeof(portbuf), "%u", *port);
        char *argv[] = {"redis-server",
                        "--port",
                        portbuf,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--dir",
                        tmpdir,
                        "--daemonize",
                        "no",
                        "--logfile",
                        "",
                        "--appendonly",
                        aof ? "yes" : "no",
                        "--appendfsync",
                        "everysec",
                        NULL};
        pid_t pid = spawn(argv, -1, -1);
        uint64_t deadline = bench_now_ns() + 5000000000ull;
        while (bench_now_ns() < deadline) {
            int fd = dial(*port);
            if (fd >= 0) {
                char buf[16] = "";
                write_all(fd, "PING\r\n", 6);
                struct pollfd pf = {fd, POLLIN, 0};
                ssize_t r = poll(&pf, 1, 1000) > 0 ? recv(fd, buf, sizeof(buf) - 1, 0) : -1;
                close(fd);
                if (r >= 5 && memcmp(buf, "+PONG", 5) == 0)
                    return pid;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                stop_child(pid);
                break;
            }
            bench_sleep_us(20000);
        }
        stop_child(pid);
    }
    return -1;
}

/* Run redis-benchmark; out[0] SET, out[1] GET. */
static void redis_bench(uint16_t port, int clients, int n, const char *tests, redis_res_t out[2])
{
    char portbuf[16], cbuf[16], nbuf[16], rbuf[16], dbuf[16];
    char text[4096];
    size_t got = 0;
    int pfd[2];
    snprintf(portbuf, sizeof(portbuf), "%u", port);
    snprintf(cbuf, sizeof(cbuf), "%d", clients);
    snprintf(nbuf, sizeof(nbuf), "%d", n);
    snprintf(rbuf, sizeof(rbuf), "%u", KEYSPACE);
    snprintf(dbuf, sizeof(dbuf), "%u", VALUE_LEN);
    char *argv[] = {
        "redis-benchmark", "-h", "127.0.0.1", "-p", portbuf, "-c",    cbuf, "-n", nbuf, "-t",
        (char *)tests,     "-d", dbuf,        "-r", rbuf,    "--csv", NULL};
    memset(out, 0, 2 * sizeof(*out));
    if (pipe2(pfd, O_CLOEXEC) != 0)
        BENCH_FAIL("pipe: %s", strerror(errno));
    pid_t pid = spawn(argv, pfd[1], -1);
    close(pfd[1]);
    for (;;) {
        struct pollfd pf = {pfd[0], POLLIN, 0};
        if (poll(&pf, 1, 60000) <= 0)
            break;
        ssize_t r = read(pfd[0], text + got, sizeof(text) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == sizeof(text) - 1)
            break;
    }
    text[got] = '\0';
    close(pfd[0]);
    stop_child(pid); /* it has ended, or is stuck */
    /* "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
     * "p99_latency_ms","max_latency_ms" */
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char test[16];
        double rps, avg, mn, p50, p95, p99;
        if (sscanf(line, "\"%15[A-Z]\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\"", test, &rps,
                   &avg, &mn, &p50, &p95, &p99) != 7)
            continue;
        int i = strcmp(test, "SET") == 0 ? 0 : strcmp(test, "GET") == 0 ? 1 : -1;
        if (i >= 0)
            out[i] = (redis_res_t){rps, p50 * 1000.0, p99 * 1000.0, 1};
    }
}

/* Median of REDIS_RUNS runs of redis_bench, figure by figure. */
static void redis_median(uint16_t port, int clients, int n, const char *tests, redis_res_t out[2])
{
    bench_samples_t rps[2] = {{{0}, 0}}, p50[2] = {{{0}, 0}}, p99[2] = {{{0}, 0}};
    for (int r = 0; r < REDIS_RUNS; r++) {
        redis_res_t one[2];
        redis_bench(port, clients, n, tests, one);
        for (int i = 0; i < 2; i++) {
            if (!one[i].ok)
                continue;
            bench_add(&rps[i], one[i].rps);
            bench_add(&p50[i], one[i].p50_us);
            bench_add(&p99[i], one[i].p99_us);
        }
    }
    for (int i = 0; i < 2; i++)
        out[i] =
            (redis_res_t){bench_med(&rps[i]), bench_med(&p50[i]), bench_med(&p99[i]), rps[i].n > 0};
}

/* ---- main ---------------------------------------------------------------- */

static void print_ratio(const char *name, double ours, const redis_res_t *r)
{
    if (r->ok && r->rps > 0)
        bench_print2(name, ours / r->rps, "ratio");
}

static void open_raw(void)
{
    for (int i = 0; i < NCONN; i++) {
        int fd = dial(L.port);
        if (fd < 0)
            BENCH_FAIL("connect: %s", strerror(errno));
        conn_init(&L.raw[i], fd, K_RAW, 0);
    }
}

static void close_raw(void)
{
    for (int i = 0; i < NCONN; i++)
        conn_close(&L.raw[i]);
}

int main(void)
{
    pid_t srv;
    phase_t set1, get1, set50, get50, dset1, dset50;
    watch_res_t w1, w100;
    double catchup;

    if (getenv("WAYBILL_LOG") == NULL)
        setenv("WAYBILL_LOG", "warn", 1); /* ours and the server's */
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(tmpdir) == NULL)
        BENCH_FAIL("mkdtemp: %s", strerror(errno));
    have_tmpdir = 1;
    atexit(cleanup);
    L.ep = epoll_create1(EPOLL_CLOEXEC);
    L.lat = malloc(LAT_CAP * sizeof(L.lat[0]));
    L.written = calloc(KEYSPACE, 1);
    L.wlist = malloc(KEYSPACE * sizeof(L.wlist[0]));
    L.rng = 0x9E3779B97F4A7C15ull;
    kv_buf_init(&L.body);
    for (int i = 0; i < NWATCH_MAX; i++)
        L.watch[i].fd = -1;
    if (L.ep < 0 || L.lat == NULL || L.written == NULL || L.wlist == NULL)
        BENCH_FAIL("out of memory");

    printf("# kv-server: WAL synchronous=NORMAL, group commit (survives a crash of the process, "
           "not of the machine); _durable: --durable, synchronous=FULL per group commit\n");
    printf("# keys 16 B over %u, values %u B, no pipelining; rates: median of %d windows of "
           "%.1f s\n",
           KEYSPACE, VALUE_LEN, NWIN, WIN_NS / 1e9);
    fflush(stdout);

    L.port = kv_start(&srv, "kv", 0);
    open_raw();
    set1 = run_phase(1, KV_PUT, "key:", WARM_NS, NWIN);
    bench_print("kv_set_c1", set1.rate, "ops/s");
    get1 = run_phase(1, KV_GET, "key:", WARM_NS, NWIN);
    bench_print("kv_get_c1", get1.rate, "ops/s");
    L.record = 1;
    set50 = run_phase(NCONN, KV_PUT, "key:", WARM_NS, NWIN);
    bench_print("kv_set_c50", set50.rate, "ops/s");
    bench_print2("kv_set_c50_p50", set50.p50_us, "us");
    bench_print2("kv_set_c50_p99", set50.p99_us, "us");
    get50 = run_phase(NCONN, KV_GET, "key:", WARM_NS, NWIN);
    bench_print("kv_get_c50", get50.rate, "ops/s");
    bench_print2("kv_get_c50_p50", get50.p50_us, "us");
    bench_print2("kv_get_c50_p99", get50.p99_us, "us");
    L.record = 0;

    uint64_t w_writes = 0;
    w1 = run_watch(1);
    w_writes += L.oks;
    bench_print("kv_watch_w1_changes_per_s", w1.changes, "changes/s");
    bench_print("kv_watch_w1_writes_per_s", w1.writes, "ops/s");
    w100 = run_watch(100);
    w_writes += L.oks;
    bench_print("kv_watch_w100_changes_per_s", w100.changes, "changes/s");
    bench_print("kv_watch_w100_events_per_s", w100.events, "events/s");
    bench_print("kv_watch_w100_writes_per_s", w100.writes, "ops/s");
    catchup = run_catchup(w_writes);
    bench_print("kv_watch_catchup_w1", catchup, "changes/s");
    close_raw();
    stop_child(srv);

    L.port = kv_start(&srv, "kv_durable", 1);
    open_raw();
    dset1 = run_phase(1, KV_PUT, "key:", WARM_NS, NWIN);
    bench_print("kv_set_c1_durable", dset1.rate, "ops/s");
    dset50 = run_phase(NCONN, KV_PUT, "key:", WARM_NS, NWIN);
    bench_print("kv_set_c50_durable", dset50.rate, "ops/s");
    close_raw();
    stop_child(srv);

    if (!have_program("redis-server") || !have_program("redis-benchmark")) {
        printf("# redis-server not found: anchor skipped\n");
        finished = 1;
        return broken;
    }
    uint16_t rport;
    redis_res_t r1[2], r50[2], a1[2], a50[2];
    pid_t rpid = redis_start(&rport, 0);
    if (rpid < 0) {
        printf("# redis-server did not start: anchor skipped\n");
        finished = 1;
        return broken;
    }
    printf("# redis: --save '' --appendonly no (memory only); _aof_everysec: --appendonly yes "
           "--appendfsync everysec; redis-benchmark -d %u -r %u, no pipelining\n",
           VALUE_LEN, KEYSPACE);
    redis_median(rport, 1, REDIS_N_C1, "set,get", r1);
    redis_median(rport, NCONN, REDIS_N_C50, "set,get", r50);
    stop_child(rpid);
    rpid = redis_start(&rport, 1);
    if (rpid >= 0) {
        redis_median(rport, 1, REDIS_N_C1, "set", a1);
        redis_median(rport, NCONN, REDIS_N_C50, "set", a50);
        stop_child(rpid);
    } else {
        memset(a1, 0, sizeof(a1));
        memset(a50, 0, sizeof(a50));
    }
    if (r1[0].ok)
        bench_print("redis_set_c1", r1[0].rps, "ops/s");
    if (r1[1].ok)
        bench_print("redis_get_c1", r1[1].rps, "ops/s");
    if (r50[0].ok) {
        bench_print("redis_set_c50", r50[0].rps, "ops/s");
        bench_print2("redis_set_c50_p50", r50[0].p50_us, "us");
        bench_print2("redis_set_c50_p99", r50[0].p99_us, "us");
    }
    if (r50[1].ok) {
        bench_print("redis_get_c50", r50[1].rps, "ops/s");
        bench_print2("redis_get_c50_p50", r50[1].p50_us, "us");
        bench_print2("redis_get_c50_p99", r50[1].p99_us, "us");
    }
    if (a1[0].ok)
        bench_print("redis_set_c1_aof_everysec", a1[0].rps, "ops/s");
    if (a50[0].ok)
        bench_print("redis_set_c50_aof_everysec", a50[0].rps, "ops/s");
    print_ratio("kv_set_c1_vs_redis", set1.rate, &r1[0]);
    print_ratio("kv_get_c1_vs_redis", get1.rate, &r1[1]);
    print_ratio("kv_set_c50_vs_redis", set50.rate, &r50[0]);
    print_ratio("kv_get_c50_vs_redis", get50.rate, &r50[1]);
    print_ratio("kv_set_c1_vs_redis_aof", set1.rate, &a1[0]);
    print_ratio("kv_set_c50_vs_redis_aof", set50.rate, &a50[0]);
    finished = 1;
    return broken;
}
