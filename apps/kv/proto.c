/*
 * proto.c - kv bodies: msgpack-c packer into a growable buffer; decoding with
 * msgpack-c's unpacker into a per-thread zone (no copies, no steady-state
 * allocation).
 */
#include "apps/kv/proto.h"
#include "dispatch/mpcheck.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

void kv_buf_init(kv_buf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void kv_buf_reset(kv_buf_t *b)
{
    b->len = 0;
    b->oom = 0;
}

void kv_buf_fini(kv_buf_t *b)
{
    free(b->p);
    kv_buf_init(b);
}

static int buf_write(void *data, const char *src, size_t n)
{
    kv_buf_t *b = data;
    if (n == 0)
        return 0;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

#define PACKER(b)                                                                                  \
    msgpack_packer pk;                                                                             \
    msgpack_packer_init(&pk, (b), buf_write)

static void pack_bytes(msgpack_packer *pk, kv_bytes_t v)
{
    msgpack_pack_bin(pk, v.n);
    msgpack_pack_bin_body(pk, v.p, v.n);
}

static int done(kv_buf_t *b)
{
    return b->oom ? WB_ENOMEM : 0;
}

int kv_enc_key_value(kv_buf_t *b, kv_bytes_t key, kv_bytes_t value)
{
    PACKER(b);
    msgpack_pack_array(&pk, 2);
    pack_bytes(&pk, key);
    pack_bytes(&pk, value);
    return done(b);
}

int kv_enc_key(kv_buf_t *b, kv_bytes_t key)
{
    PACKER(b);
    msgpack_pack_array(&pk, 1);
    pack_bytes(&pk, key);
    return done(b);
}

int kv_enc_list(kv_buf_t *b, kv_bytes_t prefix, const kv_bytes_t *after, uint32_t limit)
{
    PACKER(b);
    msgpack_pack_array(&pk, 3);
    pack_bytes(&pk, prefix);
    if (after != NULL)
        pack_bytes(&pk, *after);
    else
        msgpack_pack_nil(&pk);
    msgpack_pack_uint32(&pk, limit);
    return done(b);
}

int kv_enc_watch(kv_buf_t *b, kv_bytes_t prefix, uint64_t from_rev)
{
    PACKER(b);
    msgpack_pack_array(&pk, 2);
    pack_bytes(&pk, prefix);
    msgpack_pack_uint64(&pk, from_rev);
    return done(b);
}

int kv_enc_rev(kv_buf_t *b, uint64_t rev)
{
    PACKER(b);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_uint64(&pk, rev);
    return done(b);
}

int kv_enc_value(kv_buf_t *b, kv_bytes_t key, kv_bytes_t value, uint64_t rev)
{
    PACKER(b);
    msgpack_pack_array(&pk, 3);
    pack_bytes(&pk, key);
    pack_bytes(&pk, value);
    msgpack_pack_uint64(&pk, rev);
    return done(b);
}

int kv_enc_event(kv_buf_t *b, const kv_entry_t *e)
{
    PACKER(b);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, e->rev);
    msgpack_pack_int(&pk, e->op);
    pack_bytes(&pk, e->key);
    if (e->has_value)
        pack_bytes(&pk, e->value);
    else
        msgpack_pack_nil(&pk);
    return done(b);
}

int kv_enc_err(kv_buf_t *b, int code, const char *text)
{
    PACKER(b);
    size_t n = strlen(text);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, code);
    msgpack_pack_str(&pk, n);
    msgpack_pack_str_body(&pk, text, n);
    return done(b);
}

int kv_enc_entries_begin(kv_buf_t *b, uint32_t count)
{
    PACKER(b);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, count);
    return done(b);
}

int kv_enc_entry(kv_buf_t *b, kv_bytes_t key, kv_bytes_t value, uint64_t rev)
{
    PACKER(b);
    msgpack_pack_array(&pk, 3);
    pack_bytes(&pk, key);
    pack_bytes(&pk, value);
    msgpack_pack_uint64(&pk, rev);
    return done(b);
}

int kv_enc_entries_end(kv_buf_t *b, int more)
{
    PACKER(b);
    if (more)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    return done(b);
}

int kv_enc_next(kv_buf_t *b, uint32_t max, uint64_t ack)
{
    PACKER(b);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, max);
    msgpack_pack_uint64(&pk, ack);
    return done(b);
}

int kv_enc_changes(kv_buf_t *b, const kv_buf_t *items, uint32_t count, int more)
{
    PACKER(b);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, count);
    if (items->len > 0)
        buf_write(b, (const char *)items->p, items->len);
    if (more)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    return done(b) != 0 || items->oom ? WB_ENOMEM : 0;
}

/* ---- decoding ------------------------------------------------------------- */

static _Thread_local msgpack_zone zone;
static _Thread_local int zone_ready;
static pthread_key_t zone_key;
static pthread_once_t zone_once = PTHREAD_ONCE_INIT;

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

/* Parse body as exactly one msgpack array of n elements (n 0: any length). */
static const msgpack_object *parse(const uint8_t *body, size_t len, uint32_t n, uint32_t *got)
{
    static _Thread_local msgpack_object obj;
    size_t off = 0;
    if (!zone_ready) {
        if (!msgpack_zone_init(&zone, 4096))
            return NULL;
        zone_ready = 1;
        pthread_once(&zone_once, zone_key_init);
        pthread_setspecific(zone_key, &zone);
    }
    msgpack_zone_clear(&zone);
    if (body == NULL || len == 0 || wb_mpcheck(body, len) != 0)
        return NULL;
    if (msgpack_unpack((const char *)body, len, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
        off != len || obj.type != MSGPACK_OBJECT_ARRAY || (n != 0 && obj.via.array.size != n))
        return NULL;
    if (got != NULL)
        *got = obj.via.array.size;
    return obj.via.array.ptr;
}

static int get_bytes(const msgpack_object *o, kv_bytes_t *out)
{
    if (o->type == MSGPACK_OBJECT_BIN) {
        out->p = (const uint8_t *)o->via.bin.ptr;
        out->n = o->via.bin.size;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_STR) {
        out->p = (const uint8_t *)o->via.str.ptr;
        out->n = o->via.str.size;
        return 0;
    }
    return WB_EPROTO;
}

static int get_u64(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return WB_EPROTO;
    *out = o->via.u64;
    return 0;
}

static int get_key(const msgpack_object *o, kv_bytes_t *out)
{
    if (get_bytes(o, out) != 0 || out->n == 0 || out->n > KV_MAX_KEY)
        return WB_EPROTO;
    return 0;
}

int kv_dec_key_value(const uint8_t *body, size_t len, kv_bytes_t *key, kv_bytes_t *value)
{
    const msgpack_object *f = parse(body, len, 2, NULL);
    if (f == NULL || get_key(&f[0], key) != 0 || get_bytes(&f[1], value) != 0)
        return WB_EPROTO;
    return 0;
}

int kv_dec_key(const uint8_t *body, size_t len, kv_bytes_t *key)
{
    const msgpack_object *f = parse(body, len, 1, NULL);
    if (f == NULL || get_key(&f[0], key) != 0)
        return WB_EPROTO;
    return 0;
}

int kv_dec_list(const uint8_t *body, size_t len, kv_bytes_t *prefix, kv_bytes_t *after,
                int *has_after, uint32_t *limit)
{
    uint64_t lim;
    const msgpack_object *f = parse(body, len, 3, NULL);
    if (f == NULL || get_bytes(&f[0], prefix) != 0 || prefix->n > KV_MAX_KEY ||
        get_u64(&f[2], &lim) != 0)
        return WB_EPROTO;
    *has_after = f[1].type != MSGPACK_OBJECT_NIL;
    if (*has_after && get_key(&f[1], after) != 0)
        return WB_EPROTO;
    *limit = lim > KV_MAX_LIST ? KV_MAX_LIST : (lim == 0 ? KV_MAX_LIST : (uint32_t)lim);
    return 0;
}

int kv_dec_watch(const uint8_t *body, size_t len, kv_bytes_t *prefix, uint64_t *from_rev)
{
    const msgpack_object *f = parse(body, len, 2, NULL);
    if (f == NULL || get_bytes(&f[0], prefix) != 0 || prefix->n > KV_MAX_KEY ||
        get_u64(&f[1], from_rev) != 0 || *from_rev > INT64_MAX)
        return WB_EPROTO;
    return 0;
}

int kv_dec_rev(const uint8_t *body, size_t len, uint64_t *rev)
{
    const msgpack_object *f = parse(body, len, 1, NULL);
    if (f == NULL || get_u64(&f[0], rev) != 0)
        return WB_EPROTO;
    return 0;
}

int kv_dec_value(const uint8_t *body, size_t len, kv_bytes_t *key, kv_bytes_t *value, uint64_t *rev)
{
    const msgpack_object *f = parse(body, len, 3, NULL);
    if (f == NULL || get_key(&f[0], key) != 0 || get_bytes(&f[1], value) != 0 ||
        get_u64(&f[2], rev) != 0)
        return WB_EPROTO;
    return 0;
}

/* An event's four fields, from an already parsed array. */
static int event_fields(const msgpack_object *f, kv_entry_t *e)
{
    uint64_t op;
    if (get_u64(&f[0], &e->rev) != 0 || get_u64(&f[1], &op) != 0 ||
        (op != KV_OP_PUT && op != KV_OP_DELETE) || get_key(&f[2], &e->key) != 0)
        return WB_EPROTO;
    e->op = (int)op;
    e->has_value = f[3].type != MSGPACK_OBJECT_NIL;
    if (e->has_value && get_bytes(&f[3], &e->value) != 0)
        return WB_EPROTO;
    if (!e->has_value)
        e->value.p = NULL, e->value.n = 0;
    return 0;
}

int kv_dec_next(const uint8_t *body, size_t len, uint32_t *max, uint64_t *ack)
{
    uint64_t m;
    const msgpack_object *f = parse(body, len, 2, NULL);
    if (f == NULL || get_u64(&f[0], &m) != 0 || get_u64(&f[1], ack) != 0 || *ack > INT64_MAX)
        return WB_EPROTO;
    *max = m == 0 || m > KV_MAX_LIST ? KV_MAX_LIST : (uint32_t)m;
    return 0;
}

int kv_dec_changes(const uint8_t *body, size_t len, void (*cb)(const kv_entry_t *e, void *arg),
                   void *arg, int *more)
{
    const msgpack_object *f = parse(body, len, 2, NULL);
    if (f == NULL || f[0].type != MSGPACK_OBJECT_ARRAY || f[1].type != MSGPACK_OBJECT_BOOLEAN)
        return WB_EPROTO;
    const msgpack_object *arr = f[0].via.array.ptr;
    uint32_t n = f[0].via.array.size;
    kv_entry_t e;
    for (uint32_t i = 0; i < n; i++)
        if (arr[i].type != MSGPACK_OBJECT_ARRAY || arr[i].via.array.size != 4 ||
            event_fields(arr[i].via.array.ptr, &e) != 0)
            return WB_EPROTO;
    *more = f[1].via.boolean;
    for (uint32_t i = 0; i < n; i++) {
        event_fields(arr[i].via.array.ptr, &e);
        cb(&e, arg);
    }
    return 0;
}

int kv_dec_event(const uint8_t *body, size_t len, kv_entry_t *e)
{
    uint64_t op;
    const msgpack_object *f = parse(body, len, 4, NULL);
    if (f == NULL || get_u64(&f[0], &e->rev) != 0 || get_u64(&f[1], &op) != 0 ||
        (op != KV_OP_PUT && op != KV_OP_DELETE) || get_key(&f[2], &e->key) != 0)
        return WB_EPROTO;
    e->op = (int)op;
    e->has_value = f[3].type != MSGPACK_OBJECT_NIL;
    if (e->has_value && get_bytes(&f[3], &e->value) != 0)
        return WB_EPROTO;
    if (!e->has_value)
        e->value.p = NULL, e->value.n = 0;
    return 0;
}

int kv_dec_err(const uint8_t *body, size_t len, int *code, kv_bytes_t *text)
{
    const msgpack_object *f = parse(body, len, 2, NULL);
    if (f == NULL || get_bytes(&f[1], text) != 0)
        return WB_EPROTO;
    if (f[0].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && f[0].via.i64 >= -1000)
        *code = (int)f[0].via.i64;
    else if (f[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[0].via.u64 <= 1000)
        *code = (int)f[0].via.u64;
    else
        return WB_EPROTO;
    return 0;
}

int kv_dec_entries(const uint8_t *body, size_t len, void (*cb)(const kv_entry_t *e, void *arg),
                   void *arg, int *more)
{
    const msgpack_object *f = parse(body, len, 2, NULL);
    if (f == NULL || f[0].type != MSGPACK_OBJECT_ARRAY || f[1].type != MSGPACK_OBJECT_BOOLEAN)
        return WB_EPROTO;
    const msgpack_object *arr = f[0].via.array.ptr;
    uint32_t n = f[0].via.array.size;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *o = &arr[i];
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3)
            return WB_EPROTO;
        kv_entry_t e = {.op = KV_OP_PUT, .has_value = 1};
        if (get_key(&o->via.array.ptr[0], &e.key) != 0 ||
            get_bytes(&o->via.array.ptr[1], &e.value) != 0 ||
            get_u64(&o->via.array.ptr[2], &e.rev) != 0)
            return WB_EPROTO;
    }
    *more = f[1].via.boolean;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *o = arr[i].via.array.ptr;
        kv_entry_t e = {.op = KV_OP_PUT, .has_value = 1};
        get_key(&o[0], &e.key);
        get_bytes(&o[1], &e.value);
        get_u64(&o[2], &e.rev);
        cb(&e, arg);
    }
    return 0;
}

int kv_prefix_end(kv_bytes_t prefix, uint8_t *out)
{
    size_t n = prefix.n;
    if (n > 0)
        memcpy(out, prefix.p, n);
    while (n > 0 && out[n - 1] == 0xff)
        n--;
    if (n == 0)
        return -1;
    out[n - 1]++;
    return (int)n;
}
