/*
 * test_timerheap.c - the deadline heap: earliest first, equal deadlines in
 * insertion order, pop_due never early, removal of any entry, and every
 * entry knowing its own index; checked against a sorted array model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/timerheap.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The heap's shape: every entry is where it says, and no child comes before
 * its parent. */
static void check_heap(const wb_theap_t *h)
{
    for (size_t i = 0; i < h->n; i++) {
        const wb_theap_entry_t *e = h->v[i];
        assert_int_equal(e->index, i);
        if (i > 0) {
            const wb_theap_entry_t *p = h->v[(i - 1) / 2];
            assert_true(p->deadline < e->deadline ||
                        (p->deadline == e->deadline && p->seq < e->seq));
        }
    }
}

static void test_pop_due_respects_now(void **state)
{
    (void)state;
    wb_theap_t h;
    wb_theap_entry_t a = {.deadline = 20}, b = {.deadline = 10}, c = {.deadline = 30};
    wb_theap_init(&h);
    assert_null(wb_theap_peek(&h));
    assert_null(wb_theap_pop_due(&h, UINT64_MAX));
    assert_int_equal(wb_theap_push(&h, &a), 0);
    assert_int_equal(wb_theap_push(&h, &b), 0);
    assert_int_equal(wb_theap_push(&h, &c), 0);
    assert_int_equal(wb_theap_count(&h), 3);
    assert_ptr_equal(wb_theap_peek(&h), &b);

    assert_null(wb_theap_pop_due(&h, 0));
    assert_null(wb_theap_pop_due(&h, 9));
    assert_int_equal(wb_theap_count(&h), 3);
    assert_ptr_equal(wb_theap_pop_due(&h, 10), &b);
    assert_int_equal(b.index, SIZE_MAX);
    assert_null(wb_theap_pop_due(&h, 10));
    assert_null(wb_theap_pop_due(&h, 19));
    /* Late is fine: everything due comes out, earliest first. */
    assert_ptr_equal(wb_theap_pop_due(&h, 1000), &a);
    assert_ptr_equal(wb_theap_pop_due(&h, 1000), &c);
    assert_null(wb_theap_pop_due(&h, 1000));
    assert_int_equal(wb_theap_count(&h), 0);
    assert_int_equal(a.index, SIZE_MAX);
    assert_int_equal(c.index, SIZE_MAX);

    /* Deadline 0 is due at once; UINT64_MAX only at the end of time. */
    wb_theap_entry_t z = {.deadline = 0}, m = {.deadline = UINT64_MAX};
    assert_int_equal(wb_theap_push(&h, &m), 0);
    assert_int_equal(wb_theap_push(&h, &z), 0);
    assert_ptr_equal(wb_theap_pop_due(&h, 0), &z);
    assert_null(wb_theap_pop_due(&h, UINT64_MAX - 1));
    assert_ptr_equal(wb_theap_pop_due(&h, UINT64_MAX), &m);
    wb_theap_fini(&h);
}

enum { TIES = 3000 };

static void test_order_and_ties(void **state)
{
    (void)state;
    static wb_theap_entry_t e[TIES];
    wb_theap_t h;
    wb_theap_init(&h);
    rng_state = 11;
    /* Few distinct deadlines, so most entries tie with many others. */
    for (size_t i = 0; i < TIES; i++) {
        e[i].deadline = rnd() % 17;
        assert_int_equal(wb_theap_push(&h, &e[i]), 0);
        assert_ptr_equal(h.v[e[i].index], &e[i]);
    }
    check_heap(&h);
    uint64_t last_deadline = 0;
    size_t last_i = 0;
    for (size_t k = 0; k < TIES; k++) {
        wb_theap_entry_t *p = wb_theap_pop_due(&h, UINT64_MAX);
        assert_non_null(p);
        size_t i = (size_t)(p - e);
        assert_true(p->deadline >= last_deadline);
        /* Equal deadlines: in the order they went in. */
        if (k > 0 && p->deadline == last_deadline)
            assert_true(i > last_i);
        last_deadline = p->deadline;
        last_i = i;
        assert_int_equal(p->index, SIZE_MAX);
    }
    assert_null(wb_theap_peek(&h));

    /* Put back in: an entry re-inserted goes behind the others of its
     * deadline, whatever its earlier turn was. */
    wb_theap_entry_t a = {.deadline = 5}, b = {.deadline = 5}, c = {.deadline = 5};
    assert_int_equal(wb_theap_push(&h, &a), 0);
    assert_int_equal(wb_theap_push(&h, &b), 0);
    assert_int_equal(wb_theap_push(&h, &c), 0);
    wb_theap_remove(&h, &a);
    assert_int_equal(a.index, SIZE_MAX);
    assert_int_equal(wb_theap_push(&h, &a), 0);
    assert_ptr_equal(wb_theap_pop_due(&h, 5), &b);
    assert_ptr_equal(wb_theap_pop_due(&h, 5), &c);
    assert_ptr_equal(wb_theap_pop_due(&h, 5), &a);
    wb_theap_fini(&h);
}

/* ---- random operations against a sorted model ----------------------------- */

enum { N = 10000, OPS = 60000 };

typedef struct {
    uint64_t deadline;
    uint64_t order; /* the model's own insertion counter */
    wb_theap_entry_t *e;
} ref_t;

static ref_t model[N];
static size_t model_n;
static uint64_t model_order;
static wb_theap_entry_t ent[N];
static int in_heap[N];

static int ref_less(const ref_t *a, const ref_t *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->order < b->order);
}

static void model_insert(wb_theap_entry_t *e)
{
    ref_t r = {e->deadline, model_order++, e};
    size_t i = model_n++;
    while (i > 0 && ref_less(&r, &model[i - 1])) {
        model[i] = model[i - 1];
        i--;
    }
    model[i] = r;
}

static void model_remove(wb_theap_entry_t *e)
{
    size_t i = 0;
    while (i < model_n && model[i].e != e)
        i++;
    assert_true(i < model_n);
    memmove(&model[i], &model[i + 1], (model_n - i - 1) * sizeof(model[0]));
    model_n--;
}

static void test_random_vs_model(void **state)
{
    (void)state;
    wb_theap_t h;
    uint64_t now = 0;
    size_t pops = 0, removes = 0;
    wb_theap_init(&h);
    rng_state = 12345;
    model_n = 0;
    model_order = 0;
    memset(in_heap, 0, sizeof(in_heap));

    /* Fill with 10k entries, then churn. */
    for (size_t i = 0; i < N; i++) {
        ent[i].deadline = rnd() % 5000;
        ent[i].index = SIZE_MAX;
        assert_int_equal(wb_theap_push(&h, &ent[i]), 0);
        model_insert(&ent[i]);
        in_heap[i] = 1;
    }
    check_heap(&h);
    for (int op = 0; op < OPS; op++) {
        uint64_t r = rnd();
        size_t i = (size_t)(r % N);
        unsigned kind = (unsigned)((r >> 32) % 10);
        if (kind < 4) {
            /* Remove an arbitrary entry (or re-insert one that is out). */
            if (in_heap[i]) {
                assert_ptr_equal(h.v[ent[i].index], &ent[i]);
                wb_theap_remove(&h, &ent[i]);
                model_remove(&ent[i]);
                assert_int_equal(ent[i].index, SIZE_MAX);
                in_heap[i] = 0;
                removes++;
            } else {
                ent[i].deadline = now + rnd() % 3000;
                assert_int_equal(wb_theap_push(&h, &ent[i]), 0);
                assert_ptr_equal(h.v[ent[i].index], &ent[i]);
                model_insert(&ent[i]);
                in_heap[i] = 1;
            }
        } else if (kind < 7) {
            /* Time moves on; take one due entry, or none. */
            now += rnd() % 8;
            wb_theap_entry_t *want = model_n > 0 && model[0].deadline <= now ? model[0].e : NULL;
            wb_theap_entry_t *got = wb_theap_pop_due(&h, now);
            assert_ptr_equal(got, want);
            if (got != NULL) {
                assert_true(got->deadline <= now);
                assert_int_equal(got->index, SIZE_MAX);
                model_remove(got);
                in_heap[got - ent] = 0;
                pops++;
            }
        } else {
            /* Drain everything due at a moment in the past or present. */
            uint64_t t = now - (now > 0 ? rnd() % (now + 1) : 0);
            wb_theap_entry_t *got;
            while ((got = wb_theap_pop_due(&h, t)) != NULL) {
                assert_true(model_n > 0);
                assert_ptr_equal(got, model[0].e);
                assert_true(got->deadline <= t);
                model_remove(got);
                in_heap[got - ent] = 0;
                pops++;
            }
            assert_true(model_n == 0 || model[0].deadline > t);
        }
        assert_int_equal(wb_theap_count(&h), model_n);
        assert_ptr_equal(wb_theap_peek(&h), model_n ? model[0].e : NULL);
        if (op % 500 == 0) {
            check_heap(&h);
            for (size_t k = 0; k < N; k++)
                if (!in_heap[k])
                    assert_int_equal(ent[k].index, SIZE_MAX);
        }
    }
    assert_true(pops > 1000);
    assert_true(removes > 1000);
    /* What is left comes out in the model's order. */
    check_heap(&h);
    for (size_t k = 0; k < model_n; k++)
        assert_ptr_equal(wb_theap_pop_due(&h, UINT64_MAX), model[k].e);
    assert_int_equal(wb_theap_count(&h), 0);
    wb_theap_fini(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pop_due_respects_now),
        cmocka_unit_test(test_order_and_ties),
        cmocka_unit_test(test_random_vs_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
