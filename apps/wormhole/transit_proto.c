/*
 * transit_proto.c - hints, handshake lines and records of the wormhole
 * transit protocol (see transit_proto.h).
 */
#include "apps/wormhole/transit_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- hints --------------------------------------------------------------------------- */

/* One direct-tcp-v1 (or tor-tcp-v1: tor set) hint object into h. Returns 0
 * when usable. */
static int parse_direct(const json_t *o, wb_transit_hint_t *h, int *tor)
{
    const char *type = json_string_value(json_object_get(o, "type"));
    if (type == NULL)
        return -1;
    *tor = strcmp(type, "tor-tcp-v1") == 0;
    if (strcmp(type, "direct-tcp-v1") != 0 && !*tor)
        return -1;
    const json_t *host = json_object_get(o, "hostname"), *port = json_object_get(o, "port");
    const json_t *prio = json_object_get(o, "priority");
    if (!json_is_string(host) || !json_is_integer(port))
        return -1;
    size_t hl = json_string_length(host);
    json_int_t p = json_integer_value(port);
    if (hl == 0 || hl > WB_TRANSIT_HOST_MAX || p < 1 || p > 65535 ||
        strlen(json_string_value(host)) != hl)
        return -1;
    memcpy(h->host, json_string_value(host), hl + 1);
    h->port = (uint16_t)p;
    h->priority = json_is_number(prio) ? json_number_value(prio) : 0.0;
    return 0;
}

int wb_transit_hints_parse(const json_t *transit, wb_transit_hints_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(transit))
        return fail(WB_EPROTO, err, errlen, "transit message is not an object");
    const json_t *hints = json_object_get(transit, "hints-v1");
    if (hints == NULL)
        return 0;
    if (!json_is_array(hints))
        return fail(WB_EPROTO, err, errlen, "transit hints-v1 is not a list");
    size_t i;
    const json_t *o;
    json_array_foreach(hints, i, o)
    {
        const char *type = json_string_value(json_object_get(o, "type"));
        int tor;
        if (type == NULL)
            continue;
        if (strcmp(type, "relay-v1") == 0) {
            const json_t *ways = json_object_get(o, "hints");
            if (!json_is_array(ways) || out->nrelays == WB_TRANSIT_MAX_HINTS)
                continue;
            wb_transit_relay_t *r = &out->relays[out->nrelays];
            r->nways = 0;
            r->priority = -1e300;
            size_t j;
            const json_t *w;
            json_array_foreach(ways, j, w)
            {
                if (r->nways == WB_TRANSIT_RELAY_WAYS)
                    break;
                if (parse_direct(w, &r->ways[r->nways], &tor) == 0 && !tor) {
                    if (r->ways[r->nways].priority > r->priority)
                        r->priority = r->ways[r->nways].priority;
                    r->nways++;
                }
            }
            if (r->nways > 0)
                out->nrelays++;
        } else if (out->ndirect < WB_TRANSIT_MAX_HINTS &&
                   parse_direct(o, &out->direct[out->ndirect], &tor) == 0 && !tor) {
            out->ndirect++;
        }
    }
    return 0;
}

static json_t *hint_json(const wb_transit_hint_t *h)
{
    return json_pack("{s:s,s:f,s:s,s:i}", "type", "direct-tcp-v1", "priority", h->priority,
                     "hostname", h->host, "port", (json_int_t)h->port);
}

json_t *wb_transit_hints_json(const wb_transit_hints_t *h)
{
    json_t *hints = json_array();
    json_t *o = json_pack("{s:[{s:s},{s:s}],s:o}", "abilities-v1", "type", "direct-tcp-v1", "type",
                          "relay-v1", "hints-v1", hints);
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < h->ndirect; i++)
        if (json_array_append_new(hints, hint_json(&h->direct[i])) != 0)
            goto oom;
    for (size_t i = 0; i < h->nrelays; i++) {
        json_t *ways = json_array();
        if (json_array_append_new(hints,
                                  json_pack("{s:s,s:o}", "type", "relay-v1", "hints", ways)) != 0)
            goto oom;
        for (size_t j = 0; j < h->relays[i].nways; j++)
            if (json_array_append_new(ways, hint_json(&h->relays[i].ways[j])) != 0)
                goto oom;
    }
    return o;
oom:
    json_decref(o);
    return NULL;
}

int wb_transit_parse_helper(const char *s, wb_transit_relay_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(s, "tcp:", 4) != 0)
        return fail(WB_EINVAL, err, errlen, "%s: a relay is tcp:HOST:PORT", s);
    const char *p = s + 4, *hs, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (he == NULL || he[1] != ':')
            return fail(WB_EINVAL, err, errlen, "%s: bad [IPv6] host", s);
        p = he + 2;
    } else {
        hs = p;
        he = strchr(p, ':');
        if (he == NULL)
            return fail(WB_EINVAL, err, errlen, "%s: no port (tcp:HOST:PORT)", s);
        p = he + 1;
    }
    if (he == hs || (size_t)(he - hs) > WB_TRANSIT_HOST_MAX)
        return fail(WB_EINVAL, err, errlen, "%s: no host, or too long a host", s);
    char *end;
    errno = 0;
    long port = strtol(p, &end, 10);
    if (end == p || errno != 0 || port < 1 || port > 65535 || (*end != 0 && *end != ':'))
        return fail(WB_EINVAL, err, errlen, "%s: bad port", s);
    double prio = 0.0;
    if (*end == ':') {
        if (strncmp(end + 1, "priority=", 9) != 0)
            return fail(WB_EINVAL, err, errlen, "%s: unknown option (priority=F)", s);
        const char *f = end + 10;
        prio = strtod(f, &end);
        if (end == f || *end != 0)
            return fail(WB_EINVAL, err, errlen, "%s: bad priority", s);
    }
    wb_transit_hint_t *h = &out->ways[0];
    memcpy(h->host, hs, (size_t)(he - hs));
    h->host[he - hs] = 0;
    h->port = (uint16_t)port;
    h->priority = prio;
    out->nways = 1;
    out->priority = prio;
    return 0;
}

/* ---- keys and lines -------------------------------------------------------------------- */

static void hexify(char *out, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = 0;
}

static void line(char *out, const uint8_t tkey[WB_WH_KEY_LEN], wb_wh_transit_purpose_t which,
                 const char *who)
{
    uint8_t k[WB_WH_KEY_LEN];
    char hex[2 * WB_WH_KEY_LEN + 1];
    wb_wh_transit_subkey(tkey, which, k);
    hexify(hex, k, sizeof(k));
    sprintf(out, "transit %s %s ready\n\n", who, hex);
    sodium_memzero(k, sizeof(k));
}

void wb_transit_keys_init(wb_transit_keys_t *k, const uint8_t tkey[WB_WH_KEY_LEN], int sender,
                          const char side[WB_TRANSIT_SIDE_LEN])
{
    char snd[WB_TRANSIT_RECEIVER_LINE_LEN + 1], rcv[WB_TRANSIT_RECEIVER_LINE_LEN + 1];
    memset(k, 0, sizeof(*k));
    k->sender = sender;
    line(snd, tkey, WB_WH_TRANSIT_SENDER_HANDSHAKE, "sender");
    line(rcv, tkey, WB_WH_TRANSIT_RECEIVER_HANDSHAKE, "receiver");
    strcpy(k->our_line, sender ? snd : rcv);
    strcpy(k->peer_line, sender ? rcv : snd);
    uint8_t token[WB_WH_KEY_LEN];
    char hex[2 * WB_WH_KEY_LEN + 1];
    wb_wh_transit_subkey(tkey, WB_WH_TRANSIT_RELAY_TOKEN, token);
    hexify(hex, token, sizeof(token));
    snprintf(k->relay_line, sizeof(k->relay_line), "please relay %s for side %.16s\n", hex, side);
    uint8_t sk[WB_WH_KEY_LEN], rk[WB_WH_KEY_LEN];
    wb_wh_transit_subkey(tkey, WB_WH_TRANSIT_RECORD_SENDER, sk);
    wb_wh_transit_subkey(tkey, WB_WH_TRANSIT_RECORD_RECEIVER, rk);
    memcpy(k->send_key, sender ? sk : rk, WB_WH_KEY_LEN);
    memcpy(k->recv_key, sender ? rk : sk, WB_WH_KEY_LEN);
    sodium_memzero(sk, sizeof(sk));
    sodium_memzero(rk, sizeof(rk));
}

void wb_transit_keys_wipe(wb_transit_keys_t *k)
{
    sodium_memzero(k, sizeof(*k));
}

/* ---- handshake ------------------------------------------------------------------------- */

void wb_transit_hs_init(wb_transit_hs_t *h, const wb_transit_keys_t *keys, int relay)
{
    h->keys = keys;
    h->state = relay ? WB_TRANSIT_HS_RELAY : WB_TRANSIT_HS_LINE;
    h->matched = 0;
}

const char *wb_transit_hs_first(const wb_transit_hs_t *h, size_t *len)
{
    const char *s = h->state == WB_TRANSIT_HS_RELAY ? h->keys->relay_line : h->keys->our_line;
    *len = strlen(s);
    return s;
}

static const char *expected(const wb_transit_hs_t *h)
{
    switch (h->state) {
    case WB_TRANSIT_HS_RELAY:
        return "ok\n";
    case WB_TRANSIT_HS_LINE:
        return h->keys->peer_line;
    case WB_TRANSIT_HS_WAIT_GO:
        return "go\n";
    default:
        return NULL;
    }
}

/* Printable excerpt of what came instead, for the reason. */
static void excerpt(char *out, size_t cap, const uint8_t *d, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 < cap && i < 24; i++) {
        if (d[i] >= 0x20 && d[i] < 0x7f && d[i] != '\\')
            out[k++] = (char)d[i];
        else
            k += (size_t)snprintf(out + k, cap - k, "\\x%02x", d[i]);
    }
    out[k] = 0;
}

wb_transit_hs_result_t wb_transit_hs_feed(wb_transit_hs_t *h, const uint8_t *data, size_t len,
                                          size_t *used, char *err, size_t errlen)
{
    size_t i = 0;
    *used = 0;
    for (;;) {
        if (h->state == WB_TRANSIT_HS_FAILED)
            return WB_TRANSIT_HS_BAD;
        if (h->state == WB_TRANSIT_HS_DONE) {
            if (i == len)
                return WB_TRANSIT_HS_NEED_MORE;
            h->state = WB_TRANSIT_HS_FAILED;
            fail(0, err, errlen, "the peer sent bytes before go");
            return WB_TRANSIT_HS_BAD;
        }
        const char *want = expected(h);
        size_t wl = strlen(want);
        while (i < len && h->matched < wl) {
            if (data[i] != (uint8_t)want[h->matched]) {
                char ex[128];
                excerpt(ex, sizeof(ex), data + i, len - i);
                if (h->state == WB_TRANSIT_HS_WAIT_GO && h->matched == 0 && data[i] == 'n')
                    fail(0, err, errlen, "the sender chose another connection");
                else if (h->state == WB_TRANSIT_HS_RELAY)
                    fail(0, err, errlen, "the relay did not say ok: \"%s\"", ex);
                else
                    fail(0, err, errlen, "bad handshake from the peer at byte %zu: \"%s\"",
                         h->matched, ex);
                h->state = WB_TRANSIT_HS_FAILED;
                *used = i;
                return WB_TRANSIT_HS_BAD;
            }
            i++;
            h->matched++;
        }
        *used = i;
        if (h->matched < wl)
            return WB_TRANSIT_HS_NEED_MORE;
        h->matched = 0;
        switch (h->state) {
        case WB_TRANSIT_HS_RELAY:
            h->state = WB_TRANSIT_HS_LINE;
            return WB_TRANSIT_HS_RELAY_OK;
        case WB_TRANSIT_HS_LINE:
            if (h->keys->sender) {
                h->state = WB_TRANSIT_HS_DONE;
                return WB_TRANSIT_HS_PEER_OK;
            }
            h->state = WB_TRANSIT_HS_WAIT_GO;
            break; /* go on with "go\n" in the same bytes */
        default:   /* WB_TRANSIT_HS_WAIT_GO */
            h->state = WB_TRANSIT_HS_DONE;
            return WB_TRANSIT_HS_GO;
        }
    }
}

/* ---- records --------------------------------------------------------------------------- */

static void nonce_of(uint64_t seq, uint8_t n[WB_WH_NONCE_LEN])
{
    memset(n, 0, WB_WH_NONCE_LEN);
    for (int i = 0; i < 8; i++)
        n[WB_WH_NONCE_LEN - 1 - i] = (uint8_t)(seq >> (8 * i));
}

void wb_transit_sealer_init(wb_transit_sealer_t *s, const uint8_t key[WB_WH_KEY_LEN])
{
    memcpy(s->key, key, WB_WH_KEY_LEN);
    s->seq = 0;
}

size_t wb_transit_seal(wb_transit_sealer_t *s, const uint8_t *pt, size_t len, uint8_t *out)
{
    uint32_t l = (uint32_t)(len + WB_WH_NONCE_LEN + WB_WH_MAC_LEN);
    out[0] = (uint8_t)(l >> 24);
    out[1] = (uint8_t)(l >> 16);
    out[2] = (uint8_t)(l >> 8);
    out[3] = (uint8_t)l;
    nonce_of(s->seq++, out + 4);
    crypto_secretbox_detached(out + WB_TRANSIT_RECORD_OVERHEAD, out + 4 + WB_WH_NONCE_LEN, pt, len,
                              out + 4, s->key);
    return len + WB_TRANSIT_RECORD_OVERHEAD;
}

void wb_transit_opener_init(wb_transit_opener_t *o, const uint8_t key[WB_WH_KEY_LEN],
                            uint32_t max_record)
{
    memset(o, 0, sizeof(*o));
    memcpy(o->key, key, WB_WH_KEY_LEN);
    o->max_record = max_record ? max_record : WB_TRANSIT_MAX_RECORD;
}

void wb_transit_opener_fini(wb_transit_opener_t *o)
{
    free(o->rec);
    sodium_memzero(o, sizeof(*o));
}

int wb_transit_opener_partial(const wb_transit_opener_t *o)
{
    return o->hdr_have > 0 || o->rec != NULL;
}

/* Open body = nonce || mac || ct (blen bytes) into pt (may be at or before
 * body: libsodium moves overlapping input itself). Returns the plaintext
 * length or a negative error code. */
static long open_body(wb_transit_opener_t *o, uint8_t *pt, const uint8_t *body, size_t blen,
                      char *err, size_t errlen)
{
    uint8_t nonce[WB_WH_NONCE_LEN], mac[WB_WH_MAC_LEN], want[WB_WH_NONCE_LEN];
    memcpy(nonce, body, sizeof(nonce));
    memcpy(mac, body + WB_WH_NONCE_LEN, sizeof(mac));
    nonce_of(o->seq, want);
    if (sodium_memcmp(nonce, want, sizeof(nonce)) != 0)
        return fail(WB_EPROTO, err, errlen, "received out-of-order record (expected record %llu)",
                    (unsigned long long)o->seq);
    size_t ctlen = blen - WB_WH_NONCE_LEN - WB_WH_MAC_LEN;
    if (crypto_secretbox_open_detached(pt, body + WB_WH_NONCE_LEN + WB_WH_MAC_LEN, mac, ctlen,
                                       nonce, o->key) != 0)
        return fail(WB_ECORRUPT, err, errlen,
                    "record %llu does not decrypt: corrupted on the way, or not from our peer",
                    (unsigned long long)o->seq);
    o->seq++;
    return (long)ctlen;
}

int wb_transit_open_feed(wb_transit_opener_t *o, uint8_t *buf, size_t len, wb_transit_plain_cb cb,
                         void *user, char *err, size_t errlen)
{
    return wb_transit_open_feed_to(o, buf, len, buf, cb, user, err, errlen);
}

int wb_transit_open_feed_to(wb_transit_opener_t *o, const uint8_t *buf, size_t len, uint8_t *dst,
                            wb_transit_plain_cb cb, void *user, char *err, size_t errlen)
{
    size_t pos = 0, out = 0;
    while (pos < len) {
        if (o->rec != NULL) { /* finishing a record that spans feeds */
            size_t take = o->rec_len - o->rec_have;
            if (take > len - pos)
                take = len - pos;
            memcpy(o->rec + o->rec_have, buf + pos, take);
            o->rec_have += take;
            pos += take;
            if (o->rec_have < o->rec_len)
                break;
            uint8_t *rec = o->rec;
            o->rec = NULL;
            long n = open_body(o, rec, rec, o->rec_len, err, errlen);
            if (n < 0) {
                free(rec);
                return (int)n;
            }
            cb(user, rec, 0, (size_t)n);
            continue;
        }
        if (o->hdr_have < 4) {
            while (o->hdr_have < 4 && pos < len)
                o->hdr[o->hdr_have++] = buf[pos++];
            if (o->hdr_have < 4)
                break;
        }
        uint32_t rl = (uint32_t)o->hdr[0] << 24 | (uint32_t)o->hdr[1] << 16 |
                      (uint32_t)o->hdr[2] << 8 | o->hdr[3];
        if (rl < WB_WH_NONCE_LEN + WB_WH_MAC_LEN)
            return fail(WB_EPROTO, err, errlen, "record length %u is below 40", rl);
        if (rl > o->max_record + WB_WH_NONCE_LEN + WB_WH_MAC_LEN)
            return fail(WB_ETOOBIG, err, errlen, "record of %u bytes exceeds the maximum %u", rl,
                        o->max_record + WB_WH_NONCE_LEN + WB_WH_MAC_LEN);
        o->hdr_have = 0;
        if (len - pos >= rl) { /* whole: open it in place, its plaintext at out */
            long n = open_body(o, dst + out, buf + pos, rl, err, errlen);
            if (n < 0)
                return (int)n;
            cb(user, NULL, out, (size_t)n);
            out += (size_t)n;
            pos += rl;
        } else {
            o->rec = malloc(rl);
            if (o->rec == NULL)
                return fail(WB_ENOMEM, err, errlen, "out of memory for a record of %u bytes", rl);
            o->rec_len = rl;
            o->rec_have = len - pos;
            memcpy(o->rec, buf + pos, len - pos);
            pos = len;
        }
    }
    return 0;
}
