/*
 * test_netaddr.c - peer addresses: every text form parses and formats back,
 * each malformed form is refused with its reason, a host name is told apart
 * (WB_ENOENT) so the CLI can resolve it, the valid/local/routable ranges,
 * group keys are masked (two addresses of one /16 share a group: tendermint
 * formatted the unmasked IP), IPv4-mapped and embedded-IPv4 forms, strict
 * and loose groups, equality, socket address round trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "apps/peer/netaddr.h"
#include "runtime/error.h"

static const char ID[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static wb_netaddr_t P(const char *s)
{
    wb_netaddr_t a;
    char err[128] = "";
    int rc = wb_netaddr_parse(s, 0, &a, err, sizeof(err));
    if (rc != 0)
        print_error("parse %s: %s\n", s, err);
    assert_int_equal(rc, 0);
    return a;
}

static void roundtrip(const char *in, const char *out)
{
    wb_netaddr_t a = P(in);
    char buf[WB_NETADDR_STRLEN];
    size_t n = wb_netaddr_str(&a, 1, buf, sizeof(buf));
    assert_string_equal(buf, out);
    assert_int_equal(n, strlen(out));
    assert_true(n < WB_NETADDR_STRLEN);
}

static void test_parse_forms(void **state)
{
    char s[256];
    snprintf(s, sizeof(s), "%s@1.2.3.4:26656", ID);
    roundtrip(s, s);
    wb_netaddr_t a = P(s);
    assert_int_equal(a.has_id, 1);
    assert_int_equal(a.family, 4);
    assert_int_equal(a.port, 26656);
    assert_memory_equal(a.ip, ((uint8_t[16]){1, 2, 3, 4}), 16);
    assert_int_equal(a.id[0], 0x01);
    assert_int_equal(a.id[31], 0xef);

    roundtrip("1.2.3.4:1", "1.2.3.4:1");
    roundtrip("tcp://1.2.3.4:65535", "1.2.3.4:65535");
    roundtrip("[2001:4860::8888]:443", "[2001:4860::8888]:443");
    snprintf(s, sizeof(s), "tcp://%s@[::1]:80", ID);
    char want[256];
    snprintf(want, sizeof(want), "%s@[::1]:80", ID);
    roundtrip(s, want);
    /* Upper case id is read, written lower case. */
    char up[65];
    for (int i = 0; i < 64; i++)
        up[i] = (char)(ID[i] >= 'a' ? ID[i] - 32 : ID[i]);
    up[64] = 0;
    snprintf(s, sizeof(s), "%s@10.0.0.1:5", up);
    snprintf(want, sizeof(want), "%s@10.0.0.1:5", ID);
    roundtrip(s, want);
    /* IPv4-mapped becomes IPv4. */
    a = P("[::ffff:8.8.4.4]:53");
    assert_int_equal(a.family, 4);
    roundtrip("[::ffff:8.8.4.4]:53", "8.8.4.4:53");
    /* Without the id when asked. */
    snprintf(s, sizeof(s), "%s@1.2.3.4:7", ID);
    a = P(s);
    char buf[WB_NETADDR_STRLEN];
    wb_netaddr_str(&a, 0, buf, sizeof(buf));
    assert_string_equal(buf, "1.2.3.4:7");
    wb_netaddr_ip_str(&a, buf, sizeof(buf));
    assert_string_equal(buf, "1.2.3.4");
    /* Longest form fits. */
    snprintf(s, sizeof(s), "%s@[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535", ID);
    roundtrip(s, s);
}

static void expect_err(const char *s, int need_id, int code, const char *reason)
{
    wb_netaddr_t a;
    char err[160] = "";
    memset(&a, 0x55, sizeof(a));
    int rc = wb_netaddr_parse(s, need_id, &a, err, sizeof(err));
    if (rc != code || strstr(err, reason) == NULL)
        print_error("%s: got %d '%s', want %d '%s'\n", s, rc, err, code, reason);
    assert_int_equal(rc, code);
    assert_non_null(strstr(err, reason));
    wb_netaddr_t zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&a, &zero, sizeof(a));
}

static void test_parse_errors(void **state)
{
    char s[300];
    expect_err("1.2.3.4:26656", 1, WB_EINVAL, "node id missing");
    expect_err("abcd@1.2.3.4:1", 0, WB_EINVAL, "node id must be 64 hex characters");
    snprintf(s, sizeof(s), "%.63sg@1.2.3.4:1", ID);
    expect_err(s, 0, WB_EINVAL, "node id must be 64 hex characters");
    snprintf(s, sizeof(s), "%s0@1.2.3.4:1", ID);
    expect_err(s, 0, WB_EINVAL, "node id must be 64 hex characters");
    expect_err("1.2.3.4:0", 0, WB_EINVAL, "port out of range");
    expect_err("1.2.3.4:65536", 0, WB_EINVAL, "port out of range");
    expect_err("1.2.3.4:99999999999999999999", 0, WB_EINVAL, "port out of range");
    expect_err("1.2.3.4:", 0, WB_EINVAL, "port missing");
    expect_err("1.2.3.4", 0, WB_EINVAL, "port missing");
    expect_err("1.2.3.4:8x", 0, WB_EINVAL, "port must be a number");
    expect_err("1.2.3.4:-1", 0, WB_EINVAL, "port must be a number");
    expect_err(":80", 0, WB_EINVAL, "host missing");
    expect_err("[]:80", 0, WB_EINVAL, "host missing");
    expect_err("::1:80", 0, WB_EINVAL, "brackets");
    expect_err("[::1]80", 0, WB_EINVAL, "port missing");
    expect_err("[::1:80", 0, WB_EINVAL, "missing ']'");
    expect_err("[1.2.3]:80", 0, WB_EINVAL, "not an IPv6 address");
    expect_err("[fe80::1%eth0]:80", 0, WB_EINVAL, "not an IPv6 address");
    expect_err("udp://1.2.3.4:80", 0, WB_EINVAL, "unsupported scheme");
    expect_err("1.2.3.256:80", 0, WB_ENOENT, "not an IP literal");
    expect_err("example.com:80", 0, WB_ENOENT, "not an IP literal: example.com");
    expect_err("", 0, WB_EINVAL, "port missing");
    /* NULL err is fine. */
    wb_netaddr_t a;
    assert_int_equal(wb_netaddr_parse("x", 0, &a, NULL, 0), WB_EINVAL);
    assert_int_equal(wb_netaddr_parse(NULL, 0, &a, NULL, 0), WB_EINVAL);
}

/* The CLI's path: split, resolve, set_ip. */
static void test_split_and_names(void **state)
{
    char s[300], host[256];
    uint8_t id[32];
    int has_id;
    uint16_t port;
    snprintf(s, sizeof(s), "%s@seed.example.org:26656", ID);
    assert_int_equal(wb_netaddr_split(s, 1, id, &has_id, host, sizeof(host), &port, NULL, 0), 0);
    assert_int_equal(has_id, 1);
    assert_string_equal(host, "seed.example.org");
    assert_int_equal(port, 26656);
    assert_false(wb_netaddr_is_ip_literal(host));
    assert_true(wb_netaddr_is_ip_literal("127.0.0.1"));
    assert_true(wb_netaddr_is_ip_literal("::1"));
    assert_false(wb_netaddr_is_ip_literal("[::1]"));
    wb_netaddr_t a;
    memset(&a, 0, sizeof(a));
    assert_int_equal(wb_netaddr_set_ip(&a, "93.184.216.34"), 0);
    assert_int_equal(a.family, 4);
    assert_int_equal(wb_netaddr_set_ip(&a, "nope"), WB_EINVAL);
    /* A host longer than the buffer is refused, not cut. */
    char small[8];
    assert_int_equal(
        wb_netaddr_split("verylonghost:1", 0, id, &has_id, small, sizeof(small), &port, NULL, 0),
        WB_EINVAL);

    uint8_t id2[32];
    char hex[65];
    assert_int_equal(wb_node_id_parse(ID, 64, id2), 0);
    wb_node_id_hex(id2, hex);
    assert_string_equal(hex, ID);
    assert_int_equal(wb_node_id_parse(ID, 63, id2), WB_EINVAL);
    assert_int_equal(wb_node_id_parse("zz", 2, id2), WB_EINVAL);
}

static void test_properties(void **state)
{
    struct {
        const char *a;
        int valid, local, routable;
    } t[] = {
        {"0.0.0.0:1", 0, 1, 0},       {"255.255.255.255:1", 0, 0, 0},
        {"[::]:1", 0, 0, 0},          {"[2001:db8::1]:1", 0, 0, 0},
        {"[2001:db9::1]:1", 1, 0, 1}, {"127.0.0.1:1", 1, 1, 0},
        {"127.255.0.9:1", 1, 1, 0},   {"0.1.2.3:1", 1, 1, 0},
        {"[::1]:1", 1, 1, 0},         {"10.1.2.3:1", 1, 0, 0},
        {"172.16.0.1:1", 1, 0, 0},    {"172.31.255.255:1", 1, 0, 0},
        {"172.32.0.1:1", 1, 0, 1},    {"172.15.0.1:1", 1, 0, 1},
        {"192.168.1.1:1", 1, 0, 0},   {"169.254.3.3:1", 1, 0, 0},
        {"[fe80::1]:1", 1, 0, 0},     {"[fe80:0:0:1::1]:1", 1, 0, 1}, /* outside fe80::/64 */
        {"[fc00::1]:1", 1, 0, 0},     {"[fdff::1]:1", 1, 0, 0},
        {"[2001:10::1]:1", 1, 0, 0},  {"[2001:1f::1]:1", 1, 0, 0},
        {"[2001:20::1]:1", 1, 0, 1},  {"8.8.8.8:1", 1, 0, 1},
        {"[2a01:4f8::1]:1", 1, 0, 1}, {"[::ffff:127.0.0.1]:1", 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        wb_netaddr_t a = P(t[i].a);
        if (wb_netaddr_valid(&a) != t[i].valid || wb_netaddr_local(&a) != t[i].local ||
            wb_netaddr_routable(&a) != t[i].routable)
            print_error("%s: %d %d %d\n", t[i].a, wb_netaddr_valid(&a), wb_netaddr_local(&a),
                        wb_netaddr_routable(&a));
        assert_int_equal(wb_netaddr_valid(&a), t[i].valid);
        assert_int_equal(wb_netaddr_local(&a), t[i].local);
        assert_int_equal(wb_netaddr_routable(&a), t[i].routable);
    }
    wb_netaddr_t z;
    memset(&z, 0, sizeof(z));
    assert_false(wb_netaddr_valid(&z)); /* no family */
}

static void group_is(const char *a, int strict, const char *want)
{
    wb_netaddr_t x = P(a);
    char g[WB_NETADDR_GROUPLEN];
    size_t n = wb_netaddr_group(&x, strict, g);
    if (strcmp(g, want) != 0)
        print_error("%s (strict %d): %s, want %s\n", a, strict, g, want);
    assert_string_equal(g, want);
    assert_int_equal(n, strlen(want));
}

static void test_groups(void **state)
{
    /* Masked: the same /16 is the same group (tendermint#4846). */
    group_is("8.8.8.8:1", 1, "8.8.0.0/16");
    group_is("8.8.200.7:9", 1, "8.8.0.0/16");
    group_is("8.9.8.8:1", 1, "8.9.0.0/16");
    group_is("[2a01:4f8:1:2::3]:1", 1, "2a01:4f8::/32");
    group_is("[2a01:4f8:ffff::]:1", 1, "2a01:4f8::/32");
    group_is("[2001:470:1234::1]:1", 1, "2001:470:1000::/36");
    group_is("[::ffff:8.8.4.4]:1", 1, "8.8.0.0/16");
    group_is("[2002:0808:0404::1]:1", 1, "8.8.0.0/16");     /* 6to4 */
    group_is("[2001:0:1:2::f7f7:fbfb]:1", 1, "8.8.0.0/16"); /* Teredo: inverted */
    group_is("[64:ff9b::8.8.4.4]:1", 1, "8.8.0.0/16");      /* NAT64 */
    /* Strict: local and unroutable. */
    group_is("127.0.0.1:1", 1, "local");
    group_is("[::1]:1", 1, "local");
    group_is("10.1.2.3:1", 1, "unroutable");
    group_is("[fc00::1]:1", 1, "unroutable");
    /* Loose (a test network): plain /16. */
    group_is("127.0.0.1:1", 0, "127.0.0.0/16");
    group_is("127.0.3.1:1", 0, "127.0.0.0/16");
    group_is("10.1.2.3:1", 0, "10.1.0.0/16");
    group_is("192.168.7.1:1", 0, "192.168.0.0/16");
    wb_netaddr_t z;
    char g[WB_NETADDR_GROUPLEN];
    memset(&z, 0, sizeof(z));
    wb_netaddr_group(&z, 0, g);
    assert_string_equal(g, "unknown");
}

static void test_equality_and_sockaddr(void **state)
{
    char s1[200], s2[200];
    snprintf(s1, sizeof(s1), "%s@1.2.3.4:5", ID);
    snprintf(s2, sizeof(s2), "%s@9.9.9.9:5", ID);
    wb_netaddr_t a = P(s1), b = P(s2), c = P("1.2.3.4:5"), d = P("1.2.3.4:6");
    assert_true(wb_netaddr_equal(&a, &a));
    assert_false(wb_netaddr_equal(&a, &c)); /* one has an id */
    assert_true(wb_netaddr_same_endpoint(&a, &c));
    assert_false(wb_netaddr_same_endpoint(&c, &d));
    assert_true(wb_netaddr_same(&a, &b)); /* same id */
    assert_true(wb_netaddr_same(&a, &c)); /* same endpoint */
    assert_false(wb_netaddr_same(&c, &d));

    struct sockaddr_storage ss;
    wb_netaddr_t back;
    const char *forms[] = {"1.2.3.4:5", "[2a01:4f8::1]:443"};
    for (int i = 0; i < 2; i++) {
        wb_netaddr_t x = P(forms[i]);
        size_t len = wb_netaddr_to_sockaddr(&x, (struct sockaddr *)&ss, sizeof(ss));
        assert_true(len > 0);
        assert_int_equal(wb_netaddr_from_sockaddr(&back, (struct sockaddr *)&ss), 0);
        assert_true(wb_netaddr_equal(&x, &back));
    }
    /* A mapped socket address comes back as IPv4. */
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(80);
    uint8_t m[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
    memcpy(&s6.sin6_addr, m, 16);
    assert_int_equal(wb_netaddr_from_sockaddr(&back, (struct sockaddr *)&s6), 0);
    assert_true(wb_netaddr_equal(&back, &c) == 0);
    assert_int_equal(back.family, 4);
    assert_int_equal(back.port, 80);
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(wb_netaddr_from_sockaddr(&back, &un), WB_EINVAL);
    memset(&back, 0, sizeof(back));
    assert_int_equal(wb_netaddr_to_sockaddr(&back, (struct sockaddr *)&ss, sizeof(ss)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_forms),     cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_split_and_names), cmocka_unit_test(test_properties),
        cmocka_unit_test(test_groups),          cmocka_unit_test(test_equality_and_sockaddr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
