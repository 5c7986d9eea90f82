/*
 * test_wormhole_crypto.c - apps/wormhole's SPAKE2, key schedule, secretbox
 * bodies and codes against the vectors the real Python libraries produced
 * (../shared/vectors, read at run time from WB_VECTORS_DIR; a missing file
 * fails the test).
 *
 * What each test pins:
 *  - group: the base point and identity encodings and the order L.
 *  - blinding_points: python-spake2's hash-to-point for M, N and S (HKDF
 *    output, y0 mod q, candidates skipped, point before the cofactor,
 *    element), and that the hard-coded S is that element.
 *  - spake2_cases: the four symmetric cases of spake2.json (appid id, a
 *    second code, empty id, non-ASCII code): password HKDF output, w, both
 *    sides' x, x*B, w*S, outbound element and message, K, transcript, key
 *    (scalars also as decimals), the wormhole pake JSON.
 *  - spake2_refusals: wrong lengths and side bytes, the identity (also the
 *    non-canonical encodings python-spake2 accepts), small-order points,
 *    a y that is not on the curve, a point outside the subgroup, our own
 *    message reflected, the element that cancels w*S; call order; secrets
 *    wiped after finish.
 *  - spake2_random: fresh entropy agrees with itself, not across codes.
 *  - hkdf: every case of hkdf.json (raw incl. RFC 5869 A.1, derive_key,
 *    phase purposes and keys, verifier, transit and dilation keys), limits.
 *  - secretbox: every case of secretbox.json both ways; tampering, short
 *    bodies, small buffers, random nonces.
 *  - transcripts: every add.body of client_transcript.json rebuilt from its
 *    code, sides, entropy and nonces, and opened by the other side.
 *  - transit_keys: transit.json's transit key, handshake and relay tokens
 *    (in their lines) and record keys.
 *  - wordlist / completion / code_* / password_nfc: the word tables equal
 *    wordlist.json, Python's completer examples, code generation, Python's
 *    validate_code rules, the advisory word check, NFC passwords.
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
#include <sodium.h>

#include "apps/wormhole/code.h"
#include "apps/wormhole/keys.h"
#include "apps/wormhole/spake2.h"
#include "runtime/error.h"

#ifndef WB_VECTORS_DIR
#error "WB_VECTORS_DIR must name the shared vectors folder (tests/unit/CMakeLists.txt)"
#endif

/* --- helpers ----------------------------------------------------------- */

static json_t *load(const char *name)
{
    char path[1024];
    json_error_t e;
    snprintf(path, sizeof(path), "%s/%s", WB_VECTORS_DIR, name);
    json_t *j = json_load_file(path, 0, &e);
    if (j == NULL)
        fail_msg("cannot read vector file %s: %s (line %d)", path, e.text, e.line);
    return j;
}

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL)
        fail_msg("vector has no string '%s'", key);
    return s;
}

static json_t *member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        fail_msg("vector has no '%s'", key);
    return v;
}

/* Hex string -> bytes; returns the length. */
static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (sodium_hex2bin(out, cap, h, strlen(h), NULL, &n, NULL) != 0 || n * 2 != strlen(h))
        fail_msg("bad or too long hex (%zu > %zu bytes): %.80s", strlen(h) / 2, cap, h);
    return n;
}

static size_t unhex_key(const json_t *obj, const char *key, uint8_t *out, size_t cap)
{
    return unhex(str(obj, key), out, cap);
}

static void expect_hex(const uint8_t *got, size_t n, const char *want, const char *what)
{
    char *h = malloc(2 * n + 1);
    assert_non_null(h);
    sodium_bin2hex(h, 2 * n + 1, got, n);
    if (strcmp(h, want) != 0) {
        fprintf(stderr, "%s:\n  got  %s\n  want %s\n", what, h, want);
        free(h);
        fail_msg("%s differs from the vector", what);
    }
    free(h);
}

static void reverse(const uint8_t *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in[n - 1 - i];
}

/* A 32-byte little-endian integer in decimal. */
static void le_decimal(const uint8_t le[32], char *out, size_t cap)
{
    uint8_t v[32];
    char rev[100];
    size_t n = 0;
    memcpy(v, le, 32);
    for (;;) {
        unsigned rem = 0;
        int zero = 1;
        for (int i = 31; i >= 0; i--) {
            unsigned cur = rem * 256 + v[i];
            v[i] = (uint8_t)(cur / 10);
            rem = cur % 10;
            zero &= v[i] == 0;
        }
        rev[n++] = (char)('0' + rem);
        if (zero)
            break;
    }
    assert_true(n < cap);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
}

static void expect_decimal(const uint8_t le[32], const char *want, const char *what)
{
    char d[100];
    le_decimal(le, d, sizeof(d));
    if (strcmp(d, want) != 0)
        fail_msg("%s: %s, want %s", what, d, want);
}

static int is_zero(const uint8_t *p, size_t n)
{
    return sodium_is_zero(p, n);
}

/* --- SPAKE2 -------------------------------------------------------------- */

static void test_group(void **state)
{
    (void)state;
    json_t *v = load("spake2.json");
    json_t *g = member(v, "group");
    uint8_t one[32] = {1}, B[32], lm1[32], L_le[32], L_be[32];
    assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(B, one), 0);
    expect_hex(B, 32, str(g, "base_point_hex"), "base point");
    expect_hex(one, 32, str(g, "identity_hex"), "identity");
    /* L = (L - 1) + 1, L - 1 being the negation of 1 mod L. */
    crypto_core_ed25519_scalar_negate(lm1, one);
    memcpy(L_le, lm1, 32);
    for (int i = 0; i < 32 && ++L_le[i] == 0; i++)
        ;
    reverse(L_le, L_be, 32);
    expect_hex(L_be, 32, str(g, "order_L_hex"), "order L");
    json_decref(v);
}

static void test_blinding_points(void **state)
{
    (void)state;
    json_t *v = load("spake2.json");
    json_t *bp = member(v, "blinding_points");
    const char *names[] = {"M", "N", "S"};
    for (int i = 0; i < 3; i++) {
        json_t *p = member(bp, names[i]);
        const char *seed = str(p, "seed_ascii");
        assert_string_equal(str(p, "hkdf_info"), "SPAKE2 arbitrary element");
        uint8_t el[32], be[32];
        wb_spake2_h2p_trace_t t;
        wb__spake2_arbitrary_element((const uint8_t *)seed, strlen(seed), el, &t);
        expect_hex(t.okm, 48, str(p, "hkdf_okm_48_hex"), "arbitrary element HKDF");
        reverse(t.y0, be, 32);
        expect_hex(be, 32, str(p, "y0_mod_q_hex_be"), "y0 mod q");
        assert_int_equal(t.skipped, json_integer_value(member(p, "candidates_skipped")));
        reverse(t.point_before_cofactor, be, 32);
        expect_hex(be, 32, str(p, "chosen_y_hex_be"), "chosen y");
        expect_hex(t.point_before_cofactor, 32, str(p, "point_before_cofactor_hex"),
                   "point before cofactor");
        expect_hex(el, 32, str(p, "element_hex"), names[i]);
        if (i == 2)
            assert_memory_equal(el, wb__spake2_S, 32);
    }
    /* The trace is optional. */
    uint8_t el[32];
    wb__spake2_arbitrary_element((const uint8_t *)"symmetric", 9, el, NULL);
    assert_memory_equal(el, wb__spake2_S, 32);
    json_decref(v);
}

static void check_side(const json_t *side, const uint8_t *pw, size_t pwlen, const uint8_t *id,
                       size_t idlen, wb_spake2_t *st, uint8_t msg[WB_SPAKE2_MSG_LEN])
{
    json_t *calls = member(side, "entropy_f_calls_hex");
    assert_int_equal(json_array_size(calls), 1); /* one call of 64 bytes */
    uint8_t ent[64];
    assert_int_equal(unhex(json_string_value(json_array_get(calls, 0)), ent, sizeof(ent)), 64);
    wb_spake2_init(st);
    assert_int_equal(wb_spake2_start(st, pw, pwlen, id, idlen, ent, msg), 0);
    expect_hex(st->x, 32, str(side, "xy_scalar_le_hex"), "private scalar x");
    expect_decimal(st->x, str(side, "xy_scalar_decimal"), "private scalar x (decimal)");
    uint8_t X[32], sum[32];
    assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(X, st->x), 0);
    expect_hex(X, 32, str(side, "X_equals_xy_times_base_hex"), "x*B");
    expect_hex(st->pw_S, 32, str(side, "pw_times_S_hex"), "w*S");
    assert_int_equal(crypto_core_ed25519_add(sum, X, st->pw_S), 0);
    assert_memory_equal(sum, st->outbound, 32);
    expect_hex(st->outbound, 32, str(side, "outbound_element_hex"), "outbound element");
    expect_hex(msg, WB_SPAKE2_MSG_LEN, str(side, "outbound_message_with_side_byte_hex"),
               "outbound message");
    /* Starting again is refused and changes nothing. */
    uint8_t again[WB_SPAKE2_MSG_LEN];
    assert_int_equal(wb_spake2_start(st, pw, pwlen, id, idlen, ent, again), WB_ESTATE);
}

static void pake_body(const uint8_t msg[WB_SPAKE2_MSG_LEN], char *out, size_t cap)
{
    char h[2 * WB_SPAKE2_MSG_LEN + 1];
    sodium_bin2hex(h, sizeof(h), msg, WB_SPAKE2_MSG_LEN);
    snprintf(out, cap, "{\"pake_v1\": \"%s\"}", h); /* Python's json.dumps */
}

static void test_spake2_cases(void **state)
{
    (void)state;
    json_t *v = load("spake2.json");
    json_t *cases = member(v, "symmetric_cases");
    assert_int_equal(json_array_size(cases), 4);
    size_t i;
    json_t *c;
    int saw_empty_id = 0, saw_non_ascii = 0;
    json_array_foreach(cases, i, c)
    {
        uint8_t pw[256], id[256], okm[48], w[32];
        size_t pwlen = unhex_key(c, "password_hex", pw, sizeof(pw));
        size_t idlen = unhex_key(c, "idSymmetric_hex", id, sizeof(id));
        saw_empty_id |= idlen == 0;
        /* The password is the code as NFC UTF-8. */
        const char *code = str(c, "password_utf8");
        uint8_t nfc[256];
        size_t nfclen;
        assert_int_equal(wb_wh_code_password(code, strlen(code), nfc, sizeof(nfc), &nfclen), 0);
        assert_int_equal(nfclen, pwlen);
        assert_memory_equal(nfc, pw, pwlen);
        for (size_t k = 0; k < pwlen; k++)
            saw_non_ascii |= pw[k] >= 0x80;

        assert_int_equal(
            wb_hkdf_sha256(okm, 48, pw, pwlen, NULL, 0, (const uint8_t *)"SPAKE2 pw", 9), 0);
        expect_hex(okm, 48, str(c, "pw_hkdf_okm_48_hex"), "password HKDF");
        wb_spake2_password_scalar(pw, pwlen, w);
        expect_hex(w, 32, str(c, "pw_scalar_le_hex"), "password scalar");
        expect_decimal(w, str(c, "pw_scalar_decimal"), "password scalar (decimal)");

        wb_spake2_t a, b;
        uint8_t ma[WB_SPAKE2_MSG_LEN], mb[WB_SPAKE2_MSG_LEN];
        check_side(member(c, "side1"), pw, pwlen, id, idlen, &a, ma);
        check_side(member(c, "side2"), pw, pwlen, id, idlen, &b, mb);
        assert_memory_equal(a.pw_scalar, w, 32);

        char body[128];
        pake_body(ma, body, sizeof(body));
        assert_string_equal(body, str(c, "wormhole_pake_body_side1_utf8"));
        pake_body(mb, body, sizeof(body));
        assert_string_equal(body, str(c, "wormhole_pake_body_side2_utf8"));

        uint8_t ka[32], kb[32], Ka[32], Kb[32], ta[160], tb[160];
        char err[160] = "";
        assert_int_equal(wb__spake2_finish(&a, mb, sizeof(mb), ka, Ka, ta, err, sizeof(err)), 0);
        assert_int_equal(wb__spake2_finish(&b, ma, sizeof(ma), kb, Kb, tb, err, sizeof(err)), 0);
        expect_hex(Ka, 32, str(member(c, "side1"), "K_hex"), "K (side 1)");
        expect_hex(Kb, 32, str(member(c, "side2"), "K_hex"), "K (side 2)");
        expect_hex(ta, 160, str(c, "transcript_hex"), "transcript (side 1)");
        expect_hex(tb, 160, str(c, "transcript_hex"), "transcript (side 2)");
        expect_hex(ka, 32, str(c, "shared_key_hex"), "shared key (side 1)");
        expect_hex(kb, 32, str(c, "shared_key_hex"), "shared key (side 2)");

        /* finish wiped the secrets; a second finish is refused. */
        assert_true(is_zero(a.x, 32) && is_zero(a.pw_scalar, 32) && is_zero(a.pw_S, 32) &&
                    is_zero(a.pw_hash, 32));
        assert_int_equal(wb_spake2_finish(&a, mb, sizeof(mb), ka, err, sizeof(err)), WB_ESTATE);
        assert_non_null(strstr(err, "twice"));
        assert_true(is_zero(ka, 32));
        wb_spake2_fini(&a);
        wb_spake2_fini(&b);
        assert_true(is_zero((const uint8_t *)&a, sizeof(a)));
    }
    assert_true(saw_empty_id);
    assert_true(saw_non_ascii);
    json_decref(v);
}

/* The first case's side 1, started; its peer's message in peer. */
static void start_case0(wb_spake2_t *st, uint8_t peer[WB_SPAKE2_MSG_LEN],
                        uint8_t own[WB_SPAKE2_MSG_LEN])
{
    json_t *v = load("spake2.json");
    json_t *c = json_array_get(member(v, "symmetric_cases"), 0);
    uint8_t pw[64], id[64], ent[64];
    size_t pwlen = unhex_key(c, "password_hex", pw, sizeof(pw));
    size_t idlen = unhex_key(c, "idSymmetric_hex", id, sizeof(id));
    unhex(json_string_value(json_array_get(member(member(c, "side1"), "entropy_f_calls_hex"), 0)),
          ent, sizeof(ent));
    unhex_key(member(c, "side2"), "outbound_message_with_side_byte_hex", peer, 33);
    wb_spake2_init(st);
    assert_int_equal(wb_spake2_start(st, pw, pwlen, id, idlen, ent, own), 0);
    json_decref(v);
}

/* msg[0..len) is refused with code, the reason containing want. */
static void refused(const uint8_t *msg, size_t len, int code, const char *want, const char *what)
{
    wb_spake2_t st;
    uint8_t peer[33], own[33], key[32];
    char err[200] = "";
    start_case0(&st, peer, own);
    memset(key, 0xa5, sizeof(key));
    int rc = wb_spake2_finish(&st, msg, len, key, err, sizeof(err));
    if (rc != code)
        fail_msg("%s: got %s (%s), want %s", what, wb_err_name(rc), err, wb_err_name(code));
    if (strstr(err, want) == NULL)
        fail_msg("%s: reason \"%s\" does not contain \"%s\"", what, err, want);
    assert_true(is_zero(key, 32));
    assert_true(is_zero(st.x, 32) && is_zero(st.pw_scalar, 32) && is_zero(st.pw_S, 32));
    /* One finish per start, failed or not: the real peer message too. */
    assert_int_equal(wb_spake2_finish(&st, peer, 33, key, NULL, 0), WB_ESTATE);
    wb_spake2_fini(&st);
}

static void element_refused(const uint8_t el[32], const char *want, const char *what)
{
    uint8_t msg[33];
    msg[0] = 'S';
    memcpy(msg + 1, el, 32);
    refused(msg, 33, WB_EINVAL, want, what);
}

static void el_from_hex(const char *h, uint8_t out[32])
{
    assert_int_equal(unhex(h, out, 32), 32);
}

static void test_spake2_refusals(void **state)
{
    (void)state;
    wb_spake2_t st;
    uint8_t peer[33], own[33], key[32], msg[40], el[32];
    start_case0(&st, peer, own);
    wb_spake2_fini(&st);

    /* Length and side byte. */
    refused(peer, 0, WB_EPROTO, "0 bytes", "empty message");
    refused(peer, 32, WB_EPROTO, "32 bytes", "short message");
    memcpy(msg, peer, 33);
    msg[33] = 0;
    refused(msg, 34, WB_EPROTO, "34 bytes", "long message");
    msg[0] = 'A';
    refused(msg, 33, WB_EPROTO, "side A", "side A");
    msg[0] = 'B';
    refused(msg, 33, WB_EPROTO, "side B", "side B");
    msg[0] = 0;
    refused(msg, 33, WB_EPROTO, "0x00", "side byte 0");
    msg[0] = 's';
    refused(msg, 33, WB_EPROTO, "0x73", "lower-case s");

    /* The identity, and the non-canonical encodings of it that
     * python-spake2 0.8 accepts (it compares only the canonical bytes). */
    el_from_hex("0100000000000000000000000000000000000000000000000000000000000000", el);
    element_refused(el, "identity", "identity");
    el_from_hex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", el);
    element_refused(el, "non-canonical", "identity as y = q + 1");
    el_from_hex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", el);
    element_refused(el, "non-canonical", "identity as y = q + 1, sign set");
    el_from_hex("0100000000000000000000000000000000000000000000000000000000000080", el);
    element_refused(el, "", "identity with the sign bit set");
    /* y = q: a non-canonical 0. */
    el_from_hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", el);
    element_refused(el, "non-canonical", "y = q");

    /* The other points of small order (order 2, 4, 8). */
    const char *small[] = {
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* order 2 */
        "0000000000000000000000000000000000000000000000000000000000000000", /* order 4 */
        "0000000000000000000000000000000000000000000000000000000000000080", /* order 4 */
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", /* order 8 */
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", /* order 8 */
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", /* order 8 */
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", /* order 8 */
    };
    for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
        el_from_hex(small[i], el);
        element_refused(el, "small order", small[i]);
    }

    /* y = 2 has no x on the curve. */
    el_from_hex("0200000000000000000000000000000000000000000000000000000000000000", el);
    element_refused(el, "not a point on the curve", "y = 2");

    /* A valid element plus the point of order 2: on the curve, of order
     * 2L, outside the prime-order subgroup. */
    uint8_t t2[32], mixed[32];
    el_from_hex(small[0], t2);
    assert_int_equal(crypto_core_ed25519_add(mixed, peer + 1, t2), 0);
    element_refused(mixed, "prime-order subgroup", "element + order-2 point");

    /* Our own message reflected back. */
    refused(own, 33, WB_EINVAL, "reflected", "reflection");

    /* Y = w*S: the peer's x*B would be the identity. */
    start_case0(&st, peer, own);
    msg[0] = 'S';
    memcpy(msg + 1, st.pw_S, 32);
    wb_spake2_fini(&st);
    refused(msg, 33, WB_EINVAL, "cancels", "w*S");

    /* Call order. */
    char err[120] = "";
    wb_spake2_init(&st);
    assert_int_equal(wb_spake2_finish(&st, peer, 33, key, err, sizeof(err)), WB_ESTATE);
    assert_non_null(strstr(err, "before start"));
    /* After all that, the real peer message still works from a fresh start. */
    start_case0(&st, peer, own);
    assert_int_equal(wb_spake2_finish(&st, peer, 33, key, NULL, 0), 0);
    wb_spake2_fini(&st);
}

static void test_spake2_random(void **state)
{
    (void)state;
    const uint8_t *code = (const uint8_t *)"7-guitarist-revenge";
    const uint8_t *id = (const uint8_t *)WB_WH_APPID_XFER;
    size_t idlen = strlen(WB_WH_APPID_XFER);
    wb_spake2_t a, b, c;
    uint8_t ma[33], mb[33], mc[33], ka[32], kb[32], kc[32];
    wb_spake2_init(&a);
    wb_spake2_init(&b);
    wb_spake2_init(&c);
    assert_int_equal(wb_spake2_start(&a, code, 19, id, idlen, NULL, ma), 0);
    assert_int_equal(wb_spake2_start(&b, code, 19, id, idlen, NULL, mb), 0);
    assert_int_equal(
        wb_spake2_start(&c, (const uint8_t *)"7-guitarist-revengf", 19, id, idlen, NULL, mc), 0);
    assert_memory_not_equal(ma, mb, 33);
    assert_int_equal(wb_spake2_finish(&a, mb, 33, ka, NULL, 0), 0);
    assert_int_equal(wb_spake2_finish(&b, ma, 33, kb, NULL, 0), 0);
    assert_memory_equal(ka, kb, 32);
    /* A wrong code is not detected by SPAKE2 (no confirmation): the keys
     * just differ, and the version message's MAC tells. */
    assert_int_equal(wb_spake2_finish(&c, ma, 33, kc, NULL, 0), 0);
    assert_memory_not_equal(ka, kc, 32);
    wb_spake2_fini(&a);
    wb_spake2_fini(&b);
    wb_spake2_fini(&c);
}

/* --- key schedule ---------------------------------------------------------- */

static void test_hkdf(void **state)
{
    (void)state;
    json_t *v = load("hkdf.json");
    size_t i;
    json_t *c;
    uint8_t ikm[128], salt[128], info[128], out[256], key[32];

    json_t *raw = member(v, "raw_hkdf");
    assert_int_equal(json_array_size(raw), 4);
    int saw_rfc = 0;
    json_array_foreach(raw, i, c)
    {
        size_t ikmlen = unhex_key(c, "ikm_hex", ikm, sizeof(ikm));
        size_t infolen = unhex_key(c, "info_hex", info, sizeof(info));
        json_t *s = member(c, "salt_hex");
        const uint8_t *sp = NULL;
        size_t saltlen = 0;
        if (!json_is_null(s)) {
            saltlen = unhex(json_string_value(s), salt, sizeof(salt));
            sp = salt; /* empty, or RFC 5869 A.1's 13 bytes */
        }
        saw_rfc |= saltlen == 13;
        size_t n = (size_t)json_integer_value(member(c, "length"));
        assert_int_equal(wb_hkdf_sha256(out, n, ikm, ikmlen, sp, saltlen, info, infolen), 0);
        expect_hex(out, n, str(c, "okm_hex"), "raw HKDF");
    }
    assert_true(saw_rfc);

    unhex_key(v, "shared_key_hex", key, sizeof(key));
    json_t *dk = member(v, "derive_key");
    assert_int_equal(json_array_size(dk), 12);
    json_array_foreach(dk, i, c)
    {
        uint8_t k2[32];
        unhex_key(c, "key_hex", k2, sizeof(k2));
        const char *p = str(c, "purpose_utf8");
        size_t n = (size_t)json_integer_value(member(c, "length"));
        assert_int_equal(wb_wh_derive_key(k2, p, strlen(p), out, n), 0);
        expect_hex(out, n, str(c, "derived_hex"), p);
    }

    json_t *pk = member(v, "derive_phase_key");
    assert_int_equal(json_array_size(pk), 21);
    json_array_foreach(pk, i, c)
    {
        uint8_t k2[32], purpose[WB_WH_PHASE_PURPOSE_LEN];
        unhex_key(c, "key_hex", k2, sizeof(k2));
        const char *side = str(c, "side"), *phase = str(c, "phase");
        assert_int_equal(wb_wh_phase_purpose(side, strlen(side), phase, strlen(phase), purpose), 0);
        expect_hex(purpose, sizeof(purpose), str(c, "purpose_hex"), "phase purpose");
        assert_int_equal(wb_wh_phase_key(k2, side, strlen(side), phase, strlen(phase), out), 0);
        expect_hex(out, 32, str(c, "phase_key_hex"), "phase key");
    }

    wb_wh_verifier(key, out);
    expect_hex(out, 32, str(v, "verifier_hex"), "verifier");
    wb_wh_transit_key(key, WB_WH_APPID_XFER, out);
    expect_hex(out, 32, str(v, "transit_key_hex"), "transit key");
    assert_int_equal(wb_wh_derive_key(key, "dilation-v1", 11, out, 32), 0);
    expect_hex(out, 32, str(v, "dilation_key_hex"), "dilation key");

    /* Limits: 255 blocks at most; zero bytes is fine. */
    uint8_t *big = malloc(WB_HKDF_MAX + 1);
    assert_non_null(big);
    memset(big, 0x5a, WB_HKDF_MAX + 1);
    assert_int_equal(wb_wh_derive_key(key, "x", 1, big, WB_HKDF_MAX + 1), WB_EINVAL);
    assert_int_equal(big[0], 0x5a);
    assert_int_equal(wb_wh_derive_key(key, "x", 1, big, WB_HKDF_MAX), 0);
    assert_int_equal(wb_wh_derive_key(key, "x", 1, out, 32), 0);
    assert_memory_equal(big, out, 32); /* HKDF output is a prefix of a longer one */
    free(big);
    assert_int_equal(wb_wh_derive_key(key, "x", 1, NULL, 0), 0);

    /* Python encodes side and phase as ASCII and fails otherwise. */
    assert_int_equal(wb_wh_phase_key(key, "s\xc3\xa9", 3, "0", 1, out), WB_EINVAL);
    assert_int_equal(wb_wh_phase_key(key, "side", 4, "\xff", 1, out), WB_EINVAL);
    json_decref(v);
}

static void test_secretbox(void **state)
{
    (void)state;
    json_t *v = load("secretbox.json");
    json_t *cases = member(v, "cases");
    assert_int_equal(json_array_size(cases), 30);
    size_t i;
    json_t *c;
    static uint8_t pt[1024], wire[1100], ct[1100], got[1100];
    char err[160];
    json_array_foreach(cases, i, c)
    {
        uint8_t key[32], nonce[24];
        unhex_key(c, "key_hex", key, sizeof(key));
        unhex_key(c, "nonce_hex", nonce, sizeof(nonce));
        size_t ptlen = unhex_key(c, "plaintext_hex", pt, sizeof(pt));
        size_t wlen = unhex_key(c, "wire_hex", wire, sizeof(wire));
        size_t ctlen = unhex_key(c, "ciphertext_hex", ct, sizeof(ct));
        assert_int_equal(wlen, ptlen + WB_WH_BOX_OVERHEAD);
        assert_int_equal(ctlen, ptlen + WB_WH_MAC_LEN);

        size_t n = 0;
        assert_int_equal(wb_wh_box_seal(key, pt, ptlen, nonce, got, sizeof(got), &n), 0);
        assert_int_equal(n, wlen);
        assert_memory_equal(got, wire, wlen);
        assert_memory_equal(got + WB_WH_NONCE_LEN, ct, ctlen);

        assert_int_equal(wb_wh_box_open(key, wire, wlen, got, sizeof(got), &n, err, sizeof(err)),
                         0);
        assert_int_equal(n, ptlen);
        assert_memory_equal(got, pt, ptlen);

        /* Any altered byte (nonce, MAC, ciphertext) fails the MAC. */
        size_t at[] = {0, 23, 24, 39, wlen - 1};
        for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
            wire[at[k]] ^= 0x01;
            err[0] = '\0';
            assert_int_equal(
                wb_wh_box_open(key, wire, wlen, got, sizeof(got), &n, err, sizeof(err)),
                WB_ECORRUPT);
            assert_non_null(strstr(err, "decryption failed"));
            wire[at[k]] ^= 0x01;
        }
        /* Exactly big enough works; one byte short is refused. */
        assert_int_equal(wb_wh_box_open(key, wire, wlen, got, ptlen, &n, NULL, 0), 0);
        if (ptlen > 0) {
            assert_int_equal(wb_wh_box_open(key, wire, wlen, got, ptlen - 1, &n, err, sizeof(err)),
                             WB_EINVAL);
            assert_int_equal(wb_wh_box_seal(key, pt, ptlen, nonce, got, wlen - 1, &n), WB_EINVAL);
        }
    }

    /* Shorter than nonce + MAC. */
    uint8_t key[32] = {0}, body[40] = {0};
    size_t n;
    for (size_t len = 0; len < WB_WH_BOX_OVERHEAD; len++) {
        err[0] = '\0';
        assert_int_equal(wb_wh_box_open(key, body, len, got, sizeof(got), &n, err, sizeof(err)),
                         WB_EPROTO);
        assert_non_null(strstr(err, "shorter"));
    }
    assert_int_equal(wb_wh_box_open(key, NULL, 0, got, sizeof(got), &n, NULL, 0), WB_EPROTO);

    /* Random nonces: fresh per seal, and the peer opens them. */
    uint8_t a[64], b[64];
    size_t na, nb;
    assert_int_equal(wb_wh_box_seal(key, (const uint8_t *)"hi", 2, NULL, a, sizeof(a), &na), 0);
    assert_int_equal(wb_wh_box_seal(key, (const uint8_t *)"hi", 2, NULL, b, sizeof(b), &nb), 0);
    assert_int_equal(na, 42);
    assert_memory_not_equal(a, b, WB_WH_NONCE_LEN);
    assert_int_equal(wb_wh_box_open(key, a, na, got, sizeof(got), &n, NULL, 0), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(got, "hi", 2);
    /* The wrong key. */
    key[0] = 1;
    assert_int_equal(wb_wh_box_open(key, a, na, got, sizeof(got), &n, err, sizeof(err)),
                     WB_ECORRUPT);
    /* Empty plaintext into a NULL buffer. */
    key[0] = 0;
    assert_int_equal(wb_wh_box_seal(key, NULL, 0, NULL, a, sizeof(a), &na), 0);
    assert_int_equal(wb_wh_box_open(key, a, na, NULL, 0, &n, NULL, 0), 0);
    assert_int_equal(n, 0);
    json_decref(v);
}

/* --- whole transcripts -------------------------------------------------- */

static void test_transcripts(void **state)
{
    (void)state;
    json_t *v = load("client_transcript.json");
    json_t *ts = member(v, "transcripts");
    assert_int_equal(json_array_size(ts), 2);
    size_t ti;
    json_t *t;
    json_array_foreach(ts, ti, t)
    {
        const char *code = str(t, "code"), *appid = str(t, "appid");
        const char *sides[2] = {str(member(t, "sides"), "sender"),
                                str(member(t, "sides"), "receiver")};
        uint8_t pw[128];
        size_t pwlen;
        assert_int_equal(wb_wh_code_validate(code, strlen(code), NULL, 0), 0);
        assert_int_equal(wb_wh_code_password(code, strlen(code), pw, sizeof(pw), &pwlen), 0);

        /* Both sides' SPAKE2 from the recorded entropy. */
        wb_spake2_t sp[2];
        uint8_t msg[2][33], key[2][32];
        const char *who[2] = {"sender", "receiver"};
        for (int s = 0; s < 2; s++) {
            uint8_t ent[64];
            json_t *calls = member(member(t, "spake2_entropy_hex"), who[s]);
            assert_int_equal(json_array_size(calls), 1);
            unhex(json_string_value(json_array_get(calls, 0)), ent, sizeof(ent));
            wb_spake2_init(&sp[s]);
            assert_int_equal(wb_spake2_start(&sp[s], pw, pwlen, (const uint8_t *)appid,
                                             strlen(appid), ent, msg[s]),
                             0);
        }
        for (int s = 0; s < 2; s++)
            assert_int_equal(wb_spake2_finish(&sp[s], msg[1 - s], 33, key[s], NULL, 0), 0);
        assert_memory_equal(key[0], key[1], 32);
        expect_hex(key[0], 32, str(t, "shared_key_hex"), "transcript shared key");
        uint8_t k[32];
        wb_wh_verifier(key[0], k);
        expect_hex(k, 32, str(t, "verifier_hex"), "transcript verifier");
        wb_wh_transit_key(key[0], WB_WH_APPID_XFER, k);
        expect_hex(k, 32, str(t, "transit_key_hex"), "transcript transit key");

        /* Every add.body, in order. */
        json_t *adds = member(t, "mailbox_adds_in_order");
        size_t ai;
        json_t *a;
        int pakes = 0, boxes = 0;
        json_array_foreach(adds, ai, a)
        {
            const char *side = str(a, "side"), *phase = str(a, "phase");
            const char *plain = str(a, "plaintext_utf8");
            int s = strcmp(side, sides[0]) == 0 ? 0 : 1;
            assert_string_equal(side, sides[s]);
            static uint8_t body[2048], want[2048], opened[2048];
            size_t n;
            if (strcmp(phase, "pake") == 0) {
                char text[128];
                pake_body(msg[s], text, sizeof(text));
                assert_string_equal(text, plain);
                expect_hex((const uint8_t *)text, strlen(text), str(a, "body_hex"), "pake body");
                pakes++;
                continue;
            }
            uint8_t pk[32], nonce[24];
            assert_int_equal(wb_wh_phase_key(key[s], side, strlen(side), phase, strlen(phase), pk),
                             0);
            expect_hex(pk, 32, str(a, "phase_key_hex"), "phase key");
            unhex_key(a, "nonce_hex", nonce, sizeof(nonce));
            assert_int_equal(wb_wh_box_seal(pk, (const uint8_t *)plain, strlen(plain), nonce, body,
                                            sizeof(body), &n),
                             0);
            expect_hex(body, n, str(a, "body_hex"), "encrypted body");
            /* The other side opens it with the SENDER's side in the key. */
            uint8_t rk[32];
            size_t wlen = unhex_key(a, "body_hex", want, sizeof(want));
            assert_int_equal(
                wb_wh_phase_key(key[1 - s], side, strlen(side), phase, strlen(phase), rk), 0);
            assert_int_equal(wb_wh_box_open(rk, want, wlen, opened, sizeof(opened), &n, NULL, 0),
                             0);
            assert_int_equal(n, strlen(plain));
            assert_memory_equal(opened, plain, n);
            /* Its own side's key does not open it. */
            assert_int_equal(wb_wh_phase_key(key[1 - s], sides[1 - s], strlen(sides[1 - s]), phase,
                                             strlen(phase), rk),
                             0);
            assert_int_equal(wb_wh_box_open(rk, want, wlen, opened, sizeof(opened), &n, NULL, 0),
                             WB_ECORRUPT);
            boxes++;
        }
        assert_int_equal(pakes, 2);
        assert_true(boxes >= 4);
        wb_spake2_fini(&sp[0]);
        wb_spake2_fini(&sp[1]);
    }
    json_decref(v);
}

static void test_transit_keys(void **state)
{
    (void)state;
    json_t *v = load("transit.json");
    uint8_t key[32], tk[32], k[32];
    char hex[65], line[256];
    unhex_key(v, "shared_key_hex", key, sizeof(key));
    assert_string_equal(str(v, "transit_key_purpose_utf8"), WB_WH_APPID_XFER "/transit-key");
    wb_wh_transit_key(key, WB_WH_APPID_XFER, tk);
    expect_hex(tk, 32, str(v, "transit_key_hex"), "transit key");

    wb_wh_transit_subkey(tk, WB_WH_TRANSIT_SENDER_HANDSHAKE, k);
    sodium_bin2hex(hex, sizeof(hex), k, 32);
    snprintf(line, sizeof(line), "transit sender %s ready\n\n", hex);
    assert_string_equal(line, str(v, "sender_handshake_utf8"));
    wb_wh_transit_subkey(tk, WB_WH_TRANSIT_RECEIVER_HANDSHAKE, k);
    sodium_bin2hex(hex, sizeof(hex), k, 32);
    snprintf(line, sizeof(line), "transit receiver %s ready\n\n", hex);
    assert_string_equal(line, str(v, "receiver_handshake_utf8"));
    wb_wh_transit_subkey(tk, WB_WH_TRANSIT_RELAY_TOKEN, k);
    expect_hex(k, 32, str(v, "relay_token_hex"), "relay token");
    sodium_bin2hex(hex, sizeof(hex), k, 32);
    snprintf(line, sizeof(line), "please relay %s for side %s\n", hex,
             str(member(v, "relay_sides"), "sender"));
    assert_string_equal(line, str(v, "relay_handshake_sender_utf8"));
    wb_wh_transit_subkey(tk, WB_WH_TRANSIT_RECORD_SENDER, k);
    expect_hex(k, 32, str(v, "record_key_sender_to_receiver_hex"), "sender record key");
    wb_wh_transit_subkey(tk, WB_WH_TRANSIT_RECORD_RECEIVER, k);
    expect_hex(k, 32, str(v, "record_key_receiver_to_sender_hex"), "receiver record key");

    /* The first record: length, counter nonce 0, sealed with the sender key. */
    json_t *r = json_array_get(member(v, "records"), 0);
    uint8_t pt[64], frame[128], got[128], nonce[24] = {0};
    size_t ptlen = unhex_key(r, "plaintext_hex", pt, sizeof(pt));
    size_t flen = unhex_key(r, "frame_hex", frame, sizeof(frame));
    size_t n;
    wb_wh_transit_subkey(tk, WB_WH_TRANSIT_RECORD_SENDER, k);
    assert_int_equal(wb_wh_box_seal(k, pt, ptlen, nonce, got + 4, sizeof(got) - 4, &n), 0);
    got[0] = (uint8_t)(n >> 24);
    got[1] = (uint8_t)(n >> 16);
    got[2] = (uint8_t)(n >> 8);
    got[3] = (uint8_t)n;
    assert_int_equal(n + 4, flen);
    assert_memory_equal(got, frame, flen);
    json_decref(v);
}

/* --- codes ----------------------------------------------------------------- */

static void test_wordlist(void **state)
{
    (void)state;
    json_t *v = load("wordlist.json");
    json_t *even = member(v, "even"), *odd = member(v, "odd"), *raw = member(v, "raw_capitalised");
    assert_int_equal(json_array_size(even), 256);
    assert_int_equal(json_array_size(odd), 256);
    for (int b = 0; b < 256; b++) {
        const char *e = json_string_value(json_array_get(even, b));
        const char *o = json_string_value(json_array_get(odd, b));
        assert_string_equal(wb_wh_word(0, (uint8_t)b), e);
        assert_string_equal(wb_wh_word(1, (uint8_t)b), o);
        assert_true(strlen(o) <= WB_WH_WORD_MAX && strlen(e) <= WB_WH_WORD_MAX);
        /* The capitalised table, looked up ignoring case. */
        char k[3];
        snprintf(k, sizeof(k), "%02X", b);
        json_t *pair = member(raw, k);
        const char *ce = json_string_value(json_array_get(pair, 0));
        const char *co = json_string_value(json_array_get(pair, 1));
        int isodd = -1;
        assert_int_equal(wb_wh_word_lookup(ce, strlen(ce), &isodd), b);
        assert_int_equal(isodd, 0);
        assert_int_equal(wb_wh_word_lookup(co, strlen(co), &isodd), b);
        assert_int_equal(isodd, 1);
        assert_int_equal(strcasecmp(ce, e), 0);
        assert_int_equal(strcasecmp(co, o), 0);
    }
    assert_int_equal(wb_wh_word_lookup("purple", 6, NULL), WB_ENOENT);
    assert_int_equal(wb_wh_word_lookup("", 0, NULL), WB_ENOENT);
    assert_int_equal(wb_wh_word_lookup("aardvarkx", 8, NULL), 0); /* by length */
    assert_int_equal(wb_wh_word_lookup("aardvar", 7, NULL), WB_ENOENT);
    assert_int_equal(wb_wh_word_lookup("AARDVARK", 8, NULL), 0);
    json_decref(v);
}

static void expect_completions(const char *text, unsigned nwords, json_t *want)
{
    wb_wh_completions_t c;
    assert_int_equal(wb_wh_code_complete(text, strlen(text), NULL, 0, nwords, &c), 0);
    if (c.n != json_array_size(want))
        fail_msg("completing '%s' (%u words): %zu completions, want %zu", text, nwords, c.n,
                 json_array_size(want));
    for (size_t i = 0; i < c.n; i++)
        assert_string_equal(c.items[i], json_string_value(json_array_get(want, i)));
    wb_wh_completions_fini(&c);
    assert_null(c.items);
}

static void test_completion(void **state)
{
    (void)state;
    json_t *v = load("wordlist.json");
    json_t *ex = member(v, "completion_examples");
    const char *k;
    json_t *want;
    int n = 0;
    json_object_foreach(ex, k, want)
    {
        /* "prefix|num_words": Python's get_completions on the words part;
         * the CLI puts "NAMEPLATE-" in front of each. */
        const char *bar = strrchr(k, '|');
        assert_non_null(bar);
        char text[128];
        snprintf(text, sizeof(text), "12-%.*s", (int)(bar - k), k);
        json_t *full = json_array();
        size_t i;
        json_t *w;
        json_array_foreach(want, i, w)
        {
            char s[128];
            snprintf(s, sizeof(s), "12-%s", json_string_value(w));
            json_array_append_new(full, json_string(s));
        }
        expect_completions(text, (unsigned)atoi(bar + 1), full);
        json_decref(full);
        n++;
    }
    assert_int_equal(n, 5);

    /* "12-pu": the odd words starting with "pu", hyphen after (2 words). */
    json_t *pu = json_pack("[ss]", "12-puberty-", "12-publisher-");
    expect_completions("12-pu", 2, pu);
    json_decref(pu);
    /* The second word: even list, no hyphen; case matters as in Python. */
    json_t *sec = json_pack("[s]", "12-puberty-pupil");
    expect_completions("12-puberty-pupi", 2, sec);
    json_decref(sec);
    json_t *none = json_array();
    expect_completions("12-Pu", 2, none);
    expect_completions("12-zzz", 2, none);
    json_decref(none);

    /* Nameplates come from the server's list. */
    const char *nps[] = {"12", "123", "4", "12"};
    wb_wh_completions_t c;
    assert_int_equal(wb_wh_code_complete("12", 2, nps, 4, 2, &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.items[0], "12-");
    assert_string_equal(c.items[1], "123-");
    wb_wh_completions_fini(&c);
    assert_int_equal(wb_wh_code_complete("", 0, nps, 4, 2, &c), 0);
    assert_int_equal(c.n, 3);
    wb_wh_completions_fini(&c);
    assert_int_equal(wb_wh_code_complete("5", 1, NULL, 0, 2, &c), 0);
    assert_int_equal(c.n, 0);
    wb_wh_completions_fini(&c);
    /* A nameplate that is not numeric cannot be claimed. */
    assert_int_equal(wb_wh_code_complete("ab-pu", 5, NULL, 0, 2, &c), WB_EINVAL);
    assert_null(c.items);
    json_decref(v);
}

static void test_code_generate(void **state)
{
    (void)state;
    char code[WB_WH_CODE_CAP(3, 4)];
    const uint8_t bytes[] = {0x00, 0xff, 0x9a, 0x01};
    assert_int_equal(wb_wh_code_generate("123", 4, bytes, code, sizeof(code)), 0);
    assert_string_equal(code, "123-adroitness-zulu-newsletter-absurd");
    assert_int_equal(wb_wh_code_generate("4", 2, (const uint8_t *)"\xa9\x69", code, sizeof(code)),
                     0);
    assert_string_equal(code, "4-passenger-gazelle");
    assert_int_equal(wb_wh_code_generate("0", 0, NULL, code, sizeof(code)), 0);
    assert_string_equal(code, "0-");
    /* Too small (the longest word needs WB_WH_CODE_CAP), bad nameplates. */
    assert_int_equal(wb_wh_code_generate("123", 4, bytes, code, 37), WB_EINVAL);
    assert_int_equal(wb_wh_code_generate("123", 4, bytes, code, 38), 0);
    assert_int_equal(wb_wh_code_generate("12a", 2, NULL, code, sizeof(code)), WB_EINVAL);
    assert_int_equal(wb_wh_code_generate("", 2, NULL, code, sizeof(code)), WB_EINVAL);

    /* Random codes: valid, and every word from the list its position takes. */
    char prev[sizeof(code)] = "";
    int same = 0;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(wb_wh_code_generate("7", 3, NULL, code, WB_WH_CODE_CAP(1, 3)), 0);
        assert_int_equal(wb_wh_code_validate(code, strlen(code), NULL, 0), 0);
        assert_int_equal(wb_wh_code_check_words(code, strlen(code), NULL, 0), 0);
        same += strcmp(code, prev) == 0;
        memcpy(prev, code, sizeof(code));
    }
    assert_true(same < 3);
}

static void code_refused(const char *code, const char *want)
{
    char err[160] = "";
    assert_int_equal(wb_wh_code_validate(code, strlen(code), err, sizeof(err)), WB_EINVAL);
    if (strstr(err, want) == NULL)
        fail_msg("validating '%s': \"%s\" does not contain \"%s\"", code, err, want);
}

static void test_code_validate(void **state)
{
    (void)state;
    /* Accepted as Python does: words are not checked. */
    const char *ok[] = {"4-purple-sausages",
                        "4-adroitness-aardvark",
                        "0-",
                        "4",
                        "123-x",
                        "9-caf\xc3\xa9-\xc3\xbc"
                        "ber",
                        "4--",
                        "007-Zulu"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (wb_wh_code_validate(ok[i], strlen(ok[i]), NULL, 0) != 0)
            fail_msg("'%s' refused", ok[i]);
    code_refused("4-purple sausages", "contains spaces");
    code_refused(" 4-purple", "contains spaces");
    code_refused("", "must be numeric");
    code_refused("-purple", "must be numeric");
    code_refused("a4-purple", "'a4' must be numeric");
    code_refused("\xd9\xa4-purple", "must be numeric"); /* Arabic-Indic 4: ASCII only */
    assert_int_equal(wb_wh_code_nameplate_len("123-a-b", 7), 3);
    assert_int_equal(wb_wh_code_nameplate_len("123", 3), 3);
    assert_int_equal(wb_wh_code_nameplate_len("123-a", 2), 2); /* only len counts */
}

static void words_refused(const char *code, int rc, const char *want)
{
    char err[160] = "";
    assert_int_equal(wb_wh_code_check_words(code, strlen(code), err, sizeof(err)), rc);
    if (strstr(err, want) == NULL)
        fail_msg("checking '%s': \"%s\" does not contain \"%s\"", code, err, want);
}

static void test_code_check_words(void **state)
{
    (void)state;
    const char *ok[] = {"4-adroitness-aardvark",
                        "4-ADROITNESS-Aardvark",
                        "0-",
                        "4",
                        "12-yucatan-zulu-adviser",
                        "12-adviser"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (wb_wh_code_check_words(ok[i], strlen(ok[i]), NULL, 0) != 0)
            fail_msg("'%s' refused", ok[i]);
    words_refused("4-purple-sausages", WB_ENOENT, "word 1 'purple' is not in");
    words_refused("4-adroitness-sausages", WB_ENOENT, "word 2 'sausages'");
    words_refused("4-aardvark-adroitness", WB_EINVAL, "word 1 'aardvark' is from the even list");
    words_refused("4-adroitness-aardvark-zulu", WB_EINVAL, "word 3 'zulu'");
    words_refused("4-adroitness-", WB_ENOENT, "word 2 is empty");
    words_refused("4--aardvark", WB_ENOENT, "word 1 is empty");
}

static void test_password_nfc(void **state)
{
    (void)state;
    json_t *v = load("spake2.json");
    json_t *c = json_array_get(member(v, "symmetric_cases"), 3);
    uint8_t want[64], got[64];
    size_t wlen = unhex_key(c, "password_hex", want, sizeof(want)), n;
    assert_string_equal(str(c, "password_utf8"), "9-caf\xc3\xa9-\xc3\xbc"
                                                 "ber");

    /* Decomposed: e + U+0301, u + U+0308 compose to the same password. */
    const char *nfd = "9-cafe\xcc\x81-u\xcc\x88"
                      "ber";
    assert_int_equal(wb_wh_code_password(nfd, strlen(nfd), got, sizeof(got), &n), 0);
    assert_int_equal(n, wlen);
    assert_memory_equal(got, want, wlen);
    /* Precomposed input stays as it is. */
    const char *nfc = str(c, "password_utf8");
    assert_int_equal(wb_wh_code_password(nfc, strlen(nfc), got, sizeof(got), &n), 0);
    assert_int_equal(n, wlen);
    assert_memory_equal(got, want, wlen);
    /* ... and gives the vector's key with the other side's message. */
    wb_spake2_t st;
    uint8_t ent[64], msg[33], peer[33], key[32];
    unhex(json_string_value(json_array_get(member(member(c, "side1"), "entropy_f_calls_hex"), 0)),
          ent, sizeof(ent));
    unhex_key(member(c, "side2"), "outbound_message_with_side_byte_hex", peer, sizeof(peer));
    const char *appid = str(c, "idSymmetric_utf8");
    wb_spake2_init(&st);
    assert_int_equal(wb_spake2_start(&st, got, n, (const uint8_t *)appid, strlen(appid), ent, msg),
                     0);
    assert_int_equal(wb_spake2_finish(&st, peer, 33, key, NULL, 0), 0);
    expect_hex(key, 32, str(c, "shared_key_hex"), "key from the decomposed code");
    wb_spake2_fini(&st);

    /* Too small: the size needed, nothing left in out. */
    memset(got, 0x5a, sizeof(got));
    assert_int_equal(wb_wh_code_password(nfd, strlen(nfd), got, 5, &n), WB_ETOOBIG);
    assert_int_equal(n, wlen);
    assert_true(is_zero(got, 5));
    assert_int_equal(wb_wh_code_password(nfd, strlen(nfd), NULL, 0, &n), WB_ETOOBIG);
    assert_int_equal(n, wlen);
    /* Not UTF-8, empty. */
    assert_int_equal(wb_wh_code_password("4-\xff", 3, got, sizeof(got), &n), WB_EINVAL);
    assert_int_equal(wb_wh_code_password("4-\xc3", 3, got, sizeof(got), &n), WB_EINVAL);
    assert_int_equal(wb_wh_code_password("", 0, got, sizeof(got), &n), 0);
    assert_int_equal(n, 0);
    /* Angstrom sign U+212B is NFC-mapped to U+00C5. */
    assert_int_equal(wb_wh_code_password("1-\xe2\x84\xab", 5, got, sizeof(got), &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(got, "1-\xc3\x85", 4);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group),         cmocka_unit_test(test_blinding_points),
        cmocka_unit_test(test_spake2_cases),  cmocka_unit_test(test_spake2_refusals),
        cmocka_unit_test(test_spake2_random), cmocka_unit_test(test_hkdf),
        cmocka_unit_test(test_secretbox),     cmocka_unit_test(test_transcripts),
        cmocka_unit_test(test_transit_keys),  cmocka_unit_test(test_wordlist),
        cmocka_unit_test(test_completion),    cmocka_unit_test(test_code_generate),
        cmocka_unit_test(test_code_validate), cmocka_unit_test(test_code_check_words),
        cmocka_unit_test(test_password_nfc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
