/*
 * fuzz_signal.c - the signaling decoder (apps/signal/proto.h) fed arbitrary
 * bytes in arbitrary chunks, checked against a one-pass reference decoder;
 * every frame it yields re-encoded and decoded again.
 *
 * Input: byte 0 picks the maximum content and the chunk scale K, bytes 1-2
 * seed the chunk sizes, the rest is the stream, fed in chunks of 0..2*K
 * bytes, each retried from where the decoder stopped. Checked: the frames
 * equal the reference's in order, kind, id, topic and body; an error comes
 * at the same frame with the same code, after the same bytes, and stays
 * (taking nothing more); the decoder never holds a buffer when at a frame
 * boundary after the next call; encode(decode(x)) decodes to the same frame.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/signal/proto.h"
#include "runtime/error.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_signal: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const uint32_t maxes[8] = {0, 1, 16, 17, 18, 64, 1000, 65535};

typedef struct {
    size_t off;   /* of the content */
    uint32_t len; /* of the content */
} ref_t;

/* Whole stream at once: the frames' places, and the error (and the offset
 * just past the bytes the decoder takes before it) if any. */
static size_t reference(const uint8_t *s, size_t n, uint32_t max, ref_t *out, size_t cap, int *err,
                        size_t *err_off)
{
    size_t off = 0, k = 0;
    *err = 0;
    while (n - off >= 2) {
        uint32_t len = (uint32_t)s[off] | (uint32_t)s[off + 1] << 8;
        if (len > max) {
            *err = WB_ETOOBIG;
            *err_off = off + 2;
            break;
        }
        if (len == 0 || (len > 1 && len < 16) || len == 17) {
            *err = WB_EPROTO;
            *err_off = off + 2;
            break;
        }
        if (n - off - 2 < len)
            break;
        if (len == 1 && s[off + 2] != 'k') {
            *err = WB_EPROTO;
            *err_off = off + 3;
            break;
        }
        CHECK(k < cap);
        out[k].off = off + 2;
        out[k].len = len;
        k++;
        off += 2 + len;
    }
    return k;
}

static void check_frame(const wb_sig_frame_t *f, const uint8_t *c, uint32_t len)
{
    if (len == 1) {
        CHECK(f->kind == WB_SIG_FRAME_KEEPALIVE);
        return;
    }
    CHECK(f->kind == WB_SIG_FRAME_MESSAGE);
    CHECK(memcmp(f->id, c, 16) == 0);
    if (len == 16) {
        CHECK(f->topic == 0 && f->body_len == 0);
        return;
    }
    CHECK(f->topic == (uint16_t)(c[16] | c[17] << 8));
    CHECK(f->body_len == len - 18);
    CHECK(f->body_len == 0 || memcmp(f->body, c + 18, f->body_len) == 0);
}

static uint8_t enc[2 + WB_SIG_MAX_CONTENT];

static void roundtrip(const wb_sig_frame_t *f)
{
    if (f->kind != WB_SIG_FRAME_MESSAGE)
        return;
    size_t n = wb_sig_encode(enc, f->id, f->topic, f->body, f->body_len);
    CHECK(n == wb_sig_frame_size(f->body_len));
    wb_sig_decoder_t d;
    wb_sig_decoder_init(&d, 0);
    wb_sig_frame_t g;
    size_t used;
    CHECK(wb_sig_decode(&d, enc, n, &used, &g) == 1);
    CHECK(used == n);
    CHECK(g.kind == WB_SIG_FRAME_MESSAGE && memcmp(g.id, f->id, 16) == 0);
    CHECK(g.topic == f->topic && g.body_len == f->body_len);
    CHECK(g.body_len == 0 || memcmp(g.body, f->body, g.body_len) == 0);
    wb_sig_decoder_fini(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint32_t max = maxes[data[0] & 7];
    uint32_t eff = max == 0 ? WB_SIG_MAX_CONTENT : max;
    size_t k = (size_t)(data[0] >> 3) + 1; /* 1..32 */
    uint32_t rng = (uint32_t)data[1] << 8 | data[2];
    const uint8_t *s = data + 3;
    size_t n = size - 3;

    static ref_t ref[65536];
    int ref_err;
    size_t ref_err_off = 0;
    size_t nref = reference(s, n, eff, ref, sizeof(ref) / sizeof(ref[0]), &ref_err, &ref_err_off);

    wb_sig_decoder_t d;
    wb_sig_decoder_init(&d, max);
    CHECK(d.max == eff);
    size_t off = 0, frames = 0;
    int err = 0;
    while (off < n && err == 0) {
        rng = rng * 1103515245u + 12345u;
        size_t chunk = (rng >> 16) % (2 * k + 1);
        if (chunk > n - off)
            chunk = n - off;
        const uint8_t *p = s + off;
        size_t left = chunk;
        do {
            wb_sig_frame_t f;
            size_t used;
            int rc = wb_sig_decode(&d, p, left, &used, &f);
            CHECK(used <= left);
            p += used;
            left -= used;
            off += used;
            if (rc < 0) {
                CHECK(rc == WB_ETOOBIG || rc == WB_EPROTO);
                CHECK(wb_sig_decoder_error(&d)[0] != 0);
                CHECK(d.buf == NULL);
                err = rc;
                CHECK(wb_sig_decode(&d, p, left, &used, &f) == rc && used == 0);
                break;
            }
            if (rc == 1) {
                CHECK(frames < nref);
                CHECK(off == ref[frames].off + ref[frames].len);
                check_frame(&f, s + ref[frames].off, ref[frames].len);
                roundtrip(&f);
                frames++;
            } else {
                CHECK(rc == 0 && left == 0);
            }
        } while (left > 0);
    }
    CHECK(frames == nref);
    CHECK(err == ref_err);
    if (err != 0)
        CHECK(off == ref_err_off);
    else
        CHECK(off == n);
    wb_sig_decoder_fini(&d);
    return 0;
}
