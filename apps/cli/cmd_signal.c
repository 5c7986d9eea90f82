/*
 * cmd_signal.c - `waybill signal listen` and `waybill signal send`: the
 * signaling client (apps/signal/client.h) from a shell.
 *
 * send confirms what it sent: after the message it sends a random nonce to
 * its own id on ECHO_TOPIC, with drop notices turned on. The server handles
 * a connection's frames in order and writes to it in order, so the echo
 * coming back means the message was relayed, and a notice about it before
 * the echo means it was dropped (unknown id, recipient's queue full). Never
 * resent: a drop before the echo is a failure.
 */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/cli/cli.h"
#include "apps/signal/client.h"
#include "apps/signal/proto.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"

#define ECHO_TOPIC      0xFFFDu
#define CONFIRM_TIMEOUT 10000 /* ms: connect, send, and hear the echo */

enum { EV_GO = WB_EV_USER };

typedef struct {
    int send; /* 0: listen */
    const char *server, *cert, *text;
    char host[WB_TCP_HOST_MAX + 1];
    uint16_t port;
    int topic; /* listen: -1 for all */
    int json;
    uint64_t count; /* listen: stop after this many messages (0: never) */
    uint8_t to[WB_SIG_ID_LEN];
    long wait_s; /* send: -1 no reply wanted */

    wb_rt_t *rt;
    wb_actor_t *self;
    uint64_t client, timer;
    uint8_t id[WB_SIG_ID_LEN], nonce[WB_SIG_ID_LEN];
    int sent, confirmed, replied, done, status;
    uint64_t got;
} cli_t;

static void finish(cli_t *c, int status)
{
    if (c->done)
        return;
    c->done = 1;
    c->status = status;
    fflush(stdout);
    wb_rt_request_stop(c->rt);
}

static void fail(cli_t *c, int status, const char *fmt, const char *arg)
{
    fprintf(stderr, "waybill signal: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    finish(c, status);
}

/* ---- output -------------------------------------------------------------- */

static void put_text(const uint8_t *p, size_t n, int json)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (json && (ch == '"' || ch == '\\'))
            printf("\\%c", ch);
        else if (!json && ch == '\\')
            fputs("\\\\", stdout);
        else if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch == '\t')
            fputs("\\t", stdout);
        else if (ch == '\r')
            fputs("\\r", stdout);
        else if (ch < 0x20 || ch == 0x7f)
            printf(json ? "\\u%04x" : "\\x%02x", ch);
        else
            putchar(ch);
    }
}

static void print_id(const cli_t *c, uint64_t conn_no)
{
    char hex[33];
    wb_sig_id_hex(c->id, hex);
    if (c->json)
        printf("{\"id\":\"%s\",\"connection\":%llu}\n", hex, (unsigned long long)conn_no);
    else
        printf("id %s\n", hex);
    fflush(stdout);
}

static void print_msg(const cli_t *c, const wb_sig_msg_t *m)
{
    char hex[33];
    wb_sig_id_hex(m->from, hex);
    if (c->json) {
        printf("{\"from\":\"%s\",\"topic\":%u,\"text\":\"", hex, m->topic);
        put_text(m->body, m->body_len, 1);
        fputs("\"}\n", stdout);
    } else {
        printf("%s %u ", hex, m->topic);
        put_text(m->body, m->body_len, 0);
        putchar('\n');
    }
    fflush(stdout);
}

/* ---- the actor ------------------------------------------------------------ */

static void on_id(cli_t *c, wb_event_t *ev)
{
    memcpy(c->id, ev->data, WB_SIG_ID_LEN);
    if (!c->send) {
        print_id(c, ev->cookie);
        return;
    }
    if (c->sent)
        return; /* a reconnect before the echo: failed in on_down already */
    int rc =
        wb_sig_client_send(c->rt, c->client, c->to, (uint16_t)c->topic, c->text, strlen(c->text));
    if (rc == 0)
        rc = wb_sig_client_send(c->rt, c->client, c->id, ECHO_TOPIC, c->nonce, sizeof(c->nonce));
    if (rc != 0) {
        fail(c, 1, "not sent: %s", wb_strerror(rc));
        return;
    }
    c->sent = 1;
}

static void on_down(cli_t *c, wb_event_t *ev)
{
    const char *why = ev->len > 0 ? (const char *)ev->data : wb_strerror(ev->status);
    if (c->send && c->sent && !c->confirmed)
        fail(c, 1, "connection lost before the server confirmed the message (not resent): %s", why);
    else if (c->send && c->sent)
        fail(c, 3, "sent; connection lost while waiting for a reply: %s", why);
    else
        fprintf(stderr, "waybill signal: %s: %s\n", c->server, why);
}

static void on_notice(cli_t *c, wb_event_t *ev)
{
    wb_sig_notice_t n;
    if (!c->send || c->confirmed || wb_sig_notice_get(ev, &n) != 0 ||
        memcmp(n.to, c->to, WB_SIG_ID_LEN) != 0)
        return;
    fail(c, 1, "not delivered: %s",
         n.code == WB_SIG_NOTICE_UNKNOWN ? "no peer has that id now"
                                         : "the recipient's queue is full");
}

static void on_message(cli_t *c, wb_event_t *ev)
{
    wb_sig_msg_t m;
    if (wb_sig_msg_get(ev, &m) != 0)
        return;
    if (!c->send) {
        print_msg(c, &m);
        if (c->count != 0 && ++c->got >= c->count)
            finish(c, 0);
        return;
    }
    if (m.topic == ECHO_TOPIC && memcmp(m.from, c->id, WB_SIG_ID_LEN) == 0) {
        if (m.body_len != sizeof(c->nonce) || memcmp(m.body, c->nonce, sizeof(c->nonce)) != 0)
            return;
        c->confirmed = 1;
        wb_timer_cancel(c->self, c->timer);
        c->timer = 0;
        if (c->wait_s < 0 || c->replied) {
            finish(c, 0);
        } else if (wb_timer_start(c->self, (uint64_t)c->wait_s * 1000, &c->timer) != 0) {
            fail(c, 3, "sent; cannot wait for a reply: %s", wb_strerror(WB_ENOMEM));
        }
        return;
    }
    /* A reply: the first message from anyone (our id is new, so only the
     * recipient knows it, or whoever it told; a reply often comes from a
     * `signal send` of its own, with an id of its own). */
    if (c->wait_s >= 0 && !c->replied) {
        c->replied = 1;
        print_msg(c, &m);
        if (c->confirmed)
            finish(c, 0);
    }
}

static void handle(wb_actor_t *self, wb_event_t *ev)
{
    cli_t *c = wb_actor_state(self);
    c->self = self;
    if (c->done) {
        wb_event_free(ev);
        return;
    }
    switch (ev->type) {
    case EV_GO:
        if (c->send && wb_timer_start(self, CONFIRM_TIMEOUT, &c->timer) != 0)
            fail(c, 1, "%s", wb_strerror(WB_ENOMEM));
        break;
    case WB_EV_SIG_ID:
        on_id(c, ev);
        break;
    case WB_EV_SIG_DOWN:
        on_down(c, ev);
        break;
    case WB_EV_SIG_NOTICE:
        on_notice(c, ev);
        break;
    case WB_EV_SIG_MESSAGE:
        on_message(c, ev);
        break;
    case WB_EV_TIMER:
        if (ev->cookie != c->timer || c->timer == 0)
            break;
        if (!c->sent)
            fail(c, 1, "not sent: no connection to %s in time", c->server);
        else if (!c->confirmed)
            fail(c, 1, "%s", "sent, but the server did not confirm it in time");
        else
            fail(c, 3, "%s", "sent; no reply in time");
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t cli_def = {"signal-cli", handle, NULL};

/* ---- the commands --------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: waybill signal listen --server HOST:PORT [--server-cert PEM] [--topic N]\n"
               "                             [--json] [--count N]\n"
               "       waybill signal send --server HOST:PORT [--server-cert PEM] --to ID\n"
               "                           --topic N [--wait-reply SECONDS] [--json] TEXT\n\n"
               "A client of `waybill signal-server` (waddell's protocol): the server gives each\n"
               "connection a random id; peers send small messages to each other's ids.\n\n"
               "listen prints its id, then every message: the sender's id, the topic and the\n"
               "text (one line each; --json: one object per line). It reconnects when the\n"
               "connection drops and prints its new id. Runs until SIGINT or SIGTERM, or\n"
               "--count messages.\n\n"
               "send sends TEXT to the peer ID on topic N and waits until the server has\n"
               "relayed it; --wait-reply then prints the first message sent back to it (from\n"
               "ID, or from any peer ID told its id, e.g. a `signal send` of ID's owner). Exit\n"
               "status: 0 sent (and, with --wait-reply, answered), 1 not sent (no connection,\n"
               "no such peer, its queue full, or the connection dropped first: never resent),\n"
               "3 sent but no reply in time, 2 bad usage.\n\n"
               "  --server HOST:PORT   the signal-server (\"[::1]:62443\" for IPv6)\n"
               "  --server-cert PEM    TLS, trusting only this certificate (the server's)\n"
               "  --topic N            listen: only this topic (default: all); send: the topic\n"
               "                       (0 to 65533)\n"
               "  --to ID              the recipient's id (32 hex characters)\n"
               "  --wait-reply SECONDS print the first reply, waiting at most this long\n"
               "  --json               JSON output, one object per line\n"
               "  --count N            listen: stop after N messages\n");
}

int wb_cmd_signal(int argc, char **argv)
{
    enum { O_SERVER = 256, O_CERT, O_TOPIC, O_TO, O_WAIT, O_JSON, O_COUNT };
    static const struct option opts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"server-cert", required_argument, NULL, O_CERT},
        {"topic", required_argument, NULL, O_TOPIC},
        {"to", required_argument, NULL, O_TO},
        {"wait-reply", required_argument, NULL, O_WAIT},
        {"json", no_argument, NULL, O_JSON},
        {"count", required_argument, NULL, O_COUNT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cli_t c = {.topic = -1, .wait_s = -1};
    if (strcmp(argv[1], "send") == 0)
        c.send = 1;
    else if (strcmp(argv[1], "listen") != 0)
        goto bad;
    int have_to = 0;
    long long v;
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case O_SERVER:
            c.server = optarg;
            break;
        case O_CERT:
            c.cert = optarg;
            break;
        case O_TOPIC:
            if ((v = wb_cli_parse_num(optarg, 0, WB_SIG_TOPIC_OPTIONS - 1)) < 0)
                goto bad;
            c.topic = (int)v;
            break;
        case O_TO:
            if (wb_sig_id_parse(optarg, c.to) != 0)
                goto bad;
            have_to = 1;
            break;
        case O_WAIT:
            if ((v = wb_cli_parse_num(optarg, 0, 86400)) < 0)
                goto bad;
            c.wait_s = (long)v;
            break;
        case O_JSON:
            c.json = 1;
            break;
        case O_COUNT:
            if ((v = wb_cli_parse_num(optarg, 1, 1LL << 40)) < 0)
                goto bad;
            c.count = (uint64_t)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (c.server == NULL || wb_sig_parse_addr(c.server, c.host, sizeof(c.host), &c.port) != 0)
        goto bad;
    if (c.send) {
        if (!have_to || c.topic < 0 || optind != argc - 1)
            goto bad;
        c.text = argv[optind];
        if (strlen(c.text) > WB_SIG_MAX_BODY) {
            fprintf(stderr, "waybill signal: TEXT is over %u bytes\n", WB_SIG_MAX_BODY);
            return 2;
        }
    } else if (optind != argc || have_to || c.wait_s >= 0) {
        goto bad;
    }
    if (sodium_init() < 0)
        return 1;
    randombytes_buf(c.nonce, sizeof(c.nonce));

    /* A client's own news is on stdout and its failures are printed; the
     * runtime's info lines would be noise (WAYBILL_LOG brings them back). */
    if (getenv("WAYBILL_LOG") == NULL)
        wb_log_set_level(WB_LOG_WARN);
    wb_cli_block_signals();
    uint64_t self = 0;
    int rc = wb_rt_new(&c.rt, NULL);
    if (rc == 0)
        rc = wb_sockets_attach(c.rt, NULL);
    if (rc == 0)
        rc = wb_actor_spawn(c.rt, NULL, &cli_def, &c, &self);
    wb_sig_client_config_t cfg;
    wb_sig_client_config_init(&cfg);
    cfg.host = c.host;
    cfg.port = c.port;
    cfg.server_cert = c.cert;
    cfg.owner = self;
    cfg.notices = c.send;
    if (c.send || c.topic < 0)
        cfg.default_sub = self;
    if (rc == 0)
        rc = wb_sig_client_start(c.rt, NULL, &cfg, &c.client);
    if (rc == 0 && !c.send && c.topic >= 0)
        rc = wb_sig_client_subscribe(c.rt, c.client, (uint16_t)c.topic, self);
    wb_event_t *go = rc == 0 ? wb_event_new(EV_GO, 0) : NULL;
    if (rc == 0 && go == NULL)
        rc = WB_ENOMEM;
    if (rc != 0) {
        fprintf(stderr, "waybill signal: cannot start: %s\n", wb_strerror(rc));
        if (c.rt != NULL)
            wb_rt_free(c.rt);
        return 1;
    }
    go->flags |= WB_EVF_CONTROL;
    wb_event_route(go, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, self);
    if (wb_rt_send(c.rt, go) != 0) /* queued for the lane to take once started */
        wb_event_free(go);
    if (wb_cli_serve(c.rt, "signal") != 0)
        return 1;
    return c.done ? c.status : 0;
bad:
    fprintf(stderr, "waybill signal: bad or missing arguments\n\n");
    usage(stderr);
    return 2;
}
