/*
 * fuzz_mconn.c - the multiplexed connection (sockets/mconn.h) fed by the
 * fuzzer, two ways.
 *
 * Byte 0 even: the rest is the peer's stream to an mconn of three channels,
 * cut into chunks by byte 1 (bits 0-5: largest chunk - 1, bits 6-7: the
 * delivery pattern: deliver at once, hold channel 0x02, hold all until the
 * next write). The mconn writes (its credit, pongs) after every chunk. Checked:
 * read never takes more than it is given; a message is never above its
 * channel's max_message; an error is EPROTO or ETOOBIG, has a one-line text
 * and stays (a later read takes nothing and returns it).
 *
 * Byte 0 odd: the rest is a script for two mconns A and B, one op per byte:
 * queue a message (its length from the next two bytes, its content a
 * function of channel, index and offset block), write from one side into the other
 * (capacity from the next byte, fed in chunks), hold or release a channel's
 * deliveries, advance the clock and tick. At the end every held message is
 * delivered, both sides pump until quiet, and what each side got equals, in
 * order and content, what the other queued. The only error allowed is a pong
 * timeout (the script may let time run without pumping).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/event.h"
#include "sockets/mconn.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_mconn: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum { NCH = 3, MAXQ = 64 };

static const wb_mconn_chan_t chans[NCH] = {
    {.id = 0x01, .priority = 1, .send_queue_capacity = 4, .max_message = 300, .recv_window = 128},
    {.id = 0x02, .priority = 3, .send_queue_capacity = 2, .max_message = 2000, .recv_window = 64},
    {.id = 0x20, .priority = 2, .send_queue_capacity = 8, .max_message = 3000, .recv_window = 1024},
};

static wb_mconn_config_t config(void)
{
    wb_mconn_config_t cfg;
    wb_mconn_config_init(&cfg);
    cfg.max_packet = 64;
    cfg.ping_ms = 1000;
    cfg.pong_timeout_ms = 900;
    cfg.decay_ms = 100;
    return cfg;
}

static int index_of(uint8_t id)
{
    for (int i = 0; i < NCH; i++)
        if (chans[i].id == id)
            return i;
    return -1;
}

/* ---- mode 0: the peer's stream ---- */

static void stream(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    size_t maxchunk = (size_t)(data[0] & 63) + 1;
    int pattern = data[0] >> 6;
    data++;
    size--;
    wb_mconn_config_t cfg = config();
    wb_mconn_t *m;
    CHECK(wb_mconn_new(&m, &cfg, chans, NCH, 0) == 0);
    uint8_t out[512];
    uint64_t held[NCH] = {0};
    size_t off = 0;
    uint64_t now = 0;
    int err = 0;
    while (off < size && err == 0) {
        /* Our credit, pongs, pings: the peer's stream may rely on them. */
        for (int i = 0; i < NCH; i++) {
            if (pattern == 2 || (pattern == 1 && i == 1))
                continue;
            for (; held[i] > 0; held[i]--)
                wb_mconn_delivered(m, chans[i].id);
        }
        long w;
        while ((w = wb_mconn_write(m, out, sizeof(out))) > 0)
            CHECK((size_t)w <= sizeof(out));
        CHECK(w == 0);
        CHECK(!wb_mconn_want_write(m));
        now += 7;
        err = wb_mconn_tick(m, now);
        if (err != 0) {
            CHECK(err == WB_ETIMEDOUT);
            break;
        }
        size_t chunk = 1 + (data[off] + off) % maxchunk;
        if (chunk > size - off)
            chunk = size - off;
        size_t left = chunk;
        while (left > 0) {
            size_t used = 0;
            uint8_t ch = 0, *msg = NULL;
            size_t mlen = 0;
            int rc = wb_mconn_read(m, data + off, left, &used, &ch, &msg, &mlen);
            CHECK(used <= left);
            off += used;
            left -= used;
            if (rc < 0) {
                CHECK(rc == WB_EPROTO || rc == WB_ETOOBIG);
                CHECK(msg == NULL);
                err = rc;
                break;
            }
            if (rc == 0) {
                CHECK(left == 0);
                break;
            }
            CHECK(rc == 1);
            int i = index_of(ch);
            CHECK(i >= 0);
            CHECK(mlen <= chans[i].max_message);
            CHECK((mlen == 0) == (msg == NULL));
            free(msg);
            held[i]++;
        }
        if (pattern == 2 && held[0] + held[1] + held[2] > 0 && (off & 3) == 0) {
            for (int i = 0; i < NCH; i++)
                for (; held[i] > 0; held[i]--)
                    wb_mconn_delivered(m, chans[i].id);
        }
    }
    if (err != 0) {
        const char *t = wb_mconn_error(m);
        CHECK(t[0] != '\0' && strchr(t, '\n') == NULL);
        CHECK(wb_mconn_errcode(m) == err);
        size_t used = 1;
        uint8_t ch, *msg;
        size_t mlen;
        uint8_t ping = WB_MCONN_PKT_PING;
        CHECK(wb_mconn_read(m, &ping, 1, &used, &ch, &msg, &mlen) == err && used == 0);
        CHECK(wb_mconn_write(m, out, sizeof(out)) == err);
    }
    wb_mconn_free(m);
}

/* ---- mode 1: two mconns and a script ---- */

typedef struct {
    wb_mconn_t *m;
    uint32_t sent_len[NCH][MAXQ];
    size_t nsent[NCH];
    size_t ngot[NCH];
    uint64_t held[NCH];
    int hold[NCH];
} side_t;

/* Message idx of channel ch: blocks of BLOCK equal bytes, each block its own
 * value (BLOCK is prime to max_packet, so a packet lost, doubled or swapped
 * shows). Filled and checked block by block: a per-byte loop would spend
 * the fuzzer's time in its own comparisons. */
enum { BLOCK = 61 };

static uint8_t block_value(int ch, size_t idx, size_t b)
{
    return (uint8_t)(ch * 31 + idx * 7 + b * 13 + 1);
}

static void fill(uint8_t *p, size_t len, int ch, size_t idx)
{
    for (size_t off = 0, b = 0; off < len; off += BLOCK, b++)
        memset(p + off, block_value(ch, idx, b), len - off < BLOCK ? len - off : BLOCK);
}

static int same(const uint8_t *p, size_t len, int ch, size_t idx)
{
    for (size_t off = 0, b = 0; off < len; off += BLOCK, b++) {
        size_t n = len - off < BLOCK ? len - off : BLOCK;
        if (p[off] != block_value(ch, idx, b) || memcmp(p + off, p + off + 1, n - 1) != 0)
            return 0;
    }
    return 1;
}

/* Feed n bytes of buf to `to`, chunk sizes from *rng; check each message
 * against what `from` queued. Returns 0 or the error. */
static int feed(side_t *from, side_t *to, const uint8_t *buf, size_t n, uint32_t *rng)
{
    size_t off = 0;
    while (off < n) {
        *rng = *rng * 1103515245u + 12345u;
        size_t chunk = 1 + (*rng >> 16) % (n - off);
        size_t left = chunk;
        while (left > 0) {
            size_t used = 0;
            uint8_t ch = 0, *msg = NULL;
            size_t mlen = 0;
            int rc = wb_mconn_read(to->m, buf + off, left, &used, &ch, &msg, &mlen);
            CHECK(used <= left);
            off += used;
            left -= used;
            if (rc < 0)
                return rc;
            if (rc == 0) {
                CHECK(left == 0);
                break;
            }
            int i = index_of(ch);
            CHECK(i >= 0);
            size_t idx = to->ngot[i]++;
            CHECK(idx < from->nsent[i]);
            CHECK(mlen == from->sent_len[i][idx]);
            CHECK(same(msg, mlen, i, idx));
            free(msg);
            if (to->hold[i])
                to->held[i]++;
            else
                wb_mconn_delivered(to->m, ch);
        }
    }
    return 0;
}

static int pump(side_t *from, side_t *to, size_t cap, uint32_t *rng)
{
    static uint8_t buf[4096];
    if (cap < WB_MCONN_MSG_HEADER + 1)
        cap = WB_MCONN_MSG_HEADER + 1;
    long n = wb_mconn_write(from->m, buf, cap);
    if (n < 0)
        return (int)n;
    CHECK((size_t)n <= cap);
    return feed(from, to, buf, (size_t)n, rng);
}

static void release(side_t *s, int i)
{
    s->hold[i] = 0;
    for (; s->held[i] > 0; s->held[i]--)
        wb_mconn_delivered(s->m, chans[i].id);
}

static void script(const uint8_t *data, size_t size)
{
    wb_mconn_config_t cfg = config();
    side_t *s[2];
    for (int k = 0; k < 2; k++) {
        s[k] = calloc(1, sizeof(side_t));
        CHECK(s[k] != NULL);
        CHECK(wb_mconn_new(&s[k]->m, &cfg, chans, NCH, 0) == 0);
    }
    uint32_t rng = 1;
    uint64_t now = 0;
    int err = 0;
    size_t off = 0;
    while (off < size && err == 0) {
        uint8_t op = data[off++];
        side_t *x = s[op >> 7], *y = s[!(op >> 7)];
        int i = (op >> 3) % NCH;
        switch (op & 7) {
        case 0:
        case 1: { /* queue a message */
            uint32_t len = 0;
            if (off + 2 <= size) {
                len = (uint32_t)data[off] | (uint32_t)data[off + 1] << 8;
                off += 2;
            }
            if (op & 1)
                len = len % 4 == 0 ? chans[i].max_message + (len >> 2 & 1) : len % 64;
            wb_event_t *ev = wb_event_new(0, len);
            CHECK(ev != NULL);
            size_t idx = x->nsent[i];
            fill(ev->data, len, i, idx);
            int sendable = wb_mconn_sendable(x->m, chans[i].id);
            int rc = idx < MAXQ ? wb_mconn_send(x->m, chans[i].id, ev) : WB_EAGAIN;
            if (rc == 0) {
                CHECK(sendable);
                CHECK(len <= chans[i].max_message);
                x->sent_len[i][x->nsent[i]++] = len;
            } else {
                if (idx < MAXQ && len > chans[i].max_message)
                    CHECK(rc == WB_ETOOBIG);
                else if (idx < MAXQ)
                    CHECK(rc == WB_EAGAIN && !sendable);
                wb_event_free(ev);
            }
            break;
        }
        case 2:
        case 3:
        case 4: { /* write x -> y */
            size_t cap = off < size ? (size_t)data[off++] * 16 + 6 : 4096;
            err = pump(x, y, cap, &rng);
            break;
        }
        case 5: /* hold y's deliveries on a channel */
            y->hold[i] = 1;
            break;
        case 6:
            release(y, i);
            break;
        case 7: /* time */
            now += (uint64_t)(op >> 3 & 15) * 20;
            err = wb_mconn_tick(x->m, now);
            if (err == 0)
                err = wb_mconn_tick(y->m, now);
            break;
        }
    }
    if (err != 0) {
        CHECK(err == WB_ETIMEDOUT);
    } else {
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < NCH; i++)
                release(s[k], i);
        int rounds = 0;
        while (wb_mconn_want_write(s[0]->m) || wb_mconn_want_write(s[1]->m)) {
            CHECK(++rounds < 100000);
            CHECK(pump(s[0], s[1], 4096, &rng) == 0);
            CHECK(pump(s[1], s[0], 4096, &rng) == 0);
        }
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < NCH; i++) {
                CHECK(s[!k]->ngot[i] == s[k]->nsent[i]);
                wb_mconn_chan_stats_t st;
                CHECK(wb_mconn_chan_stats(s[k]->m, (size_t)i, &st) == 0);
                CHECK(st.queued == 0 && st.recv_undelivered == 0);
                CHECK(st.send_credit == chans[i].recv_window);
            }
        }
    }
    for (int k = 0; k < 2; k++) {
        wb_mconn_free(s[k]->m);
        free(s[k]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        script(data + 1, size - 1);
    else
        stream(data + 1, size - 1);
    return 0;
}
