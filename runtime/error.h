/*
 * error.h - the one error code space of waybill.
 *
 * Every function that can fail returns 0 on success or one of the negative
 * codes below; none mixes pointers with codes. wb_strerror() maps a code to a
 * short, stable text and may be called from any thread.
 */
#ifndef WB_ERROR_H
#define WB_ERROR_H

#include <stddef.h>

#define WB_ERRNO_MAP(X)                                                                            \
    X(ENOMEM, -1, "out of memory")                                                                 \
    X(EINVAL, -2, "invalid argument")                                                              \
    X(EAGAIN, -3, "queue full, wait for resume")                                                   \
    X(ECLOSED, -4, "runtime or object closed")                                                     \
    X(ENOENT, -5, "no such object")                                                                \
    X(ETIMEDOUT, -6, "timed out")                                                                  \
    X(ECANCELED, -7, "canceled")                                                                   \
    X(EPROTO, -8, "protocol error")                                                                \
    X(ETOOBIG, -9, "message too large")                                                            \
    X(EBUSY, -10, "resource busy or locked")                                                       \
    X(EIO, -11, "input/output error")                                                              \
    X(ECORRUPT, -12, "data corrupt")                                                               \
    X(EFULL, -13, "disk or database full")                                                         \
    X(ECONSTRAINT, -14, "constraint failed")                                                       \
    X(EDB, -15, "database error")                                                                  \
    X(ESYS, -16, "system call failed")                                                             \
    X(EEXIST, -17, "already exists")                                                               \
    X(ESTATE, -18, "wrong state for this call")

enum {
    WB_OK = 0,
#define WB__ERR_ENUM(name, code, text) WB_##name = (code),
    WB_ERRNO_MAP(WB__ERR_ENUM)
#undef WB__ERR_ENUM
};

/* Short text for an error code; "unknown error" for anything unmapped. */
const char *wb_strerror(int err);

/* Name of an error code ("WB_ENOMEM"), for logs and test output. */
const char *wb_err_name(int err);

/* Write a reason into a caller's buffer, printf-style, when there is one
 * (err NULL or errlen 0: nothing). For functions that return a code and
 * take an optional `char *err, size_t errlen`. */
void wb_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
