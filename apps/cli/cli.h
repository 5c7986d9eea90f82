/*
 * cli.h - the `waybill` command's subcommands.
 *
 * Each subcommand is a function taking its own argv (argv[0] is the
 * subcommand's name) and returning the process exit status.
 */
#ifndef WB_CLI_H
#define WB_CLI_H

#include <stdint.h>

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} wb_cli_cmd_t;

int wb_cmd_selfcheck(int argc, char **argv);
int wb_cmd_kv_server(int argc, char **argv);
int wb_cmd_kv(int argc, char **argv);
int wb_cmd_mailbox_server(int argc, char **argv);
int wb_cmd_send(int argc, char **argv);
int wb_cmd_receive(int argc, char **argv);
int wb_cmd_transit_relay(int argc, char **argv);
int wb_cmd_peer(int argc, char **argv);
int wb_cmd_signal_server(int argc, char **argv);
int wb_cmd_signal(int argc, char **argv);

/* Shared by the server subcommands (serve.c). */
#include "runtime/rt.h"

/* A decimal in [min, max], or -1. */
long long wb_cli_parse_num(const char *s, long long min, long long max);
/* A --port value: "4000", or the Twisted endpoint form the Python servers
 * take, "tcp:4000[:interface=ADDR]" (then *host points at ADDR, in storage
 * that lives as long as the process). 0, or -1 when malformed. */
int wb_cli_parse_port(const char *s, uint16_t *port, const char **host);
/* Block SIGINT/SIGTERM in every thread to come (wb_cli_serve waits for
 * them) and ignore SIGPIPE. Call before creating the runtime. */
void wb_cli_block_signals(void);
/* Raise the open-files limit to its hard maximum (servers of many
 * connections). */
void wb_cli_raise_nofile(void);
/* Start rt, run until SIGINT or SIGTERM or wb_rt_request_stop, stop and
 * free it. Returns the exit status (1 when it could not start). */
int wb_cli_serve(wb_rt_t *rt, const char *name);

#endif
