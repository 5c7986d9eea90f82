/*
 * tcp.h - TCP on the network lane: listen, dial, reconnecting dials, framed
 * blobs in and out, write queues with backpressure.
 *
 * sockets/ moves opaque blobs. Each message on the wire is a 4-byte
 * big-endian length and that many bytes (sockets/frame.h); sockets/ never
 * looks inside them. What it sends upward is connection lifecycle events and
 * the blobs themselves, nothing else.
 *
 * Threads and ids. All sockets state lives on the network lane (WB_LANE_NET)
 * and is touched only there. The functions below may be called from any
 * thread once the runtime is started (listen/dial/close also before it):
 * each validates its arguments, takes a fresh id from a process-wide atomic
 * counter (ids are never 0 and never reused) and posts a request event to the
 * network lane, so it can return the id at once. Requests posted by one
 * thread are taken in the order they were posted. wb_sockets_attach() must
 * have been called on the runtime, or the requests are dropped unread (the
 * lane's `dropped` counter says so).
 *
 * Upward events go to (owner_lane, owner), with src_lane = WB_LANE_NET and
 * src = the connection, listener or dialer id they are about. OPENED, BLOB
 * and CLOSED of a connection carry cookie = the listener or dialer it came
 * from (0 for a one-shot dial). Text payloads are NUL-terminated; len
 * excludes the NUL. All are control events (never refused, see rt.h) except
 * WB_EV_TCP_BLOB.
 *
 *   WB_EV_TCP_LISTENING   src = listener. status 0: payload is the bound
 *                         address ("127.0.0.1:40312", "[::1]:40312") and
 *                         cookie the bound port, so port 0 works. status < 0:
 *                         payload is the reason; the listener is gone.
 *   WB_EV_TCP_OPENED      src = new connection. Payload: the peer's address.
 *                         cookie: the listener that accepted it or the dialer
 *                         that made it (0 for wb_tcp_dial).
 *   WB_EV_TCP_BLOB        src = connection. Payload: one message's bytes. A
 *                         data event: see "Reading" below. status: when it
 *                         was handed up, in microseconds on a 31-bit wrapping
 *                         clock (wb_tcp_blob_queued_ns tells how long ago).
 *   WB_EV_TCP_CLOSED      src = the connection, listener or dialer that ended.
 *                         status: the reason code, payload: the reason text
 *                         (table below). The last event about that id.
 *   WB_EV_TCP_BACKPRESSURE src = connection: its write queue passed
 *                         write_high; cookie = bytes queued. Stop sending.
 *   WB_EV_TCP_WRITABLE    src = connection: its write queue fell back to
 *                         write_low; cookie = bytes queued. Send again.
 *   WB_EV_TCP_RETRY       src = dialer: an attempt failed or its connection
 *                         ended; status = why, cookie = the delay in ms before
 *                         the next attempt, payload = reason text.
 *   WB_EV_TCP_SPLICED     src = a, cookie = b of wb_tcp_splice(a, b): the
 *                         splice ended (or was refused). status: the reason
 *                         code, payload: a wb_tcp_spliced_t (bytes each way,
 *                         who ended it, the reason text). See "Splicing".
 *
 * CLOSED reasons (status, example text):
 *   0            "closed by owner", "listener closed", "dialer closed"
 *   WB_ECLOSED   "peer closed"; WebSocket: "peer closed (code 1000)"
 *   WB_EPROTO    "peer closed in the middle of a message (10 of 100 bytes)";
 *                WebSocket: "websocket upgrade refused: HTTP 404",
 *                "websocket: protocol error (close 1002)", "websocket: text
 *                is not UTF-8 (close 1007)"; TLS: "tls: certificate verify
 *                failed: certificate has expired (host localhost)", "tls:
 *                handshake failed: peer closed the connection"
 *   WB_ETOOBIG   "message of 5000000 bytes exceeds maximum 1048576" (received
 *                or sent), "write queue overflow: 8388612 bytes queued, cap
 *                8388608"; WebSocket: "websocket: message too big (close
 *                1009)"
 *   WB_EIO       "connection reset", "connect 127.0.0.1:9: connection refused"
 *   WB_ETIMEDOUT "connect 10.0.0.1:9: timed out after 10000 ms", "websocket
 *                upgrade: no answer within 10000 ms", "tls: handshake timed
 *                out after 10000 ms"
 *   WB_EINVAL    TLS: "tls: ca_file /x.pem: No such file or directory"
 *   WB_EBUSY     "too many connections (limit 16384)"
 *   WB_ENOENT    "resolve no.such.host: unknown node or service" (WB_EIO when
 *                the resolver itself failed)
 *   WB_ENOMEM, WB_ESYS   with the system's text
 *
 * Lifecycle of each id:
 *   listener   LISTENING(0) ... CLOSED after wb_tcp_close; or LISTENING(<0);
 *              or CLOSED alone when closed before it could listen. Its
 *              accepted connections outlive it.
 *   dial       OPENED, BLOB..., CLOSED; or CLOSED alone when the dial failed.
 *   dialer     for each connection: OPENED, BLOB..., CLOSED (cookie = the
 *              dialer); RETRY after each failure or drop; CLOSED (src = the
 *              dialer) after wb_tcp_close. When the runtime stops, everything
 *              is closed at once and no more events are sent.
 *
 * Reading. Bytes are read into one shared buffer (read_buffer bytes), cut
 * into messages by the frame decoder, and each message is copied once into a
 * WB_EV_TCP_BLOB event (a message that spans reads is assembled in its own
 * buffer, which the event then owns). A length prefix above max_message
 * closes the connection (WB_ETOOBIG) before anything is allocated for it. If
 * the owner's inbox refuses a blob (WB_EAGAIN), sockets keeps that blob and
 * the unread rest of the buffer, stops reading the connection, and resumes
 * when the runtime's WB_EV_RESUME reaches the connection: the sending peer is
 * held by TCP flow control and nothing is lost or grows. Per connection,
 * memory is bounded by one held blob, one partial message (each at most
 * max_message) and one read buffer. When a connection is closed from this
 * side (wb_tcp_close, an error, the runtime stopping), what was received but
 * not yet delivered is dropped, as TCP drops unread data on close.
 *
 * Writing. wb_tcp_send queues one message; the frame header is added here.
 * Messages queued during one loop turn go out together (a writev per 64). Queued bytes
 * (4 + len per message, counted from wb_tcp_send's arrival on the lane until
 * the write completes) raise BACKPRESSURE above write_high and WRITABLE again
 * at write_low. Passing write_hard_cap closes the connection with
 * WB_ETOOBIG "write queue overflow": a sender that ignores backpressure cannot
 * make the process grow. Messages sent to a dial that has not connected yet
 * wait for it; messages sent to a closed or unknown id are freed (counted as
 * dropped).
 *
 * Closing. wb_tcp_close on a connection sends its CLOSED (status 0) at once,
 * delivers nothing more, then flushes what is queued, sends FIN and waits up
 * to linger_ms for the peer to finish before closing the socket. On a
 * listener it stops accepting. On a dialer it stops reconnecting and closes
 * its connection the same way. Closing an id that has already ended is a
 * no-op.
 *
 * Reconnecting (wb_tcp_dial_persistent). The first attempt starts at once.
 * After a failed attempt or a dropped connection the dialer waits a random
 * delay in [c/2, c] with c = min(reconnect_max_ms, reconnect_min_ms * 2^n),
 * n counting failures since the last connection that lasted at least
 * reconnect_reset_ms: growing, capped, and spread so that many clients of a
 * restarted server do not return together. (Not "full jitter" [0, c]: a
 * delay near 0 would hammer a server that just went away.) Each connection
 * gets a new id.
 *
 * Raw streams (opts.raw, for protocols with their own framing such as
 * WebSocket, sockets/websocket.h). No length prefix either way: each BLOB
 * carries the bytes of one read as they came (at most read_buffer bytes;
 * boundaries mean nothing), and wb_tcp_send writes the payload's bytes as
 * they are (still at most max_message per send). Everything else (pause,
 * backpressure, closing) is the same.
 *
 * WebSocket streams (opts.ws, RFC 6455 through sockets/websocket.h). The
 * connections of a listener (server role) or dial/dialer (client role) speak
 * WebSocket, and the owner sees whole messages exactly as it sees framed
 * blobs: the handshake, framing, masking, fragment reassembly, ping/pong and
 * the close handshake all run here, on the network lane. raw is implied.
 *   Server. An accepted connection first completes the opening handshake
 *   here: `GET /` is answered with ws->page, other paths with 404, bad
 *   upgrades with 400 (426, 405, 431: see websocket.h), and the connection
 *   is closed, all without the owner hearing of it (no OPENED, no CLOSED);
 *   so is one whose handshake is not complete after ws->handshake_timeout_ms.
 *   OPENED (payload: the peer's address) comes only with the upgrade.
 *   Client. After the TCP connect the upgrade request is written; OPENED
 *   comes when the 101 has been checked (within handshake_timeout_ms of the
 *   connect). A refused or failed upgrade ends the dial with CLOSED
 *   WB_EPROTO "websocket upgrade refused: HTTP 404" (WB_ETIMEDOUT when the
 *   answer does not come); for a dialer that is a failed attempt (RETRY).
 *   The Host header is ws->host, or the dialed host when that is NULL.
 *   Messages. Each BLOB is one whole message (at most ws->max_message);
 *   WB_TCP_BLOB_BINARY in ev->flags marks a binary one, text has it clear.
 *   wb_tcp_send sends the payload as one unfragmented message: binary if the
 *   blob's flags have WB_TCP_BLOB_BINARY, else text (the caller sees that
 *   it is UTF-8). Queued bytes count the frames. Messages sent before OPENED
 *   wait, as for any dial, and are framed when the upgrade is done.
 *   Closing. wb_tcp_close: CLOSED(0) at once, then a close frame 1000 after
 *   what is queued, FIN and the linger as above. The peer's close frame is
 *   echoed and ends the connection: CLOSED WB_ECLOSED "peer closed (code
 *   1000)" (the code it sent); a peer that just drops TCP gives "peer
 *   closed". A protocol error closes with the close frame websocket.h
 *   produces and CLOSED WB_EPROTO (1002, 1007: text that is not UTF-8) or
 *   WB_ETOOBIG (1009: a message above ws->max_message), e.g. "websocket:
 *   message too big (close 1009)"; one info log line each.
 *   Inbox refusal. Reads are fed to the WebSocket parser 4 KiB at a time;
 *   one such feed may yield several messages, and those the owner's inbox
 *   refuses are kept in order. Feeding stops after that chunk (the rest of
 *   the read is kept, reading stops) and on WB_EV_RESUME the kept messages
 *   are delivered before feeding and reading go on; a CLOSED that came with
 *   them waits behind them. So the messages held per connection are at most
 *   those of 4 KiB of input (or one message of any size), and after
 *   wb_tcp_pause at most those still arrive.
 *   Memory. An idle WebSocket connection costs about as much as a plain one:
 *   the handshake's state and wslay's buffers exist only while in use
 *   (websocket.h, "Memory"); docs/sockets.md has the measured figure.
 *
 * TLS streams (opts.tls, through sockets/tls.h: OpenSSL with memory BIOs,
 * run here on the network lane). A dial or dialer with opts.tls is a TLS
 * client over its TCP connection; a listener with opts.tls (cert_file and
 * key_file) makes its connections TLS servers. Framed, raw and WebSocket
 * streams all run over it unchanged: the length prefixes, the raw bytes or
 * the WebSocket upgrade and frames are the TLS plaintext.
 *   Verification (clients) is on unless tls->insecure: the chain against
 *   the system trust store or tls->ca_file, and the name tls->server_name
 *   (NULL: the dialed host; an IP address is checked against the
 *   certificate's addresses), TLS 1.2 at least. One context per distinct
 *   CA file (or certificate and key) is made on the lane when first needed
 *   (the file is read then) and shared by the connections.
 *   OPENED comes only when the handshake (and the WebSocket upgrade, if
 *   any) is done, within tls->handshake_timeout_ms of the TCP connect (the
 *   upgrade has ws->handshake_timeout_ms more). A failed handshake ends a
 *   dial with CLOSED WB_EPROTO and the reason ("tls: certificate verify
 *   failed: hostname mismatch (host relay.example)", "tls: handshake failed:
 *   wrong version number"), WB_ETIMEDOUT "tls: handshake timed out after
 *   10000 ms"; for a dialer it is a failed attempt (RETRY with that text).
 *   An accepted connection whose handshake fails is closed without the
 *   owner hearing of it, as for a WebSocket. A CA file, certificate or key
 *   that cannot be loaded: LISTENING or CLOSED WB_EINVAL "tls: ca_file
 *   /x.pem: No such file or directory".
 *   Messages sent before OPENED wait for the handshake. Queued bytes count
 *   the plaintext until it is encrypted (just before the loop polls), then
 *   the ciphertext until written.
 *   Closing. wb_tcp_close: CLOSED(0) at once, then what is queued, then
 *   close_notify, FIN and the linger. The peer's close_notify ends the
 *   connection: CLOSED WB_ECLOSED "peer closed" (close_notify is answered).
 *   Inbox refusal works as for the other streams: what is not yet delivered
 *   stays as ciphertext or decrypted records inside TLS, or in the stash.
 *
 * Splicing (wb_tcp_splice(a, b)). From the moment the request is taken on
 * this lane, the bytes read from a are written to b and those read from b to
 * a, here, without going up to the owner: splice(2) through one pipe per
 * direction (socket -> pipe -> socket, the bytes stay in the kernel), or
 * read/write through a buffer (opts->copy, or when no pipe can be made).
 * Only raw TCP connections (opts.raw, no ws, no tls) that are open can be
 * spliced.
 *   Order. Taking the request stops reading both. What was read and not yet
 *   delivered to the owner (a refused blob, the rest of its read) is queued
 *   to the other connection behind what the owner had queued there; those
 *   writes go out first, and the kernel-to-kernel copy starts when both
 *   write queues are empty. BLOBs handed up before the request was taken are
 *   the owner's: a splice cannot place them. An owner that must not have any
 *   in flight pauses both connections (wb_tcp_pause, taken in order) before
 *   whatever makes the peers send (e.g. its "ok"), then splices.
 *   Backpressure. A direction holds at most one pipe (or buffer) of bytes:
 *   while it holds bytes the destination has not taken, the source is not
 *   read (it is read again when the destination drains), so a slow reader
 *   holds its peer's sender back through TCP. The lane holds per splice at
 *   most 2 * pipe size (opts->pipe_size, 1 MiB asked; the kernel may give
 *   less, e.g. over the user's pipe-user-pages-soft) plus what was held when
 *   it started.
 *   During the splice the connections belong to it: wb_tcp_send to them is
 *   dropped (as to a closed id), wb_tcp_pause/resume do nothing, no BLOB,
 *   BACKPRESSURE or WRITABLE is sent. wb_tcp_close on either ends it.
 *   Ending. EOF or an error on one connection ends it: what is in flight
 *   toward the other is written (within the other's linger_ms), then the
 *   other is closed like wb_tcp_close (FIN, linger); what was in flight
 *   toward the one that ended is dropped. No half-close. wb_tcp_close on
 *   either, or opts->idle_timeout_ms without a byte either way, flushes both
 *   directions and closes both. Then the owner of a gets exactly one
 *   WB_EV_TCP_SPLICED (status, payload wb_tcp_spliced_t below), followed by
 *   the usual CLOSED of each connection (to its owner):
 *     status         SPLICED reason             CLOSED of the one / the other
 *     WB_ECLOSED     "connection 7: peer closed"   WB_ECLOSED "peer closed" /
 *                                                  0 "splice ended"
 *     WB_EIO ...     "connection 7: connection reset" (the same way)
 *     0              "connection 7: closed by owner"  0 "closed by owner" /
 *                                                  0 "splice ended"
 *     WB_ETIMEDOUT   "idle for 600000 ms"       both WB_ETIMEDOUT "splice
 *                                                  idle for 600000 ms"
 *   Refusal. A request the lane cannot take (an id closed or unknown:
 *   WB_ECLOSED; not an open raw TCP connection, e.g. a WebSocket or TLS one:
 *   WB_EINVAL; already spliced: WB_EBUSY; WB_ENOMEM) leaves both connections
 *   as they were and sends one SPLICED with started = 0 and the reason, to
 *   a's owner (b's when a is gone; none when both are gone: their CLOSED
 *   came already). When the runtime stops, splices end silently.
 *
 * SIGPIPE is blocked on the network lane's thread: a write to a peer that
 * reset is an error (EPIPE), never a signal.
 *
 * Every connection has TCP_NODELAY set.
 */
#ifndef WB_TCP_H
#define WB_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/event.h"
#include "runtime/rt.h"
#include "sockets/tls.h"
#include "sockets/websocket.h"

/* Event types: 512-767 belong to sockets/. */
enum {
    WB_EV_TCP_LISTENING = 512,
    WB_EV_TCP_OPENED,
    WB_EV_TCP_BLOB,
    WB_EV_TCP_CLOSED,
    WB_EV_TCP_BACKPRESSURE,
    WB_EV_TCP_WRITABLE,
    WB_EV_TCP_RETRY,
    WB_EV_TCP_SPLICED,
    /* Internal: requests to the network lane. */
    WB__EV_TCP_STATE = 760,
    WB__EV_TCP_CMD,
    WB__EV_TCP_SEND,
};

/* In a WB_EV_TCP_BLOB's flags: a binary WebSocket message (opts.ws); on a
 * blob given to wb_tcp_send: send it as binary. One of the bits event.h
 * leaves to services. */
#define WB_TCP_BLOB_BINARY (1u << 4)

/* Largest max_message accepted (a payload must fit one event). */
#define WB_TCP_MAX_MESSAGE_LIMIT WB_EVENT_MAX_LEN
/* Longest host name or address text, in bytes. */
#define WB_TCP_HOST_MAX 253

typedef struct {
    uint32_t max_connections; /* connections alive at once on the lane (default 16384) */
    uint32_t read_buffer;     /* bytes per read, shared by all connections (default 65536) */
} wb_sockets_config_t;

/* Per listener, dial or dialer. A zero field takes its default. */
typedef struct {
    uint32_t max_message;        /* largest message in or out, bytes (default 1 MiB) */
    size_t write_high;           /* BACKPRESSURE above this many queued bytes (1 MiB) */
    size_t write_low;            /* WRITABLE again at or below this (256 KiB) */
    size_t write_hard_cap;       /* close the connection past this (max(8 MiB,
                                    2 * write_high + 4 + max_message)) */
    uint32_t max_connections;    /* listener: accepted connections alive at once (1024) */
    uint32_t backlog;            /* listener: listen(2) backlog (128) */
    uint32_t connect_timeout_ms; /* dial: give up an attempt after this (10000) */
    uint32_t reconnect_min_ms;   /* dialer: first delay ceiling (100) */
    uint32_t reconnect_max_ms;   /* dialer: largest delay (30000) */
    uint32_t reconnect_reset_ms; /* dialer: a connection this old resets the delay (10000) */
    uint32_t linger_ms;          /* wb_tcp_close: time allowed to flush and finish (5000) */
    uint32_t raw;                /* nonzero: no framing (see "Raw streams") (0) */
    uint32_t max_per_ip;         /* listener: accepted connections alive at once from one
                                    peer address (0: no limit) */
    uint32_t keepalive_s;        /* TCP keepalive probes after this many idle seconds, so a
                                    peer that vanished is noticed (0: off) (0) */
    uint32_t start_paused;       /* nonzero: each connection begins paused (wb_tcp_pause):
                                    nothing is read until wb_tcp_resume, so an accepted
                                    connection can be handed to another owner
                                    (wb_tcp_set_owner, then wb_tcp_resume: taken in order)
                                    before any BLOB reaches the first (0) */
    /* Non-NULL: the connections speak WebSocket (see "WebSocket streams").
     * Copied, strings included, by the call it is given to. */
    const wb_ws_opts_t *ws;
    /* Non-NULL: the connections run TLS (see "TLS streams"); a listener's
     * needs cert_file and key_file. Copied, strings included, by the call. */
    const wb_tls_opts_t *tls;
} wb_tcp_opts_t;

void wb_sockets_config_init(wb_sockets_config_t *cfg);
void wb_tcp_opts_init(wb_tcp_opts_t *opts);

/* Install the network lane's service on rt, before wb_rt_start. cfg may be
 * NULL for defaults; it is copied. Returns 0, WB_EINVAL, WB_ENOMEM, or
 * WB_ESTATE for a deterministic runtime (sockets need a real loop). */
int wb_sockets_attach(wb_rt_t *rt, const wb_sockets_config_t *cfg);

/* Listen on host:port (an IPv4 or IPv6 address, or a name: its first address
 * is used; port 0 picks a free port). Events go to (owner_lane, owner): a
 * LISTENING, then an OPENED per accepted connection. opts may be NULL; they
 * also apply to the accepted connections. Beyond opts->max_connections (or
 * the lane's limit, or opts->max_per_ip from one address: logged at info
 * with the address) new connections are accepted and closed at once.
 * opts->ws and opts->tls (if any) are copied before this returns. Returns 0
 * with *listener_id set, WB_EINVAL (also: opts->tls without cert_file and
 * key_file), WB_ENOMEM or WB_ECLOSED. */
int wb_tcp_listen(wb_rt_t *rt, wb_lane_t owner_lane, uint64_t owner, const char *host,
                  uint16_t port, const wb_tcp_opts_t *opts, uint64_t *listener_id);

/* Connect once to host:port (a name is resolved; its addresses are tried in
 * order). OPENED when connected, CLOSED when it fails or later ends. Messages
 * may be sent to *conn_id at once: they wait for the connection. Returns 0,
 * WB_EINVAL, WB_ENOMEM or WB_ECLOSED. */
int wb_tcp_dial(wb_rt_t *rt, wb_lane_t owner_lane, uint64_t owner, const char *host, uint16_t port,
                const wb_tcp_opts_t *opts, uint64_t *conn_id);

/* Keep a connection to host:port until wb_tcp_close(*dialer_id): reconnect
 * with growing random delays (above). Each connection is reported with an
 * OPENED whose cookie is the dialer id; send to that connection's id. */
int wb_tcp_dial_persistent(wb_rt_t *rt, wb_lane_t owner_lane, uint64_t owner, const char *host,
                           uint16_t port, const wb_tcp_opts_t *opts, uint64_t *dialer_id);

/* Queue blob's payload as one message on connection conn. Set blob's
 * (src_lane, src) to where a WB_EV_RESUME should go should the network
 * lane's inbox be full; a blob should be a data event (no WB_EVF_CONTROL) so
 * that bound applies. On 0 the runtime owns blob. On WB_EAGAIN (wait for the
 * resume), WB_ECLOSED or WB_EINVAL the caller still owns it, unchanged. A
 * payload above the connection's max_message closes the connection with
 * WB_ETOOBIG. */
int wb_tcp_send(wb_rt_t *rt, uint64_t conn, wb_event_t *blob);

/* How long ago the network lane handed this WB_EV_TCP_BLOB up, in ns (for
 * traces; right for waits under 35 minutes). Any thread. */
uint64_t wb_tcp_blob_queued_ns(const wb_event_t *blob);

/* Close a connection, listener or dialer (see "Closing"). Returns 0,
 * WB_EINVAL, WB_ENOMEM or WB_ECLOSED. */
int wb_tcp_close(wb_rt_t *rt, uint64_t id);

/* wb_tcp_close on a WebSocket connection with the close frame's code (1000
 * to 4999 but 1004-1006 and 1015-2999) and reason (at most
 * 123 bytes of UTF-8, or NULL), e.g. 1007 after a message that was not what
 * the protocol expects. On any other id it is wb_tcp_close. */
int wb_tcp_close_ws(wb_rt_t *rt, uint64_t id, uint16_t code, const char *reason);

/* Stop reading connection conn until wb_tcp_resume; the peer is then held
 * by TCP flow control. After the pause is taken, at most one more BLOB
 * arrives (one the owner's inbox had refused and sockets was holding). For
 * an owner whose work per message, not its inbox, is the bottleneck, or who
 * must stop taking requests while its answers are under BACKPRESSURE.
 * Pausing twice is pausing once. Returns 0, WB_EINVAL, WB_ENOMEM or
 * WB_ECLOSED. */
int wb_tcp_pause(wb_rt_t *rt, uint64_t conn);
int wb_tcp_resume(wb_rt_t *rt, uint64_t conn);

/* wb_tcp_splice's options. A zero field takes its default. */
typedef struct {
    uint32_t idle_timeout_ms; /* no byte either way for this long ends it (0: never) */
    uint32_t pipe_size;       /* bytes a direction holds: F_SETPIPE_SZ, or the copy buffer
                                 (default 1 MiB, at least 4096; the kernel may give less) */
    uint32_t copy;            /* nonzero: read/write through a buffer, not splice(2) */
} wb_tcp_splice_opts_t;

/* The payload of WB_EV_TCP_SPLICED. */
typedef struct {
    uint64_t a, b;         /* as given to wb_tcp_splice */
    uint64_t ended_by;     /* a or b: its end (EOF, error, wb_tcp_close) ended the splice; 0:
                              the idle timeout, or a refusal */
    uint64_t a_to_b;       /* bytes read from a and written to b (or queued to b when the
                              splice began: bytes read before, not delivered to the owner) */
    uint64_t b_to_a;       /* the same the other way */
    uint64_t max_inflight; /* most bytes held at once in one direction's pipe or buffer */
    uint32_t ms;           /* from the request taken to the end */
    uint32_t pipe_size;    /* bytes per direction it ran with (the kernel's pipe size) */
    uint8_t started;       /* 0: refused, nothing changed (status and reason say why) */
    uint8_t spliced;       /* 1: splice(2) through pipes; 0: read/write through buffers */
    char reason[200];      /* NUL-terminated */
} wb_tcp_spliced_t;

void wb_tcp_splice_opts_init(wb_tcp_splice_opts_t *opts);

/* Splice connections a and b on the network lane (see "Splicing"): their
 * bytes go to each other without reaching the owner, until either ends;
 * then one WB_EV_TCP_SPLICED to a's owner, and CLOSED for each. opts may be
 * NULL (defaults); it is copied. Any thread. Returns 0 (the request is
 * posted; a refusal on the lane comes as SPLICED with started = 0),
 * WB_EINVAL (a == b, an id 0), WB_ENOMEM or WB_ECLOSED. */
int wb_tcp_splice(wb_rt_t *rt, uint64_t a, uint64_t b, const wb_tcp_splice_opts_t *opts);

/* Send future events about id (a connection, listener or dialer) to
 * (owner_lane, owner) instead: e.g. hand an accepted connection to an actor
 * made for it. Events already sent are not moved. Returns 0, WB_EINVAL,
 * WB_ENOMEM or WB_ECLOSED. */
int wb_tcp_set_owner(wb_rt_t *rt, uint64_t id, wb_lane_t owner_lane, uint64_t owner);

#endif
