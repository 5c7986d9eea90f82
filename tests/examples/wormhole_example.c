/*
 * wormhole_example.c - the example of docs/wormhole-client.md, built and
 * run by ctest (example_wormhole): a mailbox server in this process on
 * loopback (apps/mailbox/server.h), and two wormholes through it. Alice
 * allocates a code and offers a text; Bob takes her code, prints the text
 * and answers; both close, happy.
 *
 * The wormhole API is not part of the installed library (only runtime/,
 * db/, dispatch/ and sockets/ are): this links waybill_apps in the tree.
 */
#include <stdio.h>
#include <string.h>

#include "apps/mailbox/server.h"
#include "apps/wormhole/keys.h" /* WB_WH_APPID_XFER */
#include "apps/wormhole/wormhole.h"
#include "runtime/error.h"
#include "runtime/rt.h"

static wb_rt_t *rt;
static uint64_t alice, bob;
static int happy, closed;

/* Both wormholes' events, on the actor lane. Calling back into the API from
 * here is allowed: each call posts an event and returns. */
static void on_event(uint64_t w, const wh_event_t *ev, void *user)
{
    const char *who = w == alice ? "alice" : "bob";
    char err[200];
    switch (ev->type) {
    case WH_EV_CODE:
        printf("%s: code %s\n", who, ev->text);
        if (w == alice && wb_wormhole_set_code(rt, bob, ev->text, err, sizeof(err)) != 0)
            printf("bob: %s\n", err);
        break;
    case WH_EV_VERIFIER: /* ev->data: 32 bytes both sides see; compare them out of band */
        break;
    case WH_EV_MESSAGE: /* message number ev->phase: ev->data[0..ev->len) */
        printf("%s: message %llu: %.*s\n", who, (unsigned long long)ev->phase, (int)ev->len,
               (const char *)ev->data);
        if (w == bob) {
            const char *answer = "{\"answer\": {\"message_ack\": \"ok\"}}";
            wb_wormhole_send(rt, bob, answer, strlen(answer));
        }
        wb_wormhole_close(rt, w); /* the answer still leaves before the close */
        break;
    case WH_EV_CLOSED:
        printf("%s: closed, %s%s%s\n", who, wh_result_name(ev->result), ev->text ? ": " : "",
               ev->text ? ev->text : "");
        happy += ev->result == WH_RESULT_HAPPY;
        if (++closed == 2)
            wb_rt_request_stop(rt);
        break;
    default:
        break;
    }
}

/* The server listens (actor lane): open the two wormholes to it. */
static void on_listening(int status, uint16_t port, void *user)
{
    if (status < 0) {
        fprintf(stderr, "mailbox server: %s\n", wb_strerror(status));
        wb_rt_request_stop(rt);
        return;
    }
    char url[64], err[200];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/v1", port);
    wb_wormhole_config_t cfg;
    wb_wormhole_config_init(&cfg);
    cfg.url = url; /* e.g. WB_WORMHOLE_RELAY_URL, the public server */
    cfg.appid = WB_WH_APPID_XFER;
    cfg.on_event = on_event;
    if (wb_wormhole_open(rt, &cfg, &alice, err, sizeof(err)) != 0 ||
        wb_wormhole_open(rt, &cfg, &bob, err, sizeof(err)) != 0) {
        fprintf(stderr, "open: %s\n", err);
        wb_rt_request_stop(rt);
        return;
    }
    wb_wormhole_allocate(rt, alice, 2); /* a nameplate and two words: WH_EV_CODE */
    const char *offer = "{\"offer\": {\"message\": \"hi\"}}";
    wb_wormhole_send(rt, alice, offer, strlen(offer)); /* leaves once the key is confirmed */
}

int main(void)
{
    mb_server_config_t srv;
    mb_server_config_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = 0; /* any free port: on_listening says which */
    srv.channel_db = ":memory:";
    srv.on_listening = on_listening;
    /* mb_server_setup attaches the sockets (and the database lane); a
     * program without a server calls wb_sockets_attach(rt, NULL) instead,
     * then opens its wormholes before or after wb_rt_start. */
    int rc = wb_rt_new(&rt, NULL);
    if (rc == 0)
        rc = mb_server_setup(rt, &srv);
    if (rc == 0)
        rc = wb_rt_start(rt);
    if (rc != 0) {
        fprintf(stderr, "wormhole_example: %s\n", wb_strerror(rc));
        return 1;
    }
    wb_rt_wait(rt); /* until both wormholes closed */
    wb_rt_stop(rt);
    wb_rt_free(rt);
    printf("%s\n", happy == 2 ? "ok: both happy" : "FAILED");
    return happy == 2 ? 0 : 1;
}
