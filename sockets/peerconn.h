/*
 * peerconn.h - one authenticated, encrypted, multiplexed connection to a
 * peer, run as an actor: a raw TCP connection (tcp.h) carrying a secret
 * connection (secret.h) carrying a multiplexed connection (mconn.h).
 *
 * Life of a peer connection (an actor; its owner is the actor that made it):
 *
 *   1. Secret handshake: hellos, auth frames (secret.h), within
 *      handshake_timeout_ms of its start.
 *   2. Hello blobs: each side's first sealed frame after auth is an opaque
 *      blob of at most WB_PEERCONN_MAX_HELLO bytes (the switch's NodeInfo).
 *   3. WB_EV_PEER_READY to the owner: the peer's proven identity, its
 *      address and its hello blob. Nothing more is read until the owner
 *      answers with wb_peerconn_start (the channel routes: which actor reads
 *      which channel) or wb_peerconn_close (refused, with a reason).
 *   4. Running: messages read on a channel go to that channel's actor as
 *      WB_EV_PEER_MSG events through its mailbox, never inline in the read
 *      path. A reader whose mailbox is full (wb_actor_send's WB_EAGAIN) holds
 *      back only its own channels: their messages wait here, the peer's
 *      credit on them stops (mconn.h), and delivery goes on at the reader's
 *      WB_EV_RESUME. Ping/pong and the other channels keep going.
 *   5. The end: one WB_EV_PEER_CLOSED to the owner (status and reason: the
 *      first error, "closed by owner", "peer closed"), then the actor exits.
 *
 * Events sent (src = the peer connection's actor id):
 *   WB_EV_PEER_READY     to the owner (control). Payload: wb_peer_ready_t.
 *   WB_EV_PEER_MSG       to a channel's reader (data). cookie = channel id,
 *                        payload = the message (len 0 allowed).
 *   WB_EV_PEER_SENDABLE  to an actor whose wb_peer_send returned WB_EAGAIN
 *                        (control): cookie = channel id; the channel's queue
 *                        has room again (or the connection ended: then
 *                        wb_peer_send says WB_ECLOSED).
 *   WB_EV_PEER_CLOSED    to the owner (control), once: status = the code
 *                        (0 for closed by owner), payload = the reason text
 *                        (NUL-terminated), cookie = 1 if it had been started.
 *
 * Sending: wb_peer_send and wb_peer_try_send run on the actor lane, in any
 * actor's handler, and return at once. Writes are coalesced: every message
 * queued during one handler run goes out in the same sealed write. The TCP
 * write queue is kept short (write_high) so that a channel with priority is
 * not queued behind megabytes of another channel.
 *
 * Fault injection (opts.faults, for tests of what is built on it): a seeded
 * wrapper between TCP and the secret connection that cuts reads and writes
 * into short pieces, delays reads, and resets the connection at random.
 *
 * Threads: everything here runs on the actor lane (handlers of actors).
 */
#ifndef WB_PEERCONN_H
#define WB_PEERCONN_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/actor.h"
#include "runtime/event.h"
#include "sockets/mconn.h"
#include "sockets/secret.h"

/* Event types: sockets/ owns 512-767; the peer connection 600-619. */
enum {
    WB_EV_PEER_READY = 600,
    WB_EV_PEER_MSG,
    WB_EV_PEER_SENDABLE,
    WB_EV_PEER_CLOSED,
    /* Internal. */
    WB__EV_PEER_START = 615,
    WB__EV_PEER_CLOSE,
    WB__EV_PEER_FLUSH,
};

#define WB_PEERCONN_MAX_HELLO 10240

typedef struct {
    uint64_t seed;            /* the PRNG's seed: the same seed, the same faults */
    uint32_t short_pct;       /* % of reads and writes cut into random short pieces */
    uint32_t max_delay_ms;    /* each read waits a random 0..max_delay_ms before it is seen */
    uint32_t reset_per_mille; /* per read after the handshake: reset the connection */
} wb_peerconn_faults_t;

typedef struct {
    const uint8_t *id_sk;     /* our identity: WB_SC_ID_SECRET_LEN bytes (copied) */
    const uint8_t *expect_pk; /* dialing: the identity the peer must prove, or NULL */
    const void *hello;        /* our hello blob, at most WB_PEERCONN_MAX_HELLO (copied) */
    size_t hello_len;
    const wb_mconn_chan_t *chans; /* our channels (copied) */
    size_t nchans;
    wb_mconn_config_t mconn;
    uint32_t handshake_timeout_ms;      /* handshake + hellos + the owner's answer (20000) */
    uint32_t frame_max;                 /* plaintext bytes per sealed frame (16384) */
    uint32_t connect_timeout_ms;        /* dialing (3000) */
    size_t write_high, write_low;       /* TCP write queue marks (256 KiB, 64 KiB) */
    const wb_peerconn_faults_t *faults; /* NULL: none (copied) */
} wb_peerconn_opts_t;

/* WB_EV_PEER_READY's payload. */
typedef struct {
    uint8_t remote_id[WB_SC_KEY_LEN]; /* the identity the peer proved */
    uint8_t outbound;                 /* 1: we dialed */
    char addr[64];                    /* the peer's socket address, "127.0.0.1:40312" */
    uint32_t hello_len;
    uint8_t hello[]; /* the peer's hello blob */
} wb_peer_ready_t;

/* One route: messages on channel `ch` go to actor `reader`. */
typedef struct {
    uint8_t ch;
    uint64_t reader;
} wb_peer_route_t;

/* Counters of a running connection. */
typedef struct {
    uint64_t bytes_in, bytes_out; /* on the wire */
    uint64_t msgs_in, msgs_out;
    uint64_t pings, pongs, rtt_ms;
    uint32_t held; /* messages waiting for a full mailbox */
} wb_peerconn_stats_t;

void wb_peerconn_opts_init(wb_peerconn_opts_t *opts);

/* Dial host:port (an IP literal or a name; resolved on the network lane) and
 * run a peer connection over it, owned by `owner` (an actor; its child).
 * Returns 0 with *pc set, WB_EINVAL, WB_ENOMEM. Everything after comes as
 * events; a failed dial is a WB_EV_PEER_CLOSED. */
int wb_peerconn_dial(wb_rt_t *rt, wb_actor_t *owner, const char *host, uint16_t port,
                     const wb_peerconn_opts_t *opts, uint64_t *pc);

/* Run a peer connection over conn, a TCP connection accepted by a listener
 * of owner's with opts.raw and opts.start_paused (tcp.h): the connection is
 * handed to the new actor and resumed. The owner must not use conn after. */
int wb_peerconn_accept(wb_rt_t *rt, wb_actor_t *owner, uint64_t conn, const char *addr,
                       const wb_peerconn_opts_t *opts, uint64_t *pc);

/* The owner's answer to WB_EV_PEER_READY: run, with these routes (copied;
 * every channel of ours should have one). From the owner's handler. */
int wb_peerconn_start(wb_rt_t *rt, wb_actor_t *owner, uint64_t pc, const wb_peer_route_t *routes,
                      size_t n);

/* Close: what is queued is written (as credit allows) and the connection
 * closed; the owner gets WB_EV_PEER_CLOSED with status and reason. From any
 * actor's handler. WB_ENOENT if it is already gone. */
int wb_peerconn_close(wb_rt_t *rt, wb_actor_t *self, uint64_t pc, int status, const char *reason);

/* Queue msg (its payload is the message) on channel ch of pc. On 0 the
 * connection owns msg. Otherwise the caller keeps it: WB_EAGAIN the
 * channel's queue is full and `self` will get a WB_EV_PEER_SENDABLE;
 * WB_ENOENT no such connection or channel; WB_ESTATE not started;
 * WB_ETOOBIG above the channel's max_message; WB_ECLOSED ending. */
int wb_peer_send(wb_rt_t *rt, wb_actor_t *self, uint64_t pc, uint8_t ch, wb_event_t *msg);

/* The same, but a full queue is WB_EAGAIN with no notification. */
int wb_peer_try_send(wb_rt_t *rt, uint64_t pc, uint8_t ch, wb_event_t *msg);

/* Counters (and per channel, by index, through the mconn). */
int wb_peerconn_stats(wb_rt_t *rt, uint64_t pc, wb_peerconn_stats_t *out);
int wb_peerconn_chan_stats(wb_rt_t *rt, uint64_t pc, size_t index, wb_mconn_chan_stats_t *out);

#endif
