/*
 * client.h - a client of the signaling server (server.h; wire format in
 * proto.h): one actor per server connection. waddell's client (notes
 * peers.md 2.4, 2.5) with its faults fixed.
 *
 * Connection. The client actor keeps a raw TCP connection to host:port
 * through wb_tcp_dial_persistent: growing, capped, randomized delays
 * between attempts, for ever, until wb_sig_client_close. With server_cert
 * the connection is TLS and that PEM certificate is the only one trusted
 * (pinned); the name checked is server_name, else the dialed host when the
 * certificate is valid for it, else the certificate's first DNS name or its
 * Common Name (as waddell).
 *
 * Ids. The server's first frame on every connection is the client's id; a
 * reconnect gets a NEW id. Each is reported once per connection: on_id is
 * called and the owner gets WB_EV_SIG_ID. Before that frame, and from a
 * drop until the next id, the client is not connected.
 *
 * Sending. wb_sig_client_send queues one message on the current
 * connection, or fails: WB_ECLOSED when not connected (no id yet, or the
 * connection dropped). Nothing is ever queued across connections and
 * nothing is resent after a drop (as waddell): a message queued just
 * before a drop may be lost without an error, and the server drops
 * messages to unknown ids or full recipients silently unless notices are
 * asked for (cfg.notices: WB_EV_SIG_NOTICE to the owner). Keepalive frames
 * go out every keepalive_ms while connected.
 *
 * Receiving: topics are separate streams. Each topic's messages go to the
 * actor subscribed to it (else to the default subscriber, else they are
 * dropped and counted) as WB_EV_SIG_MESSAGE data events, in order. When a
 * subscriber's mailbox refuses one (wb_actor_send WB_EAGAIN: it does not
 * keep up), that subscription holds its messages, at most hold_messages or
 * hold_bytes; beyond that its new messages are dropped and counted, and
 * the held ones go on when the runtime says the mailbox drained
 * (WB_EV_RESUME). Only that subscription waits: the connection is read on
 * and other topics flow. Topics that share an actor share its mailbox, so
 * they wait together; the default subscriber is one subscription for all
 * the topics it takes. A subscriber that is gone (WB_ENOENT) loses its
 * messages, counted as dropped, until it is replaced.
 *
 * Events to the owner actor (cfg.owner; none when 0). Control events (never
 * refused) but the notice:
 *   WB_EV_SIG_ID       payload: the new id (16 bytes); cookie: the
 *                      connection's number (1 for the first, 2 after the
 *                      first reconnect, ...).
 *   WB_EV_SIG_DOWN     a connection ended or an attempt failed; status: why
 *                      (tcp.h codes), cookie: ms until the next attempt,
 *                      payload: the reason text (NUL-terminated).
 *   WB_EV_SIG_WRITABLE a send that returned WB_EAGAIN may be tried again.
 *   WB_EV_SIG_NOTICE   (data; dropped if refused) the server dropped a
 *                      message of ours: wb_sig_notice_get reads it.
 * And to subscribers:
 *   WB_EV_SIG_MESSAGE  (data) one message: wb_sig_msg_get reads it; cookie:
 *                      the connection's number it came on.
 * Events come from the client actor (ev->src = its id).
 *
 * Threads: everything here runs on the actor lane (from an actor's handler
 * or wb_rt_call), or before wb_rt_start for wb_sig_client_start and
 * subscribe. on_id runs on the actor lane.
 *
 * Who frees what: the client actor owns its state; wb_sig_client_close or
 * its parent's end frees it (held messages too). Config strings are
 * copied. A subscriber owns the events it receives (wb_event_free).
 */
#ifndef WB_SIGNAL_CLIENT_H
#define WB_SIGNAL_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "apps/signal/proto.h"
#include "runtime/actor.h"
#include "runtime/event.h"
#include "runtime/rt.h"

/* Event types: 1600-1619 belong to apps/signal/. */
enum {
    WB_EV_SIG_MESSAGE = 1600,
    WB_EV_SIG_ID,
    WB_EV_SIG_DOWN,
    WB_EV_SIG_WRITABLE,
    WB_EV_SIG_NOTICE,
};

/* on_id: a new connection's id, on the actor lane. server is "host:port". */
typedef void (*wb_sig_id_cb)(void *arg, uint64_t client, const char *server,
                             const uint8_t id[WB_SIG_ID_LEN], uint64_t conn_no);

typedef struct {
    const char *host;            /* the server (required) */
    uint16_t port;               /* (default 62443) */
    const char *server_cert;     /* PEM: TLS, trusting only this certificate (default NULL: TCP) */
    const char *server_name;     /* the name to check in it (default: see above) */
    uint32_t keepalive_ms;       /* (default 30000; 0: none) */
    uint32_t reconnect_min_ms;   /* first delay ceiling between attempts (default 100) */
    uint32_t reconnect_max_ms;   /* largest delay (default 5000, waddell's) */
    uint32_t connect_timeout_ms; /* per attempt, TLS handshake included (default 10000) */
    uint32_t hold_messages;      /* per subscription, while its actor refuses (default 256) */
    uint32_t hold_bytes;         /* per subscription (default 1 MiB) */
    size_t write_high;           /* queued bytes above which sends return WB_EAGAIN (1 MiB) */
    int notices;                 /* nonzero: ask the server for drop notices */
    uint64_t owner;              /* actor for ID, DOWN, WRITABLE, NOTICE (0: none) */
    uint64_t default_sub;        /* actor for topics nobody subscribed (0: drop them) */
    wb_sig_id_cb on_id;          /* may be NULL */
    void *arg;
} wb_sig_client_config_t;

typedef struct {
    uint64_t connections;   /* connections that gave an id */
    uint64_t failures;      /* attempts failed and connections dropped */
    uint64_t received;      /* messages from the server */
    uint64_t delivered;     /* handed to a subscriber's mailbox */
    uint64_t held;          /* waiting now for a subscriber */
    uint64_t dropped_full;  /* a subscription's holding was full */
    uint64_t dropped_nosub; /* no subscriber, or it was gone */
    uint64_t sent, send_refused, keepalives, notices;
} wb_sig_client_stats_t;

/* One message of a WB_EV_SIG_MESSAGE event. body points into the event. */
typedef struct {
    uint8_t from[WB_SIG_ID_LEN];
    uint16_t topic;
    const uint8_t *body;
    size_t body_len;
} wb_sig_msg_t;

/* A WB_EV_SIG_NOTICE: a message of ours to `to` on `topic` was dropped. */
typedef struct {
    uint8_t code; /* WB_SIG_NOTICE_UNKNOWN or WB_SIG_NOTICE_FULL */
    uint8_t to[WB_SIG_ID_LEN];
    uint16_t topic;
} wb_sig_notice_t;

void wb_sig_client_config_init(wb_sig_client_config_t *cfg);

/* Create the client actor (child of parent; NULL: the runtime's) and start
 * dialing. Returns 0 and its id, WB_EINVAL (no host; server_cert that
 * cannot be read), WB_ENOMEM, WB_ECLOSED. */
int wb_sig_client_start(wb_rt_t *rt, wb_actor_t *parent, const wb_sig_client_config_t *cfg,
                        uint64_t *client);

/* Close the connection and end the actor; held messages are freed.
 * WB_ENOENT if there is no such client. */
int wb_sig_client_close(wb_rt_t *rt, uint64_t client);

/* Send body to peer `to` on topic. Copies body; the caller keeps it.
 * Returns 0 (queued on the connection; see "Sending" for what that
 * promises), WB_ECLOSED (not connected), WB_EINVAL (reserved topic, body
 * over WB_SIG_MAX_BODY, zero id), WB_EAGAIN (the write queue is above
 * write_high or the network lane is full: the owner gets WB_EV_SIG_WRITABLE
 * when sending makes sense again), WB_ENOMEM, WB_ENOENT (no such client). */
int wb_sig_client_send(wb_rt_t *rt, uint64_t client, const uint8_t to[WB_SIG_ID_LEN],
                       uint16_t topic, const void *body, size_t len);
/* The same with the body in pieces, sent as one message. */
int wb_sig_client_sendv(wb_rt_t *rt, uint64_t client, const uint8_t to[WB_SIG_ID_LEN],
                        uint16_t topic, const struct iovec *iov, int iovcnt);

/* Route topic's messages to actor (0: remove the subscription; its held
 * messages are then freed). Replacing the actor keeps the held messages
 * for the new one. WB_EINVAL for a reserved topic. */
int wb_sig_client_subscribe(wb_rt_t *rt, uint64_t client, uint16_t topic, uint64_t actor);
/* Route the topics nobody subscribed to actor (0: drop them). */
int wb_sig_client_set_default(wb_rt_t *rt, uint64_t client, uint64_t actor);

/* The current id: 0, or WB_ECLOSED when not connected. */
int wb_sig_client_id(wb_rt_t *rt, uint64_t client, uint8_t id[WB_SIG_ID_LEN]);

int wb_sig_client_stats(wb_rt_t *rt, uint64_t client, wb_sig_client_stats_t *out);
/* One subscription's counters (topic, or default when is_default):
 * delivered, held now, dropped. WB_ENOENT when there is none. */
int wb_sig_client_topic_stats(wb_rt_t *rt, uint64_t client, uint16_t topic, int is_default,
                              uint64_t *delivered, uint64_t *held, uint64_t *dropped);

/* Read a WB_EV_SIG_MESSAGE / WB_EV_SIG_NOTICE. 0, or WB_EINVAL when ev is
 * not one. */
int wb_sig_msg_get(const wb_event_t *ev, wb_sig_msg_t *out);
int wb_sig_notice_get(const wb_event_t *ev, wb_sig_notice_t *out);

/*
 * The manager: one client per server address, made on first use with a
 * shared configuration (its host and port are ignored), all closed
 * together. A plain object of the actor lane (not an actor). on_id, if
 * set, tells which server each id is from.
 */
typedef struct wb_sig_mgr_s wb_sig_mgr_t;

/* tmpl is copied (strings too). Returns 0, WB_ENOMEM. */
int wb_sig_mgr_new(wb_rt_t *rt, wb_actor_t *parent, const wb_sig_client_config_t *tmpl,
                   wb_sig_mgr_t **out);
/* The client for "host:port" ("[v6]:port" too), started if it has none
 * (or its client has been closed). Returns 0, WB_EINVAL, WB_ENOMEM. */
int wb_sig_mgr_client(wb_sig_mgr_t *m, const char *addr, uint64_t *client);
/* Close every client and free the manager. */
void wb_sig_mgr_close(wb_sig_mgr_t *m);

/* "host:port" or "[v6]:port" into host (at most hostlen with its NUL) and
 * port. 0 or WB_EINVAL. */
int wb_sig_parse_addr(const char *addr, char *host, size_t hostlen, uint16_t *port);

#endif
