/*
 * envelope_msgpack.c - the default codec: a five-element msgpack array.
 *
 * Decoding uses msgpack-c's unpacker with one zone per thread, cleared after
 * every message, so the steady state allocates nothing; the body is a
 * zero-copy reference into the input.
 */
#include <msgpack.h>
#include <pthread.h>
#include <string.h>

#include "dispatch/envelope.h"
#include "dispatch/mpcheck.h"
#include "runtime/error.h"

static _Thread_local msgpack_zone zone;
static _Thread_local int zone_ready;
static pthread_key_t zone_key;
static pthread_once_t zone_once = PTHREAD_ONCE_INIT;

/* msgpack-c keeps the zone's first chunk on clear: a thread pays for it once,
 * and gives it back when it exits. */
#define ZONE_CHUNK 2048

static void zone_release(void *arg)
{
    (void)arg;
    if (zone_ready) {
        msgpack_zone_destroy(&zone);
        zone_ready = 0;
    }
}

static void zone_key_init(void)
{
    pthread_key_create(&zone_key, zone_release);
}

void wb_codec_msgpack_thread_release(void)
{
    zone_release(NULL);
}

static int get_id(const msgpack_object *o, uint64_t *out, int nil_ok)
{
    if (o->type == MSGPACK_OBJECT_NIL && nil_ok) {
        *out = 0;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0)
        return WB_EPROTO;
    *out = o->via.u64;
    return 0;
}

static int mp_decode(const uint8_t *buf, size_t len, wb_envelope_t *out)
{
    msgpack_object obj;
    size_t off = 0;
    int rc = WB_EPROTO;

    if (buf == NULL || len == 0 || wb_mpcheck(buf, len) != 0)
        return WB_EPROTO;
    if (!zone_ready) {
        if (!msgpack_zone_init(&zone, ZONE_CHUNK))
            return WB_ENOMEM;
        zone_ready = 1;
        pthread_once(&zone_once, zone_key_init);
        pthread_setspecific(zone_key, &zone);
    }
    msgpack_unpack_return r = msgpack_unpack((const char *)buf, len, &off, &zone, &obj);
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        goto out;
    if (obj.type != MSGPACK_OBJECT_ARRAY || obj.via.array.size != 5)
        goto out;
    const msgpack_object *f = obj.via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[0].via.u64 > UINT32_MAX)
        goto out;
    out->type = (uint32_t)f[0].via.u64;
    if (get_id(&f[1], &out->id, 0) != 0 || get_id(&f[2], &out->reply_to, 1) != 0 ||
        get_id(&f[3], &out->regards, 1) != 0)
        goto out;
    if (f[4].type != MSGPACK_OBJECT_BIN)
        goto out;
    out->body = (const uint8_t *)f[4].via.bin.ptr;
    out->body_len = f[4].via.bin.size;
    rc = 0;
out:
    msgpack_zone_clear(&zone);
    return rc;
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
