/*
 * client.c - the Magic Wormhole client machines (see client.h).
 *
 * Each machine of the Python client is a state variable and a handful of
 * functions here; `connected` is shared instead of the Python A/B state
 * pairs. The functions call each other directly, as the Python machines'
 * outputs call the next machine's inputs; events for the application are
 * queued and delivered when the outermost call ends.
 */
#include "apps/wormhole/client.h"

#include <assert.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/wormhole/code.h"
#include "apps/wormhole/keys.h"
#include "apps/wormhole/spake2.h"
#include "dispatch/json.h"
#include "runtime/error.h"

/* ---- states ---------------------------------------------------------------- */

enum { RC_IDLE, RC_CONNECTING, RC_OPEN, RC_WAITING, RC_STOPPED };
/* nameplate: nothing known; known (claim sent when connected); claimed;
 * releasing; released */
enum { N_NONE, N_KNOWN, N_CLAIMED, N_RELEASING, N_DONE };
/* mailbox: unknown; known and opened (on every connection); closing; closed */
enum { M_NONE, M_OPEN, M_CLOSING, M_DONE };
enum { K_NONE, K_CODE, K_KEY, K_SCARED };
enum { R_NOKEY, R_UNVERIFIED, R_VERIFIED, R_SCARED };
enum { B_EMPTY, B_LONELY, B_HAPPY, B_CLOSING, B_CLOSED };
enum { A_IDLE, A_ALLOCATING, A_DONE };
enum { C_IDLE, C_INPUTTING, C_ALLOCATING, C_KNOWN };

typedef struct msg_s {
    struct msg_s *next;
    char *side; /* peer messages */
    char *phase;
    uint8_t *body; /* bytes: ciphertext or plaintext */
    size_t len;
    uint64_t num; /* boss's rx buffer: phase number */
} msg_t;

typedef struct evq_s {
    struct evq_s *next;
    wh_event_t ev;
    char *text, *text2;
    uint8_t *data;
} evq_t;

typedef struct {
    msg_t *head, *tail;
} list_t;

struct wh_client_s {
    wh_io_t io;
    char *appid, *client_name, *client_version;
    json_t *app_versions;
    char side[WH_SIDE_LEN + 1];

    int depth, delivering;
    evq_t *ev_head, *ev_tail;

    /* rendezvous */
    int rc, connected, ever_connected, stopping;
    unsigned failures;
    /* nameplate */
    int n;
    char *nameplate;
    int claim_sent;
    /* mailbox */
    int m;
    char *mailbox;
    char mood[16];
    list_t pending;   /* our adds not yet echoed: phase + body (bytes) */
    list_t processed; /* the peer's phases seen */
    /* order */
    int have_pake;
    list_t order_q;
    /* key */
    int k;
    char *code;
    uint8_t *stash;
    size_t stash_len;
    int have_stash;
    wb_spake2_t sp;
    uint8_t key[WB_WH_KEY_LEN];
    /* receive */
    int r;
    list_t r_q; /* messages before the key */
    /* send */
    int s_verified;
    list_t s_q;
    /* boss */
    int b;
    uint64_t next_tx, next_rx;
    list_t rx; /* numbered phases waiting for their turn */
    wh_result_t result;
    char *result_text;
    /* allocator, code, lister, terminator */
    int a;
    unsigned a_words;
    int cs;
    int l_wanting;
    int t_closing, t_n_done, t_m_done;
};

/* ---- small helpers ------------------------------------------------------------ */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static char *dup0(const char *s)
{
    return s == NULL ? NULL : dupn(s, strlen(s));
}

static void msg_free(msg_t *m)
{
    if (m == NULL)
        return;
    free(m->side);
    free(m->phase);
    if (m->body != NULL)
        sodium_memzero(m->body, m->len);
    free(m->body);
    free(m);
}

static msg_t *msg_new(const char *side, const char *phase, const uint8_t *body, size_t len)
{
    msg_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->side = side ? dup0(side) : NULL;
    m->phase = phase ? dup0(phase) : NULL;
    m->body = malloc(len ? len : 1);
    m->len = len;
    if ((side && !m->side) || (phase && !m->phase) || m->body == NULL) {
        msg_free(m);
        return NULL;
    }
    if (len)
        memcpy(m->body, body, len);
    return m;
}

static void list_push(list_t *l, msg_t *m)
{
    m->next = NULL;
    if (l->tail)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
}

static msg_t *list_pop(list_t *l)
{
    msg_t *m = l->head;
    if (m) {
        l->head = m->next;
        if (!l->head)
            l->tail = NULL;
        m->next = NULL;
    }
    return m;
}

static void list_clear(list_t *l)
{
    msg_t *m;
    while ((m = list_pop(l)) != NULL)
        msg_free(m);
}

/* Remove and return the entry whose phase is `phase` (NULL if none). */
static msg_t *list_take_phase(list_t *l, const char *phase)
{
    msg_t *prev = NULL;
    for (msg_t *m = l->head; m; prev = m, m = m->next) {
        if (strcmp(m->phase, phase) == 0) {
            if (prev)
                prev->next = m->next;
            else
                l->head = m->next;
            if (l->tail == m)
                l->tail = prev;
            m->next = NULL;
            return m;
        }
    }
    return NULL;
}

static int list_has_phase(const list_t *l, const char *phase)
{
    for (msg_t *m = l->head; m; m = m->next)
        if (strcmp(m->phase, phase) == 0)
            return 1;
    return 0;
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decode hex s[0..n) into a malloc'd buffer; NULL when not hex (or ENOMEM). */
static uint8_t *hex_decode(const char *s, size_t n, size_t *outlen)
{
    if (n % 2)
        return NULL;
    uint8_t *p = malloc(n / 2 + 1);
    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(p);
            return NULL;
        }
        p[i] = (uint8_t)(hi << 4 | lo);
    }
    *outlen = n / 2;
    return p;
}

static int is_digits(const char *s)
{
    if (*s == 0)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* ---- events for the application ----------------------------------------------- */

static void emit(wh_client_t *c, wh_event_type_t type, const char *text, const char *text2,
                 const uint8_t *data, size_t len, uint64_t phase)
{
    evq_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return;
    q->ev.type = type;
    q->ev.phase = phase;
    q->ev.result = c->result;
    q->text = dup0(text);
    q->text2 = dup0(text2);
    if (data != NULL) {
        q->data = malloc(len ? len : 1);
        if (q->data)
            memcpy(q->data, data, len);
    }
    q->ev.text = q->text;
    q->ev.text2 = q->text2;
    q->ev.data = q->data;
    q->ev.len = len;
    if (c->ev_tail)
        c->ev_tail->next = q;
    else
        c->ev_head = q;
    c->ev_tail = q;
}

static void evq_free(evq_t *q)
{
    free(q->text);
    free(q->text2);
    if (q->data)
        sodium_memzero(q->data, q->ev.len);
    free(q->data);
    free(q);
}

static void enter(wh_client_t *c)
{
    c->depth++;
}

/* Leave a wh_client_* call; the outermost delivers the queued events. After
 * WH_EV_CLOSED the client may be gone: nothing touches it then. */
static void leave(wh_client_t *c)
{
    if (--c->depth > 0 || c->delivering)
        return; /* a call made from an event callback: the outer loop delivers */
    c->delivering = 1;
    evq_t *q;
    while ((q = c->ev_head) != NULL) {
        c->ev_head = q->next;
        if (c->ev_head == NULL)
            c->ev_tail = NULL;
        int last = q->ev.type == WH_EV_CLOSED;
        wh_io_t io = c->io;
        io.event(io.ctx, &q->ev);
        evq_free(q);
        if (last)
            return;
    }
    c->delivering = 0;
}

/* ---- forward declarations (the machines call each other) ------------------------ */

static void rc_tx(wh_client_t *c, json_t *o, const char *type);
static void rc_stop(wh_client_t *c);
static void n_set_nameplate(wh_client_t *c, const char *np);
static void n_release(wh_client_t *c);
static void n_close(wh_client_t *c);
static void m_got_mailbox(wh_client_t *c, const char *mb);
static void m_add(wh_client_t *c, const char *phase, const uint8_t *body, size_t len);
static void m_close(wh_client_t *c, const char *mood);
static void o_got_message(wh_client_t *c, const char *side, const char *phase, const uint8_t *body,
                          size_t len);
static void k_got_code(wh_client_t *c, const char *code);
static void k_got_pake(wh_client_t *c, const uint8_t *body, size_t len);
static void r_got_key(wh_client_t *c);
static void r_got_message(wh_client_t *c, const char *side, const char *phase, const uint8_t *body,
                          size_t len);
static void s_got_verified_key(wh_client_t *c);
static void b_got_code(wh_client_t *c, const char *code);
static void b_got_key(wh_client_t *c);
static void b_happy(wh_client_t *c);
static void b_scared(wh_client_t *c);
static void b_got_verifier(wh_client_t *c);
static void b_got_message(wh_client_t *c, const char *phase, const uint8_t *pt, size_t len);
static void b_error(wh_client_t *c, wh_result_t r, const char *text);
static void b_rx_error(wh_client_t *c, const char *err);
static void b_rx_unwelcome(wh_client_t *c, const char *err);
static void b_closed(wh_client_t *c);
static void t_close(wh_client_t *c, const char *mood);
static void t_nameplate_done(wh_client_t *c);
static void t_mailbox_done(wh_client_t *c);

/* ---- rendezvous ------------------------------------------------------------- */

uint32_t wh__reconnect_delay_ms(unsigned failures, double u)
{
    /* [0.5, 2] s, x1.5 per failure, both ends capped at 60 s */
    double lo = 500.0, hi = 2000.0;
    for (unsigned i = 0; i < failures && lo < 60000.0; i++) {
        lo *= 1.5;
        hi *= 1.5;
    }
    if (lo > 60000.0)
        lo = 60000.0;
    if (hi > 60000.0)
        hi = 60000.0;
    return (uint32_t)(lo + u * (hi - lo));
}

static double rand_unit(wh_client_t *c)
{
    uint32_t r;
    c->io.random(c->io.ctx, &r, sizeof(r));
    return (double)r / 4294967295.0;
}

/* Send a command: o (consumed) gets "id" (2 random bytes hex) and "type". */
static void rc_tx(wh_client_t *c, json_t *o, const char *type)
{
    if (o == NULL)
        return;
    assert(c->connected);
    uint8_t idb[2];
    char id[5];
    c->io.random(c->io.ctx, idb, sizeof(idb));
    hex_encode(idb, 2, id);
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "type", json_string(type));
    size_t len;
    char *text = wb_json_encode(o, &len);
    json_decref(o);
    if (text == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    c->io.ws_send(c->io.ctx, text, len);
    free(text);
}

static void n_connected(wh_client_t *c);
static void m_connected(wh_client_t *c);
static void a_connected(wh_client_t *c);
static void l_connected(wh_client_t *c);

static void rc_opened(wh_client_t *c)
{
    if (c->rc != RC_CONNECTING)
        return;
    c->rc = RC_OPEN;
    c->connected = 1;
    c->ever_connected = 1;
    c->failures = 0;
    json_t *cv = json_pack("[ss]", c->client_name, c->client_version);
    rc_tx(c, json_pack("{s:s,s:s,s:o}", "appid", c->appid, "side", c->side, "client_version", cv),
          "bind");
    n_connected(c);
    m_connected(c);
    l_connected(c);
    a_connected(c);
}

static void rc_lost(wh_client_t *c, const char *reason)
{
    if (c->rc != RC_CONNECTING && c->rc != RC_OPEN)
        return;
    c->connected = 0;
    if (!c->ever_connected) {
        c->rc = RC_STOPPED;
        b_error(c, WH_RESULT_UNREACHABLE, reason ? reason : "connection failed");
        return;
    }
    c->rc = RC_WAITING;
    uint32_t ms = wh__reconnect_delay_ms(c->failures++, rand_unit(c));
    c->io.timer_start(c->io.ctx, ms);
}

static void rc_stop(wh_client_t *c)
{
    if (c->rc == RC_STOPPED)
        return;
    if (c->rc == RC_WAITING)
        c->io.timer_cancel(c->io.ctx);
    if (c->rc == RC_CONNECTING || c->rc == RC_OPEN)
        c->io.ws_close(c->io.ctx);
    c->rc = RC_STOPPED;
    c->connected = 0;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void rc_message(wh_client_t *c, const char *text, size_t len)
{
    if (!c->connected)
        return;
    wb_json_msg_t m;
    char err[160];
    if (wb_json_msg_decode(&m, text, len, err, sizeof(err)) != 0) {
        char why[256];
        snprintf(why, sizeof(why), "the server sent a message that is not a JSON object: %s", err);
        b_error(c, WH_RESULT_PROTOCOL, why);
        return;
    }
    if (m.type == NULL) {
        wb_json_msg_free(&m);
        b_error(c, WH_RESULT_PROTOCOL, "the server sent a message without a type");
        return;
    }
    json_t *o = m.obj;
    const char *t = m.type;
    const char *bad = NULL;
    if (strcmp(t, "ack") == 0 || strcmp(t, "pong") == 0) {
        /* pipelined: acks mean nothing to us */
    } else if (strcmp(t, "welcome") == 0) {
        json_t *w = json_object_get(o, "welcome");
        if (!json_is_object(w)) {
            bad = "welcome without an object";
        } else {
            const char *e = jstr(w, "error");
            emit(c, WH_EV_WELCOME, jstr(w, "motd"), jstr(w, "current_cli_version"), NULL, 0, 0);
            if (json_object_get(w, "error") != NULL)
                b_rx_unwelcome(c, e ? e : "(the server's error is not a string)");
        }
    } else if (strcmp(t, "error") == 0) {
        const char *e = jstr(o, "error");
        b_rx_error(c, e ? e : "(the server's error is not a string)");
    } else if (strcmp(t, "allocated") == 0) {
        const char *np = jstr(o, "nameplate");
        if (np == NULL || !is_digits(np)) {
            bad = "allocated: the nameplate is not a number";
        } else if (c->a == A_ALLOCATING) {
            c->a = A_DONE;
            char *code = malloc(WB_WH_CODE_CAP(strlen(np), c->a_words));
            uint8_t words[64];
            unsigned nw = c->a_words;
            c->io.random(c->io.ctx, words, nw);
            if (code == NULL ||
                wb_wh_code_generate(np, nw, words, code, WB_WH_CODE_CAP(strlen(np), nw)) != 0) {
                free(code);
                b_error(c, WH_RESULT_PROTOCOL, "cannot make a code");
            } else {
                if (c->cs == C_ALLOCATING) {
                    c->cs = C_KNOWN;
                    n_set_nameplate(c, np);
                    b_got_code(c, code);
                    k_got_code(c, code);
                }
                sodium_memzero(code, strlen(code));
                free(code);
            }
            sodium_memzero(words, sizeof(words));
        }
    } else if (strcmp(t, "nameplates") == 0) {
        json_t *a = json_object_get(o, "nameplates"), *out = json_array();
        size_t i;
        json_t *v;
        if (!json_is_array(a) || out == NULL) {
            bad = "nameplates without a list";
        } else {
            json_array_foreach(a, i, v)
            {
                const char *id = json_is_object(v) ? jstr(v, "id") : NULL;
                if (id != NULL)
                    json_array_append_new(out, json_string(id));
            }
            size_t n;
            char *s = wb_json_encode(out, &n);
            c->l_wanting = 0;
            if (s != NULL)
                emit(c, WH_EV_NAMEPLATES, s, NULL, NULL, 0, 0);
            free(s);
        }
        json_decref(out);
    } else if (strcmp(t, "claimed") == 0) {
        const char *mb = jstr(o, "mailbox");
        if (mb == NULL)
            bad = "claimed without a mailbox";
        else if (c->n == N_KNOWN) {
            c->n = N_CLAIMED;
            m_got_mailbox(c, mb);
        }
    } else if (strcmp(t, "released") == 0) {
        if (c->n == N_RELEASING) {
            c->n = N_DONE;
            t_nameplate_done(c);
        }
    } else if (strcmp(t, "message") == 0) {
        const char *side = jstr(o, "side"), *phase = jstr(o, "phase"), *hex = jstr(o, "body");
        size_t blen = 0;
        uint8_t *body = hex ? hex_decode(hex, strlen(hex), &blen) : NULL;
        if (side == NULL || phase == NULL || body == NULL) {
            bad = "a message without side, phase or a hex body";
        } else if (strcmp(side, c->side) == 0) {
            if (c->m == M_OPEN || c->m == M_CLOSING)
                msg_free(list_take_phase(&c->pending, phase)); /* echoed: delivered */
        } else if (c->m == M_OPEN) {
            {
                n_release(c);
                if (!list_has_phase(&c->processed, phase)) {
                    msg_t *p = msg_new(NULL, phase, NULL, 0);
                    if (p != NULL)
                        list_push(&c->processed, p);
                    o_got_message(c, side, phase, body, blen);
                }
            }
        }
        if (body)
            sodium_memzero(body, blen);
        free(body);
    } else if (strcmp(t, "closed") == 0) {
        if (c->m == M_CLOSING) {
            c->m = M_DONE;
            t_mailbox_done(c);
        }
    }
    /* other types: ignored, as Python does (later servers may add some) */
    wb_json_msg_free(&m);
    if (bad != NULL) {
        char why[200];
        snprintf(why, sizeof(why), "the server sent %s", bad);
        b_error(c, WH_RESULT_PROTOCOL, why);
    }
}

/* ---- nameplate ------------------------------------------------------------------ */

static void n_tx_claim(wh_client_t *c)
{
    c->claim_sent = 1;
    rc_tx(c, json_pack("{s:s}", "nameplate", c->nameplate), "claim");
}

static void n_tx_release(wh_client_t *c)
{
    rc_tx(c, json_pack("{s:s}", "nameplate", c->nameplate), "release");
}

static void n_set_nameplate(wh_client_t *c, const char *np)
{
    if (c->n != N_NONE)
        return;
    c->nameplate = dup0(np);
    if (c->nameplate == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    c->n = N_KNOWN;
    if (c->connected)
        n_tx_claim(c);
}

static void n_connected(wh_client_t *c)
{
    if (c->n == N_KNOWN)
        n_tx_claim(c);
    else if (c->n == N_RELEASING)
        n_tx_release(c);
}

/* From the mailbox: the peer has shown up, the nameplate can go. */
static void n_release(wh_client_t *c)
{
    if (c->n != N_CLAIMED)
        return;
    c->n = N_RELEASING;
    if (c->connected)
        n_tx_release(c);
}

static void n_close(wh_client_t *c)
{
    switch (c->n) {
    case N_NONE:
        c->n = N_DONE;
        t_nameplate_done(c);
        break;
    case N_KNOWN:
        if (!c->claim_sent) {
            c->n = N_DONE;
            t_nameplate_done(c);
            break;
        }
        /* it may be claimed */
        __attribute__((fallthrough));
    case N_CLAIMED:
        c->n = N_RELEASING;
        if (c->connected)
            n_tx_release(c);
        break;
    default:
        break;
    }
}

/* ---- mailbox --------------------------------------------------------------------- */

static void m_tx_add(wh_client_t *c, const char *phase, const uint8_t *body, size_t len)
{
    char *hex = malloc(2 * len + 1);
    if (hex == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    hex_encode(body, len, hex);
    rc_tx(c, json_pack("{s:s,s:s}", "phase", phase, "body", hex), "add");
    free(hex);
}

static void m_open_and_drain(wh_client_t *c)
{
    rc_tx(c, json_pack("{s:s}", "mailbox", c->mailbox), "open");
    for (msg_t *m = c->pending.head; m && c->connected; m = m->next)
        m_tx_add(c, m->phase, m->body, m->len);
}

static void m_got_mailbox(wh_client_t *c, const char *mb)
{
    if (c->m != M_NONE)
        return;
    c->mailbox = dup0(mb);
    if (c->mailbox == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    c->m = M_OPEN;
    if (c->connected)
        m_open_and_drain(c);
}

static void m_connected(wh_client_t *c)
{
    if (c->m == M_OPEN)
        m_open_and_drain(c);
    else if (c->m == M_CLOSING) {
        /* Python sends only the close here, so an add lost with the old
         * connection (the answer a receiver sends just before closing) would
         * never arrive: send what was not echoed first. Opening again after
         * a close is allowed, and the peer drops repeated phases. */
        if (c->pending.head != NULL)
            m_open_and_drain(c);
        rc_tx(c, json_pack("{s:s,s:s}", "mailbox", c->mailbox, "mood", c->mood), "close");
    }
}

static void m_add(wh_client_t *c, const char *phase, const uint8_t *body, size_t len)
{
    if (c->m == M_CLOSING || c->m == M_DONE)
        return;
    msg_free(list_take_phase(&c->pending, phase));
    msg_t *m = msg_new(NULL, phase, body, len);
    if (m == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    list_push(&c->pending, m);
    if (c->m == M_OPEN && c->connected)
        m_tx_add(c, phase, body, len);
}

static void m_close(wh_client_t *c, const char *mood)
{
    if (c->m == M_NONE) {
        c->m = M_DONE;
        t_mailbox_done(c);
    } else if (c->m == M_OPEN) {
        c->m = M_CLOSING;
        snprintf(c->mood, sizeof(c->mood), "%s", mood);
        if (c->connected)
            rc_tx(c, json_pack("{s:s,s:s}", "mailbox", c->mailbox, "mood", c->mood), "close");
    }
}

/* ---- order ------------------------------------------------------------------------- */

static void o_got_message(wh_client_t *c, const char *side, const char *phase, const uint8_t *body,
                          size_t len)
{
    if (strcmp(phase, "pake") == 0) {
        if (c->have_pake)
            return; /* the processed set makes this impossible; be sure */
        c->have_pake = 1;
        k_got_pake(c, body, len);
        msg_t *m;
        while ((m = list_pop(&c->order_q)) != NULL) {
            r_got_message(c, m->side, m->phase, m->body, m->len);
            msg_free(m);
        }
    } else if (!c->have_pake) {
        msg_t *m = msg_new(side, phase, body, len);
        if (m == NULL) {
            b_error(c, WH_RESULT_PROTOCOL, "out of memory");
            return;
        }
        list_push(&c->order_q, m);
    } else {
        r_got_message(c, side, phase, body, len);
    }
}

/* ---- key ---------------------------------------------------------------------------- */

static void k_build_pake(wh_client_t *c)
{
    uint8_t pw[1024], entropy[WB_SPAKE2_ENTROPY_LEN], msg[WB_SPAKE2_MSG_LEN];
    size_t pwlen;
    int rc = wb_wh_code_password(c->code, strlen(c->code), pw, sizeof(pw), &pwlen);
    if (rc == 0) {
        c->io.random(c->io.ctx, entropy, sizeof(entropy));
        rc = wb_spake2_start(&c->sp, pw, pwlen, (const uint8_t *)c->appid, strlen(c->appid),
                             entropy, msg);
    }
    sodium_memzero(pw, sizeof(pw));
    sodium_memzero(entropy, sizeof(entropy));
    if (rc != 0) {
        b_error(c, WH_RESULT_PROTOCOL, "cannot start SPAKE2 with this code");
        return;
    }
    char hex[2 * WB_SPAKE2_MSG_LEN + 1];
    hex_encode(msg, sizeof(msg), hex);
    json_t *o = json_pack("{s:s}", "pake_v1", hex);
    size_t len;
    char *body = o ? wb_json_encode(o, &len) : NULL;
    json_decref(o);
    if (body == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    m_add(c, "pake", (const uint8_t *)body, len);
    free(body);
}

static void k_compute(wh_client_t *c, const uint8_t *body, size_t len)
{
    wb_json_msg_t m;
    const char *hex;
    size_t hexlen, plen = 0;
    uint8_t *peer = NULL;
    if (wb_json_msg_decode(&m, body, len, NULL, 0) != 0) {
        c->k = K_SCARED;
        b_scared(c);
        return;
    }
    if (wb_json_str(m.obj, "pake_v1", &hex, &hexlen) == 0)
        peer = hex_decode(hex, hexlen, &plen);
    wb_json_msg_free(&m);
    int rc = peer == NULL ? WB_EPROTO : wb_spake2_finish(&c->sp, peer, plen, c->key, NULL, 0);
    free(peer);
    if (rc != 0) {
        c->k = K_SCARED;
        b_scared(c);
        return;
    }
    c->k = K_KEY;
    b_got_key(c);
    /* the version message, encrypted with our side's phase key */
    json_t *v = json_pack("{s:O}", "app_versions", c->app_versions);
    size_t ptlen;
    char *pt = v ? wb_json_encode(v, &ptlen) : NULL;
    json_decref(v);
    uint8_t pkey[WB_WH_KEY_LEN], nonce[WB_WH_NONCE_LEN];
    uint8_t *box = pt ? malloc(ptlen + WB_WH_BOX_OVERHEAD) : NULL;
    size_t boxlen;
    c->io.random(c->io.ctx, nonce, sizeof(nonce));
    if (box == NULL || wb_wh_phase_key(c->key, c->side, strlen(c->side), "version", 7, pkey) != 0 ||
        wb_wh_box_seal(pkey, (const uint8_t *)pt, ptlen, nonce, box, ptlen + WB_WH_BOX_OVERHEAD,
                       &boxlen) != 0) {
        free(pt);
        free(box);
        sodium_memzero(pkey, sizeof(pkey));
        b_error(c, WH_RESULT_PROTOCOL, "cannot encrypt the version message");
        return;
    }
    sodium_memzero(pkey, sizeof(pkey));
    m_add(c, "version", box, boxlen);
    free(pt);
    free(box);
    r_got_key(c);
}

static void k_got_code(wh_client_t *c, const char *code)
{
    if (c->k != K_NONE)
        return;
    c->code = dup0(code);
    if (c->code == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    c->k = K_CODE;
    k_build_pake(c);
    if (c->k == K_CODE && c->have_stash) {
        c->have_stash = 0;
        k_compute(c, c->stash, c->stash_len);
        free(c->stash);
        c->stash = NULL;
    }
}

static void k_got_pake(wh_client_t *c, const uint8_t *body, size_t len)
{
    if (c->k == K_NONE) {
        if (c->have_stash)
            return;
        c->stash = malloc(len ? len : 1);
        if (c->stash == NULL) {
            b_error(c, WH_RESULT_PROTOCOL, "out of memory");
            return;
        }
        memcpy(c->stash, body, len);
        c->stash_len = len;
        c->have_stash = 1;
    } else if (c->k == K_CODE) {
        k_compute(c, body, len);
    }
}

/* ---- receive ------------------------------------------------------------------------ */

static void r_decrypt(wh_client_t *c, const char *side, const char *phase, const uint8_t *body,
                      size_t len)
{
    if (c->r == R_SCARED)
        return;
    uint8_t pkey[WB_WH_KEY_LEN];
    uint8_t *pt = malloc(len + 1);
    size_t ptlen = 0;
    int rc = pt == NULL ? WB_ENOMEM
             : wb_wh_phase_key(c->key, side, strlen(side), phase, strlen(phase), pkey) != 0
                 ? WB_EINVAL
                 : wb_wh_box_open(pkey, body, len, pt, len, &ptlen, NULL, 0);
    sodium_memzero(pkey, sizeof(pkey));
    if (rc == WB_ENOMEM) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    if (rc != 0) {
        free(pt);
        c->r = R_SCARED;
        b_scared(c);
        return;
    }
    if (c->r == R_UNVERIFIED) {
        c->r = R_VERIFIED;
        s_got_verified_key(c);
        b_happy(c);
        b_got_verifier(c);
    }
    b_got_message(c, phase, pt, ptlen);
    sodium_memzero(pt, ptlen);
    free(pt);
}

static void r_got_key(wh_client_t *c)
{
    if (c->r != R_NOKEY)
        return;
    c->r = R_UNVERIFIED;
    msg_t *m;
    while ((m = list_pop(&c->r_q)) != NULL) {
        r_decrypt(c, m->side, m->phase, m->body, m->len);
        msg_free(m);
    }
}

static void r_got_message(wh_client_t *c, const char *side, const char *phase, const uint8_t *body,
                          size_t len)
{
    if (c->r == R_NOKEY) {
        /* only a peer that ignores the protocol gets here (it cannot have
         * our pake's key yet); keep it until we have one */
        if (c->k == K_SCARED)
            return;
        msg_t *m = msg_new(side, phase, body, len);
        if (m != NULL)
            list_push(&c->r_q, m);
        return;
    }
    r_decrypt(c, side, phase, body, len);
}

/* ---- send ------------------------------------------------------------------------- */

static void s_encrypt_and_add(wh_client_t *c, const char *phase, const uint8_t *pt, size_t len)
{
    uint8_t pkey[WB_WH_KEY_LEN], nonce[WB_WH_NONCE_LEN];
    uint8_t *box = malloc(len + WB_WH_BOX_OVERHEAD);
    size_t boxlen;
    c->io.random(c->io.ctx, nonce, sizeof(nonce));
    if (box == NULL ||
        wb_wh_phase_key(c->key, c->side, strlen(c->side), phase, strlen(phase), pkey) != 0 ||
        wb_wh_box_seal(pkey, pt, len, nonce, box, len + WB_WH_BOX_OVERHEAD, &boxlen) != 0) {
        free(box);
        sodium_memzero(pkey, sizeof(pkey));
        b_error(c, WH_RESULT_PROTOCOL, "cannot encrypt a message");
        return;
    }
    sodium_memzero(pkey, sizeof(pkey));
    m_add(c, phase, box, boxlen);
    free(box);
}

static void s_send(wh_client_t *c, const char *phase, const uint8_t *pt, size_t len)
{
    if (c->s_verified) {
        s_encrypt_and_add(c, phase, pt, len);
        return;
    }
    msg_t *m = msg_new(NULL, phase, pt, len);
    if (m == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    list_push(&c->s_q, m);
}

static void s_got_verified_key(wh_client_t *c)
{
    if (c->s_verified)
        return;
    c->s_verified = 1;
    msg_t *m;
    while ((m = list_pop(&c->s_q)) != NULL) {
        s_encrypt_and_add(c, m->phase, m->body, m->len);
        msg_free(m);
    }
}

/* ---- boss ---------------------------------------------------------------------------- */

static void b_set_result(wh_client_t *c, wh_result_t r, const char *text)
{
    c->result = r;
    free(c->result_text);
    c->result_text = dup0(text);
}

static void b_got_code(wh_client_t *c, const char *code)
{
    if (c->b != B_EMPTY)
        return;
    c->b = B_LONELY;
    emit(c, WH_EV_CODE, code, NULL, NULL, 0, 0);
}

static void b_got_key(wh_client_t *c)
{
    if (c->b == B_LONELY)
        emit(c, WH_EV_KEY, NULL, NULL, c->key, sizeof(c->key), 0);
}

static void b_happy(wh_client_t *c)
{
    if (c->b == B_LONELY)
        c->b = B_HAPPY;
}

static void b_close_with(wh_client_t *c, wh_result_t r, const char *text, const char *mood)
{
    if (c->b >= B_CLOSING)
        return;
    c->b = B_CLOSING;
    b_set_result(c, r, text);
    t_close(c, mood);
}

static void b_scared(wh_client_t *c)
{
    b_close_with(c, WH_RESULT_SCARY, NULL, "scary");
}

static void b_rx_error(wh_client_t *c, const char *err)
{
    b_close_with(c, WH_RESULT_ERRORY, err, "errory");
}

static void b_rx_unwelcome(wh_client_t *c, const char *err)
{
    b_close_with(c, WH_RESULT_UNWELCOME, err, "unwelcome");
}

/* Something broke: end at once, without the close handshake. */
static void b_error(wh_client_t *c, wh_result_t r, const char *text)
{
    if (c->b == B_CLOSED)
        return;
    c->b = B_CLOSED;
    b_set_result(c, r, text);
    rc_stop(c);
    emit(c, WH_EV_CLOSED, c->result_text, NULL, NULL, 0, 0);
}

static void b_got_verifier(wh_client_t *c)
{
    if (c->b != B_HAPPY)
        return;
    uint8_t v[WB_WH_KEY_LEN];
    wb_wh_verifier(c->key, v);
    emit(c, WH_EV_VERIFIER, NULL, NULL, v, sizeof(v), 0);
}

static void b_got_message(wh_client_t *c, const char *phase, const uint8_t *pt, size_t len)
{
    if (c->b != B_HAPPY)
        return;
    if (strcmp(phase, "version") == 0) {
        wb_json_msg_t m;
        json_t *av = NULL;
        if (wb_json_msg_decode(&m, pt, len, NULL, 0) == 0)
            av = json_object_get(m.obj, "app_versions");
        size_t n;
        char *s = json_is_object(av) ? wb_json_encode(av, &n) : NULL;
        emit(c, WH_EV_VERSIONS, s ? s : "{}", NULL, NULL, 0, 0);
        free(s);
        if (m.obj != NULL)
            wb_json_msg_free(&m);
        return;
    }
    if (!is_digits(phase) || strlen(phase) > 18)
        return; /* dilate-N and the unknown: not ours (yet) */
    uint64_t num = strtoull(phase, NULL, 10);
    if (num < c->next_rx)
        return;
    msg_t *m = msg_new(NULL, phase, pt, len);
    if (m == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    m->num = num;
    list_push(&c->rx, m);
    for (;;) {
        msg_t *prev = NULL, *hit = NULL;
        for (msg_t *x = c->rx.head; x; prev = x, x = x->next)
            if (x->num == c->next_rx) {
                hit = x;
                break;
            }
        if (hit == NULL)
            break;
        if (prev)
            prev->next = hit->next;
        else
            c->rx.head = hit->next;
        if (c->rx.tail == hit)
            c->rx.tail = prev;
        emit(c, WH_EV_MESSAGE, NULL, NULL, hit->body, hit->len, hit->num);
        c->next_rx++;
        msg_free(hit);
    }
}

static void b_closed(wh_client_t *c)
{
    if (c->b != B_CLOSING)
        return;
    c->b = B_CLOSED;
    emit(c, WH_EV_CLOSED, c->result_text, NULL, NULL, 0, 0);
}

/* ---- terminator ------------------------------------------------------------------------ */

static void t_check(wh_client_t *c)
{
    if (c->t_closing && c->t_n_done && c->t_m_done && c->rc != RC_STOPPED) {
        rc_stop(c);
        b_closed(c);
    }
}

static void t_close(wh_client_t *c, const char *mood)
{
    if (c->t_closing)
        return;
    c->t_closing = 1;
    n_close(c);
    m_close(c, mood);
    t_check(c);
}

static void t_nameplate_done(wh_client_t *c)
{
    c->t_n_done = 1;
    t_check(c);
}

static void t_mailbox_done(wh_client_t *c)
{
    c->t_m_done = 1;
    t_check(c);
}

/* ---- allocator and lister --------------------------------------------------------------- */

static void a_connected(wh_client_t *c)
{
    if (c->a == A_ALLOCATING)
        rc_tx(c, json_object(), "allocate");
}

static void l_connected(wh_client_t *c)
{
    if (c->l_wanting)
        rc_tx(c, json_object(), "list");
}

/* ---- the API ---------------------------------------------------------------------------- */

int wh_client_new(wh_client_t **out, const wh_config_t *cfg, const wh_io_t *io)
{
    if (cfg == NULL || cfg->appid == NULL || io == NULL)
        return WB_EINVAL;
    json_t *av =
        json_loads(cfg->app_versions ? cfg->app_versions : "{}", JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(av)) {
        json_decref(av);
        return WB_EINVAL;
    }
    wh_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        json_decref(av);
        return WB_ENOMEM;
    }
    c->io = *io;
    c->app_versions = av;
    c->appid = dup0(cfg->appid);
    c->client_name = dup0(cfg->client_name ? cfg->client_name : "waybill");
    c->client_version = dup0(cfg->client_version ? cfg->client_version : "0.1.0");
    if (c->appid == NULL || c->client_name == NULL || c->client_version == NULL) {
        wh_client_free(c);
        return WB_ENOMEM;
    }
    uint8_t s[WH_SIDE_LEN / 2];
    io->random(io->ctx, s, sizeof(s));
    hex_encode(s, sizeof(s), c->side);
    wb_spake2_init(&c->sp);
    *out = c;
    return 0;
}

void wh_client_free(wh_client_t *c)
{
    if (c == NULL)
        return;
    evq_t *q;
    while ((q = c->ev_head) != NULL) {
        c->ev_head = q->next;
        evq_free(q);
    }
    list_clear(&c->pending);
    list_clear(&c->processed);
    list_clear(&c->order_q);
    list_clear(&c->r_q);
    list_clear(&c->s_q);
    list_clear(&c->rx);
    wb_spake2_fini(&c->sp);
    sodium_memzero(c->key, sizeof(c->key));
    if (c->code)
        sodium_memzero(c->code, strlen(c->code));
    free(c->code);
    free(c->stash);
    free(c->nameplate);
    free(c->mailbox);
    free(c->result_text);
    free(c->appid);
    free(c->client_name);
    free(c->client_version);
    json_decref(c->app_versions);
    free(c);
}

const char *wh_client_side(const wh_client_t *c)
{
    return c->side;
}

int wh_client_is_closing(const wh_client_t *c)
{
    return c->b == B_CLOSING;
}

void wh_client_start(wh_client_t *c)
{
    if (c->rc != RC_IDLE)
        return;
    enter(c);
    c->rc = RC_CONNECTING;
    c->io.ws_open(c->io.ctx);
    leave(c);
}

int wh_client_allocate(wh_client_t *c, unsigned nwords)
{
    if (c->cs != C_IDLE || nwords > 64)
        return c->cs != C_IDLE ? WB_ESTATE : WB_EINVAL;
    enter(c);
    c->cs = C_ALLOCATING;
    c->a = A_ALLOCATING;
    c->a_words = nwords;
    if (c->connected)
        rc_tx(c, json_object(), "allocate");
    leave(c);
    return 0;
}

static void take_code(wh_client_t *c, const char *code, int set_nameplate)
{
    size_t nl = wb_wh_code_nameplate_len(code, strlen(code));
    char *np = dupn(code, nl);
    if (np == NULL) {
        b_error(c, WH_RESULT_PROTOCOL, "out of memory");
        return;
    }
    c->cs = C_KNOWN;
    if (set_nameplate)
        n_set_nameplate(c, np);
    b_got_code(c, code);
    k_got_code(c, code);
    free(np);
}

int wh_client_set_code(wh_client_t *c, const char *code, char *err, size_t errlen)
{
    if (c->cs != C_IDLE)
        return WB_ESTATE;
    int rc = wb_wh_code_validate(code, strlen(code), err, errlen);
    if (rc != 0)
        return rc;
    enter(c);
    take_code(c, code, 1);
    leave(c);
    return 0;
}

int wh_client_input_nameplate(wh_client_t *c, const char *nameplate)
{
    if (c->cs != C_IDLE)
        return WB_ESTATE;
    if (!is_digits(nameplate))
        return WB_EINVAL;
    enter(c);
    c->cs = C_INPUTTING;
    n_set_nameplate(c, nameplate);
    leave(c);
    return 0;
}

int wh_client_input_finish(wh_client_t *c, const char *code, char *err, size_t errlen)
{
    if (c->cs != C_INPUTTING)
        return WB_ESTATE;
    int rc = wb_wh_code_validate(code, strlen(code), err, errlen);
    if (rc != 0)
        return rc;
    size_t nl = strlen(c->nameplate);
    if (strncmp(code, c->nameplate, nl) != 0 || code[nl] != '-') {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "the code must start with the nameplate '%s-'", c->nameplate);
        return WB_EINVAL;
    }
    enter(c);
    take_code(c, code, 0);
    leave(c);
    return 0;
}

void wh_client_list(wh_client_t *c)
{
    enter(c);
    if (!c->l_wanting) {
        c->l_wanting = 1;
        if (c->connected)
            rc_tx(c, json_object(), "list");
    }
    leave(c);
}

int wh_client_send(wh_client_t *c, const void *data, size_t len)
{
    if (c->b >= B_CLOSING)
        return 0;
    char phase[24];
    snprintf(phase, sizeof(phase), "%llu", (unsigned long long)c->next_tx++);
    enter(c);
    s_send(c, phase, data, len);
    leave(c);
    return 0;
}

void wh_client_close(wh_client_t *c)
{
    enter(c);
    if (c->b == B_HAPPY)
        b_close_with(c, WH_RESULT_HAPPY, NULL, "happy");
    else if (c->b < B_HAPPY)
        b_close_with(c, WH_RESULT_LONELY, NULL, "lonely");
    leave(c);
}

void wh_client_abort(wh_client_t *c, const char *why)
{
    enter(c);
    if (c->b == B_CLOSING) {
        c->b = B_CLOSED;
        rc_stop(c);
        emit(c, WH_EV_CLOSED, c->result_text, NULL, NULL, 0, 0);
    } else {
        b_error(c, WH_RESULT_PROTOCOL, why);
    }
    leave(c);
}

void wh_client_ws_opened(wh_client_t *c)
{
    enter(c);
    rc_opened(c);
    leave(c);
}

void wh_client_ws_message(wh_client_t *c, const char *text, size_t len)
{
    enter(c);
    rc_message(c, text, len);
    leave(c);
}

void wh_client_ws_closed(wh_client_t *c, const char *reason)
{
    enter(c);
    rc_lost(c, reason);
    leave(c);
}

void wh_client_timer(wh_client_t *c)
{
    enter(c);
    if (c->rc == RC_WAITING) {
        c->rc = RC_CONNECTING;
        c->io.ws_open(c->io.ctx);
    }
    leave(c);
}

const char *wh_result_name(wh_result_t r)
{
    switch (r) {
    case WH_RESULT_HAPPY:
        return "happy";
    case WH_RESULT_LONELY:
        return "lonely";
    case WH_RESULT_SCARY:
        return "scary";
    case WH_RESULT_ERRORY:
        return "errory";
    case WH_RESULT_UNWELCOME:
        return "unwelcome";
    case WH_RESULT_UNREACHABLE:
        return "unreachable";
    case WH_RESULT_PROTOCOL:
        return "protocol";
    }
    return "unknown";
}
