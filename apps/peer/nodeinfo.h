/*
 * nodeinfo.h - what a node says about itself right after the secret
 * handshake (the peer connection's hello blob), and whether two nodes can
 * talk.
 *
 * Wire form: one JSON object of at most WB_PEERCONN_MAX_HELLO bytes,
 *   {"id": "<64 hex>", "listen": "127.0.0.1:26656", "network": "chat",
 *    "version": "0.1.0", "channels": [0, 32], "moniker": "n1"}
 * id: the node's Ed25519 public key (it must equal the key the peer proved);
 * listen: where it accepts connections ("" if nowhere; self-reported, so
 * only a hint); network: nodes talk only within one network; version:
 * "major.minor.patch", equal major and minor required; channels: the
 * channel ids it serves (at most WB_MCONN_MAX_CHANNELS, distinct, 0..255),
 * at least one in common required when we serve any; moniker: a name for people (at most 64
 * bytes, printable). Unknown keys are ignored (later versions may add some).
 *
 * Threads: none kept; pure functions.
 */
#ifndef WB_PEER_NODEINFO_H
#define WB_PEER_NODEINFO_H

#include <stddef.h>
#include <stdint.h>

#include "sockets/mconn.h"

#define WB_NODEINFO_TEXT_MAX 64

typedef struct {
    uint8_t id[32];
    char listen[WB_NODEINFO_TEXT_MAX + 1];
    char network[WB_NODEINFO_TEXT_MAX + 1];
    char version[WB_NODEINFO_TEXT_MAX + 1];
    char moniker[WB_NODEINFO_TEXT_MAX + 1];
    uint8_t channels[WB_MCONN_MAX_CHANNELS];
    size_t nchannels;
} wb_nodeinfo_t;

/* Encode into out (cap bytes). Returns the length, or WB_ETOOBIG /
 * WB_ENOMEM. */
long wb_nodeinfo_encode(const wb_nodeinfo_t *ni, char *out, size_t cap);

/* Decode and validate untrusted bytes. Returns 0, or WB_EPROTO /
 * WB_ETOOBIG with the reason in err ("nodeinfo: channels: duplicate
 * channel 0x20"). */
int wb_nodeinfo_decode(const void *data, size_t len, wb_nodeinfo_t *out, char *err, size_t errlen);

/* 0 when a node `ours` may talk to `theirs`; otherwise WB_EPROTO and the
 * reason in err ("network chat2, ours chat", "version 1.2.0 incompatible
 * with ours 0.1.0", "no channel in common"). */
int wb_nodeinfo_compatible(const wb_nodeinfo_t *ours, const wb_nodeinfo_t *theirs, char *err,
                           size_t errlen);

/* 1 when ni serves channel ch. */
int wb_nodeinfo_has_channel(const wb_nodeinfo_t *ni, uint8_t ch);

#endif
