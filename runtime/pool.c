#include "runtime/pool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/assert.h"

#define SLAB_BYTES (64 * 1024)

typedef struct block_s {
    struct block_s *next;
} block_t;

/* A chain of blocks handed between a thread and the depot. */
typedef struct mag_s {
    block_t *head;
    size_t count;
} mag_t;

typedef struct slab_s {
    struct slab_s *next;
    int cls;
} slab_t;

typedef struct {
    pthread_mutex_t lock;
    block_t *free; /* depot: blocks no thread holds */
    size_t free_count;
    size_t total; /* blocks carved from slabs of this class */
    slab_t *slabs;
} depot_t;

typedef struct {
    mag_t cls[WB_POOL_CLASSES];
    int registered;
    int dead; /* the thread is exiting: its cache is gone, use the depot */
} cache_t;

static depot_t depots[WB_POOL_CLASSES] = {
#define D                                                                                          \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL                                                \
    }
    D, D, D, D,
    D, D
#undef D
};

static _Thread_local cache_t cache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_destroy(void *arg)
{
    (void)arg;
    wb_pool_flush_thread();
    /* Destructors of other keys may still allocate or free after this one:
     * from now on they go straight to the depot. */
    cache.dead = 1;
}

static void cache_key_init(void)
{
    int rc = pthread_key_create(&cache_key, cache_destroy);
    WB_ASSERT(rc == 0);
}

int wb_pool_class(size_t n)
{
    size_t sz = 128;
    for (int c = 0; c < WB_POOL_CLASSES; c++, sz <<= 1)
        if (n <= sz)
            return c;
    return -1;
}

size_t wb_pool_class_size(int c)
{
    WB_ASSERT(c >= 0 && c < WB_POOL_CLASSES);
    return (size_t)128 << c;
}

/* Move up to `want` blocks from the depot, carving a new slab when it is empty. */
static int refill(int c, mag_t *m, size_t want)
{
    depot_t *d = &depots[c];
    size_t bsz = wb_pool_class_size(c);

    pthread_mutex_lock(&d->lock);
    if (d->free == NULL) {
        /* The slab header sits in the first block so blocks stay aligned. */
        char *mem = malloc(SLAB_BYTES);
        if (mem == NULL) {
            pthread_mutex_unlock(&d->lock);
            return -1;
        }
        slab_t *s = (slab_t *)mem;
        s->cls = c;
        s->next = d->slabs;
        d->slabs = s;
        size_t n = SLAB_BYTES / bsz - 1;
        for (size_t i = n; i >= 1; i--) {
            block_t *b = (block_t *)(mem + i * bsz);
            b->next = d->free;
            d->free = b;
        }
        d->free_count += n;
        d->total += n;
    }
    while (want-- > 0 && d->free != NULL) {
        block_t *b = d->free;
        d->free = b->next;
        d->free_count--;
        b->next = m->head;
        m->head = b;
        m->count++;
    }
    pthread_mutex_unlock(&d->lock);
    return 0;
}

/* Give `n` blocks of the thread's chain back to the depot. */
static void spill(int c, mag_t *m, size_t n)
{
    depot_t *d = &depots[c];
    block_t *first = m->head, *last = first;
    size_t k = 1;
    if (first == NULL || n == 0)
        return;
    while (k < n && last->next != NULL) {
        last = last->next;
        k++;
    }
    m->head = last->next;
    m->count -= k;
    pthread_mutex_lock(&d->lock);
    last->next = d->free;
    d->free = first;
    d->free_count += k;
    pthread_mutex_unlock(&d->lock);
}

static void register_thread(void)
{
    pthread_once(&cache_once, cache_key_init);
    pthread_setspecific(cache_key, &cache);
    cache.registered = 1;
}

void *wb_pool_alloc(int c)
{
    WB_ASSERT(c >= 0 && c < WB_POOL_CLASSES);
    mag_t *m = &cache.cls[c];
    if (WB_UNLIKELY(cache.dead)) {
        mag_t one = {NULL, 0};
        if (refill(c, &one, 1) != 0 || one.head == NULL)
            return NULL;
        return one.head;
    }
    if (m->head == NULL) {
        if (!cache.registered)
            register_thread();
        if (refill(c, m, WB_POOL_MAG) != 0 || m->head == NULL)
            return NULL;
    }
    block_t *b = m->head;
    m->head = b->next;
    m->count--;
    return b;
}

void wb_pool_free(int c, void *p)
{
    WB_ASSERT(c >= 0 && c < WB_POOL_CLASSES);
    mag_t *m = &cache.cls[c];
    block_t *b = p;
    if (WB_UNLIKELY(cache.dead)) {
        mag_t one = {b, 1};
        b->next = NULL;
        spill(c, &one, 1);
        return;
    }
    if (!cache.registered)
        register_thread();
    b->next = m->head;
    m->head = b;
    if (++m->count >= 2 * WB_POOL_MAG)
        spill(c, m, WB_POOL_MAG);
}

void wb_pool_flush_thread(void)
{
    for (int c = 0; c < WB_POOL_CLASSES; c++)
        spill(c, &cache.cls[c], cache.cls[c].count);
}

size_t wb_pool_trim(void)
{
    size_t out = 0;
    wb_pool_flush_thread();
    for (int c = 0; c < WB_POOL_CLASSES; c++) {
        depot_t *d = &depots[c];
        pthread_mutex_lock(&d->lock);
        if (d->free_count == d->total) {
            while (d->slabs != NULL) {
                slab_t *s = d->slabs;
                d->slabs = s->next;
                free(s);
            }
            d->free = NULL;
            d->free_count = d->total = 0;
        } else {
            out += d->total - d->free_count;
        }
        pthread_mutex_unlock(&d->lock);
    }
    return out;
}
