/*
 * bench_common.h - timing, medians and the one output format of tests/bench/.
 *
 * Every figure is printed as one line, `name: value unit`, and is the median
 * of a few runs. Benchmarks are bounded in time and exit 0 on a slow machine;
 * they exit non-zero only when something is broken (a lost or reordered
 * message, a failed call).
 */
#ifndef WB_BENCH_COMMON_H
#define WB_BENCH_COMMON_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before any include (CPU affinity)"
#endif
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_RUNS 16

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bench_sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000};
    nanosleep(&ts, NULL);
}

static inline void bench_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* The CPUs the process may use, as it started (bench_pin narrows a thread's
 * set, and threads inherit their creator's). */
static inline const cpu_set_t *bench_cpus(void)
{
    static cpu_set_t all;
    static int have;
    if (!have) {
        if (sched_getaffinity(0, sizeof(all), &all) != 0)
            CPU_ZERO(&all);
        have = 1;
    }
    return &all;
}

static inline int bench_ncpus(void)
{
    return CPU_COUNT(bench_cpus());
}

/* Pin the calling thread to the cpu-th usable CPU (modulo their number);
 * cpu < 0 lets it run anywhere again. Returns the CPU, or -1 when unpinned
 * (fewer than two CPUs, or no affinity support: the run goes on anyway). */
static inline int bench_pin(int cpu)
{
    const cpu_set_t *all = bench_cpus();
    int n = CPU_COUNT(all);
    if (n < 2)
        return -1;
    if (cpu < 0) {
        sched_setaffinity(0, sizeof(*all), all);
        return -1;
    }
    int want = cpu % n;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, all) || want-- != 0)
            continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(c, &one);
        return sched_setaffinity(0, sizeof(one), &one) == 0 ? c : -1;
    }
    return -1;
}

/* Per-second rate of n things done in ns nanoseconds (0 when nothing timed). */
static inline double bench_rate(uint64_t n, uint64_t ns)
{
    return ns > 0 ? (double)n * 1e9 / (double)ns : 0.0;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n-1]; v is sorted in place. */
static inline double bench_median(double *v, int n)
{
    if (n <= 0)
        return 0.0;
    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    return (n & 1) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* A figure's samples, one per run. */
typedef struct {
    double v[BENCH_MAX_RUNS];
    int n;
} bench_samples_t;

static inline void bench_add(bench_samples_t *s, double x)
{
    if (s->n < BENCH_MAX_RUNS)
        s->v[s->n++] = x;
}

static inline double bench_med(bench_samples_t *s)
{
    double tmp[BENCH_MAX_RUNS];
    memcpy(tmp, s->v, sizeof(double) * (size_t)s->n);
    return bench_median(tmp, s->n);
}

/* Integer-valued figure: `name: 12345678 unit`. */
static inline void bench_print(const char *name, double value, const char *unit)
{
    printf("%s: %.0f %s\n", name, value, unit);
    fflush(stdout);
}

/* Fractional figure (ratios, milliseconds): `name: 1.53 unit`. */
static inline void bench_print2(const char *name, double value, const char *unit)
{
    printf("%s: %.2f %s\n", name, value, unit);
    fflush(stdout);
}

/* Stop the benchmark: something is broken, not merely slow. */
#define BENCH_FAIL(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

#endif
