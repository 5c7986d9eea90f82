/*
 * test_pex.c - the peer exchange reactor (apps/peer/pex.h) on real
 * switches in threaded runtimes over loopback: a seed and twelve nodes that
 * know only the seed converge (some behind the fault-injecting wrapper);
 * a hand-written peer that breaks the rules (requests too often,
 * addresses nobody asked for, malformed messages) is disconnected while a
 * polite one gets addresses from the book; seeds are dialed only by a node
 * with nobody to talk to; a dial that reaches another key bans the address;
 * the book survives a restart through the database lane.
 */
#include <arpa/inet.h>
#include <errno.h>
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

#include "apps/peer/addrbook_store.h"
#include "apps/peer/netaddr.h"
#include "apps/peer/nodeinfo.h"
#include "apps/peer/pex.h"
#include "apps/peer/pex_proto.h"
#include "apps/peer/switch.h"
#include "db/db.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/mconn.h"
#include "sockets/peerconn.h"
#include "sockets/secret.h"
#include "sockets/tcp.h"

#define NETWORK  "pex-test"
#define MAX_SEEN 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

typedef struct {
    wb_rt_t *rt;
    int idx;
    uint8_t pk[32], sk[64];
    /* configuration, set before start */
    int listen, seed_mode, persist, faulty;
    uint32_t ensure_ms, max_out;
    char seed_text[WB_NETADDR_STRLEN];
    const char *seeds[1];
    const uint8_t *dial_pk; /* a persistent peer dialed at start */
    uint16_t dial_port;
    wb_peerconn_faults_t faults;
    /* made on the actor lane */
    wb_switch_t *sw;
    uint64_t parent, pex;
    int rc;
    /* seen by the parent (under mu) */
    uint16_t port;
    int listen_failed;
    uint32_t inbound_added;
    uint8_t inbound_ids[MAX_SEEN][32];
} node_t;

/* The switch's parent: the listening port and the inbound peers. */
static void parent_handle(wb_actor_t *self, wb_event_t *ev)
{
    node_t *n = wb_actor_state(self);
    pthread_mutex_lock(&mu);
    if (ev->type == WB_EV_SWITCH_LISTENING) {
        if (ev->status < 0)
            n->listen_failed = 1;
        else
            n->port = (uint16_t)ev->cookie;
    } else if (ev->type == WB_EV_SWITCH_PEER_ADDED) {
        const wb_switch_peer_t *p = ev->data;
        if (!p->outbound) {
            if (n->inbound_added < MAX_SEEN)
                memcpy(n->inbound_ids[n->inbound_added], p->id, 32);
            n->inbound_added++;
        }
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    wb_event_free(ev);
}

static const wb_actor_def_t parent_def = {.name = "test-parent", .handle = parent_handle};

static void node_init(node_t *n, wb_rt_t *rt, int idx)
{
    memset(n, 0, sizeof(*n));
    n->rt = rt;
    n->idx = idx;
    n->listen = 1;
    n->ensure_ms = 200;
    n->max_out = 10;
    wb_sc_keypair(n->pk, n->sk);
}

/* n will know seed s (its "ID@127.0.0.1:port"). */
static void node_set_seed(node_t *n, const node_t *s)
{
    char hex[WB_NODE_ID_HEX + 1];
    wb_node_id_hex(s->pk, hex);
    snprintf(n->seed_text, sizeof(n->seed_text), "%s@127.0.0.1:%u", hex, s->port);
    n->seeds[0] = n->seed_text;
}

/* On the actor lane: parent, switch, PEX reactor, start. Failures go to
 * n->rc (asserted on the test's thread). */
static void node_start_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    if ((n->rc = wb_actor_spawn(rt, NULL, &parent_def, n, &n->parent)) != 0)
        return;
    wb_actor_t *parent = wb_actor_lookup(rt, n->parent);
    wb_switch_config_t c;
    wb_switch_config_init(&c);
    c.id_sk = n->sk;
    c.network = NETWORK;
    char mon[16];
    snprintf(mon, sizeof(mon), "n%d", n->idx);
    c.moniker = mon;
    c.listen_host = n->listen ? "127.0.0.1" : NULL;
    c.max_outbound = n->max_out;
    c.redial_min_ms = 100;
    c.redial_max_ms = 400;
    c.seed = (uint64_t)n->idx + 1;
    c.conn.handshake_timeout_ms = 5000;
    if (n->faulty)
        c.conn.faults = &n->faults;
    if ((n->rc = wb_switch_new(rt, parent, &c, &n->sw)) != 0)
        return;
    wb_pex_config_t pc;
    wb_pex_config_init(&pc);
    pc.ensure_ms = n->ensure_ms;
    pc.seed_mode = n->seed_mode;
    pc.persist = n->persist;
    pc.seed = (uint64_t)n->idx * 7919 + 3;
    if (n->seeds[0] != NULL) {
        pc.seeds = n->seeds;
        pc.nseeds = 1;
    }
    if ((n->rc = wb_pex_new(rt, parent, n->sw, &pc, &n->pex)) != 0)
        return;
    if (n->dial_pk != NULL &&
        (n->rc = wb_switch_dial(n->sw, n->dial_pk, "127.0.0.1", n->dial_port, 1)) != 0)
        return;
    n->rc = wb_switch_start(n->sw);
}

/* Run fn on the actor lane and wait for it. */
static int done_flag;
typedef struct {
    wb_call_cb fn;
    void *arg;
} sync_t;

static void sync_cb(wb_rt_t *rt, void *arg)
{
    sync_t *s = arg;
    s->fn(rt, s->arg);
    pthread_mutex_lock(&mu);
    done_flag = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void call_sync(wb_rt_t *rt, wb_call_cb fn, void *arg)
{
    sync_t s = {fn, arg};
    pthread_mutex_lock(&mu);
    done_flag = 0;
    pthread_mutex_unlock(&mu);
    assert_int_equal(wb_rt_call(rt, WB_LANE_ACTOR, sync_cb, &s), 0);
    pthread_mutex_lock(&mu);
    while (!done_flag)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

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
    node_t *n = a;
    return n->port != 0 || n->listen_failed;
}

/* The nodes started, so that a runtime's can be stopped before it is. */
static node_t *started[64];
static size_t nstarted;

static void start_node(node_t *n)
{
    call_sync(n->rt, node_start_cb, n);
    assert_int_equal(n->rc, 0);
    assert_true(nstarted < sizeof(started) / sizeof(started[0]));
    started[nstarted++] = n;
    if (n->listen) {
        assert_true(wait_until(has_port, n, 5));
        pthread_mutex_lock(&mu);
        int failed = n->listen_failed;
        pthread_mutex_unlock(&mu);
        assert_int_equal(failed, 0);
    }
}

static uint16_t node_port(node_t *n)
{
    pthread_mutex_lock(&mu);
    uint16_t p = n->port;
    pthread_mutex_unlock(&mu);
    return p;
}

static uint32_t node_inbound(node_t *n)
{
    pthread_mutex_lock(&mu);
    uint32_t k = n->inbound_added;
    pthread_mutex_unlock(&mu);
    return k;
}

/* 1 when the node's parent saw an inbound peer with this id. */
static int node_saw(node_t *n, const uint8_t id[32])
{
    int seen = 0;
    pthread_mutex_lock(&mu);
    for (uint32_t i = 0; i < n->inbound_added && i < MAX_SEEN; i++)
        seen |= memcmp(n->inbound_ids[i], id, 32) == 0;
    pthread_mutex_unlock(&mu);
    return seen;
}

/* A snapshot of one node: its switch's counts and its PEX stats. */
typedef struct {
    node_t *n;
    int rc;
    uint32_t out, in, dialing;
    wb_pex_stats_t st;
} snap_t;

static void snap_cb(wb_rt_t *rt, void *arg)
{
    snap_t *s = arg;
    wb_switch_counts(s->n->sw, &s->out, &s->in, &s->dialing);
    s->rc = wb_pex_stats(rt, s->n->pex, &s->st);
}

static snap_t snap(node_t *n)
{
    snap_t s = {.n = n};
    call_sync(n->rt, snap_cb, &s);
    assert_int_equal(s.rc, 0);
    return s;
}

typedef struct {
    node_t *from, *to;
    int rc;
} dial_t;

static void dial_cb(wb_rt_t *rt, void *arg)
{
    dial_t *d = arg;
    d->rc = wb_switch_dial(d->from->sw, d->to->pk, "127.0.0.1", d->to->port, 0);
}

static void dial(node_t *from, node_t *to)
{
    dial_t d = {from, to, 0};
    call_sync(from->rt, dial_cb, &d);
    assert_int_equal(d.rc, 0);
}

static wb_rt_t *rt_up(const wb_db_config_t *db)
{
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    if (db != NULL)
        assert_int_equal(wb_db_attach(rt, db), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    return rt;
}

static void kill_nodes_cb(wb_rt_t *rt, void *arg)
{
    for (size_t i = 0; i < nstarted;) {
        node_t *n = started[i];
        if (n->rt != rt) {
            i++;
            continue;
        }
        wb_actor_kill(rt, n->parent); /* the switch, PEX and connections go with it */
        n->sw = NULL;
        started[i] = started[--nstarted];
    }
}

/* End the runtime's nodes first (nothing is dialing or spawning while it
 * stops), then the runtime. */
static void rt_down(wb_rt_t *rt)
{
    call_sync(rt, kill_nodes_cb, NULL);
    wb_rt_free(rt);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Poll book_size of n (every 20 ms, at most secs) until it is want. */
static uint32_t wait_book(node_t *n, uint32_t want, int secs)
{
    snap_t s = snap(n);
    for (int i = 0; i < secs * 50 && s.st.book_size != want; i++) {
        usleep(20 * 1000);
        s = snap(n);
    }
    return s.st.book_size;
}

/* ---- convergence ---- */

/* Twelve nodes, three outbound peers each. Not eight: three of seven
 * others would need 24 of the 28 pairs, and PEX (like tendermint's) never
 * drops a peer to make room, so a node that five others dialed first could
 * never have its third; with eleven others that takes nine. */
#define NNODES 12

static void test_convergence(void **state)
{
    wb_rt_t *rt = rt_up(NULL);
    static node_t seed, nodes[NNODES];
    node_init(&seed, rt, 100);
    seed.seed_mode = 1;
    start_node(&seed);
    for (int i = 0; i < NNODES; i++) {
        node_init(&nodes[i], rt, i);
        nodes[i].max_out = 3;
        node_set_seed(&nodes[i], &seed);
        if (i % 3 == 1) { /* some behind the fault-injecting wrapper */
            nodes[i].faulty = 1;
            nodes[i].faults =
                (wb_peerconn_faults_t){.seed = (uint64_t)i + 1, .short_pct = 50, .max_delay_ms = 3};
        }
        start_node(&nodes[i]);
    }
    double t0 = now_s();
    /* Every node has its 3 outbound peers, the seed none left, every book
     * knows the other nodes (and maybe the seed). */
    int ok = 0;
    snap_t s[NNODES], ss = {0};
    while (!ok && now_s() - t0 < 20) {
        usleep(50 * 1000);
        ok = 1;
        for (int i = 0; i < NNODES; i++) {
            s[i] = snap(&nodes[i]);
            ok &= s[i].out == 3 && s[i].st.book_size >= NNODES - 1;
        }
        ss = snap(&seed);
        ok &= ss.out + ss.in + ss.dialing == 0;
    }
    double took = now_s() - t0;
    for (int i = 0; i < NNODES; i++) {
        if (s[i].out != 3 || s[i].st.book_size < NNODES - 1)
            fail_msg("node %d: %u outbound, %u inbound, %u dialing, book %u (after %.1f s)", i,
                     s[i].out, s[i].in, s[i].dialing, s[i].st.book_size, took);
        assert_true(s[i].st.book_size <= NNODES); /* nothing but the nodes and the seed */
        assert_true(s[i].st.requests_sent > 0);
        assert_true(s[i].st.dials >= 3);
        /* well-behaved peers are never taken for abusers */
        assert_int_equal(s[i].st.peers_dropped, 0);
    }
    assert_int_equal(ss.out + ss.in + ss.dialing, 0);
    /* The seed saw every node, answered them, and kept none. */
    for (int i = 0; i < NNODES; i++)
        assert_true(node_saw(&seed, nodes[i].pk));
    assert_true(ss.st.requests_answered >= NNODES);
    assert_true(ss.st.book_size >= NNODES);
    assert_int_equal(ss.st.peers_dropped, 0); /* hanging up is not an abuse */
    /* Stable: a moment later nothing changed. */
    usleep(300 * 1000);
    for (int i = 0; i < NNODES; i++)
        assert_int_equal(snap(&nodes[i]).out, 3);
    print_message("convergence: %.2f s\n", took);
    rt_down(rt);
}

/* ---- a peer speaking the protocol by hand ---- */

typedef struct {
    int fd;
    wb_sc_t sc;
    uint8_t pk[32], sk[64];
    uint8_t buf[1 << 17]; /* ciphertext not yet opened */
    size_t have;
    uint8_t pt[1 << 17]; /* plaintext: mconn packets */
    size_t ptlen;
    uint8_t msg[WB_PEX_MAX_MSG + 16]; /* a channel-0 message being put together */
    size_t mlen;
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
    static uint8_t out[WB_SC_MAX_FRAME + 64];
    long s = wb_sc_seal(&e->sc, p, n, WB_SC_MAX_FRAME, out);
    assert_true(s > 0);
    evil_write(e, out, (size_t)s);
}

/* Read more ciphertext: 1, 0 the node closed, -1 timed out. */
static int evil_read_some(evil_t *e)
{
    ssize_t r = read(e->fd, e->buf + e->have, sizeof(e->buf) - e->have);
    if (r > 0) {
        e->have += (size_t)r;
        return 1;
    }
    if (r == 0 || errno == ECONNRESET)
        return 0;
    return -1;
}

/* Open one frame: 1 with plain, 0 when more bytes are needed. */
static int evil_open(evil_t *e, const uint8_t **plain, size_t *plen)
{
    if (e->have == 0)
        return 0;
    size_t used;
    int r = wb_sc_open(&e->sc, e->buf, e->have, &used, plain, plen);
    assert_true(r >= 0);
    if (r == 0) {
        e->have = 0; /* taken into the session's buffer */
        return 0;
    }
    /* plain may point into buf: move it out of the way first */
    assert_true(e->ptlen + *plen <= sizeof(e->pt));
    memmove(e->pt + e->ptlen, *plain, *plen);
    *plain = e->pt + e->ptlen;
    memmove(e->buf, e->buf + used, e->have - used);
    e->have -= used;
    return 1;
}

/* Connect to n as a node of the test network whose NodeInfo says it
 * listens at `listen` ("" for nowhere), with identity sk (NULL: a new
 * one), do the handshake and the hellos,
 * grant the node credit on the PEX channel, and wait until n's switch has
 * taken us as a peer. */
static void evil_connect(evil_t *e, node_t *n, const char *listen, const uint8_t *sk)
{
    memset(e, 0, sizeof(*e));
    if (sk != NULL) {
        memcpy(e->sk, sk, 64);
        crypto_sign_ed25519_sk_to_pk(e->pk, e->sk);
    } else {
        wb_sc_keypair(e->pk, e->sk);
    }
    uint32_t before = node_inbound(n);
    e->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(node_port(n))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(e->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {5, 0};
    setsockopt(e->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t hello[WB_SC_HELLO_LEN], auth[WB_SC_AUTH_WIRE_LEN];
    assert_int_equal(wb_sc_init(&e->sc, e->sk, n->pk, NULL, hello), 0);
    evil_write(e, hello, sizeof(hello));
    int rc = 0;
    while (rc == 0) {
        assert_int_equal(evil_read_some(e), 1);
        size_t used, alen = 0;
        rc = wb_sc_handshake(&e->sc, e->buf, e->have, &used, auth, &alen);
        assert_true(rc >= 0);
        if (alen)
            evil_write(e, auth, alen);
        memmove(e->buf, e->buf + used, e->have - used);
        e->have -= used;
    }
    wb_nodeinfo_t ni = {0};
    memcpy(ni.id, e->pk, 32);
    strcpy(ni.network, NETWORK);
    strcpy(ni.version, "0.1.0");
    strcpy(ni.moniker, "evil");
    snprintf(ni.listen, sizeof(ni.listen), "%s", listen);
    ni.channels[0] = WB_PEX_CHANNEL;
    ni.nchannels = 1;
    static char js[4096];
    js[0] = 1; /* the hello's version byte */
    long jl = wb_nodeinfo_encode(&ni, js + 1, sizeof(js) - 1);
    assert_true(jl > 0);
    evil_seal(e, js, (size_t)jl + 1);
    /* The node may answer on channel 0 only with credit: grant it. */
    uint8_t credit[WB_MCONN_CREDIT_LEN] = {WB_MCONN_PKT_CREDIT, WB_PEX_CHANNEL, 0, 4, 0, 0};
    evil_seal(e, credit, sizeof(credit));
    /* Its hello frame, not kept. */
    const uint8_t *plain;
    size_t plen;
    while (evil_open(e, &plain, &plen) == 0)
        assert_int_equal(evil_read_some(e), 1);
    uint32_t want = before + 1;
    for (int i = 0; i < 250 && node_inbound(n) < want; i++)
        usleep(20 * 1000);
    assert_true(node_inbound(n) >= want);
}

static void evil_close(evil_t *e)
{
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    wb_sc_fini(&e->sc);
}

/* Send one PEX message (a single msg packet on channel 0). */
static void evil_send_pex(evil_t *e, const uint8_t *m, size_t len)
{
    uint8_t pkt[WB_MCONN_MSG_HEADER + 1024];
    assert_true(len <= 1024);
    pkt[0] = WB_MCONN_PKT_MSG;
    pkt[1] = WB_PEX_CHANNEL;
    pkt[2] = 1; /* EOF */
    pkt[3] = (uint8_t)(len >> 8);
    pkt[4] = (uint8_t)len;
    memcpy(pkt + WB_MCONN_MSG_HEADER, m, len);
    evil_seal(e, pkt, WB_MCONN_MSG_HEADER + len);
}

/* Take the packets in pt: 1 and *len when a channel-0 message completed. */
static int evil_parse(evil_t *e, size_t *len)
{
    for (;;) {
        if (e->ptlen == 0)
            return 0;
        size_t need;
        switch (e->pt[0]) {
        case WB_MCONN_PKT_PING:
        case WB_MCONN_PKT_PONG:
            need = 1;
            break;
        case WB_MCONN_PKT_CREDIT:
            need = WB_MCONN_CREDIT_LEN;
            break;
        case WB_MCONN_PKT_MSG:
            if (e->ptlen < WB_MCONN_MSG_HEADER)
                return 0;
            need = WB_MCONN_MSG_HEADER + ((size_t)e->pt[3] << 8 | e->pt[4]);
            break;
        default:
            fail_msg("unknown packet type 0x%02x from the node", e->pt[0]);
            return 0;
        }
        if (e->ptlen < need)
            return 0;
        int done = 0;
        if (e->pt[0] == WB_MCONN_PKT_MSG) {
            assert_int_equal(e->pt[1], WB_PEX_CHANNEL);
            size_t n = need - WB_MCONN_MSG_HEADER;
            assert_true(e->mlen + n <= sizeof(e->msg));
            memcpy(e->msg + e->mlen, e->pt + WB_MCONN_MSG_HEADER, n);
            e->mlen += n;
            if (e->pt[2] & 1) {
                *len = e->mlen;
                e->mlen = 0;
                done = 1;
            }
        }
        memmove(e->pt, e->pt + need, e->ptlen - need);
        e->ptlen -= need;
        if (done)
            return 1;
    }
}

/* The next PEX message from the node into e->msg: 1 and *len, 0 the node
 * closed the connection, -1 nothing within the socket's timeout. */
static int evil_recv(evil_t *e, size_t *len)
{
    for (;;) {
        if (evil_parse(e, len))
            return 1;
        const uint8_t *plain;
        size_t plen;
        if (evil_open(e, &plain, &plen)) {
            e->ptlen += plen;
            continue;
        }
        int r = evil_read_some(e);
        if (r <= 0)
            return r;
    }
}

/* Read until the node hangs up; returns the PEX messages that came first,
 * or -1 when it did not hang up within the socket's timeout. */
static int evil_until_closed(evil_t *e)
{
    int msgs = 0;
    size_t len;
    for (;;) {
        int r = evil_recv(e, &len);
        if (r == 0)
            return msgs;
        if (r < 0)
            return -1;
        msgs++;
    }
}

/* A target with three ordinary peers (inbound: their addresses go into its
 * book), then a peer speaking by hand. */
static void test_abuse(void **state)
{
    wb_rt_t *rt = rt_up(NULL);
    static node_t t, h[3];
    node_init(&t, rt, 0);
    t.ensure_ms = 30000; /* no round of its own during the test: it never asks us */
    start_node(&t);
    for (int i = 0; i < 3; i++) {
        node_init(&h[i], rt, i + 1);
        h[i].ensure_ms = 30000;
        start_node(&h[i]);
        dial(&h[i], &t);
    }
    assert_int_equal(wait_book(&t, 3, 10), 3);
    evil_t *e = malloc(sizeof(*e));
    wb_pex_msg_t *m = malloc(sizeof(*m));
    char err[160];
    size_t len;

    /* A polite request is answered with the book (not the asker). */
    evil_connect(e, &t, "127.0.0.1:9", NULL);
    uint8_t req = WB_PEX_REQUEST;
    evil_send_pex(e, &req, 1);
    assert_int_equal(evil_recv(e, &len), 1);
    assert_int_equal(wb_pex_decode(e->msg, len, m, err, sizeof(err)), 0);
    assert_int_equal(m->type, WB_PEX_ADDRS);
    assert_int_equal(m->count, 3);
    int found[3] = {0};
    for (size_t k = 0; k < m->count; k++) {
        assert_int_not_equal(memcmp(m->addrs[k].id, e->pk, 32), 0);
        for (int i = 0; i < 3; i++)
            if (memcmp(m->addrs[k].id, h[i].pk, 32) == 0) {
                assert_int_equal(m->addrs[k].port, node_port(&h[i]));
                assert_int_equal(m->addrs[k].family, 4);
                assert_int_equal(m->addrs[k].ip[0], 127);
                found[i]++;
            }
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(found[i], 1);
    snap_t s = snap(&t);
    assert_int_equal(s.st.peers_dropped, 0);
    assert_int_equal(s.st.book_size, 4); /* and our own listen address went in */
    assert_int_equal(s.in, 4);
    evil_close(e);

    /* (a) Three requests back to back: the first is answered, then the
     * node hangs up. */
    evil_connect(e, &t, "", NULL);
    uint8_t three[3 * (WB_MCONN_MSG_HEADER + 1)];
    for (int i = 0; i < 3; i++) {
        uint8_t *p = three + i * (WB_MCONN_MSG_HEADER + 1);
        p[0] = WB_MCONN_PKT_MSG;
        p[1] = WB_PEX_CHANNEL;
        p[2] = 1;
        p[3] = 0;
        p[4] = 1;
        p[5] = WB_PEX_REQUEST;
    }
    evil_seal(e, three, sizeof(three));
    assert_int_equal(evil_until_closed(e), 1);
    evil_close(e);
    s = snap(&t);
    assert_int_equal(s.st.peers_dropped, 1);

    /* (b) Addresses nobody asked for: disconnected, and not taken. */
    evil_connect(e, &t, "", NULL);
    wb_netaddr_t a;
    assert_int_equal(
        wb_netaddr_parse("1111111111111111111111111111111111111111111111111111111111111111"
                         "@127.0.0.1:4242",
                         1, &a, err, sizeof(err)),
        0);
    uint8_t buf[128];
    assert_int_equal(wb_pex_encode_addrs(&a, 1, buf, sizeof(buf), &len), 0);
    evil_send_pex(e, buf, len);
    assert_int_equal(evil_until_closed(e), 0);
    evil_close(e);
    s = snap(&t);
    assert_int_equal(s.st.peers_dropped, 2);
    assert_int_equal(s.st.book_size, 4);

    /* (c) Malformed messages: an unknown type, a count the entries do not
     * fill, an empty message, trailing bytes after a request. */
    static const struct {
        uint8_t b[8];
        size_t n;
    } bad[] = {
        {{0x07}, 1},
        {{WB_PEX_ADDRS, 0, 2, 0x11, 0x22}, 5},
        {{0}, 0},
        {{WB_PEX_REQUEST, 0}, 2},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        evil_connect(e, &t, "", NULL);
        evil_send_pex(e, bad[k].b, bad[k].n);
        assert_int_equal(evil_until_closed(e), 0);
        evil_close(e);
        s = snap(&t);
        assert_int_equal(s.st.peers_dropped, 3 + k);
    }
    /* The ordinary peers were not touched. */
    s = snap(&t);
    assert_int_equal(s.in, 3);
    assert_int_equal(s.st.book_size, 4);
    free(m);
    free(e);
    rt_down(rt);
}

/* ---- seeds, and a dial that reaches another key ---- */

static void test_seeds_and_bad_keys(void **state)
{
    wb_rt_t *rt = rt_up(NULL);
    static node_t seed, a, b, c, x;
    node_init(&seed, rt, 10);
    seed.seed_mode = 1;
    start_node(&seed);

    /* a: an empty book and nobody to talk to: it dials the seed. */
    node_init(&a, rt, 11);
    node_set_seed(&a, &seed);
    start_node(&a);
    for (int i = 0; i < 250 && !node_saw(&seed, a.pk); i++)
        usleep(20 * 1000);
    assert_true(node_saw(&seed, a.pk));

    /* c: the same seed, but a peer (b) from the start: never the seed. */
    node_init(&b, rt, 12);
    start_node(&b);
    node_init(&c, rt, 13);
    c.listen = 0;
    node_set_seed(&c, &seed);
    c.dial_pk = b.pk;
    c.dial_port = node_port(&b);
    start_node(&c);
    snap_t s = snap(&c);
    for (int i = 0; i < 250 && s.out != 1; i++) {
        usleep(20 * 1000);
        s = snap(&c);
    }
    assert_int_equal(s.out, 1);
    usleep(1000 * 1000); /* five rounds */
    s = snap(&c);
    assert_int_equal(s.out, 1);
    assert_false(node_saw(&seed, c.pk));
    assert_true(s.st.dials == 0);

    /* x learns two addresses from peers that say where they listen: one
     * is b's endpoint under the peer's own key (whoever answers there
     * proves another key), one a port where nobody listens. */
    node_init(&x, rt, 14);
    start_node(&x);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    close(lfd); /* a port nobody listens on, for a while */
    char at_b[32], nowhere[32];
    snprintf(at_b, sizeof(at_b), "127.0.0.1:%u", node_port(&b));
    snprintf(nowhere, sizeof(nowhere), "127.0.0.1:%u", ntohs(sa.sin_port));
    evil_t *e1 = malloc(sizeof(*e1)), *e2 = malloc(sizeof(*e2));
    evil_connect(e1, &x, at_b, NULL);
    evil_connect(e2, &x, nowhere, NULL);
    assert_int_equal(wait_book(&x, 2, 2), 2);
    evil_close(e2);
    evil_close(e1);
    /* x dials both once they are gone: the one at b fails authentication
     * and goes (banned), the other stays, in its dial backoff. */
    s = snap(&x);
    for (int i = 0; i < 250 && (s.st.dial_failures < 2 || s.st.book_size != 1); i++) {
        usleep(20 * 1000);
        s = snap(&x);
    }
    assert_true(s.st.dial_failures >= 2);
    assert_int_equal(s.st.book_size, 1);
    assert_int_equal(s.st.dials, 2);
    /* The banned key comes back with the same story: not taken again
     * (looked at while it is connected, so x does not dial it). */
    uint8_t sk1[64];
    memcpy(sk1, e1->sk, 64);
    evil_connect(e1, &x, at_b, sk1);
    usleep(100 * 1000);
    assert_int_equal(snap(&x).st.book_size, 1);
    evil_close(e1);
    /* A key never banned with the same story is. */
    evil_connect(e1, &x, at_b, NULL);
    assert_int_equal(wait_book(&x, 2, 2), 2);
    evil_close(e1);
    sodium_memzero(sk1, sizeof(sk1));
    free(e1);
    free(e2);
    rt_down(rt);
}

/* ---- the book survives a restart ---- */

static void rm_db(const char *path)
{
    char f[96];
    unlink(path);
    snprintf(f, sizeof(f), "%s-wal", path);
    unlink(f);
    snprintf(f, sizeof(f), "%s-shm", path);
    unlink(f);
}

static void test_persistence(void **state)
{
    char dir[] = "/tmp/wb_test_pex_XXXXXX";
    static char path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/addrbook.sqlite", dir);
    static wb_db_config_t db;
    wb_addrbook_store_config(&db, path);

    /* p, in a runtime with the database lane, learns three addresses from
     * nodes in another runtime that dial it. */
    wb_rt_t *rtp = rt_up(&db), *rt = rt_up(NULL);
    static node_t p, h[3];
    node_init(&p, rtp, 0);
    p.persist = 1;
    start_node(&p);
    for (int i = 0; i < 3; i++) {
        node_init(&h[i], rt, i + 1);
        h[i].ensure_ms = 30000;
        start_node(&h[i]);
        dial(&h[i], &p);
    }
    assert_int_equal(wait_book(&p, 3, 10), 3);
    snap_t before = snap(&p);
    rt_down(rt); /* nobody left to connect */
    rt_down(rtp);

    /* A fresh runtime and reactor on the same file: the same book, before
     * any peer. */
    rtp = rt_up(&db);
    uint8_t pk[32], sk[64];
    memcpy(pk, p.pk, 32);
    memcpy(sk, p.sk, 64);
    node_init(&p, rtp, 0);
    memcpy(p.pk, pk, 32);
    memcpy(p.sk, sk, 64);
    p.persist = 1;
    p.ensure_ms = 30000;
    start_node(&p);
    assert_int_equal(wait_book(&p, before.st.book_size, 5), before.st.book_size);
    snap_t after = snap(&p);
    assert_int_equal(after.out + after.in, 0);
    assert_int_equal(after.st.book_new, before.st.book_new);
    assert_int_equal(after.st.book_old, before.st.book_old);
    rt_down(rtp);

    /* The same on another file: nothing. */
    static char path2[64];
    static wb_db_config_t db2;
    snprintf(path2, sizeof(path2), "%s/other.sqlite", dir);
    wb_addrbook_store_config(&db2, path2);
    rtp = rt_up(&db2);
    node_init(&p, rtp, 0);
    p.persist = 1;
    p.ensure_ms = 30000;
    start_node(&p);
    usleep(200 * 1000);
    assert_int_equal(snap(&p).st.book_size, 0);
    rt_down(rtp);
    rm_db(path);
    rm_db(path2);
    rmdir(dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convergence),
        cmocka_unit_test(test_abuse),
        cmocka_unit_test(test_seeds_and_bad_keys),
        cmocka_unit_test(test_persistence),
    };
    /* TPEX_FILTER=test_convergence: one test, to run it many times */
    if (getenv("TPEX_FILTER"))
        cmocka_set_test_filter(getenv("TPEX_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
