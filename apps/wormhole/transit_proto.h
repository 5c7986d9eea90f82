/*
 * transit_proto.h - the Magic Wormhole transit protocol as pure functions
 * and small sans-io machines (shared notes, wormhole.md section 3):
 *
 *   hints      the "transit" message each side sends through the mailbox:
 *              direct-tcp-v1 hints, relay-v1 hints (each a list of
 *              direct-tcp-v1 ways to reach one relay), tor-tcp-v1 parsed
 *              and ignored, unknown types ignored.
 *   lines      the handshake lines derived from the transit key: "transit
 *              sender HEX ready\n\n", "transit receiver HEX ready\n\n",
 *              "please relay HEX for side SIDE16\n".
 *   handshake  one connection's opening, fed the bytes that arrive: the
 *              relay's "ok\n" (relay connections), the peer's line, and on
 *              the receiver the sender's "go\n". Bytes are checked as they
 *              come, so a wrong peer is dropped at its first wrong byte.
 *   records    u32 big-endian length || nonce(24) || secretbox, nonces a
 *              big-endian counter from 0 per direction, checked in order.
 *
 * No allocation except the opener's buffer for a record that spans reads;
 * no I/O, no clock; any thread, one at a time per object.
 */
#ifndef WB_WORMHOLE_TRANSIT_PROTO_H
#define WB_WORMHOLE_TRANSIT_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "apps/wormhole/keys.h"

#define WB_TRANSIT_HOST_MAX          253
#define WB_TRANSIT_MAX_HINTS         32 /* direct hints, and relays, kept from one message */
#define WB_TRANSIT_RELAY_WAYS        8  /* direct-tcp-v1 ways kept per relay */
#define WB_TRANSIT_SIDE_LEN          16
#define WB_TRANSIT_SENDER_LINE_LEN   87
#define WB_TRANSIT_RECEIVER_LINE_LEN 89
#define WB_TRANSIT_RELAY_LINE_LEN    104
#define WB_TRANSIT_RECORD_OVERHEAD   (4 + WB_WH_NONCE_LEN + WB_WH_MAC_LEN) /* 44 */
/* Largest record accepted (plaintext). The Python and Go senders use 16 KiB,
 * ours 64 KiB; 4 MiB leaves room for others while bounding the memory a
 * peer can make us hold for one record. */
#define WB_TRANSIT_MAX_RECORD (4u << 20)

typedef struct {
    char host[WB_TRANSIT_HOST_MAX + 1];
    uint16_t port;
    double priority;
} wb_transit_hint_t;

typedef struct {
    wb_transit_hint_t ways[WB_TRANSIT_RELAY_WAYS];
    size_t nways;
    double priority; /* the highest of its ways' */
} wb_transit_relay_t;

typedef struct {
    wb_transit_hint_t direct[WB_TRANSIT_MAX_HINTS];
    size_t ndirect;
    wb_transit_relay_t relays[WB_TRANSIT_MAX_HINTS];
    size_t nrelays;
} wb_transit_hints_t;

/* Parse the value of a "transit" message ({"abilities-v1": [...],
 * "hints-v1": [...]}). Hints that cannot be used (unknown or tor types, a
 * hostname that is not a string or too long, a port that is not an integer
 * in 1..65535) are skipped; past WB_TRANSIT_MAX_HINTS the rest are ignored.
 * Returns 0, or WB_EPROTO with the reason in err when transit is not an
 * object or hints-v1 is not a list. */
int wb_transit_hints_parse(const json_t *transit, wb_transit_hints_t *out, char *err,
                           size_t errlen);

/* The value of our "transit" message: abilities direct-tcp-v1 and relay-v1,
 * hints for our direct addresses and our relays. NULL when out of memory. */
json_t *wb_transit_hints_json(const wb_transit_hints_t *h);

/* "tcp:HOST:PORT[:priority=F]" (Python's --transit-helper; HOST may be
 * [v6]) into one relay of one way. Returns 0, or WB_EINVAL with the reason
 * in err. */
int wb_transit_parse_helper(const char *s, wb_transit_relay_t *out, char *err, size_t errlen);

/* What one side of a transfer needs, derived from the transit key. */
typedef struct {
    int sender;
    char our_line[WB_TRANSIT_RECEIVER_LINE_LEN + 1];  /* NUL-terminated */
    char peer_line[WB_TRANSIT_RECEIVER_LINE_LEN + 1]; /* NUL-terminated */
    char relay_line[WB_TRANSIT_RELAY_LINE_LEN + 1];   /* with our side */
    uint8_t send_key[WB_WH_KEY_LEN];                  /* records we send */
    uint8_t recv_key[WB_WH_KEY_LEN];                  /* records we receive */
} wb_transit_keys_t;

/* side: 16 characters of [0-9a-f] (8 random bytes in hex). */
void wb_transit_keys_init(wb_transit_keys_t *k, const uint8_t tkey[WB_WH_KEY_LEN], int sender,
                          const char side[WB_TRANSIT_SIDE_LEN]);
void wb_transit_keys_wipe(wb_transit_keys_t *k);

/* ---- one connection's handshake ---- */

typedef enum {
    WB_TRANSIT_HS_RELAY,   /* waiting for the relay's "ok\n" (we sent our relay line) */
    WB_TRANSIT_HS_LINE,    /* waiting for the peer's line (we sent ours) */
    WB_TRANSIT_HS_WAIT_GO, /* receiver: waiting for "go\n" */
    WB_TRANSIT_HS_DONE,    /* sender: the line checked out (the race decides);
                              receiver: "go" came, records follow */
    WB_TRANSIT_HS_FAILED,
} wb_transit_hs_state_t;

typedef struct {
    const wb_transit_keys_t *keys;
    wb_transit_hs_state_t state;
    size_t matched; /* bytes of the current expected text seen */
} wb_transit_hs_t;

/* A connection's handshake; relay says it starts with our relay line. What
 * to write first: wb_transit_hs_first(). */
void wb_transit_hs_init(wb_transit_hs_t *h, const wb_transit_keys_t *keys, int relay);
/* The bytes to write when the connection opens: the relay line or our
 * handshake line. */
const char *wb_transit_hs_first(const wb_transit_hs_t *h, size_t *len);

typedef enum {
    WB_TRANSIT_HS_NEED_MORE, /* all of data used; nothing to do */
    WB_TRANSIT_HS_RELAY_OK,  /* the relay paired us: write our handshake line now */
    WB_TRANSIT_HS_PEER_OK,   /* sender: the receiver's line is right: answer go or
                                nevermind. (The receiver gets no such step.) */
    WB_TRANSIT_HS_GO,        /* receiver: "go\n": this connection won; *used bytes
                                were handshake, the rest are records */
    WB_TRANSIT_HS_BAD,       /* wrong bytes: drop the connection (reason in err) */
} wb_transit_hs_result_t;

/* Feed received bytes; *used says how many were consumed. Call again with
 * the rest after RELAY_OK. After PEER_OK (sender) any further byte is BAD:
 * the receiver speaks only after "go". */
wb_transit_hs_result_t wb_transit_hs_feed(wb_transit_hs_t *h, const uint8_t *data, size_t len,
                                          size_t *used, char *err, size_t errlen);

/* ---- records ---- */

typedef struct {
    uint8_t key[WB_WH_KEY_LEN];
    uint64_t seq;
} wb_transit_sealer_t;

void wb_transit_sealer_init(wb_transit_sealer_t *s, const uint8_t key[WB_WH_KEY_LEN]);
/* Seal pt[0..len) as the next record into out, which must have room for
 * len + WB_TRANSIT_RECORD_OVERHEAD bytes. pt and out must not overlap.
 * Returns the bytes written. */
size_t wb_transit_seal(wb_transit_sealer_t *s, const uint8_t *pt, size_t len, uint8_t *out);

/* The receiving side. Records are opened in place in the caller's buffer
 * when a record lies wholly in one fed buffer; one that spans feeds is put
 * together in a buffer of its own (at most max_record + 40 bytes). */
typedef struct {
    uint8_t key[WB_WH_KEY_LEN];
    uint64_t seq;
    uint32_t max_record;
    uint8_t hdr[4];
    size_t hdr_have;
    uint8_t *rec; /* a spanning record being put together: nonce||box */
    size_t rec_len, rec_have;
} wb_transit_opener_t;

void wb_transit_opener_init(wb_transit_opener_t *o, const uint8_t key[WB_WH_KEY_LEN],
                            uint32_t max_record);
void wb_transit_opener_fini(wb_transit_opener_t *o);

/* Plaintext for the caller, in order: either inside the fed buffer
 * (buf[off..off+len), owned = NULL) or a buffer of its own that the callee
 * takes (owned: free() it; plaintext at owned[off..off+len)). */
typedef void (*wb_transit_plain_cb)(void *user, uint8_t *owned, size_t off, size_t len);

/* Feed buf[0..len) (modified: records are decrypted in place and their
 * plaintexts moved together towards the front). Plaintext comes out through
 * cb; for pieces inside buf, offsets only grow, and they never overlap.
 * Returns 0, or with a reason in err:
 *   WB_ETOOBIG   a length above max_record + 40
 *   WB_EPROTO    a length below 40, or a nonce that is not the next counter
 *                ("received out-of-order record")
 *   WB_ECORRUPT  a record that does not decrypt
 *   WB_ENOMEM
 * After an error the opener must not be fed again. */
int wb_transit_open_feed(wb_transit_opener_t *o, uint8_t *buf, size_t len, wb_transit_plain_cb cb,
                         void *user, char *err, size_t errlen);

/* The same, but whole records are opened into out (room for len bytes, not
 * overlapping buf; buf is left as it was) and in-buffer pieces are offsets
 * into out, packed from 0. One pass over the bytes instead of two: opening
 * in place has to move each record's ciphertext first. */
int wb_transit_open_feed_to(wb_transit_opener_t *o, const uint8_t *buf, size_t len, uint8_t *out,
                            wb_transit_plain_cb cb, void *user, char *err, size_t errlen);

/* A record is half received (for "connection lost in the middle of a
 * record"). */
int wb_transit_opener_partial(const wb_transit_opener_t *o);

#endif
