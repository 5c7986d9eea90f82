/*
 * progress.c - see progress.h.
 */
#include "apps/cli/progress.h"

#include <string.h>
#include <time.h>

uint64_t wb_progress_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void wb_progress_scale(double v, char *out, size_t cap)
{
    static const char units[] = " kMGTP";
    int u = 0;
    while (v >= 999.5 && u < 5) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%.0f", v);
    else
        snprintf(out, cap, v < 9.995 ? "%.2f%c" : v < 99.95 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

static void clock_text(double s, char *out, size_t cap)
{
    if (s < 0 || s > 359999)
        snprintf(out, cap, "?");
    else if (s >= 3600)
        snprintf(out, cap, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(out, cap, "%02d:%02d", (int)s / 60, (int)s % 60);
}

double wb_progress_rate(const wb_progress_t *p)
{
    double el = (double)(wb_progress_now_ns() - p->start_ns) / 1e9;
    return el > 0 ? (double)p->done / el : 0.0;
}

static void draw(wb_progress_t *p)
{
    double el = (double)(wb_progress_now_ns() - p->start_ns) / 1e9;
    double rate = el > 0 ? (double)p->done / el : 0;
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (frac > 1)
        frac = 1;
    char bar[25 * 3 + 1] = "", done[16], total[16], rs[16], e1[16], e2[16];
    int width = 25, full = (int)(frac * width);
    size_t k = 0;
    for (int i = 0; i < width; i++) {
        const char *c = i < full ? "\xe2\x96\x88" : " "; /* U+2588 full block */
        size_t l = strlen(c);
        memcpy(bar + k, c, l);
        k += l;
    }
    bar[k] = 0;
    wb_progress_scale((double)p->done, done, sizeof(done));
    wb_progress_scale((double)p->total, total, sizeof(total));
    wb_progress_scale(rate, rs, sizeof(rs));
    clock_text(el, e1, sizeof(e1));
    clock_text(rate > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate
                        : -1,
               e2, sizeof(e2));
    fprintf(p->out, "\r%3.0f%%|%s| %s/%s [%s<%s, %sB/s]", frac * 100, bar, done, total, e1, e2, rs);
    fflush(p->out);
    p->drawn = 1;
}

void wb_progress_start(wb_progress_t *p, FILE *out, int enabled, uint64_t total)
{
    memset(p, 0, sizeof(*p));
    p->out = out;
    p->enabled = enabled;
    p->total = total;
    p->start_ns = p->last_ns = wb_progress_now_ns();
    if (enabled)
        draw(p);
}

void wb_progress_add(wb_progress_t *p, uint64_t n)
{
    p->done += n;
    if (!p->enabled)
        return;
    uint64_t now = wb_progress_now_ns();
    if (now - p->last_ns >= 100000000u) {
        p->last_ns = now;
        draw(p);
    }
}

void wb_progress_finish(wb_progress_t *p)
{
    if (!p->enabled)
        return;
    draw(p);
    fputc('\n', p->out);
    fflush(p->out);
}
