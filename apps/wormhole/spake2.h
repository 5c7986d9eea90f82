/*
 * spake2.h - SPAKE2 exactly as python-spake2 0.8's SPAKE2_Symmetric over
 * Ed25519, the PAKE of Magic Wormhole (shared notes, wormhole.md 2.4-2.5).
 *
 * This is not RFC 9382, and must not be "fixed" towards it: the Python
 * client computes the other half of every exchange. What it does:
 *
 *   w  = int_be(HKDF(ikm=password, info="SPAKE2 pw", L=48)) mod L
 *   x  = int_be(64 bytes of entropy) mod L          (no clamping)
 *   X* = x*B + w*S, S a fixed element (python-spake2's hash-to-point of
 *        "symmetric"); the message is 'S' (0x53) || encode(X*), 33 bytes
 *   K  = x*(Y* - w*S), Y* the peer's element, no cofactor multiplication
 *   key = SHA256(SHA256(password) || SHA256(idS) || min(X*,Y*) || max(X*,Y*)
 *                || encode(K)), the two elements compared bytewise.
 *
 * The peer's element is refused unless it is a canonical encoding of a point
 * of the prime-order subgroup other than the identity, and unless it differs
 * from our own (a reflected message). docs/wormhole-crypto.md lists every
 * quirk and the one place this is stricter than python-spake2.
 *
 * A wb_spake2_t is one side of one exchange: wb_spake2_init (or a zeroed
 * struct), wb_spake2_start once, then wb_spake2_finish once (even when it fails: a retry would be
 * an oracle). Both wipe what they no longer need; wb_spake2_fini wipes the rest and may be called
 * at any point. The struct is owned by the caller; nothing is allocated. Any thread, one thread per
 * wb_spake2_t at a time.
 */
#ifndef WB_WORMHOLE_SPAKE2_H
#define WB_WORMHOLE_SPAKE2_H

#include <stddef.h>
#include <stdint.h>

#define WB_SPAKE2_MSG_LEN     33 /* side byte + element */
#define WB_SPAKE2_KEY_LEN     32
#define WB_SPAKE2_ENTROPY_LEN 64
#define WB_SPAKE2_SIDE_SYM    0x53 /* 'S' */

typedef struct {
    int state;             /* 0 fresh, 1 started, 2 finished (whatever the outcome) */
    uint8_t pw_hash[32];   /* SHA256(password): all of the password the transcript needs */
    uint8_t id_hash[32];   /* SHA256(idSymmetric) */
    uint8_t pw_scalar[32]; /* w, little-endian, reduced mod L */
    uint8_t pw_S[32];      /* w*S */
    uint8_t x[32];         /* our private scalar, little-endian, reduced mod L */
    uint8_t outbound[32];  /* our element X* (the message without its side byte) */
} wb_spake2_t;

/* A fresh state (all zero). */
void wb_spake2_init(wb_spake2_t *st);

/* Start one side. password and id are bytes (Magic Wormhole passes the code
 * normalised to NFC UTF-8, code.h wb_wh_code_password, and the appid); either
 * may be empty. entropy: WB_SPAKE2_ENTROPY_LEN bytes read as the private
 * scalar, or NULL for fresh random bytes (only tests pass entropy). Writes
 * the message for the peer to out_msg. Returns 0; WB_ESTATE when st is not
 * fresh; WB_EINVAL in the impossible cases where w or x reduces
 * to zero; WB_ESYS when libsodium cannot initialise. On error st holds no
 * secrets. */
int wb_spake2_start(wb_spake2_t *st, const uint8_t *password, size_t pwlen, const uint8_t *id,
                    size_t idlen, const uint8_t *entropy, uint8_t out_msg[WB_SPAKE2_MSG_LEN]);

/* Finish with the peer's message peer[0..len). Returns 0 with the shared
 * key in key_out; otherwise a negative code, key_out zeroed, and the reason
 * in err (when err is not NULL):
 *   WB_ESTATE  not started, or finish was already called
 *   WB_EPROTO  not 33 bytes, or a side byte other than 'S' ("A"/"B" are the
 *              asymmetric protocol's sides)
 *   WB_EINVAL  the element is not acceptable: non-canonical encoding, not on
 *              the curve, of small order (identity included), outside the
 *              prime-order subgroup, equal to our own element (reflection),
 *              or cancelling w*S out
 * The secrets are wiped in every case; only wb_spake2_fini remains to call. */
__attribute__((warn_unused_result)) int wb_spake2_finish(wb_spake2_t *st, const uint8_t *peer,
                                                         size_t len,
                                                         uint8_t key_out[WB_SPAKE2_KEY_LEN],
                                                         char *err, size_t errlen);

/* Wipe st (any state). */
void wb_spake2_fini(wb_spake2_t *st);

/* w for a password: int_be(HKDF(password, 48, "SPAKE2 pw")) mod L,
 * little-endian. */
void wb_spake2_password_scalar(const uint8_t *password, size_t pwlen, uint8_t out[32]);

/* --- for tests: intermediate values of the vectors -------------------- */

/* The blinding element S wormhole uses (python-spake2's
 * arbitrary_element(b"symmetric")), hard-coded. */
extern const uint8_t wb__spake2_S[32];

/* python-spake2's hash-to-point ("arbitrary element"): y0 =
 * int_be(HKDF(seed, 48, "SPAKE2 arbitrary element")) mod q; for y = y0,
 * y0+1, ...: the point with that y and even x, skipped when not on the
 * curve or when 8*P is the identity; the result is 8*P. Slow, variable
 * time: for public seeds only. Each trace field may be NULL. */
typedef struct {
    uint8_t okm[48];  /* the HKDF output */
    uint8_t y0[32];   /* okm mod q, little-endian */
    unsigned skipped; /* candidates rejected before the one used */
    uint8_t point_before_cofactor[32];
} wb_spake2_h2p_trace_t;
void wb__spake2_arbitrary_element(const uint8_t *seed, size_t seedlen, uint8_t out[32],
                                  wb_spake2_h2p_trace_t *trace);

/* wb_spake2_finish that also gives K (32 bytes) and the transcript hashed
 * into the key (160 bytes); either may be NULL. */
int wb__spake2_finish(wb_spake2_t *st, const uint8_t *peer, size_t len,
                      uint8_t key_out[WB_SPAKE2_KEY_LEN], uint8_t *k_out, uint8_t *transcript_out,
                      char *err, size_t errlen);

#endif
