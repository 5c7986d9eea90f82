/*
 * handshake.c - the transit relay's handshake line (see handshake.h).
 *
 * The line is matched one byte at a time against its fixed shape, so no
 * bytes are buffered beyond the token and side themselves.
 */
#include "apps/relay/handshake.h"

#include <string.h>

static const char PREFIX[] = "please relay "; /* 13 bytes, then the token */
static const char FOR_SIDE[] = " for side ";  /* 10 bytes, then the side */
#define P_LEN    (sizeof(PREFIX) - 1)
#define FS_LEN   (sizeof(FOR_SIDE) - 1)
#define TOK_END  (P_LEN + TR_TOKEN_LEN)  /* 77: '\n' (legacy) or ' ' */
#define SIDE_AT  (TOK_END + FS_LEN)      /* 87 */
#define SIDE_END (SIDE_AT + TR_SIDE_LEN) /* 103: the new form's '\n' */

void tr_hs_init(tr_hs_t *hs)
{
    memset(hs, 0, sizeof(*hs));
}

static int word(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Take byte c at position hs->len: 1 taken, 0 line complete with it, -1 bad. */
static int step(tr_hs_t *hs, uint8_t c)
{
    uint32_t i = hs->len;
    if (i < P_LEN) {
        if (c != (uint8_t)PREFIX[i])
            return -1;
    } else if (i < TOK_END) {
        if (!word(c))
            return -1;
        hs->token[i - P_LEN] = (char)c;
    } else if (i == TOK_END) {
        if (c == '\n')
            return 0;
        if (c != (uint8_t)FOR_SIDE[0])
            return -1;
        hs->has_side = 1;
    } else if (i < SIDE_AT) {
        if (c != (uint8_t)FOR_SIDE[i - TOK_END])
            return -1;
    } else if (i < SIDE_END) {
        if (!word(c))
            return -1;
        hs->side[i - SIDE_AT] = (char)c;
    } else {
        return c == '\n' ? 0 : -1;
    }
    hs->len = i + 1;
    return 1;
}

tr_hs_result_t tr_hs_feed(tr_hs_t *hs, const uint8_t *p, size_t n, size_t *used)
{
    size_t k = 0;
    if (hs->result == TR_HS_DONE && n > 0)
        hs->result = TR_HS_IMPATIENT;
    if (hs->result != TR_HS_MORE)
        goto out;
    for (; k < n; k++) {
        int r = step(hs, p[k]);
        if (r < 0) {
            hs->result = TR_HS_BAD;
            break;
        }
        if (r == 0) {
            hs->len++;
            k++;
            hs->token[TR_TOKEN_LEN] = 0;
            hs->side[hs->has_side ? TR_SIDE_LEN : 0] = 0;
            hs->result = k < n ? TR_HS_IMPATIENT : TR_HS_DONE;
            break;
        }
    }
out:
    if (used != NULL)
        *used = k;
    return (tr_hs_result_t)hs->result;
}

const char *tr_hs_result_name(tr_hs_result_t r)
{
    switch (r) {
    case TR_HS_MORE:
        return "more";
    case TR_HS_DONE:
        return "done";
    case TR_HS_BAD:
        return "bad";
    case TR_HS_IMPATIENT:
        return "impatient";
    }
    return "?";
}
