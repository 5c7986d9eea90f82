/*
 * netaddr.c - peer addresses: parsing, text, properties, groups (see
 * netaddr.h).
 */
#include "apps/peer/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "runtime/error.h"

#define HOST_MAX 256

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void wb_node_id_hex(const uint8_t id[32], char out[WB_NODE_ID_HEX + 1])
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[WB_NODE_ID_HEX] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int wb_node_id_parse(const char *hex, size_t len, uint8_t id[32])
{
    if (hex == NULL || len != WB_NODE_ID_HEX)
        return WB_EINVAL;
    uint8_t tmp[32];
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return WB_EINVAL;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(id, tmp, 32);
    return 0;
}

int wb_netaddr_split(const char *text, int need_id, uint8_t id[32], int *has_id, char *host,
                     size_t hostlen, uint16_t *port, char *err, size_t errlen)
{
    if (text == NULL) {
        wb_errf(err, errlen, "no address");
        return WB_EINVAL;
    }
    size_t len = strnlen(text, 1024);
    if (len >= 1024) {
        wb_errf(err, errlen, "address too long");
        return WB_EINVAL;
    }
    const char *p = text, *end = text + len;
    const char *scheme = strstr(p, "://");
    if (scheme != NULL) {
        if (scheme - p != 3 || strncmp(p, "tcp", 3) != 0) {
            wb_errf(err, errlen, "unsupported scheme (only tcp://)");
            return WB_EINVAL;
        }
        p = scheme + 3;
    }
    const char *at = memchr(p, '@', (size_t)(end - p));
    *has_id = 0;
    if (at != NULL) {
        if (wb_node_id_parse(p, (size_t)(at - p), id) != 0) {
            wb_errf(err, errlen, "node id must be 64 hex characters");
            return WB_EINVAL;
        }
        *has_id = 1;
        p = at + 1;
    } else if (need_id) {
        wb_errf(err, errlen, "node id missing (want ID@IP:port)");
        return WB_EINVAL;
    }
    const char *h, *hend, *colon;
    if (*p == '[') {
        h = p + 1;
        hend = memchr(h, ']', (size_t)(end - h));
        if (hend == NULL) {
            wb_errf(err, errlen, "missing ']' after IPv6 address");
            return WB_EINVAL;
        }
        colon = hend + 1;
        if (colon >= end || *colon != ':') {
            wb_errf(err, errlen, "port missing (want [IPv6]:port)");
            return WB_EINVAL;
        }
    } else {
        h = p;
        colon = strrchr(p, ':');
        if (colon == NULL) {
            wb_errf(err, errlen, "port missing (want IP:port)");
            return WB_EINVAL;
        }
        hend = colon;
        if (memchr(h, ':', (size_t)(hend - h)) != NULL) {
            wb_errf(err, errlen, "an IPv6 address must be in brackets: [IPv6]:port");
            return WB_EINVAL;
        }
    }
    if (hend == h) {
        wb_errf(err, errlen, "host missing");
        return WB_EINVAL;
    }
    if ((size_t)(hend - h) >= hostlen || (size_t)(hend - h) >= HOST_MAX) {
        wb_errf(err, errlen, "host too long");
        return WB_EINVAL;
    }
    const char *ps = colon + 1;
    if (ps == end) {
        wb_errf(err, errlen, "port missing");
        return WB_EINVAL;
    }
    uint32_t v = 0;
    for (const char *q = ps; q < end; q++) {
        if (*q < '0' || *q > '9') {
            wb_errf(err, errlen, "port must be a number");
            return WB_EINVAL;
        }
        if (v <= 65535)
            v = v * 10 + (uint32_t)(*q - '0');
    }
    if (v == 0 || v > 65535) {
        wb_errf(err, errlen, "port out of range (1-65535)");
        return WB_EINVAL;
    }
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    *port = (uint16_t)v;
    return 0;
}

int wb_netaddr_is_ip_literal(const char *host)
{
    uint8_t buf[16];
    return host != NULL &&
           (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1);
}

static void set_v6(wb_netaddr_t *a, const uint8_t ip[16])
{
    memset(a->ip, 0, sizeof(a->ip));
    if (memcmp(ip, v4mapped_prefix, 12) == 0) {
        a->family = 4;
        memcpy(a->ip, ip + 12, 4);
    } else {
        a->family = 6;
        memcpy(a->ip, ip, 16);
    }
}

int wb_netaddr_set_ip(wb_netaddr_t *a, const char *ip)
{
    uint8_t buf[16];
    if (ip == NULL)
        return WB_EINVAL;
    if (inet_pton(AF_INET, ip, buf) == 1) {
        a->family = 4;
        memset(a->ip, 0, sizeof(a->ip));
        memcpy(a->ip, buf, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, buf) == 1) {
        set_v6(a, buf);
        return 0;
    }
    return WB_EINVAL;
}

int wb_netaddr_parse(const char *text, int need_id, wb_netaddr_t *out, char *err, size_t errlen)
{
    char host[HOST_MAX];
    int has_id = 0;
    memset(out, 0, sizeof(*out));
    int rc = wb_netaddr_split(text, need_id, out->id, &has_id, host, sizeof(host), &out->port, err,
                              errlen);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    out->has_id = (uint8_t)has_id;
    if (wb_netaddr_set_ip(out, host) != 0) {
        int bracketed = strchr(text, '[') != NULL || strchr(host, '%') != NULL;
        memset(out, 0, sizeof(*out));
        if (bracketed) {
            wb_errf(err, errlen, "not an IPv6 address: %.64s", host);
            return WB_EINVAL;
        }
        wb_errf(err, errlen, "not an IP literal: %.64s", host);
        return WB_ENOENT;
    }
    return 0;
}

int wb_netaddr_from_sockaddr(wb_netaddr_t *out, const struct sockaddr *sa)
{
    memset(out, 0, sizeof(*out));
    if (sa == NULL)
        return WB_EINVAL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        out->family = 4;
        memcpy(out->ip, &s->sin_addr, 4);
        out->port = ntohs(s->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        set_v6(out, (const uint8_t *)&s->sin6_addr);
        out->port = ntohs(s->sin6_port);
        return 0;
    }
    return WB_EINVAL;
}

size_t wb_netaddr_to_sockaddr(const wb_netaddr_t *a, struct sockaddr *out, size_t outlen)
{
    if (a->family == 4 && outlen >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in *s = (struct sockaddr_in *)out;
        memset(s, 0, sizeof(*s));
        s->sin_family = AF_INET;
        memcpy(&s->sin_addr, a->ip, 4);
        s->sin_port = htons(a->port);
        return sizeof(*s);
    }
    if (a->family == 6 && outlen >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)out;
        memset(s, 0, sizeof(*s));
        s->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a->ip, 16);
        s->sin6_port = htons(a->port);
        return sizeof(*s);
    }
    return 0;
}

size_t wb_netaddr_ip_str(const wb_netaddr_t *a, char *out, size_t n)
{
    char buf[INET6_ADDRSTRLEN];
    const char *s = "?";
    if (a->family == 4)
        s = inet_ntop(AF_INET, a->ip, buf, sizeof(buf));
    else if (a->family == 6)
        s = inet_ntop(AF_INET6, a->ip, buf, sizeof(buf));
    if (s == NULL)
        s = "?";
    int r = snprintf(out, n, "%s", s);
    return r < 0 ? 0 : (size_t)r;
}

size_t wb_netaddr_str(const wb_netaddr_t *a, int with_id, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN];
    char id[WB_NODE_ID_HEX + 1];
    wb_netaddr_ip_str(a, ip, sizeof(ip));
    int r;
    const char *lb = a->family == 6 ? "[" : "", *rb = a->family == 6 ? "]" : "";
    if (with_id && a->has_id) {
        wb_node_id_hex(a->id, id);
        r = snprintf(out, n, "%s@%s%s%s:%u", id, lb, ip, rb, (unsigned)a->port);
    } else {
        r = snprintf(out, n, "%s%s%s:%u", lb, ip, rb, (unsigned)a->port);
    }
    return r < 0 ? 0 : (size_t)r;
}

/* ---- properties ----------------------------------------------------------- */

static int v4_in(const uint8_t *ip, uint8_t a, uint8_t b, int bits)
{
    uint32_t x = (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16;
    uint32_t net = (uint32_t)a << 24 | (uint32_t)b << 16;
    uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
    return ((x ^ net) & mask) == 0;
}

/* The first `bits` bits of ip equal those of prefix. */
static int v6_in(const uint8_t *ip, const uint8_t *prefix, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(ip, prefix, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return ((ip[full] ^ prefix[full]) & m) == 0;
}

static int is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

int wb_netaddr_valid(const wb_netaddr_t *a)
{
    static const uint8_t rfc3849[] = {0x20, 0x01, 0x0d, 0xb8};
    if (a->family == 4) {
        if (is_zero(a->ip, 4))
            return 0;
        if (a->ip[0] == 255 && a->ip[1] == 255 && a->ip[2] == 255 && a->ip[3] == 255)
            return 0;
        return 1;
    }
    if (a->family == 6)
        return !is_zero(a->ip, 16) && !v6_in(a->ip, rfc3849, 32);
    return 0;
}

int wb_netaddr_local(const wb_netaddr_t *a)
{
    static const uint8_t loop6[16] = {[15] = 1};
    if (a->family == 4)
        return a->ip[0] == 127 || a->ip[0] == 0;
    if (a->family == 6)
        return memcmp(a->ip, loop6, 16) == 0;
    return 0;
}

int wb_netaddr_routable(const wb_netaddr_t *a)
{
    static const uint8_t fe80[] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0};
    static const uint8_t fc00[] = {0xfc};
    static const uint8_t rfc4843[] = {0x20, 0x01, 0x00, 0x10};
    if (!wb_netaddr_valid(a) || wb_netaddr_local(a))
        return 0;
    if (a->family == 4) {
        const uint8_t *ip = a->ip;
        if (v4_in(ip, 10, 0, 8) || v4_in(ip, 172, 16, 12) || v4_in(ip, 192, 168, 16))
            return 0; /* RFC1918 */
        if (v4_in(ip, 169, 254, 16))
            return 0; /* RFC3927 */
        return 1;
    }
    if (v6_in(a->ip, fe80, 64) || v6_in(a->ip, fc00, 7) || v6_in(a->ip, rfc4843, 28))
        return 0;
    return 1;
}

size_t wb_netaddr_group(const wb_netaddr_t *a, int strict, char out[WB_NETADDR_GROUPLEN])
{
    static const uint8_t sixtofour[] = {0x20, 0x02};
    static const uint8_t teredo[] = {0x20, 0x01, 0x00, 0x00};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const uint8_t he[] = {0x20, 0x01, 0x04, 0x70};
    int r;
    if (strict && wb_netaddr_local(a))
        return (size_t)snprintf(out, WB_NETADDR_GROUPLEN, "local");
    if (strict && !wb_netaddr_routable(a))
        return (size_t)snprintf(out, WB_NETADDR_GROUPLEN, "unroutable");
    uint8_t v4[4];
    int have4 = 0;
    if (a->family == 4) {
        memcpy(v4, a->ip, 4);
        have4 = 1;
    } else if (a->family == 6) {
        if (memcmp(a->ip, v4mapped_prefix, 12) == 0 || memcmp(a->ip, nat64, 12) == 0) {
            memcpy(v4, a->ip + 12, 4);
            have4 = 1;
        } else if (v6_in(a->ip, sixtofour, 16)) {
            memcpy(v4, a->ip + 2, 4);
            have4 = 1;
        } else if (v6_in(a->ip, teredo, 32)) {
            for (int i = 0; i < 4; i++)
                v4[i] = (uint8_t)(a->ip[12 + i] ^ 0xff);
            have4 = 1;
        }
    } else {
        return (size_t)snprintf(out, WB_NETADDR_GROUPLEN, "unknown");
    }
    if (have4) {
        r = snprintf(out, WB_NETADDR_GROUPLEN, "%u.%u.0.0/16", v4[0], v4[1]);
        return r < 0 ? 0 : (size_t)r;
    }
    int bits = v6_in(a->ip, he, 32) ? 36 : 32;
    uint8_t m[16] = {0};
    memcpy(m, a->ip, 4);
    if (bits == 36)
        m[4] = (uint8_t)(a->ip[4] & 0xf0);
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, m, buf, sizeof(buf)) == NULL)
        buf[0] = '\0';
    r = snprintf(out, WB_NETADDR_GROUPLEN, "%s/%d", buf, bits);
    return r < 0 ? 0 : (size_t)r;
}

int wb_netaddr_same_endpoint(const wb_netaddr_t *a, const wb_netaddr_t *b)
{
    return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

int wb_netaddr_equal(const wb_netaddr_t *a, const wb_netaddr_t *b)
{
    if (!wb_netaddr_same_endpoint(a, b) || a->has_id != b->has_id)
        return 0;
    return !a->has_id || memcmp(a->id, b->id, 32) == 0;
}

int wb_netaddr_same(const wb_netaddr_t *a, const wb_netaddr_t *b)
{
    if (wb_netaddr_same_endpoint(a, b))
        return 1;
    return a->has_id && b->has_id && memcmp(a->id, b->id, 32) == 0;
}
