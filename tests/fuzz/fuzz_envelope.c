/*
 * fuzz_envelope.c - the envelope decoder and the dispatcher behind it.
 *
 * Any bytes:
 *  - the msgpack codec's fixed-shape reader and msgpack-c's unpacker (behind
 *    the bound check, as the codec once decoded) agree on accepting them and
 *    on every field, the body pointer included;
 *  - what decodes encodes to something that decodes to the same header;
 *  - the same bytes go through a dispatcher with a type handler, a pending
 *    request and a conversation registered, which must route or drop them
 *    without crashing;
 *  - read as a script of requests, replies, cancels, clock steps and ticks,
 *    they drive a dispatcher's pending requests against a model: every
 *    request ends exactly once, a timeout never fires early or after a reply
 *    or cancel, they fire in deadline order, and tick names the next live
 *    deadline.
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/dispatch.h"
#include "dispatch/envelope.h"
#include "dispatch/mpcheck.h"
#include "runtime/assert.h"
#include "runtime/error.h"

/* ---- the decoder against msgpack-c ------------------------------------------ */

static int ref_decode(const uint8_t *buf, size_t len, wb_envelope_t *out)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    int rc = WB_EPROTO;

    if (buf == NULL || len == 0 || wb_mpcheck(buf, len) != 0)
        return WB_EPROTO;
    WB_ASSERT(msgpack_zone_init(&zone, 2048));
    msgpack_unpack_return r = msgpack_unpack((const char *)buf, len, &off, &zone, &obj);
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        goto out;
    if (obj.type != MSGPACK_OBJECT_ARRAY || obj.via.array.size != 5)
        goto out;
    const msgpack_object *f = obj.via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[0].via.u64 > UINT32_MAX)
        goto out;
    out->type = (uint32_t)f[0].via.u64;
    uint64_t *ids[3] = {&out->id, &out->reply_to, &out->regards};
    for (int i = 0; i < 3; i++) {
        if (f[1 + i].type == MSGPACK_OBJECT_NIL && i > 0)
            *ids[i] = 0;
        else if (f[1 + i].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[1 + i].via.u64 != 0)
            *ids[i] = f[1 + i].via.u64;
        else
            goto out;
    }
    if (f[4].type != MSGPACK_OBJECT_BIN)
        goto out;
    out->body = (const uint8_t *)f[4].via.bin.ptr;
    out->body_len = f[4].via.bin.size;
    rc = 0;
out:
    msgpack_zone_destroy(&zone);
    return rc;
}

static void check_decode(const uint8_t *data, size_t size)
{
    wb_envelope_t a, b;
    int ra = wb_codec_msgpack.decode(data, size, &a);
    int rb = ref_decode(data, size, &b);
    WB_ASSERT(ra == rb);
    if (ra != 0)
        return;
    WB_ASSERT(a.type == b.type && a.id == b.id && a.reply_to == b.reply_to &&
              a.regards == b.regards && a.body_len == b.body_len && a.body == b.body);
    WB_ASSERT(a.body >= data && a.body + a.body_len <= data + size);

    wb_envelope_t c;
    size_t cap = wb_codec_msgpack.encoded_max(&a), len;
    uint8_t *buf = malloc(cap);
    WB_ASSERT(buf != NULL);
    WB_ASSERT(wb_codec_msgpack.encode(&a, buf, cap, &len) == 0);
    WB_ASSERT(wb_codec_msgpack.decode(buf, len, &c) == 0);
    WB_ASSERT(a.type == c.type && a.id == c.id && a.reply_to == c.reply_to &&
              a.regards == c.regards && a.body_len == c.body_len);
    WB_ASSERT(a.body_len == 0 || memcmp(a.body, c.body, a.body_len) == 0);
    free(buf);
}

/* ---- routing ------------------------------------------------------------------ */

static int sink(void *ctx, uint64_t peer, wb_event_t *blob)
{
    (void)ctx;
    (void)peer;
    wb_event_free(blob);
    return 0;
}

static void on_type(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    (void)arg;
    wb_dispatch_reply(d, m, 2, m->env.body, m->env.body_len > 16 ? 16 : m->env.body_len);
}

static void on_reply(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg)
{
    (void)d;
    (void)m;
    (void)status;
    (void)arg;
}

static void cv_msg(wb_conv_t *c, const wb_msg_t *m)
{
    wb_conv_consumed(c, m->env.body_len);
}
static void cv_end(wb_conv_t *c, int status)
{
    (void)c;
    (void)status;
}
static const wb_conv_def_t def = {"fuzz", cv_msg, NULL, cv_end};

static void route(const uint8_t *data, size_t size)
{
    wb_dispatch_t *d;
    wb_dispatch_config_t cfg = {.send = sink, .max_message = 4096};
    WB_ASSERT(wb_dispatch_new(&d, &cfg) == 0);
    WB_ASSERT(wb_dispatch_peer_add(d, 1, &wb_codec_msgpack, 1) == 0);
    wb_dispatch_on_type(d, 1, on_type, NULL);
    wb_dispatch_request(d, 1, 3, 0, "r", 1, 0, 10, on_reply, NULL, NULL); /* id 1 */
    wb_conv_open(d, 1, 4, NULL, 0, &def, NULL, NULL);                     /* id 3 */
    wb_event_t *ev = wb_event_new_copy(0, data, size);
    if (ev != NULL)
        wb_dispatch_input(d, 1, ev, 0);
    wb_dispatch_tick(d, 100);
    wb_dispatch_free(d);
}

/* ---- pending requests against a model ---------------------------------------- */

#define MAXREQ 512

typedef struct {
    uint64_t id, deadline; /* deadline 0: no timeout */
    int live;
} mreq_t;

static mreq_t mreq[MAXREQ];
static int nreq;
static uint64_t clock_ms, last_fired_deadline;
static int last_fired, ending_status;

static void on_model(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg)
{
    mreq_t *r = &mreq[(intptr_t)arg];
    (void)d;
    WB_ASSERT(r->live);
    r->live = 0;
    if (status == WB_ETIMEDOUT) {
        /* Due, and no earlier than the one before it in this tick. */
        WB_ASSERT(r->deadline != 0 && r->deadline <= clock_ms);
        WB_ASSERT(r->deadline > last_fired_deadline ||
                  (r->deadline == last_fired_deadline && (intptr_t)arg > last_fired));
        last_fired_deadline = r->deadline;
        last_fired = (int)(intptr_t)arg;
    } else if (status == 0) {
        WB_ASSERT(m != NULL && m->env.reply_to == r->id);
    } else {
        WB_ASSERT(status == ending_status);
    }
}

static uint64_t model_next(void)
{
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < nreq; i++)
        if (mreq[i].live && mreq[i].deadline != 0 && mreq[i].deadline < next)
            next = mreq[i].deadline;
    return next;
}

static void deadlines(const uint8_t *data, size_t size)
{
    /* More timeout values than the dispatcher has queues for. */
    static const uint64_t timeouts[] = {0, 5, 10, 20, 30, 40, 50, 60};
    wb_dispatch_t *d;
    wb_dispatch_config_t cfg = {.send = sink};
    uint64_t reply_id = 2;
    WB_ASSERT(wb_dispatch_new(&d, &cfg) == 0);
    WB_ASSERT(wb_dispatch_peer_add(d, 1, &wb_codec_msgpack, 1) == 0);
    nreq = 0;
    clock_ms = 1000;
    ending_status = WB_ECLOSED;
    for (size_t i = 0; i + 1 < size; i += 2) {
        uint8_t op = data[i] % 6, arg = data[i + 1];
        mreq_t *r = nreq > 0 ? &mreq[arg % nreq] : NULL;
        switch (op) {
        case 0:
        case 1: { /* a request */
            if (nreq == MAXREQ)
                break;
            uint64_t t = timeouts[arg % 8];
            if (arg >= 0xf0)
                t = arg; /* yet another value */
            r = &mreq[nreq];
            WB_ASSERT(wb_dispatch_request(d, 1, 9, 0, NULL, 0, clock_ms, t, on_model,
                                          (void *)(intptr_t)nreq, &r->id) == 0);
            r->deadline = t ? clock_ms + t : 0;
            r->live = 1;
            nreq++;
            break;
        }
        case 2: { /* a reply, perhaps to a request that is over */
            if (r == NULL)
                break;
            uint8_t buf[64];
            size_t len;
            int live = r->live;
            wb_envelope_t env = {2, reply_id, r->id, 0, NULL, 0};
            reply_id += 2;
            WB_ASSERT(wb_codec_msgpack.encode(&env, buf, sizeof(buf), &len) == 0);
            int rc = wb_dispatch_input(d, 1, wb_event_new_copy(0, buf, len), 0);
            WB_ASSERT(rc == (live ? 0 : WB_ENOENT) && !r->live);
            break;
        }
        case 3: /* a cancel */
            if (r == NULL)
                break;
            WB_ASSERT(wb_dispatch_cancel(d, 1, r->id) == (r->live ? 0 : WB_ENOENT));
            r->live = 0;
            break;
        case 4: /* the clock steps back a little (a caller's clock may) */
            clock_ms -= clock_ms > 8 ? arg % 8 : 0;
            break;
        default: { /* time passes; tick */
            clock_ms += arg % 32;
            last_fired_deadline = 0;
            last_fired = -1;
            uint64_t next = wb_dispatch_tick(d, clock_ms);
            WB_ASSERT(next == model_next());
            WB_ASSERT(next > clock_ms);
            break;
        }
        }
    }
    if (size % 2) {
        ending_status = WB_EIO;
        wb_dispatch_peer_remove(d, 1, WB_EIO);
        WB_ASSERT(wb_dispatch_tick(d, UINT64_MAX - 1) == UINT64_MAX);
    }
    wb_dispatch_free(d);
    for (int i = 0; i < nreq; i++)
        WB_ASSERT(!mreq[i].live);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_decode(data, size);
    route(data, size);
    deadlines(data, size);
    return 0;
}
