/*
 * cmd_signal_server.c - `waybill signal-server`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/cli/cli.h"
#include "apps/signal/server.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: waybill signal-server [--listen ADDR] [--port N] [--tls-cert PEM --tls-key "
               "PEM]\n"
               "                             [OPTIONS]\n\n"
               "The signaling server (waddell's protocol): each client that connects gets a\n"
               "random id in its first frame and sends small messages to other clients' ids;\n"
               "the server stamps the sender's id and passes them on. Runs until SIGINT or\n"
               "SIGTERM; logs one line per connection closed for a reason and per limit hit\n"
               "to stderr (WAYBILL_LOG=debug|info|warn|error sets the level).\n\n"
               "  --listen ADDR            listen address (default ::, every address)\n"
               "  --port N                 TCP port (default 62443; 0 picks one)\n"
               "  --tls-cert PEM           certificate chain, PEM (with --tls-key: TLS)\n"
               "  --tls-key PEM            private key, PEM\n"
               "  --max-connections N      connections at once (default 100000)\n"
               "  --max-per-ip N           connections at once from one address (default 0: no\n"
               "                           limit)\n"
               "  --idle-timeout SECONDS   close a connection that sent nothing, keepalives\n"
               "                           included, for this long (default 120; 0: never)\n"
               "  --queue-kib N            bytes queued toward one client, in KiB, before\n"
               "                           messages to it are dropped (default 1024)\n");
}

static int listen_failed;

static void on_listening(void *arg, int status, uint16_t port)
{
    (void)port;
    if (status < 0) {
        listen_failed = 1;
        wb_rt_request_stop(arg);
    }
}

int wb_cmd_signal_server(int argc, char **argv)
{
    enum {
        O_LISTEN = 256,
        O_PORT,
        O_CERT,
        O_KEY,
        O_MAXCONN,
        O_PERIP,
        O_IDLE,
        O_QUEUE,
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"port", required_argument, NULL, O_PORT},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"max-connections", required_argument, NULL, O_MAXCONN},
        {"max-per-ip", required_argument, NULL, O_PERIP},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"queue-kib", required_argument, NULL, O_QUEUE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    wb_sig_server_config_t cfg;
    wb_sig_server_config_init(&cfg);
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
        case O_CERT:
            cfg.tls_cert = optarg;
            break;
        case O_KEY:
            cfg.tls_key = optarg;
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
        case O_IDLE:
            if ((v = wb_cli_parse_num(optarg, 0, 7 * 86400)) < 0)
                goto bad;
            cfg.idle_timeout_ms = (uint32_t)v * 1000u;
            break;
        case O_QUEUE:
            if ((v = wb_cli_parse_num(optarg, 1, 1024 * 1024)) < 0)
                goto bad;
            cfg.queue_bytes = (uint32_t)v * 1024u;
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
    if ((cfg.tls_cert == NULL) != (cfg.tls_key == NULL)) {
        fprintf(stderr, "waybill signal-server: --tls-cert and --tls-key go together\n");
        return 2;
    }

    wb_cli_block_signals();
    wb_cli_raise_nofile();
    wb_rt_t *rt = NULL;
    int rc = wb_rt_new(&rt, NULL);
    wb_sockets_config_t sc;
    wb_sockets_config_init(&sc);
    sc.max_connections = cfg.max_connections + 64;
    if (rc == 0)
        rc = wb_sockets_attach(rt, &sc);
    cfg.on_listening = on_listening;
    cfg.arg = rt;
    if (rc == 0)
        rc = wb_sig_server_start(rt, &cfg, NULL);
    if (rc != 0) {
        fprintf(stderr, "waybill signal-server: cannot start: %s\n", wb_strerror(rc));
        if (rt != NULL)
            wb_rt_free(rt);
        return 1;
    }
    rc = wb_cli_serve(rt, "signal");
    return rc != 0 || listen_failed ? 1 : 0;
bad:
    fprintf(stderr, "waybill signal-server: bad value for an option\n\n");
    usage(stderr);
    return 2;
}
