/*
 * test_error.c - the one error code space: every code is negative and
 * distinct, and has its own text and its own name.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/error.h"

typedef struct {
    int code;
    const char *ident; /* "ENOMEM" */
    const char *text;  /* the text the map gives */
} code_t;

static const code_t codes[] = {
#define X(name, code, text) {WB_##name, #name, text},
    WB_ERRNO_MAP(X)
#undef X
};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

static void test_codes_negative_and_distinct(void **state)
{
    (void)state;
    assert_true(NCODES >= 18);
    assert_int_equal(WB_OK, 0);
    for (size_t i = 0; i < NCODES; i++) {
        assert_true(codes[i].code < 0);
        for (size_t j = i + 1; j < NCODES; j++)
            assert_int_not_equal(codes[i].code, codes[j].code);
    }
    /* The enum constants are the values the map gives. */
    assert_int_equal(WB_ENOMEM, -1);
    assert_int_equal(WB_EAGAIN, -3);
    assert_int_equal(WB_ESTATE, -18);
}

static void test_text_is_the_maps_and_distinct(void **state)
{
    (void)state;
    const char *unknown = wb_strerror(1);
    assert_string_equal(unknown, "unknown error");
    for (size_t i = 0; i < NCODES; i++) {
        const char *t = wb_strerror(codes[i].code);
        assert_non_null(t);
        assert_string_equal(t, codes[i].text);
        assert_true(strlen(t) > 0);
        assert_string_not_equal(t, unknown);
        assert_string_not_equal(t, wb_strerror(WB_OK));
        for (size_t j = i + 1; j < NCODES; j++)
            assert_string_not_equal(t, wb_strerror(codes[j].code));
    }
}

static void test_names(void **state)
{
    (void)state;
    char want[64];
    assert_string_equal(wb_err_name(WB_OK), "WB_OK");
    for (size_t i = 0; i < NCODES; i++) {
        const char *n = wb_err_name(codes[i].code);
        assert_non_null(n);
        snprintf(want, sizeof(want), "WB_%s", codes[i].ident);
        assert_string_equal(n, want);
        for (size_t j = i + 1; j < NCODES; j++)
            assert_string_not_equal(n, wb_err_name(codes[j].code));
    }
    assert_string_equal(wb_err_name(WB_ETIMEDOUT), "WB_ETIMEDOUT");
}

static void test_unknown_codes(void **state)
{
    (void)state;
    const int unknown[] = {1, 2, 42, -19, -100, -1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(wb_strerror(unknown[i]), "unknown error");
        const char *n = wb_err_name(unknown[i]);
        assert_non_null(n);
        assert_string_not_equal(n, "WB_OK");
        for (size_t j = 0; j < NCODES; j++)
            assert_string_not_equal(n, wb_err_name(codes[j].code));
    }
    /* Every value between the known codes is either a code or unknown. */
    for (int c = -64; c <= 64; c++) {
        int known = c == 0;
        for (size_t j = 0; j < NCODES; j++)
            known |= codes[j].code == c;
        if (!known)
            assert_string_equal(wb_strerror(c), "unknown error");
        else
            assert_string_not_equal(wb_strerror(c), "unknown error");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_negative_and_distinct),
        cmocka_unit_test(test_text_is_the_maps_and_distinct),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_unknown_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
