/*
 * bench_queue.c - the inbox queue (runtime/mpscq.h) against liburcu's wfcqueue
 * and Concurrency Kit's FIFOs, raw: no runtime, no wake-ups.
 *
 * One or two producer threads push 16-byte items to one consumer thread,
 * which busy-polls (it yields the CPU only after 4096 empty polls in a row,
 * the same for every queue, so that an oversubscribed machine still makes
 * progress). The consumer is pinned to the first CPU and the producers to
 * the others; with only two CPUs both producers share the second, so the
 * 2-producer figures show two interleaved streams rather than producers
 * racing on the queue head.
 *
 * Items are preallocated: each producer cycles through its own ring of RING
 * items and reuses one only after the consumer has reported it taken, so no
 * allocation is measured and memory stays bounded. Every item is 80 bytes
 * (the largest link, our 64-byte event header, plus the payload), so all
 * queues move the same items; ck_fifo_spsc links them through its own
 * 16-byte entries. The consumer checks that each producer's items arrive in
 * order and complete.
 *
 * The clock runs from the first item received to the last. A run ends after
 * ITEMS items or RUN_NS nanoseconds, whichever comes first. Rounds run every
 * queue once, in turn, so that drift in the machine's speed (a VM's
 * neighbours) hits them alike; each figure is the median of RUNS rounds and
 * each ratio the median of the ratios within a round. The first line is the
 * floor under all of them: one cache line handed from CPU to CPU.
 * WB_BENCH_VERBOSE=1 prints every run on stderr.
 *
 * Queues:
 *   wb_mpscq          ours: intrusive Vyukov MPSC, pop one at a time
 *   urcu_wfcq         cds_wfcq_enqueue / __cds_wfcq_dequeue_nonblocking
 *   urcu_wfcq_splice  cds_wfcq_enqueue / __cds_wfcq_splice_nonblocking into a
 *                     private queue, then dequeue from that (batch drain)
 *   ck_fifo_spsc      1 producer only; its entries recycled the CK way
 *   ck_fifo_mpmc      Michael-Scott queue with double-width CAS
 * The nonblocking urcu calls are used because the blocking ones sleep 10 ms
 * when they catch a producer between its exchange and its link store.
 * ck_ring's MPSC mode is left out: its producers wait for each other in
 * order, and two producers sharing one CPU stall it for whole time slices.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/event.h"
#include "runtime/mpscq.h"
#include "tests/bench/bench_common.h"

#if WB_HAVE_URCU
#define _LGPL_SOURCE
#include <urcu/wfcqueue.h>
#endif
#if WB_HAVE_CK
#include <ck_fifo.h>
#endif

#define ITEMS         (10u * 1000 * 1000) /* per run, all producers together */
#define RUN_NS        150000000ull        /* cap on one run */
#define RUNS          5
#define RING          65536u /* items per producer, reused in turn */
#define PUBLISH_EVERY 256u   /* consumer reports progress this often */
#define MAX_PROD      2

typedef struct {
    uint32_t producer;
    uint32_t pad;
    uint64_t seq;
} payload_t; /* the 16 bytes the test moves */

typedef struct {
    union {
        wb_event_t ev;
#if WB_HAVE_URCU
        struct cds_wfcq_node wn;
#endif
#if WB_HAVE_CK
        ck_fifo_mpmc_entry_t me;
#endif
    } link;
    payload_t p;
} item_t;

enum {
    Q_WB,
    Q_WFCQ,
    Q_WFCQ_SPLICE,
    Q_CK_SPSC,
    Q_CK_MPMC,
};

typedef struct {
    _Alignas(64) _Atomic uint64_t taken; /* items of this producer consumed */
    char pad_[64 - sizeof(uint64_t)];
} progress_t;

typedef struct {
    _Alignas(64) int nprod;
    uint64_t quota; /* items per producer */
    item_t *items[MAX_PROD];
    _Atomic int go, stop;
    _Atomic int done[MAX_PROD];
    _Atomic uint64_t sent[MAX_PROD];
    progress_t prog[MAX_PROD];

    /* The queues; each run uses one. */
    _Alignas(64) wb_mpscq_t wbq;
#if WB_HAVE_URCU
    _Alignas(64) struct __cds_wfcq_head wh;
    _Alignas(64) struct cds_wfcq_tail wt;
#endif
#if WB_HAVE_CK
    _Alignas(64) ck_fifo_spsc_t spsc;
    _Alignas(64) ck_fifo_mpmc_t mpmc;
    ck_fifo_spsc_entry_t *spsc_entries; /* RING + 1, recycled through the fifo */
    size_t spsc_fresh;
    _Alignas(16) ck_fifo_mpmc_entry_t mpmc_stub;
#endif

    /* Results, written by the consumer. */
    uint64_t received;
    uint64_t t_first, t_last;
} bench_t;

typedef struct {
    bench_t *b;
    int id;
} prod_arg_t;

static bench_t B;

/* ---- producer ------------------------------------------------------------- */

/* Wait until item `s` may take its ring slot: the consumer has taken item
 * s - RING and the one after it (ck_fifo_mpmc keeps an item's entry as its
 * dummy until the next dequeue). Returns the first item that may not, or 0
 * when told to stop. */
static uint64_t wait_room(bench_t *b, int id, uint64_t s)
{
    unsigned spins = 0;
    for (;;) {
        uint64_t t = atomic_load_explicit(&b->prog[id].taken, memory_order_acquire);
        if (t + RING - 1 > s)
            return t + RING - 1;
        if (atomic_load_explicit(&b->stop, memory_order_relaxed))
            return 0;
        if (++spins < 1024)
            bench_relax();
        else
            sched_yield();
    }
}

static inline __attribute__((always_inline)) void push_item(bench_t *b, int kind, item_t *it)
{
    switch (kind) {
    case Q_WB:
        wb_mpscq_push(&b->wbq, &it->link.ev);
        break;
#if WB_HAVE_URCU
    case Q_WFCQ:
    case Q_WFCQ_SPLICE:
        cds_wfcq_node_init(&it->link.wn);
        cds_wfcq_enqueue(&b->wh, &b->wt, &it->link.wn);
        break;
#endif
#if WB_HAVE_CK
    case Q_CK_SPSC: {
        ck_fifo_spsc_entry_t *e = ck_fifo_spsc_recycle(&b->spsc);
        if (e == NULL) {
            if (b->spsc_fresh >= RING + 2)
                BENCH_FAIL("ck_fifo_spsc: more entries in flight than items");
            e = &b->spsc_entries[b->spsc_fresh++];
        }
        ck_fifo_spsc_enqueue(&b->spsc, e, it);
        break;
    }
    case Q_CK_MPMC:
        ck_fifo_mpmc_enqueue(&b->mpmc, &it->link.me, it);
        break;
#endif
    default:
        break;
    }
}

static inline __attribute__((always_inline)) void produce(prod_arg_t *pa, int kind)
{
    bench_t *b = pa->b;
    int id = pa->id;
    item_t *items = b->items[id];
    uint64_t lim = RING - 1, s;

    /* Consumer on the first CPU, producers spread over the others. */
    bench_pin(1 + id % (bench_ncpus() > 1 ? bench_ncpus() - 1 : 1));
    while (!atomic_load_explicit(&b->go, memory_order_acquire))
        bench_relax();
    for (s = 0; s < b->quota; s++) {
        if (s >= lim) {
            lim = wait_room(b, id, s);
            if (lim == 0)
                break;
        }
        if ((s & 4095) == 0 && atomic_load_explicit(&b->stop, memory_order_relaxed))
            break;
        item_t *it = &items[s & (RING - 1)];
        it->p.producer = (uint32_t)id;
        it->p.seq = s;
        push_item(b, kind, it);
    }
    atomic_store_explicit(&b->sent[id], s, memory_order_relaxed);
    atomic_store_explicit(&b->done[id], 1, memory_order_release);
}

#define PRODUCER(name, kind)                                                                       \
    static void *name(void *arg)                                                                   \
    {                                                                                              \
        produce(arg, kind);                                                                        \
        return NULL;                                                                               \
    }
PRODUCER(prod_wb, Q_WB)
#if WB_HAVE_URCU
PRODUCER(prod_wfcq, Q_WFCQ)
#endif
#if WB_HAVE_CK
PRODUCER(prod_ck_spsc, Q_CK_SPSC)
PRODUCER(prod_ck_mpmc, Q_CK_MPMC)
#endif

/* ---- consumer ------------------------------------------------------------- */

/* Everything sent has been received. */
static int all_in(bench_t *b, uint64_t received)
{
    uint64_t total = 0;
    for (int i = 0; i < b->nprod; i++) {
        if (!atomic_load_explicit(&b->done[i], memory_order_acquire))
            return 0;
        total += atomic_load_explicit(&b->sent[i], memory_order_relaxed);
    }
    return received == total;
}

#if WB_HAVE_URCU
typedef struct {
    struct __cds_wfcq_head h;
    struct cds_wfcq_tail t;
} wfcq_local_t;
#endif

/* The next item, or NULL when none is ready now. */
static inline __attribute__((always_inline)) item_t *pop_item(bench_t *b, int kind, void *local)
{
    (void)local;
    switch (kind) {
    case Q_WB: {
        int busy;
        wb_event_t *ev = wb_mpscq_pop(&b->wbq, &busy);
        return ev != NULL ? (item_t *)((char *)ev - offsetof(item_t, link.ev)) : NULL;
    }
#if WB_HAVE_URCU
    case Q_WFCQ: {
        struct cds_wfcq_node *n = __cds_wfcq_dequeue_nonblocking(&b->wh, &b->wt);
        if (n == NULL || n == CDS_WFCQ_WOULDBLOCK)
            return NULL;
        return (item_t *)((char *)n - offsetof(item_t, link.wn));
    }
    case Q_WFCQ_SPLICE: {
        wfcq_local_t *l = local;
        struct cds_wfcq_node *n = __cds_wfcq_dequeue_nonblocking(&l->h, &l->t);
        if (n == NULL) {
            __cds_wfcq_splice_nonblocking(&l->h, &l->t, &b->wh, &b->wt);
            n = __cds_wfcq_dequeue_nonblocking(&l->h, &l->t);
        }
        if (n == NULL || n == CDS_WFCQ_WOULDBLOCK)
            return NULL;
        return (item_t *)((char *)n - offsetof(item_t, link.wn));
    }
#endif
#if WB_HAVE_CK
    case Q_CK_SPSC: {
        item_t *it;
        return ck_fifo_spsc_dequeue(&b->spsc, &it) ? it : NULL;
    }
    case Q_CK_MPMC: {
        item_t *it;
        ck_fifo_mpmc_entry_t *garbage;
        return ck_fifo_mpmc_dequeue(&b->mpmc, &it, &garbage) ? it : NULL;
    }
#endif
    default:
        return NULL;
    }
}

static inline __attribute__((always_inline)) void consume(bench_t *b, int kind)
{
    uint64_t next[MAX_PROD] = {0, 0};
    uint64_t received = 0;
    unsigned empty = 0;
#if WB_HAVE_URCU
    wfcq_local_t local;
    __cds_wfcq_init(&local.h, &local.t);
    void *lp = &local;
#else
    void *lp = NULL;
#endif

    atomic_store_explicit(&b->go, 1, memory_order_release);
    for (;;) {
        item_t *it = pop_item(b, kind, lp);
        if (it == NULL) {
            if (all_in(b, received))
                break;
            if (++empty < 4096) {
                bench_relax();
            } else {
                empty = 0;
                sched_yield();
            }
            continue;
        }
        empty = 0;
        if (received == 0)
            b->t_first = bench_now_ns();
        uint32_t p = it->p.producer;
        if (p >= (uint32_t)b->nprod || it->p.seq != next[p])
            BENCH_FAIL("queue %d: producer %u item %llu arrived, expected %llu", kind, p,
                       (unsigned long long)it->p.seq,
                       (unsigned long long)(p < MAX_PROD ? next[p] : 0));
        next[p]++;
        received++;
        if ((next[p] & (PUBLISH_EVERY - 1)) == 0)
            atomic_store_explicit(&b->prog[p].taken, next[p], memory_order_release);
        if ((received & 65535) == 0 && bench_now_ns() - b->t_first > RUN_NS)
            atomic_store_explicit(&b->stop, 1, memory_order_relaxed);
    }
    b->t_last = bench_now_ns();
    b->received = received;
}

/* ---- runs ----------------------------------------------------------------- */

static void reset(bench_t *b, int kind, int nprod)
{
    b->nprod = nprod;
    b->quota = ITEMS / (unsigned)nprod;
    atomic_store(&b->go, 0);
    atomic_store(&b->stop, 0);
    for (int i = 0; i < MAX_PROD; i++) {
        atomic_store(&b->done[i], 0);
        atomic_store(&b->sent[i], 0);
        atomic_store(&b->prog[i].taken, 0);
    }
    b->received = 0;
    b->t_first = b->t_last = 0;
    switch (kind) {
    case Q_WB:
        wb_mpscq_init(&b->wbq);
        break;
#if WB_HAVE_URCU
    case Q_WFCQ:
    case Q_WFCQ_SPLICE:
        __cds_wfcq_init(&b->wh, &b->wt);
        break;
#endif
#if WB_HAVE_CK
    case Q_CK_SPSC:
        b->spsc_fresh = 1;
        ck_fifo_spsc_init(&b->spsc, &b->spsc_entries[0]);
        break;
    case Q_CK_MPMC:
        ck_fifo_mpmc_init(&b->mpmc, &b->mpmc_stub);
        break;
#endif
    default:
        break;
    }
}

#define CONSUMER(name, kind)                                                                       \
    static void name(bench_t *b)                                                                   \
    {                                                                                              \
        consume(b, kind);                                                                          \
    }
CONSUMER(cons_wb, Q_WB)
#if WB_HAVE_URCU
CONSUMER(cons_wfcq, Q_WFCQ)
CONSUMER(cons_wfcq_splice, Q_WFCQ_SPLICE)
#endif
#if WB_HAVE_CK
CONSUMER(cons_ck_spsc, Q_CK_SPSC)
CONSUMER(cons_ck_mpmc, Q_CK_MPMC)
#endif

typedef struct {
    const char *name;
    int kind;
    int max_prod;
    void *(*prod)(void *);
    void (*cons)(bench_t *);
} queue_def_t;

static const queue_def_t queues[] = {
    {"wb_mpscq", Q_WB, 2, prod_wb, cons_wb},
#if WB_HAVE_URCU
    {"urcu_wfcq", Q_WFCQ, 2, prod_wfcq, cons_wfcq},
    {"urcu_wfcq_splice", Q_WFCQ_SPLICE, 2, prod_wfcq, cons_wfcq_splice},
#endif
#if WB_HAVE_CK
    {"ck_fifo_spsc", Q_CK_SPSC, 1, prod_ck_spsc, cons_ck_spsc},
    {"ck_fifo_mpmc", Q_CK_MPMC, 2, prod_ck_mpmc, cons_ck_mpmc},
#endif
};
#define NQUEUES (sizeof(queues) / sizeof(queues[0]))

/* One run; the consumer is the calling thread. Returns items/s. */
static double run_once(const queue_def_t *q, int nprod)
{
    bench_t *b = &B;
    pthread_t th[MAX_PROD];
    prod_arg_t pa[MAX_PROD];

    reset(b, q->kind, nprod);
    bench_pin(0);
    for (int i = 0; i < nprod; i++) {
        pa[i].b = b;
        pa[i].id = i;
        if (pthread_create(&th[i], NULL, q->prod, &pa[i]) != 0)
            BENCH_FAIL("pthread_create failed");
    }
    q->cons(b);
    for (int i = 0; i < nprod; i++)
        pthread_join(th[i], NULL);
    bench_pin(-1);
    return bench_rate(b->received > 0 ? b->received - 1 : 0, b->t_last - b->t_first);
}

/* ---- baseline: one cache line bounced between the two CPUs ------------------ */

static _Alignas(64) _Atomic uint64_t pp_line;

static void *pp_peer(void *arg)
{
    uint64_t rounds = *(uint64_t *)arg;
    bench_pin(1);
    for (uint64_t i = 0; i < rounds; i++) {
        while (atomic_load_explicit(&pp_line, memory_order_acquire) != 2 * i + 1)
            bench_relax();
        atomic_store_explicit(&pp_line, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

/* Nanoseconds for one one-way handoff of a cache line between the consumer's
 * CPU and the first producer's: the floor under every queue above. */
static double pingpong_ns(void)
{
    uint64_t rounds = 200000;
    pthread_t th;
    atomic_store(&pp_line, 0);
    bench_pin(0);
    if (pthread_create(&th, NULL, pp_peer, &rounds) != 0)
        BENCH_FAIL("pthread_create failed");
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < rounds; i++) {
        atomic_store_explicit(&pp_line, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&pp_line, memory_order_acquire) != 2 * i + 2)
            bench_relax();
    }
    uint64_t t1 = bench_now_ns();
    pthread_join(th, NULL);
    bench_pin(-1);
    return (double)(t1 - t0) / (double)(2 * rounds);
}

int main(void)
{
    bench_t *b = &B;
    bench_cpus();

    for (int i = 0; i < MAX_PROD; i++) {
        b->items[i] = aligned_alloc(64, sizeof(item_t) * RING);
        if (b->items[i] == NULL)
            BENCH_FAIL("out of memory");
        memset(b->items[i], 0, sizeof(item_t) * RING);
    }
#if WB_HAVE_CK
    b->spsc_entries = calloc(RING + 2, sizeof(ck_fifo_spsc_entry_t));
    if (b->spsc_entries == NULL)
        BENCH_FAIL("out of memory");
#endif

    bench_samples_t pp = {{0}, 0};
    for (int r = 0; r < 3; r++)
        bench_add(&pp, pingpong_ns());
    bench_print2("queue_cacheline_handoff_ns", bench_med(&pp), "ns");

    /* Rounds interleave the queues, so drift in the machine's speed (a VM's
     * neighbours) hits all of them alike; ratios are taken within a round. */
    for (int np = 1; np <= MAX_PROD; np++) {
        bench_samples_t rate[NQUEUES], ratio[NQUEUES];
        memset(rate, 0, sizeof(rate));
        memset(ratio, 0, sizeof(ratio));
        for (int r = 0; r < RUNS; r++) {
            double round[NQUEUES];
            for (size_t k = 0; k < NQUEUES; k++) {
                round[k] = 0;
                if (np <= queues[k].max_prod) {
                    round[k] = run_once(&queues[k], np);
                    bench_add(&rate[k], round[k]);
                }
            }
            for (size_t k = 1; k < NQUEUES; k++)
                if (round[k] > 0)
                    bench_add(&ratio[k], round[0] / round[k]);
        }
        for (size_t k = 0; k < NQUEUES; k++) {
            if (rate[k].n == 0)
                continue;
            if (getenv("WB_BENCH_VERBOSE"))
                for (int r = 0; r < rate[k].n; r++)
                    fprintf(stderr, "  %s %dp run %d: %.1f M/s\n", queues[k].name, np, r,
                            rate[k].v[r] / 1e6);
            char name[96];
            snprintf(name, sizeof(name), "queue_%dp_%s_items_per_s", np, queues[k].name);
            bench_print(name, bench_med(&rate[k]), "items/s");
        }
        for (size_t k = 1; k < NQUEUES; k++) {
            if (ratio[k].n == 0)
                continue;
            char name[96];
            snprintf(name, sizeof(name), "queue_%dp_wb_vs_%s", np, queues[k].name);
            bench_print2(name, bench_med(&ratio[k]), "ratio");
        }
    }
    for (int i = 0; i < MAX_PROD; i++)
        free(b->items[i]);
#if WB_HAVE_CK
    free(b->spsc_entries);
#endif
    return 0;
}
