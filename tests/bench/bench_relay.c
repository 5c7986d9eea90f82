/*
 * bench_relay.c - bytes through a transit relay: `waybill transit-relay`,
 * Debian's Python relay (`twist3 transitrelay`, magic-wormhole-transit-relay
 * 0.2.1) and a plain pump, in the same run, driven by the same clients.
 *
 * A pair is what two wormhole clients do through a relay (shared/notes/
 * wormhole.md section 5): two TCP connections A and B each send
 * `please relay TOKEN for side SIDE\n` (one token per pair, two sides) and
 * wait for `ok\n`; then A writes as fast as the relay takes and B reads,
 * one direction, as a file transfer does. Every byte B reads is checked
 * against what A wrote (a periodic pattern): a relay that loses, reorders
 * or invents a byte is broken, not slow (exit status 1).
 *
 *   relay_mb_s_pN_SERVER    N pairs at once (1 and 64): megabytes (10^6)
 *                           per second arriving at the B ends, summed, the
 *                           median of NWIN windows of WIN_NS after WARM_NS.
 *   relay_cpu_s_per_gb_pN_SERVER  the relay process's cpu time (user + sys)
 *                           per 10^9 bytes relayed in those windows.
 *   relay_client_cpu_s_per_gb_pN_SERVER  the same for the clients (this
 *                           process): with two cpus, what is left for the
 *                           relay is 2 minus this, per second.
 *   relay_ratio_pN_waybill_vs_python / _vs_pump  the ratios of the rates.
 *
 * waybill's relay hands each pair to the network lane's splice
 * (wb_tcp_splice: splice(2) socket -> pipe -> socket, the bytes never reach
 * user space), so relay_*_waybill measure that path. The plain pump is the
 * floor of what a relay in user space can do without splice(2): one thread,
 * epoll, read(2) into a buffer and write(2) it to the other end, pausing a
 * reader while its writer is blocked. It is this program, forked before
 * anything else, with the same handshake and pairing by token (no checks
 * beyond that).
 *
 * Clients and relay share the machine's cpus; on loopback the writer's
 * send also runs the receiver's TCP input, so the clients cost about as much
 * as the relay. The rates are therefore lower than a relay alone could do,
 * the same way for all three. relay_cpu_s_per_gb says what the relay
 * itself costs, whatever the clients leave it.
 *
 * The whole run happens in a private network namespace when the process may
 * make one (root); servers are children stopped by pid. A missing server
 * gives a `not available` line and no ratios. Environment:
 * WB_BENCH_WAYBILL=PATH measures another waybill binary;
 * WB_BENCH_RELAY_ONLY=waybill|python|pump runs one; WB_BENCH_RELAY_ARGS adds
 * arguments to `waybill transit-relay` (e.g. "--read-buffer 64");
 * WB_BENCH_NO_NETNS=1 stays in the host's namespace; WB_BENCH_LOG=FILE
 * appends the servers' output to FILE.
 */
#define _GNU_SOURCE

#ifndef WAYBILL_BIN
#define WAYBILL_BIN "waybill"
#endif
#define TWIST3 "/usr/bin/twist3"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/bench/bench_common.h"

#define WARM_NS      500000000ull
#define WIN_NS       1000000000ull
#define NWIN         3
#define CHUNK        (256u << 10) /* client write/read size */
#define PLEN         65521u       /* pattern period (prime: not a multiple of any read) */
#define MAX_PAIRS    64
#define START_WAIT_S 15
#define PUMP_BUF     (256u << 10)

static pid_t children[4];

/* ---- processes ----------------------------------------------------------- */

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
}

static void remember(pid_t pid)
{
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    BENCH_FAIL("too many children");
}

static pid_t spawn(char *const argv[])
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        BENCH_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        const char *logp = getenv("WB_BENCH_LOG");
        int log = logp != NULL ? open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
        dup2(null, 0);
        dup2(log >= 0 ? log : null, 1);
        dup2(log >= 0 ? log : null, 2);
        if (chdir("/tmp") != 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    remember(pid);
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

/* CPU time used by this process (the clients), in seconds. */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
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
    char *p = strrchr(buf, ')');
    unsigned long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

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
    return 1;
}

/* rcvbuf > 0: a fixed receive buffer. The readers need one: on loopback
 * (MSS 64 KiB) an autotuned buffer that is still small advertises less
 * than one MSS once the reader falls behind, the kernel then sends no
 * window update when it catches up, and the relay's socket waits for its
 * zero-window probes, backing off to seconds (seen here: every pair stuck
 * at the same offset, readers' queues empty, the relay's full). */
static int connect_to(uint16_t port, int rcvbuf)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Wait until something accepts on port (a relay is up), at most START_WAIT_S. */
static int wait_listening(uint16_t port, pid_t pid)
{
    for (int i = 0; i < START_WAIT_S * 50; i++) {
        int fd = connect_to(port, 0);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            for (size_t k = 0; k < sizeof(children) / sizeof(children[0]); k++)
                if (children[k] == pid)
                    children[k] = 0;
            return -1;
        }
        bench_sleep_us(20000);
    }
    return -1;
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ---- the plain pump (a child process) ------------------------------------- */

typedef struct pconn_s pconn_t;
struct pconn_s {
    int fd;
    pconn_t *buddy;
    char hs[128];
    size_t hslen;
    int paired, dead;
    uint8_t *buf; /* read from fd, not yet written to buddy */
    size_t off, len;
};

static void pump_interest(int ep, pconn_t *c)
{
    struct epoll_event e = {.data.ptr = c};
    if (!c->paired || c->len == 0)
        e.events |= EPOLLIN;
    if (c->paired && c->buddy->len > 0)
        e.events |= EPOLLOUT;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Both ends go; their memory stays (events of this batch may still name
 * them, and the pump lives only for one benchmark). */
static void pump_close(pconn_t *c)
{
    pconn_t *b = c->buddy;
    if (b != NULL && !b->dead) {
        b->dead = 1;
        close(b->fd);
    }
    c->dead = 1;
    close(c->fd);
}

/* Flush what c read to its buddy; -1 when the pair broke. */
static int pump_flush(pconn_t *c)
{
    while (c->len > 0) {
        ssize_t w = write(c->buddy->fd, c->buf + c->off, c->len);
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        c->off += (size_t)w;
        c->len -= (size_t)w;
    }
    c->off = 0;
    return 0;
}

static void pump_main(uint16_t port)
{
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 1024) != 0)
        _exit(1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
    pconn_t *waiting[256] = {0};
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            pconn_t *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c = calloc(1, sizeof(*c));
                c->fd = fd;
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                continue;
            }
            if (c->dead)
                continue;
            if (!c->paired) {
                ssize_t r = read(c->fd, c->hs + c->hslen, sizeof(c->hs) - 1 - c->hslen);
                if (r <= 0) {
                    for (size_t k = 0; k < 256; k++)
                        if (waiting[k] == c)
                            waiting[k] = NULL;
                    close(c->fd);
                    free(c);
                    continue;
                }
                c->hslen += (size_t)r;
                if (memchr(c->hs, '\n', c->hslen) == NULL || c->hslen < 77)
                    continue;
                size_t slot = 256, k;
                for (k = 0; k < 256; k++) {
                    if (waiting[k] != NULL && memcmp(waiting[k]->hs + 13, c->hs + 13, 64) == 0)
                        break;
                    if (waiting[k] == NULL && slot == 256)
                        slot = k;
                }
                if (k == 256) {
                    if (slot < 256)
                        waiting[slot] = c;
                    continue;
                }
                pconn_t *o = waiting[k];
                waiting[k] = NULL;
                o->buddy = c;
                c->buddy = o;
                o->paired = c->paired = 1;
                o->buf = malloc(PUMP_BUF);
                c->buf = malloc(PUMP_BUF);
                if (write(o->fd, "ok\n", 3) != 3 || write(c->fd, "ok\n", 3) != 3) {
                    pump_close(c);
                    continue;
                }
                continue;
            }
            pconn_t *b = c->buddy;
            int broke = 0;
            if (evs[i].events & EPOLLOUT)
                broke = pump_flush(b) < 0;
            if (!broke && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->len == 0) {
                ssize_t r = read(c->fd, c->buf, PUMP_BUF);
                if (r <= 0 && !(r < 0 && errno == EAGAIN))
                    broke = 1;
                else if (r > 0) {
                    c->len = (size_t)r;
                    broke = pump_flush(c) < 0;
                }
            }
            if (broke) {
                pump_close(c);
                continue;
            }
            pump_interest(ep, c);
            pump_interest(ep, b);
        }
    }
}

static pid_t start_pump(uint16_t port)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        BENCH_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        pump_main(port);
        _exit(0);
    }
    remember(pid);
    return pid;
}

/* ---- clients -------------------------------------------------------------- */

static uint8_t pattern[PLEN + CHUNK];

typedef struct {
    int a, b;           /* writer, reader */
    uint64_t sent, got; /* stream offsets */
} pair_t;

static pair_t pairs[MAX_PAIRS];
static uint8_t rbuf[CHUNK];

static int read_ok(int fd)
{
    char buf[4];
    size_t got = 0;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (got < 3) {
        ssize_t r = read(fd, buf + got, 3 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return memcmp(buf, "ok\n", 3) == 0 ? 0 : -1;
}

/* Open n pairs through the relay on port; 0, or -1 with a note. */
static int open_pairs(uint16_t port, int n, int run)
{
    for (int i = 0; i < n; i++) {
        char line[128];
        pairs[i].a = connect_to(port, 0);
        pairs[i].b = connect_to(port, 4 << 20);
        pairs[i].sent = pairs[i].got = 0;
        if (pairs[i].a < 0 || pairs[i].b < 0)
            return -1;
        for (int side = 0; side < 2; side++) {
            int len = snprintf(line, sizeof(line), "please relay %056x%08x for side %016x\n",
                               (unsigned)run, (unsigned)i, (unsigned)side + 1);
            int fd = side ? pairs[i].b : pairs[i].a;
            if (write(fd, line, (size_t)len) != len)
                return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        if (read_ok(pairs[i].a) != 0 || read_ok(pairs[i].b) != 0)
            return -1;
        set_nonblock(pairs[i].a);
        set_nonblock(pairs[i].b);
    }
    return 0;
}

static void close_pairs(int n)
{
    for (int i = 0; i < n; i++) {
        if (pairs[i].a >= 0)
            close(pairs[i].a);
        if (pairs[i].b >= 0)
            close(pairs[i].b);
        pairs[i].a = pairs[i].b = -1;
    }
}

/* Pump n pairs until deadline; adds the bytes received to *got. 0, or -1
 * when a byte was wrong or a connection ended. */
static int drive(int ep, int n, uint64_t deadline, uint64_t *got)
{
    while (bench_now_ns() < deadline) {
        struct epoll_event evs[2 * MAX_PAIRS];
        int k = epoll_wait(ep, evs, 2 * MAX_PAIRS, 100);
        for (int i = 0; i < k; i++) {
            uint64_t tag = evs[i].data.u64;
            pair_t *p = &pairs[tag >> 1];
            if (tag & 1) {
                for (int rounds = 0; rounds < 4; rounds++) {
                    ssize_t r = read(p->b, rbuf, CHUNK);
                    if (r == 0 || (r < 0 && errno != EAGAIN)) {
                        fprintf(stderr, "# ERROR: pair %d: reader ended (%s)\n", (int)(tag >> 1),
                                r == 0 ? "eof" : strerror(errno));
                        return -1;
                    }
                    if (r < 0)
                        break;
                    if (memcmp(rbuf, pattern + p->got % PLEN, (size_t)r) != 0) {
                        fprintf(stderr, "# ERROR: pair %d: wrong bytes at offset %llu\n",
                                (int)(tag >> 1), (unsigned long long)p->got);
                        return -1;
                    }
                    p->got += (size_t)r;
                    *got += (size_t)r;
                    if ((size_t)r < CHUNK)
                        break;
                }
            } else {
                ssize_t w = write(p->a, pattern + p->sent % PLEN, CHUNK);
                if (w < 0 && errno != EAGAIN) {
                    fprintf(stderr, "# ERROR: pair %d: writer ended (%s)\n", (int)(tag >> 1),
                            strerror(errno));
                    return -1;
                }
                if (w > 0)
                    p->sent += (size_t)w;
            }
        }
    }
    return 0;
}

typedef struct {
    double mb_s, cpu_per_gb, client_cpu_per_gb;
    int ok;
} result_t;

static result_t measure(uint16_t port, pid_t pid, int n, int run)
{
    result_t res = {0, 0, 0, 0};
    if (open_pairs(port, n, run) != 0) {
        fprintf(stderr, "# ERROR: %d pairs through port %u: could not pair\n", n, port);
        close_pairs(n);
        return res;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; i++) {
        struct epoll_event ea = {.events = EPOLLOUT, .data.u64 = (uint64_t)i << 1};
        struct epoll_event eb = {.events = EPOLLIN, .data.u64 = ((uint64_t)i << 1) | 1};
        epoll_ctl(ep, EPOLL_CTL_ADD, pairs[i].a, &ea);
        epoll_ctl(ep, EPOLL_CTL_ADD, pairs[i].b, &eb);
    }
    uint64_t got = 0;
    int bad = drive(ep, n, bench_now_ns() + WARM_NS, &got) != 0;
    bench_samples_t rate = {0}, cpu = {0}, ccpu = {0};
    for (int w = 0; w < NWIN && !bad; w++) {
        got = 0;
        double c0 = cpu_s(pid), s0 = self_cpu_s();
        uint64_t t0 = bench_now_ns();
        bad = drive(ep, n, t0 + WIN_NS, &got) != 0;
        uint64_t t1 = bench_now_ns();
        double c1 = cpu_s(pid), s1 = self_cpu_s();
        if (got == 0 && !bad)
            printf("# relay with %d pairs: nothing arrived in a %.1f s window (a stall; see "
                   "docs/transit-relay.md)\n",
                   n, (double)(t1 - t0) / 1e9);
        bench_add(&rate, (double)got / 1e6 / ((double)(t1 - t0) / 1e9));
        if (got > 0) {
            bench_add(&cpu, (c1 - c0) / ((double)got / 1e9));
            bench_add(&ccpu, (s1 - s0) / ((double)got / 1e9));
        }
    }
    close(ep);
    close_pairs(n);
    if (bad)
        return res;
    res.mb_s = bench_med(&rate);
    res.cpu_per_gb = cpu.n > 0 ? bench_med(&cpu) : 0;
    res.client_cpu_per_gb = ccpu.n > 0 ? bench_med(&ccpu) : 0;
    res.ok = 1;
    return res;
}

/* ---- main ----------------------------------------------------------------- */

enum { S_WAYBILL, S_PYTHON, S_PUMP, S_N };
static const char *const NAMES[S_N] = {"waybill", "python", "pump"};
static const int NPAIRS[] = {1, 64};

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)((i % PLEN) * 31u % 251u);
    char note[160];
    int in_ns = netns_setup(note, sizeof(note));
    if (!in_ns)
        printf("# relay bench in the host's network namespace: %s\n", note);
    atexit(cleanup);
    const char *only = getenv("WB_BENCH_RELAY_ONLY");
    const char *bin = getenv("WB_BENCH_WAYBILL") ? getenv("WB_BENCH_WAYBILL") : WAYBILL_BIN;
    const char *extra = getenv("WB_BENCH_RELAY_ARGS");
    result_t res[S_N][2];
    memset(res, 0, sizeof(res));
    int run = 0;
    for (int sv = 0; sv < S_N; sv++) {
        if (only != NULL && strcmp(only, NAMES[sv]) != 0)
            continue;
        uint16_t port = free_port();
        char portbuf[16], ep[64];
        snprintf(portbuf, sizeof(portbuf), "%u", port);
        snprintf(ep, sizeof(ep), "tcp:%u:interface=127.0.0.1", port);
        pid_t pid;
        if (sv == S_WAYBILL) {
            if (access(bin, X_OK) != 0) {
                printf("# relay_waybill: not available (%s)\n", bin);
                continue;
            }
            char *argv[32] = {(char *)bin, "transit-relay", "--listen",
                              "127.0.0.1", "--port",        portbuf};
            int k = 6;
            static char extra_copy[256];
            if (extra != NULL) {
                snprintf(extra_copy, sizeof(extra_copy), "%s", extra);
                for (char *t = strtok(extra_copy, " "); t != NULL && k < 30; t = strtok(NULL, " "))
                    argv[k++] = t;
            }
            argv[k] = NULL;
            pid = spawn(argv);
        } else if (sv == S_PYTHON) {
            if (access(TWIST3, X_OK) != 0) {
                printf("# relay_python: not available (%s)\n", TWIST3);
                continue;
            }
            char *argv[] = {TWIST3, "transitrelay", "--port", ep, NULL};
            pid = spawn(argv);
        } else {
            pid = start_pump(port);
        }
        if (wait_listening(port, pid) != 0) {
            printf("# relay_%s: not available (did not listen within %d s)\n", NAMES[sv],
                   START_WAIT_S);
            stop_child(pid);
            continue;
        }
        for (int k = 0; k < 2; k++) {
            char name[96];
            res[sv][k] = measure(port, pid, NPAIRS[k], ++run);
            if (!res[sv][k].ok) {
                printf("# ERROR: relay_%s with %d pairs broke\n", NAMES[sv], NPAIRS[k]);
                stop_child(pid);
                return 1;
            }
            snprintf(name, sizeof(name), "relay_mb_s_p%d_%s", NPAIRS[k], NAMES[sv]);
            bench_print(name, res[sv][k].mb_s, "MB/s");
            snprintf(name, sizeof(name), "relay_cpu_s_per_gb_p%d_%s", NPAIRS[k], NAMES[sv]);
            bench_print2(name, res[sv][k].cpu_per_gb, "s/GB");
            snprintf(name, sizeof(name), "relay_client_cpu_s_per_gb_p%d_%s", NPAIRS[k], NAMES[sv]);
            bench_print2(name, res[sv][k].client_cpu_per_gb, "s/GB");
        }
        stop_child(pid);
    }
    for (int k = 0; k < 2; k++) {
        char name[96];
        if (res[S_WAYBILL][k].ok && res[S_PYTHON][k].ok && res[S_PYTHON][k].mb_s > 0) {
            snprintf(name, sizeof(name), "relay_ratio_p%d_waybill_vs_python", NPAIRS[k]);
            bench_print2(name, res[S_WAYBILL][k].mb_s / res[S_PYTHON][k].mb_s, "x");
        }
        if (res[S_WAYBILL][k].ok && res[S_PUMP][k].ok && res[S_PUMP][k].mb_s > 0) {
            snprintf(name, sizeof(name), "relay_ratio_p%d_waybill_vs_pump", NPAIRS[k]);
            bench_print2(name, res[S_WAYBILL][k].mb_s / res[S_PUMP][k].mb_s, "x");
        }
    }
    return 0;
}
