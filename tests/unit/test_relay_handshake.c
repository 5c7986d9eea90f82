/*
 * test_relay_handshake.c - the transit relay's handshake line on its own
 * (apps/relay/handshake.h): both forms, whole and split at every byte; the
 * relay lines of shared/vectors/transit.json (what the Python client sends);
 * the exact reply strings; a newline too early, a wrong byte anywhere, more
 * than 104 bytes without a newline; bytes after the line (in the same piece
 * or later: "impatient"); results that stay; word characters beyond hex (as
 * the Python relay's \w); and Python's usage byte blurring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apps/relay/handshake.h"
#include "apps/relay/store.h"

#define TOKEN "113064e96a4e111193823ddccd8af67719ad17534f918cf1a2ffb2ca29f0e4f5"
/* transit.json: relay_handshake_sender_utf8 / relay_handshake_receiver_utf8 */
#define SENDER_LINE   "please relay " TOKEN " for side 0123456789abcdef\n"
#define RECEIVER_LINE "please relay " TOKEN " for side fedcba9876543210\n"
#define LEGACY_LINE   "please relay " TOKEN "\n"

static tr_hs_result_t feed_all(tr_hs_t *hs, const char *s, size_t n)
{
    size_t used = 0;
    tr_hs_result_t r = tr_hs_feed(hs, (const uint8_t *)s, n, &used);
    if (r == TR_HS_MORE || r == TR_HS_DONE)
        assert_int_equal(used, n);
    return r;
}

static void test_replies(void **state)
{
    (void)state;
    /* The Python relay's bytes, exactly. */
    assert_string_equal(TR_REPLY_OK, "ok\n");
    assert_string_equal(TR_REPLY_BAD, "bad handshake\n");
    assert_string_equal(TR_REPLY_IMPATIENT, "impatient\n");
    assert_int_equal(strlen(SENDER_LINE), TR_HS_MAX_LEN);
    assert_int_equal(strlen(LEGACY_LINE), TR_HS_LEGACY_LEN);
    assert_string_equal(tr_hs_result_name(TR_HS_IMPATIENT), "impatient");
}

static void test_vectors_whole(void **state)
{
    (void)state;
    tr_hs_t hs;
    tr_hs_init(&hs);
    assert_int_equal(feed_all(&hs, SENDER_LINE, strlen(SENDER_LINE)), TR_HS_DONE);
    assert_string_equal(hs.token, TOKEN);
    assert_int_equal(hs.has_side, 1);
    assert_string_equal(hs.side, "0123456789abcdef");

    tr_hs_init(&hs);
    assert_int_equal(feed_all(&hs, RECEIVER_LINE, strlen(RECEIVER_LINE)), TR_HS_DONE);
    assert_string_equal(hs.token, TOKEN);
    assert_string_equal(hs.side, "fedcba9876543210");

    tr_hs_init(&hs);
    assert_int_equal(feed_all(&hs, LEGACY_LINE, strlen(LEGACY_LINE)), TR_HS_DONE);
    assert_string_equal(hs.token, TOKEN);
    assert_int_equal(hs.has_side, 0);
    assert_string_equal(hs.side, "");
}

/* Every split into two pieces, and one byte at a time. */
static void test_split_everywhere(void **state)
{
    (void)state;
    const char *lines[] = {SENDER_LINE, LEGACY_LINE};
    for (int l = 0; l < 2; l++) {
        size_t n = strlen(lines[l]);
        for (size_t cut = 0; cut <= n; cut++) {
            tr_hs_t hs;
            tr_hs_init(&hs);
            tr_hs_result_t r = feed_all(&hs, lines[l], cut);
            assert_int_equal(r, cut == n ? TR_HS_DONE : TR_HS_MORE);
            if (cut < n)
                assert_int_equal(feed_all(&hs, lines[l] + cut, n - cut), TR_HS_DONE);
            assert_string_equal(hs.token, TOKEN);
            assert_int_equal(hs.has_side, l == 0);
        }
        tr_hs_t hs;
        tr_hs_init(&hs);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(feed_all(&hs, lines[l] + i, 1), i + 1 == n ? TR_HS_DONE : TR_HS_MORE);
        /* Empty feeds change nothing. */
        assert_int_equal(feed_all(&hs, "", 0), TR_HS_DONE);
    }
}

static void test_impatient(void **state)
{
    (void)state;
    tr_hs_t hs;
    size_t used;
    /* The line and more in one piece. */
    const char *both[] = {SENDER_LINE "transit sender", LEGACY_LINE "x"};
    for (int i = 0; i < 2; i++) {
        tr_hs_init(&hs);
        tr_hs_result_t r = tr_hs_feed(&hs, (const uint8_t *)both[i], strlen(both[i]), &used);
        assert_int_equal(r, TR_HS_IMPATIENT);
        assert_int_equal(used, i == 0 ? TR_HS_MAX_LEN : TR_HS_LEGACY_LEN);
    }
    /* A byte in a later piece, before the relay said ok. */
    tr_hs_init(&hs);
    assert_int_equal(feed_all(&hs, SENDER_LINE, strlen(SENDER_LINE)), TR_HS_DONE);
    assert_int_equal(tr_hs_feed(&hs, (const uint8_t *)"\n", 1, &used), TR_HS_IMPATIENT);
    assert_int_equal(used, 0);
    /* Final. */
    assert_int_equal(tr_hs_feed(&hs, NULL, 0, NULL), TR_HS_IMPATIENT);
}

/* A wrong byte at every position of the new form is refused at once. */
static void test_wrong_byte_everywhere(void **state)
{
    (void)state;
    const char *line = SENDER_LINE;
    size_t n = strlen(line);
    for (size_t i = 0; i < n; i++) {
        char buf[TR_HS_MAX_LEN + 1];
        memcpy(buf, line, n);
        /* '-' is neither a word character nor any fixed byte of the line. */
        buf[i] = '-';
        tr_hs_t hs;
        tr_hs_init(&hs);
        size_t used;
        tr_hs_result_t r = tr_hs_feed(&hs, (const uint8_t *)buf, n, &used);
        assert_int_equal(r, TR_HS_BAD);
        assert_int_equal(used, i);
        /* Final, even for valid bytes. */
        assert_int_equal(tr_hs_feed(&hs, (const uint8_t *)"p", 1, NULL), TR_HS_BAD);
    }
}

static void test_newline_early(void **state)
{
    (void)state;
    const char *bad[] = {
        "\n",
        "please relay\n",
        "please relay \n",
        "please relay abc\n",
        "please relay " TOKEN " for side\n",
        "please relay " TOKEN " for side 0123456789abcde\n",                              /* 15 */
        "please relay 113064e96a4e111193823ddccd8af67719ad17534f918cf1a2ffb2ca29f0e4f\n", /* 63 */
        "please relay " TOKEN " \n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tr_hs_t hs;
        tr_hs_init(&hs);
        assert_int_equal(feed_all(&hs, bad[i], strlen(bad[i])), TR_HS_BAD);
    }
}

static void test_overlong(void **state)
{
    (void)state;
    /* 17 side characters: the 104th byte is not the newline. */
    const char *line = "please relay " TOKEN " for side 0123456789abcdef0\n";
    tr_hs_t hs;
    size_t used;
    tr_hs_init(&hs);
    assert_int_equal(tr_hs_feed(&hs, (const uint8_t *)line, strlen(line), &used), TR_HS_BAD);
    assert_int_equal(used, TR_HS_MAX_LEN - 1);
    /* 65 token characters. */
    const char *tok65 = "please relay " TOKEN "0\n";
    tr_hs_init(&hs);
    assert_int_equal(feed_all(&hs, tok65, strlen(tok65)), TR_HS_BAD);
    /* A long run without a newline, fed in pieces: bad by byte 104 at the latest. */
    char junk[300];
    memset(junk, 'a', sizeof(junk));
    memcpy(junk, "please relay ", 13);
    tr_hs_init(&hs);
    tr_hs_result_t r = TR_HS_MORE;
    size_t fed = 0;
    while (r == TR_HS_MORE && fed < sizeof(junk)) {
        r = tr_hs_feed(&hs, (const uint8_t *)junk + fed, 7, NULL);
        fed += 7;
    }
    assert_int_equal(r, TR_HS_BAD);
    assert_true(fed <= TR_HS_MAX_LEN + 7);
}

static void test_garbage(void **state)
{
    (void)state;
    const char *bad[] = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "PLEASE RELAY " TOKEN "\n",
        "please  relay " TOKEN "\n",
        "please relay " TOKEN "\r\n",
        "please relay " TOKEN " for  side 0123456789abcdef\n",
        "please relay " TOKEN " for side 0123456789abcdef\r\n",
        "transit sender b6c1414bd2e9486f299d37b29bc247c8b2d8b15fb3129c6c444b667f24957ca2 ready\n\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS ClientHello */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tr_hs_t hs;
        tr_hs_init(&hs);
        assert_int_equal(feed_all(&hs, bad[i], strlen(bad[i])), TR_HS_BAD);
    }
    /* A NUL byte. */
    tr_hs_t hs;
    tr_hs_init(&hs);
    assert_int_equal(feed_all(&hs, "please\0", 7), TR_HS_BAD);
    /* A non-ASCII letter is not a word character (bytes, as Python's \w on bytes). */
    char line[] = LEGACY_LINE;
    line[20] = (char)0xc3;
    tr_hs_init(&hs);
    assert_int_equal(feed_all(&hs, line, strlen(line)), TR_HS_BAD);
}

/* The Python relay matches \w, not hex: letters, digits and '_' pass. */
static void test_word_characters(void **state)
{
    (void)state;
    const char *line = "please relay "
                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz0123456789_"
                       " for side Side_of_16_chars\n";
    tr_hs_t hs;
    tr_hs_init(&hs);
    assert_int_equal(feed_all(&hs, line, strlen(line)), TR_HS_DONE);
    assert_string_equal(hs.side, "Side_of_16_chars");
    assert_memory_equal(hs.token, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_", 27);
}

static void test_blur_size(void **state)
{
    (void)state;
    /* Python's blur_size(): round up to 10 kB / 1 MB / 100 MB steps. */
    assert_int_equal(tr_blur_size(0), 0);
    assert_int_equal(tr_blur_size(1), 10000);
    assert_int_equal(tr_blur_size(10000), 10000);
    assert_int_equal(tr_blur_size(10001), 20000);
    assert_int_equal(tr_blur_size(40446), 50000);
    assert_int_equal(tr_blur_size(999999), 1000000);
    assert_int_equal(tr_blur_size(1000000), 1000000);
    assert_int_equal(tr_blur_size(1000001), 2000000);
    assert_int_equal(tr_blur_size(999999999), 1000000000);
    assert_int_equal(tr_blur_size(1000000000), 1000000000);
    assert_int_equal(tr_blur_size(1000000001), 1100000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_vectors_whole),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_impatient),
        cmocka_unit_test(test_wrong_byte_everywhere),
        cmocka_unit_test(test_newline_early),
        cmocka_unit_test(test_overlong),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_word_characters),
        cmocka_unit_test(test_blur_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
