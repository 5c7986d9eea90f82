/*
 * proto.h - the kv service's messages: types and bodies.
 *
 * Every message is a waybill envelope (dispatch/envelope.h, msgpack codec)
 * whose body is a msgpack array:
 *
 *   request            type  body                            answer
 *   PUT                1     [key, value]                    OK [rev]
 *   GET                2     [key]                           VALUE [key, value, rev] | ERR
 *   DELETE             3     [key]                           OK [rev] | ERR (no such key)
 *   LIST               4     [prefix, after|nil, limit]      ENTRIES [[[key, value, rev]...], more]
 *   WATCH              5     [prefix, from_rev]              opens a conversation: EVENT...
 *                            (from_rev KV_FROM_NOW: only changes after the server's head)
 *   CURSOR             6     [prefix, from_rev]              OK [cursor]: a durable cursor,
 *                                                            a row in the server's database
 *   NEXT               7     [max, ack], regarding cursor    CHANGES | ERR
 *   DROP               8     [], regarding cursor            OK [0] | ERR
 *
 *   NEXT and DROP are keyed by the cursor's rowid and run on the server's
 *   database thread (dispatch rule 5). NEXT first moves the cursor to `ack`
 *   (the last revision the client has processed; 0 moves nothing), then
 *   answers up to `max` changes after it: a client that loses an answer asks
 *   again and misses nothing, across reconnects and server restarts.
 *
 *   OK      64  [rev]
 *   VALUE   65  [key, value, rev]
 *   ENTRIES 66  [entries, more (bool)]: keys after `after`, in key order
 *   EVENT   67  [rev, op (1 put, 2 delete), key, value|nil]   regarding the watch
 *   SYNCED  68  [rev]: the watch has delivered every change up to rev; live from here
 *   CHANGES 69  [[[rev, op, key, value|nil]...], more]
 *   ERR     127 [code (waybill error code), text]
 *
 * Keys and values are msgpack bin; keys are at most KV_MAX_KEY bytes, values
 * at most the server's --max-value-size (1 MiB by default). A revision is
 * the rowid of the change in the server's change log: every write gets the
 * next one, and a watch from REV delivers every change after REV, in order.
 *
 * These functions encode into a caller's buffer and decode without copying
 * (pointers into the body). Decoders validate everything: a malformed body
 * is WB_EPROTO, never a crash.
 */
#ifndef WB_KV_PROTO_H
#define WB_KV_PROTO_H

#include <stddef.h>
#include <stdint.h>

enum {
    KV_PUT = 1,
    KV_GET = 2,
    KV_DELETE = 3,
    KV_LIST = 4,
    KV_WATCH = 5,
    KV_CURSOR = 6,
    KV_NEXT = 7,
    KV_DROP = 8,
    KV_OK = 64,
    KV_VALUE = 65,
    KV_ENTRIES = 66,
    KV_EVENT = 67,
    KV_SYNCED = 68,
    KV_CHANGES = 69,
    KV_ERR = 127,
};

enum { KV_OP_PUT = 1, KV_OP_DELETE = 2 };

/* WATCH from_rev meaning "from now on": the server starts at its head. */
#define KV_FROM_NOW ((uint64_t)INT64_MAX)

#define KV_MAX_KEY           4096
#define KV_DEFAULT_MAX_VALUE (1u << 20)
#define KV_MAX_LIST          1000
/* Room for the envelope and body framing around the largest value. */
#define KV_OVERHEAD (KV_MAX_KEY + 256)

typedef struct {
    const uint8_t *p;
    size_t n;
} kv_bytes_t;

typedef struct {
    uint64_t rev;
    int op;
    kv_bytes_t key, value;
    int has_value;
} kv_entry_t;

/* A growable output buffer for bodies. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;
} kv_buf_t;

void kv_buf_init(kv_buf_t *b);
void kv_buf_reset(kv_buf_t *b);
void kv_buf_fini(kv_buf_t *b);

/* Encoders: 0 or WB_ENOMEM. */
int kv_enc_key_value(kv_buf_t *b, kv_bytes_t key, kv_bytes_t value); /* PUT */
int kv_enc_key(kv_buf_t *b, kv_bytes_t key);                         /* GET, DELETE */
int kv_enc_list(kv_buf_t *b, kv_bytes_t prefix, const kv_bytes_t *after, uint32_t limit);
int kv_enc_watch(kv_buf_t *b, kv_bytes_t prefix, uint64_t from_rev);
int kv_enc_rev(kv_buf_t *b, uint64_t rev); /* OK, SYNCED */
int kv_enc_value(kv_buf_t *b, kv_bytes_t key, kv_bytes_t value, uint64_t rev);
int kv_enc_event(kv_buf_t *b, const kv_entry_t *e);
int kv_enc_err(kv_buf_t *b, int code, const char *text);
/* ENTRIES: begin with the count, add each, then finish with `more`. */
int kv_enc_entries_begin(kv_buf_t *b, uint32_t count);
int kv_enc_entry(kv_buf_t *b, kv_bytes_t key, kv_bytes_t value, uint64_t rev);
int kv_enc_entries_end(kv_buf_t *b, int more);

int kv_enc_next(kv_buf_t *b, uint32_t max, uint64_t ack);
/* CHANGES: `items` holds `count` entries each encoded with kv_enc_event. */
int kv_enc_changes(kv_buf_t *b, const kv_buf_t *items, uint32_t count, int more);

/* Decoders: 0 or WB_EPROTO. */
int kv_dec_key_value(const uint8_t *body, size_t len, kv_bytes_t *key, kv_bytes_t *value);
int kv_dec_key(const uint8_t *body, size_t len, kv_bytes_t *key);
int kv_dec_list(const uint8_t *body, size_t len, kv_bytes_t *prefix, kv_bytes_t *after,
                int *has_after, uint32_t *limit);
int kv_dec_watch(const uint8_t *body, size_t len, kv_bytes_t *prefix, uint64_t *from_rev);
int kv_dec_rev(const uint8_t *body, size_t len, uint64_t *rev);
int kv_dec_value(const uint8_t *body, size_t len, kv_bytes_t *key, kv_bytes_t *value,
                 uint64_t *rev);
int kv_dec_event(const uint8_t *body, size_t len, kv_entry_t *e);
int kv_dec_err(const uint8_t *body, size_t len, int *code, kv_bytes_t *text);
/* ENTRIES: cb runs once per entry, in order; *more tells whether the server
 * had more after the last one. */
int kv_dec_entries(const uint8_t *body, size_t len, void (*cb)(const kv_entry_t *e, void *arg),
                   void *arg, int *more);

int kv_dec_next(const uint8_t *body, size_t len, uint32_t *max, uint64_t *ack);
/* CHANGES: cb runs once per change, in order. */
int kv_dec_changes(const uint8_t *body, size_t len, void (*cb)(const kv_entry_t *e, void *arg),
                   void *arg, int *more);

/* The smallest key greater than every key starting with prefix: written to
 * out (room for prefix.n bytes); returns its length, or -1 when there is
 * none (prefix empty or all 0xff). */
int kv_prefix_end(kv_bytes_t prefix, uint8_t *out);

#endif
