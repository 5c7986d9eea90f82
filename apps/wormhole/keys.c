/*
 * keys.c - the wormhole key schedule and secretbox bodies.
 */
#include "apps/wormhole/keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "runtime/assert.h"
#include "runtime/error.h"

int wb_wh_derive_key(const uint8_t key[WB_WH_KEY_LEN], const void *purpose, size_t purposelen,
                     uint8_t *out, size_t outlen)
{
    return wb_hkdf_sha256(out, outlen, key, WB_WH_KEY_LEN, NULL, 0, purpose, purposelen);
}

static int is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

int wb_wh_phase_purpose(const char *side, size_t sidelen, const char *phase, size_t phaselen,
                        uint8_t out[WB_WH_PHASE_PURPOSE_LEN])
{
    WB_ASSERT(side != NULL || sidelen == 0);
    WB_ASSERT(phase != NULL || phaselen == 0);
    if (!is_ascii(side, sidelen) || !is_ascii(phase, phaselen))
        return WB_EINVAL;
    memcpy(out, "wormhole:phase:", 15);
    crypto_hash_sha256(out + 15, (const uint8_t *)side, sidelen);
    crypto_hash_sha256(out + 15 + 32, (const uint8_t *)phase, phaselen);
    return 0;
}

int wb_wh_phase_key(const uint8_t key[WB_WH_KEY_LEN], const char *side, size_t sidelen,
                    const char *phase, size_t phaselen, uint8_t out[WB_WH_KEY_LEN])
{
    uint8_t purpose[WB_WH_PHASE_PURPOSE_LEN];
    int rc = wb_wh_phase_purpose(side, sidelen, phase, phaselen, purpose);
    if (rc != 0)
        return rc;
    return wb_wh_derive_key(key, purpose, sizeof(purpose), out, WB_WH_KEY_LEN);
}

void wb_wh_verifier(const uint8_t key[WB_WH_KEY_LEN], uint8_t out[WB_WH_KEY_LEN])
{
    static const char purpose[] = "wormhole:verifier";
    (void)wb_wh_derive_key(key, purpose, sizeof(purpose) - 1, out, WB_WH_KEY_LEN);
}

void wb_wh_transit_key(const uint8_t key[WB_WH_KEY_LEN], const char *appid,
                       uint8_t out[WB_WH_KEY_LEN])
{
    WB_ASSERT(appid != NULL);
    wb_hkdf_part_t purpose[2] = {{appid, strlen(appid)}, {"/transit-key", 12}};
    (void)wb_hkdf_sha256_parts(out, WB_WH_KEY_LEN, key, WB_WH_KEY_LEN, NULL, 0, purpose, 2);
}

void wb_wh_transit_subkey(const uint8_t tkey[WB_WH_KEY_LEN], wb_wh_transit_purpose_t which,
                          uint8_t out[WB_WH_KEY_LEN])
{
    static const char *const info[] = {
        [WB_WH_TRANSIT_SENDER_HANDSHAKE] = "transit_sender",
        [WB_WH_TRANSIT_RECEIVER_HANDSHAKE] = "transit_receiver",
        [WB_WH_TRANSIT_RELAY_TOKEN] = "transit_relay_token",
        [WB_WH_TRANSIT_RECORD_SENDER] = "transit_record_sender_key",
        [WB_WH_TRANSIT_RECORD_RECEIVER] = "transit_record_receiver_key",
    };
    WB_ASSERT((unsigned)which < sizeof(info) / sizeof(info[0]));
    (void)wb_wh_derive_key(tkey, info[which], strlen(info[which]), out, WB_WH_KEY_LEN);
}

int wb_wh_box_seal(const uint8_t key[WB_WH_KEY_LEN], const uint8_t *pt, size_t ptlen,
                   const uint8_t *nonce, uint8_t *out, size_t outcap, size_t *outlen)
{
    WB_ASSERT(key != NULL && out != NULL && outlen != NULL);
    WB_ASSERT(pt != NULL || ptlen == 0);
    if (ptlen > SIZE_MAX - WB_WH_BOX_OVERHEAD || outcap < ptlen + WB_WH_BOX_OVERHEAD)
        return WB_EINVAL;
    if (nonce != NULL) {
        memcpy(out, nonce, WB_WH_NONCE_LEN);
    } else {
        if (sodium_init() < 0)
            return WB_ESYS;
        randombytes_buf(out, WB_WH_NONCE_LEN);
    }
    /* crypto_secretbox_easy never fails for lengths that fit in memory. */
    (void)crypto_secretbox_easy(out + WB_WH_NONCE_LEN, pt, ptlen, out, key);
    *outlen = ptlen + WB_WH_BOX_OVERHEAD;
    return 0;
}

int wb_wh_box_open(const uint8_t key[WB_WH_KEY_LEN], const uint8_t *body, size_t len, uint8_t *out,
                   size_t outcap, size_t *outlen, char *err, size_t errlen)
{
    WB_ASSERT(key != NULL && outlen != NULL);
    WB_ASSERT(body != NULL || len == 0);
    if (len < WB_WH_BOX_OVERHEAD) {
        wb_errf(err, errlen, "encrypted body is %zu bytes, shorter than nonce and MAC (%d)", len,
                WB_WH_BOX_OVERHEAD);
        return WB_EPROTO;
    }
    size_t n = len - WB_WH_BOX_OVERHEAD;
    if (outcap < n) {
        wb_errf(err, errlen, "plaintext of %zu bytes does not fit in %zu", n, outcap);
        return WB_EINVAL;
    }
    WB_ASSERT(out != NULL || n == 0);
    uint8_t dummy;
    if (crypto_secretbox_open_easy(out != NULL ? out : &dummy, body + WB_WH_NONCE_LEN,
                                   len - WB_WH_NONCE_LEN, body, key) != 0) {
        wb_errf(err, errlen, "decryption failed: wrong key (different code?) or altered message");
        return WB_ECORRUPT;
    }
    *outlen = n;
    return 0;
}
