/*
 * fuzz_secret.c - the secret connection (sockets/secret.h) against bytes
 * from a hostile peer.
 *
 * Input: byte 0 picks the mode, byte 1 seeds the piece sizes, the rest is
 * the stream.
 *   0  handshake: the stream fed in pieces as the peer's hello, auth frame
 *      and data to a session with a fixed identity: `used` never passes a
 *      piece, an auth frame comes out once, whole, and only once the hello
 *      is; errors stay; anything after an established handshake goes to
 *      wb_sc_open
 *   1  frames: after a real handshake, the stream fed raw as data frames
 *      (length, bound and tag checks; any error is fine, a frame is not)
 *   2  round trip: the stream cut into writes (sizes from byte 2), sealed
 *      with frames of at most frame_max (bytes 3-4) bytes, one byte possibly
 *      flipped (byte 5), opened in pieces by the peer: unflipped, exactly
 *      the stream comes out; flipped, an error comes and what came before
 *      it is a prefix
 */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "sockets/secret.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_secret: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint8_t id_a_sk[64], id_a_pk[32], id_b_sk[64], id_b_pk[32];
static const uint8_t EPH_A[32] = {0x40, 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                  16,   17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const uint8_t EPH_B[32] = {0x80, 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                  16,   17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static wb_sc_t est_a, est_b; /* an established pair, copied for each run */

static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    CHECK(sodium_init() >= 0);
    uint8_t seed[32];
    memset(seed, 1, sizeof(seed));
    crypto_sign_ed25519_seed_keypair(id_a_pk, id_a_sk, seed);
    memset(seed, 2, sizeof(seed));
    crypto_sign_ed25519_seed_keypair(id_b_pk, id_b_sk, seed);

    uint8_t ha[WB_SC_HELLO_LEN], hb[WB_SC_HELLO_LEN];
    uint8_t aa[WB_SC_AUTH_WIRE_LEN], ab[WB_SC_AUTH_WIRE_LEN];
    size_t used, la, lb;
    CHECK(wb_sc_init(&est_a, id_a_sk, id_b_pk, EPH_A, ha) == 0);
    CHECK(wb_sc_init(&est_b, id_b_sk, NULL, EPH_B, hb) == 0);
    CHECK(wb_sc_handshake(&est_a, hb, sizeof(hb), &used, aa, &la) == 0);
    CHECK(wb_sc_handshake(&est_b, ha, sizeof(ha), &used, ab, &lb) == 0);
    CHECK(wb_sc_handshake(&est_a, ab, lb, &used, aa, &la) == 1);
    CHECK(wb_sc_handshake(&est_b, aa, WB_SC_AUTH_WIRE_LEN, &used, ab, &lb) == 1);
    CHECK(est_a.buf == NULL && est_b.buf == NULL); /* so a struct copy is a fresh session */
}

static size_t piece(uint32_t *seed, size_t left)
{
    *seed = *seed * 1103515245u + 12345u;
    size_t n = 1 + (*seed >> 8) % ((*seed & 0x10000) ? 9 : 700);
    return n < left ? n : left;
}

/* Open what it can of data[0..len) in pieces (copied: the session may
 * write them); plaintext appended to out. Returns the first error or 0. */
static int open_all(wb_sc_t *sc, const uint8_t *data, size_t len, uint32_t seed, uint8_t *out,
                    size_t *out_len, size_t out_cap)
{
    size_t pos = 0;
    while (pos < len) {
        size_t n = piece(&seed, len - pos);
        uint8_t *copy = malloc(n);
        CHECK(copy != NULL);
        memcpy(copy, data + pos, n);
        size_t off = 0;
        while (off < n) {
            const uint8_t *plain;
            size_t used = 0, plen = 0;
            int rc = wb_sc_open(sc, copy + off, n - off, &used, &plain, &plen);
            CHECK(used <= n - off);
            off += used;
            if (rc < 0) {
                free(copy);
                uint8_t none[1];
                CHECK(sc->state == WB_SC_FAILED && wb_sc_error(sc)[0] != '\0');
                CHECK(wb_sc_open(sc, none, 0, &used, &plain, &plen) == rc && used == 0);
                return rc;
            }
            if (rc == 0) {
                CHECK(off == n);
                break;
            }
            CHECK(plen >= 1 && plen <= WB_SC_MAX_FRAME);
            CHECK(*out_len + plen <= out_cap);
            memcpy(out + *out_len, plain, plen);
            *out_len += plen;
        }
        free(copy);
        pos += n;
    }
    return 0;
}

static void fuzz_handshake(const uint8_t *d, size_t len, uint32_t seed)
{
    wb_sc_t sc;
    uint8_t hello[WB_SC_HELLO_LEN];
    CHECK(wb_sc_init(&sc, id_a_sk, (seed & 1) ? id_b_pk : NULL, EPH_A, hello) == 0);
    size_t pos = 0, auths = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        size_t n = piece(&seed, len - pos);
        uint8_t *copy = malloc(n);
        CHECK(copy != NULL);
        memcpy(copy, d + pos, n);
        uint8_t auth[WB_SC_AUTH_WIRE_LEN];
        size_t used = 99, alen = 99;
        rc = wb_sc_handshake(&sc, copy, n, &used, auth, &alen);
        free(copy);
        CHECK(used <= n);
        CHECK(alen == 0 || alen == WB_SC_AUTH_WIRE_LEN);
        if (alen > 0) {
            auths++;
            CHECK(pos + used >= WB_SC_HELLO_LEN);
        }
        if (rc == 0)
            CHECK(used == n);
        pos += used;
        if (rc < 0) {
            CHECK(sc.state == WB_SC_FAILED && wb_sc_error(&sc)[0] != '\0');
            CHECK(wb_sc_handshake(&sc, d, len, &used, auth, &alen) == rc && used == 0);
            CHECK(alen == 0);
        }
    }
    CHECK(auths <= 1);
    CHECK(auths == 0 || sc.hello_have == WB_SC_HELLO_LEN);
    if (sc.state == WB_SC_AUTH || sc.state == WB_SC_ESTABLISHED)
        CHECK(auths == 1);
    if (rc == 1) {
        /* Whatever follows is data. */
        CHECK(sc.state == WB_SC_ESTABLISHED);
        uint8_t *out = malloc(len + 1);
        size_t out_len = 0;
        open_all(&sc, d + pos, len - pos, seed, out, &out_len, len);
        free(out);
    }
    wb_sc_fini(&sc);
}

static void fuzz_frames(const uint8_t *d, size_t len, uint32_t seed)
{
    wb_sc_t sc = est_b;
    uint8_t *out = malloc(len + 1);
    size_t out_len = 0;
    int rc = open_all(&sc, d, len, seed, out, &out_len, len);
    CHECK(rc <= 0);
    free(out);
    wb_sc_fini(&sc);
}

static void fuzz_round_trip(const uint8_t *d, size_t len, uint32_t seed)
{
    if (len < 4)
        return;
    uint32_t wseed = d[0];
    size_t frame_max = 1 + (((size_t)d[1] << 8 | d[2]) * 7) % WB_SC_MAX_FRAME;
    uint8_t flip = d[3];
    d += 4;
    len -= 4;
    wb_sc_t a = est_a, b = est_b;
    size_t wire_len = 0, pos = 0, cap = 0, frames = 0;
    uint8_t *wire = NULL;
    while (pos < len) {
        size_t n = piece(&wseed, len - pos);
        size_t sz = wb_sc_sealed_size(n, frame_max);
        if (wire_len + sz > cap) {
            cap = (wire_len + sz) * 2;
            wire = realloc(wire, cap);
            CHECK(wire != NULL);
        }
        long w = wb_sc_seal(&a, d + pos, n, frame_max, wire + wire_len);
        CHECK(w == (long)sz);
        wire_len += sz;
        pos += n;
        frames += (n + frame_max - 1) / frame_max;
    }
    CHECK(a.send_ctr == est_a.send_ctr + frames);
    int flipped = 0;
    if (flip != 0 && wire_len > 0) {
        wire[(seed * 31u + flip) % wire_len] ^= flip;
        flipped = 1;
    }
    uint8_t *out = malloc(len + 1);
    size_t out_len = 0;
    int rc = open_all(&b, wire, wire_len, seed, out, &out_len, len);
    if (!flipped) {
        CHECK(rc == 0);
        CHECK(out_len == len);
        CHECK(len == 0 || memcmp(out, d, len) == 0);
        CHECK(b.recv_ctr == a.send_ctr && b.hdr_have == 0 && b.need == 0);
    } else {
        /* A flip that lengthens the last frame leaves it waiting: no error
         * yet, but no more data either. */
        CHECK(rc < 0 || b.need > 0 || b.hdr_have > 0);
        CHECK(out_len < len || len == 0);
        CHECK(out_len == 0 || memcmp(out, d, out_len) == 0);
    }
    free(out);
    free(wire);
    wb_sc_fini(&a);
    wb_sc_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 2)
        return 0;
    uint32_t seed = data[1];
    switch (data[0] % 3) {
    case 0:
        fuzz_handshake(data + 2, size - 2, seed);
        break;
    case 1:
        fuzz_frames(data + 2, size - 2, seed);
        break;
    default:
        fuzz_round_trip(data + 2, size - 2, seed);
        break;
    }
    return 0;
}
