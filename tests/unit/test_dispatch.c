/*
 * test_dispatch.c - every dispatch rule, with two dispatchers wired back to
 * back through an in-memory transport (no sockets, threads or clock).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dispatch/dispatch.h"
#include "dispatch/envelope.h"
#include "dispatch/mpcheck.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/pool.h"

#define PEER_A 11 /* how B names A */
#define PEER_B 22 /* how A names B */
#define QMAX   4096

/* The wire: blobs in flight to each side. */
typedef struct {
    wb_event_t *q[QMAX];
    int head, tail;
    int refuse; /* transport refuses sends */
} wire_t;

static wire_t to_a, to_b;
static wb_dispatch_t *A, *B;

static int send_to(void *ctx, uint64_t peer, wb_event_t *blob)
{
    wire_t *w = ctx == (void *)1 ? &to_b : &to_a; /* ctx 1: A sending */
    (void)peer;
    if (w->refuse)
        return WB_ECLOSED;
    assert_true(w->tail < QMAX);
    w->q[w->tail++] = blob;
    return 0;
}

/* Deliver everything in flight, both ways, until quiet. */
static int pump(void)
{
    int n = 0;
    while (to_a.head < to_a.tail || to_b.head < to_b.tail) {
        if (to_b.head < to_b.tail) {
            wb_dispatch_input(B, PEER_A, to_b.q[to_b.head++], 0);
            n++;
        }
        if (to_a.head < to_a.tail) {
            wb_dispatch_input(A, PEER_B, to_a.q[to_a.head++], 0);
            n++;
        }
    }
    to_a.head = to_a.tail = to_b.head = to_b.tail = 0;
    return n;
}

static int setup(void **state)
{
    (void)state;
    memset(&to_a, 0, sizeof(to_a));
    memset(&to_b, 0, sizeof(to_b));
    wb_dispatch_config_t ca = {.send = send_to, .ctx = (void *)1};
    wb_dispatch_config_t cb = {.send = send_to, .ctx = (void *)2};
    assert_int_equal(wb_dispatch_new(&A, &ca), 0);
    assert_int_equal(wb_dispatch_new(&B, &cb), 0);
    assert_int_equal(wb_dispatch_peer_add(A, PEER_B, &wb_codec_msgpack, 1), 0);
    assert_int_equal(wb_dispatch_peer_add(B, PEER_A, &wb_codec_msgpack, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pump();
    wb_dispatch_free(A);
    wb_dispatch_free(B);
    wb_codec_msgpack_thread_release();
    assert_int_equal(wb_pool_trim(), 0);
    return 0;
}

/* ---- codec ------------------------------------------------------------------- */

static void test_codec_round_trip(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t len;
    const char body[] = "hello\0world";
    wb_envelope_t in = {7, 123456789012345ull, 5, 0, (const uint8_t *)body, sizeof(body)}, out;
    assert_int_equal(wb_codec_msgpack.encode(&in, buf, sizeof(buf), &len), 0);
    assert_true(len <= wb_codec_msgpack.encoded_max(&in));
    assert_int_equal(wb_codec_msgpack.decode(buf, len, &out), 0);
    assert_int_equal(out.type, 7);
    assert_int_equal(out.id, in.id);
    assert_int_equal(out.reply_to, 5);
    assert_int_equal(out.regards, 0);
    assert_int_equal(out.body_len, sizeof(body));
    assert_memory_equal(out.body, body, sizeof(body));
    assert_ptr_equal(out.body, buf + len - sizeof(body)); /* zero copy */
    /* Every truncation is refused. */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(wb_codec_msgpack.decode(buf, cut, &out), WB_EPROTO);
    /* Too small a buffer, id 0. */
    assert_int_equal(wb_codec_msgpack.encode(&in, buf, 10, &len), WB_ETOOBIG);
    in.id = 0;
    assert_int_equal(wb_codec_msgpack.encode(&in, buf, sizeof(buf), &len), WB_EINVAL);
    /* Known bad shapes. */
    const uint8_t four[] = {0x94, 1, 1, 0xc0, 0xc0};               /* 4 elements */
    const uint8_t strbody[] = {0x95, 1, 1, 0xc0, 0xc0, 0xa1, 'x'}; /* str, not bin */
    const uint8_t zeroid[] = {0x95, 1, 0, 0xc0, 0xc0, 0xc4, 0};    /* id 0 */
    const uint8_t negtype[] = {0x95, 0xff, 1, 0xc0, 0xc0, 0xc4, 0};
    const uint8_t trailing[] = {0x95, 1, 1, 0xc0, 0xc0, 0xc4, 0, 0};
    assert_int_equal(wb_codec_msgpack.decode(four, sizeof(four), &out), WB_EPROTO);
    assert_int_equal(wb_codec_msgpack.decode(strbody, sizeof(strbody), &out), WB_EPROTO);
    assert_int_equal(wb_codec_msgpack.decode(zeroid, sizeof(zeroid), &out), WB_EPROTO);
    assert_int_equal(wb_codec_msgpack.decode(negtype, sizeof(negtype), &out), WB_EPROTO);
    assert_int_equal(wb_codec_msgpack.decode(trailing, sizeof(trailing), &out), WB_EPROTO);
    const uint8_t ok[] = {0x95, 1, 1, 0xc0, 0xc0, 0xc4, 0};
    assert_int_equal(wb_codec_msgpack.decode(ok, sizeof(ok), &out), 0);
}

/* Counts that promise more elements than there are bytes are refused before
 * msgpack-c would allocate for them. */
static void test_mpcheck_bounds(void **state)
{
    (void)state;
    const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    const uint8_t huge_map[] = {0xdf, 0x7f, 0xff, 0xff, 0xff, 0x00};
    const uint8_t nested[] = {0x95, 0x01, 0x01, 0xc0, 0xc0, 0xdc, 0xff, 0xff};
    const uint8_t long_bin[] = {0xc6, 0x00, 0x10, 0x00, 0x00, 'x'};
    const uint8_t unused[] = {0xc1};
    const uint8_t ok[] = {0x93, 0xc4, 0x02, 'h', 'i', 0x82, 0x01, 0x02, 0x03, 0xc0,
                          0xcb, 0,    0,    0,   0,   0,    0,    0,    0};
    assert_int_equal(wb_mpcheck(huge_array, sizeof(huge_array)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(huge_map, sizeof(huge_map)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(nested, sizeof(nested)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(long_bin, sizeof(long_bin)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(unused, sizeof(unused)), WB_EPROTO);
    assert_int_equal(wb_mpcheck(ok, sizeof(ok)), 0);
    assert_int_equal(wb_mpcheck(ok, sizeof(ok) - 1), WB_EPROTO); /* truncated */
    wb_envelope_t env;
    assert_int_equal(wb_codec_msgpack.decode(huge_array, sizeof(huge_array), &env), WB_EPROTO);
    /* An empty body encodes (no NULL memcpy) and decodes. */
    uint8_t buf[64];
    size_t len;
    wb_envelope_t e = {3, 1, 0, 0, NULL, 0};
    assert_int_equal(wb_codec_msgpack.encode(&e, buf, sizeof(buf), &len), 0);
    assert_int_equal(wb_codec_msgpack.decode(buf, len, &env), 0);
    assert_int_equal(env.body_len, 0);
}

/* ---- rule 1 and 2: request/reply ------------------------------------------------ */

typedef struct {
    int calls, status;
    uint64_t reply_to, regards, id;
    char body[64];
    wb_conv_t *conv;
} seen_t;

static void note(seen_t *s, const wb_msg_t *m, int status)
{
    s->calls++;
    s->status = status;
    if (m != NULL) {
        s->reply_to = m->env.reply_to;
        s->regards = m->env.regards;
        s->id = m->env.id;
        s->conv = m->conv;
        size_t n = m->env.body_len < 63 ? m->env.body_len : 63;
        memcpy(s->body, m->env.body, n);
        s->body[n] = 0;
    }
}

static void echo_upper(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    note(arg, m, 0);
    char b[64];
    size_t n = m->env.body_len < 64 ? m->env.body_len : 64;
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(m->env.body[i] >= 'a' && m->env.body[i] <= 'z' ? m->env.body[i] - 32
                                                                     : m->env.body[i]);
    assert_int_equal(wb_dispatch_reply(d, m, 2, b, n), 0);
}

static void on_reply(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg)
{
    (void)d;
    note(arg, m, status);
}

static void test_request_reply(void **state)
{
    (void)state;
    seen_t server = {0}, client = {0};
    uint64_t id;
    assert_int_equal(wb_dispatch_on_type(B, 1, echo_upper, &server), 0);
    assert_int_equal(
        wb_dispatch_request(A, PEER_B, 1, 0, "ping", 4, 0, 1000, on_reply, &client, &id), 0);
    assert_int_equal(id % 2, 1); /* the dialer's ids are odd */
    pump();
    assert_int_equal(server.calls, 1);
    assert_string_equal(server.body, "ping");
    assert_int_equal(client.calls, 1);
    assert_int_equal(client.status, 0);
    assert_int_equal(client.reply_to, id);
    assert_int_equal(client.id % 2, 0); /* the acceptor's ids are even */
    assert_string_equal(client.body, "PING");
    /* One-shot: a second reply to the same id finds nobody. */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 2, id, 0, "again", 5, NULL), 0);
    pump();
    assert_int_equal(client.calls, 1);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(A, &st);
    assert_int_equal(st.by_reply, 1);
    assert_int_equal(st.dropped_unknown, 1);
    /* Nothing pending: no deadline. */
    assert_int_equal(wb_dispatch_tick(A, 5000), UINT64_MAX);
}

static void test_reply_timeout(void **state)
{
    (void)state;
    seen_t client = {0};
    uint64_t id;
    /* Nobody on B handles type 9: no reply will come. */
    assert_int_equal(wb_dispatch_request(A, PEER_B, 9, 0, "x", 1, 100, 50, on_reply, &client, &id),
                     0);
    pump();
    assert_int_equal(wb_dispatch_tick(A, 149), 150);
    assert_int_equal(client.calls, 0);
    assert_int_equal(wb_dispatch_tick(A, 150), UINT64_MAX);
    assert_int_equal(client.calls, 1);
    assert_int_equal(client.status, WB_ETIMEDOUT);
    /* The late reply is dropped, not delivered twice. */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 2, id, 0, "late", 4, NULL), 0);
    pump();
    assert_int_equal(client.calls, 1);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(B, &st);
    assert_int_equal(st.dropped_unknown, 1); /* type 9 had no handler (rule 4) */
}

static void test_unknown_and_malformed(void **state)
{
    (void)state;
    /* Garbage bytes, a wrong-parity id, and a message regarding nothing. */
    wb_event_t *ev = wb_event_new_copy(0, "\xff\x00garbage", 9);
    assert_int_equal(wb_dispatch_input(B, PEER_A, ev, 0), WB_EPROTO);
    uint8_t buf[64];
    size_t len;
    wb_envelope_t env = {1, 2 /* even: B's own parity */, 0, 0, NULL, 0};
    assert_int_equal(wb_codec_msgpack.encode(&env, buf, sizeof(buf), &len), 0);
    assert_int_equal(wb_dispatch_input(B, PEER_A, wb_event_new_copy(0, buf, len), 0), WB_EPROTO);
    assert_int_equal(wb_dispatch_send(A, PEER_B, 1, 0, 999, "?", 1, NULL), 0);
    assert_int_equal(pump(), 1);
    /* A blob from a peer nobody added. */
    assert_int_equal(wb_dispatch_input(B, 777, wb_event_new_copy(0, buf, len), 0), WB_ENOENT);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(B, &st);
    assert_int_equal(st.dropped_malformed, 2);
    assert_int_equal(st.dropped_unknown, 2);
    assert_int_equal(st.received, 4);
}

/* ---- rule 3: conversations ---------------------------------------------------- */

typedef struct {
    int msgs, ended, end_status, credits;
    uint64_t bytes;
    int auto_consume;
    char last[64];
    wb_conv_t *c;
} conv_state_t;

static void cv_msg(wb_conv_t *c, const wb_msg_t *m)
{
    conv_state_t *s = wb_conv_state(c);
    s->msgs++;
    s->bytes += m->env.body_len;
    size_t n = m->env.body_len < 63 ? m->env.body_len : 63;
    memcpy(s->last, m->env.body, n);
    s->last[n] = 0;
    if (s->auto_consume)
        wb_conv_consumed(c, m->env.body_len);
}
static void cv_credit(wb_conv_t *c)
{
    conv_state_t *s = wb_conv_state(c);
    s->credits++;
}
static void cv_end(wb_conv_t *c, int status)
{
    conv_state_t *s = wb_conv_state(c);
    s->ended++;
    s->end_status = status;
    s->c = NULL;
}
static const wb_conv_def_t cv_def = {"test-conv", cv_msg, cv_credit, cv_end};

static conv_state_t server_conv;
static void accept_conv(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    (void)arg;
    assert_int_equal(wb_conv_accept(d, m, &cv_def, &server_conv, &server_conv.c), 0);
}

static void test_conversation_both_ways(void **state)
{
    (void)state;
    conv_state_t cl = {0};
    memset(&server_conv, 0, sizeof(server_conv));
    server_conv.auto_consume = 1;
    cl.auto_consume = 1;
    assert_int_equal(wb_dispatch_on_type(B, 5, accept_conv, NULL), 0);
    assert_int_equal(wb_conv_open(A, PEER_B, 5, "open", 4, &cv_def, &cl, &cl.c), 0);
    pump();
    assert_non_null(server_conv.c);
    /* Both sides key it by the opening id. */
    assert_int_equal(wb_conv_id(server_conv.c), wb_conv_id(cl.c));
    for (int i = 0; i < 10; i++) {
        assert_int_equal(wb_conv_send(cl.c, 6, "up", 2, NULL), 0);
        assert_int_equal(wb_conv_send(server_conv.c, 6, "down", 4, NULL), 0);
    }
    pump();
    assert_int_equal(server_conv.msgs, 10);
    assert_int_equal(cl.msgs, 10);
    assert_string_equal(cl.last, "down");
    /* Rule 3 with both fields: the reply handler runs, and sees the conversation. */
    uint64_t conv_id = wb_conv_id(cl.c);
    seen_t r2 = {0};
    uint64_t qid;
    assert_int_equal(wb_conv_request(cl.c, 7, "q2", 2, 0, 0, on_reply, &r2, &qid), 0);
    pump();
    assert_int_equal(server_conv.msgs, 11); /* the request itself went to the conversation */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 8, qid, conv_id, "a2", 2, NULL), 0);
    pump();
    assert_int_equal(r2.calls, 1);
    assert_ptr_equal(r2.conv, cl.c);
    assert_int_equal(r2.regards, conv_id);
    assert_int_equal(cl.msgs, 10); /* the reply did not go to on_msg */
    /* Either side ends it; the other hears. */
    wb_conv_close(cl.c, 0);
    assert_int_equal(cl.ended, 1);
    pump();
    assert_int_equal(server_conv.ended, 1);
    assert_int_equal(server_conv.end_status, WB_ECLOSED);
    /* Messages regarding the dead conversation are dropped (rule 4). */
    assert_int_equal(wb_dispatch_send(B, PEER_A, 6, 0, conv_id, "late", 4, NULL), 0);
    pump();
    assert_int_equal(cl.msgs, 10);
}

/* ---- rule 6: credit ------------------------------------------------------------------- */

static void test_credit_flow(void **state)
{
    (void)state;
    conv_state_t cl = {0};
    memset(&server_conv, 0, sizeof(server_conv));
    server_conv.auto_consume = 0; /* the receiver is slow: it consumes by hand */
    assert_int_equal(wb_dispatch_on_type(B, 5, accept_conv, NULL), 0);
    assert_int_equal(wb_conv_open(A, PEER_B, 5, NULL, 0, &cv_def, &cl, &cl.c), 0);
    pump(); /* the acceptor's initial grant arrives */
    const size_t window = 256 * 1024, chunk = 1000;
    char buf[1000];
    memset(buf, 'x', sizeof(buf));
    int sent = 0, rc;
    while ((rc = wb_conv_send(cl.c, 6, buf, chunk, NULL)) == 0) {
        sent++;
        assert_true(sent < 10000);
    }
    assert_int_equal(rc, WB_EAGAIN);
    pump();
    /* The sender got as far as the window (plus at most one message) and no further. */
    assert_true((size_t)sent * chunk >= window);
    assert_true((size_t)sent * chunk < window + chunk);
    assert_int_equal(server_conv.msgs, sent); /* nothing was dropped */
    assert_int_equal(cl.credits, 0);
    /* The receiver consumes a quarter: not enough for a grant yet. */
    wb_conv_consumed(server_conv.c, window / 4);
    pump();
    assert_int_equal(cl.credits, 0);
    assert_int_equal(wb_conv_send(cl.c, 6, buf, chunk, NULL), WB_EAGAIN);
    /* Half: credit flows back and the held sender is told. */
    wb_conv_consumed(server_conv.c, window / 4);
    pump();
    assert_int_equal(cl.credits, 1);
    assert_true(wb_conv_credit(cl.c) > 0);
    assert_int_equal(wb_conv_send(cl.c, 6, buf, chunk, NULL), 0);
    pump();
    assert_int_equal(server_conv.msgs, sent + 1);
    wb_conv_close(cl.c, 0); /* cl lives on this stack */
    pump();
    assert_int_equal(server_conv.ended, 1);
}

/* ---- rule 5: rows ------------------------------------------------------------------- */

typedef struct {
    int calls;
    int64_t rowid;
    uint64_t msg_id;
    char body[16];
} row_seen_t;

static void on_row(wb_dispatch_t *d, const wb_msg_t *m, int64_t rowid, void *arg)
{
    row_seen_t *r = arg;
    (void)d;
    r->calls++;
    r->rowid = rowid;
    r->msg_id = m->env.id;
    size_t n = m->env.body_len < 15 ? m->env.body_len : 15;
    memcpy(r->body, m->env.body, n);
    r->body[n] = 0;
}

static void test_row_handlers(void **state)
{
    (void)state;
    row_seen_t r = {0};
    conv_state_t cl = {0};
    memset(&server_conv, 0, sizeof(server_conv));
    assert_int_equal(wb_dispatch_on_row(B, 20, on_row, &r), 0);
    assert_int_equal(wb_dispatch_on_type(B, 5, accept_conv, NULL), 0);
    /* Regarding row 12345: the row handler, keyed by the rowid. */
    uint64_t id;
    assert_int_equal(wb_dispatch_send(A, PEER_B, 20, 0, 12345, "next", 4, &id), 0);
    pump();
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rowid, 12345);
    assert_int_equal(r.msg_id, id);
    assert_string_equal(r.body, "next");
    /* The type decides: even regarding a live conversation's id, a row
     * type goes to its row handler; other types still reach the
     * conversation. */
    assert_int_equal(wb_conv_open(A, PEER_B, 5, NULL, 0, &cv_def, &cl, &cl.c), 0);
    pump();
    assert_int_equal(wb_conv_send(cl.c, 20, "conv", 4, NULL), 0);
    assert_int_equal(wb_conv_send(cl.c, 6, "conv", 4, NULL), 0);
    pump();
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.rowid, (int64_t)wb_conv_id(cl.c));
    assert_int_equal(server_conv.msgs, 1);
    /* Another type regarding a row nobody serves: dropped (rule 4). */
    assert_int_equal(wb_dispatch_send(A, PEER_B, 21, 0, 777, "x", 1, NULL), 0);
    pump();
    assert_int_equal(r.calls, 2);
    wb_dispatch_stats_t st;
    wb_dispatch_stats(B, &st);
    assert_int_equal(st.by_row, 2);
    assert_int_equal(st.dropped_unknown, 1);
    /* Removed: dropped too. */
    assert_int_equal(wb_dispatch_on_row(B, 20, NULL, NULL), 0);
    assert_int_equal(wb_dispatch_send(A, PEER_B, 20, 0, 12345, "y", 1, NULL), 0);
    pump();
    assert_int_equal(r.calls, 2);
    wb_conv_close(cl.c, 0);
}

/* ---- the routing trace ------------------------------------------------------------- */

static void noop_type(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    (void)d;
    (void)m;
    (void)arg;
}

static void test_trace(void **state)
{
    (void)state;
    wb_dispatch_t *t;
    wb_dispatch_config_t cfg = {.send = send_to, .ctx = (void *)2, .trace = 1};
    assert_int_equal(wb_dispatch_new(&t, &cfg), 0);
    assert_int_equal(wb_dispatch_peer_add(t, 5, &wb_codec_msgpack, 0), 0);
    assert_int_equal(wb_dispatch_on_type(t, 3, noop_type, NULL), 0);
    uint8_t buf[64];
    size_t len;
    wb_envelope_t env = {3, 7, 0, 0, (const uint8_t *)"x", 1};
    assert_int_equal(wb_codec_msgpack.encode(&env, buf, sizeof(buf), &len), 0);
    /* Catch what the log writes to stderr. */
    int p[2], saved = dup(2);
    int level = wb_log_level();
    assert_int_equal(pipe(p), 0);
    dup2(p[1], 2);
    wb_log_set_level(WB_LOG_INFO);
    wb_dispatch_input(t, 5, wb_event_new_copy(0, buf, len), 1500);
    env.type = 4; /* nobody's */
    env.id = 9;
    env.regards = 77;
    assert_int_equal(wb_codec_msgpack.encode(&env, buf, sizeof(buf), &len), 0);
    wb_dispatch_input(t, 5, wb_event_new_copy(0, buf, len), 0);
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    wb_log_set_level(level);
    char out[2048];
    ssize_t n = read(p[0], out, sizeof(out) - 1);
    close(p[0]);
    assert_true(n > 0);
    out[n] = 0;
    assert_non_null(strstr(out, "trace: peer=5 type=3 id=7 reply_to=0 regards=0 handler=type"
                                " queued_us=1.5"));
    assert_non_null(strstr(out, "peer=5 type=4 id=9 reply_to=0 regards=77 handler=dropped"));
    /* Off by default: nothing when trace is 0. */
    wb_dispatch_free(t);
}

/* ---- peers leaving ------------------------------------------------------------------- */

static void test_peer_removed(void **state)
{
    (void)state;
    seen_t r = {0};
    conv_state_t cl = {0};
    memset(&server_conv, 0, sizeof(server_conv));
    assert_int_equal(wb_dispatch_on_type(B, 5, accept_conv, NULL), 0);
    assert_int_equal(wb_dispatch_request(A, PEER_B, 9, 0, "x", 1, 0, 0, on_reply, &r, NULL), 0);
    assert_int_equal(wb_conv_open(A, PEER_B, 5, NULL, 0, &cv_def, &cl, &cl.c), 0);
    pump();
    wb_dispatch_peer_remove(A, PEER_B, WB_EIO);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, WB_EIO);
    assert_int_equal(cl.ended, 1);
    assert_int_equal(cl.end_status, WB_EIO);
    assert_int_equal(wb_dispatch_send(A, PEER_B, 1, 0, 0, "", 0, NULL), WB_ENOENT);
    /* A refusing transport: the send fails and nothing is registered. */
    to_a.refuse = 1;
    assert_int_equal(wb_dispatch_request(B, PEER_A, 9, 0, "x", 1, 0, 10, on_reply, &r, NULL),
                     WB_ECLOSED);
    assert_int_equal(wb_dispatch_tick(B, 100), UINT64_MAX);
    to_a.refuse = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_mpcheck_bounds),
        cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conversation_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credit_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_handlers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_removed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
