/*
 * spake2.c - python-spake2 0.8's SPAKE2_Symmetric on libsodium's Ed25519
 * core operations.
 *
 * Integers: python-spake2 reads HKDF output and entropy as BIG-endian
 * numbers, while Ed25519 scalars and points are LITTLE-endian on the wire.
 * crypto_core_ed25519_scalar_reduce takes 64 little-endian bytes, so the
 * big-endian inputs are byte-reversed into a zero-padded 64-byte buffer
 * before reduction.
 */
#include "apps/wormhole/spake2.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "apps/wormhole/keys.h"
#include "runtime/assert.h"
#include "runtime/error.h"

/* python-spake2's arbitrary_element(b"symmetric"); derived again and
 * compared in tests/unit/test_wormhole_crypto.c and spake2.json. */
const uint8_t wb__spake2_S[32] = {
    0x6f, 0x00, 0xda, 0xe8, 0x7c, 0x1b, 0xe1, 0xa7, 0x3b, 0x59, 0x22, 0xef, 0x43, 0x1c, 0xd8, 0xf5,
    0x78, 0x79, 0x56, 0x9c, 0x22, 0x2d, 0x22, 0xb1, 0xcd, 0x71, 0xe8, 0x54, 0x6a, 0xb8, 0xe6, 0xf1,
};

static const uint8_t identity[32] = {1};

/* n big-endian bytes (n <= 64) as a scalar mod L, little-endian. */
static void scalar_from_be(const uint8_t *be, size_t n, uint8_t out[32])
{
    uint8_t wide[crypto_core_ed25519_NONREDUCEDSCALARBYTES] = {0};
    WB_ASSERT(n <= sizeof(wide));
    for (size_t i = 0; i < n; i++)
        wide[i] = be[n - 1 - i];
    crypto_core_ed25519_scalar_reduce(out, wide);
    sodium_memzero(wide, sizeof(wide));
}

void wb_spake2_password_scalar(const uint8_t *password, size_t pwlen, uint8_t out[32])
{
    static const char info[] = "SPAKE2 pw";
    uint8_t okm[48]; /* scalar size + 16, as python-spake2 */
    (void)wb_hkdf_sha256(okm, sizeof(okm), password, pwlen, NULL, 0, (const uint8_t *)info,
                         sizeof(info) - 1);
    scalar_from_be(okm, sizeof(okm), out);
    sodium_memzero(okm, sizeof(okm));
}

void wb_spake2_init(wb_spake2_t *st)
{
    memset(st, 0, sizeof(*st));
}

void wb_spake2_fini(wb_spake2_t *st)
{
    sodium_memzero(st, sizeof(*st));
}

int wb_spake2_start(wb_spake2_t *st, const uint8_t *password, size_t pwlen, const uint8_t *id,
                    size_t idlen, const uint8_t *entropy, uint8_t out_msg[WB_SPAKE2_MSG_LEN])
{
    WB_ASSERT(st != NULL && out_msg != NULL);
    WB_ASSERT(password != NULL || pwlen == 0);
    WB_ASSERT(id != NULL || idlen == 0);
    if (st->state != 0)
        return WB_ESTATE;
    if (sodium_init() < 0)
        return WB_ESYS;

    crypto_hash_sha256(st->pw_hash, password, pwlen);
    crypto_hash_sha256(st->id_hash, id, idlen);
    wb_spake2_password_scalar(password, pwlen, st->pw_scalar);

    uint8_t e[WB_SPAKE2_ENTROPY_LEN];
    if (entropy != NULL)
        memcpy(e, entropy, sizeof(e));
    else
        randombytes_buf(e, sizeof(e));
    scalar_from_be(e, sizeof(e), st->x);
    sodium_memzero(e, sizeof(e));

    /* Both fail only for a zero scalar: python-spake2 would go on with the
     * identity, which no honest run reaches (probability 2^-252). */
    uint8_t X[32];
    if (crypto_scalarmult_ed25519_base_noclamp(X, st->x) != 0 ||
        crypto_scalarmult_ed25519_noclamp(st->pw_S, st->pw_scalar, wb__spake2_S) != 0) {
        wb_spake2_fini(st);
        return WB_EINVAL;
    }
    /* Both operands are valid points: add cannot fail. */
    (void)crypto_core_ed25519_add(st->outbound, X, st->pw_S);
    out_msg[0] = WB_SPAKE2_SIDE_SYM;
    memcpy(out_msg + 1, st->outbound, 32);
    st->state = 1;
    return 0;
}

/* Why the peer's element is unacceptable, or NULL. */
static const char *check_element(const uint8_t Y[32], const uint8_t ours[32])
{
    /* Canonical: y < q = 2^255 - 19 (python-spake2 reduces y mod q
     * silently; libsodium's own decoder would too). */
    int all_ff = (Y[31] & 0x7f) == 0x7f;
    for (int i = 30; i > 0 && all_ff; i--)
        all_ff = Y[i] == 0xff;
    if (all_ff && Y[0] >= 0xed)
        return "non-canonical encoding (y >= 2^255-19)";
    if (memcmp(Y, identity, 32) == 0)
        return "the identity element";
    uint8_t p2[32], p4[32], p8[32];
    if (crypto_core_ed25519_add(p2, Y, Y) != 0)
        return "not a point on the curve";
    (void)crypto_core_ed25519_add(p4, p2, p2);
    (void)crypto_core_ed25519_add(p8, p4, p4);
    if (memcmp(p8, identity, 32) == 0)
        return "a point of small order";
    /* Canonical, on the curve, not of small order: is_valid_point now
     * answers only whether L*Y is the identity. */
    if (!crypto_core_ed25519_is_valid_point(Y))
        return "not in the prime-order subgroup";
    if (memcmp(Y, ours, 32) == 0)
        return "our own message reflected back";
    return NULL;
}

int wb__spake2_finish(wb_spake2_t *st, const uint8_t *peer, size_t len,
                      uint8_t key_out[WB_SPAKE2_KEY_LEN], uint8_t *k_out, uint8_t *transcript_out,
                      char *err, size_t errlen)
{
    WB_ASSERT(st != NULL && key_out != NULL);
    WB_ASSERT(peer != NULL || len == 0);
    memset(key_out, 0, WB_SPAKE2_KEY_LEN);
    if (st->state != 1) {
        wb_errf(err, errlen, st->state == 0 ? "finish before start" : "finish called twice");
        return WB_ESTATE;
    }
    st->state = 2;

    int rc = 0;
    const char *why;
    uint8_t Z[32], K[32], transcript[5 * 32];
    if (len != WB_SPAKE2_MSG_LEN) {
        wb_errf(err, errlen, "pake message is %zu bytes, not %d", len, WB_SPAKE2_MSG_LEN);
        rc = WB_EPROTO;
        goto done;
    }
    if (peer[0] == 'A' || peer[0] == 'B') {
        wb_errf(err, errlen, "pake message from side %c of asymmetric SPAKE2, not symmetric",
                peer[0]);
        rc = WB_EPROTO;
        goto done;
    }
    if (peer[0] != WB_SPAKE2_SIDE_SYM) {
        wb_errf(err, errlen, "pake message has side byte 0x%02x, not 'S'", peer[0]);
        rc = WB_EPROTO;
        goto done;
    }
    const uint8_t *Y = peer + 1;
    if ((why = check_element(Y, st->outbound)) != NULL) {
        wb_errf(err, errlen, "pake element refused: %s", why);
        rc = WB_EINVAL;
        goto done;
    }

    /* K = x*(Y - w*S). Y - w*S is the identity only when the peer used x=0
     * with our password; python-spake2 would carry on with K = identity. */
    (void)crypto_core_ed25519_sub(Z, Y, st->pw_S);
    if (memcmp(Z, identity, 32) == 0 || crypto_scalarmult_ed25519_noclamp(K, st->x, Z) != 0) {
        wb_errf(err, errlen, "pake element refused: it cancels the password blinding out");
        rc = WB_EINVAL;
        goto done;
    }

    /* The transcript: no length prefixes, one identity, the raw password's
     * hash, and the two elements sorted because neither side is first. */
    const uint8_t *lo = st->outbound, *hi = Y;
    if (memcmp(lo, hi, 32) > 0) {
        lo = Y;
        hi = st->outbound;
    }
    memcpy(transcript, st->pw_hash, 32);
    memcpy(transcript + 32, st->id_hash, 32);
    memcpy(transcript + 64, lo, 32);
    memcpy(transcript + 96, hi, 32);
    memcpy(transcript + 128, K, 32);
    crypto_hash_sha256(key_out, transcript, sizeof(transcript));
    if (k_out != NULL)
        memcpy(k_out, K, 32);
    if (transcript_out != NULL)
        memcpy(transcript_out, transcript, sizeof(transcript));

done:
    sodium_memzero(Z, sizeof(Z));
    sodium_memzero(K, sizeof(K));
    sodium_memzero(transcript, sizeof(transcript));
    sodium_memzero(st->pw_hash, sizeof(st->pw_hash));
    sodium_memzero(st->pw_scalar, sizeof(st->pw_scalar));
    sodium_memzero(st->pw_S, sizeof(st->pw_S));
    sodium_memzero(st->x, sizeof(st->x));
    return rc;
}

int wb_spake2_finish(wb_spake2_t *st, const uint8_t *peer, size_t len,
                     uint8_t key_out[WB_SPAKE2_KEY_LEN], char *err, size_t errlen)
{
    return wb__spake2_finish(st, peer, len, key_out, NULL, NULL, err, errlen);
}

/* --- python-spake2's hash-to-point, for checking S (public inputs only) --- */

/* q = 2^255 - 19 in little-endian 32-bit limbs. */
static const uint32_t Q32[8] = {0xffffffed, 0xffffffff, 0xffffffff, 0xffffffff,
                                0xffffffff, 0xffffffff, 0xffffffff, 0x7fffffff};

static void sub_q_if_ge(uint32_t r[8])
{
    for (int k = 7; k >= 0; k--) {
        if (r[k] != Q32[k]) {
            if (r[k] < Q32[k])
                return;
            break;
        }
    }
    uint64_t borrow = 0;
    for (int k = 0; k < 8; k++) {
        uint64_t d = (uint64_t)r[k] - Q32[k] - borrow;
        r[k] = (uint32_t)d;
        borrow = (d >> 63) & 1;
    }
}

/* big-endian in[0..n) mod q, bit by bit: r < q < 2^255, so 2r+1 fits. */
static void mod_q_be(const uint8_t *in, size_t n, uint32_t r[8])
{
    memset(r, 0, 8 * sizeof(r[0]));
    for (size_t i = 0; i < n * 8; i++) {
        uint32_t carry = (in[i / 8] >> (7 - i % 8)) & 1;
        for (int k = 0; k < 8; k++) {
            uint32_t next = r[k] >> 31;
            r[k] = (r[k] << 1) | carry;
            carry = next;
        }
        sub_q_if_ge(r);
    }
}

static void limbs_to_le(const uint32_t r[8], uint8_t out[32])
{
    for (int i = 0; i < 32; i++)
        out[i] = (uint8_t)(r[i / 4] >> (8 * (i % 4)));
}

void wb__spake2_arbitrary_element(const uint8_t *seed, size_t seedlen, uint8_t out[32],
                                  wb_spake2_h2p_trace_t *trace)
{
    static const char info[] = "SPAKE2 arbitrary element";
    uint8_t okm[48];
    (void)wb_hkdf_sha256(okm, sizeof(okm), seed, seedlen, NULL, 0, (const uint8_t *)info,
                         sizeof(info) - 1);
    uint32_t y[8];
    mod_q_be(okm, sizeof(okm), y);
    if (trace != NULL) {
        memcpy(trace->okm, okm, sizeof(okm));
        limbs_to_le(y, trace->y0);
        trace->skipped = 0;
    }
    for (;;) {
        /* y < q with the sign bit clear: the point with even x, which is
         * the root python-spake2's xrecover returns. */
        uint8_t P[32], p2[32], p4[32], p8[32];
        limbs_to_le(y, P);
        if (crypto_core_ed25519_add(p2, P, P) == 0) {
            (void)crypto_core_ed25519_add(p4, p2, p2);
            (void)crypto_core_ed25519_add(p8, p4, p4);
            if (memcmp(p8, identity, 32) != 0) {
                memcpy(out, p8, 32);
                if (trace != NULL)
                    memcpy(trace->point_before_cofactor, P, 32);
                return;
            }
        }
        if (trace != NULL)
            trace->skipped++;
        /* y + 1 mod q */
        for (int k = 0; k < 8 && ++y[k] == 0; k++)
            ;
        sub_q_if_ge(y);
    }
}
