/*
 * fuzz_mailbox.c - the mailbox server's state machine (apps/mailbox/core.h)
 * under arbitrary sessions of four connections.
 *
 * Input: byte 0 picks the configuration (bit 0 usage rows, bit 1
 * disallow_list, bit 2 blur_usage 60 s, bit 3 small limits: 4 mailboxes, 4
 * messages each, 1 KiB stored; bit 4 a motd). The rest is split at 0x00
 * bytes into records (JSON text never holds a raw NUL, so nothing is lost).
 * A record's first byte c says what to do, the rest is its payload:
 *   conn = c & 3, extra = c >> 5, action = (c >> 2) & 7 (c is never 0, the
 *   separator: connection 0 sends with actions 1-3):
 *   0-3: the payload is one message from connection conn (opened first if
 *        it is not), the clock having moved on by extra / 4 s;
 *   4:   before any connection opened, a row restored (mb_restore_*), tables
 *        in store.h's order: the payload's first byte f picks the table
 *        ((f & 7) % 5), a flag (bit 3: for_nameplate/opened/crowded/claimed),
 *        a NULL mood or message id (bit 4) and a time (now - 100 * (f >> 5));
 *        the rest, split at 0x01, gives the strings in the function's
 *        order. Later, or out of table order, it is a message as above;
 *   5:   connection conn goes away (mb_conn_free);
 *   6:   connection conn goes away and a new one takes its place;
 *   7:   the clock moves on by 100 * (extra + 1) s and mb_core_prune runs
 *        (expiry 300 s, so a few of these prune everything idle).
 * In a message, every "$M" is replaced by the mailbox id of the last
 * `claimed` answer (ids are random: without this, nameplate mailboxes could
 * never be opened). A connection the core closed (bad JSON) is freed after
 * the call, as the glue does; at the end every connection is freed, then
 * everything idle is pruned (nothing may remain), then the core is freed.
 *
 * Checks (abort on failure): every message sent parses as a JSON object with
 * a string "type" and a float "server_tx" equal to the call's time, and has
 * the members its type must have (wormhole.md 1.4: a `claimed` its mailbox
 * string, a `message` its side, phase and body strings...); nothing
 * is sent to a closed connection; the sender of a message gets exactly one
 * ack, first, when its message is an object with a "type", and otherwise
 * exactly one error and no ack (plus a close with 1007 for bad JSON, 1003
 * for a non-object); other connections only get `message`s; each persisted
 * request is an operation of store.h with its number of values; the
 * statistics respect the configured limits (unless rows were restored: the
 * database is trusted past them); no leaks (LeakSanitizer).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/mailbox/core.h"
#include "apps/mailbox/store.h"
#include "db/db.h"
#include "db/db_internal.h"
#include "runtime/log.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_mailbox: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum { NCONN = 4 };

static const uint32_t arity[MB_OP_COUNT] = {
    [MB_OP_MAILBOX_PUT] = 5,   [MB_OP_MAILBOX_TOUCH] = 3, [MB_OP_MAILBOX_DEL] = 2,
    [MB_OP_MBSIDE_PUT] = 6,    [MB_OP_MESSAGE_ADD] = 7,   [MB_OP_NAMEPLATE_PUT] = 4,
    [MB_OP_NAMEPLATE_DEL] = 2, [MB_OP_NPSIDE_PUT] = 5,    [MB_OP_USAGE_NAMEPLATE] = 5,
    [MB_OP_USAGE_MAILBOX] = 6, [MB_OP_USAGE_CLIENT] = 5,  [MB_OP_USAGE_CURRENT_DEL] = 0,
    [MB_OP_USAGE_CURRENT] = 4,
};

typedef struct {
    mb_conn_t *c;
    int closed, close_code;
    /* During an input call from this connection: */
    int got, acks, errors, first_is_ack;
} slot_t;

static struct {
    slot_t s[NCONN];
    int sender; /* the connection whose input is being handled, or -1 */
    double now;
    uint64_t next_id;
    char last_mailbox[MB_MBID_MAX + 1]; /* of the last `claimed` */
    int opened_any, restored, last_table;
} F;

static int has_string(const json_t *o, const char *key)
{
    return json_is_string(json_object_get(o, key));
}

/* The members each server message must carry (besides type, server_tx). */
static void check_shape(const json_t *o, const char *t)
{
    size_t n = json_object_size(o);
    if (strcmp(t, "welcome") == 0) {
        CHECK(json_is_object(json_object_get(o, "welcome")) && n == 3);
    } else if (strcmp(t, "ack") == 0) {
        CHECK(json_object_get(o, "id") != NULL && n == 3);
    } else if (strcmp(t, "pong") == 0) {
        CHECK(json_object_get(o, "pong") != NULL && n == 3);
    } else if (strcmp(t, "nameplates") == 0) {
        json_t *l = json_object_get(o, "nameplates"), *e;
        size_t i;
        CHECK(json_is_array(l) && n == 3);
        json_array_foreach(l, i, e)
            CHECK(json_is_object(e) && has_string(e, "id") && json_object_size(e) == 1);
    } else if (strcmp(t, "allocated") == 0) {
        CHECK(has_string(o, "nameplate") && n == 3);
    } else if (strcmp(t, "claimed") == 0) {
        CHECK(has_string(o, "mailbox") && n == 3);
    } else if (strcmp(t, "released") == 0 || strcmp(t, "closed") == 0) {
        CHECK(n == 2);
    } else if (strcmp(t, "message") == 0) {
        CHECK(has_string(o, "side") && has_string(o, "phase") && has_string(o, "body"));
        CHECK(json_is_real(json_object_get(o, "server_rx")) && json_object_get(o, "id") != NULL);
        CHECK(n == 7);
    } else {
        CHECK(strcmp(t, "error") == 0 && has_string(o, "error") && (n == 3 || n == 4));
    }
}

static void io_send(void *ctx, mb_conn_t *c, const char *json, size_t len)
{
    slot_t *s = mb_conn_user(c);
    /* s->c is not set yet while mb_conn_new sends the welcome. */
    CHECK(s >= F.s && s < F.s + NCONN && (s->c == c || (s->c == NULL && F.sender < 0)));
    CHECK(!s->closed);
    json_t *o = json_loadb(json, len, 0, NULL);
    CHECK(o != NULL && json_is_object(o));
    json_t *type = json_object_get(o, "type"), *tx = json_object_get(o, "server_tx");
    CHECK(json_is_string(type));
    CHECK(json_is_real(tx) && json_real_value(tx) == F.now);
    const char *t = json_string_value(type);
    check_shape(o, t);
    if (strcmp(t, "claimed") == 0) {
        json_t *m = json_object_get(o, "mailbox");
        CHECK(json_string_length(m) <= MB_MBID_MAX);
        snprintf(F.last_mailbox, sizeof(F.last_mailbox), "%s", json_string_value(m));
    }
    if (F.sender >= 0 && s == &F.s[F.sender]) {
        if (s->got == 0)
            s->first_is_ack = strcmp(t, "ack") == 0;
        s->got++;
        s->acks += strcmp(t, "ack") == 0;
        s->errors += strcmp(t, "error") == 0;
    } else if (F.sender >= 0) {
        CHECK(strcmp(t, "message") == 0); /* a broadcast */
    } else {
        CHECK(strcmp(t, "welcome") == 0);
    }
    json_decref(o);
}

static void io_close(void *ctx, mb_conn_t *c, int code, const char *reason)
{
    slot_t *s = mb_conn_user(c);
    CHECK(s >= F.s && s < F.s + NCONN && s->c == c);
    CHECK(F.sender >= 0 && s == &F.s[F.sender]);
    CHECK(!s->closed);
    CHECK(code == 1007 || code == 1003);
    CHECK(reason != NULL && reason[0] != 0);
    s->closed = 1;
    s->close_code = code;
}

static void io_persist(void *ctx, wb_event_t *req)
{
    CHECK(req != NULL && req->type == WB_EV_DB_REQUEST);
    wb__db_req_hdr_t h;
    CHECK(req->len >= sizeof(h));
    memcpy(&h, req->data, sizeof(h));
    CHECK(h.magic == WB__DB_REQ_MAGIC && h.kind == WB__DB_REQ_OP);
    CHECK(h.arg < MB_OP_COUNT && h.nbinds == arity[h.arg]);
    const unsigned char *p = req->data;
    size_t off = sizeof(h);
    for (uint32_t i = 0; i < h.nbinds; i++) {
        wb_value_t v;
        size_t k = wb__db_val_get(p + off, req->len - off, &v);
        CHECK(k > 0);
        off += k;
    }
    CHECK(off == req->len);
    wb_event_free(req);
}

static void slot_open(mb_core_t *core, int i)
{
    slot_t *s = &F.s[i];
    memset(s, 0, sizeof(*s));
    F.sender = -1;
    s->c = mb_conn_new(core, ++F.next_id, "203.0.113.9", s, F.now);
    CHECK(s->c != NULL);
    F.opened_any = 1;
}

static void slot_free(int i)
{
    if (F.s[i].c != NULL)
        mb_conn_free(F.s[i].c);
    memset(&F.s[i], 0, sizeof(F.s[i]));
}

/* data with each "$M" replaced by the last claimed mailbox id: malloc'd. */
static uint8_t *substitute(const uint8_t *data, size_t len, size_t *out_len)
{
    size_t idlen = strlen(F.last_mailbox), n = 0;
    uint8_t *out = malloc(len * (idlen > 2 ? idlen / 2 + 1 : 1) + 1);
    CHECK(out != NULL);
    for (size_t k = 0; k < len; k++) {
        if (data[k] == '$' && k + 1 < len && data[k + 1] == 'M') {
            memcpy(out + n, F.last_mailbox, idlen);
            n += idlen;
            k++;
        } else {
            out[n++] = data[k];
        }
    }
    *out_len = n;
    return out;
}

static void input(mb_core_t *core, int i, const uint8_t *raw, size_t rawlen)
{
    slot_t *s = &F.s[i];
    size_t len;
    uint8_t *data = substitute(raw, rawlen, &len);
    s->got = s->acks = s->errors = s->first_is_ack = 0;
    F.sender = i;
    mb_conn_input(s->c, data, len, F.now);
    F.sender = -1;
    /* What the core should have made of it. */
    json_t *v = json_loadb((const char *)data, len, JSON_DECODE_ANY, NULL);
    if (v == NULL || !json_is_object(v)) {
        CHECK(s->got == 1 && s->errors == 1 && s->acks == 0);
        CHECK(s->closed && s->close_code == (v == NULL ? 1007 : 1003));
    } else if (json_object_get(v, "type") == NULL) {
        CHECK(s->got == 1 && s->errors == 1 && s->acks == 0 && !s->closed);
    } else {
        CHECK(s->got >= 1 && s->first_is_ack && s->acks == 1 && !s->closed);
    }
    json_decref(v);
    free(data);
    if (s->closed) /* the glue frees it once the close is written */
        slot_free(i);
}

/* Action 4 at the start: one row of the channel database. */
static void restore(mb_core_t *core, const uint8_t *data, size_t len)
{
    char buf[4096], *f[6];
    int n = 0;
    uint8_t flags = data[0];
    int table = (flags & 7) % 5, flag = (flags >> 3) & 1, null = (flags >> 4) & 1;
    double t = F.now - 100.0 * (flags >> 5);
    len = len - 1 < sizeof(buf) - 1 ? len - 1 : sizeof(buf) - 1;
    memcpy(buf, data + 1, len);
    buf[len] = 0;
    f[n++] = buf;
    for (size_t k = 0; k < len && n < 6; k++)
        if (buf[k] == 1) {
            buf[k] = 0;
            f[n++] = buf + k + 1;
        }
    while (n < 6)
        f[n++] = buf + len; /* "" */
    uint64_t skipped = mb_restore_skipped(core);
    int rc = 0;
    switch (table) {
    case MB_LOAD_MAILBOXES:
        rc = mb_restore_mailbox(core, f[0], f[1], flag, t, null);
        break;
    case MB_LOAD_MBSIDES:
        rc = mb_restore_mailbox_side(core, f[0], f[1], f[2], flag, null ? NULL : f[3], t);
        break;
    case MB_LOAD_MESSAGES:
        rc = mb_restore_message(core, f[0], f[1], f[2], f[3], f[4], t, null ? NULL : f[5]);
        break;
    case MB_LOAD_NAMEPLATES:
        rc = mb_restore_nameplate(core, f[0], f[1], f[2], flag);
        break;
    default:
        rc = mb_restore_nameplate_side(core, f[0], f[1], f[2], flag, t);
        break;
    }
    CHECK(rc == 0);
    CHECK(mb_restore_skipped(core) - skipped <= 1);
    F.restored = 1;
    F.last_table = table;
}

static void check_stats(mb_core_t *core, const mb_config_t *cfg)
{
    mb_stats_t st;
    mb_core_stats(core, &st);
    uint64_t live = 0;
    for (int i = 0; i < NCONN; i++)
        live += F.s[i].c != NULL;
    CHECK(st.connections == live);
    CHECK(st.listeners <= st.connections);
    if (!F.restored) {
        CHECK(st.mailboxes <= cfg->max_mailboxes);
        CHECK(st.stored_bytes <= cfg->max_stored_bytes);
        CHECK(st.messages <= st.mailboxes * cfg->max_messages);
    }
    CHECK(st.mailboxes > 0 || (st.messages == 0 && st.stored_bytes == 0 && st.listeners == 0));
    CHECK((st.messages == 0) == (st.stored_bytes == 0));
    /* An app is kept only while it holds something. */
    CHECK(st.apps <= st.nameplates + st.mailboxes);
    CHECK(st.errors <= st.commands);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    wb_log_set_level(WB_LOG_OFF);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.usage = data[0] & 1;
    cfg.disallow_list = (data[0] >> 1) & 1;
    cfg.blur_usage = data[0] & 4 ? 60 : 0;
    if (data[0] & 8) {
        cfg.max_mailboxes = 4;
        cfg.max_messages = 4;
        cfg.max_stored_bytes = 1024;
    }
    cfg.motd = data[0] & 16 ? "hello" : NULL;
    cfg.expiry_s = 300;
    mb_io_t io = {NULL, io_send, io_close, io_persist};
    mb_core_t *core;
    memset(&F, 0, sizeof(F));
    F.sender = -1;
    F.now = 1700000000.5;
    CHECK(mb_core_new(&core, &cfg, &io) == 0);

    const uint8_t *p = data + 1, *end = data + size;
    while (p < end) {
        const uint8_t *q = memchr(p, 0, (size_t)(end - p));
        if (q == NULL)
            q = end;
        if (q > p) {
            uint8_t c = p[0];
            int i = c & 3, action = (c >> 2) & 7, extra = c >> 5;
            const uint8_t *msg = p + 1;
            size_t len = (size_t)(q - msg);
            if (action == 4 && !F.opened_any && len > 0 && (msg[0] & 7) % 5 >= F.last_table) {
                restore(core, msg, len);
            } else if (action <= 4) {
                F.now += extra * 0.25;
                if (F.s[i].c == NULL)
                    slot_open(core, i);
                input(core, i, msg, len);
            } else if (action == 5) {
                slot_free(i);
            } else if (action == 6) {
                slot_free(i);
                slot_open(core, i);
            } else {
                F.now += 100.0 * (extra + 1);
                F.sender = -1;
                mb_core_prune(core, F.now);
            }
            check_stats(core, &cfg);
        }
        p = q + 1;
    }
    for (int i = 0; i < NCONN; i++)
        slot_free(i);
    mb_core_prune(core, F.now + 1e6); /* everything idle goes */
    mb_stats_t st;
    mb_core_stats(core, &st);
    CHECK(st.mailboxes == 0 && st.nameplates == 0 && st.apps == 0 && st.messages == 0);
    mb_core_free(core);
    return 0;
}
