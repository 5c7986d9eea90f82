/*
 * test_pex_proto.c - the PEX messages: request and addrs round trips (none,
 * one, IPv4 and IPv6 mixed, the full 250), the exact byte layout, the
 * encoder's refusals (too many, no id, bad family, short buffer), and every
 * decoder error: empty, unknown type, count over 250, truncation at every
 * length, bad family, trailing bytes, oversize; a mapped IPv6 entry comes
 * out as IPv4.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apps/peer/pex_proto.h"
#include "runtime/error.h"

static wb_netaddr_t mk(int i, int v6)
{
    wb_netaddr_t a;
    memset(&a, 0, sizeof(a));
    for (int k = 0; k < 32; k++)
        a.id[k] = (uint8_t)(i * 7 + k);
    a.has_id = 1;
    a.family = v6 ? 6 : 4;
    if (v6) {
        a.ip[0] = 0x2a;
        a.ip[1] = 0x01;
        a.ip[15] = (uint8_t)i;
    } else {
        a.ip[0] = 8;
        a.ip[1] = (uint8_t)(i >> 8);
        a.ip[2] = (uint8_t)i;
        a.ip[3] = 1;
    }
    a.port = (uint16_t)(1000 + i);
    return a;
}

static wb_pex_msg_t msg;

static void test_request(void **state)
{
    uint8_t buf[4];
    size_t len = 0;
    char err[128];
    assert_int_equal(wb_pex_encode_request(buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 1);
    assert_int_equal(buf[0], 0x01);
    assert_int_equal(wb_pex_decode(buf, len, &msg, err, sizeof(err)), 0);
    assert_int_equal(msg.type, WB_PEX_REQUEST);
    assert_int_equal(wb_pex_encode_request(buf, 0, &len), WB_ETOOBIG);
}

static void roundtrip(size_t n, int mix)
{
    static wb_netaddr_t in[WB_PEX_MAX_ADDRS];
    static uint8_t buf[WB_PEX_MAX_MSG];
    for (size_t i = 0; i < n; i++)
        in[i] = mk((int)i, mix ? (int)(i & 1) : 0);
    size_t want = wb_pex_addrs_size(in, n), len = 0;
    assert_true(want >= 3 && want <= WB_PEX_MAX_MSG);
    assert_int_equal(wb_pex_encode_addrs(in, n, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, want);
    char err[128] = "";
    assert_int_equal(wb_pex_decode(buf, len, &msg, err, sizeof(err)), 0);
    assert_int_equal(msg.type, WB_PEX_ADDRS);
    assert_int_equal(msg.count, n);
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(&msg.addrs[i], &in[i], sizeof(in[i]));
    /* One byte short of the buffer is refused. */
    assert_int_equal(wb_pex_encode_addrs(in, n, buf, len - 1, &len), WB_ETOOBIG);
}

static void test_addrs_roundtrip(void **state)
{
    roundtrip(0, 0);
    roundtrip(1, 0);
    roundtrip(2, 1);
    roundtrip(17, 1);
    roundtrip(WB_PEX_MAX_ADDRS, 0);
    roundtrip(WB_PEX_MAX_ADDRS, 1);
    /* The largest message is exactly WB_PEX_MAX_MSG. */
    static wb_netaddr_t in[WB_PEX_MAX_ADDRS];
    for (int i = 0; i < WB_PEX_MAX_ADDRS; i++)
        in[i] = mk(i, 1);
    assert_int_equal(wb_pex_addrs_size(in, WB_PEX_MAX_ADDRS), WB_PEX_MAX_MSG);
}

static void test_layout(void **state)
{
    wb_netaddr_t a[2] = {mk(1, 0), mk(2, 1)};
    uint8_t buf[200];
    size_t len;
    assert_int_equal(wb_pex_encode_addrs(a, 2, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 3 + 39 + 51);
    assert_int_equal(buf[0], 0x02);
    assert_int_equal(buf[1], 0);
    assert_int_equal(buf[2], 2);
    assert_memory_equal(buf + 3, a[0].id, 32);
    assert_int_equal(buf[35], 4);
    assert_memory_equal(buf + 36, ((uint8_t[]){8, 0, 1, 1}), 4);
    assert_int_equal(buf[40], 1001 >> 8);
    assert_int_equal(buf[41], 1001 & 255);
    assert_memory_equal(buf + 42, a[1].id, 32);
    assert_int_equal(buf[74], 6);
    assert_memory_equal(buf + 75, a[1].ip, 16);
    assert_int_equal(buf[91], 1002 >> 8);
    assert_int_equal(buf[92], 1002 & 255);
}

static void test_encode_refusals(void **state)
{
    static wb_netaddr_t in[WB_PEX_MAX_ADDRS + 1];
    static uint8_t buf[WB_PEX_MAX_MSG + 100];
    size_t len;
    for (int i = 0; i <= WB_PEX_MAX_ADDRS; i++)
        in[i] = mk(i, 0);
    assert_int_equal(wb_pex_addrs_size(in, WB_PEX_MAX_ADDRS + 1), 0);
    assert_int_equal(wb_pex_encode_addrs(in, WB_PEX_MAX_ADDRS + 1, buf, sizeof(buf), &len),
                     WB_EINVAL);
    in[3].has_id = 0;
    assert_int_equal(wb_pex_encode_addrs(in, 5, buf, sizeof(buf), &len), WB_EINVAL);
    in[3] = mk(3, 0);
    in[4].family = 5;
    assert_int_equal(wb_pex_encode_addrs(in, 5, buf, sizeof(buf), &len), WB_EINVAL);
}

static void expect(const uint8_t *buf, size_t len, int code, const char *reason)
{
    char err[128] = "";
    int rc = wb_pex_decode(buf, len, &msg, err, sizeof(err));
    if (rc != code || strcmp(err, reason) != 0)
        print_error("got %d '%s', want %d '%s'\n", rc, err, code, reason);
    assert_int_equal(rc, code);
    assert_string_equal(err, reason);
    assert_int_equal(msg.count, 0);
}

static void test_decode_errors(void **state)
{
    static uint8_t buf[WB_PEX_MAX_MSG + 2];
    expect(buf, 0, WB_EPROTO, "empty pex message");
    buf[0] = 0x07;
    expect(buf, 1, WB_EPROTO, "unknown pex message type 0x07");
    buf[0] = 0x00;
    expect(buf, 1, WB_EPROTO, "unknown pex message type 0x00");
    buf[0] = 0x01;
    buf[1] = 0x01;
    expect(buf, 2, WB_EPROTO, "trailing bytes after pex request");
    buf[0] = 0x02;
    expect(buf, 1, WB_EPROTO, "truncated addrs count");
    expect(buf, 2, WB_EPROTO, "truncated addrs count");
    buf[1] = 300 >> 8;
    buf[2] = 300 & 255;
    expect(buf, 3, WB_EPROTO, "addrs count 300 exceeds 250");
    buf[1] = 0xff;
    buf[2] = 0xff;
    expect(buf, 3, WB_EPROTO, "addrs count 65535 exceeds 250");

    /* Five entries, v4 and v6; every shorter length is truncated at the
     * right entry, never read past. */
    wb_netaddr_t in[5];
    for (int i = 0; i < 5; i++)
        in[i] = mk(i, i % 2);
    size_t len;
    assert_int_equal(wb_pex_encode_addrs(in, 5, buf, sizeof(buf), &len), 0);
    size_t ends[5], off = 3;
    for (int i = 0; i < 5; i++) {
        off += in[i].family == 4 ? 39 : 51;
        ends[i] = off;
    }
    for (size_t l = 3; l < len; l++) {
        uint8_t *copy = malloc(l); /* exact size: ASan sees any overread */
        memcpy(copy, buf, l);
        size_t e = 0;
        while (ends[e] <= l)
            e++;
        char want[64];
        snprintf(want, sizeof(want), "truncated entry %zu", e);
        expect(copy, l, WB_EPROTO, want);
        free(copy);
    }
    /* Trailing bytes. */
    buf[len] = 0;
    expect(buf, len + 1, WB_EPROTO, "trailing bytes");
    /* Bad family in entry 3. */
    buf[ends[2] + 32] = 9;
    expect(buf, len, WB_EPROTO, "bad family 9 in entry 3");
    /* Oversize. */
    memset(buf, 0, sizeof(buf));
    buf[0] = 0x02;
    char want[80];
    snprintf(want, sizeof(want), "pex message of %u bytes exceeds %u", WB_PEX_MAX_MSG + 1,
             WB_PEX_MAX_MSG);
    expect(buf, WB_PEX_MAX_MSG + 1, WB_ETOOBIG, want);
    /* No err buffer: still refused. */
    assert_int_equal(wb_pex_decode(buf, 0, &msg, NULL, 0), WB_EPROTO);
}

static void test_mapped_entry(void **state)
{
    uint8_t buf[3 + 51];
    wb_netaddr_t a = mk(9, 1);
    memset(a.ip, 0, 16);
    a.ip[10] = a.ip[11] = 0xff;
    a.ip[12] = 8;
    a.ip[13] = 8;
    a.ip[14] = 4;
    a.ip[15] = 4;
    size_t len;
    assert_int_equal(wb_pex_encode_addrs(&a, 1, buf, sizeof(buf), &len), 0);
    assert_int_equal(wb_pex_decode(buf, len, &msg, NULL, 0), 0);
    assert_int_equal(msg.addrs[0].family, 4);
    assert_memory_equal(msg.addrs[0].ip, ((uint8_t[16]){8, 8, 4, 4}), 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request),       cmocka_unit_test(test_addrs_roundtrip),
        cmocka_unit_test(test_layout),        cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_decode_errors), cmocka_unit_test(test_mapped_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
