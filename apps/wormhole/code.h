/*
 * code.h - Magic Wormhole codes: NAMEPLATE-WORD-WORD..., as magic-wormhole
 * 0.12.0 makes, checks, completes and hashes them (wormhole._code,
 * ._nameplate, ._wordlist, ._rlcompleter, .util.to_bytes; shared notes,
 * wormhole.md 2.2).
 *
 * Words come from the PGP word list (wordlist.c): word 1, 3, 5, ... from the
 * odd list (three syllables), word 2, 4, ... from the even list (two), each
 * indexed by one random byte, lower-case, joined with '-'.
 *
 * The Python client checks only that a code has no space and that its
 * nameplate (the text before the first '-') is numeric: the words are not
 * checked at all, so "4-purple-sausages" is a working code and must stay
 * one. wb_wh_code_validate does exactly those checks; wb_wh_code_check_words
 * is an extra, advisory check for typos that a client may warn about but
 * must not refuse on.
 *
 * The SPAKE2 password is the whole code, nameplate included, normalised to
 * NFC and encoded as UTF-8 (libunistring's u8_normalize; Python's
 * unicodedata and libunistring 1.0 both implement Unicode 14.0).
 *
 * Pure functions over caller buffers, any thread; completions are the one
 * result the caller frees (wb_wh_completions_fini).
 */
#ifndef WB_WORMHOLE_CODE_H
#define WB_WORMHOLE_CODE_H

#include <stddef.h>
#include <stdint.h>

#define WB_WH_WORD_MAX      11 /* longest word of either list */
#define WB_WH_WORDS_DEFAULT 2  /* both CLIs' default code length */
/* Buffer size for a generated code, terminating NUL included. */
#define WB_WH_CODE_CAP(nameplate_len, nwords)                                                      \
    ((nameplate_len) + 1 + (nwords) * (WB_WH_WORD_MAX + 1) + 1)

/* The word for byte b from the odd (odd != 0) or even list, lower-case. */
const char *wb_wh_word(int odd, uint8_t b);

/* Look w[0..len) up in both lists, ignoring ASCII case. Returns the byte
 * value with *odd set to the list it is in (the lists are disjoint), or
 * WB_ENOENT. */
int wb_wh_word_lookup(const char *w, size_t len, int *odd);

/* Make NAMEPLATE-w1-...-wN into out (NUL-terminated). bytes: nwords bytes
 * choosing the words, or NULL for random ones. nwords 0 gives "NAMEPLATE-"
 * (as Python's allocator, and its -0 mode "0-"). Returns 0; WB_EINVAL when
 * the nameplate is not ASCII digits or out is smaller than
 * WB_WH_CODE_CAP(strlen(nameplate), nwords) requires for these words;
 * WB_ESYS when libsodium cannot initialise. */
int wb_wh_code_generate(const char *nameplate, unsigned nwords, const uint8_t *bytes, char *out,
                        size_t cap);

/* The Python client's validate_code: no space (' ') anywhere, and the
 * nameplate is one or more digits. Returns 0 or WB_EINVAL with the reason
 * in err (when not NULL). Stricter than Python in one way: digits are ASCII
 * only (Python's \d also takes other scripts' digits, and its $ a trailing
 * newline), which no mailbox server allocates. */
int wb_wh_code_validate(const char *code, size_t len, char *err, size_t errlen);

/* Length of the nameplate: the text before the first '-' (all of code when
 * there is none). */
size_t wb_wh_code_nameplate_len(const char *code, size_t len);

/* Advisory: every word after the nameplate is in the list its position
 * takes (ASCII case ignored). A code with no words ("4", "0-") passes.
 * Returns 0; WB_ENOENT when a word is in neither list or empty; WB_EINVAL
 * when a word is in the other list (swapped or dropped words); the reason,
 * naming the word, in err. */
int wb_wh_code_check_words(const char *code, size_t len, char *err, size_t errlen);

/* The SPAKE2 password for code[0..len): NFC, UTF-8 (Python's
 * to_bytes(code); the same is done to appids and derive_key purposes).
 * Writes out[0..*outlen). Returns 0; WB_EINVAL when code is not valid
 * UTF-8; WB_ETOOBIG when the result does not fit in cap (*outlen is then
 * the size needed, out is zeroed); WB_ENOMEM. The copy libunistring
 * allocates when out is too small is wiped before it is freed. */
int wb_wh_code_password(const char *code, size_t len, uint8_t *out, size_t cap, size_t *outlen);

/* Completions for interactive entry, as the Python CLI's readline
 * completer gives them:
 *  - text without '-': the nameplates (as listed by the server) that start
 *    with text, each followed by '-';
 *  - "NAMEPLATE-w1-...-partial": every word of the list the position takes
 *    (odd for the 1st, 3rd, ...) starting with partial (case-sensitive:
 *    the lists are lower-case), as the whole text with partial completed,
 *    followed by '-' when the word is not the nwords-th. The Python CLI
 *    completes with nwords = 2 whatever the code length.
 * Sorted, without duplicates. Returns 0 (possibly with no items);
 * WB_EINVAL when the nameplate before '-' is not digits (Python refuses to
 * claim it) or text holds a NUL byte; WB_ENOMEM. */
typedef struct {
    char **items; /* n NUL-terminated strings, all in one allocation with items */
    size_t n;
} wb_wh_completions_t;
int wb_wh_code_complete(const char *text, size_t len, const char *const *nameplates,
                        size_t nnameplates, unsigned nwords, wb_wh_completions_t *out);
void wb_wh_completions_fini(wb_wh_completions_t *c);

#endif
