/*
 * cmd_kv.c - `waybill kv-server` and `waybill kv`.
 */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/cli/cli.h"
#include "apps/kv/client.h"
#include "apps/kv/proto.h"
#include "apps/kv/server.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rt.h"

#define parse_num wb_cli_parse_num

/* ---- kv-server --------------------------------------------------------------------- */

static void server_usage(FILE *f)
{
    fprintf(f, "usage: waybill kv-server [--host ADDR] [--port N] [--db PATH]\n"
               "                         [--max-connections N] [--max-value-size BYTES]\n"
               "                         [--durable] [--trace] [--inbox-limit N]\n\n"
               "A key-value service whose state is SQLite rows. Writes are group-committed\n"
               "(WAL, synchronous=NORMAL: safe from a crash of the process; --durable syncs\n"
               "every commit to disk before answering). Runs until SIGINT or SIGTERM.\n\n"
               "  --host ADDR             listen address (default 127.0.0.1; :: for IPv6)\n"
               "  --port N                TCP port (default 7400)\n"
               "  --db PATH               database file (default kv.db)\n"
               "  --max-connections N     connections served at once (default 1024)\n"
               "  --max-value-size BYTES  largest value accepted (default 1048576)\n"
               "  --durable               answer writes only once synced to disk\n"
               "  --trace                 log one line per message routed\n"
               "  --inbox-limit N         events a thread's inbox holds before producers wait\n"
               "                          (default 4096; small values are for testing)\n");
}

static void on_listening(int status, uint16_t port, void *user)
{
    (void)user;
    if (status == 0) {
        printf("kv-server: listening on port %u\n", port);
        fflush(stdout);
    }
}

int wb_cmd_kv_server(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"db", required_argument, NULL, 'd'},
        {"max-connections", required_argument, NULL, 'c'},
        {"max-value-size", required_argument, NULL, 'v'},
        {"durable", no_argument, NULL, 'D'},
        {"trace", no_argument, NULL, 't'},
        {"inbox-limit", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static kv_server_config_t cfg;
    uint32_t inbox_limit = 0;
    long long v;
    int ch;
    kv_server_config_init(&cfg);
    cfg.on_listening = on_listening;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'H':
            cfg.host = optarg;
            break;
        case 'p':
            if ((v = parse_num(optarg, 0, 65535)) < 0)
                goto bad;
            cfg.port = (uint16_t)v;
            break;
        case 'd':
            cfg.db_path = optarg;
            break;
        case 'c':
            if ((v = parse_num(optarg, 1, 1000000)) < 0)
                goto bad;
            cfg.max_connections = (uint32_t)v;
            break;
        case 'v':
            if ((v = parse_num(optarg, 1, 64 << 20)) < 0)
                goto bad;
            cfg.max_value = (uint32_t)v;
            break;
        case 'D':
            cfg.durable = 1;
            break;
        case 't':
            cfg.trace = 1;
            break;
        case 'i':
            if ((v = parse_num(optarg, 16, 1 << 24)) < 0)
                goto bad;
            inbox_limit = (uint32_t)v;
            break;
        case 'h':
            server_usage(stdout);
            return 0;
        default:
            server_usage(stderr);
            return 2;
        }
    }
    if (optind != argc)
        goto bad;

    wb_cli_block_signals();

    wb_rt_t *rt = NULL;
    wb_rt_config_t rtc;
    wb_rt_config_init(&rtc);
    if (inbox_limit)
        rtc.inbox_limit = inbox_limit;
    int rc = wb_rt_new(&rt, &rtc);
    if (rc == 0)
        rc = kv_server_setup(rt, &cfg);
    if (rc != 0) {
        fprintf(stderr, "waybill kv-server: cannot start: %s\n", wb_strerror(rc));
        if (rt != NULL)
            wb_rt_free(rt);
        return 1;
    }
    return wb_cli_serve(rt, "kv");
bad:
    fprintf(stderr, "waybill kv-server: bad arguments\n\n");
    server_usage(stderr);
    return 2;
}

/* ---- kv ---------------------------------------------------------------------------------- */

static void client_usage(FILE *f)
{
    fprintf(
        f,
        "usage: waybill kv [--host ADDR] [--port N] [--json] COMMAND ...\n\n"
        "  put KEY VALUE           store VALUE (\"-\": read it from stdin); prints the revision\n"
        "  get KEY                 print the value\n"
        "  delete KEY              remove the key; prints the revision\n"
        "  list PREFIX             every key starting with PREFIX, in order\n"
        "  watch PREFIX [--from REV]\n"
        "                          every change after REV (default: from now on; 0\n"
        "                          replays the whole history), in order, reconnecting\n"
        "                          and resuming as needed, until interrupted\n\n"
        "  cursor [PREFIX] [--from REV]\n"
        "                          open a durable cursor (a row on the server); prints its id\n"
        "  next CURSOR [--ack REV] [--max N]\n"
        "                          mark changes up to REV processed, then print the next\n"
        "                          ones (at most N, default 100); asking again without a\n"
        "                          new --ack repeats them: nothing is lost\n"
        "  drop CURSOR             remove a cursor\n\n"
        "  --json                  one JSON object per line: key, value, rev (and op)\n"
        "  --timeout MS            give up a request after MS (default 10000)\n"
        "  --max-events N          watch: stop after N changes\n");
}

static void *read_all(FILE *f, size_t max, size_t *n)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (len == cap) {
            if (cap > max)
                break;
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                break;
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            *n = len;
            return buf;
        }
    }
    free(buf);
    return NULL;
}

int wb_cmd_kv(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},    {"port", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},          {"from", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 'T'}, {"max-events", required_argument, NULL, 'm'},
        {"ack", required_argument, NULL, 'a'},     {"max", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    kv_client_config_t cfg;
    long long v;
    int ch, have_from = 0;
    void *stdin_value = NULL;
    kv_client_config_init(&cfg);
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (ch) {
        case 'H':
            cfg.host = optarg;
            break;
        case 'p':
            if ((v = parse_num(optarg, 1, 65535)) < 0)
                goto bad;
            cfg.port = (uint16_t)v;
            break;
        case 'j':
            cfg.json = 1;
            break;
        case 'f':
            if ((v = parse_num(optarg, 0, LLONG_MAX)) < 0)
                goto bad;
            cfg.from_rev = (uint64_t)v;
            have_from = 1;
            break;
        case 'T':
            if ((v = parse_num(optarg, 1, 3600000)) < 0)
                goto bad;
            cfg.timeout_ms = (uint32_t)v;
            break;
        case 'm':
            if ((v = parse_num(optarg, 1, LLONG_MAX)) < 0)
                goto bad;
            cfg.max_events = (uint64_t)v;
            break;
        case 'a':
            if ((v = parse_num(optarg, 0, LLONG_MAX)) < 0)
                goto bad;
            cfg.ack = (uint64_t)v;
            break;
        case 'M':
            if ((v = parse_num(optarg, 1, KV_MAX_LIST)) < 0)
                goto bad;
            cfg.max = (uint32_t)v;
            break;
        case 'h':
            client_usage(stdout);
            return 0;
        default:
            client_usage(stderr);
            return 2;
        }
    }
    /* Options may also follow the command's words (watch PREFIX --from 3). */
    char *words[3];
    int nw = 0;
    while (optind < argc) {
        if (argv[optind][0] == '-' && argv[optind][1] != '\0') {
            int save = optind;
            ch = getopt_long(argc, argv, "+h", opts, NULL);
            if (ch == 'f') {
                if ((v = parse_num(optarg, 0, LLONG_MAX)) < 0)
                    goto bad;
                cfg.from_rev = (uint64_t)v;
                have_from = 1;
            } else if (ch == 'j') {
                cfg.json = 1;
            } else if (ch == 'm') {
                if ((v = parse_num(optarg, 1, LLONG_MAX)) < 0)
                    goto bad;
                cfg.max_events = (uint64_t)v;
            } else if (ch == 'a') {
                if ((v = parse_num(optarg, 0, LLONG_MAX)) < 0)
                    goto bad;
                cfg.ack = (uint64_t)v;
            } else if (ch == 'M') {
                if ((v = parse_num(optarg, 1, KV_MAX_LIST)) < 0)
                    goto bad;
                cfg.max = (uint32_t)v;
            } else if (ch == -1 || optind == save) {
                goto bad;
            } else {
                goto bad;
            }
            continue;
        }
        if (nw == 3)
            goto bad;
        words[nw++] = argv[optind++];
    }
    if (nw < 1)
        goto bad;
    const char *cmd = words[0];
    if (strcmp(cmd, "put") == 0 && nw == 3) {
        cfg.cmd = KV_CMD_PUT;
        cfg.key = words[1];
        if (strcmp(words[2], "-") == 0) {
            stdin_value = read_all(stdin, KV_DEFAULT_MAX_VALUE * 64, &cfg.value_n);
            if (stdin_value == NULL) {
                fprintf(stderr, "waybill kv: cannot read the value from stdin\n");
                return 1;
            }
            cfg.value = stdin_value;
        } else {
            cfg.value = words[2];
            cfg.value_n = strlen(words[2]);
        }
    } else if (strcmp(cmd, "get") == 0 && nw == 2) {
        cfg.cmd = KV_CMD_GET;
        cfg.key = words[1];
    } else if ((strcmp(cmd, "delete") == 0 || strcmp(cmd, "del") == 0) && nw == 2) {
        cfg.cmd = KV_CMD_DELETE;
        cfg.key = words[1];
    } else if (strcmp(cmd, "list") == 0 && nw <= 2) {
        cfg.cmd = KV_CMD_LIST;
        cfg.key = nw == 2 ? words[1] : "";
    } else if (strcmp(cmd, "watch") == 0 && nw <= 2) {
        cfg.cmd = KV_CMD_WATCH;
        cfg.key = nw == 2 ? words[1] : "";
    } else if (strcmp(cmd, "cursor") == 0 && nw <= 2) {
        cfg.cmd = KV_CMD_CURSOR;
        cfg.key = nw == 2 ? words[1] : "";
    } else if ((strcmp(cmd, "next") == 0 || strcmp(cmd, "drop") == 0) && nw == 2) {
        cfg.cmd = strcmp(cmd, "next") == 0 ? KV_CMD_NEXT : KV_CMD_DROP;
        if ((v = parse_num(words[1], 1, LLONG_MAX)) < 0)
            goto bad;
        cfg.cursor = (uint64_t)v;
    } else {
        goto bad;
    }
    if ((cfg.cmd != KV_CMD_WATCH && cfg.cmd != KV_CMD_CURSOR && have_from) ||
        (cfg.cmd != KV_CMD_WATCH && cfg.max_events) ||
        (cfg.cmd != KV_CMD_NEXT && (cfg.ack || cfg.max)))
        goto bad;
    if (cfg.cmd != KV_CMD_LIST && cfg.cmd != KV_CMD_WATCH && cfg.cmd != KV_CMD_CURSOR &&
        cfg.cmd != KV_CMD_NEXT && cfg.cmd != KV_CMD_DROP &&
        (cfg.key[0] == '\0' || strlen(cfg.key) > KV_MAX_KEY)) {
        fprintf(stderr, "waybill kv: a key is 1 to %d bytes\n", KV_MAX_KEY);
        return 2;
    }
    if (wb_log_level() == WB_LOG_INFO && getenv("WAYBILL_LOG") == NULL)
        wb_log_set_level(WB_LOG_WARN); /* a client is quiet unless asked */
    signal(SIGPIPE, SIG_IGN);
    int rc = kv_client_run(&cfg);
    free(stdin_value);
    return rc;
bad:
    fprintf(stderr, "waybill kv: bad arguments\n\n");
    client_usage(stderr);
    free(stdin_value);
    return 2;
}
