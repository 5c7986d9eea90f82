/*
 * test_secret.c - the secret connection (sockets/secret.h): the key
 * schedule, hellos, auth frames and data frames byte for byte against an
 * independent Python implementation (data/secret_vectors.json, from
 * gen_secret_vectors.py); HKDF against RFC 5869; two sessions talking in
 * random pieces both ways at once; a man in the middle, small-order and
 * reflected ephemeral keys, a bad magic, the wrong identity, every flipped
 * byte, replayed, reordered and dropped frames, bad lengths refused before
 * anything is allocated, sticky errors and the counter's end.
 */
#include <jansson.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/error.h"
#include "sockets/hkdf.h"
#include "sockets/secret.h"

#ifndef WB_TESTDATA_DIR
#error "WB_TESTDATA_DIR must name tests/unit/data (tests/unit/CMakeLists.txt)"
#endif

/* ---- helpers ---- */

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = strlen(h) / 2;
    assert_true(n <= cap);
    assert_int_equal(sodium_hex2bin(out, cap, h, strlen(h), NULL, &n, NULL), 0);
    return n;
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (s == NULL)
        fail_msg("vector field %s missing", k);
    return s;
}

static void hexfield(json_t *o, const char *k, uint8_t *out, size_t want)
{
    assert_int_equal(unhex(str(o, k), out, want), want);
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static uint64_t rng(uint64_t *s)
{
    /* splitmix64: seeded, so a failure names its seed and reproduces */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rnd(uint64_t *s, size_t n) /* 0..n-1 */
{
    return n == 0 ? 0 : (size_t)(rng(s) % n);
}

/* The test's own frame sealer, from the header's layout (not secret.c's). */
static size_t seal_ref(const uint8_t key[32], uint64_t ctr, const uint8_t *plain, uint32_t len,
                       uint8_t *out)
{
    uint8_t nonce[12] = {0};
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(ctr >> (8 * i));
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    unsigned long long clen;
    crypto_aead_chacha20poly1305_ietf_encrypt(out + 4, &clen, plain, len, out, 4, NULL, nonce, key);
    return 4 + (size_t)clen;
}

static int open_ref(const uint8_t key[32], uint64_t ctr, const uint8_t *wire, size_t len,
                    uint8_t *plain)
{
    uint8_t nonce[12] = {0};
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(ctr >> (8 * i));
    return crypto_aead_chacha20poly1305_ietf_decrypt(plain, NULL, NULL, wire + 4, len - 4, wire, 4,
                                                     nonce, key);
}

typedef struct {
    uint8_t pk[WB_SC_KEY_LEN], sk[WB_SC_ID_SECRET_LEN];
} ident_t;

static ident_t ident(uint8_t seed_byte)
{
    ident_t id;
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof(seed));
    crypto_sign_ed25519_seed_keypair(id.pk, id.sk, seed);
    return id;
}

/* Feed all of in to a handshake (one call). */
static int hs(wb_sc_t *sc, const uint8_t *in, size_t len, size_t *used, uint8_t *auth, size_t *alen)
{
    return wb_sc_handshake(sc, in, len, used, auth, alen);
}

/* Two established sessions a (identity 1, dialer expecting 2) and b. */
static void pair(wb_sc_t *a, wb_sc_t *b)
{
    ident_t ia = ident(1), ib = ident(2);
    uint8_t ha[WB_SC_HELLO_LEN], hb[WB_SC_HELLO_LEN];
    uint8_t aa[WB_SC_AUTH_WIRE_LEN], ab[WB_SC_AUTH_WIRE_LEN];
    size_t used, la, lb;
    assert_int_equal(wb_sc_init(a, ia.sk, ib.pk, NULL, ha), 0);
    assert_int_equal(wb_sc_init(b, ib.sk, NULL, NULL, hb), 0);
    assert_int_equal(hs(a, hb, sizeof(hb), &used, aa, &la), 0);
    assert_int_equal(la, WB_SC_AUTH_WIRE_LEN);
    assert_int_equal(hs(b, ha, sizeof(ha), &used, ab, &lb), 0);
    assert_int_equal(lb, WB_SC_AUTH_WIRE_LEN);
    assert_int_equal(hs(a, ab, lb, &used, aa, &la), 1);
    assert_int_equal(la, 0);
    assert_int_equal(hs(b, aa, WB_SC_AUTH_WIRE_LEN, &used, ab, &lb), 1);
    assert_int_equal(a->state, WB_SC_ESTABLISHED);
    assert_int_equal(b->state, WB_SC_ESTABLISHED);
    assert_memory_equal(a->remote_id, ib.pk, 32);
    assert_memory_equal(b->remote_id, ia.pk, 32);
}

/* ---- HKDF ---- */

static void test_hkdf_rfc5869(void **state)
{
    (void)state;
    /* RFC 5869 A.1 */
    uint8_t ikm[22], salt[13], info[10], okm[42], want[42];
    memset(ikm, 0x0b, sizeof(ikm));
    for (int i = 0; i < 13; i++)
        salt[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++)
        info[i] = (uint8_t)(0xf0 + i);
    unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
          want, sizeof(want));
    assert_int_equal(wb_hkdf_sha256(okm, 42, ikm, 22, salt, 13, info, 10), 0);
    assert_memory_equal(okm, want, 42);
    /* A.3: no salt, no info */
    unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
          want, sizeof(want));
    assert_int_equal(wb_hkdf_sha256(okm, 42, ikm, 22, NULL, 0, NULL, 0), 0);
    assert_memory_equal(okm, want, 42);
    /* The bound: 255 blocks. */
    static uint8_t big[255 * 32 + 1];
    assert_int_equal(wb_hkdf_sha256(big, 255 * 32, ikm, 22, NULL, 0, NULL, 0), 0);
    assert_int_equal(wb_hkdf_sha256(big, 255 * 32 + 1, ikm, 22, NULL, 0, NULL, 0), WB_EINVAL);
}

/* ---- golden vectors ---- */

typedef struct {
    uint8_t id_sk[64], id_pk[32], eph_sk[32], eph_pk[32], hello[36], send_key[32], recv_key[32],
        challenge[32], auth_wire[WB_SC_AUTH_WIRE_LEN];
} vside_t;

static void vside(json_t *o, vside_t *s)
{
    hexfield(o, "id_sk", s->id_sk, 64);
    hexfield(o, "id_pk", s->id_pk, 32);
    hexfield(o, "eph_sk", s->eph_sk, 32);
    hexfield(o, "eph_pk", s->eph_pk, 32);
    hexfield(o, "hello", s->hello, 36);
    hexfield(o, "send_key", s->send_key, 32);
    hexfield(o, "recv_key", s->recv_key, 32);
    hexfield(o, "challenge", s->challenge, 32);
    hexfield(o, "auth_wire", s->auth_wire, WB_SC_AUTH_WIRE_LEN);
}

static void test_vectors(void **state)
{
    (void)state;
    json_error_t e;
    json_t *j = json_load_file(WB_TESTDATA_DIR "/secret_vectors.json", 0, &e);
    if (j == NULL)
        fail_msg("cannot read %s/secret_vectors.json: %s", WB_TESTDATA_DIR, e.text);
    json_t *cases = json_object_get(j, "cases");
    assert_true(json_array_size(cases) >= 3);
    int saw_lo_a = 0, saw_lo_b = 0;
    size_t ci;
    json_t *c;
    json_array_foreach(cases, ci, c)
    {
        vside_t va, vb;
        vside(json_object_get(c, "a"), &va);
        vside(json_object_get(c, "b"), &vb);
        uint8_t dh[32];
        hexfield(c, "dh", dh, 32);
        if (strcmp(str(c, "lo"), "a") == 0)
            saw_lo_a = 1;
        else
            saw_lo_b = 1;

        /* Key schedule alone, from each side. */
        uint8_t sk[32], rk[32], ch[32];
        wb_sc_derive(va.eph_pk, vb.eph_pk, dh, sk, rk, ch);
        assert_memory_equal(sk, va.send_key, 32);
        assert_memory_equal(rk, va.recv_key, 32);
        assert_memory_equal(ch, va.challenge, 32);
        wb_sc_derive(vb.eph_pk, va.eph_pk, dh, sk, rk, ch);
        assert_memory_equal(sk, vb.send_key, 32);
        assert_memory_equal(rk, vb.recv_key, 32);
        assert_memory_equal(ch, vb.challenge, 32);

        /* Sessions: hello, auth, established. */
        wb_sc_t a, b;
        uint8_t ha[36], hb[36], auth[WB_SC_AUTH_WIRE_LEN];
        size_t used, alen;
        assert_int_equal(wb_sc_init(&a, va.id_sk, vb.id_pk, va.eph_sk, ha), 0);
        assert_int_equal(wb_sc_init(&b, vb.id_sk, NULL, vb.eph_sk, hb), 0);
        assert_memory_equal(ha, va.hello, 36);
        assert_memory_equal(hb, vb.hello, 36);
        assert_memory_equal(a.id_pk, va.id_pk, 32);

        assert_int_equal(wb_sc_handshake(&a, vb.hello, 36, &used, auth, &alen), 0);
        assert_int_equal(used, 36);
        assert_int_equal(alen, WB_SC_AUTH_WIRE_LEN);
        assert_memory_equal(auth, va.auth_wire, WB_SC_AUTH_WIRE_LEN);
        assert_memory_equal(a.send_key, va.send_key, 32);
        assert_memory_equal(a.recv_key, va.recv_key, 32);
        assert_int_equal(wb_sc_handshake(&b, va.hello, 36, &used, auth, &alen), 0);
        assert_memory_equal(auth, vb.auth_wire, WB_SC_AUTH_WIRE_LEN);

        assert_int_equal(
            wb_sc_handshake(&a, vb.auth_wire, sizeof(vb.auth_wire), &used, auth, &alen), 1);
        assert_int_equal(used, WB_SC_AUTH_WIRE_LEN);
        assert_int_equal(alen, 0);
        assert_memory_equal(a.remote_id, vb.id_pk, 32);
        assert_int_equal(
            wb_sc_handshake(&b, va.auth_wire, sizeof(va.auth_wire), &used, auth, &alen), 1);
        assert_memory_equal(b.remote_id, va.id_pk, 32);

        /* Data frames: sealed byte for byte, opened by the peer. */
        size_t fi;
        json_t *f;
        json_array_foreach(json_object_get(c, "frames"), fi, f)
        {
            wb_sc_t *from = strcmp(str(f, "from"), "a") == 0 ? &a : &b;
            wb_sc_t *to = from == &a ? &b : &a;
            const char *ph = str(f, "plain"), *wh = str(f, "wire");
            size_t pcap = strlen(ph) / 2, wcap = strlen(wh) / 2;
            uint8_t *plain = malloc(pcap), *wire = malloc(wcap), *out = malloc(wcap);
            size_t plen = unhex(ph, plain, pcap), wlen = unhex(wh, wire, wcap);
            assert_int_equal(from->send_ctr,
                             (uint64_t)json_integer_value(json_object_get(f, "counter")));
            assert_int_equal(wb_sc_sealed_size(plen, WB_SC_MAX_FRAME), wlen);
            assert_int_equal(wb_sc_seal(from, plain, plen, WB_SC_MAX_FRAME, out), (long)wlen);
            assert_memory_equal(out, wire, wlen);
            const uint8_t *got;
            size_t glen;
            assert_int_equal(wb_sc_open(to, wire, wlen, &used, &got, &glen), 1);
            assert_int_equal(used, wlen);
            assert_int_equal(glen, plen);
            assert_memory_equal(got, plain, plen);
            free(plain);
            free(wire);
            free(out);
        }
        wb_sc_fini(&a);
        wb_sc_fini(&b);
    }
    assert_true(saw_lo_a && saw_lo_b);
    json_decref(j);
}

/* ---- two sessions in random pieces ---- */

typedef struct {
    uint8_t *d;
    size_t len, cap, off; /* bytes in flight: d[off..len) */
} pipe_t;

static void pipe_push(pipe_t *p, const uint8_t *d, size_t n)
{
    if (p->len + n > p->cap) {
        p->cap = (p->len + n) * 2;
        p->d = realloc(p->d, p->cap);
        assert_non_null(p->d);
    }
    memcpy(p->d + p->len, d, n);
    p->len += n;
}

typedef struct {
    wb_sc_t sc;
    ident_t id;
    pipe_t out;         /* what this side sent, not yet delivered */
    uint8_t *data;      /* what it will send after the handshake */
    size_t total, sent; /* of data */
    size_t frame_max;   /* it seals with */
    uint8_t *got;       /* what it received */
    size_t got_len;
    int established;
} end_t;

/* Deliver a random piece of from->out to to. */
static void deliver(end_t *to, end_t *from, uint64_t *s, size_t piece_cap, uint64_t seed)
{
    pipe_t *p = &from->out;
    size_t left = p->len - p->off;
    if (left == 0)
        return;
    size_t n = 1 + rnd(s, left < piece_cap ? left : piece_cap);
    /* A copy of its own, so ASan sees any read past the piece and the
     * session may write it. */
    uint8_t *piece = malloc(n);
    assert_non_null(piece);
    memcpy(piece, p->d + p->off, n);
    size_t pos = 0;
    if (!to->established) {
        uint8_t auth[WB_SC_AUTH_WIRE_LEN];
        size_t used, alen;
        int rc = wb_sc_handshake(&to->sc, piece, n, &used, auth, &alen);
        if (rc < 0)
            fail_msg("seed %llu: handshake: %s (%s)", (unsigned long long)seed, wb_err_name(rc),
                     wb_sc_error(&to->sc));
        assert_true(used <= n);
        if (alen > 0) {
            assert_int_equal(alen, WB_SC_AUTH_WIRE_LEN);
            pipe_push(&to->out, auth, alen);
        }
        if (rc == 0)
            assert_int_equal(used, n);
        pos = used;
        if (rc == 1) {
            to->established = 1;
            assert_memory_equal(to->sc.remote_id, from->id.pk, 32);
        }
    }
    while (to->established && pos < n) {
        const uint8_t *plain;
        size_t used, plen;
        int rc = wb_sc_open(&to->sc, piece + pos, n - pos, &used, &plain, &plen);
        if (rc < 0)
            fail_msg("seed %llu: open: %s (%s)", (unsigned long long)seed, wb_err_name(rc),
                     wb_sc_error(&to->sc));
        assert_true(used <= n - pos);
        pos += used;
        if (rc == 0) {
            assert_int_equal(pos, n);
        } else {
            assert_true(plen >= 1 && plen <= from->frame_max);
            assert_true(to->got_len + plen <= from->total);
            memcpy(to->got + to->got_len, plain, plen);
            to->got_len += plen;
        }
    }
    p->off += pos;
    free(piece);
}

static void send_some(end_t *e, uint64_t *s)
{
    size_t left = e->total - e->sent;
    if (!e->established || left == 0)
        return;
    size_t n = 1 + rnd(s, left < 3 * e->frame_max + 5 ? left : 3 * e->frame_max + 5);
    size_t sz = wb_sc_sealed_size(n, e->frame_max);
    uint8_t *out = malloc(sz);
    assert_non_null(out);
    long w = wb_sc_seal(&e->sc, e->data + e->sent, n, e->frame_max, out);
    assert_int_equal(w, (long)sz);
    pipe_push(&e->out, out, sz);
    free(out);
    e->sent += n;
}

static size_t pick_frame_max(uint64_t *s)
{
    switch (rnd(s, 4)) {
    case 0:
        return 1 + rnd(s, 16);
    case 1:
        return WB_SC_MAX_FRAME;
    default:
        return 1 + rnd(s, WB_SC_MAX_FRAME);
    }
}

static size_t pick_piece_cap(uint64_t *s)
{
    switch (rnd(s, 3)) {
    case 0:
        return 1 + rnd(s, 40);
    case 1:
        return 1 + rnd(s, 5000);
    default:
        return 1 + rnd(s, 300000);
    }
}

static void run_pair(uint64_t seed, size_t max_total)
{
    uint64_t s = seed;
    end_t e[2];
    memset(e, 0, sizeof(e));
    uint8_t hello[2][WB_SC_HELLO_LEN];
    for (int i = 0; i < 2; i++) {
        e[i].id = ident((uint8_t)(1 + rnd(&s, 100) * 2 + (size_t)i)); /* distinct */
        e[i].total = max_total == 0 ? 0 : 1 + rnd(&s, max_total);
        e[i].data = malloc(e[i].total + 1);
        for (size_t k = 0; k < e[i].total; k++)
            e[i].data[k] = (uint8_t)rng(&s);
        e[i].frame_max = pick_frame_max(&s);
    }
    for (int i = 0; i < 2; i++)
        e[i].got = malloc(e[1 - i].total + 1); /* what the peer sends */
    for (int i = 0; i < 2; i++) {
        /* One side knows whom it dials, on some seeds. */
        const uint8_t *expect = (i == 0 && rnd(&s, 2)) ? e[1].id.pk : NULL;
        assert_int_equal(wb_sc_init(&e[i].sc, e[i].id.sk, expect, NULL, hello[i]), 0);
        pipe_push(&e[i].out, hello[i], WB_SC_HELLO_LEN);
    }
    size_t cap = pick_piece_cap(&s);
    for (long steps = 0;; steps++) {
        assert_true(steps < 50000000);
        int done = 1;
        for (int i = 0; i < 2; i++)
            if (!e[i].established || e[i].sent < e[i].total || e[i].out.off < e[i].out.len)
                done = 0;
        if (done)
            break;
        int i = (int)rnd(&s, 2);
        if (rnd(&s, 2))
            send_some(&e[i], &s);
        else
            deliver(&e[i], &e[1 - i], &s, cap, seed);
    }
    for (int i = 0; i < 2; i++) {
        end_t *peer = &e[1 - i];
        assert_int_equal(e[i].got_len, peer->total);
        if (peer->total > 0)
            assert_memory_equal(e[i].got, peer->data, peer->total);
        assert_int_equal(e[i].sc.state, WB_SC_ESTABLISHED);
        assert_int_equal(wb_sc_error(&e[i].sc)[0], '\0');
    }
    for (int i = 0; i < 2; i++) {
        wb_sc_fini(&e[i].sc);
        free(e[i].out.d);
        free(e[i].data);
        free(e[i].got);
    }
}

/* Handshakes in random pieces (with a little data racing the auth frames,
 * so a piece holds the end of an auth frame and a data frame). */
static void test_handshake_pieces(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 300; seed++)
        run_pair(seed, seed % 3 == 0 ? 0 : 300);
}

/* Up to 200000 bytes each way at once, frame_max varied. */
static void test_stream_pieces(void **state)
{
    (void)state;
    for (uint64_t seed = 1000; seed < 1040; seed++)
        run_pair(seed, 200000);
}

/* ---- attacks ---- */

/* A man in the middle runs a session with each side, each with its own
 * ephemeral key. Relayed as they are, the auth frames do not decrypt;
 * re-sealed under the keys the man shares with each side, the signatures
 * (over the other challenge) do not verify. */
static void test_mitm(void **state)
{
    (void)state;
    for (int resealed = 0; resealed < 2; resealed++) {
        ident_t ia = ident(1), ib = ident(2), im = ident(9);
        wb_sc_t a, b, ma, mb; /* ma talks to a, mb to b */
        uint8_t ha[36], hb[36], hma[36], hmb[36];
        uint8_t auth_a[WB_SC_AUTH_WIRE_LEN], auth_b[WB_SC_AUTH_WIRE_LEN], x[WB_SC_AUTH_WIRE_LEN];
        size_t used, alen;
        assert_int_equal(wb_sc_init(&a, ia.sk, ib.pk, NULL, ha), 0);
        assert_int_equal(wb_sc_init(&b, ib.sk, NULL, NULL, hb), 0);
        assert_int_equal(wb_sc_init(&ma, im.sk, NULL, NULL, hma), 0);
        assert_int_equal(wb_sc_init(&mb, im.sk, NULL, NULL, hmb), 0);
        /* Each side gets the man's hello in place of the other's. */
        assert_int_equal(wb_sc_handshake(&a, hma, 36, &used, auth_a, &alen), 0);
        assert_int_equal(wb_sc_handshake(&b, hmb, 36, &used, auth_b, &alen), 0);
        assert_int_equal(wb_sc_handshake(&ma, ha, 36, &used, x, &alen), 0);
        assert_int_equal(wb_sc_handshake(&mb, hb, 36, &used, x, &alen), 0);
        /* Two different shared secrets, two different challenges. */
        assert_memory_not_equal(a.challenge, b.challenge, 32);

        uint8_t to_b[WB_SC_AUTH_WIRE_LEN], to_a[WB_SC_AUTH_WIRE_LEN];
        if (resealed) {
            /* The man reads each auth frame and seals it for the other. */
            uint8_t pa[WB_SC_AUTH_LEN], pb[WB_SC_AUTH_LEN];
            assert_int_equal(open_ref(ma.recv_key, 0, auth_a, sizeof(auth_a), pa), 0);
            assert_int_equal(open_ref(mb.recv_key, 0, auth_b, sizeof(auth_b), pb), 0);
            assert_int_equal(seal_ref(mb.send_key, 0, pa, WB_SC_AUTH_LEN, to_b),
                             WB_SC_AUTH_WIRE_LEN);
            assert_int_equal(seal_ref(ma.send_key, 0, pb, WB_SC_AUTH_LEN, to_a),
                             WB_SC_AUTH_WIRE_LEN);
        } else {
            memcpy(to_b, auth_a, sizeof(to_b));
            memcpy(to_a, auth_b, sizeof(to_a));
        }
        assert_int_equal(wb_sc_handshake(&b, to_b, sizeof(to_b), &used, x, &alen), WB_EPROTO);
        assert_int_equal(wb_sc_handshake(&a, to_a, sizeof(to_a), &used, x, &alen), WB_EPROTO);
        const char *want =
            resealed ? "challenge signature does not verify" : "auth frame does not decrypt";
        assert_string_equal(wb_sc_error(&a), want);
        assert_string_equal(wb_sc_error(&b), want);
        assert_int_equal(a.state, WB_SC_FAILED);
        assert_true(all_zero(a.send_key, 32) && all_zero(a.recv_key, 32));
        assert_true(all_zero(b.remote_id, 32));
        wb_sc_fini(&a);
        wb_sc_fini(&b);
        wb_sc_fini(&ma);
        wb_sc_fini(&mb);
    }
}

/* libsodium's X25519 blacklist: the points of order 1, 2, 4 and 8 (and
 * their non-canonical forms). */
static const uint8_t small_order[7][32] = {
    {0},
    {1},
    {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
     0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
     0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
    {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
     0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
     0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
};

static void test_small_order(void **state)
{
    (void)state;
    ident_t ia = ident(1);
    /* Each point as given and with the ignored top bit set. */
    for (int top = 0; top < 2; top++) {
        for (int i = 0; i < 7; i++) {
            wb_sc_t a;
            uint8_t ha[36], peer[36], auth[WB_SC_AUTH_WIRE_LEN];
            size_t used, alen = 99;
            assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, ha), 0);
            memcpy(peer, WB_SC_MAGIC, 4);
            memcpy(peer + 4, small_order[i], 32);
            if (top)
                peer[35] |= 0x80;
            assert_int_equal(wb_sc_handshake(&a, peer, 36, &used, auth, &alen), WB_EPROTO);
            assert_int_equal(alen, 0);
            assert_string_equal(wb_sc_error(&a), "small-order ephemeral key");
            assert_int_equal(a.state, WB_SC_FAILED);
            assert_true(all_zero(a.id_sk, 64) && all_zero(a.eph_sk, 32));
            assert_true(all_zero(a.send_key, 32) && all_zero(a.challenge, 32));
            wb_sc_fini(&a);
        }
    }
}

/* Our own hello reflected back is refused (both sides would be lo and hi
 * at once, and the peer would be us). */
static void test_reflected_hello(void **state)
{
    (void)state;
    ident_t ia = ident(1);
    wb_sc_t a;
    uint8_t ha[36], auth[WB_SC_AUTH_WIRE_LEN];
    size_t used, alen;
    assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, ha), 0);
    assert_int_equal(wb_sc_handshake(&a, ha, 36, &used, auth, &alen), WB_EPROTO);
    assert_int_equal(alen, 0);
    assert_string_equal(wb_sc_error(&a), "ephemeral key equal to ours");
    wb_sc_fini(&a);
}

static void test_bad_magic(void **state)
{
    (void)state;
    ident_t ia = ident(1), ib = ident(2);
    const char *bad[] = {"WBS2", "wbs1", "\0BS1", "WBS\x81"};
    for (size_t k = 0; k < 4; k++) {
        wb_sc_t a, b;
        uint8_t ha[36], hb[36], auth[WB_SC_AUTH_WIRE_LEN];
        size_t used, alen;
        assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, ha), 0);
        assert_int_equal(wb_sc_init(&b, ib.sk, NULL, NULL, hb), 0);
        memcpy(hb, bad[k], 4);
        /* One byte at a time: refused at the fourth, before the key. */
        int rc = 0;
        size_t i;
        for (i = 0; i < 36 && rc == 0; i++) {
            rc = wb_sc_handshake(&a, hb + i, 1, &used, auth, &alen);
            assert_int_equal(used, 1);
        }
        assert_int_equal(rc, WB_EPROTO);
        assert_int_equal(i, 4);
        assert_string_equal(wb_sc_error(&a), "bad magic");
        wb_sc_fini(&a);
        wb_sc_fini(&b);
    }
}

static void test_expected_identity(void **state)
{
    (void)state;
    ident_t ia = ident(1), ib = ident(2), ic = ident(3);
    wb_sc_t a, b;
    uint8_t ha[36], hb[36], aa[WB_SC_AUTH_WIRE_LEN], ab[WB_SC_AUTH_WIRE_LEN];
    size_t used, la, lb;
    assert_int_equal(wb_sc_init(&a, ia.sk, ic.pk, NULL, ha), 0); /* dialed c, reached b */
    assert_int_equal(wb_sc_init(&b, ib.sk, NULL, NULL, hb), 0);
    assert_int_equal(wb_sc_handshake(&a, hb, 36, &used, aa, &la), 0);
    assert_int_equal(wb_sc_handshake(&b, ha, 36, &used, ab, &lb), 0);
    assert_int_equal(wb_sc_handshake(&b, aa, la, &used, ab, &lb), 1);
    assert_int_equal(wb_sc_handshake(&a, ab, WB_SC_AUTH_WIRE_LEN, &used, aa, &la), WB_EPROTO);
    char want[160], hb8[9], hc8[9];
    sodium_bin2hex(hb8, 9, ib.pk, 4);
    sodium_bin2hex(hc8, 9, ic.pk, 4);
    snprintf(want, sizeof(want), "peer is %s...: expected %s...", hb8, hc8);
    assert_string_equal(wb_sc_error(&a), want);
    assert_true(all_zero(a.remote_id, 32));
    assert_int_equal(a.state, WB_SC_FAILED);
    wb_sc_fini(&a);
    wb_sc_fini(&b);
}

/* An auth frame of another length than 96, or one that spans calls. */
static void test_auth_frame_shape(void **state)
{
    (void)state;
    ident_t ia = ident(1), ib = ident(2);
    for (int k = 0; k < 2; k++) {
        wb_sc_t a, b;
        uint8_t ha[36], hb[36], aa[WB_SC_AUTH_WIRE_LEN], ab[WB_SC_AUTH_WIRE_LEN];
        size_t used, la, lb;
        uint8_t eph_b[32];
        randombytes_buf(eph_b, sizeof(eph_b));
        assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, ha), 0);
        assert_int_equal(wb_sc_init(&b, ib.sk, NULL, eph_b, hb), 0);
        assert_int_equal(wb_sc_handshake(&a, hb, 36, &used, aa, &la), 0);
        assert_int_equal(wb_sc_handshake(&b, ha, 36, &used, ab, &lb), 0);
        if (k == 0) {
            /* A 97-byte first frame, validly sealed: refused by its length. */
            uint8_t p[97] = {0}, w[97 + WB_SC_OVERHEAD];
            seal_ref(b.send_key, 0, p, 97, w);
            assert_int_equal(wb_sc_handshake(&a, w, sizeof(w), &used, aa, &la), WB_EPROTO);
            assert_string_equal(wb_sc_error(&a), "auth frame of 97 bytes, expected 96");
            assert_int_equal(used, 4);
        } else {
            /* Hello and auth in one call, then the auth a byte at a time. */
            uint8_t both[36 + WB_SC_AUTH_WIRE_LEN];
            memcpy(both, ha, 36);
            memcpy(both + 36, aa, WB_SC_AUTH_WIRE_LEN);
            wb_sc_t c;
            uint8_t hc[36], ac[WB_SC_AUTH_WIRE_LEN];
            size_t lc;
            assert_int_equal(wb_sc_init(&c, ib.sk, NULL, eph_b, hc), 0);
            assert_int_equal(wb_sc_handshake(&c, both, sizeof(both), &used, ac, &lc), 1);
            assert_int_equal(used, sizeof(both));
            assert_int_equal(lc, WB_SC_AUTH_WIRE_LEN);
            assert_memory_equal(ac, ab, WB_SC_AUTH_WIRE_LEN);
            wb_sc_fini(&c);
            for (size_t i = 0; i < WB_SC_AUTH_WIRE_LEN; i++) {
                int rc = wb_sc_handshake(&b, aa + i, 1, &used, ab, &lb);
                assert_int_equal(used, 1);
                assert_int_equal(rc, i + 1 == WB_SC_AUTH_WIRE_LEN ? 1 : 0);
            }
            assert_memory_equal(b.remote_id, ia.pk, 32);
        }
        wb_sc_fini(&a);
        wb_sc_fini(&b);
    }
}

/* A frame given whole (in place) or split at byte at (through the buffer),
 * then padded: an error must come, never a frame. */
static void expect_refused(const wb_sc_t *snap, uint8_t *wire, size_t len, size_t at)
{
    wb_sc_t sc = *snap; /* snap holds no buffer */
    const uint8_t *plain;
    size_t used, plen;
    uint8_t *pad = calloc(1, WB_SC_MAX_FRAME + WB_SC_TAG);
    assert_non_null(pad);
    int rc = wb_sc_open(&sc, wire, at, &used, &plain, &plen);
    if (rc == 0) {
        assert_int_equal(used, at);
        rc = wb_sc_open(&sc, wire + at, len - at, &used, &plain, &plen);
    }
    if (rc == 0) /* a longer length: what follows never completes it */
        rc = wb_sc_open(&sc, pad, WB_SC_MAX_FRAME + WB_SC_TAG, &used, &plain, &plen);
    assert_true(rc < 0);
    assert_int_equal(sc.state, WB_SC_FAILED);
    assert_true(all_zero(sc.recv_key, 32));
    free(pad);
    wb_sc_fini(&sc);
}

static void test_flipped_bits(void **state)
{
    (void)state;
    wb_sc_t a, b;
    pair(&a, &b);
    uint8_t plain[50], wire[50 + WB_SC_OVERHEAD], w2[sizeof(wire)];
    for (int i = 0; i < 50; i++)
        plain[i] = (uint8_t)i;
    assert_int_equal(wb_sc_seal(&a, plain, 50, 64, wire), (long)sizeof(wire));
    assert_null(b.buf);
    for (size_t i = 0; i < sizeof(wire); i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(w2, wire, sizeof(wire));
            w2[i] ^= (uint8_t)(1u << bit);
            expect_refused(&b, w2, sizeof(w2), sizeof(w2));
            memcpy(w2, wire, sizeof(wire));
            w2[i] ^= (uint8_t)(1u << bit);
            expect_refused(&b, w2, sizeof(w2), i / 2);
        }
    }
    /* Unflipped, it opens. */
    const uint8_t *got;
    size_t used, glen;
    assert_int_equal(wb_sc_open(&b, wire, sizeof(wire), &used, &got, &glen), 1);
    assert_int_equal(glen, 50);
    assert_memory_equal(got, plain, 50);
    wb_sc_fini(&a);
    wb_sc_fini(&b);

    /* The auth frame too: every flipped byte ends the handshake. */
    ident_t ia = ident(1), ib = ident(2);
    uint8_t ha[36], hb[36], aa[WB_SC_AUTH_WIRE_LEN], ab[WB_SC_AUTH_WIRE_LEN];
    size_t la, lb;
    assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, ha), 0);
    assert_int_equal(wb_sc_init(&b, ib.sk, NULL, NULL, hb), 0);
    assert_int_equal(wb_sc_handshake(&a, hb, 36, &used, aa, &la), 0);
    assert_int_equal(wb_sc_handshake(&b, ha, 36, &used, ab, &lb), 0);
    for (size_t i = 0; i < WB_SC_AUTH_WIRE_LEN; i++) {
        wb_sc_t c = b;
        uint8_t f[WB_SC_AUTH_WIRE_LEN];
        memcpy(f, aa, sizeof(f));
        f[i] ^= 0x01;
        int rc = wb_sc_handshake(&c, f, sizeof(f), &used, ab, &lb);
        if (rc == 0) /* a longer length: the rest never decrypts */
            fail_msg("auth flip at %zu accepted a longer frame", i);
        assert_int_equal(rc, WB_EPROTO);
        wb_sc_fini(&c);
    }
    assert_int_equal(wb_sc_handshake(&b, aa, WB_SC_AUTH_WIRE_LEN, &used, ab, &lb), 1);
    wb_sc_fini(&a);
    wb_sc_fini(&b);
}

static void test_replay_reorder(void **state)
{
    (void)state;
    wb_sc_t a, b;
    pair(&a, &b);
    uint8_t f[3][10 + WB_SC_OVERHEAD], p[10];
    for (int i = 0; i < 3; i++) {
        memset(p, 'a' + i, sizeof(p));
        assert_int_equal(wb_sc_seal(&a, p, 10, 10, f[i]), (long)sizeof(f[i]));
    }
    const uint8_t *got;
    size_t used, glen;
    uint8_t w[sizeof(f[0])];
    struct {
        int first, second;
        const char *why;
    } cases[] = {
        {0, 0, "frame 2 does not decrypt"}, /* replayed */
        {1, 0, "frame 1 does not decrypt"}, /* reordered */
        {0, 2, "frame 2 does not decrypt"}, /* one dropped */
    };
    for (int k = 0; k < 3; k++) {
        wb_sc_t c = b;
        if (cases[k].first == 0) {
            memcpy(w, f[0], sizeof(w));
            assert_int_equal(wb_sc_open(&c, w, sizeof(w), &used, &got, &glen), 1);
            memcpy(w, f[cases[k].second], sizeof(w));
        } else {
            memcpy(w, f[cases[k].first], sizeof(w));
        }
        assert_int_equal(wb_sc_open(&c, w, sizeof(w), &used, &got, &glen), WB_EPROTO);
        assert_string_equal(wb_sc_error(&c), cases[k].why);
        wb_sc_fini(&c);
    }
    /* Reflected: our own frame back to us (the other direction's key). */
    memcpy(w, f[0], sizeof(w));
    assert_int_equal(wb_sc_open(&a, w, sizeof(w), &used, &got, &glen), WB_EPROTO);
    /* In order, all three open. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(wb_sc_open(&b, f[i], sizeof(f[i]), &used, &got, &glen), 1);
        assert_int_equal(got[0], 'a' + i);
    }
    wb_sc_fini(&a);
    wb_sc_fini(&b);
}

/* Lengths 0 and above WB_SC_MAX_FRAME are refused from the header alone,
 * before a buffer exists; WB_SC_MAX_FRAME itself passes, split or whole. */
static void test_frame_lengths(void **state)
{
    (void)state;
    wb_sc_t a, b;
    pair(&a, &b);
    struct {
        uint8_t hdr[4];
        const char *why;
    } bad[] = {
        {{0, 0, 0, 0}, "frame 1 is empty"},
        {{0, 1, 0, 1}, "frame of 65537 bytes exceeds 65536"},
        {{0, 1, 0x11, 0x70}, "frame of 70000 bytes exceeds 65536"},
        {{0xff, 0xff, 0xff, 0xff}, "frame of 4294967295 bytes exceeds 65536"},
    };
    for (size_t k = 0; k < 4; k++) {
        wb_sc_t c = b;
        uint8_t in[8];
        memcpy(in, bad[k].hdr, 4);
        memset(in + 4, 0, 4);
        const uint8_t *got;
        size_t used, glen;
        /* The header in two calls. */
        assert_int_equal(wb_sc_open(&c, in, 2, &used, &got, &glen), 0);
        assert_int_equal(wb_sc_open(&c, in + 2, 6, &used, &got, &glen), WB_ETOOBIG);
        assert_int_equal(used, 2);
        assert_string_equal(wb_sc_error(&c), bad[k].why);
        assert_null(c.buf);
        wb_sc_fini(&c);
    }

    uint8_t *plain = malloc(WB_SC_MAX_FRAME), *wire = malloc(WB_SC_MAX_FRAME + WB_SC_OVERHEAD);
    randombytes_buf(plain, WB_SC_MAX_FRAME);
    for (int split = 0; split < 2; split++) {
        long w = wb_sc_seal(&a, plain, WB_SC_MAX_FRAME, WB_SC_MAX_FRAME, wire);
        assert_int_equal(w, WB_SC_MAX_FRAME + WB_SC_OVERHEAD);
        const uint8_t *got;
        size_t used, glen;
        if (split) {
            assert_int_equal(wb_sc_open(&b, wire, 1000, &used, &got, &glen), 0);
            assert_non_null(b.buf);
            assert_int_equal(wb_sc_open(&b, wire + 1000, (size_t)w - 1000, &used, &got, &glen), 1);
            assert_ptr_equal(got, b.buf);
        } else {
            assert_int_equal(wb_sc_open(&b, wire, (size_t)w, &used, &got, &glen), 1);
            assert_ptr_equal(got, wire + WB_SC_FRAME_HEADER); /* in place */
            assert_null(b.buf);
        }
        assert_int_equal(glen, WB_SC_MAX_FRAME);
        assert_memory_equal(got, plain, WB_SC_MAX_FRAME);
    }
    free(plain);
    free(wire);
    wb_sc_fini(&a);
    wb_sc_fini(&b);
}

static void test_sticky_and_state(void **state)
{
    (void)state;
    ident_t ia = ident(1);
    wb_sc_t a, b;
    uint8_t ha[36], hb[36] = "WBS1", out[64], auth[WB_SC_AUTH_WIRE_LEN];
    const uint8_t *got;
    size_t used, glen, alen;
    assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, ha), 0);
    /* Not established: seal and open refuse, and the session goes on. */
    assert_int_equal(wb_sc_seal(&a, (const uint8_t *)"x", 1, 16, out), WB_ESTATE);
    assert_int_equal(wb_sc_open(&a, out, 4, &used, &got, &glen), WB_ESTATE);
    assert_int_equal(a.state, WB_SC_HELLO);
    assert_string_equal(wb_sc_error(&a), "");
    wb_sc_fini(&a);

    pair(&a, &b);
    /* Established: the handshake call refuses. */
    assert_int_equal(wb_sc_handshake(&a, hb, 36, &used, auth, &alen), WB_ESTATE);
    assert_int_equal(a.state, WB_SC_ESTABLISHED);
    /* A bad frame, then every call gives the same error back. */
    uint8_t w[1 + WB_SC_OVERHEAD];
    assert_int_equal(wb_sc_seal(&a, (const uint8_t *)"y", 1, 16, w), (long)sizeof(w));
    w[5] ^= 1;
    assert_int_equal(wb_sc_open(&b, w, sizeof(w), &used, &got, &glen), WB_EPROTO);
    assert_string_equal(wb_sc_error(&b), "frame 1 does not decrypt");
    w[5] ^= 1; /* the good frame: still refused */
    assert_int_equal(wb_sc_open(&b, w, sizeof(w), &used, &got, &glen), WB_EPROTO);
    assert_int_equal(used, 0);
    assert_int_equal(wb_sc_seal(&b, (const uint8_t *)"z", 1, 16, out), WB_EPROTO);
    assert_int_equal(wb_sc_handshake(&b, ha, 36, &used, auth, &alen), WB_EPROTO);
    assert_int_equal(alen, 0);
    assert_string_equal(wb_sc_error(&b), "frame 1 does not decrypt");
    assert_true(all_zero(b.send_key, 32) && all_zero(b.recv_key, 32));
    wb_sc_fini(&a);
    wb_sc_fini(&b);

    /* A failed handshake stays failed too. */
    assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, ha), 0);
    assert_int_equal(wb_sc_handshake(&a, (const uint8_t *)"XBS1", 4, &used, auth, &alen),
                     WB_EPROTO);
    assert_int_equal(wb_sc_handshake(&a, hb, 36, &used, auth, &alen), WB_EPROTO);
    assert_int_equal(used, 0);
    assert_string_equal(wb_sc_error(&a), "bad magic");
    wb_sc_fini(&a);
}

/* Frame number 2^64 - 1 is never sealed nor opened; the nonce carries the
 * counter's high bytes little-endian. */
static void test_counter_end(void **state)
{
    (void)state;
    wb_sc_t a, b;
    pair(&a, &b);
    a.send_ctr = UINT64_MAX - 2;
    b.recv_ctr = UINT64_MAX - 2;
    uint8_t w[3 + WB_SC_OVERHEAD], ref[sizeof(w)];
    const uint8_t *got;
    size_t used, glen;
    for (uint64_t k = 2; k >= 1; k--) {
        assert_int_equal(wb_sc_seal(&a, (const uint8_t *)"abc", 3, 3, w), (long)sizeof(w));
        seal_ref(b.recv_key, UINT64_MAX - k, (const uint8_t *)"abc", 3, ref);
        assert_memory_equal(w, ref, sizeof(w));
        assert_int_equal(wb_sc_open(&b, w, sizeof(w), &used, &got, &glen), 1);
        assert_memory_equal(got, "abc", 3);
    }
    assert_int_equal(a.send_ctr, UINT64_MAX);
    assert_int_equal(b.recv_ctr, UINT64_MAX);
    assert_int_equal(wb_sc_seal(&a, (const uint8_t *)"abc", 3, 3, w), WB_ECLOSED);
    seal_ref(b.recv_key, UINT64_MAX, (const uint8_t *)"abc", 3, ref);
    assert_int_equal(wb_sc_open(&b, ref, sizeof(ref), &used, &got, &glen), WB_ECLOSED);
    assert_int_equal(wb_sc_open(&b, ref, sizeof(ref), &used, &got, &glen), WB_ECLOSED);
    wb_sc_fini(&a);
    wb_sc_fini(&b);

    /* Data that would need the last frame is refused whole: nothing written. */
    pair(&a, &b);
    a.send_ctr = UINT64_MAX - 2;
    uint8_t big[4 * (1 + WB_SC_OVERHEAD)];
    memset(big, 0x55, sizeof(big));
    assert_int_equal(wb_sc_seal(&a, (const uint8_t *)"abc", 3, 1, big), WB_ECLOSED);
    for (size_t i = 0; i < sizeof(big); i++)
        assert_int_equal(big[i], 0x55);
    assert_int_equal(a.send_ctr, UINT64_MAX - 2);
    wb_sc_fini(&a);
    wb_sc_fini(&b);
}

static void test_init_and_fini(void **state)
{
    (void)state;
    ident_t ia = ident(1), ib = ident(2);
    wb_sc_t a;
    uint8_t h[36], h2[36], sk[64];
    /* A secret key whose public half is another key's. */
    memcpy(sk, ia.sk, 32);
    memcpy(sk + 32, ib.pk, 32);
    assert_int_equal(wb_sc_init(&a, sk, NULL, NULL, h), WB_EINVAL);
    assert_int_equal(wb_sc_init(&a, NULL, NULL, NULL, h), WB_EINVAL);
    /* Fresh ephemeral keys each time. */
    assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, h), 0);
    assert_memory_equal(h, WB_SC_MAGIC, 4);
    assert_memory_equal(h + 4, a.eph_pk, 32);
    wb_sc_fini(&a);
    assert_int_equal(wb_sc_init(&a, ia.sk, NULL, NULL, h2), 0);
    assert_memory_not_equal(h + 4, h2 + 4, 32);
    wb_sc_fini(&a);
    /* fini wipes the whole session, buffer included. */
    wb_sc_t b;
    pair(&a, &b);
    uint8_t w[100 + WB_SC_OVERHEAD], p[100] = {0};
    const uint8_t *got;
    size_t used, glen;
    assert_int_equal(wb_sc_seal(&a, p, 100, 100, w), (long)sizeof(w));
    assert_int_equal(wb_sc_open(&b, w, 50, &used, &got, &glen), 0);
    assert_non_null(b.buf);
    wb_sc_fini(&b);
    assert_true(all_zero((const uint8_t *)&b, sizeof(b)));
    wb_sc_fini(&a);
    /* sealed_size */
    assert_int_equal(wb_sc_sealed_size(0, 10), 0);
    assert_int_equal(wb_sc_sealed_size(10, 10), 10 + WB_SC_OVERHEAD);
    assert_int_equal(wb_sc_sealed_size(11, 10), 11 + 2 * WB_SC_OVERHEAD);
    assert_int_equal(wb_sc_sealed_size(5, 1), 5 * (1 + WB_SC_OVERHEAD));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hkdf_rfc5869),
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_handshake_pieces),
        cmocka_unit_test(test_stream_pieces),
        cmocka_unit_test(test_mitm),
        cmocka_unit_test(test_small_order),
        cmocka_unit_test(test_reflected_hello),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_expected_identity),
        cmocka_unit_test(test_auth_frame_shape),
        cmocka_unit_test(test_flipped_bits),
        cmocka_unit_test(test_replay_reorder),
        cmocka_unit_test(test_frame_lengths),
        cmocka_unit_test(test_sticky_and_state),
        cmocka_unit_test(test_counter_end),
        cmocka_unit_test(test_init_and_fini),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
