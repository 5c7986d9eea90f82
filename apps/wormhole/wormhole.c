/*
 * wormhole.c - the wormhole actor (see wormhole.h): wh_client_t's io over
 * sockets/tcp.h and the actor's timers.
 *
 * One actor per wormhole. Its one WebSocket connection at a time is a
 * one-shot wb_tcp_dial with opts.ws (the client machine does its own
 * reconnecting: it must bind again and re-send on each new connection).
 * Events about any other connection id (one it dropped) are ignored.
 * Messages to the network lane are control events: a client sends a few
 * dozen messages in its life, and a refusal path would buy nothing.
 */
#include "apps/wormhole/wormhole.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/wormhole/code.h"
#include "apps/wormhole/post.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "sockets/tcp.h"

#define MOD "wormhole"

enum {
    EV_START = WB_EV_USER + 0x5700,
    EV_ALLOCATE,
    EV_SET_CODE,
    EV_INPUT_NP,
    EV_INPUT_FINISH,
    EV_LIST,
    EV_SEND,
    EV_CLOSE,
};

typedef struct {
    wb_rt_t *rt;
    uint64_t self;
    wh_client_t *c;
    char host[WB_TCP_HOST_MAX + 1];
    wb_tls_opts_t tls; /* wss:// */
    uint16_t port;
    char path[512];
    wb_ws_opts_t ws;
    wb_tcp_opts_t to;
    uint64_t conn;
    uint64_t timer, close_timer;
    int timer_on, close_timer_on, ended;
    wb_wormhole_event_cb on_event;
    void *user;
    uint32_t close_timeout_ms;
} wa_t;

static wb_actor_t *self_actor(wa_t *w)
{
    return wb_actor_lookup(w->rt, w->self);
}

/* ---- the client's io ------------------------------------------------------------ */

static void io_ws_open(void *ctx)
{
    wa_t *w = ctx;
    int rc = wb_tcp_dial(w->rt, WB_LANE_ACTOR, w->self, w->host, w->port, &w->to, &w->conn);
    if (rc != 0) {
        /* reported like a failed connection, on the next turn */
        w->conn = 0;
        wb_event_t *ev =
            wb_event_new_copy(WB_EV_TCP_CLOSED, wb_strerror(rc), strlen(wb_strerror(rc)) + 1);
        if (ev != NULL) {
            ev->len--;
            ev->status = rc;
            ev->cookie = 1; /* "dial refused here": matched by src 0 below */
            ev->flags |= WB_EVF_CONTROL;
            wb_event_route(ev, WB_LANE_NET, 0, WB_LANE_ACTOR, w->self);
            if (wb_rt_send(w->rt, ev) != 0)
                wb_event_free(ev);
        }
    }
}

static void io_ws_send(void *ctx, const char *text, size_t len)
{
    wa_t *w = ctx;
    if (w->conn == 0)
        return;
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, text, len);
    if (ev == NULL) {
        wb_error(MOD, "out of memory: a message to the mailbox server is lost");
        return;
    }
    ev->flags |= WB_EVF_CONTROL;
    wb_event_route(ev, WB_LANE_ACTOR, w->self, WB_LANE_NET, w->conn);
    if (wb_tcp_send(w->rt, w->conn, ev) != 0)
        wb_event_free(ev);
}

static void io_ws_close(void *ctx)
{
    wa_t *w = ctx;
    if (w->conn != 0)
        wb_tcp_close(w->rt, w->conn);
    w->conn = 0;
}

static void io_timer_start(void *ctx, uint32_t ms)
{
    wa_t *w = ctx;
    wb_actor_t *a = self_actor(w);
    if (w->timer_on && a != NULL)
        wb_timer_cancel(a, w->timer);
    w->timer_on = a != NULL && wb_timer_start(a, ms, &w->timer) == 0;
}

static void io_timer_cancel(void *ctx)
{
    wa_t *w = ctx;
    wb_actor_t *a = self_actor(w);
    if (w->timer_on && a != NULL)
        wb_timer_cancel(a, w->timer);
    w->timer_on = 0;
}

static void io_random(void *ctx, void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

static void io_event(void *ctx, const wh_event_t *ev)
{
    wa_t *w = ctx;
    if (ev->type == WH_EV_CLOSED) {
        w->ended = 1;
        io_timer_cancel(w);
        wb_actor_t *a = self_actor(w);
        if (w->close_timer_on && a != NULL)
            wb_timer_cancel(a, w->close_timer);
        w->close_timer_on = 0;
        io_ws_close(w);
        if (a != NULL)
            wb_actor_exit(a, 0);
    }
    if (w->on_event != NULL)
        w->on_event(w->self, ev, w->user);
}

/* ---- the actor -------------------------------------------------------------------- */

static void handle(wb_actor_t *self, wb_event_t *ev)
{
    wa_t *w = wb_actor_state(self);
    char err[160];
    if (w->ended) {
        wb_event_free(ev);
        return;
    }
    switch (ev->type) {
    case EV_START:
        wh_client_start(w->c);
        break;
    case EV_ALLOCATE:
        wh_client_allocate(w->c, (unsigned)ev->cookie);
        break;
    case EV_SET_CODE:
        if (wh_client_set_code(w->c, ev->data, err, sizeof(err)) != 0)
            wb_warn(MOD, "code refused: %s", err);
        break;
    case EV_INPUT_NP:
        wh_client_input_nameplate(w->c, ev->data);
        break;
    case EV_INPUT_FINISH:
        if (wh_client_input_finish(w->c, ev->data, err, sizeof(err)) != 0)
            wb_warn(MOD, "code refused: %s", err);
        break;
    case EV_LIST:
        wh_client_list(w->c);
        break;
    case EV_SEND:
        wh_client_send(w->c, ev->data, ev->len);
        break;
    case EV_CLOSE:
        wh_client_close(w->c);
        break;
    case WB_EV_TCP_OPENED:
        if (ev->src == w->conn && w->conn != 0)
            wh_client_ws_opened(w->c);
        break;
    case WB_EV_TCP_BLOB:
        if (ev->src == w->conn && w->conn != 0)
            wh_client_ws_message(w->c, ev->data, ev->len);
        break;
    case WB_EV_TCP_CLOSED:
        if ((ev->src == w->conn && w->conn != 0) || (ev->src == 0 && ev->cookie == 1)) {
            char reason[300];
            snprintf(reason, sizeof(reason), "%.*s", (int)ev->len, (const char *)ev->data);
            w->conn = 0;
            wh_client_ws_closed(w->c, reason);
        }
        break;
    case WB_EV_TIMER:
        if (w->timer_on && ev->cookie == w->timer) {
            w->timer_on = 0;
            wh_client_timer(w->c);
        } else if (w->close_timer_on && ev->cookie == w->close_timer) {
            w->close_timer_on = 0;
            wh_client_abort(w->c, "the mailbox server did not answer the close");
        }
        break;
    default:
        break;
    }
    if (!w->ended && !w->close_timer_on && wh_client_is_closing(w->c))
        w->close_timer_on = wb_timer_start(self, w->close_timeout_ms, &w->close_timer) == 0;
    wb_event_free(ev);
}

static void fini(wb_actor_t *self)
{
    wa_t *w = wb_actor_state(self);
    if (w->conn != 0)
        wb_tcp_close(w->rt, w->conn);
    wh_client_free(w->c);
    free((char *)w->ws.path);
    free((char *)w->tls.ca_file);
    free(w);
}

static const wb_actor_def_t wormhole_def = {"wormhole", handle, fini};

/* ---- the API ------------------------------------------------------------------------ */

void wb_wormhole_config_init(wb_wormhole_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->url = WB_WORMHOLE_RELAY_URL;
    cfg->close_timeout_ms = 10000;
    cfg->max_message = 16u << 20;
}

static int seterr(char *err, size_t errlen, const char *fmt, const char *arg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, fmt, arg);
    return WB_EINVAL;
}

int wb_wormhole_parse_url(const char *url, char *host, size_t hostcap, uint16_t *port, char *path,
                          size_t pathcap, int *tls, char *err, size_t errlen)
{
    const char *p;
    if (strncmp(url, "wss://", 6) == 0) {
        *tls = 1;
        p = url + 6;
    } else if (strncmp(url, "ws://", 5) == 0) {
        *tls = 0;
        p = url + 5;
    } else {
        return seterr(err, errlen, "%s: not a ws:// or wss:// URL", url);
    }
    const char *end = p + strcspn(p, "/?#");
    const char *hs = p, *he, *colon = NULL;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL)
            return seterr(err, errlen, "%s: no ']' after an IPv6 address", url);
        if (he + 1 < end) {
            if (he[1] != ':')
                return seterr(err, errlen, "%s: junk after the IPv6 address", url);
            colon = he + 1;
        }
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        he = colon != NULL ? colon : end;
    }
    if (he == hs || (size_t)(he - hs) >= hostcap || (size_t)(he - hs) > WB_TCP_HOST_MAX)
        return seterr(err, errlen, "%s: no host, or too long a host", url);
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = 0;
    *port = *tls ? 443 : 80;
    if (colon != NULL) {
        long v = 0;
        const char *d = colon + 1;
        if (d == end)
            return seterr(err, errlen, "%s: empty port", url);
        for (; d < end; d++) {
            if (*d < '0' || *d > '9' || (v = v * 10 + (*d - '0')) > 65535)
                return seterr(err, errlen, "%s: bad port", url);
        }
        if (v == 0)
            return seterr(err, errlen, "%s: bad port", url);
        *port = (uint16_t)v;
    }
    const char *ps = *end == '/' ? end : "/";
    size_t pl = *end == '/' ? strlen(end) : 1;
    if (pl >= pathcap)
        return seterr(err, errlen, "%s: path too long", url);
    memcpy(path, ps, pl);
    path[pl] = 0;
    return 0;
}

int wb_wormhole_open(wb_rt_t *rt, const wb_wormhole_config_t *cfg, uint64_t *id, char *err,
                     size_t errlen)
{
    if (cfg == NULL || cfg->appid == NULL)
        return seterr(err, errlen, "%s", "no appid");
    wa_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return WB_ENOMEM;
    w->rt = rt;
    int tls = 0;
    int rc =
        wb_wormhole_parse_url(cfg->url ? cfg->url : WB_WORMHOLE_RELAY_URL, w->host, sizeof(w->host),
                              &w->port, w->path, sizeof(w->path), &tls, err, errlen);
    if (rc != 0) {
        free(w);
        return rc;
    }
    w->on_event = cfg->on_event;
    w->user = cfg->user;
    w->close_timeout_ms = cfg->close_timeout_ms ? cfg->close_timeout_ms : 10000;
    wb_ws_opts_init(&w->ws);
    w->ws.path = strdup(w->path);
    w->ws.max_message = cfg->max_message ? cfg->max_message : 16u << 20;
    wb_tcp_opts_init(&w->to);
    w->to.ws = &w->ws;
    w->to.max_message = w->ws.max_message + 64;
    w->to.keepalive_s = 60;
    if (tls) {
        /* The certificate is checked against the URL's host (sockets/ fills
         * in the dialed name). */
        wb_tls_opts_init(&w->tls);
        w->tls.ca_file = cfg->ca_file != NULL ? strdup(cfg->ca_file) : NULL;
        w->to.tls = &w->tls;
        if (cfg->ca_file != NULL && w->tls.ca_file == NULL) {
            free(w);
            return WB_ENOMEM;
        }
    }
    wh_config_t wc = {.appid = cfg->appid, .app_versions = cfg->app_versions};
    wh_io_t io = {w,         io_ws_open, io_ws_send, io_ws_close, io_timer_start, io_timer_cancel,
                  io_random, io_event};
    if (w->ws.path == NULL || sodium_init() < 0) {
        free((char *)w->ws.path);
        free((char *)w->tls.ca_file);
        free(w);
        return WB_ENOMEM;
    }
    if ((rc = wh_client_new(&w->c, &wc, &io)) != 0) {
        free((char *)w->ws.path);
        free((char *)w->tls.ca_file);
        free(w);
        return rc == WB_EINVAL ? seterr(err, errlen, "%s", "app_versions is not a JSON object")
                               : rc;
    }
    if ((rc = wb_actor_spawn(rt, NULL, &wormhole_def, w, &w->self)) != 0) {
        wh_client_free(w->c);
        free((char *)w->ws.path);
        free((char *)w->tls.ca_file);
        free(w);
        return rc;
    }
    *id = w->self;
    wb_event_t *go = wb_event_new(EV_START, 0);
    if (go == NULL)
        return WB_ENOMEM;
    go->flags |= WB_EVF_CONTROL;
    wb_event_route(go, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, w->self);
    if ((rc = wb_rt_send(rt, go)) != 0)
        wb_event_free(go);
    return rc;
}

int wb_wormhole_allocate(wb_rt_t *rt, uint64_t id, unsigned nwords)
{
    return wb_wh_post(rt, id, EV_ALLOCATE, NULL, 0, nwords);
}

int wb_wormhole_set_code(wb_rt_t *rt, uint64_t id, const char *code, char *err, size_t errlen)
{
    int rc = wb_wh_code_validate(code, strlen(code), err, errlen);
    return rc != 0 ? rc : wb_wh_post(rt, id, EV_SET_CODE, code, strlen(code) + 1, 0);
}

int wb_wormhole_input_nameplate(wb_rt_t *rt, uint64_t id, const char *nameplate)
{
    return wb_wh_post(rt, id, EV_INPUT_NP, nameplate, strlen(nameplate) + 1, 0);
}

int wb_wormhole_input_finish(wb_rt_t *rt, uint64_t id, const char *code, char *err, size_t errlen)
{
    int rc = wb_wh_code_validate(code, strlen(code), err, errlen);
    return rc != 0 ? rc : wb_wh_post(rt, id, EV_INPUT_FINISH, code, strlen(code) + 1, 0);
}

int wb_wormhole_list(wb_rt_t *rt, uint64_t id)
{
    return wb_wh_post(rt, id, EV_LIST, NULL, 0, 0);
}

int wb_wormhole_send(wb_rt_t *rt, uint64_t id, const void *data, size_t len)
{
    return wb_wh_post(rt, id, EV_SEND, len ? data : "", len, 0);
}

int wb_wormhole_close(wb_rt_t *rt, uint64_t id)
{
    return wb_wh_post(rt, id, EV_CLOSE, NULL, 0, 0);
}
