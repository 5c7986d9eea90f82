/*
 * test_tcp.c - sockets/tcp.h on real loopback sockets, with the runtime's
 * threads (runs under TSan too).
 *
 * - echo over IPv4 and IPv6: 10k messages of 4..3003 bytes through an echo
 *   server, in order and intact, with small inboxes so both directions hit
 *   WB_EAGAIN and resume; the server paces itself with BACKPRESSURE and
 *   wb_tcp_pause;
 * - an oversized message: the receiving side closes with WB_ETOOBIG and the
 *   exact reason, the server serves the next client; an oversized send
 *   closes the sender's own connection the same way;
 * - hostile input from raw sockets (HTTP text, a 0xFFFFFFFF prefix, a frame
 *   cut short, random bytes): each connection is closed with a clear
 *   reason, the process lives, the server still serves;
 * - a slow reader: BACKPRESSURE with the queue at most write_high plus one
 *   message, the polite sender stops, WRITABLE once the reader reads, every
 *   byte arrives; a sender that ignores backpressure is closed at the hard
 *   cap ("write queue overflow");
 * - the persistent dialer: started before the server exists, it retries with
 *   delays inside [c/2, c] for c = min(max, min * 2^n); it connects once the
 *   server listens; when the server drops it, it reconnects with a new id;
 *   a connection that lasted resets the delay; wb_tcp_close stops it;
 * - a flooding raw client against an actor with a 64-event inbox: all 20000
 *   messages arrive in order, the inbox never held more than 64, the net
 *   lane was refused and resumed;
 * - pause/resume, listener and lane connection limits, listen and dial
 *   errors, name resolution, bad arguments, and shutdown with everything
 *   open (leaks are ASan's and valgrind's to find).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <netdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#include "sockets/frame.h"
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

/* ---- a recording actor ------------------------------------------------------ */

enum { MAX_REC = 512, TEXT_MAX = 200 };

typedef struct {
    uint16_t type;
    int32_t status;
    uint64_t src, cookie, t_ms;
    char text[TEXT_MAX];
} rec_t;

typedef struct peer_s peer_t;
/* Called on the actor lane for every event; return 1 when it took ev. */
typedef int (*peer_hook)(peer_t *p, wb_event_t *ev);

struct peer_s {
    wb_rt_t *rt;
    uint64_t id;
    peer_hook hook;
    void *user;
    pthread_mutex_t m;
    pthread_cond_t c;
    rec_t recs[MAX_REC]; /* every event but blobs and resumes */
    size_t nrec;
    uint64_t blobs; /* blobs seen */
    int done;       /* set by hooks */
    int failed;     /* set by hooks: what went wrong, for the test thread */
    char why[200];
};

static void peer_init(peer_t *p, wb_rt_t *rt, peer_hook hook, void *user)
{
    memset(p, 0, sizeof(*p));
    p->rt = rt;
    p->hook = hook;
    p->user = user;
    pthread_mutex_init(&p->m, NULL);
    pthread_cond_init(&p->c, NULL);
}

static void peer_fini(peer_t *p)
{
    pthread_mutex_destroy(&p->m);
    pthread_cond_destroy(&p->c);
}

static void peer_fail(peer_t *p, const char *why)
{
    pthread_mutex_lock(&p->m);
    if (!p->failed) {
        p->failed = 1;
        snprintf(p->why, sizeof(p->why), "%s", why);
    }
    pthread_cond_broadcast(&p->c);
    pthread_mutex_unlock(&p->m);
}

static void peer_done(peer_t *p)
{
    pthread_mutex_lock(&p->m);
    p->done = 1;
    pthread_cond_broadcast(&p->c);
    pthread_mutex_unlock(&p->m);
}

static void peer_handle(wb_actor_t *self, wb_event_t *ev)
{
    peer_t *p = wb_actor_state(self);
    pthread_mutex_lock(&p->m);
    if (ev->type == WB_EV_TCP_BLOB) {
        p->blobs++;
    } else if (ev->type >= WB_EV_TCP_LISTENING && ev->type < WB__EV_TCP_STATE &&
               p->nrec < MAX_REC) {
        rec_t *r = &p->recs[p->nrec++];
        r->type = ev->type;
        r->status = ev->status;
        r->src = ev->src;
        r->cookie = ev->cookie;
        r->t_ms = now_ms();
        size_t n = ev->len < TEXT_MAX - 1 ? ev->len : TEXT_MAX - 1;
        memcpy(r->text, ev->data, n);
        r->text[n] = '\0';
    }
    pthread_cond_broadcast(&p->c);
    pthread_mutex_unlock(&p->m);
    if (p->hook == NULL || !p->hook(p, ev))
        wb_event_free(ev);
}

static const wb_actor_def_t peer_def = {"peer", peer_handle, NULL};

static void peer_spawn(peer_t *p)
{
    assert_int_equal(wb_actor_spawn(p->rt, NULL, &peer_def, p, &p->id), 0);
}

/* Index of the first record at or after `from` of `type` (and src, when not
 * 0); waits up to WAIT_MS. -1 on timeout. */
static int wait_rec(peer_t *p, uint16_t type, uint64_t src, size_t from, rec_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&p->m);
    int found = -1;
    for (;;) {
        for (size_t i = from; i < p->nrec; i++) {
            if (p->recs[i].type == type && (src == 0 || p->recs[i].src == src)) {
                found = (int)i;
                if (out != NULL)
                    *out = p->recs[i];
                break;
            }
        }
        if (found >= 0 || p->failed)
            break;
        if (pthread_cond_timedwait(&p->c, &p->m, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&p->m);
    return found;
}

static int count_rec(peer_t *p, uint16_t type)
{
    int n = 0;
    pthread_mutex_lock(&p->m);
    for (size_t i = 0; i < p->nrec; i++)
        n += p->recs[i].type == type;
    pthread_mutex_unlock(&p->m);
    return n;
}

static int has_rec(peer_t *p, uint16_t type, uint64_t src)
{
    int found = 0;
    pthread_mutex_lock(&p->m);
    for (size_t i = 0; i < p->nrec; i++)
        found |= p->recs[i].type == type && p->recs[i].src == src;
    pthread_mutex_unlock(&p->m);
    return found;
}

static size_t nrec(peer_t *p)
{
    pthread_mutex_lock(&p->m);
    size_t n = p->nrec;
    pthread_mutex_unlock(&p->m);
    return n;
}

static uint64_t blobs(peer_t *p)
{
    pthread_mutex_lock(&p->m);
    uint64_t n = p->blobs;
    pthread_mutex_unlock(&p->m);
    return n;
}

/* Wait for done (or failure); returns done. */
static int wait_done(peer_t *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&p->m);
    while (!p->done && !p->failed)
        if (pthread_cond_timedwait(&p->c, &p->m, &ts) != 0)
            break;
    int d = p->done;
    pthread_mutex_unlock(&p->m);
    return d;
}

static void assert_ok(peer_t *p)
{
    pthread_mutex_lock(&p->m);
    int f = p->failed;
    char why[200];
    memcpy(why, p->why, sizeof(why));
    pthread_mutex_unlock(&p->m);
    if (f)
        fail_msg("actor reported: %s", why);
}

static wb_rt_t *rt_new(uint32_t inbox_limit)
{
    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    if (inbox_limit)
        cfg.inbox_limit = inbox_limit;
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    return rt;
}

/* Free the runtime; every event block must be back in the pool: nothing
 * sockets/ queued, held or stashed was lost. */
static void rt_free(wb_rt_t *rt)
{
    wb_rt_free(rt);
    assert_int_equal(wb_pool_trim(), 0);
}

/* Listen on host:0 for p; returns the port. */
static uint16_t listen_on(peer_t *p, const char *host, const wb_tcp_opts_t *opts, uint64_t *lid)
{
    size_t from = nrec(p);
    assert_int_equal(wb_tcp_listen(p->rt, WB_LANE_ACTOR, p->id, host, 0, opts, lid), 0);
    rec_t r;
    assert_true(wait_rec(p, WB_EV_TCP_LISTENING, *lid, from, &r) >= 0);
    if (r.status != 0)
        fail_msg("listen %s: %s", host, r.text);
    assert_int_not_equal(r.cookie, 0);
    return (uint16_t)r.cookie;
}

/* ---- raw sockets, the peers sockets/ does not control -------------------------- */

static int raw_connect(int family, uint16_t port, int rcvbuf)
{
    int fd = socket(family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int rc;
    if (family == AF_INET) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    } else {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        inet_pton(AF_INET6, "::1", &a.sin6_addr);
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    }
    assert_int_equal(rc, 0);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        assert_true(k > 0);
        c += k;
        n -= (size_t)k;
    }
}

/* Read exactly n bytes; 0, or -1 on EOF/error/timeout. */
static int raw_recv(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t k = recv(fd, c, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The peer closed: recv sees EOF or a reset before the timeout. */
static int raw_sees_close(int fd)
{
    char b[4096];
    for (;;) {
        ssize_t k = recv(fd, b, sizeof(b), 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            return 1;
        if (k < 0 && errno != EINTR)
            return 0; /* timeout */
    }
}

/* A port nobody listens on (bound, read, released). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* A port whose SYNs go unanswered: a listener with a backlog of 0 whose
 * queue is already full (Linux drops further SYNs). fds: the listener and
 * two fillers, for the caller to close. */
static uint16_t hang_port(int fds[3])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 0), 0);
    socklen_t len = sizeof(a);
    getsockname(l, (struct sockaddr *)&a, &len);
    fds[0] = l;
    for (int i = 1; i < 3; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fds[i], (struct sockaddr *)&a, sizeof(a));
    }
    sleep_ms(50);
    return ntohs(a.sin_port);
}

static int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::1", &a.sin6_addr);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* ---- echo ------------------------------------------------------------------- */

enum { ECHO_N = 10000, WINDOW = 500, RING = 8192 };

/* The echo server: sends every blob back on its connection, holding what the
 * network lane refuses until WB_EV_RESUME, and pausing a connection's reads
 * while its write queue is over the high watermark. */
typedef struct {
    wb_event_t *ring[RING];
    uint64_t conn[RING];
    size_t head, n;
    int waiting_resume;
} echo_t;

static void echo_pump(peer_t *p)
{
    echo_t *e = p->user;
    while (e->n > 0) {
        wb_event_t *ev = e->ring[e->head];
        ev->src_lane = WB_LANE_ACTOR;
        ev->src = p->id;
        int rc = wb_tcp_send(p->rt, e->conn[e->head], ev);
        if (rc == WB_EAGAIN)
            return;
        if (rc != 0)
            wb_event_free(ev);
        e->head = (e->head + 1) % RING;
        e->n--;
    }
}

static int echo_hook(peer_t *p, wb_event_t *ev)
{
    echo_t *e = p->user;
    switch (ev->type) {
    case WB_EV_TCP_BLOB:
        if (e->n == RING) {
            peer_fail(p, "echo ring overflow");
            return 0;
        }
        e->ring[(e->head + e->n) % RING] = ev;
        e->conn[(e->head + e->n) % RING] = ev->src;
        e->n++;
        echo_pump(p);
        return 1;
    case WB_EV_RESUME:
        echo_pump(p);
        return 0;
    case WB_EV_TCP_BACKPRESSURE:
        wb_tcp_pause(p->rt, ev->src);
        return 0;
    case WB_EV_TCP_WRITABLE:
        wb_tcp_resume(p->rt, ev->src);
        return 0;
    default:
        return 0;
    }
}

static size_t msg_len(uint32_t seq)
{
    return 4 + seq % 3000;
}

static wb_event_t *msg_new(uint32_t seq)
{
    size_t n = msg_len(seq);
    wb_event_t *ev = wb_event_new(WB_EV_USER, n);
    uint8_t *d = ev->data;
    memcpy(d, &seq, 4);
    for (size_t i = 4; i < n; i++)
        d[i] = (uint8_t)(seq + i);
    return ev;
}

static int msg_check(const wb_event_t *ev, uint32_t seq)
{
    if (ev->len != msg_len(seq))
        return 0;
    const uint8_t *d = ev->data;
    uint32_t s;
    memcpy(&s, d, 4);
    if (s != seq)
        return 0;
    for (size_t i = 4; i < ev->len; i++)
        if (d[i] != (uint8_t)(seq + i))
            return 0;
    return 1;
}

/* The client: keeps WINDOW messages in flight, checks what comes back. */
typedef struct {
    uint64_t conn;
    uint32_t sent, recvd;
    int bp;
    int refused;
} client_t;

static void client_pump(peer_t *p)
{
    client_t *c = p->user;
    while (c->conn != 0 && c->sent < ECHO_N && c->sent - c->recvd < WINDOW && !c->bp) {
        wb_event_t *ev = msg_new(c->sent);
        ev->src_lane = WB_LANE_ACTOR;
        ev->src = p->id;
        int rc = wb_tcp_send(p->rt, c->conn, ev);
        if (rc == WB_EAGAIN) {
            wb_event_free(ev);
            c->refused++;
            return; /* WB_EV_RESUME comes */
        }
        if (rc != 0) {
            wb_event_free(ev);
            peer_fail(p, "send failed");
            return;
        }
        c->sent++;
    }
}

static int client_hook(peer_t *p, wb_event_t *ev)
{
    client_t *c = p->user;
    switch (ev->type) {
    case WB_EV_TCP_OPENED:
        c->conn = ev->src;
        client_pump(p);
        break;
    case WB_EV_TCP_BLOB:
        if (!msg_check(ev, c->recvd)) {
            char why[100];
            snprintf(why, sizeof(why), "message %u wrong (len %u)", c->recvd, ev->len);
            peer_fail(p, why);
            break;
        }
        if (++c->recvd == ECHO_N)
            peer_done(p);
        client_pump(p);
        break;
    case WB_EV_TCP_BACKPRESSURE:
        c->bp = 1;
        break;
    case WB_EV_TCP_WRITABLE:
        c->bp = 0;
        client_pump(p);
        break;
    case WB_EV_RESUME:
        client_pump(p);
        break;
    case WB_EV_TCP_CLOSED:
        if (c->recvd < ECHO_N)
            peer_fail(p, "closed early");
        break;
    }
    return 0;
}

static void run_echo(const char *host)
{
    /* A small inbox: both the client's sends and the server's blobs meet
     * WB_EAGAIN and resume. */
    wb_rt_t *rt = rt_new(256);
    static echo_t e;
    static client_t cl;
    memset(&e, 0, sizeof(e));
    memset(&cl, 0, sizeof(cl));
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook, &e);
    peer_init(&cli, rt, client_hook, &cl);
    peer_spawn(&srv);
    peer_spawn(&cli);
    assert_int_equal(wb_rt_start(rt), 0);

    uint64_t lid, conn;
    uint16_t port = listen_on(&srv, host, NULL, &lid);
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, host, port, NULL, &conn), 0);
    rec_t r;
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, conn, 0, &r) >= 0);
    assert_int_equal(r.cookie, 0);
    rec_t sr;
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, &sr) >= 0);
    assert_int_equal(sr.cookie, lid);
    assert_true(wait_done(&cli));
    assert_ok(&cli);
    assert_ok(&srv);

    /* The client closes; the server hears "peer closed". */
    assert_int_equal(wb_tcp_close(rt, conn), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.text, "closed by owner");
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, sr.src, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed");
    assert_int_equal(r.cookie, lid);

    rt_free(rt);
    fprintf(stderr, "echo %s: %u messages, client refused %d times\n", host, cl.recvd, cl.refused);
    assert_int_equal(cl.recvd, ECHO_N);
    assert_int_equal(e.n, 0);
    peer_fini(&srv);
    peer_fini(&cli);
}

static void test_echo_ipv4(void **state)
{
    (void)state;
    run_echo("127.0.0.1");
}

static void test_echo_ipv6(void **state)
{
    (void)state;
    if (!have_ipv6_loopback()) {
        fprintf(stderr, "skipping the IPv6 echo test: this machine has no ::1\n");
        skip();
    }
    run_echo("::1");
}

/* ---- oversized messages ----------------------------------------------------- */

static int echo_simple_hook(peer_t *p, wb_event_t *ev)
{
    if (ev->type != WB_EV_TCP_BLOB)
        return 0;
    uint64_t conn = ev->src;
    ev->src_lane = WB_LANE_ACTOR;
    ev->src = p->id;
    if (wb_tcp_send(p->rt, conn, ev) != 0)
        return 0;
    return 1;
}

static void send_text(wb_rt_t *rt, uint64_t conn, const char *s, size_t n)
{
    wb_event_t *ev = wb_event_new(WB_EV_USER, n);
    if (s != NULL)
        memcpy(ev->data, s, n);
    else
        memset(ev->data, 'x', n);
    int rc;
    /* From the test thread: no resume comes here, so poll. */
    while ((rc = wb_tcp_send(rt, conn, ev)) == WB_EAGAIN)
        sleep_ms(1);
    assert_int_equal(rc, 0);
}

static void test_oversize(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv, a, b;
    peer_init(&srv, rt, echo_simple_hook, NULL);
    peer_init(&a, rt, NULL, NULL);
    peer_init(&b, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&a);
    peer_spawn(&b);
    assert_int_equal(wb_rt_start(rt), 0);

    wb_tcp_opts_t small, big;
    wb_tcp_opts_init(&small);
    small.max_message = 1024;
    wb_tcp_opts_init(&big);
    big.max_message = 8u << 20;
    uint64_t lid, ca, cb;
    uint16_t port = listen_on(&srv, "127.0.0.1", &small, &lid);

    /* a allows itself big messages; the server does not. */
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, a.id, "127.0.0.1", port, &big, &ca), 0);
    assert_true(wait_rec(&a, WB_EV_TCP_OPENED, ca, 0, NULL) >= 0);
    rec_t so;
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, &so) >= 0);
    send_text(rt, ca, NULL, 1024); /* exactly the maximum: fine */
    for (int i = 0; i < 2000 && blobs(&srv) < 1; i++)
        sleep_ms(5);
    assert_int_equal(blobs(&srv), 1);
    send_text(rt, ca, NULL, 5000);
    rec_t r;
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, so.src, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ETOOBIG);
    assert_string_equal(r.text, "message of 5000 bytes exceeds maximum 1024");
    assert_int_equal(blobs(&srv), 1);
    assert_true(wait_rec(&a, WB_EV_TCP_CLOSED, ca, 0, &r) >= 0);
    assert_true(r.status == WB_ECLOSED || r.status == WB_EIO);

    /* The server serves the next client. */
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, b.id, "127.0.0.1", port, &small, &cb), 0);
    assert_true(wait_rec(&b, WB_EV_TCP_OPENED, cb, 0, NULL) >= 0);
    send_text(rt, cb, "hello", 5);
    for (int i = 0; i < 2000 && blobs(&b) < 1; i++)
        sleep_ms(5);
    assert_int_equal(blobs(&b), 1);

    /* Sending more than one's own maximum closes one's own connection. */
    send_text(rt, cb, NULL, 2000);
    assert_true(wait_rec(&b, WB_EV_TCP_CLOSED, cb, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ETOOBIG);
    assert_string_equal(r.text, "message of 2000 bytes exceeds maximum 1024");

    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&a);
    peer_fini(&b);
}

/* ---- hostile input ---------------------------------------------------------- */

/* Connect a raw socket, send bytes (optionally half-close), and return the
 * server's CLOSED record for that connection. */
static void hostile(peer_t *srv, uint16_t port, const void *bytes, size_t n, int half_close,
                    rec_t *closed)
{
    size_t from = nrec(srv);
    int fd = raw_connect(AF_INET, port, 0);
    rec_t o;
    assert_true(wait_rec(srv, WB_EV_TCP_OPENED, 0, from, &o) >= 0);
    raw_send(fd, bytes, n);
    if (half_close)
        shutdown(fd, SHUT_WR);
    assert_true(wait_rec(srv, WB_EV_TCP_CLOSED, o.src, from, closed) >= 0);
    assert_true(raw_sees_close(fd));
    close(fd);
}

static void test_hostile_input(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv, b;
    peer_init(&srv, rt, echo_simple_hook, NULL);
    peer_init(&b, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&b);
    assert_int_equal(wb_rt_start(rt), 0);
    uint64_t lid;
    uint16_t port = listen_on(&srv, "127.0.0.1", NULL, &lid);
    rec_t r;

    const char *http = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    hostile(&srv, port, http, strlen(http), 0, &r);
    assert_int_equal(r.status, WB_ETOOBIG);
    assert_string_equal(r.text, "message of 1195725856 bytes exceeds maximum 1048576");

    const uint8_t huge[8] = {0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c', 'd'};
    hostile(&srv, port, huge, sizeof(huge), 0, &r);
    assert_int_equal(r.status, WB_ETOOBIG);
    assert_string_equal(r.text, "message of 4294967295 bytes exceeds maximum 1048576");

    uint8_t cut[4 + 10];
    wb_frame_put_header(cut, 100);
    memset(cut + 4, 'z', 10);
    hostile(&srv, port, cut, sizeof(cut), 1, &r);
    assert_int_equal(r.status, WB_EPROTO);
    assert_string_equal(r.text, "peer closed in the middle of a message (10 of 100 bytes)");

    hostile(&srv, port, cut, 2, 1, &r);
    assert_int_equal(r.status, WB_EPROTO);
    assert_string_equal(r.text, "peer closed in the middle of a message (2 of 4 length bytes)");

    /* Random bytes: whatever they say, a clear error and a close. */
    uint8_t junk[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(junk); i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (uint8_t)(x >> 16);
    }
    junk[0] = 0x7f; /* a first prefix far above the maximum */
    hostile(&srv, port, junk, sizeof(junk), 0, &r);
    assert_int_equal(r.status, WB_ETOOBIG);
    assert_non_null(strstr(r.text, "exceeds maximum 1048576"));

    /* Still serving. */
    uint64_t cb;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, b.id, "127.0.0.1", port, NULL, &cb), 0);
    assert_true(wait_rec(&b, WB_EV_TCP_OPENED, cb, 0, NULL) >= 0);
    send_text(rt, cb, "still there?", 12);
    for (int i = 0; i < 2000 && blobs(&b) < 1; i++)
        sleep_ms(5);
    assert_int_equal(blobs(&b), 1);

    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&b);
}

/* ---- a slow reader ---------------------------------------------------------- */

enum { BIG = 64 * 1024, SLOW_N = 200, SLICE = 4, TICK = WB_EV_USER + 1 };

typedef struct {
    int polite;
    uint64_t conn;
    uint32_t sent;
    int bp;
    uint64_t max_bp_queued;
    int closed;
} sender_t;

static void tick_via_net(wb_rt_t *rt, void *arg)
{
    peer_t *p = arg;
    wb_event_t *ev = wb_event_new(TICK, 0);
    ev->flags |= WB_EVF_CONTROL;
    wb_event_route(ev, WB_LANE_NET, 0, WB_LANE_ACTOR, p->id);
    if (wb_rt_send(rt, ev) != 0)
        wb_event_free(ev);
}

static void sender_pump(peer_t *p)
{
    sender_t *s = p->user;
    for (int i = 0; i < SLICE && s->sent < SLOW_N && !(s->polite && s->bp) && !s->closed; i++) {
        wb_event_t *ev = wb_event_new(WB_EV_USER, BIG);
        memset(ev->data, (int)(s->sent & 0xff), BIG);
        memcpy(ev->data, &s->sent, 4);
        ev->src_lane = WB_LANE_ACTOR;
        ev->src = p->id;
        if (wb_tcp_send(p->rt, s->conn, ev) != 0) {
            wb_event_free(ev);
            return; /* resume (or writable) brings us back */
        }
        s->sent++;
    }
    /* Next slice after a round trip through the network lane: a
     * BACKPRESSURE raised by these sends is then ahead of the TICK, so a
     * polite sender overshoots write_high by at most one slice. */
    if (s->sent < SLOW_N && !(s->polite && s->bp) && !s->closed)
        assert_int_equal(wb_rt_call(p->rt, WB_LANE_NET, tick_via_net, p), 0);
}

static int sender_hook(peer_t *p, wb_event_t *ev)
{
    sender_t *s = p->user;
    switch (ev->type) {
    case WB_EV_TCP_OPENED:
        s->conn = ev->src;
        sender_pump(p);
        break;
    case TICK:
    case WB_EV_RESUME:
        sender_pump(p);
        break;
    case WB_EV_TCP_BACKPRESSURE:
        s->bp = 1;
        if (ev->cookie > s->max_bp_queued)
            s->max_bp_queued = ev->cookie;
        break;
    case WB_EV_TCP_WRITABLE:
        s->bp = 0;
        sender_pump(p);
        break;
    case WB_EV_TCP_CLOSED:
        s->closed = 1;
        break;
    }
    return 0;
}

static void test_slow_reader(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    static sender_t snd;
    memset(&snd, 0, sizeof(snd));
    snd.polite = 1;
    peer_t srv;
    peer_init(&srv, rt, sender_hook, &snd);
    peer_spawn(&srv);
    assert_int_equal(wb_rt_start(rt), 0);
    wb_tcp_opts_t o;
    wb_tcp_opts_init(&o);
    o.write_high = 256 * 1024;
    o.write_low = 64 * 1024;
    o.write_hard_cap = 2u << 20;
    uint64_t lid;
    uint16_t port = listen_on(&srv, "127.0.0.1", &o, &lid);

    int fd = raw_connect(AF_INET, port, 4096);
    rec_t bp;
    assert_true(wait_rec(&srv, WB_EV_TCP_BACKPRESSURE, 0, 0, &bp) >= 0);
    /* At the crossing the queue is over write_high by less than a message. */
    assert_true(bp.cookie > o.write_high);
    assert_true(bp.cookie <= o.write_high + 4 + BIG);
    sleep_ms(200);
    assert_int_equal(count_rec(&srv, WB_EV_TCP_CLOSED), 0);

    /* Now read everything, checking each frame. */
    uint8_t *buf = malloc(BIG);
    for (uint32_t i = 0; i < SLOW_N; i++) {
        uint8_t hdr[4];
        assert_int_equal(raw_recv(fd, hdr, 4), 0);
        assert_int_equal((uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3], BIG);
        assert_int_equal(raw_recv(fd, buf, BIG), 0);
        uint32_t seq;
        memcpy(&seq, buf, 4);
        assert_int_equal(seq, i);
        assert_int_equal(buf[BIG - 1], (uint8_t)i);
    }
    free(buf);
    rec_t wr;
    assert_true(wait_rec(&srv, WB_EV_TCP_WRITABLE, 0, 0, &wr) >= 0);
    assert_true(wr.cookie <= o.write_low);
    assert_int_equal(count_rec(&srv, WB_EV_TCP_CLOSED), 0);
    close(fd);
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, 0, NULL) >= 0);
    int nbp = count_rec(&srv, WB_EV_TCP_BACKPRESSURE);
    rt_free(rt);
    /* The sender's state is the actor lane's; read it after the lanes stop. */
    fprintf(stderr, "slow reader: %d backpressure events, largest queue at one %llu bytes\n", nbp,
            (unsigned long long)snd.max_bp_queued);
    assert_int_equal(snd.sent, SLOW_N);
    peer_fini(&srv);
}

/* A sender that ignores backpressure is cut off at the hard cap. */
static void test_hard_cap(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    static sender_t snd;
    memset(&snd, 0, sizeof(snd));
    snd.polite = 0;
    peer_t srv;
    peer_init(&srv, rt, sender_hook, &snd);
    peer_spawn(&srv);
    assert_int_equal(wb_rt_start(rt), 0);
    wb_tcp_opts_t o;
    wb_tcp_opts_init(&o);
    o.write_high = 256 * 1024;
    o.write_low = 64 * 1024;
    o.write_hard_cap = 1u << 20;
    o.max_message = 128 * 1024;
    uint64_t lid;
    uint16_t port = listen_on(&srv, "127.0.0.1", &o, &lid);
    int fd = raw_connect(AF_INET, port, 4096);
    rec_t r;
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ETOOBIG);
    assert_non_null(strstr(r.text, "write queue overflow"));
    assert_non_null(strstr(r.text, "cap 1048576"));
    assert_true(count_rec(&srv, WB_EV_TCP_BACKPRESSURE) >= 1);
    assert_true(raw_sees_close(fd));
    close(fd);
    rt_free(rt);
    peer_fini(&srv);
}

/* ---- the persistent dialer -------------------------------------------------- */

static void test_persistent_dialer(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv, cli;
    peer_init(&srv, rt, echo_simple_hook, NULL);
    peer_init(&cli, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    assert_int_equal(wb_rt_start(rt), 0);

    uint16_t port = free_port();
    wb_tcp_opts_t o;
    wb_tcp_opts_init(&o);
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 160;
    o.reconnect_reset_ms = 300;
    uint64_t did;
    assert_int_equal(wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, &o, &did),
                     0);

    /* Six failures: delays inside [c/2, c], c = min(160, 20 * 2^n). */
    size_t from = 0;
    uint64_t prev_t = 0, prev_delay = 0;
    for (unsigned n = 0; n < 6; n++) {
        rec_t r;
        int i = wait_rec(&cli, WB_EV_TCP_RETRY, did, from, &r);
        assert_true(i >= 0);
        from = (size_t)i + 1;
        uint64_t c = 20u << n;
        if (c > 160)
            c = 160;
        assert_int_equal(r.status, WB_EIO);
        assert_non_null(strstr(r.text, "connection refused"));
        if (r.cookie < c / 2 || r.cookie > c)
            fail_msg("retry %u: delay %llu outside [%llu, %llu]", n, (unsigned long long)r.cookie,
                     (unsigned long long)c / 2, (unsigned long long)c);
        /* Not early: measured from the first retry, so the lateness of one
         * delivery to the actor (a loaded machine) is not counted against
         * the next gap; only the first one's can be, hence the slack. */
        if (n > 0 && r.t_ms - prev_t + 30 < prev_delay)
            fail_msg("retry %u came %llu ms after the first, delays since add up to %llu", n,
                     (unsigned long long)(r.t_ms - prev_t), (unsigned long long)prev_delay);
        if (n == 0)
            prev_t = r.t_ms;
        prev_delay += r.cookie;
    }
    assert_int_equal(count_rec(&cli, WB_EV_TCP_OPENED), 0);
    assert_int_equal(count_rec(&cli, WB_EV_TCP_CLOSED), 0); /* attempts are not reported */

    /* The server comes up on that port; the dialer finds it. */
    uint64_t lid;
    size_t sfrom = nrec(&srv);
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, srv.id, "127.0.0.1", port, NULL, &lid), 0);
    rec_t r;
    assert_true(wait_rec(&srv, WB_EV_TCP_LISTENING, lid, sfrom, &r) >= 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.cookie, port);
    rec_t op1;
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, 0, 0, &op1) >= 0);
    assert_int_equal(op1.cookie, did);
    send_text(rt, op1.src, "ping", 4);
    for (int i = 0; i < 2000 && blobs(&cli) < 1; i++)
        sleep_ms(5);
    assert_int_equal(blobs(&cli), 1);

    /* The server drops it after it lasted past reconnect_reset_ms: the dialer
     * reconnects with a new id, after a delay back at the first ceiling. */
    sleep_ms(350);
    rec_t so;
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, &so) >= 0);
    size_t cfrom = nrec(&cli);
    assert_int_equal(wb_tcp_close(rt, so.src), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, op1.src, cfrom, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_int_equal(r.cookie, did);
    assert_true(wait_rec(&cli, WB_EV_TCP_RETRY, did, cfrom, &r) >= 0);
    assert_true(r.cookie >= 10 && r.cookie <= 20);
    rec_t op2;
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, 0, cfrom, &op2) >= 0);
    assert_int_not_equal(op2.src, op1.src);
    assert_int_equal(op2.cookie, did);

    /* A drop soon after connecting does not reset: the delay keeps growing
     * from where it was. */
    rec_t so2;
    int k = wait_rec(&srv, WB_EV_TCP_OPENED, 0, (size_t)0, &so2);
    assert_true(k >= 0);
    k = wait_rec(&srv, WB_EV_TCP_OPENED, 0, (size_t)k + 1, &so2);
    assert_true(k >= 0);
    cfrom = nrec(&cli);
    assert_int_equal(wb_tcp_close(rt, so2.src), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_RETRY, did, cfrom, &r) >= 0);
    assert_true(r.cookie >= 20 && r.cookie <= 40);
    rec_t op3;
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, 0, cfrom, &op3) >= 0);

    /* Turning it off: its connection closes cleanly, then the dialer. */
    cfrom = nrec(&cli);
    size_t sclosed = (size_t)count_rec(&srv, WB_EV_TCP_CLOSED);
    assert_int_equal(wb_tcp_close(rt, did), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, op3.src, cfrom, &r) >= 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.text, "closed by owner");
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, did, cfrom, &r) >= 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.text, "dialer closed");
    for (int i = 0; i < 2000 && (size_t)count_rec(&srv, WB_EV_TCP_CLOSED) == sclosed; i++)
        sleep_ms(5);
    assert_int_equal((size_t)count_rec(&srv, WB_EV_TCP_CLOSED), sclosed + 1);
    int opened = count_rec(&srv, WB_EV_TCP_OPENED);
    sleep_ms(400);
    assert_int_equal(count_rec(&srv, WB_EV_TCP_OPENED), opened);

    rt_free(rt);
    /* Nothing after the dialer's CLOSED: no retry, no connection. */
    assert_int_equal(cli.recs[cli.nrec - 1].type, WB_EV_TCP_CLOSED);
    assert_int_equal(cli.recs[cli.nrec - 1].src, did);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* ---- a flooding client against a small inbox --------------------------------- */

enum { FLOOD_N = 20000, FLOOD_LEN = 100 };

typedef struct {
    uint32_t next;
    uint32_t at_close;
} flood_t;

static int flood_hook(peer_t *p, wb_event_t *ev)
{
    flood_t *f = p->user;
    if (ev->type == WB_EV_TCP_BLOB) {
        uint32_t seq;
        if (ev->len != FLOOD_LEN) {
            peer_fail(p, "wrong length");
            return 0;
        }
        memcpy(&seq, ev->data, 4);
        if (seq != f->next) {
            char why[80];
            snprintf(why, sizeof(why), "got %u, expected %u", seq, f->next);
            peer_fail(p, why);
        }
        f->next = seq + 1;
        if (seq % 16 == 0)
            usleep(200); /* slower than the network */
    } else if (ev->type == WB_EV_TCP_CLOSED) {
        f->at_close = f->next;
        peer_done(p);
    }
    return 0;
}

typedef struct {
    int fd;
} writer_arg_t;

static void *flood_writer(void *arg)
{
    writer_arg_t *w = arg;
    enum { PER = 64 };
    uint8_t buf[PER * (4 + FLOOD_LEN)];
    for (uint32_t i = 0; i < FLOOD_N; i += PER) {
        size_t off = 0;
        for (uint32_t j = i; j < i + PER && j < FLOOD_N; j++) {
            wb_frame_put_header(buf + off, FLOOD_LEN);
            memset(buf + off + 4, 'f', FLOOD_LEN);
            memcpy(buf + off + 4, &j, 4);
            off += 4 + FLOOD_LEN;
        }
        const uint8_t *p = buf;
        while (off > 0) {
            ssize_t k = send(w->fd, p, off, MSG_NOSIGNAL);
            if (k <= 0)
                return NULL;
            p += k;
            off -= (size_t)k;
        }
    }
    shutdown(w->fd, SHUT_WR);
    return NULL;
}

static void test_flood_small_inbox(void **state)
{
    (void)state;
    enum { LIMIT = 64 };
    wb_rt_t *rt = rt_new(LIMIT);
    static flood_t f;
    memset(&f, 0, sizeof(f));
    peer_t srv;
    peer_init(&srv, rt, flood_hook, &f);
    peer_spawn(&srv);
    assert_int_equal(wb_rt_start(rt), 0);
    uint64_t lid;
    uint16_t port = listen_on(&srv, "127.0.0.1", NULL, &lid);
    writer_arg_t w = {raw_connect(AF_INET, port, 0)};
    pthread_t th;
    pthread_create(&th, NULL, flood_writer, &w);
    assert_true(wait_done(&srv));
    assert_ok(&srv);
    pthread_join(th, NULL);
    close(w.fd);
    wb_lane_stats_t st;
    wb_rt_stats(rt, WB_LANE_ACTOR, &st);
    rt_free(rt);
    fprintf(stderr, "flood: %u messages, actor inbox refused %llu sends, deepest %llu\n", f.next,
            (unsigned long long)st.refused, (unsigned long long)st.max_depth);
    assert_int_equal(f.next, FLOOD_N);
    assert_int_equal(f.at_close, FLOOD_N); /* CLOSED after every blob */
    assert_true(st.refused > 0);
    assert_true(st.max_depth <= LIMIT);
    peer_fini(&srv);
}

/* ---- pause and resume --------------------------------------------------------- */

static void sync_net(wb_rt_t *rt);

static void test_pause_resume(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv;
    peer_init(&srv, rt, NULL, NULL);
    peer_spawn(&srv);
    assert_int_equal(wb_rt_start(rt), 0);
    uint64_t lid;
    uint16_t port = listen_on(&srv, "127.0.0.1", NULL, &lid);
    int fd = raw_connect(AF_INET, port, 0);
    rec_t o;
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, &o) >= 0);
    assert_int_equal(wb_tcp_pause(rt, o.src), 0);
    sync_net(rt);
    uint8_t fr[4 + 3];
    wb_frame_put_header(fr, 3);
    memcpy(fr + 4, "abc", 3);
    for (int i = 0; i < 10; i++)
        raw_send(fd, fr, sizeof(fr));
    sleep_ms(200);
    assert_int_equal(blobs(&srv), 0);
    assert_int_equal(wb_tcp_resume(rt, o.src), 0);
    for (int i = 0; i < 2000 && blobs(&srv) < 10; i++)
        sleep_ms(5);
    assert_int_equal(blobs(&srv), 10);
    close(fd);
    rt_free(rt);
    peer_fini(&srv);
}

/* ---- limits, errors, arguments ------------------------------------------------ */

static void test_connection_limits(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv;
    peer_init(&srv, rt, NULL, NULL);
    peer_spawn(&srv);
    assert_int_equal(wb_rt_start(rt), 0);
    wb_tcp_opts_t o;
    wb_tcp_opts_init(&o);
    o.max_connections = 2;
    uint64_t lid;
    uint16_t port = listen_on(&srv, "127.0.0.1", &o, &lid);
    int a = raw_connect(AF_INET, port, 0);
    int b = raw_connect(AF_INET, port, 0);
    rec_t ra;
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, &ra) >= 0);
    int i = wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, NULL);
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, (size_t)i + 1, NULL) >= 0);
    int c = raw_connect(AF_INET, port, 0);
    assert_true(raw_sees_close(c)); /* refused: accepted and closed */
    close(c);
    assert_int_equal(count_rec(&srv, WB_EV_TCP_OPENED), 2);
    /* One leaves; the next is welcome. */
    close(a);
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, 0, NULL) >= 0);
    int d = raw_connect(AF_INET, port, 0);
    for (int k = 0; k < 2000 && count_rec(&srv, WB_EV_TCP_OPENED) < 3; k++)
        sleep_ms(5);
    assert_int_equal(count_rec(&srv, WB_EV_TCP_OPENED), 3);
    close(b);
    close(d);
    rt_free(rt);
    peer_fini(&srv);
}

static void test_errors_and_names(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv, cli;
    peer_init(&srv, rt, NULL, NULL);
    peer_init(&cli, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);

    /* Bad arguments are refused at once. */
    uint64_t id;
    wb_tcp_opts_t o;
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, srv.id, NULL, 0, NULL, &id), WB_EINVAL);
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, srv.id, "", 0, NULL, &id), WB_EINVAL);
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", 0, NULL, &id), WB_EINVAL);
    wb_tcp_opts_init(&o);
    o.write_low = o.write_high + 1;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", 9, &o, &id), WB_EINVAL);
    wb_tcp_opts_init(&o);
    o.max_message = WB_TCP_MAX_MESSAGE_LIMIT + 1;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", 9, &o, &id), WB_EINVAL);
    wb_tcp_opts_init(&o);
    o.reconnect_min_ms = 1000;
    o.reconnect_max_ms = 10;
    assert_int_equal(wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, cli.id, "x", 9, &o, &id), WB_EINVAL);
    assert_int_equal(wb_tcp_send(rt, 0, NULL), WB_EINVAL);
    assert_int_equal(wb_tcp_close(rt, 0), WB_EINVAL);

    /* Requests made before the start wait for it. */
    uint64_t lid;
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, srv.id, "127.0.0.1", 0, NULL, &lid), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    rec_t r;
    assert_true(wait_rec(&srv, WB_EV_TCP_LISTENING, lid, 0, &r) >= 0);
    assert_int_equal(r.status, 0);
    uint16_t port = (uint16_t)r.cookie;
    char want[80];
    snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)port);
    assert_string_equal(r.text, want);

    /* The same port again: in use. */
    uint64_t l2;
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, srv.id, "127.0.0.1", port, NULL, &l2), 0);
    assert_true(wait_rec(&srv, WB_EV_TCP_LISTENING, l2, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EBUSY);
    assert_non_null(strstr(r.text, "address already in use"));

    /* Nobody there. */
    uint64_t c1;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", free_port(), NULL, &c1),
                     0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, c1, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EIO);
    assert_non_null(strstr(r.text, "connection refused"));
    assert_int_equal(count_rec(&cli, WB_EV_TCP_OPENED), 0);

    /* A name, resolved (where the machine can resolve "localhost" at all: a
     * bare chroot may have no /etc/hosts); "[...]" around an address is
     * accepted. */
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo("localhost", NULL, &hints, &ai) == 0) {
        freeaddrinfo(ai);
        uint64_t c2;
        assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "localhost", port, NULL, &c2), 0);
        assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, c2, 0, &r) >= 0);
        assert_non_null(strstr(r.text, "127.0.0.1:"));
    } else {
        printf("note: this machine cannot resolve \"localhost\"; that case is skipped\n");
    }
    uint64_t c3;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "[127.0.0.1]", port, NULL, &c3), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, c3, 0, NULL) >= 0);
    uint64_t c4;
    assert_int_equal(
        wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "no-such-host.invalid", port, NULL, &c4), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, c4, 0, &r) >= 0);
    /* WB_EIO when the machine has no resolver to ask at all. */
    assert_true(r.status == WB_ENOENT || r.status == WB_EIO);
    assert_non_null(strstr(r.text, "resolve no-such-host.invalid: "));

    /* A listener that never answers: the attempt times out. */
    int hang[3];
    uint16_t hport = hang_port(hang);
    uint64_t c7;
    wb_tcp_opts_init(&o);
    o.connect_timeout_ms = 200;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", hport, &o, &c7), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, c7, 0, &r) >= 0);
    snprintf(want, sizeof(want), "connect 127.0.0.1:%u: timed out after 200 ms", (unsigned)hport);
    assert_int_equal(r.status, WB_ETIMEDOUT);
    assert_string_equal(r.text, want);
    assert_false(has_rec(&cli, WB_EV_TCP_OPENED, c7));
    for (int i = 0; i < 3; i++)
        close(hang[i]);

    /* Messages sent before the connection opens wait for it. */
    uint64_t c5;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, NULL, &c5), 0);
    send_text(rt, c5, "early", 5);
    for (int i = 0; i < 2000 && blobs(&srv) < 1; i++)
        sleep_ms(5);
    assert_int_equal(blobs(&srv), 1);

    /* Closing the listener: CLOSED, and no more connections. */
    assert_int_equal(wb_tcp_close(rt, lid), 0);
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, lid, 0, &r) >= 0);
    assert_string_equal(r.text, "listener closed");
    uint64_t c6;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, NULL, &c6), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, c6, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EIO);

    /* Closing an unknown or ended id is a no-op. */
    assert_int_equal(wb_tcp_close(rt, c1), 0);
    assert_int_equal(wb_tcp_close(rt, 999999999), 0);

    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* ---- shutdown with everything open ------------------------------------------- */

static int block_hook(peer_t *p, wb_event_t *ev)
{
    atomic_int *gate = p->user;
    if (ev->type == WB_EV_TCP_BLOB)
        while (!atomic_load(gate))
            usleep(1000);
    return 0;
}

static void test_stop_with_everything_open(void **state)
{
    (void)state;
    /* Attached and never started: nothing leaks. */
    wb_rt_t *rt = rt_new(0);
    uint64_t id;
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, 1, "127.0.0.1", 0, NULL, &id), 0);
    rt_free(rt);

    /* Deterministic runtimes have no loop for sockets. */
    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    cfg.deterministic = 1;
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), WB_ESTATE);
    rt_free(rt);

    rt = rt_new(4);
    static atomic_int gate;
    atomic_store(&gate, 0);
    peer_t srv, cli;
    peer_init(&srv, rt, block_hook, &gate);
    peer_init(&cli, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    assert_int_equal(wb_rt_start(rt), 0);
    uint64_t lid, conn, did, pend, res;
    uint16_t port = listen_on(&srv, "127.0.0.1", NULL, &lid);
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, NULL, &conn), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, conn, 0, NULL) >= 0);
    wb_tcp_opts_t o;
    wb_tcp_opts_init(&o);
    o.reconnect_min_ms = 5000;
    o.reconnect_max_ms = 5000;
    assert_int_equal(
        wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", free_port(), &o, &did), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_RETRY, did, 0, NULL) >= 0);
    /* The server's actor blocks on its first blob (and with it the actor
     * lane): the inbox fills, the net lane holds a blob and a stash. */
    for (int i = 0; i < 64; i++)
        send_text(rt, conn, NULL, 3000);
    /* A connection hanging in SYN_SENT, and one resolving a name. */
    int hang[3];
    assert_int_equal(
        wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", hang_port(hang), NULL, &pend), 0);
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "localhost", port, NULL, &res), 0);
    sleep_ms(100);
    atomic_store(&gate, 1);
    wb_rt_stop(rt);
    rt_free(rt);
    for (int i = 0; i < 3; i++)
        close(hang[i]);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* ---- helpers ------------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int done;
} sync_t;

static void sync_fn(wb_rt_t *rt, void *arg)
{
    sync_t *s = arg;
    (void)rt;
    pthread_mutex_lock(&s->m);
    s->done = 1;
    pthread_cond_broadcast(&s->c);
    pthread_mutex_unlock(&s->m);
}

/* Return once the network lane has taken everything this thread sent it. */
static void sync_net(wb_rt_t *rt)
{
    sync_t s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    assert_int_equal(wb_rt_call(rt, WB_LANE_NET, sync_fn, &s), 0);
    pthread_mutex_lock(&s.m);
    while (!s.done)
        pthread_cond_wait(&s.c, &s.m);
    pthread_mutex_unlock(&s.m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_ipv4),         cmocka_unit_test(test_echo_ipv6),
        cmocka_unit_test(test_oversize),          cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_slow_reader),       cmocka_unit_test(test_hard_cap),
        cmocka_unit_test(test_persistent_dialer), cmocka_unit_test(test_flood_small_inbox),
        cmocka_unit_test(test_pause_resume),      cmocka_unit_test(test_connection_limits),
        cmocka_unit_test(test_errors_and_names),  cmocka_unit_test(test_stop_with_everything_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
