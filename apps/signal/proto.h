/*
 * proto.h - the signaling wire format (waddell's, ../shared/notes/peers.md
 * section 2.2, with what it lacked), sans-io: a frame encoder and an
 * incremental decoder. No sockets, no threads, no clock.
 *
 * Every frame on the wire (all integers LITTLE-endian, as waddell):
 *
 *   len (2) | content (len bytes, 1..65535)
 *
 * content is one of:
 *
 *   keepalive   the single byte 'k' (0x6B): client to server only; it
 *               counts as activity for the idle timeout, nothing more.
 *   message     peer id (16) | topic (2) | body (0..65517 bytes)
 *               client -> server: the id is the RECIPIENT's;
 *               server -> client: the id is the SENDER's (the server
 *               overwrites it), so the recipient can reply.
 *               A content of exactly 16 bytes is a message on topic 0 with
 *               an empty body (waddell PR 3).
 *   welcome     server -> client, the first frame of every connection: the
 *               client's own id, topic 0, no body (18 bytes).
 *   to-server   client -> server: a message whose id is all zeros is for
 *               the server itself; topic WB_SIG_TOPIC_OPTIONS, body 1 byte
 *               of flags: bit 0 = send me notices (below). Others refused.
 *   notice      server -> client, only when asked: id all zeros, topic
 *               WB_SIG_TOPIC_NOTICE, body: code (1: unknown recipient,
 *               2: recipient's queue full) | recipient id (16) | topic (2):
 *               a message of yours was dropped.
 *
 * Topics WB_SIG_TOPIC_NOTICE and WB_SIG_TOPIC_OPTIONS (0xFFFF, 0xFFFE) are
 * reserved: a client may not send a message on them to a peer.
 *
 * Ids are 16 random bytes (libsodium), text form 32 lowercase hex
 * characters; collisions are not retried (2^-64 odds at 2^32 clients).
 *
 * Decoder bounds: max (<= 65535) bytes of content; a larger len is an
 * error before anything is read of it; the decoder holds at most one
 * partial frame. Errors are sticky with a one-line reason.
 *
 * Threads: pure functions; a decoder belongs to one thread at a time.
 */
#ifndef WB_SIGNAL_PROTO_H
#define WB_SIGNAL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define WB_SIG_ID_LEN 16
#define WB_SIG_HEADER 18 /* id + topic */
#define WB_SIG_LEN_BYTES 2
#define WB_SIG_MAX_CONTENT 65535
#define WB_SIG_MAX_BODY (WB_SIG_MAX_CONTENT - WB_SIG_HEADER) /* 65517 */
#define WB_SIG_KEEPALIVE 'k'
#define WB_SIG_TOPIC_NOTICE 0xFFFFu
#define WB_SIG_TOPIC_OPTIONS 0xFFFEu
#define WB_SIG_OPT_NOTICES 0x01

enum { WB_SIG_NOTICE_UNKNOWN = 1, WB_SIG_NOTICE_FULL = 2 };

typedef enum {
    WB_SIG_FRAME_KEEPALIVE = 1,
    WB_SIG_FRAME_MESSAGE, /* id, topic, body (welcome, notice, to-server: by id/topic) */
} wb_sig_kind_t;

typedef struct {
    wb_sig_kind_t kind;
    uint8_t id[WB_SIG_ID_LEN];
    uint16_t topic;
    const uint8_t *body; /* inside the decoder's input or buffer; valid until the next call */
    size_t body_len;
} wb_sig_frame_t;

typedef struct {
    uint32_t max;   /* largest content accepted (<= WB_SIG_MAX_CONTENT) */
    uint8_t lenb[2];
    uint8_t lenb_have;
    uint32_t need, have; /* content bytes of the frame in progress */
    uint8_t *buf;        /* a frame spanning calls, max bytes, allocated on first use */
    int err;
    char errmsg[120];
} wb_sig_decoder_t;

void wb_sig_decoder_init(wb_sig_decoder_t *d, uint32_t max);
void wb_sig_decoder_fini(wb_sig_decoder_t *d);

/* Take bytes from in[0..len) until a frame is complete or the input runs
 * out; *used says how many. Returns 1 with *out (its body pointing into
 * `in` or the decoder's buffer, valid until the next call), 0 when all was
 * taken, or a sticky error: WB_ETOOBIG ("frame of 70000 bytes exceeds
 * 65535"), WB_EPROTO ("frame of 5 bytes: neither a keepalive nor a
 * message"), WB_ENOMEM. */
int wb_sig_decode(wb_sig_decoder_t *d, const uint8_t *in, size_t len, size_t *used,
                  wb_sig_frame_t *out);

const char *wb_sig_decoder_error(const wb_sig_decoder_t *d);

/* Bytes of a message frame with a body of body_len (2 + 18 + body_len). */
static inline size_t wb_sig_frame_size(size_t body_len)
{
    return WB_SIG_LEN_BYTES + WB_SIG_HEADER + body_len;
}

/* Write a message frame into out (room for wb_sig_frame_size(body_len)).
 * Returns its size, or 0 when body_len > WB_SIG_MAX_BODY. */
size_t wb_sig_encode(uint8_t *out, const uint8_t id[WB_SIG_ID_LEN], uint16_t topic,
                     const void *body, size_t body_len);

/* The keepalive frame: 01 00 6B. */
#define WB_SIG_KEEPALIVE_FRAME "\x01\x00k"

/* Id text: 32 lowercase hex characters and a NUL; parse takes either case. */
void wb_sig_id_hex(const uint8_t id[WB_SIG_ID_LEN], char out[33]);
int wb_sig_id_parse(const char *hex, uint8_t id[WB_SIG_ID_LEN]);

#endif
