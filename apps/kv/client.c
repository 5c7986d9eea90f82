/*
 * client.c - the kv client actor and its runner.
 */
#include "apps/kv/client.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "apps/kv/proto.h"
#include "dispatch/endpoint.h"
#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "sockets/tcp.h"

typedef struct {
    const kv_client_config_t *cfg;
    wb_rt_t *rt;
    wb_actor_t *self;
    wb_endpoint_t *ep;
    wb_dispatch_t *d;
    uint64_t conn;   /* the current connection, 0 when none */
    uint64_t dialer; /* watch: the persistent dialer */
    uint64_t conn_timer;
    kv_buf_t buf;
    int status; /* exit status once done */
    int done;
    /* list paging */
    uint8_t after[KV_MAX_KEY];
    size_t after_n;
    int has_after;
    /* watch */
    wb_conv_t *watch;
    uint64_t last_rev;
    uint64_t events;
} client_t;

static void finish(client_t *c, int status)
{
    if (c->done)
        return;
    c->done = 1;
    c->status = status;
    fflush(c->cfg->out);
    wb_rt_request_stop(c->rt);
}

static void fail(client_t *c, const char *what, const char *why)
{
    fprintf(stderr, "waybill kv: %s: %s\n", what, why);
    finish(c, 1);
}

/* ---- output --------------------------------------------------------------------- */

static void json_str(FILE *f, const uint8_t *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void print_entry(client_t *c, const char *op, kv_bytes_t key, const kv_bytes_t *value,
                        uint64_t rev)
{
    FILE *f = c->cfg->out;
    if (c->cfg->json) {
        fputs("{", f);
        if (op != NULL)
            fprintf(f, "\"op\":\"%s\",", op);
        fputs("\"key\":", f);
        json_str(f, key.p, key.n);
        fputs(",\"value\":", f);
        if (value != NULL)
            json_str(f, value->p, value->n);
        else
            fputs("null", f);
        fprintf(f, ",\"rev\":%llu}\n", (unsigned long long)rev);
    } else {
        if (op != NULL)
            fprintf(f, "rev %llu %s ", (unsigned long long)rev, op);
        fwrite(key.p, 1, key.n, f);
        if (value != NULL) {
            fputs(" = ", f);
            fwrite(value->p, 1, value->n, f);
        }
        if (op == NULL)
            fprintf(f, "  (rev %llu)", (unsigned long long)rev);
        fputc('\n', f);
    }
    fflush(f);
}

/* An ERR answer: print it and fail. */
static void server_error(client_t *c, const wb_msg_t *m)
{
    int code = WB_EPROTO;
    kv_bytes_t text = {(const uint8_t *)"malformed error", 15};
    kv_dec_err(m->env.body, m->env.body_len, &code, &text);
    char msg[256];
    snprintf(msg, sizeof(msg), "%.*s", (int)text.n, (const char *)text.p);
    if (c->cfg->json)
        fprintf(c->cfg->out, "{\"error\":\"%s\",\"code\":%d}\n", wb_err_name(code), code);
    fail(c, "server", msg);
}

/* ---- one-shot operations ---------------------------------------------------------------- */

static void send_request(client_t *c);
static void change_cb(const kv_entry_t *e, void *arg);

/* One page of a list, as it is printed. */
typedef struct {
    client_t *c;
    size_t n;
} page_t;

static void entry_cb(const kv_entry_t *e, void *arg)
{
    page_t *acc = arg;
    client_t *c = acc->c;
    print_entry(c, NULL, e->key, &e->value, e->rev);
    memcpy(c->after, e->key.p, e->key.n);
    c->after_n = e->key.n;
    c->has_after = 1;
    acc->n++;
}

static void on_answer(wb_dispatch_t *d, const wb_msg_t *m, int status, void *arg)
{
    client_t *c = arg;
    (void)d;
    if (status != 0) {
        fail(c, "request", status == WB_ETIMEDOUT ? "no answer in time" : wb_strerror(status));
        return;
    }
    if (m->env.type == KV_ERR) {
        server_error(c, m);
        return;
    }
    const kv_client_config_t *cfg = c->cfg;
    uint64_t rev;
    kv_bytes_t key, value;
    switch (cfg->cmd) {
    case KV_CMD_PUT:
    case KV_CMD_DELETE:
        if (m->env.type != KV_OK || kv_dec_rev(m->env.body, m->env.body_len, &rev) != 0)
            break;
        if (cfg->json) {
            fputs("{\"key\":", cfg->out);
            json_str(cfg->out, (const uint8_t *)cfg->key, strlen(cfg->key));
            fprintf(cfg->out, ",\"rev\":%llu}\n", (unsigned long long)rev);
        } else {
            fprintf(cfg->out, "rev %llu\n", (unsigned long long)rev);
        }
        finish(c, 0);
        return;
    case KV_CMD_GET:
        if (m->env.type != KV_VALUE ||
            kv_dec_value(m->env.body, m->env.body_len, &key, &value, &rev) != 0)
            break;
        if (cfg->json) {
            print_entry(c, NULL, key, &value, rev);
        } else {
            fwrite(value.p, 1, value.n, cfg->out);
            fputc('\n', cfg->out);
        }
        finish(c, 0);
        return;
    case KV_CMD_CURSOR:
        if (m->env.type != KV_OK || kv_dec_rev(m->env.body, m->env.body_len, &rev) != 0)
            break;
        if (cfg->json)
            fprintf(cfg->out, "{\"cursor\":%llu}\n", (unsigned long long)rev);
        else
            fprintf(cfg->out, "cursor %llu\n", (unsigned long long)rev);
        finish(c, 0);
        return;
    case KV_CMD_DROP:
        if (m->env.type != KV_OK)
            break;
        if (cfg->json)
            fprintf(cfg->out, "{\"dropped\":%llu}\n", (unsigned long long)cfg->cursor);
        else
            fprintf(cfg->out, "dropped cursor %llu\n", (unsigned long long)cfg->cursor);
        finish(c, 0);
        return;
    case KV_CMD_NEXT: {
        int more;
        if (m->env.type != KV_CHANGES ||
            kv_dec_changes(m->env.body, m->env.body_len, change_cb, c, &more) != 0)
            break;
        uint64_t last = c->last_rev > cfg->ack ? c->last_rev : cfg->ack;
        if (cfg->json)
            fprintf(cfg->out, "{\"more\":%s,\"ack\":%llu}\n", more ? "true" : "false",
                    (unsigned long long)last);
        else if (more)
            fprintf(stderr, "waybill kv: more changes: next %llu --ack %llu\n",
                    (unsigned long long)cfg->cursor, (unsigned long long)last);
        finish(c, 0);
        return;
    }
    case KV_CMD_LIST: {
        int more;
        if (m->env.type != KV_ENTRIES)
            break;
        page_t acc = {c, 0};
        if (kv_dec_entries(m->env.body, m->env.body_len, entry_cb, &acc, &more) != 0)
            break;
        if (more && acc.n > 0) {
            send_request(c); /* the next page, after the last key */
            return;
        }
        finish(c, 0);
        return;
    }
    default:
        break;
    }
    fail(c, "request", "unexpected answer from the server");
}

/* One change of a cursor, printed as a watch prints it. */
static void change_cb(const kv_entry_t *e, void *arg)
{
    client_t *c = arg;
    print_entry(c, e->op == KV_OP_PUT ? "put" : "delete", e->key, e->has_value ? &e->value : NULL,
                e->rev);
    c->last_rev = e->rev;
}

static void send_request(client_t *c)
{
    const kv_client_config_t *cfg = c->cfg;
    kv_bytes_t key = {(const uint8_t *)cfg->key, strlen(cfg->key)};
    uint32_t type;
    uint64_t regards = 0;
    kv_buf_reset(&c->buf);
    switch (cfg->cmd) {
    case KV_CMD_PUT:
        kv_enc_key_value(&c->buf, key, (kv_bytes_t){cfg->value, cfg->value_n});
        type = KV_PUT;
        break;
    case KV_CMD_GET:
        kv_enc_key(&c->buf, key);
        type = KV_GET;
        break;
    case KV_CMD_DELETE:
        kv_enc_key(&c->buf, key);
        type = KV_DELETE;
        break;
    case KV_CMD_LIST: {
        kv_bytes_t after = {c->after, c->after_n};
        kv_enc_list(&c->buf, key, c->has_after ? &after : NULL, KV_MAX_LIST);
        type = KV_LIST;
        break;
    }
    case KV_CMD_CURSOR:
        kv_enc_watch(&c->buf, key, cfg->from_rev);
        type = KV_CURSOR;
        break;
    case KV_CMD_NEXT:
        kv_enc_next(&c->buf, cfg->max ? cfg->max : 100, cfg->ack);
        type = KV_NEXT;
        regards = cfg->cursor;
        break;
    case KV_CMD_DROP:
        kv_enc_next(&c->buf, 0, 0); /* the body is not read */
        type = KV_DROP;
        regards = cfg->cursor;
        break;
    default:
        return;
    }
    if (c->buf.oom) {
        fail(c, "request", "out of memory");
        return;
    }
    int rc = wb_dispatch_request(c->d, c->conn, type, regards, c->buf.p, c->buf.len,
                                 wb_endpoint_now(c->ep), cfg->timeout_ms, on_answer, c, NULL);
    if (rc != 0) {
        fail(c, "request", wb_strerror(rc));
        return;
    }
    wb_endpoint_rearm(c->ep);
}

/* ---- watch
 * ---------------------------------------------------------------------------------------- */

static void watch_msg(wb_conv_t *cv, const wb_msg_t *m)
{
    client_t *c = wb_conv_state(cv);
    kv_entry_t e;
    uint64_t rev;
    if (m->env.type == KV_EVENT && kv_dec_event(m->env.body, m->env.body_len, &e) == 0) {
        print_entry(c, e.op == KV_OP_PUT ? "put" : "delete", e.key, e.has_value ? &e.value : NULL,
                    e.rev);
        c->last_rev = e.rev;
        c->events++;
    } else if (m->env.type == KV_SYNCED && kv_dec_rev(m->env.body, m->env.body_len, &rev) == 0) {
        c->last_rev = rev;
        if (c->cfg->json)
            fprintf(c->cfg->out, "{\"synced\":%llu}\n", (unsigned long long)rev);
        else
            fprintf(stderr, "waybill kv: watching, up to date at rev %llu\n",
                    (unsigned long long)rev);
        fflush(c->cfg->out);
    } else if (m->env.type == KV_ERR) {
        server_error(c, m);
        return;
    }
    wb_conv_consumed(cv, m->env.body_len);
    if (c->cfg->max_events != 0 && c->events >= c->cfg->max_events) {
        c->watch = NULL;
        wb_conv_close(cv, 0);
        finish(c, 0);
    }
}

static void watch_end(wb_conv_t *cv, int status)
{
    client_t *c = wb_conv_state(cv);
    c->watch = NULL;
    if (!c->done && status != WB_ECLOSED && status != WB_EIO && status != 0)
        wb_warn("kv", "watch ended: %s", wb_strerror(status));
}

static const wb_conv_def_t watch_def = {"kv-watch", watch_msg, NULL, watch_end};

static void open_watch(client_t *c)
{
    kv_bytes_t prefix = {(const uint8_t *)c->cfg->key, strlen(c->cfg->key)};
    kv_buf_reset(&c->buf);
    kv_enc_watch(&c->buf, prefix, c->last_rev);
    int rc = wb_conv_open(c->d, c->conn, KV_WATCH, c->buf.p, c->buf.len, &watch_def, c, &c->watch);
    if (rc != 0)
        fail(c, "watch", wb_strerror(rc));
}

/* ---- the actor
 * -------------------------------------------------------------------------------------- */

static void ep_open(wb_endpoint_t *ep, uint64_t conn, int dialed, const char *addr, uint64_t cookie,
                    void *user)
{
    client_t *c = user;
    (void)ep;
    (void)dialed;
    (void)cookie;
    (void)addr;
    c->conn = conn;
    if (c->conn_timer != 0) {
        wb_timer_cancel(c->self, c->conn_timer);
        c->conn_timer = 0;
    }
    if (c->cfg->cmd == KV_CMD_WATCH)
        open_watch(c);
    else
        send_request(c);
}

static void ep_close(wb_endpoint_t *ep, uint64_t conn, int status, const char *reason, void *user)
{
    client_t *c = user;
    (void)ep;
    if (conn == c->conn)
        c->conn = 0;
    if (c->cfg->cmd == KV_CMD_WATCH)
        return; /* the dialer reconnects; the watch resumes from last_rev */
    fail(c, "connection", reason[0] ? reason : wb_strerror(status));
}

static void client_start(client_t *c)
{
    const kv_client_config_t *cfg = c->cfg;
    wb_endpoint_config_t ec = {.max_message = KV_DEFAULT_MAX_VALUE * 2 + KV_OVERHEAD,
                               .on_open = ep_open,
                               .on_close = ep_close,
                               .user = c};
    wb_tcp_opts_t opts;
    wb_tcp_opts_init(&opts);
    opts.max_message = (uint32_t)ec.max_message;
    opts.connect_timeout_ms = cfg->timeout_ms;
    int rc = wb_endpoint_new(&c->ep, c->self, &ec);
    if (rc == 0) {
        c->d = wb_endpoint_dispatch(c->ep);
        if (cfg->cmd == KV_CMD_WATCH) {
            opts.reconnect_min_ms = 100;
            opts.reconnect_max_ms = 5000;
            rc = wb_endpoint_dial_persistent(c->ep, cfg->host, cfg->port, &opts, &c->dialer);
        } else {
            uint64_t conn;
            rc = wb_endpoint_dial(c->ep, cfg->host, cfg->port, &opts, &conn);
            if (rc == 0)
                rc = wb_timer_start(c->self, cfg->timeout_ms, &c->conn_timer);
        }
    }
    if (rc != 0)
        fail(c, "connect", wb_strerror(rc));
}

static void client_handle(wb_actor_t *self, wb_event_t *ev)
{
    client_t *c = wb_actor_state(self);
    if (ev->type == WB_EV_USER) {
        client_start(c);
    } else if (ev->type == WB_EV_TIMER && ev->cookie == c->conn_timer && c->conn_timer != 0) {
        c->conn_timer = 0;
        fail(c, "connect", "no connection in time");
    } else if (ev->type == WB_EV_TCP_RETRY) {
        if (!c->done)
            wb_info("kv", "reconnecting in %llu ms (%s)", (unsigned long long)ev->cookie,
                    ev->len ? (const char *)ev->data : wb_strerror(ev->status));
    } else if (c->ep != NULL && wb_endpoint_handle(c->ep, ev)) {
        return;
    }
    wb_event_free(ev);
}

static void client_fini(wb_actor_t *self)
{
    client_t *c = wb_actor_state(self);
    wb_endpoint_free(c->ep);
    kv_buf_fini(&c->buf);
}

static const wb_actor_def_t client_def = {"kv-client", client_handle, client_fini};

void kv_client_config_init(kv_client_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 7400;
    cfg->timeout_ms = 10000;
    cfg->key = "";
    cfg->from_rev = KV_FROM_NOW;
}

/* SIGINT / SIGTERM end a watch cleanly: a thread waits for them. */
typedef struct {
    wb_rt_t *rt;
    sigset_t set;
} sigwaiter_t;

static void *sig_main(void *arg)
{
    sigwaiter_t *w = arg;
    int sig;
    if (sigwait(&w->set, &sig) == 0 && sig != SIGUSR1)
        wb_rt_request_stop(w->rt);
    return NULL;
}

int kv_client_run(const kv_client_config_t *cfg_in)
{
    kv_client_config_t cfg = *cfg_in;
    if (cfg.out == NULL)
        cfg.out = stdout;
    client_t c = {.cfg = &cfg, .status = 1, .last_rev = cfg.cmd == KV_CMD_WATCH ? cfg.from_rev : 0};
    kv_buf_init(&c.buf);

    sigwaiter_t sw;
    sigset_t old;
    sigemptyset(&sw.set);
    sigaddset(&sw.set, SIGINT);
    sigaddset(&sw.set, SIGTERM);
    sigaddset(&sw.set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sw.set, &old); /* lanes inherit the mask */

    wb_rt_t *rt;
    uint64_t id;
    int rc = wb_rt_new(&rt, NULL);
    if (rc == 0)
        rc = wb_sockets_attach(rt, NULL);
    if (rc == 0)
        rc = wb_actor_spawn(rt, NULL, &client_def, &c, &id);
    if (rc == 0) {
        c.rt = rt;
        c.self = wb_actor_lookup(rt, id);
        rc = wb_rt_start(rt);
    }
    if (rc != 0) {
        fprintf(stderr, "waybill kv: cannot start: %s\n", wb_strerror(rc));
        wb_rt_free(rt);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return 1;
    }
    pthread_t sig_thread;
    sw.rt = rt;
    pthread_create(&sig_thread, NULL, sig_main, &sw);

    wb_event_t *go = wb_event_new(WB_EV_USER, 0);
    wb_event_route(go, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, id);
    go->flags |= WB_EVF_CONTROL;
    if (wb_rt_send(rt, go) != 0)
        wb_event_free(go);
    wb_rt_wait(rt);
    wb_rt_stop(rt);
    wb_rt_free(rt);
    pthread_kill(sig_thread, SIGUSR1);
    pthread_join(sig_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return c.done ? c.status : 0;
}
