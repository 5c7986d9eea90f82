/*
 * bench_dispatch.c - the dispatcher alone, on one thread: decode the routing
 * header, look the handler up, call it.
 *
 * One peer (we dialed: our ids are odd, the peer's even), msgpack codec,
 * 32-byte bodies. The blobs are encoded into events before the clock starts,
 * BATCH at a time (512 KiB of events: they stay in the L2 cache, as blobs
 * fresh from a socket would be); the timed loop is wb_dispatch_input (which
 * frees each event, as it does in an app).
 *
 *   dispatch_type          rule 1: a stateless handler by type
 *   dispatch_reply         rule 2: replies to requests registered with
 *                          wb_dispatch_request (a sink send callback), in
 *                          windows of WINDOW outstanding, each with a 10 s
 *                          timeout as the kv client sets; only the replies
 *                          are timed
 *   dispatch_conv          rule 3: messages in one conversation, the
 *                          handler calling wb_conv_consumed (credit grants go
 *                          out through the sink as they fall due)
 *   dispatch_type_copy     rule 1 with the event made in the loop from the
 *                          bytes (the copy sockets/ does per message)
 *   dispatch_request       wb_dispatch_request alone: register, encode into
 *                          a new event, hand it to the sink (which frees it)
 *   dispatch_encode        the codec's encode into a buffer
 *   dispatch_decode        the codec's decode of one header
 *
 * Figures are medians of RUNS runs of N_MSGS messages. An argument (type,
 * reply, conv, copy, request, encode, decode) runs that case alone, for a
 * profiler.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/dispatch.h"
#include "dispatch/envelope.h"
#include "runtime/error.h"
#include "runtime/event.h"
#include "runtime/log.h"
#include "tests/bench/bench_common.h"

#define RUNS     5
#define N_MSGS   (1u << 18)
#define BATCH    4096u
#define WINDOW   1024u
#define BODY_LEN 32u
#define PEER     1u
#define TYPE     1u
#define TIMEOUT  10000u

static uint8_t body[BODY_LEN];
static volatile uint64_t sink_sum; /* keeps the handlers' work alive */

static int sink_send(void *ctx, uint64_t peer, wb_event_t *blob)
{
    (void)ctx;
    (void)peer;
    wb_event_free(blob);
    return 0;
}

static wb_dispatch_t *new_dispatcher(void)
{
    wb_dispatch_config_t cfg = {.send = sink_send};
    wb_dispatch_t *d;
    if (wb_dispatch_new(&d, &cfg) != 0 || wb_dispatch_peer_add(d, PEER, &wb_codec_msgpack, 1) != 0)
        BENCH_FAIL("cannot make a dispatcher");
    return d;
}

/* The encoded bytes of one envelope from the peer (even id). */
static size_t encode(uint8_t *buf, size_t cap, uint32_t type, uint64_t id, uint64_t reply_to,
                     uint64_t regards)
{
    wb_envelope_t env = {type, id, reply_to, regards, body, BODY_LEN};
    size_t len;
    if (wb_codec_msgpack.encode(&env, buf, cap, &len) != 0)
        BENCH_FAIL("encode");
    return len;
}

/* Events base..base+n-1 from the peer: message i has id 2i+2, reply_to from
 * the function given (NULL: not set) and regards. */
static void make_events(wb_event_t **evs, uint32_t base, uint32_t n, uint32_t type,
                        uint64_t (*reply_to)(uint32_t i), uint64_t regards)
{
    uint8_t buf[128];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = base + i;
        size_t len = encode(buf, sizeof(buf), type, 2ull * k + 2,
                            reply_to != NULL ? reply_to(k) : 0, regards);
        evs[i] = wb_event_new_copy(WB_EV_DISPATCH_BLOB, buf, len);
        if (evs[i] == NULL)
            BENCH_FAIL("out of memory");
    }
}

/* ---- rule 1 -------------------------------------------------------------- */

static void on_type(wb_dispatch_t *d, const wb_msg_t *m, void *arg)
{
    uint64_t *count = arg;
    (void)d;
    *count += 1;
    sink_sum += m->env.body[0] + m->env.body_len;
}

static double run_type(wb_event_t **evs)
{
    wb_dispatch_t *d = new_dispatcher();
    uint64_t count = 0;
    uint64_t ns = 0;
    wb_dispatch_on_type(d, TYPE, on_type, &count);
    for (uint32_t base = 0; base < N_MSGS; base += BATCH) {
        make_events(evs, base, BATCH, TYPE, NULL, 0);
        uint64_t t0 = bench_now_ns();
        for (uint32_t i = 0; i < BATCH; i++)
            wb_dispatch_input(d, PEER, evs[i], 0);
        ns += bench_now_ns() - t0;
    }
    if (count != N_MSGS)
        BENCH_FAIL("type: %llu of %u handled", (unsigned long long)count, N_MSGS);
    wb_dispatch_free(d);
    return bench_rate(N_MSGS, ns);
}

/* The same, with the event made from the bytes inside the loop. */
static double run_type_copy(void)
{
    wb_dispatch_t *d = new_dispatcher();
    uint64_t count = 0;
    uint8_t buf[128];
    size_t len = encode(buf, sizeof(buf), TYPE, 2, 0, 0);
    wb_dispatch_on_type(d, TYPE, on_type, &count);
    uint64_t t0 = bench_now_ns();
    for (uint32_t i = 0; i < N_MSGS; i++) {
        wb_event_t *ev = wb_event_new_copy(WB_EV_DISPATCH_BLOB, buf, len);
        if (ev == NULL)
            BENCH_FAIL("out of memory");
        wb_dispatch_input(d, PEER, ev, 0);
    }
    uint64_t t1 = bench_now_ns();
    if (count != N_MSGS)
        BENCH_FAIL("type_copy: %llu of %u handled", (unsigned long long)count, N_MSGS);
    wb_dispatch_free(d);
    return bench_rate(N_MSGS, t1 - t0);
}

/* ---- rule 2 -------------------------------------------------------------- */

static void on_reply(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg)
{
    uint64_t *count = arg;
    (void)d;
    if (status != 0 || m == NULL)
        BENCH_FAIL("reply: status %d", status);
    *count += 1;
    sink_sum += m->env.body[0];
}

/* Our requests get ids 1, 3, 5...: reply i answers the i-th. */
static uint64_t reply_to_nth(uint32_t i)
{
    return 2ull * i + 1;
}

/* Replies timed; *req_rate gets the rate of the wb_dispatch_request calls. */
static double run_reply(wb_event_t **evs, double *req_rate)
{
    wb_dispatch_t *d = new_dispatcher();
    uint64_t count = 0, t_in = 0, t_req = 0;
    for (uint32_t base = 0; base < N_MSGS; base += WINDOW) {
        make_events(evs, base, WINDOW, TYPE, reply_to_nth, 0);
        uint64_t t0 = bench_now_ns();
        for (uint32_t i = 0; i < WINDOW; i++) {
            uint64_t id;
            if (wb_dispatch_request(d, PEER, TYPE, 0, body, BODY_LEN, 0, TIMEOUT, on_reply, &count,
                                    &id) != 0 ||
                id != reply_to_nth(base + i))
                BENCH_FAIL("request");
        }
        uint64_t t1 = bench_now_ns();
        for (uint32_t i = 0; i < WINDOW; i++)
            wb_dispatch_input(d, PEER, evs[i], 0);
        uint64_t t2 = bench_now_ns();
        t_req += t1 - t0;
        t_in += t2 - t1;
    }
    if (count != N_MSGS)
        BENCH_FAIL("reply: %llu of %u handled", (unsigned long long)count, N_MSGS);
    wb_dispatch_free(d);
    *req_rate = bench_rate(N_MSGS, t_req);
    return bench_rate(N_MSGS, t_in);
}

/* ---- rule 3 -------------------------------------------------------------- */

static uint64_t conv_count;

static void conv_msg(wb_conv_t *c, const wb_msg_t *m)
{
    conv_count++;
    sink_sum += m->env.body[0];
    wb_conv_consumed(c, m->env.body_len);
}

static void conv_end(wb_conv_t *c, int status)
{
    (void)c;
    (void)status;
}

static const wb_conv_def_t conv_def = {"bench", conv_msg, NULL, conv_end};

static double run_conv(wb_event_t **evs)
{
    wb_dispatch_t *d = new_dispatcher();
    wb_conv_t *c;
    if (wb_conv_open(d, PEER, TYPE, body, BODY_LEN, &conv_def, NULL, &c) != 0)
        BENCH_FAIL("conv_open");
    uint64_t ns = 0;
    conv_count = 0;
    for (uint32_t base = 0; base < N_MSGS; base += BATCH) {
        make_events(evs, base, BATCH, TYPE + 1, NULL, wb_conv_id(c));
        uint64_t t0 = bench_now_ns();
        for (uint32_t i = 0; i < BATCH; i++)
            wb_dispatch_input(d, PEER, evs[i], 0);
        ns += bench_now_ns() - t0;
    }
    if (conv_count != N_MSGS)
        BENCH_FAIL("conv: %llu of %u handled", (unsigned long long)conv_count, N_MSGS);
    wb_dispatch_free(d);
    return bench_rate(N_MSGS, ns);
}

/* ---- the codec alone ----------------------------------------------------- */

static double run_encode(void)
{
    uint8_t buf[128];
    size_t total = 0;
    uint64_t t0 = bench_now_ns();
    for (uint32_t i = 0; i < N_MSGS; i++)
        total += encode(buf, sizeof(buf), TYPE, 2ull * i + 2, 0, i & 1 ? 7 : 0);
    uint64_t t1 = bench_now_ns();
    sink_sum += total;
    return bench_rate(N_MSGS, t1 - t0);
}

static double run_decode(void)
{
    uint8_t buf[128];
    size_t len = encode(buf, sizeof(buf), TYPE, 123456, 0, 7);
    wb_envelope_t env;
    uint64_t t0 = bench_now_ns();
    for (uint32_t i = 0; i < N_MSGS; i++) {
        if (wb_codec_msgpack.decode(buf, len, &env) != 0)
            BENCH_FAIL("decode");
        sink_sum += env.body_len;
    }
    uint64_t t1 = bench_now_ns();
    return bench_rate(N_MSGS, t1 - t0);
}

static int want(const char *only, const char *name)
{
    return only == NULL || strcmp(only, name) == 0;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    bench_samples_t type_s = {0}, reply_s = {0}, conv_s = {0}, copy_s = {0}, req_s = {0},
                    enc_s = {0}, dec_s = {0};
    wb_event_t **evs = calloc(BATCH, sizeof(*evs));

    if (evs == NULL)
        BENCH_FAIL("out of memory");
    if (getenv("WAYBILL_LOG") == NULL)
        wb_log_set_level(WB_LOG_WARN);
    bench_pin(0);
    for (uint32_t i = 0; i < BODY_LEN; i++)
        body[i] = (uint8_t)(i * 7 + 1);
    for (int r = 0; r < RUNS; r++) {
        double req;
        if (want(only, "type"))
            bench_add(&type_s, run_type(evs));
        if (want(only, "reply") || want(only, "request")) {
            bench_add(&reply_s, run_reply(evs, &req));
            bench_add(&req_s, req);
        }
        if (want(only, "conv"))
            bench_add(&conv_s, run_conv(evs));
        if (want(only, "copy"))
            bench_add(&copy_s, run_type_copy());
        if (want(only, "encode"))
            bench_add(&enc_s, run_encode());
        if (want(only, "decode"))
            bench_add(&dec_s, run_decode());
    }
    free(evs);
    wb_codec_msgpack_thread_release();

    const struct {
        const char *name;
        bench_samples_t *s;
    } out[] = {
        {"dispatch_type_per_s", &type_s},   {"dispatch_reply_per_s", &reply_s},
        {"dispatch_conv_per_s", &conv_s},   {"dispatch_type_copy_per_s", &copy_s},
        {"dispatch_request_per_s", &req_s}, {"dispatch_encode_per_s", &enc_s},
        {"dispatch_decode_per_s", &dec_s},
    };
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
        if (out[i].s->n > 0)
            bench_print(out[i].name, bench_med(out[i].s), "msgs/s");
    return 0;
}
