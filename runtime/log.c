#include "runtime/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/assert.h"

static _Atomic int log_level = -1;

int wb_log_parse_level(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (s != NULL && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void wb_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

int wb_log_level(void)
{
    int l = atomic_load_explicit(&log_level, memory_order_relaxed);
    if (l < 0) {
        l = wb_log_parse_level(getenv("WAYBILL_LOG"));
        if (l < 0)
            l = WB_LOG_INFO;
        atomic_store(&log_level, l);
    }
    return l;
}

void wb_log(int level, const char *module, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (level < wb_log_level() || level >= WB_LOG_OFF)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, tags[level],
                 module);
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    WB_UNUSED(w);
}

void wb__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "waybill: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
