/*
 * test_signal_proto.c - the signaling codec (apps/signal/proto.h): encoder
 * and decoder round trips; a stream of frames split once and twice at every
 * offset decodes to the same frames; the keepalive; 16 bytes of content is a
 * message on topic 0; content of exactly max passes and max + 1 is refused
 * from the length alone; zero and impossible lengths; errors stay; id text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apps/signal/proto.h"
#include "runtime/error.h"

typedef struct {
    int kind;
    uint8_t id[WB_SIG_ID_LEN];
    uint16_t topic;
    uint8_t *body;
    size_t len;
} got_t;

enum { MAX_GOT = 16 };

/* Feed buf in the chunks given by cuts (ascending offsets), collecting
 * frames; returns the first error or 0. */
static int feed(wb_sig_decoder_t *d, const uint8_t *buf, size_t len, const size_t *cuts,
                size_t ncuts, got_t *got, size_t *ngot)
{
    size_t start = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        const uint8_t *p = buf + start;
        size_t n = end - start;
        do {
            wb_sig_frame_t f;
            size_t used;
            int rc = wb_sig_decode(d, p, n, &used, &f);
            if (rc < 0)
                return rc;
            assert_true(used <= n);
            p += used;
            n -= used;
            if (rc == 1) {
                assert_true(*ngot < MAX_GOT);
                got_t *g = &got[(*ngot)++];
                g->kind = f.kind;
                memcpy(g->id, f.id, WB_SIG_ID_LEN);
                g->topic = f.topic;
                g->len = f.body_len;
                g->body = malloc(f.body_len + 1);
                if (f.body_len > 0)
                    memcpy(g->body, f.body, f.body_len);
            } else {
                assert_int_equal(n, 0);
            }
        } while (n > 0);
        start = end;
    }
    return 0;
}

static void free_got(got_t *got, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(got[i].body);
}

static const uint8_t ida[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t idb[16] = {0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
                                0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00};

/* message(ida, 7, "hello") | keepalive | message(idb, 0x1234, empty) |
 * 16-byte content (idb) | message(ida, 0xFFFE, 300 bytes). */
static size_t make_stream(uint8_t *out)
{
    size_t n = 0;
    n += wb_sig_encode(out + n, ida, 7, "hello", 5);
    memcpy(out + n, WB_SIG_KEEPALIVE_FRAME, 3);
    n += 3;
    n += wb_sig_encode(out + n, idb, 0x1234, NULL, 0);
    out[n++] = 16;
    out[n++] = 0;
    memcpy(out + n, idb, 16);
    n += 16;
    uint8_t big[300];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    n += wb_sig_encode(out + n, ida, 0xFFFE, big, sizeof(big));
    return n;
}

static void check_stream(got_t *g, size_t n)
{
    assert_int_equal(n, 5);
    assert_int_equal(g[0].kind, WB_SIG_FRAME_MESSAGE);
    assert_memory_equal(g[0].id, ida, 16);
    assert_int_equal(g[0].topic, 7);
    assert_int_equal(g[0].len, 5);
    assert_memory_equal(g[0].body, "hello", 5);
    assert_int_equal(g[1].kind, WB_SIG_FRAME_KEEPALIVE);
    assert_int_equal(g[1].len, 0);
    assert_int_equal(g[2].kind, WB_SIG_FRAME_MESSAGE);
    assert_memory_equal(g[2].id, idb, 16);
    assert_int_equal(g[2].topic, 0x1234);
    assert_int_equal(g[2].len, 0);
    assert_int_equal(g[3].kind, WB_SIG_FRAME_MESSAGE);
    assert_memory_equal(g[3].id, idb, 16);
    assert_int_equal(g[3].topic, 0);
    assert_int_equal(g[3].len, 0);
    assert_int_equal(g[4].topic, 0xFFFE);
    assert_int_equal(g[4].len, 300);
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(g[4].body[i], (uint8_t)(i * 7));
}

static void test_encode_layout(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n = wb_sig_encode(buf, ida, 0x0102, "xy", 2);
    assert_int_equal(n, wb_sig_frame_size(2));
    assert_int_equal(n, 22);
    assert_int_equal(buf[0], 20); /* little-endian length */
    assert_int_equal(buf[1], 0);
    assert_memory_equal(buf + 2, ida, 16);
    assert_int_equal(buf[18], 0x02); /* little-endian topic */
    assert_int_equal(buf[19], 0x01);
    assert_memory_equal(buf + 20, "xy", 2);
    assert_memory_equal(WB_SIG_KEEPALIVE_FRAME, "\x01\x00\x6b", 3);
}

static void test_roundtrip_every_split(void **state)
{
    (void)state;
    static uint8_t buf[1024];
    size_t len = make_stream(buf);
    got_t got[MAX_GOT];
    size_t n = 0;
    wb_sig_decoder_t d;

    wb_sig_decoder_init(&d, 0);
    assert_int_equal(feed(&d, buf, len, NULL, 0, got, &n), 0);
    check_stream(got, n);
    free_got(got, n);
    wb_sig_decoder_fini(&d);

    for (size_t i = 0; i <= len; i++) {
        wb_sig_decoder_init(&d, WB_SIG_MAX_CONTENT);
        n = 0;
        size_t cuts[1] = {i};
        assert_int_equal(feed(&d, buf, len, cuts, 1, got, &n), 0);
        check_stream(got, n);
        free_got(got, n);
        assert_int_equal(d.need, 0);
        assert_int_equal(d.lenb_have, 0);
        wb_sig_decoder_fini(&d);
    }
    for (size_t i = 0; i <= len; i += 3)
        for (size_t j = i; j <= len; j++) {
            wb_sig_decoder_init(&d, WB_SIG_MAX_CONTENT);
            n = 0;
            size_t cuts[2] = {i, j};
            assert_int_equal(feed(&d, buf, len, cuts, 2, got, &n), 0);
            check_stream(got, n);
            free_got(got, n);
            wb_sig_decoder_fini(&d);
        }
    /* One byte at a time. */
    size_t cuts[1024];
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    wb_sig_decoder_init(&d, WB_SIG_MAX_CONTENT);
    n = 0;
    assert_int_equal(feed(&d, buf, len, cuts, len, got, &n), 0);
    check_stream(got, n);
    free_got(got, n);
    wb_sig_decoder_fini(&d);
}

static void test_whole_frame_in_place(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = wb_sig_encode(buf, ida, 9, "abc", 3);
    wb_sig_decoder_t d;
    wb_sig_decoder_init(&d, 0);
    wb_sig_frame_t f;
    size_t used;
    assert_int_equal(wb_sig_decode(&d, buf, len, &used, &f), 1);
    assert_int_equal(used, len);
    assert_ptr_equal(f.body, buf + 20);
    assert_null(d.buf);
    wb_sig_decoder_fini(&d);
}

static void test_max_exact_and_over(void **state)
{
    (void)state;
    size_t cap = wb_sig_frame_size(WB_SIG_MAX_BODY);
    uint8_t *buf = malloc(cap + 1), *body = malloc(cap + 1);
    memset(body, 0x5a, cap + 1);
    assert_int_equal(wb_sig_encode(buf, idb, 1, body, WB_SIG_MAX_BODY + 1), 0);
    size_t len = wb_sig_encode(buf, idb, 1, body, WB_SIG_MAX_BODY);
    assert_int_equal(len, 2 + 65535);
    assert_int_equal(buf[0], 0xff);
    assert_int_equal(buf[1], 0xff);

    wb_sig_decoder_t d;
    wb_sig_frame_t f;
    size_t used;
    /* 65535 with the default max, in two pieces. */
    wb_sig_decoder_init(&d, 0);
    assert_int_equal(wb_sig_decode(&d, buf, 1000, &used, &f), 0);
    assert_int_equal(used, 1000);
    assert_int_equal(wb_sig_decode(&d, buf + 1000, len - 1000, &used, &f), 1);
    assert_int_equal(used, len - 1000);
    assert_int_equal(f.body_len, WB_SIG_MAX_BODY);
    assert_int_equal(f.body[WB_SIG_MAX_BODY - 1], 0x5a);
    wb_sig_decoder_fini(&d);

    /* A smaller max: exactly max passes, max + 1 fails on the length alone. */
    uint8_t small[64];
    size_t sl = wb_sig_encode(small, ida, 2, "0123456789", 10); /* content 28 */
    wb_sig_decoder_init(&d, 28);
    assert_int_equal(wb_sig_decode(&d, small, sl, &used, &f), 1);
    wb_sig_decoder_fini(&d);
    wb_sig_decoder_init(&d, 27);
    assert_int_equal(wb_sig_decode(&d, small, 2, &used, &f), WB_ETOOBIG);
    assert_int_equal(used, 2);
    assert_null(d.buf);
    assert_string_equal(wb_sig_decoder_error(&d), "frame of 28 bytes exceeds 27");
    wb_sig_decoder_fini(&d);
    free(buf);
    free(body);
}

static void expect_err(const uint8_t *in, size_t len, int err, const char *msg)
{
    wb_sig_decoder_t d;
    wb_sig_frame_t f;
    size_t used;
    wb_sig_decoder_init(&d, 0);
    assert_string_equal(wb_sig_decoder_error(&d), "");
    assert_int_equal(wb_sig_decode(&d, in, len, &used, &f), err);
    assert_string_equal(wb_sig_decoder_error(&d), msg);
    /* Sticky: the same error, nothing taken, even for a good frame. */
    assert_int_equal(wb_sig_decode(&d, (const uint8_t *)WB_SIG_KEEPALIVE_FRAME, 3, &used, &f), err);
    assert_int_equal(used, 0);
    assert_string_equal(wb_sig_decoder_error(&d), msg);
    wb_sig_decoder_fini(&d);
}

static void test_bad_frames(void **state)
{
    (void)state;
    expect_err((const uint8_t *)"\x00\x00", 2, WB_EPROTO,
               "frame of 0 bytes: neither a keepalive nor a message");
    expect_err((const uint8_t *)"\x05\x00", 2, WB_EPROTO,
               "frame of 5 bytes: neither a keepalive nor a message");
    expect_err((const uint8_t *)"\x0f\x00", 2, WB_EPROTO,
               "frame of 15 bytes: neither a keepalive nor a message");
    expect_err((const uint8_t *)"\x11\x00", 2, WB_EPROTO, "frame of 17 bytes: a topic of 1 byte");
    expect_err((const uint8_t *)"\x01\x00K", 3, WB_EPROTO,
               "frame of 1 byte (0x4b): not a keepalive");
    /* An error after good frames: they come out first. */
    uint8_t buf[64];
    size_t n = wb_sig_encode(buf, ida, 3, "z", 1);
    buf[n++] = 2;
    buf[n++] = 0;
    wb_sig_decoder_t d;
    wb_sig_frame_t f;
    size_t used;
    wb_sig_decoder_init(&d, 0);
    assert_int_equal(wb_sig_decode(&d, buf, n, &used, &f), 1);
    assert_int_equal(used, 21);
    assert_int_equal(wb_sig_decode(&d, buf + used, n - used, &used, &f), WB_EPROTO);
    wb_sig_decoder_fini(&d);
}

static void test_sixteen_bytes_topic0(void **state)
{
    (void)state;
    uint8_t buf[20] = {16, 0};
    memcpy(buf + 2, idb, 16);
    wb_sig_decoder_t d;
    wb_sig_frame_t f;
    size_t used;
    wb_sig_decoder_init(&d, 0);
    assert_int_equal(wb_sig_decode(&d, buf, 18, &used, &f), 1);
    assert_int_equal(f.kind, WB_SIG_FRAME_MESSAGE);
    assert_memory_equal(f.id, idb, 16);
    assert_int_equal(f.topic, 0);
    assert_int_equal(f.body_len, 0);
    /* The welcome frame: 18 bytes of content, topic 0, no body. */
    size_t n = wb_sig_encode(buf, ida, 0, NULL, 0);
    assert_int_equal(n, 20);
    assert_int_equal(wb_sig_decode(&d, buf, n, &used, &f), 1);
    assert_memory_equal(f.id, ida, 16);
    assert_int_equal(f.topic, 0);
    assert_int_equal(f.body_len, 0);
    wb_sig_decoder_fini(&d);
}

static void test_keepalive(void **state)
{
    (void)state;
    wb_sig_decoder_t d;
    wb_sig_frame_t f;
    size_t used;
    wb_sig_decoder_init(&d, 0);
    const uint8_t *k = (const uint8_t *)WB_SIG_KEEPALIVE_FRAME;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(wb_sig_decode(&d, k, 3, &used, &f), 1);
        assert_int_equal(used, 3);
        assert_int_equal(f.kind, WB_SIG_FRAME_KEEPALIVE);
    }
    /* Split in three. */
    assert_int_equal(wb_sig_decode(&d, k, 1, &used, &f), 0);
    assert_int_equal(wb_sig_decode(&d, k + 1, 1, &used, &f), 0);
    assert_int_equal(wb_sig_decode(&d, k + 2, 1, &used, &f), 1);
    assert_int_equal(f.kind, WB_SIG_FRAME_KEEPALIVE);
    /* Nothing in, nothing out. */
    assert_int_equal(wb_sig_decode(&d, k, 0, &used, &f), 0);
    assert_int_equal(used, 0);
    wb_sig_decoder_fini(&d);
}

static void test_id_hex(void **state)
{
    (void)state;
    char hex[33];
    wb_sig_id_hex(idb, hex);
    assert_string_equal(hex, "ffeeddccbbaa99887766554433221100");
    uint8_t id[16];
    assert_int_equal(wb_sig_id_parse(hex, id), 0);
    assert_memory_equal(id, idb, 16);
    assert_int_equal(wb_sig_id_parse("FFEEDDCCBBAA99887766554433221100", id), 0);
    assert_memory_equal(id, idb, 16);
    memset(id, 0, sizeof(id));
    assert_int_equal(wb_sig_id_parse("ffeeddccbbaa9988776655443322110", id), WB_EINVAL);
    assert_int_equal(wb_sig_id_parse("ffeeddccbbaa998877665544332211000", id), WB_EINVAL);
    assert_int_equal(wb_sig_id_parse("ffeeddccbbaa99887766554433221g00", id), WB_EINVAL);
    assert_int_equal(wb_sig_id_parse("", id), WB_EINVAL);
    assert_int_equal(wb_sig_id_parse(NULL, id), WB_EINVAL);
    static const uint8_t zero[16];
    assert_memory_equal(id, zero, 16); /* untouched on failure */
    wb_sig_id_hex(ida, hex);
    assert_string_equal(hex, "0102030405060708090a0b0c0d0e0f10");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_layout),
        cmocka_unit_test(test_roundtrip_every_split),
        cmocka_unit_test(test_whole_frame_in_place),
        cmocka_unit_test(test_max_exact_and_over),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_sixteen_bytes_topic0),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_id_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
