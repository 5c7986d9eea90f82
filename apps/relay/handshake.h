/*
 * handshake.h - the transit relay's handshake line, without I/O.
 *
 * A client's first bytes on a relay connection are one line, either
 *   new:    "please relay " TOKEN64 " for side " SIDE16 "\n"   (104 bytes)
 *   legacy: "please relay " TOKEN64 "\n"                       (78 bytes)
 * where TOKEN64 and SIDE16 are 64 and 16 "word" characters (letters, digits,
 * underscore: Python's \w on bytes, which the Debian relay 0.2.1 uses; real
 * clients send lowercase hex). The relay answers "ok\n" once the connection
 * is paired; until then the client must send nothing more.
 *
 * tr_hs_feed takes the bytes as they arrive, in pieces of any size, and says
 * what the relay must do:
 *   TR_HS_MORE       keep reading: what came so far is a prefix of a valid line;
 *   TR_HS_DONE       a whole line, and nothing after it: token/side are set;
 *   TR_HS_BAD        answer TR_REPLY_BAD and close: the bytes cannot become a
 *                    valid line (a wrong byte, a newline too early, or more
 *                    than the longest line without one);
 *   TR_HS_IMPATIENT  answer TR_REPLY_IMPATIENT and close: a valid line
 *                    followed by more bytes, or any byte fed after DONE (the
 *                    client spoke before the relay's "ok\n").
 * BAD and IMPATIENT are final: later feeds return them again.
 *
 * Where this departs from the Python relay (which only closes either way):
 * Python keeps waiting on a wrong prefix until a newline or 104 bytes came;
 * this refuses at the first byte that cannot fit. Python searches the buffer
 * with a multi-line regex, so "junk\nplease relay ...\n" sent in one piece
 * gets "impatient" there and "bad handshake" here.
 *
 * Plain data, no allocation; any thread (one at a time per tr_hs_t).
 */
#ifndef WB_RELAY_HANDSHAKE_H
#define WB_RELAY_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#define TR_TOKEN_LEN     64
#define TR_SIDE_LEN      16
#define TR_HS_LEGACY_LEN 78  /* "please relay " + 64 + "\n" */
#define TR_HS_MAX_LEN    104 /* "please relay " + 64 + " for side " + 16 + "\n" */

/* The relay's replies, exactly as the Python relay sends them. */
#define TR_REPLY_OK        "ok\n"
#define TR_REPLY_BAD       "bad handshake\n"
#define TR_REPLY_IMPATIENT "impatient\n"

typedef enum {
    TR_HS_MORE = 0,
    TR_HS_DONE = 1,
    TR_HS_BAD = -1,
    TR_HS_IMPATIENT = -2,
} tr_hs_result_t;

typedef struct {
    uint32_t len;  /* bytes of the line taken so far */
    int8_t result; /* the last tr_hs_result_t returned */
    uint8_t has_side;
    char token[TR_TOKEN_LEN + 1]; /* NUL-terminated once DONE */
    char side[TR_SIDE_LEN + 1];   /* "" for the legacy form */
} tr_hs_t;

void tr_hs_init(tr_hs_t *hs);

/* Feed n more bytes (n may be 0). *used, if not NULL, is set to how many of
 * them belong to the line (all of them for MORE; up to the newline for DONE
 * and IMPATIENT; up to the offending byte for BAD). */
tr_hs_result_t tr_hs_feed(tr_hs_t *hs, const uint8_t *p, size_t n, size_t *used);

/* A short name for a result ("more", "done", "bad", "impatient"). */
const char *tr_hs_result_name(tr_hs_result_t r);

#endif
