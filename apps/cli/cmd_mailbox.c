/*
 * cmd_mailbox.c - `waybill mailbox-server`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/cli/cli.h"
#include "apps/mailbox/server.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rt.h"

static void usage(FILE *f)
{
    fprintf(
        f, "usage: waybill mailbox-server [--listen ADDR] [--port N] [--channel-db PATH]\n"
           "                              [--usage-db PATH] [--blur-usage SECONDS] [OPTIONS]\n\n"
           "The Magic Wormhole mailbox (rendezvous) server: clients reach it at\n"
           "ws://HOST:PORT/v1 (wormhole --relay-url, wormhole-william --relay-url). State is\n"
           "kept in SQLite and survives a restart. Runs until SIGINT or SIGTERM; logs one\n"
           "line per connection and per finished mailbox to stderr (WAYBILL_LOG=debug|info|\n"
           "warn|error sets the level).\n\n"
           "  --listen ADDR            listen address (default ::, every address)\n"
           "  --port N                 TCP port (default 4000; 0 picks one). The Python\n"
           "                           server's form tcp:N[:interface=ADDR] is accepted too\n"
           "  --channel-db PATH        live state (default relay.sqlite)\n"
           "  --usage-db PATH          usage history (nameplates, mailboxes, client versions)\n"
           "  --blur-usage SECONDS     round usage times down to this many seconds\n"
           "  --motd TEXT              message of the day sent in the welcome\n"
           "  --advertise-version V    tell clients the current CLI version is V\n"
           "  --signal-error TEXT      tell every client to stop with this error\n"
           "  --disallow-list          answer 'list' with no nameplates\n"
           "  --max-connections N      WebSocket connections at once (default 20000)\n"
           "  --max-per-ip N           connections at once from one address (default 0: no limit)\n"
           "  --max-message BYTES      largest message a client may send (default 1048576)\n"
           "  --max-mailboxes N        mailboxes alive at once (default 100000)\n"
           "  --max-messages N         messages kept per mailbox (default 1000)\n"
           "  --expiry SECONDS         prune mailboxes idle this long (default 660)\n"
           "  --prune-interval SECONDS how often to look (default 300)\n"
           "  --handshake-timeout SECONDS  close connections that have not finished the\n"
           "                           WebSocket upgrade by then (default 10)\n");
}

int wb_cmd_mailbox_server(int argc, char **argv)
{
    enum {
        O_LISTEN = 256,
        O_PORT,
        O_CHANNEL,
        O_USAGE,
        O_BLUR,
        O_MOTD,
        O_ADVERTISE,
        O_SIGNAL,
        O_DISALLOW,
        O_MAXCONN,
        O_PERIP,
        O_MAXMSG,
        O_MAXMB,
        O_MAXMSGS,
        O_EXPIRY,
        O_PRUNE,
        O_HS,
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"port", required_argument, NULL, O_PORT},
        {"channel-db", required_argument, NULL, O_CHANNEL},
        {"usage-db", required_argument, NULL, O_USAGE},
        {"blur-usage", required_argument, NULL, O_BLUR},
        {"motd", required_argument, NULL, O_MOTD},
        {"advertise-version", required_argument, NULL, O_ADVERTISE},
        {"signal-error", required_argument, NULL, O_SIGNAL},
        {"disallow-list", no_argument, NULL, O_DISALLOW},
        {"max-connections", required_argument, NULL, O_MAXCONN},
        {"max-per-ip", required_argument, NULL, O_PERIP},
        {"max-message", required_argument, NULL, O_MAXMSG},
        {"max-mailboxes", required_argument, NULL, O_MAXMB},
        {"max-messages", required_argument, NULL, O_MAXMSGS},
        {"expiry", required_argument, NULL, O_EXPIRY},
        {"prune-interval", required_argument, NULL, O_PRUNE},
        {"handshake-timeout", required_argument, NULL, O_HS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static mb_server_config_t cfg;
    mb_server_config_init(&cfg);
    long long v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case O_LISTEN:
            cfg.host = optarg;
            break;
        case O_PORT:
            if (wb_cli_parse_port(optarg, &cfg.port, &cfg.host) != 0)
                goto bad;
            break;
        case O_CHANNEL:
            cfg.channel_db = optarg;
            break;
        case O_USAGE:
            cfg.usage_db = optarg;
            break;
        case O_BLUR:
            if ((v = wb_cli_parse_num(optarg, 0, 365LL * 86400)) < 0)
                goto bad;
            cfg.core.blur_usage = (uint32_t)v;
            break;
        case O_MOTD:
            cfg.core.motd = optarg;
            break;
        case O_ADVERTISE:
            cfg.core.advertise_version = optarg;
            break;
        case O_SIGNAL:
            cfg.core.signal_error = optarg;
            break;
        case O_DISALLOW:
            cfg.core.disallow_list = 1;
            break;
        case O_MAXCONN:
            if ((v = wb_cli_parse_num(optarg, 1, 1000000)) < 0)
                goto bad;
            cfg.max_connections = (uint32_t)v;
            break;
        case O_PERIP:
            if ((v = wb_cli_parse_num(optarg, 0, 1000000)) < 0)
                goto bad;
            cfg.max_per_ip = (uint32_t)v;
            break;
        case O_MAXMSG:
            if ((v = wb_cli_parse_num(optarg, 1024, 64 << 20)) < 0)
                goto bad;
            cfg.max_message = (uint32_t)v;
            break;
        case O_MAXMB:
            if ((v = wb_cli_parse_num(optarg, 1, 100000000)) < 0)
                goto bad;
            cfg.core.max_mailboxes = (uint32_t)v;
            break;
        case O_MAXMSGS:
            if ((v = wb_cli_parse_num(optarg, 1, 1000000)) < 0)
                goto bad;
            cfg.core.max_messages = (uint32_t)v;
            break;
        case O_EXPIRY:
            if ((v = wb_cli_parse_num(optarg, 1, 365LL * 86400)) < 0)
                goto bad;
            cfg.core.expiry_s = (double)v;
            break;
        case O_PRUNE:
            if ((v = wb_cli_parse_num(optarg, 1, 86400)) < 0)
                goto bad;
            cfg.prune_interval_ms = (uint32_t)v * 1000u;
            break;
        case O_HS:
            if ((v = wb_cli_parse_num(optarg, 1, 3600)) < 0)
                goto bad;
            cfg.handshake_timeout_ms = (uint32_t)v * 1000u;
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

    wb_cli_block_signals();
    wb_cli_raise_nofile();
    wb_rt_t *rt = NULL;
    wb_rt_config_t rtc;
    wb_rt_config_init(&rtc);
    int rc = wb_rt_new(&rt, &rtc);
    if (rc == 0)
        rc = mb_server_setup(rt, &cfg);
    if (rc != 0) {
        fprintf(stderr, "waybill mailbox-server: cannot start: %s\n", wb_strerror(rc));
        if (rt != NULL)
            wb_rt_free(rt);
        return 1;
    }
    return wb_cli_serve(rt, "mailbox");
bad:
    fprintf(stderr, "waybill mailbox-server: bad value for an option\n\n");
    usage(stderr);
    return 2;
}
