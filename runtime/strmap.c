/*
 * strmap.c - see strmap.h.
 */
#include "runtime/strmap.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

#define MIN_BUCKETS 16

struct wb_strmap_ent_s {
    wb_strmap_ent_t *next;
    uint64_t hash;
    void *val;
    size_t len;
    unsigned char k[]; /* len bytes and a NUL */
};

static uint64_t hash(const wb_strmap_t *m, const void *key, size_t len)
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, key, len, m->key);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return h;
}

void wb_strmap_init(wb_strmap_t *m)
{
    memset(m, 0, sizeof(*m));
    if (sodium_init() < 0)
        abort(); /* libsodium could not initialise: no randomness either */
    randombytes_buf(m->key, sizeof(m->key));
}

void wb_strmap_fini(wb_strmap_t *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        wb_strmap_ent_t *e = m->buckets[i];
        while (e != NULL) {
            wb_strmap_ent_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = m->count = 0;
}

static int rehash(wb_strmap_t *m, size_t n)
{
    wb_strmap_ent_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return WB_ENOMEM;
    for (size_t i = 0; i < m->nbuckets; i++) {
        wb_strmap_ent_t *e = m->buckets[i];
        while (e != NULL) {
            wb_strmap_ent_t *next = e->next;
            size_t j = (size_t)e->hash & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
    return 0;
}

static wb_strmap_ent_t **find(const wb_strmap_t *m, const void *key, size_t len, uint64_t h)
{
    wb_strmap_ent_t **pp = &m->buckets[(size_t)h & (m->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->len == len && memcmp((*pp)->k, key, len) == 0)
            return pp;
    return pp;
}

void *wb_strmap_get(const wb_strmap_t *m, const void *key, size_t len)
{
    if (m->count == 0)
        return NULL;
    wb_strmap_ent_t *e = *find(m, key, len, hash(m, key, len));
    return e != NULL ? e->val : NULL;
}

int wb_strmap_put(wb_strmap_t *m, const void *key, size_t len, void *val)
{
    if (m->nbuckets == 0 && rehash(m, MIN_BUCKETS) != 0)
        return WB_ENOMEM;
    uint64_t h = hash(m, key, len);
    wb_strmap_ent_t **pp = find(m, key, len, h);
    if (*pp != NULL) {
        (*pp)->val = val;
        return 0;
    }
    wb_strmap_ent_t *e = malloc(sizeof(*e) + len + 1);
    if (e == NULL)
        return WB_ENOMEM;
    e->next = NULL;
    e->hash = h;
    e->val = val;
    e->len = len;
    memcpy(e->k, key, len);
    e->k[len] = 0;
    *pp = e;
    m->count++;
    if (m->count > m->nbuckets)
        rehash(m, m->nbuckets * 2); /* on ENOMEM the chains just grow */
    return 0;
}

void *wb_strmap_del(wb_strmap_t *m, const void *key, size_t len)
{
    if (m->count == 0)
        return NULL;
    wb_strmap_ent_t **pp = find(m, key, len, hash(m, key, len));
    wb_strmap_ent_t *e = *pp;
    if (e == NULL)
        return NULL;
    *pp = e->next;
    void *val = e->val;
    free(e);
    m->count--;
    if (m->count == 0) {
        free(m->buckets);
        m->buckets = NULL;
        m->nbuckets = 0;
    } else if (m->nbuckets > MIN_BUCKETS && m->count < m->nbuckets / 8) {
        rehash(m, m->nbuckets / 2);
    }
    return val;
}

void wb_strmap_each(wb_strmap_t *m, wb_strmap_visit_cb fn, void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (wb_strmap_ent_t *e = m->buckets[i]; e != NULL; e = e->next)
            if (fn(arg, e->k, e->len, e->val))
                return;
}
