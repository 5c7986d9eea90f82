/*
 * envelope_msgpack.c - the default codec: a five-element msgpack array.
 *
 * The header has one shape, so decoding is a fixed-shape reader rather than a
 * general unpacker: it walks the five fields once, checks every length
 * against the bytes that remain, allocates nothing and keeps no state. It
 * accepts exactly what msgpack-c's unpacker did (tests/unit/test_dispatch.c
 * and tests/fuzz/fuzz_envelope.c hold the two side by side): every encoding
 * msgpack-c reads as a non-negative integer (positive fixint, uint8..64 and
 * int8..64 holding a value >= 0), nil, and bin8/16/32 for the body. The body
 * is a zero-copy reference into the input.
 *
 * Encoding uses msgpack-c's packer, which writes the shortest forms.
 */
#include <msgpack.h>
#include <string.h>

#include "dispatch/envelope.h"
#include "runtime/error.h"

void wb_codec_msgpack_thread_release(void)
{
}

static inline uint64_t be16(const uint8_t *p)
{
    return (uint64_t)p[0] << 8 | p[1];
}

static inline uint64_t be32(const uint8_t *p)
{
    return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
}

static inline uint64_t be64(const uint8_t *p)
{
    return be32(p) << 32 | be32(p + 4);
}

enum { F_BAD, F_UINT, F_NIL };

/* One field that is nil or a non-negative integer, at *pp (before end).
 * F_UINT with *v, F_NIL, or F_BAD; *pp moves past the field unless F_BAD. */
static inline int read_uint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    size_t n;

    if (p == end)
        return F_BAD;
    uint8_t t = *p++;
    if (t <= 0x7f) { /* positive fixint */
        *v = t;
        *pp = p;
        return F_UINT;
    }
    if (t == 0xc0) {
        *pp = p;
        return F_NIL;
    }
    /* uint8..64 are 0xcc..0xcf, int8..64 0xd0..0xd3: 1, 2, 4 or 8 bytes. */
    if (t < 0xcc || t > 0xd3)
        return F_BAD;
    n = (size_t)1 << (t & 3);
    if ((size_t)(end - p) < n)
        return F_BAD;
    if (t >= 0xd0 && (p[0] & 0x80))
        return F_BAD; /* negative: msgpack-c makes it a NEGATIVE_INTEGER */
    switch (n) {
    case 1:
        *v = p[0];
        break;
    case 2:
        *v = be16(p);
        break;
    case 4:
        *v = be32(p);
        break;
    default:
        *v = be64(p);
        break;
    }
    *pp = p + n;
    return F_UINT;
}

static int mp_decode(const uint8_t *buf, size_t len, wb_envelope_t *out)
{
    if (buf == NULL || len == 0)
        return WB_EPROTO;
    const uint8_t *p = buf, *end = buf + len;
    uint64_t type, id, reply_to = 0, regards = 0;
    int f;

    /* fixarray 5, or array16 / array32 holding 5. */
    if (p[0] == 0x95) {
        p += 1;
    } else if (p[0] == 0xdc && len >= 3 && be16(p + 1) == 5) {
        p += 3;
    } else if (p[0] == 0xdd && len >= 5 && be32(p + 1) == 5) {
        p += 5;
    } else {
        return WB_EPROTO;
    }
    if (read_uint(&p, end, &type) != F_UINT || type > UINT32_MAX)
        return WB_EPROTO;
    if (read_uint(&p, end, &id) != F_UINT || id == 0)
        return WB_EPROTO;
    /* in_reply_to and in_regards_to: nil, or an id (never 0). */
    if ((f = read_uint(&p, end, &reply_to)) == F_BAD || (f == F_UINT && reply_to == 0))
        return WB_EPROTO;
    if ((f = read_uint(&p, end, &regards)) == F_BAD || (f == F_UINT && regards == 0))
        return WB_EPROTO;

    /* The body: bin8, bin16 or bin32, ending exactly at len. */
    size_t lb, rest = (size_t)(end - p);
    if (rest < 2)
        return WB_EPROTO;
    switch (p[0]) {
    case 0xc4:
        lb = 1;
        break;
    case 0xc5:
        lb = 2;
        break;
    case 0xc6:
        lb = 4;
        break;
    default:
        return WB_EPROTO;
    }
    if (rest < 1 + lb)
        return WB_EPROTO;
    uint64_t blen = lb == 1 ? p[1] : lb == 2 ? be16(p + 1) : be32(p + 1);
    p += 1 + lb;
    if (blen != (uint64_t)(end - p))
        return WB_EPROTO;

    out->type = (uint32_t)type;
    out->id = id;
    out->reply_to = reply_to;
    out->regards = regards;
    /* An empty body points at its own length field, as msgpack-c's did:
     * inside the buffer, so a careless body[0] reads only bytes given. */
    out->body = blen > 0 ? p : p - lb;
    out->body_len = (size_t)blen;
    return 0;
}

static size_t mp_encoded_max(const wb_envelope_t *env)
{
    /* fixarray + 4 x (0xcf + 8) + bin32 header (5) + body */
    return 1 + 4 * 9 + 5 + env->body_len;
}

typedef struct {
    uint8_t *p;
    size_t cap, len;
    int overflow;
} wbuf_t;

static int wbuf_write(void *data, const char *buf, size_t n)
{
    wbuf_t *w = data;
    if (n == 0)
        return 0;
    if (n > w->cap - w->len) {
        w->overflow = 1;
        return -1;
    }
    memcpy(w->p + w->len, buf, n);
    w->len += n;
    return 0;
}

static void pack_id(msgpack_packer *pk, uint64_t id)
{
    if (id == 0)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_uint64(pk, id);
}

static int mp_encode(const wb_envelope_t *env, uint8_t *buf, size_t cap, size_t *len)
{
    wbuf_t w = {buf, cap, 0, 0};
    msgpack_packer pk;

    if (env->id == 0 || (env->body_len > 0 && env->body == NULL) || env->body_len > UINT32_MAX)
        return WB_EINVAL;
    msgpack_packer_init(&pk, &w, wbuf_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint32(&pk, env->type);
    msgpack_pack_uint64(&pk, env->id);
    pack_id(&pk, env->reply_to);
    pack_id(&pk, env->regards);
    msgpack_pack_bin(&pk, env->body_len);
    msgpack_pack_bin_body(&pk, env->body, env->body_len);
    if (w.overflow)
        return WB_ETOOBIG;
    *len = w.len;
    return 0;
}

const wb_codec_t wb_codec_msgpack = {
    .name = "msgpack",
    .decode = mp_decode,
    .encoded_max = mp_encoded_max,
    .encode = mp_encode,
};
