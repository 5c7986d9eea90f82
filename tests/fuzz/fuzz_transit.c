/*
 * fuzz_transit.c - the wormhole transit decoders (apps/wormhole/
 * transit_proto.h) against bytes from a hostile peer.
 *
 * Input: byte 0 picks the decoder, byte 1 seeds the piece sizes, the rest
 * is the stream.
 *   0  records: the stream fed raw to an opener (length, bound, nonce and
 *      MAC checks; any error is fine, a crash or overread is not)
 *   1  records: the stream's bytes cut into plaintexts (sizes from the
 *      stream), sealed with the opener's key, one byte possibly flipped
 *      (byte 2), fed in pieces: unflipped, the plaintext comes out exactly;
 *      flipped, an error comes and what came before it is a prefix
 *   2  handshake, sender side; 3 receiver side; 4 and 5 the same through a
 *      relay: `used` never passes a piece; GO/PEER_OK only after the exact
 *      lines; BAD stays BAD
 *   6  a "transit" message: parsed (hints kept within their bounds), and
 *      our own message made from the result parses the same
 */
#include <jansson.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/wormhole/transit_proto.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_transit: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const uint8_t KEY[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

typedef struct {
    uint8_t *out;
    size_t len, cap;
    uint8_t *buf; /* the piece being fed */
    size_t end;
} sink_t;

static void sink(void *user, uint8_t *owned, size_t off, size_t len)
{
    sink_t *s = user;
    const uint8_t *p = owned != NULL ? owned + off : s->buf + off;
    if (owned == NULL) {
        CHECK(off == s->end); /* in-buffer pieces are packed from the front */
        s->end = off + len;
    }
    CHECK(s->len + len <= s->cap);
    memcpy(s->out + s->len, p, len);
    s->len += len;
    free(owned);
}

static size_t piece(uint32_t *seed, size_t left)
{
    *seed = *seed * 1103515245u + 12345u;
    size_t n = 1 + (*seed >> 8) % 700;
    return n < left ? n : left;
}

/* Feed data in pieces (copied, so the opener may write them); returns the
 * first error or 0. */
static int feed_all(wb_transit_opener_t *o, const uint8_t *data, size_t len, uint32_t seed,
                    sink_t *s)
{
    char err[200];
    size_t pos = 0;
    while (pos < len) {
        size_t n = piece(&seed, len - pos);
        uint8_t *copy = malloc(n);
        CHECK(copy != NULL);
        memcpy(copy, data + pos, n);
        s->end = 0;
        int rc;
        if (seed & 0x10000) { /* into a separate buffer; the input stays as it was */
            uint8_t *out = malloc(n);
            CHECK(out != NULL);
            s->buf = out;
            rc = wb_transit_open_feed_to(o, copy, n, out, sink, s, err, sizeof(err));
            CHECK(memcmp(copy, data + pos, n) == 0);
            free(out);
        } else {
            s->buf = copy;
            rc = wb_transit_open_feed(o, copy, n, sink, s, err, sizeof(err));
        }
        free(copy);
        if (rc != 0)
            return rc;
        pos += n;
    }
    return 0;
}

static void records_raw(const uint8_t *d, size_t n, uint32_t seed)
{
    wb_transit_opener_t o;
    wb_transit_opener_init(&o, KEY, 1u << 16);
    sink_t s = {malloc(n + 1), 0, n + 1, NULL, 0};
    feed_all(&o, d, n, seed, &s);
    wb_transit_opener_fini(&o);
    free(s.out);
}

static void records_sealed(const uint8_t *d, size_t n, uint32_t seed)
{
    if (n < 1)
        return;
    uint8_t flip = d[0];
    d++;
    n--;
    wb_transit_sealer_t se;
    wb_transit_sealer_init(&se, KEY);
    size_t cap = n + (n + 1) * WB_TRANSIT_RECORD_OVERHEAD + 64;
    uint8_t *wire = malloc(cap);
    size_t wl = 0, off = 0;
    uint32_t cut = seed;
    do { /* at least one record, possibly empty */
        cut = cut * 1103515245u + 12345u;
        size_t k = (cut >> 8) % 300;
        if (k > n - off)
            k = n - off;
        wl += wb_transit_seal(&se, d + off, k, wire + wl);
        off += k;
    } while (off < n);
    int flipped = flip != 0 && wl > 0;
    size_t where = flipped ? (size_t)(flip * 7919u) % wl : 0;
    if (flipped)
        wire[where] ^= (uint8_t)(1u << (flip % 8));
    wb_transit_opener_t o;
    wb_transit_opener_init(&o, KEY, 1u << 16);
    sink_t s = {malloc(n + 1), 0, n + 1, NULL, 0};
    int rc = feed_all(&o, wire, wl, seed, &s);
    if (!flipped) {
        CHECK(rc == 0);
        CHECK(s.len == n && memcmp(s.out, d, n) == 0);
        CHECK(!wb_transit_opener_partial(&o));
    } else {
        /* a flipped length can make the stream end inside a record: no
         * error, then, only a partial record or less output */
        CHECK(s.len <= n && memcmp(s.out, d, s.len) == 0);
        CHECK(rc != 0 || s.len < n || wb_transit_opener_partial(&o));
    }
    wb_transit_opener_fini(&o);
    free(s.out);
    free(wire);
}

static void handshake(const uint8_t *d, size_t n, uint32_t seed, int sender, int relay)
{
    wb_transit_keys_t k;
    wb_transit_keys_init(&k, KEY, sender, "0123456789abcdef");
    wb_transit_hs_t h;
    wb_transit_hs_init(&h, &k, relay);
    size_t pos = 0;
    int bad = 0, done = 0;
    char err[200];
    while (pos < n && !done) {
        size_t len = piece(&seed, n - pos), used;
        wb_transit_hs_result_t r = wb_transit_hs_feed(&h, d + pos, len, &used, err, sizeof(err));
        CHECK(used <= len);
        if (bad)
            CHECK(r == WB_TRANSIT_HS_BAD);
        switch (r) {
        case WB_TRANSIT_HS_NEED_MORE:
            CHECK(used == len);
            break;
        case WB_TRANSIT_HS_RELAY_OK:
            CHECK(relay && pos + used >= 3 && memcmp(d, "ok\n", 3) == 0);
            break;
        case WB_TRANSIT_HS_PEER_OK:
        case WB_TRANSIT_HS_GO: {
            CHECK((r == WB_TRANSIT_HS_PEER_OK) == sender);
            size_t skip = relay ? 3 : 0, pl = strlen(k.peer_line);
            CHECK(pos + used >= skip + pl && memcmp(d + skip, k.peer_line, pl) == 0);
            if (r == WB_TRANSIT_HS_GO)
                CHECK(pos + used == skip + pl + 3 && memcmp(d + skip + pl, "go\n", 3) == 0);
            done = 1;
            break;
        }
        case WB_TRANSIT_HS_BAD:
            bad = 1;
            break;
        }
        pos += used;
        if (r == WB_TRANSIT_HS_BAD)
            pos = n;
    }
    wb_transit_keys_wipe(&k);
}

static void hints(const uint8_t *d, size_t n)
{
    json_t *j = json_loadb((const char *)d, n, JSON_DECODE_ANY, NULL);
    wb_transit_hints_t *h = malloc(sizeof(*h)), *h2 = malloc(sizeof(*h2));
    char err[200];
    if (wb_transit_hints_parse(j, h, err, sizeof(err)) == 0) {
        CHECK(h->ndirect <= WB_TRANSIT_MAX_HINTS && h->nrelays <= WB_TRANSIT_MAX_HINTS);
        for (size_t i = 0; i < h->ndirect; i++)
            CHECK(h->direct[i].port > 0 && strlen(h->direct[i].host) > 0);
        for (size_t i = 0; i < h->nrelays; i++)
            CHECK(h->relays[i].nways > 0 && h->relays[i].nways <= WB_TRANSIT_RELAY_WAYS);
        json_t *back = wb_transit_hints_json(h);
        CHECK(back != NULL);
        CHECK(wb_transit_hints_parse(back, h2, err, sizeof(err)) == 0);
        CHECK(h2->ndirect == h->ndirect && h2->nrelays == h->nrelays);
        for (size_t i = 0; i < h->ndirect; i++)
            CHECK(strcmp(h2->direct[i].host, h->direct[i].host) == 0 &&
                  h2->direct[i].port == h->direct[i].port);
        json_decref(back);
    }
    free(h);
    free(h2);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    if (size < 2)
        return 0;
    uint32_t seed = data[1] | (data[0] & 0x80u) << 9; /* bit 16: open into another buffer */
    const uint8_t *d = data + 2;
    size_t n = size - 2;
    if (n > 1 << 16)
        return 0;
    switch (data[0] % 7) {
    case 0:
        records_raw(d, n, seed);
        break;
    case 1:
        records_sealed(d, n, seed);
        break;
    case 2:
    case 3:
    case 4:
    case 5:
        handshake(d, n, seed, data[0] % 7 == 2 || data[0] % 7 == 4, data[0] % 7 >= 4);
        break;
    default:
        hints(d, n);
        break;
    }
    return 0;
}
