/*
 * pex_proto.c - peer exchange messages (see pex_proto.h).
 */
#include "apps/peer/pex_proto.h"

#include <string.h>

#include "runtime/error.h"

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static size_t entry_size(const wb_netaddr_t *a)
{
    if (!a->has_id)
        return 0;
    if (a->family == 4)
        return WB_PEX_ENTRY4_SIZE;
    if (a->family == 6)
        return WB_PEX_ENTRY6_SIZE;
    return 0;
}

size_t wb_pex_addrs_size(const wb_netaddr_t *addrs, size_t n)
{
    if (n > WB_PEX_MAX_ADDRS)
        return 0;
    size_t total = 3;
    for (size_t i = 0; i < n; i++) {
        size_t e = entry_size(&addrs[i]);
        if (e == 0)
            return 0;
        total += e;
    }
    return total;
}

int wb_pex_encode_request(uint8_t *buf, size_t cap, size_t *len)
{
    if (cap < 1)
        return WB_ETOOBIG;
    buf[0] = WB_PEX_REQUEST;
    *len = 1;
    return 0;
}

int wb_pex_encode_addrs(const wb_netaddr_t *addrs, size_t n, uint8_t *buf, size_t cap, size_t *len)
{
    size_t total = wb_pex_addrs_size(addrs, n);
    if (total == 0)
        return WB_EINVAL;
    if (cap < total)
        return WB_ETOOBIG;
    uint8_t *p = buf;
    *p++ = WB_PEX_ADDRS;
    *p++ = (uint8_t)(n >> 8);
    *p++ = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        const wb_netaddr_t *a = &addrs[i];
        size_t iplen = a->family == 4 ? 4 : 16;
        memcpy(p, a->id, 32);
        p += 32;
        *p++ = a->family;
        memcpy(p, a->ip, iplen);
        p += iplen;
        *p++ = (uint8_t)(a->port >> 8);
        *p++ = (uint8_t)a->port;
    }
    *len = (size_t)(p - buf);
    return 0;
}

int wb_pex_decode(const uint8_t *buf, size_t len, wb_pex_msg_t *out, char *err, size_t errlen)
{
    out->type = 0;
    out->count = 0;
    if (len == 0) {
        wb_errf(err, errlen, "empty pex message");
        return WB_EPROTO;
    }
    if (len > WB_PEX_MAX_MSG) {
        wb_errf(err, errlen, "pex message of %zu bytes exceeds %u", len, (unsigned)WB_PEX_MAX_MSG);
        return WB_ETOOBIG;
    }
    if (buf[0] == WB_PEX_REQUEST) {
        if (len != 1) {
            wb_errf(err, errlen, "trailing bytes after pex request");
            return WB_EPROTO;
        }
        out->type = WB_PEX_REQUEST;
        return 0;
    }
    if (buf[0] != WB_PEX_ADDRS) {
        wb_errf(err, errlen, "unknown pex message type 0x%02x", buf[0]);
        return WB_EPROTO;
    }
    if (len < 3) {
        wb_errf(err, errlen, "truncated addrs count");
        return WB_EPROTO;
    }
    size_t count = (size_t)buf[1] << 8 | buf[2];
    if (count > WB_PEX_MAX_ADDRS) {
        wb_errf(err, errlen, "addrs count %zu exceeds %u", count, (unsigned)WB_PEX_MAX_ADDRS);
        return WB_EPROTO;
    }
    size_t off = 3;
    for (size_t i = 0; i < count; i++) {
        wb_netaddr_t *a = &out->addrs[i];
        if (len - off < 33) {
            wb_errf(err, errlen, "truncated entry %zu", i);
            return WB_EPROTO;
        }
        uint8_t fam = buf[off + 32];
        if (fam != 4 && fam != 6) {
            wb_errf(err, errlen, "bad family %u in entry %zu", fam, i);
            return WB_EPROTO;
        }
        size_t iplen = fam == 4 ? 4 : 16;
        if (len - off < 33 + iplen + 2) {
            wb_errf(err, errlen, "truncated entry %zu", i);
            return WB_EPROTO;
        }
        memset(a, 0, sizeof(*a));
        memcpy(a->id, buf + off, 32);
        a->has_id = 1;
        a->family = fam;
        memcpy(a->ip, buf + off + 33, iplen);
        a->port = (uint16_t)(buf[off + 33 + iplen] << 8 | buf[off + 34 + iplen]);
        off += 35 + iplen;
        if (fam == 6 && memcmp(a->ip, v4mapped, 12) == 0) {
            /* One host, one form: as wb_netaddr_set_ip does. */
            memmove(a->ip, a->ip + 12, 4);
            memset(a->ip + 4, 0, 12);
            a->family = 4;
        }
    }
    if (off != len) {
        wb_errf(err, errlen, "trailing bytes");
        return WB_EPROTO;
    }
    out->type = WB_PEX_ADDRS;
    out->count = (uint16_t)count;
    return 0;
}
