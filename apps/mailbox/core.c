/*
 * core.c - the mailbox server's state machine (see core.h).
 *
 * State: apps by id; in each app, nameplates by name and mailboxes by id
 * (runtime/strmap.h). A nameplate names its mailbox by id, so a mailbox that
 * was closed while its nameplate lived on is simply re-created by the next
 * claim, as in the Python server. A mailbox keeps its (at most two) sides,
 * its messages in arrival order and the connections listening to it; a
 * connection points back at the mailbox it listens to, and deleting a
 * mailbox clears those pointers.
 *
 * Every change is made in memory first, then recorded with one database
 * operation per row touched, in order; the glue sends those to the database
 * lane and holds replies until they are committed.
 */
#include "apps/mailbox/core.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/mailbox/store.h"
#include "db/db.h"
#include "dispatch/json.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/strmap.h"

#define MOD "mailbox"

typedef struct mb_app_s mb_app_t;
typedef struct mb_msg_s mb_msg_t;

struct mb_msg_s {
    mb_msg_t *next;
    double server_rx;
    uint32_t side_len, phase_len, body_len, id_len; /* id_len 0: no id (null) */
    char data[];                                    /* side, phase, body, id JSON; each NUL-ended */
};

typedef struct {
    char side[MB_SIDE_MAX + 1];
    uint8_t opened, has_mood;
    char mood[MB_MOOD_MAX + 1];
    double added;
} mb_mbside_t;

typedef struct {
    char side[MB_SIDE_MAX + 1];
    uint8_t claimed;
    double added;
} mb_npside_t;

typedef struct {
    mb_app_t *app;
    char id[MB_MBID_MAX + 1];
    uint8_t for_nameplate, crowded, nsides;
    double updated;
    mb_mbside_t sides[2];
    mb_msg_t *head, *tail;
    uint32_t nmsgs;
    uint64_t bytes;
    mb_conn_t **listeners;
    uint32_t nlisteners, cap;
} mb_mailbox_t;

typedef struct {
    mb_app_t *app;
    char name[MB_NAME_MAX + 1];
    char mailbox[MB_MBID_MAX + 1];
    uint8_t crowded, nsides;
    mb_npside_t sides[2];
} mb_nameplate_t;

struct mb_app_s {
    char *id;
    wb_strmap_t nameplates, mailboxes;
};

struct mb_conn_s {
    mb_core_t *core;
    mb_conn_t *prev, *next; /* core->conns */
    uint64_t id;
    void *user;
    char *appid;      /* once bound */
    char *claimed;    /* the nameplate this connection claimed */
    char *opened;     /* the mailbox id this connection opened */
    mb_mailbox_t *mb; /* listening to it (opened and not closed) */
    uint8_t bound, did_allocate, did_claim, did_release, did_open, did_close;
    char side[MB_SIDE_MAX + 1];
};

struct mb_core_s {
    mb_config_t cfg;
    mb_io_t io;
    mb_conn_t *conns; /* every connection not yet freed */
    wb_strmap_t apps;
    mb_stats_t st;
    uint64_t skipped;
    double started;
};

void mb_config_init(mb_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->expiry_s = 11 * 60;
    cfg->max_mailboxes = 100000;
    cfg->max_messages = 1000;
    cfg->max_stored_bytes = 256u << 20;
}

/* ---- output ------------------------------------------------------------------ */

/* Send o (stolen) with its "type" and "server_tx" last, as the Python server
 * orders them. */
static void emit(mb_conn_t *c, json_t *o, const char *type, double now)
{
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "server_tx", json_real(now));
    size_t n;
    char *s = wb_json_encode(o, &n);
    json_decref(o);
    if (s == NULL) {
        wb_error(MOD, "connection %llu: out of memory for a %s message", (unsigned long long)c->id,
                 type);
        return;
    }
    c->core->io.send(c->core->io.ctx, c, s, n);
    free(s);
}

static void fail(mb_conn_t *c, const json_t *orig, const char *text, double now)
{
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(text));
    if (orig != NULL)
        json_object_set(o, "orig", (json_t *)orig);
    c->core->st.errors++;
    emit(c, o, "error", now);
}

/* ---- records ----------------------------------------------------------------- */

static void record(mb_core_t *core, int op, const wb_value_t *v, size_t n)
{
    wb_event_t *req = wb_db_request_op((uint32_t)op, v, n, 0);
    if (req == NULL) {
        wb_error(MOD, "out of memory recording a change (operation %d)", op);
        return;
    }
    core->io.persist(core->io.ctx, req);
}

static wb_value_t opt_text(const char *s)
{
    return s != NULL ? wb_val_text(s) : wb_val_null();
}

static void rec_mailbox(mb_core_t *core, const mb_mailbox_t *mb)
{
    wb_value_t v[] = {wb_val_text(mb->app->id), wb_val_text(mb->id), wb_val_int(mb->for_nameplate),
                      wb_val_real(mb->updated), wb_val_int(mb->crowded)};
    record(core, MB_OP_MAILBOX_PUT, v, 5);
}

static void rec_touch(mb_core_t *core, const mb_mailbox_t *mb)
{
    wb_value_t v[] = {wb_val_text(mb->app->id), wb_val_text(mb->id), wb_val_real(mb->updated)};
    record(core, MB_OP_MAILBOX_TOUCH, v, 3);
}

static void rec_mbside(mb_core_t *core, const mb_mailbox_t *mb, const mb_mbside_t *s)
{
    wb_value_t v[] = {wb_val_text(mb->app->id),
                      wb_val_text(mb->id),
                      wb_val_text(s->side),
                      wb_val_int(s->opened),
                      s->has_mood ? wb_val_text(s->mood) : wb_val_null(),
                      wb_val_real(s->added)};
    record(core, MB_OP_MBSIDE_PUT, v, 6);
}

static void rec_nameplate(mb_core_t *core, const mb_nameplate_t *np)
{
    wb_value_t v[] = {wb_val_text(np->app->id), wb_val_text(np->name), wb_val_text(np->mailbox),
                      wb_val_int(np->crowded)};
    record(core, MB_OP_NAMEPLATE_PUT, v, 4);
}

static void rec_npside(mb_core_t *core, const mb_nameplate_t *np, const mb_npside_t *s)
{
    wb_value_t v[] = {wb_val_text(np->app->id), wb_val_text(np->name), wb_val_text(s->side),
                      wb_val_int(s->claimed), wb_val_real(s->added)};
    record(core, MB_OP_NPSIDE_PUT, v, 5);
}

static double blur(const mb_core_t *core, double t)
{
    uint32_t b = core->cfg.blur_usage;
    return b > 0 ? (double)b * (double)(int64_t)(t / b) : t;
}

/* The sorted `added` times of up to two sides. */
static int sorted_times(double *t, const double *added, int n)
{
    for (int i = 0; i < n; i++)
        t[i] = added[i];
    if (n == 2 && t[1] < t[0]) {
        double x = t[0];
        t[0] = t[1];
        t[1] = x;
    }
    return n;
}

static void usage_nameplate(mb_core_t *core, const mb_nameplate_t *np, double now, int pruned)
{
    if (!core->cfg.usage || np->nsides == 0)
        return;
    double added[2] = {np->sides[0].added, np->nsides > 1 ? np->sides[1].added : 0}, t[2];
    int n = sorted_times(t, added, np->nsides);
    const char *result = n == 2 ? "happy" : "lonely";
    if (pruned)
        result = "pruney";
    if (np->crowded)
        result = "crowded";
    wb_value_t v[] = {wb_val_text(np->app->id), wb_val_real(blur(core, t[0])),
                      n > 1 ? wb_val_real(t[1] - t[0]) : wb_val_null(), wb_val_real(now - t[0]),
                      wb_val_text(result)};
    record(core, MB_OP_USAGE_NAMEPLATE, v, 5);
}

static void usage_mailbox(mb_core_t *core, const mb_mailbox_t *mb, double now, int pruned)
{
    if (!core->cfg.usage)
        return;
    double added[2] = {mb->nsides > 0 ? mb->sides[0].added : now,
                       mb->nsides > 1 ? mb->sides[1].added : 0},
           t[2] = {now, 0};
    int n = mb->nsides > 0 ? sorted_times(t, added, mb->nsides) : 0;
    const char *result = n == 0 ? "quiet" : n == 1 ? "lonely" : "happy";
    /* Moods override in this order, as the Python server has it. */
    static const char *const moods[] = {"lonely", "errory", "scary"};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < mb->nsides; i++)
            if (mb->sides[i].has_mood && strcmp(mb->sides[i].mood, moods[k]) == 0)
                result = moods[k];
    if (pruned)
        result = "pruney";
    if (mb->crowded)
        result = "crowded";
    wb_value_t v[] = {wb_val_text(mb->app->id),
                      wb_val_int(mb->for_nameplate),
                      wb_val_real(blur(core, t[0])),
                      wb_val_real(now - t[0]),
                      n > 1 ? wb_val_real(t[1] - t[0]) : wb_val_null(),
                      wb_val_text(result)};
    record(core, MB_OP_USAGE_MAILBOX, v, 6);
    wb_info(MOD, "mailbox %s (app %s) done: %s, %d side%s, %u message%s, %.1f s", mb->id,
            mb->app->id, result, n, n == 1 ? "" : "s", mb->nmsgs, mb->nmsgs == 1 ? "" : "s",
            now - t[0]);
}

/* ---- apps, mailboxes, nameplates ---------------------------------------------- */

static mb_app_t *app_get(mb_core_t *core, const char *id, int create)
{
    mb_app_t *a = wb_strmap_get(&core->apps, id, strlen(id));
    if (a != NULL || !create)
        return a;
    a = calloc(1, sizeof(*a));
    if (a == NULL || (a->id = strdup(id)) == NULL) {
        free(a);
        return NULL;
    }
    wb_strmap_init(&a->nameplates);
    wb_strmap_init(&a->mailboxes);
    if (wb_strmap_put(&core->apps, id, strlen(id), a) != 0) {
        free(a->id);
        free(a);
        return NULL;
    }
    core->st.apps++;
    return a;
}

static void app_maybe_free(mb_core_t *core, mb_app_t *a)
{
    if (a == NULL || wb_strmap_count(&a->nameplates) > 0 || wb_strmap_count(&a->mailboxes) > 0)
        return;
    wb_strmap_del(&core->apps, a->id, strlen(a->id));
    wb_strmap_fini(&a->nameplates);
    wb_strmap_fini(&a->mailboxes);
    free(a->id);
    free(a);
    core->st.apps--;
}

static mb_mailbox_t *mailbox_get(mb_app_t *a, const char *id)
{
    return a != NULL ? wb_strmap_get(&a->mailboxes, id, strlen(id)) : NULL;
}

static mb_mailbox_t *mailbox_new(mb_core_t *core, mb_app_t *a, const char *id, int for_nameplate,
                                 double now)
{
    mb_mailbox_t *mb = calloc(1, sizeof(*mb));
    if (mb == NULL)
        return NULL;
    mb->app = a;
    snprintf(mb->id, sizeof(mb->id), "%s", id);
    mb->for_nameplate = (uint8_t)for_nameplate;
    mb->updated = now;
    if (wb_strmap_put(&a->mailboxes, mb->id, strlen(mb->id), mb) != 0) {
        free(mb);
        return NULL;
    }
    core->st.mailboxes++;
    return mb;
}

static void mailbox_free(mb_core_t *core, mb_mailbox_t *mb)
{
    wb_strmap_del(&mb->app->mailboxes, mb->id, strlen(mb->id));
    for (uint32_t i = 0; i < mb->nlisteners; i++)
        mb->listeners[i]->mb = NULL;
    core->st.listeners -= mb->nlisteners;
    free(mb->listeners);
    mb_msg_t *m = mb->head;
    while (m != NULL) {
        mb_msg_t *next = m->next;
        free(m);
        m = next;
    }
    core->st.messages -= mb->nmsgs;
    core->st.stored_bytes -= mb->bytes;
    core->st.mailboxes--;
    free(mb);
}

/* Delete a mailbox (its sides and messages) for good. */
static void mailbox_delete(mb_core_t *core, mb_mailbox_t *mb)
{
    wb_value_t v[] = {wb_val_text(mb->app->id), wb_val_text(mb->id)};
    record(core, MB_OP_MAILBOX_DEL, v, 2);
    mailbox_free(core, mb);
}

/* 13 characters: base32 (RFC 4648 alphabet, lower case, no padding) of 8
 * random bytes, as the Python server makes them. */
static void mailbox_id(char out[14])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint8_t b[8];
    randombytes_buf(b, sizeof(b));
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | b[i];
    /* 64 bits = 12 groups of 5 and 4 bits left, padded with a zero bit. */
    for (int i = 0; i < 12; i++)
        out[i] = alphabet[(x >> (59 - 5 * i)) & 31];
    out[12] = alphabet[(x & 15) << 1];
    out[13] = 0;
}

static int mbside_find(const mb_mailbox_t *mb, const char *side)
{
    for (int i = 0; i < mb->nsides; i++)
        if (strcmp(mb->sides[i].side, side) == 0)
            return i;
    return -1;
}

static int npside_find(const mb_nameplate_t *np, const char *side)
{
    for (int i = 0; i < np->nsides; i++)
        if (strcmp(np->sides[i].side, side) == 0)
            return i;
    return -1;
}

static mb_nameplate_t *nameplate_get(mb_app_t *a, const char *name)
{
    return a != NULL ? wb_strmap_get(&a->nameplates, name, strlen(name)) : NULL;
}

static mb_nameplate_t *nameplate_new(mb_core_t *core, mb_app_t *a, const char *name,
                                     const char *mailbox)
{
    mb_nameplate_t *np = calloc(1, sizeof(*np));
    if (np == NULL)
        return NULL;
    np->app = a;
    snprintf(np->name, sizeof(np->name), "%s", name);
    snprintf(np->mailbox, sizeof(np->mailbox), "%s", mailbox);
    if (wb_strmap_put(&a->nameplates, np->name, strlen(np->name), np) != 0) {
        free(np);
        return NULL;
    }
    core->st.nameplates++;
    return np;
}

static void nameplate_delete(mb_core_t *core, mb_nameplate_t *np, int record_it)
{
    if (record_it) {
        wb_value_t v[] = {wb_val_text(np->app->id), wb_val_text(np->name)};
        record(core, MB_OP_NAMEPLATE_DEL, v, 2);
    }
    wb_strmap_del(&np->app->nameplates, np->name, strlen(np->name));
    core->st.nameplates--;
    free(np);
}

static int listen_add(mb_mailbox_t *mb, mb_conn_t *c)
{
    if (mb->nlisteners == mb->cap) {
        uint32_t cap = mb->cap ? mb->cap * 2 : 2;
        mb_conn_t **l = realloc(mb->listeners, cap * sizeof(*l));
        if (l == NULL)
            return WB_ENOMEM;
        mb->listeners = l;
        mb->cap = cap;
    }
    mb->listeners[mb->nlisteners++] = c;
    c->mb = mb;
    c->core->st.listeners++;
    return 0;
}

static void listen_remove(mb_conn_t *c)
{
    mb_mailbox_t *mb = c->mb;
    if (mb == NULL)
        return;
    for (uint32_t i = 0; i < mb->nlisteners; i++) {
        if (mb->listeners[i] == c) {
            mb->listeners[i] = mb->listeners[--mb->nlisteners];
            c->core->st.listeners--;
            break;
        }
    }
    c->mb = NULL;
}

/* Add side to mailbox mb (or mark it opened again). Returns NULL or the error
 * text. A third side is refused and only noted (crowded), never recorded. */
static const char *mailbox_open_side(mb_core_t *core, mb_mailbox_t *mb, const char *side,
                                     double now)
{
    int i = mbside_find(mb, side);
    if (i < 0) {
        if (mb->nsides >= 2) {
            if (!mb->crowded) {
                mb->crowded = 1;
                rec_mailbox(core, mb);
            }
            return "crowded";
        }
        mb_mbside_t *s = &mb->sides[mb->nsides++];
        memset(s, 0, sizeof(*s));
        snprintf(s->side, sizeof(s->side), "%s", side);
        s->opened = 1;
        s->added = now;
        rec_mbside(core, mb, s);
    } else if (!mb->sides[i].opened) {
        mb->sides[i].opened = 1;
        rec_mbside(core, mb, &mb->sides[i]);
    }
    mb->updated = now;
    rec_touch(core, mb);
    return NULL;
}

static int mailbox_room(const mb_core_t *core)
{
    return core->st.mailboxes < core->cfg.max_mailboxes;
}

/* Open (create if needed) mailbox id of app a for side. */
static const char *open_mailbox(mb_core_t *core, mb_app_t *a, const char *id, const char *side,
                                double now, mb_mailbox_t **out)
{
    mb_mailbox_t *mb = mailbox_get(a, id);
    if (mb == NULL) {
        if (!mailbox_room(core))
            return "server is full";
        if ((mb = mailbox_new(core, a, id, 0, now)) == NULL)
            return "server out of memory";
        rec_mailbox(core, mb);
    }
    *out = mb;
    return mailbox_open_side(core, mb, side, now);
}

/* The sides of nameplate np all released or gone: delete it. */
static void nameplate_done(mb_core_t *core, mb_nameplate_t *np, double now, int pruned)
{
    usage_nameplate(core, np, now, pruned);
    nameplate_delete(core, np, 1);
}

static const char *claim_nameplate(mb_core_t *core, mb_app_t *a, const char *name, const char *side,
                                   double now, const char **mailbox)
{
    mb_nameplate_t *np = nameplate_get(a, name);
    int i = np != NULL ? npside_find(np, side) : -1;
    if (i >= 0 && !np->sides[i].claimed)
        return "reclaimed";
    mb_mailbox_t *mb = np != NULL ? mailbox_get(a, np->mailbox) : NULL;
    /* Refuse a third side before anything changes. */
    if ((np != NULL && i < 0 && np->nsides >= 2) ||
        (mb != NULL && mbside_find(mb, side) < 0 && mb->nsides >= 2)) {
        if (np != NULL && !np->crowded) {
            np->crowded = 1;
            rec_nameplate(core, np);
        }
        if (mb != NULL && !mb->crowded) {
            mb->crowded = 1;
            rec_mailbox(core, mb);
        }
        return "crowded";
    }
    if (mb == NULL) {
        if (!mailbox_room(core))
            return "server is full";
        char id[14];
        if (np != NULL) {
            snprintf(id, sizeof(id), "%.13s", np->mailbox);
            mb = mailbox_new(core, a, np->mailbox, 1, now);
        } else {
            do
                mailbox_id(id);
            while (mailbox_get(a, id) != NULL);
            mb = mailbox_new(core, a, id, 1, now);
        }
        if (mb == NULL)
            return "server out of memory";
        rec_mailbox(core, mb);
    }
    if (np == NULL) {
        if ((np = nameplate_new(core, a, name, mb->id)) == NULL)
            return "server out of memory";
        rec_nameplate(core, np);
    }
    if (i < 0) {
        mb_npside_t *s = &np->sides[np->nsides++];
        memset(s, 0, sizeof(*s));
        snprintf(s->side, sizeof(s->side), "%s", side);
        s->claimed = 1;
        s->added = now;
        rec_npside(core, np, s);
    }
    /* Claiming opens the mailbox for the side (but does not subscribe). */
    *mailbox = mb->id;
    return mailbox_open_side(core, mb, side, now);
}

static void release_nameplate(mb_core_t *core, mb_app_t *a, const char *name, const char *side,
                              double now)
{
    mb_nameplate_t *np = nameplate_get(a, name);
    int i = np != NULL ? npside_find(np, side) : -1;
    if (i < 0)
        return;
    if (np->sides[i].claimed) {
        np->sides[i].claimed = 0;
        rec_npside(core, np, &np->sides[i]);
    }
    for (int k = 0; k < np->nsides; k++)
        if (np->sides[k].claimed)
            return;
    nameplate_done(core, np, now, 0);
}

static void close_mailbox(mb_core_t *core, mb_mailbox_t *mb, const char *side, const char *mood,
                          double now)
{
    int i = mbside_find(mb, side);
    if (i < 0)
        return;
    mb_mbside_t *s = &mb->sides[i];
    s->opened = 0;
    s->has_mood = mood != NULL;
    snprintf(s->mood, sizeof(s->mood), "%s", mood != NULL ? mood : "");
    rec_mbside(core, mb, s);
    for (int k = 0; k < mb->nsides; k++)
        if (mb->sides[k].opened)
            return;
    usage_mailbox(core, mb, now, 0);
    mailbox_delete(core, mb);
}

/* ---- messages ---------------------------------------------------------------- */

static mb_msg_t *msg_new(const char *side, const char *phase, const char *body, double server_rx,
                         const char *id_json)
{
    size_t ls = strlen(side), lp = strlen(phase), lb = strlen(body),
           li = id_json != NULL ? strlen(id_json) : 0;
    mb_msg_t *m = malloc(sizeof(*m) + ls + lp + lb + li + 4);
    if (m == NULL)
        return NULL;
    m->next = NULL;
    m->server_rx = server_rx;
    m->side_len = (uint32_t)ls;
    m->phase_len = (uint32_t)lp;
    m->body_len = (uint32_t)lb;
    m->id_len = (uint32_t)li;
    char *p = m->data;
    memcpy(p, side, ls + 1);
    p += ls + 1;
    memcpy(p, phase, lp + 1);
    p += lp + 1;
    memcpy(p, body, lb + 1);
    p += lb + 1;
    if (li > 0)
        memcpy(p, id_json, li);
    p[li] = 0;
    return m;
}

static const char *msg_side(const mb_msg_t *m)
{
    return m->data;
}
static const char *msg_phase(const mb_msg_t *m)
{
    return m->data + m->side_len + 1;
}
static const char *msg_body(const mb_msg_t *m)
{
    return msg_phase(m) + m->phase_len + 1;
}
static const char *msg_id(const mb_msg_t *m)
{
    return m->id_len > 0 ? msg_body(m) + m->body_len + 1 : NULL;
}
static uint64_t msg_bytes(const mb_msg_t *m)
{
    return sizeof(*m) + m->side_len + m->phase_len + m->body_len + m->id_len + 4;
}

static void msg_append(mb_core_t *core, mb_mailbox_t *mb, mb_msg_t *m)
{
    if (mb->tail != NULL)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    mb->nmsgs++;
    mb->bytes += msg_bytes(m);
    core->st.messages++;
    core->st.stored_bytes += msg_bytes(m);
}

/* The `message` a listener gets, as JSON text (malloc'd). */
static char *msg_json(const mb_msg_t *m, double now, size_t *len)
{
    json_t *o = json_object();
    json_object_set_new(o, "side", json_string(msg_side(m)));
    json_object_set_new(o, "phase", json_string(msg_phase(m)));
    json_object_set_new(o, "body", json_string(msg_body(m)));
    json_object_set_new(o, "server_rx", json_real(m->server_rx));
    const char *id = msg_id(m);
    json_t *idv = id != NULL ? json_loads(id, JSON_DECODE_ANY, NULL) : NULL;
    json_object_set_new(o, "id", idv != NULL ? idv : json_null());
    json_object_set_new(o, "type", json_string("message"));
    json_object_set_new(o, "server_tx", json_real(now));
    char *s = wb_json_encode(o, len);
    json_decref(o);
    return s;
}

static void send_msg(mb_conn_t *c, const mb_msg_t *m, double now)
{
    size_t n;
    char *s = msg_json(m, now, &n);
    if (s == NULL)
        return;
    c->core->io.send(c->core->io.ctx, c, s, n);
    free(s);
}

/* ---- commands ---------------------------------------------------------------- */

/* A string field: 1 with *s set (NULL when absent and optional), or 0 after
 * sending the error (missing: the text for a missing required field). */
static int field(mb_conn_t *c, const wb_json_msg_t *m, const char *key, size_t max,
                 const char *missing, const char **s, double now)
{
    size_t len;
    char text[96];
    int rc = wb_json_str(m->obj, key, s, &len);
    if (rc == WB_ENOENT) {
        *s = NULL;
        if (missing == NULL)
            return 1;
        fail(c, m->obj, missing, now);
        return 0;
    }
    if (rc != 0) {
        snprintf(text, sizeof(text), "'%s' must be a string", key);
        fail(c, m->obj, text, now);
        return 0;
    }
    if (len > max) {
        snprintf(text, sizeof(text), "'%s' is too long (at most %zu bytes)", key, max);
        fail(c, m->obj, text, now);
        return 0;
    }
    return 1;
}

static void h_ping(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    json_t *p = json_object_get(m->obj, "ping");
    if (p == NULL) {
        fail(c, m->obj, "ping requires 'ping'", now);
        return;
    }
    json_t *o = json_object();
    json_object_set(o, "pong", p);
    emit(c, o, "pong", now);
}

static void h_bind(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    mb_core_t *core = c->core;
    const char *appid, *side;
    if (c->bound) {
        fail(c, m->obj, "already bound", now);
        return;
    }
    if (!field(c, m, "appid", MB_APPID_MAX, "bind requires 'appid'", &appid, now) ||
        !field(c, m, "side", MB_SIDE_MAX, "bind requires 'side'", &side, now))
        return;
    if ((c->appid = strdup(appid)) == NULL) {
        fail(c, m->obj, "server out of memory", now);
        return;
    }
    snprintf(c->side, sizeof(c->side), "%s", side);
    c->bound = 1;
    const char *impl = NULL, *ver = NULL;
    json_t *cv = json_object_get(m->obj, "client_version");
    if (json_is_array(cv) && json_array_size(cv) == 2 && json_is_string(json_array_get(cv, 0)) &&
        json_is_string(json_array_get(cv, 1)) && json_string_length(json_array_get(cv, 0)) <= 64 &&
        json_string_length(json_array_get(cv, 1)) <= 64) {
        impl = json_string_value(json_array_get(cv, 0));
        ver = json_string_value(json_array_get(cv, 1));
    }
    if (core->cfg.usage) {
        wb_value_t v[] = {wb_val_text(c->appid), wb_val_text(c->side), wb_val_real(blur(core, now)),
                          opt_text(impl), opt_text(ver)};
        record(core, MB_OP_USAGE_CLIENT, v, 5);
    }
    wb_debug(MOD, "connection %llu: bound to app %s as side %s (%s %s)", (unsigned long long)c->id,
             c->appid, c->side, impl ? impl : "?", ver ? ver : "?");
}

typedef struct {
    const char **names;
    size_t n;
} names_t;

static int collect_name(void *arg, const void *key, size_t len, void *val)
{
    names_t *nm = arg;
    nm->names[nm->n++] = ((mb_nameplate_t *)val)->name;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void h_list(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    mb_app_t *a = app_get(c->core, c->appid, 0);
    json_t *list = json_array();
    size_t n = a != NULL && !c->core->cfg.disallow_list ? wb_strmap_count(&a->nameplates) : 0;
    if (n > 0) {
        names_t nm = {malloc(n * sizeof(char *)), 0};
        if (nm.names == NULL) {
            json_decref(list);
            fail(c, m->obj, "server out of memory", now);
            return;
        }
        wb_strmap_each(&a->nameplates, collect_name, &nm);
        qsort(nm.names, nm.n, sizeof(char *), cmp_str);
        for (size_t i = 0; i < nm.n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "id", json_string(nm.names[i]));
            json_array_append_new(list, e);
        }
        free(nm.names);
    }
    json_t *o = json_object();
    json_object_set_new(o, "nameplates", list);
    emit(c, o, "nameplates", now);
}

/* A free nameplate of app a: fewest digits first, at random among the free
 * ones of that length; then random tries among the longer ones. */
static int pick_nameplate(mb_app_t *a, char out[16])
{
    for (uint32_t lo = 1, hi = 9; hi <= 999; lo = hi + 1, hi = hi * 10 + 9) {
        uint32_t nfree = 0;
        for (uint32_t i = lo; i <= hi; i++) {
            snprintf(out, 16, "%u", i);
            nfree += nameplate_get(a, out) == NULL;
        }
        if (nfree == 0)
            continue;
        uint32_t k = randombytes_uniform(nfree);
        for (uint32_t i = lo; i <= hi; i++) {
            snprintf(out, 16, "%u", i);
            if (nameplate_get(a, out) == NULL && k-- == 0)
                return 0;
        }
    }
    for (int tries = 0; tries < 1000; tries++) {
        snprintf(out, 16, "%u", 1000 + randombytes_uniform(999000));
        if (nameplate_get(a, out) == NULL)
            return 0;
    }
    return WB_EBUSY;
}

static void h_allocate(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    mb_core_t *core = c->core;
    if (c->did_allocate) {
        fail(c, m->obj, "you already allocated one, don't be greedy", now);
        return;
    }
    mb_app_t *a = app_get(core, c->appid, 1);
    char name[16];
    const char *mailbox, *err;
    if (a == NULL)
        err = "server out of memory";
    else if (pick_nameplate(a, name) != 0)
        err = "no nameplate is free";
    else
        err = claim_nameplate(core, a, name, c->side, now, &mailbox);
    if (err != NULL) {
        app_maybe_free(core, a);
        fail(c, m->obj, err, now);
        return;
    }
    c->did_allocate = 1;
    json_t *o = json_object();
    json_object_set_new(o, "nameplate", json_string(name));
    emit(c, o, "allocated", now);
}

static void h_claim(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    mb_core_t *core = c->core;
    const char *name, *mailbox = NULL, *err;
    if (!field(c, m, "nameplate", MB_NAME_MAX, "claim requires 'nameplate'", &name, now))
        return;
    if (c->did_claim) {
        fail(c, m->obj, "only one claim per connection", now);
        return;
    }
    c->did_claim = 1;
    free(c->claimed);
    c->claimed = strdup(name);
    mb_app_t *a = app_get(core, c->appid, 1);
    if (a == NULL || c->claimed == NULL)
        err = "server out of memory";
    else
        err = claim_nameplate(core, a, name, c->side, now, &mailbox);
    if (err != NULL) {
        app_maybe_free(core, a);
        fail(c, m->obj, err, now);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "mailbox", json_string(mailbox));
    emit(c, o, "claimed", now);
}

/* What a release or close is about: the name the command gave, which must
 * be the one this connection claimed or opened if it did; else that one.
 * NULL after sending the error. */
static const char *given_or_own(mb_conn_t *c, const wb_json_msg_t *m, const char *given,
                                const char *own, const char *differ, const char *missing,
                                double now)
{
    if (given != NULL && own != NULL && strcmp(given, own) != 0) {
        fail(c, m->obj, differ, now);
        return NULL;
    }
    if (given == NULL && own == NULL)
        fail(c, m->obj, missing, now);
    return given != NULL ? given : own;
}

static void h_release(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    const char *name;
    if (c->did_release) {
        fail(c, m->obj, "only one release per connection", now);
        return;
    }
    if (!field(c, m, "nameplate", MB_NAME_MAX, NULL, &name, now))
        return;
    if ((name = given_or_own(c, m, name, c->claimed, "release and claim must use same nameplate",
                             "release without nameplate must follow claim", now)) == NULL)
        return;
    mb_app_t *a = app_get(c->core, c->appid, 0);
    release_nameplate(c->core, a, name, c->side, now);
    app_maybe_free(c->core, a);
    c->did_release = 1;
    emit(c, json_object(), "released", now);
}

static void h_open(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    mb_core_t *core = c->core;
    const char *id, *err;
    if (c->did_open) {
        fail(c, m->obj, "only one open per connection", now);
        return;
    }
    if (!field(c, m, "mailbox", MB_MBID_MAX, "open requires 'mailbox'", &id, now))
        return;
    mb_app_t *a = app_get(core, c->appid, 1);
    mb_mailbox_t *mb = NULL;
    char *copy = strdup(id);
    if (a == NULL || copy == NULL)
        err = "server out of memory";
    else
        err = open_mailbox(core, a, id, c->side, now, &mb);
    if (err == NULL && listen_add(mb, c) != 0)
        err = "server out of memory";
    if (err != NULL) {
        free(copy);
        if (mb != NULL && mb->nsides == 0) {
            /* Created for this open and refused: leave no trace. */
            mailbox_delete(core, mb);
        }
        app_maybe_free(core, a);
        fail(c, m->obj, err, now);
        return;
    }
    c->did_open = 1;
    c->opened = copy;
    for (const mb_msg_t *msg = mb->head; msg != NULL; msg = msg->next)
        send_msg(c, msg, now);
}

static void h_add(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    mb_core_t *core = c->core;
    mb_mailbox_t *mb = c->mb;
    const char *phase, *body;
    if (mb == NULL) {
        fail(c, m->obj, "must open mailbox before adding", now);
        return;
    }
    if (!field(c, m, "phase", MB_PHASE_MAX, "missing 'phase'", &phase, now) ||
        !field(c, m, "body", SIZE_MAX, "missing 'body'", &body, now))
        return;
    char *id = m->id != NULL ? json_dumps(m->id, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    mb_msg_t *msg = msg_new(c->side, phase, body, now, id);
    free(id);
    const char *err = NULL;
    if (msg == NULL)
        err = "server out of memory";
    else if (mb->nmsgs >= core->cfg.max_messages)
        err = "mailbox is full";
    else if (core->st.stored_bytes + msg_bytes(msg) > core->cfg.max_stored_bytes)
        err = "server is full";
    if (err != NULL) {
        free(msg);
        fail(c, m->obj, err, now);
        return;
    }
    msg_append(core, mb, msg);
    /* Bodies are the clients' ciphertext (the pake is public by design):
     * safe for a debug log, and what tells a key mismatch apart from a
     * relay fault. */
    wb_debug(MOD, "mailbox %s: side %s adds %s (%zu bytes): %.200s", mb->id, c->side, phase,
             strlen(body), body);
    wb_value_t v[] = {wb_val_text(mb->app->id), wb_val_text(mb->id), wb_val_text(c->side),
                      wb_val_text(phase),       wb_val_text(body),   wb_val_real(now),
                      opt_text(msg_id(msg))};
    record(core, MB_OP_MESSAGE_ADD, v, 7);
    mb->updated = now;
    rec_touch(core, mb);
    size_t n;
    char *s = msg_json(msg, now, &n);
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < mb->nlisteners; i++)
        core->io.send(core->io.ctx, mb->listeners[i], s, n);
    free(s);
}

static void h_close(mb_conn_t *c, const wb_json_msg_t *m, double now)
{
    mb_core_t *core = c->core;
    const char *id, *mood;
    if (c->did_close) {
        fail(c, m->obj, "only one close per connection", now);
        return;
    }
    if (!field(c, m, "mailbox", MB_MBID_MAX, NULL, &id, now) ||
        !field(c, m, "mood", MB_MOOD_MAX, NULL, &mood, now))
        return;
    if ((id = given_or_own(c, m, id, c->opened, "open and close must use same mailbox",
                           "close without mailbox must follow open", now)) == NULL)
        return;
    mb_mailbox_t *mb = c->mb;
    mb_app_t *a = app_get(core, c->appid, 0);
    if (mb == NULL && (mb = mailbox_get(a, id)) == NULL) {
        /* Gone already (closed by both sides, or pruned): nothing to
         * close. The Python server re-creates it with this side and deletes
         * it again; the usage row it writes (lonely) is written here without
         * the round trip, which would also need room for one more mailbox. */
        mb_app_t tmp_app = {.id = c->appid};
        mb_mailbox_t tmp = {.app = &tmp_app, .nsides = 1};
        snprintf(tmp.id, sizeof(tmp.id), "%s", id);
        snprintf(tmp.sides[0].side, sizeof(tmp.sides[0].side), "%s", c->side);
        tmp.sides[0].added = now;
        tmp.sides[0].has_mood = mood != NULL;
        snprintf(tmp.sides[0].mood, sizeof(tmp.sides[0].mood), "%s", mood != NULL ? mood : "");
        usage_mailbox(core, &tmp, now, 0);
        c->did_close = 1;
        emit(c, json_object(), "closed", now);
        return;
    }
    if (c->mb == NULL) {
        /* Not opened on this connection (a reconnected client closing):
         * open it first, as the Python server does. */
        const char *err = open_mailbox(core, a, id, c->side, now, &mb);
        if (err != NULL) {
            if (mb != NULL && mb->nsides == 0)
                mailbox_delete(core, mb);
            app_maybe_free(core, a);
            fail(c, m->obj, err, now);
            return;
        }
    }
    listen_remove(c);
    c->did_close = 1;
    close_mailbox(core, mb, c->side, mood, now);
    app_maybe_free(core, a);
    emit(c, json_object(), "closed", now);
}

/* ---- connections ------------------------------------------------------------- */

int mb_core_new(mb_core_t **out, const mb_config_t *cfg, const mb_io_t *io)
{
    if (sodium_init() < 0)
        return WB_ESYS;
    mb_core_t *core = calloc(1, sizeof(*core));
    if (core == NULL)
        return WB_ENOMEM;
    core->cfg = *cfg;
    core->io = *io;
    wb_strmap_init(&core->apps);
    *out = core;
    return 0;
}

static int free_app(void *arg, const void *key, size_t len, void *val);

static int free_mailbox_cb(void *arg, const void *key, size_t len, void *val)
{
    mb_mailbox_t *mb = val;
    for (uint32_t i = 0; i < mb->nlisteners; i++)
        mb->listeners[i]->mb = NULL;
    free(mb->listeners);
    for (mb_msg_t *m = mb->head, *next; m != NULL; m = next) {
        next = m->next;
        free(m);
    }
    free(mb);
    return 0;
}

static int free_nameplate_cb(void *arg, const void *key, size_t len, void *val)
{
    free(val);
    return 0;
}

static int free_app(void *arg, const void *key, size_t len, void *val)
{
    mb_app_t *a = val;
    wb_strmap_each(&a->mailboxes, free_mailbox_cb, NULL);
    wb_strmap_each(&a->nameplates, free_nameplate_cb, NULL);
    wb_strmap_fini(&a->mailboxes);
    wb_strmap_fini(&a->nameplates);
    free(a->id);
    free(a);
    return 0;
}

void mb_core_free(mb_core_t *core)
{
    if (core == NULL)
        return;
    while (core->conns != NULL)
        mb_conn_free(core->conns);
    wb_strmap_each(&core->apps, free_app, NULL);
    wb_strmap_fini(&core->apps);
    free(core);
}

mb_conn_t *mb_conn_new(mb_core_t *core, uint64_t id, const char *peer, void *user, double now)
{
    if (core->started == 0)
        core->started = now;
    mb_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->core = core;
    c->id = id;
    c->user = user;
    c->next = core->conns;
    if (core->conns != NULL)
        core->conns->prev = c;
    core->conns = c;
    core->st.connections++;
    json_t *w = json_object();
    if (core->cfg.motd != NULL)
        json_object_set_new(w, "motd", json_string(core->cfg.motd));
    if (core->cfg.advertise_version != NULL)
        json_object_set_new(w, "current_cli_version", json_string(core->cfg.advertise_version));
    if (core->cfg.signal_error != NULL)
        json_object_set_new(w, "error", json_string(core->cfg.signal_error));
    json_t *o = json_object();
    json_object_set_new(o, "welcome", w);
    emit(c, o, "welcome", now);
    return c;
}

void mb_conn_free(mb_conn_t *c)
{
    if (c == NULL)
        return;
    listen_remove(c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->core->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->core->st.connections--;
    free(c->appid);
    free(c->claimed);
    free(c->opened);
    free(c);
}

uint64_t mb_conn_id(const mb_conn_t *c)
{
    return c->id;
}

void *mb_conn_user(const mb_conn_t *c)
{
    return c->user;
}

const char *mb_conn_appid(const mb_conn_t *c)
{
    return c->appid;
}

const char *mb_conn_side(const mb_conn_t *c)
{
    return c->bound ? c->side : NULL;
}

typedef void (*handler_t)(mb_conn_t *c, const wb_json_msg_t *m, double now);

static const char *const types[] = {"list", "allocate", "claim", "release", "open", "add", "close"};
static const handler_t handlers[] = {h_list, h_allocate, h_claim, h_release,
                                     h_open, h_add,      h_close};

void mb_conn_input(mb_conn_t *c, const uint8_t *data, size_t len, double now)
{
    mb_core_t *core = c->core;
    wb_json_msg_t m;
    char err[160], text[220];
    core->st.commands++;
    int rc = wb_json_msg_decode(&m, data, len, err, sizeof(err));
    if (rc != 0) {
        int bad_json = rc == WB_EPROTO;
        snprintf(text, sizeof(text), "message is not %s: %s",
                 bad_json ? "valid JSON" : "a JSON object", err);
        fail(c, NULL, text, now);
        wb_info(MOD, "connection %llu: %s; closing it", (unsigned long long)c->id, text);
        core->io.close(core->io.ctx, c, bad_json ? 1007 : 1003,
                       bad_json ? "invalid JSON" : "not a JSON object");
        return;
    }
    if (!m.has_type) {
        fail(c, m.obj, "missing 'type'", now);
        wb_json_msg_free(&m);
        return;
    }
    json_t *ack = json_object();
    json_object_set(ack, "id", m.id != NULL ? m.id : json_null());
    emit(c, ack, "ack", now);
    if (m.type != NULL && strcmp(m.type, "ping") == 0) {
        h_ping(c, &m, now);
    } else if (m.type != NULL && strcmp(m.type, "bind") == 0) {
        h_bind(c, &m, now);
    } else if (!c->bound) {
        fail(c, m.obj, "must bind first", now);
    } else {
        int r = wb_json_route(types, sizeof(types) / sizeof(types[0]), m.type);
        if (r < 0)
            fail(c, m.obj, "unknown type", now);
        else
            handlers[r](c, &m, now);
    }
    wb_json_msg_free(&m);
}

/* ---- pruning ----------------------------------------------------------------- */

typedef struct {
    mb_core_t *core;
    double now, old;
    void **items;
    size_t n, cap;
    int fail;
} sweep_t;

static void sweep_push(sweep_t *s, void *p)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        void **items = realloc(s->items, cap * sizeof(*items));
        if (items == NULL) {
            s->fail = 1;
            return;
        }
        s->items = items;
        s->cap = cap;
    }
    s->items[s->n++] = p;
}

static int sweep_mailbox(void *arg, const void *key, size_t len, void *val)
{
    sweep_t *s = arg;
    mb_mailbox_t *mb = val;
    if (mb->nlisteners > 0) {
        mb->updated = s->now;
        rec_touch(s->core, mb);
    } else if (mb->updated < s->old) {
        sweep_push(s, mb);
    }
    return 0;
}

static int sweep_nameplate(void *arg, const void *key, size_t len, void *val)
{
    sweep_t *s = arg;
    mb_nameplate_t *np = val;
    mb_mailbox_t *mb = mailbox_get(np->app, np->mailbox);
    if (mb != NULL ? mb->nlisteners == 0 && mb->updated < s->old
                   : np->nsides == 0 || np->sides[np->nsides - 1].added < s->old)
        sweep_push(s, np);
    return 0;
}

static int sweep_app(void *arg, const void *key, size_t len, void *val)
{
    sweep_t *s = arg;
    sweep_push(s, val);
    return 0;
}

void mb_core_prune(mb_core_t *core, double now)
{
    if (core->started == 0)
        core->started = now;
    sweep_t apps = {core, now, now - core->cfg.expiry_s, NULL, 0, 0, 0};
    wb_strmap_each(&core->apps, sweep_app, &apps);
    size_t pruned_mb = 0, pruned_np = 0;
    for (size_t i = 0; i < apps.n; i++) {
        mb_app_t *a = apps.items[i];
        sweep_t s = {core, now, apps.old, NULL, 0, 0, 0};
        /* Nameplates first: they look at their mailboxes. */
        wb_strmap_each(&a->nameplates, sweep_nameplate, &s);
        for (size_t k = 0; k < s.n; k++)
            nameplate_done(core, s.items[k], now, 1);
        pruned_np += s.n;
        s.n = 0;
        wb_strmap_each(&a->mailboxes, sweep_mailbox, &s);
        for (size_t k = 0; k < s.n; k++) {
            usage_mailbox(core, s.items[k], now, 1);
            mailbox_delete(core, s.items[k]);
        }
        pruned_mb += s.n;
        free(s.items);
        app_maybe_free(core, a);
    }
    free(apps.items);
    if (core->cfg.usage) {
        record(core, MB_OP_USAGE_CURRENT_DEL, NULL, 0);
        wb_value_t v[] = {wb_val_real(core->started), wb_val_real(now),
                          core->cfg.blur_usage ? wb_val_int(core->cfg.blur_usage) : wb_val_null(),
                          wb_val_int((int64_t)core->st.listeners)};
        record(core, MB_OP_USAGE_CURRENT, v, 4);
    }
    if (pruned_mb + pruned_np > 0)
        wb_info(MOD, "pruned %zu mailbox%s and %zu nameplate%s idle for %.0f s", pruned_mb,
                pruned_mb == 1 ? "" : "es", pruned_np, pruned_np == 1 ? "" : "s",
                core->cfg.expiry_s);
}

void mb_core_stats(const mb_core_t *core, mb_stats_t *out)
{
    *out = core->st;
}

/* ---- restoring --------------------------------------------------------------- */

static int skip(mb_core_t *core)
{
    core->skipped++;
    return 0;
}

/* Strings read back from the database go out in JSON: each must be UTF-8
 * (a client could only have stored UTF-8, but the file may have been
 * edited or damaged). NULL counts as fine. */
static int text_ok(const char *s)
{
    if (s == NULL)
        return 1;
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

int mb_restore_mailbox(mb_core_t *core, const char *app, const char *id, int for_nameplate,
                       double updated, int crowded)
{
    if (strlen(app) > MB_APPID_MAX || strlen(id) > MB_MBID_MAX || !text_ok(app) || !text_ok(id))
        return skip(core);
    mb_app_t *a = app_get(core, app, 1);
    if (a == NULL)
        return WB_ENOMEM;
    if (mailbox_get(a, id) != NULL)
        return skip(core);
    mb_mailbox_t *mb = mailbox_new(core, a, id, for_nameplate, updated);
    if (mb == NULL)
        return WB_ENOMEM;
    mb->crowded = crowded != 0;
    return 0;
}

int mb_restore_mailbox_side(mb_core_t *core, const char *app, const char *mailbox, const char *side,
                            int opened, const char *mood, double added)
{
    mb_mailbox_t *mb = mailbox_get(app_get(core, app, 0), mailbox);
    if (mb == NULL || mb->nsides >= 2 || strlen(side) > MB_SIDE_MAX || mbside_find(mb, side) >= 0 ||
        (mood != NULL && strlen(mood) > MB_MOOD_MAX) || !text_ok(side) || !text_ok(mood))
        return skip(core);
    mb_mbside_t *s = &mb->sides[mb->nsides++];
    memset(s, 0, sizeof(*s));
    snprintf(s->side, sizeof(s->side), "%s", side);
    s->opened = opened != 0;
    s->has_mood = mood != NULL;
    snprintf(s->mood, sizeof(s->mood), "%s", mood != NULL ? mood : "");
    s->added = added;
    return 0;
}

int mb_restore_message(mb_core_t *core, const char *app, const char *mailbox, const char *side,
                       const char *phase, const char *body, double server_rx,
                       const char *msg_id_json)
{
    mb_mailbox_t *mb = mailbox_get(app_get(core, app, 0), mailbox);
    if (mb == NULL || !text_ok(side) || !text_ok(phase) || !text_ok(body))
        return skip(core);
    if (msg_id_json != NULL) {
        /* The id is JSON text: it must read back as JSON, or it goes. */
        json_t *id = json_loads(msg_id_json, JSON_DECODE_ANY, NULL);
        if (id == NULL)
            msg_id_json = NULL;
        json_decref(id);
    }
    mb_msg_t *m = msg_new(side, phase, body, server_rx, msg_id_json);
    if (m == NULL)
        return WB_ENOMEM;
    msg_append(core, mb, m);
    return 0;
}

int mb_restore_nameplate(mb_core_t *core, const char *app, const char *name, const char *mailbox,
                         int crowded)
{
    if (strlen(app) > MB_APPID_MAX || strlen(name) > MB_NAME_MAX || strlen(mailbox) > MB_MBID_MAX ||
        !text_ok(app) || !text_ok(name) || !text_ok(mailbox))
        return skip(core);
    mb_app_t *a = app_get(core, app, 1);
    if (a == NULL)
        return WB_ENOMEM;
    if (nameplate_get(a, name) != NULL)
        return skip(core);
    mb_nameplate_t *np = nameplate_new(core, a, name, mailbox);
    if (np == NULL)
        return WB_ENOMEM;
    np->crowded = crowded != 0;
    return 0;
}

int mb_restore_nameplate_side(mb_core_t *core, const char *app, const char *name, const char *side,
                              int claimed, double added)
{
    mb_nameplate_t *np = nameplate_get(app_get(core, app, 0), name);
    if (np == NULL || np->nsides >= 2 || strlen(side) > MB_SIDE_MAX || npside_find(np, side) >= 0 ||
        !text_ok(side))
        return skip(core);
    mb_npside_t *s = &np->sides[np->nsides++];
    memset(s, 0, sizeof(*s));
    snprintf(s->side, sizeof(s->side), "%s", side);
    s->claimed = claimed != 0;
    s->added = added;
    return 0;
}

uint64_t mb_restore_skipped(const mb_core_t *core)
{
    return core->skipped;
}
