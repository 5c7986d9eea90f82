/*
 * test_peerconn.c - peer connections (sockets/peerconn.h) over real
 * loopback TCP in a threaded runtime: handshake and hellos, messages of
 * random sizes on two channels both ways at once, a wrong identity, a man
 * in the middle swapping ephemeral keys, a slow reader that must not stall
 * the other channel or ping/pong, injected faults, and an evil peer (a
 * blocking socket speaking secret.h by hand) whose violations must each give
 * exactly one WB_EV_PEER_CLOSED.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/mconn.h"
#include "sockets/peerconn.h"
#include "sockets/secret.h"
#include "sockets/tcp.h"

#define CH_A  0x10
#define CH_B  0x20
#define EV_GO (WB_EV_USER + 1)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

typedef struct {
    wb_rt_t *rt;
    uint64_t actor, listener, pc;
    uint64_t reader_a; /* nonzero: CH_A's reader is this other actor */
    wb_actor_t *self;
    uint8_t pk[32], sk[64];
    uint16_t port;
    wb_peerconn_opts_t opts;
    wb_mconn_chan_t chans[2];
    wb_peerconn_faults_t faults;
    int autostart;
    /* what happened */
    int ready, nclosed, close_status, started;
    char reason[256];
    uint8_t remote[32];
    char hello[64];
    uint64_t got[2], bad, bytes[2];
    int slow_us;          /* per message on CH_A */
    uint64_t b_done_at_a; /* CH_A messages seen when the last CH_B one came */
    /* what to send */
    uint32_t to_send[2], sent[2], max_size;
} node_t;

static size_t msg_size(int c, uint32_t k, uint32_t max)
{
    uint32_t h = (uint32_t)(c + 1) * 2654435761u ^ (k * 40503u);
    h ^= h >> 13;
    return max ? (h * 2246822519u) % (max + 1) : 0;
}

static uint8_t msg_byte(int c, uint32_t k, size_t i)
{
    return (uint8_t)(c * 31 + k * 7 + i * 13 + (i >> 8));
}

static int chan_index(uint8_t ch)
{
    return ch == CH_A ? 0 : 1;
}

static void pump(node_t *n)
{
    for (int c = 0; c < 2; c++) {
        while (n->sent[c] < n->to_send[c]) {
            size_t len = msg_size(c, n->sent[c], n->max_size);
            wb_event_t *ev = wb_event_new(WB_EV_USER, len);
            assert_non_null(ev);
            for (size_t i = 0; i < len; i++)
                ((uint8_t *)ev->data)[i] = msg_byte(c, n->sent[c], i);
            int rc = wb_peer_send(n->rt, n->self, n->pc, c == 0 ? CH_A : CH_B, ev);
            if (rc != 0) {
                wb_event_free(ev);
                if (rc != WB_EAGAIN) {
                    fprintf(stderr, "send: %s\n", wb_strerror(rc));
                    n->bad++;
                }
                break;
            }
            n->sent[c]++;
        }
    }
}

static void node_handle(wb_actor_t *self, wb_event_t *ev)
{
    node_t *n = wb_actor_state(self);
    n->self = self;
    pthread_mutex_lock(&mu);
    switch (ev->type) {
    case WB_EV_TCP_LISTENING:
        n->port = (uint16_t)ev->cookie;
        break;
    case WB_EV_TCP_OPENED: {
        uint64_t pc;
        if (wb_peerconn_accept(n->rt, self, ev->src, ev->data, &n->opts, &pc) == 0)
            n->pc = pc;
        break;
    }
    case WB_EV_PEER_READY: {
        const wb_peer_ready_t *r = ev->data;
        memcpy(n->remote, r->remote_id, 32);
        snprintf(n->hello, sizeof(n->hello), "%.*s", (int)r->hello_len, (const char *)r->hello);
        n->pc = ev->src;
        n->ready++;
        if (n->autostart) {
            wb_peer_route_t routes[2] = {{CH_A, n->reader_a ? n->reader_a : n->actor},
                                         {CH_B, n->actor}};
            assert_int_equal(wb_peerconn_start(n->rt, self, ev->src, routes, 2), 0);
            n->started = 1;
        }
        break;
    }
    case WB_EV_PEER_CLOSED:
        n->nclosed++;
        n->close_status = ev->status;
        snprintf(n->reason, sizeof(n->reason), "%.*s", (int)ev->len, (const char *)ev->data);
        break;
    case WB_EV_PEER_MSG: {
        int c = chan_index((uint8_t)ev->cookie);
        uint32_t k = (uint32_t)n->got[c];
        size_t len = msg_size(c, k, n->max_size);
        int ok = ev->len == len;
        for (size_t i = 0; ok && i < len; i++)
            ok = ((uint8_t *)ev->data)[i] == msg_byte(c, k, i);
        if (!ok)
            n->bad++;
        n->got[c]++;
        n->bytes[c] += ev->len;
        if (c == 1)
            n->b_done_at_a = n->got[0];
        if (c == 0 && n->slow_us > 0) {
            pthread_mutex_unlock(&mu);
            usleep((useconds_t)n->slow_us);
            pthread_mutex_lock(&mu);
        }
        break;
    }
    case WB_EV_PEER_SENDABLE:
    case EV_GO:
        pump(n);
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    wb_event_free(ev);
}

static const wb_actor_def_t node_def = {.name = "test-node", .handle = node_handle};

/* CH_A's slow reader: the same checks, on its own actor (own mailbox). */
static void slow_handle(wb_actor_t *self, wb_event_t *ev)
{
    node_handle(self, ev);
}

static const wb_actor_def_t slow_def = {.name = "test-slow", .handle = slow_handle};

static void spawn_slow_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    assert_int_equal(wb_actor_spawn(rt, NULL, &slow_def, n, &n->reader_a), 0);
}

static void node_init(node_t *n, wb_rt_t *rt, uint32_t max_message)
{
    memset(n, 0, sizeof(*n));
    n->rt = rt;
    n->autostart = 1;
    wb_sc_keypair(n->pk, n->sk);
    n->chans[0] = (wb_mconn_chan_t){.id = CH_A, .priority = 1, .max_message = max_message};
    n->chans[1] = (wb_mconn_chan_t){.id = CH_B, .priority = 3, .max_message = max_message};
    wb_peerconn_opts_init(&n->opts);
    n->opts.id_sk = n->sk;
    n->opts.chans = n->chans;
    n->opts.nchans = 2;
    n->opts.hello = "hello from a test node";
    n->opts.hello_len = strlen(n->opts.hello);
    n->opts.handshake_timeout_ms = 5000;
}

static void spawn_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    assert_int_equal(wb_actor_spawn(rt, NULL, &node_def, n, &n->actor), 0);
    n->self = wb_actor_lookup(rt, n->actor);
}

static void listen_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    wb_tcp_opts_t t;
    wb_tcp_opts_init(&t);
    t.raw = 1;
    t.start_paused = 1;
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, n->actor, "127.0.0.1", 0, &t, &n->listener),
                     0);
}

static node_t *dial_target;
static const uint8_t *dial_expect;

static void dial_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    wb_peerconn_opts_t o = n->opts;
    o.expect_pk = dial_expect;
    uint64_t pc;
    assert_int_equal(wb_peerconn_dial(rt, n->self, "127.0.0.1", dial_target->port, &o, &pc), 0);
    n->pc = pc;
}

static void go_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    pthread_mutex_lock(&mu);
    pump(n);
    pthread_mutex_unlock(&mu);
}

static void close_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    wb_peerconn_close(rt, n->self, n->pc, 0, "test is done");
}

static void call(wb_rt_t *rt, wb_call_cb fn, void *arg)
{
    assert_int_equal(wb_rt_call(rt, WB_LANE_ACTOR, fn, arg), 0);
}

/* Wait until cond(arg) holds, at most secs. */
static int wait_until(int (*cond)(void *), void *arg, int secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += secs;
    pthread_mutex_lock(&mu);
    while (!cond(arg))
        if (pthread_cond_timedwait(&cv, &mu, &ts) != 0)
            break;
    int ok = cond(arg);
    pthread_mutex_unlock(&mu);
    return ok;
}

static int has_port(void *a)
{
    return ((node_t *)a)->port != 0;
}
static int is_ready(void *a)
{
    return ((node_t *)a)->ready > 0;
}
static int is_closed(void *a)
{
    return ((node_t *)a)->nclosed > 0;
}
static int all_got(void *a)
{
    node_t *n = a;
    return n->got[0] >= n->to_send[0] && n->got[1] >= n->to_send[1];
}

static wb_rt_t *rt_up_mb(uint32_t mailbox_limit)
{
    wb_rt_t *rt;
    wb_rt_config_t c;
    wb_rt_config_init(&c);
    if (mailbox_limit)
        c.mailbox_limit = mailbox_limit;
    assert_int_equal(wb_rt_new(&rt, &c), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    return rt;
}

static wb_rt_t *rt_up(void)
{
    return rt_up_mb(0);
}

/* Two nodes: a listens, b dials (expecting `expect`, a's key when NULL). */
static void pair_up(wb_rt_t *rt, node_t *a, node_t *b, const uint8_t *expect)
{
    call(rt, spawn_cb, a);
    call(rt, spawn_cb, b);
    call(rt, listen_cb, a);
    assert_true(wait_until(has_port, a, 5));
    dial_target = a;
    dial_expect = expect ? expect : a->pk;
    call(rt, dial_cb, b);
}

/* ---- the tests ---- */

static void both_ways(node_t *a, node_t *b, uint32_t n0, uint32_t n1, uint32_t max_size)
{
    a->max_size = b->max_size = max_size;
    a->to_send[0] = b->to_send[0] = n0;
    a->to_send[1] = b->to_send[1] = n1;
    call(a->rt, go_cb, a);
    call(a->rt, go_cb, b);
    /* each side checks what the other sent: the same generator */
    assert_true(wait_until(all_got, a, 60));
    assert_true(wait_until(all_got, b, 60));
    pthread_mutex_lock(&mu);
    assert_int_equal(a->bad, 0);
    assert_int_equal(b->bad, 0);
    assert_int_equal(a->nclosed, 0);
    assert_int_equal(b->nclosed, 0);
    pthread_mutex_unlock(&mu);
}

static void test_roundtrip(void **state)
{
    wb_rt_t *rt = rt_up();
    node_t a, b;
    node_init(&a, rt, 1 << 20);
    node_init(&b, rt, 1 << 20);
    pair_up(rt, &a, &b, NULL);
    assert_true(wait_until(is_ready, &a, 10));
    assert_true(wait_until(is_ready, &b, 10));
    pthread_mutex_lock(&mu);
    assert_memory_equal(a.remote, b.pk, 32); /* each proved who it is */
    assert_memory_equal(b.remote, a.pk, 32);
    assert_string_equal(a.hello, "hello from a test node");
    pthread_mutex_unlock(&mu);
    both_ways(&a, &b, 300, 300, 100000);
    /* empty messages too */
    both_ways(&a, &b, 310, 320, 0);
    call(rt, close_cb, &a);
    assert_true(wait_until(is_closed, &a, 10));
    assert_true(wait_until(is_closed, &b, 10));
    usleep(100 * 1000);
    pthread_mutex_lock(&mu);
    assert_int_equal(a.nclosed, 1);
    assert_int_equal(b.nclosed, 1);
    assert_int_equal(a.close_status, 0);
    assert_string_equal(a.reason, "test is done");
    pthread_mutex_unlock(&mu);
    wb_rt_free(rt);
}

static void test_wrong_identity(void **state)
{
    wb_rt_t *rt = rt_up();
    node_t a, b;
    node_init(&a, rt, 4096);
    node_init(&b, rt, 4096);
    uint8_t other_pk[32], other_sk[64];
    wb_sc_keypair(other_pk, other_sk);
    pair_up(rt, &a, &b, other_pk);
    assert_true(wait_until(is_closed, &b, 10));
    pthread_mutex_lock(&mu);
    assert_int_equal(b.ready, 0);
    assert_int_equal(b.close_status, WB_EPROTO);
    assert_non_null(strstr(b.reason, "expected"));
    pthread_mutex_unlock(&mu);
    assert_true(wait_until(is_closed, &a, 10));
    wb_rt_free(rt);
}

/* ---- a man in the middle: relays bytes, swapping ephemeral keys ---- */

typedef struct {
    wb_rt_t *rt;
    uint64_t actor, listener, down, up; /* down: the victim that dialed; up: our dial */
    uint16_t port, target;
    uint8_t hello_buf[2][WB_SC_HELLO_LEN];
    size_t hello_have[2];
    uint8_t fake_pk[32];
} mitm_t;

static void mitm_relay(mitm_t *m, int dir, wb_event_t *ev)
{
    /* dir 0: from down to up; 1: up to down. The first 36 bytes are a
     * hello: its key is replaced with ours. */
    const uint8_t *d = ev->data;
    size_t n = ev->len, off = 0;
    while (m->hello_have[dir] < WB_SC_HELLO_LEN && off < n)
        m->hello_buf[dir][m->hello_have[dir]++] = d[off++];
    if (m->hello_have[dir] == WB_SC_HELLO_LEN && off > 0) {
        memcpy(m->hello_buf[dir] + 4, m->fake_pk, 32);
        wb_event_t *h = wb_event_new_copy(0, m->hello_buf[dir], WB_SC_HELLO_LEN);
        wb_tcp_send(m->rt, dir == 0 ? m->up : m->down, h);
    }
    if (off < n) {
        wb_event_t *rest = wb_event_new_copy(0, d + off, n - off);
        wb_tcp_send(m->rt, dir == 0 ? m->up : m->down, rest);
    }
}

static void mitm_handle(wb_actor_t *self, wb_event_t *ev)
{
    mitm_t *m = wb_actor_state(self);
    pthread_mutex_lock(&mu);
    if (ev->type == WB_EV_TCP_LISTENING) {
        m->port = (uint16_t)ev->cookie;
    } else if (ev->type == WB_EV_TCP_OPENED && ev->cookie == m->listener) {
        m->down = ev->src;
        wb_tcp_opts_t t;
        wb_tcp_opts_init(&t);
        t.raw = 1;
        wb_tcp_dial(m->rt, WB_LANE_ACTOR, m->actor, "127.0.0.1", m->target, &t, &m->up);
        wb_tcp_resume(m->rt, m->down);
    } else if (ev->type == WB_EV_TCP_BLOB) {
        mitm_relay(m, ev->src == m->down ? 0 : 1, ev);
    } else if (ev->type == WB_EV_TCP_CLOSED) {
        wb_tcp_close(m->rt, ev->src == m->down ? m->up : m->down);
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    wb_event_free(ev);
}

static const wb_actor_def_t mitm_def = {.name = "mitm", .handle = mitm_handle};

static void mitm_cb(wb_rt_t *rt, void *arg)
{
    mitm_t *m = arg;
    assert_int_equal(wb_actor_spawn(rt, NULL, &mitm_def, m, &m->actor), 0);
    wb_tcp_opts_t t;
    wb_tcp_opts_init(&t);
    t.raw = 1;
    t.start_paused = 1;
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, m->actor, "127.0.0.1", 0, &t, &m->listener),
                     0);
}

static int mitm_port(void *a)
{
    return ((mitm_t *)a)->port != 0;
}

static void test_mitm_detected(void **state)
{
    wb_rt_t *rt = rt_up();
    node_t a, b;
    node_init(&a, rt, 4096);
    node_init(&b, rt, 4096);
    call(rt, spawn_cb, &a);
    call(rt, spawn_cb, &b);
    call(rt, listen_cb, &a);
    assert_true(wait_until(has_port, &a, 5));
    mitm_t m = {.rt = rt, .target = a.port};
    uint8_t fake_sk[32];
    crypto_box_keypair(m.fake_pk, fake_sk);
    call(rt, mitm_cb, &m);
    assert_true(wait_until(mitm_port, &m, 5));
    node_t target = a;
    target.port = m.port; /* b dials the man in the middle, expecting a */
    dial_target = &target;
    dial_expect = a.pk;
    call(rt, dial_cb, &b);
    assert_true(wait_until(is_closed, &b, 10));
    assert_true(wait_until(is_closed, &a, 10));
    pthread_mutex_lock(&mu);
    assert_int_equal(a.ready, 0);
    assert_int_equal(b.ready, 0);
    assert_int_equal(a.close_status, WB_EPROTO);
    assert_int_equal(b.close_status, WB_EPROTO);
    pthread_mutex_unlock(&mu);
    wb_rt_free(rt);
}

/* A slow reader on CH_A holds back CH_A only: CH_B's messages overtake,
 * pings are answered, nothing closes. */
static void test_slow_reader(void **state)
{
    wb_rt_t *rt = rt_up_mb(16); /* a reader's mailbox fills at 16 messages */
    node_t a, b;
    node_init(&a, rt, 65536);
    node_init(&b, rt, 65536);
    for (int i = 0; i < 2; i++) {
        node_t *n = i ? &b : &a;
        n->opts.mconn.ping_ms = 300;
        n->opts.mconn.pong_timeout_ms = 250;
        n->chans[0].recv_window = 16384;
    }
    call(rt, spawn_slow_cb, &a);
    pair_up(rt, &a, &b, NULL);
    assert_true(wait_until(is_ready, &a, 10));
    assert_true(wait_until(is_ready, &b, 10));
    pthread_mutex_lock(&mu);
    a.slow_us = 2000; /* 400 messages: 0.8 s */
    b.max_size = a.max_size = 4096;
    b.to_send[0] = 400;
    pthread_mutex_unlock(&mu);
    call(rt, go_cb, &b);
    usleep(50 * 1000);
    pthread_mutex_lock(&mu);
    b.to_send[1] = 50;
    pthread_mutex_unlock(&mu);
    call(rt, go_cb, &b);
    pthread_mutex_lock(&mu);
    a.to_send[0] = 400;
    a.to_send[1] = 50;
    pthread_mutex_unlock(&mu);
    assert_true(wait_until(all_got, &a, 60));
    pthread_mutex_lock(&mu);
    uint64_t bad = a.bad, b_done_at_a = a.b_done_at_a;
    int nclosed = a.nclosed + b.nclosed;
    pthread_mutex_unlock(&mu);
    assert_int_equal(bad, 0);
    assert_true(b_done_at_a < 300); /* CH_B finished long before CH_A's backlog did */
    assert_int_equal(nclosed, 0);
    wb_rt_free(rt);
}

/* Faults on both ends: short reads and writes, delays; everything arrives. */
static void test_faults(void **state)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        wb_rt_t *rt = rt_up();
        node_t a, b;
        node_init(&a, rt, 1 << 16);
        node_init(&b, rt, 1 << 16);
        a.faults = (wb_peerconn_faults_t){.seed = seed, .short_pct = 60, .max_delay_ms = 3};
        b.faults = (wb_peerconn_faults_t){.seed = seed * 77, .short_pct = 60, .max_delay_ms = 3};
        a.opts.faults = &a.faults;
        b.opts.faults = &b.faults;
        pair_up(rt, &a, &b, NULL);
        assert_true(wait_until(is_ready, &a, 10));
        assert_true(wait_until(is_ready, &b, 10));
        both_ways(&a, &b, 40, 40, 20000);
        wb_rt_free(rt);
    }
}

/* Injected resets end the connection with one CLOSED on each side. */
static void test_fault_reset(void **state)
{
    wb_rt_t *rt = rt_up();
    node_t a, b;
    node_init(&a, rt, 1 << 16);
    node_init(&b, rt, 1 << 16);
    a.faults = (wb_peerconn_faults_t){.seed = 9, .reset_per_mille = 200};
    a.opts.faults = &a.faults;
    pair_up(rt, &a, &b, NULL);
    assert_true(wait_until(is_ready, &a, 10));
    a.max_size = b.max_size = 1000;
    b.to_send[0] = 1000;
    call(rt, go_cb, &b);
    assert_true(wait_until(is_closed, &a, 10));
    assert_true(wait_until(is_closed, &b, 10));
    usleep(100 * 1000);
    pthread_mutex_lock(&mu);
    assert_int_equal(a.nclosed, 1);
    assert_int_equal(b.nclosed, 1);
    assert_non_null(strstr(a.reason, "injected"));
    pthread_mutex_unlock(&mu);
    wb_rt_free(rt);
}

/* ---- an evil peer: a blocking socket speaking the protocol by hand ---- */

typedef struct {
    int fd;
    wb_sc_t sc;
    uint8_t pk[32], sk[64];
    uint8_t buf[1 << 17];
    size_t have;
} evil_t;

static void evil_write(evil_t *e, const void *p, size_t n)
{
    const uint8_t *d = p;
    while (n > 0) {
        ssize_t w = write(e->fd, d, n);
        assert_true(w > 0);
        d += w;
        n -= (size_t)w;
    }
}

static void evil_seal(evil_t *e, const void *p, size_t n)
{
    uint8_t out[WB_SC_MAX_FRAME + 64];
    long s = wb_sc_seal(&e->sc, p, n, WB_SC_MAX_FRAME, out);
    assert_true(s > 0);
    evil_write(e, out, (size_t)s);
}

static void evil_read_some(evil_t *e)
{
    ssize_t r = read(e->fd, e->buf + e->have, sizeof(e->buf) - e->have);
    assert_true(r > 0);
    e->have += (size_t)r;
}

/* Connect to node n, do the handshake and the hellos; n's owner starts. */
static void evil_connect(evil_t *e, node_t *n)
{
    memset(e, 0, sizeof(*e));
    wb_sc_keypair(e->pk, e->sk);
    e->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(n->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(e->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {5, 0};
    setsockopt(e->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t hello[WB_SC_HELLO_LEN], auth[WB_SC_AUTH_WIRE_LEN];
    assert_int_equal(wb_sc_init(&e->sc, e->sk, n->pk, NULL, hello), 0);
    evil_write(e, hello, sizeof(hello));
    int rc = 0;
    while (rc == 0) {
        evil_read_some(e);
        size_t used, alen = 0;
        rc = wb_sc_handshake(&e->sc, e->buf, e->have, &used, auth, &alen);
        assert_true(rc >= 0);
        if (alen)
            evil_write(e, auth, alen);
        memmove(e->buf, e->buf + used, e->have - used);
        e->have -= used;
    }
    uint8_t h[] = "\x01{}";
    evil_seal(e, h, 3);
    /* its hello frame */
    for (;;) {
        size_t used;
        const uint8_t *plain;
        size_t plen;
        int r = e->have ? wb_sc_open(&e->sc, e->buf, e->have, &used, &plain, &plen) : 0;
        if (r == 1) {
            memmove(e->buf, e->buf + used, e->have - used);
            e->have -= used;
            break;
        }
        assert_true(r == 0);
        e->have = 0;
        evil_read_some(e);
    }
    assert_true(wait_until(is_ready, n, 5));
}

static void evil_violation(const char *what, const uint8_t *pkt, size_t len, const char *expect,
                           uint32_t ping_ms)
{
    wb_rt_t *rt = rt_up();
    node_t a;
    node_init(&a, rt, 4096);
    if (ping_ms) {
        a.opts.mconn.ping_ms = ping_ms;
        a.opts.mconn.pong_timeout_ms = ping_ms / 2;
    }
    call(rt, spawn_cb, &a);
    call(rt, listen_cb, &a);
    assert_true(wait_until(has_port, &a, 5));
    evil_t *e = malloc(sizeof(*e));
    evil_connect(e, &a);
    if (len > 0)
        evil_seal(e, pkt, len);
    else if (pkt == NULL && !ping_ms)
        close(e->fd), e->fd = -1;
    assert_true(wait_until(is_closed, &a, 10));
    usleep(100 * 1000);
    pthread_mutex_lock(&mu);
    assert_int_equal(a.nclosed, 1);
    if (strstr(a.reason, expect) == NULL)
        fail_msg("%s: reason \"%s\", expected \"%s\"", what, a.reason, expect);
    pthread_mutex_unlock(&mu);
    if (e->fd >= 0)
        close(e->fd);
    wb_sc_fini(&e->sc);
    free(e);
    wb_rt_free(rt);
}

static void test_evil_unknown_channel(void **state)
{
    uint8_t p[] = {WB_MCONN_PKT_MSG, 0x77, 1, 0, 1, 'x'};
    evil_violation("unknown channel", p, sizeof(p), "unknown channel", 0);
}

static void test_evil_unknown_packet(void **state)
{
    uint8_t p[] = {0x09};
    evil_violation("unknown packet", p, sizeof(p), "unknown packet type", 0);
}

static void test_evil_closed(void **state)
{
    evil_violation("socket closed", NULL, 0, "peer closed", 0);
}

static void test_evil_pong_timeout(void **state)
{
    evil_violation("pong timeout", NULL, 0, "pong timeout", 200);
}

/* A message of exactly max_message arrives; one byte more closes. */
static void test_evil_max_message(void **state)
{
    for (int over = 0; over <= 1; over++) {
        wb_rt_t *rt = rt_up();
        node_t a;
        node_init(&a, rt, 4096);
        call(rt, spawn_cb, &a);
        call(rt, listen_cb, &a);
        assert_true(wait_until(has_port, &a, 5));
        evil_t *e = malloc(sizeof(*e));
        evil_connect(e, &a);
        size_t total = 4096 + (size_t)over, off = 0;
        uint8_t pkt[1100];
        while (off < total) {
            size_t n = total - off > 1024 ? 1024 : total - off;
            pkt[0] = WB_MCONN_PKT_MSG;
            pkt[1] = CH_A;
            pkt[2] = off + n == total;
            pkt[3] = (uint8_t)(n >> 8);
            pkt[4] = (uint8_t)n;
            for (size_t i = 0; i < n; i++)
                pkt[5 + i] = msg_byte(0, 0, off + i);
            evil_seal(e, pkt, 5 + n);
            off += n;
        }
        if (over) {
            assert_true(wait_until(is_closed, &a, 10));
            pthread_mutex_lock(&mu);
            int exceeds = strstr(a.reason, "exceeds") != NULL;
            uint64_t got = a.got[0];
            pthread_mutex_unlock(&mu);
            assert_true(exceeds);
            assert_int_equal(got, 0);
        } else {
            struct timespec d = {0, 300 * 1000 * 1000};
            nanosleep(&d, NULL);
            pthread_mutex_lock(&mu);
            uint64_t got = a.got[0], bytes = a.bytes[0];
            int nclosed = a.nclosed;
            pthread_mutex_unlock(&mu);
            assert_int_equal(got, 1);
            assert_int_equal(nclosed, 0);
            assert_int_equal(bytes, 4096);
        }
        close(e->fd);
        wb_sc_fini(&e->sc);
        free(e);
        wb_rt_free(rt);
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_wrong_identity),
        cmocka_unit_test(test_mitm_detected),
        cmocka_unit_test(test_slow_reader),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_fault_reset),
        cmocka_unit_test(test_evil_unknown_channel),
        cmocka_unit_test(test_evil_unknown_packet),
        cmocka_unit_test(test_evil_closed),
        cmocka_unit_test(test_evil_pong_timeout),
        cmocka_unit_test(test_evil_max_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
