/*
 * endpoint.h - a dispatcher over TCP connections, for one actor.
 *
 * The glue between sockets/ (blobs and connection events on the network
 * lane) and dispatch/ (routing on the actor lane). The owning actor feeds it
 * every event it receives; the endpoint takes the ones that are about its
 * connections and timers:
 *
 *   WB_EV_TCP_OPENED   the connection becomes a dispatch peer (on_open)
 *   WB_EV_TCP_BLOB     routed by the dispatcher
 *   WB_EV_TCP_CLOSED   the peer is removed: its pending requests fail and its
 *                      conversations end with the close status (on_close)
 *   WB_EV_TCP_BACKPRESSURE / WRITABLE   tracked per connection (on_writable)
 *   WB_EV_RESUME       from the network or database lane: held sends go out
 *   WB_EV_TIMER        its own timer: request timeouts fire
 *   WB_EV_DB_RESULT    answers to the row requests it made (rule 5)
 *
 * Rule 5: wb_endpoint_on_row makes messages of a type that regard a row go
 * to a handler on the database thread (db/db.h, wb_db_request_call); the
 * handler's reply bytes go back to the sender in reply to the message.
 *
 * Sends never lose a message: when the network lane's inbox refuses one,
 * the endpoint holds it (and everything after it for that connection, to
 * keep order) until the lane says it may resume. At most max_held messages
 * wait per connection; past that the connection is closed with WB_ETOOBIG.
 *
 * Threads: the actor lane only, inside the owning actor's handler.
 */
#ifndef WB_ENDPOINT_H
#define WB_ENDPOINT_H

#include <stdint.h>

#include "dispatch/dispatch.h"
#include "db/db.h"
#include "runtime/actor.h"
#include "sockets/tcp.h"

typedef struct wb_endpoint_s wb_endpoint_t;

typedef struct {
    const wb_codec_t *codec; /* default: wb_codec_msgpack */
    uint32_t credit_window;  /* passed to the dispatcher */
    size_t max_message;      /* passed to the dispatcher */
    int trace;               /* routing trace */
    size_t max_held;         /* held sends per connection (default 4096) */
    /* A connection joined: dialed says which side we are; addr is the peer's
     * address text; cookie the listener or dialer it came from. May be NULL. */
    void (*on_open)(wb_endpoint_t *ep, uint64_t conn, int dialed, const char *addr, uint64_t cookie,
                    void *user);
    /* A connection ended (after its peer was removed from the dispatcher). */
    void (*on_close)(wb_endpoint_t *ep, uint64_t conn, int status, const char *reason, void *user);
    /* A connection's write queue crossed a watermark: writable 0 or 1. */
    void (*on_writable)(wb_endpoint_t *ep, uint64_t conn, int writable, void *user);
    /* A row request failed (code, the database's message): answer the peer
     * in the app's own terms. May be NULL (then the failure is logged). */
    void (*on_row_error)(wb_endpoint_t *ep, const wb_msg_t *m, int code, const char *msg,
                         void *user);
    void *user;
} wb_endpoint_config_t;

int wb_endpoint_new(wb_endpoint_t **out, wb_actor_t *owner, const wb_endpoint_config_t *cfg);

/* Listen / dial through the endpoint, so it knows which side of each
 * connection it is (the dialer's message ids are odd). Same contracts as
 * wb_tcp_listen, wb_tcp_dial and wb_tcp_dial_persistent (sockets/tcp.h), with
 * the events going to the owning actor. */
int wb_endpoint_listen(wb_endpoint_t *ep, const char *host, uint16_t port,
                       const wb_tcp_opts_t *opts, uint64_t *listener_id);
int wb_endpoint_dial(wb_endpoint_t *ep, const char *host, uint16_t port, const wb_tcp_opts_t *opts,
                     uint64_t *conn_id);
int wb_endpoint_dial_persistent(wb_endpoint_t *ep, const char *host, uint16_t port,
                                const wb_tcp_opts_t *opts, uint64_t *dialer_id);

/* Ends every peer (WB_ECLOSED) and frees. Connections are not closed: close
 * them with wb_tcp_close first if they should go. */
void wb_endpoint_free(wb_endpoint_t *ep);

/* Offer ev to the endpoint. Returns 1 when it took (and freed or kept) ev,
 * 0 when ev is not its business and the caller still owns it. */
int wb_endpoint_handle(wb_endpoint_t *ep, wb_event_t *ev);

wb_dispatch_t *wb_endpoint_dispatch(wb_endpoint_t *ep);

/* Rule 5: messages of `type` regarding row R run database handler
 * `handler` (an index into the database config's handlers) for R with the
 * message body; its reply goes back as `reply_type`, in reply to the
 * message. flags: WB_DB_DURABLE to answer only once synced. */
int wb_endpoint_on_row(wb_endpoint_t *ep, uint32_t type, uint32_t handler, uint32_t reply_type,
                       unsigned flags);

/* Send a database request (routed from the owner), holding it in order while
 * the database lane's inbox is full. Always takes req; WB_ECLOSED when the
 * lane has stopped (req freed). */
int wb_endpoint_db_send(wb_endpoint_t *ep, wb_event_t *req);

/* Cookies at or above this are the endpoint's own database requests; owners
 * keep theirs below it. */
#define WB_ENDPOINT_COOKIE_BASE (1ull << 63)

/* Is the connection below its write watermark (and holding nothing)? */
int wb_endpoint_writable(wb_endpoint_t *ep, uint64_t conn);

/* Milliseconds now on the runtime's clock, for dispatch request timeouts;
 * re-arms the endpoint's timer when a request with a timeout was added. */
uint64_t wb_endpoint_now(wb_endpoint_t *ep);
void wb_endpoint_rearm(wb_endpoint_t *ep);

#endif
