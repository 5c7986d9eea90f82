/*
 * test_signal.c - the signaling client (apps/signal/client.h) against the
 * in-process server, all in one threaded runtime: waddell's scenario
 * (notes peers.md 2.6) done better.
 *   - scenario (plain, and TLS with a pinned self-signed certificate): 100
 *     clients dial a port before the server listens on it, so every first
 *     attempt fails and is retried; odd clients greet every even one by id
 *     (the body in two pieces) and each gets "Hello <its id>!" back from
 *     the right sender, within a time bound; meanwhile a client made by a
 *     manager sends itself ten 60,000-byte messages on a topic whose
 *     subscriber never drains: that topic holds two and drops eight while
 *     its other topic still gets through, and the held ones are delivered
 *     once the subscriber drains; each id is reported exactly once per
 *     connection (callback and event); after closing everything and
 *     freeing the runtime, no file descriptor is left;
 *   - a client pinned to another certificate never connects;
 *   - reconnect: the server closes an idle connection, the client reports
 *     a new id; one that sends keepalives keeps its id; sends while not
 *     connected fail; notices of drops when asked for.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
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
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "apps/signal/client.h"
#include "apps/signal/server.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"

#define NPEERS        100
#define MAILBOX_LIMIT 16 /* small, so subscribers' mailboxes refuse and holding is exercised */
#define BIG           60000
#define NBIG          10
#define TOPIC_BIG     1
#define TOPIC_PROBE   2
/* The bound on the greetings while the bad peer's big messages go through,
 * in ms: natively they take tens of ms (ASan, TSan: a few hundred). */
#define GREET_BOUND_MS 5000

enum { EV_GO = WB_EV_USER + 1, EV_FILL, EV_BUSY };

/* ---- helpers --------------------------------------------------------------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Valgrind runs everything some 50 times slower, one thread at a time. */
static uint64_t slow(void)
{
    return RUNNING_ON_VALGRIND ? 20 : 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A port nobody listens on now. */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Run fn(arg) on the actor lane and wait for it. */
typedef struct {
    void (*fn)(void *);
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} call_t;

static void call_cb(wb_rt_t *rt, void *arg)
{
    (void)rt;
    call_t *c = arg;
    c->fn(c->arg);
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_lane(wb_rt_t *rt, void (*fn)(void *), void *arg)
{
    call_t c = {.fn = fn, .arg = arg, .done = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    assert_int_equal(wb_rt_call(rt, WB_LANE_ACTOR, call_cb, &c), 0);
    pthread_mutex_lock(&c.mu);
    while (!c.done)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
}

/* Poll pred on the actor lane every 10 ms until it holds or ms pass. */
typedef struct {
    int (*pred)(void *);
    void *arg;
    int ok;
} poll_t;

static void poll_cb(void *arg)
{
    poll_t *p = arg;
    p->ok = p->pred(p->arg);
}

static int wait_for(wb_rt_t *rt, int (*pred)(void *), void *arg, uint64_t ms)
{
    poll_t p = {pred, arg, 0};
    uint64_t end = now_ms() + ms;
    for (;;) {
        on_lane(rt, poll_cb, &p);
        if (p.ok)
            return 1;
        if (now_ms() > end)
            return 0;
        usleep(10000);
    }
}

static wb_rt_t *rt_make(void)
{
    wb_rt_config_t rc;
    wb_rt_config_init(&rc);
    rc.mailbox_limit = MAILBOX_LIMIT;
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, &rc), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    return rt;
}

static char certdir[64], cert_pem[96], key_pem[96], other_pem[96], other_key[96];

static void make_cert(const char *cert, const char *key)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);
}

static int certs_setup(void **state)
{
    (void)state;
    snprintf(certdir, sizeof(certdir), "/tmp/wb-sig-XXXXXX");
    if (mkdtemp(certdir) == NULL)
        return -1;
    snprintf(cert_pem, sizeof(cert_pem), "%s/cert.pem", certdir);
    snprintf(key_pem, sizeof(key_pem), "%s/key.pem", certdir);
    snprintf(other_pem, sizeof(other_pem), "%s/other.pem", certdir);
    snprintf(other_key, sizeof(other_key), "%s/other.key", certdir);
    make_cert(cert_pem, key_pem);
    make_cert(other_pem, other_key);
    /* libuv opens a pipe once per process (its signal lock) with the first
     * loop: open it now so the fd counts compare like with like. */
    wb_rt_t *rt = rt_make();
    wb_rt_free(rt);
    return 0;
}

static int certs_teardown(void **state)
{
    (void)state;
    unlink(cert_pem);
    unlink(key_pem);
    unlink(other_pem);
    unlink(other_key);
    rmdir(certdir);
    return 0;
}

/* ---- the server ------------------------------------------------------------ */

typedef struct {
    wb_rt_t *rt;
    uint16_t port;
    const char *cert, *key;
    uint32_t idle_ms;
    uint64_t actor;
    int listening; /* 1 ok, -1 failed */
} srv_t;

static void srv_listening(void *arg, int status, uint16_t port)
{
    srv_t *s = arg;
    s->listening = status == 0 ? 1 : -1;
    s->port = port;
}

static void srv_start_cb(void *arg)
{
    srv_t *s = arg;
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = s->port;
    cfg.tls_cert = s->cert;
    cfg.tls_key = s->key;
    cfg.idle_timeout_ms = s->idle_ms;
    cfg.on_listening = srv_listening;
    cfg.arg = s;
    assert_int_equal(wb_sig_server_start(s->rt, &cfg, &s->actor), 0);
}

static int srv_up(void *arg)
{
    return ((srv_t *)arg)->listening != 0;
}

static void srv_start(srv_t *s)
{
    on_lane(s->rt, srv_start_cb, s);
    assert_true(wait_for(s->rt, srv_up, s, 10000));
    assert_int_equal(s->listening, 1);
}

/* ---- the scenario's peers --------------------------------------------------- */

typedef struct scen_s scen_t;

typedef struct {
    scen_t *sc;
    int idx;
    uint64_t actor, client;
    uint8_t id[WB_SIG_ID_LEN];
    int have_id, ids_events, ids_cb, downs;
    /* odd: greeting the evens */
    int next_greet, replies_ok, replies_bad;
    uint8_t replied[NPEERS / 2];
    /* even: answers waiting for room */
    uint8_t pending[NPEERS / 2][WB_SIG_ID_LEN];
    int npending, hellos;
} peer_t;

struct scen_s {
    wb_rt_t *rt;
    const char *cert;
    uint16_t port;
    int n;
    peer_t peers[NPEERS];
    /* the bad peer, from a manager */
    wb_sig_mgr_t *mgr;
    char addr[32];
    uint64_t bad, stuck, probe;
    int mgr_ids, mgr_addr_bad;
    uint8_t bad_id[WB_SIG_ID_LEN];
    int released, busy, stuck_got, stuck_bad, probe_got;
    int go;
};

static void scen_on_id(void *arg, uint64_t client, const char *server,
                       const uint8_t id[WB_SIG_ID_LEN], uint64_t conn_no)
{
    peer_t *p = arg;
    (void)server;
    (void)id;
    (void)conn_no;
    assert_int_equal(client, p->client);
    p->ids_cb++;
}

static void reply_flush(peer_t *p)
{
    static const char hello[] = "Hello ";
    while (p->npending > 0) {
        char hex[33], body[64];
        wb_sig_id_hex(p->pending[p->npending - 1], hex);
        int n = snprintf(body, sizeof(body), "%s%s!", hello, hex);
        int rc = wb_sig_client_send(p->sc->rt, p->client, p->pending[p->npending - 1], 0, body,
                                    (size_t)n);
        if (rc == WB_EAGAIN)
            return; /* WB_EV_SIG_WRITABLE */
        assert_int_equal(rc, 0);
        p->npending--;
    }
}

static void greet(peer_t *p)
{
    scen_t *sc = p->sc;
    struct iovec iov[2] = {{"Hel", 3}, {"lo", 2}};
    while (p->next_greet < sc->n / 2) {
        peer_t *e = &sc->peers[2 * p->next_greet];
        int rc = wb_sig_client_sendv(sc->rt, p->client, e->id, 0, iov, 2);
        if (rc == WB_EAGAIN)
            return;
        assert_int_equal(rc, 0);
        p->next_greet++;
    }
}

static void peer_message(peer_t *p, wb_event_t *ev)
{
    scen_t *sc = p->sc;
    wb_sig_msg_t m;
    assert_int_equal(wb_sig_msg_get(ev, &m), 0);
    assert_int_equal(m.topic, 0);
    if (p->idx % 2 == 0) {
        assert_true(m.body_len == 5 && memcmp(m.body, "Hello", 5) == 0);
        assert_true(p->npending < NPEERS / 2);
        memcpy(p->pending[p->npending++], m.from, WB_SIG_ID_LEN);
        p->hellos++;
        reply_flush(p);
        return;
    }
    char hex[33], want[64];
    wb_sig_id_hex(p->id, hex);
    int n = snprintf(want, sizeof(want), "Hello %s!", hex);
    int from = -1;
    for (int j = 0; j < sc->n / 2; j++)
        if (memcmp(sc->peers[2 * j].id, m.from, WB_SIG_ID_LEN) == 0)
            from = j;
    if (from < 0 || m.body_len != (size_t)n || memcmp(m.body, want, (size_t)n) != 0 ||
        p->replied[from]) {
        p->replies_bad++;
        return;
    }
    p->replied[from] = 1;
    p->replies_ok++;
}

static void peer_handle(wb_actor_t *self, wb_event_t *ev)
{
    peer_t *p = wb_actor_state(self);
    switch (ev->type) {
    case WB_EV_SIG_ID:
        assert_int_equal(ev->len, WB_SIG_ID_LEN);
        memcpy(p->id, ev->data, WB_SIG_ID_LEN);
        p->have_id = 1;
        p->ids_events++;
        break;
    case WB_EV_SIG_DOWN:
        p->downs++;
        break;
    case WB_EV_SIG_WRITABLE:
        if (p->idx % 2 == 0)
            reply_flush(p);
        else if (p->sc->go)
            greet(p);
        break;
    case WB_EV_SIG_MESSAGE:
        peer_message(p, ev);
        break;
    case EV_GO:
        greet(p);
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t peer_def = {"test-peer", peer_handle, NULL};

/* A subscriber that never drains: its mailbox is kept full of its own
 * control events until released. */
static void stuck_handle(wb_actor_t *self, wb_event_t *ev)
{
    scen_t *sc = wb_actor_state(self);
    wb_rt_t *rt = wb_actor_rt(self);
    if (ev->type == EV_FILL) {
        for (int i = 0; i < MAILBOX_LIMIT; i++) {
            wb_event_t *b = wb_event_new(EV_BUSY, 0);
            b->flags |= WB_EVF_CONTROL;
            assert_int_equal(wb_actor_send(rt, self, wb_actor_id(self), b), 0);
        }
        sc->busy = MAILBOX_LIMIT;
    } else if (ev->type == EV_BUSY) {
        if (!sc->released) {
            ev->flags |= WB_EVF_CONTROL;
            assert_int_equal(wb_actor_send(rt, self, wb_actor_id(self), ev), 0);
            return;
        }
        sc->busy--;
    } else if (ev->type == WB_EV_SIG_MESSAGE) {
        wb_sig_msg_t m;
        assert_int_equal(wb_sig_msg_get(ev, &m), 0);
        if (m.topic != TOPIC_BIG || m.body_len != BIG || m.body[0] != (uint8_t)sc->stuck_got ||
            m.body[BIG - 1] != (uint8_t)sc->stuck_got)
            sc->stuck_bad++;
        sc->stuck_got++;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t stuck_def = {"test-stuck", stuck_handle, NULL};

static void probe_handle(wb_actor_t *self, wb_event_t *ev)
{
    scen_t *sc = wb_actor_state(self);
    wb_sig_msg_t m;
    if (ev->type == WB_EV_SIG_MESSAGE && wb_sig_msg_get(ev, &m) == 0 && m.topic == TOPIC_PROBE &&
        m.body_len == 5 && memcmp(m.body, "probe", 5) == 0 &&
        memcmp(m.from, sc->bad_id, WB_SIG_ID_LEN) == 0)
        sc->probe_got++;
    wb_event_free(ev);
}

static const wb_actor_def_t probe_def = {"test-probe", probe_handle, NULL};

static void mgr_on_id(void *arg, uint64_t client, const char *server,
                      const uint8_t id[WB_SIG_ID_LEN], uint64_t conn_no)
{
    scen_t *sc = arg;
    (void)conn_no;
    if (strcmp(server, sc->addr) != 0 || client != sc->bad)
        sc->mgr_addr_bad++;
    memcpy(sc->bad_id, id, WB_SIG_ID_LEN);
    sc->mgr_ids++;
}

static void scen_start_cb(void *arg)
{
    scen_t *sc = arg;
    wb_sig_client_config_t cfg;
    wb_sig_client_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = sc->port;
    cfg.server_cert = sc->cert;
    cfg.reconnect_min_ms = 50;
    cfg.reconnect_max_ms = 200;
    cfg.keepalive_ms = 1000;
    cfg.connect_timeout_ms = 60000; /* TLS handshakes of 100 clients at once, under valgrind */
    cfg.on_id = scen_on_id;
    for (int i = 0; i < sc->n; i++) {
        peer_t *p = &sc->peers[i];
        p->sc = sc;
        p->idx = i;
        assert_int_equal(wb_actor_spawn(sc->rt, NULL, &peer_def, p, &p->actor), 0);
        cfg.owner = p->actor;
        cfg.default_sub = p->actor;
        cfg.arg = p;
        assert_int_equal(wb_sig_client_start(sc->rt, NULL, &cfg, &p->client), 0);
        /* Not connected yet: nothing can be sent. */
        uint8_t someone[WB_SIG_ID_LEN] = {1};
        assert_int_equal(wb_sig_client_send(sc->rt, p->client, someone, 0, "x", 1), WB_ECLOSED);
    }
    /* The bad peer: a manager's client, its big topic to a subscriber that
     * never drains, holding at most 128 KiB (two of the ten). */
    assert_int_equal(wb_actor_spawn(sc->rt, NULL, &stuck_def, sc, &sc->stuck), 0);
    assert_int_equal(wb_actor_spawn(sc->rt, NULL, &probe_def, sc, &sc->probe), 0);
    wb_sig_client_config_t t;
    wb_sig_client_config_init(&t);
    t.server_cert = sc->cert;
    t.reconnect_min_ms = 50;
    t.reconnect_max_ms = 200;
    t.connect_timeout_ms = 60000;
    t.hold_bytes = 128 * 1024;
    t.on_id = mgr_on_id;
    t.arg = sc;
    assert_int_equal(wb_sig_mgr_new(sc->rt, NULL, &t, &sc->mgr), 0);
    snprintf(sc->addr, sizeof(sc->addr), "127.0.0.1:%u", sc->port);
    assert_int_equal(wb_sig_mgr_client(sc->mgr, sc->addr, &sc->bad), 0);
    uint64_t again;
    assert_int_equal(wb_sig_mgr_client(sc->mgr, sc->addr, &again), 0);
    assert_int_equal(again, sc->bad);
    assert_int_equal(wb_sig_client_subscribe(sc->rt, sc->bad, TOPIC_BIG, sc->stuck), 0);
    assert_int_equal(wb_sig_client_subscribe(sc->rt, sc->bad, TOPIC_PROBE, sc->probe), 0);
    assert_int_equal(wb_sig_client_subscribe(sc->rt, sc->bad, WB_SIG_TOPIC_NOTICE, sc->probe),
                     WB_EINVAL);
}

static int all_failed_once(void *arg)
{
    scen_t *sc = arg;
    for (int i = 0; i < sc->n; i++)
        if (sc->peers[i].downs == 0)
            return 0;
    wb_sig_client_stats_t st;
    return wb_sig_client_stats(sc->rt, sc->bad, &st) == 0 && st.failures > 0;
}

static int all_ids(void *arg)
{
    scen_t *sc = arg;
    for (int i = 0; i < sc->n; i++)
        if (!sc->peers[i].have_id)
            return 0;
    return sc->mgr_ids > 0;
}

/* The stuck subscriber spins the actor lane while stuck: only from now on. */
static void fill_cb(void *arg)
{
    scen_t *sc = arg;
    wb_event_t *fill = wb_event_new(EV_FILL, 0);
    fill->flags |= WB_EVF_CONTROL;
    assert_int_equal(wb_actor_send(sc->rt, NULL, sc->stuck, fill), 0);
}

static int stuck_full(void *arg)
{
    return ((scen_t *)arg)->busy == MAILBOX_LIMIT;
}

static void bad_send_cb(void *arg)
{
    scen_t *sc = arg;
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    for (int i = 0; i < NBIG; i++) {
        memset(big, i, BIG);
        assert_int_equal(wb_sig_client_send(sc->rt, sc->bad, sc->bad_id, TOPIC_BIG, big, BIG), 0);
    }
    free(big);
    assert_int_equal(wb_sig_client_send(sc->rt, sc->bad, sc->bad_id, TOPIC_PROBE, "probe", 5), 0);
}

static void go_cb(void *arg)
{
    scen_t *sc = arg;
    sc->go = 1;
    for (int i = 1; i < sc->n; i += 2) {
        wb_event_t *ev = wb_event_new(EV_GO, 0);
        ev->flags |= WB_EVF_CONTROL;
        assert_int_equal(wb_actor_send(sc->rt, NULL, sc->peers[i].actor, ev), 0);
    }
}

static int greeted(void *arg)
{
    scen_t *sc = arg;
    for (int i = 1; i < sc->n; i += 2)
        if (sc->peers[i].replies_ok + sc->peers[i].replies_bad < sc->n / 2)
            return 0;
    return 1;
}

static int bad_all_in(void *arg)
{
    scen_t *sc = arg;
    wb_sig_client_stats_t st;
    return wb_sig_client_stats(sc->rt, sc->bad, &st) == 0 && st.received == NBIG + 1 &&
           sc->probe_got == 1;
}

static void check_bad_cb(void *arg)
{
    scen_t *sc = arg;
    uint64_t delivered, held, dropped;
    assert_int_equal(
        wb_sig_client_topic_stats(sc->rt, sc->bad, TOPIC_BIG, 0, &delivered, &held, &dropped), 0);
    assert_int_equal(delivered, 0);
    assert_int_equal(held, 2);
    assert_int_equal(dropped, NBIG - 2);
    assert_int_equal(
        wb_sig_client_topic_stats(sc->rt, sc->bad, TOPIC_PROBE, 0, &delivered, &held, &dropped), 0);
    assert_int_equal(delivered, 1);
    sc->released = 1; /* the stuck subscriber drains from now on */
}

static int stuck_drained(void *arg)
{
    scen_t *sc = arg;
    return sc->stuck_got == 2 && sc->busy == 0;
}

static void check_end_cb(void *arg)
{
    scen_t *sc = arg;
    for (int i = 0; i < sc->n; i++) {
        peer_t *p = &sc->peers[i];
        wb_sig_client_stats_t st;
        assert_int_equal(wb_sig_client_stats(sc->rt, p->client, &st), 0);
        /* Exactly one id per connection, and one connection each. */
        assert_int_equal(st.connections, 1);
        assert_int_equal(p->ids_events, 1);
        assert_int_equal(p->ids_cb, 1);
        assert_true(st.failures >= 1); /* the first attempt, before the server */
        assert_int_equal(st.dropped_full + st.dropped_nosub, 0);
        if (i % 2 == 1) {
            assert_int_equal(p->replies_ok, sc->n / 2);
            assert_int_equal(p->replies_bad, 0);
        } else {
            assert_int_equal(p->hellos, sc->n / 2);
            assert_int_equal(p->npending, 0);
        }
    }
    uint64_t delivered, held, dropped;
    assert_int_equal(
        wb_sig_client_topic_stats(sc->rt, sc->bad, TOPIC_BIG, 0, &delivered, &held, &dropped), 0);
    assert_int_equal(delivered, 2);
    assert_int_equal(held, 0);
    assert_int_equal(sc->stuck_bad, 0);
    assert_int_equal(sc->mgr_ids, 1);
    assert_int_equal(sc->mgr_addr_bad, 0);
}

static void close_cb(void *arg)
{
    scen_t *sc = arg;
    for (int i = 0; i < sc->n; i++)
        assert_int_equal(wb_sig_client_close(sc->rt, sc->peers[i].client), 0);
    wb_sig_mgr_close(sc->mgr);
    uint8_t someone[WB_SIG_ID_LEN] = {1};
    assert_int_equal(wb_sig_client_send(sc->rt, sc->peers[0].client, someone, 0, "x", 1),
                     WB_ENOENT);
}

static void scenario(const char *cert, const char *key)
{
    int fds0 = count_fds();
    scen_t *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    sc->n = NPEERS;
    sc->cert = cert;
    sc->port = free_port();
    sc->rt = rt_make();
    uint64_t t0 = now_ms();

    /* Everyone dials before the server listens: every first attempt fails. */
    on_lane(sc->rt, scen_start_cb, sc);
    assert_true(wait_for(sc->rt, all_failed_once, sc, 20000));
    srv_t srv = {.rt = sc->rt, .port = sc->port, .cert = cert, .key = key};
    srv_start(&srv);
    assert_true(wait_for(sc->rt, all_ids, sc, 30000));
    uint64_t t1 = now_ms();

    /* The bad peer stuffs its stuck topic while the others greet. */
    on_lane(sc->rt, fill_cb, sc);
    assert_true(wait_for(sc->rt, stuck_full, sc, 10000));
    on_lane(sc->rt, bad_send_cb, sc);
    on_lane(sc->rt, go_cb, sc);
    uint64_t bound = GREET_BOUND_MS * slow();
    assert_true(wait_for(sc->rt, bad_all_in, sc, bound));
    on_lane(sc->rt, check_bad_cb, sc);
    assert_true(wait_for(sc->rt, greeted, sc, bound));
    uint64_t t2 = now_ms();
    assert_true(t2 - t1 < bound);
    assert_true(wait_for(sc->rt, stuck_drained, sc, 10000));
    on_lane(sc->rt, check_end_cb, sc);
    on_lane(sc->rt, close_cb, sc);
    uint64_t t3 = now_ms();
    printf("# %s: %d clients connected in %llu ms (server started after their first "
           "failure), %d greetings and replies in %llu ms, total %llu ms\n",
           cert ? "tls" : "tcp", NPEERS + 1, (unsigned long long)(t1 - t0),
           NPEERS / 2 * NPEERS / 2 * 2, (unsigned long long)(t2 - t1),
           (unsigned long long)(t3 - t0));
    wb_rt_stop(sc->rt);
    wb_rt_free(sc->rt);
    free(sc);
    assert_int_equal(count_fds(), fds0);
}

static void test_scenario_tcp(void **state)
{
    (void)state;
    scenario(NULL, NULL);
}

static void test_scenario_tls(void **state)
{
    (void)state;
    scenario(cert_pem, key_pem);
}

/* ---- single clients -------------------------------------------------------- */

typedef struct {
    wb_rt_t *rt;
    uint64_t actor, client;
    int ids, ids_cb, downs, notices, msgs;
    uint8_t first[WB_SIG_ID_LEN], last[WB_SIG_ID_LEN];
    wb_sig_notice_t notice;
    char down[200];
} one_t;

static void one_handle(wb_actor_t *self, wb_event_t *ev)
{
    one_t *o = wb_actor_state(self);
    if (ev->type == WB_EV_SIG_ID) {
        if (o->ids == 0)
            memcpy(o->first, ev->data, WB_SIG_ID_LEN);
        memcpy(o->last, ev->data, WB_SIG_ID_LEN);
        assert_int_equal(ev->cookie, (uint64_t)o->ids + 1);
        o->ids++;
    } else if (ev->type == WB_EV_SIG_DOWN) {
        o->downs++;
        snprintf(o->down, sizeof(o->down), "%s", (const char *)ev->data);
    } else if (ev->type == WB_EV_SIG_NOTICE) {
        assert_int_equal(wb_sig_notice_get(ev, &o->notice), 0);
        o->notices++;
    } else if (ev->type == WB_EV_SIG_MESSAGE) {
        o->msgs++;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t one_def = {"test-one", one_handle, NULL};

static void one_on_id(void *arg, uint64_t client, const char *server,
                      const uint8_t id[WB_SIG_ID_LEN], uint64_t conn_no)
{
    one_t *o = arg;
    (void)client;
    (void)server;
    (void)id;
    assert_int_equal(conn_no, (uint64_t)o->ids_cb + 1);
    o->ids_cb++;
}

typedef struct {
    one_t *o;
    uint16_t port;
    const char *cert;
    uint32_t keepalive_ms;
    int notices;
} one_start_t;

static void one_start_cb(void *arg)
{
    one_start_t *s = arg;
    one_t *o = s->o;
    assert_int_equal(wb_actor_spawn(o->rt, NULL, &one_def, o, &o->actor), 0);
    wb_sig_client_config_t cfg;
    wb_sig_client_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = s->port;
    cfg.server_cert = s->cert;
    cfg.keepalive_ms = s->keepalive_ms;
    cfg.notices = s->notices;
    cfg.reconnect_min_ms = 50;
    cfg.reconnect_max_ms = 200;
    cfg.owner = o->actor;
    cfg.default_sub = o->actor;
    cfg.on_id = one_on_id;
    cfg.arg = o;
    assert_int_equal(wb_sig_client_start(o->rt, NULL, &cfg, &o->client), 0);
}

static void one_start(one_t *o, uint16_t port, const char *cert, uint32_t keepalive_ms, int notices)
{
    one_start_t s = {o, port, cert, keepalive_ms, notices};
    on_lane(o->rt, one_start_cb, &s);
}

static int two_ids(void *arg)
{
    one_t *o = arg;
    return o->ids >= 2;
}

static int one_id(void *arg)
{
    one_t *o = arg;
    return o->ids >= 1;
}

static int has_notice(void *arg)
{
    one_t *o = arg;
    return o->notices >= 1;
}

static void send_unknown_cb(void *arg)
{
    one_t *o = arg;
    uint8_t nobody[WB_SIG_ID_LEN];
    memset(nobody, 0x5a, sizeof(nobody));
    assert_int_equal(wb_sig_client_send(o->rt, o->client, nobody, 7, "?", 1), 0);
}

static void stats_cb(void *arg)
{
    one_t *o = arg;
    wb_sig_client_stats_t st;
    assert_int_equal(wb_sig_client_stats(o->rt, o->client, &st), 0);
    assert_int_equal(st.connections, (uint64_t)o->ids);
}

static void test_reconnect(void **state)
{
    (void)state;
    int fds0 = count_fds();
    wb_rt_t *rt = rt_make();
    srv_t srv = {.rt = rt, .port = 0, .idle_ms = 400};
    srv_start(&srv);

    one_t quiet = {.rt = rt}, chatty = {.rt = rt}, noticed = {.rt = rt};
    one_start(&quiet, srv.port, NULL, 0, 0);     /* no keepalives: closed when idle */
    one_start(&chatty, srv.port, NULL, 100, 0);  /* keepalives: kept */
    one_start(&noticed, srv.port, NULL, 100, 1); /* asks for notices */
    assert_true(wait_for(rt, two_ids, &quiet, 10000));
    assert_true(memcmp(quiet.first, quiet.last, WB_SIG_ID_LEN) != 0);
    assert_true(quiet.downs >= 1);
    assert_int_equal(quiet.ids_cb, quiet.ids);
    on_lane(rt, stats_cb, &quiet);
    assert_true(wait_for(rt, one_id, &chatty, 1000));
    assert_int_equal(chatty.ids, 1);
    assert_int_equal(chatty.downs, 0);

    assert_true(wait_for(rt, one_id, &noticed, 1000));
    on_lane(rt, send_unknown_cb, &noticed);
    assert_true(wait_for(rt, has_notice, &noticed, 5000));
    assert_int_equal(noticed.notice.code, WB_SIG_NOTICE_UNKNOWN);
    assert_int_equal(noticed.notice.topic, 7);
    assert_int_equal(noticed.notice.to[0], 0x5a);

    wb_rt_stop(rt);
    wb_rt_free(rt);
    assert_int_equal(count_fds(), fds0);
}

static int downs3(void *arg)
{
    one_t *o = arg;
    return o->downs >= 3;
}

static void test_tls_wrong_cert(void **state)
{
    (void)state;
    int fds0 = count_fds();
    wb_rt_t *rt = rt_make();
    srv_t srv = {.rt = rt, .port = 0, .cert = cert_pem, .key = key_pem};
    srv_start(&srv);
    one_t good = {.rt = rt}, bad = {.rt = rt};
    one_start(&good, srv.port, cert_pem, 0, 0);
    one_start(&bad, srv.port, other_pem, 0, 0);
    assert_true(wait_for(rt, one_id, &good, 10000));
    assert_true(wait_for(rt, downs3, &bad, 10000));
    assert_int_equal(bad.ids, 0);
    assert_non_null(strstr(bad.down, "certificate verify failed"));
    wb_rt_stop(rt);
    wb_rt_free(rt);
    assert_int_equal(count_fds(), fds0);
}

static void test_parse_addr(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(wb_sig_parse_addr("example.org:62443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "example.org");
    assert_int_equal(port, 62443);
    assert_int_equal(wb_sig_parse_addr("[::1]:9", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9);
    assert_int_equal(wb_sig_parse_addr("::1:9", host, sizeof(host), &port), WB_EINVAL);
    assert_int_equal(wb_sig_parse_addr("host", host, sizeof(host), &port), WB_EINVAL);
    assert_int_equal(wb_sig_parse_addr("host:0", host, sizeof(host), &port), WB_EINVAL);
    assert_int_equal(wb_sig_parse_addr("host:70000", host, sizeof(host), &port), WB_EINVAL);
    assert_int_equal(wb_sig_parse_addr(":80", host, sizeof(host), &port), WB_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addr),   cmocka_unit_test(test_scenario_tcp),
        cmocka_unit_test(test_scenario_tls), cmocka_unit_test(test_tls_wrong_cert),
        cmocka_unit_test(test_reconnect),
    };
    return cmocka_run_group_tests(tests, certs_setup, certs_teardown);
}
