/*
 * tls.h - TLS, sans-io, over OpenSSL 3 with memory BIOs: a wb_tls_t is fed
 * the ciphertext a TCP connection received and hands back the plaintext
 * that arrived and the ciphertext to write. No sockets, no threads, no
 * clock; nothing here blocks (a context's CA file is read once, when the
 * first connection that names it is made).
 *
 * The record layer, the handshake and certificate verification are
 * OpenSSL's; this module is the glue and the policy:
 *   - TLS 1.2 at least;
 *   - a client verifies by default: the chain against the system trust
 *     store (Debian's ca-certificates, through SSL_CTX_set_default_verify_paths)
 *     or opts.ca_file, then the name: server_name as a DNS name (SNI is
 *     sent too) or, when it is an IP address, against the certificate's IP
 *     addresses (no SNI then). opts.insecure turns verification off (tests);
 *   - a server (opts.cert_file and key_file) presents its chain and does not
 *     ask for client certificates.
 * Failures end the connection with a reason a person can act on, e.g.
 *   "tls: certificate verify failed: unable to get local issuer certificate
 *    (host relay.example)"
 *   "tls: certificate verify failed: hostname mismatch (host relay.example)"
 *   "tls: certificate verify failed: certificate has expired (host localhost)"
 *   "tls: handshake failed: wrong version number"   (a peer that is not TLS)
 *   "tls: handshake failed: tlsv1 alert unknown ca"  (the peer's alert)
 *   "tls: handshake timed out after 10000 ms"
 *
 * Using it. After wb_tls_new (a client's ClientHello is in the output at
 * once), and after every wb_tls_feed, wb_tls_read, wb_tls_write, wb_tls_close
 * and wb_tls_timeout, write out what wb_tls_output() returns and call
 * wb_tls_output_done(). Feed every byte the peer sent; then call wb_tls_read
 * until it gives nothing (it stops at any size the caller asks, so a caller
 * under backpressure can stop pulling and come back: what is not pulled
 * stays inside, as ciphertext or decrypted records). When wb_tls_state() is
 * WB_TLS_DONE, write the last output (an alert, a close_notify) and close
 * the TCP connection; wb_tls_result() says why it ended. The handshake
 * timeout is the caller's clock: start a timer of opts.handshake_timeout_ms
 * when the TCP connection opens and call wb_tls_timeout() when it fires.
 *
 * Contexts. An SSL_CTX holds what connections share (the CA store, the
 * server's certificate and key). A wb_tls_cache_t keeps one per distinct
 * (role, ca_file, cert_file, key_file), made on first use; connections keep
 * a reference of their own, so the cache may be freed before them. The
 * network lane (sockets/tcp.c) keeps one cache and frees it when it stops.
 *
 * Threads: a wb_tls_t and a cache belong to one thread at a time (OpenSSL's
 * error queue is per thread, and each call clears it first). No global state
 * of ours; OpenSSL initialises itself.
 *
 * Who frees what: the owner frees a connection with wb_tls_free and a cache
 * with wb_tls_cache_free. The options (strings included) are copied or used
 * only during the call. Buffers returned by wb_tls_output belong to the
 * connection and are valid until the next call on it.
 */
#ifndef WB_TLS_H
#define WB_TLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct wb_tls_s wb_tls_t;
typedef struct wb_tls_cache_s wb_tls_cache_t;

typedef enum {
    WB_TLS_HANDSHAKE = 0, /* in progress: plaintext cannot be written yet */
    WB_TLS_OPEN,          /* plaintext flows both ways */
    WB_TLS_DONE,          /* write the last output, then close the TCP connection */
} wb_tls_state_t;

typedef struct {
    /* Client: the name sent as SNI and checked against the certificate (an
     * IP address is checked against its IP addresses). NULL: the caller's
     * dialed host (sockets/tcp.c fills it in). Server: unused. */
    const char *server_name;
    /* Client: PEM bundle of trusted CAs; NULL: the system store. */
    const char *ca_file;
    /* Client: nonzero turns verification off. Tests only. */
    int insecure;
    /* Server: PEM certificate chain (leaf first) and PEM private key. Both
     * set makes a listener's connections TLS servers. */
    const char *cert_file;
    const char *key_file;
    /* For the caller's timer: the handshake must be done within this (10000). */
    uint32_t handshake_timeout_ms;
} wb_tls_opts_t;

typedef enum { WB_TLS_CLIENT = 0, WB_TLS_SERVER } wb_tls_role_t;

void wb_tls_opts_init(wb_tls_opts_t *o);

/* A cache of contexts. Returns 0 or WB_ENOMEM. */
int wb_tls_cache_new(wb_tls_cache_t **out);
void wb_tls_cache_free(wb_tls_cache_t *c);

/* Make (or find) the context for role and opts now, so a bad CA file,
 * certificate or key is reported before any connection: 0, WB_EINVAL (the
 * reason, e.g. "tls: cert_file /x.pem: No such file or directory", written
 * to err when err is not NULL), WB_ENOMEM. */
int wb_tls_cache_prepare(wb_tls_cache_t *c, wb_tls_role_t role, const wb_tls_opts_t *opts,
                         char *err, size_t errlen);

/* A new connection in role, with a context from cache (NULL: a context of
 * its own). A client needs opts->server_name unless opts->insecure. A
 * client's ClientHello is in the output at once. Returns 0, WB_EINVAL
 * (bad options or files: the reason in err as above), WB_ENOMEM. */
int wb_tls_new(wb_tls_t **out, wb_tls_role_t role, const wb_tls_opts_t *opts, wb_tls_cache_t *cache,
               char *err, size_t errlen);
void wb_tls_free(wb_tls_t *t);

/* Take the ciphertext in[0..len) the peer sent and move the handshake on.
 * Returns 0, or the error that ended the connection (state DONE, the output
 * may hold an alert): WB_EPROTO, WB_ENOMEM. Bytes fed after DONE are
 * ignored. */
int wb_tls_feed(wb_tls_t *t, const uint8_t *in, size_t len);

/* Pull up to cap bytes of plaintext into buf; *got is how many (0: nothing
 * until more is fed, or the connection is DONE). Returns 0 or the error
 * that ended it (as wb_tls_feed). The peer's close_notify makes the state
 * DONE with result 0. */
int wb_tls_read(wb_tls_t *t, uint8_t *buf, size_t cap, size_t *got);

/* Encrypt p[0..len) into the output (all of it). WB_EAGAIN during the
 * handshake, WB_ECLOSED once closing or DONE, WB_ENOMEM. */
int wb_tls_write(wb_tls_t *t, const uint8_t *p, size_t len);

/* Send close_notify (once; also in answer to the peer's); the state is then
 * DONE and later writes are refused. During the handshake there is nothing
 * to close: the connection is just DONE. Returns 0. */
int wb_tls_close(wb_tls_t *t);

/* The handshake timer fired: if the handshake is not done the connection is
 * DONE with WB_ETIMEDOUT (returns 1), else nothing happens (returns 0). */
int wb_tls_timeout(wb_tls_t *t);

/* Ciphertext to write now; *p valid until the next call on t. */
size_t wb_tls_output(wb_tls_t *t, const uint8_t **p);
/* It was taken (copied into a send). */
void wb_tls_output_done(wb_tls_t *t);

wb_tls_state_t wb_tls_state(const wb_tls_t *t);

/* Why it ended, once DONE: 0 when the peer's close_notify came or this side
 * closed, WB_EPROTO (handshake, verification, a bad record, an alert),
 * WB_ETIMEDOUT, WB_ENOMEM; *reason (if reason is not NULL) gets the text,
 * "" for 0. While not DONE: 0 and "". */
int wb_tls_result(const wb_tls_t *t, const char **reason);

/* Whether close_notify came from the peer. */
int wb_tls_peer_closed(const wb_tls_t *t);

/* The negotiated protocol ("TLSv1.3") once OPEN, else "". */
const char *wb_tls_version(const wb_tls_t *t);

#endif
