/*
 * test_transit.c - the transit protocol (apps/wormhole/transit_proto.h)
 * against the Python client's values (../shared/vectors/transit.json), and
 * the transit actor (transit.h): two of them in one runtime over loopback,
 * direct and through an in-process `waybill transit-relay`.
 */
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "apps/relay/server.h"
#include "apps/wormhole/transit.h"
#include "apps/wormhole/transit_proto.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"

#ifndef WB_VECTORS_DIR
#error "WB_VECTORS_DIR must name the shared vectors folder (tests/unit/CMakeLists.txt)"
#endif

static json_t *vectors(void)
{
    json_error_t e;
    json_t *j = json_load_file(WB_VECTORS_DIR "/transit.json", 0, &e);
    if (j == NULL)
        fail_msg("cannot read %s/transit.json: %s", WB_VECTORS_DIR, e.text);
    return j;
}

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = strlen(h) / 2;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    assert_non_null(s);
    return s;
}

/* ---- lines and keys ---- */

static void test_lines_match_python(void **state)
{
    json_t *v = vectors();
    uint8_t tkey[32];
    unhex(str(v, "transit_key_hex"), tkey, sizeof(tkey));
    json_t *sides = json_object_get(v, "relay_sides");
    wb_transit_keys_t s, r;
    wb_transit_keys_init(&s, tkey, 1, str(sides, "sender"));
    wb_transit_keys_init(&r, tkey, 0, str(sides, "receiver"));
    assert_string_equal(s.our_line, str(v, "sender_handshake_utf8"));
    assert_string_equal(s.peer_line, str(v, "receiver_handshake_utf8"));
    assert_string_equal(r.our_line, str(v, "receiver_handshake_utf8"));
    assert_int_equal(strlen(s.our_line), WB_TRANSIT_SENDER_LINE_LEN);
    assert_int_equal(strlen(r.our_line), WB_TRANSIT_RECEIVER_LINE_LEN);
    assert_string_equal(s.relay_line, str(v, "relay_handshake_sender_utf8"));
    assert_string_equal(r.relay_line, str(v, "relay_handshake_receiver_utf8"));
    assert_int_equal(strlen(s.relay_line), WB_TRANSIT_RELAY_LINE_LEN);
    uint8_t k[32];
    unhex(str(v, "record_key_sender_to_receiver_hex"), k, sizeof(k));
    assert_memory_equal(s.send_key, k, 32);
    assert_memory_equal(r.recv_key, k, 32);
    unhex(str(v, "record_key_receiver_to_sender_hex"), k, sizeof(k));
    assert_memory_equal(s.recv_key, k, 32);
    assert_memory_equal(r.send_key, k, 32);
    json_decref(v);
}

/* ---- records ---- */

typedef struct {
    uint8_t out[1 << 16];
    size_t len;
    int owned;
} collect_t;

static void collect(void *user, uint8_t *owned, size_t off, size_t len)
{
    collect_t *c = user;
    assert_true(c->len + len <= sizeof(c->out));
    memcpy(c->out + c->len, owned + off, len);
    free(owned);
    c->owned++;
    c->len += len;
}

/* In-buffer pieces are copied by the caller after the feed (they sit at
 * buf[0..end)); this wrapper does that for the tests. */
typedef struct {
    collect_t *c;
    uint8_t *buf;
    size_t start, end;
} feedw_t;

static void collect_w(void *user, uint8_t *owned, size_t off, size_t len)
{
    feedw_t *w = user;
    if (owned != NULL) {
        collect(w->c, owned, off, len);
        return;
    }
    assert_int_equal(off, w->end); /* pieces are contiguous from 0 */
    assert_true(w->c->len + len <= sizeof(w->c->out));
    memcpy(w->c->out + w->c->len, w->buf + off, len);
    w->c->len += len;
    w->end = off + len;
}

static int feed_into; /* nonzero: wb_transit_open_feed_to a separate buffer */

static int feed(wb_transit_opener_t *o, collect_t *c, uint8_t *buf, size_t len, char *err,
                size_t errlen)
{
    if (!feed_into) {
        feedw_t w = {c, buf, 0, 0};
        return wb_transit_open_feed(o, buf, len, collect_w, &w, err, errlen);
    }
    uint8_t *out = malloc(len ? len : 1), *keep = malloc(len ? len : 1);
    memcpy(keep, buf, len);
    feedw_t w = {c, out, 0, 0};
    int rc = wb_transit_open_feed_to(o, buf, len, out, collect_w, &w, err, errlen);
    assert_memory_equal(keep, buf, len); /* the input is left alone */
    free(out);
    free(keep);
    return rc;
}

static void test_records_match_python(void **state)
{
    json_t *v = vectors();
    uint8_t tkey[32];
    unhex(str(v, "transit_key_hex"), tkey, sizeof(tkey));
    wb_transit_keys_t s, r;
    wb_transit_keys_init(&s, tkey, 1, "0123456789abcdef");
    wb_transit_keys_init(&r, tkey, 0, "fedcba9876543210");
    wb_transit_sealer_t ss, rs;
    wb_transit_sealer_init(&ss, s.send_key);
    wb_transit_sealer_init(&rs, r.send_key);
    wb_transit_opener_t so, ro;
    wb_transit_opener_init(&so, s.recv_key, 0);
    wb_transit_opener_init(&ro, r.recv_key, 0);
    size_t i;
    json_t *rec;
    json_array_foreach(json_object_get(v, "records"), i, rec)
    {
        int to_receiver = strcmp(str(rec, "direction"), "sender->receiver") == 0;
        uint8_t pt[512], frame[600], out[600];
        size_t ptlen = unhex(str(rec, "plaintext_hex"), pt, sizeof(pt));
        size_t flen = unhex(str(rec, "frame_hex"), frame, sizeof(frame));
        size_t n = wb_transit_seal(to_receiver ? &ss : &rs, pt, ptlen, out);
        assert_int_equal(n, flen);
        assert_memory_equal(out, frame, flen);
        collect_t *c = calloc(1, sizeof(*c));
        char err[200];
        assert_int_equal(feed(to_receiver ? &ro : &so, c, frame, flen, err, sizeof(err)), 0);
        assert_int_equal(c->len, ptlen);
        assert_memory_equal(c->out, pt, ptlen);
        free(c);
    }
    wb_transit_opener_fini(&so);
    wb_transit_opener_fini(&ro);
    json_decref(v);
}

/* Many records of random sizes, fed in random pieces: the same bytes come
 * out, records spanning pieces included. */
static void test_records_any_split(void **state)
{
    uint8_t key[32];
    randombytes_buf(key, sizeof(key));
    wb_transit_sealer_t s;
    wb_transit_sealer_init(&s, key);
    static uint8_t pt[40000], wire[60000];
    randombytes_buf(pt, sizeof(pt));
    size_t wl = 0, off = 0;
    uint32_t seed = 7;
    while (off < sizeof(pt)) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % 3000;
        if (n > sizeof(pt) - off)
            n = sizeof(pt) - off;
        wl += wb_transit_seal(&s, pt + off, n, wire + wl);
        off += n;
    }
    for (int round = 0; round < 50; round++) {
        feed_into = round % 2;
        wb_transit_opener_t o;
        wb_transit_opener_init(&o, key, 0);
        collect_t *c = calloc(1, sizeof(*c));
        static uint8_t copy[60000];
        memcpy(copy, wire, wl);
        size_t pos = 0;
        char err[200];
        while (pos < wl) {
            seed = seed * 1103515245u + 12345u;
            size_t n = 1 + (seed >> 8) % (round < 25 ? 50 : 5000);
            if (n > wl - pos)
                n = wl - pos;
            assert_int_equal(feed(&o, c, copy + pos, n, err, sizeof(err)), 0);
            pos += n;
        }
        assert_false(wb_transit_opener_partial(&o));
        assert_int_equal(c->len, sizeof(pt));
        assert_memory_equal(c->out, pt, sizeof(pt));
        free(c);
        wb_transit_opener_fini(&o);
    }
    feed_into = 0;
}

static void test_records_refused(void **state)
{
    uint8_t key[32], other[32];
    randombytes_buf(key, sizeof(key));
    randombytes_buf(other, sizeof(other));
    wb_transit_sealer_t s;
    wb_transit_sealer_init(&s, key);
    uint8_t a[100], b[100], pt[20] = "hello";
    size_t al = wb_transit_seal(&s, pt, sizeof(pt), a);
    size_t bl = wb_transit_seal(&s, pt, sizeof(pt), b);
    char err[200];
    collect_t *c = calloc(1, sizeof(*c));
    wb_transit_opener_t o;
    /* out of order: record 1 first */
    wb_transit_opener_init(&o, key, 0);
    assert_int_equal(feed(&o, c, b, bl, err, sizeof(err)), WB_EPROTO);
    assert_non_null(strstr(err, "out-of-order"));
    wb_transit_opener_fini(&o);
    /* a flipped bit */
    wb_transit_opener_init(&o, key, 0);
    uint8_t x[100];
    memcpy(x, a, al);
    x[al - 1] ^= 1;
    assert_int_equal(feed(&o, c, x, al, err, sizeof(err)), WB_ECORRUPT);
    wb_transit_opener_fini(&o);
    /* another key */
    wb_transit_opener_init(&o, other, 0);
    memcpy(x, a, al);
    assert_int_equal(feed(&o, c, x, al, err, sizeof(err)), WB_ECORRUPT);
    wb_transit_opener_fini(&o);
    /* a length above the bound, and one below 40 */
    wb_transit_opener_init(&o, key, 1000);
    uint8_t big[4] = {0, 0, 0x04, 0x11}; /* 1041 > 1000 + 40 */
    assert_int_equal(feed(&o, c, big, 4, err, sizeof(err)), WB_ETOOBIG);
    wb_transit_opener_fini(&o);
    wb_transit_opener_init(&o, key, 1000);
    uint8_t big_ok[4] = {0, 0, 0x04, 0x10}; /* exactly 1000 + 40: waits for more */
    assert_int_equal(feed(&o, c, big_ok, 4, err, sizeof(err)), 0);
    assert_true(wb_transit_opener_partial(&o));
    wb_transit_opener_fini(&o);
    wb_transit_opener_init(&o, key, 0);
    uint8_t small[4] = {0, 0, 0, 39};
    assert_int_equal(feed(&o, c, small, 4, err, sizeof(err)), WB_EPROTO);
    wb_transit_opener_fini(&o);
    /* the right one still opens */
    wb_transit_opener_init(&o, key, 0);
    assert_int_equal(feed(&o, c, a, al, err, sizeof(err)), 0);
    assert_int_equal(c->len, sizeof(pt));
    wb_transit_opener_fini(&o);
    free(c);
}

/* ---- handshake ---- */

static wb_transit_hs_result_t feed_hs(wb_transit_hs_t *h, const char *s, size_t *used)
{
    char err[200];
    return wb_transit_hs_feed(h, (const uint8_t *)s, strlen(s), used, err, sizeof(err));
}

static void test_handshake(void **state)
{
    uint8_t tkey[32];
    randombytes_buf(tkey, sizeof(tkey));
    wb_transit_keys_t s, r;
    wb_transit_keys_init(&s, tkey, 1, "0123456789abcdef");
    wb_transit_keys_init(&r, tkey, 0, "fedcba9876543210");
    wb_transit_hs_t hs, hr;
    size_t used, l;
    /* direct: both write their line first */
    wb_transit_hs_init(&hs, &s, 0);
    wb_transit_hs_init(&hr, &r, 0);
    assert_string_equal(wb_transit_hs_first(&hs, &l), s.our_line);
    /* byte by byte */
    for (size_t i = 0; i + 1 < strlen(r.our_line); i++) {
        char ch[2] = {r.our_line[i], 0};
        assert_int_equal(feed_hs(&hs, ch, &used), WB_TRANSIT_HS_NEED_MORE);
        assert_int_equal(used, 1);
    }
    assert_int_equal(feed_hs(&hs, "\n", &used), WB_TRANSIT_HS_PEER_OK);
    /* the receiver: sender line and go in one piece, records after */
    char buf[300];
    snprintf(buf, sizeof(buf), "%sgo\nXYZ", s.our_line);
    assert_int_equal(feed_hs(&hr, buf, &used), WB_TRANSIT_HS_GO);
    assert_int_equal(used, strlen(s.our_line) + 3);
    /* nevermind */
    wb_transit_hs_init(&hr, &r, 0);
    snprintf(buf, sizeof(buf), "%snevermind\n", s.our_line);
    char err[200];
    assert_int_equal(
        wb_transit_hs_feed(&hr, (const uint8_t *)buf, strlen(buf), &used, err, sizeof(err)),
        WB_TRANSIT_HS_BAD);
    assert_non_null(strstr(err, "another connection"));
    /* a wrong line is refused at its first wrong byte */
    wb_transit_hs_init(&hs, &s, 0);
    assert_int_equal(feed_hs(&hs, "transit receiver 00", &used), WB_TRANSIT_HS_BAD);
    /* relay: our relay line first, then ok, then the lines */
    wb_transit_hs_init(&hs, &s, 1);
    assert_string_equal(wb_transit_hs_first(&hs, &l), s.relay_line);
    snprintf(buf, sizeof(buf), "ok\n%s", r.our_line);
    assert_int_equal(feed_hs(&hs, buf, &used), WB_TRANSIT_HS_RELAY_OK);
    assert_int_equal(used, 3);
    assert_string_equal(wb_transit_hs_first(&hs, &l), s.our_line);
    assert_int_equal(feed_hs(&hs, buf + 3, &used), WB_TRANSIT_HS_PEER_OK);
    /* a sender gets nothing after the receiver's line */
    assert_int_equal(feed_hs(&hs, "x", &used), WB_TRANSIT_HS_BAD);
    /* the relay saying something else */
    wb_transit_hs_init(&hs, &s, 1);
    assert_int_equal(feed_hs(&hs, "bad handshake\n", &used), WB_TRANSIT_HS_BAD);
}

/* ---- hints ---- */

static void test_hints(void **state)
{
    const char *go = "{\"abilities-v1\":[{\"type\":\"direct-tcp-v1\"},{\"type\":\"relay-v1\"}],"
                     "\"hints-v1\":[{\"type\":\"direct-tcp-v1\",\"priority\":0,\"hostname\":"
                     "\"192.0.2.2\",\"port\":40123},{\"type\":\"tor-tcp-v1\",\"hostname\":"
                     "\"x.onion\",\"port\":80},{\"type\":\"unknown\"},{\"type\":\"direct-tcp-v1\","
                     "\"hostname\":7,\"port\":1},{\"type\":\"direct-tcp-v1\",\"hostname\":\"h\","
                     "\"port\":70000},{\"type\":\"relay-v1\",\"hostname\":\"\",\"port\":0,"
                     "\"priority\":0,\"hints\":[{\"type\":\"direct-tcp-v1\",\"priority\":2,"
                     "\"hostname\":\"transit.magic-wormhole.io\",\"port\":4001}]}]}";
    json_t *o = json_loads(go, 0, NULL);
    wb_transit_hints_t h;
    char err[200];
    assert_int_equal(wb_transit_hints_parse(o, &h, err, sizeof(err)), 0);
    json_decref(o);
    assert_int_equal(h.ndirect, 1);
    assert_string_equal(h.direct[0].host, "192.0.2.2");
    assert_int_equal(h.direct[0].port, 40123);
    assert_int_equal(h.nrelays, 1);
    assert_string_equal(h.relays[0].ways[0].host, "transit.magic-wormhole.io");
    assert_true(h.relays[0].priority == 2.0);
    /* round trip through our own message */
    json_t *j = wb_transit_hints_json(&h);
    wb_transit_hints_t h2;
    assert_int_equal(wb_transit_hints_parse(j, &h2, err, sizeof(err)), 0);
    json_decref(j);
    assert_int_equal(h2.ndirect, 1);
    assert_int_equal(h2.nrelays, 1);
    assert_int_equal(h2.relays[0].ways[0].port, 4001);
    /* refused shapes */
    o = json_loads("[1]", 0, NULL);
    assert_int_equal(wb_transit_hints_parse(o, &h, err, sizeof(err)), WB_EPROTO);
    json_decref(o);
    o = json_loads("{\"hints-v1\":{}}", 0, NULL);
    assert_int_equal(wb_transit_hints_parse(o, &h, err, sizeof(err)), WB_EPROTO);
    json_decref(o);
    /* --transit-helper */
    wb_transit_relay_t r;
    assert_int_equal(wb_transit_parse_helper("tcp:relay.example:4001", &r, err, sizeof(err)), 0);
    assert_string_equal(r.ways[0].host, "relay.example");
    assert_int_equal(r.ways[0].port, 4001);
    assert_int_equal(wb_transit_parse_helper("tcp:[::1]:4001:priority=2.5", &r, err, sizeof(err)),
                     0);
    assert_string_equal(r.ways[0].host, "::1");
    assert_true(r.priority == 2.5);
    assert_int_equal(wb_transit_parse_helper("relay:4001", &r, err, sizeof(err)), WB_EINVAL);
    assert_int_equal(wb_transit_parse_helper("tcp:host", &r, err, sizeof(err)), WB_EINVAL);
    assert_int_equal(wb_transit_parse_helper("tcp:host:0", &r, err, sizeof(err)), WB_EINVAL);
    assert_int_equal(wb_transit_parse_helper("tcp:host:1:x=1", &r, err, sizeof(err)), WB_EINVAL);
}

/* ---- the actor: two transits in one runtime ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wb_rt_t *rt;
    uint64_t id, peer_id;
    char *hints;
    char via[16];
    int connected, closed, status;
    char why[1300];
    uint8_t *got;
    size_t got_len, got_cap;
    crypto_hash_sha256_state h;
} side_t;

static void on_ev(uint64_t id, wb_transit_event_t *ev, void *user)
{
    side_t *s = user;
    pthread_mutex_lock(&s->mu);
    switch (ev->type) {
    case WB_TRANSIT_EV_HINTS:
        s->hints = strdup(ev->text);
        break;
    case WB_TRANSIT_EV_CONNECTED:
        s->connected = 1;
        snprintf(s->via, sizeof(s->via), "%s", ev->text);
        break;
    case WB_TRANSIT_EV_DATA:
        crypto_hash_sha256_update(&s->h, (const uint8_t *)ev->blob->data + ev->off, ev->len);
        s->got_len += ev->len;
        wb_transit_consumed(s->rt, id, ev->len);
        break;
    case WB_TRANSIT_EV_SENT:
        break;
    case WB_TRANSIT_EV_CLOSED:
        s->closed = 1;
        s->status = ev->status;
        snprintf(s->why, sizeof(s->why), "%s", ev->text ? ev->text : "");
        break;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int wait_for(side_t *s, int *flag, int secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += secs;
    pthread_mutex_lock(&s->mu);
    while (!*flag)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0)
            break;
    int ok = *flag;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static char *wait_hints(side_t *s)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&s->mu);
        char *h = s->hints;
        pthread_mutex_unlock(&s->mu);
        if (h != NULL)
            return h;
        struct timespec d = {0, 10 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    fail_msg("no hints");
    return NULL;
}

static void side_init(side_t *s, wb_rt_t *rt)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->rt = rt;
    crypto_hash_sha256_init(&s->h);
}

static void side_fini(side_t *s)
{
    free(s->hints);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

/* Run one transfer of n bytes from sender to receiver; relay_port != 0:
 * both --no-listen with that relay. */
static void transfer(size_t n, uint16_t relay_port, const char *expect_via)
{
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    side_t snd, rcv;
    side_init(&snd, rt);
    side_init(&rcv, rt);
    uint8_t tkey[32];
    randombytes_buf(tkey, sizeof(tkey));
    static const char *const lo[] = {"127.0.0.1"};
    wb_transit_relay_t relay;
    char err[200], hs[64];
    snprintf(hs, sizeof(hs), "tcp:127.0.0.1:%u", relay_port);
    if (relay_port != 0)
        assert_int_equal(wb_transit_parse_helper(hs, &relay, err, sizeof(err)), 0);
    wb_transit_config_t c;
    for (int i = 0; i < 2; i++) {
        side_t *s = i == 0 ? &snd : &rcv;
        wb_transit_config_init(&c);
        c.sender = i == 0;
        memcpy(c.key, tkey, 32);
        c.no_listen = relay_port != 0;
        c.listen_host = "127.0.0.1";
        c.advertise = lo;
        c.nadvertise = 1;
        c.relays = relay_port != 0 ? &relay : NULL;
        c.nrelays = relay_port != 0;
        c.relay_delay_ms = 100;
        c.connect_timeout_ms = 10000;
        c.on_event = on_ev;
        c.user = s;
        assert_int_equal(wb_transit_open(rt, &c, &s->id), 0);
    }
    char *sh = wait_hints(&snd), *rh = wait_hints(&rcv);
    assert_int_equal(wb_transit_connect(rt, snd.id, rh), 0);
    assert_int_equal(wb_transit_connect(rt, rcv.id, sh), 0);
    assert_true(wait_for(&snd, &snd.connected, 10));
    assert_true(wait_for(&rcv, &rcv.connected, 10));
    assert_string_equal(snd.via, expect_via);
    assert_string_equal(rcv.via, expect_via);
    /* n pseudo-random bytes in chunks of up to 1 MiB */
    crypto_hash_sha256_state want;
    crypto_hash_sha256_init(&want);
    uint64_t ctr = 0;
    for (size_t off = 0; off < n;) {
        size_t len = n - off < (1u << 20) ? n - off : (1u << 20) - (off % 977);
        wb_event_t *e = wb_event_new(WB_EV_USER, len);
        assert_non_null(e);
        uint8_t nonce[8] = {0};
        memcpy(nonce, &ctr, sizeof(ctr));
        ctr++;
        crypto_stream_chacha20((uint8_t *)e->data, len, nonce, tkey);
        crypto_hash_sha256_update(&want, e->data, len);
        assert_int_equal(wb_transit_send(rt, snd.id, e), 0);
        off += len;
    }
    /* wait for all of it */
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(&rcv.mu);
        size_t got = rcv.got_len;
        int closed = rcv.closed;
        pthread_mutex_unlock(&rcv.mu);
        if (got >= n || closed)
            break;
        struct timespec d = {0, 10 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    assert_int_equal(rcv.got_len, n);
    uint8_t a[32], b[32];
    crypto_hash_sha256_final(&want, a);
    crypto_hash_sha256_final(&rcv.h, b);
    assert_memory_equal(a, b, 32);
    /* the receiver's ack goes back as a record; then both close */
    wb_event_t *ack = wb_event_new_copy(WB_EV_USER, "{\"ack\":\"ok\"}", 12);
    assert_int_equal(wb_transit_send(rt, rcv.id, ack), 0);
    assert_int_equal(wb_transit_close(rt, rcv.id), 0);
    assert_true(wait_for(&rcv, &rcv.closed, 10));
    assert_int_equal(rcv.status, 0);
    assert_true(wait_for(&snd, &snd.closed, 10)); /* the peer closed */
    assert_int_equal(snd.got_len, 12);
    assert_int_equal(snd.status, WB_ECLOSED);
    wb_rt_stop(rt);
    wb_rt_free(rt);
    side_fini(&snd);
    side_fini(&rcv);
}

static void test_actor_direct(void **state)
{
    transfer(5u << 20, 0, "direct");
    transfer(0, 0, "direct");
}

static void relay_listening(int status, uint16_t port, void *user)
{
    atomic_store((_Atomic uint16_t *)user, port);
}

static void test_actor_relay(void **state)
{
    tr_server_config_t rc;
    tr_server_config_init(&rc);
    rc.host = "127.0.0.1";
    rc.port = 0;
    _Atomic uint16_t port = 0;
    rc.on_listening = relay_listening;
    rc.user = (void *)&port;
    wb_rt_config_t rtc;
    wb_rt_config_init(&rtc);
    tr_server_rt_config(&rtc, &rc);
    wb_rt_t *relay;
    assert_int_equal(wb_rt_new(&relay, &rtc), 0);
    assert_int_equal(tr_server_setup(relay, &rc), 0);
    assert_int_equal(wb_rt_start(relay), 0);
    for (int i = 0; i < 500 && atomic_load(&port) == 0; i++) {
        struct timespec d = {0, 10 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    assert_int_not_equal(atomic_load(&port), 0);
    transfer(3u << 20, atomic_load(&port), "relay");
    wb_rt_stop(relay);
    wb_rt_free(relay);
}

/* Nothing to connect to: the race ends with a reason, not a hang. */
static void test_actor_nothing_answers(void **state)
{
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    side_t s;
    side_init(&s, rt);
    wb_transit_config_t c;
    wb_transit_config_init(&c);
    c.sender = 1;
    c.no_listen = 1;
    c.on_event = on_ev;
    c.user = &s;
    assert_int_equal(wb_transit_open(rt, &c, &s.id), 0);
    wait_hints(&s);
    /* port 9 on loopback: refused at once */
    assert_int_equal(wb_transit_connect(rt, s.id,
                                        "{\"hints-v1\":[{\"type\":\"direct-tcp-v1\",\"hostname\":"
                                        "\"127.0.0.1\",\"port\":9}]}"),
                     0);
    assert_true(wait_for(&s, &s.closed, 10));
    assert_int_equal(s.status, WB_EIO);
    assert_non_null(strstr(s.why, "127.0.0.1:9"));
    wb_rt_stop(rt);
    wb_rt_free(rt);
    side_fini(&s);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_match_python),
        cmocka_unit_test(test_records_match_python),
        cmocka_unit_test(test_records_any_split),
        cmocka_unit_test(test_records_refused),
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_hints),
        cmocka_unit_test(test_actor_direct),
        cmocka_unit_test(test_actor_relay),
        cmocka_unit_test(test_actor_nothing_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
