/*
 * pex_proto.h - the peer exchange messages (channel 0x00), our own format.
 *
 *   request  01
 *   addrs    02 | count (2, big-endian, at most 250) | count entries
 *   entry    node id (32) | family (1: 4 or 6) | IP (4 or 16) | port (2, BE)
 *
 * So an entry is 39 (IPv4) or 51 (IPv6) bytes and the largest message
 * WB_PEX_MAX_MSG = 3 + 250 * 51 = 12753 bytes. The decoder checks every
 * length before reading, takes nothing beyond the last entry ("trailing
 * bytes"), and says what was wrong in err. An IPv4-mapped IPv6 entry
 * comes out as IPv4 (as netaddr.h stores it). What the addresses mean (valid,
 * routable, ours) is the address book's business, not the decoder's.
 *
 * Threads: pure functions, any thread.
 */
#ifndef WB_PEER_PEX_PROTO_H
#define WB_PEER_PEX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "apps/peer/netaddr.h"

enum { WB_PEX_REQUEST = 0x01, WB_PEX_ADDRS = 0x02 };

#define WB_PEX_MAX_ADDRS   250
#define WB_PEX_ENTRY4_SIZE (32 + 1 + 4 + 2)
#define WB_PEX_ENTRY6_SIZE (32 + 1 + 16 + 2)
#define WB_PEX_MAX_MSG     (3 + WB_PEX_MAX_ADDRS * WB_PEX_ENTRY6_SIZE)

/* A decoded message: about 13 KiB, so keep it off small stacks. */
typedef struct {
    uint8_t type; /* WB_PEX_REQUEST / WB_PEX_ADDRS */
    uint16_t count;
    wb_netaddr_t addrs[WB_PEX_MAX_ADDRS]; /* has_id = 1 */
} wb_pex_msg_t;

/* Bytes of an addrs message carrying addrs[0..n), or 0 when it cannot be
 * encoded (n > 250, an address without an id or of another family). */
size_t wb_pex_addrs_size(const wb_netaddr_t *addrs, size_t n);

/* Write a request into buf[cap]. 0 and *len, or WB_ETOOBIG. */
int wb_pex_encode_request(uint8_t *buf, size_t cap, size_t *len);

/* Write an addrs message into buf[cap]. 0 and *len; WB_EINVAL when it cannot
 * be encoded (see wb_pex_addrs_size), WB_ETOOBIG when cap is short. */
int wb_pex_encode_addrs(const wb_netaddr_t *addrs, size_t n, uint8_t *buf, size_t cap, size_t *len);

/* Decode buf[len] into *out. 0, or WB_EPROTO with the reason in err ("empty
 * pex message", "unknown pex message type 0x07", "addrs count 300 exceeds
 * 250", "truncated entry 3", "bad family 9 in entry 3", "trailing bytes"),
 * WB_ETOOBIG for more than WB_PEX_MAX_MSG bytes. */
int wb_pex_decode(const uint8_t *buf, size_t len, wb_pex_msg_t *out, char *err, size_t errlen);

#endif
