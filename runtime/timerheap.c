#include "runtime/timerheap.h"

#include <stdlib.h>

#include "runtime/assert.h"
#include "runtime/error.h"

static inline int less(const wb_theap_entry_t *a, const wb_theap_entry_t *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static inline void place(wb_theap_t *h, size_t i, wb_theap_entry_t *e)
{
    h->v[i] = e;
    e->index = i;
}

static void sift_up(wb_theap_t *h, size_t i)
{
    wb_theap_entry_t *e = h->v[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!less(e, h->v[p]))
            break;
        place(h, i, h->v[p]);
        i = p;
    }
    place(h, i, e);
}

static void sift_down(wb_theap_t *h, size_t i)
{
    wb_theap_entry_t *e = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && less(h->v[c + 1], h->v[c]))
            c++;
        if (!less(h->v[c], e))
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, e);
}

void wb_theap_init(wb_theap_t *h)
{
    h->v = NULL;
    h->n = h->cap = 0;
    h->seq = 0;
}

void wb_theap_fini(wb_theap_t *h)
{
    free(h->v);
    wb_theap_init(h);
}

int wb_theap_push(wb_theap_t *h, wb_theap_entry_t *e)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 64;
        wb_theap_entry_t **nv = realloc(h->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return WB_ENOMEM;
        h->v = nv;
        h->cap = ncap;
    }
    e->seq = h->seq++;
    place(h, h->n++, e);
    sift_up(h, e->index);
    return 0;
}

void wb_theap_remove(wb_theap_t *h, wb_theap_entry_t *e)
{
    size_t i = e->index;
    WB_ASSERT(i < h->n && h->v[i] == e);
    e->index = SIZE_MAX;
    h->n--;
    if (i == h->n)
        return;
    place(h, i, h->v[h->n]);
    if (i > 0 && less(h->v[i], h->v[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

wb_theap_entry_t *wb_theap_pop_due(wb_theap_t *h, uint64_t now)
{
    if (h->n == 0 || h->v[0]->deadline > now)
        return NULL;
    wb_theap_entry_t *e = h->v[0];
    wb_theap_remove(h, e);
    return e;
}
