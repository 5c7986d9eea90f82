/*
 * main.c - `waybill SUBCOMMAND [args]`.
 */
#include <stdio.h>
#include <string.h>

#include "apps/cli/cli.h"

#define WAYBILL_VERSION "0.1.0"

static const wb_cli_cmd_t commands[] = {
    {"selfcheck", "start a node, check every lane end to end, print timings", wb_cmd_selfcheck},
    {"kv-server", "serve a key-value store kept in SQLite", wb_cmd_kv_server},
    {"kv", "talk to a kv-server: put, get, delete, list, watch", wb_cmd_kv},
    {"mailbox-server", "the Magic Wormhole mailbox (rendezvous) server", wb_cmd_mailbox_server},
    {"send", "send a text message through a Magic Wormhole", wb_cmd_send},
    {"receive", "receive a text message through a Magic Wormhole", wb_cmd_receive},
    {"transit-relay", "the Magic Wormhole transit relay (file data between peers)",
     wb_cmd_transit_relay},
    {"peer", "run a node of the peer network (switch, peer exchange, chat)", wb_cmd_peer},
    {"signal-server", "the signaling server: peers exchange small messages by id",
     wb_cmd_signal_server},
    {"signal", "signaling client: listen for messages, send one by id", wb_cmd_signal},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: waybill COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-15s %s\n", "version", "print the version");
    fprintf(f, "\n'waybill COMMAND --help' tells more.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("waybill %s\n", WAYBILL_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "waybill: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
