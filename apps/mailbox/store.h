/*
 * store.h - the mailbox server's SQLite schema and its named operations.
 *
 * The channel database (--channel-db) holds the live state the actor keeps in
 * memory: mailboxes, their sides and messages, nameplates and their sides.
 * Every change the actor makes is one of the operations below, sent to the
 * database lane in the order it was made; a restarted server loads the tables
 * back (mb_store_load_sql) before it listens.
 *
 * The usage database (--usage-db) is attached to the same connection as
 * schema `usage`, with the tables and columns of the Python server's
 * usage-v2 schema (current, nameplates, mailboxes, client_versions), so the
 * same reports work on either server's file.
 */
#ifndef WB_MAILBOX_STORE_H
#define WB_MAILBOX_STORE_H

#include "db/db.h"

enum {
    MB_OP_MAILBOX_PUT,     /* app, id, for_nameplate, updated, crowded */
    MB_OP_MAILBOX_TOUCH,   /* app, id, updated */
    MB_OP_MAILBOX_DEL,     /* app, id (sides and messages go with it) */
    MB_OP_MBSIDE_PUT,      /* app, mailbox, side, opened, mood, added */
    MB_OP_MESSAGE_ADD,     /* app, mailbox, side, phase, body, server_rx, msg_id (JSON text) */
    MB_OP_NAMEPLATE_PUT,   /* app, name, mailbox, crowded */
    MB_OP_NAMEPLATE_DEL,   /* app, name (sides go with it) */
    MB_OP_NPSIDE_PUT,      /* app, name, side, claimed, added */
    MB_OP_USAGE_NAMEPLATE, /* app, started, waiting_time, total_time, result */
    MB_OP_USAGE_MAILBOX,   /* app, for_nameplate, started, total_time, waiting_time, result */
    MB_OP_USAGE_CLIENT,    /* app, side, connect_time, implementation, version */
    MB_OP_USAGE_CURRENT_DEL,
    MB_OP_USAGE_CURRENT, /* rebooted, updated, blur_time, connections_websocket */
    MB_OP_COUNT
};

/* The tables loaded at start, in this order (each row's columns as listed in
 * mb_store_load_sql's SELECT). Pages of MB_LOAD_PAGE rows, keyed by rowid. */
enum {
    MB_LOAD_MAILBOXES,
    MB_LOAD_MBSIDES,
    MB_LOAD_MESSAGES,
    MB_LOAD_NAMEPLATES,
    MB_LOAD_NPSIDES,
    MB_LOAD_TABLES
};
#define MB_LOAD_PAGE 4096

/* SELECT of table t (MB_LOAD_*): `rowid, ...columns` WHERE rowid > ?1 ORDER BY
 * rowid LIMIT ?2. */
const char *mb_store_load_sql(int t);

/* Fill cfg for channel_db (and usage_db, or NULL: an in-memory stand-in is
 * attached so that the operations prepare; the server then writes no usage
 * rows). The strings must outlive the runtime. */
void mb_store_config(wb_db_config_t *cfg, wb_db_attached_t *usage, const char *channel_db,
                     const char *usage_db);

#endif
