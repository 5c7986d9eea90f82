/*
 * fuzz_relay_handshake.c - the transit relay's handshake parser
 * (apps/relay/handshake.h) fed arbitrary bytes in arbitrary pieces, checked
 * against a one-pass reference that reads the whole input at once.
 *
 * Input: byte 0 seeds the piece sizes (1..16 bytes, and empty feeds), the
 * rest is the stream. Checked: the result after all pieces equals the
 * reference's; `used` never exceeds a piece and covers it for MORE; DONE
 * comes with the exact token and side of the input's line and only when
 * the line is all the input; BAD and IMPATIENT stay; nothing is read past
 * a piece (ASan).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/relay/handshake.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_relay_handshake: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #x);                                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int word(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int all_word(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!word(p[i]))
            return 0;
    return 1;
}

/* Length of the valid line the input starts with (78 or 104), or 0; *more:
 * the input is a proper prefix of some valid line. */
static size_t ref_line(const uint8_t *p, size_t n, int *more)
{
    static const char pre[] = "please relay ", fs[] = " for side ";
    *more = 0;
    uint8_t line[TR_HS_MAX_LEN];
    /* Build the longest candidate: is p a prefix of legacy or new form? */
    for (int form = 0; form < 2; form++) {
        size_t len = form ? TR_HS_MAX_LEN : TR_HS_LEGACY_LEN;
        size_t k = n < len ? n : len;
        int ok = 1;
        for (size_t i = 0; i < k && ok; i++) {
            uint8_t c = p[i];
            if (i < 13)
                ok = c == (uint8_t)pre[i];
            else if (i < 77)
                ok = word(c);
            else if (!form)
                ok = c == '\n';
            else if (i < 87)
                ok = c == (uint8_t)fs[i - 77];
            else if (i < 103)
                ok = word(c);
            else
                ok = c == '\n';
        }
        (void)line;
        if (ok && n >= len)
            return len;
        if (ok && n < len)
            *more = 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t seed = data[0] * 2654435761u + 1;
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    tr_hs_t hs;
    tr_hs_init(&hs);
    tr_hs_result_t r = TR_HS_MORE;
    size_t off = 0;
    int saw_final = 0;
    while (off < n) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = (seed >> 16) % 17; /* 0..16 */
        if (piece > n - off)
            piece = n - off;
        size_t used = 12345;
        tr_hs_result_t prev = r;
        r = tr_hs_feed(&hs, p + off, piece, &used);
        CHECK(used <= piece);
        if (r == TR_HS_MORE)
            CHECK(used == piece);
        if (prev == TR_HS_BAD)
            CHECK(r == TR_HS_BAD);
        if (prev == TR_HS_IMPATIENT)
            CHECK(r == TR_HS_IMPATIENT);
        if (prev == TR_HS_DONE)
            CHECK(r == (piece > 0 ? TR_HS_IMPATIENT : TR_HS_DONE));
        if (r == TR_HS_BAD || r == TR_HS_IMPATIENT)
            saw_final = 1;
        off += piece;
        (void)saw_final;
    }

    int more;
    size_t len = ref_line(p, n, &more);
    if (len != 0) {
        CHECK(r == (n == len ? TR_HS_DONE : TR_HS_IMPATIENT));
        CHECK(memcmp(hs.token, p + 13, TR_TOKEN_LEN) == 0 && hs.token[TR_TOKEN_LEN] == 0);
        CHECK(all_word((const uint8_t *)hs.token, TR_TOKEN_LEN));
        if (len == TR_HS_MAX_LEN) {
            CHECK(hs.has_side && memcmp(hs.side, p + 87, TR_SIDE_LEN) == 0);
            CHECK(hs.side[TR_SIDE_LEN] == 0);
        } else {
            CHECK(!hs.has_side && hs.side[0] == 0);
        }
    } else if (more) {
        CHECK(r == TR_HS_MORE);
    } else {
        CHECK(r == TR_HS_BAD);
    }
    return 0;
}
