/*
 * mconn.h - a multiplexed connection: messages on up to 64 channels, each
 * with a byte id and a priority, cut into packets that share one byte
 * stream (the plaintext of a secret connection), with per-channel credit,
 * ping/pong and one error. Sans-io: no sockets, no threads; time is given
 * by the caller (now_ms). sockets/peerconn.h runs it over a secret
 * connection.
 *
 * Packets (the stream is nothing but packets, back to back; all integers
 * big-endian):
 *
 *   ping    0x01
 *   pong    0x02
 *   msg     0x03 | channel (1) | flags (1: bit 0 EOF, others 0) | len (2) | len bytes
 *                  len 1..max_packet, or 0 only with EOF (an empty message)
 *   credit  0x04 | channel (1) | bytes (4, > 0)
 *
 * Anything else is an error: an unknown packet type, a flags byte with
 * other bits, a msg on a channel we do not have, a len above our
 * max_packet, a message growing past the channel's max_message, a msg
 * sent without credit (more bytes than we granted), a credit of 0 bytes,
 * credit that would push the peer's total past 2^32 - 1 (the credit we
 * hold on that channel and have not used). A credit packet for a channel
 * we do not have is ignored (the peer may have channels we lack).
 *
 * Credit (flow control per channel, so a slow reactor holds back its own
 * channel and nothing else). A sender may have at most the credit the
 * receiver granted in flight on a channel; it starts at 0 and the receiver
 * grants each channel's recv_window at once (the first packets it writes).
 * The receiver returns credit for the payload bytes it takes: at once while
 * the channel has no message waiting for delivery; otherwise held back until
 * the owner has delivered all the channel's waiting messages
 * (wb_mconn_delivered). So per channel the receiver holds at most
 * recv_window bytes of undelivered messages plus the first waiting one
 * (<= max_message, its credit went back as it came), and a partial message
 * never waits for credit that only its own delivery could return. Credit
 * goes out when at least a quarter of the window has built up, or when the
 * channel has no message waiting (so a sender is never left waiting for a
 * small grant).
 * A msg packet costs its len in credit; an empty message (len 0 with EOF)
 * costs one byte, so a peer cannot flood empty messages without limit.
 *
 * Scheduling. Each wb_mconn_write fills the caller's buffer: pong, ping and
 * credit packets first, then msg packets, each taken from the channel with
 * the smallest recently_sent / priority among those with a message and
 * credit (ties: the lowest channel index); recently_sent grows by each
 * packet's credit cost (its payload, 1 for an empty message) and is
 * multiplied by 0.8 every decay_ms. A message is sent whole before the
 * next message of its channel starts; channels interleave packet by packet.
 *
 * Ping/pong. Every ping_ms a ping is queued and a pong expected within
 * pong_timeout_ms, else the error "pong timeout after N ms". A received ping
 * queues one pong (pings that come faster coalesce into one). Received data
 * does not count as a pong, nor does a pong we did not ask for. The round
 * trip is measured on the clock of the last wb_mconn_tick: an owner that
 * wants it exact calls wb_mconn_tick(now) before each wb_mconn_read (tick
 * may be called at any time; it only acts on what is due).
 *
 * Errors are sticky and there is one: the first sets wb_mconn_error's text
 * and every later call returns the code again.
 *
 * Threads: an mconn belongs to one thread at a time; no global state.
 */
#ifndef WB_MCONN_H
#define WB_MCONN_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/event.h"

#define WB_MCONN_MAX_CHANNELS 64
#define WB_MCONN_PKT_PING 0x01
#define WB_MCONN_PKT_PONG 0x02
#define WB_MCONN_PKT_MSG 0x03
#define WB_MCONN_PKT_CREDIT 0x04
#define WB_MCONN_MSG_HEADER 5    /* type, channel, flags, len */
#define WB_MCONN_CREDIT_LEN 6    /* type, channel, bytes */
#define WB_MCONN_MAX_PACKET 65535 /* largest max_packet */

/* One channel. A zero field takes its default. */
typedef struct {
    uint8_t id;                   /* the channel's byte on the wire */
    uint8_t priority;             /* relative share of the link; must be > 0 */
    uint16_t send_queue_capacity; /* messages waiting to be sent (default 16) */
    uint32_t max_message;         /* largest message in or out (default 1 MiB, at most
                                     WB_EVENT_MAX_LEN) */
    uint32_t recv_window;         /* bytes the peer may have in flight to us (default
                                     256 KiB, at least max_packet) */
} wb_mconn_chan_t;

typedef struct {
    uint32_t max_packet;      /* payload bytes per msg packet (default 1024, at most 65535) */
    uint32_t ping_ms;         /* ping interval (default 60000) */
    uint32_t pong_timeout_ms; /* (default 45000; must be below ping_ms) */
    uint32_t decay_ms;        /* recently_sent decay period (default 2000) */
} wb_mconn_config_t;

typedef struct wb_mconn_s wb_mconn_t;

/* Per channel, for status and tests. */
typedef struct {
    uint8_t id;
    uint8_t priority;
    uint32_t queued;         /* messages waiting to be sent, the one being cut included */
    uint64_t recently_sent;  /* the decaying byte count the scheduler uses */
    uint64_t send_credit;    /* bytes we may still send */
    uint64_t recv_undelivered; /* messages handed up and not yet wb_mconn_delivered */
    uint64_t msgs_sent, msgs_recv;
    uint64_t bytes_sent, bytes_recv; /* payload bytes */
} wb_mconn_chan_stats_t;

void wb_mconn_config_init(wb_mconn_config_t *cfg);

/* A new mconn with n channels (0..WB_MCONN_MAX_CHANNELS, distinct ids,
 * priority > 0; copied). cfg may be NULL. The first ping is due at
 * now_ms + ping_ms. Returns 0, WB_EINVAL or WB_ENOMEM. */
int wb_mconn_new(wb_mconn_t **out, const wb_mconn_config_t *cfg, const wb_mconn_chan_t *chans,
                 size_t n, uint64_t now_ms);

/* Free it, and every message it holds. NULL is ignored. */
void wb_mconn_free(wb_mconn_t *m);

/* Queue msg's payload (msg->data, msg->len) as one message on channel ch.
 * On 0 the mconn owns msg (freed once sent, or with the mconn). Otherwise
 * the caller keeps it: WB_EAGAIN the channel's queue is full (wait for
 * wb_mconn_sendable), WB_ENOENT no such channel, WB_ETOOBIG above the
 * channel's max_message, or the sticky error. */
int wb_mconn_send(wb_mconn_t *m, uint8_t ch, wb_event_t *msg);

/* 1 when channel ch's queue has room for one more message. */
int wb_mconn_sendable(const wb_mconn_t *m, uint8_t ch);

/* 1 when wb_mconn_write has something to write (control packets, or a
 * message on a channel with credit). */
int wb_mconn_want_write(const wb_mconn_t *m);

/* Write packets into out[0..cap) (cap at least WB_MCONN_MSG_HEADER + 1:
 * a msg packet is cut to fit what is left). Returns bytes written (0:
 * nothing to write) or the sticky error. Messages wholly written are freed;
 * each frees a place in its channel's queue. */
long wb_mconn_write(wb_mconn_t *m, uint8_t *out, size_t cap);

/* Take bytes in[0..len) until a message completes or the input runs out;
 * *used says how many. Control packets are handled inside. Returns
 *   1  a message: *ch its channel, *msg a malloc'd buffer of *msg_len bytes
 *      the caller now owns (NULL when *msg_len is 0); it counts as
 *      undelivered on its channel until wb_mconn_delivered;
 *   0  every byte was taken;
 *   WB_EPROTO / WB_ETOOBIG / WB_ENOMEM: the connection's error (sticky). */
int wb_mconn_read(wb_mconn_t *m, const uint8_t *in, size_t len, size_t *used, uint8_t *ch,
                  uint8_t **msg, size_t *msg_len);

/* A message read on channel ch has reached its reader: its held-back
 * credit may go. */
void wb_mconn_delivered(wb_mconn_t *m, uint8_t ch);

/* Advance time: queue a ping when due, fail with "pong timeout" when a pong
 * is overdue, decay recently_sent. Returns 0 or the sticky error. */
int wb_mconn_tick(wb_mconn_t *m, uint64_t now_ms);

/* The next time wb_mconn_tick has something to do (ms, same clock). */
uint64_t wb_mconn_next_deadline(const wb_mconn_t *m);

/* Fail the connection from outside (socket closed, ...): sets the sticky
 * error once; later calls keep the first. Returns the code in effect. */
int wb_mconn_fail(wb_mconn_t *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The sticky error (0 if none) and its text ("" if none). */
int wb_mconn_errcode(const wb_mconn_t *m);
const char *wb_mconn_error(const wb_mconn_t *m);

/* Channel stats by index 0..n-1 (not by id). Returns WB_ENOENT past n. */
int wb_mconn_chan_stats(const wb_mconn_t *m, size_t index, wb_mconn_chan_stats_t *out);
size_t wb_mconn_nchannels(const wb_mconn_t *m);

/* Pings sent, pongs received, and the last round trip in ms (0: none yet;
 * at least 1 once measured). */
void wb_mconn_ping_stats(const wb_mconn_t *m, uint64_t *pings, uint64_t *pongs, uint64_t *rtt_ms);

#endif
