#include "runtime/idmap.h"

#include <stdlib.h>

#include "runtime/error.h"

static inline size_t slot_of(uint64_t key, size_t cap)
{
    /* Fibonacci hashing spreads sequential ids over the table. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

void wb_idmap_init(wb_idmap_t *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->count = 0;
}

void wb_idmap_fini(wb_idmap_t *m)
{
    free(m->slots);
    wb_idmap_init(m);
}

static int grow(wb_idmap_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    wb_idmap_slot_t *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return WB_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == 0)
            continue;
        size_t j = slot_of(m->slots[i].key, ncap);
        while (ns[j].key != 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int wb_idmap_put(wb_idmap_t *m, uint64_t key, void *val)
{
    if (key == 0)
        return WB_EINVAL;
    if ((m->count + 1) * 2 > m->cap) {
        int rc = grow(m);
        if (rc != 0)
            return rc;
    }
    size_t i = slot_of(key, m->cap);
    while (m->slots[i].key != 0) {
        if (m->slots[i].key == key) {
            m->slots[i].val = val;
            return 0;
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->count++;
    return 0;
}

void *wb_idmap_get(const wb_idmap_t *m, uint64_t key)
{
    if (m->cap == 0 || key == 0)
        return NULL;
    size_t i = slot_of(key, m->cap);
    while (m->slots[i].key != 0) {
        if (m->slots[i].key == key)
            return m->slots[i].val;
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

void *wb_idmap_del(wb_idmap_t *m, uint64_t key)
{
    if (m->cap == 0 || key == 0)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = slot_of(key, m->cap);
    while (m->slots[i].key != key) {
        if (m->slots[i].key == 0)
            return NULL;
        i = (i + 1) & mask;
    }
    void *val = m->slots[i].val;
    /* Backward shift: pull later entries of the run into the hole. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j].key != 0; j = (j + 1) & mask) {
        size_t home = slot_of(m->slots[j].key, m->cap);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].key = 0;
    m->slots[hole].val = NULL;
    m->count--;
    return val;
}

void wb_idmap_each(const wb_idmap_t *m, void (*cb)(uint64_t key, void *val, void *arg), void *arg)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != 0)
            cb(m->slots[i].key, m->slots[i].val, arg);
}
