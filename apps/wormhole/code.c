/*
 * code.c - wormhole codes: generation, Python's checks, completion, and the
 * NFC password.
 */
#include "apps/wormhole/code.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uninorm.h>
#include <unistr.h>

#include "runtime/assert.h"
#include "runtime/error.h"

/* wordlist.c */
extern const char *const wb__wh_words_even[256];
extern const char *const wb__wh_words_odd[256];

static int all_digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

const char *wb_wh_word(int odd, uint8_t b)
{
    return odd ? wb__wh_words_odd[b] : wb__wh_words_even[b];
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* w[0..len) equals the lower-case word, ASCII case ignored. */
static int same_word(const char *w, size_t len, const char *word)
{
    size_t i = 0;
    for (; i < len && word[i] != '\0'; i++)
        if (lower((unsigned char)w[i]) != word[i])
            return 0;
    return i == len && word[i] == '\0';
}

int wb_wh_word_lookup(const char *w, size_t len, int *odd)
{
    WB_ASSERT(w != NULL || len == 0);
    if (len == 0 || len > WB_WH_WORD_MAX)
        return WB_ENOENT;
    for (int b = 0; b < 256; b++) {
        if (same_word(w, len, wb__wh_words_odd[b])) {
            if (odd != NULL)
                *odd = 1;
            return b;
        }
        if (same_word(w, len, wb__wh_words_even[b])) {
            if (odd != NULL)
                *odd = 0;
            return b;
        }
    }
    return WB_ENOENT;
}

int wb_wh_code_generate(const char *nameplate, unsigned nwords, const uint8_t *bytes, char *out,
                        size_t cap)
{
    WB_ASSERT(nameplate != NULL && out != NULL);
    size_t np = strlen(nameplate);
    if (!all_digits(nameplate, np))
        return WB_EINVAL;
    if (bytes == NULL && sodium_init() < 0)
        return WB_ESYS;
    if (cap < np + 2)
        return WB_EINVAL;
    memcpy(out, nameplate, np);
    size_t at = np;
    out[at++] = '-';
    for (unsigned i = 0; i < nwords; i++) {
        uint8_t b;
        if (bytes != NULL)
            b = bytes[i];
        else
            randombytes_buf(&b, 1);
        /* Word 1 (i = 0) from the odd list, word 2 from the even list... */
        const char *w = wb_wh_word(i % 2 == 0, b);
        size_t n = strlen(w);
        if (cap - at < n + (i > 0) + 1) {
            sodium_memzero(out, cap);
            return WB_EINVAL;
        }
        if (i > 0)
            out[at++] = '-';
        memcpy(out + at, w, n);
        at += n;
    }
    out[at] = '\0';
    return 0;
}

size_t wb_wh_code_nameplate_len(const char *code, size_t len)
{
    WB_ASSERT(code != NULL || len == 0);
    const char *dash = memchr(code, '-', len);
    return dash != NULL ? (size_t)(dash - code) : len;
}

int wb_wh_code_validate(const char *code, size_t len, char *err, size_t errlen)
{
    WB_ASSERT(code != NULL || len == 0);
    if (memchr(code, ' ', len) != NULL) {
        wb_errf(err, errlen, "code '%.*s' contains spaces", (int)len, code);
        return WB_EINVAL;
    }
    size_t np = wb_wh_code_nameplate_len(code, len);
    if (!all_digits(code, np)) {
        wb_errf(err, errlen, "nameplate '%.*s' must be numeric, with no spaces", (int)np, code);
        return WB_EINVAL;
    }
    return 0;
}

int wb_wh_code_check_words(const char *code, size_t len, char *err, size_t errlen)
{
    WB_ASSERT(code != NULL || len == 0);
    size_t at = wb_wh_code_nameplate_len(code, len);
    if (at + 1 >= len)
        return 0; /* "4", "4-": no words */
    at++;
    for (unsigned i = 1; at <= len; i++) {
        const char *w = code + at;
        const char *dash = memchr(w, '-', len - at);
        size_t n = dash != NULL ? (size_t)(dash - w) : len - at;
        int want_odd = i % 2 == 1, odd = 0;
        if (n == 0) {
            wb_errf(err, errlen, "word %u is empty", i);
            return WB_ENOENT;
        }
        if (wb_wh_word_lookup(w, n, &odd) < 0) {
            wb_errf(err, errlen, "word %u '%.*s' is not in the PGP word list", i, (int)n, w);
            return WB_ENOENT;
        }
        if (odd != want_odd) {
            wb_errf(err, errlen, "word %u '%.*s' is from the %s list, word %u takes the %s list", i,
                    (int)n, w, odd ? "odd" : "even", i, want_odd ? "odd" : "even");
            return WB_EINVAL;
        }
        at += n + 1;
    }
    return 0;
}

int wb_wh_code_password(const char *code, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    WB_ASSERT(code != NULL || len == 0);
    WB_ASSERT((out != NULL || cap == 0) && outlen != NULL);
    const uint8_t *s = (const uint8_t *)code;
    *outlen = 0;
    if (u8_check(s, len) != NULL)
        return WB_EINVAL;
    if (len == 0)
        return 0;
    size_t n = cap;
    uint8_t *r = u8_normalize(UNINORM_NFC, s, len, out, &n);
    if (r == NULL)
        return errno == ENOMEM ? WB_ENOMEM : WB_EINVAL;
    if (r != out) {
        /* It did not fit: libunistring allocated the result. */
        sodium_memzero(r, n);
        free(r);
        if (out != NULL)
            sodium_memzero(out, cap);
        *outlen = n;
        return WB_ETOOBIG;
    }
    *outlen = n;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fill c with the strings head[0..headlen) + tails[i] + (dash ? "-" : ""),
 * sorted and without duplicates. */
static int collect(const char *head, size_t headlen, const char *const *tails, size_t ntails,
                   int dash, wb_wh_completions_t *c)
{
    size_t bytes = 0;
    for (size_t i = 0; i < ntails; i++)
        bytes += headlen + strlen(tails[i]) + (dash ? 1 : 0) + 1;
    size_t ptrs = (ntails ? ntails : 1) * sizeof(char *);
    char **items = malloc(ptrs + bytes);
    if (items == NULL)
        return WB_ENOMEM;
    char *p = (char *)items + ptrs;
    for (size_t i = 0; i < ntails; i++) {
        size_t n = strlen(tails[i]);
        items[i] = p;
        memcpy(p, head, headlen);
        memcpy(p + headlen, tails[i], n);
        p += headlen + n;
        if (dash)
            *p++ = '-';
        *p++ = '\0';
    }
    qsort(items, ntails, sizeof(items[0]), cmp_str);
    size_t n = 0;
    for (size_t i = 0; i < ntails; i++)
        if (n == 0 || strcmp(items[n - 1], items[i]) != 0)
            items[n++] = items[i];
    c->items = items;
    c->n = n;
    return 0;
}

static int starts_with(const char *s, const char *prefix, size_t n)
{
    return strncmp(s, prefix, n) == 0 && memchr(prefix, '\0', n) == NULL;
}

int wb_wh_code_complete(const char *text, size_t len, const char *const *nameplates,
                        size_t nnameplates, unsigned nwords, wb_wh_completions_t *out)
{
    WB_ASSERT(text != NULL || len == 0);
    WB_ASSERT(nameplates != NULL || nnameplates == 0);
    WB_ASSERT(out != NULL);
    out->items = NULL;
    out->n = 0;
    if (memchr(text, '\0', len) != NULL)
        return WB_EINVAL; /* completions are C strings */
    const char *tails[256];
    size_t nt = 0;

    size_t np = wb_wh_code_nameplate_len(text, len);
    if (np == len) {
        /* Completing the nameplate: those the server listed. */
        const char **match = malloc((nnameplates ? nnameplates : 1) * sizeof(*match));
        if (match == NULL)
            return WB_ENOMEM;
        for (size_t i = 0; i < nnameplates; i++)
            if (starts_with(nameplates[i], text, len))
                match[nt++] = nameplates[i];
        int rc = collect("", 0, match, nt, 1, out);
        free(match);
        return rc;
    }
    if (!all_digits(text, np))
        return WB_EINVAL;

    /* PGPWordList.get_completions on the words after "NAMEPLATE-": the
     * number of '-' in them picks the list (even count: odd list) and
     * decides the trailing '-'. */
    const char *words = text + np + 1;
    size_t wlen = len - np - 1;
    unsigned count = 0;
    size_t last = 0;
    for (size_t i = 0; i < wlen; i++) {
        if (words[i] == '-') {
            count++;
            last = i + 1;
        }
    }
    const char *partial = words + last;
    size_t plen = wlen - last;
    const char *const *list = count % 2 == 0 ? wb__wh_words_odd : wb__wh_words_even;
    for (int b = 0; b < 256; b++)
        if (starts_with(list[b], partial, plen))
            tails[nt++] = list[b];
    return collect(text, len - plen, tails, nt, count + 1 < nwords, out);
}

void wb_wh_completions_fini(wb_wh_completions_t *c)
{
    free(c->items);
    c->items = NULL;
    c->n = 0;
}
