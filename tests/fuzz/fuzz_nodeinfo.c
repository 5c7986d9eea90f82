/*
 * fuzz_nodeinfo.c - the NodeInfo hello (apps/peer/nodeinfo.h) and the chat
 * message header, fed arbitrary bytes: decoding never reads out of bounds
 * and a decoded NodeInfo always satisfies the documented bounds; what
 * decodes encodes again and decodes to the same value; the compatibility
 * check never fails on decoded values.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/peer/nodeinfo.h"
#include "runtime/error.h"
#include "sockets/peerconn.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_nodeinfo: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wb_nodeinfo_t a, b;
    char err[200];
    int rc = wb_nodeinfo_decode(data, size, &a, err, sizeof(err));
    if (rc != 0) {
        CHECK(rc == WB_EPROTO || rc == WB_ETOOBIG);
        CHECK(err[0] != 0);
        return 0;
    }
    CHECK(size <= WB_PEERCONN_MAX_HELLO);
    CHECK(a.nchannels <= WB_MCONN_MAX_CHANNELS);
    CHECK(strlen(a.network) <= WB_NODEINFO_TEXT_MAX && strlen(a.moniker) <= WB_NODEINFO_TEXT_MAX);
    for (size_t i = 0; i < a.nchannels; i++)
        for (size_t k = 0; k < i; k++)
            CHECK(a.channels[i] != a.channels[k]);
    static char buf[WB_PEERCONN_MAX_HELLO];
    long n = wb_nodeinfo_encode(&a, buf, sizeof(buf));
    if (n < 0) {
        /* Escaped text can grow past the hello's bound: then it is refused. */
        CHECK(n == WB_ETOOBIG);
        return 0;
    }
    CHECK(wb_nodeinfo_decode(buf, (size_t)n, &b, err, sizeof(err)) == 0);
    CHECK(memcmp(a.id, b.id, 32) == 0);
    CHECK(strcmp(a.network, b.network) == 0 && strcmp(a.version, b.version) == 0);
    CHECK(strcmp(a.listen, b.listen) == 0 && strcmp(a.moniker, b.moniker) == 0);
    CHECK(a.nchannels == b.nchannels && memcmp(a.channels, b.channels, a.nchannels) == 0);
    rc = wb_nodeinfo_compatible(&a, &b, err, sizeof(err));
    CHECK(rc == 0 || (rc == WB_EPROTO && a.nchannels == 0));
    return 0;
}
