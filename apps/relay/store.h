/*
 * store.h - the transit relay's usage database (--usage-db).
 *
 * The Python relay 0.2.1's schema (db-schemas/v1.sql), table for table and
 * column for column, so its reports and munin plugins read either relay's
 * file, and either relay opens the other's: `version` (one row, 1),
 * `current` (one row: rebooted, updated, connected, waiting,
 * incomplete_bytes) and `usage` (one row per finished pair or unpaired
 * connection: started, total_time, waiting_time, total_bytes, result). The
 * migration creates only what is missing, so a file the Python relay made is
 * taken as it is.
 */
#ifndef WB_RELAY_STORE_H
#define WB_RELAY_STORE_H

#include "db/db.h"

enum {
    TR_OP_USAGE,       /* started, total_time, waiting_time (or NULL), total_bytes, result */
    TR_OP_CURRENT_DEL, /* (none) */
    TR_OP_CURRENT,     /* rebooted, updated, connected, waiting, incomplete_bytes */
    TR_OP_COUNT
};

/* Fill cfg for the database file at path (which must outlive the runtime). */
void tr_store_config(wb_db_config_t *cfg, const char *path);

/* Python's blur_size: 0 stays 0; below 1 MB up to a multiple of 10 kB,
 * below 1 GB of 1 MB, else of 100 MB. */
uint64_t tr_blur_size(uint64_t size);

#endif
