/*
 * server.h - the signaling server (`waybill signal-server`): peers connect,
 * get a random id (proto.h's welcome frame), and send small messages to
 * other peers' ids on topics; the server stamps the sender's id and passes
 * them on. One actor; connections on the network lane (raw TCP, or TLS).
 *
 * What waddell lacked, here:
 *   - A sender is never blocked by a slow recipient: each recipient has a
 *     bounded queue (its connection's write queue, queue_bytes); a message
 *     that would pass it is dropped and counted, and the sender gets a
 *     notice if it asked (proto.h). A message to an unknown id: dropped,
 *     counted, noticed likewise.
 *   - Idle timeout: a connection that sends nothing (keepalives count) for
 *     idle_timeout_ms is closed.
 *   - Limits: connections in total and per IP address; a frame over the
 *     maximum, or malformed, closes that connection with one log line.
 *   - Ids are 128-bit random; a reconnecting client gets a new one.
 * One log line per connection closed for a reason, per limit hit, and a
 * summary on stop.
 *
 * Threads: wb_sig_server_start before wb_rt_start or on the actor lane;
 * the callback and stats on the actor lane.
 */
#ifndef WB_SIGNAL_SERVER_H
#define WB_SIGNAL_SERVER_H

#include <stdint.h>

#include "runtime/rt.h"

typedef struct {
    const char *host;         /* listen address (default "::") */
    uint16_t port;            /* (default 62443, waddell's; 0 picks one) */
    const char *tls_cert;     /* both set: TLS (PEM files); neither: plain TCP */
    const char *tls_key;
    uint32_t max_connections; /* in total (default 100000) */
    uint32_t max_per_ip;      /* from one address (default 0: no limit) */
    uint32_t idle_timeout_ms; /* (default 120000; 0: never) */
    uint32_t queue_bytes;     /* per recipient (default 1 MiB) */
    uint32_t max_frame;       /* largest frame content (default and at most 65535) */
    /* Called on the actor lane when listening (status 0, the bound port) or
     * not (status < 0). May be NULL. */
    void (*on_listening)(void *arg, int status, uint16_t port);
    void *arg;
} wb_sig_server_config_t;

typedef struct {
    uint64_t connections; /* now */
    uint64_t accepted, closed_idle, closed_bad, refused;
    uint64_t relayed, dropped_unknown, dropped_full, notices;
    uint64_t bytes_relayed;
} wb_sig_server_stats_t;

void wb_sig_server_config_init(wb_sig_server_config_t *cfg);

/* Create the server actor and start listening. Strings are copied.
 * Returns 0 and the actor id, WB_EINVAL (one TLS file without the other),
 * WB_ENOMEM. */
int wb_sig_server_start(wb_rt_t *rt, const wb_sig_server_config_t *cfg, uint64_t *actor);

int wb_sig_server_stats(wb_rt_t *rt, uint64_t actor, wb_sig_server_stats_t *out);

#endif
