/*
 * cli.h - the `waybill` command's subcommands.
 *
 * Each subcommand is a function taking its own argv (argv[0] is the
 * subcommand's name) and returning the process exit status.
 */
#ifndef WB_CLI_H
#define WB_CLI_H

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} wb_cli_cmd_t;

int wb_cmd_selfcheck(int argc, char **argv);
int wb_cmd_kv_server(int argc, char **argv);
int wb_cmd_kv(int argc, char **argv);

#endif
