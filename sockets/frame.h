/*
 * frame.h - length-prefixed framing: a 4-byte big-endian payload length, then
 * that many payload bytes. A pure sans-io decoder: no sockets, no threads, no
 * clock. Feed it bytes as they arrive, in chunks of any size; it hands back
 * each complete frame, or an error that stays.
 *
 * Bounds: the decoder holds at most one partial frame, so at most 4 + max
 * bytes. The length prefix is checked against max before anything is
 * allocated, so a hostile prefix (0xFFFFFFFF) costs nothing. Zero-length
 * frames are valid.
 *
 * Ownership: a frame that arrived whole inside one fed chunk is returned in
 * place (frame.data points into that chunk; frame.owned is NULL) and is valid
 * until the chunk is reused. A frame that spanned chunks was assembled in a
 * buffer malloc'd at its header; it is returned with frame.owned == frame.data
 * and the caller must free() it.
 *
 * Threads: a decoder belongs to one thread at a time; the functions keep no
 * global state.
 */
#ifndef WB_FRAME_H
#define WB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WB_FRAME_HEADER 4 /* bytes of length prefix */

typedef struct {
    uint32_t max;     /* largest payload accepted */
    uint32_t need;    /* payload length of the frame in progress */
    uint32_t have;    /* payload bytes of it held in body */
    uint8_t hdr[4];   /* length prefix bytes seen so far */
    uint8_t hdr_have; /* 0..4 */
    uint8_t *body;    /* the frame being assembled across chunks, or NULL */
    int err;          /* 0, or the error every later call returns */
    uint32_t bad_len; /* when err == WB_ETOOBIG: the length that was refused */
} wb_frame_decoder_t;

typedef struct {
    const uint8_t *data; /* payload; for len 0 not to be dereferenced */
    uint32_t len;
    uint8_t *owned; /* non-NULL: a malloc'd buffer (== data) that the caller frees */
} wb_frame_t;

void wb_frame_decoder_init(wb_frame_decoder_t *d, uint32_t max);

/* Release a partial frame, if any. The decoder may be initialised again. */
void wb_frame_decoder_fini(wb_frame_decoder_t *d);

/* Take bytes from in[0..len) until one frame is complete or the input runs
 * out. *used is set to the bytes taken. Returns:
 *   1  a frame is in *out; bytes after *used were not looked at: feed them
 *      again;
 *   0  every byte was taken, no frame is complete yet;
 *   WB_ETOOBIG  a length prefix exceeds max (d->bad_len says which); nothing
 *      was allocated for it;
 *   WB_ENOMEM   no memory for a frame that spans chunks.
 * After an error every call returns it again; only fini (and init) clear it. */
int wb_frame_decode(wb_frame_decoder_t *d, const uint8_t *in, size_t len, size_t *used,
                    wb_frame_t *out);

/* 1 when the decoder is inside a frame (a header byte or more seen, the
 * payload not complete); then *have and *need say how far: header bytes
 * (have < 4, need 4) until the prefix is whole, payload bytes after. */
int wb_frame_decoder_partial(const wb_frame_decoder_t *d, uint32_t *have, uint32_t *need);

/* Bytes the decoder holds in memory now (prefix bytes plus any frame buffer). */
size_t wb_frame_decoder_buffered(const wb_frame_decoder_t *d);

/* Write the length prefix of a len-byte payload into out[0..4). */
static inline void wb_frame_put_header(uint8_t out[WB_FRAME_HEADER], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

#endif
