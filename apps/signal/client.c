/*
 * client.c - the signaling client actor and its manager (see client.h).
 *
 * Reading. The connection is a raw stream: a BLOB is the bytes of one read,
 * cut into frames by a proto.h decoder. A read that is exactly one message
 * frame (the usual case) becomes the WB_EV_SIG_MESSAGE itself, no copy;
 * otherwise each message is copied into an event of its own. Either way the
 * payload is the whole wire frame (length, id, topic, body), which
 * wb_sig_msg_get reads.
 *
 * Holding. A subscription whose actor refused a message keeps it, and the
 * ones after it, in a ring of hold_messages pointers allocated the first
 * time it is needed and kept; the runtime's WB_EV_RESUME (src = that actor)
 * lets them go on. While a subscription holds, each new message first tries
 * the held ones, so a lost resume (the runtime could not note us: WB_ENOMEM)
 * cannot stall it for ever.
 */
#include "apps/signal/client.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "runtime/error.h"
#include "runtime/idmap.h"
#include "runtime/log.h"
#include "runtime/strmap.h"
#include "sockets/tcp.h"

#define MOD      "signal"
#define DEF_NAME "signal-client"

typedef struct {
    uint64_t actor;
    uint16_t topic;
    wb_event_t **ring; /* held messages, oldest at head */
    uint32_t head, n, cap;
    uint8_t logged; /* the current stall's drops were logged */
    size_t bytes;
    uint64_t delivered, dropped;
} sub_t;

typedef struct {
    wb_rt_t *rt;
    wb_actor_t *self;
    uint64_t me;
    wb_sig_client_config_t cfg; /* strings point at the copies below */
    char *host, *cert, *name;
    char server[WB_TCP_HOST_MAX + 10]; /* "host:port" */
    uint64_t dialer, conn;
    uint8_t have_id, full, want_writable;
    uint8_t id[WB_SIG_ID_LEN];
    uint64_t conn_no;
    uint64_t ka_timer;
    wb_sig_decoder_t dec;
    wb_idmap_t subs; /* topic + 1 -> sub_t */
    sub_t def;       /* the default subscription */
    wb_sig_client_stats_t st;
} client_t;

static const uint8_t zero_id[WB_SIG_ID_LEN];

static client_t *get(wb_rt_t *rt, uint64_t client);

/* ---- to the owner -------------------------------------------------------- */

static void to_owner(client_t *c, uint16_t type, int status, uint64_t cookie, const void *p,
                     size_t n, int control)
{
    if (c->cfg.owner == 0)
        return;
    wb_event_t *ev = wb_event_new_copy(type, p, n);
    if (ev == NULL)
        return;
    ev->status = status;
    ev->cookie = cookie;
    if (control)
        ev->flags |= WB_EVF_CONTROL;
    if (wb_actor_send(c->rt, c->self, c->cfg.owner, ev) != 0)
        wb_event_free(ev);
}

/* ---- subscriptions ------------------------------------------------------- */

static void hold_pop_free(client_t *c, sub_t *s)
{
    wb_event_t *ev = s->ring[s->head];
    s->head = (s->head + 1) % s->cap;
    s->n--;
    s->bytes -= ev->len;
    c->st.held--;
    wb_event_free(ev);
}

/* Drop everything s holds, counted. */
static void hold_clear(client_t *c, sub_t *s)
{
    s->dropped += s->n;
    c->st.dropped_nosub += s->n;
    while (s->n > 0)
        hold_pop_free(c, s);
}

/* Hand s's held messages on while its actor takes them. */
static void flush(client_t *c, sub_t *s)
{
    while (s->n > 0) {
        wb_event_t *ev = s->ring[s->head];
        uint32_t len = ev->len;
        int rc = wb_actor_send(c->rt, c->self, s->actor, ev);
        if (rc == WB_EAGAIN || rc == WB_ENOMEM)
            return;
        if (rc != 0) { /* gone */
            hold_clear(c, s);
            return;
        }
        s->head = (s->head + 1) % s->cap;
        s->n--;
        s->bytes -= len;
        c->st.held--;
        s->delivered++;
        c->st.delivered++;
    }
    s->logged = 0;
}

/* Keep ev for s, or drop it when s holds its fill. */
static void hold(client_t *c, sub_t *s, wb_event_t *ev)
{
    if (s->cap == 0) {
        s->ring = malloc(c->cfg.hold_messages * sizeof(*s->ring));
        if (s->ring != NULL)
            s->cap = c->cfg.hold_messages;
    }
    if (s->n == s->cap || s->bytes + ev->len > c->cfg.hold_bytes) {
        if (!s->logged) { /* once per stall */
            char what[32] = "default subscriber";
            if (s != &c->def)
                snprintf(what, sizeof(what), "subscriber of topic %u", s->topic);
            wb_info(MOD,
                    "%s: the %s (actor %" PRIu64 ") is not keeping up: %u messages held, "
                    "dropping the next ones",
                    c->server, what, s->actor, s->n);
        }
        s->logged = 1;
        s->dropped++;
        c->st.dropped_full++;
        wb_event_free(ev);
        return;
    }
    s->ring[(s->head + s->n) % s->cap] = ev;
    s->n++;
    s->bytes += ev->len;
    c->st.held++;
}

/* One message for topic: to its subscriber, held, or dropped. */
static void route(client_t *c, wb_event_t *ev, uint16_t topic)
{
    c->st.received++;
    sub_t *s = wb_idmap_get(&c->subs, (uint64_t)topic + 1);
    if (s == NULL)
        s = &c->def;
    if (s->actor == 0) {
        c->st.dropped_nosub++;
        wb_event_free(ev);
        return;
    }
    if (s->n > 0)
        flush(c, s);
    if (s->n > 0) {
        hold(c, s, ev);
        return;
    }
    int rc = wb_actor_send(c->rt, c->self, s->actor, ev);
    if (rc == 0) {
        s->delivered++;
        c->st.delivered++;
    } else if (rc == WB_EAGAIN) {
        hold(c, s, ev); /* a WB_EV_RESUME will come */
    } else {
        s->dropped++;
        c->st.dropped_nosub++;
        wb_event_free(ev);
    }
}

typedef struct {
    client_t *c;
    uint64_t actor;
} resume_t;

static void resume_each(uint64_t key, void *val, void *arg)
{
    (void)key;
    resume_t *r = arg;
    sub_t *s = val;
    if (s->actor == r->actor && s->n > 0)
        flush(r->c, s);
}

/* Drop what s holds and free its ring (not s). */
static void sub_release(client_t *c, sub_t *s)
{
    hold_clear(c, s);
    free(s->ring);
    s->ring = NULL;
    s->cap = 0;
}

static void sub_free_each(uint64_t key, void *val, void *arg)
{
    (void)key;
    sub_release(arg, val);
    free(val);
}

/* ---- the connection ------------------------------------------------------ */

static int send_frame(client_t *c, wb_event_t *ev)
{
    wb_event_route(ev, WB_LANE_ACTOR, c->me, WB_LANE_NET, c->conn);
    int rc = wb_tcp_send(c->rt, c->conn, ev);
    if (rc != 0)
        wb_event_free(ev);
    return rc;
}

static void keepalive(client_t *c)
{
    c->ka_timer = 0;
    if (!c->have_id)
        return; /* restarted with the next id */
    if (!c->full) {
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, WB_SIG_KEEPALIVE_FRAME, 3);
        if (ev != NULL && send_frame(c, ev) == 0)
            c->st.keepalives++;
    }
    if (wb_timer_start(c->self, c->cfg.keepalive_ms, &c->ka_timer) != 0)
        c->ka_timer = 0;
}

static void drop_conn(client_t *c, const char *why)
{
    wb_warn(MOD, "%s: %s; reconnecting", c->server, why);
    wb_tcp_close(c->rt, c->conn); /* the dialer tries again */
    c->conn = 0;
    c->have_id = 0;
}

static void on_welcome(client_t *c, const wb_sig_frame_t *f)
{
    if (f->kind != WB_SIG_FRAME_MESSAGE || f->topic != 0 || f->body_len != 0 ||
        memcmp(f->id, zero_id, WB_SIG_ID_LEN) == 0) {
        drop_conn(c, "the server's first frame is not an id");
        return;
    }
    memcpy(c->id, f->id, WB_SIG_ID_LEN);
    c->have_id = 1;
    c->conn_no++;
    c->st.connections++;
    if (WB_LOG_ENABLED(WB_LOG_DEBUG)) {
        char hex[33];
        wb_sig_id_hex(c->id, hex);
        wb_debug(MOD, "%s: connected (%" PRIu64 "), id %s", c->server, c->conn_no, hex);
    }
    if (c->cfg.notices) {
        uint8_t flags = WB_SIG_OPT_NOTICES;
        wb_event_t *ev = wb_event_new(WB_EV_USER, wb_sig_frame_size(1));
        if (ev != NULL) {
            wb_sig_encode(ev->data, zero_id, WB_SIG_TOPIC_OPTIONS, &flags, 1);
            ev->flags |= WB_EVF_CONTROL;
            send_frame(c, ev);
        }
    }
    if (c->cfg.keepalive_ms != 0 && c->ka_timer == 0 &&
        wb_timer_start(c->self, c->cfg.keepalive_ms, &c->ka_timer) != 0)
        c->ka_timer = 0;
    if (c->cfg.on_id != NULL)
        c->cfg.on_id(c->cfg.arg, c->me, c->server, c->id, c->conn_no);
    to_owner(c, WB_EV_SIG_ID, 0, c->conn_no, c->id, WB_SIG_ID_LEN, 1);
}

/* One frame after the welcome. blob: the event holding exactly this frame,
 * taken here; NULL when the frame must be copied. */
static void on_frame(client_t *c, const wb_sig_frame_t *f, wb_event_t *blob)
{
    if (f->kind == WB_SIG_FRAME_KEEPALIVE) {
        wb_event_free(blob);
        return;
    }
    if (memcmp(f->id, zero_id, WB_SIG_ID_LEN) == 0) {
        /* From the server itself: a notice, when asked for. */
        if (f->topic == WB_SIG_TOPIC_NOTICE && f->body_len == 1 + WB_SIG_ID_LEN + 2) {
            c->st.notices++;
            to_owner(c, WB_EV_SIG_NOTICE, 0, c->conn_no, f->body, f->body_len, 0);
        }
        wb_event_free(blob);
        return;
    }
    wb_event_t *ev = blob;
    if (ev == NULL) {
        ev = wb_event_new(WB_EV_SIG_MESSAGE, wb_sig_frame_size(f->body_len));
        if (ev == NULL) {
            c->st.received++;
            c->st.dropped_full++;
            return;
        }
        wb_sig_encode(ev->data, f->id, f->topic, f->body, f->body_len);
    }
    ev->type = WB_EV_SIG_MESSAGE;
    ev->flags &= (uint8_t) ~(WB_TCP_BLOB_BINARY | WB_EVF_CONTROL);
    ev->status = 0;
    ev->cookie = c->conn_no;
    route(c, ev, f->topic);
}

static void on_blob(client_t *c, wb_event_t *ev)
{
    if (ev->src != c->conn || c->conn == 0) {
        wb_event_free(ev);
        return;
    }
    const uint8_t *p = ev->data;
    size_t n = ev->len, used;
    wb_sig_frame_t f;
    int rc = 0;
    /* A read that is exactly one message of 18 bytes of content or more
     * goes on as it is. */
    if (c->have_id && c->dec.need == 0 && c->dec.lenb_have == 0 &&
        n >= WB_SIG_LEN_BYTES + WB_SIG_HEADER &&
        WB_SIG_LEN_BYTES + ((size_t)p[0] | (size_t)p[1] << 8) == n) {
        rc = wb_sig_decode(&c->dec, p, n, &used, &f);
        if (rc == 1 && f.kind == WB_SIG_FRAME_MESSAGE) {
            on_frame(c, &f, ev);
            return;
        }
    } else {
        while (n > 0 && c->conn != 0) {
            rc = wb_sig_decode(&c->dec, p, n, &used, &f);
            p += used;
            n -= used;
            if (rc != 1)
                break;
            if (!c->have_id)
                on_welcome(c, &f);
            else
                on_frame(c, &f, NULL);
        }
    }
    wb_event_free(ev);
    if (rc < 0 && c->conn != 0)
        drop_conn(c, wb_sig_decoder_error(&c->dec));
}

static void on_opened(client_t *c, wb_event_t *ev)
{
    if (ev->cookie != c->dialer)
        return;
    c->conn = ev->src;
    c->have_id = 0;
    c->full = 0;
    wb_sig_decoder_fini(&c->dec);
    wb_sig_decoder_init(&c->dec, WB_SIG_MAX_CONTENT);
}

static void on_closed(client_t *c, wb_event_t *ev)
{
    if (ev->src != c->conn || c->conn == 0)
        return;
    wb_debug(MOD, "%s: connection %" PRIu64 " ended: %.*s", c->server, c->conn, (int)ev->len,
             (const char *)ev->data);
    c->conn = 0;
    c->have_id = 0;
}

static void on_retry(client_t *c, wb_event_t *ev)
{
    if (ev->src != c->dialer)
        return;
    c->st.failures++;
    wb_debug(MOD, "%s: %.*s", c->server, (int)ev->len, (const char *)ev->data);
    to_owner(c, WB_EV_SIG_DOWN, ev->status, ev->cookie, ev->data, ev->len + 1, 1);
}

static void writable(client_t *c)
{
    if (c->want_writable && !c->full) {
        c->want_writable = 0;
        to_owner(c, WB_EV_SIG_WRITABLE, 0, c->conn_no, NULL, 0, 1);
    }
}

static void handle(wb_actor_t *self, wb_event_t *ev)
{
    client_t *c = wb_actor_state(self);
    c->self = self;
    switch (ev->type) {
    case WB_EV_TCP_BLOB:
        on_blob(c, ev);
        return;
    case WB_EV_TCP_OPENED:
        on_opened(c, ev);
        break;
    case WB_EV_TCP_CLOSED:
        on_closed(c, ev);
        break;
    case WB_EV_TCP_RETRY:
        on_retry(c, ev);
        break;
    case WB_EV_TCP_BACKPRESSURE:
        if (ev->src == c->conn)
            c->full = 1;
        break;
    case WB_EV_TCP_WRITABLE:
        if (ev->src == c->conn) {
            c->full = 0;
            writable(c);
        }
        break;
    case WB_EV_RESUME:
        if (ev->src_lane == WB_LANE_ACTOR) {
            resume_t r = {c, ev->src};
            wb_idmap_each(&c->subs, resume_each, &r);
            if (c->def.actor == ev->src && c->def.n > 0)
                flush(c, &c->def);
        } else {
            writable(c);
        }
        break;
    case WB_EV_TIMER:
        if (ev->cookie == c->ka_timer && c->ka_timer != 0)
            keepalive(c);
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static void fini(wb_actor_t *self)
{
    client_t *c = wb_actor_state(self);
    wb_tcp_close(c->rt, c->dialer); /* when discarded with a parent */
    wb_idmap_each(&c->subs, sub_free_each, c);
    wb_idmap_fini(&c->subs);
    sub_release(c, &c->def);
    wb_sig_decoder_fini(&c->dec);
    free(c->host);
    free(c->cert);
    free(c->name);
    free(c);
}

static const wb_actor_def_t client_def = {DEF_NAME, handle, fini};

static client_t *get(wb_rt_t *rt, uint64_t client)
{
    wb_actor_t *a = wb_actor_lookup(rt, client);
    if (a == NULL || strcmp(wb_actor_name(a), DEF_NAME) != 0)
        return NULL;
    client_t *c = wb_actor_state(a);
    c->self = a;
    return c;
}

/* ---- TLS name ------------------------------------------------------------ */

static int is_ip(const char *s)
{
    uint8_t buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The name to check in the pinned certificate: NULL (the dialed host) when
 * the certificate is valid for host, else its first DNS name or its Common
 * Name. WB_EINVAL when the file holds no certificate. */
static int pick_name(const char *pem, const char *host, char **out)
{
    *out = NULL;
    FILE *f = fopen(pem, "r");
    if (f == NULL) {
        wb_error(MOD, "server certificate %s: cannot open it", pem);
        return WB_EINVAL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        wb_error(MOD, "server certificate %s: no PEM certificate in it", pem);
        return WB_EINVAL;
    }
    int ok = is_ip(host) ? X509_check_ip_asc(x, host, 0) == 1
                         : X509_check_host(x, host, strlen(host), 0, NULL) == 1;
    int rc = 0;
    if (!ok) {
        GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        const char *dns = NULL;
        size_t dns_n = 0;
        for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && dns == NULL; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
            if (g->type == GEN_DNS) {
                dns = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
                dns_n = (size_t)ASN1_STRING_length(g->d.dNSName);
            }
        }
        char cn[256];
        if (dns != NULL)
            *out = strndup(dns, dns_n);
        else if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                           sizeof(cn)) > 0)
            *out = strdup(cn);
        else
            cn[0] = 0; /* no name at all: the dialed host; verification will say why */
        if (*out == NULL && (dns != NULL || cn[0] != 0))
            rc = WB_ENOMEM;
        GENERAL_NAMES_free(gens);
    }
    X509_free(x);
    return rc;
}

/* ---- API ----------------------------------------------------------------- */

void wb_sig_client_config_init(wb_sig_client_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->port = 62443;
    cfg->keepalive_ms = 30000;
    cfg->reconnect_min_ms = 100;
    cfg->reconnect_max_ms = 5000;
    cfg->connect_timeout_ms = 10000;
    cfg->hold_messages = 256;
    cfg->hold_bytes = 1u << 20;
    cfg->write_high = (size_t)1 << 20;
}

static void client_free(client_t *c)
{
    wb_idmap_fini(&c->subs);
    wb_sig_decoder_fini(&c->dec);
    free(c->host);
    free(c->cert);
    free(c->name);
    free(c);
}

int wb_sig_client_start(wb_rt_t *rt, wb_actor_t *parent, const wb_sig_client_config_t *cfg,
                        uint64_t *client)
{
    if (rt == NULL || cfg == NULL || cfg->host == NULL || cfg->host[0] == 0 ||
        strlen(cfg->host) > WB_TCP_HOST_MAX || cfg->port == 0)
        return WB_EINVAL;
    client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WB_ENOMEM;
    c->rt = rt;
    c->cfg = *cfg;
    if (c->cfg.hold_messages == 0)
        c->cfg.hold_messages = 256;
    if (c->cfg.hold_bytes == 0)
        c->cfg.hold_bytes = 1u << 20;
    if (c->cfg.write_high == 0)
        c->cfg.write_high = (size_t)1 << 20;
    c->def.actor = cfg->default_sub;
    wb_idmap_init(&c->subs);
    wb_sig_decoder_init(&c->dec, WB_SIG_MAX_CONTENT);
    snprintf(c->server, sizeof(c->server), strchr(cfg->host, ':') ? "[%s]:%u" : "%s:%u", cfg->host,
             cfg->port);
    c->host = strdup(cfg->host);
    int rc = c->host == NULL ? WB_ENOMEM : 0;
    if (rc == 0 && cfg->server_cert != NULL) {
        c->cert = strdup(cfg->server_cert);
        if (c->cert == NULL)
            rc = WB_ENOMEM;
        else if (cfg->server_name != NULL)
            rc = (c->name = strdup(cfg->server_name)) == NULL ? WB_ENOMEM : 0;
        else
            rc = pick_name(c->cert, c->host, &c->name);
    }
    c->cfg.host = c->host;
    c->cfg.server_cert = c->cert;
    c->cfg.server_name = c->name;
    if (rc != 0) {
        client_free(c);
        return rc;
    }
    rc = wb_actor_spawn(rt, parent, &client_def, c, &c->me);
    if (rc != 0) {
        client_free(c);
        return rc;
    }
    c->self = wb_actor_lookup(rt, c->me);

    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.raw = 1;
    to.max_message = WB_SIG_LEN_BYTES + WB_SIG_MAX_CONTENT;
    to.write_high = c->cfg.write_high;
    to.write_low = c->cfg.write_high / 4;
    to.connect_timeout_ms = c->cfg.connect_timeout_ms;
    to.reconnect_min_ms = c->cfg.reconnect_min_ms;
    to.reconnect_max_ms = c->cfg.reconnect_max_ms;
    to.keepalive_s = 60; /* a server that vanished is noticed even when we are silent */
    wb_tls_opts_t tls;
    if (c->cert != NULL) {
        wb_tls_opts_init(&tls);
        tls.ca_file = c->cert;
        tls.server_name = c->name;
        tls.handshake_timeout_ms = c->cfg.connect_timeout_ms;
        to.tls = &tls;
    }
    rc = wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, c->me, c->host, c->cfg.port, &to, &c->dialer);
    if (rc != 0) {
        wb_actor_kill(rt, c->me); /* its fini frees c */
        return rc;
    }
    if (client != NULL)
        *client = c->me;
    return 0;
}

int wb_sig_client_close(wb_rt_t *rt, uint64_t client)
{
    if (get(rt, client) == NULL)
        return WB_ENOENT;
    return wb_actor_kill(rt, client);
}

int wb_sig_client_sendv(wb_rt_t *rt, uint64_t client, const uint8_t to[WB_SIG_ID_LEN],
                        uint16_t topic, const struct iovec *iov, int iovcnt)
{
    client_t *c = get(rt, client);
    if (c == NULL)
        return WB_ENOENT;
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (len > WB_SIG_MAX_BODY || topic == WB_SIG_TOPIC_NOTICE || topic == WB_SIG_TOPIC_OPTIONS ||
        memcmp(to, zero_id, WB_SIG_ID_LEN) == 0)
        return WB_EINVAL;
    if (!c->have_id || c->conn == 0)
        return WB_ECLOSED;
    if (c->full) {
        c->want_writable = 1;
        c->st.send_refused++;
        return WB_EAGAIN;
    }
    wb_event_t *ev = wb_event_new(WB_EV_USER, wb_sig_frame_size(len));
    if (ev == NULL)
        return WB_ENOMEM;
    /* The header as wb_sig_encode writes it, then the pieces in place. */
    uint8_t *p = ev->data;
    size_t content = WB_SIG_HEADER + len;
    p[0] = (uint8_t)content;
    p[1] = (uint8_t)(content >> 8);
    memcpy(p + 2, to, WB_SIG_ID_LEN);
    p[18] = (uint8_t)topic;
    p[19] = (uint8_t)(topic >> 8);
    p += WB_SIG_LEN_BYTES + WB_SIG_HEADER;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > 0)
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    int rc = send_frame(c, ev);
    if (rc == 0) {
        c->st.sent++;
    } else {
        c->st.send_refused++;
        if (rc == WB_EAGAIN)
            c->want_writable = 1;
    }
    return rc == WB_EINVAL ? WB_ECLOSED : rc;
}

int wb_sig_client_send(wb_rt_t *rt, uint64_t client, const uint8_t to[WB_SIG_ID_LEN],
                       uint16_t topic, const void *body, size_t len)
{
    struct iovec iov = {(void *)body, len};
    return wb_sig_client_sendv(rt, client, to, topic, &iov, 1);
}

int wb_sig_client_subscribe(wb_rt_t *rt, uint64_t client, uint16_t topic, uint64_t actor)
{
    client_t *c = get(rt, client);
    if (c == NULL)
        return WB_ENOENT;
    if (topic == WB_SIG_TOPIC_NOTICE || topic == WB_SIG_TOPIC_OPTIONS)
        return WB_EINVAL;
    uint64_t key = (uint64_t)topic + 1;
    sub_t *s = wb_idmap_get(&c->subs, key);
    if (actor == 0) {
        if (s != NULL) {
            wb_idmap_del(&c->subs, key);
            sub_release(c, s);
            free(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return WB_ENOMEM;
        s->topic = topic;
        if (wb_idmap_put(&c->subs, key, s) != 0) {
            free(s);
            return WB_ENOMEM;
        }
    }
    s->actor = actor;
    flush(c, s);
    return 0;
}

int wb_sig_client_set_default(wb_rt_t *rt, uint64_t client, uint64_t actor)
{
    client_t *c = get(rt, client);
    if (c == NULL)
        return WB_ENOENT;
    c->def.actor = actor;
    if (actor == 0)
        hold_clear(c, &c->def);
    else
        flush(c, &c->def);
    return 0;
}

int wb_sig_client_id(wb_rt_t *rt, uint64_t client, uint8_t id[WB_SIG_ID_LEN])
{
    client_t *c = get(rt, client);
    if (c == NULL)
        return WB_ENOENT;
    if (!c->have_id)
        return WB_ECLOSED;
    memcpy(id, c->id, WB_SIG_ID_LEN);
    return 0;
}

int wb_sig_client_stats(wb_rt_t *rt, uint64_t client, wb_sig_client_stats_t *out)
{
    client_t *c = get(rt, client);
    if (c == NULL)
        return WB_ENOENT;
    *out = c->st;
    return 0;
}

int wb_sig_client_topic_stats(wb_rt_t *rt, uint64_t client, uint16_t topic, int is_default,
                              uint64_t *delivered, uint64_t *held, uint64_t *dropped)
{
    client_t *c = get(rt, client);
    if (c == NULL)
        return WB_ENOENT;
    const sub_t *s = is_default ? &c->def : wb_idmap_get(&c->subs, (uint64_t)topic + 1);
    if (s == NULL)
        return WB_ENOENT;
    if (delivered != NULL)
        *delivered = s->delivered;
    if (held != NULL)
        *held = s->n;
    if (dropped != NULL)
        *dropped = s->dropped;
    return 0;
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int wb_sig_msg_get(const wb_event_t *ev, wb_sig_msg_t *out)
{
    const uint8_t *p = ev->data;
    if (ev->type != WB_EV_SIG_MESSAGE || ev->len < WB_SIG_LEN_BYTES + WB_SIG_HEADER ||
        (size_t)le16(p) + WB_SIG_LEN_BYTES != ev->len)
        return WB_EINVAL;
    memcpy(out->from, p + 2, WB_SIG_ID_LEN);
    out->topic = le16(p + 18);
    out->body = p + WB_SIG_LEN_BYTES + WB_SIG_HEADER;
    out->body_len = ev->len - WB_SIG_LEN_BYTES - WB_SIG_HEADER;
    return 0;
}

int wb_sig_notice_get(const wb_event_t *ev, wb_sig_notice_t *out)
{
    const uint8_t *p = ev->data;
    if (ev->type != WB_EV_SIG_NOTICE || ev->len != 1 + WB_SIG_ID_LEN + 2)
        return WB_EINVAL;
    out->code = p[0];
    memcpy(out->to, p + 1, WB_SIG_ID_LEN);
    out->topic = le16(p + 17);
    return 0;
}

int wb_sig_parse_addr(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
    const char *h = addr, *colon;
    size_t hn;
    if (addr == NULL)
        return WB_EINVAL;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':')
            return WB_EINVAL;
        h = addr + 1;
        hn = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || strchr(addr, ':') != colon)
            return WB_EINVAL;
        hn = (size_t)(colon - addr);
    }
    if (hn == 0 || hn >= hostlen || colon[1] == 0)
        return WB_EINVAL;
    char *end;
    unsigned long v = strtoul(colon + 1, &end, 10);
    if (*end != 0 || v == 0 || v > 65535 || colon[1] < '0' || colon[1] > '9')
        return WB_EINVAL;
    memcpy(host, h, hn);
    host[hn] = 0;
    *port = (uint16_t)v;
    return 0;
}

/* ---- the manager --------------------------------------------------------- */

struct wb_sig_mgr_s {
    wb_rt_t *rt;
    wb_actor_t *parent;
    wb_sig_client_config_t tmpl; /* strings point at the copies below */
    char *cert, *name;
    wb_strmap_t clients; /* "host:port" -> uint64_t (malloc'd) client id */
};

int wb_sig_mgr_new(wb_rt_t *rt, wb_actor_t *parent, const wb_sig_client_config_t *tmpl,
                   wb_sig_mgr_t **out)
{
    wb_sig_mgr_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return WB_ENOMEM;
    m->rt = rt;
    m->parent = parent;
    m->tmpl = *tmpl;
    m->cert = tmpl->server_cert != NULL ? strdup(tmpl->server_cert) : NULL;
    m->name = tmpl->server_name != NULL ? strdup(tmpl->server_name) : NULL;
    if ((tmpl->server_cert != NULL && m->cert == NULL) ||
        (tmpl->server_name != NULL && m->name == NULL)) {
        free(m->cert);
        free(m->name);
        free(m);
        return WB_ENOMEM;
    }
    m->tmpl.server_cert = m->cert;
    m->tmpl.server_name = m->name;
    wb_strmap_init(&m->clients);
    *out = m;
    return 0;
}

int wb_sig_mgr_client(wb_sig_mgr_t *m, const char *addr, uint64_t *client)
{
    char host[WB_TCP_HOST_MAX + 1];
    wb_sig_client_config_t cfg = m->tmpl;
    if (wb_sig_parse_addr(addr, host, sizeof(host), &cfg.port) != 0)
        return WB_EINVAL;
    size_t n = strlen(addr);
    uint64_t *id = wb_strmap_get(&m->clients, addr, n);
    if (id != NULL && get(m->rt, *id) != NULL) {
        *client = *id;
        return 0;
    }
    if (id == NULL) {
        id = malloc(sizeof(*id));
        if (id == NULL)
            return WB_ENOMEM;
        if (wb_strmap_put(&m->clients, addr, n, id) != 0) {
            free(id);
            return WB_ENOMEM;
        }
    }
    cfg.host = host;
    int rc = wb_sig_client_start(m->rt, m->parent, &cfg, id);
    if (rc != 0) {
        free(wb_strmap_del(&m->clients, addr, n));
        return rc;
    }
    *client = *id;
    return 0;
}

static int close_each(void *arg, const void *key, size_t len, void *val)
{
    (void)key;
    (void)len;
    wb_sig_mgr_t *m = arg;
    uint64_t *id = val;
    wb_sig_client_close(m->rt, *id);
    free(id);
    return 0;
}

void wb_sig_mgr_close(wb_sig_mgr_t *m)
{
    if (m == NULL)
        return;
    wb_strmap_each(&m->clients, close_each, m);
    wb_strmap_fini(&m->clients);
    free(m->cert);
    free(m->name);
    free(m);
}
