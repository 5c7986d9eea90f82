/*
 * test_tcp_ws.c - WebSocket streams on the network lane (wb_tcp_opts_t.ws):
 * real loopback sockets, the runtime's threads (runs under TSan too).
 *
 * - a ws listener and a ws dial in one runtime: text, binary (the flag kept
 *   both ways), an empty and a 1 MiB message, sent before the upgrade was
 *   done; pause/resume;
 * - 20000 small messages through an owner whose inbox holds 16: the held
 *   chain and WB_EV_RESUME, in order, none lost, and a CLOSED that waits
 *   behind held messages; 60000 one-byte frames flooded by a raw client
 *   (chunked feeding, the stash);
 * - closes: by the owner (the peer sees "peer closed (code 1000)"), a
 *   message above max (WB_ETOOBIG here, 1009 at the sender), a send above
 *   the tcp max_message; from a raw client: fragments with a ping between,
 *   text that is not UTF-8 (1007), an unmasked frame (1002), a dropped TCP;
 * - the handshake on the lane: GET / and 404 and 400 answered to a raw dial
 *   whose listener's owner hears nothing; a half-sent upgrade closed at the
 *   handshake timeout; a dial to a 404 path (CLOSED WB_EPROTO) and a
 *   persistent dialer to it (RETRY);
 * - max_per_ip; a persistent ws dialer reconnecting after the server closes;
 * - websocket.c's lazy wslay context: a random stream of valid frames, cut
 *   at random points, gives the same messages;
 * - memory per idle WebSocket connection (heap, measured with mallinfo2),
 *   printed as "ws_idle_conn_bytes: N bytes".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
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
#include "sockets/tcp.h"
#include "sockets/websocket.h"

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

enum { MAX_REC = 256, TEXT_MAX = 200, MAX_BLOBS = 16 };

typedef struct {
    uint16_t type;
    int32_t status;
    uint64_t src, cookie;
    uint64_t t_ms;
    char text[TEXT_MAX];
} rec_t;

typedef struct {
    uint64_t src;
    uint8_t flags;
    uint32_t len;
    uint8_t *data;
} blob_t;

typedef struct peer_s peer_t;
/* Called on the actor lane for every event, the lock not held; return 1
 * when it took ev. */
typedef int (*peer_hook)(peer_t *p, wb_event_t *ev);

struct peer_s {
    wb_rt_t *rt;
    uint64_t id;
    peer_hook hook;
    void *user;
    int keep_blobs; /* copy the first MAX_BLOBS blobs into blobs[] */
    pthread_mutex_t m;
    pthread_cond_t c;
    rec_t recs[MAX_REC]; /* lifecycle events, in order */
    size_t nrec;
    uint64_t count[16]; /* events per type - WB_EV_TCP_LISTENING (all of them) */
    blob_t blobs[MAX_BLOBS];
    size_t nblobs;
    int done, failed;
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
    for (size_t i = 0; i < p->nblobs; i++)
        free(p->blobs[i].data);
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
    if (ev->type >= WB_EV_TCP_LISTENING && ev->type <= WB_EV_TCP_RETRY) {
        p->count[ev->type - WB_EV_TCP_LISTENING]++;
        if (ev->type == WB_EV_TCP_BLOB) {
            if (p->keep_blobs && p->nblobs < MAX_BLOBS) {
                blob_t *b = &p->blobs[p->nblobs++];
                b->src = ev->src;
                b->flags = ev->flags;
                b->len = ev->len;
                b->data = malloc(ev->len + 1);
                memcpy(b->data, ev->data, ev->len);
            }
        } else if (p->nrec < MAX_REC) {
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

/* Wait until at least n events of type have come; returns the count. */
static uint64_t wait_count(peer_t *p, uint16_t type, uint64_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&p->m);
    while (p->count[type - WB_EV_TCP_LISTENING] < n && !p->failed)
        if (pthread_cond_timedwait(&p->c, &p->m, &ts) != 0)
            break;
    uint64_t got = p->count[type - WB_EV_TCP_LISTENING];
    pthread_mutex_unlock(&p->m);
    return got;
}

static uint64_t count_of(peer_t *p, uint16_t type)
{
    pthread_mutex_lock(&p->m);
    uint64_t n = p->count[type - WB_EV_TCP_LISTENING];
    pthread_mutex_unlock(&p->m);
    return n;
}

static size_t nrec(peer_t *p)
{
    pthread_mutex_lock(&p->m);
    size_t n = p->nrec;
    pthread_mutex_unlock(&p->m);
    return n;
}

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
    assert_int_equal(wb_rt_start(rt), 0);
    return rt;
}

/* Free the runtime; every event block must be back in the pool: nothing
 * sockets/ queued or held was lost. */
static void rt_free(wb_rt_t *rt)
{
    wb_rt_free(rt);
    assert_int_equal(wb_pool_trim(), 0);
}

static uint16_t listen_on(peer_t *p, const wb_tcp_opts_t *opts, uint64_t *lid)
{
    size_t from = nrec(p);
    assert_int_equal(wb_tcp_listen(p->rt, WB_LANE_ACTOR, p->id, "127.0.0.1", 0, opts, lid), 0);
    rec_t r;
    assert_true(wait_rec(p, WB_EV_TCP_LISTENING, *lid, from, &r) >= 0);
    if (r.status != 0)
        fail_msg("listen: %s", r.text);
    return (uint16_t)r.cookie;
}

/* A ws dial from p; waits for OPENED unless wait is 0. */
static uint64_t ws_dial(peer_t *p, uint16_t port, const wb_ws_opts_t *wo, int wait)
{
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.ws = wo;
    uint64_t conn;
    size_t from = nrec(p);
    assert_int_equal(wb_tcp_dial(p->rt, WB_LANE_ACTOR, p->id, "127.0.0.1", port, &to, &conn), 0);
    if (wait) {
        rec_t r;
        assert_true(wait_rec(p, WB_EV_TCP_OPENED, conn, from, &r) >= 0);
        assert_int_equal(r.cookie, 0);
    }
    return conn;
}

/* Send a message from p's actor (resumes would go there). */
static void send_msg(peer_t *p, uint64_t conn, const void *data, size_t len, int binary)
{
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, data, len);
    assert_non_null(ev);
    if (binary)
        ev->flags |= WB_TCP_BLOB_BINARY;
    wb_event_route(ev, WB_LANE_ACTOR, p->id, WB_LANE_NET, conn);
    assert_int_equal(wb_tcp_send(p->rt, conn, ev), 0);
}

/* Hook: send every blob back on its connection, flags and all. */
static int echo_hook(peer_t *p, wb_event_t *ev)
{
    if (ev->type != WB_EV_TCP_BLOB)
        return 0;
    uint64_t conn = ev->src;
    wb_event_route(ev, WB_LANE_ACTOR, p->id, WB_LANE_NET, conn);
    if (wb_tcp_send(p->rt, conn, ev) == 0)
        return 1;
    peer_fail(p, "echo refused");
    return 0;
}

static void opts_ws(wb_tcp_opts_t *to, wb_ws_opts_t *wo)
{
    wb_ws_opts_init(wo);
    wb_tcp_opts_init(to);
    to->ws = wo;
}

/* ---- raw sockets speaking WebSocket by hand ---------------------------------- */

static int raw_connect(const char *from, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (from != NULL) {
        struct sockaddr_in b = {.sin_family = AF_INET};
        inet_pton(AF_INET, from, &b.sin_addr);
        assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof(b)), 0);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
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

/* The peer closed: EOF or a reset before the timeout. */
static int raw_sees_close(int fd)
{
    char b[4096];
    for (;;) {
        ssize_t k = recv(fd, b, sizeof(b), 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            return 1;
        if (k < 0 && errno != EINTR)
            return 0;
    }
}

static const char UPGRADE[] =
    "GET /v1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* Send the upgrade request and read the answer's head; its status, or -1
 * when the connection ended first. */
static int raw_upgrade(int fd)
{
    raw_send(fd, UPGRADE, sizeof(UPGRADE) - 1);
    char head[1024];
    size_t n = 0;
    while (n < sizeof(head) - 1) {
        if (raw_recv(fd, head + n, 1) != 0)
            return -1;
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[n] = '\0';
    int status = 0;
    sscanf(head, "HTTP/1.1 %d", &status);
    if (status == 101 && strstr(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == NULL)
        return -2; /* RFC 6455's example key: the accept is known */
    return status;
}

/* A client frame (masked unless mask is 0). */
static void raw_frame(int fd, int fin, int opcode, const void *data, size_t len, int mask)
{
    uint8_t h[14];
    size_t hl = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t *body = malloc(len + 1);
    memcpy(body, data, len);
    if (mask) {
        h[1] |= 0x80;
        memcpy(h + hl, key, 4);
        hl += 4;
        for (size_t i = 0; i < len; i++)
            body[i] ^= key[i % 4];
    }
    raw_send(fd, h, hl);
    raw_send(fd, body, len);
    free(body);
}

/* Read one server frame (unmasked, at most cap bytes); its opcode, or -1. */
static int raw_read_frame(int fd, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t h[10];
    if (raw_recv(fd, h, 2) != 0 || (h[1] & 0x80))
        return -1;
    uint64_t n = h[1] & 0x7f;
    if (n == 126) {
        if (raw_recv(fd, h + 2, 2) != 0)
            return -1;
        n = (uint64_t)h[2] << 8 | h[3];
    } else if (n == 127) {
        if (raw_recv(fd, h + 2, 8) != 0)
            return -1;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | h[2 + i];
    }
    if (n > cap || raw_recv(fd, buf, (size_t)n) != 0)
        return -1;
    *len = (size_t)n;
    return h[0] & 0x0f;
}

/* ---- text and binary both ways ---------------------------------------------- */

static void test_text_binary_both_ways(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook, NULL);
    peer_init(&cli, rt, NULL, NULL);
    srv.keep_blobs = cli.keep_blobs = 1;
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    wo.max_message = 2u << 20;
    to.max_message = 2u << 20;
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);

    /* Sent at once: they wait for the upgrade. */
    uint64_t conn = ws_dial(&cli, port, &wo, 0);
    const size_t big = 1u << 20;
    uint8_t *mib = malloc(big);
    for (size_t i = 0; i < big; i++)
        mib[i] = (uint8_t)(i * 2654435761u >> 13);
    static const uint8_t bin[] = {0, 1, 2, 0xff, 0, 0x80};
    send_msg(&cli, conn, "hello", 5, 0);
    send_msg(&cli, conn, bin, sizeof(bin), 1);
    send_msg(&cli, conn, "", 0, 0);
    send_msg(&cli, conn, mib, big, 1);
    send_msg(&cli, conn, "h\xc3\xa9llo", 6, 0);
    assert_int_equal(wait_count(&cli, WB_EV_TCP_BLOB, 5), 5);
    assert_ok(&srv);
    assert_int_equal(count_of(&cli, WB_EV_TCP_OPENED), 1);

    struct {
        const void *d;
        size_t n;
        int binary;
    } want[] = {
        {"hello", 5, 0}, {bin, sizeof(bin), 1}, {"", 0, 0}, {mib, big, 1}, {"h\xc3\xa9llo", 6, 0}};
    for (int side = 0; side < 2; side++) {
        peer_t *p = side ? &cli : &srv;
        pthread_mutex_lock(&p->m);
        assert_int_equal(p->nblobs, 5);
        for (int i = 0; i < 5; i++) {
            blob_t *b = &p->blobs[i];
            assert_int_equal(b->len, want[i].n);
            assert_memory_equal(b->data, want[i].d, want[i].n);
            assert_int_equal(!!(b->flags & WB_TCP_BLOB_BINARY), want[i].binary);
            if (side)
                assert_int_equal(b->src, conn);
        }
        uint64_t sconn = p->blobs[0].src;
        pthread_mutex_unlock(&p->m);
        /* The server's OPENED named the connection its blobs came from. */
        if (!side) {
            rec_t r;
            assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, sconn, 0, &r) >= 0);
            assert_int_equal(r.cookie, lid);
            assert_non_null(strstr(r.text, "127.0.0.1:"));
        }
    }

    /* Pause the client's connection: the echo waits in the socket. */
    assert_int_equal(wb_tcp_pause(rt, conn), 0);
    sleep_ms(50);
    for (int i = 0; i < 10; i++)
        send_msg(&cli, conn, "p", 1, 0);
    sleep_ms(300);
    assert_int_equal(count_of(&cli, WB_EV_TCP_BLOB), 5);
    assert_int_equal(wb_tcp_resume(rt, conn), 0);
    assert_int_equal(wait_count(&cli, WB_EV_TCP_BLOB, 15), 15);

    free(mib);
    rt_free(rt);
    assert_ok(&srv);
    assert_ok(&cli);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* ---- many small messages through a 16-event inbox ---------------------------- */

enum { SMALL_N = 20000 };

typedef struct {
    uint32_t next;   /* receiver: the sequence number expected next */
    uint32_t sent;   /* sender: how many sent */
    uint64_t conn;   /* sender: its connection */
    int close_after; /* sender: close when all are sent */
} seq_t;

/* The receiving side: checks the order, now and then slowly. */
static int seq_recv_hook(peer_t *p, wb_event_t *ev)
{
    seq_t *q = p->user;
    if (ev->type != WB_EV_TCP_BLOB)
        return 0;
    char text[64];
    size_t n = ev->len < sizeof(text) - 1 ? ev->len : sizeof(text) - 1;
    memcpy(text, ev->data, n);
    text[n] = '\0';
    unsigned got = (unsigned)strtoul(text, NULL, 10);
    if (got != q->next ||
        (ev->flags & WB_TCP_BLOB_BINARY) != ((got % 3 == 0) ? WB_TCP_BLOB_BINARY : 0)) {
        char why[128];
        snprintf(why, sizeof(why), "message %u arrived when %u was due", got, q->next);
        peer_fail(p, why);
    }
    q->next++;
    if (q->next % 2000 == 0)
        sleep_ms(5); /* let the inbox fill */
    if (q->next == SMALL_N)
        peer_done(p);
    return 0;
}

/* The sending side: sends until refused, again at each WB_EV_RESUME. */
static void seq_pump(peer_t *p)
{
    seq_t *q = p->user;
    while (q->sent < SMALL_N) {
        char text[64];
        int n = snprintf(text, sizeof(text), "%u %.*s", q->sent, (int)(q->sent % 40),
                         "........................................");
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, text, (size_t)n);
        if (q->sent % 3 == 0)
            ev->flags |= WB_TCP_BLOB_BINARY;
        wb_event_route(ev, WB_LANE_ACTOR, p->id, WB_LANE_NET, q->conn);
        int rc = wb_tcp_send(p->rt, q->conn, ev);
        if (rc == WB_EAGAIN) {
            wb_event_free(ev);
            return;
        }
        if (rc != 0) {
            wb_event_free(ev);
            peer_fail(p, "send failed");
            return;
        }
        q->sent++;
    }
    if (q->close_after) {
        q->close_after = 0;
        wb_tcp_close(p->rt, q->conn);
    }
}

static int seq_send_hook(peer_t *p, wb_event_t *ev)
{
    seq_t *q = p->user;
    if (ev->type == WB_EV_USER) {
        /* The test thread's go (cookie: the port): dial from here. */
        wb_tcp_opts_t to;
        wb_ws_opts_t wo;
        wb_ws_opts_init(&wo);
        wb_tcp_opts_init(&to);
        to.ws = &wo;
        if (wb_tcp_dial(p->rt, WB_LANE_ACTOR, p->id, "127.0.0.1", (uint16_t)ev->cookie, &to,
                        &q->conn) != 0)
            peer_fail(p, "dial failed");
    } else if (ev->type == WB_EV_TCP_OPENED && ev->src == q->conn)
        seq_pump(p);
    else if (ev->type == WB_EV_RESUME)
        seq_pump(p);
    return 0;
}

static void run_small_messages(int close_after)
{
    wb_rt_t *rt = rt_new(16);
    seq_t rq = {0}, sq = {0};
    sq.close_after = close_after;
    peer_t srv, cli;
    peer_init(&srv, rt, seq_recv_hook, &rq);
    peer_init(&cli, rt, seq_send_hook, &sq);
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    wb_event_t *go = wb_event_new(WB_EV_USER, 0);
    go->cookie = port;
    wb_event_route(go, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, cli.id);
    assert_int_equal(wb_rt_send(rt, go), 0);
    assert_true(wait_done(&srv));
    assert_ok(&srv);
    assert_ok(&cli);
    wb_lane_stats_t st;
    wb_rt_stats(rt, WB_LANE_ACTOR, &st);
    assert_true(st.refused > 0); /* the held chain was used */
    if (close_after) {
        /* Its CLOSED came after every message, never before. */
        rec_t r;
        assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, 0, &r) >= 0);
        assert_int_equal(r.status, WB_ECLOSED);
        assert_string_equal(r.text, "peer closed (code 1000)");
    }
    rt_free(rt);
    assert_int_equal(rq.next, SMALL_N);
    peer_fini(&srv);
    peer_fini(&cli);
}

static void test_small_messages_tiny_inbox(void **state)
{
    (void)state;
    run_small_messages(0);
}

static void test_small_messages_then_close(void **state)
{
    (void)state;
    run_small_messages(1);
}

/* A raw client floods 1-byte binary messages (7 bytes a frame: thousands
 * per read) at an owner whose inbox holds 16: the chunked feed, the stash
 * and the held chain together; all arrive, in order. */
enum { FLOOD_N = 60000 };

static int flood_hook(peer_t *p, wb_event_t *ev)
{
    uint32_t *next = p->user;
    if (ev->type != WB_EV_TCP_BLOB)
        return 0;
    if (ev->len != 1 || ((const uint8_t *)ev->data)[0] != (uint8_t)*next ||
        !(ev->flags & WB_TCP_BLOB_BINARY))
        peer_fail(p, "flood: out of order");
    if (++*next % 5000 == 0)
        sleep_ms(2);
    if (*next == FLOOD_N)
        peer_done(p);
    return 0;
}

static void test_flood_tiny_frames(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(16);
    uint32_t next = 0;
    peer_t srv;
    peer_init(&srv, rt, flood_hook, &next);
    peer_spawn(&srv);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    int fd = raw_connect(NULL, port);
    assert_int_equal(raw_upgrade(fd), 101);
    uint8_t *buf = malloc((size_t)FLOOD_N * 7);
    for (uint32_t i = 0; i < FLOOD_N; i++) {
        uint8_t *f = buf + (size_t)i * 7;
        f[0] = 0x82;
        f[1] = 0x81;
        memset(f + 2, 0x5a, 4);
        f[6] = (uint8_t)i ^ 0x5a;
    }
    raw_send(fd, buf, (size_t)FLOOD_N * 7);
    free(buf);
    assert_true(wait_done(&srv));
    assert_ok(&srv);
    wb_lane_stats_t st;
    wb_rt_stats(rt, WB_LANE_ACTOR, &st);
    assert_true(st.refused > 0);
    close(fd);
    rt_free(rt);
    assert_int_equal(next, FLOOD_N);
    peer_fini(&srv);
}

/* ---- closes ----------------------------------------------------------------- */

static void test_owner_close(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv, cli;
    peer_init(&srv, rt, NULL, NULL);
    peer_init(&cli, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    uint64_t conn = ws_dial(&cli, port, &wo, 1);
    rec_t r;
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, &r) >= 0);
    uint64_t sconn = r.src;
    assert_int_equal(wb_tcp_close(rt, conn), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.text, "closed by owner");
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, sconn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed (code 1000)");
    assert_int_equal(r.cookie, lid);
    /* And the other way round. */
    size_t from = nrec(&srv);
    conn = ws_dial(&cli, port, &wo, 1);
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, from, &r) >= 0);
    sconn = r.src;
    assert_int_equal(wb_tcp_close(rt, sconn), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed (code 1000)");
    /* wb_tcp_close_ws: the code of the owner's choosing; bad codes refused. */
    from = nrec(&srv);
    size_t cfrom = nrec(&cli);
    conn = ws_dial(&cli, port, &wo, 1);
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, from, &r) >= 0);
    sconn = r.src;
    assert_int_equal(wb_tcp_close_ws(rt, sconn, 1005, NULL), WB_EINVAL);
    assert_int_equal(wb_tcp_close_ws(rt, sconn, 2000, NULL), WB_EINVAL);
    char longr[130];
    memset(longr, 'x', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = 0;
    assert_int_equal(wb_tcp_close_ws(rt, sconn, 1007, longr), WB_EINVAL);
    assert_int_equal(wb_tcp_close_ws(rt, sconn, 1007, "invalid JSON"), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, cfrom, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed (code 1007)");
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

static void test_too_big(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv, cli;
    peer_init(&srv, rt, NULL, NULL);
    peer_init(&cli, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    wo.max_message = 1000;
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    wb_ws_opts_t co;
    wb_ws_opts_init(&co);
    uint64_t conn = ws_dial(&cli, port, &co, 1);
    uint8_t buf[2000] = {0};
    send_msg(&cli, conn, buf, 1000, 1); /* exactly max: fine */
    send_msg(&cli, conn, buf, 1001, 1);
    rec_t r;
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ETOOBIG);
    assert_string_equal(r.text, "websocket: message too big (close 1009)");
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed (code 1009)");
    assert_int_equal(count_of(&srv, WB_EV_TCP_BLOB), 1);

    /* A send above the connection's own max_message closes it, as ever. */
    wb_tcp_opts_t ct;
    wb_tcp_opts_init(&ct);
    ct.ws = &co;
    ct.max_message = 100;
    size_t from = nrec(&cli);
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, &ct, &conn), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, conn, from, NULL) >= 0);
    send_msg(&cli, conn, buf, 101, 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, from, &r) >= 0);
    assert_int_equal(r.status, WB_ETOOBIG);
    assert_string_equal(r.text, "message of 101 bytes exceeds maximum 100");
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* A raw client: fragments and a ping, then the protocol errors. */
static void test_raw_client_frames(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv;
    peer_init(&srv, rt, echo_hook, NULL);
    srv.keep_blobs = 1;
    peer_spawn(&srv);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);

    int fd = raw_connect(NULL, port);
    assert_int_equal(raw_upgrade(fd), 101);
    raw_frame(fd, 0, 1, "frag", 4, 1);
    raw_frame(fd, 1, 9, "pi", 2, 1); /* a ping between the fragments */
    raw_frame(fd, 0, 0, "ment", 4, 1);
    raw_frame(fd, 1, 0, "ed", 2, 1);
    uint8_t buf[256];
    size_t n;
    assert_int_equal(raw_read_frame(fd, buf, sizeof(buf), &n), 10); /* pong */
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "pi", 2);
    assert_int_equal(raw_read_frame(fd, buf, sizeof(buf), &n), 1); /* the echo, as text */
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "fragmented", 10);
    raw_frame(fd, 1, 1, "bad \xff", 5, 1);
    assert_int_equal(raw_read_frame(fd, buf, sizeof(buf), &n), 8);
    assert_true(n >= 2);
    assert_int_equal(buf[0] << 8 | buf[1], 1007);
    assert_true(raw_sees_close(fd));
    close(fd);
    rec_t r;
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EPROTO);
    assert_string_equal(r.text, "websocket: text is not UTF-8 (close 1007)");
    assert_int_equal(count_of(&srv, WB_EV_TCP_BLOB), 1);

    /* An unmasked frame from a client: 1002. */
    fd = raw_connect(NULL, port);
    assert_int_equal(raw_upgrade(fd), 101);
    size_t from = nrec(&srv);
    raw_frame(fd, 1, 2, "x", 1, 0);
    assert_int_equal(raw_read_frame(fd, buf, sizeof(buf), &n), 8);
    assert_int_equal(buf[0] << 8 | buf[1], 1002);
    close(fd);
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, from, &r) >= 0);
    assert_int_equal(r.status, WB_EPROTO);
    assert_string_equal(r.text, "websocket: protocol error (close 1002)");

    /* TCP dropped without a close frame. */
    from = nrec(&srv);
    fd = raw_connect(NULL, port);
    assert_int_equal(raw_upgrade(fd), 101);
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, from, NULL) >= 0);
    close(fd);
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, from, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed");

    /* A close frame without a code. */
    fd = raw_connect(NULL, port);
    assert_int_equal(raw_upgrade(fd), 101);
    from = nrec(&srv);
    raw_frame(fd, 1, 8, "", 0, 1);
    assert_int_equal(raw_read_frame(fd, buf, sizeof(buf), &n), 8);
    assert_true(raw_sees_close(fd));
    close(fd);
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, 0, from, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed (code 1005)");
    rt_free(rt);
    assert_ok(&srv);
    peer_fini(&srv);
}

/* ---- the handshake on the lane ---------------------------------------------- */

typedef struct {
    char buf[4096];
    size_t n;
} acc_t;

/* Hook: collect what a raw dial receives. */
static int acc_hook(peer_t *p, wb_event_t *ev)
{
    acc_t *a = p->user;
    if (ev->type == WB_EV_TCP_BLOB) {
        pthread_mutex_lock(&p->m);
        size_t k = ev->len < sizeof(a->buf) - 1 - a->n ? ev->len : sizeof(a->buf) - 1 - a->n;
        memcpy(a->buf + a->n, ev->data, k);
        a->n += k;
        a->buf[a->n] = '\0';
        pthread_mutex_unlock(&p->m);
    }
    return 0;
}

/* A raw dial from p sends req; returns what came back before its CLOSED. */
static void raw_exchange(peer_t *p, uint16_t port, const char *req, char *out, size_t cap)
{
    acc_t *a = p->user;
    pthread_mutex_lock(&p->m);
    a->n = 0;
    a->buf[0] = '\0';
    pthread_mutex_unlock(&p->m);
    wb_tcp_opts_t ro;
    wb_tcp_opts_init(&ro);
    ro.raw = 1;
    uint64_t conn;
    size_t from = nrec(p);
    assert_int_equal(wb_tcp_dial(p->rt, WB_LANE_ACTOR, p->id, "127.0.0.1", port, &ro, &conn), 0);
    send_msg(p, conn, req, strlen(req), 0);
    rec_t r;
    assert_true(wait_rec(p, WB_EV_TCP_CLOSED, conn, from, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    pthread_mutex_lock(&p->m);
    snprintf(out, cap, "%s", a->buf);
    pthread_mutex_unlock(&p->m);
}

static void test_page_and_errors(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    acc_t acc = {0};
    peer_t srv, raw;
    peer_init(&srv, rt, NULL, NULL);
    peer_init(&raw, rt, acc_hook, &acc);
    peer_spawn(&srv);
    peer_spawn(&raw);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    char page[] = "the page of this test\n";
    wo.page = page;
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    page[0] = 'X'; /* copied by wb_tcp_listen: changing it now changes nothing */
    char got[4096];
    raw_exchange(&raw, port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    assert_non_null(strstr(got, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(got, "\r\n\r\nthe page of this test\n"));
    raw_exchange(&raw, port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    assert_non_null(strstr(got, "HTTP/1.1 404 "));
    raw_exchange(&raw, port, "GET /v1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", got,
                 sizeof(got));
    assert_non_null(strstr(got, "HTTP/1.1 400 "));
    raw_exchange(&raw, port, "\x01\x02 garbage\r\n\r\n", got, sizeof(got));
    assert_non_null(strstr(got, "HTTP/1.1 400 "));
    sleep_ms(100);
    /* The listener's owner heard of none of them. */
    assert_int_equal(count_of(&srv, WB_EV_TCP_OPENED), 0);
    assert_int_equal(count_of(&srv, WB_EV_TCP_CLOSED), 0);
    assert_int_equal(count_of(&srv, WB_EV_TCP_BLOB), 0);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&raw);
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    acc_t acc = {0};
    peer_t srv, raw;
    peer_init(&srv, rt, NULL, NULL);
    peer_init(&raw, rt, acc_hook, &acc);
    peer_spawn(&srv);
    peer_spawn(&raw);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    wo.handshake_timeout_ms = 300;
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    wb_tcp_opts_t ro;
    wb_tcp_opts_init(&ro);
    ro.raw = 1;
    uint64_t conn;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, raw.id, "127.0.0.1", port, &ro, &conn), 0);
    assert_true(wait_rec(&raw, WB_EV_TCP_OPENED, conn, 0, NULL) >= 0);
    uint64_t t0 = now_ms();
    send_msg(&raw, conn, "GET /v1 HTTP/1.1\r\nHost: x\r\n", 27, 0);
    rec_t r;
    assert_true(wait_rec(&raw, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    uint64_t took = r.t_ms - t0;
    assert_int_equal(r.status, WB_ECLOSED);
    assert_true(took >= 250);
    assert_true(took < 300 + 1500);
    assert_int_equal(acc.n, 0); /* nothing answered: just closed */
    assert_int_equal(count_of(&srv, WB_EV_TCP_OPENED), 0);
    assert_int_equal(count_of(&srv, WB_EV_TCP_CLOSED), 0);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&raw);
}

static void test_dial_refused_upgrade(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv, cli;
    peer_init(&srv, rt, NULL, NULL);
    peer_init(&cli, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    wb_ws_opts_t co;
    wb_ws_opts_init(&co);
    co.path = "/nope";
    uint64_t conn = ws_dial(&cli, port, &co, 0);
    send_msg(&cli, conn, "never sent", 10, 0); /* waits, then is dropped */
    rec_t r;
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EPROTO);
    assert_string_equal(r.text, "websocket upgrade refused: HTTP 404");
    assert_int_equal(count_of(&cli, WB_EV_TCP_OPENED), 0);

    /* A persistent dialer: each refusal is a failed attempt. */
    wb_tcp_opts_t dt;
    wb_tcp_opts_init(&dt);
    dt.ws = &co;
    dt.reconnect_min_ms = 20;
    dt.reconnect_max_ms = 40;
    uint64_t did;
    size_t from = nrec(&cli);
    assert_int_equal(
        wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, &dt, &did), 0);
    assert_true(wait_count(&cli, WB_EV_TCP_RETRY, 3) >= 3);
    assert_true(wait_rec(&cli, WB_EV_TCP_RETRY, did, from, &r) >= 0);
    assert_int_equal(r.status, WB_EPROTO);
    assert_non_null(strstr(r.text, "websocket upgrade refused: HTTP 404"));
    assert_int_equal(wb_tcp_close(rt, did), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, did, from, &r) >= 0);
    assert_int_equal(count_of(&cli, WB_EV_TCP_OPENED), 0);
    assert_int_equal(count_of(&srv, WB_EV_TCP_OPENED), 0);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* ---- max_per_ip --------------------------------------------------------------- */

static void test_max_per_ip(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv;
    peer_init(&srv, rt, NULL, NULL);
    peer_spawn(&srv);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    to.max_per_ip = 2;
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    int a = raw_connect(NULL, port), b = raw_connect(NULL, port);
    assert_int_equal(raw_upgrade(a), 101);
    assert_int_equal(raw_upgrade(b), 101);
    assert_int_equal(wait_count(&srv, WB_EV_TCP_OPENED, 2), 2);
    /* The third from 127.0.0.1 is closed at once, before any handshake. */
    int c = raw_connect(NULL, port);
    assert_true(raw_sees_close(c));
    close(c);
    /* Another address is another count (all of 127/8 is loopback). */
    int d = raw_connect("127.0.0.2", port);
    assert_int_equal(raw_upgrade(d), 101);
    assert_int_equal(wait_count(&srv, WB_EV_TCP_OPENED, 3), 3);
    /* One of the first two goes: room for one more from 127.0.0.1. */
    close(a);
    assert_int_equal(wait_count(&srv, WB_EV_TCP_CLOSED, 1), 1);
    int e = raw_connect(NULL, port);
    assert_int_equal(raw_upgrade(e), 101);
    assert_int_equal(wait_count(&srv, WB_EV_TCP_OPENED, 4), 4);
    int f = raw_connect(NULL, port);
    assert_true(raw_sees_close(f));
    close(f);
    /* Connections still in their handshake count too. */
    close(b);
    close(e);
    assert_int_equal(wait_count(&srv, WB_EV_TCP_CLOSED, 3), 3);
    int g = raw_connect(NULL, port), h = raw_connect(NULL, port);
    sleep_ms(50);
    int i = raw_connect(NULL, port);
    assert_true(raw_sees_close(i));
    close(i);
    assert_int_equal(raw_upgrade(g), 101);
    assert_int_equal(raw_upgrade(h), 101);
    /* The 101 is written before the OPENED reaches the owner: wait for it. */
    assert_int_equal(wait_count(&srv, WB_EV_TCP_OPENED, 6), 6);
    close(g);
    close(h);
    close(d);
    assert_int_equal(count_of(&srv, WB_EV_TCP_OPENED), 6);
    rt_free(rt);
    peer_fini(&srv);
}

/* ---- a persistent dialer in ws mode -------------------------------------------- */

/* Hook: the server closes each connection's first (and only the first
 * connection's) OPENED at once. */
static int close_first_hook(peer_t *p, wb_event_t *ev)
{
    int *closed = p->user;
    if (ev->type == WB_EV_TCP_OPENED && !*closed) {
        *closed = 1;
        wb_tcp_close(p->rt, ev->src);
    }
    return 0;
}

static void test_persistent_dialer(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    int closed = 0;
    peer_t srv, cli;
    peer_init(&srv, rt, close_first_hook, &closed);
    peer_init(&cli, rt, NULL, NULL);
    srv.keep_blobs = cli.keep_blobs = 1;
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    wb_ws_opts_t co;
    wb_ws_opts_init(&co);
    co.host = NULL; /* Host: the dialed host */
    wb_tcp_opts_t dt;
    wb_tcp_opts_init(&dt);
    dt.ws = &co;
    dt.reconnect_min_ms = 20;
    dt.reconnect_max_ms = 40;
    uint64_t did;
    assert_int_equal(
        wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, &dt, &did), 0);
    rec_t r1, r2, r;
    int i1 = wait_rec(&cli, WB_EV_TCP_OPENED, 0, 0, &r1);
    assert_true(i1 >= 0);
    assert_int_equal(r1.cookie, did);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, r1.src, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed (code 1000)");
    assert_true(wait_rec(&cli, WB_EV_TCP_RETRY, did, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, 0, (size_t)i1 + 1, &r2) >= 0);
    assert_int_equal(r2.cookie, did);
    assert_true(r2.src != r1.src);
    send_msg(&cli, r2.src, "again", 5, 0);
    assert_int_equal(wait_count(&srv, WB_EV_TCP_BLOB, 1), 1);
    pthread_mutex_lock(&srv.m);
    assert_int_equal(srv.blobs[0].len, 5);
    assert_memory_equal(srv.blobs[0].data, "again", 5);
    pthread_mutex_unlock(&srv.m);
    size_t from = nrec(&cli);
    assert_int_equal(wb_tcp_close(rt, did), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, did, from, &r) >= 0);
    assert_string_equal(r.text, "dialer closed");
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* ---- bad arguments ------------------------------------------------------------ */

static void test_bad_options(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t id;
    wo.path = NULL;
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, 1, "127.0.0.1", 0, &to, &id), WB_EINVAL);
    wo.path = "no-slash";
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, 1, "127.0.0.1", 9, &to, &id), WB_EINVAL);
    wo.path = "/v1";
    wo.host = "";
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, 1, "127.0.0.1", 9, &to, &id), WB_EINVAL);
    wo.host = NULL;
    wo.max_message = WB_TCP_MAX_MESSAGE_LIMIT + 1u;
    assert_int_equal(wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, 1, "127.0.0.1", 9, &to, &id),
                     WB_EINVAL);
    rt_free(rt);
}

/* Requests carrying ws options that never reach a running lane are freed
 * with their events (LeakSanitizer and valgrind watch). */
static void test_never_started(void **state)
{
    (void)state;
    wb_rt_t *rt;
    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t id;
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, 1, "127.0.0.1", 0, &to, &id), 0);
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, 1, "127.0.0.1", 9, &to, &id), 0);
    assert_int_equal(wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, 1, "127.0.0.1", 9, &to, &id), 0);
    rt_free(rt);
}

/* Stop with WebSocket connections in every state: mid-handshake, open with
 * messages held for a full inbox, lingering. */
static void test_stop_with_everything_open(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(4);
    peer_t srv, cli;
    peer_init(&srv, rt, NULL, NULL);
    peer_init(&cli, rt, NULL, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    int half = raw_connect(NULL, port);
    raw_send(half, "GET /v1 HTTP/1.1\r\n", 18);
    uint64_t conn = ws_dial(&cli, port, &wo, 1);
    for (int i = 0; i < 200; i++) {
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, "x", 1);
        wb_event_route(ev, WB_LANE_ACTOR, cli.id, WB_LANE_NET, conn);
        if (wb_tcp_send(rt, conn, ev) != 0)
            wb_event_free(ev);
    }
    uint64_t c2 = ws_dial(&cli, port, &wo, 1);
    wb_tcp_close(rt, c2);
    ws_dial(&cli, port, &wo, 0);
    sleep_ms(50);
    rt_free(rt);
    close(half);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* ---- websocket.c: the lazy wslay context ------------------------------------- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int op;
} msg_t;

typedef struct {
    msg_t got[64];
    int n;
    int pongs;
} sink_t;

static void sink_msg(wb_ws_conn_t *c, void *u, int op, const uint8_t *d, size_t n)
{
    sink_t *s = u;
    if (s->n < 64) {
        s->got[s->n].data = malloc(n + 1);
        if (n > 0)
            memcpy(s->got[s->n].data, d, n);
        s->got[s->n].len = n;
        s->got[s->n].op = op;
        s->n++;
    }
}

static void buf_put(msg_t *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void frame_put(msg_t *out, int fin, int op, const uint8_t *d, size_t n, uint32_t *rng)
{
    uint8_t h[14];
    size_t hl = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    *rng = *rng * 1103515245u + 12345u;
    uint8_t key[4] = {(uint8_t)(*rng >> 8), (uint8_t)(*rng >> 16), (uint8_t)(*rng >> 24), 0x5a};
    memcpy(h + hl, key, 4);
    hl += 4;
    buf_put(out, h, hl);
    size_t at = out->len;
    buf_put(out, d, n);
    for (size_t i = 0; i < n; i++)
        out->data[at + i] ^= key[i % 4];
}

static void test_lazy_context_differential(void **state)
{
    (void)state;
    uint32_t rng = 12345;
    for (int round = 0; round < 40; round++) {
        /* Messages of sizes around the header boundaries, some fragmented
         * with pings between the fragments. */
        static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 70001, 3, 4000};
        msg_t stream = {0}, want[16];
        int nwant = 0;
        for (int m = 0; m < 12; m++) {
            rng = rng * 1103515245u + 12345u;
            size_t n = sizes[(rng >> 8) % 10];
            int op = (rng >> 20) & 1 ? WB_WS_BINARY : WB_WS_TEXT;
            msg_t *w = &want[nwant++];
            memset(w, 0, sizeof(*w));
            w->op = op;
            for (size_t i = 0; i < n; i++) {
                uint8_t b = (uint8_t)('a' + (i * 7 + (size_t)m) % 26);
                buf_put(w, &b, 1);
            }
            int frags = 1 + (int)((rng >> 24) % 3);
            size_t at = 0;
            for (int f = 0; f < frags; f++) {
                size_t k = f == frags - 1 ? n - at : (n - at) / 2;
                frame_put(&stream, f == frags - 1, f == 0 ? op : 0, w->data ? w->data + at : NULL,
                          k, &rng);
                at += k;
                if (f < frags - 1)
                    frame_put(&stream, 1, 9, (const uint8_t *)"ping", 4, &rng);
            }
        }
        wb_ws_conn_t *c;
        sink_t sink = {0};
        static const wb_ws_cb_t cb = {NULL, sink_msg, NULL};
        assert_int_equal(wb_ws_new(&c, WB_WS_SERVER, NULL, &cb, &sink), 0);
        assert_int_equal(wb_ws_feed(c, (const uint8_t *)UPGRADE, sizeof(UPGRADE) - 1), 0);
        assert_int_equal(wb_ws_state(c), WB_WS_OPEN);
        size_t at = 0;
        while (at < stream.len) {
            rng = rng * 1103515245u + 12345u;
            size_t k = 1 + (rng >> 8) % (round % 2 ? 9000 : 40);
            if (k > stream.len - at)
                k = stream.len - at;
            assert_int_equal(wb_ws_feed(c, stream.data + at, k), 0);
            const uint8_t *p;
            wb_ws_output(c, &p);
            wb_ws_output_done(c);
            at += k;
        }
        assert_int_equal(wb_ws_state(c), WB_WS_OPEN);
        assert_int_equal(sink.n, nwant);
        for (int i = 0; i < nwant; i++) {
            assert_int_equal(sink.got[i].op, want[i].op);
            assert_int_equal(sink.got[i].len, want[i].len);
            if (want[i].len > 0)
                assert_memory_equal(sink.got[i].data, want[i].data, want[i].len);
            free(sink.got[i].data);
            free(want[i].data);
        }
        wb_ws_free(c);
        free(stream.data);
    }
}

/* ---- memory per idle WebSocket connection -------------------------------------- */

enum { IDLE_N = 2000 };

/* Heap bytes in use (0 when the allocator is not glibc's: sanitizers). */
static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void test_idle_memory(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new(0);
    peer_t srv;
    peer_init(&srv, rt, NULL, NULL);
    peer_spawn(&srv);
    wb_tcp_opts_t to;
    wb_ws_opts_t wo;
    opts_ws(&to, &wo);
    to.max_connections = IDLE_N + 10;
    uint64_t lid;
    uint16_t port = listen_on(&srv, &to, &lid);
    /* Warm up: one connection that exchanged a message, then closed, so
     * that the lane's lazily made tables and caches exist. */
    int w = raw_connect(NULL, port);
    assert_int_equal(raw_upgrade(w), 101);
    raw_frame(w, 1, 1, "hi", 2, 1);
    assert_int_equal(wait_count(&srv, WB_EV_TCP_BLOB, 1), 1);
    sleep_ms(50);
    size_t before = heap_used();
    int *fds = malloc(sizeof(int) * IDLE_N);
    for (int i = 0; i < IDLE_N; i++) {
        fds[i] = raw_connect(NULL, port);
        assert_int_equal(raw_upgrade(fds[i]), 101);
        /* Half of them have exchanged a message: idle after use too. */
        if (i % 2)
            raw_frame(fds[i], 1, 2, "m", 1, 1);
    }
    assert_int_equal(wait_count(&srv, WB_EV_TCP_OPENED, IDLE_N + 1), IDLE_N + 1);
    assert_int_equal(wait_count(&srv, WB_EV_TCP_BLOB, IDLE_N / 2 + 1), IDLE_N / 2 + 1);
    sleep_ms(100);
    size_t after = heap_used();
    if (before > 0 && after > before) {
        size_t per = (after - before) / IDLE_N;
        printf("ws_idle_conn_bytes: %zu bytes\n", per);
        printf("ws_idle_10k_conns_heap: %.1f MB\n", per * 10000.0 / 1e6);
        assert_true(per < 2048);
    } else {
        printf("ws_idle_conn_bytes: not measured (no glibc malloc statistics)\n");
    }
    for (int i = 0; i < IDLE_N; i++)
        close(fds[i]);
    close(w);
    free(fds);
    rt_free(rt);
    peer_fini(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_binary_both_ways),
        cmocka_unit_test(test_small_messages_tiny_inbox),
        cmocka_unit_test(test_small_messages_then_close),
        cmocka_unit_test(test_flood_tiny_frames),
        cmocka_unit_test(test_owner_close),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_raw_client_frames),
        cmocka_unit_test(test_page_and_errors),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_dial_refused_upgrade),
        cmocka_unit_test(test_max_per_ip),
        cmocka_unit_test(test_persistent_dialer),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_never_started),
        cmocka_unit_test(test_stop_with_everything_open),
        cmocka_unit_test(test_lazy_context_differential),
        cmocka_unit_test(test_idle_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
