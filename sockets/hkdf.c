/*
 * hkdf.c - RFC 5869 HKDF-SHA256 on libsodium's HMAC-SHA256. See hkdf.h.
 */
#include "sockets/hkdf.h"

#include <sodium.h>
#include <string.h>

#include "runtime/assert.h"
#include "runtime/error.h"


int wb_hkdf_sha256_parts(uint8_t *out, size_t outlen, const uint8_t *ikm, size_t ikmlen, const uint8_t *salt,
                size_t saltlen, const wb_hkdf_part_t *info, size_t nparts)
{
    WB_ASSERT(out != NULL || outlen == 0);
    WB_ASSERT(ikm != NULL || ikmlen == 0);
    if (outlen > WB_HKDF_MAX)
        return WB_EINVAL;

    /* Extract. HMAC pads its key with zeros to the block size, so an empty
     * salt and RFC 5869's 32 zero bytes are the same key; the RFC's is used. */
    static const uint8_t zero_salt[crypto_auth_hmacsha256_BYTES];
    if (salt == NULL || saltlen == 0) {
        salt = zero_salt;
        saltlen = sizeof(zero_salt);
    }
    uint8_t prk[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state h;
    crypto_auth_hmacsha256_init(&h, salt, saltlen);
    crypto_auth_hmacsha256_update(&h, ikm, ikmlen);
    crypto_auth_hmacsha256_final(&h, prk);

    /* Expand: T(i) = HMAC(PRK, T(i-1) || info || i), i = 1..255. */
    uint8_t t[crypto_auth_hmacsha256_BYTES];
    size_t done = 0;
    for (unsigned i = 1; done < outlen; i++) {
        uint8_t ctr = (uint8_t)i;
        crypto_auth_hmacsha256_init(&h, prk, sizeof(prk));
        if (i > 1)
            crypto_auth_hmacsha256_update(&h, t, sizeof(t));
        for (size_t k = 0; k < nparts; k++)
            crypto_auth_hmacsha256_update(&h, info[k].p, info[k].n);
        crypto_auth_hmacsha256_update(&h, &ctr, 1);
        crypto_auth_hmacsha256_final(&h, t);
        size_t n = outlen - done < sizeof(t) ? outlen - done : sizeof(t);
        memcpy(out + done, t, n);
        done += n;
    }
    sodium_memzero(prk, sizeof(prk));
    sodium_memzero(t, sizeof(t));
    sodium_memzero(&h, sizeof(h));
    return 0;
}

int wb_hkdf_sha256(uint8_t *out, size_t outlen, const uint8_t *ikm, size_t ikmlen,
                   const uint8_t *salt, size_t saltlen, const uint8_t *info, size_t infolen)
{
    WB_ASSERT(info != NULL || infolen == 0);
    wb_hkdf_part_t p = {info, infolen};
    return wb_hkdf_sha256_parts(out, outlen, ikm, ikmlen, salt, saltlen, &p, 1);
}

