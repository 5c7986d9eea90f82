/*
 * test_dispatch.c - every dispatch rule, with two dispatchers wired back to
 * back through an in-memory transport (no sockets, threads or clock); and the
 * header decoder side by side with msgpack-c's unpacker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>

#include "dispatch/dispatch.h"
#include "dispatch/envelope.h"
#include "dispatch/mpcheck.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/pool.h"

#define PEER_A 11 /* how B names A */
#define PEER_B 22 /* how A names B */
#define QMAX   4096

/* The wire: blobs in flight to each side. */
typedef struct {
    wb_event_t *q[QMAX];
    int head, tail;
    int refuse; /* transport refuses sends */
} wire_t;

static wire_t to_a, to_b;
static wb_dispatch_t *A, *B;

static int send_to(void *ctx, uint64_t peer, wb_event_t *blob)
{
    wire_t *w = ctx == (void *)1 ? &to_b : &to_a; /* ctx 1: A sending */
    (void)peer;
    if (w->refuse)
        return WB_ECLOSED;
    assert_true(w->tail < QMAX);
    w->q[w->tail++] = blob;
    return 0;
}

/* Deliver everything in flight, both ways, until quiet. */
static int pump(void)
{
    int n = 0;
    while (to_a.head < to_a.tail || to_b.head < to_b.tail) {
        if (to_b.head < to_b.tail) {
            wb_dispatch_input(B, PEER_A, to_b.q[to_b.head++], 0);
            n++;
        }
        if (to_a.head < to_a.tail) {
            wb_dispatch_input(A, PEER_B, to_a.q[to_a.head++], 0);
            n++;
        }
    }
    to_a.head = to_a.tail = to_b.head = to_b.tail = 0;
    return n;
}

static int setup(void **state)
{
    (void)state;
    memset(&to_a, 0, sizeof(to_a));
    memset(&to_b, 0, sizeof(to_b));
    wb_dispatch_config_t ca = {.send = send_to, .ctx = (void *)1};
    wb_dispatch_config_t cb = {.send = send_to, .ctx = (void *)2};
    assert_int_equal(wb_dispatch_new(&A, &ca), 0);
    assert_int_equal(wb_dispatch_new(&B, &cb), 0);
    assert_int_equal(wb_dispatch_peer_add(A, PEER_B, &wb_codec_msgpack, 1), 0);
    assert_int_equal(wb_dispatch_peer_add(B, PEER_A, &wb_codec_msgpack, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pump();
    wb_dispatch_free(A);
    wb_dispatch_free(B);
    wb_codec_msgpack_thread_release();
    assert_int_equal(wb_pool_trim(), 0);
    return 0;
}

/* ---- codec ------------------------------------------------------------------- */

static void test_codec_round_trip(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t len;
    const char body[] = "hello\0world";
    wb_envelope_t in = {7, 123456789012345ull, 5, 0, (const uint8_t *)body, sizeof(body)}, out;
    assert_int_equal(wb_codec_msgpack.encode(&in, buf, sizeof(buf), &len), 0);
    assert_true(len <= wb_codec_msgpack.encoded_max(&in));
    assert_int_equal(wb_codec_msgpack.decode(buf, len, &out), 0);
    assert_int_equal(out.type, 7);
    assert_int_equal(out.id, in.id);
    assert_int_equal(out.reply_to, 5);
    assert_int_equal(out.regards, 0);
    assert_int_equal(out.body_len, sizeof(body));
    assert_memory_equal(out.body, body, sizeof(body));
    assert_ptr_equal(out.body, buf + len - sizeof(body)); /* zero copy */
    /* Every truncation is refused. */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(wb_codec_msgpack.decode(buf, cut, &out), WB_EPROTO);
    /* Too small a buffer, id 0. */
    assert_int_equal(wb_codec_msgpack.encode(&in, buf, 10, &len), WB_ETOOBIG);
    in.id = 0;
    assert_int_equal(wb_codec_msgpack.encode(&in, buf, sizeof(buf), &len), WB_EINVAL);
    /* Known bad shapes. */
    const uint8_t four[] = {0x94, 1, 1, 0xc0, 0xc0};               /* 4 elements */
    const uint8_t strbody[] = {0x95, 1, 1, 0xc0, 0xc0, 0xa1, 'x'}; /* str, not bin */
    const uint8_t zeroid[] = {0x95, 1, 0, 0xc0, 0xc0, 0xc4, 0};    /* id 0 */
    const uint8_t negtype[] = {0x95, 0xff, 1, 0xc0, 0xc0, 0xc4, 0};
    const uint8_t trailing[] = {0x95, 1, 1, 0xc0, 0xc0, 0xc4, 0, 0};
    assert_int_equal(wb_codec_msgpack.decode(four, sizeof(four), &out), WB_EPROTO);
    assert_int_equal(wb_codec_msgpack.decode(strbody, sizeof(strbody), &out), WB_EPROTO);
    assert_int_equal(wb_codec_msgpack.decode(zeroid, sizeof(zeroid), &out), WB_EPROTO);
    assert_int_equal(wb_codec_msgpack.decode(negtype, sizeof(negtype), &out), WB_EPROTO);
    assert_int_equal(wb_codec_msgpack.decode(trailing, sizeof(trailing), &out), WB_EPROTO);
    const uint8_t ok[] = {0x95, 1, 1, 0xc0, 0xc0, 0xc4, 0};
    assert_int_equal(wb_codec_msgpack.decode(ok, sizeof(ok), &out), 0);
}

/* Counts that promise more elements than there are bytes are refused before
 * msgpack-c would allocate for them. */
static void test_mpcheck_bounds(void **state)
{
    (void)state;
    const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    const uint8_t huge_map[] = {0xdf, 0x7f, 0xff, 0xff, 0xff, 0x00};
    const uint8_t nested[] = {0x95, 0x01, 0x01, 0xc0, 0xc0, 0xdc, 0xff, 0xff};
    const uint8_t long_bin[] = {0xc6, 0x00, 0x10, 0x00, 0x00, 'x'};
    const uint8_t unused[] = {0xc1};
    const uint8_t ok[] = {0x93, 0xc4, 0x02, 'h', 'i', 0x82, 0x01, 0x02, 0x03, 0xc0,
                          0xcb, 0,    0,    0,   0,   0,    0,    0,    0};
    assert_int_equal(wb_mpcheck(huge_array, sizeof(huge_array)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(huge_map, sizeof(huge_map)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(nested, sizeof(nested)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(long_bin, sizeof(long_bin)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(unused, sizeof(unused)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(ok, sizeof(ok)), 0);
    assert_int_equal(wb_mpcheck(ok, sizeof(ok) - 1), WB_EPROTO); /* truncated */
    wb_envelope_t env;
    assert_int_equal(wb_codec_msgpack.decode(huge_array, sizeof(huge_array), &env), WB_EPROTO);
    /* An empty body encodes (no NULL memcpy) and decodes. */
    uint8_t buf[64];
    size_t len;
    wb_envelope_t e = {3, 1, 0, 0, NULL, 0};
    assert_int_equal(wb_codec_msgpack.encode(&e, buf, sizeof(buf), &len), 0);
    assert_int_equal(wb_codec_msgpack.decode(buf, len, &env), 0);
    assert_int_equal(env.body_len, 0);
}

/* ---- the decoder against msgpack-c ------------------------------------------------ */

/* The header decoder as it was before the fixed-shape reader: a bound check,
 * then msgpack-c's unpacker on a zone. The reader must accept exactly what
 * this accepts and yield the same fields. */
static int ref_decode(const uint8_t *buf, size_t len, wb_envelope_t *out)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    int rc = WB_EPROTO;

    if (buf == NULL || len == 0 || wb_mpcheck(buf, len) != 0)
        return WB_EPROTO;
    if (!msgpack_zone_init(&zone, 2048))
        return WB_ENOMEM;
    msgpack_unpack_return r = msgpack_unpack((const char *)buf, len, &off, &zone, &obj);
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        goto out;
    if (obj.type != MSGPACK_OBJECT_ARRAY || obj.via.array.size != 5)
        goto out;
    const msgpack_object *f = obj.via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[0].via.u64 > UINT32_MAX)
        goto out;
    out->type = (uint32_t)f[0].via.u64;
    uint64_t *ids[3] = {&out->id, &out->reply_to, &out->regards};
    for (int i = 0; i < 3; i++) {
        if (f[1 + i].type == MSGPACK_OBJECT_NIL && i > 0)
            *ids[i] = 0;
        else if (f[1 + i].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[1 + i].via.u64 != 0)
            *ids[i] = f[1 + i].via.u64;
        else
            goto out;
    }
    if (f[4].type != MSGPACK_OBJECT_BIN)
        goto out;
    out->body = (const uint8_t *)f[4].via.bin.ptr;
    out->body_len = f[4].via.bin.size;
    rc = 0;
out:
    msgpack_zone_destroy(&zone);
    return rc;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Append one msgpack object that is often an integer or nil, in any of the
 * encodings msgpack allows, and sometimes something else. */
static size_t gen_field(uint8_t *p)
{
    static const uint64_t edges[] = {0,          1,           0x7f,       0x80,
                                     0xff,       0x100,       0x7fff,     0x8000,
                                     0xffff,     0x10000,     0x7fffffff, 0x80000000u,
                                     0xffffffff, 0x100000000, INT64_MAX,  (uint64_t)INT64_MAX + 1,
                                     UINT64_MAX};
    uint64_t v =
        rnd() % 3 ? edges[rnd() % (sizeof(edges) / sizeof(edges[0]))] : rnd() >> (rnd() % 64);
    switch (rnd() % 14) {
    case 0:
        p[0] = 0xc0; /* nil */
        return 1;
    case 1:
        p[0] = (uint8_t)(v & 0x7f); /* positive fixint */
        return 1;
    case 2:
    case 3:
    case 4:
    case 5: { /* uint8..64: 0xcc..0xcf */
        int k = (int)(rnd() % 4);
        p[0] = (uint8_t)(0xcc + k);
        put_be(p + 1, v, 1 << k);
        return 1 + (1u << k);
    }
    case 6:
    case 7:
    case 8: { /* int8..64 (0xd0..0xd3), either sign */
        int k = (int)(rnd() % 4);
        p[0] = (uint8_t)(0xd0 + k);
        put_be(p + 1, rnd() % 2 ? v : 0 - v, 1 << k);
        return 1 + (1u << k);
    }
    case 9:
        p[0] = (uint8_t)(0xe0 | (rnd() & 0x1f)); /* negative fixint */
        return 1;
    case 10:
        p[0] = rnd() % 2 ? 0xc2 : 0xc3; /* bool */
        return 1;
    case 11:
        p[0] = rnd() % 2 ? 0xca : 0xcb; /* float */
        put_be(p + 1, v, 8);
        return p[0] == 0xca ? 5 : 9;
    case 12:
        p[0] = 0xa1; /* str */
        p[1] = 'x';
        return 2;
    default:
        p[0] = 0xc4; /* bin */
        p[1] = 1;
        p[2] = 'y';
        return 3;
    }
}

/* Append a body: usually bin8/16/32 whose length matches what follows. */
static size_t gen_body(uint8_t *p, size_t room)
{
    size_t n = rnd() % 4 == 0 ? rnd() % 300 : rnd() % 8;
    size_t h;
    if (n + 5 > room)
        n = room - 5;
    switch (rnd() % 8) {
    case 0:
    case 1:
        p[0] = 0xc5;
        put_be(p + 1, n, 2);
        h = 3;
        break;
    case 2:
    case 3:
        p[0] = 0xc6;
        put_be(p + 1, n, 4);
        h = 5;
        break;
    case 4:
        n &= 0x1f;
        p[0] = (uint8_t)(0xa0 | n); /* str, not bin */
        h = 1;
        break;
    case 5:
        p[0] = 0xc7; /* ext8 */
        p[1] = (uint8_t)n;
        p[2] = 1;
        h = 3;
        break;
    default:
        if (n > 255)
            n = 255;
        p[0] = 0xc4;
        p[1] = (uint8_t)n;
        h = 2;
        break;
    }
    for (size_t i = 0; i < n; i++)
        p[h + i] = (uint8_t)rnd();
    return h + n;
}

/* A header of roughly the right shape, in one of its many encodings. */
static size_t gen_envelope(uint8_t *buf, size_t cap)
{
    size_t off = 0;
    unsigned count = rnd() % 8 ? 5 : (unsigned)(rnd() % 8);
    switch (rnd() % 6) {
    case 0:
        buf[off++] = 0xdc;
        put_be(buf + off, count, 2);
        off += 2;
        break;
    case 1:
        buf[off++] = 0xdd;
        put_be(buf + off, count, 4);
        off += 4;
        break;
    case 2:
        buf[off++] = (uint8_t)(0x80 | (count & 0x0f)); /* a map */
        break;
    default:
        buf[off++] = (uint8_t)(0x90 | (count & 0x0f));
        break;
    }
    for (int i = 0; i < 4; i++)
        off += gen_field(buf + off);
    off += gen_body(buf + off, cap - off - 16);
    if (rnd() % 16 == 0)
        off += gen_field(buf + off); /* a sixth element, or trailing bytes */
    return off;
}

/* Flip, cut, insert or overwrite a few bytes. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    int k = 1 + (int)(rnd() % 3);
    for (int i = 0; i < k; i++) {
        size_t at = len ? rnd() % len : 0;
        switch (rnd() % 5) {
        case 0:
            if (len)
                buf[at] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 1:
            if (len)
                buf[at] = (uint8_t)rnd();
            break;
        case 2:
            len = at;
            break;
        case 3:
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t)rnd();
                len++;
            }
            break;
        default:
            if (len < cap)
                buf[len++] = (uint8_t)rnd();
            break;
        }
    }
    return len;
}

static void check_same(const uint8_t *buf, size_t len, int *accepted)
{
    wb_envelope_t a, b;
    memset(&a, 0xa5, sizeof(a));
    memset(&b, 0x5a, sizeof(b));
    int ra = wb_codec_msgpack.decode(buf, len, &a);
    int rb = ref_decode(buf, len, &b);
    if (ra != rb) {
        fprintf(stderr, "decoders disagree (%d vs msgpack-c %d) on %zu bytes:", ra, rb, len);
        for (size_t i = 0; i < len && i < 64; i++)
            fprintf(stderr, " %02x", buf[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(ra, rb);
    if (ra != 0)
        return;
    (*accepted)++;
    assert_int_equal(a.type, b.type);
    assert_int_equal(a.id, b.id);
    assert_int_equal(a.reply_to, b.reply_to);
    assert_int_equal(a.regards, b.regards);
    assert_int_equal(a.body_len, b.body_len);
    assert_ptr_equal(a.body, b.body);
}

/* The fixed-shape reader and msgpack-c agree on random and mutated headers:
 * on accepting or refusing, and on every field. */
static void test_decode_differential(void **state)
{
    (void)state;
    uint8_t buf[1024];
    int accepted = 0, total = 0;
    rng_state = 0x9E3779B97F4A7C15ull;
    memset(buf, 0x42, sizeof(buf));
    for (int i = 0; i < 200000; i++) {
        size_t len;
        switch (i % 4) {
        case 0: { /* what our encoder writes, then mutated */
            wb_envelope_t e = {(uint32_t)(rnd() >> (rnd() % 64)),
                               rnd() >> (rnd() % 64) | 1,
                               rnd() % 2 ? rnd() >> (rnd() % 64) : 0,
                               rnd() % 2 ? rnd() >> (rnd() % 64) : 0,
                               buf + 512,
                               rnd() % 200};
            assert_int_equal(wb_codec_msgpack.encode(&e, buf, 512, &len), 0);
            check_same(buf, len, &accepted);
            len = mutate(buf, len, 512);
            break;
        }
        case 1:
            len = gen_envelope(buf, sizeof(buf));
            break;
        case 2:
            len = mutate(buf, gen_envelope(buf, sizeof(buf)), sizeof(buf));
            break;
        default:
            len = rnd() % 24;
            for (size_t j = 0; j < len; j++)
                buf[j] = (uint8_t)rnd();
            break;
        }
        check_same(buf, len, &accepted);
        total++;
    }
    /* Both outcomes were exercised a good deal. */
    assert_true(accepted > total / 8);
    assert_true(accepted < total - total / 8);
}

/* The encodings msgpack allows beyond the ones our encoder writes. */
static void test_decode_encodings(void **state)
{
    (void)state;
    wb_envelope_t e;
    static const struct {
        uint8_t b[40];
        size_t n;
        int ok;
    } v[] = {
        /* array16 and array32 holding 5 */
        {{0xdc, 0, 5, 1, 1, 0xc0, 0xc0, 0xc4, 0}, 9, 1},
        {{0xdd, 0, 0, 0, 5, 1, 1, 0xc0, 0xc0, 0xc4, 0}, 11, 1},
        {{0xdc, 0, 6, 1, 1, 0xc0, 0xc0, 0xc4, 0, 0xc0}, 10, 0},
        /* non-negative int8..int64 are integers like uint; negative ones are not */
        {{0x95, 0xd0, 7, 0xd1, 0, 9, 0xd2, 0, 0, 0, 3, 0xd3, 0, 0, 0, 0, 0, 0, 0, 4, 0xc4, 0},
         22,
         1},
        {{0x95, 1, 0xd0, 0xff, 0xc0, 0xc0, 0xc4, 0}, 8, 0},
        {{0x95, 1, 0xff, 0xc0, 0xc0, 0xc4, 0}, 7, 0},
        /* type: uint64 holding UINT32_MAX is fine, one more is not */
        {{0x95, 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0xc0, 0xc0, 0xc4, 0}, 15, 1},
        {{0x95, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0xc0, 0xc0, 0xc4, 0}, 15, 0},
        /* 0 is "not set" only as nil: an explicit 0 id is refused */
        {{0x95, 1, 1, 0, 0xc0, 0xc4, 0}, 7, 0},
        {{0x95, 1, 1, 0xc0, 0xcc, 0, 0xc4, 0}, 8, 0},
        {{0x95, 1, 0xc0, 0xc0, 0xc0, 0xc4, 0}, 7, 0},
        /* bodies: bin16, bin32, and a length that overruns */
        {{0x95, 1, 1, 0xc0, 0xc0, 0xc5, 0, 2, 'h', 'i'}, 10, 1},
        {{0x95, 1, 1, 0xc0, 0xc0, 0xc6, 0, 0, 0, 2, 'h', 'i'}, 12, 1},
        {{0x95, 1, 1, 0xc0, 0xc0, 0xc6, 0xff, 0xff, 0xff, 0xff, 'h', 'i'}, 12, 0},
        {{0x95, 1, 1, 0xc0, 0xc0, 0xc7, 1, 1, 'x'}, 9, 0}, /* ext */
        {{0x95, 1, 1, 0xc0, 0xc0, 0xc2}, 6, 0},            /* bool */
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int accepted = 0;
        check_same(v[i].b, v[i].n, &accepted);
        assert_int_equal(accepted, v[i].ok);
    }
    assert_int_equal(wb_codec_msgpack.decode(v[3].b, v[3].n, &e), 0);
    assert_int_equal(e.type, 7);
    assert_int_equal(e.id, 9);
    assert_int_equal(e.reply_to, 3);
    assert_int_equal(e.regards, 4);
    assert_int_equal(wb_codec_msgpack.decode(NULL, 0, &e), WB_EPROTO);
}

/* ---- rule 1 and 2: request/reply ------------------------------------------------ */

typedef struct {
    int calls, status;
    uint64_t reply_to, regards, id;
    char body[64];
    wb_conv_t *conv;
} seen_t;

static void note(seen_t *s, const wb_msg_t *m, int status)
{
    s->calls++;
    s->status = status;
    if (m != NULL) {
        s->reply_to = m->env.reply_to;
        s->regards = m->env.regards;
        s->id = m->env.id;
        s->conv = m->conv;
        size_t n = m->env.body_len < 63 ? m->env.body_len : 63;
        memcpy(s->body, m->env.body, n);
        s->body[n] = 0;
    }
}

static void echo_upper(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    note(arg, m, 0);
    char b[64];
    size_t n = m->env.body_len < 64 ? m->env.body_len : 64;
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(m->env.body[i] >= 'a' && m->env.body[i] <= 'z' ? m->env.body[i] - 32
                                                                     : m->env.body[i]);
    assert_int_equal(wb_dispatch_reply(d, m, 2, b, n), 0);
}

static void on_reply(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg)
{
    (void)d;
    note(arg, m, status);
}

static void test_request_reply(void **state)
{
    (void)state;
    seen_t server = {0}, client = {0};
    uint64_t id;
    assert_int_equal(wb_dispatch_on_type(B, 1, echo_upper, &server), 0);
    assert_int_equal(
        wb_dispatch_request(A, PEER_B, 1, 0, "ping", 4, 0, 1000, on_reply, &client, &id), 0);
    assert_int_equal(id % 2, 1); /* the dialer's ids are odd */
    pump();
    assert_int_equal(server.calls, 1);
    assert_string_equal(server.body, "ping");
    assert_int_equal(client.calls, 1);
    assert_int_equal(client.status, 0);
    assert_int_equal(client.reply_to, id);
    assert_int_equal(client.id % 2, 0); /* the acceptor's ids are even */
    assert_string_equal(client.body, "PING");
    /* One-shot: a second reply to the same id finds nobody. */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 2, id, 0, "again", 5, NULL), 0);
    pump();
    assert_int_equal(client.calls, 1);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(A, &st);
    assert_int_equal(st.by_reply, 1);
    assert_int_equal(st.dropped_unknown, 1);
    /* Nothing pending: no deadline. */
    assert_int_equal(wb_dispatch_tick(A, 5000), UINT64_MAX);
}

static void test_reply_timeout(void **state)
{
    (void)state;
    seen_t client = {0};
    uint64_t id;
    /* Nobody on B handles type 9: no reply will come. */
    assert_int_equal(wb_dispatch_request(A, PEER_B, 9, 0, "x", 1, 100, 50, on_reply, &client, &id),
                     0);
    pump();
    assert_int_equal(wb_dispatch_tick(A, 149), 150);
    assert_int_equal(client.calls, 0);
    assert_int_equal(wb_dispatch_tick(A, 150), UINT64_MAX);
    assert_int_equal(client.calls, 1);
    assert_int_equal(client.status, WB_ETIMEDOUT);
    /* The late reply is dropped, not delivered twice. */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 2, id, 0, "late", 4, NULL), 0);
    pump();
    assert_int_equal(client.calls, 1);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(B, &st);
    assert_int_equal(st.dropped_unknown, 1); /* type 9 had no handler (rule 4) */
}

static void test_unknown_and_malformed(void **state)
{
    (void)state;
    /* Garbage bytes, a wrong-parity id, and a message regarding nothing. */
    wb_event_t *ev = wb_event_new_copy(0, "\xff\x00garbage", 9);
    assert_int_equal(wb_dispatch_input(B, PEER_A, ev, 0), WB_EPROTO);
    uint8_t buf[64];
    size_t len;
    wb_envelope_t env = {1, 2 /* even: B's own parity */, 0, 0, NULL, 0};
    assert_int_equal(wb_codec_msgpack.encode(&env, buf, sizeof(buf), &len), 0);
    assert_int_equal(wb_dispatch_input(B, PEER_A, wb_event_new_copy(0, buf, len), 0), WB_EPROTO);
    assert_int_equal(wb_dispatch_send(A, PEER_B, 1, 0, 999, "?", 1, NULL), 0);
    assert_int_equal(pump(), 1);
    /* A blob from a peer nobody added. */
    assert_int_equal(wb_dispatch_input(B, 777, wb_event_new_copy(0, buf, len), 0), WB_ENOENT);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(B, &st);
    assert_int_equal(st.dropped_malformed, 2);
    assert_int_equal(st.dropped_unknown, 2);
    assert_int_equal(st.received, 4);
}

/* ---- rule 3: conversations ---------------------------------------------------- */

typedef struct {
    int msgs, ended, end_status, credits;
    uint64_t bytes;
    int auto_consume;
    char last[64];
    wb_conv_t *c;
} conv_state_t;

static void cv_msg(wb_conv_t *c, const wb_msg_t *m)
{
    conv_state_t *s = wb_conv_state(c);
    s->msgs++;
    s->bytes += m->env.body_len;
    size_t n = m->env.body_len < 63 ? m->env.body_len : 63;
    memcpy(s->last, m->env.body, n);
    s->last[n] = 0;
    if (s->auto_consume)
        wb_conv_consumed(c, m->env.body_len);
}
static void cv_credit(wb_conv_t *c)
{
    conv_state_t *s = wb_conv_state(c);
    s->credits++;
}
static void cv_end(wb_conv_t *c, int status)
{
    conv_state_t *s = wb_conv_state(c);
    s->ended++;
    s->end_status = status;
    s->c = NULL;
}
static const wb_conv_def_t cv_def = {"test-conv", cv_msg, cv_credit, cv_end};

static conv_state_t server_conv;
static void accept_conv(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    (void)arg;
    assert_int_equal(wb_conv_accept(d, m, &cv_def, &server_conv, &server_conv.c), 0);
}

static void test_conversation_both_ways(void **state)
{
    (void)state;
    conv_state_t cl = {0};
    memset(&server_conv, 0, sizeof(server_conv));
    server_conv.auto_consume = 1;
    cl.auto_consume = 1;
    assert_int_equal(wb_dispatch_on_type(B, 5, accept_conv, NULL), 0);
    assert_int_equal(wb_conv_open(A, PEER_B, 5, "open", 4, &cv_def, &cl, &cl.c), 0);
    pump();
    assert_non_null(server_conv.c);
    /* Both sides key it by the opening id. */
    assert_int_equal(wb_conv_id(server_conv.c), wb_conv_id(cl.c));
    for (int i = 0; i < 10; i++) {
        assert_int_equal(wb_conv_send(cl.c, 6, "up", 2, NULL), 0);
        assert_int_equal(wb_conv_send(server_conv.c, 6, "down", 4, NULL), 0);
    }
    pump();
    assert_int_equal(server_conv.msgs, 10);
    assert_int_equal(cl.msgs, 10);
    assert_string_equal(cl.last, "down");
    /* Rule 3 with both fields: the reply handler runs, and sees the conversation. */
    uint64_t conv_id = wb_conv_id(cl.c);
    seen_t r2 = {0};
    uint64_t qid;
    assert_int_equal(wb_conv_request(cl.c, 7, "q2", 2, 0, 0, on_reply, &r2, &qid), 0);
    pump();
    assert_int_equal(server_conv.msgs, 11); /* the request itself went to the conversation */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 8, qid, conv_id, "a2", 2, NULL), 0);
    pump();
    assert_int_equal(r2.calls, 1);
    assert_ptr_equal(r2.conv, cl.c);
    assert_int_equal(r2.regards, conv_id);
    assert_int_equal(cl.msgs, 10); /* the reply did not go to on_msg */
    /* Either side ends it; the other hears. */
    wb_conv_close(cl.c, 0);
    assert_int_equal(cl.ended, 1);
    pump();
    assert_int_equal(server_conv.ended, 1);
    assert_int_equal(server_conv.end_status, WB_ECLOSED);
    /* Messages regarding the dead conversation are dropped (rule 4). */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 6, 0, conv_id, "late", 4, NULL), 0);
    pump();
    assert_int_equal(cl.msgs, 10);
}

/* ---- rule 6: credit ------------------------------------------------------------------- */

static void test_credit_flow(void **state)
{
    (void)state;
    conv_state_t cl = {0};
    memset(&server_conv, 0, sizeof(server_conv));
    server_conv.auto_consume = 0; /* the receiver is slow: it consumes by hand */
    assert_int_equal(wb_dispatch_on_type(B, 5, accept_conv, NULL), 0);
    assert_int_equal(wb_conv_open(A, PEER_B, 5, NULL, 0, &cv_def, &cl, &cl.c), 0);
    pump(); /* the acceptor's initial grant arrives */
    const size_t window = 256 * 1024, chunk = 1000;
    char buf[1000];
    memset(buf, 'x', sizeof(buf));
    int sent = 0, rc;
    while ((rc = wb_conv_send(cl.c, 6, buf, chunk, NULL)) == 0) {
        sent++;
        assert_true(sent < 10000);
    }
    assert_int_equal(rc, WB_EAGAIN);
    pump();
    /* The sender got as far as the window (plus at most one message) and no further. */
    assert_true((size_t)sent * chunk >= window);
    assert_true((size_t)sent * chunk < window + chunk);
    assert_int_equal(server_conv.msgs, sent); /* nothing was dropped */
    assert_int_equal(cl.credits, 0);
    /* The receiver consumes a quarter: not enough for a grant yet. */
    wb_conv_consumed(server_conv.c, window / 4);
    pump();
    assert_int_equal(cl.credits, 0);
    assert_int_equal(wb_conv_send(cl.c, 6, buf, chunk, NULL), WB_EAGAIN);
    /* Half: credit flows back and the held sender is told. */
    wb_conv_consumed(server_conv.c, window / 4);
    pump();
    assert_int_equal(cl.credits, 1);
    assert_true(wb_conv_credit(cl.c) > 0);
    assert_int_equal(wb_conv_send(cl.c, 6, buf, chunk, NULL), 0);
    pump();
    assert_int_equal(server_conv.msgs, sent + 1);
    wb_conv_close(cl.c, 0); /* cl lives on this stack */
    pump();
    assert_int_equal(server_conv.ended, 1);
}

/* ---- rule 5: rows ------------------------------------------------------------------- */

typedef struct {
    int calls;
    int64_t rowid;
    uint64_t msg_id;
    char body[16];
} row_seen_t;

static void on_row(wb_dispatch_t *d, const wb_msg_t *m, int64_t rowid, void *arg)
{
    row_seen_t *r = arg;
    (void)d;
    r->calls++;
    r->rowid = rowid;
    r->msg_id = m->env.id;
    size_t n = m->env.body_len < 15 ? m->env.body_len : 15;
    memcpy(r->body, m->env.body, n);
    r->body[n] = 0;
}

static void test_row_handlers(void **state)
{
    (void)state;
    row_seen_t r = {0};
    conv_state_t cl = {0};
    memset(&server_conv, 0, sizeof(server_conv));
    assert_int_equal(wb_dispatch_on_row(B, 20, on_row, &r), 0);
    assert_int_equal(wb_dispatch_on_type(B, 5, accept_conv, NULL), 0);
    /* Regarding row 12345: the row handler, keyed by the rowid. */
    uint64_t id;
    assert_int_equal(wb_dispatch_send(A, PEER_B, 20, 0, 12345, "next", 4, &id), 0);
    pump();
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rowid, 12345);
    assert_int_equal(r.msg_id, id);
    assert_string_equal(r.body, "next");
    /* The type decides: even regarding a live conversation's id, a row
     * type goes to its row handler; other types still reach the
     * conversation. */
    assert_int_equal(wb_conv_open(A, PEER_B, 5, NULL, 0, &cv_def, &cl, &cl.c), 0);
    pump();
    assert_int_equal(wb_conv_send(cl.c, 20, "conv", 4, NULL), 0);
    assert_int_equal(wb_conv_send(cl.c, 6, "conv", 4, NULL), 0);
    pump();
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.rowid, (int64_t)wb_conv_id(cl.c));
    assert_int_equal(server_conv.msgs, 1);
    /* Another type regarding a row nobody serves: dropped (rule 4). */
    assert_int_equal(wb_dispatch_send(A, PEER_B, 21, 0, 777, "x", 1, NULL), 0);
    pump();
    assert_int_equal(r.calls, 2);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(B, &st);
    assert_int_equal(st.by_row, 2);
    assert_int_equal(st.dropped_unknown, 1);
    /* Removed: dropped too. */
    assert_int_equal(wb_dispatch_on_row(B, 20, NULL, NULL), 0);
    assert_int_equal(wb_dispatch_send(A, PEER_B, 20, 0, 12345, "y", 1, NULL), 0);
    pump();
    assert_int_equal(r.calls, 2);
    wb_conv_close(cl.c, 0);
}

/* ---- the routing trace ------------------------------------------------------------- */

static void noop_type(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    (void)d;
    (void)m;
    (void)arg;
}

static void test_trace(void **state)
{
    (void)state;
    wb_dispatch_t *t;
    wb_dispatch_config_t cfg = {.send = send_to, .ctx = (void *)2, .trace = 1};
    assert_int_equal(wb_dispatch_new(&t, &cfg), 0);
    assert_int_equal(wb_dispatch_peer_add(t, 5, &wb_codec_msgpack, 0), 0);
    assert_int_equal(wb_dispatch_on_type(t, 3, noop_type, NULL), 0);
    uint8_t buf[64];
    size_t len;
    wb_envelope_t env = {3, 7, 0, 0, (const uint8_t *)"x", 1};
    assert_int_equal(wb_codec_msgpack.encode(&env, buf, sizeof(buf), &len), 0);
    /* Catch what the log writes to stderr. */
    int p[2], saved = dup(2);
    int level = wb_log_level();
    assert_int_equal(pipe(p), 0);
    dup2(p[1], 2);
    wb_log_set_level(WB_LOG_INFO);
    wb_dispatch_input(t, 5, wb_event_new_copy(0, buf, len), 1500);
    env.type = 4; /* nobody's */
    env.id = 9;
    env.regards = 77;
    assert_int_equal(wb_codec_msgpack.encode(&env, buf, sizeof(buf), &len), 0);
    wb_dispatch_input(t, 5, wb_event_new_copy(0, buf, len), 0);
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    wb_log_set_level(level);
    char out[2048];
    ssize_t n = read(p[0], out, sizeof(out) - 1);
    close(p[0]);
    assert_true(n > 0);
    out[n] = 0;
    assert_non_null(strstr(out, "trace: peer=5 type=3 id=7 reply_to=0 regards=0 handler=type"
                                " queued_us=1.5"));
    assert_non_null(strstr(out, "peer=5 type=4 id=9 reply_to=0 regards=77 handler=dropped"));
    /* Off by default: nothing when trace is 0. */
    wb_dispatch_free(t);
}

/* ---- peers leaving ------------------------------------------------------------------- */

static void test_peer_removed(void **state)
{
    (void)state;
    seen_t r = {0};
    conv_state_t cl = {0};
    memset(&server_conv, 0, sizeof(server_conv));
    assert_int_equal(wb_dispatch_on_type(B, 5, accept_conv, NULL), 0);
    assert_int_equal(wb_dispatch_request(A, PEER_B, 9, 0, "x", 1, 0, 0, on_reply, &r, NULL), 0);
    assert_int_equal(wb_conv_open(A, PEER_B, 5, NULL, 0, &cv_def, &cl, &cl.c), 0);
    pump();
    wb_dispatch_peer_remove(A, PEER_B, WB_EIO);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, WB_EIO);
    assert_int_equal(cl.ended, 1);
    assert_int_equal(cl.end_status, WB_EIO);
    assert_int_equal(wb_dispatch_send(A, PEER_B, 1, 0, 0, "", 0, NULL), WB_ENOENT);
    /* A refusing transport: the send fails and nothing is registered. */
    to_a.refuse = 1;
    assert_int_equal(wb_dispatch_request(B, PEER_A, 9, 0, "x", 1, 0, 10, on_reply, &r, NULL),
                     WB_ECLOSED);
    assert_int_equal(wb_dispatch_tick(B, 100), UINT64_MAX);
    to_a.refuse = 0;
}

/* ---- rule 2 at scale: deadlines, cancels, peers leaving ------------------------------ */

#define MANY 5000

typedef struct {
    uint64_t id, deadline; /* deadline 0: no timeout */
    int calls, status, answered, cancelled;
} req_t;

static req_t reqs[MANY];
static int fired[MANY], nfired;

static void on_many(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg)
{
    req_t *r = arg;
    (void)d;
    r->calls++;
    r->status = status;
    if (status == 0)
        assert_int_equal(m->env.reply_to, r->id);
    if (status == WB_ETIMEDOUT)
        fired[nfired++] = (int)(r - reqs);
}

/* The earliest deadline still pending, found the slow way. */
static uint64_t next_deadline(void)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < MANY; i++)
        if (reqs[i].calls == 0 && !reqs[i].cancelled && reqs[i].deadline != 0 &&
            reqs[i].deadline < best)
            best = reqs[i].deadline;
    return best;
}

static void shuffle(int *v, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1)), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* Thousands of requests with timeouts of several values (more values than
 * the dispatcher keeps queues for, and a clock that steps back now and then),
 * two thirds answered in random order: only the unanswered time out, each
 * once, in deadline order, and tick always names the next live deadline. */
static void test_many_requests_out_of_order(void **state)
{
    (void)state;
    static const uint64_t timeouts[] = {100, 250, 100, 1000, 40, 250, 7, 3000, 0};
    static int order[MANY];
    uint64_t now = 1000;
    rng_state = 0x2545F4914F6CDD1Dull;
    memset(reqs, 0, sizeof(reqs));
    nfired = 0;
    for (int i = 0; i < MANY; i++) {
        uint64_t t = timeouts[rnd() % (sizeof(timeouts) / sizeof(timeouts[0]))];
        uint64_t at = now;
        if (i % 97 == 0)
            at = now - rnd() % 50; /* an earlier clock than the last request's */
        assert_int_equal(
            wb_dispatch_request(A, PEER_B, 9, 0, "q", 1, at, t, on_many, &reqs[i], &reqs[i].id), 0);
        reqs[i].deadline = t ? at + t : 0;
        if (i % 3 == 0)
            now++;
        if (i % 1000 == 999)
            pump(); /* B drops them: nobody handles type 9 */
    }
    pump();
    for (int i = 0; i < MANY; i++)
        order[i] = i;
    shuffle(order, MANY);
    for (int k = 0; k < MANY; k++) {
        req_t *r = &reqs[order[k]];
        if (order[k] % 3 == 0)
            continue;
        r->answered = 1;
        assert_int_equal(wb_dispatch_send(B, PEER_A, 2, r->id, 0, "a", 1, NULL), 0);
        if (k % 1000 == 999)
            pump();
    }
    pump();
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(reqs[i].calls, reqs[i].answered);
        if (reqs[i].answered)
            assert_int_equal(reqs[i].status, 0);
    }
    /* Walk the clock forward in uneven steps (tick first: it fires what is due). */
    for (uint64_t t = 900; t < now + 4000; t += 1 + rnd() % 60) {
        uint64_t next = wb_dispatch_tick(A, t);
        assert_int_equal(next, next_deadline());
    }
    uint64_t last = wb_dispatch_tick(A, UINT64_MAX - 1);
    assert_int_equal(last, UINT64_MAX); /* only requests without a timeout are left */
    int timed = 0, untimed = 0;
    for (int i = 0; i < MANY; i++) {
        if (reqs[i].answered)
            assert_int_equal(reqs[i].calls, 1);
        else if (reqs[i].deadline != 0) {
            assert_int_equal(reqs[i].calls, 1);
            assert_int_equal(reqs[i].status, WB_ETIMEDOUT);
            timed++;
        } else {
            assert_int_equal(reqs[i].calls, 0);
            untimed++;
        }
    }
    assert_true(timed > 1000 && untimed > 50);
    assert_int_equal(nfired, timed);
    /* In deadline order, ties in request order. */
    for (int k = 1; k < nfired; k++) {
        const req_t *a = &reqs[fired[k - 1]], *b = &reqs[fired[k]];
        assert_true(a->deadline < b->deadline || (a->deadline == b->deadline && a < b));
    }
    wb_dispatch_stats_t st;
    wb_dispatch_stats(A, &st);
    assert_int_equal(st.timeouts, (uint64_t)timed);
    assert_int_equal(st.by_reply, (uint64_t)(MANY - MANY / 3 - 1));
    /* The requests without a timeout are still there, and still answerable. */
    for (int i = 0; i < MANY; i++)
        if (reqs[i].calls == 0)
            assert_int_equal(wb_dispatch_send(B, PEER_A, 2, reqs[i].id, 0, "a", 1, NULL), 0);
    pump();
    for (int i = 0; i < MANY; i++)
        assert_int_equal(reqs[i].calls, 1);
    assert_int_equal(wb_dispatch_tick(A, UINT64_MAX - 1), UINT64_MAX);
}

/* A timeout handler that cancels another request due at the same time. */
static uint64_t cancel_victim;
static void on_timeout_cancel(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg)
{
    on_many(d, m, status, arg);
    if (cancel_victim != 0) {
        assert_int_equal(wb_dispatch_cancel(d, PEER_B, cancel_victim), 0);
        cancel_victim = 0;
    }
}

static void test_cancel(void **state)
{
    (void)state;
    memset(reqs, 0, sizeof(reqs));
    nfired = 0;
    /* One queue (timeout 100): cancel its head, a middle one and its tail;
     * then requests of a sixth timeout value, which go to the heap. */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(wb_dispatch_request(A, PEER_B, 9, 0, "q", 1, (uint64_t)i, 100, on_many,
                                             &reqs[i], &reqs[i].id),
                         0);
        reqs[i].deadline = (uint64_t)i + 100;
    }
    static const uint64_t other[] = {10, 20, 30, 40, 50};
    for (int i = 10; i < 15; i++) {
        assert_int_equal(wb_dispatch_request(A, PEER_B, 9, 0, "q", 1, 0, other[i - 10], on_many,
                                             &reqs[i], &reqs[i].id),
                         0);
        reqs[i].deadline = other[i - 10];
    }
    pump();
    assert_int_equal(wb_dispatch_tick(A, 0), 10);
    int gone[] = {0, 4, 9, 10, 13};
    for (size_t k = 0; k < sizeof(gone) / sizeof(gone[0]); k++) {
        assert_int_equal(wb_dispatch_cancel(A, PEER_B, reqs[gone[k]].id), 0);
        assert_int_equal(wb_dispatch_cancel(A, PEER_B, reqs[gone[k]].id), WB_ENOENT);
        reqs[gone[k]].cancelled = 1;
    }
    assert_int_equal(wb_dispatch_cancel(A, 12345, reqs[1].id), WB_ENOENT);
    assert_int_equal(wb_dispatch_tick(A, 0), 20);
    /* A reply to a cancelled request finds nobody. */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 2, reqs[4].id, 0, "a", 1, NULL), 0);
    pump();
    assert_int_equal(reqs[4].calls, 0);
    assert_int_equal(wb_dispatch_tick(A, 60), 101);
    /* Request 1's handler cancels request 2, due one ms later. */
    for (int i = 1; i < 3; i++) {
        assert_int_equal(wb_dispatch_cancel(A, PEER_B, reqs[i].id), 0);
        assert_int_equal(wb_dispatch_request(A, PEER_B, 9, 0, "q", 1, 0, 200, on_timeout_cancel,
                                             &reqs[i], &reqs[i].id),
                         0);
        reqs[i].deadline = 200;
    }
    pump();
    cancel_victim = reqs[2].id;
    reqs[2].cancelled = 1;
    assert_int_equal(wb_dispatch_tick(A, 1000), UINT64_MAX);
    for (int i = 0; i < 15; i++)
        assert_int_equal(reqs[i].calls, reqs[i].cancelled ? 0 : 1);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(A, &st);
    assert_int_equal(st.timeouts, 15 - 6);
}

/* Thousands pending on a peer that leaves: every one fails once with the
 * status, none fires later, and another peer's requests are untouched. */
static int sink_send(void *ctx, uint64_t peer, wb_event_t *blob)
{
    (void)ctx;
    (void)peer;
    wb_event_free(blob);
    return 0;
}

static void test_peer_removed_many_pending(void **state)
{
    (void)state;
    wb_dispatch_t *d;
    wb_dispatch_config_t cfg = {.send = sink_send};
    assert_int_equal(wb_dispatch_new(&d, &cfg), 0);
    assert_int_equal(wb_dispatch_peer_add(d, 1, &wb_codec_msgpack, 1), 0);
    assert_int_equal(wb_dispatch_peer_add(d, 2, &wb_codec_msgpack, 1), 0);
    memset(reqs, 0, sizeof(reqs));
    nfired = 0;
    for (int i = 0; i < MANY; i++) {
        uint64_t peer = i % 10 == 0 ? 2 : 1;
        uint64_t t = i % 7 == 0 ? 0 : (uint64_t)(50 + (i % 6) * 10);
        assert_int_equal(wb_dispatch_request(d, peer, 9, 0, "q", 1, (uint64_t)i / 100, t, on_many,
                                             &reqs[i], &reqs[i].id),
                         0);
    }
    wb_dispatch_peer_remove(d, 1, WB_EIO);
    for (int i = 0; i < MANY; i++) {
        if (i % 10 == 0) {
            assert_int_equal(reqs[i].calls, 0);
        } else {
            assert_int_equal(reqs[i].calls, 1);
            assert_int_equal(reqs[i].status, WB_EIO);
        }
    }
    wb_dispatch_peer_remove(d, 1, WB_EIO); /* unknown now: ignored */
    /* Peer 2's timed requests are all that tick still sees. */
    assert_int_equal(wb_dispatch_tick(d, 10000), UINT64_MAX);
    int timed = 0;
    for (int i = 0; i < MANY; i += 10) {
        int has_timeout = i % 7 != 0;
        assert_int_equal(reqs[i].calls, has_timeout);
        timed += has_timeout;
    }
    assert_int_equal(nfired, timed);
    /* The freed slots serve new requests; they and the rest fail when d goes. */
    for (int i = 0; i < MANY; i += 10)
        if (reqs[i].calls == 0)
            assert_int_equal(wb_dispatch_cancel(d, 2, reqs[i].id), 0);
    for (int i = 0; i < MANY; i++) {
        reqs[i].calls = 0;
        assert_int_equal(
            wb_dispatch_request(d, 2, 9, 0, "q", 1, 0, 5, on_many, &reqs[i], &reqs[i].id), 0);
    }
    wb_dispatch_free(d);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(reqs[i].calls, 1);
        assert_int_equal(reqs[i].status, WB_ECLOSED);
    }
    assert_int_equal(wb_pool_trim(), 0); /* every blob went back */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_mpcheck_bounds),
        cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conversation_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credit_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_handlers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_removed, setup, teardown),
        cmocka_unit_test(test_decode_differential),
        cmocka_unit_test(test_decode_encodings),
        cmocka_unit_test_setup_teardown(test_many_requests_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test(test_peer_removed_many_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
