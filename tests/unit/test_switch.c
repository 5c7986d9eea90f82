/*
 * test_switch.c - the switch (apps/peer/switch.h) with test reactors, many
 * nodes in one threaded runtime over loopback: ten nodes fully connected
 * (some behind the fault-injecting wrapper) and broadcasts on three
 * channels reaching exactly the reactors that declared them; a peer that
 * sends large messages and never reads does not stall the others; the
 * refusals (another network, ourselves, a duplicate, a simultaneous dial
 * from both ends that must leave exactly one connection); a persistent
 * peer redialed after its node restarts; NodeInfo decoding.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
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

#include "apps/peer/nodeinfo.h"
#include "apps/peer/switch.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/peerconn.h"
#include "sockets/secret.h"
#include "sockets/tcp.h"

#define MAXN 12
#define CH1  0x01
#define CH2  0x02
#define CH3  0x03

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

typedef struct node_s node_t;

typedef struct {
    node_t *node;
    int which; /* 1: channels 1 and 2; 2: channel 3 */
    uint64_t actor;
} reactor_t;

struct node_s {
    wb_rt_t *rt;
    int idx;
    uint8_t pk[32], sk[64];
    char network[16];
    wb_switch_t *sw;
    uint64_t parent;
    uint16_t port, want_port;
    int listen_failed;
    reactor_t r1, r2;
    wb_peerconn_faults_t faults;
    int faulty;
    /* seen */
    int added, removed, dial_failed, last_self, last_auth;
    char last_reason[160];
    uint32_t got[4][MAXN]; /* [channel][origin] */
    uint32_t wrong;        /* a message on a channel the reactor did not declare */
};

/* The parent: learns the listening port. */
static void parent_handle(wb_actor_t *self, wb_event_t *ev)
{
    node_t *n = wb_actor_state(self);
    pthread_mutex_lock(&mu);
    if (ev->type == WB_EV_SWITCH_LISTENING) {
        if (ev->status < 0)
            n->listen_failed = 1;
        else
            n->port = (uint16_t)ev->cookie;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    wb_event_free(ev);
}

static const wb_actor_def_t parent_def = {.name = "test-parent", .handle = parent_handle};

static void reactor_handle(wb_actor_t *self, wb_event_t *ev)
{
    reactor_t *r = wb_actor_state(self);
    node_t *n = r->node;
    pthread_mutex_lock(&mu);
    switch (ev->type) {
    case WB_EV_SWITCH_PEER_ADDED:
        if (r->which == 1)
            n->added++;
        break;
    case WB_EV_SWITCH_PEER_REMOVED:
        if (r->which == 1)
            n->removed++;
        break;
    case WB_EV_SWITCH_DIAL_FAILED:
        if (r->which == 1) {
            const wb_switch_peer_t *p = ev->data;
            n->dial_failed++;
            n->last_self = p->self;
            n->last_auth = p->auth;
            snprintf(n->last_reason, sizeof(n->last_reason), "%s", p->reason);
        }
        break;
    case WB_EV_PEER_MSG: {
        uint8_t ch = (uint8_t)ev->cookie;
        if ((r->which == 1 && ch != CH1 && ch != CH2) || (r->which == 2 && ch != CH3) ||
            ev->len < 1) {
            n->wrong++;
        } else {
            uint8_t origin = ((uint8_t *)ev->data)[0];
            if (origin < MAXN)
                n->got[ch][origin]++;
        }
        break;
    }
    default:
        break;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    wb_event_free(ev);
}

static const wb_actor_def_t reactor_def = {.name = "test-reactor", .handle = reactor_handle};

static void node_init(node_t *n, wb_rt_t *rt, int idx, const char *network)
{
    memset(n, 0, sizeof(*n));
    n->rt = rt;
    n->idx = idx;
    snprintf(n->network, sizeof(n->network), "%s", network);
    wb_sc_keypair(n->pk, n->sk);
}

static void node_start_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    assert_int_equal(wb_actor_spawn(rt, NULL, &parent_def, n, &n->parent), 0);
    wb_actor_t *parent = wb_actor_lookup(rt, n->parent);
    wb_switch_config_t c;
    wb_switch_config_init(&c);
    c.id_sk = n->sk;
    c.network = n->network;
    char mon[16];
    snprintf(mon, sizeof(mon), "n%d", n->idx);
    c.moniker = mon;
    c.listen_host = "127.0.0.1";
    c.listen_port = n->want_port;
    c.max_outbound = 20;
    c.max_inbound = 20;
    c.redial_min_ms = 100;
    c.redial_max_ms = 400;
    c.seed = (uint64_t)n->idx + 1;
    c.conn.handshake_timeout_ms = 5000;
    if (n->faulty)
        c.conn.faults = &n->faults;
    assert_int_equal(wb_switch_new(rt, parent, &c, &n->sw), 0);
    n->r1 = (reactor_t){.node = n, .which = 1};
    n->r2 = (reactor_t){.node = n, .which = 2};
    assert_int_equal(wb_actor_spawn(rt, parent, &reactor_def, &n->r1, &n->r1.actor), 0);
    assert_int_equal(wb_actor_spawn(rt, parent, &reactor_def, &n->r2, &n->r2.actor), 0);
    wb_mconn_chan_t c1[2] = {{.id = CH1, .priority = 1}, {.id = CH2, .priority = 2}};
    wb_mconn_chan_t c3 = {.id = CH3, .priority = 5};
    assert_int_equal(wb_switch_add_reactor(n->sw, "r1", n->r1.actor, c1, 2), 0);
    assert_int_equal(wb_switch_add_reactor(n->sw, "r2", n->r2.actor, &c3, 1), 0);
    /* a channel already taken is refused */
    assert_int_equal(wb_switch_add_reactor(n->sw, "dup", n->r2.actor, &c3, 1), WB_EEXIST);
    assert_int_equal(wb_switch_start(n->sw), 0);
}

static void node_stop_cb(wb_rt_t *rt, void *arg)
{
    node_t *n = arg;
    wb_actor_kill(rt, n->parent); /* the switch and reactors go with it */
    n->sw = NULL;
}

typedef struct {
    node_t *from, *to;
    int persistent, expect_rc;
} dial_t;

static void dial_cb(wb_rt_t *rt, void *arg)
{
    dial_t *d = arg;
    int rc = wb_switch_dial(d->from->sw, d->to->pk, "127.0.0.1", d->to->port, d->persistent);
    d->expect_rc = rc;
}

typedef struct {
    node_t *n;
    uint8_t ch;
    size_t len, queued;
} bcast_t;

static void bcast_cb(wb_rt_t *rt, void *arg)
{
    bcast_t *b = arg;
    uint8_t *m = calloc(1, b->len);
    m[0] = (uint8_t)b->n->idx;
    b->queued = wb_switch_broadcast(b->n->sw, b->ch, m, b->len);
    free(m);
}

typedef struct {
    node_t *n;
    uint32_t out, in, dialing;
} counts_t;

static void counts_cb(wb_rt_t *rt, void *arg)
{
    counts_t *c = arg;
    pthread_mutex_lock(&mu);
    if (c->n->sw != NULL)
        wb_switch_counts(c->n->sw, &c->out, &c->in, &c->dialing);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void call(wb_rt_t *rt, wb_call_cb fn, void *arg)
{
    assert_int_equal(wb_rt_call(rt, WB_LANE_ACTOR, fn, arg), 0);
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
    call(rt, sync_cb, &s);
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

/* Poll the switch's counts until want peers, at most secs. */
static int wait_peers(node_t *n, uint32_t want, int secs)
{
    for (int i = 0; i < secs * 20; i++) {
        counts_t c = {.n = n};
        call_sync(n->rt, counts_cb, &c);
        if (c.out + c.in == want)
            return 1;
        usleep(50 * 1000);
    }
    return 0;
}

static int has_port(void *a)
{
    node_t *n = a;
    return n->port != 0 || n->listen_failed;
}

static wb_rt_t *rt_up(void)
{
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    return rt;
}

static void start_node(node_t *n)
{
    call(n->rt, node_start_cb, n);
    assert_true(wait_until(has_port, n, 5));
    assert_int_equal(n->listen_failed, 0);
}

static void dial(node_t *from, node_t *to, int persistent, int expect)
{
    dial_t d = {from, to, persistent, 0};
    call_sync(from->rt, dial_cb, &d);
    assert_int_equal(d.expect_rc, expect);
}

/* ---- ten nodes ---- */

static int total_got(node_t *nodes, int n, uint8_t ch)
{
    int t = 0;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < n; o++)
            t += (int)nodes[i].got[ch][o];
    return t;
}

typedef struct {
    node_t *nodes;
    int n, per;
} all_t;

static int all_arrived(void *a)
{
    all_t *x = a;
    int want = x->n * (x->n - 1) * x->per;
    return total_got(x->nodes, x->n, CH1) == want && total_got(x->nodes, x->n, CH2) == want &&
           total_got(x->nodes, x->n, CH3) == want;
}

static void test_ten_nodes(void **state)
{
    wb_rt_t *rt = rt_up();
    static node_t nodes[10];
    const int n = 10, per = 5;
    for (int i = 0; i < n; i++) {
        node_init(&nodes[i], rt, i, "ten");
        if (i % 3 == 1) { /* a third behind the fault-injecting wrapper */
            nodes[i].faulty = 1;
            nodes[i].faults =
                (wb_peerconn_faults_t){.seed = (uint64_t)i, .short_pct = 50, .max_delay_ms = 2};
        }
        start_node(&nodes[i]);
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            dial(&nodes[i], &nodes[j], 0, 0);
    for (int i = 0; i < n; i++)
        assert_true(wait_peers(&nodes[i], n - 1, 20));
    for (int k = 0; k < per; k++)
        for (int i = 0; i < n; i++)
            for (uint8_t ch = CH1; ch <= CH3; ch++) {
                bcast_t b = {&nodes[i], ch, 100 + (size_t)k * 1000, 0};
                call_sync(rt, bcast_cb, &b);
                assert_int_equal(b.queued, n - 1);
            }
    all_t x = {nodes, n, per};
    assert_true(wait_until(all_arrived, &x, 30));
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n; i++) {
        assert_int_equal(nodes[i].wrong, 0);
        assert_int_equal(nodes[i].added, n - 1);
        for (int o = 0; o < n; o++)
            for (uint8_t ch = CH1; ch <= CH3; ch++)
                assert_int_equal(nodes[i].got[ch][o], o == i ? 0 : per);
    }
    pthread_mutex_unlock(&mu);
    wb_rt_free(rt);
}

/* ---- a peer that floods and never reads ---- */

typedef struct {
    int fd;
    uint16_t port;
    uint8_t node_pk[32];
    atomic_int stop;
    size_t sent;
} flooder_t;

static void wr(int fd, const void *p, size_t n)
{
    const uint8_t *d = p;
    while (n > 0) {
        ssize_t w = write(fd, d, n);
        if (w <= 0)
            return;
        d += w;
        n -= (size_t)w;
    }
}

/* Handshake as a real node of network "ten", then send big messages on
 * CH1 forever without reading a byte more. */
static void *flooder_main(void *arg)
{
    flooder_t *f = arg;
    uint8_t pk[32], sk[64];
    wb_sc_keypair(pk, sk);
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(f->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return NULL;
    static uint8_t buf[1 << 17];
    static uint8_t out[WB_SC_MAX_FRAME + 64];
    size_t have = 0;
    wb_sc_t sc;
    uint8_t hello[WB_SC_HELLO_LEN], auth[WB_SC_AUTH_WIRE_LEN];
    wb_sc_init(&sc, sk, f->node_pk, NULL, hello);
    wr(f->fd, hello, sizeof(hello));
    int rc = 0;
    while (rc == 0) {
        ssize_t r = read(f->fd, buf + have, sizeof(buf) - have);
        if (r <= 0)
            return NULL;
        have += (size_t)r;
        size_t used, alen = 0;
        rc = wb_sc_handshake(&sc, buf, have, &used, auth, &alen);
        if (alen)
            wr(f->fd, auth, alen);
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    if (rc < 0)
        return NULL;
    wb_nodeinfo_t ni = {0};
    memcpy(ni.id, pk, 32);
    strcpy(ni.network, "ten");
    strcpy(ni.version, "0.1.0");
    strcpy(ni.moniker, "flooder");
    ni.channels[0] = CH1;
    ni.channels[1] = CH3;
    ni.nchannels = 2;
    char js[2048];
    js[0] = 1;
    long jl = wb_nodeinfo_encode(&ni, js + 1, sizeof(js) - 1);
    long s = wb_sc_seal(&sc, (uint8_t *)js, (size_t)jl + 1, WB_SC_MAX_FRAME, out);
    wr(f->fd, out, (size_t)s);
    /* Never read again. The node grants CH1 a window: past it, our packets
     * would break the rules, so we only send what credit allows... by not
     * knowing it: send one window's worth (256 KiB default) in 60 KB
     * messages, then keep the socket open and idle. */
    static uint8_t pkt[1029];
    size_t total = 0;
    while (!f->stop && total < 256 * 1024 - 60000) {
        for (size_t off = 0; off < 60000; off += 1024) {
            size_t n = 60000 - off < 1024 ? 60000 - off : 1024;
            pkt[0] = 0x03;
            pkt[1] = CH1;
            pkt[2] = off + n == 60000;
            pkt[3] = (uint8_t)(n >> 8);
            pkt[4] = (uint8_t)n;
            pkt[5] = 11; /* origin: out of range of the test's nodes */
            s = wb_sc_seal(&sc, pkt, 5 + n, WB_SC_MAX_FRAME, out);
            wr(f->fd, out, (size_t)s);
        }
        total += 60000;
    }
    f->sent = total;
    while (!f->stop)
        usleep(10 * 1000);
    wb_sc_fini(&sc);
    return NULL;
}

static void test_flooder_does_not_stall(void **state)
{
    wb_rt_t *rt = rt_up();
    static node_t nodes[4];
    const int n = 4;
    for (int i = 0; i < n; i++) {
        node_init(&nodes[i], rt, i, "ten");
        start_node(&nodes[i]);
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            dial(&nodes[i], &nodes[j], 0, 0);
    for (int i = 0; i < n; i++)
        assert_true(wait_peers(&nodes[i], n - 1, 10));
    flooder_t f = {.port = nodes[0].port};
    memcpy(f.node_pk, nodes[0].pk, 32);
    pthread_t t;
    pthread_create(&t, NULL, flooder_main, &f);
    assert_true(wait_peers(&nodes[0], n, 10));
    /* node 0 broadcasts big messages: the flooder never reads, so its
     * queue fills; the others must still get everything, promptly. */
    const int per = 40;
    for (int k = 0; k < per; k++) {
        bcast_t b = {&nodes[0], CH3, 50000, 0};
        call_sync(rt, bcast_cb, &b);
        usleep(2000);
    }
    for (int k = 0; k < 5; k++)
        for (int i = 1; i < n; i++) {
            bcast_t b = {&nodes[i], CH1, 1000, 0};
            call_sync(rt, bcast_cb, &b);
        }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ok = 0;
    for (int tries = 0; tries < 300 && !ok; tries++) {
        pthread_mutex_lock(&mu);
        ok = 1;
        for (int i = 1; i < n; i++)
            ok &= nodes[i].got[CH3][0] == (uint32_t)per && nodes[0].got[CH1][i] == 5;
        pthread_mutex_unlock(&mu);
        if (!ok)
            usleep(50 * 1000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint32_t got3[4], got1[4];
    pthread_mutex_lock(&mu);
    for (int i = 1; i < n; i++) {
        got3[i] = nodes[i].got[CH3][0];
        got1[i] = nodes[0].got[CH1][i];
    }
    pthread_mutex_unlock(&mu);
    for (int i = 1; i < n; i++) {
        assert_int_equal(got3[i], per); /* node 0's broadcasts reached the others */
        assert_int_equal(got1[i], 5);   /* and node 0 still reads everyone */
    }
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs < 10);
    f.stop = 1;
    pthread_join(t, NULL);
    close(f.fd);
    wb_rt_free(rt);
}

/* ---- refusals ---- */

static int dial_failed(void *a)
{
    return ((node_t *)a)->dial_failed > 0;
}

static void test_refusals(void **state)
{
    wb_rt_t *rt = rt_up();
    static node_t a, b, c;
    node_init(&a, rt, 0, "net-a");
    node_init(&b, rt, 1, "net-b");
    node_init(&c, rt, 2, "net-a");
    start_node(&a);
    start_node(&b);
    start_node(&c);
    /* another network */
    dial(&b, &a, 0, 0);
    assert_true(wait_until(dial_failed, &b, 10));
    pthread_mutex_lock(&mu);
    assert_non_null(strstr(b.last_reason, "network"));
    pthread_mutex_unlock(&mu);
    /* ourselves: our own address (as PEX may learn it from a peer) */
    dial(&a, &a, 0, 0);
    assert_true(wait_until(dial_failed, &a, 10));
    pthread_mutex_lock(&mu);
    assert_int_equal(a.last_self, 1);
    assert_int_equal(a.added, 0);
    pthread_mutex_unlock(&mu);
    /* a duplicate: c dials a twice */
    dial(&c, &a, 0, 0);
    assert_true(wait_peers(&c, 1, 10));
    dial(&c, &a, 0, WB_EEXIST);
    /* a wrong key at a's address: the dialer sees an auth failure */
    static node_t ghost;
    node_init(&ghost, rt, 5, "net-a");
    ghost.port = b.port;
    pthread_mutex_lock(&mu);
    c.dial_failed = 0;
    pthread_mutex_unlock(&mu);
    dial(&c, &ghost, 0, 0);
    assert_true(wait_until(dial_failed, &c, 10));
    pthread_mutex_lock(&mu);
    assert_int_equal(c.last_auth, 1);
    pthread_mutex_unlock(&mu);
    wb_rt_free(rt);
}

/* Both ends dial each other at once: exactly one connection survives, the
 * same one on both sides. */
static void test_simultaneous(void **state)
{
    for (int round = 0; round < 5; round++) {
        wb_rt_t *rt = rt_up();
        static node_t a, b;
        node_init(&a, rt, 0, "sim");
        node_init(&b, rt, 1, "sim");
        start_node(&a);
        start_node(&b);
        dial_t d1 = {&a, &b, 0, 0}, d2 = {&b, &a, 0, 0};
        call(rt, dial_cb, &d1);
        call(rt, dial_cb, &d2);
        assert_true(wait_peers(&a, 1, 10));
        assert_true(wait_peers(&b, 1, 10));
        usleep(300 * 1000); /* let any duplicate be settled */
        counts_t ca = {.n = &a}, cb = {.n = &b};
        call_sync(rt, counts_cb, &ca);
        call_sync(rt, counts_cb, &cb);
        assert_int_equal(ca.out + ca.in, 1);
        assert_int_equal(cb.out + cb.in, 1);
        assert_int_equal(ca.out, cb.in); /* the same connection */
        wb_rt_free(rt);
    }
}

/* A persistent peer is redialed after its node goes away and comes back
 * on the same port. */
static int removed(void *a)
{
    return ((node_t *)a)->removed > 0;
}

static void test_persistent_redial(void **state)
{
    wb_rt_t *rt = rt_up();
    static node_t a, b;
    node_init(&a, rt, 0, "p");
    node_init(&b, rt, 1, "p");
    start_node(&a);
    start_node(&b);
    dial(&a, &b, 1, 0);
    assert_true(wait_peers(&a, 1, 10));
    uint16_t port = b.port;
    call_sync(rt, node_stop_cb, &b);
    assert_true(wait_until(removed, &a, 10));
    assert_true(wait_peers(&a, 0, 10));
    usleep(500 * 1000); /* a fails to redial a few times */
    b.port = 0;
    b.want_port = port;
    start_node(&b); /* same key, same port */
    assert_true(wait_peers(&a, 1, 15));
    assert_true(wait_peers(&b, 1, 5));
    wb_rt_free(rt);
}

/* ---- NodeInfo ---- */

static void test_nodeinfo(void **state)
{
    wb_nodeinfo_t a = {0}, b;
    for (int i = 0; i < 32; i++)
        a.id[i] = (uint8_t)i;
    strcpy(a.network, "n");
    strcpy(a.version, "0.1.3");
    strcpy(a.listen, "127.0.0.1:1");
    strcpy(a.moniker, "m");
    a.channels[0] = 1;
    a.channels[1] = 0x40;
    a.nchannels = 2;
    char buf[2048], err[200];
    long n = wb_nodeinfo_encode(&a, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(wb_nodeinfo_decode(buf, (size_t)n, &b, err, sizeof(err)), 0);
    assert_memory_equal(a.id, b.id, 32);
    assert_string_equal(b.version, "0.1.3");
    assert_int_equal(b.nchannels, 2);
    assert_int_equal(wb_nodeinfo_compatible(&a, &b, err, sizeof(err)), 0);
    b.version[2] = '2';
    assert_int_equal(wb_nodeinfo_compatible(&a, &b, err, sizeof(err)), WB_EPROTO);
    assert_non_null(strstr(err, "version"));
    b = a;
    b.channels[0] = 7;
    b.channels[1] = 8;
    assert_int_equal(wb_nodeinfo_compatible(&a, &b, err, sizeof(err)), WB_EPROTO);
    assert_non_null(strstr(err, "no channel in common"));
    static const char *const bad[] = {
        "[]",
        "{\"id\":\"00\",\"network\":\"n\",\"version\":\"0.1.0\",\"channels\":[1]}",
        "{\"id\":\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\","
        "\"network\":\"n\",\"version\":\"0.1\",\"channels\":[1]}",
        "{\"id\":\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\","
        "\"network\":\"n\",\"version\":\"0.1.0\",\"channels\":[1,1]}",
        "{\"id\":\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\","
        "\"network\":\"n\",\"version\":\"0.1.0\",\"channels\":[256]}",
        "{\"id\":\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\","
        "\"network\":\"n\",\"version\":\"0.1.0\"}",
        "{\"id\":\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\","
        "\"network\":\"n\\u0001\",\"version\":\"0.1.0\",\"channels\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(wb_nodeinfo_decode(bad[i], strlen(bad[i]), &b, err, sizeof(err)), 0);
    char *big = malloc(WB_PEERCONN_MAX_HELLO + 2);
    memset(big, ' ', WB_PEERCONN_MAX_HELLO + 1);
    assert_int_equal(wb_nodeinfo_decode(big, WB_PEERCONN_MAX_HELLO + 1, &b, err, sizeof(err)),
                     WB_ETOOBIG);
    free(big);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nodeinfo),
        cmocka_unit_test(test_ten_nodes),
        cmocka_unit_test(test_flooder_does_not_stall),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_simultaneous),
        cmocka_unit_test(test_persistent_redial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
