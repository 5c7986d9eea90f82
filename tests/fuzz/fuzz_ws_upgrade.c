/*
 * fuzz_ws_upgrade.c - the WebSocket opening handshake (sockets/websocket.h):
 * arbitrary bytes as a server's request head and as a client's response
 * head, fed in chunks whose sizes come from the input.
 *
 * Input: byte 0 chooses the role (bit 0) and the chunk size (1 + b >> 1);
 * the rest is the peer's bytes. Checks: no crash, no leak, the state and
 * return codes agree, a server that is done answered with an HTTP status,
 * and the head bound holds (a server never buffers past max_header).
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
            fprintf(stderr, "fuzz_ws_upgrade: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void on_msg(wb_ws_conn_t *c, void *u, int op, const uint8_t *d, size_t n)
{
    CHECK(op == WB_WS_TEXT || op == WB_WS_BINARY);
    CHECK(wb_ws_state(c) == WB_WS_OPEN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    wb_ws_role_t role = (data[0] & 1) ? WB_WS_CLIENT : WB_WS_SERVER;
    size_t chunk = 1 + (data[0] >> 1);
    data++;
    size--;
    wb_ws_opts_t o;
    wb_ws_opts_init(&o);
    o.max_header = 1024;
    o.max_message = 4096;
    wb_ws_cb_t cb = {NULL, on_msg, NULL};
    wb_ws_conn_t *c;
    CHECK(wb_ws_new(&c, role, &o, &cb, NULL) == 0);
    const uint8_t *p;
    wb_ws_output(c, &p);
    wb_ws_output_done(c);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        wb_ws_state_t before = wb_ws_state(c);
        int rc = wb_ws_feed(c, data + off, n);
        off += n;
        if (rc != 0)
            CHECK(wb_ws_state(c) == WB_WS_DONE);
        if (before == WB_WS_HANDSHAKE && wb_ws_state(c) == WB_WS_DONE && role == WB_WS_SERVER)
            CHECK(wb_ws_http_status(c) >= 101);
        if (wb_ws_state(c) == WB_WS_OPEN && role == WB_WS_SERVER)
            CHECK(wb_ws_http_status(c) == 101);
        if (wb_ws_state(c) == WB_WS_HANDSHAKE)
            CHECK(off <= o.max_header);
        wb_ws_output(c, &p);
        wb_ws_output_done(c);
    }
    if (wb_ws_state(c) == WB_WS_OPEN)
        CHECK(wb_ws_send(c, WB_WS_TEXT, (const uint8_t *)"x", 1) == 0 ||
              wb_ws_state(c) == WB_WS_DONE);
    wb_ws_timeout(c);
    wb_ws_free(c);
    return 0;
}
