/*
 * switch.c - one node's peers: listen, dial, NodeInfo, refusals, routes,
 * redials. See switch.h.
 */
#include "apps/peer/switch.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/log.h"
#include "sockets/tcp.h"

#define MOD       "switch"
#define STABLE_MS 10000 /* a connection this old resets a persistent peer's backoff */

typedef enum { E_CONNECTING, E_ACTIVE } estate_t;

typedef struct {
    estate_t state;
    uint64_t since_ms;
    int persist_idx; /* index into persist[], or -1 */
    wb_switch_peer_t p;
} entry_t;

typedef struct {
    uint8_t id[32];
    char host[WB_TCP_HOST_MAX + 1];
    uint16_t port;
    uint32_t failures;
    uint64_t timer;
    int timer_live;
    uint64_t pc; /* the connection that serves it (connecting or active), 0: none */
} persist_t;

typedef struct {
    char name[32];
    uint64_t actor;
} reactor_t;

struct wb_switch_s {
    wb_rt_t *rt;
    wb_actor_t *self;
    uint64_t id, parent;
    wb_switch_config_t cfg;
    uint8_t id_sk[64], id_pk[32];
    char network[WB_NODEINFO_TEXT_MAX + 1], version[WB_NODEINFO_TEXT_MAX + 1];
    char moniker[WB_NODEINFO_TEXT_MAX + 1], advertise[WB_NODEINFO_TEXT_MAX + 1];
    char listen_host[WB_TCP_HOST_MAX + 1];
    wb_nodeinfo_t info;
    char hello[WB_PEERCONN_MAX_HELLO];
    size_t hello_len;
    wb_mconn_chan_t chans[WB_MCONN_MAX_CHANNELS];
    wb_peer_route_t routes[WB_MCONN_MAX_CHANNELS];
    size_t nchans;
    reactor_t *reactors;
    size_t nreactors;
    entry_t *e;
    size_t ne, cape;
    persist_t *persist;
    size_t npersist, cappersist;
    uint64_t listener;
    int started, listening, stopped;
    uint64_t rng;
};

static uint64_t rnd(wb_switch_t *sw)
{
    uint64_t z = (sw->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void id8(const uint8_t *id, char out[17])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[16] = 0;
}

static entry_t *find_pc(wb_switch_t *sw, uint64_t pc)
{
    for (size_t i = 0; i < sw->ne; i++)
        if (sw->e[i].p.pc == pc)
            return &sw->e[i];
    return NULL;
}

static entry_t *find_active(wb_switch_t *sw, const uint8_t id[32])
{
    for (size_t i = 0; i < sw->ne; i++)
        if (sw->e[i].state == E_ACTIVE && memcmp(sw->e[i].p.id, id, 32) == 0)
            return &sw->e[i];
    return NULL;
}

static int find_persist(wb_switch_t *sw, const uint8_t id[32])
{
    for (size_t i = 0; i < sw->npersist; i++)
        if (memcmp(sw->persist[i].id, id, 32) == 0)
            return (int)i;
    return -1;
}

static entry_t *add_entry(wb_switch_t *sw)
{
    if (sw->ne == sw->cape) {
        size_t cap = sw->cape ? sw->cape * 2 : 16;
        entry_t *e = realloc(sw->e, cap * sizeof(*e));
        if (e == NULL)
            return NULL;
        sw->e = e;
        sw->cape = cap;
    }
    entry_t *e = &sw->e[sw->ne++];
    memset(e, 0, sizeof(*e));
    e->persist_idx = -1;
    return e;
}

static void del_entry(wb_switch_t *sw, entry_t *e)
{
    size_t i = (size_t)(e - sw->e);
    sw->e[i] = sw->e[--sw->ne];
}

static void tell_one(wb_switch_t *sw, uint64_t to, uint16_t type, const wb_switch_peer_t *p)
{
    wb_event_t *ev = wb_event_new_copy(type, p, sizeof(*p));
    if (ev == NULL)
        return;
    ev->flags |= WB_EVF_CONTROL;
    if (wb_actor_send(sw->rt, sw->self, to, ev) != 0)
        wb_event_free(ev);
}

/* Tell every reactor, and the parent. */
static void tell(wb_switch_t *sw, uint16_t type, const wb_switch_peer_t *p)
{
    for (size_t i = 0; i < sw->nreactors; i++)
        tell_one(sw, sw->reactors[i].actor, type, p);
    if (sw->parent != 0)
        tell_one(sw, sw->parent, type, p);
}

static void tell_parent(wb_switch_t *sw, int status, uint64_t port)
{
    if (sw->parent == 0)
        return;
    wb_event_t *ev = wb_event_new(WB_EV_SWITCH_LISTENING, 0);
    if (ev == NULL)
        return;
    ev->flags |= WB_EVF_CONTROL;
    ev->status = status;
    ev->cookie = port;
    if (wb_actor_send(sw->rt, sw->self, sw->parent, ev) != 0)
        wb_event_free(ev);
}

static void make_hello(wb_switch_t *sw)
{
    long n = wb_nodeinfo_encode(&sw->info, sw->hello, sizeof(sw->hello));
    sw->hello_len = n > 0 ? (size_t)n : 0;
}

static void conn_opts(wb_switch_t *sw, wb_peerconn_opts_t *o, const uint8_t *expect)
{
    *o = sw->cfg.conn;
    o->id_sk = sw->id_sk;
    o->expect_pk = expect;
    o->hello = sw->hello;
    o->hello_len = sw->hello_len;
    o->chans = sw->chans;
    o->nchans = sw->nchans;
}

static void counts(wb_switch_t *sw, uint32_t *out, uint32_t *in, uint32_t *dialing,
                   uint32_t *accepting)
{
    *out = *in = *dialing = *accepting = 0;
    for (size_t i = 0; i < sw->ne; i++) {
        entry_t *e = &sw->e[i];
        if (e->state == E_ACTIVE)
            (*(e->p.outbound ? out : in))++;
        else
            (*(e->p.outbound ? dialing : accepting))++;
    }
}

/* ---- dialing ---- */

static int dial(wb_switch_t *sw, const uint8_t id[32], const char *host, uint16_t port, int pidx)
{
    wb_peerconn_opts_t o;
    conn_opts(sw, &o, id);
    uint64_t pc;
    int rc = wb_peerconn_dial(sw->rt, sw->self, host, port, &o, &pc);
    if (rc != 0)
        return rc;
    entry_t *e = add_entry(sw);
    if (e == NULL) {
        wb_peerconn_close(sw->rt, sw->self, pc, WB_ENOMEM, "out of memory");
        return WB_ENOMEM;
    }
    e->state = E_CONNECTING;
    e->since_ms = wb_rt_now_ms(sw->rt);
    e->persist_idx = pidx;
    e->p.pc = pc;
    memcpy(e->p.id, id, 32);
    e->p.outbound = 1;
    e->p.persistent = pidx >= 0;
    snprintf(e->p.addr, sizeof(e->p.addr), "%s:%u", host, port);
    if (pidx >= 0)
        sw->persist[pidx].pc = pc;
    char who[17];
    id8(id, who);
    wb_debug(MOD, "dialing %s at %s:%u", who, host, port);
    return 0;
}

static void schedule_redial(wb_switch_t *sw, int pidx, const char *why)
{
    persist_t *p = &sw->persist[pidx];
    p->pc = 0;
    if (sw->stopped || p->timer_live)
        return;
    uint64_t c = sw->cfg.redial_min_ms;
    for (uint32_t i = 0; i < p->failures && c < sw->cfg.redial_max_ms; i++)
        c *= 2;
    if (c > sw->cfg.redial_max_ms)
        c = sw->cfg.redial_max_ms;
    uint64_t delay = c / 2 + rnd(sw) % (c / 2 + 1);
    p->failures++;
    char who[17];
    id8(p->id, who);
    wb_info(MOD, "persistent peer %s at %s:%u: %s; dialing again in %" PRIu64 " ms", who, p->host,
            p->port, why, delay);
    p->timer_live = wb_timer_start(sw->self, delay, &p->timer) == 0;
}

/* ---- a connection is ready: NodeInfo and the refusals ---- */

static void refuse(wb_switch_t *sw, entry_t *e, const char *reason, int self, int auth)
{
    char who[17];
    id8(e->p.id, who);
    wb_info(MOD, "refused %s %s (%s): %s", e->p.outbound ? "outbound" : "inbound", who, e->p.addr,
            reason);
    snprintf(e->p.reason, sizeof(e->p.reason), "%s", reason);
    e->p.self = (uint8_t)self;
    e->p.auth = (uint8_t)auth;
    wb_peerconn_close(sw->rt, sw->self, e->p.pc, WB_EPROTO, reason);
    /* Its CLOSED comes back and ends the entry (dial failed, redial). */
}

static void on_ready(wb_switch_t *sw, wb_event_t *ev)
{
    entry_t *e = find_pc(sw, ev->src);
    if (e == NULL || ev->len < sizeof(wb_peer_ready_t))
        return;
    const wb_peer_ready_t *r = ev->data;
    if (ev->len < sizeof(*r) + r->hello_len)
        return;
    memcpy(e->p.id, r->remote_id, 32);
    snprintf(e->p.addr, sizeof(e->p.addr), "%s", r->addr);
    char err[200];
    if (wb_nodeinfo_decode(r->hello, r->hello_len, &e->p.info, err, sizeof(err)) != 0) {
        refuse(sw, e, err, 0, 0);
        return;
    }
    if (memcmp(e->p.info.id, r->remote_id, 32) != 0) {
        refuse(sw, e, "nodeinfo id is not the key the peer proved", 0, 1);
        return;
    }
    if (memcmp(r->remote_id, sw->id_pk, 32) == 0) {
        refuse(sw, e, "connected to ourselves", 1, 0);
        return;
    }
    if (wb_nodeinfo_compatible(&sw->info, &e->p.info, err, sizeof(err)) != 0) {
        refuse(sw, e, err, 0, 0);
        return;
    }
    entry_t *old = find_active(sw, r->remote_id);
    if (old != NULL) {
        int keep_new = 0;
        if (old->p.outbound != e->p.outbound) {
            const uint8_t *dn = e->p.outbound ? sw->id_pk : r->remote_id;
            const uint8_t *dold = old->p.outbound ? sw->id_pk : r->remote_id;
            keep_new = memcmp(dn, dold, 32) < 0;
        }
        if (!keep_new) {
            refuse(sw, e, "duplicate peer", 0, 0);
            return;
        }
        wb_switch_stop_peer(sw, old->p.pc, "replaced by the connection dialed from the other end");
        e = find_pc(sw, ev->src); /* the table moved */
    }
    uint32_t out, in, dialing, accepting;
    counts(sw, &out, &in, &dialing, &accepting);
    if (e->p.outbound && e->persist_idx < 0 && out >= sw->cfg.max_outbound) {
        refuse(sw, e, "outbound peers full", 0, 0);
        return;
    }
    if (!e->p.outbound && in >= sw->cfg.max_inbound) {
        refuse(sw, e, "inbound peers full", 0, 0);
        return;
    }
    if (!e->p.outbound && e->persist_idx < 0) {
        int pidx = find_persist(sw, r->remote_id);
        if (pidx >= 0 && sw->persist[pidx].pc == 0) {
            e->persist_idx = pidx;
            e->p.persistent = 1;
            sw->persist[pidx].pc = e->p.pc;
        }
    }
    if (wb_peerconn_start(sw->rt, sw->self, e->p.pc, sw->routes, sw->nchans) != 0)
        return;
    e->state = E_ACTIVE;
    e->since_ms = wb_rt_now_ms(sw->rt);
    char who[17];
    id8(e->p.id, who);
    wb_info(MOD, "peer joined: %s %s (%s%s, moniker \"%s\")", who, e->p.addr,
            e->p.outbound ? "outbound" : "inbound", e->p.persistent ? ", persistent" : "",
            e->p.info.moniker);
    tell(sw, WB_EV_SWITCH_PEER_ADDED, &e->p);
}

static void on_closed(wb_switch_t *sw, wb_event_t *ev)
{
    entry_t *e = find_pc(sw, ev->src);
    if (e == NULL)
        return;
    wb_switch_peer_t p = e->p;
    if (p.reason[0] == 0)
        snprintf(p.reason, sizeof(p.reason), "%s", ev->len > 0 ? (const char *)ev->data : "closed");
    int pidx = e->persist_idx;
    int was_active = e->state == E_ACTIVE;
    uint64_t lived = wb_rt_now_ms(sw->rt) - e->since_ms;
    del_entry(sw, e);
    char who[17];
    id8(p.id, who);
    if (was_active) {
        wb_info(MOD, "peer left: %s %s: %s", who, p.addr, p.reason);
        tell(sw, WB_EV_SWITCH_PEER_REMOVED, &p);
    } else if (p.outbound) {
        if (!p.self && !p.auth && ev->status == WB_EPROTO && strstr(p.reason, "expected") != NULL)
            p.auth = 1;
        wb_info(MOD, "dial %s %s failed: %s", who, p.addr, p.reason);
        tell(sw, WB_EV_SWITCH_DIAL_FAILED, &p);
    }
    if (pidx >= 0 && (size_t)pidx < sw->npersist && sw->persist[pidx].pc == p.pc) {
        if (was_active && lived >= STABLE_MS)
            sw->persist[pidx].failures = 0;
        if (find_active(sw, sw->persist[pidx].id) == NULL)
            schedule_redial(sw, pidx, was_active ? "connection lost" : "dial failed");
        else
            sw->persist[pidx].pc = find_active(sw, sw->persist[pidx].id)->p.pc;
    }
}

static void on_timer(wb_switch_t *sw, uint64_t timer)
{
    for (size_t i = 0; i < sw->npersist; i++) {
        persist_t *p = &sw->persist[i];
        if (!p->timer_live || p->timer != timer)
            continue;
        p->timer_live = 0;
        if (find_active(sw, p->id) != NULL || p->pc != 0)
            return;
        int rc = dial(sw, p->id, p->host, p->port, (int)i);
        if (rc != 0)
            schedule_redial(sw, (int)i, wb_strerror(rc));
        return;
    }
}

static void on_inbound(wb_switch_t *sw, wb_event_t *ev)
{
    const char *addr = ev->len > 0 ? (const char *)ev->data : "?";
    uint32_t out, in, dialing, accepting;
    counts(sw, &out, &in, &dialing, &accepting);
    if (sw->stopped || in + accepting >= sw->cfg.max_inbound) {
        wb_info(MOD, "refused inbound %s: %u inbound peers (max %u)", addr, in + accepting,
                sw->cfg.max_inbound);
        wb_tcp_close(sw->rt, ev->src);
        return;
    }
    wb_peerconn_opts_t o;
    conn_opts(sw, &o, NULL);
    uint64_t pc;
    if (wb_peerconn_accept(sw->rt, sw->self, ev->src, addr, &o, &pc) != 0) {
        wb_tcp_close(sw->rt, ev->src);
        return;
    }
    entry_t *e = add_entry(sw);
    if (e == NULL) {
        wb_peerconn_close(sw->rt, sw->self, pc, WB_ENOMEM, "out of memory");
        return;
    }
    e->state = E_CONNECTING;
    e->since_ms = wb_rt_now_ms(sw->rt);
    e->p.pc = pc;
    snprintf(e->p.addr, sizeof(e->p.addr), "%s", addr);
}

static void dial_persistent(wb_switch_t *sw)
{
    for (size_t i = 0; i < sw->npersist; i++) {
        persist_t *p = &sw->persist[i];
        if (p->pc == 0 && !p->timer_live && find_active(sw, p->id) == NULL) {
            int rc = dial(sw, p->id, p->host, p->port, (int)i);
            if (rc != 0)
                schedule_redial(sw, (int)i, wb_strerror(rc));
        }
    }
}

static void sw_handle(wb_actor_t *self, wb_event_t *ev)
{
    wb_switch_t *sw = wb_actor_state(self);
    sw->self = self;
    switch (ev->type) {
    case WB_EV_TCP_LISTENING:
        if (ev->status < 0) {
            wb_error(MOD, "cannot listen: %s", ev->len ? (const char *)ev->data : "?");
            tell_parent(sw, ev->status, 0);
            break;
        }
        sw->listening = 1;
        if (sw->advertise[0] == 0)
            snprintf(sw->info.listen, sizeof(sw->info.listen), "%s",
                     ev->len ? (const char *)ev->data : "");
        make_hello(sw);
        wb_info(MOD, "node %s listening on %s (network %s)", sw->info.moniker,
                ev->len ? (const char *)ev->data : "?", sw->info.network);
        tell_parent(sw, 0, ev->cookie);
        dial_persistent(sw);
        break;
    case WB_EV_TCP_OPENED:
        on_inbound(sw, ev);
        break;
    case WB_EV_TCP_CLOSED:
        if (ev->src == sw->listener)
            sw->listener = 0;
        break;
    case WB_EV_PEER_READY:
        on_ready(sw, ev);
        break;
    case WB_EV_PEER_CLOSED:
        on_closed(sw, ev);
        break;
    case WB_EV_TIMER:
        on_timer(sw, ev->cookie);
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static void sw_fini(wb_actor_t *self)
{
    wb_switch_t *sw = wb_actor_state(self);
    if (sw->listener != 0)
        wb_tcp_close(sw->rt, sw->listener);
    sodium_memzero(sw->id_sk, sizeof(sw->id_sk));
    free(sw->reactors);
    free(sw->e);
    free(sw->persist);
    free(sw);
}

static const wb_actor_def_t switch_def = {.name = "switch", .handle = sw_handle, .fini = sw_fini};

/* ---- the API ---- */

void wb_switch_config_init(wb_switch_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->version = "0.1.0";
    cfg->moniker = "";
    cfg->max_inbound = 40;
    cfg->max_outbound = 10;
    cfg->redial_min_ms = 1000;
    cfg->redial_max_ms = 60000;
    wb_peerconn_opts_init(&cfg->conn);
}

static int copy_text(char *dst, size_t cap, const char *src)
{
    if (src == NULL)
        src = "";
    if (strlen(src) >= cap)
        return WB_EINVAL;
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

int wb_switch_new(wb_rt_t *rt, wb_actor_t *parent, const wb_switch_config_t *cfg, wb_switch_t **out)
{
    if (cfg == NULL || cfg->id_sk == NULL || cfg->network == NULL || cfg->network[0] == 0)
        return WB_EINVAL;
    wb_switch_t *sw = calloc(1, sizeof(*sw));
    if (sw == NULL)
        return WB_ENOMEM;
    sw->rt = rt;
    sw->cfg = *cfg;
    if (copy_text(sw->network, sizeof(sw->network), cfg->network) != 0 ||
        copy_text(sw->version, sizeof(sw->version), cfg->version ? cfg->version : "0.1.0") != 0 ||
        copy_text(sw->moniker, sizeof(sw->moniker), cfg->moniker) != 0 ||
        copy_text(sw->advertise, sizeof(sw->advertise), cfg->advertise) != 0 ||
        copy_text(sw->listen_host, sizeof(sw->listen_host), cfg->listen_host) != 0) {
        free(sw);
        return WB_EINVAL;
    }
    if (sw->cfg.max_inbound == 0 && cfg->listen_host != NULL)
        sw->cfg.max_inbound = 40;
    if (sw->cfg.redial_min_ms == 0)
        sw->cfg.redial_min_ms = 1000;
    if (sw->cfg.redial_max_ms < sw->cfg.redial_min_ms)
        sw->cfg.redial_max_ms = sw->cfg.redial_min_ms;
    memcpy(sw->id_sk, cfg->id_sk, 64);
    crypto_sign_ed25519_sk_to_pk(sw->id_pk, sw->id_sk);
    sw->cfg.id_sk = NULL;
    sw->rng = cfg->seed ? cfg->seed : ((uint64_t)randombytes_random() << 32 | randombytes_random());
    memcpy(sw->info.id, sw->id_pk, 32);
    memcpy(sw->info.network, sw->network, sizeof(sw->network));
    memcpy(sw->info.version, sw->version, sizeof(sw->version));
    memcpy(sw->info.moniker, sw->moniker, sizeof(sw->moniker));
    memcpy(sw->info.listen, sw->advertise, sizeof(sw->advertise));
    sw->parent = parent != NULL ? wb_actor_id(parent) : 0;
    int rc = wb_actor_spawn(rt, parent, &switch_def, sw, &sw->id);
    if (rc != 0) {
        free(sw);
        return rc;
    }
    sw->self = wb_actor_lookup(rt, sw->id);
    *out = sw;
    return 0;
}

int wb_switch_add_reactor(wb_switch_t *sw, const char *name, uint64_t actor,
                          const wb_mconn_chan_t *chans, size_t n)
{
    if (sw->started || n == 0 || sw->nchans + n > WB_MCONN_MAX_CHANNELS)
        return WB_EINVAL;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sw->nchans; k++)
            if (sw->chans[k].id == chans[i].id)
                return WB_EEXIST;
        for (size_t k = 0; k < i; k++)
            if (chans[k].id == chans[i].id)
                return WB_EINVAL;
    }
    reactor_t *r = realloc(sw->reactors, (sw->nreactors + 1) * sizeof(*r));
    if (r == NULL)
        return WB_ENOMEM;
    sw->reactors = r;
    reactor_t *nr = &r[sw->nreactors++];
    snprintf(nr->name, sizeof(nr->name), "%s", name ? name : "?");
    nr->actor = actor;
    for (size_t i = 0; i < n; i++) {
        sw->chans[sw->nchans] = chans[i];
        sw->routes[sw->nchans].ch = chans[i].id;
        sw->routes[sw->nchans].reader = actor;
        sw->info.channels[sw->info.nchannels++] = chans[i].id;
        sw->nchans++;
    }
    return 0;
}

int wb_switch_start(wb_switch_t *sw)
{
    if (sw->started)
        return WB_EINVAL;
    sw->started = 1;
    make_hello(sw);
    if (sw->hello_len == 0)
        return WB_ENOMEM;
    if (sw->listen_host[0] != 0) {
        wb_tcp_opts_t t;
        wb_tcp_opts_init(&t);
        t.raw = 1;
        t.start_paused = 1;
        t.max_connections = sw->cfg.max_inbound + 16;
        return wb_tcp_listen(sw->rt, WB_LANE_ACTOR, sw->id, sw->listen_host, sw->cfg.listen_port,
                             &t, &sw->listener);
    }
    dial_persistent(sw);
    return 0;
}

int wb_switch_dial(wb_switch_t *sw, const uint8_t id[32], const char *host, uint16_t port,
                   int persistent)
{
    if (host == NULL || strlen(host) > WB_TCP_HOST_MAX || port == 0)
        return WB_EINVAL;
    int pidx = -1;
    if (persistent) {
        pidx = find_persist(sw, id);
        if (pidx < 0) {
            if (sw->npersist == sw->cappersist) {
                size_t cap = sw->cappersist ? sw->cappersist * 2 : 8;
                persist_t *p = realloc(sw->persist, cap * sizeof(*p));
                if (p == NULL)
                    return WB_ENOMEM;
                sw->persist = p;
                sw->cappersist = cap;
            }
            persist_t *p = &sw->persist[sw->npersist];
            memset(p, 0, sizeof(*p));
            memcpy(p->id, id, 32);
            snprintf(p->host, sizeof(p->host), "%s", host);
            p->port = port;
            pidx = (int)sw->npersist++;
        }
    }
    if (wb_switch_has(sw, id))
        return WB_EEXIST;
    if (!sw->started || (sw->listen_host[0] != 0 && !sw->listening))
        return persistent ? 0 : WB_ESTATE; /* persistent: dialed when the switch starts */
    uint32_t out, in, dialing, accepting;
    counts(sw, &out, &in, &dialing, &accepting);
    if (!persistent && out + dialing >= sw->cfg.max_outbound)
        return WB_EBUSY;
    if (pidx >= 0 && sw->persist[pidx].timer_live) {
        wb_timer_cancel(sw->self, sw->persist[pidx].timer);
        sw->persist[pidx].timer_live = 0;
    }
    return dial(sw, id, host, port, pidx);
}

int wb_switch_stop_peer(wb_switch_t *sw, uint64_t pc, const char *reason)
{
    entry_t *e = find_pc(sw, pc);
    if (e == NULL)
        return WB_ENOENT;
    snprintf(e->p.reason, sizeof(e->p.reason), "%s", reason ? reason : "stopped");
    return wb_peerconn_close(sw->rt, sw->self, pc, 0, e->p.reason);
}

size_t wb_switch_broadcast(wb_switch_t *sw, uint8_t ch, const void *data, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < sw->ne; i++) {
        entry_t *e = &sw->e[i];
        if (e->state != E_ACTIVE || !wb_nodeinfo_has_channel(&e->p.info, ch))
            continue;
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, data, len);
        if (ev == NULL)
            break;
        if (wb_peer_try_send(sw->rt, e->p.pc, ch, ev) == 0)
            n++;
        else
            wb_event_free(ev);
    }
    return n;
}

size_t wb_switch_peers(wb_switch_t *sw, wb_switch_peer_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < sw->ne; i++) {
        if (sw->e[i].state != E_ACTIVE)
            continue;
        if (n < cap)
            out[n] = sw->e[i].p;
        n++;
    }
    return n;
}

const wb_switch_peer_t *wb_switch_peer(wb_switch_t *sw, uint64_t pc)
{
    entry_t *e = find_pc(sw, pc);
    return e != NULL && e->state == E_ACTIVE ? &e->p : NULL;
}

void wb_switch_counts(wb_switch_t *sw, uint32_t *outbound, uint32_t *inbound, uint32_t *dialing)
{
    uint32_t accepting;
    counts(sw, outbound, inbound, dialing, &accepting);
}

int wb_switch_has(wb_switch_t *sw, const uint8_t id[32])
{
    for (size_t i = 0; i < sw->ne; i++)
        if (memcmp(sw->e[i].p.id, id, 32) == 0)
            return 1;
    return 0;
}

const uint8_t *wb_switch_node_id(wb_switch_t *sw)
{
    return sw->id_pk;
}

const wb_nodeinfo_t *wb_switch_nodeinfo(wb_switch_t *sw)
{
    return &sw->info;
}

uint64_t wb_switch_actor(wb_switch_t *sw)
{
    return sw->id;
}

wb_rt_t *wb_switch_rt(wb_switch_t *sw)
{
    return sw->rt;
}

const wb_switch_config_t *wb_switch_config(wb_switch_t *sw)
{
    return &sw->cfg;
}

void wb_switch_stop(wb_switch_t *sw)
{
    sw->stopped = 1;
    wb_actor_kill(sw->rt, sw->id);
}
