/*
 * test_frame.c - the length-prefix decoder on its own: a stream of frames
 * split at every byte boundary decodes to the same frames; several frames in
 * one chunk come out one by one; a payload of exactly max passes and max + 1
 * is refused; a 0xFFFFFFFF prefix is refused from the prefix alone, holding
 * nothing; zero-length frames pass; errors stay; partial() reports how far a
 * truncated frame got.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/error.h"
#include "sockets/frame.h"

typedef struct {
    uint8_t *data;
    uint32_t len;
} got_t;

enum { MAX_GOT = 64 };

/* Feed buf in the chunks given by cuts (ascending offsets); collect frames. */
static int feed_chunks(wb_frame_decoder_t *d, const uint8_t *buf, size_t len, const size_t *cuts,
                       size_t ncuts, got_t *got, size_t *ngot)
{
    size_t start = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        const uint8_t *p = buf + start;
        size_t n = end - start;
        while (n > 0) {
            wb_frame_t f;
            size_t used;
            int rc = wb_frame_decode(d, p, n, &used, &f);
            if (rc < 0)
                return rc;
            assert_true(used <= n);
            p += used;
            n -= used;
            if (rc == 1) {
                assert_true(*ngot < MAX_GOT);
                got[*ngot].len = f.len;
                got[*ngot].data = malloc(f.len + 1);
                if (f.len > 0)
                    memcpy(got[*ngot].data, f.data, f.len);
                free(f.owned);
                (*ngot)++;
            } else {
                assert_int_equal(n, 0);
            }
        }
        start = end;
    }
    return 0;
}

static void free_got(got_t *got, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(got[i].data);
}

static size_t put_frame(uint8_t *out, const void *payload, uint32_t len)
{
    wb_frame_put_header(out, len);
    if (len > 0)
        memcpy(out + 4, payload, len);
    return 4 + (size_t)len;
}

/* Three frames (one empty) split once at every offset, then twice at every
 * pair of offsets. */
static void test_split_every_boundary(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t len = 0;
    const char *a = "hello", *c = "a somewhat longer third frame";
    len += put_frame(buf + len, a, 5);
    len += put_frame(buf + len, NULL, 0);
    len += put_frame(buf + len, c, (uint32_t)strlen(c));

    for (size_t i = 0; i <= len; i++) {
        for (size_t j = i; j <= len; j++) {
            wb_frame_decoder_t d;
            wb_frame_decoder_init(&d, 1024);
            got_t got[MAX_GOT];
            size_t ngot = 0;
            size_t cuts[2] = {i, j};
            assert_int_equal(feed_chunks(&d, buf, len, cuts, 2, got, &ngot), 0);
            assert_int_equal(ngot, 3);
            assert_int_equal(got[0].len, 5);
            assert_memory_equal(got[0].data, a, 5);
            assert_int_equal(got[1].len, 0);
            assert_int_equal(got[2].len, strlen(c));
            assert_memory_equal(got[2].data, c, strlen(c));
            uint32_t h, n;
            assert_int_equal(wb_frame_decoder_partial(&d, &h, &n), 0);
            assert_int_equal(wb_frame_decoder_buffered(&d), 0);
            free_got(got, ngot);
            wb_frame_decoder_fini(&d);
        }
    }
}

/* Several frames in one chunk come out one at a time, in place. */
static void test_many_in_one_chunk(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t len = 0;
    for (uint32_t i = 0; i < 20; i++) {
        uint8_t p[32];
        memset(p, (int)i, sizeof(p));
        len += put_frame(buf + len, p, i);
    }
    wb_frame_decoder_t d;
    wb_frame_decoder_init(&d, 64);
    size_t off = 0;
    for (uint32_t i = 0; i < 20; i++) {
        wb_frame_t f;
        size_t used;
        assert_int_equal(wb_frame_decode(&d, buf + off, len - off, &used, &f), 1);
        assert_int_equal(f.len, i);
        assert_null(f.owned);
        assert_ptr_equal(f.data, buf + off + 4);
        for (uint32_t k = 0; k < i; k++)
            assert_int_equal(f.data[k], i);
        off += used;
    }
    assert_int_equal(off, len);
    wb_frame_t f;
    size_t used;
    assert_int_equal(wb_frame_decode(&d, buf + off, 0, &used, &f), 0);
    assert_int_equal(used, 0);
    wb_frame_decoder_fini(&d);
}

/* A payload of exactly max passes, in place and across chunks; max + 1 is
 * refused at its prefix and the error stays. */
static void test_max_exact_and_over(void **state)
{
    (void)state;
    enum { MAX = 1000 };
    uint8_t *buf = malloc(4 + MAX + 1);
    memset(buf + 4, 0xab, MAX + 1);

    wb_frame_decoder_t d;
    wb_frame_decoder_init(&d, MAX);
    wb_frame_put_header(buf, MAX);
    wb_frame_t f;
    size_t used;
    assert_int_equal(wb_frame_decode(&d, buf, 4 + MAX, &used, &f), 1);
    assert_int_equal(f.len, MAX);
    assert_int_equal(used, 4 + MAX);

    /* Across chunks: the buffer is allocated once the prefix is known. */
    assert_int_equal(wb_frame_decode(&d, buf, 10, &used, &f), 0);
    assert_int_equal(used, 10);
    assert_int_equal(wb_frame_decoder_buffered(&d), 4 + MAX);
    uint32_t have, need;
    assert_int_equal(wb_frame_decoder_partial(&d, &have, &need), 1);
    assert_int_equal(have, 6);
    assert_int_equal(need, MAX);
    assert_int_equal(wb_frame_decode(&d, buf + 10, 4 + MAX - 10, &used, &f), 1);
    assert_non_null(f.owned);
    assert_int_equal(f.len, MAX);
    assert_int_equal(f.data[MAX - 1], 0xab);
    free(f.owned);

    wb_frame_put_header(buf, MAX + 1);
    assert_int_equal(wb_frame_decode(&d, buf, 4 + MAX + 1, &used, &f), WB_ETOOBIG);
    assert_int_equal(d.bad_len, MAX + 1);
    assert_int_equal(used, 4);
    assert_int_equal(wb_frame_decoder_buffered(&d), 4);
    /* Sticky. */
    assert_int_equal(wb_frame_decode(&d, buf, 1, &used, &f), WB_ETOOBIG);
    assert_int_equal(used, 0);
    wb_frame_decoder_fini(&d);
    free(buf);
}

/* The largest prefix is refused from the prefix alone, byte by byte too, and
 * nothing beyond the 4 prefix bytes is held. */
static void test_huge_prefix(void **state)
{
    (void)state;
    const uint8_t ff[8] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    wb_frame_decoder_t d;
    wb_frame_decoder_init(&d, 1u << 20);
    wb_frame_t f;
    size_t used;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(wb_frame_decode(&d, ff + i, 1, &used, &f), 0);
        assert_int_equal(used, 1);
    }
    uint32_t have, need;
    assert_int_equal(wb_frame_decoder_partial(&d, &have, &need), 1);
    assert_int_equal(have, 3);
    assert_int_equal(need, 4);
    assert_int_equal(wb_frame_decode(&d, ff + 3, 5, &used, &f), WB_ETOOBIG);
    assert_int_equal(d.bad_len, 0xFFFFFFFFu);
    assert_null(d.body);
    assert_int_equal(wb_frame_decoder_buffered(&d), 4);
    wb_frame_decoder_fini(&d);

    /* Whole in one chunk the same; fini clears the error and keeps max. */
    wb_frame_decoder_init(&d, 16);
    assert_int_equal(wb_frame_decode(&d, ff, 8, &used, &f), WB_ETOOBIG);
    wb_frame_decoder_fini(&d);
    assert_int_equal(d.err, 0);
    assert_int_equal(d.max, 16);
}

/* Zero-length frames, alone and back to back, across byte-sized chunks. */
static void test_zero_length(void **state)
{
    (void)state;
    uint8_t buf[4 * 5];
    for (int i = 0; i < 5; i++)
        wb_frame_put_header(buf + 4 * i, 0);
    wb_frame_decoder_t d;
    wb_frame_decoder_init(&d, 0); /* max 0: only empty frames */
    got_t got[MAX_GOT];
    size_t ngot = 0;
    size_t cuts[19];
    for (int i = 0; i < 19; i++)
        cuts[i] = (size_t)i + 1;
    assert_int_equal(feed_chunks(&d, buf, sizeof(buf), cuts, 19, got, &ngot), 0);
    assert_int_equal(ngot, 5);
    for (size_t i = 0; i < ngot; i++)
        assert_int_equal(got[i].len, 0);
    free_got(got, ngot);
    uint8_t one[5];
    put_frame(one, "x", 1);
    wb_frame_t f;
    size_t used;
    assert_int_equal(wb_frame_decode(&d, one, 5, &used, &f), WB_ETOOBIG);
    assert_int_equal(d.bad_len, 1);
    wb_frame_decoder_fini(&d);
}

/* fini in the middle of a frame releases it (checked by ASan/valgrind). */
static void test_fini_mid_frame(void **state)
{
    (void)state;
    uint8_t buf[4 + 100];
    memset(buf, 0, sizeof(buf));
    wb_frame_put_header(buf, 100);
    wb_frame_decoder_t d;
    wb_frame_decoder_init(&d, 100);
    wb_frame_t f;
    size_t used;
    assert_int_equal(wb_frame_decode(&d, buf, 50, &used, &f), 0);
    assert_non_null(d.body);
    wb_frame_decoder_fini(&d);
    assert_null(d.body);
    assert_int_equal(wb_frame_decode(&d, buf, sizeof(buf), &used, &f), 1);
    assert_int_equal(f.len, 100);
    wb_frame_decoder_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_every_boundary), cmocka_unit_test(test_many_in_one_chunk),
        cmocka_unit_test(test_max_exact_and_over),   cmocka_unit_test(test_huge_prefix),
        cmocka_unit_test(test_zero_length),          cmocka_unit_test(test_fini_mid_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
