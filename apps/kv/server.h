/*
 * server.h - the kv service: a key-value store whose state is SQLite rows,
 * served over TCP with waybill envelopes (apps/kv/proto.h).
 *
 * One actor owns the listener, the connections (through a dispatch endpoint)
 * and the watches; every read and write is a request to the database lane.
 * Writes go to a change log (the revision is the log's rowid) and a trigger
 * applies them to the key table in the same statement, so a write and its
 * revision are one atomic step.
 *
 * Flow control: each connection may have at most `max_inflight` requests
 * being served; past that, or while its write queue is above its watermark,
 * the server stops reading it (sockets/ holds the peer with TCP flow
 * control) and serves everyone else. Watches stream under the dispatch
 * layer's per-conversation credit.
 */
#ifndef WB_KV_SERVER_H
#define WB_KV_SERVER_H

#include <stdint.h>

#include "runtime/rt.h"

typedef struct {
    const char *host;         /* default 127.0.0.1 */
    uint16_t port;            /* default 7400; 0 picks one */
    const char *db_path;      /* default kv.db */
    uint32_t max_connections; /* default 1024 */
    uint32_t max_value;       /* default 1 MiB */
    uint32_t max_inflight;    /* requests served at once per connection (default 256) */
    int durable;              /* every write synced before it is acknowledged */
    int trace;                /* dispatch routing trace */
    /* Called on the actor lane once listening (port is the bound one), or
     * with status < 0 when listening failed. May be NULL. */
    void (*on_listening)(int status, uint16_t port, void *user);
    void *user;
} kv_server_config_t;

void kv_server_config_init(kv_server_config_t *cfg);

/* Attach the database lane (kv schema) and sockets to rt, and spawn the
 * server actor, before wb_rt_start. cfg must outlive the runtime. */
int kv_server_setup(wb_rt_t *rt, const kv_server_config_t *cfg);

#endif
