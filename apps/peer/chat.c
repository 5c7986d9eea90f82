/*
 * chat.c - the chat reactor: flood each line to every node once. See
 * chat.h.
 */
#include "apps/peer/chat.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/log.h"

#define MOD "chat"

typedef struct {
    wb_rt_t *rt;
    wb_actor_t *self;
    wb_switch_t *sw;
    wb_chat_config_t cfg;
    uint8_t seen[WB_CHAT_SEEN][16];
    size_t nseen, next;
    uint64_t nshown, nforwarded;
} chat_t;

static int seen_has(const chat_t *c, const uint8_t id[16])
{
    for (size_t i = 0; i < c->nseen; i++)
        if (memcmp(c->seen[i], id, 16) == 0)
            return 1;
    return 0;
}

static void seen_add(chat_t *c, const uint8_t id[16])
{
    memcpy(c->seen[c->next], id, 16);
    c->next = (c->next + 1) % WB_CHAT_SEEN;
    if (c->nseen < WB_CHAT_SEEN)
        c->nseen++;
}

/* Send msg to every peer but `except` (0: all). */
static void flood(chat_t *c, const uint8_t *msg, size_t len, uint64_t except)
{
    wb_switch_peer_t peers[64];
    size_t n = wb_switch_peers(c->sw, peers, 64);
    if (n > 64)
        n = 64;
    for (size_t i = 0; i < n; i++) {
        if (peers[i].pc == except || !wb_nodeinfo_has_channel(&peers[i].info, WB_CHAT_CHANNEL))
            continue;
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, msg, len);
        if (ev == NULL)
            return;
        if (wb_peer_try_send(c->rt, peers[i].pc, WB_CHAT_CHANNEL, ev) != 0)
            wb_event_free(ev); /* a peer that cannot keep up misses chat lines */
        else if (except != 0)
            c->nforwarded++;
    }
}

static void say(chat_t *c, const char *text, size_t len)
{
    if (len > WB_CHAT_MAX_TEXT)
        len = WB_CHAT_MAX_TEXT;
    uint8_t msg[WB_CHAT_HEADER + WB_CHAT_MAX_TEXT];
    randombytes_buf(msg, 16);
    msg[16] = 0;
    memcpy(msg + 17, wb_switch_node_id(c->sw), 32);
    memcpy(msg + WB_CHAT_HEADER, text, len);
    seen_add(c, msg);
    flood(c, msg, WB_CHAT_HEADER + len, 0);
}

static void on_msg(chat_t *c, wb_event_t *ev)
{
    const uint8_t *m = ev->data;
    if (ev->len < WB_CHAT_HEADER || ev->len > WB_CHAT_HEADER + WB_CHAT_MAX_TEXT ||
        m[16] >= WB_CHAT_MAX_HOPS) {
        wb_switch_stop_peer(c->sw, ev->src, "chat: malformed message");
        return;
    }
    if (seen_has(c, m))
        return;
    seen_add(c, m);
    c->nshown++;
    if (c->cfg.on_message != NULL)
        c->cfg.on_message(c->cfg.arg, m + 17, m[16], (const char *)m + WB_CHAT_HEADER,
                          ev->len - WB_CHAT_HEADER);
    if (m[16] + 1 < WB_CHAT_MAX_HOPS) {
        uint8_t fwd[WB_CHAT_HEADER + WB_CHAT_MAX_TEXT];
        memcpy(fwd, m, ev->len);
        fwd[16] = (uint8_t)(m[16] + 1);
        flood(c, fwd, ev->len, ev->src);
    }
}

static void chat_handle(wb_actor_t *self, wb_event_t *ev)
{
    chat_t *c = wb_actor_state(self);
    c->self = self;
    switch (ev->type) {
    case WB_EV_CHAT_SAY:
        say(c, ev->data, ev->len);
        break;
    case WB_EV_PEER_MSG:
        on_msg(c, ev);
        break;
    default:
        break; /* peers joining and leaving: flood asks the switch each time */
    }
    wb_event_free(ev);
}

static void chat_fini(wb_actor_t *self)
{
    free(wb_actor_state(self));
}

static const wb_actor_def_t chat_def = {.name = "chat", .handle = chat_handle, .fini = chat_fini};

int wb_chat_new(wb_rt_t *rt, wb_actor_t *parent, wb_switch_t *sw, const wb_chat_config_t *cfg,
                uint64_t *actor)
{
    chat_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WB_ENOMEM;
    c->rt = rt;
    c->sw = sw;
    if (cfg != NULL)
        c->cfg = *cfg;
    int rc = wb_actor_spawn(rt, parent, &chat_def, c, actor);
    if (rc != 0) {
        free(c);
        return rc;
    }
    wb_mconn_chan_t ch = {.id = WB_CHAT_CHANNEL,
                          .priority = 5,
                          .send_queue_capacity = 64,
                          .max_message = WB_CHAT_HEADER + WB_CHAT_MAX_TEXT};
    rc = wb_switch_add_reactor(sw, "chat", *actor, &ch, 1);
    if (rc != 0)
        wb_actor_kill(rt, *actor);
    return rc;
}

void wb_chat_counts(wb_rt_t *rt, uint64_t actor, uint64_t *seen, uint64_t *forwarded)
{
    wb_actor_t *a = wb_actor_lookup(rt, actor);
    chat_t *c = a != NULL ? wb_actor_state(a) : NULL;
    *seen = c ? c->nshown : 0;
    *forwarded = c ? c->nforwarded : 0;
}
