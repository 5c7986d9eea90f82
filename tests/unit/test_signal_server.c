/*
 * test_signal_server.c - the signaling server (apps/signal/server.h) in a
 * threaded runtime with sockets, its clients plain blocking sockets in the
 * test thread (OpenSSL for the TLS case):
 *   - the welcome frames give distinct ids; A -> B arrives stamped with A's
 *     id, B answers the id it saw; reads of several frames and frames split
 *     over reads; 16 bytes of content arrive as topic 0;
 *   - a message to an unknown id is dropped and counted, and noticed only
 *     after the sender asked for notices;
 *   - a recipient that never reads: its queue fills, further messages to it
 *     are dropped and noticed while A -> C still flows at once, and the
 *     recipient is not closed;
 *   - keepalives keep a connection past the idle timeout, silence closes it;
 *   - an oversize length, a malformed frame, a reserved topic to a peer and
 *     a bad frame to the server each close only that connection;
 *   - max_per_ip; TLS with a self-signed certificate from `openssl`.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "apps/signal/proto.h"
#include "apps/signal/server.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"

/* ---- the server ---------------------------------------------------------- */

typedef struct {
    wb_rt_t *rt;
    uint64_t actor;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    uint16_t port;
    wb_sig_server_stats_t st;
} srv_t;

static void on_listening(void *arg, int status, uint16_t port)
{
    srv_t *s = arg;
    pthread_mutex_lock(&s->mu);
    s->status = status;
    s->port = port;
    s->done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void wait_done(srv_t *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&s->mu);
    while (!s->done)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0)
            break;
    int ok = s->done;
    s->done = 0;
    pthread_mutex_unlock(&s->mu);
    assert_true(ok);
}

static void srv_start(srv_t *s, wb_sig_server_config_t *cfg)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    cfg->host = "127.0.0.1";
    cfg->port = 0;
    cfg->on_listening = on_listening;
    cfg->arg = s;
    assert_int_equal(wb_rt_new(&s->rt, NULL), 0);
    assert_int_equal(wb_sockets_attach(s->rt, NULL), 0);
    assert_int_equal(wb_sig_server_start(s->rt, cfg, &s->actor), 0);
    assert_int_equal(wb_rt_start(s->rt), 0);
    wait_done(s);
    assert_int_equal(s->status, 0);
    assert_true(s->port != 0);
}

static void stats_cb(wb_rt_t *rt, void *arg)
{
    srv_t *s = arg;
    int rc = wb_sig_server_stats(rt, s->actor, &s->st);
    pthread_mutex_lock(&s->mu);
    s->status = rc;
    s->done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static wb_sig_server_stats_t stats(srv_t *s)
{
    assert_int_equal(wb_rt_call(s->rt, WB_LANE_ACTOR, stats_cb, s), 0);
    wait_done(s);
    assert_int_equal(s->status, 0);
    return s->st;
}

static void srv_stop(srv_t *s)
{
    wb_rt_stop(s->rt);
    wb_rt_free(s->rt);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

/* ---- clients ------------------------------------------------------------- */

typedef struct {
    int fd;
    SSL *ssl;
    uint8_t id[WB_SIG_ID_LEN];
} cl_t;

static SSL_CTX *client_ctx;

static int cl_connect_raw(cl_t *c, uint16_t port, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
}

static void cl_close(cl_t *c)
{
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->ssl = NULL;
}

static void cl_write(cl_t *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = c->ssl != NULL ? SSL_write(c->ssl, b, (int)n) : send(c->fd, b, n, MSG_NOSIGNAL);
        assert_true(k > 0);
        b += k;
        n -= (size_t)k;
    }
}

/* Read exactly n bytes within ms. 1, 0 (closed), -1 (timed out). */
static int cl_read(cl_t *c, void *p, size_t n, int ms)
{
    uint8_t *b = p;
    while (n > 0) {
        if (c->ssl == NULL || SSL_pending(c->ssl) == 0) {
            struct pollfd pf = {.fd = c->fd, .events = POLLIN};
            int r = poll(&pf, 1, ms);
            if (r == 0)
                return -1;
            assert_true(r > 0);
        }
        ssize_t k;
        if (c->ssl != NULL) {
            k = SSL_read(c->ssl, b, (int)n);
            if (k <= 0) {
                int e = SSL_get_error(c->ssl, (int)k);
                if (e == SSL_ERROR_WANT_READ)
                    continue;
                return 0;
            }
        } else {
            k = recv(c->fd, b, n, 0);
            if (k < 0 && errno == ECONNRESET)
                return 0;
            assert_true(k >= 0);
            if (k == 0)
                return 0;
        }
        b += k;
        n -= (size_t)k;
    }
    return 1;
}

typedef struct {
    uint8_t id[WB_SIG_ID_LEN];
    uint16_t topic;
    size_t len;
    uint8_t body[WB_SIG_MAX_CONTENT];
} msg_t;

/* One frame within ms: 1, 0 (closed), -1 (timed out). */
static int cl_recv(cl_t *c, msg_t *m, int ms)
{
    uint8_t h[2];
    int r = cl_read(c, h, 2, ms);
    if (r != 1)
        return r;
    size_t n = (size_t)h[0] | (size_t)h[1] << 8;
    static uint8_t buf[WB_SIG_MAX_CONTENT];
    assert_int_equal(cl_read(c, buf, n, 5000), 1);
    assert_true(n >= 16);
    memcpy(m->id, buf, 16);
    m->topic = n >= 18 ? (uint16_t)(buf[16] | buf[17] << 8) : 0;
    m->len = n >= 18 ? n - 18 : 0;
    if (m->len > 0)
        memcpy(m->body, buf + 18, m->len);
    return 1;
}

static void cl_welcome(cl_t *c)
{
    msg_t *m = malloc(sizeof(*m));
    assert_int_equal(cl_recv(c, m, 5000), 1);
    assert_int_equal(m->topic, 0);
    assert_int_equal(m->len, 0);
    memcpy(c->id, m->id, 16);
    free(m);
}

static void cl_open(cl_t *c, uint16_t port)
{
    assert_int_equal(cl_connect_raw(c, port, 0), 0);
    cl_welcome(c);
}

static void cl_send(cl_t *c, const uint8_t *to, uint16_t topic, const void *body, size_t len)
{
    uint8_t *f = malloc(wb_sig_frame_size(len));
    size_t n = wb_sig_encode(f, to, topic, body, len);
    assert_true(n > 0);
    cl_write(c, f, n);
    free(f);
}

static const uint8_t zero_id[16];

static void cl_notices(cl_t *c)
{
    uint8_t on = WB_SIG_OPT_NOTICES;
    cl_send(c, zero_id, WB_SIG_TOPIC_OPTIONS, &on, 1);
}

/* The next frame c reads is body (topic) from `from`. */
static void expect_msg(cl_t *c, const uint8_t *from, uint16_t topic, const char *body)
{
    msg_t *m = malloc(sizeof(*m));
    assert_int_equal(cl_recv(c, m, 5000), 1);
    assert_memory_equal(m->id, from, 16);
    assert_int_equal(m->topic, topic);
    assert_int_equal(m->len, strlen(body));
    assert_memory_equal(m->body, body, m->len);
    free(m);
}

/* c is still open and in order: a message to itself comes back. */
static void expect_alive(cl_t *c)
{
    cl_send(c, c->id, 42, "ping", 4);
    expect_msg(c, c->id, 42, "ping");
}

static void expect_closed(cl_t *c, int ms)
{
    msg_t *m = malloc(sizeof(*m));
    int r = cl_read(c, m->body, 1, ms);
    free(m);
    assert_int_equal(r, 0);
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- tests --------------------------------------------------------------- */

static void test_relay(void **state)
{
    (void)state;
    srv_t s;
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    srv_start(&s, &cfg);
    cl_t a, b, c;
    cl_open(&a, s.port);
    cl_open(&b, s.port);
    cl_open(&c, s.port);
    assert_memory_not_equal(a.id, b.id, 16);
    assert_memory_not_equal(a.id, c.id, 16);
    assert_memory_not_equal(b.id, c.id, 16);

    cl_send(&a, b.id, 7, "hello", 5);
    msg_t *m = malloc(sizeof(*m));
    assert_int_equal(cl_recv(&b, m, 5000), 1);
    assert_memory_equal(m->id, a.id, 16);
    assert_int_equal(m->topic, 7);
    assert_int_equal(m->len, 5);
    /* B answers the id it saw. */
    uint8_t seen[16];
    memcpy(seen, m->id, 16);
    cl_send(&b, seen, 7, "hello yourself", 14);
    expect_msg(&a, b.id, 7, "hello yourself");

    /* Three frames in one write (one to C), then one split over two writes. */
    uint8_t buf[256];
    size_t n = wb_sig_encode(buf, b.id, 1, "one", 3);
    n += wb_sig_encode(buf + n, c.id, 2, "two", 3);
    memcpy(buf + n, WB_SIG_KEEPALIVE_FRAME, 3);
    n += 3;
    n += wb_sig_encode(buf + n, b.id, 3, "three", 5);
    cl_write(&a, buf, n);
    n = wb_sig_encode(buf, b.id, 4, "four", 4);
    cl_write(&a, buf, 7);
    msleep(50);
    cl_write(&a, buf + 7, n - 7);
    expect_msg(&b, a.id, 1, "one");
    expect_msg(&b, a.id, 3, "three");
    expect_msg(&b, a.id, 4, "four");
    expect_msg(&c, a.id, 2, "two");

    /* 16 bytes of content: topic 0, no body. */
    buf[0] = 16;
    buf[1] = 0;
    memcpy(buf + 2, c.id, 16);
    cl_write(&a, buf, 18);
    expect_msg(&c, a.id, 0, "");

    /* The largest body. */
    uint8_t *big = malloc(WB_SIG_MAX_BODY);
    for (size_t i = 0; i < WB_SIG_MAX_BODY; i++)
        big[i] = (uint8_t)(i * 13);
    cl_send(&c, a.id, 9, big, WB_SIG_MAX_BODY);
    assert_int_equal(cl_recv(&a, m, 5000), 1);
    assert_memory_equal(m->id, c.id, 16);
    assert_int_equal(m->len, WB_SIG_MAX_BODY);
    assert_memory_equal(m->body, big, WB_SIG_MAX_BODY);
    free(big);

    wb_sig_server_stats_t st = stats(&s);
    assert_int_equal(st.connections, 3);
    assert_int_equal(st.accepted, 3);
    assert_int_equal(st.relayed, 8);
    assert_int_equal(st.dropped_unknown + st.dropped_full + st.closed_bad, 0);

    cl_close(&a);
    cl_close(&b);
    cl_close(&c);
    free(m);
    srv_stop(&s);
}

static void test_unknown_and_notice(void **state)
{
    (void)state;
    srv_t s;
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    srv_start(&s, &cfg);
    cl_t a, b;
    cl_open(&a, s.port);
    cl_open(&b, s.port);
    uint8_t nobody[16];
    memset(nobody, 0x77, sizeof(nobody));

    /* Not asked for: no notice (the next frame is A's own ping). */
    cl_send(&a, nobody, 5, "lost", 4);
    expect_alive(&a);
    cl_notices(&a);
    cl_send(&a, nobody, 0x1234, "lost", 4);
    msg_t *m = malloc(sizeof(*m));
    assert_int_equal(cl_recv(&a, m, 5000), 1);
    assert_memory_equal(m->id, zero_id, 16);
    assert_int_equal(m->topic, WB_SIG_TOPIC_NOTICE);
    assert_int_equal(m->len, 19);
    assert_int_equal(m->body[0], WB_SIG_NOTICE_UNKNOWN);
    assert_memory_equal(m->body + 1, nobody, 16);
    assert_int_equal(m->body[17] | m->body[18] << 8, 0x1234);

    /* A peer that left is unknown too. */
    uint8_t gone[16];
    memcpy(gone, b.id, 16);
    cl_close(&b);
    msleep(100);
    cl_send(&a, gone, 1, "x", 1);
    assert_int_equal(cl_recv(&a, m, 5000), 1);
    assert_int_equal(m->topic, WB_SIG_TOPIC_NOTICE);
    assert_int_equal(m->body[0], WB_SIG_NOTICE_UNKNOWN);
    assert_memory_equal(m->body + 1, gone, 16);

    /* Notices off again. */
    uint8_t off = 0;
    cl_send(&a, zero_id, WB_SIG_TOPIC_OPTIONS, &off, 1);
    cl_send(&a, nobody, 5, "lost", 4);
    expect_alive(&a);

    wb_sig_server_stats_t st = stats(&s);
    assert_int_equal(st.dropped_unknown, 4);
    assert_int_equal(st.notices, 2);
    assert_int_equal(st.connections, 1);
    free(m);
    cl_close(&a);
    srv_stop(&s);
}

static void test_slow_recipient(void **state)
{
    (void)state;
    srv_t s;
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    cfg.queue_bytes = 64 * 1024;
    srv_start(&s, &cfg);
    cl_t a, b, c;
    cl_open(&a, s.port);
    assert_int_equal(cl_connect_raw(&b, s.port, 4096), 0);
    cl_welcome(&b); /* and never reads again */
    cl_open(&c, s.port);
    cl_notices(&a);

    /* 16 MiB toward B: far past its socket buffers and its queue. */
    enum { CHUNK = 60000, COUNT = 280 };
    uint8_t *body = calloc(1, CHUNK);
    size_t full_notices = 0;
    msg_t *m = malloc(sizeof(*m));
    for (int i = 0; i < COUNT; i++) {
        cl_send(&a, b.id, 1, body, CHUNK);
        while (cl_recv(&a, m, 0) == 1) { /* drain notices as they come */
            assert_int_equal(m->topic, WB_SIG_TOPIC_NOTICE);
            assert_int_equal(m->body[0], WB_SIG_NOTICE_FULL);
            assert_memory_equal(m->body + 1, b.id, 16);
            full_notices++;
        }
    }
    /* A -> C is not held up behind B. */
    uint64_t t0 = now_ms();
    cl_send(&a, c.id, 2, "prompt", 6);
    expect_msg(&c, a.id, 2, "prompt");
    uint64_t took = now_ms() - t0;
    assert_true(took < 1000);
    while (cl_recv(&a, m, 200) == 1) {
        assert_int_equal(m->body[0], WB_SIG_NOTICE_FULL);
        full_notices++;
    }
    wb_sig_server_stats_t st = stats(&s);
    assert_true(st.dropped_full > 0);
    assert_int_equal(st.dropped_full, full_notices);
    assert_int_equal(st.notices, full_notices);
    assert_int_equal(st.relayed + st.dropped_full, COUNT + 1);
    assert_int_equal(st.connections, 3); /* B was not closed */
    print_message("slow recipient: %" PRIu64 " relayed, %" PRIu64 " dropped; A -> C took %" PRIu64
                  " ms\n",
                  st.relayed, st.dropped_full, took);
    /* B still gets what was queued for it, from A. */
    assert_int_equal(cl_recv(&b, m, 5000), 1);
    assert_memory_equal(m->id, a.id, 16);
    assert_int_equal(m->len, CHUNK);
    free(m);
    free(body);
    cl_close(&a);
    cl_close(&b);
    cl_close(&c);
    srv_stop(&s);
}

static void test_idle(void **state)
{
    (void)state;
    srv_t s;
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    cfg.idle_timeout_ms = 800;
    srv_start(&s, &cfg);
    cl_t a, b;
    cl_open(&a, s.port);
    cl_open(&b, s.port);
    uint64_t t0 = now_ms();
    /* A keeps alive for 2.4 s, three timeouts; B is silent. */
    while (now_ms() - t0 < 2400) {
        cl_write(&a, WB_SIG_KEEPALIVE_FRAME, 3);
        msleep(200);
    }
    expect_closed(&b, 0);
    expect_alive(&a);
    /* Now A is silent too. */
    t0 = now_ms();
    expect_closed(&a, 3000);
    uint64_t took = now_ms() - t0;
    assert_true(took >= 700);
    wb_sig_server_stats_t st = stats(&s);
    assert_int_equal(st.closed_idle, 2);
    assert_int_equal(st.connections, 0);
    cl_close(&a);
    cl_close(&b);
    srv_stop(&s);
}

static void test_bad_frames_close_one(void **state)
{
    (void)state;
    srv_t s;
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    cfg.max_frame = 1000;
    srv_start(&s, &cfg);
    cl_t a, b, c, d, e, f;
    cl_open(&a, s.port);
    cl_open(&b, s.port);
    cl_open(&c, s.port);
    cl_open(&d, s.port);
    cl_open(&e, s.port);
    cl_open(&f, s.port);

    /* A: a length over max_frame, before any of its content. */
    cl_write(&a, "\xe9\x03", 2); /* 1001 */
    expect_closed(&a, 5000);
    /* Exactly max_frame passes. */
    static uint8_t body[1000 - 18];
    cl_send(&b, b.id, 1, body, sizeof(body));
    msg_t *m = malloc(sizeof(*m));
    assert_int_equal(cl_recv(&b, m, 5000), 1);
    assert_int_equal(m->len, sizeof(body));
    /* C: malformed (5 bytes of content). */
    cl_write(&c, "\x05\x00hello", 7);
    expect_closed(&c, 5000);
    /* D: a message to a peer on a reserved topic; B hears nothing of it. */
    cl_send(&d, b.id, WB_SIG_TOPIC_NOTICE, "x", 1);
    expect_closed(&d, 5000);
    /* E: to the server, but not options. */
    cl_send(&e, zero_id, 5, "x", 1);
    expect_closed(&e, 5000);
    /* F: options on the reserved topic to a peer. */
    cl_send(&f, b.id, WB_SIG_TOPIC_OPTIONS, "\x01", 1);
    expect_closed(&f, 5000);

    expect_alive(&b);
    wb_sig_server_stats_t st = stats(&s);
    assert_int_equal(st.closed_bad, 5);
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.relayed, 2);
    free(m);
    cl_close(&a);
    cl_close(&b);
    cl_close(&c);
    cl_close(&d);
    cl_close(&e);
    cl_close(&f);
    srv_stop(&s);
}

static void test_max_per_ip(void **state)
{
    (void)state;
    srv_t s;
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    cfg.max_per_ip = 2;
    srv_start(&s, &cfg);
    cl_t a, b, c;
    cl_open(&a, s.port);
    cl_open(&b, s.port);
    assert_int_equal(cl_connect_raw(&c, s.port, 0), 0);
    expect_closed(&c, 5000); /* no welcome */
    cl_close(&c);
    cl_close(&b);
    /* Room again once B is gone (its close takes a moment to arrive). */
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        msleep(20);
        assert_int_equal(cl_connect_raw(&c, s.port, 0), 0);
        msg_t *m = malloc(sizeof(*m));
        ok = cl_recv(&c, m, 2000) == 1;
        memcpy(c.id, m->id, 16);
        free(m);
        if (!ok)
            cl_close(&c);
    }
    assert_true(ok);
    expect_alive(&a);
    expect_alive(&c);
    wb_sig_server_stats_t st = stats(&s);
    assert_int_equal(st.connections, 2);
    cl_close(&a);
    cl_close(&c);
    srv_stop(&s);
}

static void test_tls(void **state)
{
    (void)state;
    char dir[] = "/tmp/wb-sig-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cert[64], key[64], cmd[512];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);

    srv_t s;
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    cfg.tls_cert = cert;
    cfg.tls_key = key;
    srv_start(&s, &cfg);

    client_ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(client_ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(client_ctx, cert, NULL), 1);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
    cl_t cl[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cl_connect_raw(&cl[i], s.port, 0), 0);
        cl[i].ssl = SSL_new(client_ctx);
        SSL_set_fd(cl[i].ssl, cl[i].fd);
        SSL_set1_host(cl[i].ssl, "127.0.0.1");
        assert_int_equal(SSL_connect(cl[i].ssl), 1);
        cl_welcome(&cl[i]);
    }
    assert_memory_not_equal(cl[0].id, cl[1].id, 16);
    cl_send(&cl[0], cl[1].id, 3, "over tls", 8);
    expect_msg(&cl[1], cl[0].id, 3, "over tls");
    cl_send(&cl[1], cl[0].id, 3, "back", 4);
    expect_msg(&cl[0], cl[1].id, 3, "back");

    /* A plain client gets no welcome: the handshake fails. */
    cl_t p;
    assert_int_equal(cl_connect_raw(&p, s.port, 0), 0);
    cl_write(&p, "GET / HTTP/1.0\r\n\r\n", 18);
    msg_t *m = malloc(sizeof(*m));
    assert_int_equal(cl_recv(&p, m, 5000), 0);
    free(m);
    cl_close(&p);

    wb_sig_server_stats_t st = stats(&s);
    assert_int_equal(st.relayed, 2);
    assert_int_equal(st.accepted, 2);
    for (int i = 0; i < 2; i++)
        cl_close(&cl[i]);
    SSL_CTX_free(client_ctx);
    srv_stop(&s);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static void test_config(void **state)
{
    (void)state;
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
    assert_int_equal(cfg.port, 62443);
    assert_int_equal(cfg.max_frame, 65535);
    assert_int_equal(cfg.queue_bytes, 1u << 20);
    assert_int_equal(cfg.idle_timeout_ms, 120000);
    cfg.tls_cert = "/x.pem";
    uint64_t id;
    assert_int_equal(wb_sig_server_start(rt, &cfg, &id), WB_EINVAL);
    wb_rt_free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_relay),
        cmocka_unit_test(test_unknown_and_notice),
        cmocka_unit_test(test_slow_recipient),
        cmocka_unit_test(test_idle),
        cmocka_unit_test(test_bad_frames_close_one),
        cmocka_unit_test(test_max_per_ip),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
