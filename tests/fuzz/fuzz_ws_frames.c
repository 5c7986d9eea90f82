/*
 * fuzz_ws_frames.c - the WebSocket frame path (sockets/websocket.h):
 * arbitrary bytes after a completed upgrade, on the server side (the peer's
 * frames must be masked) or the client side (they must not be).
 *
 * Input: byte 0 chooses the role (bit 0), the chunk size (1 + (b >> 1) * 4)
 * and the rest is the peer's frames. A small max_message (4096) makes the
 * 1009 path reachable. Checks: no crash, no leak, messages only while open
 * and never above max_message, an error leaves the connection done, nothing
 * is taken after done, and our own sends keep working until closing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "sockets/websocket.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_ws_frames: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_MESSAGE 4096

static void on_msg(wb_ws_conn_t *c, void *u, int op, const uint8_t *d, size_t n)
{
    CHECK(op == WB_WS_TEXT || op == WB_WS_BINARY);
    CHECK(n <= MAX_MESSAGE);
    CHECK(wb_ws_state(c) == WB_WS_OPEN);
    /* Echo: exercises sending from inside the callback. */
    int rc = wb_ws_send(c, op, d, n);
    CHECK(rc == 0 || rc == WB_ECLOSED);
}

static void on_close(wb_ws_conn_t *c, void *u, uint16_t code, const uint8_t *r, size_t n)
{
    CHECK(code != 0);
    CHECK(n <= 123);
}

static const char REQ[] = "GET /v1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n";

/* The 101 for the client's request in out (its key is random). */
static void respond_101(wb_ws_conn_t *c)
{
    const uint8_t *p;
    size_t n = wb_ws_output(c, &p);
    char req[1024];
    CHECK(n < sizeof(req));
    memcpy(req, p, n);
    req[n] = 0;
    wb_ws_output_done(c);
    const char *k = strstr(req, "Sec-WebSocket-Key: ");
    CHECK(k != NULL);
    k += strlen("Sec-WebSocket-Key: ");
    char acc[29], resp[256];
    wb_ws_accept_key(k, 24, acc);
    int len = snprintf(resp, sizeof(resp),
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                       acc);
    CHECK(wb_ws_feed(c, (const uint8_t *)resp, (size_t)len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    wb_ws_role_t role = (data[0] & 1) ? WB_WS_CLIENT : WB_WS_SERVER;
    size_t chunk = 1 + (size_t)(data[0] >> 1) * 4;
    data++;
    size--;
    wb_ws_opts_t o;
    wb_ws_opts_init(&o);
    o.max_message = MAX_MESSAGE;
    wb_ws_cb_t cb = {NULL, on_msg, on_close};
    wb_ws_conn_t *c;
    CHECK(wb_ws_new(&c, role, &o, &cb, NULL) == 0);
    if (role == WB_WS_SERVER)
        CHECK(wb_ws_feed(c, (const uint8_t *)REQ, sizeof(REQ) - 1) == 0);
    else
        respond_101(c);
    CHECK(wb_ws_state(c) == WB_WS_OPEN);
    const uint8_t *p;
    wb_ws_output(c, &p);
    wb_ws_output_done(c);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        int rc = wb_ws_feed(c, data + off, n);
        off += n;
        if (rc != 0)
            CHECK(wb_ws_state(c) == WB_WS_DONE);
        wb_ws_output(c, &p);
        wb_ws_output_done(c);
    }
    if (wb_ws_state(c) == WB_WS_OPEN)
        wb_ws_close(c, WB_WS_CLOSE_NORMAL, "end");
    wb_ws_free(c);
    return 0;
}
