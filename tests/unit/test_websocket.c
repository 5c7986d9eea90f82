/*
 * test_websocket.c - sockets/websocket.h.
 *
 * The sans-io core against hand-built bytes: the upgrade (accept key from
 * RFC 6455's example, permessage-deflate declined, wrong path 404, missing
 * key 400, bad version 426, GET / page, oversized head 431, a request fed a
 * byte at a time, the handshake timeout), frames (masked client frames,
 * fragments with a ping between them, ping -> pong, unmasked from a client
 * -> 1002, reserved bits -> 1002, oversize -> 1009, bad UTF-8 -> 1007, the
 * close handshake) and
 * the client side (its request, the 101 check, masked frames).
 *
 * Then a threaded loopback: a server and a client, both run by one actor,
 * over raw TCP connections (wb_tcp_opts_t.raw) through the runtime: text,
 * binary, a 1 MiB message, a fragmented message written as raw frames, all
 * echoed back, then the close handshake.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/pool.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"
#include "sockets/websocket.h"

/* ---- recording callbacks ---- */

typedef struct {
    int opened;
    int nmsg;
    int last_opcode;
    uint8_t last[256];
    size_t last_len;
    uint16_t close_code;
    char close_reason[128];
} rec_t;

static void r_open(wb_ws_conn_t *c, void *u)
{
    ((rec_t *)u)->opened++;
}

static void r_msg(wb_ws_conn_t *c, void *u, int op, const uint8_t *d, size_t n)
{
    rec_t *r = u;
    r->nmsg++;
    r->last_opcode = op;
    r->last_len = n;
    memcpy(r->last, d, n < sizeof(r->last) ? n : sizeof(r->last));
}

static void r_close(wb_ws_conn_t *c, void *u, uint16_t code, const uint8_t *reason, size_t n)
{
    rec_t *r = u;
    r->close_code = code;
    snprintf(r->close_reason, sizeof(r->close_reason), "%.*s", (int)n, (const char *)reason);
}

static const wb_ws_cb_t rcb = {r_open, r_msg, r_close};

/* Output as a NUL-terminated string (copied), and taken. */
static char *take(wb_ws_conn_t *c, size_t *len)
{
    const uint8_t *p;
    size_t n = wb_ws_output(c, &p);
    char *s = malloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    if (len)
        *len = n;
    wb_ws_output_done(c);
    return s;
}

static int feed_str(wb_ws_conn_t *c, const char *s)
{
    return wb_ws_feed(c, (const uint8_t *)s, strlen(s));
}

/* One frame into out; mask 0 = unmasked. Returns its length. */
static size_t frame(uint8_t *out, int fin, int rsv, int opcode, int masked, const void *payload,
                    size_t len)
{
    size_t o = 0;
    out[o++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | opcode);
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        out[o++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        out[o++] = m | 126;
        out[o++] = (uint8_t)(len >> 8);
        out[o++] = (uint8_t)len;
    } else {
        out[o++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[o++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    if (masked) {
        memcpy(out + o, key, 4);
        o += 4;
    }
    for (size_t i = 0; i < len; i++)
        out[o + i] = ((const uint8_t *)payload)[i] ^ (masked ? key[i % 4] : 0);
    return o + len;
}

#define REQ_HEAD(path, extra)                                                                      \
    "GET " path " HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"                         \
    "Connection: keep-alive, Upgrade\r\n" extra "\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER "Sec-WebSocket-Version: 13\r\n"

static wb_ws_conn_t *server(rec_t *r, uint32_t max_message)
{
    wb_ws_opts_t o;
    wb_ws_opts_init(&o);
    if (max_message)
        o.max_message = max_message;
    wb_ws_conn_t *c;
    memset(r, 0, sizeof(*r));
    assert_int_equal(wb_ws_new(&c, WB_WS_SERVER, &o, &rcb, r), 0);
    return c;
}

/* A server past a good upgrade, output taken. */
static wb_ws_conn_t *open_server(rec_t *r, uint32_t max_message)
{
    wb_ws_conn_t *c = server(r, max_message);
    assert_int_equal(feed_str(c, REQ_HEAD("/v1", KEY VER)), 0);
    assert_int_equal(wb_ws_state(c), WB_WS_OPEN);
    free(take(c, NULL));
    return c;
}

static void test_accept_key(void **st)
{
    char out[29];
    const char *k = "dGhlIHNhbXBsZSBub25jZQ==";
    wb_ws_accept_key(k, strlen(k), out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_upgrade_ok_deflate_declined(void **st)
{
    rec_t r;
    wb_ws_conn_t *c = server(&r, 0);
    assert_int_equal(
        feed_str(c, REQ_HEAD("/v1", KEY VER "Sec-WebSocket-Extensions: permessage-deflate; "
                                            "client_max_window_bits\r\n")),
        0);
    assert_int_equal(wb_ws_state(c), WB_WS_OPEN);
    assert_int_equal(r.opened, 1);
    assert_int_equal(wb_ws_http_status(c), 101);
    char *out = take(c, NULL);
    assert_non_null(strstr(out, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(strstr(out, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_null(strstr(out, "Extensions"));
    assert_null(strstr(out, "deflate"));
    free(out);
    /* A compressed frame (RSV1) is refused: nothing was negotiated. */
    uint8_t f[64];
    size_t n = frame(f, 1, 4, 1, 1, "hi", 2);
    assert_int_equal(wb_ws_feed(c, f, n), WB_EPROTO);
    assert_int_equal(wb_ws_state(c), WB_WS_DONE);
    size_t len;
    out = take(c, &len);
    assert_true(len >= 4);
    assert_int_equal((uint8_t)out[0], 0x88);
    assert_int_equal(((uint8_t)out[2] << 8) | (uint8_t)out[3], 1002);
    free(out);
    assert_int_equal(r.nmsg, 0);
    wb_ws_free(c);
}

static void test_upgrade_bytewise_and_pipelined(void **st)
{
    rec_t r;
    wb_ws_conn_t *c = server(&r, 0);
    uint8_t buf[512];
    const char *req = REQ_HEAD("/v1?x=1", KEY VER);
    size_t n = strlen(req);
    memcpy(buf, req, n);
    n += frame(buf + n, 1, 0, 2, 1, "\x01\x02\x03", 3);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(wb_ws_feed(c, buf + i, 1), 0);
    assert_int_equal(wb_ws_state(c), WB_WS_OPEN);
    assert_int_equal(r.nmsg, 1);
    assert_int_equal(r.last_opcode, WB_WS_BINARY);
    assert_memory_equal(r.last, "\x01\x02\x03", 3);
    wb_ws_free(c);
}

static void bad_request(const char *req, int status, int rc, const char *body)
{
    rec_t r;
    wb_ws_conn_t *c = server(&r, 0);
    assert_int_equal(feed_str(c, req), rc);
    assert_int_equal(wb_ws_state(c), WB_WS_DONE);
    assert_int_equal(wb_ws_http_status(c), status);
    char *out = take(c, NULL);
    char line[64];
    snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    assert_true(strncmp(out, line, strlen(line)) == 0);
    assert_non_null(strstr(out, "Connection: close\r\n"));
    if (body != NULL) {
        assert_non_null(strstr(out, "Content-Type: text/plain"));
        assert_non_null(strstr(out, body));
    }
    free(out);
    assert_int_equal(r.opened, 0);
    /* Bytes after the end are ignored. */
    assert_int_equal(feed_str(c, "more"), 0);
    wb_ws_free(c);
}

static void test_bad_upgrades(void **st)
{
    bad_request(REQ_HEAD("/v2", KEY VER), 404, WB_EPROTO, NULL);
    bad_request(REQ_HEAD("/", KEY VER), 404, WB_EPROTO, NULL);
    bad_request(REQ_HEAD("/v1", VER), 400, WB_EPROTO, NULL);
    bad_request(REQ_HEAD("/v1", "Sec-WebSocket-Key: short\r\n" VER), 400, WB_EPROTO, NULL);
    bad_request(REQ_HEAD("/v1", KEY "Sec-WebSocket-Version: 8\r\n"), 426, WB_EPROTO, NULL);
    bad_request("GET /v1 HTTP/1.1\r\nHost: x\r\n" KEY VER "\r\n", 400, WB_EPROTO, NULL);
    bad_request("POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, WB_EPROTO, NULL);
    bad_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, 0, "waybill mailbox: WebSocket on /v1");
    bad_request("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404, WB_EPROTO, NULL);
    bad_request("\x16\x03\x01 hello tls\r\n\r\n", 400, WB_EPROTO, NULL);
}

static void test_slowloris(void **st)
{
    /* Headers past 16 KiB: 431 and done. */
    rec_t r;
    wb_ws_conn_t *c = server(&r, 0);
    assert_int_equal(feed_str(c, "GET /v1 HTTP/1.1\r\n"), 0);
    char line[128];
    memset(line, 'a', sizeof(line));
    memcpy(line, "X-Pad: ", 7);
    memcpy(line + sizeof(line) - 2, "\r\n", 2);
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++)
        rc = wb_ws_feed(c, (const uint8_t *)line, sizeof(line));
    assert_int_equal(rc, WB_ETOOBIG);
    assert_int_equal(wb_ws_state(c), WB_WS_DONE);
    assert_int_equal(wb_ws_http_status(c), 431);
    free(take(c, NULL));
    wb_ws_free(c);

    /* A request never finished: the timer ends it. */
    c = server(&r, 0);
    assert_int_equal(feed_str(c, "GET /v1 HTTP/1.1\r\nHost:"), 0);
    assert_int_equal(wb_ws_state(c), WB_WS_HANDSHAKE);
    assert_int_equal(wb_ws_timeout(c), 1);
    assert_int_equal(wb_ws_state(c), WB_WS_DONE);
    wb_ws_free(c);

    /* After the upgrade the timer does nothing. */
    c = open_server(&r, 0);
    assert_int_equal(wb_ws_timeout(c), 0);
    assert_int_equal(wb_ws_state(c), WB_WS_OPEN);
    wb_ws_free(c);
}

static void test_frames_and_fragments(void **st)
{
    rec_t r;
    wb_ws_conn_t *c = open_server(&r, 0);
    uint8_t buf[1024];
    size_t n = frame(buf, 1, 0, 1, 1, "hello", 5);
    assert_int_equal(wb_ws_feed(c, buf, n), 0);
    assert_int_equal(r.nmsg, 1);
    assert_int_equal(r.last_opcode, WB_WS_TEXT);
    assert_int_equal(r.last_len, 5);
    assert_memory_equal(r.last, "hello", 5);

    /* Fragments with a ping between them; fed in one go and then split. */
    n = frame(buf, 0, 0, 1, 1, "Hel", 3);
    n += frame(buf + n, 1, 0, 9, 1, "pi", 2);
    n += frame(buf + n, 0, 0, 0, 1, "l", 1);
    n += frame(buf + n, 1, 0, 0, 1, "o!", 2);
    for (int split = 0; split < 2; split++) {
        if (split == 0) {
            assert_int_equal(wb_ws_feed(c, buf, n), 0);
        } else {
            for (size_t i = 0; i < n; i += 3)
                assert_int_equal(wb_ws_feed(c, buf + i, n - i < 3 ? n - i : 3), 0);
        }
        assert_int_equal(r.nmsg, 2 + split);
        assert_int_equal(r.last_len, 6);
        assert_memory_equal(r.last, "Hello!", 6);
        size_t len;
        char *out = take(c, &len);
        /* The pong: unmasked, same payload. */
        assert_int_equal(len, 4);
        assert_memory_equal(out, "\x8a\x02pi", 4);
        free(out);
    }

    /* Our own messages go out unmasked. */
    assert_int_equal(wb_ws_send(c, WB_WS_BINARY, (const uint8_t *)"\xff\x00", 2), 0);
    size_t len;
    char *out = take(c, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "\x82\x02\xff\x00", 4);
    free(out);

    /* 300-byte message (16-bit length). */
    uint8_t big[300];
    memset(big, 'z', sizeof(big));
    n = frame(buf, 1, 0, 2, 1, big, sizeof(big));
    assert_int_equal(wb_ws_feed(c, buf, n), 0);
    assert_int_equal(r.last_len, 300);
    wb_ws_free(c);
}

static void test_unmasked_from_client(void **st)
{
    rec_t r;
    wb_ws_conn_t *c = open_server(&r, 0);
    uint8_t buf[64];
    size_t n = frame(buf, 1, 0, 1, 0, "hello", 5);
    assert_int_equal(wb_ws_feed(c, buf, n), WB_EPROTO);
    assert_int_equal(r.nmsg, 0);
    assert_int_equal(wb_ws_state(c), WB_WS_DONE);
    size_t len;
    char *out = take(c, &len);
    assert_true(len >= 4);
    assert_int_equal((uint8_t)out[0], 0x88);
    assert_int_equal(((uint8_t)out[2] << 8) | (uint8_t)out[3], 1002);
    free(out);
    assert_int_equal(wb_ws_send(c, WB_WS_TEXT, (const uint8_t *)"x", 1), WB_ECLOSED);
    wb_ws_free(c);
}

static void test_oversize(void **st)
{
    rec_t r;
    wb_ws_conn_t *c = open_server(&r, 16);
    uint8_t buf[128];
    size_t n = frame(buf, 1, 0, 2, 1, "0123456789abcdef", 16);
    assert_int_equal(wb_ws_feed(c, buf, n), 0);
    assert_int_equal(r.nmsg, 1);
    /* 17 bytes in two fragments. */
    n = frame(buf, 0, 0, 2, 1, "0123456789", 10);
    n += frame(buf + n, 1, 0, 0, 1, "abcdefg", 7);
    assert_int_equal(wb_ws_feed(c, buf, n), WB_ETOOBIG);
    assert_int_equal(r.nmsg, 1);
    assert_int_equal(wb_ws_state(c), WB_WS_DONE);
    size_t len;
    char *out = take(c, &len);
    assert_true(len >= 4);
    assert_int_equal((uint8_t)out[0], 0x88);
    assert_int_equal(((uint8_t)out[2] << 8) | (uint8_t)out[3], 1009);
    free(out);
    wb_ws_free(c);
}

static void test_bad_utf8(void **st)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 1},
        {"\xc0\xaf", 0},         /* overlong */
        {"\xed\xa0\x80", 0},     /* surrogate */
        {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"ab\xe2\x82", 0},       /* cut short */
        {"\xff", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rec_t r;
        wb_ws_conn_t *c = open_server(&r, 0);
        uint8_t buf[64];
        size_t n = frame(buf, 1, 0, 1, 1, cases[i].s, strlen(cases[i].s));
        /* Split so that the bad byte is in another frame than the rest. */
        size_t m = frame(buf + n, 1, 0, 2, 1, "\xff", 1);
        assert_int_equal(wb_ws_feed(c, buf, n + m), cases[i].ok ? 0 : WB_EPROTO);
        size_t len;
        char *out = take(c, &len);
        if (cases[i].ok) {
            assert_int_equal(r.nmsg, 2);
            assert_int_equal(len, 0);
        } else {
            /* Closed with 1007; nothing delivered, not even what followed. */
            assert_int_equal(r.nmsg, 0);
            assert_int_equal(len, 4);
            assert_memory_equal(out, "\x88\x02\x03\xef", 4);
            assert_int_equal(wb_ws_state(c), WB_WS_DONE);
        }
        free(out);
        wb_ws_free(c);
    }
}

static void test_close_handshake(void **st)
{
    /* The peer closes: we answer and are done. */
    rec_t r;
    wb_ws_conn_t *c = open_server(&r, 0);
    uint8_t buf[64];
    size_t n = frame(buf, 1, 0, 8, 1,
                     "\x03\xe8"
                     "bye",
                     5);
    assert_int_equal(wb_ws_feed(c, buf, n), 0);
    assert_int_equal(r.close_code, 1000);
    assert_string_equal(r.close_reason, "bye");
    assert_int_equal(wb_ws_close_code(c), 1000);
    assert_int_equal(wb_ws_state(c), WB_WS_DONE);
    size_t len;
    char *out = take(c, &len);
    assert_true(len >= 4);
    assert_memory_equal(out, "\x88", 1);
    assert_int_equal(((uint8_t)out[2] << 8) | (uint8_t)out[3], 1000);
    free(out);
    wb_ws_free(c);

    /* We close: done once the peer's close arrives. */
    c = open_server(&r, 0);
    assert_int_equal(wb_ws_close(c, 1001, "going"), 0);
    out = take(c, &len);
    assert_int_equal(len, 9);
    assert_memory_equal(out, "\x88\x07\x03\xe9going", 9);
    free(out);
    assert_int_equal(wb_ws_state(c), WB_WS_OPEN);
    assert_int_equal(wb_ws_send(c, WB_WS_TEXT, (const uint8_t *)"x", 1), WB_ECLOSED);
    n = frame(buf, 1, 0, 8, 1, "\x03\xe9", 2);
    assert_int_equal(wb_ws_feed(c, buf, n), 0);
    assert_int_equal(wb_ws_state(c), WB_WS_DONE);
    assert_int_equal(r.close_code, 1001);
    wb_ws_free(c);
}

/* The value of header `name` in an HTTP head, copied into out. */
static void header(const char *head, const char *name, char *out, size_t cap)
{
    const char *p = strstr(head, name);
    assert_non_null(p);
    p += strlen(name);
    const char *e = strstr(p, "\r\n");
    snprintf(out, cap, "%.*s", (int)(e - p), p);
}

static void test_client(void **st)
{
    for (int variant = 0; variant < 3; variant++) {
        rec_t r = {0};
        wb_ws_opts_t o;
        wb_ws_opts_init(&o);
        o.host = "127.0.0.1:4000";
        wb_ws_conn_t *c;
        assert_int_equal(wb_ws_new(&c, WB_WS_CLIENT, &o, &rcb, &r), 0);
        char *req = take(c, NULL);
        assert_true(strncmp(req, "GET /v1 HTTP/1.1\r\n", 18) == 0);
        assert_non_null(strstr(req, "Host: 127.0.0.1:4000\r\n"));
        assert_non_null(strstr(req, "Sec-WebSocket-Version: 13\r\n"));
        char key[64], acc[29], resp[512];
        header(req, "Sec-WebSocket-Key: ", key, sizeof(key));
        free(req);
        assert_int_equal(strlen(key), 24);
        wb_ws_accept_key(key, strlen(key), acc);
        if (variant == 1)
            acc[0] ^= 1;
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                 acc, variant == 2 ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
        if (variant != 0) {
            assert_int_equal(feed_str(c, resp), WB_EPROTO);
            assert_int_equal(wb_ws_state(c), WB_WS_DONE);
            wb_ws_free(c);
            continue;
        }
        assert_int_equal(wb_ws_send(c, WB_WS_TEXT, (const uint8_t *)"x", 1), WB_EAGAIN);
        /* The 101 and a server frame in one read. */
        uint8_t buf[600];
        size_t n = strlen(resp);
        memcpy(buf, resp, n);
        n += frame(buf + n, 1, 0, 1, 0, "srv", 3);
        assert_int_equal(wb_ws_feed(c, buf, n), 0);
        assert_int_equal(wb_ws_state(c), WB_WS_OPEN);
        assert_int_equal(r.opened, 1);
        assert_int_equal(r.nmsg, 1);
        assert_memory_equal(r.last, "srv", 3);
        /* Our frames are masked. */
        assert_int_equal(wb_ws_send(c, WB_WS_TEXT, (const uint8_t *)"abc", 3), 0);
        size_t len;
        char *out = take(c, &len);
        assert_int_equal(len, 2 + 4 + 3);
        assert_int_equal((uint8_t)out[0], 0x81);
        assert_int_equal((uint8_t)out[1], 0x83);
        for (int i = 0; i < 3; i++)
            assert_int_equal((uint8_t)out[6 + i] ^ (uint8_t)out[2 + i], "abc"[i]);
        free(out);
        /* A masked frame from the server is a protocol error. */
        n = frame(buf, 1, 0, 1, 1, "bad", 3);
        assert_int_equal(wb_ws_feed(c, buf, n), WB_EPROTO);
        wb_ws_free(c);
    }
}

/* ---- threaded loopback ---- */

#define BIG     (1u << 20)
#define WAIT_MS 60000

typedef struct {
    wb_rt_t *rt;
    uint64_t id;   /* written by the test thread */
    uint64_t self; /* the same, written by the actor */
    uint64_t listener, sconn, cconn;
    wb_ws_conn_t *srv, *cli;
    uint8_t *big;
    int echoes;      /* messages the client got back intact */
    int server_msgs; /* messages the server got */
    int closed_tcp;  /* TCP CLOSED events for the two connections */
    pthread_mutex_t m;
    pthread_cond_t cv;
    int done, failed;
    char why[200];
} loop_t;

static void lp_finish(loop_t *l, int failed, const char *why)
{
    pthread_mutex_lock(&l->m);
    if (failed && !l->failed) {
        l->failed = 1;
        snprintf(l->why, sizeof(l->why), "%s", why);
    }
    if (!failed)
        l->done = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->m);
}

/* Write c's output to conn; close conn once c is done. */
static void lp_flush(loop_t *l, wb_ws_conn_t *c, uint64_t conn)
{
    const uint8_t *p;
    size_t n = wb_ws_output(c, &p);
    if (n > 0) {
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, p, n);
        wb_event_route(ev, WB_LANE_ACTOR, l->self, WB_LANE_NET, conn);
        if (wb_tcp_send(l->rt, conn, ev) != 0) {
            wb_event_free(ev);
            lp_finish(l, 1, "wb_tcp_send refused");
        }
        wb_ws_output_done(c);
    }
    if (wb_ws_state(c) == WB_WS_DONE)
        wb_tcp_close(l->rt, conn);
}

static void srv_msg(wb_ws_conn_t *c, void *u, int op, const uint8_t *d, size_t n)
{
    loop_t *l = u;
    l->server_msgs++;
    if (wb_ws_send(c, op, d, n) != 0)
        lp_finish(l, 1, "server echo failed");
}

static const uint8_t FRAGMENTED[] = "one two three";

static void cli_open(wb_ws_conn_t *c, void *u)
{
    loop_t *l = u;
    if (wb_ws_send(c, WB_WS_TEXT, (const uint8_t *)"hello", 5) != 0 ||
        wb_ws_send(c, WB_WS_BINARY, l->big, BIG) != 0)
        lp_finish(l, 1, "client send failed");
}

static void cli_msg(wb_ws_conn_t *c, void *u, int op, const uint8_t *d, size_t n)
{
    loop_t *l = u;
    int ok = 0;
    if (l->echoes == 0)
        ok = op == WB_WS_TEXT && n == 5 && memcmp(d, "hello", 5) == 0;
    else if (l->echoes == 1)
        ok = op == WB_WS_BINARY && n == BIG && memcmp(d, l->big, BIG) == 0;
    else if (l->echoes == 2)
        ok = op == WB_WS_TEXT && n == sizeof(FRAGMENTED) - 1 && memcmp(d, FRAGMENTED, n) == 0;
    if (!ok) {
        lp_finish(l, 1, "client got a wrong echo");
        return;
    }
    if (++l->echoes == 3)
        wb_ws_close(c, WB_WS_CLOSE_NORMAL, "done");
}

/* Three masked fragments of FRAGMENTED, written as raw bytes. */
static void send_fragments(loop_t *l)
{
    uint8_t buf[128];
    size_t n = frame(buf, 0, 0, 1, 1, FRAGMENTED, 4);
    n += frame(buf + n, 0, 0, 0, 1, FRAGMENTED + 4, 4);
    n += frame(buf + n, 1, 0, 9, 1, "p", 1);
    n += frame(buf + n, 1, 0, 0, 1, FRAGMENTED + 8, sizeof(FRAGMENTED) - 1 - 8);
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, buf, n);
    wb_event_route(ev, WB_LANE_ACTOR, l->self, WB_LANE_NET, l->cconn);
    if (wb_tcp_send(l->rt, l->cconn, ev) != 0) {
        wb_event_free(ev);
        lp_finish(l, 1, "wb_tcp_send refused");
    }
}

static void lp_handle(wb_actor_t *self, wb_event_t *ev)
{
    loop_t *l = wb_actor_state(self);
    l->self = wb_actor_id(self);
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.raw = 1;
    to.max_message = 4u << 20;
    wb_ws_opts_t wo;
    wb_ws_opts_init(&wo);
    wo.max_message = 2u << 20;
    switch (ev->type) {
    case WB_EV_TCP_LISTENING:
        l->listener = ev->src;
        if (ev->status != 0) {
            lp_finish(l, 1, "listen failed");
            break;
        }
        {
            static const wb_ws_cb_t ccb = {cli_open, cli_msg, NULL};
            if (wb_ws_new(&l->cli, WB_WS_CLIENT, &wo, &ccb, l) != 0 ||
                wb_tcp_dial(l->rt, WB_LANE_ACTOR, l->self, "127.0.0.1", (uint16_t)ev->cookie, &to,
                            &l->cconn) != 0) {
                lp_finish(l, 1, "dial failed");
                break;
            }
            lp_flush(l, l->cli, l->cconn);
        }
        break;
    case WB_EV_TCP_OPENED:
        if (ev->cookie == l->listener) {
            static const wb_ws_cb_t scb = {NULL, srv_msg, NULL};
            l->sconn = ev->src;
            if (wb_ws_new(&l->srv, WB_WS_SERVER, &wo, &scb, l) != 0)
                lp_finish(l, 1, "server new failed");
        }
        break;
    case WB_EV_TCP_BLOB: {
        int is_srv = ev->src == l->sconn;
        wb_ws_conn_t *c = is_srv ? l->srv : l->cli;
        int was_open = wb_ws_state(c) == WB_WS_OPEN;
        if (wb_ws_feed(c, ev->data, ev->len) != 0)
            lp_finish(l, 1, "feed failed");
        lp_flush(l, c, ev->src);
        if (!is_srv && !was_open && wb_ws_state(c) == WB_WS_OPEN)
            send_fragments(l);
        break;
    }
    case WB_EV_TCP_CLOSED:
        if (ev->src == l->sconn || ev->src == l->cconn) {
            if (++l->closed_tcp == 2) {
                if (wb_ws_state(l->srv) == WB_WS_DONE && wb_ws_state(l->cli) == WB_WS_DONE &&
                    l->echoes == 3 && wb_ws_close_code(l->srv) == 1000)
                    lp_finish(l, 0, NULL);
                else
                    lp_finish(l, 1, "closed early");
            }
        }
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static void lp_fini(wb_actor_t *self)
{
    loop_t *l = wb_actor_state(self);
    wb_ws_free(l->srv);
    wb_ws_free(l->cli);
    l->srv = l->cli = NULL;
}

static const wb_actor_def_t lp_def = {"ws-loop", lp_handle, lp_fini};

static void test_loopback(void **st)
{
    loop_t l;
    memset(&l, 0, sizeof(l));
    pthread_mutex_init(&l.m, NULL);
    pthread_cond_init(&l.cv, NULL);
    l.big = malloc(BIG);
    for (uint32_t i = 0; i < BIG; i++)
        l.big[i] = (uint8_t)(i * 2654435761u >> 13);
    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    assert_int_equal(wb_rt_new(&l.rt, &cfg), 0);
    assert_int_equal(wb_sockets_attach(l.rt, NULL), 0);
    assert_int_equal(wb_rt_start(l.rt), 0);
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.raw = 1;
    to.max_message = 4u << 20;
    /* The actor learns the listener's id from LISTENING (src), so this
     * thread never writes what the actor reads. */
    uint64_t lid;
    assert_int_equal(wb_actor_spawn(l.rt, NULL, &lp_def, &l, &l.id), 0);
    assert_int_equal(wb_tcp_listen(l.rt, WB_LANE_ACTOR, l.id, "127.0.0.1", 0, &to, &lid), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&l.m);
    while (!l.done && !l.failed)
        if (pthread_cond_timedwait(&l.cv, &l.m, &ts) != 0)
            break;
    int done = l.done, failed = l.failed;
    char why[200];
    memcpy(why, l.why, sizeof(why));
    pthread_mutex_unlock(&l.m);
    wb_rt_stop(l.rt);
    wb_rt_free(l.rt);
    if (failed)
        fail_msg("loopback: %s", why);
    assert_true(done);
    assert_int_equal(l.echoes, 3);
    assert_int_equal(l.server_msgs, 3);
    free(l.big);
    pthread_mutex_destroy(&l.m);
    pthread_cond_destroy(&l.cv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_upgrade_ok_deflate_declined),
        cmocka_unit_test(test_upgrade_bytewise_and_pipelined),
        cmocka_unit_test(test_bad_upgrades),
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_frames_and_fragments),
        cmocka_unit_test(test_unmasked_from_client),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_close_handshake),
        cmocka_unit_test(test_client),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
