/*
 * test_wormhole_complete.c - the decisions of interactive code entry
 * (apps/wormhole/complete.h): what Tab offers for the text typed so far,
 * given the server's nameplates and the PGP word lists, when the nameplate
 * is committed, and what Enter accepts. The cases follow the Python CLI's
 * completer (wormhole._rlcompleter.CodeInputter).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "apps/wormhole/complete.h"
#include "runtime/error.h"

static const char *const NPS[] = {"12", "7", "123", "4"};

/* Tab on text: the candidates joined with ' ', and the nameplate it
 * commits (or ""). */
static int tab(wb_wh_entry_t *e, const char *text, const char *const *nps, size_t n, char *out,
               size_t cap, char *commit)
{
    wb_wh_completions_t c;
    char err[160];
    int rc = wb_wh_entry_complete(e, text, strlen(text), nps, n, &c, commit, WB_WH_NAMEPLATE_CAP,
                                  err, sizeof(err));
    out[0] = 0;
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < c.n; i++) {
        if (i > 0)
            strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, c.items[i], cap - strlen(out) - 1);
    }
    wb_wh_completions_fini(&c);
    return 0;
}

static void test_nameplates(void **state)
{
    wb_wh_entry_t e;
    wb_wh_entry_init(&e);
    char out[20000], commit[WB_WH_NAMEPLATE_CAP];
    assert_int_equal(tab(&e, "", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "12- 123- 4- 7-");
    assert_string_equal(commit, "");
    assert_int_equal(tab(&e, "1", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "12- 123-");
    assert_int_equal(tab(&e, "7", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "7-");
    assert_int_equal(tab(&e, "9", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "");
    /* no list yet (the server has not answered): nothing, no commitment */
    assert_int_equal(tab(&e, "7", NULL, 0, out, sizeof(out), commit), 0);
    assert_string_equal(out, "");
    assert_string_equal(e.committed, "");
}

static void test_words(void **state)
{
    wb_wh_entry_t e;
    wb_wh_entry_init(&e);
    char out[20000], commit[WB_WH_NAMEPLATE_CAP];
    /* the first Tab after the dash commits the nameplate, and offers the
     * whole odd list (three syllables) */
    assert_int_equal(tab(&e, "7-", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(commit, "7");
    assert_string_equal(e.committed, "7");
    assert_true(strncmp(out, "7-adroitness- 7-adviser- ", 25) == 0);
    size_t words = 1;
    for (const char *p = out; *p; p++)
        words += *p == ' ';
    assert_int_equal(words, 256);
    /* later Tabs do not commit again */
    assert_int_equal(tab(&e, "7-pub", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(commit, "");
    assert_string_equal(out, "7-puberty- 7-publisher-");
    assert_int_equal(tab(&e, "7-publ", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "7-publisher-");
    /* the second word from the even list (two syllables), no dash after
     * the last word */
    assert_int_equal(tab(&e, "7-publisher-sa", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "7-publisher-sailboat 7-publisher-sawdust");
    assert_int_equal(tab(&e, "7-publisher-saw", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "7-publisher-sawdust");
    /* a word from the wrong list, or not a word: nothing */
    assert_int_equal(tab(&e, "7-sawd", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "");
    assert_int_equal(tab(&e, "7-publisher-sawdust", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(out, "7-publisher-sawdust");
}

static void test_committed(void **state)
{
    wb_wh_entry_t e;
    wb_wh_entry_init(&e);
    char out[20000], commit[WB_WH_NAMEPLATE_CAP], err[160];
    assert_int_equal(tab(&e, "12-ad", NPS, 4, out, sizeof(out), commit), 0);
    assert_string_equal(commit, "12");
    assert_string_equal(out, "12-adroitness- 12-adviser-");
    /* deleting past the dash, or another nameplate: refused */
    assert_int_equal(tab(&e, "12", NPS, 4, out, sizeof(out), commit), WB_ESTATE);
    assert_int_equal(tab(&e, "123-ad", NPS, 4, out, sizeof(out), commit), WB_ESTATE);
    assert_int_equal(
        wb_wh_entry_finish(&e, "1-adviser-absurd", 16, commit, sizeof(commit), err, sizeof(err)),
        WB_ESTATE);
    assert_string_equal(err, "nameplate (12-) already entered, cannot go back");
    /* Enter on the committed nameplate: nothing more to commit */
    assert_int_equal(
        wb_wh_entry_finish(&e, "12-adviser-absurd", 17, commit, sizeof(commit), err, sizeof(err)),
        0);
    assert_string_equal(commit, "");
}

static void test_finish(void **state)
{
    wb_wh_entry_t e;
    wb_wh_entry_init(&e);
    char commit[WB_WH_NAMEPLATE_CAP], err[160];
    /* typed without Tab: Enter commits the nameplate; the words are not
     * checked (Python takes any) */
    assert_int_equal(
        wb_wh_entry_finish(&e, "4-purple-sausages", 17, commit, sizeof(commit), err, sizeof(err)),
        0);
    assert_string_equal(commit, "4");
    wb_wh_entry_init(&e);
    assert_int_equal(wb_wh_entry_finish(&e, "4", 1, commit, sizeof(commit), err, sizeof(err)),
                     WB_EINVAL);
    assert_string_equal(err, "incomplete wormhole code");
    assert_int_equal(wb_wh_entry_finish(&e, "x4-a", 4, commit, sizeof(commit), err, sizeof(err)),
                     WB_EINVAL);
    assert_string_equal(e.committed, "");
    /* a Tab on a non-numeric nameplate commits nothing */
    char out[100];
    assert_int_equal(tab(&e, "ab-c", NPS, 4, out, sizeof(out), commit), WB_EINVAL);
    assert_string_equal(e.committed, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nameplates),
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_committed),
        cmocka_unit_test(test_finish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
