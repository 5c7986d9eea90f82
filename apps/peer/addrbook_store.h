/*
 * addrbook_store.h - the address book's SQLite schema, its named
 * operations, and loading a book back (the mailbox store's pattern).
 *
 *   addrbook_meta (one = 1, key BLOB)      the book's 32-byte bucket key
 *   known_addr    (id BLOB PRIMARY KEY,    the node id (32 bytes)
 *                  addr TEXT,              "IP:port" ("[v6]:port")
 *                  src TEXT,               who told us: "ID@IP:port",
 *                                          "IP:port", or "" (unknown)
 *                  attempts, last_attempt, last_success, last_seen INTEGER
 *                                          (times in ms since the epoch)
 *                  bucket_type INTEGER,    1 new, 2 old
 *                  buckets TEXT)           bucket indexes, "17,203"
 *
 * Writing (write-through): the book's change hook gets each changed or
 * removed record; wb_addrbook_store_change turns it into a request event
 * (an upsert or a delete). The owning actor routes it (wb_event_route:
 * itself as source, WB_LANE_DB as destination, a cookie of its choice) and
 * sends it with wb_rt_send; ownership passes only when the send succeeds.
 * WB_DB_QUIET in flags is the usual choice: only failures come back.
 *
 * Loading, before the book is used (each step a request, its answer a
 * WB_EV_DB_RESULT to the actor):
 *   1. wb_addrbook_store_key_request(); the answer to
 *      wb_addrbook_store_take_key: 0 = the book has the stored key;
 *      WB_ENOENT = none stored: store the book's own
 *      (wb_addrbook_store_put_key with wb_addrbook_key).
 *   2. wb_addrbook_store_page_request(0), then with the last rowid of each
 *      page while a page comes back full; each answer to
 *      wb_addrbook_store_take_page, which puts the rows back into the book
 *      (wb_addrbook_load: stored buckets reused when still valid). Set the
 *      hook first: records placed afresh are reported (rewrite their rows),
 *      and rows that cannot be kept are reported removed (delete them).
 *
 * Threads: the builders and readers run on any thread; the book is its
 * owner's.
 */
#ifndef WB_PEER_ADDRBOOK_STORE_H
#define WB_PEER_ADDRBOOK_STORE_H

#include "apps/peer/addrbook.h"
#include "db/db.h"

enum {
    WB_ADDRBOOK_OP_PUT,     /* id, addr, src, attempts, last_attempt, last_success,
                               last_seen, bucket_type, buckets */
    WB_ADDRBOOK_OP_DEL,     /* id */
    WB_ADDRBOOK_OP_PUT_KEY, /* key */
    WB_ADDRBOOK_OP_COUNT
};

/* Rows per page of wb_addrbook_store_page_request. */
#define WB_ADDRBOOK_LOAD_PAGE 1024

/* SELECT rowid, id, addr, src, attempts, last_attempt, last_success,
 * last_seen, bucket_type, buckets FROM known_addr WHERE rowid > ?1 ORDER BY
 * rowid LIMIT ?2. */
extern const char wb_addrbook_store_load_sql[];

/* Fill cfg for a database file of its own (path must outlive the runtime). */
void wb_addrbook_store_config(wb_db_config_t *cfg, const char *path);

/* Request events (NULL when out of memory) for a lane configured by
 * wb_addrbook_store_config. */
wb_event_t *wb_addrbook_store_put(const wb_addrbook_rec_t *r, unsigned flags);
wb_event_t *wb_addrbook_store_del(const uint8_t id[32], unsigned flags);
wb_event_t *wb_addrbook_store_change(const wb_addrbook_rec_t *r, int removed, unsigned flags);
wb_event_t *wb_addrbook_store_put_key(const uint8_t key[32], unsigned flags);
wb_event_t *wb_addrbook_store_key_request(void);
wb_event_t *wb_addrbook_store_page_request(int64_t after_rowid);

/* The answer to the key request: 0 (key set in b), WB_ENOENT (none
 * stored), WB_ECORRUPT (not 32 bytes), the result's own error, or
 * wb_addrbook_set_key's WB_ESTATE. */
int wb_addrbook_store_take_key(wb_addrbook_t *b, const wb_event_t *res);

/* Row `row` of a page answer into *out (and its rowid). 0, WB_ENOENT past
 * the last row, WB_ECORRUPT for a row that does not parse (out->addr.id
 * is still set when the id column was good). */
int wb_addrbook_store_row(const wb_event_t *res, size_t row, int64_t *rowid,
                          wb_addrbook_rec_t *out);

/* Load a page answer's rows into b. *nrows = rows in the page (a full page:
 * ask for the next), *last_rowid = the last one's rowid, *kept = records
 * now in the book from it. A row that does not parse is reported removed
 * through the hook when its id is readable. 0 or the result's error, or
 * WB_ENOMEM. */
int wb_addrbook_store_take_page(wb_addrbook_t *b, const wb_event_t *res, int64_t *last_rowid,
                                size_t *nrows, size_t *kept);

#endif
