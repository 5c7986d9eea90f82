#include "runtime/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *wb_strerror(int err)
{
    switch (err) {
    case WB_OK:
        return "success";
#define WB__ERR_TEXT(name, code, text)                                                             \
    case WB_##name:                                                                                \
        return text;
        WB_ERRNO_MAP(WB__ERR_TEXT)
#undef WB__ERR_TEXT
    }
    return "unknown error";
}

const char *wb_err_name(int err)
{
    switch (err) {
    case WB_OK:
        return "WB_OK";
#define WB__ERR_NAME(name, code, text)                                                             \
    case WB_##name:                                                                                \
        return "WB_" #name;
        WB_ERRNO_MAP(WB__ERR_NAME)
#undef WB__ERR_NAME
    }
    return "WB_UNKNOWN";
}

void wb_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
