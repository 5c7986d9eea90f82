/*
 * envelope.h - the routing header every message carries, and the codecs that
 * read and write it.
 *
 * An envelope is (type, id, in_reply_to, in_regards_to, body). Ids are
 * unsigned 64-bit and never 0; 0 in in_reply_to / in_regards_to means "not
 * set". The body is opaque here: dispatch routes on the header and hands the
 * body to the app untouched.
 *
 * A codec is chosen per connection, so nothing above assumes msgpack. The
 * default codec, wb_codec_msgpack, writes a msgpack array
 *     [type (uint), id (uint), in_reply_to (uint | nil), in_regards_to (uint | nil), body (bin)]
 * Decoding never copies the body: it points into the decoded buffer.
 *
 * Codecs are stateless and may be used from any thread.
 */
#ifndef WB_ENVELOPE_H
#define WB_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t type;
    uint64_t id;
    uint64_t reply_to; /* 0: not a reply */
    uint64_t regards;  /* 0: not part of a conversation */
    const uint8_t *body;
    size_t body_len;
} wb_envelope_t;

typedef struct wb_codec_s {
    const char *name;
    /* Read the header of buf[0..len). 0, or WB_EPROTO with no field of out
     * to be trusted. The body points into buf. */
    int (*decode)(const uint8_t *buf, size_t len, wb_envelope_t *out);
    /* An upper bound of the encoded size of env. */
    size_t (*encoded_max)(const wb_envelope_t *env);
    /* Write env into buf (cap bytes); *len gets the size. 0, WB_EINVAL for a
     * bad envelope or WB_ETOOBIG when cap is too small. */
    int (*encode)(const wb_envelope_t *env, uint8_t *buf, size_t cap, size_t *len);
} wb_codec_t;

extern const wb_codec_t wb_codec_msgpack;

/* Release the msgpack codec's per-thread state. Its decoder keeps none, so
 * this does nothing; a thread may still call it when done with the codec. */
void wb_codec_msgpack_thread_release(void);

#endif
