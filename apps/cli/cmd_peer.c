/*
 * cmd_peer.c - `waybill peer`: run a node of the peer layer (switch, peer
 * exchange, optionally the chat reactor) until SIGINT or SIGTERM.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/cli/cli.h"
#include "apps/peer/addrbook_store.h"
#include "apps/peer/chat.h"
#include "apps/peer/identity.h"
#include "apps/peer/pex.h"
#include "apps/peer/switch.h"
#include "db/db.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"

#define MAX_ADDRS 64

static void usage(FILE *f)
{
    fprintf(f, "usage: waybill peer [--listen HOST:PORT] [--seeds ID@HOST:PORT,...]\n"
               "                    [--persistent-peers ID@HOST:PORT,...] [--data-dir DIR]\n"
               "                    [--chat] [OPTIONS]\n\n"
               "Run a node of the waybill peer network: authenticated, encrypted connections to\n"
               "other nodes (identified by their Ed25519 keys), peer exchange to find more, and\n"
               "with --chat a small chat: each line typed on stdin reaches every node. Logs one\n"
               "line per peer joining or leaving (WAYBILL_LOG=debug|info|warn|error).\n\n"
               "  --listen HOST:PORT       where to accept peers (default 0.0.0.0:26656;\n"
               "                           \"none\": do not listen)\n"
               "  --advertise HOST:PORT    the address told to peers (default: the listen one)\n"
               "  --seeds LIST             ID@HOST:PORT,... asked for addresses when the node\n"
               "                           has no one to dial\n"
               "  --persistent-peers LIST  ID@HOST:PORT,... always kept connected (redialed)\n"
               "  --data-dir DIR           node key and address book (default ~/.waybill/peer)\n"
               "  --network NAME           only nodes of the same network talk (default waybill)\n"
               "  --moniker NAME           a name shown to people (default: the host name)\n"
               "  --max-inbound N          peers that dialed us (default 40)\n"
               "  --max-outbound N         peers we dial (default 10)\n"
               "  --seed-mode              crawl the network and hand out addresses; keep no\n"
               "                           peers for long\n"
               "  --no-pex                 no peer exchange (only the given peers)\n"
               "  --pex-interval MS        dial/crawl round period (default 30000)\n"
               "  --chat                   the chat reactor: stdin lines out, messages to stdout\n"
               "  --json                   events as JSON lines on stdout\n"
               "  --status-interval MS     with --json: a status line this often (0: none)\n"
               "  --show-id                print the node id (creating the key) and exit\n");
}

typedef struct {
    uint8_t id[32];
    char host[NI_MAXHOST];
    uint16_t port;
} peer_addr_t;

/* "ID@HOST:PORT": a name is resolved here (blocking, before the runtime). */
static int parse_peer(const char *s, peer_addr_t *out, char *err, size_t errlen)
{
    const char *at = strchr(s, '@');
    if (at == NULL || at - s != 64) {
        wb_errf(err, errlen, "%s: expected ID@HOST:PORT with a 64-hex node id", s);
        return -1;
    }
    char idhex[65];
    memcpy(idhex, s, 64);
    idhex[64] = 0;
    if (wb_identity_parse(idhex, out->id) != 0) {
        wb_errf(err, errlen, "%s: the node id is not 64 hex characters", s);
        return -1;
    }
    const char *hp = at + 1, *colon = strrchr(hp, ':');
    if (colon == NULL || colon == hp) {
        wb_errf(err, errlen, "%s: expected HOST:PORT after the @", s);
        return -1;
    }
    char host[NI_MAXHOST];
    size_t hl = (size_t)(colon - hp);
    if (hp[0] == '[' && hl >= 2 && hp[hl - 1] == ']') {
        hp++;
        hl -= 2;
    }
    if (hl >= sizeof(host)) {
        wb_errf(err, errlen, "%s: host too long", s);
        return -1;
    }
    memcpy(host, hp, hl);
    host[hl] = 0;
    long long port = wb_cli_parse_num(colon + 1, 1, 65535);
    if (port < 0) {
        wb_errf(err, errlen, "%s: bad port", s);
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0) {
        wb_errf(err, errlen, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    getnameinfo(ai->ai_addr, ai->ai_addrlen, out->host, sizeof(out->host), NULL, 0, NI_NUMERICHOST);
    freeaddrinfo(ai);
    out->port = (uint16_t)port;
    return 0;
}

static int parse_list(const char *list, peer_addr_t *out, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (list == NULL || *list == 0)
        return 0;
    char *copy = strdup(list), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (*t == 0)
            continue;
        if (*n == MAX_ADDRS) {
            wb_errf(err, errlen, "more than %d addresses", MAX_ADDRS);
            rc = -1;
            break;
        }
        if ((rc = parse_peer(t, &out[*n], err, errlen)) != 0)
            break;
        (*n)++;
    }
    free(copy);
    return rc;
}

/* ---- the node: the switch's parent, printing what happens ---- */

typedef struct {
    wb_rt_t *rt;
    wb_actor_t *self;
    uint64_t actor, chat, pex;
    wb_switch_t *sw;
    int json;
    uint32_t status_ms;
    uint64_t status_timer, reader_timer;
    char idhex[65];
} node_t;

static void start_reader(node_t *n);

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static int listen_failed; /* the exit status says so */

static void emit(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        return;
    pthread_mutex_lock(&out_mu);
    fputs(s, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    free(s);
}

static void peer_event(node_t *n, const char *what, const wb_switch_peer_t *p)
{
    if (!n->json)
        return;
    char id[65];
    wb_identity_hex(p->id, id);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:b, s:s, s:s}", "event", what, "id", id, "addr", p->addr,
                  "outbound", p->outbound, "moniker", p->info.moniker, "reason", p->reason);
    if (o != NULL)
        emit(o);
}

static void status(node_t *n)
{
    uint32_t out, in, dialing;
    wb_switch_counts(n->sw, &out, &in, &dialing);
    wb_pex_stats_t ps = {0};
    if (n->pex)
        wb_pex_stats(n->rt, n->pex, &ps);
    json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i}", "event", "status", "id",
                          n->idhex, "outbound", (json_int_t)out, "inbound", (json_int_t)in,
                          "dialing", (json_int_t)dialing, "book", (json_int_t)ps.book_size,
                          "book_old", (json_int_t)ps.book_old, "dials", (json_int_t)ps.dials);
    if (o != NULL)
        emit(o);
}

static void node_handle(wb_actor_t *self, wb_event_t *ev)
{
    node_t *n = wb_actor_state(self);
    n->self = self;
    switch (ev->type) {
    case WB_EV_SWITCH_LISTENING:
        if (ev->status < 0) {
            fprintf(stderr, "waybill peer: cannot listen\n");
            listen_failed = 1;
            wb_rt_request_stop(n->rt);
        } else if (n->json) {
            json_t *o = json_pack("{s:s, s:s, s:i}", "event", "listening", "id", n->idhex, "port",
                                  (json_int_t)ev->cookie);
            if (o != NULL)
                emit(o);
        }
        break;
    case WB_EV_SWITCH_PEER_ADDED:
        peer_event(n, "peer_added", ev->data);
        break;
    case WB_EV_SWITCH_PEER_REMOVED:
        peer_event(n, "peer_removed", ev->data);
        break;
    case WB_EV_SWITCH_DIAL_FAILED:
        peer_event(n, "dial_failed", ev->data);
        break;
    case WB_EV_TIMER:
        if (n->chat != 0 && ev->cookie == n->reader_timer) {
            start_reader(n); /* the runtime runs: sends from another thread are safe */
        } else if (ev->cookie == n->status_timer) {
            status(n);
            wb_timer_start(self, n->status_ms, &n->status_timer);
        }
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t node_def = {.name = "peer-node", .handle = node_handle};

static void on_chat(void *arg, const uint8_t from[32], unsigned hops, const char *text, size_t len)
{
    node_t *n = arg;
    char id[65];
    wb_identity_hex(from, id);
    if (n->json) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:s%}", "event", "chat", "from", id, "hops",
                              (json_int_t)hops, "text", text, len);
        if (o != NULL)
            emit(o);
        return;
    }
    pthread_mutex_lock(&out_mu);
    printf("[%.16s] ", id);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

/* stdin lines to the chat actor. */
typedef struct {
    wb_rt_t *rt;
    uint64_t chat;
} reader_t;

static void *stdin_main(void *arg)
{
    reader_t *r = arg;
    char line[WB_CHAT_MAX_TEXT + 2];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t len = strcspn(line, "\n");
        if (len == 0)
            continue;
        wb_event_t *ev = wb_event_new_copy(WB_EV_CHAT_SAY, line, len);
        if (ev == NULL)
            continue;
        ev->flags |= WB_EVF_CONTROL;
        wb_event_route(ev, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, r->chat);
        if (wb_rt_send(r->rt, ev) != 0) {
            wb_event_free(ev);
            break;
        }
    }
    return NULL;
}

static void start_reader(node_t *n)
{
    static reader_t r;
    r.rt = n->rt;
    r.chat = n->chat;
    pthread_t t;
    if (pthread_create(&t, NULL, stdin_main, &r) == 0)
        pthread_detach(t);
}

int wb_cmd_peer(int argc, char **argv)
{
    enum {
        O_LISTEN = 256,
        O_ADVERTISE,
        O_SEEDS,
        O_PERSIST,
        O_DATA,
        O_NETWORK,
        O_MONIKER,
        O_MAXIN,
        O_MAXOUT,
        O_SEEDMODE,
        O_NOPEX,
        O_PEXMS,
        O_CHAT,
        O_JSON,
        O_STATUS,
        O_SHOWID,
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"advertise", required_argument, NULL, O_ADVERTISE},
        {"seeds", required_argument, NULL, O_SEEDS},
        {"persistent-peers", required_argument, NULL, O_PERSIST},
        {"data-dir", required_argument, NULL, O_DATA},
        {"network", required_argument, NULL, O_NETWORK},
        {"moniker", required_argument, NULL, O_MONIKER},
        {"max-inbound", required_argument, NULL, O_MAXIN},
        {"max-outbound", required_argument, NULL, O_MAXOUT},
        {"seed-mode", no_argument, NULL, O_SEEDMODE},
        {"no-pex", no_argument, NULL, O_NOPEX},
        {"pex-interval", required_argument, NULL, O_PEXMS},
        {"chat", no_argument, NULL, O_CHAT},
        {"json", no_argument, NULL, O_JSON},
        {"status-interval", required_argument, NULL, O_STATUS},
        {"show-id", no_argument, NULL, O_SHOWID},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = "0.0.0.0:26656", *advertise = NULL, *seeds = NULL, *persist = NULL;
    const char *data_dir = NULL, *network = "waybill", *moniker = NULL;
    long long max_in = 40, max_out = 10, pex_ms = 30000, status_ms = 0;
    int seed_mode = 0, pex = 1, chat = 0, json = 0, show_id = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case O_LISTEN:
            listen = optarg;
            break;
        case O_ADVERTISE:
            advertise = optarg;
            break;
        case O_SEEDS:
            seeds = optarg;
            break;
        case O_PERSIST:
            persist = optarg;
            break;
        case O_DATA:
            data_dir = optarg;
            break;
        case O_NETWORK:
            network = optarg;
            break;
        case O_MONIKER:
            moniker = optarg;
            break;
        case O_MAXIN:
            if ((max_in = wb_cli_parse_num(optarg, 0, 10000)) < 0)
                goto bad;
            break;
        case O_MAXOUT:
            if ((max_out = wb_cli_parse_num(optarg, 0, 1000)) < 0)
                goto bad;
            break;
        case O_SEEDMODE:
            seed_mode = 1;
            break;
        case O_NOPEX:
            pex = 0;
            break;
        case O_PEXMS:
            if ((pex_ms = wb_cli_parse_num(optarg, 10, 3600000)) < 0)
                goto bad;
            break;
        case O_CHAT:
            chat = 1;
            break;
        case O_JSON:
            json = 1;
            break;
        case O_STATUS:
            if ((status_ms = wb_cli_parse_num(optarg, 0, 3600000)) < 0)
                goto bad;
            break;
        case O_SHOWID:
            show_id = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc)
        goto bad;

    char dirbuf[4096], err[300];
    if (data_dir == NULL) {
        const char *home = getenv("HOME");
        snprintf(dirbuf, sizeof(dirbuf), "%s/.waybill/peer", home ? home : ".");
        data_dir = dirbuf;
    }
    uint8_t pk[32], sk[64];
    int created;
    if (wb_identity_load(data_dir, pk, sk, &created, err, sizeof(err)) != 0) {
        fprintf(stderr, "waybill peer: %s\n", err);
        return 1;
    }
    static node_t node;
    wb_identity_hex(pk, node.idhex);
    if (show_id) {
        printf("%s\n", node.idhex);
        return 0;
    }
    static peer_addr_t seed_addrs[MAX_ADDRS], persist_addrs[MAX_ADDRS];
    size_t nseeds, npersist;
    if (parse_list(seeds, seed_addrs, &nseeds, err, sizeof(err)) != 0 ||
        parse_list(persist, persist_addrs, &npersist, err, sizeof(err)) != 0) {
        fprintf(stderr, "waybill peer: %s\n", err);
        return 2;
    }
    static char lhost[NI_MAXHOST];
    uint16_t lport = 0;
    if (strcmp(listen, "none") != 0) {
        const char *colon = strrchr(listen, ':');
        long long p = colon ? wb_cli_parse_num(colon + 1, 0, 65535) : -1;
        size_t hl = colon ? (size_t)(colon - listen) : 0;
        if (p < 0 || hl == 0 || hl >= sizeof(lhost)) {
            fprintf(stderr, "waybill peer: --listen wants HOST:PORT\n");
            return 2;
        }
        memcpy(lhost, listen, hl);
        lhost[hl] = 0;
        lport = (uint16_t)p;
    }
    char hostname[64] = "node";
    if (moniker == NULL) {
        gethostname(hostname, sizeof(hostname) - 1);
        moniker = hostname;
    }

    wb_cli_block_signals();
    wb_cli_raise_nofile();
    wb_rt_t *rt = NULL;
    int rc = wb_rt_new(&rt, NULL);
    if (rc == 0)
        rc = wb_sockets_attach(rt, NULL);
    static char dbpath[4200];
    static wb_db_config_t dbc;
    if (rc == 0 && pex) {
        snprintf(dbpath, sizeof(dbpath), "%s/addrbook.sqlite", data_dir);
        wb_addrbook_store_config(&dbc, dbpath);
        rc = wb_db_attach(rt, &dbc);
    }
    if (rc != 0) {
        fprintf(stderr, "waybill peer: cannot start: %s\n", wb_strerror(rc));
        wb_rt_free(rt);
        return 1;
    }
    node.rt = rt;
    node.json = json;
    node.status_ms = (uint32_t)status_ms;
    rc = wb_actor_spawn(rt, NULL, &node_def, &node, &node.actor);
    wb_actor_t *self = rc == 0 ? wb_actor_lookup(rt, node.actor) : NULL;
    wb_switch_config_t sc;
    wb_switch_config_init(&sc);
    sc.id_sk = sk;
    sc.network = network;
    sc.moniker = moniker;
    sc.listen_host = lport || lhost[0] ? lhost : NULL;
    sc.listen_port = lport;
    sc.advertise = advertise;
    sc.max_inbound = (uint32_t)max_in;
    sc.max_outbound = (uint32_t)max_out;
    if (rc == 0)
        rc = wb_switch_new(rt, self, &sc, &node.sw);
    if (rc == 0 && pex) {
        static char seedtext[MAX_ADDRS][NI_MAXHOST + 80];
        static const char *seedptr[MAX_ADDRS];
        for (size_t i = 0; i < nseeds; i++) {
            char id[65];
            wb_identity_hex(seed_addrs[i].id, id);
            int v6 = strchr(seed_addrs[i].host, ':') != NULL;
            snprintf(seedtext[i], sizeof(seedtext[i]), "%s@%s%s%s:%u", id, v6 ? "[" : "",
                     seed_addrs[i].host, v6 ? "]" : "", seed_addrs[i].port);
            seedptr[i] = seedtext[i];
        }
        wb_pex_config_t pc;
        wb_pex_config_init(&pc);
        pc.seeds = seedptr;
        pc.nseeds = nseeds;
        pc.ensure_ms = (uint32_t)pex_ms;
        pc.seed_mode = seed_mode;
        pc.persist = 1;
        rc = wb_pex_new(rt, self, node.sw, &pc, &node.pex);
    }
    if (rc == 0 && chat) {
        wb_chat_config_t cc = {.on_message = on_chat, .arg = &node};
        rc = wb_chat_new(rt, self, node.sw, &cc, &node.chat);
    }
    for (size_t i = 0; rc == 0 && i < npersist; i++) {
        rc = wb_switch_dial(node.sw, persist_addrs[i].id, persist_addrs[i].host,
                            persist_addrs[i].port, 1);
        if (rc == WB_EEXIST)
            rc = 0;
    }
    if (rc == 0)
        rc = wb_switch_start(node.sw);
    if (rc == 0 && status_ms > 0 && json)
        rc = wb_timer_start(self, (uint64_t)status_ms, &node.status_timer);
    if (rc == 0 && chat)
        rc = wb_timer_start(self, 0, &node.reader_timer);
    sodium_memzero(sk, sizeof(sk));
    if (rc != 0) {
        fprintf(stderr, "waybill peer: cannot start: %s\n", wb_strerror(rc));
        wb_rt_free(rt);
        return 1;
    }
    wb_info("peer", "node %s (%s)%s, data in %s", node.idhex, moniker, created ? ", new key" : "",
            data_dir);
    rc = wb_cli_serve(rt, "peer");
    return rc != 0 ? rc : listen_failed;
bad:
    fprintf(stderr, "waybill peer: bad value for an option\n\n");
    usage(stderr);
    return 2;
}
