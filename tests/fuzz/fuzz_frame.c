/*
 * fuzz_frame.c - the length-prefix decoder fed arbitrary bytes in arbitrary
 * chunks, checked against a one-pass reference decoder.
 *
 * Input: byte 0 picks the maximum payload, bytes 1-2 seed the chunk sizes,
 * the rest is the stream. The stream is fed in chunks of 0..2*K bytes (K also
 * from byte 0), retrying every chunk from where the decoder stopped. Checked:
 * the frames equal the reference's, in order and content; an oversized prefix
 * fails with WB_ETOOBIG at the same frame with the same bad_len and the error
 * stays; the decoder never holds more than 4 + max bytes; when the stream
 * ends cleanly, partial() reports exactly the unfinished tail.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "sockets/frame.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_frame: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const uint32_t maxes[8] = {0, 1, 3, 16, 255, 1024, 65536, 1u << 20};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint32_t max = maxes[data[0] & 7];
    size_t k = (size_t)(data[0] >> 3) + 1; /* 1..32 */
    uint32_t rng = (uint32_t)data[1] << 8 | data[2];
    const uint8_t *s = data + 3;
    size_t n = size - 3;

    /* Reference: walk the whole stream at once. */
    size_t ref_off = 0, ref_frames = 0;
    int ref_err = 0;
    uint32_t ref_bad = 0;
    for (;;) {
        if (n - ref_off < WB_FRAME_HEADER)
            break;
        uint32_t len = be32(s + ref_off);
        if (len > max) {
            ref_err = WB_ETOOBIG;
            ref_bad = len;
            break;
        }
        if (n - ref_off - WB_FRAME_HEADER < len)
            break;
        ref_off += WB_FRAME_HEADER + len;
        ref_frames++;
    }

    wb_frame_decoder_t d;
    wb_frame_decoder_init(&d, max);
    size_t off = 0, frames = 0, ref_pos = 0;
    int err = 0;
    while (off < n && err == 0) {
        rng = rng * 1103515245u + 12345u;
        size_t chunk = (rng >> 16) % (2 * k + 1);
        if (chunk > n - off)
            chunk = n - off;
        const uint8_t *p = s + off;
        size_t left = chunk;
        do {
            wb_frame_t f;
            size_t used;
            int rc = wb_frame_decode(&d, p, left, &used, &f);
            CHECK(used <= left);
            CHECK(wb_frame_decoder_buffered(&d) <= WB_FRAME_HEADER + (size_t)max);
            p += used;
            left -= used;
            off += used;
            if (rc < 0) {
                CHECK(rc == WB_ETOOBIG);
                CHECK(d.bad_len > max);
                err = rc;
                /* Sticky, and takes nothing more. */
                CHECK(wb_frame_decode(&d, p, left, &used, &f) == rc && used == 0);
                break;
            }
            if (rc == 1) {
                CHECK(f.len <= max);
                CHECK(ref_pos + WB_FRAME_HEADER + f.len <= n);
                CHECK(be32(s + ref_pos) == f.len);
                CHECK(f.len == 0 || memcmp(f.data, s + ref_pos + WB_FRAME_HEADER, f.len) == 0);
                CHECK(f.owned == NULL || f.owned == f.data);
                ref_pos += WB_FRAME_HEADER + f.len;
                CHECK(off == ref_pos);
                free(f.owned);
                frames++;
            } else {
                CHECK(rc == 0 && left == 0);
            }
        } while (left > 0);
    }

    CHECK(frames == ref_frames);
    CHECK(err == ref_err);
    if (err != 0) {
        CHECK(d.bad_len == ref_bad);
        CHECK(off == ref_off + WB_FRAME_HEADER);
    } else {
        CHECK(off == n);
        uint32_t have, need;
        int mid = wb_frame_decoder_partial(&d, &have, &need);
        size_t tail = n - ref_off;
        CHECK(mid == (tail > 0));
        if (tail > 0 && tail < WB_FRAME_HEADER)
            CHECK(have == tail && need == WB_FRAME_HEADER);
        else if (tail > 0)
            CHECK(have == tail - WB_FRAME_HEADER && need == be32(s + ref_off));
    }
    wb_frame_decoder_fini(&d);
    return 0;
}
