/*
 * assert.h - preconditions that stay on in every build.
 *
 * WB_ASSERT aborts with file and line when a caller broke a contract. It is
 * not compiled out by NDEBUG: a broken invariant in a runtime that moves other
 * people's data must stop the process, not corrupt it.
 */
#ifndef WB_ASSERT_H
#define WB_ASSERT_H

#define WB_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (__builtin_expect(!(x), 0))                                                             \
            wb__assert_fail(#x, __FILE__, __LINE__);                                               \
    } while (0)

#define WB_UNUSED(x)                       ((void)(x))
#define WB_LIKELY(x)                       __builtin_expect(!!(x), 1)
#define WB_UNLIKELY(x)                     __builtin_expect(!!(x), 0)
#define WB_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

__attribute__((noreturn)) void wb__assert_fail(const char *expr, const char *file, int line);

#endif
