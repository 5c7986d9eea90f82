/*
 * server.h - `waybill mailbox-server`: the Magic Wormhole mailbox
 * (rendezvous) server on the runtime.
 *
 * Network lane: WebSocket connections (sockets/tcp.h in WebSocket mode: the
 * upgrade, framing, ping/pong and GET / happen there). Actor lane: one actor
 * running the protocol's state machine (core.h) over every connection.
 * Database lane: every change the state machine makes, as SQLite operations
 * (store.h), group-committed.
 *
 * Durability: a reply that follows a change is held until the database lane
 * has committed that change (results come back in order), so whatever a
 * client was told — a claimed mailbox, the echo of its message — survives
 * the process being killed. Replies that follow no change go out at once, in
 * order with the held ones.
 *
 * At start the actor loads the channel database back into memory, then
 * listens; a periodic timer prunes idle mailboxes (core.h).
 */
#ifndef WB_MAILBOX_SERVER_H
#define WB_MAILBOX_SERVER_H

#include <stdint.h>

#include "apps/mailbox/core.h"
#include "runtime/rt.h"

typedef struct {
    const char *host;              /* listen address (default "::", all) */
    uint16_t port;                 /* default 4000; 0 picks one */
    const char *channel_db;        /* default "relay.sqlite" */
    const char *usage_db;          /* NULL: no usage history */
    mb_config_t core;              /* protocol options and bounds */
    uint32_t max_connections;      /* WebSocket connections at once (default 10000... see .c) */
    uint32_t max_per_ip;           /* connections at once from one address (0: no limit) */
    uint32_t max_message;          /* largest WebSocket message, bytes (default 1 MiB) */
    uint32_t prune_interval_ms;    /* default 300000 (5 minutes) */
    uint32_t handshake_timeout_ms; /* default 10000 */
    /* Called on the actor lane once listening (port is the bound one), or
     * with status < 0 when loading or listening failed. May be NULL. */
    void (*on_listening)(int status, uint16_t port, void *user);
    void *user;
} mb_server_config_t;

void mb_server_config_init(mb_server_config_t *cfg);

/* Attach the database lane and sockets to rt and spawn the server actor,
 * before wb_rt_start. cfg must outlive the runtime. */
int mb_server_setup(wb_rt_t *rt, const mb_server_config_t *cfg);

#endif
