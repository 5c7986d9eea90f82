/*
 * fuzz_spake2.c - the wormhole decoders of untrusted bytes: the peer's pake
 * message, encrypted mailbox bodies, and typed-in codes.
 *
 * Input: byte 0 & 3 picks the target, the rest is its input.
 *  0  wb_spake2_finish after a fixed start (spake2.json case 0, side 1).
 *     Checked against a reference built from libsodium's own predicates: it
 *     succeeds exactly when the message is 33 bytes, 'S', a valid point of
 *     the prime-order subgroup, not our element and not w*S; on failure the
 *     key is zero and a reason is given; a second finish is refused.
 *  1  wb_wh_box_open under a fixed key. Refused as too short exactly below
 *     40 bytes; what opens seals back to the same bytes with its nonce.
 *  2  codes: validate, check_words, the NFC password (normalising twice
 *     changes nothing more), completion (sorted, each extending the text up
 *     to its last word).
 *  3  phase keys: refused exactly when side or phase is not ASCII.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "apps/wormhole/code.h"
#include "apps/wormhole/keys.h"
#include "apps/wormhole/spake2.h"
#include "runtime/error.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_spake2: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char code[] = "4-purple-sausages";
static const uint8_t entropy[64] = {
    0xe3, 0x2f, 0xe8, 0xab, 0x13, 0xb1, 0x03, 0xde, 0xd2, 0xac, 0x63, 0x0a, 0xd5, 0x55, 0x79, 0x7e,
    0xa9, 0x82, 0xa9, 0x9d, 0xdc, 0x0d, 0x8b, 0xc3, 0x55, 0x0f, 0x8f, 0x40, 0x84, 0xce, 0xa7, 0x17,
    0x88, 0x3f, 0xea, 0x4a, 0xfb, 0x9d, 0xb3, 0x8f, 0x7a, 0x0a, 0x03, 0xc3, 0xc1, 0xde, 0xd7, 0x4a,
    0xe2, 0xe9, 0xd4, 0xf7, 0x30, 0x91, 0x17, 0xd0, 0x16, 0xd0, 0x28, 0xe3, 0x9a, 0xe4, 0x4e, 0xa9,
};

static void fuzz_finish(const uint8_t *d, size_t n)
{
    wb_spake2_t st;
    uint8_t own[WB_SPAKE2_MSG_LEN], key[32], pw_S[32];
    char err[200] = "";
    wb_spake2_init(&st);
    CHECK(wb_spake2_start(&st, (const uint8_t *)code, sizeof(code) - 1,
                          (const uint8_t *)WB_WH_APPID_XFER, strlen(WB_WH_APPID_XFER), entropy,
                          own) == 0);
    memcpy(pw_S, st.pw_S, 32);
    int rc = wb_spake2_finish(&st, d, n, key, err, sizeof(err));

    int want_ok = n == WB_SPAKE2_MSG_LEN && d[0] == 'S' &&
                  crypto_core_ed25519_is_valid_point(d + 1) && memcmp(d + 1, own + 1, 32) != 0 &&
                  memcmp(d + 1, pw_S, 32) != 0;
    if (rc == 0) {
        CHECK(want_ok);
        CHECK(!sodium_is_zero(key, 32));
    } else {
        CHECK(!want_ok);
        CHECK(rc == WB_EPROTO || rc == WB_EINVAL);
        CHECK(rc == WB_EPROTO ? (n != WB_SPAKE2_MSG_LEN || d[0] != 'S') : d[0] == 'S');
        CHECK(sodium_is_zero(key, 32));
        CHECK(err[0] != '\0');
    }
    CHECK(sodium_is_zero(st.x, 32) && sodium_is_zero(st.pw_scalar, 32));
    CHECK(wb_spake2_finish(&st, d, n, key, NULL, 0) == WB_ESTATE);
    wb_spake2_fini(&st);
}

static void fuzz_open(const uint8_t *d, size_t n)
{
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    uint8_t *out = malloc(n + 1), *again = malloc(n + 1);
    size_t len = 0, len2 = 0;
    char err[200] = "";
    CHECK(out != NULL && again != NULL);
    int rc = wb_wh_box_open(key, d, n, out, n, &len, err, sizeof(err));
    if (n < WB_WH_BOX_OVERHEAD) {
        CHECK(rc == WB_EPROTO);
    } else if (rc == 0) {
        CHECK(len == n - WB_WH_BOX_OVERHEAD);
        CHECK(wb_wh_box_seal(key, out, len, d, again, n, &len2) == 0);
        CHECK(len2 == n && memcmp(again, d, n) == 0);
    } else {
        CHECK(rc == WB_ECORRUPT);
    }
    CHECK(rc == 0 || err[0] != '\0');
    free(out);
    free(again);
}

static void fuzz_code(const uint8_t *d, size_t n)
{
    const char *s = (const char *)d;
    char err[200];
    int rc = wb_wh_code_validate(s, n, err, sizeof(err));
    CHECK(rc == 0 || rc == WB_EINVAL);
    rc = wb_wh_code_check_words(s, n, err, sizeof(err));
    CHECK(rc == 0 || rc == WB_EINVAL || rc == WB_ENOENT);

    uint8_t pw[256], pw2[256];
    size_t len = 0, len2 = 0;
    rc = wb_wh_code_password(s, n, pw, sizeof(pw), &len);
    CHECK(rc == 0 || rc == WB_EINVAL || rc == WB_ETOOBIG);
    if (rc == 0) {
        CHECK(wb_wh_code_password((const char *)pw, len, pw2, sizeof(pw2), &len2) == 0);
        CHECK(len2 == len && memcmp(pw, pw2, len) == 0);
    }

    const char *nps[] = {"1", "12", "123", "4"};
    wb_wh_completions_t c;
    unsigned nwords = n > 0 ? d[0] % 5 : 2;
    rc = wb_wh_code_complete(s, n, nps, 4, nwords, &c);
    CHECK(rc == 0 || rc == WB_EINVAL);
    if (rc == 0) {
        size_t keep = n;
        while (keep > 0 && s[keep - 1] != '-')
            keep--;
        for (size_t i = 0; i < c.n; i++) {
            CHECK(strncmp(c.items[i], s, keep) == 0 || keep == 0);
            CHECK(i == 0 || strcmp(c.items[i - 1], c.items[i]) < 0);
        }
        wb_wh_completions_fini(&c);
    }
}

static void fuzz_phase_key(const uint8_t *d, size_t n)
{
    static const uint8_t key[32] = {7};
    size_t split = n > 0 ? d[0] % (n + 1) : 0;
    const char *side = (const char *)d, *phase = (const char *)d + split;
    uint8_t out[32];
    int ascii = 1;
    for (size_t i = 0; i < n; i++)
        ascii &= d[i] < 0x80;
    int rc = wb_wh_phase_key(key, side, split, phase, n - split, out);
    CHECK(ascii ? rc == 0 : rc == WB_EINVAL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] & 3) {
    case 0:
        fuzz_finish(d, n);
        break;
    case 1:
        fuzz_open(d, n);
        break;
    case 2:
        fuzz_code(d, n);
        break;
    default:
        fuzz_phase_key(d, n);
        break;
    }
    return 0;
}
