/*
 * log.h - one line per event that matters, to stderr.
 *
 * Lines look like "2026-11-22T02:54:36.123Z INFO  rt: started 3 threads".
 * Any thread may log; a line is written with one write(2) so lines from
 * different threads never interleave. The level is set once at start-up (or
 * from WAYBILL_LOG=debug|info|warn|error|off).
 */
#ifndef WB_LOG_H
#define WB_LOG_H

enum { WB_LOG_DEBUG = 0, WB_LOG_INFO, WB_LOG_WARN, WB_LOG_ERROR, WB_LOG_OFF };

void wb_log_set_level(int level);
int wb_log_level(void);

/* Parse "debug", "info", "warn", "error" or "off"; -1 when unknown. */
int wb_log_parse_level(const char *s);

void wb_log(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define WB_LOG_ENABLED(lvl) ((lvl) >= wb_log_level())
#define wb_debug(mod, ...)                                                                         \
    do {                                                                                           \
        if (WB_LOG_ENABLED(WB_LOG_DEBUG))                                                          \
            wb_log(WB_LOG_DEBUG, mod, __VA_ARGS__);                                                \
    } while (0)
#define wb_info(mod, ...)  wb_log(WB_LOG_INFO, mod, __VA_ARGS__)
#define wb_warn(mod, ...)  wb_log(WB_LOG_WARN, mod, __VA_ARGS__)
#define wb_error(mod, ...) wb_log(WB_LOG_ERROR, mod, __VA_ARGS__)

#endif
