/*
 * tcp.c - TCP on the network lane. The contract is in tcp.h and
 * docs/sockets.md. How it is kept:
 *
 * Objects. Connections, listeners and dialers share a header (obj_t): id,
 * owner, options, and `pending`: how many libuv handles and requests are
 * still open on the object's behalf, plus one while its creator runs and one
 * while a connection waits in the flush list. An object that has ended is
 * `dead`: out of the id map, it sends no more events. It is freed when
 * pending reaches 0, which is in the last close (or getaddrinfo) callback, so
 * no callback ever sees freed memory. Write and connect requests need no
 * count of their own: libuv runs their callbacks (with UV_ECANCELED at worst)
 * before the close callback of their stream.
 *
 * Lane state. As in db/: wb_sockets_attach allocates it and queues it to the
 * lane as the payload of a control event (WB__EV_TCP_STATE) whose free_cb
 * drops a reference. References: that event, the prepare handle, and each
 * object not yet freed. on_stop closes every handle and frees the event; the
 * last close callback frees the state while the runtime drains the loop. A
 * runtime that never starts frees the queued event, and with it the state.
 *
 * Writes. wb_tcp_send events are queued on their connection, chained through
 * the event's own `next` link (the event is ours), and a prepare handle
 * writes each dirty connection's queue with one uv_write per BATCH_MSGS
 * messages just before the loop polls. Each message's 4-byte header lives
 * in its event's `cookie` field, which is ours too while the event is queued:
 * no allocation per message.
 *
 * Reads. One shared read buffer: libuv calls alloc and read back to back, so
 * no two connections ever use it at once. Whatever must outlive the callback
 * (a partial frame, the rest after a refused blob) is copied out.
 *
 * WebSocket (opts.ws). Each connection runs a wb_ws_conn_t (websocket.h)
 * here: reads are fed to it WS_FEED_CHUNK bytes at a time, its output (the 101, pongs, close
 * frames) is copied into an event and queued like a message, and so is each
 * message the owner sends, framed by wb_ws_send as it arrives (or, before
 * the upgrade, kept unframed on a list of its own). The connection is C_OPEN
 * from the TCP connect on; ws_open says whether the owner has had OPENED.
 * Messages come out of wb_ws_feed's callback, where the feed cannot be
 * stopped: those the owner's inbox refuses are chained on held_head in
 * order, the rest of the read goes to the stash as for framed streams, and
 * when the WebSocket ended in the same chunk its CLOSED waits (ws_ending)
 * until they are delivered. The options are copied in the
 * calling thread into one block (ws_opts_copy) that the command event, then
 * the listener or dialer owns; connections copy what they need from it at
 * creation (wb_ws_new), so a listener may go before its connections.
 *
 * TLS (opts.tls). Each connection runs a wb_tls_t (tls.h) made at creation
 * (a client's ClientHello waits in it for the connect). Ciphertext never
 * enters the write queue: whatever TLS produces (handshake messages, alerts,
 * records, close_notify) is written at once by tls_out, so it goes out in
 * the order TLS made it. The write queue holds plaintext (framed messages,
 * raw bytes, WebSocket output) exactly as without TLS; conn_flush encrypts
 * it once the handshake is done, gathering small messages in a scratch
 * buffer so they share records. Reads: the ciphertext is fed in, then
 * tls_pump pulls plaintext TLS_PLAIN bytes at a time into a lane buffer and
 * hands it to the framed/raw/WebSocket reader as if it had been read; when
 * that reader holds a blob it stashes the rest of the piece and stops, and
 * what TLS still has stays inside it until conn_pump comes back. The
 * connection's timer is the TLS handshake's deadline, then (for a
 * WebSocket) the upgrade's. SSL contexts live in a cache on the lane state,
 * freed with it.
 *
 * Per-address limit (opts.max_per_ip). A small open-addressing map on the
 * lane, (listener, peer address) -> connections alive, holds an entry only
 * while its count is above 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* splice(2), pipe2(2), F_SETPIPE_SZ */
#endif
#include "sockets/tcp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/idmap.h"
#include "runtime/log.h"
#include "sockets/frame.h"
#include "sockets/tls.h"
#include "sockets/websocket.h"

#define MOD        "tcp"
#define REASON_MAX 400
#define ADDR_MAX   64 /* "[v6 address]:port" */
#define BATCH_MSGS 64 /* messages per uv_write */
#define WR_CACHE   64 /* write requests kept for reuse */

#define WS_HEADER_MAX 14   /* a WebSocket frame header with a mask key */
#define WS_FEED_CHUNK 4096 /* bytes given to wb_ws_feed at once: bounds what is held */

#define TLS_PLAIN   16384        /* plaintext pulled at once (one record) */
#define TLS_SCRATCH 16384        /* small messages gathered into one record */
#define TLS_BATCH   (256u << 10) /* plaintext encrypted per write */

#define DEF_MAX_CONNS   16384u
#define DEF_READ_BUFFER 65536u
#define MIN_READ_BUFFER 512u
#define MAX_READ_BUFFER (16u << 20)

enum { OBJ_CONN = 1, OBJ_LISTENER, OBJ_DIALER };
enum {
    CMD_LISTEN = 1,
    CMD_DIAL,
    CMD_DIALER,
    CMD_CLOSE,
    CMD_OWNER,
    CMD_PAUSE,
    CMD_UNPAUSE,
    CMD_SPLICE
};
enum { C_RESOLVING = 1, C_CONNECTING, C_OPEN, C_LINGER, C_DEAD };

/* A request from any thread to the lane (the payload of WB__EV_TCP_CMD). */
typedef struct {
    uint8_t op;
    uint8_t owner_lane;
    uint16_t port;
    uint64_t id;
    uint64_t owner;
    wb_tcp_opts_t opts;
    uint64_t id2;            /* CMD_SPLICE: b (id is a) */
    wb_tcp_splice_opts_t sp; /* CMD_SPLICE */
    char host[WB_TCP_HOST_MAX + 1];
} cmd_t;

/* Ids of connections, listeners and dialers, process-wide: callers get them
 * before the lane has seen the request. */
static _Atomic uint64_t next_id = 1;

typedef struct sockets_s sockets_t;
typedef struct obj_s obj_t;
typedef struct conn_s conn_t;
typedef struct gai_s gai_t;
typedef struct splice_s splice_t;

struct obj_s {
    int kind;
    int dead;
    int pending;
    uint64_t id;
    wb_lane_t owner_lane;
    uint64_t owner;
    sockets_t *s;
    obj_t *prev, *next; /* s->all: every object not yet freed */
    gai_t *gai;         /* name resolution in flight */
    wb_tcp_opts_t opts;
    uint16_t port;
    char host[WB_TCP_HOST_MAX + 1];
};

struct gai_s {
    uv_getaddrinfo_t req;
    obj_t *o;
};

struct conn_s {
    obj_t o;
    int state;
    uint64_t cookie; /* the listener or dialer, or 0 */
    int from_listener, from_dialer;
    int counted;      /* in s->nconns */
    uv_tcp_t *tcp;    /* NULL once closed; a failed attempt's is replaced */
    uv_timer_t timer; /* connect timeout, then linger */
    int timer_live;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    struct addrinfo *ai, *ai_next;
    char addr[ADDR_MAX]; /* the address being connected to */

    wb_frame_decoder_t fr;
    int reading;
    int paused;              /* by the owner: wb_tcp_pause */
    int peer_done, fin_sent; /* linger */
    wb_event_t *held_head;   /* blobs the owner's inbox refused, in order */
    wb_event_t *held_tail;
    uint8_t *stash; /* read bytes not yet decoded, after a refusal */
    size_t stash_off, stash_len;

    wb_ws_conn_t *ws;    /* opts.ws: the WebSocket, else NULL */
    uint32_t ws_timeout; /* its handshake timeout, ms */
    uint8_t ws_open;     /* upgraded: the owner has had OPENED */
    uint8_t ws_ending;   /* the WebSocket is done; CLOSED waits behind held blobs */
    uint8_t ws_nomem;    /* a message could not be handed up */
    uint8_t ip_fam;      /* counted in s's per-address map under ip (AF_INET/6) */
    int ws_rc;           /* what wb_ws_feed returned when it ended */
    uint8_t ip[16];      /* the peer's address, for the per-address map */
    wb_event_t *pq_head; /* sent before the upgrade: not yet framed */
    wb_event_t *pq_tail;

    wb_tls_t *tls;        /* opts.tls: the TLS connection, else NULL */
    uint32_t tls_timeout; /* its handshake timeout, ms */
    uint8_t tls_open;     /* its handshake is done */

    wb_event_t *wq_head, *wq_tail; /* sent, not yet given to uv_write */
    size_t queued;                 /* bytes sent and not yet written */
    int bp;                        /* BACKPRESSURE said, WRITABLE not yet */
    int dirty;
    conn_t *dirty_next;
    uint64_t opened_at;

    splice_t *sp;    /* spliced (wb_tcp_splice): the connection belongs to it */
    uint8_t sp_side; /* 0: a, 1: b */
};

typedef struct {
    obj_t o;
    uv_tcp_t tcp;
    int tcp_live;
    uint32_t nconns;
} listener_t;

typedef struct {
    obj_t o;
    uv_timer_t timer;
    int timer_live;
    uint32_t failures; /* since the last connection that lasted */
    uint64_t conn;     /* the attempt or connection in hand, or 0 */
} dialer_t;

typedef struct wr_s {
    uv_write_t req;
    conn_t *c;
    wb_event_t *head; /* the messages of this write, chained by next */
    size_t bytes;
    struct wr_s *next_free;
} wr_t;

struct sockets_s {
    wb_rt_t *rt;
    uv_loop_t *loop;
    wb_sockets_config_t cfg;
    wb_idmap_t objs; /* id -> obj_t *, live objects only */
    obj_t *all;
    uint8_t *rbuf;
    uv_prepare_t prep;
    int prep_live;
    conn_t *dirty;
    wr_t *wr_free;
    size_t wr_nfree;
    uint32_t nconns;
    int refs;
    uint64_t rng;
    wb_event_t *token;
    struct ipent_s *ipmap; /* (listener, address) -> connections, for max_per_ip */
    uint32_t ipcap, ipn;
    wb_tls_cache_t *tls_cache; /* SSL contexts, made when first needed */
    uint8_t *tls_buf;          /* TLS_PLAIN bytes read, then TLS_SCRATCH to write */
    size_t tls_scratch_len;
    splice_t *splices; /* every splice not yet ended */
    splice_t *sp_dirty;
};

/* An entry of the per-address map; fam 0 marks a free slot. */
typedef struct ipent_s {
    uint64_t listener;
    uint32_t count;
    uint8_t fam;
    uint8_t addr[16];
} ipent_t;

static void conn_end(conn_t *c, int status, const char *reason);
static void conn_finish(conn_t *c, int status, const char *reason);
static void conn_flush(conn_t *c);
static void ip_del(sockets_t *s, uint64_t listener, int fam, const uint8_t *addr);
static void dialer_conn_ended(dialer_t *d, int was_open, uint64_t opened_at, int status,
                              const char *reason);
static void sp_peer_end(splice_t *sp, int side, int status, const char *reason);
static void sp_owner_close(splice_t *sp, int side);
static void sp_kick(splice_t *sp);
static void sp_prepare(sockets_t *s);

/* ---- small things ----------------------------------------------------------- */

static uint64_t new_id(void)
{
    return atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
}

static uint64_t rnd(sockets_t *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* libuv's error codes in waybill's code space. */
static int wb_code(int uverr)
{
    switch (uverr) {
    case UV_ETIMEDOUT:
        return WB_ETIMEDOUT;
    case UV_ECANCELED:
    case UV_EAI_CANCELED:
        return WB_ECANCELED;
    case UV_ENOMEM:
    case UV_ENOBUFS:
    case UV_EAI_MEMORY:
        return WB_ENOMEM;
    case UV_EADDRINUSE:
    case UV_EMFILE:
    case UV_ENFILE:
        return WB_EBUSY;
    case UV_EINVAL:
        return WB_EINVAL;
    case UV_EAI_NONAME:
    case UV_EAI_NODATA:
    case UV_EAI_FAMILY:
    case UV_EAI_SERVICE:
    case UV_EADDRNOTAVAIL:
    case UV_ENOENT:
        return WB_ENOENT;
    case UV_EAI_AGAIN:
    case UV_EAI_FAIL:
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_EPIPE:
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
    case UV_ENETDOWN:
    case UV_ENOTCONN:
    case UV_EIO:
        return WB_EIO;
    default:
        return WB_ESYS;
    }
}

static void fmt_hostport(char *out, size_t n, const char *host, uint16_t port)
{
    if (strchr(host, ':') != NULL)
        snprintf(out, n, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(out, n, "%s:%u", host, (unsigned)port);
}

static void addr_text(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        snprintf(out, n, "?");
    }
}

static uint16_t addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* A numeric IPv4 or IPv6 address: 0; anything else is a name to resolve. */
static int parse_literal(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -1;
}

/* ---- the per-address map ---------------------------------------------------- */

/* The peer address of sa as a key: family and 4 or 16 bytes; an IPv4 address
 * mapped into IPv6 (a dual-stack listener) counts as the IPv4 one. 0 when
 * sa is neither. */
static int ip_key(const struct sockaddr *sa, uint8_t addr[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(addr, 0, 16);
    if (sa->sa_family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a6, mapped, 12) == 0) {
            memcpy(addr, a6 + 12, 4);
            return AF_INET;
        }
        memcpy(addr, a6, 16);
        return AF_INET6;
    }
    return 0;
}

static uint32_t ip_hash(uint64_t listener, int fam, const uint8_t *addr)
{
    uint64_t a, b;
    memcpy(&a, addr, 8);
    memcpy(&b, addr + 8, 8);
    uint64_t h = listener * 0x9E3779B97F4A7C15ull ^ a ^ (b * 0xC2B2AE3D27D4EB4Full) ^ (uint64_t)fam;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

/* The slot of the key, or of the free slot where it would go (cap > 0). */
static uint32_t ip_slot(const sockets_t *s, uint64_t listener, int fam, const uint8_t *addr)
{
    uint32_t mask = s->ipcap - 1, i = ip_hash(listener, fam, addr) & mask;
    for (;;) {
        const ipent_t *e = &s->ipmap[i];
        if (e->fam == 0 ||
            (e->listener == listener && e->fam == fam && memcmp(e->addr, addr, 16) == 0))
            return i;
        i = (i + 1) & mask;
    }
}

static uint32_t ip_count(const sockets_t *s, uint64_t listener, int fam, const uint8_t *addr)
{
    return s->ipcap == 0 ? 0 : s->ipmap[ip_slot(s, listener, fam, addr)].count;
}

/* Rebuild with cap slots (a power of two above the entries). */
static int ip_resize(sockets_t *s, uint32_t cap)
{
    ipent_t *old = s->ipmap;
    uint32_t ocap = s->ipcap;
    ipent_t *m = calloc(cap, sizeof(*m));
    if (m == NULL)
        return WB_ENOMEM;
    s->ipmap = m;
    s->ipcap = cap;
    for (uint32_t i = 0; i < ocap; i++)
        if (old[i].fam != 0)
            m[ip_slot(s, old[i].listener, old[i].fam, old[i].addr)] = old[i];
    free(old);
    return 0;
}

static int ip_add(sockets_t *s, uint64_t listener, int fam, const uint8_t *addr)
{
    if ((s->ipn + 1) * 2 > s->ipcap && ip_resize(s, s->ipcap ? s->ipcap * 2 : 16) != 0)
        return WB_ENOMEM;
    ipent_t *e = &s->ipmap[ip_slot(s, listener, fam, addr)];
    if (e->fam == 0) {
        e->listener = listener;
        e->fam = (uint8_t)fam;
        memcpy(e->addr, addr, 16);
        s->ipn++;
    }
    e->count++;
    return 0;
}

/* One connection fewer; at 0 the entry goes (backward-shift deletion, so
 * no tombstones), and the table shrinks when mostly empty. */
static void ip_del(sockets_t *s, uint64_t listener, int fam, const uint8_t *addr)
{
    if (s->ipcap == 0)
        return;
    uint32_t mask = s->ipcap - 1, i = ip_slot(s, listener, fam, addr);
    if (s->ipmap[i].fam == 0 || --s->ipmap[i].count > 0)
        return;
    s->ipn--;
    for (uint32_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        ipent_t *e = &s->ipmap[j];
        if (e->fam == 0)
            break;
        uint32_t home = ip_hash(e->listener, e->fam, e->addr) & mask;
        /* e may fill the hole at i unless its home lies in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->ipmap[i] = *e;
            i = j;
        }
    }
    s->ipmap[i].fam = 0;
    s->ipmap[i].count = 0;
    if (s->ipn == 0) {
        free(s->ipmap);
        s->ipmap = NULL;
        s->ipcap = 0;
    } else if (s->ipcap > 16 && s->ipn * 8 < s->ipcap) {
        ip_resize(s, s->ipcap / 2); /* on failure the larger table stays */
    }
}

/* ---- upward events ---------------------------------------------------------- */

static void post_to(sockets_t *s, wb_lane_t lane, uint64_t owner, uint64_t src, uint16_t type,
                    int status, uint64_t cookie, const char *text)
{
    size_t n = text != NULL ? strlen(text) : 0;
    wb_event_t *ev = wb_event_new(type, n + 1);
    if (ev == NULL) {
        wb_error(MOD, "out of memory: lost event %u for %" PRIu64, (unsigned)type, src);
        return;
    }
    if (n > 0)
        memcpy(ev->data, text, n);
    ((char *)ev->data)[n] = '\0';
    ev->len = (uint32_t)n;
    ev->flags |= WB_EVF_CONTROL;
    ev->status = status;
    ev->cookie = cookie;
    wb_event_route(ev, WB_LANE_NET, src, lane, owner);
    if (wb_rt_send(s->rt, ev) != 0)
        wb_event_free(ev); /* the owner's lane has stopped */
}

static void post(obj_t *o, uint16_t type, int status, uint64_t cookie, const char *text)
{
    post_to(o->s, o->owner_lane, o->owner, o->id, type, status, cookie, text);
}

/* ---- objects ---------------------------------------------------------------- */

static void s_unref(sockets_t *s)
{
    WB_ASSERT(s->refs > 0);
    if (--s->refs > 0)
        return;
    free(s->rbuf);
    free(s->ipmap);
    wb_tls_cache_free(s->tls_cache);
    free(s->tls_buf);
    while (s->wr_free != NULL) {
        wr_t *w = s->wr_free;
        s->wr_free = w->next_free;
        free(w);
    }
    wb_idmap_fini(&s->objs);
    free(s);
}

/* Register a new object (calloc'd by the caller, kind set) with its id. It
 * starts with pending = 1: the creator's, given back with obj_release. */
static int obj_add(sockets_t *s, obj_t *o, uint64_t id, wb_lane_t lane, uint64_t owner,
                   const wb_tcp_opts_t *opts, const char *host, uint16_t port)
{
    o->id = id;
    o->owner_lane = lane;
    o->owner = owner;
    o->opts = *opts;
    o->port = port;
    snprintf(o->host, sizeof(o->host), "%s", host);
    if (wb_idmap_put(&s->objs, id, o) != 0)
        return WB_ENOMEM;
    o->s = s;
    o->pending = 1;
    o->next = s->all;
    if (s->all != NULL)
        s->all->prev = o;
    s->all = o;
    s->refs++;
    return 0;
}

/* Free the ws and tls blocks that the options of a request, listener or
 * dialer own. */
static void opts_free(wb_tcp_opts_t *o)
{
    free((void *)o->ws);
    free((void *)o->tls);
    o->ws = NULL;
    o->tls = NULL;
}

static void obj_free(obj_t *o)
{
    sockets_t *s = o->s;
    if (o->prev != NULL)
        o->prev->next = o->next;
    else
        s->all = o->next;
    if (o->next != NULL)
        o->next->prev = o->prev;
    if (o->kind == OBJ_CONN) {
        conn_t *c = (conn_t *)o;
        wb_frame_decoder_fini(&c->fr);
        if (c->ai != NULL)
            uv_freeaddrinfo(c->ai);
        wb_ws_free(c->ws);
        wb_tls_free(c->tls);
    } else {
        opts_free(&o->opts); /* the blocks ws_opts_copy and tls_opts_copy made */
    }
    free(o);
    s_unref(s);
}

static void obj_release(obj_t *o)
{
    WB_ASSERT(o->pending > 0);
    if (--o->pending == 0 && o->dead)
        obj_free(o);
}

/* The object has ended: out of the map, no more events. Freed once its
 * handles are closed (the caller closes them). */
static void obj_kill(obj_t *o)
{
    if (o->dead)
        return;
    o->dead = 1;
    wb_idmap_del(&o->s->objs, o->id);
    if (o->gai != NULL)
        uv_cancel((uv_req_t *)&o->gai->req);
}

static obj_t *obj_get(sockets_t *s, uint64_t id, int kind)
{
    obj_t *o = id != 0 ? wb_idmap_get(&s->objs, id) : NULL;
    return o != NULL && (kind == 0 || o->kind == kind) ? o : NULL;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

/* Start resolving o->host; the answer comes to on_resolved. */
static int resolve(obj_t *o)
{
    gai_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return UV_ENOMEM;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    if (o->kind == OBJ_LISTENER)
        hints.ai_flags = AI_PASSIVE;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)o->port);
    g->o = o;
    int rc = uv_getaddrinfo(o->s->loop, &g->req, on_resolved, o->host, port, &hints);
    if (rc != 0) {
        free(g);
        return rc;
    }
    o->gai = g;
    o->pending++;
    return 0;
}

static void free_handle_cb(uv_handle_t *h)
{
    free(h);
}

/* ---- connections: opening --------------------------------------------------- */

static void conn_timer_close_cb(uv_handle_t *h)
{
    obj_release(&((conn_t *)h->data)->o);
}

static void conn_tcp_close_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    free(h);
    obj_release(&c->o);
}

static void conn_close_handles(conn_t *c)
{
    if (c->tcp != NULL) {
        uv_close((uv_handle_t *)c->tcp, conn_tcp_close_cb);
        c->tcp = NULL;
        c->reading = 0;
    }
    if (c->timer_live) {
        uv_close((uv_handle_t *)&c->timer, conn_timer_close_cb);
        c->timer_live = 0;
    }
}

static void ws_on_open(wb_ws_conn_t *w, void *user);
static void ws_on_message(wb_ws_conn_t *w, void *user, int opcode, const uint8_t *data, size_t len);

/* The connection's WebSocket, from opts->ws: server role for an accepted
 * connection, client role (Host: ws->host, else the dialed host) for a dial. */
static int conn_ws_new(conn_t *c, const wb_ws_opts_t *wo, int server, const char *host)
{
    static const wb_ws_cb_t cb = {ws_on_open, ws_on_message, NULL};
    wb_ws_opts_t o = *wo;
    char hb[WB_TCP_HOST_MAX + 3];
    if (!server && o.host == NULL) {
        snprintf(hb, sizeof(hb), strchr(host, ':') != NULL ? "[%s]" : "%s", host);
        o.host = hb;
    }
    c->ws_timeout = wo->handshake_timeout_ms;
    return wb_ws_new(&c->ws, server ? WB_WS_SERVER : WB_WS_CLIENT, &o, &cb, c);
}

/* The lane's SSL context cache and TLS buffers, made when first needed. */
static wb_tls_cache_t *tls_cache(sockets_t *s)
{
    if (s->tls_buf == NULL && (s->tls_buf = malloc(TLS_PLAIN + TLS_SCRATCH)) == NULL)
        return NULL;
    if (s->tls_cache == NULL && wb_tls_cache_new(&s->tls_cache) != 0)
        return NULL;
    return s->tls_cache;
}

/* Make the context opts->tls needs now, so that a file that cannot be read
 * is reported by the listener or dial. 0, or the code with the reason. */
static int tls_prepare(sockets_t *s, const wb_tcp_opts_t *opts, int server, char *reason, size_t n)
{
    wb_tls_cache_t *cache = tls_cache(s);
    if (cache == NULL) {
        snprintf(reason, n, "out of memory");
        return WB_ENOMEM;
    }
    return wb_tls_cache_prepare(cache, server ? WB_TLS_SERVER : WB_TLS_CLIENT, opts->tls, reason,
                                n);
}

/* The connection's TLS, from opts->tls: server role for an accepted
 * connection, client role (checking tls->server_name, else the dialed host)
 * for a dial. The context was prepared by the listener or the dial. */
static int conn_tls_new(conn_t *c, sockets_t *s, const wb_tls_opts_t *to, int server,
                        const char *host)
{
    wb_tls_opts_t o = *to;
    if (!server && o.server_name == NULL)
        o.server_name = host;
    c->tls_timeout = o.handshake_timeout_ms;
    wb_tls_cache_t *cache = tls_cache(s);
    if (cache == NULL)
        return WB_ENOMEM;
    return wb_tls_new(&c->tls, server ? WB_TLS_SERVER : WB_TLS_CLIENT, &o, cache, NULL, 0);
}

static conn_t *conn_new(sockets_t *s, uint64_t id, wb_lane_t lane, uint64_t owner,
                        const wb_tcp_opts_t *opts, const char *host, uint16_t port, uint64_t cookie,
                        int server)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->o.kind = OBJ_CONN;
    if ((opts->ws != NULL && conn_ws_new(c, opts->ws, server, host) != 0) ||
        (opts->tls != NULL && conn_tls_new(c, s, opts->tls, server, host) != 0) ||
        obj_add(s, &c->o, id, lane, owner, opts, host, port) != 0) {
        wb_ws_free(c->ws);
        wb_tls_free(c->tls);
        free(c);
        return NULL;
    }
    c->o.opts.ws = NULL; /* the listener's or dialer's, or the request's */
    c->o.opts.tls = NULL;
    c->cookie = cookie;
    wb_frame_decoder_init(&c->fr, opts->max_message);
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    c->timer_live = 1;
    c->o.pending++;
    c->counted = 1;
    s->nconns++;
    return c;
}

/* Bytes of framing added to each message sent: none on a raw connection. */
static size_t hdr_len(const conn_t *c)
{
    return c->o.opts.raw ? 0 : WB_FRAME_HEADER;
}

/* Bytes of the WebSocket frame that carries len bytes (client frames are
 * masked). */
static size_t ws_frame_len(const conn_t *c, size_t len)
{
    size_t h = 2 + (len >= 65536 ? 8 : len >= 126 ? 2 : 0);
    return h + len + (c->from_listener ? 0 : 4);
}

/* Drop the messages not yet given to uv_write. */
static void wq_free(conn_t *c)
{
    wb_event_t *h = c->wq_head;
    c->wq_head = c->wq_tail = NULL;
    while (h != NULL) {
        wb_event_t *next = atomic_load_explicit(&h->next, memory_order_relaxed);
        c->queued -= hdr_len(c) + (size_t)h->len;
        wb_event_free(h);
        h = next;
    }
}

/* Drop the messages sent before the upgrade, not yet framed. */
static void pq_free(conn_t *c)
{
    wb_event_t *h = c->pq_head;
    c->pq_head = c->pq_tail = NULL;
    while (h != NULL) {
        wb_event_t *next = atomic_load_explicit(&h->next, memory_order_relaxed);
        c->queued -= ws_frame_len(c, h->len);
        wb_event_free(h);
        h = next;
    }
}

/* Append ev to a chain linked through the events' own next fields. */
static void chain_push(wb_event_t **head, wb_event_t **tail, wb_event_t *ev)
{
    atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    if (*tail != NULL)
        atomic_store_explicit(&(*tail)->next, ev, memory_order_relaxed);
    else
        *head = ev;
    *tail = ev;
}

static void free_chain(wb_event_t *ev)
{
    while (ev != NULL) {
        wb_event_t *next = atomic_load_explicit(&ev->next, memory_order_relaxed);
        wb_event_free(ev);
        ev = next;
    }
}

/* Forget everything the connection held for its owner: after this it is
 * dead to the world. keep_writes: its write queue stays, to be flushed. */
static void conn_detach(conn_t *c, int keep_writes)
{
    sockets_t *s = c->o.s;
    obj_kill(&c->o);
    if (c->counted) {
        c->counted = 0;
        s->nconns--;
        listener_t *l = c->from_listener ? (listener_t *)obj_get(s, c->cookie, OBJ_LISTENER) : NULL;
        if (l != NULL)
            l->nconns--;
    }
    if (c->ip_fam != 0) {
        ip_del(s, c->cookie, c->ip_fam, c->ip);
        c->ip_fam = 0;
    }
    free_chain(c->held_head);
    c->held_head = c->held_tail = NULL;
    free(c->stash);
    c->stash = NULL;
    wb_frame_decoder_fini(&c->fr);
    pq_free(c);
    if (!keep_writes)
        wq_free(c);
    if (c->tcp != NULL && c->reading) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = 0;
    }
}

/* Tell the connection's dialer that it is gone (if the dialer still cares). */
static void notify_dialer(conn_t *c, int was_open, int status, const char *reason)
{
    if (!c->from_dialer)
        return;
    dialer_t *d = (dialer_t *)obj_get(c->o.s, c->cookie, OBJ_DIALER);
    if (d != NULL && d->conn == c->o.id)
        dialer_conn_ended(d, was_open, c->opened_at, status, reason);
}

/* The owner has had OPENED for this connection. */
static int conn_known(const conn_t *c)
{
    return c->state == C_OPEN && (c->ws != NULL ? c->ws_open : c->tls == NULL || c->tls_open);
}

/* Whether an ending connection owes its owner a CLOSED: one that opened, or
 * a one-shot dial. An attempt of a dialer that never opened is the dialer's
 * business; an accepted WebSocket whose handshake failed was never heard of. */
static int conn_owes_closed(const conn_t *c, int was_open)
{
    return was_open || (!c->from_dialer && !c->from_listener);
}

/* The connection ended for a reason of its own (peer, error, limit). */
static void conn_end(conn_t *c, int status, const char *reason)
{
    if (c->state == C_DEAD)
        return;
    if (c->state == C_LINGER) {
        /* Already reported closed; only the socket is left. */
        c->state = C_DEAD;
        conn_close_handles(c);
        return;
    }
    if (c->sp != NULL) {
        sp_peer_end(c->sp, c->sp_side, status, reason); /* comes back with sp NULL */
        return;
    }
    int was_open = conn_known(c);
    conn_detach(c, 0);
    c->state = C_DEAD;
    wb_debug(MOD, "connection %" PRIu64 " closed: %s", c->o.id, reason);
    if (conn_owes_closed(c, was_open))
        post(&c->o, WB_EV_TCP_CLOSED, status, c->cookie, reason);
    conn_close_handles(c);
    notify_dialer(c, was_open, status, reason);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)hint;
    buf->base = (char *)c->o.s->rbuf;
    buf->len = c->o.s->cfg.read_buffer;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static int conn_read_start(conn_t *c)
{
    if (c->reading || c->tcp == NULL)
        return 0;
    int rc = uv_read_start((uv_stream_t *)c->tcp, on_alloc, on_read);
    if (rc == 0)
        c->reading = 1;
    return rc;
}

static int conn_feed(conn_t *c, const uint8_t *p, size_t n, int from_stash);
static int ws_feed(conn_t *c, const uint8_t *p, size_t n, int from_stash);
static int tls_pump(conn_t *c);
static int tls_out(conn_t *c);
static void tls_done(conn_t *c);

/* Read on, unless a blob is held, the owner paused or the WebSocket has
 * ended: first what is stashed, then from the socket. */
static void conn_pump(conn_t *c)
{
    if (c->state != C_OPEN || c->held_head != NULL || c->paused || c->ws_ending || c->sp != NULL)
        return;
    if (c->stash != NULL) {
        const uint8_t *p = c->stash + c->stash_off;
        size_t n = c->stash_len - c->stash_off;
        if ((c->ws != NULL ? ws_feed(c, p, n, 1) : conn_feed(c, p, n, 1)) != 0)
            return;
        free(c->stash);
        c->stash = NULL;
    }
    if (c->tls != NULL && tls_pump(c) != 0)
        return;
    int rc = conn_read_start(c);
    if (rc != 0) {
        char reason[REASON_MAX];
        snprintf(reason, sizeof(reason), "read: %s", uv_strerror(rc));
        conn_end(c, wb_code(rc), reason);
    }
}

static void mark_dirty(conn_t *c)
{
    if (c->dirty)
        return;
    c->dirty = 1;
    c->o.pending++;
    c->dirty_next = c->o.s->dirty;
    c->o.s->dirty = c;
}

/* Tell the owner: OPENED with the peer's address. */
static void conn_pause(conn_t *c, int on);

static void conn_announce(conn_t *c)
{
    char peer[ADDR_MAX] = "?";
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_text((struct sockaddr *)&ss, peer, sizeof(peer));
    c->opened_at = uv_now(c->o.s->loop);
    wb_debug(MOD, "connection %" PRIu64 " open to %s", c->o.id, peer);
    post(&c->o, WB_EV_TCP_OPENED, 0, c->cookie, peer);
    if (c->o.opts.start_paused)
        conn_pause(c, 1); /* no BLOB before the owner resumes */
    if (c->wq_head != NULL)
        mark_dirty(c);
}

static void on_conn_timer(uv_timer_t *t);
static int ws_out(conn_t *c, int force);
static void ws_after(conn_t *c, int rc);

/* Connected (dialed or accepted): tell the owner and start reading; a
 * WebSocket first does its handshake, with the timer as its deadline. */
static void conn_open(conn_t *c)
{
    c->state = C_OPEN;
    if (c->timer_live)
        uv_timer_stop(&c->timer);
    uv_tcp_nodelay(c->tcp, 1);
    if (c->o.opts.keepalive_s > 0)
        uv_tcp_keepalive(c->tcp, 1, c->o.opts.keepalive_s);
    if (c->tls != NULL) {
        /* The handshake first; a client's upgrade request waits for it. */
        uv_timer_start(&c->timer, on_conn_timer, c->tls_timeout, 0);
        if (tls_out(c) != 0 || (c->ws != NULL && ws_out(c, 0) != 0))
            return;
    } else if (c->ws != NULL) {
        uv_timer_start(&c->timer, on_conn_timer, c->ws_timeout, 0);
        if (ws_out(c, 0) != 0) /* a client's upgrade request */
            return;
    } else {
        conn_announce(c);
    }
    conn_pump(c);
}

static void on_connect(uv_connect_t *req, int status);

static void conn_connect(conn_t *c, const struct sockaddr *sa);

/* The attempt at c->addr failed: try the next address, or give up. */
static void connect_failed(conn_t *c, int uverr)
{
    char reason[REASON_MAX];
    snprintf(reason, sizeof(reason), "connect %s: %s", c->addr, uv_strerror(uverr));
    if (c->tcp != NULL) {
        uv_close((uv_handle_t *)c->tcp, conn_tcp_close_cb);
        c->tcp = NULL;
    }
    while (c->ai_next != NULL) {
        struct addrinfo *a = c->ai_next;
        c->ai_next = a->ai_next;
        if (a->ai_family == AF_INET || a->ai_family == AF_INET6) {
            wb_debug(MOD, "%s; trying the next address", reason);
            conn_connect(c, a->ai_addr);
            return;
        }
    }
    conn_end(c, wb_code(uverr), reason);
}

static void conn_connect(conn_t *c, const struct sockaddr *sa)
{
    sockets_t *s = c->o.s;
    addr_text(sa, c->addr, sizeof(c->addr));
    c->state = C_CONNECTING;
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL) {
        conn_end(c, WB_ENOMEM, "out of memory");
        return;
    }
    int rc = uv_tcp_init(s->loop, t);
    if (rc != 0) {
        free(t);
        connect_failed(c, rc);
        return;
    }
    t->data = c;
    c->tcp = t;
    c->o.pending++;
    rc = uv_tcp_connect(&c->creq, t, sa, on_connect);
    if (rc != 0)
        connect_failed(c, rc);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = WB_CONTAINER_OF(req, conn_t, creq);
    if (c->state != C_CONNECTING)
        return; /* closed meanwhile: UV_ECANCELED */
    if (status == 0)
        conn_open(c);
    else
        connect_failed(c, status);
}

static void on_conn_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->state == C_RESOLVING || c->state == C_CONNECTING) {
        char where[WB_TCP_HOST_MAX + 16], reason[REASON_MAX];
        if (c->state == C_CONNECTING)
            snprintf(where, sizeof(where), "%s", c->addr);
        else
            fmt_hostport(where, sizeof(where), c->o.host, c->o.port);
        snprintf(reason, sizeof(reason), "connect %s: timed out after %u ms", where,
                 c->o.opts.connect_timeout_ms);
        conn_end(c, WB_ETIMEDOUT, reason);
    } else if (c->state == C_OPEN && c->tls != NULL && !c->tls_open) {
        wb_tls_timeout(c->tls); /* the TLS handshake took too long: DONE */
        tls_done(c);
    } else if (c->state == C_OPEN && c->ws != NULL && !c->ws_open) {
        wb_ws_timeout(c->ws); /* the handshake took too long: DONE */
        ws_after(c, WB_ETIMEDOUT);
    } else if (c->state == C_LINGER) {
        c->state = C_DEAD;
        conn_close_handles(c);
    }
}

/* A failed dial that never got a connection object. */
static void dial_failed(sockets_t *s, uint64_t id, wb_lane_t lane, uint64_t owner, uint64_t cookie,
                        int from_dialer, int status, const char *reason)
{
    if (!from_dialer) {
        post_to(s, lane, owner, id, WB_EV_TCP_CLOSED, status, 0, reason);
        return;
    }
    dialer_t *d = (dialer_t *)obj_get(s, cookie, OBJ_DIALER);
    if (d != NULL && d->conn == id)
        dialer_conn_ended(d, 0, 0, status, reason);
}

static void dial_start(sockets_t *s, uint64_t id, wb_lane_t lane, uint64_t owner,
                       const wb_tcp_opts_t *opts, const char *host, uint16_t port, uint64_t cookie,
                       int from_dialer)
{
    char reason[REASON_MAX];
    if (s->nconns >= s->cfg.max_connections) {
        snprintf(reason, sizeof(reason), "too many connections (limit %u)", s->cfg.max_connections);
        dial_failed(s, id, lane, owner, cookie, from_dialer, WB_EBUSY, reason);
        return;
    }
    int rc;
    if (opts->tls != NULL && (rc = tls_prepare(s, opts, 0, reason, sizeof(reason))) != 0) {
        dial_failed(s, id, lane, owner, cookie, from_dialer, rc, reason);
        return;
    }
    conn_t *c = conn_new(s, id, lane, owner, opts, host, port, cookie, 0);
    if (c == NULL) {
        dial_failed(s, id, lane, owner, cookie, from_dialer, WB_ENOMEM, "out of memory");
        return;
    }
    c->from_dialer = from_dialer;
    c->state = C_RESOLVING;
    uv_timer_start(&c->timer, on_conn_timer, opts->connect_timeout_ms, 0);
    struct sockaddr_storage ss;
    if (parse_literal(host, port, &ss) == 0) {
        conn_connect(c, (struct sockaddr *)&ss);
    } else {
        rc = resolve(&c->o);
        if (rc != 0) {
            snprintf(reason, sizeof(reason), "resolve %s: %s", host, uv_strerror(rc));
            conn_end(c, wb_code(rc), reason);
        }
    }
    obj_release(&c->o);
}

/* ---- connections: reading --------------------------------------------------- */

static void free_payload(void *data, size_t len)
{
    (void)len;
    free(data);
}

static wb_event_t *blob_new(wb_frame_t *f)
{
    if (f->owned == NULL)
        return wb_event_new_copy(WB_EV_TCP_BLOB, f->data, f->len);
    wb_event_t *ev = wb_event_new_ext(WB_EV_TCP_BLOB, f->owned, f->len, free_payload);
    if (ev == NULL)
        free(f->owned);
    return ev;
}

/* Microseconds on a 31-bit wrapping clock: the read time a blob carries. */
static int32_t stamp_us(void)
{
    return (int32_t)((uv_hrtime() / 1000u) & 0x7fffffffu);
}

uint64_t wb_tcp_blob_queued_ns(const wb_event_t *blob)
{
    return (uint64_t)(((uint32_t)stamp_us() - (uint32_t)blob->status) & 0x7fffffffu) * 1000u;
}

static int deliver(conn_t *c, wb_event_t *ev)
{
    wb_event_route(ev, WB_LANE_NET, c->o.id, c->o.owner_lane, c->o.owner);
    ev->cookie = c->cookie;
    ev->status = ev->type == WB_EV_TCP_BLOB ? stamp_us() : 0;
    return wb_rt_send(c->o.s->rt, ev);
}

static void frame_error(conn_t *c, int rc)
{
    char reason[REASON_MAX];
    if (rc == WB_ETOOBIG)
        snprintf(reason, sizeof(reason), "message of %u bytes exceeds maximum %u", c->fr.bad_len,
                 c->fr.max);
    else
        snprintf(reason, sizeof(reason), "receive: %s", wb_strerror(rc));
    wb_info(MOD, "connection %" PRIu64 ": %s; closing it", c->o.id, reason);
    conn_end(c, rc, reason);
}

/* Decode and deliver p[0..n). Returns 0 when all was taken, 1 when paused on
 * a refused blob (the rest is in the stash), -1 when the connection ended. */
static int conn_feed(conn_t *c, const uint8_t *p, size_t n, int from_stash)
{
    while (n > 0) {
        wb_frame_t f;
        size_t used;
        int rc;
        if (c->o.opts.raw) {
            f.data = p;
            f.len = (uint32_t)n;
            f.owned = NULL;
            used = n;
            rc = 1;
        } else {
            rc = wb_frame_decode(&c->fr, p, n, &used, &f);
        }
        p += used;
        n -= used;
        if (rc < 0) {
            frame_error(c, rc);
            return -1;
        }
        if (rc == 0)
            break;
        wb_event_t *ev = blob_new(&f);
        if (ev == NULL) {
            conn_end(c, WB_ENOMEM, "out of memory for a received message");
            return -1;
        }
        rc = deliver(c, ev);
        if (rc == WB_EAGAIN) {
            chain_push(&c->held_head, &c->held_tail, ev);
            if (from_stash) {
                c->stash_off = (size_t)(p - c->stash);
            } else if (n > 0) {
                c->stash = malloc(n);
                if (c->stash == NULL) {
                    conn_end(c, WB_ENOMEM, "out of memory");
                    return -1;
                }
                memcpy(c->stash, p, n);
                c->stash_off = 0;
                c->stash_len = n;
            }
            if (c->reading) {
                uv_read_stop((uv_stream_t *)c->tcp);
                c->reading = 0;
            }
            return 1;
        }
        if (rc != 0) {
            wb_event_free(ev);
            if (rc != WB_ECLOSED) {
                /* WB_ENOMEM: refused, and no resume will come. */
                conn_end(c, rc, "cannot deliver a received message");
                return -1;
            }
        }
    }
    return 0;
}

static void ws_done(conn_t *c);

/* The owner's inbox has room again: deliver the held blobs in order, then
 * the rest (or, for a WebSocket that ended meanwhile, its CLOSED). */
static void conn_resume(conn_t *c)
{
    if (c->state != C_OPEN || c->held_head == NULL)
        return;
    while (c->held_head != NULL) {
        wb_event_t *ev = c->held_head;
        wb_event_t *next = atomic_load_explicit(&ev->next, memory_order_relaxed);
        int rc = deliver(c, ev);
        if (rc == WB_EAGAIN)
            return; /* another resume will come */
        c->held_head = next;
        if (next == NULL)
            c->held_tail = NULL;
        if (rc != 0) {
            wb_event_free(ev);
            if (rc != WB_ECLOSED) {
                conn_end(c, rc, "cannot deliver a received message");
                return;
            }
        }
    }
    if (c->ws_ending)
        ws_done(c);
    else
        conn_pump(c);
}

static void conn_pause(conn_t *c, int on)
{
    c->paused = on;
    if (c->sp != NULL)
        return; /* the splice reads it */
    if (on && c->reading) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = 0;
    } else if (!on) {
        conn_pump(c);
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = st->data;
    if (c->state == C_LINGER) {
        /* Closing: the owner wants nothing more; read only to see the end. */
        if (nread < 0) {
            c->peer_done = 1;
            uv_read_stop(st);
            c->reading = 0;
            if (c->fin_sent || nread != UV_EOF) {
                c->state = C_DEAD;
                conn_close_handles(c);
            }
        }
        return;
    }
    if (c->state != C_OPEN || nread == 0)
        return;
    if (nread > 0 && c->tls != NULL) {
        /* An error makes it DONE, which tls_pump reports. */
        wb_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread);
        tls_pump(c);
        return;
    }
    if (nread == UV_EOF && c->tls != NULL && !c->tls_open) {
        conn_end(c, WB_EPROTO, "tls: handshake failed: peer closed the connection");
        return;
    }
    if (nread > 0 && c->ws != NULL) {
        ws_feed(c, (const uint8_t *)buf->base, (size_t)nread, 0);
        return;
    }
    if (nread > 0) {
        conn_feed(c, (const uint8_t *)buf->base, (size_t)nread, 0);
        return;
    }
    char reason[REASON_MAX];
    uint32_t have, need;
    if (nread == UV_EOF) {
        if (wb_frame_decoder_partial(&c->fr, &have, &need)) {
            snprintf(reason, sizeof(reason), "peer closed in the middle of a message (%u of %u %s)",
                     have, need, c->fr.body != NULL ? "bytes" : "length bytes");
            conn_end(c, WB_EPROTO, reason);
        } else {
            conn_end(c, WB_ECLOSED, "peer closed");
        }
    } else if (nread == UV_ECONNRESET) {
        conn_end(c, WB_EIO, "connection reset");
    } else {
        snprintf(reason, sizeof(reason), "read: %s", uv_strerror((int)nread));
        conn_end(c, wb_code((int)nread), reason);
    }
}

/* ---- connections: writing --------------------------------------------------- */

static wr_t *wr_get(sockets_t *s)
{
    wr_t *w = s->wr_free;
    if (w != NULL) {
        s->wr_free = w->next_free;
        s->wr_nfree--;
        return w;
    }
    return malloc(sizeof(*w));
}

static void wr_put(sockets_t *s, wr_t *w)
{
    if (s->wr_nfree >= WR_CACHE) {
        free(w);
        return;
    }
    w->next_free = s->wr_free;
    s->wr_free = w;
    s->wr_nfree++;
}

/* Count sz more bytes queued: BACKPRESSURE past write_high; past the hard
 * cap the connection ends (returns -1; the caller frees what it held). */
static int queue_bytes(conn_t *c, size_t sz)
{
    if (c->queued + sz > c->o.opts.write_hard_cap) {
        char reason[REASON_MAX];
        snprintf(reason, sizeof(reason), "write queue overflow: %zu bytes queued, cap %zu",
                 c->queued + sz, c->o.opts.write_hard_cap);
        wb_warn(MOD, "connection %" PRIu64 ": %s; closing it", c->o.id, reason);
        conn_end(c, WB_ETOOBIG, reason);
        return -1;
    }
    c->queued += sz;
    if (!c->bp && c->sp == NULL && c->queued > c->o.opts.write_high) {
        c->bp = 1;
        post(&c->o, WB_EV_TCP_BACKPRESSURE, 0, c->queued, NULL);
    }
    return 0;
}

/* Queue bytes to write as they are (framed already, or raw). */
static int wq_push(conn_t *c, wb_event_t *ev)
{
    if (queue_bytes(c, hdr_len(c) + (size_t)ev->len) != 0) {
        wb_event_free(ev);
        return -1;
    }
    chain_push(&c->wq_head, &c->wq_tail, ev);
    if (c->state == C_OPEN)
        mark_dirty(c);
    return 0;
}

static int ws_send(conn_t *c, wb_event_t *ev);

static void conn_enqueue(conn_t *c, wb_event_t *ev)
{
    char reason[REASON_MAX];
    if (c->sp != NULL) {
        /* The connection belongs to its splice: as if sent to a closed id. */
        wb_event_free(ev);
        wb_rt_count_drop(c->o.s->rt, WB_LANE_NET);
        return;
    }
    if (ev->len > c->o.opts.max_message) {
        snprintf(reason, sizeof(reason), "message of %u bytes exceeds maximum %u", ev->len,
                 c->o.opts.max_message);
        wb_event_free(ev);
        wb_info(MOD, "connection %" PRIu64 ": send: %s; closing it", c->o.id, reason);
        conn_end(c, WB_ETOOBIG, reason);
        return;
    }
    if (c->ws == NULL) {
        wq_push(c, ev);
    } else if (c->ws_open) {
        ws_send(c, ev);
    } else if (queue_bytes(c, ws_frame_len(c, ev->len)) != 0) {
        wb_event_free(ev);
    } else {
        /* Before the upgrade: framed once it is done (ws_on_open). */
        chain_push(&c->pq_head, &c->pq_tail, ev);
    }
}

static void on_write(uv_write_t *req, int status)
{
    wr_t *w = WB_CONTAINER_OF(req, wr_t, req);
    conn_t *c = w->c;
    free_chain(w->head);
    c->queued -= w->bytes;
    wr_put(c->o.s, w);
    if (status < 0) {
        if (status != UV_ECANCELED) {
            char reason[REASON_MAX];
            if (status == UV_ECONNRESET)
                snprintf(reason, sizeof(reason), "connection reset");
            else
                snprintf(reason, sizeof(reason), "write: %s", uv_strerror(status));
            conn_end(c, wb_code(status), reason);
        }
        return;
    }
    if (c->state == C_OPEN && c->bp && c->queued <= c->o.opts.write_low) {
        c->bp = 0;
        post(&c->o, WB_EV_TCP_WRITABLE, 0, c->queued, NULL);
    }
    if (c->sp != NULL && c->queued == 0)
        sp_kick(c->sp); /* its write queue is out: the splice may start */
}

static void tls_flush(conn_t *c);

/* Hand the queued messages to libuv, BATCH_MSGS per uv_write. */
static void conn_flush(conn_t *c)
{
    sockets_t *s = c->o.s;
    if (c->tls != NULL) {
        tls_flush(c);
        return;
    }
    while (c->wq_head != NULL && c->tcp != NULL) {
        wr_t *w = wr_get(s);
        if (w == NULL) {
            conn_end(c, WB_ENOMEM, "out of memory");
            return;
        }
        uv_buf_t bufs[2 * BATCH_MSGS];
        unsigned nb = 0, nm = 0;
        size_t bytes = 0;
        wb_event_t *ev = c->wq_head, *last = NULL;
        while (ev != NULL && nm < BATCH_MSGS) {
            /* The header lives in the event's cookie: ours while queued. */
            uint8_t *hdr = (uint8_t *)&ev->cookie;
            if (!c->o.opts.raw) {
                wb_frame_put_header(hdr, ev->len);
                bufs[nb++] = uv_buf_init((char *)hdr, WB_FRAME_HEADER);
            }
            if (ev->len > 0)
                bufs[nb++] = uv_buf_init(ev->data, ev->len);
            bytes += hdr_len(c) + (size_t)ev->len;
            nm++;
            last = ev;
            ev = atomic_load_explicit(&ev->next, memory_order_relaxed);
        }
        w->head = c->wq_head;
        atomic_store_explicit(&last->next, NULL, memory_order_relaxed);
        c->wq_head = ev;
        if (ev == NULL)
            c->wq_tail = NULL;
        w->c = c;
        w->bytes = bytes;
        int rc = uv_write(&w->req, (uv_stream_t *)c->tcp, bufs, nb, on_write);
        if (rc != 0) {
            free_chain(w->head);
            c->queued -= bytes;
            wr_put(s, w);
            char reason[REASON_MAX];
            snprintf(reason, sizeof(reason), "write: %s", uv_strerror(rc));
            conn_end(c, wb_code(rc), reason);
            return;
        }
    }
}

static void on_prepare(uv_prepare_t *h)
{
    sockets_t *s = h->data;
    conn_t *c = s->dirty;
    s->dirty = NULL;
    while (c != NULL) {
        conn_t *next = c->dirty_next;
        c->dirty = 0;
        if (c->state == C_OPEN)
            conn_flush(c);
        obj_release(&c->o);
        c = next;
    }
    sp_prepare(s);
}

/* ---- connections: WebSocket ------------------------------------------------- */

/* Queue what the WebSocket has to write (the upgrade request, the 101 or an
 * HTTP answer, pongs, close frames, framed messages). force: past the hard
 * cap too (a close frame, once). 0, or -1 when the connection ended. */
static int ws_out(conn_t *c, int force)
{
    const uint8_t *p;
    size_t n = wb_ws_output(c->ws, &p);
    wb_event_t *ev = n > 0 ? wb_event_new_copy(WB__EV_TCP_SEND, p, n) : NULL;
    wb_ws_output_done(c->ws); /* an idle connection keeps no buffer */
    if (n == 0)
        return 0;
    if (ev == NULL) {
        conn_end(c, WB_ENOMEM, "out of memory");
        return -1;
    }
    if (!force)
        return wq_push(c, ev);
    c->queued += n;
    chain_push(&c->wq_head, &c->wq_tail, ev);
    return 0;
}

/* Frame one of the owner's messages (ev is consumed). 0, or -1 when the
 * connection ended. */
static int ws_send(conn_t *c, wb_event_t *ev)
{
    int op = (ev->flags & WB_TCP_BLOB_BINARY) ? WB_WS_BINARY : WB_WS_TEXT;
    int rc = wb_ws_send(c->ws, op, ev->data, ev->len);
    wb_event_free(ev);
    if (rc == WB_ECLOSED) {
        /* The close handshake has begun: as if sent to a closed id. */
        wb_rt_count_drop(c->o.s->rt, WB_LANE_NET);
        return 0;
    }
    if (rc != 0) {
        conn_end(c, rc, "out of memory");
        return -1;
    }
    return ws_out(c, 0);
}

/* open_cb, inside wb_ws_feed: the upgrade is done. */
static void ws_on_open(wb_ws_conn_t *w, void *user)
{
    conn_t *c = user;
    (void)w;
    if (c->state != C_OPEN)
        return;
    c->ws_open = 1;
    if (c->timer_live)
        uv_timer_stop(&c->timer);
    conn_announce(c);
}

/* message_cb, inside wb_ws_feed, which cannot be paused: a message the
 * owner's inbox refuses is held, and so is every one after it. */
static void ws_on_message(wb_ws_conn_t *w, void *user, int opcode, const uint8_t *data, size_t len)
{
    conn_t *c = user;
    (void)w;
    if (c->state != C_OPEN || c->ws_nomem)
        return;
    wb_event_t *ev = wb_event_new_copy(WB_EV_TCP_BLOB, data, len);
    if (ev == NULL) {
        c->ws_nomem = 1;
        return;
    }
    if (opcode == WB_WS_BINARY)
        ev->flags |= WB_TCP_BLOB_BINARY;
    if (c->held_head == NULL) {
        int rc = deliver(c, ev);
        if (rc == 0)
            return;
        if (rc != WB_EAGAIN) {
            wb_event_free(ev);
            if (rc != WB_ECLOSED)
                c->ws_nomem = 1; /* refused, and no resume will come */
            return;
        }
    }
    chain_push(&c->held_head, &c->held_tail, ev);
}

/* Why the WebSocket ended, from its state: the CLOSED status and text. */
static int ws_reason(conn_t *c, char *r, size_t n)
{
    int rc = c->ws_rc, http = wb_ws_http_status(c->ws);
    unsigned got = wb_ws_close_code(c->ws), sent = wb_ws_close_code_sent(c->ws);
    if (rc == WB_ENOMEM) {
        snprintf(r, n, "out of memory");
        return WB_ENOMEM;
    }
    if (!c->ws_open && c->from_listener) { /* for the log only */
        if (rc == WB_ETIMEDOUT)
            snprintf(r, n, "websocket handshake not complete after %u ms", c->ws_timeout);
        else
            snprintf(r, n, "websocket handshake answered with HTTP %d", http);
        return rc;
    }
    if (!c->ws_open) {
        if (rc == WB_ETIMEDOUT) {
            snprintf(r, n, "websocket upgrade: no answer within %u ms", c->ws_timeout);
            return WB_ETIMEDOUT;
        }
        if (http != 0 && http != 101)
            snprintf(r, n, "websocket upgrade refused: HTTP %d", http);
        else if (rc == WB_ETOOBIG)
            snprintf(r, n, "websocket upgrade failed: response head too large");
        else
            snprintf(r, n, "websocket upgrade failed: bad response (HTTP %d)", http);
        return WB_EPROTO;
    }
    if (got != 0) {
        /* The peer's close came first (ours would have ended it at once):
         * feed's code is then only that of the echo. */
        snprintf(r, n, "peer closed (code %u)", got);
        return WB_ECLOSED;
    }
    if (rc == WB_ETOOBIG) {
        snprintf(r, n, "websocket: message too big (close %u)", sent ? sent : 1009u);
        return WB_ETOOBIG;
    }
    if (rc == 0) {
        snprintf(r, n, "websocket closed");
        return WB_ECLOSED;
    }
    if (sent == WB_WS_CLOSE_BAD_DATA)
        snprintf(r, n, "websocket: text is not UTF-8 (close %u)", sent);
    else if (sent != 0)
        snprintf(r, n, "websocket: protocol error (close %u)", sent);
    else
        snprintf(r, n, "websocket: protocol error");
    return WB_EPROTO;
}

/* The WebSocket is done (closed, failed, timed out): once the blobs held for
 * the owner are delivered, tell it why (if it knows the connection) and
 * close the TCP connection after what is queued (the close frame, the HTTP
 * answer). */
static void ws_done(conn_t *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = 0;
    }
    if (c->held_head != NULL)
        return; /* conn_resume comes back */
    char reason[REASON_MAX];
    int status = ws_reason(c, reason, sizeof(reason));
    if (c->ws_open && (status == WB_EPROTO || status == WB_ETOOBIG))
        wb_info(MOD, "connection %" PRIu64 ": %s; closing it", c->o.id, reason);
    conn_finish(c, status, reason);
}

/* After the WebSocket ran (a read fed, the handshake timer): write what it
 * produced, frame what waited for the upgrade, end when it is done, and stop
 * reading while blobs are held. rc: what it returned. */
static void ws_after(conn_t *c, int rc)
{
    if (c->state != C_OPEN || ws_out(c, 0) != 0)
        return;
    if (c->ws_nomem) {
        conn_end(c, WB_ENOMEM, "cannot deliver a received message");
        return;
    }
    while (c->ws_open && c->pq_head != NULL) {
        wb_event_t *ev = c->pq_head;
        c->pq_head = atomic_load_explicit(&ev->next, memory_order_relaxed);
        if (c->pq_head == NULL)
            c->pq_tail = NULL;
        c->queued -= ws_frame_len(c, ev->len);
        if (ws_send(c, ev) != 0)
            return;
    }
    if (wb_ws_state(c->ws) == WB_WS_DONE) {
        c->ws_rc = rc;
        c->ws_ending = 1;
        ws_done(c);
        return;
    }
    if (c->held_head != NULL && c->reading) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = 0;
    }
}

/* Feed p[0..n) to the WebSocket WS_FEED_CHUNK bytes at a time, so that once
 * the owner's inbox refuses a message, at most the messages of that chunk
 * are held (not those of a whole read buffer: a flood of tiny frames would
 * make that thousands); the rest waits in the stash. Returns 0 when all was
 * taken, 1 when stopped with the rest stashed, -1 when the connection ended
 * or its WebSocket is done (what remains is of no use). */
static int ws_feed(conn_t *c, const uint8_t *p, size_t n, int from_stash)
{
    while (n > 0) {
        size_t k = n < WS_FEED_CHUNK ? n : WS_FEED_CHUNK;
        int rc = wb_ws_feed(c->ws, p, k);
        p += k;
        n -= k;
        ws_after(c, rc);
        if (c->state != C_OPEN || c->ws_ending)
            return -1;
        if (c->held_head == NULL)
            continue;
        if (from_stash) {
            c->stash_off = (size_t)(p - c->stash);
        } else if (n > 0) {
            c->stash = malloc(n);
            if (c->stash == NULL) {
                conn_end(c, WB_ENOMEM, "out of memory");
                return -1;
            }
            memcpy(c->stash, p, n);
            c->stash_off = 0;
            c->stash_len = n;
        }
        return 1;
    }
    return 0;
}

/* ---- connections: TLS ------------------------------------------------------- */

/* Write what TLS produced, now (see "TLS" at the top). 0, or -1 when the
 * connection ended. */
static int tls_out(conn_t *c)
{
    const uint8_t *p;
    size_t n = c->tcp != NULL ? wb_tls_output(c->tls, &p) : 0;
    if (n == 0)
        return 0;
    wb_event_t *ev = wb_event_new_copy(WB__EV_TCP_SEND, p, n);
    wb_tls_output_done(c->tls);
    wr_t *w = ev != NULL ? wr_get(c->o.s) : NULL;
    if (w == NULL) {
        if (ev != NULL)
            wb_event_free(ev);
        conn_end(c, WB_ENOMEM, "out of memory");
        return -1;
    }
    atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
    w->head = ev;
    w->c = c;
    w->bytes = n;
    c->queued += n;
    uv_buf_t b = uv_buf_init(ev->data, ev->len);
    int rc = uv_write(&w->req, (uv_stream_t *)c->tcp, &b, 1, on_write);
    if (rc != 0) {
        wb_event_free(ev);
        c->queued -= n;
        wr_put(c->o.s, w);
        char reason[REASON_MAX];
        snprintf(reason, sizeof(reason), "write: %s", uv_strerror(rc));
        conn_end(c, wb_code(rc), reason);
        return -1;
    }
    return 0;
}

/* Encrypt the scratch buffer's bytes. */
static int tls_put_end(conn_t *c)
{
    sockets_t *s = c->o.s;
    size_t n = s->tls_scratch_len;
    s->tls_scratch_len = 0;
    return n > 0 ? wb_tls_write(c->tls, s->tls_buf + TLS_PLAIN, n) : 0;
}

/* Encrypt p[0..n), small pieces gathered so they share a record. */
static int tls_put(conn_t *c, const uint8_t *p, size_t n)
{
    sockets_t *s = c->o.s;
    if (s->tls_scratch_len + n > TLS_SCRATCH) {
        int rc = tls_put_end(c);
        if (rc != 0)
            return rc;
        if (n >= TLS_SCRATCH)
            return wb_tls_write(c->tls, p, n);
    }
    if (n > 0)
        memcpy(s->tls_buf + TLS_PLAIN + s->tls_scratch_len, p, n);
    s->tls_scratch_len += n;
    return 0;
}

/* conn_flush for TLS: once the handshake is done, encrypt the queued
 * plaintext (TLS_BATCH at a time) and write it. */
static void tls_flush(conn_t *c)
{
    if (c->tcp == NULL || c->wq_head == NULL || !c->tls_open)
        return;
    if (wb_tls_state(c->tls) != WB_TLS_OPEN) {
        wq_free(c); /* closed or failed: nothing more can be sent */
        return;
    }
    size_t batch = 0;
    int rc = 0;
    while (c->wq_head != NULL && rc == 0) {
        wb_event_t *ev = c->wq_head;
        c->wq_head = atomic_load_explicit(&ev->next, memory_order_relaxed);
        if (c->wq_head == NULL)
            c->wq_tail = NULL;
        if (!c->o.opts.raw) {
            uint8_t hdr[WB_FRAME_HEADER];
            wb_frame_put_header(hdr, ev->len);
            rc = tls_put(c, hdr, sizeof(hdr));
        }
        if (rc == 0)
            rc = tls_put(c, ev->data, ev->len);
        c->queued -= hdr_len(c) + (size_t)ev->len;
        batch += hdr_len(c) + (size_t)ev->len;
        wb_event_free(ev);
        if (rc == 0 && (batch >= TLS_BATCH || c->wq_head == NULL)) {
            rc = tls_put_end(c);
            batch = 0;
            if (rc == 0 && tls_out(c) != 0)
                return;
        }
    }
    c->o.s->tls_scratch_len = 0;
    if (rc != 0)
        tls_done(c); /* it failed: why is in its result */
}

/* The TLS handshake is done: a WebSocket's upgrade goes on (with its own
 * deadline from now), else the owner hears OPENED. */
static void tls_opened(conn_t *c)
{
    c->tls_open = 1;
    wb_debug(MOD, "connection %" PRIu64 ": %s", c->o.id, wb_tls_version(c->tls));
    if (c->ws != NULL) {
        uv_timer_start(&c->timer, on_conn_timer, c->ws_timeout, 0);
        if (c->wq_head != NULL)
            mark_dirty(c); /* a client's upgrade request */
    } else {
        uv_timer_stop(&c->timer);
        conn_announce(c);
    }
}

/* TLS is done (the peer's close_notify, a failure, the timeout): write what
 * it has left (an alert), then end the connection with its reason. */
static void tls_done(conn_t *c)
{
    const char *why;
    int rc = wb_tls_result(c->tls, &why);
    if (tls_out(c) != 0 || c->state != C_OPEN)
        return;
    if (rc == 0) {
        conn_finish(c, WB_ECLOSED, "peer closed");
        return;
    }
    if (!c->tls_open && c->from_listener)
        wb_debug(MOD, "connection %" PRIu64 ": %s; closing it", c->o.id, why);
    else
        wb_info(MOD, "connection %" PRIu64 ": %s; closing it", c->o.id, why);
    conn_finish(c, rc, why);
}

/* Run TLS on what was fed: the handshake, then plaintext TLS_PLAIN bytes
 * at a time to the stream's reader, until TLS needs more input (0), the
 * reader holds a blob (1) or the connection ended (-1). */
static int tls_pump(conn_t *c)
{
    uint8_t *plain = c->o.s->tls_buf;
    for (;;) {
        size_t got = 0;
        wb_tls_read(c->tls, plain, TLS_PLAIN, &got);
        if (tls_out(c) != 0)
            return -1;
        if (!c->tls_open && wb_tls_state(c->tls) == WB_TLS_OPEN) {
            tls_opened(c);
            if (c->state != C_OPEN)
                return -1;
        }
        if (got > 0) {
            int r = c->ws != NULL ? ws_feed(c, plain, got, 0) : conn_feed(c, plain, got, 0);
            if (r != 0)
                return r;
            continue;
        }
        if (wb_tls_state(c->tls) == WB_TLS_DONE) {
            tls_done(c);
            return -1;
        }
        return 0;
    }
}

/* ---- connections: closing --------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = WB_CONTAINER_OF(req, conn_t, sreq);
    if (c->state != C_LINGER)
        return;
    c->fin_sent = 1;
    if (status < 0 || c->peer_done) {
        c->state = C_DEAD;
        conn_close_handles(c);
    }
}

/* End the connection from this side: CLOSED now (if the owner knows the
 * connection); then flush what is queued, FIN, wait for the peer to finish
 * (at most linger_ms), close. */
static void conn_finish(conn_t *c, int status, const char *reason)
{
    if (c->state == C_LINGER || c->state == C_DEAD)
        return;
    int was_open = conn_known(c);
    wb_debug(MOD, "connection %" PRIu64 " closing: %s", c->o.id, reason);
    if (conn_owes_closed(c, was_open))
        post(&c->o, WB_EV_TCP_CLOSED, status, c->cookie, reason);
    notify_dialer(c, was_open, status, reason);
    if (c->state != C_OPEN || (c->tls != NULL && !c->tls_open)) {
        /* Nothing can be sent before the TLS handshake; an alert TLS had
         * for the peer was written already. */
        conn_detach(c, 0);
        c->state = C_DEAD;
        conn_close_handles(c);
        return;
    }
    conn_detach(c, 1);
    c->state = C_LINGER;
    conn_flush(c);
    if (c->state != C_LINGER)
        return;
    if (c->tls != NULL) {
        wb_tls_close(c->tls); /* close_notify after what was queued */
        if (tls_out(c) != 0)
            return;
    }
    int rc = uv_shutdown(&c->sreq, (uv_stream_t *)c->tcp, on_shutdown);
    if (rc != 0 || conn_read_start(c) != 0) {
        /* uv_shutdown failing leaves no request behind; a started one is
         * cancelled by the close. */
        c->state = C_DEAD;
        conn_close_handles(c);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timer, c->o.opts.linger_ms, 0);
}

/* wb_tcp_close on a connection; an open WebSocket says goodbye with code
 * (1000 unless wb_tcp_close_ws said otherwise) and reason (NULL: none). */
static void conn_close_owner(conn_t *c, uint16_t code, const char *reason)
{
    if (c->state == C_LINGER || c->state == C_DEAD)
        return;
    if (c->sp != NULL) {
        sp_owner_close(c->sp, c->sp_side);
        return;
    }
    if (c->ws != NULL && c->ws_open && !c->ws_ending && wb_ws_close(c->ws, code, reason) == 0 &&
        ws_out(c, 1) != 0)
        return;
    conn_finish(c, 0, "closed by owner");
}

/* ---- splicing ---------------------------------------------------------------- */

#define SP_DEF_PIPE (1u << 20)
#define SP_MIN_PIPE 4096u
#define SP_MAX_PIPE (16u << 20)
#define SP_ROUNDS   8 /* reads per direction per wake-up, so other pairs get their turn */

enum { SP_DRAIN = 1, SP_RUN, SP_ENDING, SP_DONE };

/* One direction: from c[i] to c[1 - i]. */
typedef struct {
    int p[2];       /* the pipe (read end, write end), or -1: copy mode */
    uint8_t *buf;   /* copy mode */
    size_t cap;     /* bytes it may hold */
    size_t held;    /* read, not yet written */
    size_t off;     /* copy mode: where the held bytes start */
    uint64_t moved; /* written to the destination (or queued to it at the start) */
    int in_wait;    /* a read found the pipe full (or the source empty) while bytes were
                       held: read again once the destination has taken some */
} sdir_t;

struct splice_s {
    sockets_t *s;
    conn_t *c[2];
    uint64_t id[2];
    int fd[2];
    int state;
    int pending; /* handles not yet closed, and one while on the dirty list */
    uv_poll_t poll[2];
    uint8_t poll_live[2];
    int poll_ev[2];   /* the events poll[i] watches (0: stopped) */
    uv_timer_t timer; /* the idle timeout, then the flush deadline */
    int timer_live;
    sdir_t d[2];
    wb_tcp_splice_opts_t opts;
    uint64_t t0, last; /* uv_now at the start and at the last byte moved */
    size_t max_inflight;
    /* The end: SPLICED's status, reason and ender; each side's CLOSED, and
     * whether it closes at once (abort) or after FIN and linger. */
    int status;
    uint64_t ended_by;
    char reason[sizeof(((wb_tcp_spliced_t *)0)->reason)];
    int cstatus[2];
    char creason[2][sizeof(((wb_tcp_spliced_t *)0)->reason)];
    uint8_t dropped[2]; /* side i is gone: what was in flight toward it is dropped */
    uint8_t abort[2];
    uint8_t dirty;
    splice_t *dirty_next;
    splice_t *prev, *next; /* s->splices */
};

static void sp_finish(splice_t *sp);
static void sp_update(splice_t *sp);

static void sp_release(splice_t *sp)
{
    WB_ASSERT(sp->pending > 0);
    if (--sp->pending > 0)
        return;
    sockets_t *s = sp->s;
    free(sp);
    s_unref(s);
}

static void sp_close_cb(uv_handle_t *h)
{
    sp_release(h->data);
}

/* SPLICED to the owner of `to`: about a running splice sp, or (sp NULL) a
 * refused request. */
static void sp_post(sockets_t *s, const obj_t *to, uint64_t a, uint64_t b, int status,
                    const splice_t *sp, const char *reason)
{
    wb_event_t *ev = wb_event_new(WB_EV_TCP_SPLICED, sizeof(wb_tcp_spliced_t));
    if (ev == NULL) {
        wb_error(MOD, "out of memory: lost the end of splice %" PRIu64 "/%" PRIu64, a, b);
        return;
    }
    wb_tcp_spliced_t *r = (wb_tcp_spliced_t *)ev->data;
    memset(r, 0, sizeof(*r));
    r->a = a;
    r->b = b;
    if (sp != NULL) {
        r->ended_by = sp->ended_by;
        r->a_to_b = sp->d[0].moved;
        r->b_to_a = sp->d[1].moved;
        r->max_inflight = sp->max_inflight;
        r->ms = (uint32_t)(uv_now(s->loop) - sp->t0);
        r->pipe_size = (uint32_t)(sp->d[0].cap < sp->d[1].cap ? sp->d[0].cap : sp->d[1].cap);
        r->started = 1;
        r->spliced = sp->d[0].p[0] >= 0 && sp->d[1].p[0] >= 0;
    }
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    ev->len = sizeof(*r);
    ev->flags |= WB_EVF_CONTROL;
    ev->status = status;
    ev->cookie = b;
    wb_event_route(ev, WB_LANE_NET, a, to->owner_lane, to->owner);
    if (wb_rt_send(s->rt, ev) != 0)
        wb_event_free(ev);
}

static void sp_dir_close(sdir_t *d)
{
    for (int k = 0; k < 2; k++)
        if (d->p[k] >= 0) {
            close(d->p[k]);
            d->p[k] = -1;
        }
    free(d->buf);
    d->buf = NULL;
}

/* Close its handles (the polls before the connections' sockets), pipes and
 * buffers; it is freed when the closes are done. */
static void sp_close(splice_t *sp)
{
    sockets_t *s = sp->s;
    for (int i = 0; i < 2; i++) {
        if (sp->poll_live[i]) {
            sp->poll_live[i] = 0;
            uv_close((uv_handle_t *)&sp->poll[i], sp_close_cb);
        }
        sp_dir_close(&sp->d[i]);
    }
    if (sp->timer_live) {
        sp->timer_live = 0;
        uv_close((uv_handle_t *)&sp->timer, sp_close_cb);
    }
    if (sp->prev != NULL)
        sp->prev->next = sp->next;
    else if (s->splices == sp)
        s->splices = sp->next;
    if (sp->next != NULL)
        sp->next->prev = sp->prev;
    sp->prev = sp->next = NULL;
}

/* Check at the next prepare whether it can start. */
static void sp_kick(splice_t *sp)
{
    if (sp->dirty || sp->state != SP_DRAIN)
        return;
    sp->dirty = 1;
    sp->pending++;
    sp->dirty_next = sp->s->sp_dirty;
    sp->s->sp_dirty = sp;
}

/* Direction i with a pipe (or, failing that or with opts.copy, a buffer). */
static int sp_dir_open(splice_t *sp, int i)
{
    sdir_t *d = &sp->d[i];
    size_t want = sp->opts.pipe_size;
    if (!sp->opts.copy && pipe2(d->p, O_NONBLOCK | O_CLOEXEC) == 0) {
        /* Refused (above pipe-max-size, or the user's pipes are over
         * pipe-user-pages-soft): the pipe keeps the size it has. */
        (void)fcntl(d->p[1], F_SETPIPE_SZ, (int)want);
        int got = fcntl(d->p[1], F_GETPIPE_SZ);
        d->cap = got > 0 ? (size_t)got : 4096;
        return 0;
    }
    d->p[0] = d->p[1] = -1;
    d->buf = malloc(want);
    if (d->buf == NULL)
        return WB_ENOMEM;
    d->cap = want;
    return 0;
}

/* The kernel refused to splice this socket: copy instead (nothing is held). */
static int sp_dir_to_copy(splice_t *sp, int i)
{
    sdir_t *d = &sp->d[i];
    uint8_t *b = malloc(sp->opts.pipe_size);
    if (b == NULL)
        return -1;
    sp_dir_close(d);
    d->buf = b;
    d->cap = sp->opts.pipe_size;
    d->off = 0;
    return 0;
}

/* Read from c[i] into direction i: bytes, 0 at EOF, or -errno. */
static ssize_t sp_read(splice_t *sp, int i)
{
    sdir_t *d = &sp->d[i];
    ssize_t n;
    if (d->p[0] >= 0) {
        n = splice(sp->fd[i], NULL, d->p[1], NULL, d->cap - d->held,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n >= 0 || !(errno == EINVAL || errno == ENOSYS) || d->held > 0 ||
            sp_dir_to_copy(sp, i) != 0)
            return n < 0 ? -errno : n;
    }
    if (d->held == 0)
        d->off = 0;
    n = recv(sp->fd[i], d->buf + d->off + d->held, d->cap - d->off - d->held, MSG_DONTWAIT);
    return n < 0 ? -errno : n;
}

/* Write direction i's bytes to c[1 - i]: bytes, or -errno. */
static ssize_t sp_write(splice_t *sp, int i)
{
    sdir_t *d = &sp->d[i];
    ssize_t n;
    if (d->p[0] >= 0) {
        n = splice(d->p[0], NULL, sp->fd[1 - i], NULL, d->held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } else {
        n = send(sp->fd[1 - i], d->buf + d->off, d->held, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            d->off += (size_t)n;
    }
    return n < 0 ? -errno : n;
}

/* errno of a failed read or write as a CLOSED status and text. */
static int sp_errtext(int err, const char *what, char *out, size_t n)
{
    int uverr = uv_translate_sys_error(err);
    if (err == ECONNRESET || err == EPIPE)
        snprintf(out, n, "connection reset");
    else
        snprintf(out, n, "%s: %s", what, uv_strerror(uverr));
    return wb_code(uverr);
}

/* Write what direction i holds to c[1 - i] until it is empty or the socket
 * is full. 0, or -1 when that connection failed (the splice is ending). */
static int sp_flush(splice_t *sp, int i)
{
    sdir_t *d = &sp->d[i];
    while (d->held > 0 && !sp->dropped[1 - i]) {
        ssize_t n = sp_write(sp, i);
        if (n == -EAGAIN || n == -EINTR)
            return 0;
        if (n <= 0) {
            char reason[REASON_MAX];
            int st = sp_errtext(n < 0 ? (int)-n : EPIPE, "write", reason, sizeof(reason));
            sp_peer_end(sp, 1 - i, st, reason);
            return -1;
        }
        d->held -= (size_t)n;
        d->moved += (uint64_t)n;
        d->in_wait = 0;
        sp->last = uv_now(sp->s->loop);
    }
    return 0;
}

/* c[i] is readable: move its bytes toward c[1 - i] while the destination
 * takes them, at most SP_ROUNDS reads. */
static void sp_pump(splice_t *sp, int i)
{
    sdir_t *d = &sp->d[i];
    for (int round = 0; round < SP_ROUNDS && sp->state == SP_RUN; round++) {
        if (d->held > 0 && (d->p[0] < 0 || d->held >= d->cap || d->in_wait))
            return;
        ssize_t n = sp_read(sp, i);
        if (n == 0) {
            sp_peer_end(sp, i, WB_ECLOSED, "peer closed");
            return;
        }
        if (n == -EAGAIN || n == -EINTR) {
            /* The source is empty, or the pipe is full (it counts slots,
             * not bytes): wait for the destination before reading again. */
            if (d->held > 0)
                d->in_wait = 1;
            else
                return;
        } else if (n < 0) {
            char reason[REASON_MAX];
            int st = sp_errtext((int)-n, "read", reason, sizeof(reason));
            sp_peer_end(sp, i, st, reason);
            return;
        } else {
            d->held += (size_t)n;
            if (d->held > sp->max_inflight)
                sp->max_inflight = d->held;
            sp->last = uv_now(sp->s->loop);
        }
        if (sp_flush(sp, i) != 0 || d->held > 0)
            return;
    }
}

static void sp_on_poll(uv_poll_t *h, int status, int events)
{
    splice_t *sp = h->data;
    int i = h == &sp->poll[0] ? 0 : 1;
    if (sp->state != SP_RUN && sp->state != SP_ENDING)
        return;
    if (status < 0) {
        char reason[REASON_MAX];
        snprintf(reason, sizeof(reason), "poll: %s", uv_strerror(status));
        sp_peer_end(sp, i, wb_code(status), reason);
        return;
    }
    if ((events & UV_WRITABLE) && sp_flush(sp, 1 - i) != 0)
        return;
    if ((events & UV_READABLE) && sp->state == SP_RUN)
        sp_pump(sp, i);
    sp_update(sp);
}

/* Watch what each socket is needed for: reading while its direction may
 * read, writing while bytes wait for it. An ending splice finishes when
 * nothing waits. */
static void sp_update(splice_t *sp)
{
    if (sp->state != SP_RUN && sp->state != SP_ENDING)
        return;
    if (sp->state == SP_ENDING && (sp->dropped[0] || sp->d[1].held == 0) &&
        (sp->dropped[1] || sp->d[0].held == 0)) {
        sp_finish(sp);
        return;
    }
    for (int i = 0; i < 2; i++) {
        const sdir_t *d = &sp->d[i];
        int ev = 0;
        if (sp->state == SP_RUN &&
            (d->held == 0 || (d->p[0] >= 0 && d->held < d->cap && !d->in_wait)))
            ev |= UV_READABLE;
        if (!sp->dropped[i] && sp->d[1 - i].held > 0)
            ev |= UV_WRITABLE;
        if (ev == sp->poll_ev[i])
            continue;
        sp->poll_ev[i] = ev;
        int rc = ev != 0 ? uv_poll_start(&sp->poll[i], ev, sp_on_poll) : uv_poll_stop(&sp->poll[i]);
        if (rc != 0) {
            char reason[REASON_MAX];
            snprintf(reason, sizeof(reason), "poll: %s", uv_strerror(rc));
            sp_peer_end(sp, i, wb_code(rc), reason);
            return;
        }
    }
}

static void sp_on_timer(uv_timer_t *t);

/* From now on only what is in flight is written, within the connections'
 * linger time. */
static void sp_ending(splice_t *sp)
{
    sp->state = SP_ENDING;
    uint32_t ms = sp->c[0]->o.opts.linger_ms > sp->c[1]->o.opts.linger_ms
                      ? sp->c[0]->o.opts.linger_ms
                      : sp->c[1]->o.opts.linger_ms;
    uv_timer_start(&sp->timer, sp_on_timer, ms, 0);
    sp_update(sp);
}

/* Connection c[side] ended (EOF, an error): what was in flight toward it is
 * dropped; it closes at once, the other after what is in flight toward it. */
static void sp_peer_end(splice_t *sp, int side, int status, const char *reason)
{
    if (sp->state == SP_DONE)
        return;
    if (sp->state == SP_DRAIN || sp->state == SP_RUN) {
        sp->ended_by = sp->id[side];
        sp->status = status;
        snprintf(sp->reason, sizeof(sp->reason), "connection %" PRIu64 ": %s", sp->id[side],
                 reason);
        sp->cstatus[1 - side] = 0;
        snprintf(sp->creason[1 - side], sizeof(sp->creason[1 - side]), "splice ended");
    }
    sp->cstatus[side] = status;
    snprintf(sp->creason[side], sizeof(sp->creason[side]), "%s", reason);
    sp->abort[side] = 1;
    sp->dropped[side] = 1;
    sp->d[1 - side].held = 0; /* the pipe goes with its bytes */
    if (sp->state == SP_DRAIN)
        sp_finish(sp);
    else if (sp->state == SP_RUN)
        sp_ending(sp);
    else
        sp_update(sp);
}

/* wb_tcp_close on c[side]: both directions are flushed, both closed. */
static void sp_owner_close(splice_t *sp, int side)
{
    if (sp->state != SP_DRAIN && sp->state != SP_RUN)
        return; /* ending already */
    sp->ended_by = sp->id[side];
    sp->status = 0;
    snprintf(sp->reason, sizeof(sp->reason), "connection %" PRIu64 ": closed by owner",
             sp->id[side]);
    sp->cstatus[side] = sp->cstatus[1 - side] = 0;
    snprintf(sp->creason[side], sizeof(sp->creason[side]), "closed by owner");
    snprintf(sp->creason[1 - side], sizeof(sp->creason[1 - side]), "splice ended");
    if (sp->state == SP_DRAIN)
        sp_finish(sp);
    else
        sp_ending(sp);
}

static void sp_on_timer(uv_timer_t *t)
{
    splice_t *sp = t->data;
    uint64_t now = uv_now(sp->s->loop);
    if (sp->state == SP_ENDING) {
        /* The flush took too long: close what still has bytes waiting at once. */
        for (int i = 0; i < 2; i++)
            if (!sp->dropped[i] && sp->d[1 - i].held > 0)
                sp->abort[i] = 1;
        sp_finish(sp);
        return;
    }
    if (sp->state != SP_DRAIN && sp->state != SP_RUN)
        return;
    uint32_t idle = sp->opts.idle_timeout_ms;
    if (now - sp->last < idle) {
        uv_timer_start(&sp->timer, sp_on_timer, idle - (now - sp->last), 0);
        return;
    }
    sp->ended_by = 0;
    sp->status = WB_ETIMEDOUT;
    snprintf(sp->reason, sizeof(sp->reason), "idle for %u ms", idle);
    for (int i = 0; i < 2; i++) {
        sp->cstatus[i] = WB_ETIMEDOUT;
        snprintf(sp->creason[i], sizeof(sp->creason[i]), "splice idle for %u ms", idle);
    }
    if (sp->state == SP_DRAIN)
        sp_finish(sp);
    else
        sp_ending(sp);
}

/* The end: SPLICED, then each connection's CLOSED as it closes (at once,
 * or after its write queue, FIN and linger, by the usual paths). */
static void sp_finish(splice_t *sp)
{
    sockets_t *s = sp->s;
    sp->state = SP_DONE;
    wb_debug(MOD, "splice %" PRIu64 "/%" PRIu64 " ended: %s (%" PRIu64 " and %" PRIu64 " bytes)",
             sp->id[0], sp->id[1], sp->reason, sp->d[0].moved, sp->d[1].moved);
    sp_post(s, &sp->c[0]->o, sp->id[0], sp->id[1], sp->status, sp, sp->reason);
    sp_close(sp);
    sp->c[0]->sp = sp->c[1]->sp = NULL;
    for (int i = 0; i < 2; i++) {
        if (sp->abort[i])
            conn_end(sp->c[i], sp->cstatus[i], sp->creason[i]);
        else
            conn_finish(sp->c[i], sp->cstatus[i], sp->creason[i]);
    }
    for (int i = 0; i < 2; i++) {
        obj_release(&sp->c[i]->o);
        sp->c[i] = NULL;
    }
}

/* Bytes c[i] read and did not deliver go to c[1 - i]'s write queue, after
 * what the owner queued there. 0, or WB_ENOMEM. */
static int sp_take_held(splice_t *sp, int i)
{
    conn_t *from = sp->c[i], *to = sp->c[1 - i];
    wb_event_t *ev = from->held_head;
    from->held_head = from->held_tail = NULL;
    while (ev != NULL) {
        wb_event_t *next = atomic_load_explicit(&ev->next, memory_order_relaxed);
        sp->d[i].moved += ev->len;
        to->queued += ev->len;
        chain_push(&to->wq_head, &to->wq_tail, ev);
        ev = next;
    }
    int rc = 0;
    if (from->stash != NULL) {
        size_t n = from->stash_len - from->stash_off;
        ev = wb_event_new_copy(WB__EV_TCP_SEND, from->stash + from->stash_off, n);
        free(from->stash);
        from->stash = NULL;
        if (ev != NULL) {
            sp->d[i].moved += n;
            to->queued += n;
            chain_push(&to->wq_head, &to->wq_tail, ev);
        } else {
            rc = WB_ENOMEM;
        }
    }
    if (to->wq_head != NULL)
        mark_dirty(to);
    return rc;
}

static void sp_request(sockets_t *s, const cmd_t *cmd)
{
    uint64_t id[2] = {cmd->id, cmd->id2};
    conn_t *c[2] = {(conn_t *)obj_get(s, id[0], OBJ_CONN), (conn_t *)obj_get(s, id[1], OBJ_CONN)};
    char reason[REASON_MAX];
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        if (c[i] == NULL) {
            rc = WB_ECLOSED;
            snprintf(reason, sizeof(reason), "connection %" PRIu64 " is closed or unknown", id[i]);
        } else if (c[i]->ws != NULL || c[i]->tls != NULL || !c[i]->o.opts.raw) {
            rc = WB_EINVAL;
            snprintf(reason, sizeof(reason),
                     "connection %" PRIu64 " is a %s stream: splice is for raw TCP", id[i],
                     c[i]->ws != NULL    ? "WebSocket"
                     : c[i]->tls != NULL ? "TLS"
                                         : "framed");
        } else if (c[i]->state != C_OPEN) {
            rc = WB_EINVAL;
            snprintf(reason, sizeof(reason), "connection %" PRIu64 " is not connected", id[i]);
        } else if (c[i]->sp != NULL) {
            rc = WB_EBUSY;
            snprintf(reason, sizeof(reason), "connection %" PRIu64 " is spliced already", id[i]);
        }
    }
    splice_t *sp = NULL;
    if (rc == 0 && (sp = calloc(1, sizeof(*sp))) == NULL) {
        rc = WB_ENOMEM;
        snprintf(reason, sizeof(reason), "out of memory");
    }
    if (rc != 0) {
        const obj_t *to = c[0] != NULL ? &c[0]->o : c[1] != NULL ? &c[1]->o : NULL;
        wb_debug(MOD, "splice %" PRIu64 "/%" PRIu64 " refused: %s", id[0], id[1], reason);
        if (to != NULL)
            sp_post(s, to, id[0], id[1], rc, NULL, reason);
        return;
    }
    sp->s = s;
    sp->opts = cmd->sp;
    s->refs++;
    sp->next = s->splices;
    if (s->splices != NULL)
        s->splices->prev = sp;
    s->splices = sp;
    uv_timer_init(s->loop, &sp->timer);
    sp->timer.data = sp;
    sp->timer_live = 1;
    sp->pending = 1;
    sp->t0 = sp->last = uv_now(s->loop);
    sp->state = SP_DRAIN;
    for (int i = 0; i < 2; i++) {
        sp->c[i] = c[i];
        sp->id[i] = id[i];
        sp->fd[i] = -1;
        sp->d[i].p[0] = sp->d[i].p[1] = -1;
        sp->poll[i].data = sp;
        c[i]->sp = sp;
        c[i]->sp_side = (uint8_t)i;
        c[i]->o.pending++;
        if (c[i]->reading) {
            uv_read_stop((uv_stream_t *)c[i]->tcp);
            c[i]->reading = 0;
        }
    }
    rc = sp_take_held(sp, 0);
    if (rc == 0)
        rc = sp_take_held(sp, 1);
    wb_debug(MOD, "splice %" PRIu64 "/%" PRIu64 ": taken", id[0], id[1]);
    if (rc != 0) {
        sp_peer_end(sp, 0, rc, "out of memory");
        return;
    }
    if (sp->opts.idle_timeout_ms != 0)
        uv_timer_start(&sp->timer, sp_on_timer, sp->opts.idle_timeout_ms, 0);
    sp_kick(sp);
}

/* Both write queues are out (and libuv has stopped watching the sockets):
 * watch the sockets ourselves and move the bytes. */
static void sp_run(splice_t *sp)
{
    sockets_t *s = sp->s;
    if (sp->c[0]->queued != 0 || sp->c[1]->queued != 0)
        return; /* on_write kicks again */
    for (int i = 0; i < 2; i++) {
        uv_os_fd_t fd;
        int rc = uv_fileno((uv_handle_t *)sp->c[i]->tcp, &fd);
        if (rc == 0)
            rc = uv_poll_init(s->loop, &sp->poll[i], fd);
        if (rc == 0) {
            sp->poll[i].data = sp;
            sp->poll_live[i] = 1;
            sp->pending++;
            sp->fd[i] = fd;
            rc = sp_dir_open(sp, i);
            if (rc != 0)
                rc = UV_ENOMEM;
        }
        if (rc != 0) {
            char reason[REASON_MAX];
            snprintf(reason, sizeof(reason), "splice: %s", uv_strerror(rc));
            wb_warn(MOD, "connection %" PRIu64 ": %s", sp->id[i], reason);
            sp_peer_end(sp, i, wb_code(rc), reason); /* still SP_DRAIN: ends at once */
            return;
        }
    }
    sp->state = SP_RUN;
    sp_update(sp);
}

/* Before the loop polls: start the splices whose write queues are out. */
static void sp_prepare(sockets_t *s)
{
    splice_t *sp = s->sp_dirty;
    s->sp_dirty = NULL;
    while (sp != NULL) {
        splice_t *next = sp->dirty_next;
        sp->dirty = 0;
        if (sp->state == SP_DRAIN)
            sp_run(sp);
        sp_release(sp);
        sp = next;
    }
}

/* The runtime stops: end every splice silently. */
static void sp_stop_all(sockets_t *s)
{
    splice_t *sp = s->sp_dirty;
    s->sp_dirty = NULL;
    while (sp != NULL) {
        splice_t *next = sp->dirty_next;
        sp->dirty = 0;
        sp_release(sp);
        sp = next;
    }
    while (s->splices != NULL) {
        sp = s->splices;
        sp->state = SP_DONE;
        sp_close(sp);
        for (int i = 0; i < 2; i++) {
            sp->c[i]->sp = NULL;
            obj_release(&sp->c[i]->o);
            sp->c[i] = NULL;
        }
    }
}

/* ---- listeners -------------------------------------------------------------- */

static void listener_close_cb(uv_handle_t *h)
{
    obj_release(&((listener_t *)h->data)->o);
}

static void listener_kill(listener_t *l)
{
    obj_kill(&l->o);
    if (l->tcp_live) {
        l->tcp_live = 0;
        uv_close((uv_handle_t *)&l->tcp, listener_close_cb);
    }
}

static void listener_fail(listener_t *l, int status, const char *reason)
{
    wb_info(MOD, "listener %" PRIu64 ": %s", l->o.id, reason);
    post(&l->o, WB_EV_TCP_LISTENING, status, 0, reason);
    listener_kill(l);
}

static void on_connection(uv_stream_t *server, int status)
{
    listener_t *l = server->data;
    sockets_t *s = l->o.s;
    if (status < 0) {
        wb_warn(MOD, "listener %" PRIu64 ": accept: %s", l->o.id, uv_strerror(status));
        return;
    }
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL) {
        /* libuv stops watching the socket until we accept; it is retried at
         * the next connection only. */
        wb_error(MOD, "listener %" PRIu64 ": out of memory accepting", l->o.id);
        return;
    }
    uv_tcp_init(s->loop, t);
    if (uv_accept(server, (uv_stream_t *)t) != 0) {
        uv_close((uv_handle_t *)t, free_handle_cb);
        return;
    }
    const char *why = NULL;
    uint32_t limit = 0;
    if (s->nconns >= s->cfg.max_connections) {
        why = "the lane's";
        limit = s->cfg.max_connections;
    } else if (l->nconns >= l->o.opts.max_connections) {
        why = "the listener's";
        limit = l->o.opts.max_connections;
    }
    uint8_t ip[16];
    int fam = 0;
    if (why == NULL && l->o.opts.max_per_ip > 0) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0)
            fam = ip_key((struct sockaddr *)&ss, ip);
        if (fam != 0 && ip_count(s, l->o.id, fam, ip) >= l->o.opts.max_per_ip) {
            char peer[ADDR_MAX];
            addr_text((struct sockaddr *)&ss, peer, sizeof(peer));
            wb_info(MOD,
                    "listener %" PRIu64
                    ": refused a connection from %s: %u alive from that address (max_per_ip)",
                    l->o.id, peer, l->o.opts.max_per_ip);
            uv_close((uv_handle_t *)t, free_handle_cb);
            return;
        }
    }
    conn_t *c = NULL;
    if (why == NULL) {
        c = conn_new(s, new_id(), l->o.owner_lane, l->o.owner, &l->o.opts, l->o.host, l->o.port,
                     l->o.id, 1);
        if (c == NULL)
            why = "no memory for";
    }
    if (c == NULL) {
        wb_warn(MOD, "listener %" PRIu64 ": refused a connection: %s limit of %u reached", l->o.id,
                why, limit);
        uv_close((uv_handle_t *)t, free_handle_cb);
        return;
    }
    c->from_listener = 1;
    l->nconns++;
    if (fam != 0 && ip_add(s, l->o.id, fam, ip) == 0) {
        c->ip_fam = (uint8_t)fam;
        memcpy(c->ip, ip, sizeof(c->ip));
    }
    t->data = c;
    c->tcp = t;
    c->o.pending++;
    conn_open(c);
    obj_release(&c->o);
}

static void listener_start(listener_t *l, const struct sockaddr *sa)
{
    sockets_t *s = l->o.s;
    char where[ADDR_MAX], reason[REASON_MAX];
    addr_text(sa, where, sizeof(where));
    int rc = uv_tcp_init(s->loop, &l->tcp);
    if (rc == 0) {
        l->tcp.data = l;
        l->tcp_live = 1;
        l->o.pending++;
        rc = uv_tcp_bind(&l->tcp, sa, 0);
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, (int)l->o.opts.backlog, on_connection);
    if (rc != 0) {
        snprintf(reason, sizeof(reason), "listen %s: %s", where, uv_strerror(rc));
        listener_fail(l, wb_code(rc), reason);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uint16_t port = l->o.port;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) == 0) {
        addr_text((struct sockaddr *)&ss, where, sizeof(where));
        port = addr_port((struct sockaddr *)&ss);
    }
    wb_debug(MOD, "listener %" PRIu64 ": listening on %s", l->o.id, where);
    post(&l->o, WB_EV_TCP_LISTENING, 0, port, where);
}

static void listener_new(sockets_t *s, const cmd_t *cmd)
{
    char reason[REASON_MAX];
    listener_t *l = calloc(1, sizeof(*l));
    if (l != NULL) {
        l->o.kind = OBJ_LISTENER;
        if (obj_add(s, &l->o, cmd->id, cmd->owner_lane, cmd->owner, &cmd->opts, cmd->host,
                    cmd->port) != 0) {
            free(l);
            l = NULL;
        }
    }
    if (l == NULL) {
        opts_free(&((cmd_t *)cmd)->opts);
        post_to(s, cmd->owner_lane, cmd->owner, cmd->id, WB_EV_TCP_LISTENING, WB_ENOMEM, 0,
                "out of memory");
        return;
    }
    struct sockaddr_storage ss;
    int rc;
    if (l->o.opts.tls != NULL &&
        (rc = tls_prepare(s, &l->o.opts, 1, reason, sizeof(reason))) != 0) {
        listener_fail(l, rc, reason);
    } else if (parse_literal(cmd->host, cmd->port, &ss) == 0) {
        listener_start(l, (struct sockaddr *)&ss);
    } else {
        rc = resolve(&l->o);
        if (rc != 0) {
            snprintf(reason, sizeof(reason), "resolve %s: %s", cmd->host, uv_strerror(rc));
            listener_fail(l, wb_code(rc), reason);
        }
    }
    obj_release(&l->o);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    gai_t *g = WB_CONTAINER_OF(req, gai_t, req);
    obj_t *o = g->o;
    o->gai = NULL;
    free(g);
    if (o->dead) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        obj_release(o);
        return;
    }
    char reason[REASON_MAX];
    struct addrinfo *a = res;
    while (a != NULL && a->ai_family != AF_INET && a->ai_family != AF_INET6)
        a = a->ai_next;
    if (status == 0 && a == NULL)
        status = UV_EAI_NODATA;
    if (status != 0)
        snprintf(reason, sizeof(reason), "resolve %s: %s", o->host, uv_strerror(status));
    if (o->kind == OBJ_LISTENER) {
        listener_t *l = (listener_t *)o;
        if (status != 0)
            listener_fail(l, wb_code(status), reason);
        else
            listener_start(l, a->ai_addr);
        if (res != NULL)
            uv_freeaddrinfo(res);
    } else {
        conn_t *c = (conn_t *)o;
        if (status != 0) {
            if (res != NULL)
                uv_freeaddrinfo(res);
            conn_end(c, wb_code(status), reason);
        } else {
            c->ai = res;
            c->ai_next = a->ai_next;
            conn_connect(c, a->ai_addr);
        }
    }
    obj_release(o);
}

/* ---- dialers ---------------------------------------------------------------- */

static void dialer_close_cb(uv_handle_t *h)
{
    obj_release(&((dialer_t *)h->data)->o);
}

static void dialer_attempt(dialer_t *d)
{
    uint64_t id = new_id();
    d->conn = id;
    dial_start(d->o.s, id, d->o.owner_lane, d->o.owner, &d->o.opts, d->o.host, d->o.port, d->o.id,
               1);
}

static void on_dialer_timer(uv_timer_t *t)
{
    dialer_t *d = t->data;
    if (!d->o.dead)
        dialer_attempt(d);
}

static void dialer_conn_ended(dialer_t *d, int was_open, uint64_t opened_at, int status,
                              const char *reason)
{
    sockets_t *s = d->o.s;
    const wb_tcp_opts_t *o = &d->o.opts;
    d->conn = 0;
    if (was_open && uv_now(s->loop) - opened_at >= o->reconnect_reset_ms)
        d->failures = 0;
    uint64_t ceil = (uint64_t)o->reconnect_min_ms << (d->failures < 32 ? d->failures : 32);
    if (ceil > o->reconnect_max_ms)
        ceil = o->reconnect_max_ms;
    uint64_t delay = ceil / 2 + rnd(s) % (ceil - ceil / 2 + 1);
    if (d->failures < UINT32_MAX)
        d->failures++;
    char text[REASON_MAX + 64];
    snprintf(text, sizeof(text), "%s; retrying in %" PRIu64 " ms", reason, delay);
    wb_debug(MOD, "dialer %" PRIu64 ": %s", d->o.id, text);
    post(&d->o, WB_EV_TCP_RETRY, status, delay, text);
    uv_timer_start(&d->timer, on_dialer_timer, delay, 0);
}

static void dialer_new(sockets_t *s, const cmd_t *cmd)
{
    dialer_t *d = calloc(1, sizeof(*d));
    if (d != NULL) {
        d->o.kind = OBJ_DIALER;
        if (obj_add(s, &d->o, cmd->id, cmd->owner_lane, cmd->owner, &cmd->opts, cmd->host,
                    cmd->port) != 0) {
            free(d);
            d = NULL;
        }
    }
    if (d == NULL) {
        opts_free(&((cmd_t *)cmd)->opts);
        post_to(s, cmd->owner_lane, cmd->owner, cmd->id, WB_EV_TCP_CLOSED, WB_ENOMEM, 0,
                "out of memory");
        return;
    }
    char reason[REASON_MAX];
    int rc;
    if (d->o.opts.tls != NULL &&
        (rc = tls_prepare(s, &d->o.opts, 0, reason, sizeof(reason))) != 0) {
        /* Every attempt would fail the same way. */
        post(&d->o, WB_EV_TCP_CLOSED, rc, 0, reason);
        obj_kill(&d->o);
        obj_release(&d->o);
        return;
    }
    uv_timer_init(s->loop, &d->timer);
    d->timer.data = d;
    d->timer_live = 1;
    d->o.pending++;
    dialer_attempt(d);
    obj_release(&d->o);
}

static void dialer_close(dialer_t *d)
{
    sockets_t *s = d->o.s;
    uint64_t cid = d->conn;
    d->conn = 0;
    conn_t *c = (conn_t *)obj_get(s, cid, OBJ_CONN);
    if (c != NULL)
        conn_close_owner(c, WB_WS_CLOSE_NORMAL, NULL);
    post(&d->o, WB_EV_TCP_CLOSED, 0, 0, "dialer closed");
    obj_kill(&d->o);
    if (d->timer_live) {
        d->timer_live = 0;
        uv_close((uv_handle_t *)&d->timer, dialer_close_cb);
    }
}

/* ---- the lane service ------------------------------------------------------- */

static void on_cmd(sockets_t *s, const cmd_t *cmd)
{
    obj_t *o;
    switch (cmd->op) {
    case CMD_LISTEN:
        listener_new(s, cmd);
        break;
    case CMD_DIAL:
        dial_start(s, cmd->id, cmd->owner_lane, cmd->owner, &cmd->opts, cmd->host, cmd->port, 0, 0);
        opts_free(&((cmd_t *)cmd)->opts); /* the connection has copied them */
        break;
    case CMD_DIALER:
        dialer_new(s, cmd);
        break;
    case CMD_CLOSE:
        o = obj_get(s, cmd->id, 0);
        if (o == NULL)
            break;
        if (o->kind == OBJ_CONN) {
            conn_close_owner((conn_t *)o, cmd->port != 0 ? cmd->port : WB_WS_CLOSE_NORMAL,
                             cmd->host[0] != 0 ? cmd->host : NULL);
        } else if (o->kind == OBJ_LISTENER) {
            post(o, WB_EV_TCP_CLOSED, 0, 0, "listener closed");
            listener_kill((listener_t *)o);
        } else {
            dialer_close((dialer_t *)o);
        }
        break;
    case CMD_PAUSE:
    case CMD_UNPAUSE:
        o = obj_get(s, cmd->id, OBJ_CONN);
        if (o != NULL)
            conn_pause((conn_t *)o, cmd->op == CMD_PAUSE);
        break;
    case CMD_SPLICE:
        sp_request(s, cmd);
        break;
    case CMD_OWNER:
        o = obj_get(s, cmd->id, 0);
        if (o != NULL) {
            o->owner_lane = (wb_lane_t)cmd->owner_lane;
            o->owner = cmd->owner;
        }
        break;
    default:
        wb_rt_count_drop(s->rt, WB_LANE_NET);
    }
}

static void on_event(wb_rt_t *rt, void *ctx, wb_event_t *ev)
{
    sockets_t *s = ctx;
    switch (ev->type) {
    case WB__EV_TCP_STATE:
        if (ev->data == s && s->token == NULL) {
            s->token = ev;
            return;
        }
        break;
    case WB__EV_TCP_CMD:
        if (ev->dst == 0 && ev->len == sizeof(cmd_t)) {
            cmd_t cmd;
            memcpy(&cmd, ev->data, sizeof(cmd));
            ((cmd_t *)ev->data)->opts.ws = NULL; /* on_cmd owns them now */
            ((cmd_t *)ev->data)->opts.tls = NULL;
            wb_event_free(ev);
            cmd.host[WB_TCP_HOST_MAX] = '\0';
            on_cmd(s, &cmd);
            return;
        }
        break;
    case WB__EV_TCP_SEND: {
        conn_t *c = (conn_t *)obj_get(s, ev->dst, OBJ_CONN);
        if (c != NULL) {
            conn_enqueue(c, ev);
            return;
        }
        break;
    }
    case WB_EV_RESUME: {
        conn_t *c = (conn_t *)obj_get(s, ev->dst, OBJ_CONN);
        wb_event_free(ev);
        if (c != NULL)
            conn_resume(c);
        return;
    }
    default:
        break;
    }
    wb_rt_count_drop(rt, WB_LANE_NET);
    wb_event_free(ev);
}

static void prep_close_cb(uv_handle_t *h)
{
    s_unref(h->data);
}

static int on_start(wb_rt_t *rt, void *ctx)
{
    sockets_t *s = ctx;
    s->loop = wb_rt_loop(rt, WB_LANE_NET);
    if (s->loop == NULL)
        return WB_ESTATE;
    s->rbuf = malloc(s->cfg.read_buffer);
    if (s->rbuf == NULL)
        return WB_ENOMEM;
    /* A write to a peer that reset fails with EPIPE instead of killing the
     * process (splice(2) has no MSG_NOSIGNAL). */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    s->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)s ^ 0x9E3779B97F4A7C15ull;
    if (s->rng == 0)
        s->rng = 1;
    uv_prepare_init(s->loop, &s->prep);
    s->prep.data = s;
    uv_prepare_start(&s->prep, on_prepare);
    s->prep_live = 1;
    s->refs++;
    return 0;
}

/* Close everything at once, silently. The state goes with the last handle. */
static void on_stop(wb_rt_t *rt, void *ctx)
{
    sockets_t *s = ctx;
    (void)rt;
    /* The objects stay alive through this: every one still has a handle or
     * a request open, which the loop finishes after we return. */
    s->refs++;
    conn_t *c = s->dirty;
    s->dirty = NULL;
    while (c != NULL) {
        conn_t *next = c->dirty_next;
        c->dirty = 0;
        obj_release(&c->o);
        c = next;
    }
    sp_stop_all(s); /* the polls go before the sockets they watch */
    for (obj_t *o = s->all; o != NULL; o = o->next) {
        o->pending++;
        if (o->kind == OBJ_CONN) {
            conn_t *cc = (conn_t *)o;
            if (cc->state != C_LINGER && cc->state != C_DEAD)
                conn_detach(cc, 0);
            cc->state = C_DEAD;
            wq_free(cc);
            conn_close_handles(cc);
        } else if (o->kind == OBJ_LISTENER) {
            listener_kill((listener_t *)o);
        } else {
            dialer_t *d = (dialer_t *)o;
            if (d->timer_live) {
                d->timer_live = 0;
                uv_close((uv_handle_t *)&d->timer, dialer_close_cb);
            }
        }
        obj_kill(o);
    }
    /* Now give back the holds; nothing is freed before its callbacks ran. */
    for (obj_t *o = s->all, *next; o != NULL; o = next) {
        next = o->next;
        obj_release(o);
    }
    if (s->prep_live) {
        s->prep_live = 0;
        uv_close((uv_handle_t *)&s->prep, prep_close_cb);
    }
    wb_event_t *token = s->token;
    s->token = NULL;
    if (token != NULL)
        wb_event_free(token);
    s_unref(s);
}

static void free_state(void *data, size_t len)
{
    (void)len;
    s_unref(data);
}

void wb_sockets_config_init(wb_sockets_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_connections = DEF_MAX_CONNS;
    cfg->read_buffer = DEF_READ_BUFFER;
}

int wb_sockets_attach(wb_rt_t *rt, const wb_sockets_config_t *cfg)
{
    wb_sockets_config_t c;
    if (rt == NULL)
        return WB_EINVAL;
    if (wb_rt_is_deterministic(rt))
        return WB_ESTATE;
    wb_sockets_config_init(&c);
    if (cfg != NULL) {
        if (cfg->max_connections != 0)
            c.max_connections = cfg->max_connections;
        if (cfg->read_buffer != 0)
            c.read_buffer = cfg->read_buffer;
    }
    if (c.read_buffer < MIN_READ_BUFFER || c.read_buffer > MAX_READ_BUFFER)
        return WB_EINVAL;

    sockets_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WB_ENOMEM;
    s->rt = rt;
    s->cfg = c;
    s->refs = 1; /* the token's */
    wb_idmap_init(&s->objs);
    wb_event_t *token = wb_event_new_ext(WB__EV_TCP_STATE, s, sizeof(*s), free_state);
    if (token == NULL) {
        free(s);
        return WB_ENOMEM;
    }
    token->flags |= WB_EVF_CONTROL;
    wb_event_route(token, WB_LANE_NET, 0, WB_LANE_NET, 0);
    wb_lane_service_t svc = {
        .on_event = on_event,
        .on_start = on_start,
        .on_stop = on_stop,
        .ctx = s,
    };
    int rc = wb_rt_set_service(rt, WB_LANE_NET, &svc);
    if (rc == 0) {
        rc = wb_rt_send(rt, token);
        if (rc != 0) {
            wb_lane_service_t none = {0};
            wb_rt_set_service(rt, WB_LANE_NET, &none);
        }
    }
    if (rc != 0)
        wb_event_free(token); /* frees s */
    return rc;
}

/* ---- requests from any thread ----------------------------------------------- */

void wb_tcp_opts_init(wb_tcp_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->max_message = 1u << 20;
    o->write_high = 1u << 20;
    o->write_low = 256u << 10;
    o->max_connections = 1024;
    o->backlog = 128;
    o->connect_timeout_ms = 10000;
    o->reconnect_min_ms = 100;
    o->reconnect_max_ms = 30000;
    o->reconnect_reset_ms = 10000;
    o->linger_ms = 5000;
    /* write_hard_cap depends on the others: resolved in opts_resolve. */
}

#define PATH_MAX_ 4096

/* NULL, or 1 to max bytes. */
static int str_ok(const char *p, size_t max)
{
    return p == NULL || (p[0] != '\0' && strlen(p) <= max);
}

/* Defaults for zero fields, then the checks. */
static int opts_resolve(const wb_tcp_opts_t *in, wb_tcp_opts_t *out)
{
    wb_tcp_opts_t d;
    wb_tcp_opts_init(&d);
    if (in == NULL)
        in = &d;
    *out = *in;
#define DEF(f)                                                                                     \
    if (out->f == 0)                                                                               \
    out->f = d.f
    DEF(max_message);
    DEF(write_high);
    DEF(write_low);
    DEF(max_connections);
    DEF(backlog);
    DEF(connect_timeout_ms);
    DEF(reconnect_min_ms);
    DEF(reconnect_max_ms);
    DEF(reconnect_reset_ms);
    DEF(linger_ms);
#undef DEF
    if (out->max_message > WB_TCP_MAX_MESSAGE_LIMIT || out->write_high > SIZE_MAX / 4)
        return WB_EINVAL;
    size_t hdr = WB_FRAME_HEADER;
    if (out->ws != NULL) {
        const wb_ws_opts_t *w = out->ws;
        if (w->path == NULL || w->path[0] != '/' || strlen(w->path) > 200 ||
            w->max_message > WB_TCP_MAX_MESSAGE_LIMIT ||
            (w->host != NULL && (w->host[0] == '\0' || strlen(w->host) > WB_TCP_HOST_MAX)))
            return WB_EINVAL;
        out->raw = 1;
        hdr = WS_HEADER_MAX;
    }
    if (out->tls != NULL) {
        const wb_tls_opts_t *t = out->tls;
        if (!str_ok(t->server_name, WB_TCP_HOST_MAX) || !str_ok(t->ca_file, PATH_MAX_) ||
            !str_ok(t->cert_file, PATH_MAX_) || !str_ok(t->key_file, PATH_MAX_))
            return WB_EINVAL;
    }
    if (out->write_hard_cap == 0) {
        size_t need = 2 * out->write_high + hdr + out->max_message;
        out->write_hard_cap = need > (8u << 20) ? need : (8u << 20);
    }
    if (out->write_low > out->write_high || out->write_hard_cap <= out->write_high ||
        out->write_hard_cap < hdr + (size_t)out->max_message ||
        out->reconnect_min_ms > out->reconnect_max_ms || out->backlog > INT32_MAX)
        return WB_EINVAL;
    return 0;
}

static int cmd_host(cmd_t *cmd, const char *host)
{
    if (host == NULL)
        return WB_EINVAL;
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n > WB_TCP_HOST_MAX)
        return WB_EINVAL;
    memcpy(cmd->host, host, n);
    cmd->host[n] = '\0';
    return 0;
}

/* Copy ws, strings included, into one heap block (freed with free()), with
 * its defaults filled in. NULL when out of memory. */
static wb_ws_opts_t *ws_opts_copy(const wb_ws_opts_t *in)
{
    wb_ws_opts_t d;
    wb_ws_opts_init(&d);
    size_t lp = strlen(in->path) + 1, lh = in->host != NULL ? strlen(in->host) + 1 : 0;
    size_t lg = strlen(in->page != NULL ? in->page : "") + 1;
    wb_ws_opts_t *o = malloc(sizeof(*o) + lp + lh + lg);
    if (o == NULL)
        return NULL;
    *o = *in;
    char *p = (char *)(o + 1);
    memcpy(p, in->path, lp);
    o->path = p;
    p += lp;
    if (in->host != NULL) {
        memcpy(p, in->host, lh);
        o->host = p;
        p += lh;
    }
    memcpy(p, in->page != NULL ? in->page : "", lg);
    o->page = p;
    if (o->max_message == 0)
        o->max_message = d.max_message;
    if (o->max_header == 0)
        o->max_header = d.max_header;
    if (o->handshake_timeout_ms == 0)
        o->handshake_timeout_ms = d.handshake_timeout_ms;
    return o;
}

/* Copy tls, strings included, into one heap block (freed with free()), with
 * its defaults filled in. NULL when out of memory. */
static wb_tls_opts_t *tls_opts_copy(const wb_tls_opts_t *in)
{
    const char *strs[4] = {in->server_name, in->ca_file, in->cert_file, in->key_file};
    size_t len[4], total = sizeof(wb_tls_opts_t);
    for (int i = 0; i < 4; i++) {
        len[i] = strs[i] != NULL ? strlen(strs[i]) + 1 : 0;
        total += len[i];
    }
    wb_tls_opts_t *o = malloc(total);
    if (o == NULL)
        return NULL;
    *o = *in;
    char *p = (char *)(o + 1);
    const char **dst[4] = {&o->server_name, &o->ca_file, &o->cert_file, &o->key_file};
    for (int i = 0; i < 4; i++) {
        if (strs[i] == NULL)
            continue;
        memcpy(p, strs[i], len[i]);
        *dst[i] = p;
        p += len[i];
    }
    if (o->handshake_timeout_ms == 0) {
        wb_tls_opts_t d;
        wb_tls_opts_init(&d);
        o->handshake_timeout_ms = d.handshake_timeout_ms;
    }
    return o;
}

/* The free_cb of a command that carries a ws block: whoever has not taken
 * the block frees it with the command. */
static void cmd_free(void *data, size_t len)
{
    cmd_t *cmd = data;
    (void)len;
    opts_free(&cmd->opts);
    free(cmd);
}

/* Post a request to the lane. cmd->opts.ws and .tls (if any) go with it, posted
 * or not: it is freed on failure. */
static int post_cmd(wb_rt_t *rt, const cmd_t *cmd)
{
    wb_event_t *ev;
    if (cmd->opts.ws == NULL && cmd->opts.tls == NULL) {
        ev = wb_event_new_copy(WB__EV_TCP_CMD, cmd, sizeof(*cmd));
    } else {
        cmd_t *copy = malloc(sizeof(*copy));
        if (copy != NULL)
            *copy = *cmd;
        ev = copy != NULL ? wb_event_new_ext(WB__EV_TCP_CMD, copy, sizeof(*copy), cmd_free) : NULL;
        if (ev == NULL) {
            free(copy);
            opts_free((wb_tcp_opts_t *)&cmd->opts);
        }
    }
    if (ev == NULL)
        return WB_ENOMEM;
    ev->flags |= WB_EVF_CONTROL;
    wb_event_route(ev, WB_LANE_NET, 0, WB_LANE_NET, 0);
    int rc = wb_rt_send(rt, ev);
    if (rc != 0)
        wb_event_free(ev);
    return rc;
}

static int open_cmd(wb_rt_t *rt, int op, wb_lane_t owner_lane, uint64_t owner, const char *host,
                    uint16_t port, const wb_tcp_opts_t *opts, uint64_t *id)
{
    if (rt == NULL || id == NULL || owner_lane >= WB_LANE_COUNT || (op != CMD_LISTEN && port == 0))
        return WB_EINVAL;
    cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    int rc = cmd_host(&cmd, host);
    if (rc == 0)
        rc = opts_resolve(opts, &cmd.opts);
    if (rc != 0)
        return rc;
    if (op == CMD_LISTEN && cmd.opts.tls != NULL &&
        (cmd.opts.tls->cert_file == NULL || cmd.opts.tls->key_file == NULL))
        return WB_EINVAL;
    const wb_tls_opts_t *tls = cmd.opts.tls;
    cmd.opts.tls = NULL;
    if (cmd.opts.ws != NULL && (cmd.opts.ws = ws_opts_copy(cmd.opts.ws)) == NULL)
        return WB_ENOMEM;
    if (tls != NULL && (cmd.opts.tls = tls_opts_copy(tls)) == NULL) {
        opts_free(&cmd.opts);
        return WB_ENOMEM;
    }
    cmd.op = (uint8_t)op;
    cmd.owner_lane = (uint8_t)owner_lane;
    cmd.owner = owner;
    cmd.port = port;
    cmd.id = new_id();
    rc = post_cmd(rt, &cmd);
    if (rc == 0)
        *id = cmd.id;
    return rc;
}

int wb_tcp_listen(wb_rt_t *rt, wb_lane_t owner_lane, uint64_t owner, const char *host,
                  uint16_t port, const wb_tcp_opts_t *opts, uint64_t *listener_id)
{
    return open_cmd(rt, CMD_LISTEN, owner_lane, owner, host, port, opts, listener_id);
}

int wb_tcp_dial(wb_rt_t *rt, wb_lane_t owner_lane, uint64_t owner, const char *host, uint16_t port,
                const wb_tcp_opts_t *opts, uint64_t *conn_id)
{
    return open_cmd(rt, CMD_DIAL, owner_lane, owner, host, port, opts, conn_id);
}

int wb_tcp_dial_persistent(wb_rt_t *rt, wb_lane_t owner_lane, uint64_t owner, const char *host,
                           uint16_t port, const wb_tcp_opts_t *opts, uint64_t *dialer_id)
{
    return open_cmd(rt, CMD_DIALER, owner_lane, owner, host, port, opts, dialer_id);
}

int wb_tcp_send(wb_rt_t *rt, uint64_t conn, wb_event_t *blob)
{
    if (rt == NULL || blob == NULL || conn == 0)
        return WB_EINVAL;
    uint16_t type = blob->type;
    uint8_t lane = blob->dst_lane;
    uint64_t dst = blob->dst;
    blob->type = WB__EV_TCP_SEND;
    blob->dst_lane = WB_LANE_NET;
    blob->dst = conn;
    int rc = wb_rt_send(rt, blob);
    if (rc != 0) {
        blob->type = type;
        blob->dst_lane = lane;
        blob->dst = dst;
    }
    return rc;
}

int wb_tcp_close(wb_rt_t *rt, uint64_t id)
{
    if (rt == NULL || id == 0)
        return WB_EINVAL;
    cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = CMD_CLOSE;
    cmd.id = id;
    return post_cmd(rt, &cmd);
}

int wb_tcp_close_ws(wb_rt_t *rt, uint64_t id, uint16_t code, const char *reason)
{
    size_t n = reason != NULL ? strlen(reason) : 0;
    /* 1000-4999 minus the codes an endpoint must not send (RFC 6455 7.4). */
    if (rt == NULL || id == 0 || code < 1000 || code > 4999 || (code >= 1004 && code <= 1006) ||
        (code >= 1015 && code < 3000) || n > 123)
        return WB_EINVAL;
    cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = CMD_CLOSE;
    cmd.id = id;
    cmd.port = code;
    if (n > 0)
        memcpy(cmd.host, reason, n);
    return post_cmd(rt, &cmd);
}

int wb_tcp_set_owner(wb_rt_t *rt, uint64_t id, wb_lane_t owner_lane, uint64_t owner)
{
    if (rt == NULL || id == 0 || owner_lane >= WB_LANE_COUNT)
        return WB_EINVAL;
    cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = CMD_OWNER;
    cmd.id = id;
    cmd.owner_lane = (uint8_t)owner_lane;
    cmd.owner = owner;
    return post_cmd(rt, &cmd);
}

void wb_tcp_splice_opts_init(wb_tcp_splice_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->pipe_size = SP_DEF_PIPE;
}

int wb_tcp_splice(wb_rt_t *rt, uint64_t a, uint64_t b, const wb_tcp_splice_opts_t *opts)
{
    if (rt == NULL || a == 0 || b == 0 || a == b)
        return WB_EINVAL;
    cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = CMD_SPLICE;
    cmd.id = a;
    cmd.id2 = b;
    wb_tcp_splice_opts_init(&cmd.sp);
    if (opts != NULL) {
        cmd.sp = *opts;
        if (cmd.sp.pipe_size == 0)
            cmd.sp.pipe_size = SP_DEF_PIPE;
    }
    if (cmd.sp.pipe_size < SP_MIN_PIPE || cmd.sp.pipe_size > SP_MAX_PIPE)
        return WB_EINVAL;
    return post_cmd(rt, &cmd);
}

static int pause_cmd(wb_rt_t *rt, uint64_t conn, int op)
{
    if (rt == NULL || conn == 0)
        return WB_EINVAL;
    cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = (uint8_t)op;
    cmd.id = conn;
    return post_cmd(rt, &cmd);
}

int wb_tcp_pause(wb_rt_t *rt, uint64_t conn)
{
    return pause_cmd(rt, conn, CMD_PAUSE);
}

int wb_tcp_resume(wb_rt_t *rt, uint64_t conn)
{
    return pause_cmd(rt, conn, CMD_UNPAUSE);
}
