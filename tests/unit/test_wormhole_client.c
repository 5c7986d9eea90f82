/*
 * test_wormhole_client.c - the wormhole client machines (apps/wormhole/
 * client.h) with no sockets: clients wired through a fake network to the
 * real mailbox server machine (apps/mailbox/core.h), itself sans-io.
 *
 * The fake network is one FIFO of deliveries: a connection opening, a
 * message to the server on a connection, a message to a client on a
 * connection. Dropping a connection frees it on the server and loses
 * everything still in flight on it either way, as a dead TCP connection
 * would. Timers are fired by the test; random bytes come from a seeded
 * generator per client, so every run is the same run.
 *
 * Checked: a whole text exchange (allocated and fixed codes, verifiers
 * equal, app_versions delivered, messages in order, the server left empty);
 * wrong code -> both scary; a connection dropped at every point of a
 * session, on either side, then reconnected: the session finishes, nothing
 * lost, nothing twice; crowded -> errory "crowded" while the pair finishes;
 * a welcome error -> unwelcome; the first connection failing -> unreachable;
 * the same seeds give the same bytes on the wire; reconnect delays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "apps/mailbox/core.h"
#include "apps/wormhole/client.h"
#include "runtime/error.h"

#define APP "lothar.com/wormhole/text-or-file-xfer"
enum { MAXPEERS = 4, MAXMSG = 8 };

/* ---- the fake network ---------------------------------------------------------------- */

enum { D_OPEN, D_TO_SERVER, D_TO_CLIENT };

typedef struct item_s {
    struct item_s *next;
    int kind, peer;
    uint64_t conn;
    char *text;
    size_t len;
} item_t;

typedef struct {
    wh_client_t *c;
    int idx;
    uint64_t rng;
    uint64_t conn; /* current connection id, 0 when none */
    mb_conn_t *mb; /* its server side, once opened */
    int opening;
    int timer_on;
    uint32_t timer_ms;
    int refuse_connect; /* ws_open fails */
    /* the scripted application */
    int role; /* 0: sends nsend, closes after receiving nrecv; 1: same */
    int nsend, nrecv;
    char code[128];
    uint8_t verifier[32];
    int have_verifier, have_key, have_versions, closed;
    wh_result_t result;
    char result_text[128];
    char versions[128];
    char got[MAXMSG][64];
    int ngot;
    int dup_or_gap;
    char *wire; /* everything it sent, for the determinism check */
    size_t wire_len;
} peer_t;

static struct {
    mb_core_t *core;
    item_t *head, *tail;
    uint64_t next_conn;
    peer_t peers[MAXPEERS];
    int npeers;
    double now;
    long delivered;
    const char *signal_error;
} net;

static void push(int kind, int peer, uint64_t conn, const char *text, size_t len)
{
    item_t *it = calloc(1, sizeof(*it));
    assert_non_null(it);
    it->kind = kind;
    it->peer = peer;
    it->conn = conn;
    if (text != NULL) {
        it->text = malloc(len + 1);
        memcpy(it->text, text, len);
        it->text[len] = 0;
        it->len = len;
    }
    if (net.tail)
        net.tail->next = it;
    else
        net.head = it;
    net.tail = it;
}

/* server io */
static void srv_send(void *ctx, mb_conn_t *c, const char *json, size_t len)
{
    peer_t *p = mb_conn_user(c);
    push(D_TO_CLIENT, p->idx, mb_conn_id(c), json, len);
}

static void srv_close(void *ctx, mb_conn_t *c, int code, const char *reason)
{
    fail_msg("the server closed a client's connection: %d %s", code, reason);
}

static void srv_persist(void *ctx, wb_event_t *req)
{
    wb_event_free(req);
}

/* client io */
static void cl_ws_open(void *ctx)
{
    peer_t *p = ctx;
    assert_int_equal(p->conn, 0);
    p->conn = ++net.next_conn;
    p->opening = 1;
    push(D_OPEN, p->idx, p->conn, NULL, 0);
}

static void cl_ws_send(void *ctx, const char *text, size_t len)
{
    peer_t *p = ctx;
    assert_true(p->conn != 0 && !p->opening);
    push(D_TO_SERVER, p->idx, p->conn, text, len);
    p->wire = realloc(p->wire, p->wire_len + len + 2);
    memcpy(p->wire + p->wire_len, text, len);
    p->wire_len += len;
    p->wire[p->wire_len++] = '\n';
    p->wire[p->wire_len] = 0;
}

static void drop_conn(peer_t *p)
{
    if (p->mb != NULL)
        mb_conn_free(p->mb);
    p->mb = NULL;
    p->conn = 0;
    p->opening = 0;
}

static void cl_ws_close(void *ctx)
{
    drop_conn(ctx);
}

static void cl_timer_start(void *ctx, uint32_t ms)
{
    peer_t *p = ctx;
    p->timer_on = 1;
    p->timer_ms = ms;
}

static void cl_timer_cancel(void *ctx)
{
    ((peer_t *)ctx)->timer_on = 0;
}

static void cl_random(void *ctx, void *buf, size_t n)
{
    peer_t *p = ctx;
    uint8_t *b = buf;
    for (size_t i = 0; i < n; i++) {
        p->rng ^= p->rng << 13;
        p->rng ^= p->rng >> 7;
        p->rng ^= p->rng << 17;
        b[i] = (uint8_t)(p->rng >> 24);
    }
}

static void cl_event(void *ctx, const wh_event_t *ev)
{
    peer_t *p = ctx;
    assert_false(p->closed);
    switch (ev->type) {
    case WH_EV_WELCOME:
        break;
    case WH_EV_CODE:
        snprintf(p->code, sizeof(p->code), "%s", ev->text);
        break;
    case WH_EV_KEY:
        p->have_key = 1;
        break;
    case WH_EV_VERIFIER:
        assert_int_equal(ev->len, 32);
        memcpy(p->verifier, ev->data, 32);
        p->have_verifier = 1;
        break;
    case WH_EV_VERSIONS:
        snprintf(p->versions, sizeof(p->versions), "%s", ev->text);
        p->have_versions = 1;
        break;
    case WH_EV_MESSAGE:
        if ((int)ev->phase != p->ngot || p->ngot >= MAXMSG)
            p->dup_or_gap = 1;
        else
            snprintf(p->got[p->ngot++], sizeof(p->got[0]), "%.*s", (int)ev->len,
                     (const char *)ev->data);
        if (p->ngot == p->nrecv)
            wh_client_close(p->c);
        break;
    case WH_EV_NAMEPLATES:
        break;
    case WH_EV_CLOSED:
        p->closed = 1;
        p->result = ev->result;
        snprintf(p->result_text, sizeof(p->result_text), "%s", ev->text ? ev->text : "");
        break;
    }
}

static peer_t *add_peer(uint64_t seed, int nsend, int nrecv, const char *versions)
{
    peer_t *p = &net.peers[net.npeers];
    memset(p, 0, sizeof(*p));
    p->idx = net.npeers++;
    p->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    p->nsend = nsend;
    p->nrecv = nrecv;
    wh_config_t cfg = {.appid = APP, .app_versions = versions};
    wh_io_t io = {p,         cl_ws_open, cl_ws_send, cl_ws_close, cl_timer_start, cl_timer_cancel,
                  cl_random, cl_event};
    assert_int_equal(wh_client_new(&p->c, &cfg, &io), 0);
    return p;
}

static void send_all(peer_t *p)
{
    for (int i = 0; i < p->nsend; i++) {
        char m[64];
        snprintf(m, sizeof(m), "message %d from %d: h\xc3\xa9llo", i, p->idx);
        assert_int_equal(wh_client_send(p->c, m, strlen(m)), 0);
    }
}

static void net_setup(void)
{
    memset(&net, 0, sizeof(net));
    mb_config_t cfg;
    mb_config_init(&cfg);
    mb_io_t io = {NULL, srv_send, srv_close, srv_persist};
    assert_int_equal(mb_core_new(&net.core, &cfg, &io), 0);
    net.now = 1700000000.0;
}

static void net_setup_with(const char *signal_error)
{
    memset(&net, 0, sizeof(net));
    mb_config_t cfg;
    mb_config_init(&cfg);
    cfg.signal_error = signal_error;
    mb_io_t io = {NULL, srv_send, srv_close, srv_persist};
    assert_int_equal(mb_core_new(&net.core, &cfg, &io), 0);
    net.now = 1700000000.0;
}

static void net_teardown(void)
{
    item_t *it;
    while ((it = net.head) != NULL) {
        net.head = it->next;
        free(it->text);
        free(it);
    }
    for (int i = 0; i < net.npeers; i++) {
        peer_t *p = &net.peers[i];
        if (p->mb)
            mb_conn_free(p->mb);
        wh_client_free(p->c);
        free(p->wire);
    }
    mb_core_free(net.core);
}

/* Deliver one item. Returns 0 when the network is idle. */
static int step(void)
{
    item_t *it = net.head;
    if (it == NULL)
        return 0;
    net.head = it->next;
    if (net.head == NULL)
        net.tail = NULL;
    peer_t *p = &net.peers[it->peer];
    net.now += 0.001;
    if (it->conn == p->conn) {
        switch (it->kind) {
        case D_OPEN:
            if (p->refuse_connect) {
                p->conn = 0;
                p->opening = 0;
                wh_client_ws_closed(p->c, "connection refused");
                break;
            }
            p->opening = 0;
            wh_client_ws_opened(p->c);
            if (p->conn == it->conn) /* welcome after OPENED, as on a socket */
                p->mb = mb_conn_new(net.core, it->conn, "127.0.0.1", p, net.now);
            break;
        case D_TO_SERVER:
            if (p->mb != NULL)
                mb_conn_input(p->mb, (const uint8_t *)it->text, it->len, net.now);
            break;
        case D_TO_CLIENT:
            wh_client_ws_message(p->c, it->text, it->len);
            break;
        }
    }
    net.delivered++;
    free(it->text);
    free(it);
    return 1;
}

/* Run until idle, firing timers when nothing else moves. */
static void run(long max)
{
    for (long i = 0; i < max; i++) {
        if (step())
            continue;
        int fired = 0;
        for (int k = 0; k < net.npeers; k++) {
            peer_t *p = &net.peers[k];
            if (p->timer_on) {
                p->timer_on = 0;
                net.now += p->timer_ms / 1000.0;
                wh_client_timer(p->c);
                fired = 1;
                break;
            }
        }
        if (!fired)
            return;
    }
    fail_msg("the network never went idle");
}

/* The peer's connection dies: the server side is freed, in-flight items on
 * it are lost (their conn id no longer matches), the client is told. */
static void kill_conn(peer_t *p)
{
    if (p->conn == 0)
        return;
    drop_conn(p);
    wh_client_ws_closed(p->c, "peer closed");
}

static void expect_exchange(peer_t *a, peer_t *b)
{
    assert_true(a->closed);
    assert_true(b->closed);
    assert_int_equal(a->result, WH_RESULT_HAPPY);
    assert_int_equal(b->result, WH_RESULT_HAPPY);
    assert_true(a->have_verifier && b->have_verifier);
    assert_memory_equal(a->verifier, b->verifier, 32);
    assert_false(a->dup_or_gap);
    assert_false(b->dup_or_gap);
    assert_int_equal(a->ngot, b->nsend);
    assert_int_equal(b->ngot, a->nsend);
    for (int i = 0; i < a->ngot; i++) {
        char m[64];
        snprintf(m, sizeof(m), "message %d from %d: h\xc3\xa9llo", i, b->idx);
        assert_string_equal(a->got[i], m);
    }
    for (int i = 0; i < b->ngot; i++) {
        char m[64];
        snprintf(m, sizeof(m), "message %d from %d: h\xc3\xa9llo", i, a->idx);
        assert_string_equal(b->got[i], m);
    }
    assert_int_equal(a->conn, 0); /* the WebSocket was dropped at the end */
    assert_int_equal(b->conn, 0);
    mb_stats_t st;
    mb_core_stats(net.core, &st);
    assert_int_equal(st.nameplates, 0);
    assert_int_equal(st.mailboxes, 0);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_allocated_text(void **state)
{
    net_setup();
    peer_t *a = add_peer(1, 1, 1, "{\"a\": 1}"), *b = add_peer(2, 1, 1, NULL);
    wh_client_start(a->c);
    assert_int_equal(wh_client_allocate(a->c, 2), 0);
    assert_int_equal(wh_client_allocate(a->c, 2), WB_ESTATE);
    send_all(a);
    run(10000);
    assert_true(a->code[0] != 0);
    assert_false(a->closed);
    /* "N-word-word": one digit nameplate (an empty server), two words */
    assert_true(a->code[0] >= '1' && a->code[0] <= '9' && a->code[1] == '-');
    assert_non_null(strchr(a->code + 2, '-'));
    wh_client_start(b->c);
    char err[128];
    assert_int_equal(wh_client_set_code(b->c, a->code, err, sizeof(err)), 0);
    send_all(b);
    run(10000);
    expect_exchange(a, b);
    assert_string_equal(b->versions, "{\"a\":1}");
    assert_string_equal(a->versions, "{}");
    assert_true(a->have_key && b->have_key);
    net_teardown();
}

static void test_fixed_code_many(void **state)
{
    net_setup();
    peer_t *a = add_peer(3, 5, 4, NULL), *b = add_peer(4, 4, 5, NULL);
    char err[128];
    /* b first: the code is known before the peer exists */
    wh_client_start(b->c);
    assert_int_equal(wh_client_set_code(b->c, "17-purple-sausages", err, sizeof(err)), 0);
    send_all(b);
    run(10000);
    wh_client_start(a->c);
    assert_int_equal(wh_client_set_code(a->c, "17-purple-sausages", err, sizeof(err)), 0);
    send_all(a);
    run(10000);
    expect_exchange(a, b);
    assert_string_equal(a->code, "17-purple-sausages");
    net_teardown();
}

static void test_bad_codes(void **state)
{
    net_setup();
    peer_t *a = add_peer(5, 0, 0, NULL);
    char err[128] = "";
    assert_int_equal(wh_client_set_code(a->c, "x-purple", err, sizeof(err)), WB_EINVAL);
    assert_true(err[0] != 0);
    assert_int_equal(wh_client_set_code(a->c, "1-has space", err, sizeof(err)), WB_EINVAL);
    assert_int_equal(wh_client_input_nameplate(a->c, "1x"), WB_EINVAL);
    assert_int_equal(wh_client_input_nameplate(a->c, "12"), 0);
    assert_int_equal(wh_client_input_finish(a->c, "13-a-b", err, sizeof(err)), WB_EINVAL);
    assert_int_equal(wh_client_input_finish(a->c, "12-a-b", err, sizeof(err)), 0);
    assert_int_equal(wh_client_set_code(a->c, "1-a", err, sizeof(err)), WB_ESTATE);
    net_teardown();
}

static void test_input_code(void **state)
{
    net_setup();
    peer_t *a = add_peer(6, 1, 1, NULL), *b = add_peer(7, 1, 1, NULL);
    char err[128];
    wh_client_start(a->c);
    assert_int_equal(wh_client_allocate(a->c, 3), 0);
    send_all(a);
    run(10000);
    wh_client_start(b->c);
    wh_client_list(b->c);
    char np[16];
    snprintf(np, sizeof(np), "%.*s", (int)(strchr(a->code, '-') - a->code), a->code);
    assert_int_equal(wh_client_input_nameplate(b->c, np), 0);
    run(10000); /* the nameplate is claimed, the mailbox opened, the pake is in */
    assert_false(b->have_key);
    assert_int_equal(wh_client_input_finish(b->c, a->code, err, sizeof(err)), 0);
    send_all(b);
    run(10000);
    expect_exchange(a, b);
    net_teardown();
}

static void test_wrong_code(void **state)
{
    net_setup();
    peer_t *a = add_peer(8, 1, 1, NULL), *b = add_peer(9, 1, 1, NULL);
    char err[128];
    wh_client_start(a->c);
    wh_client_start(b->c);
    assert_int_equal(wh_client_set_code(a->c, "4-purple-sausages", err, sizeof(err)), 0);
    assert_int_equal(wh_client_set_code(b->c, "4-purple-sausagez", err, sizeof(err)), 0);
    send_all(a);
    send_all(b);
    run(10000);
    assert_true(a->closed && b->closed);
    assert_int_equal(a->result, WH_RESULT_SCARY);
    assert_int_equal(b->result, WH_RESULT_SCARY);
    assert_int_equal(a->ngot + b->ngot, 0);
    assert_false(a->have_verifier || b->have_verifier);
    mb_stats_t st;
    mb_core_stats(net.core, &st);
    assert_int_equal(st.mailboxes, 0);
    assert_int_equal(st.nameplates, 0);
    net_teardown();
}

/* Drop one side's connection after `k` deliveries, for every k, and again
 * at the first delivery after it reconnects. */
static void test_reconnect_everywhere(void **state)
{
    int max_k = 0;
    for (int who = 0; who < 2; who++) {
        for (int k = 0;; k++) {
            net_setup();
            peer_t *a = add_peer(10 + k, 3, 2, NULL), *b = add_peer(1000 + k, 2, 3, NULL);
            peer_t *victim = who ? b : a;
            char err[128];
            wh_client_start(a->c);
            wh_client_start(b->c);
            assert_int_equal(wh_client_set_code(a->c, "9-a-b", err, sizeof(err)), 0);
            assert_int_equal(wh_client_set_code(b->c, "9-a-b", err, sizeof(err)), 0);
            send_all(a);
            send_all(b);
            int n = 0, dropped = 0, done_before = 0;
            while (n < k && step())
                n++;
            if (n < k)
                done_before = 1; /* the whole session took fewer than k deliveries */
            if (!done_before && victim->conn != 0 && !victim->opening && !victim->closed) {
                kill_conn(victim);
                dropped = 1;
                /* and once more, in the middle of the next connection */
                for (int i = 0; i < 3 && step(); i++)
                    ;
                if (victim->conn != 0 && !victim->opening && !victim->closed)
                    kill_conn(victim);
            }
            run(100000);
            expect_exchange(a, b);
            net_teardown();
            if (done_before) {
                if (k > max_k)
                    max_k = k;
                break;
            }
            (void)dropped;
        }
    }
    assert_true(max_k > 40); /* the loop did go through a whole session */
}

static void test_crowded(void **state)
{
    net_setup();
    peer_t *a = add_peer(20, 1, 1, NULL), *b = add_peer(21, 1, 1, NULL),
           *c = add_peer(22, 1, 1, NULL);
    char err[128];
    wh_client_start(a->c);
    assert_int_equal(wh_client_set_code(a->c, "5-x-y", err, sizeof(err)), 0);
    run(10000); /* a claimed, waiting */
    /* b is the second side, c the third: its claim comes after b's */
    wh_client_start(b->c);
    wh_client_start(c->c);
    assert_int_equal(wh_client_set_code(b->c, "5-x-y", err, sizeof(err)), 0);
    assert_int_equal(wh_client_set_code(c->c, "5-x-y", err, sizeof(err)), 0);
    run(10000);
    assert_true(c->closed);
    assert_int_equal(c->result, WH_RESULT_ERRORY);
    assert_string_equal(c->result_text, "crowded");
    assert_int_equal(c->conn, 0);
    send_all(a);
    send_all(b);
    run(10000);
    expect_exchange(a, b);
    net_teardown();
}

static void test_unwelcome(void **state)
{
    net_setup_with("this server is closed");
    peer_t *a = add_peer(30, 1, 1, NULL);
    char err[128];
    wh_client_start(a->c);
    assert_int_equal(wh_client_set_code(a->c, "5-x-y", err, sizeof(err)), 0);
    run(10000);
    assert_true(a->closed);
    assert_int_equal(a->result, WH_RESULT_UNWELCOME);
    assert_string_equal(a->result_text, "this server is closed");
    assert_int_equal(a->conn, 0);
    net_teardown();
}

static void test_unreachable(void **state)
{
    net_setup();
    peer_t *a = add_peer(31, 1, 1, NULL);
    a->refuse_connect = 1;
    wh_client_start(a->c);
    assert_int_equal(wh_client_allocate(a->c, 2), 0);
    run(10000);
    assert_true(a->closed);
    assert_int_equal(a->result, WH_RESULT_UNREACHABLE);
    assert_string_equal(a->result_text, "connection refused");
    assert_false(a->timer_on);
    net_teardown();
}

/* A server that goes away after the first connection: the client keeps
 * trying with growing delays, and finishes when it is back. */
static void test_retry_until_back(void **state)
{
    net_setup();
    peer_t *a = add_peer(32, 1, 1, NULL), *b = add_peer(33, 1, 1, NULL);
    char err[128];
    wh_client_start(a->c);
    assert_int_equal(wh_client_set_code(a->c, "6-x-y", err, sizeof(err)), 0);
    send_all(a);
    run(10000);
    kill_conn(a);
    a->refuse_connect = 1;
    for (unsigned i = 0; i < 14; i++) {
        assert_true(a->timer_on);
        assert_in_range(a->timer_ms, wh__reconnect_delay_ms(i, 0), wh__reconnect_delay_ms(i, 1));
        a->timer_on = 0;
        wh_client_timer(a->c);
        while (step())
            ;
    }
    assert_int_equal(wh__reconnect_delay_ms(13, 0), 60000);
    a->refuse_connect = 0;
    wh_client_start(b->c);
    assert_int_equal(wh_client_set_code(b->c, "6-x-y", err, sizeof(err)), 0);
    send_all(b);
    run(100000);
    expect_exchange(a, b);
    net_teardown();
}

/* The wire without what the server chose (mailbox ids): the same seeds must
 * give the same bytes. */
static char *normalized(const char *wire, size_t len)
{
    char *copy = malloc(len + 1), *save = NULL, *out = calloc(1, 1);
    size_t n = 0;
    memcpy(copy, wire, len);
    copy[len] = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        json_object_del(o, "mailbox");
        char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
        out = realloc(out, n + strlen(s) + 2);
        memcpy(out + n, s, strlen(s));
        n += strlen(s);
        out[n++] = '\n';
        out[n] = 0;
        free(s);
        json_decref(o);
    }
    free(copy);
    return out;
}

static void test_deterministic(void **state)
{
    char *wire[2];
    for (int r = 0; r < 2; r++) {
        net_setup();
        peer_t *a = add_peer(40, 2, 1, NULL), *b = add_peer(41, 1, 2, NULL);
        char err[128];
        wh_client_start(a->c);
        assert_int_equal(wh_client_set_code(a->c, "3-x-y", err, sizeof(err)), 0);
        send_all(a);
        run(10000);
        wh_client_start(b->c);
        assert_int_equal(wh_client_set_code(b->c, "3-x-y", err, sizeof(err)), 0);
        send_all(b);
        run(10000);
        expect_exchange(a, b);
        char *wa = normalized(a->wire, a->wire_len), *wb = normalized(b->wire, b->wire_len);
        wire[r] = malloc(strlen(wa) + strlen(wb) + 1);
        strcpy(wire[r], wa);
        strcat(wire[r], wb);
        free(wa);
        free(wb);
        net_teardown();
    }
    assert_true(strlen(wire[0]) > 1000);
    assert_string_equal(wire[0], wire[1]);
    free(wire[0]);
    free(wire[1]);
}

/* What goes on the wire is what the Python client sends: bind with side and
 * client_version, claim, open, add pake with {"pake_v1": "53..."} in hex. */
static void test_wire_shape(void **state)
{
    net_setup();
    peer_t *a = add_peer(50, 0, 0, NULL);
    char err[128];
    wh_client_start(a->c);
    assert_int_equal(wh_client_set_code(a->c, "4-purple-sausages", err, sizeof(err)), 0);
    run(10000);
    char *save = NULL, *line = strtok_r(a->wire, "\n", &save);
    const char *want[] = {"bind", "claim", "open", "add"};
    for (int i = 0; i < 4; i++) {
        assert_non_null(line);
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "type")), want[i]);
        assert_int_equal(strlen(json_string_value(json_object_get(o, "id"))), 4);
        if (i == 0) {
            assert_string_equal(json_string_value(json_object_get(o, "appid")), APP);
            assert_string_equal(json_string_value(json_object_get(o, "side")),
                                wh_client_side(a->c));
            assert_int_equal(strlen(wh_client_side(a->c)), 10);
            assert_true(json_is_array(json_object_get(o, "client_version")));
        }
        if (i == 1)
            assert_string_equal(json_string_value(json_object_get(o, "nameplate")), "4");
        if (i == 3) {
            assert_string_equal(json_string_value(json_object_get(o, "phase")), "pake");
            const char *hex = json_string_value(json_object_get(o, "body"));
            char body[256];
            size_t n = strlen(hex) / 2;
            for (size_t j = 0; j < n; j++)
                sscanf(hex + 2 * j, "%2hhx", (unsigned char *)&body[j]);
            body[n] = 0;
            json_t *p = json_loads(body, 0, NULL);
            assert_non_null(p);
            const char *pk = json_string_value(json_object_get(p, "pake_v1"));
            assert_int_equal(strlen(pk), 66);
            assert_memory_equal(pk, "53", 2);
            json_decref(p);
        }
        json_decref(o);
        line = strtok_r(NULL, "\n", &save);
    }
    /* closing before the peer came: lonely, nameplate released */
    wh_client_close(a->c);
    run(10000);
    assert_true(a->closed);
    assert_int_equal(a->result, WH_RESULT_LONELY);
    mb_stats_t st;
    mb_core_stats(net.core, &st);
    assert_int_equal(st.nameplates, 0);
    assert_int_equal(st.mailboxes, 0);
    net_teardown();
}

static void test_delays(void **state)
{
    assert_int_equal(wh__reconnect_delay_ms(0, 0.0), 500);
    assert_int_equal(wh__reconnect_delay_ms(0, 1.0), 2000);
    assert_int_equal(wh__reconnect_delay_ms(1, 0.0), 750);
    assert_int_equal(wh__reconnect_delay_ms(1, 1.0), 3000);
    assert_int_equal(wh__reconnect_delay_ms(30, 0.0), 60000);
    assert_int_equal(wh__reconnect_delay_ms(1000, 1.0), 60000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocated_text), cmocka_unit_test(test_fixed_code_many),
        cmocka_unit_test(test_bad_codes),      cmocka_unit_test(test_input_code),
        cmocka_unit_test(test_wrong_code),     cmocka_unit_test(test_reconnect_everywhere),
        cmocka_unit_test(test_crowded),        cmocka_unit_test(test_unwelcome),
        cmocka_unit_test(test_unreachable),    cmocka_unit_test(test_retry_until_back),
        cmocka_unit_test(test_deterministic),  cmocka_unit_test(test_wire_shape),
        cmocka_unit_test(test_delays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
