#include "dispatch/mpcheck.h"

#include "runtime/error.h"

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int wb_mpcheck(const uint8_t *buf, size_t len)
{
    size_t off = 0;
    uint64_t pending = 1; /* objects still to read */

    while (pending > 0) {
        if (off >= len)
            return WB_EPROTO;
        uint8_t t = buf[off++];
        size_t rest = len - off;
        uint64_t skip = 0, add = 0;
        int lenbytes = 0;
        pending--;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool */
        } else if (t >= 0x80 && t <= 0x8f) {
            add = 2u * (t & 0x0f);
        } else if (t >= 0x90 && t <= 0x9f) {
            add = t & 0x0f;
        } else if (t >= 0xa0 && t <= 0xbf) {
            skip = t & 0x1f;
        } else {
            switch (t) {
            case 0xc4:
            case 0xd9:
                lenbytes = 1;
                break; /* bin8, str8 */
            case 0xc5:
            case 0xda:
                lenbytes = 2;
                break; /* bin16, str16 */
            case 0xc6:
            case 0xdb:
                lenbytes = 4;
                break; /* bin32, str32 */
            case 0xc7:
                lenbytes = 1;
                skip = 1;
                break; /* ext8: length, type */
            case 0xc8:
                lenbytes = 2;
                skip = 1;
                break;
            case 0xc9:
                lenbytes = 4;
                skip = 1;
                break;
            case 0xca:
                skip = 4;
                break;
            case 0xcb:
                skip = 8;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break; /* fixext: type + data */
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
            case 0xdd: /* array16/32 */
            case 0xde:
            case 0xdf: { /* map16/32 */
                int n = (t == 0xdc || t == 0xde) ? 2 : 4;
                if (rest < (size_t)n)
                    return WB_EPROTO;
                add = be(buf + off, n) * (t >= 0xde ? 2u : 1u);
                off += (size_t)n;
                rest -= (size_t)n;
                break;
            }
            default: /* 0xc1 is never used */
                return WB_EPROTO;
            }
        }
        if (lenbytes) {
            if (rest < (size_t)lenbytes)
                return WB_EPROTO;
            skip += be(buf + off, lenbytes);
            off += (size_t)lenbytes;
            rest -= (size_t)lenbytes;
        }
        if (skip > rest)
            return WB_EPROTO;
        off += (size_t)skip;
        rest -= (size_t)skip;
        /* Every element still owed needs at least one byte of what is left. */
        pending += add;
        if (pending > rest)
            return WB_EPROTO;
    }
    return off == len ? 0 : WB_EPROTO;
}
