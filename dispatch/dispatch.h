/*
 * dispatch.h - from blobs to handlers: the routing rules of the house plan.
 *
 * A dispatcher decodes the routing header of each blob that arrives from a
 * peer (a connection, or a peer identity) with that peer's codec, and calls
 * the handler it belongs to:
 *
 *   1. no in_reply_to, no in_regards_to: the stateless handler for its type;
 *   2. in_reply_to: the one-shot handler registered when the request was
 *      sent, removed as it runs (or when the request times out, when it runs
 *      once with WB_ETIMEDOUT);
 *   3. in_regards_to: the conversation's handler, for the conversation's
 *      whole life. With both set, in_reply_to picks the handler and the
 *      message carries the conversation (m->conv) so the handler reaches it;
 *   4. nothing registered: dropped and counted, never a crash;
 *   5. in_regards_to naming a database row, for a type registered with
 *      wb_dispatch_on_row (the type decides: for such a type in_regards_to
 *      is always a rowid): the row handler, which sends it on to the
 *      database lane to run there (dispatch/endpoint.h: wb_endpoint_on_row);
 *   6. per-conversation credit: a receiver grants bytes; a sender without
 *      credit is refused (WB_EAGAIN) and told by on_credit when it may go on.
 *
 * Keys are (peer, message id). Ids are unique per connection, not only per
 * sender: the side that dialed allocates odd ids and the side that accepted
 * even ones, so a conversation is keyed by its opening id on both sides.
 *
 * Sans-io: the dispatcher sends through a callback and learns the time from
 * its caller (wb_dispatch_tick), so it is unit-tested with no sockets, threads
 * or clock. It belongs to one thread (the actor lane, in an app) and is not
 * thread-safe.
 *
 * Ownership: wb_dispatch_input always takes the blob; a handler's msg and its
 * body are valid only during the call (copy what you keep).
 */
#ifndef WB_DISPATCH_H
#define WB_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "dispatch/envelope.h"
#include "runtime/event.h"

typedef struct wb_dispatch_s wb_dispatch_t;
typedef struct wb_conv_s wb_conv_t;

typedef struct {
    uint64_t peer;
    wb_envelope_t env;
    wb_conv_t *conv; /* the conversation env.regards names, when there is one */
} wb_msg_t;

/* Event type of the encoded blobs handed to the send callback. */
#define WB_EV_DISPATCH_BLOB 768

/* Reserved message types carried inside conversations. */
#define WB_MSG_CREDIT   0xFFFFFF01u /* body: 8-byte big-endian bytes granted */
#define WB_MSG_CONV_END 0xFFFFFF02u /* body: 4-byte big-endian status (0 = normal end) */

/* Credit a sender starts with in every conversation, before any grant. */
#define WB_CONV_INITIAL_CREDIT (64u * 1024u)

/* Hand one encoded blob to the transport for `peer`. Return 0 when it took
 * the blob, or an error (the dispatcher then frees it). */
typedef int (*wb_dispatch_send_cb)(void *ctx, uint64_t peer, wb_event_t *blob);

typedef struct {
    wb_dispatch_send_cb send;
    void *ctx;
    uint32_t credit_window; /* bytes a conversation may have unconsumed (default 256 KiB) */
    size_t max_message;     /* largest encoded message sent or accepted (default 1 MiB) */
    int trace;              /* routing trace: one log line per message */
} wb_dispatch_config_t;

typedef struct {
    uint64_t received, by_type, by_reply, by_conv, by_row;
    uint64_t dropped_unknown;   /* rule 4 */
    uint64_t dropped_malformed; /* undecodable header */
    uint64_t timeouts;
    uint64_t sent;
} wb_dispatch_stats_t;

int wb_dispatch_new(wb_dispatch_t **out, const wb_dispatch_config_t *cfg);

/* Fail every pending request with WB_ECLOSED, end every conversation with
 * WB_ECLOSED, and free. */
void wb_dispatch_free(wb_dispatch_t *d);

/* A peer joins with its codec; `dialer` says which id parity is ours. */
int wb_dispatch_peer_add(wb_dispatch_t *d, uint64_t peer, const wb_codec_t *codec, int dialer);

/* A peer left: its pending requests fail with `status`, its conversations end
 * with `status`. Unknown peers are ignored. */
void wb_dispatch_peer_remove(wb_dispatch_t *d, uint64_t peer, int status);

/* Route one blob from peer. Always takes ownership of blob. Returns 0 when a
 * handler ran, WB_ENOENT when dropped for want of one, WB_EPROTO when the
 * header could not be decoded. queued_ns, when not 0, is how long the blob
 * waited between socket and dispatcher (for the trace). */
int wb_dispatch_input(wb_dispatch_t *d, uint64_t peer, wb_event_t *blob, uint64_t queued_ns);

/* Fire request timeouts due at now_ms. Returns the next deadline, or
 * UINT64_MAX when none is pending. */
uint64_t wb_dispatch_tick(wb_dispatch_t *d, uint64_t now_ms);

void wb_dispatch_stats(const wb_dispatch_t *d, wb_dispatch_stats_t *out);

/* ---- rule 1: stateless handlers by type ---------------------------------- */

typedef void (*wb_type_cb)(wb_dispatch_t *d, const wb_msg_t *m, void *arg);

/* Register (or replace, or with cb NULL remove) the handler for `type`. */
int wb_dispatch_on_type(wb_dispatch_t *d, uint32_t type, wb_type_cb cb, void *arg);

/* ---- rule 5: handlers keyed by a database rowid ----------------------------- */

/* A message of a row type regarding a row (in_regards_to is the rowid,
 * whatever conversations exist). The callback usually hands it to the
 * database lane. */
typedef void (*wb_row_cb)(wb_dispatch_t *d, const wb_msg_t *m, int64_t rowid, void *arg);

/* Register (or with cb NULL remove) the row handler for `type`. */
int wb_dispatch_on_row(wb_dispatch_t *d, uint32_t type, wb_row_cb cb, void *arg);

/* ---- sending and rule 2: one-shot reply handlers ------------------------- */

/* Send a message; its id is allocated here (*id, may be NULL). */
int wb_dispatch_send(wb_dispatch_t *d, uint64_t peer, uint32_t type, uint64_t reply_to,
                     uint64_t regards, const void *body, size_t len, uint64_t *id);

/* m is NULL unless status is 0; status is WB_ETIMEDOUT or the peer's
 * removal status otherwise. */
typedef void (*wb_reply_cb)(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg);

/* Send a request and register cb for its one reply, for at most timeout_ms
 * after now_ms (0: no timeout). */
int wb_dispatch_request(wb_dispatch_t *d, uint64_t peer, uint32_t type, uint64_t regards,
                        const void *body, size_t len, uint64_t now_ms, uint64_t timeout_ms,
                        wb_reply_cb cb, void *arg, uint64_t *id);

/* Answer m: in_reply_to = m's id, in_regards_to = m's conversation, if any. */
int wb_dispatch_reply(wb_dispatch_t *d, const wb_msg_t *m, uint32_t type, const void *body,
                      size_t len);

/* Forget a pending request without calling its handler. */
int wb_dispatch_cancel(wb_dispatch_t *d, uint64_t peer, uint64_t id);

/* ---- rule 3 and 6: conversations ----------------------------------------- */

typedef struct {
    const char *name;
    /* A message regarding the conversation (not a reply: replies go to their
     * one-shot handler). Call wb_conv_consumed when its bytes are processed. */
    void (*on_msg)(wb_conv_t *c, const wb_msg_t *m);
    /* A sender refused with WB_EAGAIN has credit again. May be NULL. */
    void (*on_credit)(wb_conv_t *c);
    /* The conversation is over (closed by either side, or the peer left);
     * release the state here. The conversation is freed after it returns. */
    void (*on_end)(wb_conv_t *c, int status);
} wb_conv_def_t;

/* Open a conversation with peer: send the opening message (type, body) and
 * keep the conversation under its id. */
int wb_conv_open(wb_dispatch_t *d, uint64_t peer, uint32_t type, const void *body, size_t len,
                 const wb_conv_def_t *def, void *state, wb_conv_t **out);

/* From a type handler: take the opening message m as the start of a
 * conversation keyed by m's id. */
int wb_conv_accept(wb_dispatch_t *d, const wb_msg_t *m, const wb_conv_def_t *def, void *state,
                   wb_conv_t **out);

/* Send in the conversation (in_regards_to = its id). WB_EAGAIN when the peer
 * has granted no credit: nothing was sent, on_credit will say when to retry. */
int wb_conv_send(wb_conv_t *c, uint32_t type, const void *body, size_t len, uint64_t *id);

/* Send a request in the conversation with a one-shot reply handler. */
int wb_conv_request(wb_conv_t *c, uint32_t type, const void *body, size_t len, uint64_t now_ms,
                    uint64_t timeout_ms, wb_reply_cb cb, void *arg, uint64_t *id);

/* The receiver has processed n bytes of bodies: credit flows back. */
void wb_conv_consumed(wb_conv_t *c, size_t n);

/* End the conversation: the peer is told (WB_MSG_CONV_END), on_end runs with
 * `status` here, and the conversation is freed. */
void wb_conv_close(wb_conv_t *c, int status);

uint64_t wb_conv_id(const wb_conv_t *c);
uint64_t wb_conv_peer(const wb_conv_t *c);
void *wb_conv_state(const wb_conv_t *c);
wb_dispatch_t *wb_conv_dispatch(const wb_conv_t *c);
/* Bytes this side may still send before it must wait for credit. */
int64_t wb_conv_credit(const wb_conv_t *c);

#endif
