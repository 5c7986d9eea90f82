/* websocket.c - see websocket.h. */
#include "sockets/websocket.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <wslay/wslay.h>

#include "runtime/error.h"

#define WS_GUID       "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HDR_VALUE_MAX 256 /* longest header value kept (others are skipped) */

enum { H_NONE = 0, H_UPGRADE, H_CONNECTION, H_KEY, H_VERSION, H_ACCEPT, H_EXTENSIONS };

/* The opening handshake's state: its own block, freed when the handshake
 * ends, so that an open connection does not carry it. */
typedef struct {
    char *path, *host, *page;
    http_parser hp;
    http_parser_settings hs;
    uint32_t head_bytes;
    int head_done;
    int cur;        /* H_* of the header whose value is being read */
    int field_ovf;  /* the field name being read is too long to matter */
    char field[32]; /* field name being read */
    size_t field_len;
    char url[256];
    size_t url_len;
    int url_ovf;
    char val[7][HDR_VALUE_MAX];
    size_t val_len[7];
    char client_key[25]; /* client: the key sent */
} hs_t;

/* Where the peer's frame stream stands, mirrored from the bytes wslay took:
 * enough to know when wslay holds nothing but its empty buffers. */
typedef struct {
    uint8_t hdr[10]; /* the frame header read so far (without the mask key) */
    uint8_t have;    /* header bytes seen, mask key included */
    uint8_t need;    /* header bytes in all, once known (2 until then) */
    uint8_t frag;    /* inside a fragmented data message */
    uint64_t left;   /* payload bytes of the current frame still to come */
} track_t;

struct wb_ws_conn_s {
    wb_ws_role_t role;
    wb_ws_state_t state;
    wb_ws_cb_t cb;
    void *user;
    uint32_t max_message, max_header, timeout_ms;
    hs_t *h; /* NULL once the handshake ended */
    int http_status;

    /* frames: ws exists only while something is under way (see ws_idle) */
    wslay_event_context_ptr ws;
    track_t tr;
    int in_feed;
    const uint8_t *in;
    size_t in_len;
    uint16_t close_code, close_sent;

    /* output */
    uint8_t *out;
    size_t out_len, out_cap;
    int err;
};

/* ---- SHA-1 (only for Sec-WebSocket-Accept) and base64 ---- */

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *b)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
               (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (bb & c) | (~bb & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = bb ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (bb & c) | (bb & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = bb ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(bb, 30);
        bb = a;
        a = t;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(const uint8_t *m, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t i = 0;
    for (; i + 64 <= len; i += 64)
        sha1_block(h, m + i);
    uint8_t blk[128] = {0};
    size_t rest = len - i;
    memcpy(blk, m + i, rest);
    blk[rest] = 0x80;
    size_t n = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int j = 0; j < 8; j++)
        blk[n - 1 - j] = (uint8_t)(bits >> (8 * j));
    sha1_block(h, blk);
    if (n == 128)
        sha1_block(h, blk + 64);
    for (int j = 0; j < 5; j++) {
        out[4 * j] = (uint8_t)(h[j] >> 24);
        out[4 * j + 1] = (uint8_t)(h[j] >> 16);
        out[4 * j + 2] = (uint8_t)(h[j] >> 8);
        out[4 * j + 3] = (uint8_t)h[j];
    }
}

static void base64(const uint8_t *in, size_t len, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < len ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = 0;
}

void wb_ws_accept_key(const char *key, size_t key_len, char out[29])
{
    uint8_t buf[HDR_VALUE_MAX + sizeof(WS_GUID)];
    if (key_len > HDR_VALUE_MAX)
        key_len = HDR_VALUE_MAX;
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, WS_GUID, sizeof(WS_GUID) - 1);
    uint8_t d[20];
    sha1(buf, key_len + sizeof(WS_GUID) - 1, d);
    base64(d, 20, out);
}

/* ---- output ---- */

static int out_put(wb_ws_conn_t *c, const void *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + n)
            cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (nb == NULL)
            return WB_ENOMEM;
        c->out = nb;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

size_t wb_ws_output(wb_ws_conn_t *c, const uint8_t **p)
{
    static const uint8_t none[1];
    *p = c->out != NULL ? c->out : none; /* never NULL, even with no buffer */
    return c->out_len;
}

void wb_ws_output_done(wb_ws_conn_t *c)
{
    c->out_len = 0;
    /* An idle connection keeps no buffer; a busy one keeps a modest one. */
    if (c->out_cap > 65536 || c->ws == NULL) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
}

static int finish(wb_ws_conn_t *c, int err)
{
    c->state = WB_WS_DONE;
    if (c->err == 0)
        c->err = err;
    return err;
}

/* ---- wslay glue ---- */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *u)
{
    wb_ws_conn_t *c = u;
    if (c->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->in_len ? len : c->in_len;
    memcpy(buf, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (ssize_t)n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *u)
{
    wb_ws_conn_t *c = u;
    if (out_put(c, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *u)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = getrandom(buf + got, len - got, 0);
        if (r <= 0) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* 1 when p[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static int utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0)
                lo = 0xA0;
            else if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0)
                lo = 0x90;
            else if (b == 0xF4)
                hi = 0x8F;
        } else {
            return 0;
        }
        if (n - i < len || p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

static void ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *u)
{
    wb_ws_conn_t *c = u;
    if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME) {
        if (wslay_event_get_close_sent(ctx))
            return; /* closing: data is discarded */
        if (a->opcode == WSLAY_TEXT_FRAME && !utf8_valid(a->msg, a->msg_length)) {
            wslay_event_queue_close(ctx, 1007, NULL, 0);
            return;
        }
        if (c->cb.message_cb != NULL && c->state == WB_WS_OPEN)
            c->cb.message_cb(c, c->user, a->opcode, a->msg, a->msg_length);
    } else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        c->close_code = a->status_code ? a->status_code : WB_WS_CLOSE_NO_STATUS;
        if (c->cb.close_cb != NULL) {
            size_t rl = a->msg_length > 2 ? a->msg_length - 2 : 0;
            c->cb.close_cb(c, c->user, c->close_code, rl ? a->msg + 2 : NULL, rl);
        }
    }
}

/* Run wslay's queued sends into the output; DONE when it has nothing more
 * to read or write. */
static int ws_pump(wb_ws_conn_t *c)
{
    if (c->ws == NULL)
        return 0; /* idle: nothing queued */
    if (wslay_event_send(c->ws) != 0)
        return finish(c, c->err ? c->err : WB_ENOMEM);
    if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
        uint16_t sent = wslay_event_get_status_code_sent(c->ws);
        int err = 0;
        if (wslay_event_get_close_sent(c->ws))
            c->close_sent = sent;
        if (sent == WB_WS_CLOSE_TOO_BIG)
            err = WB_ETOOBIG;
        else if (sent == WB_WS_CLOSE_PROTOCOL || sent == WB_WS_CLOSE_BAD_DATA)
            err = WB_EPROTO;
        return finish(c, err);
    }
    return 0;
}

/* wslay's context (8.8 KB with its two 4 KiB buffers) for the frames: made
 * when bytes arrive or a message is sent, released by ws_idle. */
static int ws_ctx(wb_ws_conn_t *c)
{
    if (c->ws != NULL)
        return 0;
    struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv,
        .send_callback = ws_send,
        .genmask_callback = ws_genmask,
        .on_msg_recv_callback = ws_msg,
    };
    int rc = c->role == WB_WS_SERVER ? wslay_event_context_server_init(&c->ws, &cbs, c)
                                     : wslay_event_context_client_init(&c->ws, &cbs, c);
    if (rc != 0) {
        c->ws = NULL;
        return WB_ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, c->max_message);
    return 0;
}

/* Release wslay's context when it holds nothing a new one would not: the
 * peer's stream is between messages (no partial header, payload or
 * fragmented message: wslay has consumed every byte it was given, so its
 * buffer is empty), nothing waits to be written and no close has started.
 * An idle connection then costs only this struct. Not inside wslay's own
 * calls (callbacks may send). */
static void ws_idle(wb_ws_conn_t *c)
{
    if (c->ws == NULL || c->in_feed || c->state != WB_WS_OPEN)
        return;
    if (c->tr.have != 0 || c->tr.left != 0 || c->tr.frag)
        return;
    if (wslay_event_get_close_sent(c->ws) || wslay_event_get_close_received(c->ws) ||
        !wslay_event_get_read_enabled(c->ws) || wslay_event_want_write(c->ws) ||
        wslay_event_get_queued_msg_count(c->ws) != 0)
        return;
    wslay_event_context_free(c->ws);
    c->ws = NULL;
}

/* Follow the frame boundaries in bytes wslay has taken. Only ever used to
 * decide ws_idle: a stream wslay finds malformed starts a close, after
 * which the context is kept to the end anyway. */
static void track(track_t *t, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (t->left > 0) {
            size_t k = n < t->left ? n : (size_t)t->left;
            t->left -= k;
            p += k;
            n -= k;
            continue;
        }
        if (t->have < sizeof(t->hdr))
            t->hdr[t->have] = *p;
        t->have++;
        p++;
        n--;
        if (t->have == 2) {
            uint8_t l7 = t->hdr[1] & 0x7f;
            uint8_t ext = 0;
            if (l7 == 126)
                ext = 2;
            else if (l7 == 127)
                ext = 8;
            t->need = (uint8_t)(2 + ext + ((t->hdr[1] & 0x80) ? 4 : 0));
        }
        if (t->have < 2 || t->have < t->need)
            continue;
        uint8_t l7 = t->hdr[1] & 0x7f, op = t->hdr[0] & 0x0f, fin = t->hdr[0] & 0x80;
        uint64_t len = l7;
        if (l7 >= 126) {
            int k = l7 == 126 ? 2 : 8;
            len = 0;
            for (int i = 0; i < k; i++)
                len = len << 8 | t->hdr[2 + i];
        }
        if (op == WSLAY_TEXT_FRAME || op == WSLAY_BINARY_FRAME || op == WSLAY_CONTINUATION_FRAME)
            t->frag = !fin;
        t->left = len;
        t->have = 0;
        t->need = 2;
    }
}

static int ws_start(wb_ws_conn_t *c)
{
    c->state = WB_WS_OPEN;
    c->tr.need = 2;
    if (c->cb.open_cb != NULL)
        c->cb.open_cb(c, c->user);
    return 0;
}

static int ws_feed(wb_ws_conn_t *c, const uint8_t *in, size_t len)
{
    if (ws_ctx(c) != 0)
        return finish(c, WB_ENOMEM);
    c->in = in;
    c->in_len = len;
    c->in_feed = 1;
    int rc = wslay_event_recv(c->ws);
    c->in_feed = 0;
    track(&c->tr, in, len - c->in_len);
    c->in = NULL;
    c->in_len = 0;
    if (rc != 0)
        return finish(c, rc == WSLAY_ERR_NOMEM ? WB_ENOMEM : WB_EPROTO);
    return ws_pump(c);
}

/* ---- HTTP handshake ---- */

static int hp_url(http_parser *p, const char *at, size_t n)
{
    hs_t *c = ((wb_ws_conn_t *)p->data)->h;
    if (c->url_len + n >= sizeof(c->url)) {
        c->url_ovf = 1;
        return 0;
    }
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    return 0;
}

static int hp_field(http_parser *p, const char *at, size_t n)
{
    hs_t *c = ((wb_ws_conn_t *)p->data)->h;
    if (c->cur != -1) { /* a new field starts */
        c->cur = -1;
        c->field_len = 0;
        c->field_ovf = 0;
    }
    if (c->field_len + n >= sizeof(c->field)) {
        c->field_ovf = 1;
        return 0;
    }
    memcpy(c->field + c->field_len, at, n);
    c->field_len += n;
    return 0;
}

static int field_id(hs_t *c)
{
    static const char *const names[] = {NULL,
                                        "upgrade",
                                        "connection",
                                        "sec-websocket-key",
                                        "sec-websocket-version",
                                        "sec-websocket-accept",
                                        "sec-websocket-extensions"};
    if (c->field_ovf)
        return H_NONE;
    for (int i = 1; i < 7; i++)
        if (strlen(names[i]) == c->field_len && strncasecmp(names[i], c->field, c->field_len) == 0)
            return i;
    return H_NONE;
}

static int hp_value(http_parser *p, const char *at, size_t n)
{
    hs_t *c = ((wb_ws_conn_t *)p->data)->h;
    if (c->cur == -1) {
        c->cur = field_id(c);
        if (c->cur != H_NONE && c->val_len[c->cur] > 0) {
            /* A repeated header: join as a list. */
            if (c->val_len[c->cur] + 1 < HDR_VALUE_MAX)
                c->val[c->cur][c->val_len[c->cur]++] = ',';
        }
    }
    if (c->cur == H_NONE)
        return 0;
    size_t *l = &c->val_len[c->cur];
    if (*l + n >= HDR_VALUE_MAX)
        n = HDR_VALUE_MAX - 1 - *l;
    memcpy(c->val[c->cur] + *l, at, n);
    *l += n;
    c->val[c->cur][*l] = 0;
    return 0;
}

static int hp_headers_done(http_parser *p)
{
    ((wb_ws_conn_t *)p->data)->h->head_done = 1;
    return 1; /* no body expected: stop here */
}

/* 1 when the comma-separated list contains token (case-insensitive). */
static int has_token(const char *list, size_t len, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        size_t s = i;
        while (i < len && list[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (list[e - 1] == ' ' || list[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(list + s, token, tl) == 0)
            return 1;
    }
    return 0;
}

static int respond(wb_ws_conn_t *c, int status, const char *reason, const char *extra,
                   const char *body)
{
    char head[512];
    size_t bl = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     status, reason, bl, extra ? extra : "");
    c->http_status = status;
    if (out_put(c, head, (size_t)n) != 0 || (bl && out_put(c, body, bl) != 0))
        return finish(c, WB_ENOMEM);
    return 0;
}

static int server_head(wb_ws_conn_t *c)
{
    hs_t *h = c->h;
    size_t ql = h->url_len;
    for (size_t i = 0; i < h->url_len; i++)
        if (h->url[i] == '?') {
            ql = i;
            break;
        }
    int is_path = !h->url_ovf && ql == strlen(h->path) && memcmp(h->url, h->path, ql) == 0;
    int wants_upgrade = has_token(h->val[H_UPGRADE], h->val_len[H_UPGRADE], "websocket");
    if (h->hp.method != HTTP_GET) {
        respond(c, 405, "Method Not Allowed", "Allow: GET\r\n", "method not allowed\n");
        return finish(c, WB_EPROTO);
    }
    if (!is_path) {
        if (!h->url_ovf && ql == 1 && h->url[0] == '/' && !wants_upgrade) {
            respond(c, 200, "OK", NULL, h->page);
            return finish(c, 0);
        }
        respond(c, 404, "Not Found", NULL, "not found\n");
        return finish(c, WB_EPROTO);
    }
    if (!wants_upgrade || !has_token(h->val[H_CONNECTION], h->val_len[H_CONNECTION], "upgrade") ||
        h->val_len[H_KEY] == 0 || h->hp.http_major != 1 || h->hp.http_minor < 1) {
        respond(c, 400, "Bad Request", NULL, "bad websocket upgrade request\n");
        return finish(c, WB_EPROTO);
    }
    if (h->val_len[H_VERSION] != 2 || memcmp(h->val[H_VERSION], "13", 2) != 0) {
        respond(c, 426, "Upgrade Required", "Sec-WebSocket-Version: 13\r\n",
                "websocket version 13 only\n");
        return finish(c, WB_EPROTO);
    }
    /* The key is 16 bytes in base64: 24 characters. */
    if (h->val_len[H_KEY] != 24) {
        respond(c, 400, "Bad Request", NULL, "bad Sec-WebSocket-Key\n");
        return finish(c, WB_EPROTO);
    }
    char acc[29], head[256];
    wb_ws_accept_key(h->val[H_KEY], h->val_len[H_KEY], acc);
    /* No Sec-WebSocket-Extensions: every extension offered is declined. */
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     acc);
    c->http_status = 101;
    if (out_put(c, head, (size_t)n) != 0)
        return finish(c, WB_ENOMEM);
    return ws_start(c);
}

static int client_head(wb_ws_conn_t *c)
{
    hs_t *h = c->h;
    char acc[29];
    c->http_status = h->hp.status_code;
    wb_ws_accept_key(h->client_key, strlen(h->client_key), acc);
    if (h->hp.status_code != 101 ||
        !has_token(h->val[H_UPGRADE], h->val_len[H_UPGRADE], "websocket") ||
        !has_token(h->val[H_CONNECTION], h->val_len[H_CONNECTION], "upgrade") ||
        h->val_len[H_ACCEPT] != 28 || memcmp(h->val[H_ACCEPT], acc, 28) != 0 ||
        h->val_len[H_EXTENSIONS] != 0)
        return finish(c, WB_EPROTO);
    return ws_start(c);
}

static int http_feed(wb_ws_conn_t *c, const uint8_t *in, size_t len, size_t *used)
{
    hs_t *h = c->h;
    size_t room = c->max_header - h->head_bytes;
    size_t n = len < room ? len : room;
    size_t got = http_parser_execute(&h->hp, &h->hs, (const char *)in, n);
    *used = got;
    h->head_bytes += (uint32_t)got;
    if (h->head_done) {
        /* http-parser stops with the header-complete callback's 1; the
         * final LF of the head was consumed. */
        return c->role == WB_WS_SERVER ? server_head(c) : client_head(c);
    }
    if (HTTP_PARSER_ERRNO(&h->hp) != HPE_OK) {
        if (c->role == WB_WS_SERVER)
            respond(c, 400, "Bad Request", NULL, "bad request\n");
        return finish(c, WB_EPROTO);
    }
    if (h->head_bytes >= c->max_header) {
        if (c->role == WB_WS_SERVER)
            respond(c, 431, "Request Header Fields Too Large", NULL, "request head too large\n");
        return finish(c, WB_ETOOBIG);
    }
    return 0;
}

/* ---- public ---- */

void wb_ws_opts_init(wb_ws_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->path = "/v1";
    o->host = "localhost";
    o->page = "waybill mailbox: WebSocket on /v1\n";
    o->max_message = 1u << 20;
    o->max_header = 16384;
    o->handshake_timeout_ms = 10000;
}

/* The handshake has ended (opened, answered or failed): drop its state. */
static void hs_drop(wb_ws_conn_t *c)
{
    if (c->h == NULL || c->state == WB_WS_HANDSHAKE)
        return;
    free(c->h->path);
    free(c->h->host);
    free(c->h->page);
    free(c->h);
    c->h = NULL;
}

int wb_ws_new(wb_ws_conn_t **out, wb_ws_role_t role, const wb_ws_opts_t *opts, const wb_ws_cb_t *cb,
              void *user)
{
    wb_ws_opts_t d;
    if (opts == NULL) {
        wb_ws_opts_init(&d);
        opts = &d;
    }
    if (out == NULL || opts->path == NULL || opts->path[0] != '/' || strlen(opts->path) > 200 ||
        (role != WB_WS_SERVER && role != WB_WS_CLIENT))
        return WB_EINVAL;
    wb_ws_conn_t *c = calloc(1, sizeof(*c));
    hs_t *h = calloc(1, sizeof(*h));
    if (c == NULL || h == NULL) {
        free(c);
        free(h);
        return WB_ENOMEM;
    }
    c->h = h;
    c->role = role;
    if (cb != NULL)
        c->cb = *cb;
    c->user = user;
    /* Each side needs only its own strings. */
    h->path = strdup(opts->path);
    if (role == WB_WS_CLIENT)
        h->host = strdup(opts->host ? opts->host : "localhost");
    else
        h->page = strdup(opts->page ? opts->page : "");
    c->max_message = opts->max_message ? opts->max_message : 1u << 20;
    c->max_header = opts->max_header ? opts->max_header : 16384;
    c->timeout_ms = opts->handshake_timeout_ms ? opts->handshake_timeout_ms : 10000;
    h->cur = H_NONE;
    http_parser_init(&h->hp, role == WB_WS_SERVER ? HTTP_REQUEST : HTTP_RESPONSE);
    h->hp.data = c;
    http_parser_settings_init(&h->hs);
    h->hs.on_url = hp_url;
    h->hs.on_header_field = hp_field;
    h->hs.on_header_value = hp_value;
    h->hs.on_headers_complete = hp_headers_done;
    if (h->path == NULL || (role == WB_WS_CLIENT ? h->host == NULL : h->page == NULL)) {
        wb_ws_free(c);
        return WB_ENOMEM;
    }
    if (role == WB_WS_CLIENT) {
        uint8_t k[16];
        char req[600];
        if (ws_genmask(NULL, k, sizeof(k), NULL) != 0) {
            wb_ws_free(c);
            return WB_ENOMEM;
        }
        base64(k, sizeof(k), h->client_key);
        int n = snprintf(req, sizeof(req),
                         "GET %s HTTP/1.1\r\nHost: %.253s\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         h->path, h->host, h->client_key);
        if (out_put(c, req, (size_t)n) != 0) {
            wb_ws_free(c);
            return WB_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void wb_ws_free(wb_ws_conn_t *c)
{
    if (c == NULL)
        return;
    if (c->ws != NULL)
        wslay_event_context_free(c->ws);
    c->state = WB_WS_DONE;
    hs_drop(c);
    free(c->out);
    free(c);
}

int wb_ws_feed(wb_ws_conn_t *c, const uint8_t *in, size_t len)
{
    if (c->state == WB_WS_DONE)
        return 0;
    int rc = 0;
    if (c->state == WB_WS_HANDSHAKE) {
        size_t used;
        rc = http_feed(c, in, len, &used);
        hs_drop(c);
        if (rc != 0 || c->state != WB_WS_OPEN)
            return rc;
        in += used;
        len -= used;
    }
    if (len == 0)
        rc = ws_pump(c);
    else
        rc = ws_feed(c, in, len);
    ws_idle(c);
    return rc;
}

int wb_ws_send(wb_ws_conn_t *c, int opcode, const uint8_t *data, size_t len)
{
    if (opcode != WB_WS_TEXT && opcode != WB_WS_BINARY)
        return WB_EINVAL;
    if (c->state == WB_WS_HANDSHAKE)
        return WB_EAGAIN;
    if (c->state == WB_WS_DONE || (c->ws != NULL && wslay_event_get_close_sent(c->ws)))
        return WB_ECLOSED;
    if (ws_ctx(c) != 0)
        return WB_ENOMEM;
    struct wslay_event_msg m = {.opcode = (uint8_t)opcode, .msg = data, .msg_length = len};
    int rc = wslay_event_queue_msg(c->ws, &m);
    if (rc == WSLAY_ERR_NOMEM)
        return WB_ENOMEM;
    if (rc != 0)
        return WB_ECLOSED;
    rc = ws_pump(c);
    ws_idle(c);
    return rc;
}

int wb_ws_close(wb_ws_conn_t *c, uint16_t code, const char *reason)
{
    if (c->state == WB_WS_HANDSHAKE) {
        finish(c, 0);
        hs_drop(c);
        return 0;
    }
    if (c->state == WB_WS_DONE)
        return 0;
    if (ws_ctx(c) != 0)
        return WB_ENOMEM;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123)
        rl = 123;
    int rc = wslay_event_queue_close(c->ws, code, (const uint8_t *)reason, rl);
    if (rc == WSLAY_ERR_NOMEM)
        return WB_ENOMEM;
    return ws_pump(c);
}

int wb_ws_timeout(wb_ws_conn_t *c)
{
    if (c->state != WB_WS_HANDSHAKE)
        return 0;
    finish(c, WB_ETIMEDOUT);
    hs_drop(c);
    return 1;
}

wb_ws_state_t wb_ws_state(const wb_ws_conn_t *c)
{
    return c->state;
}
int wb_ws_http_status(const wb_ws_conn_t *c)
{
    return c->http_status;
}
uint16_t wb_ws_close_code(const wb_ws_conn_t *c)
{
    return c->close_code;
}
uint16_t wb_ws_close_code_sent(const wb_ws_conn_t *c)
{
    return c->close_sent;
}
