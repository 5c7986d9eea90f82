/*
 * chat.h - a small reactor that lets a person watch messages flow through
 * a network of nodes: each line typed on one node reaches every node, hop
 * by hop (flooding with a seen-set and a hop limit).
 *
 * Channel WB_CHAT_CHANNEL. A message (at most WB_CHAT_MAX_TEXT bytes of
 * text, all integers big-endian):
 *
 *   id (16 random bytes) | hops (1) | origin node id (32) | text (UTF-8)
 *
 * A node prints a message the first time it sees its id and forwards it to
 * every peer but the one it came from, with hops + 1, while hops <
 * WB_CHAT_MAX_HOPS. The seen-set holds the last WB_CHAT_SEEN ids. Text with
 * control characters is printed escaped; a message shorter than its header
 * disconnects the peer that sent it.
 *
 * Output: a callback per message delivered (and per peer joining/leaving),
 * which the command prints. Input: WB_EV_CHAT_SAY events (payload: the
 * text) from any thread (wb_rt_send to the chat actor).
 *
 * Threads: the actor lane.
 */
#ifndef WB_PEER_CHAT_H
#define WB_PEER_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "apps/peer/switch.h"

#define WB_CHAT_CHANNEL  0x40
#define WB_CHAT_MAX_TEXT 1024
#define WB_CHAT_MAX_HOPS 16
#define WB_CHAT_SEEN     4096
#define WB_CHAT_HEADER   49

enum { WB_EV_CHAT_SAY = 1420 };

typedef struct {
    /* A message to show: from (origin id), hops, text (len bytes, not
     * NUL-terminated, already checked to be at most WB_CHAT_MAX_TEXT). */
    void (*on_message)(void *arg, const uint8_t from[32], unsigned hops, const char *text,
                       size_t len);
    void *arg;
} wb_chat_config_t;

typedef struct wb_chat_s wb_chat_t;

/* A chat reactor, child of parent, registered on sw (before
 * wb_switch_start). Returns 0 and its actor id in *actor. */
int wb_chat_new(wb_rt_t *rt, wb_actor_t *parent, wb_switch_t *sw, const wb_chat_config_t *cfg,
                uint64_t *actor);

/* Messages seen (printed) and forwarded so far. */
void wb_chat_counts(wb_rt_t *rt, uint64_t actor, uint64_t *seen, uint64_t *forwarded);

#endif
