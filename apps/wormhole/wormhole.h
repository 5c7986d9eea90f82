/*
 * wormhole.h - a Magic Wormhole for applications: the client machines
 * (client.h) run by an actor on the actor lane, over a WebSocket dial of
 * sockets/tcp.h (opts.ws; ws://HOST[:PORT]/PATH).
 *
 * wb_wormhole_open spawns the actor and connects; the application then
 * chooses the code (allocate, set, or input in two steps), sends numbered
 * messages, and closes. Everything the wormhole has to say arrives as
 * wh_event_t's (client.h) through cfg->on_event, called on the actor lane:
 * the code, the key, the verifier, the peer's app_versions, message N,
 * and last WH_EV_CLOSED with the result (happy, lonely, scary, errory,
 * unwelcome, unreachable, protocol). After WH_EV_CLOSED the actor is gone.
 *
 * Threads: wb_wormhole_open from any thread once the runtime is started
 * (or before, from the creating thread). The other calls may be made from
 * any thread, the on_event callback included: each posts one event to the
 * actor and returns at once; nothing here blocks the actor lane, and calls
 * made after the wormhole ended are dropped. Calls from one thread are
 * taken in order.
 *
 * Closing: once closing starts (wb_wormhole_close, or an error that closes
 * the mailbox) the server gets close_timeout_ms to answer; after that the
 * connection is dropped and WH_EV_CLOSED comes anyway.
 */
#ifndef WB_WORMHOLE_H
#define WB_WORMHOLE_H

#include <stddef.h>
#include <stdint.h>

#include "apps/wormhole/client.h"
#include "runtime/rt.h"

#define WB_WORMHOLE_RELAY_URL "ws://relay.magic-wormhole.io:4000/v1"

typedef void (*wb_wormhole_event_cb)(uint64_t wormhole, const wh_event_t *ev, void *user);

typedef struct {
    const char *url;          /* mailbox server (WB_WORMHOLE_RELAY_URL) */
    const char *appid;        /* required, e.g. WB_WH_APPID_XFER (keys.h) */
    const char *app_versions; /* JSON object sent to the peer (NULL: {}) */
    wb_wormhole_event_cb on_event;
    void *user;
    uint32_t close_timeout_ms; /* default 10000 */
    uint32_t max_message;      /* largest message from the server, bytes (16 MiB) */
    /* wss:// URLs: PEM bundle of trusted CAs; NULL: the system store (which
     * OpenSSL lets SSL_CERT_FILE / SSL_CERT_DIR replace). */
    const char *ca_file;
} wb_wormhole_config_t;

void wb_wormhole_config_init(wb_wormhole_config_t *cfg);

/* Split ws://HOST[:PORT][/PATH] or wss://... (HOST may be [v6]; PORT
 * defaults to 80, or 443 for wss; PATH to "/"); *tls says wss. Returns 0;
 * WB_EINVAL with the reason in err. */
int wb_wormhole_parse_url(const char *url, char *host, size_t hostcap, uint16_t *port, char *path,
                          size_t pathcap, int *tls, char *err, size_t errlen);

/* Open a wormhole: spawn its actor (created by the runtime, no parent) and
 * connect. cfg is copied. Returns 0 with *id set (the actor's id, the
 * handle for the calls below); WB_EINVAL with the reason in err (bad URL,
 * no appid, app_versions not a JSON object); WB_ENOMEM; WB_ECLOSED. */
int wb_wormhole_open(wb_rt_t *rt, const wb_wormhole_config_t *cfg, uint64_t *id, char *err,
                     size_t errlen);

/* Choose the code: one of allocate / set_code / input_nameplate (then
 * input_finish). set_code and input_finish check the code here and return
 * WB_EINVAL with the reason in err. Returns 0, WB_ENOMEM or WB_ECLOSED. */
int wb_wormhole_allocate(wb_rt_t *rt, uint64_t id, unsigned nwords);
int wb_wormhole_set_code(wb_rt_t *rt, uint64_t id, const char *code, char *err, size_t errlen);
int wb_wormhole_input_nameplate(wb_rt_t *rt, uint64_t id, const char *nameplate);
int wb_wormhole_input_finish(wb_rt_t *rt, uint64_t id, const char *code, char *err, size_t errlen);
/* Ask for the nameplates in use (WH_EV_NAMEPLATES). */
int wb_wormhole_list(wb_rt_t *rt, uint64_t id);

/* Send data[0..len) (copied) as the next numbered message; it leaves once
 * the key is confirmed. */
int wb_wormhole_send(wb_rt_t *rt, uint64_t id, const void *data, size_t len);

/* Close with mood happy (key confirmed) or lonely. */
int wb_wormhole_close(wb_rt_t *rt, uint64_t id);

#endif
