/*
 * peerconn.c - a peer connection as an actor: raw TCP bytes in, sealed
 * frames, packets, messages to the channels' readers. See peerconn.h.
 */
#include "sockets/peerconn.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "sockets/tcp.h"

#define MOD             "peer"
#define WRITE_CHUNK     65536      /* plaintext packets per sealed write */
#define FLUSH_BUDGET    16         /* sealed writes per handler run, then yield */
#define CLOSE_FLUSH_MAX (4u << 20) /* bytes written on a close by the owner */
#define HELLO_VERSION   1

typedef struct inbuf_s {
    struct inbuf_s *next;
    wb_event_t *ev;
    size_t off;
} inbuf_t;

/* A FIFO of events (messages waiting for a reader, writes the network
 * lane refused). */
typedef struct {
    wb_event_t **v;
    size_t head, n, cap;
} evq_t;

typedef enum { PC_SECRET, PC_HELLO, PC_WAIT, PC_RUN, PC_DONE } phase_t;

typedef struct {
    wb_rt_t *rt;
    wb_actor_t *self;
    uint64_t id, owner, conn;
    phase_t phase;
    int outbound, started, flush_posted, backpressured, tcp_open;
    char addr[64];
    wb_sc_t sc;
    wb_mconn_t *m;
    wb_peerconn_opts_t o;
    uint8_t id_sk[WB_SC_ID_SECRET_LEN];
    uint8_t expect[WB_SC_KEY_LEN];
    int have_expect;
    uint8_t *hello; /* version byte + blob */
    size_t hello_len;
    wb_mconn_chan_t *chans;
    size_t nchans;
    uint8_t idx[256]; /* channel id -> index, 0xff: none */
    uint64_t reader[WB_MCONN_MAX_CHANNELS];
    evq_t pend[WB_MCONN_MAX_CHANNELS];
    uint64_t *waiters[WB_MCONN_MAX_CHANNELS];
    size_t nwait[WB_MCONN_MAX_CHANNELS], capwait[WB_MCONN_MAX_CHANNELS];
    inbuf_t *in_head, *in_tail;
    evq_t out; /* writes refused by the network lane, in order */
    int faulty;
    wb_peerconn_faults_t faults;
    uint64_t rng;
    uint64_t delay_timer;
    int delay_live, delay_done;
    int eof; /* the peer closed: input an injected delay still holds is read at once */
    uint64_t tick_timer, hs_timer;
    int tick_live, hs_live;
    uint8_t *scratch;
    wb_peerconn_stats_t st;
} pc_t;

static const wb_actor_def_t peerconn_def;

/* ---- small pieces ---- */

static uint64_t rnd(pc_t *p)
{
    /* splitmix64: the faults' own generator, repeatable from the seed */
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int evq_push(evq_t *q, wb_event_t *ev)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 8;
        wb_event_t **v = malloc(cap * sizeof(*v));
        if (v == NULL)
            return WB_ENOMEM;
        for (size_t i = 0; i < q->n; i++)
            v[i] = q->v[(q->head + i) % q->cap];
        free(q->v);
        q->v = v;
        q->head = 0;
        q->cap = cap;
    }
    q->v[(q->head + q->n) % q->cap] = ev;
    q->n++;
    return 0;
}

static wb_event_t *evq_peek(evq_t *q)
{
    return q->n ? q->v[q->head] : NULL;
}

static void evq_pop(evq_t *q)
{
    q->head = (q->head + 1) % q->cap;
    q->n--;
}

static void evq_fini(evq_t *q)
{
    while (q->n > 0) {
        wb_event_free(evq_peek(q));
        evq_pop(q);
    }
    free(q->v);
    memset(q, 0, sizeof(*q));
}

static void free_payload(void *data, size_t len)
{
    (void)len;
    free(data);
}

static pc_t *lookup(wb_rt_t *rt, uint64_t id)
{
    wb_actor_t *a = wb_actor_lookup(rt, id);
    if (a == NULL || wb_actor_name(a) != peerconn_def.name)
        return NULL;
    return wb_actor_state(a);
}

static void short_id(const uint8_t *id, char out[17])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[16] = 0;
}

/* Tell the actors waiting for room on channel index i, and forget them. */
static void wake_waiters(pc_t *p, size_t i)
{
    for (size_t k = 0; k < p->nwait[i]; k++) {
        wb_event_t *s = wb_event_new(WB_EV_PEER_SENDABLE, 0);
        if (s == NULL)
            continue;
        s->flags |= WB_EVF_CONTROL;
        s->cookie = p->chans[i].id;
        if (wb_actor_send(p->rt, p->self, p->waiters[i][k], s) != 0)
            wb_event_free(s);
    }
    p->nwait[i] = 0;
}

/* ---- the end ---- */

static void end(pc_t *p, int status, const char *reason)
{
    if (p->phase == PC_DONE)
        return;
    p->phase = PC_DONE;
    char who[17] = "?";
    if (p->sc.state == WB_SC_ESTABLISHED)
        short_id(p->sc.remote_id, who);
    if (status == 0)
        wb_debug(MOD, "peer %s (%s): closed: %s", who, p->addr, reason);
    else
        wb_info(MOD, "peer %s (%s): closed: %s", who, p->addr, reason);
    size_t rl = strlen(reason);
    wb_event_t *ev = wb_event_new(WB_EV_PEER_CLOSED, rl + 1);
    if (ev != NULL) {
        memcpy(ev->data, reason, rl + 1);
        ev->len = (uint32_t)rl;
        ev->flags |= WB_EVF_CONTROL;
        ev->status = status;
        ev->cookie = (uint64_t)p->started;
        if (wb_actor_send(p->rt, p->self, p->owner, ev) != 0)
            wb_event_free(ev);
    }
    /* Senders waiting for room learn the end from wb_peer_send. */
    for (size_t i = 0; i < p->nchans; i++)
        wake_waiters(p, i);
    if (p->conn != 0)
        wb_tcp_close(p->rt, p->conn);
    p->conn = 0;
    wb_actor_exit(p->self, status);
}

static void fail_mconn(pc_t *p)
{
    end(p, wb_mconn_errcode(p->m), wb_mconn_error(p->m));
}

/* ---- writing ---- */

static void post_flush(pc_t *p)
{
    if (p->flush_posted || p->phase == PC_DONE)
        return;
    wb_event_t *ev = wb_event_new(WB__EV_PEER_FLUSH, 0);
    if (ev == NULL)
        return; /* the next event that writes will flush */
    ev->flags |= WB_EVF_CONTROL;
    if (wb_actor_send(p->rt, NULL, p->id, ev) != 0) {
        wb_event_free(ev);
        return;
    }
    p->flush_posted = 1;
}

/* Hand one write to the network lane, keeping order with refused ones. */
static void out_one(pc_t *p, wb_event_t *ev)
{
    p->st.bytes_out += ev->len;
    wb_event_route(ev, WB_LANE_ACTOR, p->id, WB_LANE_NET, 0);
    if (p->out.n == 0) {
        int rc = wb_tcp_send(p->rt, p->conn, ev);
        if (rc == 0)
            return;
        if (rc != WB_EAGAIN) {
            wb_event_free(ev);
            return; /* closed: its CLOSED event tells */
        }
    }
    if (evq_push(&p->out, ev) != 0) {
        wb_event_free(ev);
        end(p, WB_ENOMEM, "out of memory queueing a write");
    }
}

/* A write, cut into short pieces when faults say so. */
static void out_write(pc_t *p, wb_event_t *ev)
{
    if (!p->faulty || ev->len < 2 || rnd(p) % 100 >= p->faults.short_pct) {
        out_one(p, ev);
        return;
    }
    const uint8_t *d = ev->data;
    size_t off = 0;
    while (off < ev->len && p->phase != PC_DONE) {
        size_t n = 1 + rnd(p) % (ev->len - off);
        wb_event_t *piece = wb_event_new_copy(0, d + off, n);
        if (piece == NULL) {
            end(p, WB_ENOMEM, "out of memory cutting a write");
            break;
        }
        out_one(p, piece);
        off += n;
    }
    wb_event_free(ev);
}

static void out_raw(pc_t *p, const uint8_t *d, size_t n)
{
    wb_event_t *ev = wb_event_new_copy(0, d, n);
    if (ev == NULL) {
        end(p, WB_ENOMEM, "out of memory");
        return;
    }
    out_write(p, ev);
}

static void out_retry(pc_t *p)
{
    while (p->out.n > 0 && p->phase != PC_DONE) {
        wb_event_t *ev = evq_peek(&p->out);
        int rc = wb_tcp_send(p->rt, p->conn, ev);
        if (rc == WB_EAGAIN)
            return;
        evq_pop(&p->out);
        if (rc != 0)
            wb_event_free(ev);
    }
}

static void notify_sendable(pc_t *p)
{
    for (size_t i = 0; i < p->nchans; i++)
        if (p->nwait[i] > 0 && wb_mconn_sendable(p->m, p->chans[i].id))
            wake_waiters(p, i);
}

/* Seal what the mconn has to write, while the TCP queue takes it. With
 * `all` (a close by the owner) write regardless of backpressure, up to a
 * bound. */
static void flush(pc_t *p, int all)
{
    if (p->phase != PC_RUN)
        return;
    out_retry(p);
    size_t budget = all ? CLOSE_FLUSH_MAX : (size_t)FLUSH_BUDGET * WRITE_CHUNK;
    while (p->phase == PC_RUN && (all || (!p->backpressured && p->out.n == 0)) &&
           wb_mconn_want_write(p->m)) {
        if (budget == 0) {
            if (!all)
                post_flush(p);
            break;
        }
        long n = wb_mconn_write(p->m, p->scratch, WRITE_CHUNK);
        if (n < 0) {
            fail_mconn(p);
            return;
        }
        if (n == 0)
            break;
        budget = budget > (size_t)n ? budget - (size_t)n : 0;
        size_t sz = wb_sc_sealed_size((size_t)n, p->o.frame_max);
        wb_event_t *ev = wb_event_new(0, sz);
        if (ev == NULL) {
            end(p, WB_ENOMEM, "out of memory sealing a write");
            return;
        }
        long s = wb_sc_seal(&p->sc, p->scratch, (size_t)n, p->o.frame_max, ev->data);
        if (s < 0) {
            wb_event_free(ev);
            end(p, (int)s, wb_sc_error(&p->sc));
            return;
        }
        ev->len = (uint32_t)s;
        out_write(p, ev);
    }
    if (p->phase == PC_RUN)
        notify_sendable(p);
}

/* ---- timers ---- */

static void arm_tick(pc_t *p)
{
    if (p->tick_live)
        wb_timer_cancel(p->self, p->tick_timer);
    uint64_t now = wb_rt_now_ms(p->rt), next = wb_mconn_next_deadline(p->m);
    p->tick_live = wb_timer_start(p->self, next > now ? next - now : 0, &p->tick_timer) == 0;
}

/* ---- reading ---- */

static int deliver_one(pc_t *p, size_t i, wb_event_t *ev)
{
    int rc = wb_actor_send(p->rt, p->self, p->reader[i], ev);
    if (rc == WB_EAGAIN)
        return 1;
    if (rc != 0) {
        /* The reader is gone: the message has nowhere to go. */
        wb_rt_count_drop(p->rt, WB_LANE_ACTOR);
        wb_event_free(ev);
    } else {
        p->st.msgs_in++;
    }
    wb_mconn_delivered(p->m, p->chans[i].id);
    return 0;
}

static void deliver_pending(pc_t *p, uint64_t reader)
{
    for (size_t i = 0; i < p->nchans && p->phase == PC_RUN; i++) {
        if (reader != 0 && p->reader[i] != reader)
            continue;
        while (p->pend[i].n > 0) {
            if (deliver_one(p, i, evq_peek(&p->pend[i])) == 1)
                break;
            evq_pop(&p->pend[i]);
        }
    }
}

static void deliver(pc_t *p, uint8_t ch, uint8_t *msg, size_t len)
{
    size_t i = p->idx[ch];
    wb_event_t *ev = len > 0 ? wb_event_new_ext(WB_EV_PEER_MSG, msg, len, free_payload)
                             : wb_event_new(WB_EV_PEER_MSG, 0);
    if (ev == NULL) {
        free(msg);
        end(p, WB_ENOMEM, "out of memory delivering a message");
        return;
    }
    ev->cookie = ch;
    if (i == 0xff || p->reader[i] == 0) {
        wb_rt_count_drop(p->rt, WB_LANE_ACTOR);
        wb_event_free(ev);
        wb_mconn_delivered(p->m, ch);
        return;
    }
    if (p->pend[i].n == 0 && deliver_one(p, i, ev) == 0)
        return;
    if (evq_push(&p->pend[i], ev) != 0) {
        wb_event_free(ev);
        end(p, WB_ENOMEM, "out of memory holding a message");
    }
}

static void ready(pc_t *p, const uint8_t *plain, size_t len)
{
    if (len < 1 || plain[0] != HELLO_VERSION) {
        end(p, WB_EPROTO, "hello: unknown version");
        return;
    }
    if (len - 1 > WB_PEERCONN_MAX_HELLO) {
        char r[96];
        snprintf(r, sizeof(r), "hello of %zu bytes exceeds %d", len - 1, WB_PEERCONN_MAX_HELLO);
        end(p, WB_ETOOBIG, r);
        return;
    }
    wb_event_t *ev = wb_event_new(WB_EV_PEER_READY, sizeof(wb_peer_ready_t) + len - 1);
    if (ev == NULL) {
        end(p, WB_ENOMEM, "out of memory");
        return;
    }
    wb_peer_ready_t *r = ev->data;
    memcpy(r->remote_id, p->sc.remote_id, WB_SC_KEY_LEN);
    r->outbound = (uint8_t)p->outbound;
    snprintf(r->addr, sizeof(r->addr), "%s", p->addr);
    r->hello_len = (uint32_t)(len - 1);
    memcpy(r->hello, plain + 1, len - 1);
    ev->flags |= WB_EVF_CONTROL;
    if (wb_actor_send(p->rt, p->self, p->owner, ev) != 0) {
        wb_event_free(ev);
        end(p, WB_ECLOSED, "owner gone");
        return;
    }
    p->phase = PC_WAIT;
}

/* Take what the current phase can of d[0..n); *used says how much. */
static void feed(pc_t *p, uint8_t *d, size_t n, size_t *used)
{
    *used = 0;
    if (p->phase == PC_SECRET) {
        uint8_t auth[WB_SC_AUTH_WIRE_LEN];
        size_t alen = 0;
        int rc = wb_sc_handshake(&p->sc, d, n, used, auth, &alen);
        if (alen > 0)
            out_raw(p, auth, alen);
        if (rc < 0) {
            end(p, rc, wb_sc_error(&p->sc));
        } else if (rc == 1 && p->phase == PC_SECRET) {
            if (p->have_expect && sodium_memcmp(p->sc.remote_id, p->expect, WB_SC_KEY_LEN) != 0) {
                end(p, WB_EPROTO, "peer proved another identity than expected");
                return;
            }
            p->phase = PC_HELLO;
            size_t sz = wb_sc_sealed_size(p->hello_len, WB_SC_MAX_FRAME);
            wb_event_t *ev = wb_event_new(0, sz);
            long s = ev ? wb_sc_seal(&p->sc, p->hello, p->hello_len, WB_SC_MAX_FRAME, ev->data)
                        : WB_ENOMEM;
            if (s < 0) {
                wb_event_free(ev);
                end(p, (int)s, "cannot seal the hello");
                return;
            }
            ev->len = (uint32_t)s;
            out_write(p, ev);
        }
        return;
    }
    const uint8_t *plain;
    size_t plen;
    int rc = wb_sc_open(&p->sc, d, n, used, &plain, &plen);
    if (rc < 0) {
        end(p, rc, wb_sc_error(&p->sc));
        return;
    }
    if (rc == 0)
        return;
    if (p->phase == PC_HELLO) {
        ready(p, plain, plen);
        return;
    }
    /* PC_RUN: the frame's packets. */
    size_t off = 0;
    while (off < plen && p->phase == PC_RUN) {
        size_t u = 0;
        uint8_t ch = 0, *msg = NULL;
        size_t mlen = 0;
        int r = wb_mconn_read(p->m, plain + off, plen - off, &u, &ch, &msg, &mlen);
        off += u;
        if (r < 0) {
            fail_mconn(p);
            return;
        }
        if (r == 1)
            deliver(p, ch, msg, mlen);
        else if (u == 0)
            break;
    }
    if (p->phase == PC_RUN && wb_mconn_want_write(p->m))
        post_flush(p); /* pongs, credit */
}

static void process_input(pc_t *p)
{
    while (p->in_head != NULL &&
           (p->phase == PC_SECRET || p->phase == PC_HELLO || p->phase == PC_RUN)) {
        if (p->faulty && p->faults.max_delay_ms > 0 && !p->delay_done && !p->eof) {
            if (!p->delay_live)
                p->delay_live = wb_timer_start(p->self, rnd(p) % (p->faults.max_delay_ms + 1),
                                               &p->delay_timer) == 0;
            if (p->delay_live)
                return;
        }
        inbuf_t *b = p->in_head;
        uint8_t *d = (uint8_t *)b->ev->data + b->off;
        size_t n = b->ev->len - b->off, used = 0;
        if (p->faulty && n > 1 && rnd(p) % 100 < p->faults.short_pct)
            n = 1 + rnd(p) % n;
        feed(p, d, n, &used);
        b->off += used;
        if (b->off == b->ev->len) {
            p->in_head = b->next;
            if (p->in_head == NULL)
                p->in_tail = NULL;
            wb_event_free(b->ev);
            free(b);
            p->delay_done = 0; /* the next read waits again */
        } else if (used == 0 && p->phase != PC_WAIT && p->phase != PC_DONE) {
            WB_ASSERT(0 && "a phase took nothing of its input");
        }
    }
}

static void take_blob(pc_t *p, wb_event_t *ev)
{
    p->st.bytes_in += ev->len;
    if (p->faulty && p->phase == PC_RUN && p->faults.reset_per_mille > 0 &&
        rnd(p) % 1000 < p->faults.reset_per_mille) {
        wb_event_free(ev);
        end(p, WB_EIO, "connection reset (injected)");
        return;
    }
    inbuf_t *b = malloc(sizeof(*b));
    if (b == NULL) {
        wb_event_free(ev);
        end(p, WB_ENOMEM, "out of memory reading");
        return;
    }
    b->next = NULL;
    b->ev = ev;
    b->off = 0;
    if (p->in_tail != NULL)
        p->in_tail->next = b;
    else
        p->in_head = b;
    p->in_tail = b;
    process_input(p);
}

/* ---- the owner's answers ---- */

static void start(pc_t *p, const wb_peer_route_t *routes, size_t n)
{
    if (p->phase != PC_WAIT)
        return;
    for (size_t k = 0; k < n; k++)
        if (p->idx[routes[k].ch] != 0xff)
            p->reader[p->idx[routes[k].ch]] = routes[k].reader;
    p->phase = PC_RUN;
    p->started = 1;
    if (p->hs_live) {
        wb_timer_cancel(p->self, p->hs_timer);
        p->hs_live = 0;
    }
    arm_tick(p);
    flush(p, 0); /* the first credit */
    process_input(p);
}

/* ---- the actor ---- */

static void pc_handle(wb_actor_t *self, wb_event_t *ev)
{
    pc_t *p = wb_actor_state(self);
    p->self = self;
    if (p->phase == PC_DONE) {
        wb_event_free(ev);
        return;
    }
    switch (ev->type) {
    case WB_EV_TCP_OPENED:
        p->tcp_open = 1;
        if (ev->len > 0)
            snprintf(p->addr, sizeof(p->addr), "%s", (const char *)ev->data);
        break;
    case WB_EV_TCP_BLOB:
        take_blob(p, ev);
        return;
    case WB_EV_TCP_CLOSED: {
        p->conn = 0;
        /* What came before the close is read before it, delayed or not. */
        p->eof = 1;
        process_input(p);
        char r[256];
        const char *why = ev->len > 0 ? (const char *)ev->data : "closed";
        if (p->tcp_open && (p->phase == PC_SECRET || p->phase == PC_HELLO))
            snprintf(r, sizeof(r), "%s during the handshake", why);
        else
            snprintf(r, sizeof(r), "%s", why);
        end(p, ev->status != 0 ? ev->status : WB_ECLOSED, r);
        break;
    }
    case WB_EV_TCP_BACKPRESSURE:
        p->backpressured = 1;
        break;
    case WB_EV_TCP_WRITABLE:
        p->backpressured = 0;
        flush(p, 0);
        break;
    case WB_EV_RESUME:
        if (ev->src_lane == WB_LANE_NET) {
            out_retry(p);
            flush(p, 0);
        } else {
            deliver_pending(p, ev->src);
            if (p->phase == PC_RUN && wb_mconn_want_write(p->m))
                flush(p, 0);
        }
        break;
    case WB_EV_TIMER:
        if (p->tick_live && ev->cookie == p->tick_timer) {
            p->tick_live = 0;
            if (wb_mconn_tick(p->m, wb_rt_now_ms(p->rt)) < 0) {
                fail_mconn(p);
                break;
            }
            flush(p, 0);
            if (p->phase == PC_RUN)
                arm_tick(p);
        } else if (p->hs_live && ev->cookie == p->hs_timer) {
            p->hs_live = 0;
            char r[96];
            snprintf(r, sizeof(r), "handshake not done within %u ms", p->o.handshake_timeout_ms);
            end(p, WB_ETIMEDOUT, r);
        } else if (p->delay_live && ev->cookie == p->delay_timer) {
            p->delay_live = 0;
            p->delay_done = 1;
            process_input(p);
        }
        break;
    case WB__EV_PEER_START:
        start(p, ev->data, ev->len / sizeof(wb_peer_route_t));
        break;
    case WB__EV_PEER_CLOSE:
        if (p->phase == PC_RUN)
            flush(p, 1);
        end(p, ev->status, ev->len > 0 ? (const char *)ev->data : "closed by owner");
        break;
    case WB__EV_PEER_FLUSH:
        p->flush_posted = 0;
        flush(p, 0);
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static void pc_fini(wb_actor_t *self)
{
    pc_t *p = wb_actor_state(self);
    if (p->conn != 0)
        wb_tcp_close(p->rt, p->conn);
    while (p->in_head != NULL) {
        inbuf_t *b = p->in_head;
        p->in_head = b->next;
        wb_event_free(b->ev);
        free(b);
    }
    for (size_t i = 0; i < WB_MCONN_MAX_CHANNELS; i++) {
        evq_fini(&p->pend[i]);
        free(p->waiters[i]);
    }
    evq_fini(&p->out);
    wb_mconn_free(p->m);
    wb_sc_fini(&p->sc);
    sodium_memzero(p->id_sk, sizeof(p->id_sk));
    free(p->hello);
    free(p->chans);
    free(p->scratch);
    free(p);
}

static const wb_actor_def_t peerconn_def = {
    .name = "peerconn", .handle = pc_handle, .fini = pc_fini};

/* ---- making one ---- */

void wb_peerconn_opts_init(wb_peerconn_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    wb_mconn_config_init(&o->mconn);
    o->handshake_timeout_ms = 20000;
    o->frame_max = 16384;
    o->connect_timeout_ms = 3000;
    o->write_high = 256 * 1024;
    o->write_low = 64 * 1024;
}

static void pc_free_unstarted(pc_t *p)
{
    wb_mconn_free(p->m);
    wb_sc_fini(&p->sc);
    sodium_memzero(p->id_sk, sizeof(p->id_sk));
    free(p->hello);
    free(p->chans);
    free(p->scratch);
    free(p);
}

static int pc_new(wb_rt_t *rt, wb_actor_t *owner, const wb_peerconn_opts_t *opts, pc_t **out)
{
    if (opts == NULL || opts->id_sk == NULL || (opts->nchans > 0 && opts->chans == NULL) ||
        opts->nchans > WB_MCONN_MAX_CHANNELS || opts->hello_len > WB_PEERCONN_MAX_HELLO ||
        (opts->hello_len > 0 && opts->hello == NULL) || owner == NULL)
        return WB_EINVAL;
    pc_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WB_ENOMEM;
    p->rt = rt;
    p->owner = wb_actor_id(owner);
    p->o = *opts;
    if (p->o.frame_max == 0 || p->o.frame_max > WB_SC_MAX_FRAME)
        p->o.frame_max = WB_SC_MAX_FRAME;
    if (p->o.handshake_timeout_ms == 0)
        p->o.handshake_timeout_ms = 20000;
    memcpy(p->id_sk, opts->id_sk, WB_SC_ID_SECRET_LEN);
    if (opts->expect_pk != NULL) {
        memcpy(p->expect, opts->expect_pk, WB_SC_KEY_LEN);
        p->have_expect = 1;
    }
    if (opts->faults != NULL) {
        p->faulty = 1;
        p->faults = *opts->faults;
        p->rng = opts->faults->seed;
    }
    p->o.faults = NULL;
    p->o.id_sk = NULL;
    p->o.expect_pk = NULL;
    memset(p->idx, 0xff, sizeof(p->idx));
    p->hello_len = opts->hello_len + 1;
    p->hello = malloc(p->hello_len);
    p->chans = malloc((opts->nchans > 0 ? opts->nchans : 1) * sizeof(*p->chans));
    p->scratch = malloc(WRITE_CHUNK);
    if (p->hello == NULL || p->chans == NULL || p->scratch == NULL) {
        pc_free_unstarted(p);
        return WB_ENOMEM;
    }
    p->hello[0] = HELLO_VERSION;
    if (opts->hello_len > 0)
        memcpy(p->hello + 1, opts->hello, opts->hello_len);
    if (opts->nchans > 0)
        memcpy(p->chans, opts->chans, opts->nchans * sizeof(*p->chans));
    p->nchans = opts->nchans;
    p->o.chans = p->chans;
    p->o.hello = NULL;
    for (size_t i = 0; i < p->nchans; i++) {
        if (p->idx[p->chans[i].id] != 0xff) {
            pc_free_unstarted(p);
            return WB_EINVAL;
        }
        p->idx[p->chans[i].id] = (uint8_t)i;
    }
    int rc = wb_mconn_new(&p->m, &p->o.mconn, p->chans, p->nchans, wb_rt_now_ms(rt));
    if (rc != 0) {
        p->m = NULL;
        pc_free_unstarted(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Spawn the actor, say hello, start the handshake clock. */
static int pc_spawn(wb_rt_t *rt, wb_actor_t *owner, pc_t *p, uint8_t hello[WB_SC_HELLO_LEN])
{
    int rc = wb_sc_init(&p->sc, p->id_sk, p->have_expect ? p->expect : NULL, NULL, hello);
    if (rc != 0)
        return rc;
    rc = wb_actor_spawn(rt, owner, &peerconn_def, p, &p->id);
    if (rc != 0)
        return rc;
    p->self = wb_actor_lookup(rt, p->id);
    p->hs_live = wb_timer_start(p->self, p->o.handshake_timeout_ms, &p->hs_timer) == 0;
    return 0;
}

static void tcp_opts(const pc_t *p, wb_tcp_opts_t *t)
{
    wb_tcp_opts_init(t);
    t->raw = 1;
    t->max_message = 1u << 20;
    t->write_high = p->o.write_high ? p->o.write_high : 256 * 1024;
    t->write_low = p->o.write_low ? p->o.write_low : t->write_high / 4;
    t->connect_timeout_ms = p->o.connect_timeout_ms ? p->o.connect_timeout_ms : 3000;
    t->linger_ms = 2000;
}

int wb_peerconn_dial(wb_rt_t *rt, wb_actor_t *owner, const char *host, uint16_t port,
                     const wb_peerconn_opts_t *opts, uint64_t *pc)
{
    if (host == NULL || port == 0)
        return WB_EINVAL;
    pc_t *p;
    int rc = pc_new(rt, owner, opts, &p);
    if (rc != 0)
        return rc;
    p->outbound = 1;
    snprintf(p->addr, sizeof(p->addr), "%s:%u", host, port);
    uint8_t hello[WB_SC_HELLO_LEN];
    rc = pc_spawn(rt, owner, p, hello);
    if (rc != 0) {
        if (p->id == 0)
            pc_free_unstarted(p);
        return rc;
    }
    wb_tcp_opts_t t;
    tcp_opts(p, &t);
    rc = wb_tcp_dial(rt, WB_LANE_ACTOR, p->id, host, port, &t, &p->conn);
    if (rc != 0) {
        wb_actor_kill(rt, p->id);
        return rc;
    }
    out_raw(p, hello, sizeof(hello));
    *pc = p->id;
    return 0;
}

int wb_peerconn_accept(wb_rt_t *rt, wb_actor_t *owner, uint64_t conn, const char *addr,
                       const wb_peerconn_opts_t *opts, uint64_t *pc)
{
    if (conn == 0)
        return WB_EINVAL;
    pc_t *p;
    int rc = pc_new(rt, owner, opts, &p);
    if (rc != 0)
        return rc;
    snprintf(p->addr, sizeof(p->addr), "%s", addr != NULL ? addr : "?");
    uint8_t hello[WB_SC_HELLO_LEN];
    rc = pc_spawn(rt, owner, p, hello);
    if (rc != 0) {
        if (p->id == 0)
            pc_free_unstarted(p);
        return rc;
    }
    p->conn = conn;
    p->tcp_open = 1;
    rc = wb_tcp_set_owner(rt, conn, WB_LANE_ACTOR, p->id);
    if (rc == 0)
        rc = wb_tcp_resume(rt, conn);
    if (rc != 0) {
        p->conn = 0;
        wb_actor_kill(rt, p->id);
        return rc;
    }
    out_raw(p, hello, sizeof(hello));
    *pc = p->id;
    return 0;
}

static int post_to(wb_rt_t *rt, wb_actor_t *self, uint64_t pc, wb_event_t *ev)
{
    ev->flags |= WB_EVF_CONTROL;
    int rc = wb_actor_send(rt, self, pc, ev);
    if (rc != 0)
        wb_event_free(ev);
    return rc;
}

int wb_peerconn_start(wb_rt_t *rt, wb_actor_t *owner, uint64_t pc, const wb_peer_route_t *routes,
                      size_t n)
{
    if (lookup(rt, pc) == NULL)
        return WB_ENOENT;
    wb_event_t *ev = wb_event_new_copy(WB__EV_PEER_START, routes, n * sizeof(*routes));
    if (ev == NULL)
        return WB_ENOMEM;
    return post_to(rt, owner, pc, ev);
}

int wb_peerconn_close(wb_rt_t *rt, wb_actor_t *self, uint64_t pc, int status, const char *reason)
{
    if (lookup(rt, pc) == NULL)
        return WB_ENOENT;
    if (reason == NULL)
        reason = "closed by owner";
    size_t rl = strlen(reason);
    wb_event_t *ev = wb_event_new(WB__EV_PEER_CLOSE, rl + 1);
    if (ev == NULL)
        return WB_ENOMEM;
    memcpy(ev->data, reason, rl + 1);
    ev->len = (uint32_t)rl;
    ev->status = status;
    return post_to(rt, self, pc, ev);
}

static int send_common(wb_rt_t *rt, wb_actor_t *self, uint64_t pc, uint8_t ch, wb_event_t *msg,
                       int notify)
{
    pc_t *p = lookup(rt, pc);
    if (p == NULL)
        return WB_ENOENT;
    if (p->phase == PC_DONE)
        return WB_ECLOSED;
    if (p->phase != PC_RUN)
        return WB_ESTATE;
    if (p->idx[ch] == 0xff)
        return WB_ENOENT;
    int rc = wb_mconn_send(p->m, ch, msg);
    if (rc == 0) {
        p->st.msgs_out++;
        post_flush(p);
        return 0;
    }
    if (rc == WB_EAGAIN && notify && self != NULL) {
        size_t i = p->idx[ch];
        uint64_t who = wb_actor_id(self);
        for (size_t k = 0; k < p->nwait[i]; k++)
            if (p->waiters[i][k] == who)
                return rc;
        if (p->nwait[i] == p->capwait[i]) {
            size_t cap = p->capwait[i] ? p->capwait[i] * 2 : 4;
            uint64_t *w = realloc(p->waiters[i], cap * sizeof(*w));
            if (w == NULL)
                return WB_ENOMEM;
            p->waiters[i] = w;
            p->capwait[i] = cap;
        }
        p->waiters[i][p->nwait[i]++] = who;
    }
    return rc;
}

int wb_peer_send(wb_rt_t *rt, wb_actor_t *self, uint64_t pc, uint8_t ch, wb_event_t *msg)
{
    return send_common(rt, self, pc, ch, msg, 1);
}

int wb_peer_try_send(wb_rt_t *rt, uint64_t pc, uint8_t ch, wb_event_t *msg)
{
    return send_common(rt, NULL, pc, ch, msg, 0);
}

int wb_peerconn_stats(wb_rt_t *rt, uint64_t pc, wb_peerconn_stats_t *out)
{
    pc_t *p = lookup(rt, pc);
    if (p == NULL)
        return WB_ENOENT;
    *out = p->st;
    wb_mconn_ping_stats(p->m, &out->pings, &out->pongs, &out->rtt_ms);
    uint32_t held = 0;
    for (size_t i = 0; i < p->nchans; i++)
        held += (uint32_t)p->pend[i].n;
    out->held = held;
    return 0;
}

int wb_peerconn_chan_stats(wb_rt_t *rt, uint64_t pc, size_t index, wb_mconn_chan_stats_t *out)
{
    pc_t *p = lookup(rt, pc);
    if (p == NULL)
        return WB_ENOENT;
    return wb_mconn_chan_stats(p->m, index, out);
}
