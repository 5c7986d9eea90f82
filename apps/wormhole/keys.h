/*
 * keys.h - Magic Wormhole's key schedule and message boxes, byte for byte as
 * magic-wormhole 0.12.0 (wormhole._key, wormhole.util, wormhole.transit;
 * shared notes, wormhole.md 2.6-2.7 and 3.2).
 *
 *   HKDF            RFC 5869 HKDF-SHA256; no salt means 32 zero bytes
 *   derive_key      HKDF(ikm=key, info=purpose, L=n), no salt
 *   phase key       derive_key(key, "wormhole:phase:" || SHA256(side) ||
 *                   SHA256(phase)), with the SENDER's side for both ends
 *   verifier        derive_key(key, "wormhole:verifier")
 *   transit key     derive_key(key, APPID "/transit-key")
 *   body            nonce(24) || crypto_secretbox(phase key, nonce, plaintext),
 *                   i.e. nonce || MAC(16) || XSalsa20 ciphertext
 *
 * libsodium 1.0.18 has no HKDF, so it is built here on
 * crypto_auth_hmacsha256. Pure functions over caller buffers: no allocation,
 * no state, any thread. Every intermediate key is wiped before returning.
 */
#ifndef WB_WORMHOLE_KEYS_H
#define WB_WORMHOLE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "sockets/hkdf.h"

#define WB_WH_KEY_LEN           32
#define WB_WH_NONCE_LEN         24
#define WB_WH_MAC_LEN           16
#define WB_WH_BOX_OVERHEAD      (WB_WH_NONCE_LEN + WB_WH_MAC_LEN) /* body = plaintext + 40 */
#define WB_WH_PHASE_PURPOSE_LEN (15 + 32 + 32)

/* The file-transfer CLI's appid. Python derives the transit key from this
 * string even when run with --appid (upstream bug #339): pass it to
 * wb_wh_transit_key whatever appid the mailbox uses. */
#define WB_WH_APPID_XFER "lothar.com/wormhole/text-or-file-xfer"

/* wormhole._key.derive_key: HKDF(key, outlen, purpose). Returns 0 or
 * WB_EINVAL (outlen > WB_HKDF_MAX). Purposes that come from text (the
 * application's Wormhole.derive_key) are NFC + UTF-8 first: code.h. */
int wb_wh_derive_key(const uint8_t key[WB_WH_KEY_LEN], const void *purpose, size_t purposelen,
                     uint8_t *out, size_t outlen);

/* The purpose bytes of a phase key: "wormhole:phase:" || SHA256(side) ||
 * SHA256(phase). side and phase must be ASCII (Python encodes them as
 * ASCII and fails otherwise): WB_EINVAL if not. */
int wb_wh_phase_purpose(const char *side, size_t sidelen, const char *phase, size_t phaselen,
                        uint8_t out[WB_WH_PHASE_PURPOSE_LEN]);

/* wormhole._key.derive_phase_key. side is the side that SENDS the message,
 * also when decrypting the peer's. Returns 0 or WB_EINVAL (non-ASCII). */
int wb_wh_phase_key(const uint8_t key[WB_WH_KEY_LEN], const char *side, size_t sidelen,
                    const char *phase, size_t phaselen, uint8_t out[WB_WH_KEY_LEN]);

/* The verifier both CLIs show with --verify (as 64 hex digits). */
void wb_wh_verifier(const uint8_t key[WB_WH_KEY_LEN], uint8_t out[WB_WH_KEY_LEN]);

/* The transit key: derive_key(key, appid "/transit-key"); appid is UTF-8,
 * normally WB_WH_APPID_XFER (see there). */
void wb_wh_transit_key(const uint8_t key[WB_WH_KEY_LEN], const char *appid,
                       uint8_t out[WB_WH_KEY_LEN]);

/* Keys derived from the transit key (HKDF(tkey, 32, info)). The handshake
 * lines carry the first three in hex; records are sealed with the last two. */
typedef enum {
    WB_WH_TRANSIT_SENDER_HANDSHAKE,   /* "transit_sender" */
    WB_WH_TRANSIT_RECEIVER_HANDSHAKE, /* "transit_receiver" */
    WB_WH_TRANSIT_RELAY_TOKEN,        /* "transit_relay_token" */
    WB_WH_TRANSIT_RECORD_SENDER,      /* "transit_record_sender_key": sender -> receiver */
    WB_WH_TRANSIT_RECORD_RECEIVER,    /* "transit_record_receiver_key": receiver -> sender */
} wb_wh_transit_purpose_t;
void wb_wh_transit_subkey(const uint8_t tkey[WB_WH_KEY_LEN], wb_wh_transit_purpose_t which,
                          uint8_t out[WB_WH_KEY_LEN]);

/* Seal pt[0..ptlen) into out as nonce || MAC || ciphertext (ptlen + 40
 * bytes, *outlen set). nonce: 24 bytes, or NULL for fresh random ones (only
 * tests pass a nonce; reusing one under a key is fatal). Returns 0;
 * WB_EINVAL when outcap < ptlen + WB_WH_BOX_OVERHEAD (out untouched);
 * WB_ESYS when libsodium cannot initialise. pt and out must not overlap. */
int wb_wh_box_seal(const uint8_t key[WB_WH_KEY_LEN], const uint8_t *pt, size_t ptlen,
                   const uint8_t *nonce, uint8_t *out, size_t outcap, size_t *outlen);

/* Open a body made by wb_wh_box_seal (or Python's encrypt_data) into
 * out[0..len-40), *outlen set. Returns 0, or with the reason in err (when
 * err is not NULL) and nothing written to out:
 *   WB_EPROTO    shorter than 40 bytes (no room for nonce and MAC)
 *   WB_ECORRUPT  the MAC does not verify: the peer has another key (a
 *                different code: the Python client calls this "scary") or
 *                the body was altered
 *   WB_EINVAL    outcap < len - 40
 * body and out must not overlap. */
__attribute__((warn_unused_result)) int wb_wh_box_open(const uint8_t key[WB_WH_KEY_LEN],
                                                       const uint8_t *body, size_t len,
                                                       uint8_t *out, size_t outcap, size_t *outlen,
                                                       char *err, size_t errlen);

#endif
