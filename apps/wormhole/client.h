/*
 * client.h - the Magic Wormhole client as sans-io state machines, in the
 * manner of magic-wormhole 0.12.0 (wormhole._boss and its workers; shared
 * notes, wormhole.md sections 1, 2 and 7).
 *
 * One wh_client_t is one wormhole: a rendezvous connection to a mailbox
 * server that survives reconnects, a nameplate claimed and released, a
 * mailbox opened and closed with a mood, SPAKE2 once the code is known, the
 * encrypted version message that confirms the key, and numbered application
 * messages 0, 1, 2 ... each way, delivered in order, once.
 *
 * Sans-io: the client opens no socket, reads no clock and draws no random
 * byte of its own. It is handed what happened (the WebSocket opened, a text
 * message arrived, the WebSocket closed, the timer fired, the application
 * asked for something) and answers through wh_io_t: open or close a
 * WebSocket, send a text message on it, start or cancel its one timer, give
 * n random bytes, and report events to the application. The glue
 * (wormhole.c) runs it in an actor over sockets/tcp.h; the unit test runs
 * two of them back to back through apps/mailbox/core.h with a seeded
 * generator.
 *
 * The machines, as in the Python client:
 *   rendezvous  bind with the side on every connection; commands are
 *               pipelined, acks ignored. The first connection failing is
 *               fatal (WH_RESULT_UNREACHABLE); a connection lost after one
 *               has worked is retried after a random delay in [0.5, 2] s,
 *               growing x1.5 per failure up to 60 s.
 *   nameplate   claim (again on each connection until claimed), release
 *               on the first message from the peer or when closing.
 *   mailbox     open on each connection, every add not yet echoed back is
 *               sent again, the peer's messages are taken once per phase,
 *               close with the mood and wait for "closed".
 *   key         SPAKE2 as soon as the code is known: phase "pake" carries
 *               {"pake_v1": hex} in clear; the key encrypts phase
 *               "version" = {"app_versions": ...}.
 *   order       the peer's pake is handled before anything else of theirs.
 *   receive     the first message that decrypts proves the key ("happy":
 *               verifier, queued sends released); any that does not is
 *               "scary".
 *   send        application messages get phases 0, 1, 2 ... and wait for
 *               the verified key.
 *   allocator, code, lister, input: allocate a nameplate and draw the words,
 *               take a code, list nameplates, take a code in two steps.
 *   terminator  on close: close the mailbox, release the nameplate, wait
 *               for both replies, then drop the WebSocket.
 *
 * Reentrancy: io callbacks are made from inside the wh_client_* calls and
 * must not call back into the client. Events for the application are held
 * until the outermost call is about to return and are then delivered one by
 * one; from an event callback the application may call any wh_client_*
 * function. WH_EV_CLOSED is the last event; the application may free the
 * client from its callback (and only then, or after it).
 *
 * Threads: none of its own; one thread at a time per client.
 */
#ifndef WB_WORMHOLE_CLIENT_H
#define WB_WORMHOLE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define WH_SIDE_LEN 10 /* 5 random bytes in hex */

typedef struct wh_client_s wh_client_t;

typedef enum {
    WH_EV_WELCOME,    /* the server's welcome: text = motd or NULL, text2 =
                         current_cli_version or NULL */
    WH_EV_CODE,       /* the code is known: text (allocated, set or input) */
    WH_EV_KEY,        /* the shared key is computed, not yet confirmed: data =
                         the 32-byte key, for keys the application derives
                         (transit: keys.h); use it only after WH_EV_VERIFIER */
    WH_EV_VERIFIER,   /* the key is confirmed: data = 32 bytes to compare */
    WH_EV_VERSIONS,   /* the peer's app_versions: text = JSON */
    WH_EV_MESSAGE,    /* application message number `phase`: data[0..len) */
    WH_EV_NAMEPLATES, /* answer to wh_client_list: text = JSON array of ids */
    WH_EV_CLOSED,     /* the end: result, text = what went wrong (or NULL) */
} wh_event_type_t;

typedef enum {
    WH_RESULT_HAPPY,       /* key confirmed, closed normally */
    WH_RESULT_LONELY,      /* closed before the key was confirmed */
    WH_RESULT_SCARY,       /* the peer's key differs: wrong code (or an attacker) */
    WH_RESULT_ERRORY,      /* the server sent an error (text), e.g. "crowded" */
    WH_RESULT_UNWELCOME,   /* the server's welcome carried an error (text) */
    WH_RESULT_UNREACHABLE, /* the first connection to the server failed (text) */
    WH_RESULT_PROTOCOL,    /* the server sent something unreadable (text) */
} wh_result_t;

typedef struct {
    wh_event_type_t type;
    const char *text;  /* NUL-terminated, or NULL */
    const char *text2; /* NUL-terminated, or NULL */
    const uint8_t *data;
    size_t len;
    uint64_t phase;
    wh_result_t result;
} wh_event_t;

typedef struct {
    void *ctx;
    /* Open a new WebSocket connection to the mailbox server. Answer later
     * with wh_client_ws_opened, or wh_client_ws_closed if it fails. */
    void (*ws_open)(void *ctx);
    /* Send one text message on the open connection. */
    void (*ws_send)(void *ctx, const char *text, size_t len);
    /* Drop the connection (open or still opening). The client expects no
     * wh_client_ws_closed for it. */
    void (*ws_close)(void *ctx);
    /* Start the one timer (replacing a running one): wh_client_timer after
     * ms milliseconds. */
    void (*timer_start)(void *ctx, uint32_t ms);
    void (*timer_cancel)(void *ctx);
    /* n random bytes (keys, nonces, ids, delays: make it a CSPRNG). */
    void (*random)(void *ctx, void *buf, size_t n);
    /* An event for the application (see "Reentrancy"). */
    void (*event)(void *ctx, const wh_event_t *ev);
} wh_io_t;

typedef struct {
    const char *appid;          /* required */
    const char *app_versions;   /* JSON object for the peer (NULL: "{}") */
    const char *client_name;    /* bind's client_version (NULL: "waybill") */
    const char *client_version; /* (NULL: "0.1.0") */
} wh_config_t;

/* A client. cfg and io are copied (strings too); the side is drawn from
 * io->random. Nothing happens until wh_client_start. Returns 0, WB_EINVAL
 * (no appid, app_versions not a JSON object) or WB_ENOMEM. */
int wh_client_new(wh_client_t **out, const wh_config_t *cfg, const wh_io_t *io);
/* Free it (any state). Sends nothing; the caller drops its connection. */
void wh_client_free(wh_client_t *c);
const char *wh_client_side(const wh_client_t *c);
/* Closing has begun: waiting for the server's replies (for a glue's
 * timeout). */
int wh_client_is_closing(const wh_client_t *c);

/* Connect (io->ws_open). Once. */
void wh_client_start(wh_client_t *c);

/* Choose the code, exactly one of these, once (WB_ESTATE otherwise):
 * allocate a nameplate and draw nwords words (0: the code is "N-");
 * take a given code (WB_EINVAL with a reason in err if it is not a code: a
 * space, or a nameplate that is not digits); or input it in two steps
 * (nameplate first, so the peer's mailbox opens while the words are being
 * typed; then the whole code, which must start with "NAMEPLATE-"). */
int wh_client_allocate(wh_client_t *c, unsigned nwords);
int wh_client_set_code(wh_client_t *c, const char *code, char *err, size_t errlen);
int wh_client_input_nameplate(wh_client_t *c, const char *nameplate);
int wh_client_input_finish(wh_client_t *c, const char *code, char *err, size_t errlen);
/* Ask the server for the nameplates in use: WH_EV_NAMEPLATES (for
 * completing a code being typed). */
void wh_client_list(wh_client_t *c);

/* Queue application message data[0..len) as the next phase. It is sent once
 * the key is confirmed; ignored once closing. Returns 0 or WB_ENOMEM. */
int wh_client_send(wh_client_t *c, const void *data, size_t len);
/* Close: mood "happy" once the key is confirmed, else "lonely". Ends with
 * WH_EV_CLOSED. */
void wh_client_close(wh_client_t *c);

/* Give up without waiting for the server any longer (it does not answer
 * the close, or the application's patience ran out): drop the connection
 * and end with WH_EV_CLOSED. When closing was under way its result stands;
 * otherwise the result is WH_RESULT_PROTOCOL with `why`. */
void wh_client_abort(wh_client_t *c, const char *why);

/* What the connection did. */
void wh_client_ws_opened(wh_client_t *c);
void wh_client_ws_message(wh_client_t *c, const char *text, size_t len);
void wh_client_ws_closed(wh_client_t *c, const char *reason);
void wh_client_timer(wh_client_t *c);

/* Short name of a result ("happy", "scary", ...: the moods). */
const char *wh_result_name(wh_result_t r);

/* For tests: the reconnect delay after `failures` failed attempts, given
 * a uniform fraction u in [0, 1]. */
uint32_t wh__reconnect_delay_ms(unsigned failures, double u);

#endif
