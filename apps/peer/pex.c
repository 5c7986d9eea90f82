/*
 * pex.c - the peer exchange reactor. See pex.h.
 */
#include "apps/peer/pex.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apps/peer/addrbook.h"
#include "apps/peer/addrbook_store.h"
#include "apps/peer/netaddr.h"
#include "apps/peer/pex_proto.h"
#include "db/db.h"
#include "runtime/error.h"
#include "runtime/log.h"

#define MOD                  "pex"
#define MAX_SEEDS            64
#define SEED_HANGUP_MS       2000   /* a seed's peer whose answer never comes */
#define SEED_CRAWL_PER_ROUND 8      /* dials per crawl round */
#define SEED_RECRAWL_MS      120000 /* an address crawled this recently is skipped */
#define GOOD_AFTER_MS        10000  /* connected this long: marked good */

typedef struct {
    uint64_t pc;
    uint8_t id[32];
    int outbound, persistent;
    int requested;         /* we asked; addrs are welcome once */
    uint64_t asked_at;     /* when we last asked it (0: never) */
    uint64_t last_request; /* when it last asked us (0: never) */
    uint32_t requests;
    uint64_t since;
    int marked_good;
    int dropped; /* being disconnected: its messages are no longer read */
    wb_netaddr_t listen; /* its self-reported listen address (has_id set), if valid */
    int have_listen;
} ppeer_t;

typedef struct {
    wb_rt_t *rt;
    wb_actor_t *self;
    uint64_t id;
    wb_switch_t *sw;
    wb_pex_config_t cfg;
    wb_netaddr_t seeds[MAX_SEEDS];
    size_t nseeds;
    wb_addrbook_t *book;
    ppeer_t *peers;
    size_t npeers, cappeers;
    uint64_t timer;
    int timer_live, loaded;
    uint64_t rng;
    wb_pex_stats_t st;
    uint8_t buf[WB_PEX_MAX_MSG];
    wb_pex_msg_t msg;
} pex_t;

static uint64_t rnd(pex_t *x)
{
    uint64_t z = (x->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Peer times on the actor clock; book times on the wall clock (they are
 * stored, and read again after a restart). */
static uint64_t now_ms(pex_t *x)
{
    return wb_rt_now_ms(x->rt);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ppeer_t *find(pex_t *x, uint64_t pc)
{
    for (size_t i = 0; i < x->npeers; i++)
        if (x->peers[i].pc == pc)
            return &x->peers[i];
    return NULL;
}

static void id8(const uint8_t *id, char out[17])
{
    sodium_bin2hex(out, 17, id, 8);
}

/* ---- the book's changes to the database lane ---- */

static void persist(void *arg, const wb_addrbook_rec_t *r, int removed)
{
    pex_t *x = arg;
    if (!x->cfg.persist)
        return;
    wb_event_t *ev = wb_addrbook_store_change(r, removed, WB_DB_QUIET);
    if (ev == NULL)
        return;
    wb_event_route(ev, WB_LANE_ACTOR, x->id, WB_LANE_DB, 0);
    if (wb_rt_send(x->rt, ev) != 0)
        wb_event_free(ev); /* the lane is full or gone: the next change writes it again */
}

/* ---- sending ---- */

static int send_msg(pex_t *x, uint64_t pc, const uint8_t *m, size_t len)
{
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, m, len);
    if (ev == NULL)
        return WB_ENOMEM;
    int rc = wb_peer_try_send(x->rt, pc, WB_PEX_CHANNEL, ev);
    if (rc != 0)
        wb_event_free(ev);
    return rc;
}

/* Ask p for addresses: one request outstanding, and never sooner than a
 * PEX period after the last (its side drops a peer that asks too often). */
static void request(pex_t *x, ppeer_t *p)
{
    uint64_t t = now_ms(x);
    if (p->requested || (p->asked_at != 0 && t - p->asked_at < x->cfg.ensure_ms))
        return;
    p->asked_at = t;
    uint8_t m = WB_PEX_REQUEST;
    if (send_msg(x, p->pc, &m, 1) == 0) {
        p->requested = 1;
        x->st.requests_sent++;
    }
}

/* The asker's own address is no news to it. */
static int not_asker(void *arg, const wb_addrbook_rec_t *r)
{
    const ppeer_t *p = arg;
    return memcmp(r->addr.id, p->id, 32) == 0;
}

static void answer(pex_t *x, ppeer_t *p)
{
    wb_netaddr_t *sel = x->msg.addrs;
    size_t n =
        x->cfg.seed_mode
            ? wb_addrbook_selection_with_bias(x->book, 30, not_asker, p, sel, WB_PEX_MAX_ADDRS)
            : wb_addrbook_selection(x->book, not_asker, p, sel, WB_PEX_MAX_ADDRS);
    size_t len;
    if (wb_pex_encode_addrs(sel, n, x->buf, sizeof(x->buf), &len) == 0 &&
        send_msg(x, p->pc, x->buf, len) == 0)
        x->st.requests_answered++;
}

/* Disconnect p, once (it stays in the list until the switch says it
 * left); abuse counts in peers_dropped, a seed's hang-ups do not. */
static void drop(pex_t *x, ppeer_t *p, const char *why, int abuse)
{
    if (p->dropped)
        return;
    p->dropped = 1;
    char who[17];
    id8(p->id, who);
    wb_info(MOD, "disconnecting %s: %s", who, why);
    if (abuse)
        x->st.peers_dropped++;
    wb_switch_stop_peer(x->sw, p->pc, why);
}

/* ---- dialing ---- */

/* Connected, being dialed, or still in its dial backoff. */
static int exclude(void *arg, const wb_addrbook_rec_t *r)
{
    pex_t *x = arg;
    return wb_switch_has(x->sw, r->addr.id) || wb_addrbook_next_dial(x->book, r) > wall_ms();
}

static void dial(pex_t *x, const wb_netaddr_t *a)
{
    char host[64];
    wb_netaddr_ip_str(a, host, sizeof(host));
    int rc = wb_switch_dial(x->sw, a->id, host, a->port, 0);
    if (rc == 0) {
        x->st.dials++;
        wb_addrbook_mark_attempt(x->book, a->id, wall_ms());
    }
}

static void ensure_peers(pex_t *x)
{
    uint32_t out, in, dialing;
    wb_switch_counts(x->sw, &out, &in, &dialing);
    uint32_t target = wb_switch_config(x->sw)->max_outbound;
    int need = (int)target - (int)(out + dialing);
    size_t picked = 0;
    if (need > 0) {
        unsigned bias = (out < 8 ? out : 8) * 10 + 10;
        wb_netaddr_t seen[64];
        size_t nseen = 0;
        for (int tries = 0; tries < need * 3 && (int)picked < need; tries++) {
            wb_addrbook_rec_t r;
            if (wb_addrbook_pick(x->book, (int)bias, exclude, x, &r) != 0)
                break;
            wb_netaddr_t a = r.addr;
            int dup = 0;
            for (size_t i = 0; i < nseen; i++)
                dup |= memcmp(seen[i].id, a.id, 32) == 0;
            if (dup || nseen == 64)
                continue;
            seen[nseen++] = a;
            dial(x, &a);
            picked++;
        }
    }
    if (wb_addrbook_need_more(x->book) && x->npeers > 0) {
        ppeer_t *p = &x->peers[rnd(x) % x->npeers];
        request(x, p);
    }
    if (out + in + dialing == 0 && picked == 0 && x->nseeds > 0) {
        /* Nobody to talk to and nothing to dial: the seeds, in random order. */
        for (size_t i = x->nseeds; i > 1; i--) {
            size_t j = rnd(x) % i;
            wb_netaddr_t t = x->seeds[i - 1];
            x->seeds[i - 1] = x->seeds[j];
            x->seeds[j] = t;
        }
        for (size_t i = 0; i < x->nseeds; i++) {
            char host[64];
            wb_netaddr_ip_str(&x->seeds[i], host, sizeof(host));
            if (wb_switch_dial(x->sw, x->seeds[i].id, host, x->seeds[i].port, 0) == 0)
                x->st.dials++;
        }
    }
}

/* A seed: hang up on peers that had their time, dial a few book addresses
 * not crawled lately. */
static void crawl(pex_t *x)
{
    uint64_t t = now_ms(x);
    for (size_t i = 0; i < x->npeers; i++) {
        ppeer_t *p = &x->peers[i];
        if (!p->persistent && t - p->since > SEED_HANGUP_MS)
            drop(x, p, "seed: crawled", 0);
    }
    wb_netaddr_t *sel = x->msg.addrs;
    size_t n = wb_addrbook_selection(x->book, exclude, x, sel, WB_PEX_MAX_ADDRS), dialed = 0;
    int64_t w = wall_ms();
    for (size_t i = 0; i < n && dialed < SEED_CRAWL_PER_ROUND; i++) {
        wb_addrbook_rec_t r;
        if (wb_addrbook_lookup(x->book, sel[i].id, &r) != 0 ||
            (r.last_attempt != 0 && w - r.last_attempt < SEED_RECRAWL_MS))
            continue;
        dial(x, &sel[i]);
        dialed++;
    }
}

static void arm(pex_t *x, uint64_t ms)
{
    if (x->timer_live)
        wb_timer_cancel(x->self, x->timer);
    x->timer_live = wb_timer_start(x->self, ms, &x->timer) == 0;
}

static void on_timer(pex_t *x)
{
    x->timer_live = 0;
    uint64_t t = now_ms(x);
    for (size_t i = 0; i < x->npeers; i++) {
        ppeer_t *p = &x->peers[i];
        if (!p->marked_good && t - p->since >= GOOD_AFTER_MS && p->outbound) {
            wb_addrbook_mark_good(x->book, p->id, wall_ms());
            p->marked_good = 1;
        }
    }
    if (x->cfg.seed_mode)
        crawl(x);
    else
        ensure_peers(x);
    arm(x, x->cfg.ensure_ms);
}

/* ---- the switch's events ---- */

static void on_added(pex_t *x, const wb_switch_peer_t *sp)
{
    if (x->npeers == x->cappeers) {
        size_t cap = x->cappeers ? x->cappeers * 2 : 16;
        ppeer_t *p = realloc(x->peers, cap * sizeof(*p));
        if (p == NULL)
            return;
        x->peers = p;
        x->cappeers = cap;
    }
    ppeer_t *p = &x->peers[x->npeers++];
    memset(p, 0, sizeof(*p));
    p->pc = sp->pc;
    memcpy(p->id, sp->id, 32);
    p->outbound = sp->outbound;
    p->persistent = sp->persistent;
    p->since = now_ms(x);
    char err[120];
    if (sp->info.listen[0] != 0 &&
        wb_netaddr_parse(sp->info.listen, 0, &p->listen, err, sizeof(err)) == 0) {
        memcpy(p->listen.id, sp->id, 32);
        p->listen.has_id = 1;
        p->have_listen = 1;
    }
    if (p->outbound) {
        if (wb_addrbook_need_more(x->book) || x->cfg.seed_mode)
            request(x, p);
    } else if (p->have_listen) {
        /* Its own word for where it listens, with itself as the source. */
        wb_addrbook_add(x->book, &p->listen, &p->listen, wall_ms());
    }
}

static void on_removed(pex_t *x, uint64_t pc)
{
    ppeer_t *p = find(x, pc);
    if (p != NULL)
        *p = x->peers[--x->npeers];
}

static void on_dial_failed(pex_t *x, const wb_switch_peer_t *sp)
{
    x->st.dial_failures++;
    if (sp->self) {
        wb_addrbook_add_own(x->book, sp->id);
    } else if (sp->auth) {
        wb_addrbook_mark_bad(x->book, sp->id, wall_ms());
    }
    /* else: the attempt was counted when dialed; the book's backoff and
     * give-up rules do the rest. */
}

static void on_msg(pex_t *x, wb_event_t *ev)
{
    ppeer_t *p = find(x, ev->src);
    if (p == NULL || p->dropped)
        return;
    wb_pex_msg_t *m = &x->msg;
    char err[160];
    if (wb_pex_decode(ev->data, ev->len, m, err, sizeof(err)) != 0) {
        drop(x, p, err, 1);
        return;
    }
    uint64_t t = now_ms(x);
    if (m->type == WB_PEX_REQUEST) {
        p->requests++;
        if (p->last_request != 0 && t - p->last_request < x->cfg.ensure_ms / 3) {
            drop(x, p, "pex: requests too often", 1);
            return;
        }
        p->last_request = t;
        answer(x, p);
        if (x->cfg.seed_mode && !p->outbound && !p->persistent)
            drop(x, p, "seed: answered", 0);
        return;
    }
    if (!p->requested) {
        drop(x, p, "pex: unsolicited addresses", 1);
        return;
    }
    p->requested = 0;
    wb_netaddr_t src;
    const wb_netaddr_t *srcp = p->have_listen ? &p->listen : NULL;
    if (srcp == NULL) {
        memset(&src, 0, sizeof(src));
        memcpy(src.id, p->id, 32);
        src.has_id = 1;
        src.family = 4;
        srcp = &src;
    }
    int64_t w = wall_ms();
    for (size_t i = 0; i < m->count; i++)
        if (wb_addrbook_add(x->book, &m->addrs[i], srcp, w) == 1)
            x->st.addrs_received++;
    if (x->cfg.seed_mode && p->outbound && !p->persistent)
        drop(x, p, "seed: crawled", 0);
    else if (!x->cfg.seed_mode)
        arm(x, 10); /* dial the news soon */
}

/* ---- loading the book ---- */

static void start_rounds(pex_t *x)
{
    x->loaded = 1;
    size_t n = wb_addrbook_size(x->book);
    wb_info(MOD, "address book: %zu addresses (%zu vetted)%s", n, wb_addrbook_n_old(x->book),
            x->cfg.seed_mode ? ", seed mode" : "");
    arm(x, n > 0 ? rnd(x) % (x->cfg.ensure_ms / 4 + 1) : 0);
}

static int db_send(pex_t *x, wb_event_t *ev, uint64_t cookie)
{
    if (ev == NULL)
        return WB_ENOMEM;
    ev->cookie = cookie;
    wb_event_route(ev, WB_LANE_ACTOR, x->id, WB_LANE_DB, 0);
    int rc = wb_rt_send(x->rt, ev);
    if (rc != 0)
        wb_event_free(ev);
    return rc;
}

/* Loading: the key (cookie LOAD_KEY), then pages of rows (LOAD_PAGE). */
enum { DB_WRITE = 0, LOAD_KEY, LOAD_PAGE };

static void on_db(pex_t *x, wb_event_t *ev)
{
    if (ev->cookie == DB_WRITE || x->loaded) {
        if (ev->status < 0)
            wb_warn(MOD, "address book write failed: %s", wb_db_result_errmsg(ev));
        return;
    }
    if (ev->cookie == LOAD_KEY) {
        int rc = wb_addrbook_store_take_key(x->book, ev);
        if (rc == WB_ENOENT || rc == WB_ECORRUPT) {
            uint8_t key[32];
            wb_addrbook_key(x->book, key);
            db_send(x, wb_addrbook_store_put_key(key, WB_DB_QUIET), DB_WRITE);
        } else if (rc != 0) {
            wb_warn(MOD, "cannot load the address book key: %s", wb_strerror(rc));
            start_rounds(x);
            return;
        }
        if (db_send(x, wb_addrbook_store_page_request(0), LOAD_PAGE) != 0)
            start_rounds(x);
        return;
    }
    int64_t last = 0;
    size_t nrows = 0, kept = 0;
    int rc = wb_addrbook_store_take_page(x->book, ev, &last, &nrows, &kept);
    if (rc != 0) {
        wb_warn(MOD, "cannot load the address book: %s", wb_strerror(rc));
    } else if (nrows == WB_ADDRBOOK_LOAD_PAGE &&
               db_send(x, wb_addrbook_store_page_request(last), LOAD_PAGE) == 0) {
        return;
    }
    start_rounds(x);
}

static void pex_handle(wb_actor_t *self, wb_event_t *ev)
{
    pex_t *x = wb_actor_state(self);
    x->self = self;
    switch (ev->type) {
    case WB_EV_SWITCH_PEER_ADDED:
        on_added(x, ev->data);
        break;
    case WB_EV_SWITCH_PEER_REMOVED:
        on_removed(x, ((const wb_switch_peer_t *)ev->data)->pc);
        break;
    case WB_EV_SWITCH_DIAL_FAILED:
        on_dial_failed(x, ev->data);
        break;
    case WB_EV_PEER_MSG:
        on_msg(x, ev);
        break;
    case WB_EV_TIMER:
        if (x->timer_live && ev->cookie == x->timer)
            on_timer(x);
        break;
    case WB_EV_DB_RESULT:
        on_db(x, ev);
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static void pex_fini(wb_actor_t *self)
{
    pex_t *x = wb_actor_state(self);
    wb_addrbook_free(x->book);
    free(x->peers);
    free(x);
}

static const wb_actor_def_t pex_def = {.name = "pex", .handle = pex_handle, .fini = pex_fini};

void wb_pex_config_init(wb_pex_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->ensure_ms = 30000;
}

int wb_pex_new(wb_rt_t *rt, wb_actor_t *parent, wb_switch_t *sw, const wb_pex_config_t *cfg,
               uint64_t *actor)
{
    if (cfg == NULL || cfg->nseeds > MAX_SEEDS)
        return WB_EINVAL;
    pex_t *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return WB_ENOMEM;
    x->rt = rt;
    x->sw = sw;
    x->cfg = *cfg;
    if (x->cfg.ensure_ms == 0)
        x->cfg.ensure_ms = 30000;
    x->cfg.seeds = NULL;
    x->rng = cfg->seed ? cfg->seed : ((uint64_t)randombytes_random() << 32 | randombytes_random());
    char err[160];
    for (size_t i = 0; i < cfg->nseeds; i++) {
        if (wb_netaddr_parse(cfg->seeds[i], 1, &x->seeds[x->nseeds], err, sizeof(err)) != 0) {
            wb_error(MOD, "seed %s: %s", cfg->seeds[i], err);
            free(x);
            return WB_EINVAL;
        }
        x->nseeds++;
    }
    wb_addrbook_config_t bc;
    wb_addrbook_config_init(&bc);
    bc.strict = cfg->strict;
    bc.seed = rnd(x);
    bc.changed = persist;
    bc.changed_arg = x;
    int rc = wb_addrbook_new(&bc, &x->book);
    if (rc != 0) {
        free(x);
        return rc;
    }
    wb_addrbook_add_own(x->book, wb_switch_node_id(sw));
    rc = wb_actor_spawn(rt, parent, &pex_def, x, &x->id);
    if (rc != 0) {
        wb_addrbook_free(x->book);
        free(x);
        return rc;
    }
    *actor = x->id;
    x->self = wb_actor_lookup(rt, x->id);
    wb_mconn_chan_t ch = {.id = WB_PEX_CHANNEL,
                          .priority = 1,
                          .send_queue_capacity = 10,
                          .max_message = WB_PEX_MAX_MSG};
    rc = wb_switch_add_reactor(sw, "pex", x->id, &ch, 1);
    if (rc != 0) {
        wb_actor_kill(rt, x->id);
        return rc;
    }
    if (cfg->persist && db_send(x, wb_addrbook_store_key_request(), LOAD_KEY) == 0)
        return 0;
    start_rounds(x);
    return 0;
}

int wb_pex_stats(wb_rt_t *rt, uint64_t actor, wb_pex_stats_t *out)
{
    wb_actor_t *a = wb_actor_lookup(rt, actor);
    if (a == NULL || wb_actor_name(a) != pex_def.name)
        return WB_ENOENT;
    pex_t *x = wb_actor_state(a);
    *out = x->st;
    out->book_size = (uint32_t)wb_addrbook_size(x->book);
    out->book_new = (uint32_t)wb_addrbook_n_new(x->book);
    out->book_old = (uint32_t)wb_addrbook_n_old(x->book);
    return 0;
}
