/*
 * server.c - the signaling server actor (see server.h).
 *
 * The caller attaches sockets (wb_sockets_attach) to the runtime before
 * wb_rt_start, with a lane limit of connections at least max_connections.
 *
 * Connections arrive as raw streams: a BLOB is the bytes of one read. Each
 * connection has a proto.h decoder. When a read is exactly one frame (the
 * usual case for small messages) the BLOB itself is the message: its id is
 * overwritten with the sender's and the same event goes to the recipient's
 * connection, no copy at all. A read holding several frames, or part of
 * one, costs one copy per frame into an event of its own.
 *
 * Ids. 16 random bytes per connection; the id map is keyed by the first 8
 * (random, so the idmap's linear probing sees uniform keys that no client
 * can choose) and a lookup compares all 16. A new id whose first 8 bytes are
 * taken (or zero) is drawn again, a bounded number of times.
 *
 * Backpressure. Each connection's write queue raises BACKPRESSURE above
 * queue_bytes; from then until WRITABLE (at a quarter) a message for it is
 * dropped, counted, and noticed to its sender if the sender asked. The lane
 * tells us late (what the actor sent before the BACKPRESSURE event reached
 * it is queued anyway), so the hard cap is 4 * queue_bytes plus room for two
 * largest frames, at least 8 MiB: a recipient the lane has to close for
 * passing it is logged by the lane and closed like any other. A send the
 * network lane refuses (its inbox full: WB_EAGAIN) is a dropped message too,
 * counted as dropped_full: nothing waits in the actor. Notices are data
 * events sent only while the sender's own queue is not full, so a client
 * that asks for notices and never reads them only loses notices.
 *
 * Refusals. A message on a reserved topic to a peer, or a frame to the
 * server (zero id) other than options, is a protocol error: the connection
 * is closed with one log line, as for a malformed or oversized frame
 * (closed_bad). max_connections and max_per_ip are the listener's (tcp.h):
 * the network lane refuses those connections before the actor hears of
 * them and logs each; `refused` counts those the actor itself could not
 * take (no memory for its state or its welcome).
 *
 * Idle timeout. Connections sit in a list ordered by their last complete
 * frame (keepalives included): a frame moves its connection to the tail,
 * O(1). A periodic sweep (every second, or a quarter of the timeout when
 * that is shorter) closes from the head while they are idle, so a
 * connection is closed between idle_timeout_ms and one sweep later. Bytes
 * that never make a frame do not count: a client that trickles a partial
 * frame is closed like a silent one.
 */
#include "apps/signal/server.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/signal/proto.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/idmap.h"
#include "runtime/log.h"
#include "sockets/tcp.h"

#define MOD         "signal"
#define DEF_NAME    "signal-server"
#define ID_ATTEMPTS 16

typedef struct conn_s conn_t;
struct conn_s {
    uint64_t tcp; /* the network lane's connection id */
    uint64_t key; /* the id's first 8 bytes, little-endian: the ids map's key */
    uint8_t id[WB_SIG_ID_LEN];
    uint8_t full;        /* BACKPRESSURE seen, no WRITABLE since */
    uint8_t notices;     /* asked for notices */
    conn_t *prev, *next; /* activity list, least recently active first */
    uint64_t last_ms;
    uint64_t queued; /* bytes queued as the lane last said */
    wb_sig_decoder_t dec;
    char peer[64];
};

typedef struct {
    wb_rt_t *rt;
    wb_actor_t *actor;
    uint64_t self;
    wb_sig_server_config_t cfg; /* strings point at the copies below */
    char *host, *tls_cert, *tls_key;
    uint64_t listener, sweep_timer;
    uint32_t sweep_ms;
    wb_idmap_t by_tcp; /* tcp connection id -> conn_t */
    wb_idmap_t by_id;  /* key -> conn_t */
    conn_t lru;        /* sentinel of the activity list */
    wb_sig_server_stats_t st;
} srv_t;

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- connections ------------------------------------------------------------- */

static void lru_unlink(conn_t *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->prev = c->next = c;
}

static void lru_append(srv_t *s, conn_t *c)
{
    c->prev = s->lru.prev;
    c->next = &s->lru;
    s->lru.prev->next = c;
    s->lru.prev = c;
}

static void touch(srv_t *s, conn_t *c)
{
    c->last_ms = wb_rt_now_ms(s->rt);
    if (s->lru.prev != c) {
        lru_unlink(c);
        lru_append(s, c);
    }
}

static conn_t *find_id(srv_t *s, const uint8_t id[WB_SIG_ID_LEN])
{
    uint64_t key = le64(id);
    if (key == 0)
        return NULL;
    conn_t *c = wb_idmap_get(&s->by_id, key);
    return c != NULL && memcmp(c->id, id, WB_SIG_ID_LEN) == 0 ? c : NULL;
}

static void conn_free(srv_t *s, conn_t *c)
{
    wb_idmap_del(&s->by_tcp, c->tcp);
    if (c->key != 0)
        wb_idmap_del(&s->by_id, c->key);
    lru_unlink(c);
    wb_sig_decoder_fini(&c->dec);
    free(c);
    s->st.connections = wb_idmap_count(&s->by_tcp);
}

/* Close c from this side with one log line; c is gone afterwards. */
static void conn_close(srv_t *s, conn_t *c, int idle, const char *why)
{
    char hex[33];
    wb_sig_id_hex(c->id, hex);
    wb_info(MOD, "connection %" PRIu64 " from %s (id %s): closed: %s", c->tcp, c->peer, hex, why);
    if (idle)
        s->st.closed_idle++;
    else
        s->st.closed_bad++;
    wb_tcp_close(s->rt, c->tcp);
    conn_free(s, c);
}

/* ---- sending ----------------------------------------------------------------- */

/* Send ev (its payload a whole frame) to connection tcp. 0, or an error with
 * ev freed. */
static int send_to(srv_t *s, uint64_t tcp, wb_event_t *ev)
{
    ev->flags &= (uint8_t)~WB_TCP_BLOB_BINARY;
    wb_event_route(ev, WB_LANE_ACTOR, s->self, WB_LANE_NET, tcp);
    int rc = wb_tcp_send(s->rt, tcp, ev);
    if (rc != 0)
        wb_event_free(ev);
    return rc;
}

static void notice(srv_t *s, conn_t *from, uint8_t code, const uint8_t id[WB_SIG_ID_LEN],
                   uint16_t topic)
{
    if (!from->notices || from->full)
        return;
    static const uint8_t zero[WB_SIG_ID_LEN];
    uint8_t body[1 + WB_SIG_ID_LEN + 2];
    body[0] = code;
    memcpy(body + 1, id, WB_SIG_ID_LEN);
    body[17] = (uint8_t)topic;
    body[18] = (uint8_t)(topic >> 8);
    wb_event_t *ev = wb_event_new(WB_EV_USER, wb_sig_frame_size(sizeof(body)));
    if (ev == NULL)
        return;
    wb_sig_encode(ev->data, zero, WB_SIG_TOPIC_NOTICE, body, sizeof(body));
    if (send_to(s, from->tcp, ev) == 0)
        s->st.notices++;
}

/* A message for the server itself (zero id). Returns -1 when c was closed. */
static int to_server(srv_t *s, conn_t *c, const wb_sig_frame_t *f)
{
    if (f->topic == WB_SIG_TOPIC_OPTIONS && f->body_len == 1) {
        c->notices = (f->body[0] & WB_SIG_OPT_NOTICES) != 0;
        return 0;
    }
    char why[96];
    snprintf(why, sizeof(why), "a frame to the server on topic 0x%04x with %zu bytes of body",
             f->topic, f->body_len);
    conn_close(s, c, 0, why);
    return -1;
}

/* One frame from c. blob: the event that holds exactly this frame (its
 * content at blob->data + 2), which is then reused or freed here; NULL when
 * the frame must be copied. Returns -1 when c was closed. */
static int on_frame(srv_t *s, conn_t *c, const wb_sig_frame_t *f, wb_event_t *blob)
{
    static const uint8_t zero[WB_SIG_ID_LEN];
    touch(s, c);
    if (f->kind == WB_SIG_FRAME_KEEPALIVE) {
        wb_event_free(blob);
        return 0;
    }
    if (memcmp(f->id, zero, WB_SIG_ID_LEN) == 0) {
        int rc = to_server(s, c, f);
        wb_event_free(blob);
        return rc;
    }
    if (f->topic == WB_SIG_TOPIC_NOTICE || f->topic == WB_SIG_TOPIC_OPTIONS) {
        char why[64];
        snprintf(why, sizeof(why), "a message to a peer on reserved topic 0x%04x", f->topic);
        wb_event_free(blob);
        conn_close(s, c, 0, why);
        return -1;
    }
    conn_t *to = find_id(s, f->id);
    if (to == NULL || to->full) {
        if (to == NULL)
            s->st.dropped_unknown++;
        else
            s->st.dropped_full++;
        wb_event_free(blob);
        notice(s, c, to == NULL ? WB_SIG_NOTICE_UNKNOWN : WB_SIG_NOTICE_FULL, f->id, f->topic);
        return 0;
    }
    wb_event_t *ev = blob;
    size_t size;
    if (ev != NULL) {
        memcpy((uint8_t *)ev->data + WB_SIG_LEN_BYTES, c->id, WB_SIG_ID_LEN);
        size = ev->len;
    } else {
        size = wb_sig_frame_size(f->body_len);
        ev = wb_event_new(WB_EV_USER, size);
        if (ev == NULL) {
            s->st.dropped_full++;
            notice(s, c, WB_SIG_NOTICE_FULL, f->id, f->topic);
            return 0;
        }
        wb_sig_encode(ev->data, c->id, f->topic, f->body, f->body_len);
    }
    int rc = send_to(s, to->tcp, ev);
    if (rc == 0) {
        s->st.relayed++;
        s->st.bytes_relayed += size;
    } else if (rc == WB_EAGAIN || rc == WB_ENOMEM) {
        s->st.dropped_full++;
        notice(s, c, WB_SIG_NOTICE_FULL, f->id, f->topic);
    } else {
        s->st.dropped_unknown++;
        notice(s, c, WB_SIG_NOTICE_UNKNOWN, f->id, f->topic);
    }
    return 0;
}

/* ---- events ------------------------------------------------------------------ */

static void on_blob(srv_t *s, wb_event_t *ev)
{
    conn_t *c = wb_idmap_get(&s->by_tcp, ev->src);
    if (c == NULL) {
        wb_event_free(ev);
        return;
    }
    const uint8_t *p = ev->data;
    size_t n = ev->len, used;
    wb_sig_frame_t f;
    int rc;
    if (c->dec.need == 0 && c->dec.lenb_have == 0 && n >= WB_SIG_LEN_BYTES &&
        WB_SIG_LEN_BYTES + ((size_t)p[0] | (size_t)p[1] << 8) == n) {
        /* The read is one whole frame: it goes on as it is. */
        rc = wb_sig_decode(&c->dec, p, n, &used, &f);
        if (rc == 1) {
            on_frame(s, c, &f, ev);
            return;
        }
    } else {
        rc = 0;
        while (n > 0) {
            rc = wb_sig_decode(&c->dec, p, n, &used, &f);
            p += used;
            n -= used;
            if (rc != 1)
                break;
            if (on_frame(s, c, &f, NULL) != 0) {
                wb_event_free(ev);
                return;
            }
        }
    }
    wb_event_free(ev);
    if (rc < 0)
        conn_close(s, c, 0, wb_sig_decoder_error(&c->dec));
}

static void on_opened(srv_t *s, wb_event_t *ev)
{
    conn_t *c = calloc(1, sizeof(*c));
    wb_event_t *welcome = wb_event_new(WB_EV_USER, wb_sig_frame_size(0));
    if (c == NULL || welcome == NULL || wb_idmap_put(&s->by_tcp, ev->src, c) != 0) {
        free(c);
        wb_event_free(welcome);
        s->st.refused++;
        wb_warn(MOD, "connection %" PRIu64 " from %.*s: refused: out of memory", ev->src,
                (int)ev->len, (const char *)ev->data);
        wb_tcp_close(s->rt, ev->src);
        return;
    }
    c->tcp = ev->src;
    c->prev = c->next = c;
    snprintf(c->peer, sizeof(c->peer), "%.*s", (int)ev->len, (const char *)ev->data);
    wb_sig_decoder_init(&c->dec, s->cfg.max_frame);
    lru_append(s, c);
    c->last_ms = wb_rt_now_ms(s->rt);
    /* 128 random bits: a repeat of the first 64 among live ids is already
     * unlikely enough that drawing again a few times never fails in practice. */
    for (int i = 0; i < ID_ATTEMPTS; i++) {
        randombytes_buf(c->id, sizeof(c->id));
        uint64_t key = le64(c->id);
        if (key != 0 && wb_idmap_get(&s->by_id, key) == NULL) {
            if (wb_idmap_put(&s->by_id, key, c) == 0)
                c->key = key;
            break;
        }
    }
    s->st.connections = wb_idmap_count(&s->by_tcp);
    if (c->key == 0) {
        wb_event_free(welcome);
        s->st.refused++;
        wb_warn(MOD, "connection %" PRIu64 " from %s: refused: no id for it", c->tcp, c->peer);
        wb_tcp_close(s->rt, c->tcp);
        conn_free(s, c);
        return;
    }
    wb_sig_encode(welcome->data, c->id, 0, NULL, 0);
    /* Control: the first frame is never refused for want of room. */
    welcome->flags |= WB_EVF_CONTROL;
    if (send_to(s, c->tcp, welcome) != 0) {
        s->st.refused++;
        wb_warn(MOD, "connection %" PRIu64 " from %s: refused: cannot send its id", c->tcp,
                c->peer);
        wb_tcp_close(s->rt, c->tcp);
        conn_free(s, c);
        return;
    }
    s->st.accepted++;
    if (WB_LOG_ENABLED(WB_LOG_DEBUG)) {
        char hex[33];
        wb_sig_id_hex(c->id, hex);
        wb_debug(MOD, "connection %" PRIu64 " from %s: id %s", c->tcp, c->peer, hex);
    }
}

static void on_closed(srv_t *s, wb_event_t *ev)
{
    if (ev->src == s->listener) {
        wb_info(MOD, "listener closed: %.*s", (int)ev->len, (const char *)ev->data);
        return;
    }
    conn_t *c = wb_idmap_get(&s->by_tcp, ev->src);
    if (c == NULL)
        return; /* closed from here: logged then */
    char hex[33];
    wb_sig_id_hex(c->id, hex);
    /* A peer that hangs up is the normal end; anything else has a reason. */
    if (ev->status == WB_ECLOSED || ev->status == 0)
        wb_debug(MOD, "connection %" PRIu64 " from %s (id %s): %.*s", c->tcp, c->peer, hex,
                 (int)ev->len, (const char *)ev->data);
    else
        wb_info(MOD, "connection %" PRIu64 " from %s (id %s): closed: %.*s", c->tcp, c->peer, hex,
                (int)ev->len, (const char *)ev->data);
    conn_free(s, c);
}

static void on_queue(srv_t *s, wb_event_t *ev, int full)
{
    conn_t *c = wb_idmap_get(&s->by_tcp, ev->src);
    if (c == NULL)
        return;
    c->full = (uint8_t)full;
    c->queued = ev->cookie;
    if (full)
        wb_debug(MOD, "connection %" PRIu64 ": %" PRIu64 " bytes queued, dropping messages to it",
                 c->tcp, c->queued);
}

static void sweep(srv_t *s)
{
    uint64_t now = wb_rt_now_ms(s->rt), idle = s->cfg.idle_timeout_ms;
    char why[64];
    while (s->lru.next != &s->lru && now - s->lru.next->last_ms >= idle) {
        conn_t *c = s->lru.next;
        snprintf(why, sizeof(why), "idle for %" PRIu64 " ms", now - c->last_ms);
        conn_close(s, c, 1, why);
    }
    if (wb_timer_start(s->actor, s->sweep_ms, &s->sweep_timer) != 0)
        wb_error(MOD, "out of memory: the idle timeout stops");
}

static void on_listening(srv_t *s, wb_event_t *ev)
{
    const wb_sig_server_config_t *cfg = &s->cfg;
    if (ev->status != 0) {
        wb_error(MOD, "cannot listen on %s port %u: %.*s", cfg->host, cfg->port, (int)ev->len,
                 (const char *)ev->data);
        if (cfg->on_listening != NULL)
            cfg->on_listening(cfg->arg, ev->status, 0);
        return;
    }
    wb_info(MOD,
            "listening on %s:%.*s (max %u connections, %u per address; idle timeout %u s; "
            "queue %u KiB per peer; frames up to %u bytes)",
            cfg->tls_cert != NULL ? "tls" : "tcp", (int)ev->len, (const char *)ev->data,
            cfg->max_connections, cfg->max_per_ip, cfg->idle_timeout_ms / 1000,
            cfg->queue_bytes / 1024, cfg->max_frame);
    if (cfg->idle_timeout_ms != 0 && wb_timer_start(s->actor, s->sweep_ms, &s->sweep_timer) != 0)
        wb_error(MOD, "out of memory: no idle timeout");
    if (cfg->on_listening != NULL)
        cfg->on_listening(cfg->arg, 0, (uint16_t)ev->cookie);
}

static void handle(wb_actor_t *self, wb_event_t *ev)
{
    srv_t *s = wb_actor_state(self);
    s->actor = self;
    switch (ev->type) {
    case WB_EV_TCP_BLOB:
        on_blob(s, ev);
        return; /* on_blob took it */
    case WB_EV_TCP_OPENED:
        on_opened(s, ev);
        break;
    case WB_EV_TCP_CLOSED:
        on_closed(s, ev);
        break;
    case WB_EV_TCP_BACKPRESSURE:
        on_queue(s, ev, 1);
        break;
    case WB_EV_TCP_WRITABLE:
        on_queue(s, ev, 0);
        break;
    case WB_EV_TCP_LISTENING:
        on_listening(s, ev);
        break;
    case WB_EV_TIMER:
        if (ev->cookie == s->sweep_timer)
            sweep(s);
        break;
    default:
        break; /* WB_EV_RESUME: nothing waits here */
    }
    wb_event_free(ev);
}

static void free_conn(uint64_t key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    conn_t *c = val;
    wb_sig_decoder_fini(&c->dec);
    free(c);
}

static void fini(wb_actor_t *self)
{
    srv_t *s = wb_actor_state(self);
    const wb_sig_server_stats_t *t = &s->st;
    wb_info(MOD,
            "stopped: %" PRIu64 " connections accepted, %" PRIu64 " open; %" PRIu64
            " messages relayed (%" PRIu64 " bytes), %" PRIu64 " dropped for unknown ids, %" PRIu64
            " for full queues, %" PRIu64 " notices; closed %" PRIu64 " idle, %" PRIu64
            " for bad frames; refused %" PRIu64,
            t->accepted, t->connections, t->relayed, t->bytes_relayed, t->dropped_unknown,
            t->dropped_full, t->notices, t->closed_idle, t->closed_bad, t->refused);
    wb_idmap_each(&s->by_tcp, free_conn, s);
    wb_idmap_fini(&s->by_tcp);
    wb_idmap_fini(&s->by_id);
    free(s->host);
    free(s->tls_cert);
    free(s->tls_key);
    free(s);
}

static const wb_actor_def_t server_def = {DEF_NAME, handle, fini};

/* ---- API --------------------------------------------------------------------- */

void wb_sig_server_config_init(wb_sig_server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "::";
    cfg->port = 62443;
    cfg->max_connections = 100000;
    cfg->idle_timeout_ms = 120000;
    cfg->queue_bytes = 1u << 20;
    cfg->max_frame = WB_SIG_MAX_CONTENT;
}

static char *dup_or_null(const char *p, int *oom)
{
    if (p == NULL)
        return NULL;
    char *d = strdup(p);
    if (d == NULL)
        *oom = 1;
    return d;
}

int wb_sig_server_start(wb_rt_t *rt, const wb_sig_server_config_t *cfg, uint64_t *actor)
{
    if (rt == NULL || cfg == NULL || (cfg->tls_cert == NULL) != (cfg->tls_key == NULL) ||
        cfg->max_frame > WB_SIG_MAX_CONTENT)
        return WB_EINVAL;
    if (sodium_init() < 0)
        return WB_ESYS;
    srv_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WB_ENOMEM;
    int oom = 0;
    s->rt = rt;
    s->cfg = *cfg;
    s->host = dup_or_null(cfg->host != NULL ? cfg->host : "::", &oom);
    s->tls_cert = dup_or_null(cfg->tls_cert, &oom);
    s->tls_key = dup_or_null(cfg->tls_key, &oom);
    s->cfg.host = s->host;
    s->cfg.tls_cert = s->tls_cert;
    s->cfg.tls_key = s->tls_key;
    if (s->cfg.max_frame == 0)
        s->cfg.max_frame = WB_SIG_MAX_CONTENT;
    if (s->cfg.queue_bytes == 0)
        s->cfg.queue_bytes = 1u << 20;
    if (s->cfg.max_connections == 0)
        s->cfg.max_connections = 100000;
    uint32_t idle = s->cfg.idle_timeout_ms;
    s->sweep_ms = idle != 0 && idle < 4000 ? (idle / 4 > 10 ? idle / 4 : 10) : 1000;
    s->lru.prev = s->lru.next = &s->lru;
    wb_idmap_init(&s->by_tcp);
    wb_idmap_init(&s->by_id);
    if (oom) {
        free(s->host);
        free(s->tls_cert);
        free(s->tls_key);
        free(s);
        return WB_ENOMEM;
    }
    uint64_t id;
    int rc = wb_actor_spawn(rt, NULL, &server_def, s, &id);
    if (rc != 0) {
        free(s->host);
        free(s->tls_cert);
        free(s->tls_key);
        free(s);
        return rc;
    }
    s->self = id;

    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.raw = 1;
    to.max_message = WB_SIG_LEN_BYTES + WB_SIG_MAX_CONTENT;
    to.max_connections = s->cfg.max_connections;
    to.max_per_ip = s->cfg.max_per_ip;
    to.backlog = 1024;
    /* Without an idle timeout, TCP keepalive at least notices peers that
     * vanished. */
    to.keepalive_s = idle == 0 ? 60 : 0;
    size_t q = s->cfg.queue_bytes;
    to.write_high = q;
    to.write_low = q / 4;
    size_t cap = 4 * q + 2 * (size_t)to.max_message;
    to.write_hard_cap = cap > ((size_t)8 << 20) ? cap : (size_t)8 << 20;
    wb_tls_opts_t tls;
    if (s->tls_cert != NULL) {
        wb_tls_opts_init(&tls);
        tls.cert_file = s->tls_cert;
        tls.key_file = s->tls_key;
        to.tls = &tls;
    }
    rc = wb_tcp_listen(rt, WB_LANE_ACTOR, id, s->cfg.host, s->cfg.port, &to, &s->listener);
    if (rc != 0) {
        wb_actor_kill(rt, id); /* its fini frees s */
        return rc;
    }
    if (actor != NULL)
        *actor = id;
    return 0;
}

int wb_sig_server_stats(wb_rt_t *rt, uint64_t actor, wb_sig_server_stats_t *out)
{
    wb_actor_t *a = wb_actor_lookup(rt, actor);
    if (a == NULL || strcmp(wb_actor_name(a), DEF_NAME) != 0)
        return WB_ENOENT;
    const srv_t *s = wb_actor_state(a);
    *out = s->st;
    return 0;
}
