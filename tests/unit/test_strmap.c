/*
 * test_strmap.c - the keyed string map: put, get, replace and delete; keys
 * are copied bytes (NULs and the empty key included); 100k keys in and out
 * with the table growing past one entry per bucket and shrinking back as
 * entries go (to nothing at zero); every entry visited exactly once by a
 * walk, and a walk that stops when told.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/error.h"
#include "runtime/strmap.h"

/* Growth and shrinking as strmap.h promises: never more entries than
 * buckets, and fewer than one entry per eight buckets only transiently
 * (one halving per delete) or at the minimum size. */
static void check_load(const wb_strmap_t *m)
{
    if (m->count == 0)
        return;
    assert_true(m->nbuckets >= m->count);
    assert_true((m->nbuckets & (m->nbuckets - 1)) == 0);
    assert_true(m->nbuckets <= 16 || m->nbuckets <= 16 * (m->count + 1));
}

static void test_put_get_del_replace(void **state)
{
    (void)state;
    wb_strmap_t m;
    int a = 1, b = 2, c = 3;
    wb_strmap_init(&m);
    assert_int_equal(wb_strmap_count(&m), 0);
    assert_null(wb_strmap_get(&m, "x", 1));
    assert_null(wb_strmap_del(&m, "x", 1));

    assert_int_equal(wb_strmap_put(&m, "alpha", 5, &a), 0);
    assert_int_equal(wb_strmap_put(&m, "beta", 4, &b), 0);
    assert_int_equal(wb_strmap_count(&m), 2);
    assert_ptr_equal(wb_strmap_get(&m, "alpha", 5), &a);
    assert_ptr_equal(wb_strmap_get(&m, "beta", 4), &b);
    /* A prefix or an extension of a key is another key. */
    assert_null(wb_strmap_get(&m, "alph", 4));
    assert_null(wb_strmap_get(&m, "alphas", 6));
    assert_null(wb_strmap_get(&m, "gamma", 5));

    /* Replacing keeps one entry with the new value. */
    assert_int_equal(wb_strmap_put(&m, "alpha", 5, &c), 0);
    assert_int_equal(wb_strmap_count(&m), 2);
    assert_ptr_equal(wb_strmap_get(&m, "alpha", 5), &c);

    /* A NULL value is stored like any other (get cannot tell it from
     * absence, but the entry counts). */
    assert_int_equal(wb_strmap_put(&m, "nil", 3, NULL), 0);
    assert_int_equal(wb_strmap_count(&m), 3);
    assert_null(wb_strmap_del(&m, "nil", 3));
    assert_int_equal(wb_strmap_count(&m), 2);

    assert_ptr_equal(wb_strmap_del(&m, "alpha", 5), &c);
    assert_null(wb_strmap_get(&m, "alpha", 5));
    assert_null(wb_strmap_del(&m, "alpha", 5));
    assert_int_equal(wb_strmap_count(&m), 1);
    assert_ptr_equal(wb_strmap_get(&m, "beta", 4), &b);
    assert_ptr_equal(wb_strmap_del(&m, "beta", 4), &b);
    assert_int_equal(wb_strmap_count(&m), 0);
    /* Empty again: the table is gone. */
    assert_null(m.buckets);
    assert_int_equal(m.nbuckets, 0);
    /* And usable again. */
    assert_int_equal(wb_strmap_put(&m, "beta", 4, &a), 0);
    assert_ptr_equal(wb_strmap_get(&m, "beta", 4), &a);
    wb_strmap_fini(&m);
    assert_int_equal(wb_strmap_count(&m), 0);
    assert_null(wb_strmap_get(&m, "beta", 4));
}

static void test_keys_are_copied_bytes(void **state)
{
    (void)state;
    wb_strmap_t m;
    int v[5];
    wb_strmap_init(&m);
    assert_int_equal(wb_strmap_put(&m, "a\0b", 3, &v[0]), 0);
    assert_int_equal(wb_strmap_put(&m, "a\0c", 3, &v[1]), 0);
    assert_int_equal(wb_strmap_put(&m, "a", 1, &v[2]), 0);
    assert_int_equal(wb_strmap_put(&m, "a\0", 2, &v[3]), 0);
    assert_int_equal(wb_strmap_put(&m, "", 0, &v[4]), 0);
    assert_int_equal(wb_strmap_count(&m), 5);
    assert_ptr_equal(wb_strmap_get(&m, "a\0b", 3), &v[0]);
    assert_ptr_equal(wb_strmap_get(&m, "a\0c", 3), &v[1]);
    assert_ptr_equal(wb_strmap_get(&m, "a", 1), &v[2]);
    assert_ptr_equal(wb_strmap_get(&m, "a\0", 2), &v[3]);
    assert_ptr_equal(wb_strmap_get(&m, "", 0), &v[4]);
    assert_null(wb_strmap_get(&m, "a\0d", 3));
    assert_null(wb_strmap_get(&m, "a\0\0", 3));

    /* The map keeps its own copy: the caller's buffer may change. */
    char key[8] = "xy\0z";
    assert_int_equal(wb_strmap_put(&m, key, 4, &v[0]), 0);
    memcpy(key, "QQQQ", 4);
    assert_null(wb_strmap_get(&m, key, 4));
    assert_ptr_equal(wb_strmap_get(&m, "xy\0z", 4), &v[0]);

    assert_ptr_equal(wb_strmap_del(&m, "a\0", 2), &v[3]);
    assert_ptr_equal(wb_strmap_get(&m, "a", 1), &v[2]);
    assert_ptr_equal(wb_strmap_get(&m, "a\0b", 3), &v[0]);
    assert_ptr_equal(wb_strmap_del(&m, "", 0), &v[4]);
    assert_int_equal(wb_strmap_count(&m), 4);
    wb_strmap_fini(&m); /* frees the remaining entries (ASan/valgrind check) */
}

enum { MANY = 100000 };

static size_t many_key(char *buf, uint32_t i)
{
    return (size_t)snprintf(buf, 32, "key-%u", i);
}

static void test_many_keys_grow_and_shrink(void **state)
{
    (void)state;
    wb_strmap_t m;
    char k[32];
    wb_strmap_init(&m);
    for (uint32_t i = 0; i < MANY; i++) {
        assert_int_equal(wb_strmap_put(&m, k, many_key(k, i), (void *)(uintptr_t)(i + 1)), 0);
        if (i % 997 == 0)
            check_load(&m);
    }
    assert_int_equal(wb_strmap_count(&m), MANY);
    check_load(&m);
    assert_true(m.nbuckets >= MANY);
    size_t peak = m.nbuckets;
    for (uint32_t i = 0; i < MANY; i++)
        assert_int_equal((uintptr_t)wb_strmap_get(&m, k, many_key(k, i)), i + 1);
    assert_null(wb_strmap_get(&m, "key-100000", 10));

    /* Delete the even keys, then the odd ones: the table follows the count. */
    for (uint32_t i = 0; i < MANY; i += 2) {
        assert_int_equal((uintptr_t)wb_strmap_del(&m, k, many_key(k, i)), i + 1);
        if (i % 1001 == 0)
            check_load(&m);
    }
    assert_int_equal(wb_strmap_count(&m), MANY / 2);
    for (uint32_t i = 0; i < MANY; i++)
        assert_int_equal((uintptr_t)wb_strmap_get(&m, k, many_key(k, i)), i % 2 ? i + 1 : 0);
    for (uint32_t i = 1; i < MANY - 100; i += 2)
        assert_int_equal((uintptr_t)wb_strmap_del(&m, k, many_key(k, i)), i + 1);
    assert_int_equal(wb_strmap_count(&m), 50);
    check_load(&m);
    assert_true(m.nbuckets <= 1024);
    assert_true(m.nbuckets < peak / 64);
    for (uint32_t i = MANY - 99; i < MANY; i += 2)
        assert_int_equal((uintptr_t)wb_strmap_get(&m, k, many_key(k, i)), i + 1);
    for (uint32_t i = MANY - 99; i < MANY; i += 2)
        assert_int_equal((uintptr_t)wb_strmap_del(&m, k, many_key(k, i)), i + 1);
    assert_int_equal(wb_strmap_count(&m), 0);
    assert_int_equal(m.nbuckets, 0);
    assert_null(m.buckets);
    wb_strmap_fini(&m);
}

typedef struct {
    int seen[1000];
    int visits, stop_after;
} visit_t;

static int visit(void *arg, const void *key, size_t len, void *val)
{
    visit_t *v = arg;
    char buf[32];
    uintptr_t i = (uintptr_t)val;
    assert_true(i < 1000);
    /* The key handed out is the one stored with this value. */
    assert_int_equal(len, many_key(buf, (uint32_t)i));
    assert_memory_equal(key, buf, len);
    v->seen[i]++;
    v->visits++;
    return v->stop_after > 0 && v->visits == v->stop_after;
}

static void test_each_visits_once(void **state)
{
    (void)state;
    wb_strmap_t m;
    char k[32];
    static visit_t v;
    wb_strmap_init(&m);
    memset(&v, 0, sizeof(v));
    wb_strmap_each(&m, visit, &v); /* empty: nothing */
    assert_int_equal(v.visits, 0);
    for (uint32_t i = 0; i < 1000; i++)
        assert_int_equal(wb_strmap_put(&m, k, many_key(k, i), (void *)(uintptr_t)i), 0);
    /* Replacing does not add a visit. */
    for (uint32_t i = 0; i < 1000; i += 3)
        assert_int_equal(wb_strmap_put(&m, k, many_key(k, i), (void *)(uintptr_t)i), 0);
    wb_strmap_each(&m, visit, &v);
    assert_int_equal(v.visits, 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(v.seen[i], 1);

    memset(&v, 0, sizeof(v));
    v.stop_after = 7;
    wb_strmap_each(&m, visit, &v);
    assert_int_equal(v.visits, 7);
    wb_strmap_fini(&m);
}

static void test_maps_have_their_own_keys(void **state)
{
    (void)state;
    wb_strmap_t a, b;
    wb_strmap_init(&a);
    wb_strmap_init(&b);
    /* Each map hashes with a random key of its own, so a peer cannot
     * precompute colliding names. */
    assert_memory_not_equal(a.key, b.key, sizeof(a.key));
    static const uint8_t zero[16];
    assert_memory_not_equal(a.key, zero, sizeof(a.key));
    wb_strmap_fini(&a);
    wb_strmap_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del_replace),
        cmocka_unit_test(test_keys_are_copied_bytes),
        cmocka_unit_test(test_many_keys_grow_and_shrink),
        cmocka_unit_test(test_each_visits_once),
        cmocka_unit_test(test_maps_have_their_own_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
