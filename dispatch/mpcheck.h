/*
 * mpcheck.h - a bound check for msgpack bytes before msgpack-c sees them.
 *
 * msgpack-c's unpacker allocates a container's element array from its
 * declared count before it has read the elements: five hostile bytes
 * (0xdd ff ff ff ff, an array of 4 billion) ask it for 100 GB. This check
 * walks the bytes once without allocating and accepts them only if they are
 * exactly one msgpack object whose every length and count fits in the bytes
 * that remain (every element takes at least one byte), so what the unpacker
 * then allocates is bounded by a small multiple of the input's size.
 *
 * Pure function; any thread.
 */
#ifndef WB_MPCHECK_H
#define WB_MPCHECK_H

#include <stddef.h>
#include <stdint.h>

/* 0 when buf[0..len) is one well-bounded msgpack object, WB_EPROTO if not. */
int wb_mpcheck(const uint8_t *buf, size_t len);

#endif
