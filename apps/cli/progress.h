/*
 * progress.h - a progress bar for transfers on a terminal, in the manner
 * of tqdm (what the Python CLI shows):
 *
 *    45%|███████████▎             | 450M/1.00G [00:01<00:01, 812MB/s]
 *
 * Drawn on stderr with a carriage return, at most every 100 ms, only when
 * enabled (a terminal, no --hide-progress). The figures (rate, ETA) are
 * also what --json progress events carry.
 */
#ifndef WB_CLI_PROGRESS_H
#define WB_CLI_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    int enabled;
    FILE *out;
    uint64_t total, done;
    uint64_t start_ns, last_ns;
    int drawn;
} wb_progress_t;

/* Monotonic clock, ns. */
uint64_t wb_progress_now_ns(void);

void wb_progress_start(wb_progress_t *p, FILE *out, int enabled, uint64_t total);
/* n more bytes done; redraws when due. */
void wb_progress_add(wb_progress_t *p, uint64_t n);
/* Bytes per second so far (0 before anything moved). */
double wb_progress_rate(const wb_progress_t *p);
/* Draw the final state and end the line (if anything was drawn). */
void wb_progress_finish(wb_progress_t *p);
/* "1.00G", "450M", "12.3k", "999": tqdm's unit_scale for bytes. */
void wb_progress_scale(double v, char *out, size_t cap);

#endif
