/*
 * client.h - the kv client: one operation (put, get, delete, list) or a
 * watch that keeps going across reconnects, printed for people or, with
 * json, as one JSON object per line.
 */
#ifndef WB_KV_CLIENT_H
#define WB_KV_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    KV_CMD_PUT,
    KV_CMD_GET,
    KV_CMD_DELETE,
    KV_CMD_LIST,
    KV_CMD_WATCH,
    KV_CMD_CURSOR, /* open a durable cursor on a prefix */
    KV_CMD_NEXT,   /* acknowledge, then read the next changes of a cursor */
    KV_CMD_DROP,   /* remove a cursor */
} kv_cmd_t;

typedef struct {
    const char *host; /* default 127.0.0.1 */
    uint16_t port;    /* default 7400 */
    kv_cmd_t cmd;
    const char *key; /* or the prefix, for list and watch */
    const void *value;
    size_t value_n;
    uint64_t from_rev; /* watch, cursor: changes after this revision (default: from now) */
    uint64_t cursor;   /* next, drop */
    uint64_t ack;      /* next: the last revision already processed (0: none) */
    uint32_t max;      /* next: at most this many changes (default 100) */
    int json;
    uint32_t timeout_ms; /* per request (default 10000); connecting included */
    uint64_t max_events; /* watch: stop after this many changes (0: never) */
    FILE *out;           /* default stdout */
} kv_client_config_t;

void kv_client_config_init(kv_client_config_t *cfg);

/* Run the command to its end (a watch: until SIGINT/SIGTERM, or max_events).
 * Returns the process exit status: 0 done, 1 failed (message on stderr). */
int kv_client_run(const kv_client_config_t *cfg);

#endif
