/*
 * transit.h - a Magic Wormhole transit connection on the runtime: the race
 * of direct and relay connections, then an encrypted record stream (shared
 * notes, wormhole.md section 3; the pieces are in transit_proto.h).
 *
 * One actor per transfer. wb_transit_open spawns it with the transit key
 * and role; it listens on a free port (unless cfg->no_listen) and reports
 * WB_TRANSIT_EV_HINTS, the JSON value of our "transit" message for the
 * application to send through the mailbox. When the peer's transit
 * message is in, wb_transit_connect starts the race:
 *   - every direct hint of the peer's is dialed at once;
 *   - relays (ours, then the peer's relay-v1 hints, the same host:port
 *     once) are dialed after a delay: 0 when there was no direct hint,
 *     else relay_delay_ms, plus relay_delay_ms per lower priority tier
 *     (as Python: 2 s);
 *   - connections accepted by our listener take part too, from the start;
 *   - on every connection both sides write at once: the relay line, then
 *     after the relay's "ok\n" the handshake line; or the handshake line;
 *   - the sender takes the first connection whose receiver line checks
 *     out and writes "go\n" on it, "nevermind\n" on any later one; the
 *     receiver takes the connection on which "go\n" comes;
 *   - everything else is closed, the listener too.
 * WB_TRANSIT_EV_CONNECTED says which won. With no winner within
 * connect_timeout_ms of wb_transit_connect (or when every attempt failed
 * and nothing is left to try) the transit ends with WB_TRANSIT_EV_CLOSED
 * and a reason listing what was tried.
 *
 * Then records: wb_transit_send hands over plaintext (an event's payload,
 * taken); it is sealed in records of record_size bytes and queued on the
 * connection. WB_TRANSIT_EV_SENT tells how many plaintext bytes have left
 * the actor for the network lane, so the application can keep a bounded
 * window in flight. Records from the peer are opened and come up as
 * WB_TRANSIT_EV_DATA: plaintext in an event the application may keep;
 * reading stops while more than recv_window bytes are delivered and not
 * yet acknowledged with wb_transit_consumed.
 *
 * Threads: as wormhole.h: calls from any thread post to the actor and
 * return; on_event is called on the actor lane and must not block long (a
 * queue hand-off). WB_TRANSIT_EV_CLOSED is the last event; the actor is
 * gone after it.
 */
#ifndef WB_WORMHOLE_TRANSIT_H
#define WB_WORMHOLE_TRANSIT_H

#include <stddef.h>
#include <stdint.h>

#include "apps/wormhole/transit_proto.h"
#include "runtime/event.h"
#include "runtime/rt.h"

#define WB_TRANSIT_DEFAULT_RELAY "tcp:transit.magic-wormhole.io:4001"

typedef enum {
    WB_TRANSIT_EV_HINTS,     /* text: the JSON value of our "transit" message */
    WB_TRANSIT_EV_CONNECTED, /* text: "direct" or "relay"; text2: the peer's or
                                relay's address */
    WB_TRANSIT_EV_DATA,      /* plaintext blob->data[off..off+len); set ev->blob
                                to NULL to keep the event (then wb_event_free it) */
    WB_TRANSIT_EV_SENT,      /* n more plaintext bytes went to the network lane */
    WB_TRANSIT_EV_CLOSED,    /* the end: status 0 (closed by us after a clean end)
                                or an error code with text the reason */
} wb_transit_event_type_t;

typedef struct {
    wb_transit_event_type_t type;
    int status;
    const char *text, *text2;
    wb_event_t *blob;
    size_t off, len;
    uint64_t n;
} wb_transit_event_t;

typedef void (*wb_transit_event_cb)(uint64_t transit, wb_transit_event_t *ev, void *user);

typedef struct {
    int sender;                 /* our role */
    uint8_t key[WB_WH_KEY_LEN]; /* the transit key (keys.h wb_wh_transit_key) */
    int no_listen;              /* do not listen (no direct hints of ours) */
    const char *listen_host;    /* default "0.0.0.0" */
    /* Our relays (--transit-helper), advertised and dialed. */
    const wb_transit_relay_t *relays;
    size_t nrelays;
    /* Direct hints to advertise instead of our interfaces' addresses (tests);
     * NULL: every IPv4 address but 127.0.0.1 (127.0.0.1 when it is the only
     * one), with the listener's port. */
    const char *const *advertise;
    size_t nadvertise;
    uint32_t relay_delay_ms;     /* 2000 */
    uint32_t connect_timeout_ms; /* 120000 */
    uint32_t record_size;        /* plaintext bytes per record we send (65536) */
    uint32_t recv_window;        /* pause reading above this many undelivered bytes (16 MiB) */
    uint32_t max_record;         /* largest record accepted (WB_TRANSIT_MAX_RECORD) */
    wb_transit_event_cb on_event;
    void *user;
} wb_transit_config_t;

void wb_transit_config_init(wb_transit_config_t *cfg);

/* Spawn the transit actor (cfg copied, key included). Returns 0 with *id;
 * WB_EINVAL, WB_ENOMEM, WB_ECLOSED. */
int wb_transit_open(wb_rt_t *rt, const wb_transit_config_t *cfg, uint64_t *id);

/* The peer's "transit" message value (JSON text, copied): start the race.
 * Once; later calls are ignored. */
int wb_transit_connect(wb_rt_t *rt, uint64_t id, const char *peer_transit_json);

/* Plaintext to send: chunk's payload, all of it (chunk is taken; any type).
 * Before the connection is made it waits. Returns 0 or WB_ECLOSED (chunk
 * freed either way). */
int wb_transit_send(wb_rt_t *rt, uint64_t id, wb_event_t *chunk);

/* The application is done with n bytes of WB_TRANSIT_EV_DATA. */
int wb_transit_consumed(wb_rt_t *rt, uint64_t id, uint64_t n);

/* Close: what is queued is sent, then the connection is closed;
 * WB_TRANSIT_EV_CLOSED with status 0 follows. */
int wb_transit_close(wb_rt_t *rt, uint64_t id);

#endif
