/*
 * test_tcp_splice.c - wb_tcp_splice (sockets/tcp.h "Splicing") on real
 * loopback connections, with the runtime's threads (runs under TSan too).
 *
 * - two pairs spliced at once, one through pipes and one through buffers
 *   (opts.copy): several MB of random-length writes both ways at once on
 *   each, every byte checked in order; a close ends each with one SPLICED
 *   (bytes each way exact) followed by both CLOSED;
 * - order at the start: bytes the peers sent while the owner had paused
 *   reading, and a large reply the owner queued just before the splice,
 *   come out in order (the reply first); bytes the lane held because the
 *   owner's inbox refused them are not lost: what the owner got plus what
 *   the other side got is the stream, in order;
 * - a reader that stops: the writer blocks, the lane holds at most one pipe
 *   (or buffer) per direction, everything arrives once it reads again;
 * - ending: the peer of either side closing, the owner closing either id,
 *   the idle timeout; exactly one SPLICED before both CLOSED each time, the
 *   clients see EOF;
 * - refusals: a WebSocket, a TLS and a framed connection, an unknown id, a
 *   connection spliced already, a == b; the connections go on unchanged;
 * - the runtime stopping with splices running (leaks are ASan's and
 *   valgrind's to find; every event block is back in the pool).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/pool.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"

#define WAIT_MS 20000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Byte k of stream s: what the tests write and check. */
static uint8_t sbyte(uint32_t s, uint64_t k)
{
    uint64_t x = (k + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)s * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    return (uint8_t)(x >> 17);
}

static void sfill(uint32_t s, uint64_t at, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = sbyte(s, at + i);
}

/* ---- the owner: an actor that records ------------------------------------------ */

enum { MAX_REC = 256 };

typedef struct {
    uint16_t type;
    int32_t status;
    uint64_t src, cookie;
    char text[200];
    wb_tcp_spliced_t sp; /* SPLICED */
} rec_t;

typedef struct {
    wb_rt_t *rt;
    uint64_t id;
    pthread_mutex_t m;
    pthread_cond_t c;
    rec_t recs[MAX_REC];
    size_t nrec;
    /* BLOB bytes of the connection being watched. */
    uint64_t watch;
    uint8_t *blob;
    size_t blob_len;
    int gate;    /* 1: the first BLOB blocks the actor until gate is 0 */
    int blocked; /* the actor is blocked in the gate */
    uint64_t nblobs;
} owner_t;

static void owner_handle(wb_actor_t *self, wb_event_t *ev)
{
    owner_t *o = wb_actor_state(self);
    pthread_mutex_lock(&o->m);
    if (ev->type == WB_EV_TCP_BLOB) {
        o->nblobs++;
        if (ev->src == o->watch) {
            o->blob = realloc(o->blob, o->blob_len + ev->len);
            memcpy(o->blob + o->blob_len, ev->data, ev->len);
            o->blob_len += ev->len;
        }
        while (o->gate) {
            o->blocked = 1;
            pthread_cond_broadcast(&o->c);
            pthread_cond_wait(&o->c, &o->m);
        }
        o->blocked = 0;
    } else if (ev->type >= WB_EV_TCP_LISTENING && ev->type < WB__EV_TCP_STATE &&
               o->nrec < MAX_REC) {
        rec_t *r = &o->recs[o->nrec++];
        memset(r, 0, sizeof(*r));
        r->type = ev->type;
        r->status = ev->status;
        r->src = ev->src;
        r->cookie = ev->cookie;
        if (ev->type == WB_EV_TCP_SPLICED) {
            assert_int_equal(ev->len, sizeof(wb_tcp_spliced_t));
            memcpy(&r->sp, ev->data, sizeof(r->sp));
            memcpy(r->text, r->sp.reason, sizeof(r->text));
            r->text[sizeof(r->text) - 1] = '\0';
        } else {
            size_t n = ev->len < sizeof(r->text) - 1 ? ev->len : sizeof(r->text) - 1;
            memcpy(r->text, ev->data, n);
        }
    }
    pthread_cond_broadcast(&o->c);
    pthread_mutex_unlock(&o->m);
    wb_event_free(ev);
}

static void owner_fini(wb_actor_t *self)
{
    (void)self;
}

static const wb_actor_def_t owner_def = {"splice-owner", owner_handle, owner_fini};

/* Index of the first record at or after from of type (and src unless 0),
 * waiting up to WAIT_MS; -1 on timeout. */
static int wait_rec(owner_t *o, uint16_t type, uint64_t src, size_t from, rec_t *out)
{
    uint64_t end = now_ms() + WAIT_MS;
    pthread_mutex_lock(&o->m);
    int found = -1;
    while (found < 0) {
        for (size_t i = from; i < o->nrec; i++)
            if (o->recs[i].type == type && (src == 0 || o->recs[i].src == src)) {
                found = (int)i;
                if (out != NULL)
                    *out = o->recs[i];
                break;
            }
        if (found >= 0 || now_ms() >= end)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&o->c, &o->m, &ts);
    }
    pthread_mutex_unlock(&o->m);
    return found;
}

static int count_rec(owner_t *o, uint16_t type, uint64_t src)
{
    int n = 0;
    pthread_mutex_lock(&o->m);
    for (size_t i = 0; i < o->nrec; i++)
        n += o->recs[i].type == type && (src == 0 || o->recs[i].src == src);
    pthread_mutex_unlock(&o->m);
    return n;
}

static size_t nrec(owner_t *o)
{
    pthread_mutex_lock(&o->m);
    size_t n = o->nrec;
    pthread_mutex_unlock(&o->m);
    return n;
}

typedef struct {
    wb_rt_t *rt;
    owner_t o;
    uint64_t lid;
    uint16_t port;
} env_t;

static void env_start(env_t *e, uint32_t inbox_limit, const wb_tcp_opts_t *lopts)
{
    memset(e, 0, sizeof(*e));
    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    if (inbox_limit != 0)
        cfg.inbox_limit = cfg.mailbox_limit = inbox_limit;
    assert_int_equal(wb_rt_new(&e->rt, &cfg), 0);
    assert_int_equal(wb_sockets_attach(e->rt, NULL), 0);
    e->o.rt = e->rt;
    pthread_mutex_init(&e->o.m, NULL);
    pthread_cond_init(&e->o.c, NULL);
    assert_int_equal(wb_rt_start(e->rt), 0);
    assert_int_equal(wb_actor_spawn(e->rt, NULL, &owner_def, &e->o, &e->o.id), 0);
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.raw = 1;
    if (lopts != NULL)
        to = *lopts;
    assert_int_equal(wb_tcp_listen(e->rt, WB_LANE_ACTOR, e->o.id, "127.0.0.1", 0, &to, &e->lid), 0);
    rec_t r;
    assert_true(wait_rec(&e->o, WB_EV_TCP_LISTENING, e->lid, 0, &r) >= 0);
    assert_int_equal(r.status, 0);
    e->port = (uint16_t)r.cookie;
}

static void env_stop(env_t *e)
{
    wb_rt_free(e->rt);
    assert_int_equal(wb_pool_trim(), 0);
    free(e->o.blob);
    pthread_mutex_destroy(&e->o.m);
    pthread_cond_destroy(&e->o.c);
}

static int client_connect(uint16_t port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Connect a client and return the id of the connection the lane accepted
 * for it (matched by the OPENED's peer address). */
static uint64_t accept_client(env_t *e, int fd)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    for (size_t from = 0;;) {
        rec_t r;
        int i = wait_rec(&e->o, WB_EV_TCP_OPENED, 0, from, &r);
        assert_true(i >= 0);
        if (strcmp(r.text, want) == 0)
            return r.src;
        from = (size_t)i + 1;
    }
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        assert_true(k > 0);
        p += k;
        n -= (size_t)k;
    }
}

/* Read exactly n bytes and check them against stream s from offset at. */
static void recv_check(int fd, uint32_t s, uint64_t at, size_t n)
{
    uint8_t buf[65536];
    while (n > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        assert_true(poll(&pf, 1, WAIT_MS) == 1);
        ssize_t k = recv(fd, buf, n < sizeof(buf) ? n : sizeof(buf), 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            fail_msg("read %zd (%s) with %zu bytes of stream %u to come", k, strerror(errno), n, s);
        for (ssize_t i = 0; i < k; i++)
            if (buf[i] != sbyte(s, at + (uint64_t)i))
                fail_msg("stream %u: wrong byte at offset %llu", s,
                         (unsigned long long)(at + (uint64_t)i));
        at += (uint64_t)k;
        n -= (size_t)k;
    }
}

static void recv_exact(int fd, void *p, size_t n)
{
    uint8_t *c = p;
    while (n > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        assert_true(poll(&pf, 1, WAIT_MS) == 1);
        ssize_t k = recv(fd, c, n, 0);
        assert_true(k > 0);
        c += k;
        n -= (size_t)k;
    }
}

/* The peer closed: read returns 0 (after nothing more). */
static void expect_eof(int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_true(poll(&pf, 1, WAIT_MS) == 1);
    char b;
    ssize_t k = recv(fd, &b, 1, 0);
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
}

/* Send len bytes of stream s from a buffer to the owner's connection conn. */
static void owner_send(env_t *e, uint64_t conn, uint32_t s, uint64_t at, size_t len)
{
    wb_event_t *ev = wb_event_new(WB_EV_USER, len);
    assert_non_null(ev);
    sfill(s, at, ev->data, len);
    wb_event_route(ev, WB_LANE_ACTOR, e->o.id, WB_LANE_NET, conn);
    assert_int_equal(wb_tcp_send(e->rt, conn, ev), 0);
}

/* The splice of a (with b) ended: its record (the one SPLICED), and both
 * CLOSED come after it. */
static rec_t expect_end(env_t *e, uint64_t a, uint64_t b, rec_t *ca, rec_t *cb)
{
    rec_t r;
    int i = -1;
    do /* past refusals */
        i = wait_rec(&e->o, WB_EV_TCP_SPLICED, a, (size_t)(i + 1), &r);
    while (i >= 0 && !r.sp.started);
    assert_true(i >= 0);
    assert_int_equal(r.cookie, b);
    assert_int_equal(r.sp.a, a);
    assert_int_equal(r.sp.b, b);
    assert_int_equal(r.sp.started, 1);
    rec_t x, y;
    int ia = wait_rec(&e->o, WB_EV_TCP_CLOSED, a, 0, &x);
    int ib = wait_rec(&e->o, WB_EV_TCP_CLOSED, b, 0, &y);
    assert_true(ia > i && ib > i);
    sleep_ms(50);
    pthread_mutex_lock(&e->o.m);
    int ended = 0;
    for (size_t k = 0; k < e->o.nrec; k++)
        ended += e->o.recs[k].type == WB_EV_TCP_SPLICED && e->o.recs[k].src == a &&
                 e->o.recs[k].sp.started;
    pthread_mutex_unlock(&e->o.m);
    assert_int_equal(ended, 1);
    assert_int_equal(count_rec(&e->o, WB_EV_TCP_CLOSED, a), 1);
    assert_int_equal(count_rec(&e->o, WB_EV_TCP_CLOSED, b), 1);
    if (ca != NULL)
        *ca = x;
    if (cb != NULL)
        *cb = y;
    return r;
}

/* ---- both ways at once -------------------------------------------------------- */

typedef struct {
    int fd;
    uint32_t stream;
    size_t total;
    unsigned seed;
    int writer;
    int failed;
} flow_t;

static void *flow_main(void *arg)
{
    flow_t *f = arg;
    uint8_t *buf = malloc(256 << 10);
    uint64_t at = 0;
    while (at < f->total && !f->failed) {
        size_t n = 1 + (size_t)rand_r(&f->seed) % (256u << 10);
        if (n > f->total - at)
            n = f->total - at;
        if (f->writer) {
            sfill(f->stream, at, buf, n);
            for (size_t off = 0; off < n;) {
                ssize_t k = send(f->fd, buf + off, n - off, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0) {
                    f->failed = 1;
                    break;
                }
                off += (size_t)k;
            }
            at += n;
        } else {
            ssize_t k = recv(f->fd, buf, n, 0);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                f->failed = 2;
                break;
            }
            for (ssize_t i = 0; i < k; i++)
                if (buf[i] != sbyte(f->stream, at + (uint64_t)i)) {
                    f->failed = 3;
                    break;
                }
            at += (uint64_t)k;
        }
    }
    free(buf);
    return NULL;
}

static void test_both_ways(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, 0, NULL);
    enum { PAIRS = 2, TOTAL = 6 << 20 };
    int fx[PAIRS], fy[PAIRS];
    uint64_t ix[PAIRS], iy[PAIRS];
    for (int p = 0; p < PAIRS; p++) {
        fx[p] = client_connect(e.port, 0);
        fy[p] = client_connect(e.port, 0);
        ix[p] = accept_client(&e, fx[p]);
        iy[p] = accept_client(&e, fy[p]);
        wb_tcp_splice_opts_t so;
        wb_tcp_splice_opts_init(&so);
        so.copy = p == 1; /* one through pipes, one through buffers */
        assert_int_equal(wb_tcp_splice(e.rt, ix[p], iy[p], &so), 0);
    }
    flow_t f[PAIRS][4];
    pthread_t th[PAIRS][4];
    for (int p = 0; p < PAIRS; p++) {
        uint32_t sx = 100 + (uint32_t)p, sy = 200 + (uint32_t)p;
        f[p][0] = (flow_t){fx[p], sx, TOTAL, 1u + (unsigned)p, 1, 0};
        f[p][1] = (flow_t){fy[p], sx, TOTAL, 11u + (unsigned)p, 0, 0};
        f[p][2] = (flow_t){fy[p], sy, TOTAL, 21u + (unsigned)p, 1, 0};
        f[p][3] = (flow_t){fx[p], sy, TOTAL, 31u + (unsigned)p, 0, 0};
        for (int k = 0; k < 4; k++)
            assert_int_equal(pthread_create(&th[p][k], NULL, flow_main, &f[p][k]), 0);
    }
    for (int p = 0; p < PAIRS; p++)
        for (int k = 0; k < 4; k++) {
            pthread_join(th[p][k], NULL);
            if (f[p][k].failed)
                fail_msg("pair %d flow %d failed (%d)", p, k, f[p][k].failed);
        }
    assert_int_equal(e.o.nblobs, 0);
    /* Pair 0: the x side's peer closes; pair 1: the y side's. */
    close(fx[0]);
    close(fy[1]);
    rec_t ca, cb;
    rec_t r = expect_end(&e, ix[0], iy[0], &ca, &cb);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_int_equal(r.sp.ended_by, ix[0]);
    assert_int_equal(r.sp.a_to_b, TOTAL);
    assert_int_equal(r.sp.b_to_a, TOTAL);
    assert_int_equal(r.sp.spliced, 1);
    assert_true(r.sp.max_inflight <= r.sp.pipe_size);
    assert_int_equal(ca.status, WB_ECLOSED);
    assert_string_equal(ca.text, "peer closed");
    assert_int_equal(cb.status, 0);
    assert_string_equal(cb.text, "splice ended");
    expect_eof(fy[0]);
    r = expect_end(&e, ix[1], iy[1], &ca, &cb);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_int_equal(r.sp.ended_by, iy[1]);
    assert_int_equal(r.sp.a_to_b, TOTAL);
    assert_int_equal(r.sp.b_to_a, TOTAL);
    assert_int_equal(r.sp.spliced, 0);
    assert_true(r.sp.max_inflight <= r.sp.pipe_size);
    assert_int_equal(cb.status, WB_ECLOSED);
    assert_int_equal(ca.status, 0);
    expect_eof(fx[1]);
    close(fy[0]);
    close(fx[1]);
    env_stop(&e);
}

/* ---- what was there before ----------------------------------------------------- */

/* The owner pauses both, answers both, the peers send at once (paused: it
 * stays in the kernel), the owner queues a large reply to y and splices:
 * y reads the reply, then x's bytes, in order; x the same. */
static void test_paused_before(void **state)
{
    (void)state;
    for (int copy = 0; copy < 2; copy++) {
        env_t e;
        env_start(&e, 0, NULL);
        int fx = client_connect(e.port, 0), fy = client_connect(e.port, 0);
        uint64_t ix = accept_client(&e, fx), iy = accept_client(&e, fy);
        assert_int_equal(wb_tcp_pause(e.rt, ix), 0);
        assert_int_equal(wb_tcp_pause(e.rt, iy), 0);
        owner_send(&e, ix, 1, 0, 3);
        owner_send(&e, iy, 2, 0, 3);
        recv_check(fx, 1, 0, 3); /* the pauses were taken before these */
        recv_check(fy, 2, 0, 3);
        enum { PRE = 300000, REPLY = 700000, POST = 500000 };
        uint8_t *buf = malloc(PRE + POST);
        sfill(10, 0, buf, PRE + POST);
        send_all(fx, buf, PRE);
        sfill(20, 0, buf, PRE + POST);
        send_all(fy, buf, PRE);
        sleep_ms(50);
        /* The reply to y in pieces, the rest of stream 2 after its 3 bytes. */
        for (size_t off = 0; off < REPLY; off += 100000)
            owner_send(&e, iy, 2, 3 + off, 100000);
        wb_tcp_splice_opts_t so;
        wb_tcp_splice_opts_init(&so);
        so.copy = (uint32_t)copy;
        so.pipe_size = 65536;
        assert_int_equal(wb_tcp_splice(e.rt, ix, iy, &so), 0);
        sfill(20, 0, buf, PRE + POST);
        send_all(fy, buf + PRE, POST);
        recv_check(fx, 20, 0, PRE + POST);
        sfill(10, 0, buf, PRE + POST);
        send_all(fx, buf + PRE, POST);
        recv_check(fy, 2, 3, REPLY);
        recv_check(fy, 10, 0, PRE + POST);
        free(buf);
        assert_int_equal(e.o.nblobs, 0);
        assert_int_equal(wb_tcp_close(e.rt, iy), 0);
        rec_t ca, cb;
        rec_t r = expect_end(&e, ix, iy, &ca, &cb);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.sp.ended_by, iy);
        assert_int_equal(r.sp.a_to_b, PRE + POST);
        assert_int_equal(r.sp.b_to_a, PRE + POST);
        assert_string_equal(r.sp.reason + strlen(r.sp.reason) - strlen("closed by owner"),
                            "closed by owner");
        assert_int_equal(ca.status, 0);
        assert_string_equal(cb.text, "closed by owner");
        expect_eof(fx);
        expect_eof(fy);
        close(fx);
        close(fy);
        env_stop(&e);
    }
}

/* The owner is stuck (its inbox of 4 fills up), so the lane holds a refused
 * blob of x and stops reading it; the splice takes it: what the owner got
 * and what y gets are the stream, in order, nothing lost. */
static void test_held_before(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, 4, NULL);
    int fx = client_connect(e.port, 0), fy = client_connect(e.port, 0);
    uint64_t ix = accept_client(&e, fx), iy = accept_client(&e, fy);
    pthread_mutex_lock(&e.o.m);
    e.o.gate = 1;
    e.o.watch = ix;
    pthread_mutex_unlock(&e.o.m);
    enum { PIECE = 1000, PIECES = 40, LATER = 200000 };
    uint8_t buf[PIECE];
    uint64_t at = 0;
    for (int k = 0; k < PIECES; k++) {
        sfill(7, at, buf, PIECE);
        send_all(fx, buf, PIECE);
        at += PIECE;
        sleep_ms(5); /* one read each */
    }
    wb_lane_stats_t st;
    for (int k = 0; k < 400; k++) {
        wb_rt_stats(e.rt, WB_LANE_ACTOR, &st);
        if (st.refused > 0)
            break;
        sleep_ms(10);
    }
    assert_true(st.refused > 0);
    assert_int_equal(wb_tcp_splice(e.rt, ix, iy, NULL), 0);
    sleep_ms(100);
    pthread_mutex_lock(&e.o.m);
    e.o.gate = 0;
    pthread_cond_broadcast(&e.o.c);
    pthread_mutex_unlock(&e.o.m);
    uint8_t *more = malloc(LATER);
    sfill(7, at, more, LATER);
    send_all(fx, more, LATER);
    free(more);
    sleep_ms(100);
    pthread_mutex_lock(&e.o.m);
    size_t got = e.o.blob_len;
    assert_true(got > 0 && got < at);
    for (size_t i = 0; i < got; i++)
        assert_int_equal(e.o.blob[i], sbyte(7, i));
    pthread_mutex_unlock(&e.o.m);
    recv_check(fy, 7, got, at + LATER - got);
    close(fx);
    rec_t r = expect_end(&e, ix, iy, NULL, NULL);
    assert_int_equal(r.sp.a_to_b, at + LATER - got);
    assert_int_equal(r.sp.b_to_a, 0);
    expect_eof(fy);
    close(fy);
    env_stop(&e);
}

/* ---- a reader that stops ------------------------------------------------------- */

static void test_slow_reader(void **state)
{
    (void)state;
    for (int copy = 0; copy < 2; copy++) {
        env_t e;
        env_start(&e, 0, NULL);
        int fx = client_connect(e.port, 0), fy = client_connect(e.port, 65536);
        uint64_t ix = accept_client(&e, fx), iy = accept_client(&e, fy);
        wb_tcp_splice_opts_t so;
        wb_tcp_splice_opts_init(&so);
        so.copy = (uint32_t)copy;
        so.pipe_size = 65536;
        assert_int_equal(wb_tcp_splice(e.rt, ix, iy, &so), 0);
        /* x writes until the kernel takes nothing more for half a second. */
        int fl = fcntl(fx, F_GETFL);
        fcntl(fx, F_SETFL, fl | O_NONBLOCK);
        uint8_t *buf = malloc(65536);
        uint64_t sent = 0, stuck_since = now_ms();
        while (now_ms() - stuck_since < 500) {
            sfill(3, sent, buf, 65536);
            ssize_t k = send(fx, buf, 65536, MSG_NOSIGNAL);
            if (k > 0) {
                sent += (uint64_t)k;
                stuck_since = now_ms();
            } else {
                assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
                sleep_ms(5);
            }
            assert_true(sent < (64u << 20)); /* the sender is held back */
        }
        fcntl(fx, F_SETFL, fl);
        /* Now y reads it all, and x sends some more. */
        recv_check(fy, 3, 0, sent);
        enum { MORE = 1 << 20 };
        uint8_t *more = malloc(MORE);
        sfill(3, sent, more, MORE);
        send_all(fx, more, MORE);
        recv_check(fy, 3, sent, MORE);
        free(more);
        free(buf);
        close(fy);
        rec_t r = expect_end(&e, ix, iy, NULL, NULL);
        assert_int_equal(r.sp.ended_by, iy);
        assert_int_equal(r.sp.a_to_b, sent + MORE);
        /* The lane held at most one pipe (or buffer) of bytes. */
        assert_true(r.sp.max_inflight > 0);
        assert_true(r.sp.max_inflight <= r.sp.pipe_size);
        assert_true(r.sp.pipe_size <= (copy ? 65536u : 1u << 20));
        expect_eof(fx);
        close(fx);
        env_stop(&e);
    }
}

/* ---- ending -------------------------------------------------------------------- */

static void test_close_and_idle(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, 0, NULL);
    /* The owner closes the first id. */
    int fx = client_connect(e.port, 0), fy = client_connect(e.port, 0);
    uint64_t ix = accept_client(&e, fx), iy = accept_client(&e, fy);
    assert_int_equal(wb_tcp_splice(e.rt, ix, iy, NULL), 0);
    send_all(fx, (const uint8_t *)"ping", 4);
    char got[4];
    recv_exact(fy, got, 4);
    assert_memory_equal(got, "ping", 4);
    /* A send to a spliced connection is dropped, as to a closed id. */
    owner_send(&e, iy, 1, 0, 10);
    assert_int_equal(wb_tcp_close(e.rt, ix), 0);
    rec_t ca, cb;
    rec_t r = expect_end(&e, ix, iy, &ca, &cb);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.sp.ended_by, ix);
    assert_int_equal(r.sp.a_to_b, 4);
    assert_string_equal(ca.text, "closed by owner");
    assert_string_equal(cb.text, "splice ended");
    expect_eof(fx);
    expect_eof(fy);
    close(fx);
    close(fy);

    /* The idle timeout: no byte either way for 300 ms. */
    fx = client_connect(e.port, 0);
    fy = client_connect(e.port, 0);
    ix = accept_client(&e, fx);
    iy = accept_client(&e, fy);
    wb_tcp_splice_opts_t so;
    wb_tcp_splice_opts_init(&so);
    so.idle_timeout_ms = 300;
    assert_int_equal(wb_tcp_splice(e.rt, ix, iy, &so), 0);
    for (int k = 0; k < 5; k++) { /* bytes keep it alive past the timeout */
        send_all(fy, (const uint8_t *)"x", 1);
        recv_exact(fx, got, 1);
        sleep_ms(150);
    }
    assert_int_equal(count_rec(&e.o, WB_EV_TCP_SPLICED, ix), 0);
    uint64_t t0 = now_ms();
    r = expect_end(&e, ix, iy, &ca, &cb);
    uint64_t dt = now_ms() - t0;
    assert_true(dt < 2000);
    assert_int_equal(r.status, WB_ETIMEDOUT);
    assert_int_equal(r.sp.ended_by, 0);
    assert_int_equal(r.sp.b_to_a, 5);
    assert_int_equal(ca.status, WB_ETIMEDOUT);
    assert_int_equal(cb.status, WB_ETIMEDOUT);
    expect_eof(fx);
    expect_eof(fy);
    close(fx);
    close(fy);
    env_stop(&e);
}

/* ---- refusals ------------------------------------------------------------------ */

static rec_t expect_refused(env_t *e, uint64_t src, int status, const char *text)
{
    rec_t r;
    size_t from = nrec(&e->o);
    assert_true(wait_rec(&e->o, WB_EV_TCP_SPLICED, src, from, &r) >= 0);
    assert_int_equal(r.status, status);
    assert_int_equal(r.sp.started, 0);
    if (strstr(r.text, text) == NULL)
        fail_msg("refusal \"%s\" does not say \"%s\"", r.text, text);
    return r;
}

static void test_refused(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, 0, NULL);
    int fx = client_connect(e.port, 0), fy = client_connect(e.port, 0);
    uint64_t ix = accept_client(&e, fx), iy = accept_client(&e, fy);
    assert_int_equal(wb_tcp_splice(e.rt, ix, ix, NULL), WB_EINVAL);
    assert_int_equal(wb_tcp_splice(e.rt, 0, ix, NULL), WB_EINVAL);
    wb_tcp_splice_opts_t so;
    wb_tcp_splice_opts_init(&so);
    so.pipe_size = 100;
    assert_int_equal(wb_tcp_splice(e.rt, ix, iy, &so), WB_EINVAL);

    /* A WebSocket and a TLS dial to our raw listener (their handshakes
     * never finish), a framed dial: refused, nothing changes. */
    wb_ws_opts_t wo;
    wb_ws_opts_init(&wo);
    wb_tls_opts_t tlo;
    wb_tls_opts_init(&tlo);
    tlo.insecure = 1;
    wb_tcp_opts_t to;
    uint64_t ws, tls, framed;
    wb_tcp_opts_init(&to);
    to.ws = &wo;
    assert_int_equal(wb_tcp_dial(e.rt, WB_LANE_ACTOR, e.o.id, "127.0.0.1", e.port, &to, &ws), 0);
    wb_tcp_opts_init(&to);
    to.tls = &tlo;
    assert_int_equal(wb_tcp_dial(e.rt, WB_LANE_ACTOR, e.o.id, "127.0.0.1", e.port, &to, &tls), 0);
    wb_tcp_opts_init(&to);
    assert_int_equal(wb_tcp_dial(e.rt, WB_LANE_ACTOR, e.o.id, "127.0.0.1", e.port, &to, &framed),
                     0);
    sleep_ms(200); /* connected */
    assert_int_equal(wb_tcp_splice(e.rt, ws, ix, NULL), 0);
    expect_refused(&e, ws, WB_EINVAL, "WebSocket");
    assert_int_equal(wb_tcp_splice(e.rt, ix, tls, NULL), 0);
    expect_refused(&e, ix, WB_EINVAL, "TLS");
    assert_int_equal(wb_tcp_splice(e.rt, framed, iy, NULL), 0);
    expect_refused(&e, framed, WB_EINVAL, "framed");
    /* An unknown id: to the known one's owner, src still a. */
    assert_int_equal(wb_tcp_splice(e.rt, 999999999, ix, NULL), 0);
    expect_refused(&e, 999999999, WB_ECLOSED, "closed or unknown");
    assert_int_equal(wb_tcp_close(e.rt, ws), 0);
    assert_int_equal(wb_tcp_close(e.rt, tls), 0);
    assert_int_equal(wb_tcp_close(e.rt, framed), 0);

    /* x still works unspliced: its bytes come up. */
    pthread_mutex_lock(&e.o.m);
    e.o.watch = ix;
    pthread_mutex_unlock(&e.o.m);
    send_all(fx, (const uint8_t *)"abc", 3);
    size_t have = 0;
    for (int k = 0; k < 200 && have < 3; k++) {
        sleep_ms(10);
        pthread_mutex_lock(&e.o.m);
        have = e.o.blob_len;
        pthread_mutex_unlock(&e.o.m);
    }
    assert_int_equal(have, 3);
    assert_memory_equal(e.o.blob, "abc", 3);

    /* Spliced already. */
    int fz = client_connect(e.port, 0);
    uint64_t iz = accept_client(&e, fz);
    assert_int_equal(wb_tcp_splice(e.rt, ix, iy, NULL), 0);
    assert_int_equal(wb_tcp_splice(e.rt, iz, iy, NULL), 0);
    expect_refused(&e, iz, WB_EBUSY, "spliced already");
    send_all(fx, (const uint8_t *)"hello", 5);
    char got[5];
    recv_exact(fy, got, 5);
    assert_memory_equal(got, "hello", 5);
    close(fz);
    close(fx);
    expect_end(&e, ix, iy, NULL, NULL);
    expect_eof(fy);
    close(fy);
    env_stop(&e);
}

/* ---- stopping with splices running --------------------------------------------- */

static void test_shutdown(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, 0, NULL);
    int fd[6];
    uint64_t id[6];
    for (int i = 0; i < 6; i++) {
        fd[i] = client_connect(e.port, i == 1 ? 65536 : 0);
        id[i] = accept_client(&e, fd[i]);
    }
    wb_tcp_splice_opts_t so;
    wb_tcp_splice_opts_init(&so);
    assert_int_equal(wb_tcp_splice(e.rt, id[0], id[1], &so), 0);
    so.copy = 1;
    assert_int_equal(wb_tcp_splice(e.rt, id[2], id[3], &so), 0);
    owner_send(&e, id[5], 1, 0, 100);
    assert_int_equal(wb_tcp_splice(e.rt, id[4], id[5], NULL), 0);
    /* Bytes in flight toward a reader that does not read. */
    uint8_t *buf = calloc(1, 1 << 20);
    int fl = fcntl(fd[0], F_GETFL);
    fcntl(fd[0], F_SETFL, fl | O_NONBLOCK);
    for (int k = 0; k < 32; k++)
        (void)send(fd[0], buf, 1 << 20, MSG_NOSIGNAL);
    send_all(fd[2], buf, 1000);
    free(buf);
    sleep_ms(100);
    env_stop(&e);
    for (int i = 0; i < 6; i++)
        close(fd[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_ways),      cmocka_unit_test(test_paused_before),
        cmocka_unit_test(test_held_before),    cmocka_unit_test(test_slow_reader),
        cmocka_unit_test(test_close_and_idle), cmocka_unit_test(test_refused),
        cmocka_unit_test(test_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
