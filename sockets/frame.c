/*
 * frame.c - the length-prefix decoder. The contract is in frame.h.
 */
#include "sockets/frame.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/assert.h"
#include "runtime/error.h"

void wb_frame_decoder_init(wb_frame_decoder_t *d, uint32_t max)
{
    memset(d, 0, sizeof(*d));
    d->max = max;
}

void wb_frame_decoder_fini(wb_frame_decoder_t *d)
{
    free(d->body);
    uint32_t max = d->max;
    memset(d, 0, sizeof(*d));
    d->max = max;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int wb_frame_decode(wb_frame_decoder_t *d, const uint8_t *in, size_t len, size_t *used,
                    wb_frame_t *out)
{
    size_t off = 0;
    *used = 0;
    if (d->err != 0)
        return d->err;
    WB_ASSERT(in != NULL || len == 0);

    if (d->body == NULL) {
        /* The prefix, possibly across chunks. */
        while (d->hdr_have < WB_FRAME_HEADER && off < len)
            d->hdr[d->hdr_have++] = in[off++];
        if (d->hdr_have < WB_FRAME_HEADER) {
            *used = off;
            return 0;
        }
        uint32_t need = be32(d->hdr);
        if (need > d->max) {
            d->err = WB_ETOOBIG;
            d->bad_len = need;
            *used = off;
            return d->err;
        }
        if ((size_t)need <= len - off) {
            /* Whole in this chunk: hand it out in place. */
            out->data = in + off;
            out->len = need;
            out->owned = NULL;
            d->hdr_have = 0;
            *used = off + need;
            return 1;
        }
        /* Spans chunks: the prefix has passed the max check, so this buffer
         * is at most max bytes. need > 0 here (need > len - off >= 0). */
        d->body = malloc(need);
        if (d->body == NULL) {
            d->err = WB_ENOMEM;
            *used = off;
            return d->err;
        }
        d->need = need;
        d->have = 0;
    }

    size_t take = d->need - d->have;
    if (take > len - off)
        take = len - off;
    memcpy(d->body + d->have, in + off, take);
    d->have += (uint32_t)take;
    off += take;
    *used = off;
    if (d->have < d->need)
        return 0;
    out->data = d->body;
    out->len = d->need;
    out->owned = d->body;
    d->body = NULL;
    d->need = d->have = 0;
    d->hdr_have = 0;
    return 1;
}

int wb_frame_decoder_partial(const wb_frame_decoder_t *d, uint32_t *have, uint32_t *need)
{
    if (d->body != NULL) {
        *have = d->have;
        *need = d->need;
        return 1;
    }
    *have = d->hdr_have;
    *need = WB_FRAME_HEADER;
    return d->hdr_have > 0;
}

size_t wb_frame_decoder_buffered(const wb_frame_decoder_t *d)
{
    return d->hdr_have + (d->body != NULL ? (size_t)d->need : 0);
}
