/*
 * secret.c - secret connections: handshake, key schedule and frames. The
 * contract is in secret.h.
 */
#include "sockets/secret.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/assert.h"
#include "runtime/error.h"
#include "sockets/hkdf.h"

#define SALT    "waybill secret connection v1"
#define INFO    "keys and challenge"
#define OKM_LEN (3 * WB_SC_KEY_LEN)

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void make_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES], uint64_t ctr)
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(ctr >> (8 * i));
}

static void wipe_secrets(wb_sc_t *sc)
{
    sodium_memzero(sc->id_sk, sizeof(sc->id_sk));
    sodium_memzero(sc->eph_sk, sizeof(sc->eph_sk));
    sodium_memzero(sc->send_key, sizeof(sc->send_key));
    sodium_memzero(sc->recv_key, sizeof(sc->recv_key));
    sodium_memzero(sc->challenge, sizeof(sc->challenge));
}

/* Record a sticky error and wipe every key: the session is over. */
__attribute__((format(printf, 3, 4))) static int fail(wb_sc_t *sc, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sc->errmsg, sizeof(sc->errmsg), fmt, ap);
    va_end(ap);
    sc->err = err;
    sc->state = WB_SC_FAILED;
    wipe_secrets(sc);
    return err;
}

static void hex8(char out[9], const uint8_t *key)
{
    sodium_bin2hex(out, 9, key, 4);
}

void wb_sc_derive(const uint8_t local_eph_pk[WB_SC_KEY_LEN],
                  const uint8_t remote_eph_pk[WB_SC_KEY_LEN], const uint8_t dh[WB_SC_KEY_LEN],
                  uint8_t send_key[WB_SC_KEY_LEN], uint8_t recv_key[WB_SC_KEY_LEN],
                  uint8_t challenge[WB_SC_KEY_LEN])
{
    int local_lo = memcmp(local_eph_pk, remote_eph_pk, WB_SC_KEY_LEN) < 0;
    uint8_t ikm[3 * WB_SC_KEY_LEN], okm[OKM_LEN];
    memcpy(ikm, local_lo ? local_eph_pk : remote_eph_pk, WB_SC_KEY_LEN);
    memcpy(ikm + WB_SC_KEY_LEN, local_lo ? remote_eph_pk : local_eph_pk, WB_SC_KEY_LEN);
    memcpy(ikm + 2 * WB_SC_KEY_LEN, dh, WB_SC_KEY_LEN);
    int rc = wb_hkdf_sha256(okm, sizeof(okm), ikm, sizeof(ikm), (const uint8_t *)SALT, strlen(SALT),
                            (const uint8_t *)INFO, strlen(INFO));
    WB_ASSERT(rc == 0);
    memcpy(send_key, okm + (local_lo ? 0 : WB_SC_KEY_LEN), WB_SC_KEY_LEN);
    memcpy(recv_key, okm + (local_lo ? WB_SC_KEY_LEN : 0), WB_SC_KEY_LEN);
    memcpy(challenge, okm + 2 * WB_SC_KEY_LEN, WB_SC_KEY_LEN);
    sodium_memzero(ikm, sizeof(ikm));
    sodium_memzero(okm, sizeof(okm));
}

void wb_sc_keypair(uint8_t pk[WB_SC_KEY_LEN], uint8_t sk[WB_SC_ID_SECRET_LEN])
{
    WB_ASSERT(sodium_init() >= 0);
    crypto_sign_ed25519_keypair(pk, sk);
}

int wb_sc_init(wb_sc_t *sc, const uint8_t id_sk[WB_SC_ID_SECRET_LEN], const uint8_t *expect_pk,
               const uint8_t *eph_sk, uint8_t hello_out[WB_SC_HELLO_LEN])
{
    WB_ASSERT(sc != NULL && hello_out != NULL);
    memset(sc, 0, sizeof(*sc));
    if (id_sk == NULL)
        return WB_EINVAL;
    if (sodium_init() < 0)
        return WB_ENOMEM;

    /* A secret key whose public half is not its seed's would sign
     * challenges nobody can verify: refuse it here, not at the peer. */
    uint8_t pk[WB_SC_KEY_LEN], sk[WB_SC_ID_SECRET_LEN];
    crypto_sign_ed25519_seed_keypair(pk, sk, id_sk);
    int same = sodium_memcmp(sk, id_sk, WB_SC_ID_SECRET_LEN) == 0;
    sodium_memzero(sk, sizeof(sk));
    if (!same)
        return WB_EINVAL;

    memcpy(sc->id_sk, id_sk, WB_SC_ID_SECRET_LEN);
    memcpy(sc->id_pk, pk, WB_SC_KEY_LEN);
    if (expect_pk != NULL) {
        memcpy(sc->expect, expect_pk, WB_SC_KEY_LEN);
        sc->have_expect = 1;
    }
    if (eph_sk != NULL)
        memcpy(sc->eph_sk, eph_sk, WB_SC_KEY_LEN);
    else
        randombytes_buf(sc->eph_sk, WB_SC_KEY_LEN);
    if (crypto_scalarmult_base(sc->eph_pk, sc->eph_sk) != 0) {
        wipe_secrets(sc);
        return WB_EINVAL;
    }
    memcpy(hello_out, WB_SC_MAGIC, 4);
    memcpy(hello_out + 4, sc->eph_pk, WB_SC_KEY_LEN);
    sc->state = WB_SC_HELLO;
    return 0;
}

void wb_sc_fini(wb_sc_t *sc)
{
    if (sc->buf != NULL) {
        sodium_memzero(sc->buf, WB_SC_MAX_FRAME + WB_SC_TAG);
        free(sc->buf);
    }
    sodium_memzero(sc, sizeof(*sc));
}

const char *wb_sc_error(const wb_sc_t *sc)
{
    return sc->err != 0 ? sc->errmsg : "";
}

size_t wb_sc_sealed_size(size_t len, size_t frame_max)
{
    WB_ASSERT(frame_max >= 1 && frame_max <= WB_SC_MAX_FRAME);
    size_t frames = len / frame_max + (len % frame_max != 0);
    return len + frames * WB_SC_OVERHEAD;
}

/* One frame: header, ciphertext, tag into out (len + WB_SC_OVERHEAD bytes). */
static void seal_frame(const uint8_t key[WB_SC_KEY_LEN], uint64_t ctr, const uint8_t *plain,
                       uint32_t len, uint8_t *out)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    make_nonce(nonce, ctr);
    put_be32(out, len);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        out + WB_SC_FRAME_HEADER, out + WB_SC_FRAME_HEADER + len, NULL, plain, len, out,
        WB_SC_FRAME_HEADER, NULL, nonce, key);
}

/* Decrypt ct (sc->need bytes: ciphertext then tag) in place under the next
 * receive counter. Returns 0, or -1 when the tag fails. */
static int open_frame(wb_sc_t *sc, uint8_t *ct)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    uint32_t n = sc->need - WB_SC_TAG;
    make_nonce(nonce, sc->recv_ctr);
    return crypto_aead_chacha20poly1305_ietf_decrypt_detached(
        ct, NULL, ct, n, ct + n, sc->hdr, WB_SC_FRAME_HEADER, nonce, sc->recv_key);
}

/* Assemble the next frame from in[*off..len). in_place: in may be written,
 * and a frame lying wholly in it is handed out there; otherwise such a frame
 * is copied into scratch (room for sc->need). A frame that spans calls goes
 * to sc->buf. Returns 1 with *ct (sc->need bytes) when whole, 0 when the
 * input ran out first, or the (sticky) error. */
static int next_frame(wb_sc_t *sc, const uint8_t *in, size_t len, size_t *off, int in_place,
                      uint8_t *scratch, uint8_t **ct)
{
    if (sc->need == 0) {
        while (sc->hdr_have < WB_SC_FRAME_HEADER && *off < len)
            sc->hdr[sc->hdr_have++] = in[(*off)++];
        if (sc->hdr_have < WB_SC_FRAME_HEADER)
            return 0;
        uint32_t n = be32(sc->hdr);
        if (sc->state == WB_SC_AUTH) {
            if (n != WB_SC_AUTH_LEN)
                return fail(sc, WB_EPROTO, "auth frame of %" PRIu32 " bytes, expected %d", n,
                            WB_SC_AUTH_LEN);
        } else if (n == 0) {
            return fail(sc, WB_ETOOBIG, "frame %" PRIu64 " is empty", sc->recv_ctr);
        } else if (n > WB_SC_MAX_FRAME) {
            return fail(sc, WB_ETOOBIG, "frame of %" PRIu32 " bytes exceeds %d", n,
                        WB_SC_MAX_FRAME);
        }
        sc->need = n + WB_SC_TAG;
        sc->have = 0;
    }
    size_t left = len - *off;
    if (sc->have == 0 && left >= sc->need) {
        if (in_place) {
            *ct = (uint8_t *)in + *off;
        } else {
            memcpy(scratch, in + *off, sc->need);
            *ct = scratch;
        }
        *off += sc->need;
        return 1;
    }
    if (sc->buf == NULL) {
        sc->buf = malloc(WB_SC_MAX_FRAME + WB_SC_TAG);
        if (sc->buf == NULL)
            return fail(sc, WB_ENOMEM, "no memory for a frame buffer");
    }
    size_t n = sc->need - sc->have < left ? sc->need - sc->have : left;
    memcpy(sc->buf + sc->have, in + *off, n);
    sc->have += (uint32_t)n;
    *off += n;
    if (sc->have < sc->need)
        return 0;
    *ct = sc->buf;
    return 1;
}

static void frame_done(wb_sc_t *sc)
{
    sc->recv_ctr++;
    sc->hdr_have = 0;
    sc->need = 0;
    sc->have = 0;
}

/* The peer's hello is whole: check it, derive the keys, build our auth. */
static int on_hello(wb_sc_t *sc, uint8_t auth_out[WB_SC_AUTH_WIRE_LEN])
{
    const uint8_t *eph = sc->hello + 4;
    if (sodium_memcmp(eph, sc->eph_pk, WB_SC_KEY_LEN) == 0)
        return fail(sc, WB_EPROTO, "ephemeral key equal to ours");
    uint8_t dh[WB_SC_KEY_LEN];
    if (crypto_scalarmult(dh, sc->eph_sk, eph) != 0) {
        sodium_memzero(dh, sizeof(dh));
        return fail(sc, WB_EPROTO, "small-order ephemeral key");
    }
    memcpy(sc->remote_eph, eph, WB_SC_KEY_LEN);
    wb_sc_derive(sc->eph_pk, sc->remote_eph, dh, sc->send_key, sc->recv_key, sc->challenge);
    sodium_memzero(dh, sizeof(dh));
    sodium_memzero(sc->eph_sk, sizeof(sc->eph_sk));

    uint8_t auth[WB_SC_AUTH_LEN];
    memcpy(auth, sc->id_pk, WB_SC_KEY_LEN);
    crypto_sign_ed25519_detached(auth + WB_SC_KEY_LEN, NULL, sc->challenge, WB_SC_KEY_LEN,
                                 sc->id_sk);
    /* The identity key signs one challenge per session: drop it now. */
    sodium_memzero(sc->id_sk, sizeof(sc->id_sk));
    WB_ASSERT(sc->send_ctr == 0);
    seal_frame(sc->send_key, sc->send_ctr++, auth, WB_SC_AUTH_LEN, auth_out);
    sc->state = WB_SC_AUTH;
    return 0;
}

/* The peer's auth plaintext: its key and its signature of the challenge. */
static int on_auth(wb_sc_t *sc, const uint8_t auth[WB_SC_AUTH_LEN])
{
    const uint8_t *pk = auth, *sig = auth + WB_SC_KEY_LEN;
    if (crypto_sign_ed25519_verify_detached(sig, sc->challenge, WB_SC_KEY_LEN, pk) != 0)
        return fail(sc, WB_EPROTO, "challenge signature does not verify");
    if (sc->have_expect && sodium_memcmp(pk, sc->expect, WB_SC_KEY_LEN) != 0) {
        char got[9], want[9];
        hex8(got, pk);
        hex8(want, sc->expect);
        return fail(sc, WB_EPROTO, "peer is %s...: expected %s...", got, want);
    }
    memcpy(sc->remote_id, pk, WB_SC_KEY_LEN);
    sc->state = WB_SC_ESTABLISHED;
    return 1;
}

int wb_sc_handshake(wb_sc_t *sc, const uint8_t *in, size_t len, size_t *used,
                    uint8_t auth_out[WB_SC_AUTH_WIRE_LEN], size_t *auth_len)
{
    WB_ASSERT(in != NULL || len == 0);
    size_t off = 0;
    *used = 0;
    *auth_len = 0;
    if (sc->state == WB_SC_FAILED)
        return sc->err;
    if (sc->state != WB_SC_HELLO && sc->state != WB_SC_AUTH)
        return WB_ESTATE;

    if (sc->state == WB_SC_HELLO) {
        while (sc->hello_have < WB_SC_HELLO_LEN && off < len) {
            sc->hello[sc->hello_have++] = in[off++];
            if (sc->hello_have == 4 && memcmp(sc->hello, WB_SC_MAGIC, 4) != 0) {
                *used = off;
                return fail(sc, WB_EPROTO, "bad magic");
            }
        }
        if (sc->hello_have < WB_SC_HELLO_LEN) {
            *used = off;
            return 0;
        }
        int rc = on_hello(sc, auth_out);
        *used = off;
        if (rc < 0)
            return rc;
        *auth_len = WB_SC_AUTH_WIRE_LEN;
    }

    uint8_t scratch[WB_SC_AUTH_LEN + WB_SC_TAG], *ct = NULL;
    int rc = next_frame(sc, in, len, &off, 0, scratch, &ct);
    *used = off;
    if (rc <= 0)
        return rc;
    if (open_frame(sc, ct) != 0) {
        sodium_memzero(scratch, sizeof(scratch));
        return fail(sc, WB_EPROTO, "auth frame does not decrypt");
    }
    frame_done(sc);
    rc = on_auth(sc, ct);
    sodium_memzero(scratch, sizeof(scratch));
    return rc;
}

long wb_sc_seal(wb_sc_t *sc, const uint8_t *plain, size_t len, size_t frame_max, uint8_t *out)
{
    WB_ASSERT(plain != NULL || len == 0);
    if (sc->state == WB_SC_FAILED)
        return sc->err;
    if (sc->state != WB_SC_ESTABLISHED)
        return WB_ESTATE;
    if (frame_max < 1 || frame_max > WB_SC_MAX_FRAME)
        return WB_EINVAL;
    size_t frames = len / frame_max + (len % frame_max != 0);
    /* Refuse up front rather than write part of the data: frame number
     * UINT64_MAX is never sealed, so a counter never wraps. */
    if (frames > UINT64_MAX - sc->send_ctr)
        return fail(sc, WB_ECLOSED, "send counter at its end");
    size_t pos = 0, w = 0;
    while (pos < len) {
        uint32_t n = (uint32_t)(len - pos < frame_max ? len - pos : frame_max);
        seal_frame(sc->send_key, sc->send_ctr++, plain + pos, n, out + w);
        pos += n;
        w += n + WB_SC_OVERHEAD;
    }
    return (long)w;
}

int wb_sc_open(wb_sc_t *sc, uint8_t *in, size_t len, size_t *used, const uint8_t **plain,
               size_t *plain_len)
{
    WB_ASSERT(in != NULL || len == 0);
    size_t off = 0;
    *used = 0;
    if (sc->state == WB_SC_FAILED)
        return sc->err;
    if (sc->state != WB_SC_ESTABLISHED)
        return WB_ESTATE;
    if (sc->recv_ctr == UINT64_MAX)
        return fail(sc, WB_ECLOSED, "receive counter at its end");
    uint8_t *ct = NULL;
    int rc = next_frame(sc, in, len, &off, 1, NULL, &ct);
    *used = off;
    if (rc <= 0)
        return rc;
    if (open_frame(sc, ct) != 0)
        return fail(sc, WB_EPROTO, "frame %" PRIu64 " does not decrypt", sc->recv_ctr);
    *plain = ct;
    *plain_len = sc->need - WB_SC_TAG;
    frame_done(sc);
    return 1;
}
