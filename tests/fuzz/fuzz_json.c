/*
 * fuzz_json.c - the JSON message codec of dispatch/ (dispatch/json.h) on
 * arbitrary bytes.
 *
 * The bytes are used twice. First as text: whatever decodes is an object
 * whose type/has_type/id agree with its members; its encoding decodes again
 * to an equal value (json_equal, so reals come back exactly), and encoding
 * that gives the same bytes (the encoding is a fixed point). Whatever is
 * refused is refused with WB_EPROTO or WB_EINVAL, an error text, and nothing
 * held. Then as a recipe for a JSON value built with jansson's API (any
 * finite double, any 64-bit integer, strings of any code points but U+0000,
 * which the decoder refuses by design, nested arrays and objects): its
 * encoding must decode to an equal value. The second half is where the
 * fuzzer's coverage guidance helps: jansson itself is not instrumented.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/json.h"
#include "runtime/error.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_json: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_header(const wb_json_msg_t *m)
{
    CHECK(json_is_object(m->obj));
    json_t *t = json_object_get(m->obj, "type");
    CHECK(m->has_type == (t != NULL));
    CHECK(m->type == (json_is_string(t) ? json_string_value(t) : NULL));
    CHECK(m->id == json_object_get(m->obj, "id"));
}

/* Encode v, decode the text: an equal value, the same bytes again. */
static void round_trip(const json_t *v, wb_json_msg_t *m2)
{
    char err[160];
    size_t n, n2;
    char *s = wb_json_encode(v, &n);
    CHECK(s != NULL && s[n] == 0 && strlen(s) == n);
    int rc = wb_json_msg_decode(m2, s, n, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "fuzz_json: the encoding <%s> does not decode: %s\n", s, err);
    CHECK(rc == 0);
    check_header(m2);
    if (!json_equal((json_t *)v, m2->obj)) {
        char *t = wb_json_encode(m2->obj, &n2);
        fprintf(stderr, "fuzz_json: <%s> decodes to <%s>\n", s, t != NULL ? t : "?");
        free(t);
    }
    CHECK(json_equal((json_t *)v, m2->obj));
    char *s2 = wb_json_encode(m2->obj, &n2);
    CHECK(s2 != NULL && n2 == n && memcmp(s, s2, n) == 0);
    free(s);
    free(s2);
}

/* ---- building a value from bytes ---- */

typedef struct {
    const uint8_t *p, *end;
} src_t;

static uint8_t byte(src_t *in)
{
    return in->p < in->end ? *in->p++ : 0;
}

static uint64_t u64(src_t *in)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | byte(in);
    return x;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string of up to 31 characters: ASCII mostly, or any scalar value. */
static size_t make_string(src_t *in, char *buf)
{
    size_t n = byte(in) % 32, len = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = byte(in);
        uint32_t cp;
        if (b & 0x80) {
            cp = ((uint32_t)(b & 0x1f) << 16 | (uint32_t)byte(in) << 8 | byte(in)) % 0x110000;
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp -= 0x800; /* not a surrogate */
        } else {
            cp = b;
        }
        if (cp == 0)
            cp = 0x20;
        len += put_utf8(buf + len, cp);
    }
    buf[len] = 0;
    return len;
}

static json_t *make_value(src_t *in, int depth)
{
    char buf[32 * 4 + 1];
    uint8_t k = byte(in);
    switch (depth >= 8 ? k % 6 : k % 8) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(k & 8);
    case 2:
        return json_integer((json_int_t)u64(in));
    case 3: {
        uint64_t bits = u64(in);
        double d;
        memcpy(&d, &bits, sizeof(d));
        return json_real(isfinite(d) ? d : (double)(int64_t)bits);
    }
    case 4:
    case 5: {
        size_t n = make_string(in, buf);
        return json_stringn(buf, n);
    }
    case 6: {
        json_t *a = json_array();
        for (int i = byte(in) % 6; i > 0; i--)
            json_array_append_new(a, make_value(in, depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (int i = byte(in) % 6; i > 0; i--) {
            make_string(in, buf);
            json_object_set_new(o, buf, make_value(in, depth + 1));
        }
        return o;
    }
    }
}

static void built(const uint8_t *data, size_t size)
{
    src_t in = {data, data + size};
    json_t *root = json_object();
    CHECK(root != NULL);
    /* A message-like object: sometimes a type and an id, then members. */
    if (byte(&in) & 1)
        json_object_set_new(root, "type", make_value(&in, 1));
    if (byte(&in) & 1)
        json_object_set_new(root, "id", make_value(&in, 1));
    char key[32 * 4 + 1];
    while (in.p < in.end) {
        make_string(&in, key);
        json_t *v = make_value(&in, 1);
        CHECK(v != NULL);
        json_object_set_new(root, key, v);
    }
    wb_json_msg_t m;
    round_trip(root, &m);
    wb_json_msg_free(&m);
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    built(data, size);
    wb_json_msg_t m, m2;
    char err[160];
    memset(err, 'x', sizeof(err));
    int rc = wb_json_msg_decode(&m, data, size, err, sizeof(err));
    if (rc != 0) {
        CHECK(rc == WB_EPROTO || rc == WB_EINVAL);
        CHECK(m.obj == NULL && m.type == NULL && m.id == NULL && m.has_type == 0);
        CHECK(memchr(err, 0, sizeof(err)) != NULL && err[0] != 0);
        /* Non-objects are JSON: jansson agrees. */
        json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
        CHECK((rc == WB_EINVAL) == (v != NULL));
        CHECK(v == NULL || !json_is_object(v));
        json_decref(v);
        return 0;
    }
    check_header(&m);
    round_trip(m.obj, &m2);
    CHECK((m.type == NULL) == (m2.type == NULL));
    CHECK(m.type == NULL || strcmp(m.type, m2.type) == 0);
    CHECK(m.has_type == m2.has_type);
    CHECK((m.id == NULL) == (m2.id == NULL));
    CHECK(m.id == NULL || json_equal(m.id, m2.id));
    wb_json_msg_free(&m);
    wb_json_msg_free(&m2);
    CHECK(m.obj == NULL && m2.obj == NULL);
    return 0;
}
