/*
 * hkdf.h - RFC 5869 HKDF-SHA256 (Debian 12's libsodium 1.0.18 has none of
 * its own), for the secret connection's key schedule (secret.h) and the
 * wormhole's (apps/wormhole/keys.h).
 *
 * Threads: pure functions, any thread.
 */
#ifndef WB_HKDF_H
#define WB_HKDF_H

#include <stddef.h>
#include <stdint.h>

#define WB_HKDF_MAX (255 * 32) /* longest HKDF-SHA256 output */

/* HKDF-SHA256 of ikm into out[0..outlen). salt NULL or empty means 32 zero
 * bytes. Returns 0, or WB_EINVAL when outlen > WB_HKDF_MAX (out untouched). */
int wb_hkdf_sha256(uint8_t *out, size_t outlen, const uint8_t *ikm, size_t ikmlen,
                   const uint8_t *salt, size_t saltlen, const uint8_t *info, size_t infolen);

/* The same with the info given in parts (streamed into HMAC, not
 * assembled: purposes built from strings). */
typedef struct {
    const void *p;
    size_t n;
} wb_hkdf_part_t;

int wb_hkdf_sha256_parts(uint8_t *out, size_t outlen, const uint8_t *ikm, size_t ikmlen,
                         const uint8_t *salt, size_t saltlen, const wb_hkdf_part_t *info,
                         size_t nparts);

#endif
