/*
 * core.h - the Magic Wormhole mailbox (rendezvous) server as a state machine.
 *
 * Sans-io: it is handed each connection's opening, its messages and its end,
 * with the time; it answers through callbacks: JSON text for a connection,
 * a connection to close, and database operations (store.h) recording every
 * change it made, in order. No sockets, no threads, no SQLite. The glue
 * (server.c) runs it on the actor lane.
 *
 * The protocol is that of the Python server 0.4.1 (shared notes, wormhole.md
 * section 1): welcome on open; one ack per command, first, with the
 * command's id; bind/list/allocate/claim/release/open/add/close/ping with
 * the same error strings; messages echoed to every listener and replayed on
 * open; per-connection once-rules; allocation by fewest digits, at random
 * among the free. Where 0.4.1 has defects (wormhole.md section 9) this does
 * the better thing: a third side is refused ("crowded") without being
 * recorded, so crowding is not sticky; open is once per connection even
 * after close; ids are scoped by app everywhere; field types are checked
 * ("'side' must be a string"); invalid JSON gets an error and a close frame;
 * pruning frees memory as well as rows.
 *
 * Bounds: every string field has a maximum length, each mailbox holds at
 * most max_messages messages, all stored message bytes together at most
 * max_stored_bytes, and at most max_mailboxes mailboxes exist at once; past
 * them the command gets an error and nothing changes.
 */
#ifndef WB_MAILBOX_CORE_H
#define WB_MAILBOX_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/event.h"

#define MB_APPID_MAX 256 /* bytes */
#define MB_SIDE_MAX  64
#define MB_NAME_MAX  64 /* nameplate */
#define MB_MBID_MAX  64 /* mailbox id */
#define MB_PHASE_MAX 256
#define MB_MOOD_MAX  64

typedef struct mb_core_s mb_core_t;
typedef struct mb_conn_s mb_conn_t;

typedef struct {
    const char *motd;              /* welcome.motd, or NULL */
    const char *advertise_version; /* welcome.current_cli_version, or NULL */
    const char *signal_error;      /* welcome.error, or NULL */
    int disallow_list;             /* `list` answers an empty list */
    int usage;                     /* write usage rows */
    uint32_t blur_usage;       /* round usage start times down to this many seconds (0: exact) */
    double expiry_s;           /* a mailbox idle this long is pruned (660) */
    uint32_t max_mailboxes;    /* live at once, all apps (100000) */
    uint32_t max_messages;     /* per mailbox (1000) */
    uint64_t max_stored_bytes; /* message bytes kept, all mailboxes (256 MiB) */
} mb_config_t;

typedef struct {
    void *ctx;
    /* Send json[0..len) (one message) to connection c. */
    void (*send)(void *ctx, mb_conn_t *c, const char *json, size_t len);
    /* Close connection c (after what was sent to it) with a WebSocket close
     * code and reason: its input was not JSON. The glue later calls
     * mb_conn_free. */
    void (*close)(void *ctx, mb_conn_t *c, int code, const char *reason);
    /* Record a change: a database request (wb_db_request_op with an MB_OP_*);
     * ownership passes. Requests come in the order their changes were made. */
    void (*persist)(void *ctx, wb_event_t *req);
} mb_io_t;

typedef struct {
    uint64_t connections; /* open now */
    uint64_t listeners;   /* connections subscribed to a mailbox */
    uint64_t apps, nameplates, mailboxes, messages;
    uint64_t stored_bytes;
    uint64_t commands, errors;
} mb_stats_t;

void mb_config_init(mb_config_t *cfg);

/* A server. cfg and io are copied (cfg's strings must outlive the core).
 * Returns 0 or WB_ENOMEM. */
int mb_core_new(mb_core_t **out, const mb_config_t *cfg, const mb_io_t *io);
/* Free everything, connections included (sends nothing). */
void mb_core_free(mb_core_t *core);

/* A WebSocket connection opened: the welcome is sent. NULL on ENOMEM. user is
 * the glue's (mb_conn_user). */
mb_conn_t *mb_conn_new(mb_core_t *core, uint64_t id, const char *peer, void *user, double now);
/* One message the connection sent (text or binary: both are taken). */
void mb_conn_input(mb_conn_t *c, const uint8_t *data, size_t len, double now);
/* The connection ended: it stops listening; its nameplates and mailboxes
 * stay until released, closed or pruned. */
void mb_conn_free(mb_conn_t *c);
uint64_t mb_conn_id(const mb_conn_t *c);
void *mb_conn_user(const mb_conn_t *c);
/* What it bound to (NULL before bind), for logs. */
const char *mb_conn_appid(const mb_conn_t *c);
const char *mb_conn_side(const mb_conn_t *c);

/* The periodic expiry check: mailboxes with a listener are refreshed, then
 * every mailbox idle past expiry_s is deleted with its nameplates (usage
 * result "pruney"), and so are nameplates whose mailbox is gone. Also
 * rewrites the usage `current` row. */
void mb_core_prune(mb_core_t *core, double now);

void mb_core_stats(const mb_core_t *core, mb_stats_t *out);

/* Restoring state from the channel database at start, table by table in the
 * order of store.h's MB_LOAD_*. Rows that make no sense (a side of a
 * mailbox that is not there) are skipped and counted. Return 0 or WB_ENOMEM. */
int mb_restore_mailbox(mb_core_t *core, const char *app, const char *id, int for_nameplate,
                       double updated, int crowded);
int mb_restore_mailbox_side(mb_core_t *core, const char *app, const char *mailbox, const char *side,
                            int opened, const char *mood, double added);
int mb_restore_message(mb_core_t *core, const char *app, const char *mailbox, const char *side,
                       const char *phase, const char *body, double server_rx,
                       const char *msg_id_json);
int mb_restore_nameplate(mb_core_t *core, const char *app, const char *name, const char *mailbox,
                         int crowded);
int mb_restore_nameplate_side(mb_core_t *core, const char *app, const char *name, const char *side,
                              int claimed, double added);
uint64_t mb_restore_skipped(const mb_core_t *core);

#endif
