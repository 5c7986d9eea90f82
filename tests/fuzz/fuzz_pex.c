/*
 * fuzz_pex.c - PEX messages and peer addresses from arbitrary bytes.
 *
 * Input: byte 0 picks the book's mode (bit 0 strict) and the bias of its
 * picks (the rest, mod 101); the remaining bytes are decoded as a PEX
 * message. A decoded message re-encodes to bytes that decode to the same
 * message. Every decoded address goes into a fresh address book (its
 * source the entry before it), a few are tried, promoted or marked bad,
 * and then pick, selection and selection_with_bias must work: whatever
 * they return is in the book, selections stay within their bounds and do
 * not repeat. The same bytes, as text, go through wb_netaddr_parse: an
 * address that parses formats back to text that parses to the same address.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/peer/addrbook.h"
#include "apps/peer/netaddr.h"
#include "apps/peer/pex_proto.h"
#include "runtime/error.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_pex: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static wb_pex_msg_t msg, again;
static uint8_t enc[WB_PEX_MAX_MSG];
static wb_netaddr_t sel[WB_ADDRBOOK_MAX_SELECTION];

static int skip_odd(void *arg, const wb_addrbook_rec_t *r)
{
    return r->addr.id[0] & 1;
}

static void check_text(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    wb_netaddr_t a, b;
    char err[128];
    int rc = wb_netaddr_parse(text, 0, &a, err, sizeof(err));
    CHECK(rc == 0 || rc == WB_EINVAL || rc == WB_ENOENT);
    if (rc == 0) {
        char s[WB_NETADDR_STRLEN], g[WB_NETADDR_GROUPLEN];
        size_t n = wb_netaddr_str(&a, 1, s, sizeof(s));
        CHECK(n < sizeof(s));
        CHECK(wb_netaddr_parse(s, a.has_id, &b, err, sizeof(err)) == 0);
        CHECK(wb_netaddr_equal(&a, &b));
        CHECK(wb_netaddr_group(&a, 1, g) < sizeof(g));
        CHECK(wb_netaddr_group(&a, 0, g) < sizeof(g));
        CHECK(!wb_netaddr_routable(&a) || wb_netaddr_valid(&a));
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_text(data, size);
    if (size < 1)
        return 0;
    int strict = data[0] & 1, bias = (data[0] >> 1) % 101;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    char err[128];
    int rc = wb_pex_decode(p, n, &msg, err, sizeof(err));
    if (rc != 0) {
        CHECK(rc == WB_EPROTO || rc == WB_ETOOBIG);
        CHECK(err[0] != '\0');
        return 0;
    }
    CHECK(msg.count <= WB_PEX_MAX_ADDRS);
    if (msg.type == WB_PEX_REQUEST) {
        CHECK(n == 1 && msg.count == 0);
        return 0;
    }
    size_t len;
    CHECK(wb_pex_encode_addrs(msg.addrs, msg.count, enc, sizeof(enc), &len) == 0);
    CHECK(len <= n);
    CHECK(wb_pex_decode(enc, len, &again, NULL, 0) == 0);
    CHECK(again.count == msg.count);
    CHECK(memcmp(again.addrs, msg.addrs, msg.count * sizeof(msg.addrs[0])) == 0);

    wb_addrbook_config_t cfg;
    wb_addrbook_t *b;
    wb_addrbook_config_init(&cfg);
    cfg.seed = 1 + data[0];
    cfg.strict = strict;
    CHECK(wb_addrbook_new(&cfg, &b) == 0);
    int64_t now = 1700000000000LL;
    for (size_t i = 0; i < msg.count; i++) {
        const wb_netaddr_t *src = &msg.addrs[i > 0 ? i - 1 : 0];
        rc = wb_addrbook_add(b, &msg.addrs[i], src, now + (int64_t)i);
        CHECK(rc == 0 || rc == 1 || rc == WB_EINVAL);
        uint8_t op = msg.addrs[i].port & 7;
        if (op == 1)
            wb_addrbook_mark_attempt(b, msg.addrs[i].id, now + (int64_t)i);
        else if (op == 2)
            wb_addrbook_mark_good(b, msg.addrs[i].id, now + (int64_t)i);
        else if (op == 3)
            wb_addrbook_mark_bad(b, msg.addrs[i].id, now + (int64_t)i);
    }
    size_t size_now = wb_addrbook_size(b);
    CHECK(size_now == wb_addrbook_n_new(b) + wb_addrbook_n_old(b));
    CHECK(size_now <= msg.count);
    wb_addrbook_rec_t r;
    for (int k = 0; k < 4; k++) {
        rc = wb_addrbook_pick(b, bias, k & 1 ? skip_odd : NULL, NULL, &r);
        CHECK(rc == 0 || rc == WB_ENOENT);
        if (size_now == 0)
            CHECK(rc == WB_ENOENT);
        else if (!(k & 1))
            CHECK(rc == 0);
        if (rc == 0) {
            CHECK(wb_addrbook_has(b, r.addr.id));
            CHECK(!(k & 1) || !(r.addr.id[0] & 1));
            CHECK(wb_addrbook_next_dial(b, &r) >= 0);
        }
    }
    size_t got = wb_addrbook_selection(b, NULL, NULL, sel, WB_ADDRBOOK_MAX_SELECTION);
    CHECK(got <= size_now && (size_now == 0 || got > 0));
    for (size_t i = 0; i < got; i++) {
        CHECK(wb_addrbook_has(b, sel[i].id));
        for (size_t j = 0; j < i; j++)
            CHECK(!wb_netaddr_equal(&sel[i], &sel[j]));
    }
    got = wb_addrbook_selection_with_bias(b, bias, skip_odd, NULL, sel, WB_ADDRBOOK_MAX_SELECTION);
    CHECK(got <= size_now);
    for (size_t i = 0; i < got; i++) {
        CHECK(wb_addrbook_has(b, sel[i].id));
        CHECK(!(sel[i].id[0] & 1));
    }
    wb_addrbook_free(b);
    return 0;
}
