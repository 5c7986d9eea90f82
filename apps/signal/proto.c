/*
 * proto.c - the signaling wire format (see proto.h).
 *
 * The decoder reads the 2-byte length first and judges it before taking a
 * byte of content: above max is WB_ETOOBIG, 0 and 2..15 can be neither a
 * keepalive nor a message, 17 would be a 1-byte topic; all WB_EPROTO. Only a
 * length that can be valid makes it wait for the content, so nothing is
 * allocated for a frame that is already known to be bad.
 *
 * A frame that lies whole inside the input is returned in place. One that
 * spans calls is assembled in d->buf, sized for that frame (at most max) when
 * its first content bytes arrive, and released at the start of the call after
 * the one that returned it: a connection that once sent a large frame does
 * not keep 64 KiB for the rest of its life.
 */
#include "apps/signal/proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

void wb_sig_decoder_init(wb_sig_decoder_t *d, uint32_t max)
{
    memset(d, 0, sizeof(*d));
    d->max = max == 0 || max > WB_SIG_MAX_CONTENT ? WB_SIG_MAX_CONTENT : max;
}

void wb_sig_decoder_fini(wb_sig_decoder_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->need = d->have = 0;
    d->lenb_have = 0;
}

const char *wb_sig_decoder_error(const wb_sig_decoder_t *d)
{
    return d->err != 0 ? d->errmsg : "";
}

static int fail(wb_sig_decoder_t *d, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(wb_sig_decoder_t *d, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->errmsg, sizeof(d->errmsg), fmt, ap);
    va_end(ap);
    d->err = err;
    free(d->buf);
    d->buf = NULL;
    return err;
}

/* The length's verdict before any content is read: 0 or a sticky error. */
static int judge_len(wb_sig_decoder_t *d, uint32_t n)
{
    if (n > d->max)
        return fail(d, WB_ETOOBIG, "frame of %u bytes exceeds %u", n, d->max);
    if (n == 0 || (n > 1 && n < WB_SIG_ID_LEN))
        return fail(d, WB_EPROTO, "frame of %u bytes: neither a keepalive nor a message", n);
    if (n == WB_SIG_ID_LEN + 1)
        return fail(d, WB_EPROTO, "frame of %u bytes: a topic of 1 byte", n);
    return 0;
}

/* Content c of n bytes (a length judge_len passed) into *out. */
static int parse(wb_sig_decoder_t *d, const uint8_t *c, uint32_t n, wb_sig_frame_t *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 1) {
        if (c[0] != WB_SIG_KEEPALIVE)
            return fail(d, WB_EPROTO, "frame of 1 byte (0x%02x): not a keepalive", c[0]);
        out->kind = WB_SIG_FRAME_KEEPALIVE;
        return 1;
    }
    out->kind = WB_SIG_FRAME_MESSAGE;
    memcpy(out->id, c, WB_SIG_ID_LEN);
    if (n >= WB_SIG_HEADER) {
        out->topic = (uint16_t)(c[16] | c[17] << 8);
        out->body = c + WB_SIG_HEADER;
        out->body_len = n - WB_SIG_HEADER;
    } else {
        out->body = c + n; /* 16 bytes: topic 0, empty body */
    }
    return 1;
}

int wb_sig_decode(wb_sig_decoder_t *d, const uint8_t *in, size_t len, size_t *used,
                  wb_sig_frame_t *out)
{
    size_t pos = 0;
    *used = 0;
    if (d->err != 0)
        return d->err;
    if (d->need == 0) {
        if (d->buf != NULL) { /* the frame the last call returned is done with */
            free(d->buf);
            d->buf = NULL;
        }
        while (d->lenb_have < WB_SIG_LEN_BYTES && pos < len)
            d->lenb[d->lenb_have++] = in[pos++];
        *used = pos;
        if (d->lenb_have < WB_SIG_LEN_BYTES)
            return 0;
        uint32_t n = (uint32_t)d->lenb[0] | (uint32_t)d->lenb[1] << 8;
        int rc = judge_len(d, n);
        if (rc != 0)
            return rc;
        d->need = n;
        d->have = 0;
    }
    size_t avail = len - pos;
    if (d->have == 0 && avail >= d->need) {
        const uint8_t *c = in + pos;
        uint32_t n = d->need;
        *used = pos + n;
        d->need = 0;
        d->lenb_have = 0;
        return parse(d, c, n, out);
    }
    if (avail == 0) {
        *used = pos;
        return 0;
    }
    if (d->buf == NULL) {
        d->buf = malloc(d->need);
        if (d->buf == NULL)
            return fail(d, WB_ENOMEM, "no memory for a frame of %u bytes", d->need);
    }
    size_t take = d->need - d->have;
    if (take > avail)
        take = avail;
    memcpy(d->buf + d->have, in + pos, take);
    d->have += (uint32_t)take;
    *used = pos + take;
    if (d->have < d->need)
        return 0;
    uint32_t n = d->need;
    d->need = d->have = 0;
    d->lenb_have = 0;
    return parse(d, d->buf, n, out); /* buf is freed by the next call */
}

size_t wb_sig_encode(uint8_t *out, const uint8_t id[WB_SIG_ID_LEN], uint16_t topic,
                     const void *body, size_t body_len)
{
    if (body_len > WB_SIG_MAX_BODY)
        return 0;
    size_t n = WB_SIG_HEADER + body_len;
    out[0] = (uint8_t)n;
    out[1] = (uint8_t)(n >> 8);
    memcpy(out + 2, id, WB_SIG_ID_LEN);
    out[18] = (uint8_t)topic;
    out[19] = (uint8_t)(topic >> 8);
    if (body_len > 0)
        memcpy(out + 20, body, body_len);
    return WB_SIG_LEN_BYTES + n;
}

void wb_sig_id_hex(const uint8_t id[WB_SIG_ID_LEN], char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < WB_SIG_ID_LEN; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[32] = 0;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int wb_sig_id_parse(const char *hex, uint8_t id[WB_SIG_ID_LEN])
{
    uint8_t tmp[WB_SIG_ID_LEN];
    if (hex == NULL)
        return WB_EINVAL;
    for (int i = 0; i < WB_SIG_ID_LEN; i++) {
        int hi = nibble(hex[2 * i]);
        if (hi < 0)
            return WB_EINVAL;
        int lo = nibble(hex[2 * i + 1]);
        if (lo < 0)
            return WB_EINVAL;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    if (hex[32] != 0)
        return WB_EINVAL;
    memcpy(id, tmp, WB_SIG_ID_LEN);
    return 0;
}
