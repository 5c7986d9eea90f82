/*
 * addrbook_store.c - the address book's schema, operations and loading
 * (see addrbook_store.h).
 */
#include "apps/peer/addrbook_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

static const char *const migrations[] = {
    "CREATE TABLE addrbook_meta (one INTEGER PRIMARY KEY CHECK (one = 1), key BLOB NOT NULL);"
    "CREATE TABLE known_addr (id BLOB PRIMARY KEY, addr TEXT NOT NULL, src TEXT NOT NULL,"
    " attempts INTEGER NOT NULL, last_attempt INTEGER NOT NULL, last_success INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL, bucket_type INTEGER NOT NULL, buckets TEXT NOT NULL);",
};

static const wb_db_op_t ops[WB_ADDRBOOK_OP_COUNT] = {
    [WB_ADDRBOOK_OP_PUT] = {"known address put",
                            "INSERT INTO known_addr (id, addr, src, attempts, last_attempt,"
                            " last_success, last_seen, bucket_type, buckets)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id)"
                            " DO UPDATE SET addr = excluded.addr, src = excluded.src,"
                            " attempts = excluded.attempts, last_attempt = excluded.last_attempt,"
                            " last_success = excluded.last_success,"
                            " last_seen = excluded.last_seen, bucket_type = excluded.bucket_type,"
                            " buckets = excluded.buckets"},
    [WB_ADDRBOOK_OP_DEL] = {"known address delete", "DELETE FROM known_addr WHERE id = ?1"},
    [WB_ADDRBOOK_OP_PUT_KEY] = {"address book key put",
                                "INSERT INTO addrbook_meta (one, key) VALUES (1, ?1)"
                                " ON CONFLICT (one) DO UPDATE SET key = excluded.key"},
};

const char wb_addrbook_store_load_sql[] =
    "SELECT rowid, id, addr, src, attempts, last_attempt, last_success, last_seen, bucket_type,"
    " buckets FROM known_addr WHERE rowid > ?1 ORDER BY rowid LIMIT ?2";

static const char key_sql[] = "SELECT key FROM addrbook_meta WHERE one = 1";

void wb_addrbook_store_config(wb_db_config_t *cfg, const char *path)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->path = path;
    cfg->migrations = migrations;
    cfg->n_migrations = sizeof(migrations) / sizeof(migrations[0]);
    cfg->ops = ops;
    cfg->n_ops = WB_ADDRBOOK_OP_COUNT;
}

/* ---- writing -------------------------------------------------------------- */

wb_event_t *wb_addrbook_store_put(const wb_addrbook_rec_t *r, unsigned flags)
{
    char addr[WB_NETADDR_STRLEN], src[WB_NETADDR_STRLEN], buckets[64];
    size_t off = 0;
    wb_netaddr_str(&r->addr, 0, addr, sizeof(addr));
    if (r->src.family == 4 || r->src.family == 6)
        wb_netaddr_str(&r->src, 1, src, sizeof(src));
    else
        src[0] = '\0';
    buckets[0] = '\0';
    for (uint32_t i = 0; i < r->nbuckets && i < WB_ADDRBOOK_MAX_NEW_PER_ADDR; i++)
        off += (size_t)snprintf(buckets + off, sizeof(buckets) - off, "%s%u", i ? "," : "",
                                (unsigned)r->buckets[i]);
    wb_value_t v[] = {
        wb_val_blob(r->addr.id, 32), wb_val_text(addr),           wb_val_text(src),
        wb_val_int(r->attempts),     wb_val_int(r->last_attempt), wb_val_int(r->last_success),
        wb_val_int(r->last_seen),    wb_val_int(r->type),         wb_val_text(buckets)};
    return wb_db_request_op(WB_ADDRBOOK_OP_PUT, v, sizeof(v) / sizeof(v[0]), flags);
}

wb_event_t *wb_addrbook_store_del(const uint8_t id[32], unsigned flags)
{
    wb_value_t v = wb_val_blob(id, 32);
    return wb_db_request_op(WB_ADDRBOOK_OP_DEL, &v, 1, flags);
}

wb_event_t *wb_addrbook_store_change(const wb_addrbook_rec_t *r, int removed, unsigned flags)
{
    return removed ? wb_addrbook_store_del(r->addr.id, flags) : wb_addrbook_store_put(r, flags);
}

wb_event_t *wb_addrbook_store_put_key(const uint8_t key[32], unsigned flags)
{
    wb_value_t v = wb_val_blob(key, 32);
    return wb_db_request_op(WB_ADDRBOOK_OP_PUT_KEY, &v, 1, flags);
}

/* ---- loading -------------------------------------------------------------- */

wb_event_t *wb_addrbook_store_key_request(void)
{
    return wb_db_request_sql(key_sql, NULL, 0, 0);
}

wb_event_t *wb_addrbook_store_page_request(int64_t after_rowid)
{
    wb_value_t v[] = {wb_val_int(after_rowid), wb_val_int(WB_ADDRBOOK_LOAD_PAGE)};
    return wb_db_request_sql(wb_addrbook_store_load_sql, v, 2, 0);
}

int wb_addrbook_store_take_key(wb_addrbook_t *b, const wb_event_t *res)
{
    wb_value_t v;
    if (res->status != 0)
        return res->status;
    if (wb_db_result_nrows(res) == 0)
        return WB_ENOENT;
    if (wb_db_result_value(res, 0, 0, &v) != 0 || v.type != WB_VAL_BLOB || v.u.s.n != 32)
        return WB_ECORRUPT;
    return wb_addrbook_set_key(b, v.u.s.p);
}

/* A TEXT column as a NUL-terminated string in buf; 0 or WB_ECORRUPT. */
static int col_text(const wb_event_t *res, size_t row, size_t col, char *buf, size_t n)
{
    wb_value_t v;
    if (wb_db_result_value(res, row, col, &v) != 0 || v.type != WB_VAL_TEXT || v.u.s.n >= n)
        return WB_ECORRUPT;
    memcpy(buf, v.u.s.p, v.u.s.n);
    buf[v.u.s.n] = '\0';
    return 0;
}

static int col_int(const wb_event_t *res, size_t row, size_t col, int64_t *out)
{
    wb_value_t v;
    if (wb_db_result_value(res, row, col, &v) != 0 || v.type != WB_VAL_INT)
        return WB_ECORRUPT;
    *out = v.u.i;
    return 0;
}

/* "17,203" into r->buckets (at most 4, each < 65536). */
static int parse_buckets(const char *s, wb_addrbook_rec_t *r)
{
    r->nbuckets = 0;
    if (*s == '\0')
        return 0;
    for (;;) {
        char *end;
        if (*s < '0' || *s > '9')
            return WB_ECORRUPT;
        unsigned long k = strtoul(s, &end, 10);
        if (k > 65535 || r->nbuckets >= WB_ADDRBOOK_MAX_NEW_PER_ADDR)
            return WB_ECORRUPT;
        r->buckets[r->nbuckets++] = (uint16_t)k;
        if (*end == '\0')
            return 0;
        if (*end != ',')
            return WB_ECORRUPT;
        s = end + 1;
    }
}

int wb_addrbook_store_row(const wb_event_t *res, size_t row, int64_t *rowid, wb_addrbook_rec_t *out)
{
    char addr[WB_NETADDR_STRLEN + 8], src[WB_NETADDR_STRLEN + 8], buckets[64];
    int64_t attempts, type;
    wb_value_t id;
    memset(out, 0, sizeof(*out));
    if (row >= wb_db_result_nrows(res))
        return WB_ENOENT;
    if (col_int(res, row, 0, rowid) != 0)
        return WB_ECORRUPT;
    if (wb_db_result_value(res, row, 1, &id) != 0 || id.type != WB_VAL_BLOB || id.u.s.n != 32)
        return WB_ECORRUPT;
    memcpy(out->addr.id, id.u.s.p, 32);
    if (col_text(res, row, 2, addr, sizeof(addr)) != 0 ||
        col_text(res, row, 3, src, sizeof(src)) != 0 || col_int(res, row, 4, &attempts) != 0 ||
        col_int(res, row, 5, &out->last_attempt) != 0 ||
        col_int(res, row, 6, &out->last_success) != 0 ||
        col_int(res, row, 7, &out->last_seen) != 0 || col_int(res, row, 8, &type) != 0 ||
        col_text(res, row, 9, buckets, sizeof(buckets)) != 0)
        return WB_ECORRUPT;
    uint8_t keep[32];
    memcpy(keep, out->addr.id, 32);
    if (wb_netaddr_parse(addr, 0, &out->addr, NULL, 0) != 0 || out->addr.has_id) {
        memset(&out->addr, 0, sizeof(out->addr));
        memcpy(out->addr.id, keep, 32);
        return WB_ECORRUPT;
    }
    memcpy(out->addr.id, keep, 32);
    out->addr.has_id = 1;
    if (src[0] != '\0' && wb_netaddr_parse(src, 0, &out->src, NULL, 0) != 0)
        return WB_ECORRUPT;
    if (attempts < 0 || attempts > UINT32_MAX ||
        (type != WB_ADDRBOOK_NEW && type != WB_ADDRBOOK_OLD))
        return WB_ECORRUPT;
    out->attempts = (uint32_t)attempts;
    out->type = (uint8_t)type;
    return parse_buckets(buckets, out);
}

int wb_addrbook_store_take_page(wb_addrbook_t *b, const wb_event_t *res, int64_t *last_rowid,
                                size_t *nrows, size_t *kept)
{
    *nrows = 0;
    *kept = 0;
    if (res->status != 0)
        return res->status;
    size_t n = wb_db_result_nrows(res);
    for (size_t i = 0; i < n; i++) {
        wb_addrbook_rec_t r;
        int64_t rowid = *last_rowid;
        int rc = wb_addrbook_store_row(res, i, &rowid, &r);
        if (rowid > *last_rowid)
            *last_rowid = rowid;
        if (rc != 0) {
            /* A record the book refuses is reported removed: its row goes. */
            static const uint8_t zero[32];
            r.type = 0;
            if (memcmp(r.addr.id, zero, 32) == 0)
                continue;
        }
        rc = wb_addrbook_load(b, &r);
        if (rc == WB_ENOMEM)
            return rc;
        if (rc == 0)
            (*kept)++;
    }
    *nrows = n;
    return 0;
}
