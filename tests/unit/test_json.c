/*
 * test_json.c - the JSON message codec of dispatch/: what decodes (an object,
 * its "type" and "id" picked out; trailing whitespace; escapes decoded to
 * UTF-8) and what is refused with which code and reason (not JSON, trailing
 * garbage, bad UTF-8, numbers that overflow a double, JSON that is not an
 * object); string members; the compact encoding (17 significant digits,
 * raw UTF-8); routing by type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dispatch/json.h"
#include "runtime/error.h"

static int decode(wb_json_msg_t *m, const char *text, char *err, size_t errlen)
{
    return wb_json_msg_decode(m, text, strlen(text), err, errlen);
}

/* A refusal: the code, an error text containing `want`, and m empty. */
static void refused(const char *text, size_t len, int code, const char *want)
{
    wb_json_msg_t m;
    char err[160] = "";
    memset(&m, 0xa5, sizeof(m));
    assert_int_equal(wb_json_msg_decode(&m, text, len, err, sizeof(err)), code);
    assert_null(m.obj);
    assert_null(m.type);
    assert_null(m.id);
    assert_int_equal(m.has_type, 0);
    if (strstr(err, want) == NULL)
        fail_msg("decoding <%.*s>: error \"%s\" does not contain \"%s\"", (int)len, text, err,
                 want);
}

static void test_object_with_type_and_id(void **state)
{
    (void)state;
    wb_json_msg_t m;
    char err[160];
    assert_int_equal(
        decode(&m, "{\"type\":\"claim\",\"id\":\"a1b2\",\"nameplate\":\"4\"}", err, sizeof(err)),
        0);
    assert_non_null(m.obj);
    assert_true(json_is_object(m.obj));
    assert_int_equal(m.has_type, 1);
    assert_string_equal(m.type, "claim");
    assert_non_null(m.id);
    assert_string_equal(json_string_value(m.id), "a1b2");
    /* The id is the object's own member (borrowed). */
    assert_ptr_equal(m.id, json_object_get(m.obj, "id"));
    assert_string_equal(json_string_value(json_object_get(m.obj, "nameplate")), "4");
    wb_json_msg_free(&m);
    assert_null(m.obj);

    /* An id of any JSON type is picked out as is. */
    assert_int_equal(decode(&m, "{\"id\":7,\"type\":\"ping\"}", err, sizeof(err)), 0);
    assert_true(json_is_integer(m.id));
    assert_int_equal(json_integer_value(m.id), 7);
    wb_json_msg_free(&m);
    assert_int_equal(decode(&m, "{\"id\":null,\"type\":\"ping\"}", err, sizeof(err)), 0);
    assert_non_null(m.id);
    assert_true(json_is_null(m.id));
    wb_json_msg_free(&m);

    /* No id: NULL. The empty object decodes. */
    assert_int_equal(decode(&m, "{}", err, sizeof(err)), 0);
    assert_non_null(m.obj);
    assert_null(m.id);
    assert_null(m.type);
    assert_int_equal(m.has_type, 0);
    wb_json_msg_free(&m);
}

static void test_missing_and_non_string_type(void **state)
{
    (void)state;
    wb_json_msg_t m;
    char err[160];
    assert_int_equal(decode(&m, "{\"id\":\"x\",\"side\":\"a\"}", err, sizeof(err)), 0);
    assert_int_equal(m.has_type, 0);
    assert_null(m.type);
    wb_json_msg_free(&m);

    static const char *const non_strings[] = {
        "{\"type\":5}",         "{\"type\":null}", "{\"type\":[\"bind\"]}",
        "{\"type\":{\"a\":1}}", "{\"type\":true}", "{\"type\":1.5}",
    };
    for (size_t i = 0; i < sizeof(non_strings) / sizeof(non_strings[0]); i++) {
        assert_int_equal(decode(&m, non_strings[i], err, sizeof(err)), 0);
        assert_int_equal(m.has_type, 1);
        assert_null(m.type);
        wb_json_msg_free(&m);
    }
    /* The empty string is a string. */
    assert_int_equal(decode(&m, "{\"type\":\"\"}", err, sizeof(err)), 0);
    assert_int_equal(m.has_type, 1);
    assert_string_equal(m.type, "");
    wb_json_msg_free(&m);
}

static void test_trailing_whitespace_accepted(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{\"type\":\"ping\"}\n", /* Go's encoder */
        "{\"type\":\"ping\"} \t\r\n ",
        " \n{\"type\":\"ping\"}",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        wb_json_msg_t m;
        char err[160];
        assert_int_equal(decode(&m, texts[i], err, sizeof(err)), 0);
        assert_string_equal(m.type, "ping");
        wb_json_msg_free(&m);
    }
    /* The length bounds the input: what follows is not looked at. */
    wb_json_msg_t m;
    const char buf[] = "{\"type\":\"ping\"}GARBAGE";
    assert_int_equal(wb_json_msg_decode(&m, buf, 15, NULL, 0), 0);
    assert_string_equal(m.type, "ping");
    wb_json_msg_free(&m);
}

static void test_not_json_refused(void **state)
{
    (void)state;
    /* Trailing garbage, two values, truncation, bare words. */
    refused("{\"type\":\"ping\"} x", 17, WB_EPROTO, "at byte");
    refused("{}{}", 4, WB_EPROTO, "at byte");
    refused("{\"type\":\"ping\"", 14, WB_EPROTO, "at byte");
    refused("", 0, WB_EPROTO, "at byte");
    refused("   ", 3, WB_EPROTO, "at byte");
    refused("{type:\"ping\"}", 13, WB_EPROTO, "at byte");
    refused("{'type':'ping'}", 15, WB_EPROTO, "at byte");
    refused("{\"a\":1,}", 8, WB_EPROTO, "at byte");
    refused("NaN", 3, WB_EPROTO, "at byte");
    /* A NUL inside the text is not JSON either. */
    refused("{\"type\":\"pi\0ng\"}", 16, WB_EPROTO, "control character 0x0");
    /* Invalid UTF-8: a lone continuation byte, an overlong encoding, a
     * surrogate encoded directly, and a truncated sequence. */
    refused("{\"type\":\"\x80\"}", 12, WB_EPROTO, "unable to decode byte 0x80");
    refused("{\"type\":\"\xc0\xaf\"}", 13, WB_EPROTO, "unable to decode byte 0xc0");
    refused("{\"type\":\"\xed\xa0\x80\"}", 14, WB_EPROTO, "unable to decode byte 0xed");
    refused("{\"type\":\"\xe2\x82\"}", 13, WB_EPROTO, "unable to decode byte 0xe2");
    /* A lone surrogate escape has no UTF-8 encoding. */
    refused("{\"type\":\"\\ud800\"}", 17, WB_EPROTO, "invalid Unicode");
    /* Numbers that do not fit a double (they would print as Infinity). */
    refused("{\"ping\":1e999999}", 17, WB_EPROTO, "overflow");
    refused("{\"ping\":-1e400}", 15, WB_EPROTO, "overflow");
    /* The error text is bounded by errlen and NUL-terminated. */
    wb_json_msg_t m;
    char err[8];
    memset(err, 'z', sizeof(err));
    assert_int_equal(wb_json_msg_decode(&m, "{", 1, err, sizeof(err)), WB_EPROTO);
    assert_non_null(memchr(err, 0, sizeof(err)));
    /* errlen 0: no error text written, still refused. */
    assert_int_equal(wb_json_msg_decode(&m, "{", 1, NULL, 0), WB_EPROTO);
}

static void test_non_object_refused(void **state)
{
    (void)state;
    refused("[1]", 3, WB_EINVAL, "got an array");
    refused("\"bind\"", 6, WB_EINVAL, "got a string");
    refused("5", 1, WB_EINVAL, "got a number");
    refused("-0.5e3", 6, WB_EINVAL, "got a number");
    refused("true", 4, WB_EINVAL, "got a boolean");
    refused("false", 5, WB_EINVAL, "got a boolean");
    refused("null", 4, WB_EINVAL, "got null");
    refused("[{\"type\":\"ping\"}]\n", 18, WB_EINVAL, "got an array");
}

static void test_escapes_decoded(void **state)
{
    (void)state;
    wb_json_msg_t m;
    char err[160];
    assert_int_equal(decode(&m, "{\"type\":\"caf\\u00e9\",\"b\":\"\\ud83d\\ude00\\n\\\"\\/\"}", err,
                            sizeof(err)),
                     0);
    assert_string_equal(m.type, "caf\xc3\xa9");
    const char *b;
    size_t n;
    assert_int_equal(wb_json_str(m.obj, "b", &b, &n), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(b, "\xf0\x9f\x98\x80\n\"/", 7);
    wb_json_msg_free(&m);
    /* Raw UTF-8 passes through unchanged. */
    assert_int_equal(decode(&m, "{\"type\":\"\xe6\x97\xa5\xe6\x9c\xac\"}", err, sizeof(err)), 0);
    assert_string_equal(m.type, "\xe6\x97\xa5\xe6\x9c\xac");
    wb_json_msg_free(&m);
}

static void test_str_member(void **state)
{
    (void)state;
    wb_json_msg_t m;
    char err[160];
    const char *s = NULL;
    size_t n = 99;
    assert_int_equal(
        decode(&m, "{\"side\":\"abc\",\"n\":5,\"z\":null,\"e\":\"\"}", err, sizeof(err)), 0);
    assert_int_equal(wb_json_str(m.obj, "side", &s, &n), 0);
    assert_string_equal(s, "abc");
    assert_int_equal(n, 3);
    assert_int_equal(wb_json_str(m.obj, "e", &s, &n), 0);
    assert_string_equal(s, "");
    assert_int_equal(n, 0);
    assert_int_equal(wb_json_str(m.obj, "missing", &s, &n), WB_ENOENT);
    assert_int_equal(wb_json_str(m.obj, "n", &s, &n), WB_EINVAL);
    /* null is present, and not a string. */
    assert_int_equal(wb_json_str(m.obj, "z", &s, &n), WB_EINVAL);
    wb_json_msg_free(&m);
}

static void test_encode(void **state)
{
    (void)state;
    size_t n;
    char *s;

    /* 17 significant digits: 0.1 is not 0.1 in binary, and says so. */
    json_t *r = json_real(0.1);
    s = wb_json_encode(r, &n);
    assert_string_equal(s, "0.10000000000000001");
    assert_int_equal(n, strlen(s));
    free(s);
    json_decref(r);

    /* A server_tx-like time reads back bit for bit. */
    const double t = 1700000000.1234567;
    r = json_real(t);
    s = wb_json_encode(r, &n);
    json_decref(r);
    json_t *back = json_loadb(s, n, JSON_DECODE_ANY, NULL);
    assert_non_null(back);
    assert_true(json_is_real(back));
    assert_memory_equal(&t, &(double){json_real_value(back)}, sizeof(double));
    json_decref(back);
    free(s);

    /* A whole real stays a real (a float on the wire, as Python sends). */
    r = json_real(1700000000.0);
    s = wb_json_encode(r, &n);
    assert_string_equal(s, "1700000000.0");
    free(s);
    json_decref(r);

    /* Non-ASCII is written as raw UTF-8, not \u escapes. */
    json_t *str = json_string("caf\xc3\xa9 \xf0\x9f\x98\x80");
    s = wb_json_encode(str, &n);
    assert_string_equal(s, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    assert_int_equal(n, 12);
    free(s);
    json_decref(str);

    /* Compact objects, member order kept. */
    json_t *o = json_pack("{s:s, s:i, s:[b, n]}", "type", "ack", "id", 7, "x", 1);
    s = wb_json_encode(o, &n);
    assert_string_equal(s, "{\"type\":\"ack\",\"id\":7,\"x\":[true,null]}");
    assert_int_equal(n, strlen(s));
    free(s);
    json_decref(o);

    /* Control characters are escaped. */
    str = json_string("a\n\"\x01");
    s = wb_json_encode(str, &n);
    assert_string_equal(s, "\"a\\n\\\"\\u0001\"");
    free(s);
    json_decref(str);
}

static void test_route(void **state)
{
    (void)state;
    static const char *const names[] = {"list", "allocate", "claim", "claim", "close"};
    assert_int_equal(wb_json_route(names, 5, "list"), 0);
    assert_int_equal(wb_json_route(names, 5, "claim"), 2); /* the first match */
    assert_int_equal(wb_json_route(names, 5, "close"), 4);
    assert_int_equal(wb_json_route(names, 5, "clos"), -1);
    assert_int_equal(wb_json_route(names, 5, "closed"), -1);
    assert_int_equal(wb_json_route(names, 5, ""), -1);
    assert_int_equal(wb_json_route(names, 5, NULL), -1);
    assert_int_equal(wb_json_route(names, 0, "list"), -1);
    /* n bounds the table. */
    assert_int_equal(wb_json_route(names, 4, "close"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_with_type_and_id),
        cmocka_unit_test(test_missing_and_non_string_type),
        cmocka_unit_test(test_trailing_whitespace_accepted),
        cmocka_unit_test(test_not_json_refused),
        cmocka_unit_test(test_non_object_refused),
        cmocka_unit_test(test_escapes_decoded),
        cmocka_unit_test(test_str_member),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_route),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
