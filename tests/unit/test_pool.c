/*
 * test_pool.c - the event block pool: size classes, distinct aligned blocks,
 * blocks allocated on one thread and freed on another, the per-thread cache
 * coming home at thread exit, and trim accounting for every block.
 * Runs under TSan too (label "threaded").
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/pool.h"

static void test_class_mapping(void **state)
{
    (void)state;
    assert_int_equal(wb_pool_class(0), 0);
    assert_int_equal(wb_pool_class(1), 0);
    assert_int_equal(wb_pool_class(128), 0);
    assert_int_equal(wb_pool_class(129), 1);
    assert_int_equal(wb_pool_class(256), 1);
    assert_int_equal(wb_pool_class(257), 2);
    assert_int_equal(wb_pool_class(2048), 4);
    assert_int_equal(wb_pool_class(2049), 5);
    assert_int_equal(wb_pool_class(4096), 5);
    assert_int_equal(wb_pool_class(4097), -1);
    assert_int_equal(wb_pool_class(1u << 20), -1);
    assert_int_equal(wb_pool_class(SIZE_MAX), -1);

    for (int c = 0; c < WB_POOL_CLASSES; c++)
        assert_int_equal(wb_pool_class_size(c), (size_t)128 << c);
    assert_int_equal(wb_pool_class_size(WB_POOL_CLASSES - 1), WB_POOL_MAX_BLOCK);

    /* Every size gets the smallest class that holds it. */
    for (size_t n = 0; n <= WB_POOL_MAX_BLOCK + 64; n++) {
        int c = wb_pool_class(n);
        if (n > WB_POOL_MAX_BLOCK) {
            assert_int_equal(c, -1);
            continue;
        }
        assert_true(c >= 0 && c < WB_POOL_CLASSES);
        assert_true(wb_pool_class_size(c) >= n);
        if (c > 0)
            assert_true(wb_pool_class_size(c - 1) < n);
    }
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static unsigned char pattern(size_t i, size_t off)
{
    return (unsigned char)((i * 131u + off * 7u + 1u) & 0xff);
}

enum { NBLOCKS = 1500 }; /* many magazines, and for 4 KiB blocks many slabs */

static void test_alloc_distinct_aligned(void **state)
{
    (void)state;
    static void *blk[NBLOCKS];
    static uintptr_t sorted[NBLOCKS];
    assert_int_equal(wb_pool_trim(), 0);
    for (int c = 0; c < WB_POOL_CLASSES; c++) {
        size_t sz = wb_pool_class_size(c);
        for (size_t i = 0; i < NBLOCKS; i++) {
            blk[i] = wb_pool_alloc(c);
            assert_non_null(blk[i]);
            assert_int_equal((uintptr_t)blk[i] % alignof(max_align_t), 0);
            /* Write the whole block: ASan sees any block that is not all ours. */
            unsigned char *p = blk[i];
            for (size_t off = 0; off < sz; off++)
                p[off] = pattern(i, off);
        }
        /* No block was overwritten by a later one: the blocks do not overlap. */
        for (size_t i = 0; i < NBLOCKS; i++) {
            unsigned char *p = blk[i];
            for (size_t off = 0; off < sz; off++)
                if (p[off] != pattern(i, off))
                    fail_msg("class %d block %zu byte %zu overwritten", c, i, off);
            sorted[i] = (uintptr_t)blk[i];
        }
        qsort(sorted, NBLOCKS, sizeof(sorted[0]), cmp_ptr);
        for (size_t i = 1; i < NBLOCKS; i++)
            assert_true(sorted[i] - sorted[i - 1] >= sz);
        /* All of them out, none cached. */
        assert_int_equal(wb_pool_trim(), NBLOCKS);
        for (size_t i = 0; i < NBLOCKS; i++)
            wb_pool_free(c, blk[i]);
        assert_int_equal(wb_pool_trim(), 0);
    }
}

static void test_trim_counts_outstanding(void **state)
{
    (void)state;
    void *a[10], *b[3];
    assert_int_equal(wb_pool_trim(), 0);
    for (int i = 0; i < 10; i++)
        a[i] = wb_pool_alloc(0);
    for (int i = 0; i < 3; i++)
        b[i] = wb_pool_alloc(WB_POOL_CLASSES - 1);
    /* The blocks this thread has cached go home; the 13 handed out do not. */
    assert_int_equal(wb_pool_trim(), 13);
    assert_int_equal(wb_pool_trim(), 13);
    for (int i = 0; i < 10; i++)
        wb_pool_free(0, a[i]);
    assert_int_equal(wb_pool_trim(), 3);
    for (int i = 0; i < 3; i++)
        wb_pool_free(WB_POOL_CLASSES - 1, b[i]);
    assert_int_equal(wb_pool_trim(), 0);
    /* Slabs were released: the pool carves new ones on demand. */
    void *p = wb_pool_alloc(2);
    assert_non_null(p);
    memset(p, 0xab, wb_pool_class_size(2));
    wb_pool_free(2, p);
    assert_int_equal(wb_pool_trim(), 0);
}

/* ---- a thread whose cache holds blocks ---------------------------------- */

typedef struct {
    atomic_int phase; /* 0 start, 1 cached, 2 flush asked, 3 flushed, 4 exit asked */
} holder_t;

static void wait_phase(atomic_int *p, int want)
{
    while (atomic_load(p) != want)
        sched_yield();
}

static void *holder_main(void *arg)
{
    holder_t *h = arg;
    void *blk[20];
    for (int i = 0; i < 20; i++)
        blk[i] = wb_pool_alloc(1);
    for (int i = 0; i < 20; i++)
        wb_pool_free(1, blk[i]);
    atomic_store(&h->phase, 1);
    wait_phase(&h->phase, 2);
    wb_pool_flush_thread();
    atomic_store(&h->phase, 3);
    wait_phase(&h->phase, 4);
    /* Cache some blocks again and leave them for the exit flush. */
    for (int i = 0; i < 20; i++)
        blk[i] = wb_pool_alloc(3);
    for (int i = 0; i < 20; i++)
        wb_pool_free(3, blk[i]);
    return NULL;
}

static void test_thread_cache(void **state)
{
    (void)state;
    holder_t h = {0};
    pthread_t t;
    assert_int_equal(wb_pool_trim(), 0);
    assert_int_equal(pthread_create(&t, NULL, holder_main, &h), 0);
    wait_phase(&h.phase, 1);
    /* The running thread's cache counts as out... */
    assert_true(wb_pool_trim() >= 20);
    atomic_store(&h.phase, 2);
    wait_phase(&h.phase, 3);
    /* ...until it flushes it. */
    assert_int_equal(wb_pool_trim(), 0);
    atomic_store(&h.phase, 4);
    assert_int_equal(pthread_join(t, NULL), 0);
    /* The exit flush brought the last cache home. */
    assert_int_equal(wb_pool_trim(), 0);
}

/* ---- a free made while the thread exits ---------------------------------- */

/* A thread-exit destructor of someone else's (a library's per-thread cache
 * of events, say) that runs after the pool's own and frees a block: the
 * block must still find its way home. */
static pthread_key_t late_key;

static void late_free(void *block)
{
    wb_pool_free(0, block);
}

static void *late_main(void *arg)
{
    (void)arg;
    void *b = wb_pool_alloc(0);
    if (b == NULL)
        abort();
    pthread_setspecific(late_key, b);
    return NULL;
}

static void test_free_in_late_destructor(void **state)
{
    (void)state;
    pthread_t t;
    /* The pool's key exists already (earlier tests); ours comes after it,
     * and glibc runs destructors in key order. */
    wb_pool_free(0, wb_pool_alloc(0));
    assert_int_equal(pthread_key_create(&late_key, late_free), 0);
    assert_int_equal(wb_pool_trim(), 0);
    assert_int_equal(pthread_create(&t, NULL, late_main, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    pthread_key_delete(late_key);
    assert_int_equal(wb_pool_trim(), 0);
}

/* ---- producer allocates, consumer frees --------------------------------- */

enum { RING = 1024, TOTAL = 1 << 20 };

typedef struct {
    void *slot[RING];
    _Atomic size_t head; /* next slot the producer fills */
    _Atomic size_t tail; /* next slot the consumer takes */
    int bad;             /* consumer: blocks that were not what was sent */
} ring_t;

static int class_of(size_t i)
{
    /* Mostly small blocks, as events are, with every class in the mix. */
    return (i & 7) < 3 ? 0 : (int)(i % WB_POOL_CLASSES);
}

static void *producer_main(void *arg)
{
    ring_t *r = arg;
    for (size_t i = 0; i < TOTAL; i++) {
        int c = class_of(i);
        size_t sz = wb_pool_class_size(c);
        uint64_t *p = wb_pool_alloc(c);
        if (p == NULL)
            abort();
        p[0] = i;
        p[sz / 8 - 1] = ~(uint64_t)i;
        size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
        while (h - atomic_load_explicit(&r->tail, memory_order_acquire) == RING)
            sched_yield();
        r->slot[h % RING] = p;
        atomic_store_explicit(&r->head, h + 1, memory_order_release);
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    ring_t *r = arg;
    for (size_t i = 0; i < TOTAL; i++) {
        size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
        while (atomic_load_explicit(&r->head, memory_order_acquire) == t)
            sched_yield();
        uint64_t *p = r->slot[t % RING];
        atomic_store_explicit(&r->tail, t + 1, memory_order_release);
        int c = class_of(i);
        size_t sz = wb_pool_class_size(c);
        /* A block handed out twice would carry a later index. */
        if (p[0] != i || p[sz / 8 - 1] != ~(uint64_t)i)
            r->bad++;
        wb_pool_free(c, p);
    }
    return NULL;
}

static void test_cross_thread(void **state)
{
    (void)state;
    ring_t *r = calloc(1, sizeof(*r));
    pthread_t pt, ct;
    assert_non_null(r);
    assert_int_equal(wb_pool_trim(), 0);
    assert_int_equal(pthread_create(&ct, NULL, consumer_main, r), 0);
    assert_int_equal(pthread_create(&pt, NULL, producer_main, r), 0);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(pthread_join(ct, NULL), 0);
    assert_int_equal(r->bad, 0);
    assert_int_equal(atomic_load(&r->tail), TOTAL);
    /* Both threads' caches came home when they exited. */
    assert_int_equal(wb_pool_trim(), 0);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_mapping),
        cmocka_unit_test(test_alloc_distinct_aligned),
        cmocka_unit_test(test_trim_counts_outstanding),
        cmocka_unit_test(test_thread_cache),
        cmocka_unit_test(test_cross_thread),
        /* Last: if a block is stranded, the tests before have seen a clean pool. */
        cmocka_unit_test(test_free_in_late_destructor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
