/*
 * fuzz_tls.c - a TLS client (sockets/tls.h) in its handshake fed arbitrary
 * bytes as the server's: the record layer and the handshake parsers are
 * OpenSSL's; what this exercises is our glue around them (memory BIOs,
 * the error queue, the states, the reasons, output handling, freeing in
 * any state).
 *
 * Input: byte 0 is flags: bit 0 insecure (no verification), bit 1 pull
 * plaintext a byte at a time, bits 2-5 the chunk size fed at once (1 to 16
 * bytes, times 64 when bit 7 is set), bit 6 close at the end (else the
 * handshake timer fires); the rest is the server's bytes. Checks: no crash, no leak; the
 * state and return codes agree; a verifying client never reaches OPEN
 * (nobody can sign for "localhost" in the system store from random bytes);
 * an ended connection has a result and a reason beginning "tls: "; bytes
 * fed after the end are ignored; writing before OPEN is refused.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "sockets/tls.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_tls: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static wb_tls_cache_t *cache; /* the system store is loaded once */

static void drain(wb_tls_t *t)
{
    const uint8_t *p;
    size_t n = wb_tls_output(t, &p);
    CHECK(n == 0 || p != NULL);
    wb_tls_output_done(t);
    CHECK(wb_tls_output(t, &p) == 0);
}

static void check_done(wb_tls_t *t)
{
    const char *why;
    int rc = wb_tls_result(t, &why);
    CHECK(why != NULL);
    if (rc != 0) {
        CHECK(rc == WB_EPROTO || rc == WB_ENOMEM);
        CHECK(strncmp(why, "tls: ", 5) == 0);
    } else {
        CHECK(wb_tls_peer_closed(t));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (cache == NULL && wb_tls_cache_new(&cache) != 0)
        abort();
    int insecure = data[0] & 1;
    int bytewise = (data[0] >> 1) & 1;
    size_t chunk = (size_t)1 + ((data[0] >> 2) & 15);
    if (data[0] & 0x80)
        chunk *= 64;
    int close_at_end = (data[0] >> 6) & 1;
    data++;
    size--;
    wb_tls_opts_t o;
    wb_tls_opts_init(&o);
    o.server_name = "localhost";
    o.insecure = insecure;
    wb_tls_t *t;
    CHECK(wb_tls_new(&t, WB_TLS_CLIENT, &o, cache, NULL, 0) == 0);
    CHECK(wb_tls_state(t) == WB_TLS_HANDSHAKE);
    drain(t);
    CHECK(wb_tls_write(t, (const uint8_t *)"x", 1) == WB_EAGAIN);
    uint8_t buf[64];
    for (size_t off = 0; off < size;) {
        size_t n = size - off < chunk ? size - off : chunk;
        wb_tls_state_t before = wb_tls_state(t);
        int rc = wb_tls_feed(t, data + off, n);
        off += n;
        if (before == WB_TLS_DONE)
            CHECK(rc == 0 && wb_tls_state(t) == WB_TLS_DONE);
        if (rc != 0)
            CHECK(wb_tls_state(t) == WB_TLS_DONE);
        for (;;) {
            size_t got = 0;
            rc = wb_tls_read(t, buf, bytewise ? 1 : sizeof(buf), &got);
            if (rc != 0)
                CHECK(wb_tls_state(t) == WB_TLS_DONE && got == 0);
            if (got == 0)
                break;
            CHECK(wb_tls_state(t) == WB_TLS_OPEN);
        }
        drain(t);
        if (!insecure)
            CHECK(wb_tls_state(t) != WB_TLS_OPEN);
        if (wb_tls_state(t) == WB_TLS_DONE)
            check_done(t);
    }
    if (wb_tls_state(t) == WB_TLS_OPEN)
        CHECK(wb_tls_write(t, (const uint8_t *)"x", 1) == 0);
    if (close_at_end) {
        wb_tls_close(t);
        drain(t);
        CHECK(wb_tls_state(t) == WB_TLS_DONE);
    } else if (wb_tls_state(t) == WB_TLS_HANDSHAKE && wb_tls_timeout(t)) {
        const char *why;
        CHECK(wb_tls_result(t, &why) == WB_ETIMEDOUT);
    }
    wb_tls_free(t);
    return 0;
}
