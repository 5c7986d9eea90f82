/*
 * complete.h - the decisions of interactive code entry, as the Python CLI's
 * readline completer makes them (wormhole._rlcompleter.CodeInputter), kept
 * apart from readline and from the network so they can be tested alone.
 *
 * A code is typed in two steps (client.h, "input"): while the text has no
 * '-' Tab completes nameplates from the server's list; the first Tab (or
 * Enter) after "NAMEPLATE-" commits the nameplate (the caller then calls
 * wb_wormhole_input_nameplate, so the peer's mailbox opens while the words
 * are typed), and from then on Tab completes words from the PGP word list
 * (odd list for the 1st word, even for the 2nd, ...). A committed nameplate
 * cannot be taken back: text that no longer starts with it is refused, as
 * Python refuses it (AlreadyInputNameplateError).
 *
 * Pure functions over caller buffers, any thread; the completions are the
 * caller's to free (wb_wh_completions_fini).
 */
#ifndef WB_WORMHOLE_COMPLETE_H
#define WB_WORMHOLE_COMPLETE_H

#include <stddef.h>

#include "apps/wormhole/code.h"

#define WB_WH_NAMEPLATE_CAP 64 /* longest nameplate we take, NUL included */

typedef struct {
    char committed[WB_WH_NAMEPLATE_CAP]; /* "" until the nameplate is committed */
} wb_wh_entry_t;

void wb_wh_entry_init(wb_wh_entry_t *e);

/* Tab on text[0..len): the candidates, each a whole line (sorted, as
 * wb_wh_code_complete gives them; words completed with nwords = 2, as
 * Python). nameplates: the server's latest list (may be stale or empty).
 * When this Tab commits the nameplate, it is copied into commit[0..cap)
 * (and into e->committed); otherwise commit[0] is set to 0. Returns 0 (maybe
 * with no candidates); WB_ESTATE with the reason in err when text no longer
 * starts with the committed nameplate and '-'; WB_EINVAL when the nameplate
 * is not digits or too long; WB_ENOMEM. */
int wb_wh_entry_complete(wb_wh_entry_t *e, const char *text, size_t len,
                         const char *const *nameplates, size_t nnameplates,
                         wb_wh_completions_t *out, char *commit, size_t cap, char *err,
                         size_t errlen);

/* Enter on code[0..len): as wb_wh_entry_complete, decides whether the
 * nameplate must be committed now (copied into commit, else commit[0] = 0)
 * before the whole code is handed over. Returns 0; WB_EINVAL with the
 * reason in err for a code without '-' ("incomplete wormhole code") or a
 * nameplate that is not digits; WB_ESTATE when the committed nameplate was
 * changed. */
int wb_wh_entry_finish(wb_wh_entry_t *e, const char *code, size_t len, char *commit, size_t cap,
                       char *err, size_t errlen);

#endif
