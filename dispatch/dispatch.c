/*
 * dispatch.c - routing by header: type handlers, one-shot reply handlers,
 * conversations with credit flow control.
 *
 * Pending requests live in slabs the dispatcher owns (a free list, so a
 * request costs no malloc once the slabs cover the most ever outstanding;
 * they go back to the system in wb_dispatch_free). Their deadlines sit in a
 * few FIFO queues, one per timeout value: requests with the same timeout are
 * made in time order, so each queue is sorted by deadline already, and a
 * reply unlinks its request in O(1) instead of sifting a heap. A deadline
 * that does not fit a queue (a clock that went back, or more distinct
 * timeouts than queues) goes into a timer heap; tick takes the earliest of
 * the queue heads and the heap top, so timeouts still fire in deadline order
 * (ties in request order).
 */
#include "dispatch/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/idmap.h"
#include "runtime/log.h"
#include "runtime/timerheap.h"

typedef struct pending_s pending_t;
typedef struct tqueue_s tqueue_t;

struct pending_s {
    wb_theap_entry_t entry; /* first: heap entries are cast back; deadline is
                               the request's in a queue too */
    pending_t *next, *prev; /* in q; next also links the free list */
    tqueue_t *q;            /* the timeout queue it is in, or NULL */
    uint64_t order;         /* request order: breaks ties between deadlines */
    uint64_t peer, id;
    wb_reply_cb cb;
    void *arg;
};

/* Requests with one timeout value, earliest deadline first. */
struct tqueue_s {
    uint64_t timeout_ms;
    pending_t *head, *tail;
};

/* Timeout values with a queue of their own; any others use the heap. */
#define TQUEUES 4

/* Pending requests are carved from slabs of growing size. */
typedef struct slab_s {
    struct slab_s *next;
    pending_t slots[];
} slab_t;
#define SLAB_FIRST 32
#define SLAB_MAX   1024

typedef struct {
    uint64_t id;
    const wb_codec_t *codec;
    uint64_t next_id; /* odd for the dialer, even for the acceptor; steps by 2 */
    wb_idmap_t pending;
    wb_idmap_t convs;
} peer_t;

/* A registered handler: a wb_type_cb (types) or wb_row_cb (rows). */
typedef struct {
    void (*fn)(void);
    void *arg;
} handler_t;

struct wb_conv_s {
    wb_dispatch_t *d;
    uint64_t peer, id;
    const wb_conv_def_t *def;
    void *state;
    int64_t credit;      /* bytes we may still send */
    int blocked;         /* a send was refused for want of credit */
    uint64_t unconsumed; /* bytes received and not yet consumed */
    uint64_t to_grant;   /* consumed since the last grant */
};

struct wb_dispatch_s {
    wb_dispatch_config_t cfg;
    wb_idmap_t peers;
    wb_idmap_t types; /* key type + 1 */
    wb_idmap_t rows;  /* key type + 1 */
    tqueue_t tq[TQUEUES];
    int ntq;         /* queues that have been given a timeout value */
    wb_theap_t late; /* deadlines no queue could take in order */
    uint64_t order;  /* next pending_t.order */
    pending_t *free; /* free pending slots */
    slab_t *slabs;
    size_t slab_next; /* slots in the next slab */
    wb_dispatch_stats_t st;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int wb_dispatch_new(wb_dispatch_t **out, const wb_dispatch_config_t *cfg)
{
    if (out == NULL || cfg == NULL || cfg->send == NULL)
        return WB_EINVAL;
    wb_dispatch_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return WB_ENOMEM;
    d->cfg = *cfg;
    if (d->cfg.credit_window == 0)
        d->cfg.credit_window = 256u * 1024u;
    if (d->cfg.credit_window < WB_CONV_INITIAL_CREDIT)
        d->cfg.credit_window = WB_CONV_INITIAL_CREDIT;
    if (d->cfg.max_message == 0)
        d->cfg.max_message = 1u << 20;
    wb_idmap_init(&d->peers);
    wb_idmap_init(&d->types);
    wb_idmap_init(&d->rows);
    wb_theap_init(&d->late);
    d->slab_next = SLAB_FIRST;
    *out = d;
    return 0;
}

static peer_t *peer_get(wb_dispatch_t *d, uint64_t peer)
{
    return wb_idmap_get(&d->peers, peer);
}

int wb_dispatch_peer_add(wb_dispatch_t *d, uint64_t peer, const wb_codec_t *codec, int dialer)
{
    if (peer == 0 || codec == NULL)
        return WB_EINVAL;
    if (peer_get(d, peer) != NULL)
        return WB_EEXIST;
    peer_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WB_ENOMEM;
    p->id = peer;
    p->codec = codec;
    p->next_id = dialer ? 1 : 2;
    wb_idmap_init(&p->pending);
    wb_idmap_init(&p->convs);
    int rc = wb_idmap_put(&d->peers, peer, p);
    if (rc != 0) {
        free(p);
        return rc;
    }
    return 0;
}

/* ---- sending --------------------------------------------------------------- */

static int send_env(wb_dispatch_t *d, peer_t *p, wb_envelope_t *env)
{
    if (env->body_len > d->cfg.max_message)
        return WB_ETOOBIG;
    size_t max = p->codec->encoded_max(env);
    if (max > d->cfg.max_message + 64)
        max = d->cfg.max_message + 64;
    wb_event_t *blob = wb_event_new(WB_EV_DISPATCH_BLOB, max);
    if (blob == NULL)
        return WB_ENOMEM;
    size_t len;
    int rc = p->codec->encode(env, blob->data, max, &len);
    if (rc != 0) {
        wb_event_free(blob);
        return rc;
    }
    blob->len = (uint32_t)len;
    rc = d->cfg.send(d->cfg.ctx, p->id, blob);
    if (rc != 0) {
        wb_event_free(blob);
        return rc;
    }
    d->st.sent++;
    return 0;
}

static int send_msg(wb_dispatch_t *d, peer_t *p, uint32_t type, uint64_t reply_to, uint64_t regards,
                    const void *body, size_t len, uint64_t *id)
{
    wb_envelope_t env = {type, p->next_id, reply_to, regards, body, len};
    int rc = send_env(d, p, &env);
    if (rc != 0)
        return rc;
    p->next_id += 2;
    if (id != NULL)
        *id = env.id;
    return 0;
}

int wb_dispatch_send(wb_dispatch_t *d, uint64_t peer, uint32_t type, uint64_t reply_to,
                     uint64_t regards, const void *body, size_t len, uint64_t *id)
{
    peer_t *p = peer_get(d, peer);
    if (p == NULL)
        return WB_ENOENT;
    return send_msg(d, p, type, reply_to, regards, body, len, id);
}

/* ---- pending requests and their deadlines --------------------------------- */

static pending_t *pending_get(wb_dispatch_t *d)
{
    if (d->free == NULL) {
        size_t n = d->slab_next;
        slab_t *s = malloc(sizeof(*s) + n * sizeof(pending_t));
        if (s == NULL)
            return NULL;
        s->next = d->slabs;
        d->slabs = s;
        for (size_t i = n; i-- > 0;) {
            s->slots[i].next = d->free;
            d->free = &s->slots[i];
        }
        if (d->slab_next < SLAB_MAX)
            d->slab_next *= 2;
    }
    pending_t *r = d->free;
    d->free = r->next;
    return r;
}

static void pending_put(wb_dispatch_t *d, pending_t *r)
{
    r->next = d->free;
    d->free = r;
}

/* The queue for timeout_ms that can take deadline at its tail, or NULL. */
static tqueue_t *tqueue_for(wb_dispatch_t *d, uint64_t timeout_ms, uint64_t deadline)
{
    tqueue_t *spare = NULL;
    for (int i = 0; i < d->ntq; i++) {
        tqueue_t *q = &d->tq[i];
        if (q->timeout_ms == timeout_ms)
            return q->tail == NULL || q->tail->entry.deadline <= deadline ? q : NULL;
        if (q->head == NULL && spare == NULL)
            spare = q;
    }
    if (spare == NULL && d->ntq < TQUEUES)
        spare = &d->tq[d->ntq++];
    if (spare != NULL)
        spare->timeout_ms = timeout_ms;
    return spare;
}

static int deadline_add(wb_dispatch_t *d, pending_t *r, uint64_t now_ms, uint64_t timeout_ms)
{
    /* A deadline past the clock's end waits for ever, rather than wrap. */
    r->entry.deadline = timeout_ms < UINT64_MAX - now_ms ? now_ms + timeout_ms : UINT64_MAX - 1;
    r->order = d->order++;
    tqueue_t *q = tqueue_for(d, timeout_ms, r->entry.deadline);
    if (q == NULL)
        return wb_theap_push(&d->late, &r->entry);
    r->q = q;
    r->next = NULL;
    r->prev = q->tail;
    if (q->tail != NULL)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    return 0;
}

static void deadline_del(wb_dispatch_t *d, pending_t *r)
{
    tqueue_t *q = r->q;
    if (q != NULL) {
        if (r->prev != NULL)
            r->prev->next = r->next;
        else
            q->head = r->next;
        if (r->next != NULL)
            r->next->prev = r->prev;
        else
            q->tail = r->prev;
        r->q = NULL;
    } else if (r->entry.index != SIZE_MAX) {
        wb_theap_remove(&d->late, &r->entry);
    }
}

static int earlier(const pending_t *a, const pending_t *b)
{
    return a->entry.deadline < b->entry.deadline ||
           (a->entry.deadline == b->entry.deadline && a->order < b->order);
}

/* The pending request with the earliest deadline, or NULL. */
static pending_t *deadline_first(const wb_dispatch_t *d)
{
    pending_t *best = (pending_t *)wb_theap_peek(&d->late);
    for (int i = 0; i < d->ntq; i++) {
        pending_t *h = d->tq[i].head;
        if (h != NULL && (best == NULL || earlier(h, best)))
            best = h;
    }
    return best;
}

static int add_pending(wb_dispatch_t *d, peer_t *p, uint64_t id, uint64_t now_ms,
                       uint64_t timeout_ms, wb_reply_cb cb, void *arg)
{
    pending_t *r = pending_get(d);
    if (r == NULL)
        return WB_ENOMEM;
    r->peer = p->id;
    r->id = id;
    r->cb = cb;
    r->arg = arg;
    r->q = NULL;
    r->entry.index = SIZE_MAX;
    if (wb_idmap_put(&p->pending, id, r) != 0) {
        pending_put(d, r);
        return WB_ENOMEM;
    }
    if (timeout_ms > 0 && deadline_add(d, r, now_ms, timeout_ms) != 0) {
        wb_idmap_del(&p->pending, id);
        pending_put(d, r);
        return WB_ENOMEM;
    }
    return 0;
}

/* r, already out of its peer's map: its deadline goes and its slot is free. */
static void release_pending(wb_dispatch_t *d, pending_t *r)
{
    deadline_del(d, r);
    pending_put(d, r);
}

static void drop_pending(wb_dispatch_t *d, peer_t *p, pending_t *r)
{
    wb_idmap_del(&p->pending, r->id);
    release_pending(d, r);
}

/* Send a request whose id is the next one, registering its handler first so
 * a reply can never find it missing; undone if the send fails. */
static int request(wb_dispatch_t *d, peer_t *p, uint32_t type, uint64_t regards, const void *body,
                   size_t len, uint64_t now_ms, uint64_t timeout_ms, wb_reply_cb cb, void *arg,
                   uint64_t *id)
{
    if (cb == NULL)
        return WB_EINVAL;
    uint64_t rid = p->next_id;
    int rc = add_pending(d, p, rid, now_ms, timeout_ms, cb, arg);
    if (rc != 0)
        return rc;
    rc = send_msg(d, p, type, 0, regards, body, len, id);
    if (rc != 0)
        drop_pending(d, p, wb_idmap_get(&p->pending, rid));
    return rc;
}

int wb_dispatch_request(wb_dispatch_t *d, uint64_t peer, uint32_t type, uint64_t regards,
                        const void *body, size_t len, uint64_t now_ms, uint64_t timeout_ms,
                        wb_reply_cb cb, void *arg, uint64_t *id)
{
    peer_t *p = peer_get(d, peer);
    if (p == NULL)
        return WB_ENOENT;
    return request(d, p, type, regards, body, len, now_ms, timeout_ms, cb, arg, id);
}

int wb_dispatch_reply(wb_dispatch_t *d, const wb_msg_t *m, uint32_t type, const void *body,
                      size_t len)
{
    return wb_dispatch_send(d, m->peer, type, m->env.id, m->env.regards, body, len, NULL);
}

int wb_dispatch_cancel(wb_dispatch_t *d, uint64_t peer, uint64_t id)
{
    peer_t *p = peer_get(d, peer);
    pending_t *r = p != NULL ? wb_idmap_get(&p->pending, id) : NULL;
    if (r == NULL)
        return WB_ENOENT;
    drop_pending(d, p, r);
    return 0;
}

/* ---- conversations ------------------------------------------------------- */

static void put_be64(uint8_t *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static void grant(wb_conv_t *c, uint64_t n)
{
    uint8_t b[8];
    put_be64(b, n);
    peer_t *p = peer_get(c->d, c->peer);
    if (p != NULL && send_msg(c->d, p, WB_MSG_CREDIT, 0, c->id, b, 8, NULL) != 0)
        wb_warn("dispatch", "peer %llu: could not grant credit in conversation %llu",
                (unsigned long long)c->peer, (unsigned long long)c->id);
}

static int conv_new(wb_dispatch_t *d, peer_t *p, uint64_t id, const wb_conv_def_t *def, void *state,
                    wb_conv_t **out)
{
    if (def == NULL || def->on_msg == NULL || def->on_end == NULL)
        return WB_EINVAL;
    if (wb_idmap_get(&p->convs, id) != NULL)
        return WB_EEXIST;
    wb_conv_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WB_ENOMEM;
    c->d = d;
    c->peer = p->id;
    c->id = id;
    c->def = def;
    c->state = state;
    c->credit = WB_CONV_INITIAL_CREDIT;
    if (wb_idmap_put(&p->convs, id, c) != 0) {
        free(c);
        return WB_ENOMEM;
    }
    if (d->cfg.credit_window > WB_CONV_INITIAL_CREDIT)
        grant(c, d->cfg.credit_window - WB_CONV_INITIAL_CREDIT);
    if (out != NULL)
        *out = c;
    return 0;
}

int wb_conv_open(wb_dispatch_t *d, uint64_t peer, uint32_t type, const void *body, size_t len,
                 const wb_conv_def_t *def, void *state, wb_conv_t **out)
{
    peer_t *p = peer_get(d, peer);
    uint64_t id;
    if (p == NULL)
        return WB_ENOENT;
    if (def == NULL || def->on_msg == NULL || def->on_end == NULL)
        return WB_EINVAL;
    int rc = send_msg(d, p, type, 0, 0, body, len, &id);
    if (rc != 0)
        return rc;
    return conv_new(d, p, id, def, state, out);
}

int wb_conv_accept(wb_dispatch_t *d, const wb_msg_t *m, const wb_conv_def_t *def, void *state,
                   wb_conv_t **out)
{
    peer_t *p = peer_get(d, m->peer);
    if (p == NULL)
        return WB_ENOENT;
    return conv_new(d, p, m->env.id, def, state, out);
}

int wb_conv_send(wb_conv_t *c, uint32_t type, const void *body, size_t len, uint64_t *id)
{
    peer_t *p = peer_get(c->d, c->peer);
    if (p == NULL)
        return WB_ECLOSED;
    if (c->credit <= 0) {
        c->blocked = 1;
        return WB_EAGAIN;
    }
    int rc = send_msg(c->d, p, type, 0, c->id, body, len, id);
    if (rc == 0)
        c->credit -= (int64_t)len;
    return rc;
}

int wb_conv_request(wb_conv_t *c, uint32_t type, const void *body, size_t len, uint64_t now_ms,
                    uint64_t timeout_ms, wb_reply_cb cb, void *arg, uint64_t *id)
{
    peer_t *p = peer_get(c->d, c->peer);
    if (p == NULL)
        return WB_ECLOSED;
    if (c->credit <= 0) {
        c->blocked = 1;
        return WB_EAGAIN;
    }
    int rc = request(c->d, p, type, c->id, body, len, now_ms, timeout_ms, cb, arg, id);
    if (rc == 0)
        c->credit -= (int64_t)len;
    return rc;
}

void wb_conv_consumed(wb_conv_t *c, size_t n)
{
    if (n > c->unconsumed)
        n = (size_t)c->unconsumed;
    c->unconsumed -= n;
    c->to_grant += n;
    if (c->to_grant >= c->d->cfg.credit_window / 2) {
        grant(c, c->to_grant);
        c->to_grant = 0;
    }
}

/* Remove c from its peer and let its owner release it. */
static void conv_end(wb_conv_t *c, peer_t *p, int status)
{
    wb_idmap_del(&p->convs, c->id);
    c->def->on_end(c, status);
    free(c);
}

void wb_conv_close(wb_conv_t *c, int status)
{
    peer_t *p = peer_get(c->d, c->peer);
    WB_ASSERT(p != NULL && wb_idmap_get(&p->convs, c->id) == c);
    uint8_t b[4] = {(uint8_t)((uint32_t)status >> 24), (uint8_t)((uint32_t)status >> 16),
                    (uint8_t)((uint32_t)status >> 8), (uint8_t)status};
    send_msg(c->d, p, WB_MSG_CONV_END, 0, c->id, b, 4, NULL);
    conv_end(c, p, status);
}

uint64_t wb_conv_id(const wb_conv_t *c)
{
    return c->id;
}
uint64_t wb_conv_peer(const wb_conv_t *c)
{
    return c->peer;
}
void *wb_conv_state(const wb_conv_t *c)
{
    return c->state;
}
wb_dispatch_t *wb_conv_dispatch(const wb_conv_t *c)
{
    return c->d;
}
int64_t wb_conv_credit(const wb_conv_t *c)
{
    return c->credit;
}

/* ---- input ------------------------------------------------------------------ */

/* Set (or with fn NULL remove) the handler for type in map m. Both tables
 * hold a {callback, arg} pair; the callback's type is the caller's. */
static int set_handler(wb_idmap_t *m, uint32_t type, void (*fn)(void), void *arg)
{
    uint64_t key = (uint64_t)type + 1;
    handler_t *h = wb_idmap_get(m, key);
    if (fn == NULL) {
        free(wb_idmap_del(m, key));
        return 0;
    }
    if (h == NULL) {
        h = malloc(sizeof(*h));
        if (h == NULL)
            return WB_ENOMEM;
        if (wb_idmap_put(m, key, h) != 0) {
            free(h);
            return WB_ENOMEM;
        }
    }
    h->fn = fn;
    h->arg = arg;
    return 0;
}

int wb_dispatch_on_type(wb_dispatch_t *d, uint32_t type, wb_type_cb cb, void *arg)
{
    return set_handler(&d->types, type, (void (*)(void))cb, arg);
}

int wb_dispatch_on_row(wb_dispatch_t *d, uint32_t type, wb_row_cb cb, void *arg)
{
    return set_handler(&d->rows, type, (void (*)(void))cb, arg);
}

/* A message inside a conversation that is for the dispatcher itself. */
static int conv_control(wb_dispatch_t *d, peer_t *p, wb_conv_t *c, const wb_envelope_t *env)
{
    if (env->type == WB_MSG_CREDIT) {
        if (env->body_len != 8)
            return WB_EPROTO;
        c->credit += (int64_t)get_be64(env->body);
        if (c->blocked && c->credit > 0) {
            c->blocked = 0;
            if (c->def->on_credit != NULL)
                c->def->on_credit(c);
        }
        return 0;
    }
    /* WB_MSG_CONV_END */
    int32_t status = 0;
    if (env->body_len == 4)
        status = (int32_t)((uint32_t)env->body[0] << 24 | (uint32_t)env->body[1] << 16 |
                           (uint32_t)env->body[2] << 8 | env->body[3]);
    (void)d;
    conv_end(c, p, status != 0 ? status : WB_ECLOSED);
    return 0;
}

static void trace(wb_dispatch_t *d, const wb_msg_t *m, const char *handler, uint64_t queued_ns,
                  uint64_t t0)
{
    char q[32] = "";
    if (queued_ns)
        snprintf(q, sizeof(q), " queued_us=%.1f", (double)queued_ns / 1e3);
    wb_info("trace",
            "peer=%llu type=%u id=%llu reply_to=%llu regards=%llu handler=%s%s run_us=%.1f",
            (unsigned long long)m->peer, m->env.type, (unsigned long long)m->env.id,
            (unsigned long long)m->env.reply_to, (unsigned long long)m->env.regards, handler, q,
            (double)(mono_ns() - t0) / 1e3);
    (void)d;
}

int wb_dispatch_input(wb_dispatch_t *d, uint64_t peer, wb_event_t *blob, uint64_t queued_ns)
{
    wb_msg_t m = {.peer = peer};
    const char *handler = "dropped";
    uint64_t t0 = d->cfg.trace ? mono_ns() : 0;
    int rc;

    d->st.received++;
    peer_t *p = peer_get(d, peer);
    if (p == NULL) {
        d->st.dropped_unknown++;
        wb_event_free(blob);
        return WB_ENOENT;
    }
    if (blob->len > d->cfg.max_message + 64 ||
        p->codec->decode(blob->data, blob->len, &m.env) != 0) {
        d->st.dropped_malformed++;
        if (d->cfg.trace)
            wb_info("trace", "peer=%llu malformed header (%u bytes) dropped",
                    (unsigned long long)peer, blob->len);
        wb_event_free(blob);
        return WB_EPROTO;
    }
    /* Ids the peer allocates have the other parity; anything else is a lie. */
    if ((m.env.id & 1) == (p->next_id & 1)) {
        d->st.dropped_malformed++;
        wb_event_free(blob);
        return WB_EPROTO;
    }
    if (m.env.regards != 0)
        m.conv = wb_idmap_get(&p->convs, m.env.regards);

    if (m.env.reply_to != 0) {
        /* Rule 2 (and rule 3 with both set: the reply handler decides). */
        pending_t *r = wb_idmap_del(&p->pending, m.env.reply_to);
        if (r == NULL) {
            rc = WB_ENOENT;
        } else {
            wb_reply_cb cb = r->cb;
            void *arg = r->arg;
            release_pending(d, r);
            d->st.by_reply++;
            handler = "reply";
            cb(d, &m, 0, arg);
            rc = 0;
        }
    } else if (m.env.regards != 0) {
        /* Rule 5 for the types declared row-keyed, rule 3 for the rest. */
        handler_t *rh =
            m.env.regards <= INT64_MAX ? wb_idmap_get(&d->rows, (uint64_t)m.env.type + 1) : NULL;
        if (rh != NULL) {
            m.conv = NULL; /* a rowid, not a conversation id */
            d->st.by_row++;
            handler = "row";
            ((wb_row_cb)rh->fn)(d, &m, (int64_t)m.env.regards, rh->arg);
            rc = 0;
        } else if (m.conv == NULL) {
            rc = WB_ENOENT;
        } else if (m.env.type == WB_MSG_CREDIT || m.env.type == WB_MSG_CONV_END) {
            handler = "conversation-control";
            rc = conv_control(d, p, m.conv, &m.env);
        } else {
            d->st.by_conv++;
            handler = m.conv->def->name != NULL ? m.conv->def->name : "conversation";
            m.conv->unconsumed += m.env.body_len;
            m.conv->def->on_msg(m.conv, &m);
            rc = 0;
        }
    } else {
        /* Rule 1. */
        handler_t *h = wb_idmap_get(&d->types, (uint64_t)m.env.type + 1);
        if (h == NULL) {
            rc = WB_ENOENT;
        } else {
            d->st.by_type++;
            handler = "type";
            ((wb_type_cb)h->fn)(d, &m, h->arg);
            rc = 0;
        }
    }
    if (rc == WB_ENOENT)
        d->st.dropped_unknown++; /* rule 4 */
    if (d->cfg.trace)
        trace(d, &m, handler, queued_ns, t0);
    wb_event_free(blob);
    return rc;
}

uint64_t wb_dispatch_tick(wb_dispatch_t *d, uint64_t now_ms)
{
    pending_t *r;
    /* One at a time: a handler may make or cancel requests. */
    while ((r = deadline_first(d)) != NULL && r->entry.deadline <= now_ms) {
        peer_t *p = peer_get(d, r->peer);
        wb_reply_cb cb = r->cb;
        void *arg = r->arg;
        WB_ASSERT(p != NULL);
        drop_pending(d, p, r);
        d->st.timeouts++;
        cb(d, NULL, WB_ETIMEDOUT, arg);
    }
    return r != NULL ? r->entry.deadline : UINT64_MAX;
}

void wb_dispatch_stats(const wb_dispatch_t *d, wb_dispatch_stats_t *out)
{
    *out = d->st;
}

/* ---- teardown ----------------------------------------------------------------- */

typedef struct {
    uint64_t *ids;
    size_t n;
} idlist_t;

static void collect(uint64_t key, void *val, void *arg)
{
    idlist_t *l = arg;
    (void)val;
    l->ids[l->n++] = key;
}

/* Keys of a map, so callbacks may change the map while we walk them. */
static uint64_t *keys_of(const wb_idmap_t *m, size_t *n)
{
    idlist_t l = {calloc(wb_idmap_count(m) + 1, sizeof(uint64_t)), 0};
    if (l.ids != NULL)
        wb_idmap_each(m, collect, &l);
    *n = l.n;
    return l.ids;
}

void wb_dispatch_peer_remove(wb_dispatch_t *d, uint64_t peer, int status)
{
    peer_t *p = peer_get(d, peer);
    size_t n;
    if (p == NULL)
        return;
    /* Out of the map first: handlers that try to send to it get WB_ENOENT. */
    wb_idmap_del(&d->peers, peer);
    uint64_t *ids = keys_of(&p->pending, &n);
    for (size_t i = 0; ids != NULL && i < n; i++) {
        pending_t *r = wb_idmap_get(&p->pending, ids[i]);
        if (r == NULL)
            continue;
        wb_reply_cb cb = r->cb;
        void *arg = r->arg;
        drop_pending(d, p, r);
        cb(d, NULL, status, arg);
    }
    free(ids);
    ids = keys_of(&p->convs, &n);
    for (size_t i = 0; ids != NULL && i < n; i++) {
        wb_conv_t *c = wb_idmap_get(&p->convs, ids[i]);
        if (c != NULL)
            conv_end(c, p, status);
    }
    free(ids);
    wb_idmap_fini(&p->pending);
    wb_idmap_fini(&p->convs);
    free(p);
}

static void free_handler(uint64_t key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    free(val);
}

void wb_dispatch_free(wb_dispatch_t *d)
{
    size_t n;
    if (d == NULL)
        return;
    uint64_t *ids = keys_of(&d->peers, &n);
    for (size_t i = 0; ids != NULL && i < n; i++)
        wb_dispatch_peer_remove(d, ids[i], WB_ECLOSED);
    free(ids);
    wb_idmap_each(&d->types, free_handler, NULL);
    wb_idmap_fini(&d->types);
    wb_idmap_each(&d->rows, free_handler, NULL);
    wb_idmap_fini(&d->rows);
    wb_idmap_fini(&d->peers);
    WB_ASSERT(deadline_first(d) == NULL);
    wb_theap_fini(&d->late);
    while (d->slabs != NULL) {
        slab_t *s = d->slabs;
        d->slabs = s->next;
        free(s);
    }
    free(d);
}
