/*
 * db_internal.h - what db.c and result.c share: the payload layouts of
 * request and result events, and the result builder. Not installed API.
 *
 * Both payloads are written and read by this process only, in native byte
 * order, with memcpy (the payload follows a 64-byte header, so nothing inside
 * it is aligned). Every reader checks every length against the event's len
 * before it trusts it: a request may come from any code in the process, and a
 * decoder of bytes must not crash on bad ones.
 *
 * Request: wb__db_req_hdr_t, then (kind SQL) `arg` bytes of SQL text without
 * a NUL, then `nbinds` values. Result: wb__db_res_hdr_t, `errlen` bytes of
 * message and a NUL, the cells row after row, then the row index (`nrows`
 * uint32 offsets from the payload start) at `index_off`, ending the payload.
 *
 * A value (bound or in a row) is one type byte (wb_val_type_t), then for INT
 * and REAL 8 bytes (int64_t, double), for TEXT and BLOB a uint32 length and
 * that many bytes, for NULL nothing.
 */
#ifndef WB_DB_INTERNAL_H
#define WB_DB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "db/db.h"
#include "runtime/event.h"

#define WB__DB_REQ_MAGIC 0x51624257u /* "WBbQ" */
#define WB__DB_RES_MAGIC 0x52624257u /* "WBbR" */

/* The lane's state travels in this event; see db.c, "Lifetime". */
#define WB__EV_DB_STATE (WB_EV_DB_RESULT + 1)

enum {
    WB__DB_REQ_SQL = 1,   /* arg = SQL length, SQL text follows the header */
    WB__DB_REQ_OP = 2,    /* arg = index into the config's ops */
    WB__DB_REQ_STATS = 3, /* no values; answered with wb_db_stats_t as one row */
    WB__DB_REQ_CALL = 4,  /* arg = handler index; values: rowid (INT), body (BLOB) */
};

typedef struct {
    uint32_t magic;
    uint8_t kind;
    uint8_t flags; /* WB_DB_DURABLE, WB_DB_QUIET */
    uint16_t reserved;
    uint32_t arg;
    uint32_t nbinds;
} wb__db_req_hdr_t;

typedef struct {
    uint32_t magic;
    uint32_t ncols;
    uint32_t nrows;
    uint32_t errlen; /* message bytes, not counting the NUL that follows them */
    int64_t rowid;
    int64_t changes;
    uint32_t index_off; /* where the row index starts; it runs to the end */
    uint32_t reserved;
} wb__db_res_hdr_t;

/* Builds one result at a time in a buffer the lane reuses, so the steady
 * state allocates nothing but the result event itself. */
typedef struct {
    unsigned char *buf;
    size_t len, cap;
    uint32_t *index; /* offset of each row's first cell */
    size_t nrows, capidx;
    uint32_t ncols;
    int err; /* first failure (WB_ENOMEM, WB_ETOOBIG); the rest is skipped */
} wb__db_resbuf_t;

void wb__db_resbuf_init(wb__db_resbuf_t *rb);
void wb__db_resbuf_fini(wb__db_resbuf_t *rb);

/* Start a result with ncols columns; forgets the previous one. */
void wb__db_res_begin(wb__db_resbuf_t *rb, uint32_t ncols);

/* Start a row, then add exactly ncols values with wb__db_res_value. Errors
 * stick in rb->err; once set, further calls do nothing. */
void wb__db_res_row(wb__db_resbuf_t *rb);
void wb__db_res_value(wb__db_resbuf_t *rb, const wb_value_t *v);

/* The finished result as a WB_EV_DB_RESULT event (status 0), or NULL when
 * out of memory. Fails (NULL) if rb->err is set. */
wb_event_t *wb__db_res_finish(wb__db_resbuf_t *rb, int64_t rowid, int64_t changes);

/* The finished result written over ev's own inline payload, when it fits
 * there: ev (a request the lane owns, done with) becomes the result, and no
 * block changes threads. Returns 0, or -1 (ev untouched) when it does not fit. */
int wb__db_res_finish_into(wb__db_resbuf_t *rb, wb_event_t *ev, int64_t rowid, int64_t changes);

/* An error result: status `code` (negative) and message `msg` (may be NULL),
 * truncated to WB__DB_MAX_ERRMSG bytes. NULL when out of memory. */
wb_event_t *wb__db_res_error(int code, const char *msg);

#define WB__DB_MAX_ERRMSG 1024

/* Encoded size of a value; 0 for an invalid one. */
size_t wb__db_val_size(const wb_value_t *v);

/* Write v (already sized by wb__db_val_size) at p; returns bytes written. */
size_t wb__db_val_put(unsigned char *p, const wb_value_t *v);

/* Read a value at p[0..avail). Returns bytes consumed, 0 when malformed.
 * TEXT and BLOB point into p. */
size_t wb__db_val_get(const unsigned char *p, size_t avail, wb_value_t *out);

#endif
