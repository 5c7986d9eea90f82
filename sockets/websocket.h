/*
 * websocket.h - RFC 6455 WebSocket, sans-io: a wb_ws_conn_t is fed the raw
 * bytes a TCP connection received and hands back the bytes to write and the
 * messages that arrived. No sockets, no threads, no clock.
 *
 * The opening handshake is parsed with http-parser, frames with wslay
 * (wslay_event: reassembly of fragments, ping -> pong, the close handshake,
 * mask checks). Neither is reimplemented here.
 *
 * Server: answers `GET /` (no upgrade) with a 200 text/plain page
 * (opts.page), accepts an upgrade only on opts.path (other paths 404; a bad
 * upgrade 400, a version other than 13 426), never accepts an extension
 * (permessage-deflate offers are declined by leaving them out of the 101).
 * Request headers beyond opts.max_header bytes end the connection (431).
 * Client frames must be masked (else close 1002); server frames are not.
 * Client: sends the upgrade request at wb_ws_new, checks the 101 and its
 * Sec-WebSocket-Accept, masks every frame (getrandom(2)).
 * Both: a message above opts.max_message closes with 1009; reserved bits
 * (compression) close with 1002; text that is not UTF-8 closes with 1007.
 *
 * Using it. After wb_ws_new, and after every wb_ws_feed, wb_ws_send or
 * wb_ws_close, write out what wb_ws_output() returns and call
 * wb_ws_output_done(). When wb_ws_state() is WB_WS_DONE, write the last
 * output and close the TCP connection. The handshake timeout is the glue's
 * clock: start a timer of opts.handshake_timeout_ms when the connection
 * opens and call wb_ws_timeout() when it fires.
 *
 * Memory. An open connection that is between messages holds only its own
 * struct (about 150 bytes): the handshake's state is freed when the
 * handshake ends, wslay's context (8.8 KB) is made when bytes arrive or a
 * message is sent and released again once no frame is half-read, nothing
 * waits to be written and no close has started, and the output buffer of an
 * idle connection is freed by wb_ws_output_done. A server can so hold many
 * idle connections; a busy one pays a malloc of the context per feed.
 *
 * Callbacks run inside wb_ws_feed (open_cb also inside wb_ws_new for
 * nothing; never re-entered) and may call wb_ws_send/wb_ws_close but not
 * wb_ws_free. Message payloads are valid only during the callback.
 *
 * Threads: a conn belongs to one thread at a time (in waybill, the actor
 * that owns the TCP connection); there is no global state.
 */
#ifndef WB_WEBSOCKET_H
#define WB_WEBSOCKET_H

#include <stddef.h>
#include <stdint.h>

typedef struct wb_ws_conn_s wb_ws_conn_t;

typedef enum { WB_WS_SERVER = 0, WB_WS_CLIENT } wb_ws_role_t;

typedef enum {
    WB_WS_HANDSHAKE = 0, /* upgrade request/response in progress */
    WB_WS_OPEN,          /* messages flow */
    WB_WS_DONE,          /* write the output, then close the TCP connection */
} wb_ws_state_t;

enum { WB_WS_TEXT = 1, WB_WS_BINARY = 2 };

/* Close codes (RFC 6455 7.4.1). */
enum {
    WB_WS_CLOSE_NORMAL = 1000,
    WB_WS_CLOSE_GOING_AWAY = 1001,
    WB_WS_CLOSE_PROTOCOL = 1002,
    WB_WS_CLOSE_NO_STATUS = 1005,
    WB_WS_CLOSE_ABNORMAL = 1006,
    WB_WS_CLOSE_BAD_DATA = 1007,
    WB_WS_CLOSE_TOO_BIG = 1009,
};

typedef struct {
    /* The handshake completed: messages may be sent. */
    void (*open_cb)(wb_ws_conn_t *c, void *user);
    /* One whole message (fragments reassembled). opcode WB_WS_TEXT or
     * WB_WS_BINARY. Text is checked to be UTF-8 (else close 1007, and
     * the message is not delivered). */
    void (*message_cb)(wb_ws_conn_t *c, void *user, int opcode, const uint8_t *data, size_t len);
    /* The peer's close frame arrived: code (1005 when it had none). */
    void (*close_cb)(wb_ws_conn_t *c, void *user, uint16_t code, const uint8_t *reason, size_t len);
} wb_ws_cb_t;

typedef struct {
    const char *path;              /* upgrade path (server) / request path (client), "/v1" */
    const char *host;              /* client: Host header ("localhost") */
    const char *page;              /* server: body of GET / */
    uint32_t max_message;          /* largest message received, bytes (1 MiB) */
    uint32_t max_header;           /* largest request/response head, bytes (16 KiB) */
    uint32_t handshake_timeout_ms; /* for the glue's timer (10000) */
} wb_ws_opts_t;

void wb_ws_opts_init(wb_ws_opts_t *o);

/* A new connection. opts (strings included) are copied; cb is copied.
 * A client's upgrade request is in the output at once. Returns 0,
 * WB_EINVAL or WB_ENOMEM. */
int wb_ws_new(wb_ws_conn_t **out, wb_ws_role_t role, const wb_ws_opts_t *opts, const wb_ws_cb_t *cb,
              void *user);
void wb_ws_free(wb_ws_conn_t *c);

/* Take the bytes in[0..len) the peer sent. Returns 0, or the error that ended
 * the connection (state is then WB_WS_DONE; output may still hold a close
 * frame or an HTTP error response): WB_EPROTO (bad handshake or frames),
 * WB_ETOOBIG (head or message too big), WB_ENOMEM. Bytes fed after DONE are
 * ignored. */
int wb_ws_feed(wb_ws_conn_t *c, const uint8_t *in, size_t len);

/* Queue one message (copied). WB_EAGAIN before the handshake completed,
 * WB_ECLOSED once closing, WB_EINVAL for a bad opcode. */
int wb_ws_send(wb_ws_conn_t *c, int opcode, const uint8_t *data, size_t len);

/* Start the close handshake (or, during the handshake, just end). */
int wb_ws_close(wb_ws_conn_t *c, uint16_t code, const char *reason);

/* The handshake timer fired: if the handshake is not complete, the
 * connection is done (returns 1), else nothing happens (returns 0). */
int wb_ws_timeout(wb_ws_conn_t *c);

/* Bytes to write now; *p valid until the next call on c. */
size_t wb_ws_output(wb_ws_conn_t *c, const uint8_t **p);
/* They were taken (copied into a send). */
void wb_ws_output_done(wb_ws_conn_t *c);

wb_ws_state_t wb_ws_state(const wb_ws_conn_t *c);
/* The HTTP status the server answered (101, 200, 400, 404...), or the one
 * the client received; 0 before. */
int wb_ws_http_status(const wb_ws_conn_t *c);
/* The close code received from the peer (0 if none yet). */
uint16_t wb_ws_close_code(const wb_ws_conn_t *c);
/* The close code this side sent, once DONE after a close handshake (1002,
 * 1007, 1009 for the errors above, the peer's code when echoing); 0 if
 * none was sent. */
uint16_t wb_ws_close_code_sent(const wb_ws_conn_t *c);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)); out gets 28
 * characters and a NUL. */
void wb_ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
