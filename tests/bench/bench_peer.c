/*
 * bench_peer.c - the peer layer: secret connections (sockets/secret.h),
 * multiplexed channels (sockets/mconn.h), peer connections over loopback
 * TCP (sockets/peerconn.h), and a network of switches finding each other
 * through peer exchange (apps/peer/switch.h, apps/peer/pex.h).
 *
 * Anchor, in the same run, on one pinned core (ANCHOR_REPS short runs taken
 * in turn with the two below, medians):
 *   chacha20poly1305_seal      libsodium's crypto_aead_chacha20poly1305_ietf_
 *                              encrypt_detached on 16 KiB buffers (4 bytes of
 *                              additional data, as a frame has) MB/s
 * The sans-io paths, on that core:
 *   secret_seal / secret_open  wb_sc_seal of 64 KiB (what a peer connection
 *                              seals per write) as frames of 16384 bytes, and
 *                              wb_sc_open of those frames in place   MB/s
 *   secret_seal_vs_chacha      the ratio (1.0: no cost but the cipher)
 *   secret_handshake_cpu       complete handshakes of two wb_sc_t in memory
 *                              (both sides' hellos, DH, key schedule, auth
 *                              frames, signatures and their checks)   /s
 * Over loopback, in one threaded runtime (both peers' connections on the one
 * actor lane: every byte is sealed and opened by the same thread):
 *   peer_throughput_pktN[_winW]  one connection, one channel, 64 KiB
 *                              messages as fast as credit allows, mconn
 *                              max_packet N (1024 is the default), recv
 *                              window W (default 256 KiB)            MB/s
 *   peer_throughput            the best of those; _vs_chacha its ratio to
 *                              chacha20poly1305_seal (the goal is 0.5, which
 *                              is also the ceiling here: one core seals and
 *                              opens every byte)
 *   peer_throughput_2proc_*    the same with the receiving node in a child
 *                              process (forked before any thread exists), so
 *                              sealing and opening run on two actor lanes;
 *                              peer_throughput_2proc and _vs_chacha likewise
 *   peer_small_msgs            64-byte messages spread over 16 channels of
 *                              equal priority, one connection      msgs/s
 *   peer_handshakes            a dialer node dials a listener node N times,
 *                              HS_PAR at a time, each until WB_EV_PEER_READY
 *                              (TCP connect, secret handshake, hellos), then
 *                              closes it                                /s
 *   peer_handshakes_seq        the same one at a time; peer_handshake_
 *                              latency its median dial-to-READY      /s, ms
 *   peer_converge_20           20 switches in one runtime, each with a PEX
 *                              reactor (ensure_ms 200, max_outbound 4), one
 *                              of them a seed in seed mode that the other 19
 *                              know: ms from starting the 19 until each has
 *                              its 4 outbound peers
 *
 * MB = 10^6 bytes of message payload. Throughput and message rates are the
 * median of NWIN windows of WIN_NS after WARM_NS; the sender's messages carry
 * a sequence number per channel that the receiver checks: a lost, reordered
 * or mangled message, or a connection that drops, is broken (exit 1), not
 * slow. The 64 KiB payloads come from a pool of buffers filled once, so the
 * sender's cost is the peer layer's, not the making of the payload.
 *
 * `#` lines say where the cpu went: seconds of cpu per second of wall clock
 * for the process, its actor lane and its network lane, the machine's idle
 * cpus (0 means others took what we did not), and MB per cpu-second of the
 * actor lane, a cost that holds on a busy machine too (compare it with the
 * anchor's MB per cpu-second: the actor lane seals and opens, so half of it
 * is the in-process ceiling, all of it the two-process one). The load
 * average is printed at start and end.
 *
 * An argument runs one section alone (for a profiler): anchors, throughput,
 * 2proc, small, handshakes, converge; ratios need the anchors, so they come
 * only in a full run. WAYBILL_LOG sets the log level (warn).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apps/peer/pex.h"
#include "apps/peer/switch.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rt.h"
#include "sockets/mconn.h"
#include "sockets/peerconn.h"
#include "sockets/secret.h"
#include "sockets/tcp.h"
#include "tests/bench/bench_common.h"

#define ANCHOR_NS      100000000ull
#define ANCHOR_REPS    7 /* short runs, the three kinds in turn: a burst of load
                            elsewhere on the machine hits one run, not a kind */
#define ANCHOR_LEN     (16u << 10)
#define SEAL_CHUNK     (64u << 10) /* peerconn.c's WRITE_CHUNK */
#define FRAME_MAX      16384u
#define BIG_MSG        (64u << 10)
#define SMALL_MSG      64u
#define SMALL_CHANS    16
#define MAXCH          16
#define CH_BASE        0x10
#define WARM_NS        300000000ull
#define WIN_NS         500000000ull
#define NWIN           3
#define WAIT_NS        10000000000ull /* listening, READY, the first byte */
#define HS_N           400
#define HS_PAR         4
#define HS_SEQ_N       100
#define HS_CAP_NS      10000000000ull
#define HS_MAX_FAIL    10
#define CONV_N         20
#define CONV_OUT       4
#define CONV_ENSURE_MS 200
#define CONV_CAP_NS    20000000000ull
#define CONV_RUNS      5

/* ---- failures seen on a lane, reported by the main thread ---------------- */

static _Atomic int g_failed;
static char g_fail[256];

static void fail_async(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_async(const char *fmt, ...)
{
    int zero = 0;
    if (!atomic_compare_exchange_strong(&g_failed, &zero, 1))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_fail, sizeof(g_fail), fmt, ap);
    va_end(ap);
    atomic_store(&g_failed, 2);
}

static void check_failed(void)
{
    if (atomic_load(&g_failed) == 2)
        BENCH_FAIL("%s", g_fail);
}

/* Poll cond(arg) every 200 us for at most cap_ns; 1 when it held. */
static int wait_until(int (*cond)(void *), void *arg, uint64_t cap_ns)
{
    uint64_t t0 = bench_now_ns();
    while (!cond(arg)) {
        check_failed();
        if (bench_now_ns() - t0 > cap_ns)
            return 0;
        bench_sleep_us(200);
    }
    return 1;
}

/* ---- runtimes, calls, cpu ------------------------------------------------ */

static wb_rt_t *rt_up(void)
{
    wb_rt_t *rt;
    wb_rt_config_t c;
    wb_rt_config_init(&c);
    if (wb_rt_new(&rt, &c) != 0 || wb_sockets_attach(rt, NULL) != 0 || wb_rt_start(rt) != 0)
        BENCH_FAIL("cannot start a runtime");
    return rt;
}

static void call(wb_rt_t *rt, wb_call_cb fn, void *arg)
{
    int rc = wb_rt_call(rt, WB_LANE_ACTOR, fn, arg);
    if (rc != 0)
        BENCH_FAIL("wb_rt_call: %s", wb_strerror(rc));
}

typedef struct {
    wb_call_cb fn;
    void *arg;
    _Atomic int done;
} sync_call_t;

static void sync_tramp(wb_rt_t *rt, void *a)
{
    sync_call_t *s = a;
    s->fn(rt, s->arg);
    atomic_store(&s->done, 1);
}

static int sync_done(void *a)
{
    return atomic_load(&((sync_call_t *)a)->done);
}

/* fn(rt, arg) on lane's thread, waited for (1 s). 0 when it ran; the
 * record is leaked when it did not (the lane may still run it). */
static int call_sync(wb_rt_t *rt, wb_lane_t lane, wb_call_cb fn, void *arg)
{
    sync_call_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        BENCH_FAIL("out of memory");
    s->fn = fn;
    s->arg = arg;
    if (wb_rt_call(rt, lane, sync_tramp, s) != 0) {
        free(s);
        return -1;
    }
    if (!wait_until(sync_done, s, 1000000000ull))
        return -1;
    free(s);
    return 0;
}

static void tid_cb(wb_rt_t *rt, void *arg)
{
    (void)rt;
    *(pid_t *)arg = (pid_t)syscall(SYS_gettid);
}

/* Seconds of cpu: the process, and the two lanes' threads (0 unknown). */
typedef struct {
    pid_t actor_tid, net_tid;
} lanes_t;

typedef struct {
    double proc, actor, net;
    double idle; /* the machine's idle cpu time, all cpus */
    uint64_t ns;
} cpu_t;

static void lanes_init(wb_rt_t *rt, lanes_t *l)
{
    memset(l, 0, sizeof(*l));
    if (call_sync(rt, WB_LANE_ACTOR, tid_cb, &l->actor_tid) != 0)
        l->actor_tid = 0;
    if (call_sync(rt, WB_LANE_NET, tid_cb, &l->net_tid) != 0)
        l->net_tid = 0;
}

static double thread_cpu_s(pid_t tid)
{
    char path[64], buf[1024];
    if (tid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double machine_idle_s(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]);
    fclose(f);
    return n == 5 ? (double)(v[3] + v[4]) / (double)sysconf(_SC_CLK_TCK) : 0;
}

static cpu_t cpu_now(const lanes_t *l)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    cpu_t c = {
        .proc = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
        .actor = l ? thread_cpu_s(l->actor_tid) : 0,
        .net = l ? thread_cpu_s(l->net_tid) : 0,
        .idle = machine_idle_s(),
        .ns = bench_now_ns(),
    };
    return c;
}

/* cpu seconds per wall second between a and b. */
static cpu_t cpu_use(cpu_t a, cpu_t b)
{
    double s = (double)(b.ns - a.ns) / 1e9;
    cpu_t u = {0};
    if (s > 0) {
        u.proc = (b.proc - a.proc) / s;
        u.actor = (b.actor - a.actor) / s;
        u.net = (b.net - a.net) / s;
        u.idle = (b.idle - a.idle) / s;
    }
    return u;
}

/* mbs > 0: also MB per cpu-second of the actor lane, a cost that does not
 * depend on what else the machine runs. */
static void print_cpu(const char *name, const char *who, cpu_t u, double mbs)
{
    printf("# %s: cpu s/s %s: process %.2f, actor lane %.2f, network lane %.2f; machine idle "
           "%.2f",
           name, who, u.proc, u.actor, u.net, u.idle);
    if (mbs > 0 && u.actor > 0)
        printf("; %.0f MB per actor lane cpu-second", mbs / u.actor);
    printf("\n");
}

static double thread_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_load(const char *when)
{
    char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(buf, sizeof(buf), f) == NULL)
            snprintf(buf, sizeof(buf), "?");
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
    printf("# load average %s: %s\n", when, buf);
}

/* ---- anchors and the sans-io paths --------------------------------------- */

/* MB/s of wall clock; *cpu_mbs per second of this thread's cpu time. */
static double anchor_chacha(double *cpu_mbs)
{
    uint8_t key[32], nonce[12] = {0}, ad[4] = {0, 0, 0x40, 0}, mac[16];
    /* Source and destination half a page apart (mod 4096): two separate
     * mallocs can land 16 bytes apart mod 4096, where loads and stores
     * alias and the figure drops by up to a fifth. */
    uint8_t *buf = aligned_alloc(4096, 2 * ANCHOR_LEN + 4096);
    unsigned long long maclen;
    if (buf == NULL)
        BENCH_FAIL("out of memory");
    uint8_t *m = buf, *c = buf + ANCHOR_LEN + 2048;
    randombytes_buf(key, sizeof(key));
    randombytes_buf(m, ANCHOR_LEN);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(c, mac, &maclen, m, ANCHOR_LEN, ad, 4,
                                                       NULL, nonce, key);
    uint64_t n = 0, t0 = bench_now_ns(), t;
    double c0 = thread_cpu_now();
    do {
        for (int i = 0; i < 16; i++, n++) {
            sodium_increment(nonce, sizeof(nonce));
            crypto_aead_chacha20poly1305_ietf_encrypt_detached(c, mac, &maclen, m, ANCHOR_LEN, ad,
                                                               4, NULL, nonce, key);
        }
        t = bench_now_ns();
    } while (t - t0 < ANCHOR_NS);
    double cpu = thread_cpu_now() - c0;
    *cpu_mbs = cpu > 0 ? (double)(n * ANCHOR_LEN) / cpu / 1e6 : 0;
    free(buf);
    return bench_rate(n * ANCHOR_LEN, t - t0) / 1e6;
}

/* a dials b (expecting b's key): both established, in memory. */
static void sc_pair(wb_sc_t *a, wb_sc_t *b, const uint8_t *ska, const uint8_t *skb,
                    const uint8_t *pkb)
{
    uint8_t ha[WB_SC_HELLO_LEN], hb[WB_SC_HELLO_LEN];
    uint8_t auth_a[WB_SC_AUTH_WIRE_LEN], auth_b[WB_SC_AUTH_WIRE_LEN];
    size_t used, alen, blen, x;
    if (wb_sc_init(a, ska, pkb, NULL, ha) != 0 || wb_sc_init(b, skb, NULL, NULL, hb) != 0)
        BENCH_FAIL("wb_sc_init");
    if (wb_sc_handshake(a, hb, sizeof(hb), &used, auth_a, &alen) != 0 || alen == 0)
        BENCH_FAIL("handshake a: %s", wb_sc_error(a));
    if (wb_sc_handshake(b, ha, sizeof(ha), &used, auth_b, &blen) != 0 || blen == 0)
        BENCH_FAIL("handshake b: %s", wb_sc_error(b));
    if (wb_sc_handshake(a, auth_b, blen, &used, auth_a, &x) != 1 || used != blen)
        BENCH_FAIL("auth a: %s", wb_sc_error(a));
    if (wb_sc_handshake(b, auth_a, alen, &used, auth_b, &x) != 1 || used != alen)
        BENCH_FAIL("auth b: %s", wb_sc_error(b));
}

static double anchor_handshake(void)
{
    uint8_t pk[2][32], sk[2][64];
    wb_sc_keypair(pk[0], sk[0]);
    wb_sc_keypair(pk[1], sk[1]);
    wb_sc_t a, b;
    uint64_t n = 0, t0 = bench_now_ns(), t;
    do {
        for (int i = 0; i < 8; i++, n++) {
            sc_pair(&a, &b, sk[0], sk[1], pk[1]);
            if (memcmp(a.remote_id, pk[1], 32) != 0 || memcmp(b.remote_id, pk[0], 32) != 0)
                BENCH_FAIL("handshake: wrong remote identity");
            wb_sc_fini(&a);
            wb_sc_fini(&b);
        }
        t = bench_now_ns();
    } while (t - t0 < ANCHOR_NS);
    return bench_rate(n, t - t0);
}

/* wb_sc_seal of SEAL_CHUNK as FRAME_MAX frames, then wb_sc_open of them in
 * place on the other side; the two timed apart. */
static void anchor_secret(double *seal_mbs, double *open_mbs)
{
    uint8_t pk[2][32], sk[2][64];
    wb_sc_keypair(pk[0], sk[0]);
    wb_sc_keypair(pk[1], sk[1]);
    wb_sc_t a, b;
    sc_pair(&a, &b, sk[0], sk[1], pk[1]);
    size_t cap = wb_sc_sealed_size(SEAL_CHUNK, FRAME_MAX);
    uint8_t *plain = malloc(SEAL_CHUNK), *wire = malloc(cap);
    if (plain == NULL || wire == NULL)
        BENCH_FAIL("out of memory");
    randombytes_buf(plain, SEAL_CHUNK);
    uint64_t seal_ns = 0, open_ns = 0, bytes = 0, t0 = bench_now_ns();
    for (int pass = 0;; pass++) {
        uint64_t ta = bench_now_ns();
        long s = wb_sc_seal(&a, plain, SEAL_CHUNK, FRAME_MAX, wire);
        uint64_t tb = bench_now_ns();
        if (s != (long)cap)
            BENCH_FAIL("wb_sc_seal: %ld, expected %zu (%s)", s, cap, wb_sc_error(&a));
        size_t off = 0, got = 0;
        while (off < (size_t)s) {
            size_t used;
            const uint8_t *p;
            size_t plen;
            int rc = wb_sc_open(&b, wire + off, (size_t)s - off, &used, &p, &plen);
            if (rc < 0)
                BENCH_FAIL("wb_sc_open: %s", wb_sc_error(&b));
            if (rc == 1) {
                if (pass == 0 && memcmp(p, plain + got, plen) != 0)
                    BENCH_FAIL("wb_sc_open: the plaintext differs");
                got += plen;
            }
            off += used;
            if (rc == 0 && used == 0)
                break;
        }
        uint64_t tc = bench_now_ns();
        if (got != SEAL_CHUNK)
            BENCH_FAIL("wb_sc_open: %zu bytes of %u", got, SEAL_CHUNK);
        if (pass > 0) {
            seal_ns += tb - ta;
            open_ns += tc - tb;
            bytes += SEAL_CHUNK;
        }
        if (tc - t0 >= ANCHOR_NS)
            break;
    }
    *seal_mbs = bench_rate(bytes, seal_ns) / 1e6;
    *open_mbs = bench_rate(bytes, open_ns) / 1e6;
    wb_sc_fini(&a);
    wb_sc_fini(&b);
    free(plain);
    free(wire);
}

static double chacha_mbs; /* the anchor's median, for the ratios */

static void run_anchors(void)
{
    bench_samples_t ch = {0}, ch_cpu = {0}, seal = {0}, open = {0}, hs = {0};
    bench_pin(0);
    for (int r = 0; r < ANCHOR_REPS; r++) {
        double s, o, c;
        bench_add(&ch, anchor_chacha(&c));
        bench_add(&ch_cpu, c);
        anchor_secret(&s, &o);
        bench_add(&seal, s);
        bench_add(&open, o);
        bench_add(&hs, anchor_handshake());
    }
    bench_pin(-1);
    chacha_mbs = bench_med(&ch);
    printf("# chacha20poly1305_seal per cpu-second of its thread: %.0f MB (wall clock %.0f MB/s: "
           "the difference is time the machine gave to others)\n",
           bench_med(&ch_cpu), chacha_mbs);
    bench_print("chacha20poly1305_seal", chacha_mbs, "MB/s");
    bench_print("secret_seal", bench_med(&seal), "MB/s");
    bench_print("secret_open", bench_med(&open), "MB/s");
    bench_print2("secret_seal_vs_chacha", bench_med(&seal) / chacha_mbs, "x");
    bench_print("secret_handshake_cpu", bench_med(&hs), "/s");
}

/* ---- one peer connection: a sender node and a receiver node -------------- */

typedef struct {
    uint32_t max_packet;  /* mconn max_packet (0: its default, 1024) */
    uint32_t recv_window; /* per channel (0: its default, 256 KiB) */
    uint32_t msg_len;
    uint32_t nch;
} link_cfg_t;

typedef struct {
    wb_rt_t *rt;
    uint64_t actor, listener, pc;
    link_cfg_t cfg;
    const uint8_t *pk, *sk, *expect;
    wb_peerconn_opts_t opts;
    wb_mconn_chan_t chans[MAXCH];
    _Atomic uint32_t port;
    _Atomic int ready, closed;
    int close_status;
    char reason[160];
    /* sending (actor lane) */
    int sending, retry_live;
    uint64_t seq[MAXCH];
    wb_event_t *spare[MAXCH]; /* a message a full queue refused, sent next */
    /* receiving (actor lane; counters read by the main thread) */
    uint64_t want[MAXCH];
    _Atomic uint64_t bytes_in, msgs_in;
} node_t;

static uint8_t tmpl[BIG_MSG]; /* every message's bytes, but its sequence number */

static void node_init(node_t *n, wb_rt_t *rt, const link_cfg_t *cfg, const uint8_t *pk,
                      const uint8_t *sk)
{
    memset(n, 0, sizeof(*n));
    n->rt = rt;
    n->cfg = *cfg;
    n->pk = pk;
    n->sk = sk;
    for (uint32_t c = 0; c < cfg->nch; c++)
        n->chans[c] = (wb_mconn_chan_t){
            .id = (uint8_t)(CH_BASE + c), .priority = 1, .recv_window = cfg->recv_window};
    wb_peerconn_opts_init(&n->opts);
    n->opts.id_sk = sk;
    n->opts.chans = n->chans;
    n->opts.nchans = cfg->nch;
    n->opts.hello = "bench_peer";
    n->opts.hello_len = strlen("bench_peer");
    n->opts.handshake_timeout_ms = 10000;
    if (cfg->max_packet != 0)
        n->opts.mconn.max_packet = cfg->max_packet;
}

static void node_fini(node_t *n)
{
    for (int c = 0; c < MAXCH; c++) {
        wb_event_free(n->spare[c]);
        n->spare[c] = NULL;
    }
}

/* Big payloads come from a pool of buffers that already hold tmpl (their
 * first 8 bytes are the free list's link while pooled, the sequence number
 * once sent): the figures charge the peer layer with its own copies, not
 * with the making of 64 KiB of payload per message. Freed by whichever
 * thread frees the event, hence the lock. */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static void *pool_head;

static void pool_put(void *data, size_t len)
{
    (void)len;
    pthread_mutex_lock(&pool_mu);
    memcpy(data, &pool_head, sizeof(void *));
    pool_head = data;
    pthread_mutex_unlock(&pool_mu);
}

static void *pool_get(void)
{
    pthread_mutex_lock(&pool_mu);
    void *p = pool_head;
    if (p != NULL)
        memcpy(&pool_head, p, sizeof(void *));
    pthread_mutex_unlock(&pool_mu);
    if (p == NULL && (p = malloc(BIG_MSG)) != NULL)
        memcpy(p, tmpl, BIG_MSG);
    return p;
}

/* After a runtime is freed (no event holds a buffer). */
static void pool_drain(void)
{
    while (pool_head != NULL) {
        void *p = pool_head;
        memcpy(&pool_head, p, sizeof(void *));
        free(p);
    }
}

static wb_event_t *make_msg(node_t *n, uint32_t c)
{
    wb_event_t *ev = n->spare[c];
    if (ev != NULL) {
        n->spare[c] = NULL;
        return ev;
    }
    if (n->cfg.msg_len == BIG_MSG) {
        void *p = pool_get();
        ev = p != NULL ? wb_event_new_ext(WB_EV_USER, p, BIG_MSG, pool_put) : NULL;
        if (ev == NULL)
            free(p);
    } else {
        ev = wb_event_new(WB_EV_USER, n->cfg.msg_len);
        if (ev != NULL)
            memcpy(ev->data, tmpl, n->cfg.msg_len);
    }
    if (ev == NULL) {
        fail_async("out of memory making a message");
        return NULL;
    }
    memcpy(ev->data, &n->seq[c], sizeof(n->seq[c]));
    return ev;
}

/* Queue messages on every channel until each queue is full; a full one
 * sends us WB_EV_PEER_SENDABLE when it has room. */
static void pump(node_t *n, wb_actor_t *self)
{
    uint32_t open = n->sending ? (uint32_t)((1ull << n->cfg.nch) - 1) : 0;
    while (open != 0) {
        for (uint32_t c = 0; c < n->cfg.nch; c++) {
            if (!(open & (1u << c)))
                continue;
            wb_event_t *ev = make_msg(n, c);
            if (ev == NULL)
                return;
            int rc = wb_peer_send(n->rt, self, n->pc, (uint8_t)(CH_BASE + c), ev);
            if (rc == 0) {
                n->seq[c]++;
                continue;
            }
            n->spare[c] = ev;
            open &= ~(1u << c);
            if (rc == WB_EAGAIN)
                continue;
            if (rc == WB_ESTATE) { /* our start has not reached the connection yet */
                uint64_t t;
                if (!n->retry_live && wb_timer_start(self, 1, &t) == 0)
                    n->retry_live = 1;
                return;
            }
            if (rc == WB_ECLOSED || rc == WB_ENOENT) {
                n->sending = 0; /* its WB_EV_PEER_CLOSED says why */
                return;
            }
            fail_async("wb_peer_send: %s", wb_strerror(rc));
            return;
        }
    }
}

static void receive(node_t *n, wb_event_t *ev)
{
    uint32_t c = (uint32_t)ev->cookie - CH_BASE;
    uint64_t s;
    if (c >= n->cfg.nch || ev->len != n->cfg.msg_len) {
        fail_async("message of %u bytes on channel %" PRIu64 ": expected %u on 0x%x..0x%x",
                   ev->len, ev->cookie, n->cfg.msg_len, CH_BASE, CH_BASE + n->cfg.nch - 1);
        return;
    }
    memcpy(&s, ev->data, sizeof(s));
    if (s != n->want[c] || ((uint8_t *)ev->data)[ev->len - 1] != tmpl[ev->len - 1]) {
        fail_async("channel 0x%x: message %" PRIu64 " where %" PRIu64 " was due, or mangled",
                   CH_BASE + c, s, n->want[c]);
        return;
    }
    n->want[c] = s + 1;
    atomic_fetch_add_explicit(&n->bytes_in, ev->len, memory_order_relaxed);
    atomic_fetch_add_explicit(&n->msgs_in, 1, memory_order_relaxed);
}

static void node_handle(wb_actor_t *self, wb_event_t *ev)
{
    node_t *n = wb_actor_state(self);
    switch (ev->type) {
    case WB_EV_TCP_LISTENING:
        if (ev->status < 0)
            fail_async("listen: %.*s", (int)ev->len, (const char *)ev->data);
        else
            atomic_store(&n->port, (uint32_t)ev->cookie);
        break;
    case WB_EV_TCP_OPENED: {
        uint64_t pc;
        int rc = wb_peerconn_accept(n->rt, self, ev->src, ev->data, &n->opts, &pc);
        if (rc != 0)
            fail_async("wb_peerconn_accept: %s", wb_strerror(rc));
        break;
    }
    case WB_EV_PEER_READY: {
        wb_peer_route_t routes[MAXCH];
        for (uint32_t c = 0; c < n->cfg.nch; c++)
            routes[c] = (wb_peer_route_t){(uint8_t)(CH_BASE + c), n->actor};
        /* A connection the dialer already closed (the handshake runs) is
         * gone by now: nothing to start. */
        if (wb_peerconn_start(n->rt, self, ev->src, routes, n->cfg.nch) == 0) {
            n->pc = ev->src;
            atomic_store(&n->ready, 1);
        }
        break;
    }
    case WB_EV_PEER_MSG:
        receive(n, ev);
        break;
    case WB_EV_TIMER:
        n->retry_live = 0;
        pump(n, self);
        break;
    case WB_EV_PEER_SENDABLE:
        pump(n, self);
        break;
    case WB_EV_PEER_CLOSED:
        n->close_status = ev->status;
        snprintf(n->reason, sizeof(n->reason), "%.*s", (int)ev->len, (const char *)ev->data);
        atomic_store(&n->closed, 1);
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t node_def = {.name = "bench-node", .handle = node_handle};

static void spawn_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    if (wb_actor_spawn(rt, NULL, &node_def, n, &n->actor) != 0)
        fail_async("wb_actor_spawn");
}

static void listen_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    wb_tcp_opts_t t;
    wb_tcp_opts_init(&t);
    t.raw = 1;
    t.start_paused = 1;
    int rc = wb_tcp_listen(rt, WB_LANE_ACTOR, n->actor, "127.0.0.1", 0, &t, &n->listener);
    if (rc != 0)
        fail_async("wb_tcp_listen: %s", wb_strerror(rc));
}

static uint16_t dial_port;

static void dial_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    wb_peerconn_opts_t o = n->opts;
    o.expect_pk = n->expect;
    uint64_t pc;
    int rc = wb_peerconn_dial(rt, wb_actor_lookup(rt, n->actor), "127.0.0.1", dial_port, &o, &pc);
    if (rc != 0)
        fail_async("wb_peerconn_dial: %s", wb_strerror(rc));
}

static void go_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    n->sending = 1;
    pump(n, wb_actor_lookup(rt, n->actor));
}

static void stop_cb(wb_rt_t *rt, void *arg)
{
    (void)rt;
    ((node_t *)arg)->sending = 0;
}

static int has_port(void *a)
{
    return atomic_load(&((node_t *)a)->port) != 0;
}

static int is_ready(void *a)
{
    return atomic_load(&((node_t *)a)->ready) != 0;
}

static int has_bytes(void *a)
{
    return atomic_load(&((node_t *)a)->msgs_in) != 0;
}

static uint16_t node_listen(node_t *n)
{
    call(n->rt, spawn_cb, n);
    call(n->rt, listen_cb, n);
    if (!wait_until(has_port, n, WAIT_NS))
        BENCH_FAIL("no listening port within %llu s", WAIT_NS / 1000000000ull);
    return (uint16_t)atomic_load(&n->port);
}

static void node_dial(node_t *n, uint16_t port, const uint8_t *expect)
{
    n->expect = expect;
    dial_port = port;
    call(n->rt, spawn_cb, n);
    call(n->rt, dial_cb, n);
}

static void check_open(const node_t *n, const char *who)
{
    if (atomic_load(&n->closed))
        BENCH_FAIL("%s: the connection closed: %s (%s)", who, n->reason,
                   wb_err_name(n->close_status));
}

/* The receiver's rate: median of NWIN windows after WARM_NS (units of
 * *counter per second, divided by div). *use: cpu over the windows. */
static double measure(node_t *r, _Atomic uint64_t *counter, double div, const lanes_t *l,
                      cpu_t *use)
{
    bench_samples_t s = {0};
    if (!wait_until(has_bytes, r, WAIT_NS))
        BENCH_FAIL("nothing arrived within %llu s", WAIT_NS / 1000000000ull);
    bench_sleep_us((unsigned)(WARM_NS / 1000));
    cpu_t c0 = cpu_now(l);
    for (int w = 0; w < NWIN; w++) {
        uint64_t b0 = atomic_load(counter), t0 = bench_now_ns();
        while (bench_now_ns() - t0 < WIN_NS) {
            check_failed();
            check_open(r, "receiver");
            bench_sleep_us(2000);
        }
        uint64_t b1 = atomic_load(counter), t1 = bench_now_ns();
        bench_add(&s, bench_rate(b1 - b0, t1 - t0) / div);
    }
    *use = cpu_use(c0, cpu_now(l));
    return bench_med(&s);
}

/* A settings' name suffix: pkt16384, pkt1024_win1m. */
static void cfg_name(char *out, size_t cap, const link_cfg_t *c)
{
    int n = snprintf(out, cap, "pkt%u", c->max_packet ? c->max_packet : 1024u);
    if (c->recv_window != 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n, "_win%uk", c->recv_window >> 10);
}

static uint8_t key_pk[2][32], key_sk[2][64]; /* [0] sender, [1] receiver */

static const link_cfg_t TP_CFGS[] = {
    {.max_packet = 0, .msg_len = BIG_MSG, .nch = 1},
    {.max_packet = 16384, .msg_len = BIG_MSG, .nch = 1},
    {.max_packet = 65535, .msg_len = BIG_MSG, .nch = 1},
    {.max_packet = 65535, .recv_window = 4u << 20, .msg_len = BIG_MSG, .nch = 1},
};
#define N_TP_CFGS (sizeof(TP_CFGS) / sizeof(TP_CFGS[0]))

/* One connection in one runtime; the receiver's rate. */
static double run_link(const link_cfg_t *cfg, int msgs, const char *name)
{
    wb_rt_t *rt = rt_up();
    lanes_t l;
    lanes_init(rt, &l);
    node_t *r = malloc(sizeof(*r)), *s = malloc(sizeof(*s));
    if (r == NULL || s == NULL)
        BENCH_FAIL("out of memory");
    node_init(r, rt, cfg, key_pk[1], key_sk[1]);
    node_init(s, rt, cfg, key_pk[0], key_sk[0]);
    node_dial(s, node_listen(r), key_pk[1]);
    if (!wait_until(is_ready, r, WAIT_NS) || !wait_until(is_ready, s, WAIT_NS)) {
        check_open(s, "sender");
        BENCH_FAIL("%s: no WB_EV_PEER_READY within %llu s", name, WAIT_NS / 1000000000ull);
    }
    call(rt, go_cb, s);
    cpu_t use;
    double rate = msgs ? measure(r, &r->msgs_in, 1, &l, &use)
                       : measure(r, &r->bytes_in, 1e6, &l, &use);
    check_open(s, "sender");
    call_sync(rt, WB_LANE_ACTOR, stop_cb, s);
    print_cpu(name, "both nodes", use, msgs ? 0 : rate);
    wb_rt_free(rt);
    node_fini(r);
    node_fini(s);
    pool_drain();
    free(r);
    free(s);
    return rate;
}

static void run_throughput(void)
{
    double best = 0;
    char name[96], sfx[32];
    for (size_t i = 0; i < N_TP_CFGS; i++) {
        cfg_name(sfx, sizeof(sfx), &TP_CFGS[i]);
        snprintf(name, sizeof(name), "peer_throughput_%s", sfx);
        double mbs = run_link(&TP_CFGS[i], 0, name);
        bench_print(name, mbs, "MB/s");
        if (mbs > best)
            best = mbs;
    }
    bench_print("peer_throughput", best, "MB/s");
    if (chacha_mbs > 0)
        bench_print2("peer_throughput_vs_chacha", best / chacha_mbs, "x");
}

static void run_small(void)
{
    link_cfg_t cfg = {.msg_len = SMALL_MSG, .nch = SMALL_CHANS};
    bench_print("peer_small_msgs", run_link(&cfg, 1, "peer_small_msgs"), "msgs/s");
}

/* ---- the receiver in another process ------------------------------------- */

typedef struct {
    int quit;
    link_cfg_t cfg;
} child_cmd_t;

typedef struct {
    int ok;
    uint16_t port;
    double mbs;
    cpu_t use;
    char why[200];
} child_msg_t;

static pid_t child_pid;
static int child_cmd = -1, child_res = -1;

static int read_full(int fd, void *p, size_t n, int timeout_ms)
{
    uint8_t *d = p;
    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return -1;
        ssize_t r = read(fd, d, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        d += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *p, size_t n)
{
    const uint8_t *d = p;
    while (n > 0) {
        ssize_t w = write(fd, d, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        d += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The child: one receiving node per command, its port and then its figure
 * written back. Failures end it (exit 1): the parent sees the pipe close. */
static void child_main(int cmd_fd, int res_fd)
{
    child_cmd_t cmd;
    if (read_full(cmd_fd, &cmd, sizeof(cmd), -1) != 0)
        _exit(0);
    while (!cmd.quit) {
        wb_rt_t *rt = rt_up();
        lanes_t l;
        lanes_init(rt, &l);
        node_t *r = malloc(sizeof(*r));
        if (r == NULL)
            BENCH_FAIL("out of memory");
        node_init(r, rt, &cmd.cfg, key_pk[1], key_sk[1]);
        child_msg_t m = {.ok = 1, .port = node_listen(r)};
        if (write_full(res_fd, &m, sizeof(m)) != 0)
            _exit(1);
        if (!wait_until(is_ready, r, WAIT_NS))
            BENCH_FAIL("child: no WB_EV_PEER_READY within %llu s", WAIT_NS / 1000000000ull);
        m.mbs = measure(r, &r->bytes_in, 1e6, &l, &m.use);
        if (write_full(res_fd, &m, sizeof(m)) != 0)
            _exit(1);
        /* The connection stays up until the parent has checked its end and
         * sends the next command. */
        int rc = read_full(cmd_fd, &cmd, sizeof(cmd), -1);
        wb_rt_free(rt);
        node_fini(r);
        free(r);
        if (rc != 0)
            _exit(0);
    }
    _exit(0);
}

/* Before any thread exists: fork the child that will receive. */
static void child_start(void)
{
    int cmd[2], res[2];
    if (pipe2(cmd, O_CLOEXEC) != 0 || pipe2(res, O_CLOEXEC) != 0)
        BENCH_FAIL("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        BENCH_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        close(cmd[1]);
        close(res[0]);
        child_main(cmd[0], res[1]);
        _exit(0);
    }
    close(cmd[0]);
    close(res[1]);
    child_pid = pid;
    child_cmd = cmd[1];
    child_res = res[0];
}

static void child_stop(void)
{
    if (child_pid <= 0)
        return;
    child_cmd_t q = {.quit = 1};
    write_full(child_cmd, &q, sizeof(q));
    close(child_cmd);
    close(child_res);
    for (int i = 0; i < 300; i++) {
        if (waitpid(child_pid, NULL, WNOHANG) == child_pid) {
            child_pid = 0;
            return;
        }
        bench_sleep_us(10000);
    }
    kill(child_pid, SIGKILL);
    waitpid(child_pid, NULL, 0);
    child_pid = 0;
}

static void child_kill(void)
{
    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        waitpid(child_pid, NULL, 0);
        child_pid = 0;
    }
}

static double run_link_2proc(const link_cfg_t *cfg, const char *name)
{
    child_cmd_t cmd = {.cfg = *cfg};
    child_msg_t m;
    if (write_full(child_cmd, &cmd, sizeof(cmd)) != 0 ||
        read_full(child_res, &m, sizeof(m), (int)(WAIT_NS / 1000000)) != 0)
        BENCH_FAIL("%s: the receiving child did not answer", name);
    wb_rt_t *rt = rt_up();
    lanes_t l;
    lanes_init(rt, &l);
    node_t *s = malloc(sizeof(*s));
    if (s == NULL)
        BENCH_FAIL("out of memory");
    node_init(s, rt, cfg, key_pk[0], key_sk[0]);
    node_dial(s, m.port, key_pk[1]);
    if (!wait_until(is_ready, s, WAIT_NS)) {
        check_open(s, "sender");
        BENCH_FAIL("%s: no WB_EV_PEER_READY within %llu s", name, WAIT_NS / 1000000000ull);
    }
    call(rt, go_cb, s);
    bench_sleep_us((unsigned)(WARM_NS / 1000));
    cpu_t c0 = cpu_now(&l);
    uint64_t cap_ms = (WAIT_NS + WARM_NS + NWIN * WIN_NS) / 1000000 + 5000;
    if (read_full(child_res, &m, sizeof(m), (int)cap_ms) != 0)
        BENCH_FAIL("%s: the receiving child failed or did not finish", name);
    cpu_t use = cpu_use(c0, cpu_now(&l));
    check_open(s, "sender");
    call_sync(rt, WB_LANE_ACTOR, stop_cb, s);
    print_cpu(name, "sender process", use, m.mbs);
    print_cpu(name, "receiver process", m.use, m.mbs);
    wb_rt_free(rt);
    node_fini(s);
    pool_drain();
    free(s);
    return m.mbs;
}

static void run_2proc(void)
{
    double best = 0;
    char name[96], sfx[32];
    for (size_t i = 0; i < N_TP_CFGS; i++) {
        cfg_name(sfx, sizeof(sfx), &TP_CFGS[i]);
        snprintf(name, sizeof(name), "peer_throughput_2proc_%s", sfx);
        double mbs = run_link_2proc(&TP_CFGS[i], name);
        bench_print(name, mbs, "MB/s");
        if (mbs > best)
            best = mbs;
    }
    bench_print("peer_throughput_2proc", best, "MB/s");
    if (chacha_mbs > 0)
        bench_print2("peer_throughput_2proc_vs_chacha", best / chacha_mbs, "x");
}

/* ---- handshakes ---------------------------------------------------------- */

typedef struct {
    wb_rt_t *rt;
    uint64_t actor;
    uint16_t port;
    const uint8_t *expect;
    wb_peerconn_opts_t opts;
    wb_mconn_chan_t chan;
    int par, n;
    int started, ok, failed, inflight;
    struct {
        uint64_t pc, t0;
    } slot[HS_PAR];
    uint64_t lat[HS_N];
    uint64_t t_first, t_last;
    char why[200];
    _Atomic int finished;
} dialer_t;

static void hs_dial_more(dialer_t *d, wb_actor_t *self)
{
    while (d->inflight < d->par && d->started < d->n && d->failed < HS_MAX_FAIL) {
        int k = 0;
        while (d->slot[k].pc != 0)
            k++;
        wb_peerconn_opts_t o = d->opts;
        o.expect_pk = d->expect;
        uint64_t pc, t = bench_now_ns();
        int rc = wb_peerconn_dial(d->rt, self, "127.0.0.1", d->port, &o, &pc);
        if (rc != 0) {
            fail_async("wb_peerconn_dial: %s", wb_strerror(rc));
            return;
        }
        if (d->t_first == 0)
            d->t_first = t;
        d->slot[k].pc = pc;
        d->slot[k].t0 = t;
        d->started++;
        d->inflight++;
    }
    if (d->inflight == 0)
        atomic_store(&d->finished, 1);
}

static int hs_slot(dialer_t *d, uint64_t pc)
{
    for (int k = 0; k < d->par; k++)
        if (d->slot[k].pc == pc)
            return k;
    return -1;
}

static void dialer_handle(wb_actor_t *self, wb_event_t *ev)
{
    dialer_t *d = wb_actor_state(self);
    int k = hs_slot(d, ev->src);
    if (ev->type == WB_EV_PEER_READY && k >= 0) {
        uint64_t t = bench_now_ns();
        if (d->ok < HS_N)
            d->lat[d->ok] = t - d->slot[k].t0;
        d->ok++;
        d->t_last = t;
        d->slot[k].pc = 0;
        d->inflight--;
        wb_peerconn_close(d->rt, self, ev->src, 0, "bench: handshake done");
        hs_dial_more(d, self);
    } else if (ev->type == WB_EV_PEER_CLOSED && k >= 0) {
        d->failed++;
        snprintf(d->why, sizeof(d->why), "%.*s", (int)ev->len, (const char *)ev->data);
        d->slot[k].pc = 0;
        d->inflight--;
        hs_dial_more(d, self);
    }
    wb_event_free(ev);
}

static const wb_actor_def_t dialer_def = {.name = "bench-dialer", .handle = dialer_handle};

static void dialer_go_cb(wb_rt_t *rt, void *arg)
{
    dialer_t *d = arg;
    if (wb_actor_spawn(rt, NULL, &dialer_def, d, &d->actor) != 0) {
        fail_async("wb_actor_spawn");
        return;
    }
    hs_dial_more(d, wb_actor_lookup(rt, d->actor));
}

static int hs_finished(void *a)
{
    return atomic_load(&((dialer_t *)a)->finished);
}

/* Stop dialing and copy the counters, on the actor lane (no handler runs
 * meanwhile). */
static void hs_snap_cb(wb_rt_t *rt, void *arg)
{
    (void)rt;
    dialer_t **dd = arg;
    dd[0]->n = dd[0]->started;
    *dd[1] = *dd[0];
}

/* n handshakes, par at a time, by d (kept until the runtime is freed): the
 * rate; *lat_ms the median latency. */
static double hs_run(wb_rt_t *rt, dialer_t *d, uint16_t port, int n, int par, double *lat_ms)
{
    memset(d, 0, sizeof(*d));
    d->rt = rt;
    d->port = port;
    d->expect = key_pk[1];
    d->n = n;
    d->par = par;
    d->chan = (wb_mconn_chan_t){.id = CH_BASE, .priority = 1};
    wb_peerconn_opts_init(&d->opts);
    d->opts.id_sk = key_sk[0];
    d->opts.chans = &d->chan;
    d->opts.nchans = 1;
    d->opts.hello = "bench_peer";
    d->opts.hello_len = strlen("bench_peer");
    d->opts.handshake_timeout_ms = 10000;
    call(rt, dialer_go_cb, d);
    int done = wait_until(hs_finished, d, HS_CAP_NS);
    static dialer_t snap;
    dialer_t *dd[2] = {d, &snap};
    if (call_sync(rt, WB_LANE_ACTOR, hs_snap_cb, dd) != 0)
        BENCH_FAIL("handshakes: the actor lane does not answer");
    if (!done)
        printf("# handshakes: %d of %d done within %llu s\n", snap.ok, n,
               HS_CAP_NS / 1000000000ull);
    if (snap.failed > 0)
        printf("# handshakes: %d failed, the last: %s\n", snap.failed, snap.why);
    double v[HS_N];
    int nl = snap.ok < HS_N ? snap.ok : HS_N;
    for (int i = 0; i < nl; i++)
        v[i] = (double)snap.lat[i] / 1e6;
    *lat_ms = bench_median(v, nl);
    return snap.ok > 0 ? bench_rate((uint64_t)snap.ok, snap.t_last - snap.t_first) : 0;
}

static void run_handshakes(void)
{
    wb_rt_t *rt = rt_up();
    lanes_t l;
    lanes_init(rt, &l);
    link_cfg_t cfg = {.msg_len = SMALL_MSG, .nch = 1};
    node_t *lst = malloc(sizeof(*lst));
    if (lst == NULL)
        BENCH_FAIL("out of memory");
    node_init(lst, rt, &cfg, key_pk[1], key_sk[1]);
    uint16_t port = node_listen(lst);
    double lat_par, lat_seq;
    static dialer_t d[2];
    cpu_t c0 = cpu_now(&l);
    double par = hs_run(rt, &d[0], port, HS_N, HS_PAR, &lat_par);
    print_cpu("peer_handshakes", "both nodes", cpu_use(c0, cpu_now(&l)), 0);
    double seq = hs_run(rt, &d[1], port, HS_SEQ_N, 1, &lat_seq);
    bench_print("peer_handshakes", par, "/s");
    bench_print("peer_handshakes_seq", seq, "/s");
    bench_print2("peer_handshake_latency", lat_seq, "ms");
    wb_rt_free(rt);
    node_fini(lst);
    free(lst);
}

/* ---- 20 switches finding each other -------------------------------------- */

typedef struct {
    int idx;
    uint8_t pk[32], sk[64];
    uint64_t parent, pex;
    wb_switch_t *sw;
    _Atomic uint32_t port;
    char seed_addr[160];
    const char *seeds[1];
    uint64_t reached_ns; /* when it first had CONV_OUT outbound peers */
} cnode_t;

static cnode_t cnodes[CONV_N];

static void cparent_handle(wb_actor_t *self, wb_event_t *ev)
{
    cnode_t *n = wb_actor_state(self);
    if (ev->type == WB_EV_SWITCH_LISTENING) {
        if (ev->status < 0)
            fail_async("node %d: listen failed: %s", n->idx, wb_strerror(ev->status));
        else
            atomic_store(&n->port, (uint32_t)ev->cookie);
    }
    wb_event_free(ev);
}

static const wb_actor_def_t cparent_def = {.name = "bench-cparent", .handle = cparent_handle};

static void cnode_start(wb_rt_t *rt, cnode_t *n)
{
    if (wb_actor_spawn(rt, NULL, &cparent_def, n, &n->parent) != 0) {
        fail_async("wb_actor_spawn");
        return;
    }
    wb_actor_t *parent = wb_actor_lookup(rt, n->parent);
    wb_switch_config_t c;
    wb_switch_config_init(&c);
    char mon[16];
    snprintf(mon, sizeof(mon), "n%d", n->idx);
    c.id_sk = n->sk;
    c.network = "bench";
    c.moniker = mon;
    c.listen_host = "127.0.0.1";
    c.max_outbound = CONV_OUT;
    c.seed = (uint64_t)n->idx + 1;
    c.conn.handshake_timeout_ms = 5000;
    int rc = wb_switch_new(rt, parent, &c, &n->sw);
    if (rc != 0) {
        fail_async("wb_switch_new: %s", wb_strerror(rc));
        return;
    }
    wb_pex_config_t pc;
    wb_pex_config_init(&pc);
    pc.ensure_ms = CONV_ENSURE_MS;
    pc.seed = (uint64_t)n->idx * 7919 + 1;
    if (n->idx == 0) {
        pc.seed_mode = 1;
    } else {
        pc.seeds = n->seeds;
        pc.nseeds = 1;
    }
    rc = wb_pex_new(rt, parent, n->sw, &pc, &n->pex);
    if (rc == 0)
        rc = wb_switch_start(n->sw);
    if (rc != 0)
        fail_async("node %d: pex/switch start: %s", n->idx, wb_strerror(rc));
}

static void conv_seed_cb(wb_rt_t *rt, void *arg)
{
    (void)arg;
    cnode_start(rt, &cnodes[0]);
}

static void conv_rest_cb(wb_rt_t *rt, void *arg)
{
    (void)arg;
    for (int i = 1; i < CONV_N; i++)
        cnode_start(rt, &cnodes[i]);
}

typedef struct {
    int reached;
    uint64_t now;
} census_t;

static void census_cb(wb_rt_t *rt, void *arg)
{
    (void)rt;
    census_t *c = arg;
    c->reached = 0;
    for (int i = 1; i < CONV_N; i++) {
        uint32_t out = 0, in = 0, dialing = 0;
        if (cnodes[i].sw != NULL)
            wb_switch_counts(cnodes[i].sw, &out, &in, &dialing);
        if (out >= CONV_OUT && cnodes[i].reached_ns == 0)
            cnodes[i].reached_ns = c->now;
        c->reached += cnodes[i].reached_ns != 0;
    }
}

typedef struct {
    wb_pex_stats_t sum;
    uint32_t out, in;
} conv_stats_t;

static void conv_stats_cb(wb_rt_t *rt, void *arg)
{
    conv_stats_t *s = arg;
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < CONV_N; i++) {
        wb_pex_stats_t p;
        uint32_t out = 0, in = 0, dialing = 0;
        if (cnodes[i].sw != NULL)
            wb_switch_counts(cnodes[i].sw, &out, &in, &dialing);
        s->out += out;
        s->in += in;
        if (wb_pex_stats(rt, cnodes[i].pex, &p) != 0)
            continue;
        s->sum.requests_sent += p.requests_sent;
        s->sum.requests_answered += p.requests_answered;
        s->sum.addrs_received += p.addrs_received;
        s->sum.dials += p.dials;
        s->sum.dial_failures += p.dial_failures;
        s->sum.peers_dropped += p.peers_dropped;
    }
}

static int cseed_port(void *a)
{
    (void)a;
    return atomic_load(&cnodes[0].port) != 0;
}

/* One network of CONV_N nodes: ms until the last had its outbound peers,
 * or -1 when it did not within CONV_CAP_NS. */
static double converge_once(int run)
{
    char hex[65];
    memset(cnodes, 0, sizeof(cnodes));
    for (int i = 0; i < CONV_N; i++) {
        cnodes[i].idx = i;
        wb_sc_keypair(cnodes[i].pk, cnodes[i].sk);
    }
    wb_rt_t *rt = rt_up();
    call(rt, conv_seed_cb, NULL);
    if (!wait_until(cseed_port, NULL, WAIT_NS))
        BENCH_FAIL("converge: the seed node does not listen");
    sodium_bin2hex(hex, sizeof(hex), cnodes[0].pk, 32);
    for (int i = 1; i < CONV_N; i++) {
        snprintf(cnodes[i].seed_addr, sizeof(cnodes[i].seed_addr), "%s@127.0.0.1:%u", hex,
                 (unsigned)atomic_load(&cnodes[0].port));
        cnodes[i].seeds[0] = cnodes[i].seed_addr;
    }
    uint64_t t0 = bench_now_ns();
    call(rt, conv_rest_cb, NULL);
    census_t c = {0};
    for (;;) {
        c.now = bench_now_ns();
        if (call_sync(rt, WB_LANE_ACTOR, census_cb, &c) != 0)
            BENCH_FAIL("converge: the actor lane does not answer");
        if (c.reached == CONV_N - 1 || bench_now_ns() - t0 > CONV_CAP_NS)
            break;
        bench_sleep_us(2000);
    }
    conv_stats_t st;
    if (call_sync(rt, WB_LANE_ACTOR, conv_stats_cb, &st) != 0)
        BENCH_FAIL("converge: the actor lane does not answer");
    uint64_t first = UINT64_MAX, last = 0;
    for (int i = 1; i < CONV_N; i++) {
        if (cnodes[i].reached_ns == 0)
            continue;
        if (cnodes[i].reached_ns < first)
            first = cnodes[i].reached_ns;
        if (cnodes[i].reached_ns > last)
            last = cnodes[i].reached_ns;
    }
    printf("# converge run %d: %d of %d nodes reached %d outbound (first after %.0f ms); peers "
           "%u out, %u in; pex: %" PRIu64 " requests, %" PRIu64 " answered, %" PRIu64
           " addresses taken, %" PRIu64 " dials, %" PRIu64 " failed, %" PRIu64 " dropped\n",
           run, c.reached, CONV_N - 1, CONV_OUT,
           first == UINT64_MAX ? -1.0 : (double)(first - t0) / 1e6, st.out, st.in,
           st.sum.requests_sent, st.sum.requests_answered, st.sum.addrs_received, st.sum.dials,
           st.sum.dial_failures, st.sum.peers_dropped);
    wb_rt_free(rt);
    return c.reached == CONV_N - 1 ? (double)(last - t0) / 1e6 : -1;
}

static void run_converge(void)
{
    bench_samples_t s = {0};
    int failed = 0;
    for (int r = 0; r < CONV_RUNS; r++) {
        double ms = converge_once(r);
        if (ms < 0)
            failed++;
        else
            bench_add(&s, ms);
    }
    if (failed > 0)
        printf("# peer_converge_20: %d of %d runs not converged within %llu s\n", failed,
               CONV_RUNS, CONV_CAP_NS / 1000000000ull);
    if (s.n > 0)
        bench_print2("peer_converge_20", bench_med(&s), "ms");
}

/* ---- main ---------------------------------------------------------------- */

static int want(const char *only, const char *name)
{
    return only == NULL || strcmp(only, name) == 0;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    if (sodium_init() < 0)
        BENCH_FAIL("sodium_init");
    if (getenv("WAYBILL_LOG") == NULL)
        wb_log_set_level(WB_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(tmpl); i++)
        tmpl[i] = (uint8_t)(i * 131 + (i >> 9));
    wb_sc_keypair(key_pk[0], key_sk[0]);
    wb_sc_keypair(key_pk[1], key_sk[1]);
    if (want(only, "2proc"))
        child_start(); /* now, while this process has one thread */
    atexit(child_kill);
    print_load("at start");
    printf("# %d cpus; messages: %u bytes on 1 channel (throughput), %u bytes on %d channels "
           "(small); frame_max %u; windows: %d x %llu ms after %llu ms\n",
           bench_ncpus(), BIG_MSG, SMALL_MSG, SMALL_CHANS, FRAME_MAX, NWIN, WIN_NS / 1000000,
           WARM_NS / 1000000);
    if (want(only, "anchors"))
        run_anchors(); /* alone, the other sections print no ratio */
    if (want(only, "throughput"))
        run_throughput();
    if (want(only, "2proc"))
        run_2proc();
    child_stop();
    if (want(only, "small"))
        run_small();
    if (want(only, "handshakes"))
        run_handshakes();
    if (want(only, "converge"))
        run_converge();
    print_load("at the end");
    return 0;
}
