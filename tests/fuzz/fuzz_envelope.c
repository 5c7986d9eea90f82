/*
 * fuzz_envelope.c - the envelope decoder and the dispatcher behind it.
 *
 * Any bytes: the msgpack codec either refuses them or yields a header that
 * encodes back to something that decodes to the same header. Then the same
 * bytes go through a dispatcher with a type handler, a pending request and a
 * conversation registered, which must route or drop them without crashing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/dispatch.h"
#include "dispatch/envelope.h"
#include "runtime/assert.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wb_envelope_t a, b;
    if (wb_codec_msgpack.decode(data, size, &a) == 0) {
        size_t cap = wb_codec_msgpack.encoded_max(&a), len;
        uint8_t *buf = malloc(cap);
        WB_ASSERT(buf != NULL);
        WB_ASSERT(wb_codec_msgpack.encode(&a, buf, cap, &len) == 0);
        WB_ASSERT(wb_codec_msgpack.decode(buf, len, &b) == 0);
        WB_ASSERT(a.type == b.type && a.id == b.id && a.reply_to == b.reply_to &&
                  a.regards == b.regards && a.body_len == b.body_len);
        WB_ASSERT(a.body_len == 0 || memcmp(a.body, b.body, a.body_len) == 0);
        free(buf);
    }

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
    return 0;
}
