/*
 * cmd_relay.c - `waybill transit-relay`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/cli/cli.h"
#include "apps/relay/server.h"
#include "runtime/error.h"
#include "runtime/rt.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: waybill transit-relay [--listen ADDR] [--port N] [--usage-db PATH]\n"
               "                             [--blur-usage SECONDS] [OPTIONS]\n\n"
               "The Magic Wormhole transit relay: clients that cannot reach each other\n"
               "directly both connect here (wormhole --transit-helper tcp:HOST:PORT) with the\n"
               "same token, and their bytes are copied between them. Runs until SIGINT or\n"
               "SIGTERM; logs one line per finished pair and per refused or unpaired\n"
               "connection to stderr (WAYBILL_LOG=debug|info|warn|error sets the level).\n\n"
               "  --listen ADDR            listen address (default ::, every address)\n"
               "  --port N                 TCP port (default 4001; 0 picks one). The Python\n"
               "                           relay's form tcp:N[:interface=ADDR] is accepted too\n"
               "  --usage-db PATH          usage rows (the Python relay's schema)\n"
               "  --blur-usage SECONDS     round usage start times down to this many seconds\n"
               "                           and byte counts up (privacy)\n"
               "  --max-connections N      connections at once (default 10000)\n"
               "  --max-per-ip N           connections at once from one address (default 0: no\n"
               "                           limit)\n"
               "  --wait-timeout SECONDS   close a connection not paired by then (default 60)\n"
               "  --idle-timeout SECONDS   close a pair that moved no byte for this long\n"
               "                           (default 600; 0: never)\n"
               "  --read-buffer KIB        bytes per read, in KiB (default 128)\n");
}

int wb_cmd_transit_relay(int argc, char **argv)
{
    enum {
        O_LISTEN = 256,
        O_PORT,
        O_USAGE,
        O_BLUR,
        O_MAXCONN,
        O_PERIP,
        O_WAIT,
        O_IDLE,
        O_RBUF,
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"port", required_argument, NULL, O_PORT},
        {"usage-db", required_argument, NULL, O_USAGE},
        {"blur-usage", required_argument, NULL, O_BLUR},
        {"max-connections", required_argument, NULL, O_MAXCONN},
        {"max-per-ip", required_argument, NULL, O_PERIP},
        {"wait-timeout", required_argument, NULL, O_WAIT},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"read-buffer", required_argument, NULL, O_RBUF},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static tr_server_config_t cfg;
    tr_server_config_init(&cfg);
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
        case O_USAGE:
            cfg.usage_db = optarg;
            break;
        case O_BLUR:
            if ((v = wb_cli_parse_num(optarg, 0, 365LL * 86400)) < 0)
                goto bad;
            cfg.blur_usage = (uint32_t)v;
            break;
        case O_MAXCONN:
            if ((v = wb_cli_parse_num(optarg, 2, 1000000)) < 0)
                goto bad;
            cfg.max_connections = (uint32_t)v;
            break;
        case O_PERIP:
            if ((v = wb_cli_parse_num(optarg, 0, 1000000)) < 0)
                goto bad;
            cfg.max_per_ip = (uint32_t)v;
            break;
        case O_WAIT:
            if ((v = wb_cli_parse_num(optarg, 1, 86400)) < 0)
                goto bad;
            cfg.wait_timeout_ms = (uint32_t)v * 1000u;
            break;
        case O_IDLE:
            if ((v = wb_cli_parse_num(optarg, 0, 7 * 86400)) < 0)
                goto bad;
            cfg.idle_timeout_ms = (uint32_t)v * 1000u;
            break;
        case O_RBUF:
            if ((v = wb_cli_parse_num(optarg, 4, 16384)) < 0)
                goto bad;
            cfg.read_buffer = (uint32_t)v * 1024u;
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
    tr_server_rt_config(&rtc, &cfg);
    int rc = wb_rt_new(&rt, &rtc);
    if (rc == 0)
        rc = tr_server_setup(rt, &cfg);
    if (rc != 0) {
        fprintf(stderr, "waybill transit-relay: cannot start: %s\n", wb_strerror(rc));
        if (rt != NULL)
            wb_rt_free(rt);
        return 1;
    }
    return wb_cli_serve(rt, "relay");
bad:
    fprintf(stderr, "waybill transit-relay: bad value for an option\n\n");
    usage(stderr);
    return 2;
}
