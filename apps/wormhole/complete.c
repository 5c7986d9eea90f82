/*
 * complete.c - interactive code entry decisions (complete.h).
 */
#include "apps/wormhole/complete.h"

#include <stdio.h>
#include <string.h>

#include "runtime/error.h"

void wb_wh_entry_init(wb_wh_entry_t *e)
{
    e->committed[0] = 0;
}

/* Shared by Tab and Enter: check text against the committed nameplate and
 * commit a new one when text has reached "NAMEPLATE-". */
static int commit_step(wb_wh_entry_t *e, const char *text, size_t len, char *commit, size_t cap,
                       char *err, size_t errlen)
{
    if (commit != NULL && cap > 0)
        commit[0] = 0;
    const char *dash = memchr(text, '-', len);
    size_t nl = dash ? (size_t)(dash - text) : len;
    if (e->committed[0] != 0) {
        if (dash == NULL || nl != strlen(e->committed) || memcmp(text, e->committed, nl) != 0) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "nameplate (%s-) already entered, cannot go back",
                         e->committed);
            return WB_ESTATE;
        }
        return 0;
    }
    if (dash == NULL)
        return 0;
    if (nl == 0 || nl >= sizeof(e->committed) || nl >= cap) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "Nameplate must be numeric");
        return WB_EINVAL;
    }
    for (size_t i = 0; i < nl; i++)
        if (text[i] < '0' || text[i] > '9') {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "Nameplate must be numeric");
            return WB_EINVAL;
        }
    memcpy(e->committed, text, nl);
    e->committed[nl] = 0;
    memcpy(commit, text, nl);
    commit[nl] = 0;
    return 0;
}

int wb_wh_entry_complete(wb_wh_entry_t *e, const char *text, size_t len,
                         const char *const *nameplates, size_t nnameplates,
                         wb_wh_completions_t *out, char *commit, size_t cap, char *err,
                         size_t errlen)
{
    out->items = NULL;
    out->n = 0;
    int rc = commit_step(e, text, len, commit, cap, err, errlen);
    if (rc != 0)
        return rc;
    return wb_wh_code_complete(text, len, nameplates, nnameplates, WB_WH_WORDS_DEFAULT, out);
}

int wb_wh_entry_finish(wb_wh_entry_t *e, const char *code, size_t len, char *commit, size_t cap,
                       char *err, size_t errlen)
{
    if (commit != NULL && cap > 0)
        commit[0] = 0;
    if (memchr(code, '-', len) == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "incomplete wormhole code");
        return WB_EINVAL;
    }
    return commit_step(e, code, len, commit, cap, err, errlen);
}
