/*
 * nodeinfo.c - the NodeInfo hello: JSON through jansson, checked field by
 * field. See nodeinfo.h.
 */
#include "apps/peer/nodeinfo.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/json.h"
#include "runtime/error.h"
#include "sockets/peerconn.h"

static const char hexd[] = "0123456789abcdef";

long wb_nodeinfo_encode(const wb_nodeinfo_t *ni, char *out, size_t cap)
{
    char id[65];
    for (int i = 0; i < 32; i++) {
        id[2 * i] = hexd[ni->id[i] >> 4];
        id[2 * i + 1] = hexd[ni->id[i] & 15];
    }
    id[64] = 0;
    json_t *ch = json_array();
    for (size_t i = 0; ch != NULL && i < ni->nchannels; i++)
        json_array_append_new(ch, json_integer(ni->channels[i]));
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:s}", "id", id, "listen", ni->listen, "network",
                  ni->network, "version", ni->version, "channels", ch, "moniker", ni->moniker);
    if (o == NULL)
        return WB_ENOMEM;
    size_t len;
    char *s = wb_json_encode(o, &len);
    json_decref(o);
    if (s == NULL)
        return WB_ENOMEM;
    if (len > cap || len > WB_PEERCONN_MAX_HELLO) {
        free(s);
        return WB_ETOOBIG;
    }
    memcpy(out, s, len);
    free(s);
    return (long)len;
}

static int text_field(json_t *o, const char *key, char *out, int required, char *err, size_t errlen)
{
    const char *s;
    size_t n;
    int rc = wb_json_str(o, key, &s, &n);
    if (rc == WB_ENOENT && !required) {
        out[0] = 0;
        return 0;
    }
    if (rc != 0) {
        wb_errf(err, errlen, "nodeinfo: %s: %s", key, rc == WB_ENOENT ? "missing" : "not a string");
        return WB_EPROTO;
    }
    if (n > WB_NODEINFO_TEXT_MAX) {
        wb_errf(err, errlen, "nodeinfo: %s: %zu bytes exceeds %d", key, n, WB_NODEINFO_TEXT_MAX);
        return WB_EPROTO;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            wb_errf(err, errlen, "nodeinfo: %s: control character", key);
            return WB_EPROTO;
        }
    }
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

static int unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "major.minor.patch", each a decimal number. */
static int parse_version(const char *v, unsigned long p[3])
{
    const char *s = v;
    for (int i = 0; i < 3; i++) {
        if (*s < '0' || *s > '9')
            return -1;
        char *end;
        p[i] = strtoul(s, &end, 10);
        if (end - s > 9)
            return -1;
        s = end;
        if (i < 2) {
            if (*s != '.')
                return -1;
            s++;
        }
    }
    return *s == 0 ? 0 : -1;
}

int wb_nodeinfo_decode(const void *data, size_t len, wb_nodeinfo_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len > WB_PEERCONN_MAX_HELLO) {
        wb_errf(err, errlen, "nodeinfo: %zu bytes exceeds %d", len, WB_PEERCONN_MAX_HELLO);
        return WB_ETOOBIG;
    }
    wb_json_msg_t m;
    char why[160];
    if (wb_json_msg_decode(&m, data, len, why, sizeof(why)) != 0) {
        wb_errf(err, errlen, "nodeinfo: %s", why);
        return WB_EPROTO;
    }
    int rc = WB_EPROTO;
    char idhex[WB_NODEINFO_TEXT_MAX + 1];
    if (text_field(m.obj, "id", idhex, 1, err, errlen) != 0)
        goto out;
    if (strlen(idhex) != 64) {
        wb_errf(err, errlen, "nodeinfo: id: must be 64 hex characters");
        goto out;
    }
    for (int i = 0; i < 32; i++) {
        int hi = unhex(idhex[2 * i]), lo = unhex(idhex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            wb_errf(err, errlen, "nodeinfo: id: must be 64 lowercase hex characters");
            goto out;
        }
        out->id[i] = (uint8_t)(hi << 4 | lo);
    }
    if (text_field(m.obj, "listen", out->listen, 0, err, errlen) != 0 ||
        text_field(m.obj, "network", out->network, 1, err, errlen) != 0 ||
        text_field(m.obj, "version", out->version, 1, err, errlen) != 0 ||
        text_field(m.obj, "moniker", out->moniker, 0, err, errlen) != 0)
        goto out;
    unsigned long v[3];
    if (parse_version(out->version, v) != 0) {
        wb_errf(err, errlen, "nodeinfo: version: \"%s\" is not major.minor.patch", out->version);
        goto out;
    }
    json_t *ch = json_object_get(m.obj, "channels");
    if (!json_is_array(ch)) {
        wb_errf(err, errlen, "nodeinfo: channels: %s", ch == NULL ? "missing" : "not an array");
        goto out;
    }
    if (json_array_size(ch) > WB_MCONN_MAX_CHANNELS) {
        wb_errf(err, errlen, "nodeinfo: channels: %zu exceeds %d", json_array_size(ch),
                WB_MCONN_MAX_CHANNELS);
        goto out;
    }
    uint8_t seen[256] = {0};
    for (size_t i = 0; i < json_array_size(ch); i++) {
        json_t *c = json_array_get(ch, i);
        if (!json_is_integer(c) || json_integer_value(c) < 0 || json_integer_value(c) > 255) {
            wb_errf(err, errlen, "nodeinfo: channels: entry %zu is not a byte", i);
            goto out;
        }
        uint8_t b = (uint8_t)json_integer_value(c);
        if (seen[b]) {
            wb_errf(err, errlen, "nodeinfo: channels: duplicate channel 0x%02x", b);
            goto out;
        }
        seen[b] = 1;
        out->channels[out->nchannels++] = b;
    }
    rc = 0;
out:
    wb_json_msg_free(&m);
    return rc;
}

int wb_nodeinfo_has_channel(const wb_nodeinfo_t *ni, uint8_t ch)
{
    for (size_t i = 0; i < ni->nchannels; i++)
        if (ni->channels[i] == ch)
            return 1;
    return 0;
}

int wb_nodeinfo_compatible(const wb_nodeinfo_t *ours, const wb_nodeinfo_t *theirs, char *err,
                           size_t errlen)
{
    if (strcmp(ours->network, theirs->network) != 0) {
        wb_errf(err, errlen, "network %s, ours %s", theirs->network, ours->network);
        return WB_EPROTO;
    }
    unsigned long a[3], b[3];
    if (parse_version(ours->version, a) != 0 || parse_version(theirs->version, b) != 0 ||
        a[0] != b[0] || a[1] != b[1]) {
        wb_errf(err, errlen, "version %s incompatible with ours %s", theirs->version,
                ours->version);
        return WB_EPROTO;
    }
    if (ours->nchannels == 0)
        return 0; /* a node with no reactor talks to anyone (tendermint's rule) */
    for (size_t i = 0; i < ours->nchannels; i++)
        if (wb_nodeinfo_has_channel(theirs, ours->channels[i]))
            return 0;
    wb_errf(err, errlen, "no channel in common");
    return WB_EPROTO;
}
