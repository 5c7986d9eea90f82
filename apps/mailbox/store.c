/*
 * store.c - the mailbox server's schema and operations (see store.h).
 */
#include "apps/mailbox/store.h"

#include <string.h>

static const char *const channel_migrations[] = {
    "CREATE TABLE mailboxes (app_id TEXT NOT NULL, id TEXT NOT NULL,"
    " for_nameplate INTEGER NOT NULL, updated REAL NOT NULL, crowded INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (app_id, id));"
    "CREATE TABLE mailbox_sides (app_id TEXT NOT NULL, mailbox_id TEXT NOT NULL,"
    " side TEXT NOT NULL, opened INTEGER NOT NULL, mood TEXT, added REAL NOT NULL,"
    " PRIMARY KEY (app_id, mailbox_id, side));"
    "CREATE TABLE messages (app_id TEXT NOT NULL, mailbox_id TEXT NOT NULL, side TEXT NOT NULL,"
    " phase TEXT NOT NULL, body TEXT NOT NULL, server_rx REAL NOT NULL, msg_id TEXT);"
    "CREATE INDEX messages_mailbox ON messages (app_id, mailbox_id);"
    "CREATE TABLE nameplates (app_id TEXT NOT NULL, name TEXT NOT NULL,"
    " mailbox_id TEXT NOT NULL, crowded INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (app_id, name));"
    "CREATE TABLE nameplate_sides (app_id TEXT NOT NULL, name TEXT NOT NULL, side TEXT NOT NULL,"
    " claimed INTEGER NOT NULL, added REAL NOT NULL, PRIMARY KEY (app_id, name, side));"
    "CREATE TRIGGER mailbox_gone AFTER DELETE ON mailboxes BEGIN"
    "  DELETE FROM mailbox_sides WHERE app_id = old.app_id AND mailbox_id = old.id;"
    "  DELETE FROM messages WHERE app_id = old.app_id AND mailbox_id = old.id;"
    "END;"
    "CREATE TRIGGER nameplate_gone AFTER DELETE ON nameplates BEGIN"
    "  DELETE FROM nameplate_sides WHERE app_id = old.app_id AND name = old.name;"
    "END;",
};

/* The Python server's usage-v2 tables, column for column. Attached
 * databases are named in full: unqualified CREATEs would land in main. */
static const char *const usage_migrations[] = {
    "CREATE TABLE usage.current (rebooted INTEGER, updated INTEGER, blur_time INTEGER,"
    " connections_websocket INTEGER);"
    "CREATE TABLE usage.nameplates (app_id VARCHAR, started INTEGER, waiting_time INTEGER,"
    " total_time INTEGER, result VARCHAR);"
    "CREATE INDEX usage.nameplates_idx ON nameplates (app_id, started);"
    "CREATE TABLE usage.mailboxes (app_id VARCHAR, for_nameplate BOOLEAN, started INTEGER,"
    " total_time INTEGER, waiting_time INTEGER, result VARCHAR);"
    "CREATE INDEX usage.mailboxes_idx ON mailboxes (app_id, started);"
    "CREATE INDEX usage.mailboxes_result_idx ON mailboxes (result);"
    "CREATE TABLE usage.client_versions (app_id VARCHAR, side VARCHAR, connect_time INTEGER,"
    " implementation VARCHAR, version VARCHAR);"
    "CREATE INDEX usage.client_versions_time_idx ON client_versions (connect_time);"
    "CREATE INDEX usage.client_versions_appid_time_idx ON client_versions (app_id, connect_time);",
};

static const wb_db_op_t ops[MB_OP_COUNT] = {
    [MB_OP_MAILBOX_PUT] = {"mailbox put",
                           "INSERT INTO mailboxes (app_id, id, for_nameplate, updated, crowded)"
                           " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (app_id, id) DO UPDATE SET"
                           " updated = excluded.updated, crowded = excluded.crowded"},
    [MB_OP_MAILBOX_TOUCH] = {"mailbox touch",
                             "UPDATE mailboxes SET updated = ?3 WHERE app_id = ?1 AND id = ?2"},
    [MB_OP_MAILBOX_DEL] = {"mailbox delete", "DELETE FROM mailboxes WHERE app_id = ?1 AND id = ?2"},
    [MB_OP_MBSIDE_PUT] =
        {"mailbox side put",
         "INSERT INTO mailbox_sides (app_id, mailbox_id, side, opened, mood, added)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (app_id, mailbox_id, side)"
         " DO UPDATE SET opened = excluded.opened, mood = excluded.mood"},
    [MB_OP_MESSAGE_ADD] = {"message add",
                           "INSERT INTO messages (app_id, mailbox_id, side, phase, body, server_rx,"
                           " msg_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
    [MB_OP_NAMEPLATE_PUT] = {"nameplate put",
                             "INSERT INTO nameplates (app_id, name, mailbox_id, crowded)"
                             " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (app_id, name) DO UPDATE SET"
                             " mailbox_id = excluded.mailbox_id, crowded = excluded.crowded"},
    [MB_OP_NAMEPLATE_DEL] = {"nameplate delete",
                             "DELETE FROM nameplates WHERE app_id = ?1 AND name = ?2"},
    [MB_OP_NPSIDE_PUT] = {"nameplate side put",
                          "INSERT INTO nameplate_sides (app_id, name, side, claimed, added)"
                          " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (app_id, name, side)"
                          " DO UPDATE SET claimed = excluded.claimed"},
    [MB_OP_USAGE_NAMEPLATE] = {"usage nameplate",
                               "INSERT INTO usage.nameplates (app_id, started, waiting_time,"
                               " total_time, result) VALUES (?1, ?2, ?3, ?4, ?5)"},
    [MB_OP_USAGE_MAILBOX] = {"usage mailbox",
                             "INSERT INTO usage.mailboxes (app_id, for_nameplate, started,"
                             " total_time, waiting_time, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [MB_OP_USAGE_CLIENT] = {"usage client version",
                            "INSERT INTO usage.client_versions (app_id, side, connect_time,"
                            " implementation, version) VALUES (?1, ?2, ?3, ?4, ?5)"},
    [MB_OP_USAGE_CURRENT_DEL] = {"usage current clear", "DELETE FROM usage.current"},
    [MB_OP_USAGE_CURRENT] = {"usage current",
                             "INSERT INTO usage.current (rebooted, updated, blur_time,"
                             " connections_websocket) VALUES (?1, ?2, ?3, ?4)"},
};

static const char *const load_sql[MB_LOAD_TABLES] = {
    [MB_LOAD_MAILBOXES] = "SELECT rowid, app_id, id, for_nameplate, updated, crowded FROM mailboxes"
                          " WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    [MB_LOAD_MBSIDES] = "SELECT rowid, app_id, mailbox_id, side, opened, mood, added"
                        " FROM mailbox_sides WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    [MB_LOAD_MESSAGES] = "SELECT rowid, app_id, mailbox_id, side, phase, body, server_rx, msg_id"
                         " FROM messages WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    [MB_LOAD_NAMEPLATES] = "SELECT rowid, app_id, name, mailbox_id, crowded FROM nameplates"
                           " WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    [MB_LOAD_NPSIDES] = "SELECT rowid, app_id, name, side, claimed, added FROM nameplate_sides"
                        " WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
};

const char *mb_store_load_sql(int t)
{
    return t >= 0 && t < MB_LOAD_TABLES ? load_sql[t] : NULL;
}

void mb_store_config(wb_db_config_t *cfg, wb_db_attached_t *usage, const char *channel_db,
                     const char *usage_db)
{
    memset(cfg, 0, sizeof(*cfg));
    memset(usage, 0, sizeof(*usage));
    cfg->path = channel_db;
    cfg->migrations = channel_migrations;
    cfg->n_migrations = sizeof(channel_migrations) / sizeof(channel_migrations[0]);
    cfg->ops = ops;
    cfg->n_ops = MB_OP_COUNT;
    usage->schema = "usage";
    usage->path = usage_db != NULL ? usage_db : ":memory:";
    usage->migrations = usage_migrations;
    usage->n_migrations = sizeof(usage_migrations) / sizeof(usage_migrations[0]);
    cfg->attach = usage;
    cfg->n_attach = 1;
}
