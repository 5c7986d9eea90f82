/*
 * switch.h - the switch: one node's peers. It listens, dials, runs each
 * connection (sockets/peerconn.h), exchanges NodeInfo (nodeinfo.h), refuses
 * what must be refused, routes each channel to the reactor that declared it,
 * tells reactors of peers joining and leaving, and redials persistent peers.
 *
 * Reactors are actors. Each declares its channels (wb_switch_add_reactor,
 * before wb_switch_start) and then receives, from the switch:
 *   WB_EV_SWITCH_PEER_ADDED    payload wb_switch_peer_t (control)
 *   WB_EV_SWITCH_PEER_REMOVED  payload wb_switch_peer_t, reason set (control)
 *   WB_EV_SWITCH_DIAL_FAILED   payload wb_switch_peer_t: a dial that did not
 *                              give a peer (reason set; self = 1 when it
 *                              reached ourselves, auth = 1 when another key
 *                              answered) (control)
 * (the switch's parent gets the same three, to watch) and from the peers'
 * connections, directly:
 *   WB_EV_PEER_MSG             src = the peer (its connection's actor id,
 *                              the `pc` of wb_switch_peer_t), cookie = the
 *                              channel, payload = the message.
 * A reactor sends with wb_peer_send / wb_peer_try_send (peerconn.h) to a
 * peer's pc, or wb_switch_broadcast.
 *
 * Refusals, in order, each with one log line naming the reason: inbound
 * beyond max_inbound (closed before any handshake); a handshake that fails
 * (peerconn: a MITM, a wrong key, a timeout); NodeInfo that does not decode
 * or whose id is not the key the peer proved; a connection to ourselves;
 * an incompatible node (network, version, no common channel); a duplicate
 * (a second connection to a peer we have: when the two were dialed from
 * opposite ends at once, both nodes keep the one dialed by the node with
 * the smaller id, so they agree); outbound beyond max_outbound.
 *
 * Persistent peers are redialed after each failure or drop, after a random
 * delay in [c/2, c], c = min(redial_max_ms, redial_min_ms * 2^failures),
 * failures counting since the last connection that lasted 10 s. Forever.
 *
 * Threads: everything here on the actor lane (in a handler, or through
 * wb_rt_call); the switch is an actor, its state the wb_switch_t.
 */
#ifndef WB_PEER_SWITCH_H
#define WB_PEER_SWITCH_H

#include <stddef.h>
#include <stdint.h>

#include "apps/peer/nodeinfo.h"
#include "runtime/actor.h"
#include "sockets/peerconn.h"

enum {
    WB_EV_SWITCH_PEER_ADDED = 1400,
    WB_EV_SWITCH_PEER_REMOVED,
    WB_EV_SWITCH_DIAL_FAILED,
    WB_EV_SWITCH_LISTENING, /* to the switch's parent: cookie = bound port, status < 0: failed */
};

typedef struct {
    const uint8_t *id_sk;    /* the node's identity (64 bytes; copied) */
    const char *network;     /* network name (required) */
    const char *version;     /* "major.minor.patch" (default the project's) */
    const char *moniker;     /* a name for people ("" ok) */
    const char *listen_host; /* NULL: do not listen */
    uint16_t listen_port;    /* 0: any free port */
    const char *advertise;   /* "host:port" told to peers; NULL: the bound address */
    uint32_t max_inbound;    /* peers that dialed us (default 40) */
    uint32_t max_outbound;   /* peers we dialed (default 10) */
    uint32_t redial_min_ms;  /* persistent peers (default 1000) */
    uint32_t redial_max_ms;  /* (default 60000) */
    uint64_t seed;           /* for redial jitter (0: random) */
    wb_peerconn_opts_t conn; /* connection template: mconn config, timeouts, faults;
                                id_sk, expect_pk, hello and chans are set by the switch */
} wb_switch_config_t;

typedef struct wb_switch_s wb_switch_t;

/* A peer, as reactors see it. */
typedef struct {
    uint64_t pc;    /* the connection's actor id: send to it, WB_EV_PEER_MSG src */
    uint8_t id[32]; /* its identity */
    uint8_t outbound, persistent, self, auth;
    char addr[64]; /* the socket address of the connection (or the one dialed) */
    char reason[160];
    wb_nodeinfo_t info; /* what it said (zeroed for DIAL_FAILED) */
} wb_switch_peer_t;

void wb_switch_config_init(wb_switch_config_t *cfg);

/* Make a switch (an actor, child of parent, which may be NULL). On the actor
 * lane. Returns 0, WB_EINVAL, WB_ENOMEM. Nothing runs until wb_switch_start. */
int wb_switch_new(wb_rt_t *rt, wb_actor_t *parent, const wb_switch_config_t *cfg,
                  wb_switch_t **out);

/* Declare reactor `actor`'s channels (copied; ids unique across reactors).
 * Before wb_switch_start. WB_EEXIST when a channel is taken. */
int wb_switch_add_reactor(wb_switch_t *sw, const char *name, uint64_t actor,
                          const wb_mconn_chan_t *chans, size_t n);

/* Listen (if configured) and dial the persistent peers added so far. */
int wb_switch_start(wb_switch_t *sw);

/* Dial a peer: id, host, port. persistent: keep it (redial forever).
 * WB_EEXIST already connected or dialing; WB_EBUSY outbound slots full (a
 * persistent one is still kept and dialed when a slot frees). */
int wb_switch_dial(wb_switch_t *sw, const uint8_t id[32], const char *host, uint16_t port,
                   int persistent);

/* Disconnect a peer (by pc), telling reactors `reason`. */
int wb_switch_stop_peer(wb_switch_t *sw, uint64_t pc, const char *reason);

/* Copy data to every peer serving channel ch (wb_peer_try_send): returns the
 * number of peers it was queued for. */
size_t wb_switch_broadcast(wb_switch_t *sw, uint8_t ch, const void *data, size_t len);

/* Peers now (up to cap): returns how many there are. */
size_t wb_switch_peers(wb_switch_t *sw, wb_switch_peer_t *out, size_t cap);
const wb_switch_peer_t *wb_switch_peer(wb_switch_t *sw, uint64_t pc);

/* Counts: connected outbound, connected inbound, dials in progress. */
void wb_switch_counts(wb_switch_t *sw, uint32_t *outbound, uint32_t *inbound, uint32_t *dialing);

/* 1 when id is connected or being dialed. */
int wb_switch_has(wb_switch_t *sw, const uint8_t id[32]);

const uint8_t *wb_switch_node_id(wb_switch_t *sw);
const wb_nodeinfo_t *wb_switch_nodeinfo(wb_switch_t *sw);
uint64_t wb_switch_actor(wb_switch_t *sw);
wb_rt_t *wb_switch_rt(wb_switch_t *sw);
const wb_switch_config_t *wb_switch_config(wb_switch_t *sw);

/* Close everything: listener, peers, redials. The switch actor exits. */
void wb_switch_stop(wb_switch_t *sw);

#endif
