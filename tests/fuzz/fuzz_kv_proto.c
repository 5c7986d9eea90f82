/*
 * fuzz_kv_proto.c - every kv body decoder on arbitrary bytes.
 *
 * Each decoder either refuses the bytes or returns fields that lie inside
 * them and respect the protocol's bounds; what decodes re-encodes to bytes
 * that decode to the same fields.
 */
#include <stdint.h>
#include <string.h>

#include "apps/kv/proto.h"
#include "runtime/assert.h"

static const uint8_t *lo, *hi;

static void inside(kv_bytes_t b)
{
    WB_ASSERT(b.n == 0 || (b.p >= lo && b.p + b.n <= hi));
}

static void entry_cb(const kv_entry_t *e, void *arg)
{
    (void)arg;
    inside(e->key);
    inside(e->value);
    WB_ASSERT(e->key.n >= 1 && e->key.n <= KV_MAX_KEY);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kv_bytes_t k, v, t;
    uint64_t rev;
    uint32_t limit;
    int has, code, more;
    kv_entry_t e;
    kv_buf_t b;
    lo = data;
    hi = data + size;
    kv_buf_init(&b);

    if (kv_dec_key_value(data, size, &k, &v) == 0) {
        inside(k);
        inside(v);
        WB_ASSERT(k.n >= 1 && k.n <= KV_MAX_KEY);
        WB_ASSERT(kv_enc_key_value(&b, k, v) == 0);
        kv_bytes_t k2, v2;
        WB_ASSERT(kv_dec_key_value(b.p, b.len, &k2, &v2) == 0);
        WB_ASSERT(k2.n == k.n && v2.n == v.n && memcmp(k2.p, k.p, k.n) == 0);
    }
    if (kv_dec_key(data, size, &k) == 0)
        inside(k);
    if (kv_dec_list(data, size, &k, &v, &has, &limit) == 0) {
        inside(k);
        if (has)
            inside(v);
        WB_ASSERT(limit >= 1 && limit <= KV_MAX_LIST);
    }
    if (kv_dec_watch(data, size, &k, &rev) == 0) {
        inside(k);
        WB_ASSERT(rev <= KV_FROM_NOW);
    }
    kv_dec_rev(data, size, &rev);
    if (kv_dec_value(data, size, &k, &v, &rev) == 0) {
        inside(k);
        inside(v);
    }
    if (kv_dec_event(data, size, &e) == 0) {
        inside(e.key);
        WB_ASSERT(e.op == KV_OP_PUT || e.op == KV_OP_DELETE);
        if (e.has_value)
            inside(e.value);
        kv_buf_reset(&b);
        WB_ASSERT(kv_enc_event(&b, &e) == 0);
        kv_entry_t e2;
        WB_ASSERT(kv_dec_event(b.p, b.len, &e2) == 0 && e2.rev == e.rev && e2.op == e.op);
    }
    if (kv_dec_err(data, size, &code, &t) == 0)
        inside(t);
    kv_dec_entries(data, size, entry_cb, NULL, &more);
    kv_dec_changes(data, size, entry_cb, NULL, &more);
    uint32_t max;
    if (kv_dec_next(data, size, &max, &rev) == 0)
        WB_ASSERT(max >= 1 && max <= KV_MAX_LIST && rev <= KV_FROM_NOW);

    uint8_t end[KV_MAX_KEY];
    if (size <= KV_MAX_KEY) {
        int n = kv_prefix_end((kv_bytes_t){data, size}, end);
        if (n > 0) {
            /* The end is above every key with the prefix. */
            WB_ASSERT((size_t)n <= size);
            WB_ASSERT(memcmp(end, data, (size_t)n - 1) == 0 && end[n - 1] > data[n - 1]);
        }
    }
    kv_buf_fini(&b);
    return 0;
}
