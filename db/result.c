/*
 * result.c - encoding and reading database result events.
 *
 * The layout is in db_internal.h. Readers never trust a length they have not
 * checked against the event's own len: a corrupt or foreign event gives an
 * error code or an empty answer, never a read out of bounds.
 */
#include <stdlib.h>
#include <string.h>

#include "db/db_internal.h"
#include "runtime/assert.h"
#include "runtime/error.h"
#include "runtime/pool.h"

/* Results larger than this hand their buffer to the event instead of being
 * copied; the next result starts a fresh buffer. */
#define HANDOFF_BYTES (64u * 1024)

/* ---- values --------------------------------------------------------------- */

size_t wb__db_val_size(const wb_value_t *v)
{
    switch (v->type) {
    case WB_VAL_NULL:
        return 1;
    case WB_VAL_INT:
    case WB_VAL_REAL:
        return 1 + 8;
    case WB_VAL_TEXT:
    case WB_VAL_BLOB:
        if (v->u.s.n > WB_DB_MAX_PAYLOAD || (v->u.s.p == NULL && v->u.s.n > 0))
            return 0;
        return 1 + 4 + v->u.s.n;
    }
    return 0;
}

size_t wb__db_val_put(unsigned char *p, const wb_value_t *v)
{
    uint32_t n;
    p[0] = (unsigned char)v->type;
    switch (v->type) {
    case WB_VAL_NULL:
        return 1;
    case WB_VAL_INT:
        memcpy(p + 1, &v->u.i, 8);
        return 9;
    case WB_VAL_REAL:
        memcpy(p + 1, &v->u.d, 8);
        return 9;
    case WB_VAL_TEXT:
    case WB_VAL_BLOB:
        n = (uint32_t)v->u.s.n;
        memcpy(p + 1, &n, 4);
        if (n > 0)
            memcpy(p + 5, v->u.s.p, n);
        return 5 + (size_t)n;
    }
    WB_ASSERT(!"value type checked by wb__db_val_size");
    return 0;
}

size_t wb__db_val_get(const unsigned char *p, size_t avail, wb_value_t *out)
{
    uint32_t n;
    if (avail < 1)
        return 0;
    switch (p[0]) {
    case WB_VAL_NULL:
        *out = wb_val_null();
        return 1;
    case WB_VAL_INT:
        if (avail < 9)
            return 0;
        out->type = WB_VAL_INT;
        memcpy(&out->u.i, p + 1, 8);
        return 9;
    case WB_VAL_REAL:
        if (avail < 9)
            return 0;
        out->type = WB_VAL_REAL;
        memcpy(&out->u.d, p + 1, 8);
        return 9;
    case WB_VAL_TEXT:
    case WB_VAL_BLOB:
        if (avail < 5)
            return 0;
        memcpy(&n, p + 1, 4);
        if (n > avail - 5)
            return 0;
        out->type = (wb_val_type_t)p[0];
        out->u.s.p = p + 5;
        out->u.s.n = n;
        return 5 + (size_t)n;
    }
    return 0;
}

/* ---- building ------------------------------------------------------------- */

void wb__db_resbuf_init(wb__db_resbuf_t *rb)
{
    memset(rb, 0, sizeof(*rb));
}

void wb__db_resbuf_fini(wb__db_resbuf_t *rb)
{
    free(rb->buf);
    free(rb->index);
    memset(rb, 0, sizeof(*rb));
}

/* Make room for `more` bytes; sets rb->err on failure. */
static int reserve(wb__db_resbuf_t *rb, size_t more)
{
    if (rb->err != 0)
        return -1;
    /* Leave room for the row index the payload ends with. */
    size_t idx = (rb->nrows + 1) * sizeof(uint32_t);
    if (more > WB_DB_MAX_PAYLOAD || rb->len + more + idx > WB_DB_MAX_PAYLOAD) {
        rb->err = WB_ETOOBIG;
        return -1;
    }
    if (rb->len + more <= rb->cap)
        return 0;
    size_t cap = rb->cap ? rb->cap : 256;
    while (cap < rb->len + more)
        cap *= 2;
    unsigned char *nb = realloc(rb->buf, cap);
    if (nb == NULL) {
        rb->err = WB_ENOMEM;
        return -1;
    }
    rb->buf = nb;
    rb->cap = cap;
    return 0;
}

void wb__db_res_begin(wb__db_resbuf_t *rb, uint32_t ncols)
{
    rb->len = 0;
    rb->nrows = 0;
    rb->ncols = ncols;
    rb->err = 0;
    if (reserve(rb, sizeof(wb__db_res_hdr_t) + 1) != 0)
        return;
    /* The header is written by finish; an empty message and its NUL now. */
    rb->len = sizeof(wb__db_res_hdr_t);
    rb->buf[rb->len++] = 0;
}

void wb__db_res_row(wb__db_resbuf_t *rb)
{
    if (rb->err != 0)
        return;
    if (rb->nrows == UINT32_MAX || rb->len > UINT32_MAX) {
        rb->err = WB_ETOOBIG;
        return;
    }
    if (rb->nrows == rb->capidx) {
        size_t cap = rb->capidx ? rb->capidx * 2 : 64;
        uint32_t *ni = realloc(rb->index, cap * sizeof(*ni));
        if (ni == NULL) {
            rb->err = WB_ENOMEM;
            return;
        }
        rb->index = ni;
        rb->capidx = cap;
    }
    rb->index[rb->nrows++] = (uint32_t)rb->len;
}

void wb__db_res_value(wb__db_resbuf_t *rb, const wb_value_t *v)
{
    size_t n = wb__db_val_size(v);
    if (n == 0) {
        if (rb->err == 0)
            rb->err = WB_ETOOBIG;
        return;
    }
    if (reserve(rb, n) != 0)
        return;
    rb->len += wb__db_val_put(rb->buf + rb->len, v);
}

static void free_payload(void *data, size_t len)
{
    (void)len;
    free(data);
}

/* Write the header and the row index; returns the payload length, or 0. */
static size_t seal(wb__db_resbuf_t *rb, int64_t rowid, int64_t changes)
{
    size_t idx = rb->nrows * sizeof(uint32_t);
    if (rb->err != 0 || reserve(rb, idx) != 0)
        return 0;
    wb__db_res_hdr_t h = {
        .magic = WB__DB_RES_MAGIC,
        .ncols = rb->ncols,
        .nrows = (uint32_t)rb->nrows,
        .errlen = 0,
        .rowid = rowid,
        .changes = changes,
        .index_off = (uint32_t)rb->len,
    };
    memcpy(rb->buf, &h, sizeof(h));
    if (idx > 0)
        memcpy(rb->buf + rb->len, rb->index, idx);
    return rb->len + idx;
}

int wb__db_res_finish_into(wb__db_resbuf_t *rb, wb_event_t *ev, int64_t rowid, int64_t changes)
{
    /* A big request (a blob) is not kept alive by its small answer. */
    if ((ev->flags & WB_EVF_EXTERNAL) || ev->data != (char *)ev + sizeof(*ev) || rb->err != 0 ||
        ev->len > WB_POOL_MAX_BLOCK - sizeof(*ev) ||
        rb->len + rb->nrows * sizeof(uint32_t) > ev->len)
        return -1;
    size_t len = seal(rb, rowid, changes);
    if (len == 0)
        return -1;
    memcpy(ev->data, rb->buf, len);
    ev->type = WB_EV_DB_RESULT;
    ev->len = (uint32_t)len;
    ev->status = 0;
    rb->len = 0;
    rb->nrows = 0;
    return 0;
}

wb_event_t *wb__db_res_finish(wb__db_resbuf_t *rb, int64_t rowid, int64_t changes)
{
    size_t len = seal(rb, rowid, changes);
    if (len == 0)
        return NULL;
    wb_event_t *ev;
    if (len >= HANDOFF_BYTES) {
        unsigned char *fit = realloc(rb->buf, len);
        if (fit != NULL) {
            rb->buf = fit;
            rb->cap = len;
        }
        ev = wb_event_new_ext(WB_EV_DB_RESULT, rb->buf, len, free_payload);
        if (ev != NULL) {
            rb->buf = NULL;
            rb->cap = 0;
        }
    } else {
        ev = wb_event_new_copy(WB_EV_DB_RESULT, rb->buf, len);
    }
    rb->len = 0;
    rb->nrows = 0;
    return ev;
}

wb_event_t *wb__db_res_error(int code, const char *msg)
{
    size_t n = msg != NULL ? strnlen(msg, WB__DB_MAX_ERRMSG) : 0;
    size_t len = sizeof(wb__db_res_hdr_t) + n + 1;
    wb_event_t *ev = wb_event_new(WB_EV_DB_RESULT, len);
    if (ev == NULL)
        return NULL;
    wb__db_res_hdr_t h = {
        .magic = WB__DB_RES_MAGIC,
        .errlen = (uint32_t)n,
        .index_off = (uint32_t)len,
    };
    unsigned char *p = ev->data;
    memcpy(p, &h, sizeof(h));
    if (n > 0)
        memcpy(p + sizeof(h), msg, n);
    p[sizeof(h) + n] = 0;
    ev->status = code < 0 ? code : WB_EDB;
    return ev;
}

/* ---- reading -------------------------------------------------------------- */

/* The header of a well-formed result, or -1. Checks everything that does
 * not need a walk through the cells. */
static int header(const wb_event_t *res, wb__db_res_hdr_t *h)
{
    if (res == NULL || res->type != WB_EV_DB_RESULT || res->data == NULL ||
        res->len < sizeof(*h) + 1)
        return -1;
    const unsigned char *p = res->data;
    size_t len = res->len;
    memcpy(h, p, sizeof(*h));
    if (h->magic != WB__DB_RES_MAGIC)
        return -1;
    size_t cells = sizeof(*h) + (size_t)h->errlen + 1;
    if (h->errlen > len - sizeof(*h) - 1 || p[cells - 1] != 0)
        return -1;
    if (h->index_off < cells || h->index_off > len ||
        (uint64_t)(len - h->index_off) != (uint64_t)h->nrows * sizeof(uint32_t))
        return -1;
    /* Every cell takes at least one byte. */
    if (h->nrows > 0 && (h->ncols == 0 || (uint64_t)h->nrows * h->ncols > h->index_off - cells))
        return -1;
    return 0;
}

/* A success result's header, or -1 (error results and malformed ones). */
static int ok_header(const wb_event_t *res, wb__db_res_hdr_t *h)
{
    if (res == NULL || res->status < 0)
        return -1;
    return header(res, h);
}

int64_t wb_db_result_rowid(const wb_event_t *res)
{
    wb__db_res_hdr_t h;
    return ok_header(res, &h) == 0 ? h.rowid : 0;
}

int64_t wb_db_result_changes(const wb_event_t *res)
{
    wb__db_res_hdr_t h;
    return ok_header(res, &h) == 0 ? h.changes : 0;
}

size_t wb_db_result_nrows(const wb_event_t *res)
{
    wb__db_res_hdr_t h;
    return ok_header(res, &h) == 0 ? h.nrows : 0;
}

size_t wb_db_result_ncols(const wb_event_t *res)
{
    wb__db_res_hdr_t h;
    return ok_header(res, &h) == 0 ? h.ncols : 0;
}

const char *wb_db_result_errmsg(const wb_event_t *res)
{
    wb__db_res_hdr_t h;
    if (header(res, &h) != 0)
        return "";
    return (const char *)res->data + sizeof(h);
}

int wb_db_result_value(const wb_event_t *res, size_t row, size_t col, wb_value_t *out)
{
    wb__db_res_hdr_t h;
    *out = wb_val_null();
    if (ok_header(res, &h) != 0)
        return WB_EINVAL;
    if (row >= h.nrows || col >= h.ncols)
        return WB_ENOENT;
    const unsigned char *p = res->data;
    size_t cells = sizeof(h) + (size_t)h.errlen + 1;
    uint32_t off;
    memcpy(&off, p + h.index_off + row * sizeof(uint32_t), sizeof(off));
    if (off < cells || off >= h.index_off)
        return WB_EINVAL;
    wb_value_t v;
    for (size_t c = 0;; c++) {
        size_t n = wb__db_val_get(p + off, h.index_off - off, &v);
        if (n == 0)
            return WB_EINVAL;
        if (c == col)
            break;
        off += (uint32_t)n;
    }
    *out = v;
    return 0;
}

/* The stats result is one row of INT columns in wb_db_stats_t's order. */
int wb_db_result_stats(const wb_event_t *res, wb_db_stats_t *out)
{
    enum { N = sizeof(wb_db_stats_t) / sizeof(uint64_t) };
    uint64_t f[N];
    memset(out, 0, sizeof(*out));
    if (wb_db_result_nrows(res) != 1 || wb_db_result_ncols(res) != N)
        return WB_EINVAL;
    for (size_t i = 0; i < N; i++) {
        wb_value_t v;
        if (wb_db_result_value(res, 0, i, &v) != 0 || v.type != WB_VAL_INT)
            return WB_EINVAL;
        f[i] = (uint64_t)v.u.i;
    }
    memcpy(out, f, sizeof(*out));
    return 0;
}
