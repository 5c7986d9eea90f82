/*
 * pool.h - fixed-size block allocator for events.
 *
 * Events are allocated on one thread and usually freed on another, millions of
 * times a second. malloc() pays for that with an arena lock or an atomic per
 * block; this pool pays one mutex per magazine of WB_POOL_MAG blocks instead:
 * each thread keeps a private free list per size class, and whole chains of
 * blocks move between threads through a per-class depot.
 *
 * Any thread may call any function here. A thread's cache is returned to the
 * depot when the thread exits. wb_pool_trim() frees every slab whose blocks
 * have all come home; a process that has freed every event leaves no memory
 * behind (valgrind and LeakSanitizer see nothing).
 */
#ifndef WB_POOL_H
#define WB_POOL_H

#include <stddef.h>

#define WB_POOL_CLASSES   6 /* 128, 256, 512, 1024, 2048, 4096 bytes */
#define WB_POOL_MAX_BLOCK 4096
#define WB_POOL_MAG       64 /* blocks moved between a thread and the depot at once */

/* Size class for a block of n bytes, or -1 when n is over WB_POOL_MAX_BLOCK. */
int wb_pool_class(size_t n);

/* Size in bytes of the blocks of class c. */
size_t wb_pool_class_size(int c);

/* A block of class c, or NULL when memory is exhausted. */
void *wb_pool_alloc(int c);

/* Return a block of class c, from any thread. */
void wb_pool_free(int c, void *block);

/* Give the calling thread's cached blocks back to the depot. */
void wb_pool_flush_thread(void);

/* Flush the calling thread, then free every slab whose blocks are all in the
 * depot. Returns the number of blocks still out (allocated, or cached by
 * threads that are still running). */
size_t wb_pool_trim(void);

#endif
