/*
 * test_idmap.c - the id map: put, get, replace, delete; growth through many
 * resizes; backward-shift deletion keeps every other key findable, checked
 * against a plain array model; each() visits every entry once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/error.h"
#include "runtime/idmap.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void *val_for(uint64_t key, unsigned gen)
{
    return (void *)(uintptr_t)(key * 2654435761u + gen * 16u + 8u);
}

/* Slots in use, counted by hand: must always equal count (no tombstones). */
static size_t occupied(const wb_idmap_t *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        n += m->slots[i].key != 0;
    return n;
}

static void test_basics(void **state)
{
    (void)state;
    wb_idmap_t m;
    int a, b, c;
    wb_idmap_init(&m);
    assert_int_equal(wb_idmap_count(&m), 0);
    assert_null(wb_idmap_get(&m, 1));
    assert_null(wb_idmap_del(&m, 1));

    assert_int_equal(wb_idmap_put(&m, 1, &a), 0);
    assert_int_equal(wb_idmap_put(&m, 2, &b), 0);
    assert_int_equal(wb_idmap_count(&m), 2);
    assert_ptr_equal(wb_idmap_get(&m, 1), &a);
    assert_ptr_equal(wb_idmap_get(&m, 2), &b);
    assert_null(wb_idmap_get(&m, 3));

    /* Replace keeps the count. */
    assert_int_equal(wb_idmap_put(&m, 1, &c), 0);
    assert_int_equal(wb_idmap_count(&m), 2);
    assert_ptr_equal(wb_idmap_get(&m, 1), &c);
    assert_ptr_equal(wb_idmap_get(&m, 2), &b);

    /* A NULL value is a value. */
    assert_int_equal(wb_idmap_put(&m, 3, NULL), 0);
    assert_int_equal(wb_idmap_count(&m), 3);

    /* Key 0 means "free slot": refused, and never found. */
    assert_int_equal(wb_idmap_put(&m, 0, &a), WB_EINVAL);
    assert_int_equal(wb_idmap_count(&m), 3);
    assert_null(wb_idmap_get(&m, 0));
    assert_null(wb_idmap_del(&m, 0));
    assert_int_equal(wb_idmap_count(&m), 3);

    assert_ptr_equal(wb_idmap_del(&m, 1), &c);
    assert_int_equal(wb_idmap_count(&m), 2);
    assert_null(wb_idmap_get(&m, 1));
    assert_null(wb_idmap_del(&m, 1));
    assert_int_equal(wb_idmap_count(&m), 2);
    assert_ptr_equal(wb_idmap_get(&m, 2), &b);
    assert_null(wb_idmap_del(&m, 3));
    assert_ptr_equal(wb_idmap_del(&m, 2), &b);
    assert_int_equal(wb_idmap_count(&m), 0);
    assert_int_equal(occupied(&m), 0);

    /* Extreme keys. */
    assert_int_equal(wb_idmap_put(&m, UINT64_MAX, &a), 0);
    assert_int_equal(wb_idmap_put(&m, 1ull << 63, &b), 0);
    assert_int_equal(wb_idmap_put(&m, 1ull << 32, &c), 0);
    assert_ptr_equal(wb_idmap_get(&m, UINT64_MAX), &a);
    assert_ptr_equal(wb_idmap_get(&m, 1ull << 63), &b);
    assert_ptr_equal(wb_idmap_get(&m, 1ull << 32), &c);
    wb_idmap_fini(&m);
    assert_int_equal(wb_idmap_count(&m), 0);
    assert_null(wb_idmap_get(&m, UINT64_MAX));
    /* A finished map is an empty one and may be used again. */
    assert_int_equal(wb_idmap_put(&m, 5, &a), 0);
    assert_ptr_equal(wb_idmap_get(&m, 5), &a);
    wb_idmap_fini(&m);
}

enum { GROW_KEYS = 100000 };

static void grow_with(uint64_t (*key)(size_t i))
{
    wb_idmap_t m;
    size_t resizes = 0, cap = 0;
    wb_idmap_init(&m);
    for (size_t i = 0; i < GROW_KEYS; i++) {
        assert_int_equal(wb_idmap_put(&m, key(i), val_for(key(i), 0)), 0);
        assert_int_equal(wb_idmap_count(&m), i + 1);
        if (m.cap != cap) {
            resizes++;
            cap = m.cap;
            /* Power of two, at most half full. */
            assert_int_equal(cap & (cap - 1), 0);
            /* Everything inserted so far survived the move. */
            for (size_t j = 0; j <= i; j++)
                assert_ptr_equal(wb_idmap_get(&m, key(j)), val_for(key(j), 0));
        }
        assert_true(2 * wb_idmap_count(&m) <= m.cap);
    }
    assert_true(resizes >= 13);
    for (size_t i = 0; i < GROW_KEYS; i++)
        assert_ptr_equal(wb_idmap_get(&m, key(i)), val_for(key(i), 0));
    /* Delete every other key: the rest stay findable. */
    for (size_t i = 0; i < GROW_KEYS; i += 2)
        assert_ptr_equal(wb_idmap_del(&m, key(i)), val_for(key(i), 0));
    assert_int_equal(wb_idmap_count(&m), GROW_KEYS / 2);
    assert_int_equal(occupied(&m), GROW_KEYS / 2);
    for (size_t i = 0; i < GROW_KEYS; i++) {
        if (i % 2)
            assert_ptr_equal(wb_idmap_get(&m, key(i)), val_for(key(i), 0));
        else
            assert_null(wb_idmap_get(&m, key(i)));
    }
    wb_idmap_fini(&m);
}

static uint64_t seq_key(size_t i)
{
    return i + 1;
}

static uint64_t spread_key(size_t i)
{
    /* Distinct, non-zero, and sharing their low bits in long runs. */
    return ((uint64_t)(i + 1) << 20) | 0x5;
}

static void test_growth(void **state)
{
    (void)state;
    grow_with(seq_key);
    grow_with(spread_key);
}

/* ---- collisions built by hand --------------------------------------------- */

/* Where a key sits alone in a fresh map of 16 slots: its home slot. */
static size_t home16(uint64_t key)
{
    wb_idmap_t m;
    size_t home = SIZE_MAX;
    wb_idmap_init(&m);
    assert_int_equal(wb_idmap_put(&m, key, (void *)1), 0);
    assert_int_equal(m.cap, 16);
    for (size_t i = 0; i < m.cap; i++)
        if (m.slots[i].key == key)
            home = i;
    wb_idmap_fini(&m);
    return home;
}

enum { CL = 8 }; /* 8 keys fill a 16-slot map to its limit */

static void test_cluster_deletes(void **state)
{
    (void)state;
    /* Three keys at home 13, two at 14, one at 15 and two at 0: one run of
     * probes that wraps around the end of the table. */
    const size_t homes[CL] = {13, 13, 13, 14, 14, 15, 0, 0};
    uint64_t keys[CL];
    int have[CL] = {0}, found = 0;
    for (uint64_t k = 1; k < 100000 && found < CL; k++) {
        size_t h = home16(k);
        for (int i = 0; i < CL; i++)
            if (!have[i] && homes[i] == h) {
                keys[i] = k;
                have[i] = 1;
                found++;
                break;
            }
    }
    for (int i = 0; i < CL; i++)
        assert_true(have[i]);

    rng_state = 7;
    for (int trial = 0; trial < 2000; trial++) {
        int order[CL], del[CL];
        for (int i = 0; i < CL; i++)
            order[i] = del[i] = i;
        for (int i = CL - 1; i > 0; i--) {
            int j = (int)(rnd() % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
            j = (int)(rnd() % (uint64_t)(i + 1));
            t = del[i];
            del[i] = del[j];
            del[j] = t;
        }
        wb_idmap_t m;
        int present[CL] = {0};
        wb_idmap_init(&m);
        for (int i = 0; i < CL; i++) {
            assert_int_equal(wb_idmap_put(&m, keys[order[i]], val_for(keys[order[i]], 1)), 0);
            present[order[i]] = 1;
        }
        assert_int_equal(m.cap, 16);
        for (int d = 0; d < CL; d++) {
            uint64_t k = keys[del[d]];
            assert_ptr_equal(wb_idmap_del(&m, k), val_for(k, 1));
            present[del[d]] = 0;
            assert_int_equal(wb_idmap_count(&m), CL - d - 1);
            assert_int_equal(occupied(&m), CL - d - 1);
            for (int i = 0; i < CL; i++) {
                if (present[i])
                    assert_ptr_equal(wb_idmap_get(&m, keys[i]), val_for(keys[i], 1));
                else
                    assert_null(wb_idmap_get(&m, keys[i]));
            }
            /* A key put back lands where a lookup finds it. */
            if (d % 3 == 0) {
                assert_int_equal(wb_idmap_put(&m, k, val_for(k, 2)), 0);
                assert_ptr_equal(wb_idmap_get(&m, k), val_for(k, 2));
                assert_ptr_equal(wb_idmap_del(&m, k), val_for(k, 2));
            }
        }
        wb_idmap_fini(&m);
    }
}

/* ---- random operations against an array model ------------------------------ */

typedef struct {
    const uint64_t *keys;
    void *const *model;
    size_t n;
    unsigned char *seen;
    int bad;
    size_t visits;
} each_ctx_t;

static size_t index_of(const each_ctx_t *c, uint64_t key)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->keys[i] == key)
            return i;
    return SIZE_MAX;
}

static void each_cb(uint64_t key, void *val, void *arg)
{
    each_ctx_t *c = arg;
    size_t i = index_of(c, key);
    c->visits++;
    if (i == SIZE_MAX || c->seen[i] || c->model[i] != val || c->model[i] == NULL)
        c->bad++;
    else
        c->seen[i] = 1;
}

enum { UNIVERSE = 1500, OPS = 200000 };

static void check_all(wb_idmap_t *m, const uint64_t *keys, void *const *model, size_t live)
{
    static unsigned char seen[UNIVERSE];
    assert_int_equal(wb_idmap_count(m), live);
    assert_int_equal(occupied(m), live);
    for (size_t i = 0; i < UNIVERSE; i++)
        assert_ptr_equal(wb_idmap_get(m, keys[i]), model[i]);
    memset(seen, 0, sizeof(seen));
    each_ctx_t c = {keys, model, UNIVERSE, seen, 0, 0};
    wb_idmap_each(m, each_cb, &c);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.visits, live);
    for (size_t i = 0; i < UNIVERSE; i++)
        assert_int_equal(seen[i], model[i] != NULL);
}

static void random_ops(uint64_t seed, int random_keys)
{
    static uint64_t keys[UNIVERSE];
    static void *model[UNIVERSE];
    wb_idmap_t m;
    size_t live = 0;
    unsigned gen = 0;

    rng_state = seed;
    for (size_t i = 0; i < UNIVERSE; i++) {
        uint64_t k;
        do {
            k = random_keys ? rnd() : i + 1;
            for (size_t j = 0; j < i && k != 0; j++)
                if (keys[j] == k)
                    k = 0;
        } while (k == 0);
        keys[i] = k;
        model[i] = NULL;
    }
    wb_idmap_init(&m);
    for (int op = 0; op < OPS; op++) {
        /* Phases of mostly-insert and mostly-delete keep the load moving
         * between empty and the resize limit. */
        int grow_phase = (op / 5000) % 2 == 0;
        uint64_t r = rnd();
        size_t i = (size_t)(r % UNIVERSE);
        unsigned kind = (unsigned)((r >> 32) % 100);
        if (kind < (grow_phase ? 60u : 25u)) {
            void *v = val_for(keys[i], ++gen);
            assert_int_equal(wb_idmap_put(&m, keys[i], v), 0);
            live += model[i] == NULL;
            model[i] = v;
        } else if (kind < 90) {
            assert_ptr_equal(wb_idmap_del(&m, keys[i]), model[i]);
            live -= model[i] != NULL;
            model[i] = NULL;
            /* The neighbours in the map are the ones a shift moved: look
             * at a handful of other keys right away. */
            for (int k = 0; k < 8; k++) {
                size_t j = (size_t)(rnd() % UNIVERSE);
                assert_ptr_equal(wb_idmap_get(&m, keys[j]), model[j]);
            }
        } else {
            assert_ptr_equal(wb_idmap_get(&m, keys[i]), model[i]);
        }
        assert_int_equal(wb_idmap_count(&m), live);
        if (op % 1000 == 999)
            check_all(&m, keys, model, live);
    }
    check_all(&m, keys, model, live);
    /* Empty it: no slot stays taken. */
    for (size_t i = 0; i < UNIVERSE; i++) {
        assert_ptr_equal(wb_idmap_del(&m, keys[i]), model[i]);
        model[i] = NULL;
    }
    check_all(&m, keys, model, 0);
    wb_idmap_fini(&m);
}

static void test_random_vs_model(void **state)
{
    (void)state;
    random_ops(1, 0);
    random_ops(2, 1);
    random_ops(3, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_cluster_deletes),
        cmocka_unit_test(test_random_vs_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
