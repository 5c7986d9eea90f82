/*
 * server.h - `waybill transit-relay`: the Magic Wormhole transit relay on
 * the runtime.
 *
 * Network lane: raw TCP connections (sockets/tcp.h, opts.raw); once paired,
 * the two are spliced there (wb_tcp_splice: splice(2) through a pipe per
 * direction, the bytes never leave the kernel nor reach the actor).
 * Actor lane: one actor that reads each connection's handshake line
 * (handshake.h), pairs connections by token, answers "ok\n" to both, hands
 * the pair to the splice and waits for its end (bytes each way, why).
 * Database lane (only with a usage database): one usage row per finished
 * pair or unpaired connection and the `current` row (store.h).
 *
 * Pairing, as the Python relay 0.2.1: two connections with the same token
 * pair when their sides differ or either has none (the legacy line); when a
 * pair forms, every other connection waiting on that token is closed
 * ("redundant"). The oldest waiting connection that fits is taken. A
 * connection that sends anything before its "ok\n" gets "impatient\n" and is
 * closed; a line that cannot be a handshake gets "bad handshake\n".
 *
 * Backpressure: the splice never reads more from one end than the other
 * takes (at most one pipe, splice_pipe bytes, per direction in flight);
 * TCP holds the sender back.
 *
 * Ending: when either end closes (or fails), what is in flight to the other
 * is written, then the other is closed; no half-close, as in Python. Bytes a
 * client sends before its "ok" are refused ("impatient\n" while it waits;
 * a paired connection is closed). Bounds Python only documents are enforced
 * here: wait_timeout for a connection from accept until it is paired
 * (handshake included), idle_timeout for a pair in which no byte moved
 * either way (the splice's), max_connections in all and max_per_ip from one
 * address (at accept, by sockets/).
 *
 * Each finished pair is logged at info: bytes each way, duration, result.
 */
#ifndef WB_RELAY_SERVER_H
#define WB_RELAY_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/rt.h"

typedef struct {
    const char *host;           /* listen address (default "::") */
    uint16_t port;              /* default 4001; 0 picks one */
    const char *usage_db;       /* NULL: no usage rows */
    uint32_t blur_usage;        /* seconds: round `started` down, byte counts up (0: off) */
    uint32_t max_connections;   /* connections at once, paired or not (default 10000) */
    uint32_t max_per_ip;        /* connections at once from one address (0: no limit) */
    uint32_t wait_timeout_ms;   /* accept to paired (default 60000) */
    uint32_t idle_timeout_ms;   /* a pair with no bytes either way (default 600000; 0: none) */
    uint32_t read_buffer;       /* bytes per read before pairing (default 131072) */
    uint32_t splice_pipe;       /* bytes in flight per direction of a pair (0: sockets/'
                                   default, 1 MiB; the kernel may give less) */
    uint32_t splice_copy;       /* nonzero: the pair's bytes through buffers, not splice(2) */
    uint32_t inbox_limit;       /* the runtime's inbox_limit (tr_server_rt_config; default 128) */
    uint32_t write_high;        /* BACKPRESSURE mark of the write queues (default 1 MiB) */
    uint32_t stats_interval_ms; /* `current` row refresh (default 300000) */
    /* Called on the actor lane once listening (port is the bound one), or
     * with status < 0 when listening failed. May be NULL. */
    void (*on_listening)(int status, uint16_t port, void *user);
    void *user;
} tr_server_config_t;

void tr_server_config_init(tr_server_config_t *cfg);

/* Set the runtime options the relay needs in rtc (before wb_rt_new): small
 * inbox bounds (handshake lines, events; the relayed bytes do not pass
 * through the inboxes). */
void tr_server_rt_config(wb_rt_config_t *rtc, const tr_server_config_t *cfg);

/* The write queue hard cap given to each connection (only the relay's own
 * replies are queued; the splice does not use the queue). */
size_t tr_server_hard_cap(const tr_server_config_t *cfg);

/* Attach sockets (and the database lane, with a usage database) to rt and
 * spawn the relay actor, before wb_rt_start. cfg must outlive the runtime. */
int tr_server_setup(wb_rt_t *rt, const tr_server_config_t *cfg);

#endif
