/*
 * mconn.c - the multiplexed connection. The contract (packet layout, credit,
 * scheduling, ping/pong) is in mconn.h.
 *
 * Credit bookkeeping per channel, receiver side: rx_allowed is what the peer
 * may still send us (what we have written as credit minus what it used),
 * rx_held what it used while a message of the channel waited for delivery,
 * rx_to_send what is ready to go back. rx_allowed + rx_held + rx_to_send +
 * the cost of the packet being read is recv_window at all times.
 */
#include "sockets/mconn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/assert.h"
#include "runtime/error.h"

#define DEF_SENDQ       16
#define DEF_MAX_MESSAGE (1u << 20)
#define DEF_RECV_WINDOW (256u * 1024)
#define DEF_MAX_PACKET  1024
#define DEF_PING_MS     60000
#define DEF_PONG_MS     45000
#define DEF_DECAY_MS    2000
#define NO_CHAN         0xff
#define FIRST_RBUF      256 /* first reassembly allocation, unless the packet is bigger */

typedef struct {
    wb_mconn_chan_t c;

    /* Sending: a ring of send_queue_capacity messages, the head being cut. */
    wb_event_t **q;
    uint16_t q_head, q_n;
    uint32_t q_off; /* bytes of the head message already written */
    uint64_t send_credit;
    uint64_t recently_sent;

    /* Receiving. */
    uint8_t *rbuf; /* the message being reassembled */
    size_t rlen, rcap;
    uint64_t rx_allowed, rx_held, rx_to_send;
    uint64_t undelivered;

    uint64_t msgs_sent, msgs_recv, bytes_sent, bytes_recv;
} chan_t;

enum { RX_HEADER = 0, RX_PAYLOAD };

struct wb_mconn_s {
    wb_mconn_config_t cfg;
    size_t n;
    chan_t *ch;
    uint8_t idx[256]; /* channel id -> index, NO_CHAN when absent */

    /* Reading: a packet header gathered across calls, then its payload. */
    int rx_state;
    uint8_t hdr[WB_MCONN_CREDIT_LEN];
    size_t hdr_have;
    chan_t *rx_ch;
    uint32_t rx_left; /* payload bytes still to come */
    uint32_t rx_cost; /* credit the packet uses, accounted when it is all in */
    int rx_eof;

    /* Ping/pong, on the clock of the last tick. */
    uint64_t now;
    uint64_t next_ping;
    uint64_t pong_deadline;
    uint64_t ping_at;  /* when the outstanding ping was queued */
    int ping_pending;  /* queued, not yet written */
    int awaiting_pong; /* written or queued, no pong yet */
    int ping_written;  /* the outstanding ping is on the wire */
    int pong_pending;  /* the peer pinged us */
    uint64_t pings, pongs, rtt;

    uint64_t next_decay;

    int err;
    char errtext[160];
};

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void wb_mconn_config_init(wb_mconn_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_packet = DEF_MAX_PACKET;
    cfg->ping_ms = DEF_PING_MS;
    cfg->pong_timeout_ms = DEF_PONG_MS;
    cfg->decay_ms = DEF_DECAY_MS;
}

int wb_mconn_fail(wb_mconn_t *m, int code, const char *fmt, ...)
{
    if (m->err != 0)
        return m->err;
    m->err = code < 0 ? code : WB_EPROTO;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->errtext, sizeof(m->errtext), fmt, ap);
    va_end(ap);
    return m->err;
}

int wb_mconn_errcode(const wb_mconn_t *m)
{
    return m->err;
}

const char *wb_mconn_error(const wb_mconn_t *m)
{
    return m->errtext;
}

int wb_mconn_new(wb_mconn_t **out, const wb_mconn_config_t *cfg, const wb_mconn_chan_t *chans,
                 size_t n, uint64_t now_ms)
{
    *out = NULL;
    wb_mconn_config_t c;
    wb_mconn_config_init(&c);
    if (cfg != NULL) {
        if (cfg->max_packet != 0)
            c.max_packet = cfg->max_packet;
        if (cfg->ping_ms != 0)
            c.ping_ms = cfg->ping_ms;
        if (cfg->pong_timeout_ms != 0)
            c.pong_timeout_ms = cfg->pong_timeout_ms;
        if (cfg->decay_ms != 0)
            c.decay_ms = cfg->decay_ms;
    }
    if (c.max_packet > WB_MCONN_MAX_PACKET || c.pong_timeout_ms >= c.ping_ms)
        return WB_EINVAL;
    if (n > WB_MCONN_MAX_CHANNELS || (n > 0 && chans == NULL))
        return WB_EINVAL;

    wb_mconn_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return WB_ENOMEM;
    m->cfg = c;
    m->n = n;
    memset(m->idx, NO_CHAN, sizeof(m->idx));
    m->ch = calloc(n > 0 ? n : 1, sizeof(chan_t));
    if (m->ch == NULL) {
        free(m);
        return WB_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        chan_t *ch = &m->ch[i];
        ch->c = chans[i];
        if (ch->c.send_queue_capacity == 0)
            ch->c.send_queue_capacity = DEF_SENDQ;
        if (ch->c.max_message == 0)
            ch->c.max_message = DEF_MAX_MESSAGE;
        if (ch->c.recv_window == 0)
            ch->c.recv_window = DEF_RECV_WINDOW;
        if (ch->c.priority == 0 || m->idx[ch->c.id] != NO_CHAN ||
            ch->c.max_message > WB_EVENT_MAX_LEN || ch->c.recv_window < c.max_packet) {
            wb_mconn_free(m);
            return WB_EINVAL;
        }
        m->idx[ch->c.id] = (uint8_t)i;
        ch->q = calloc(ch->c.send_queue_capacity, sizeof(*ch->q));
        if (ch->q == NULL) {
            wb_mconn_free(m);
            return WB_ENOMEM;
        }
        /* The first grant: written by the first wb_mconn_write. */
        ch->rx_to_send = ch->c.recv_window;
    }
    m->now = now_ms;
    m->next_ping = now_ms + c.ping_ms;
    m->next_decay = now_ms + c.decay_ms;
    *out = m;
    return 0;
}

void wb_mconn_free(wb_mconn_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        chan_t *ch = &m->ch[i];
        if (ch->q != NULL) {
            for (uint16_t k = 0; k < ch->q_n; k++)
                wb_event_free(ch->q[(ch->q_head + k) % ch->c.send_queue_capacity]);
        }
        free(ch->q);
        free(ch->rbuf);
    }
    free(m->ch);
    free(m);
}

static chan_t *find(const wb_mconn_t *m, uint8_t id)
{
    uint8_t i = m->idx[id];
    return i == NO_CHAN ? NULL : &m->ch[i];
}

/* ---- sending ---- */

int wb_mconn_send(wb_mconn_t *m, uint8_t id, wb_event_t *msg)
{
    WB_ASSERT(msg != NULL);
    if (m->err != 0)
        return m->err;
    chan_t *ch = find(m, id);
    if (ch == NULL)
        return WB_ENOENT;
    if (msg->len > ch->c.max_message)
        return WB_ETOOBIG;
    if (ch->q_n == ch->c.send_queue_capacity)
        return WB_EAGAIN;
    ch->q[(ch->q_head + ch->q_n) % ch->c.send_queue_capacity] = msg;
    ch->q_n++;
    return 0;
}

int wb_mconn_sendable(const wb_mconn_t *m, uint8_t id)
{
    const chan_t *ch = find(m, id);
    return m->err == 0 && ch != NULL && ch->q_n < ch->c.send_queue_capacity;
}

/* A message to cut and credit to cut it with (an empty message needs 1). */
static int eligible(const chan_t *ch)
{
    return ch->q_n > 0 && ch->send_credit > 0;
}

static int credit_due(const chan_t *ch)
{
    uint64_t quarter = ch->c.recv_window / 4;
    if (quarter == 0)
        quarter = 1;
    return ch->rx_to_send > 0 && (ch->undelivered == 0 || ch->rx_to_send >= quarter);
}

int wb_mconn_want_write(const wb_mconn_t *m)
{
    if (m->err != 0)
        return 0;
    if (m->pong_pending || m->ping_pending)
        return 1;
    for (size_t i = 0; i < m->n; i++)
        if (credit_due(&m->ch[i]) || eligible(&m->ch[i]))
            return 1;
    return 0;
}

/* a->recently_sent / a->priority < b's, without dividing or overflowing. */
static int lighter(const chan_t *a, const chan_t *b)
{
    unsigned __int128 x = (unsigned __int128)a->recently_sent * b->c.priority;
    unsigned __int128 y = (unsigned __int128)b->recently_sent * a->c.priority;
    return x < y;
}

static chan_t *pick(wb_mconn_t *m)
{
    chan_t *best = NULL;
    for (size_t i = 0; i < m->n; i++) {
        chan_t *ch = &m->ch[i];
        if (eligible(ch) && (best == NULL || lighter(ch, best)))
            best = ch;
    }
    return best;
}

/* One msg packet from ch's head message into out (room >= header + 1). */
static size_t cut(chan_t *ch, uint8_t *out, size_t room, uint32_t max_packet)
{
    wb_event_t *ev = ch->q[ch->q_head];
    uint64_t left = ev->len - ch->q_off;
    uint64_t n = left;
    if (n > max_packet)
        n = max_packet;
    if (n > ch->send_credit)
        n = ch->send_credit;
    if (n > room - WB_MCONN_MSG_HEADER)
        n = room - WB_MCONN_MSG_HEADER;
    int eof = n == left;
    out[0] = WB_MCONN_PKT_MSG;
    out[1] = ch->c.id;
    out[2] = eof ? 1 : 0;
    out[3] = (uint8_t)(n >> 8);
    out[4] = (uint8_t)n;
    if (n > 0)
        memcpy(out + WB_MCONN_MSG_HEADER, (const uint8_t *)ev->data + ch->q_off, (size_t)n);
    uint64_t cost = n > 0 ? n : 1;
    ch->send_credit -= cost;
    ch->recently_sent += cost;
    ch->bytes_sent += n;
    ch->q_off += (uint32_t)n;
    if (eof) {
        wb_event_free(ev);
        ch->q[ch->q_head] = NULL;
        ch->q_head = (uint16_t)((ch->q_head + 1) % ch->c.send_queue_capacity);
        ch->q_n--;
        ch->q_off = 0;
        ch->msgs_sent++;
    }
    return WB_MCONN_MSG_HEADER + (size_t)n;
}

long wb_mconn_write(wb_mconn_t *m, uint8_t *out, size_t cap)
{
    if (m->err != 0)
        return m->err;
    WB_ASSERT(cap >= WB_MCONN_MSG_HEADER + 1);
    size_t off = 0;
    if (m->pong_pending) {
        out[off++] = WB_MCONN_PKT_PONG;
        m->pong_pending = 0;
    }
    if (m->ping_pending) {
        out[off++] = WB_MCONN_PKT_PING;
        m->ping_pending = 0;
        m->ping_written = 1;
        m->pings++;
    }
    for (size_t i = 0; i < m->n && cap - off >= WB_MCONN_CREDIT_LEN; i++) {
        chan_t *ch = &m->ch[i];
        if (!credit_due(ch))
            continue;
        out[off] = WB_MCONN_PKT_CREDIT;
        out[off + 1] = ch->c.id;
        put32(out + off + 2, (uint32_t)ch->rx_to_send);
        off += WB_MCONN_CREDIT_LEN;
        ch->rx_allowed += ch->rx_to_send;
        ch->rx_to_send = 0;
    }
    while (cap - off >= WB_MCONN_MSG_HEADER + 1) {
        chan_t *ch = pick(m);
        if (ch == NULL)
            break;
        off += cut(ch, out + off, cap - off, m->cfg.max_packet);
    }
    return (long)off;
}

/* ---- receiving ---- */

/* Header length for a packet type; 0 when the type is unknown. */
static size_t header_len(uint8_t type)
{
    switch (type) {
    case WB_MCONN_PKT_PING:
    case WB_MCONN_PKT_PONG:
        return 1;
    case WB_MCONN_PKT_MSG:
        return WB_MCONN_MSG_HEADER;
    case WB_MCONN_PKT_CREDIT:
        return WB_MCONN_CREDIT_LEN;
    default:
        return 0;
    }
}

static void got_pong(wb_mconn_t *m)
{
    /* A pong we did not ask for (none outstanding, or ours not yet on the
     * wire) says nothing about the link: ignored. */
    if (!m->awaiting_pong || !m->ping_written)
        return;
    m->awaiting_pong = 0;
    m->ping_written = 0;
    m->pongs++;
    uint64_t rtt = m->now > m->ping_at ? m->now - m->ping_at : 0;
    m->rtt = rtt > 0 ? rtt : 1;
}

static int got_credit(wb_mconn_t *m, const uint8_t *h)
{
    chan_t *ch = find(m, h[1]);
    uint32_t bytes = be32(h + 2);
    if (ch == NULL)
        return 0; /* the peer may have channels we lack */
    if (bytes == 0)
        return wb_mconn_fail(m, WB_EPROTO, "channel 0x%02x: credit of 0 bytes", h[1]);
    if (ch->send_credit + bytes > UINT32_MAX)
        return wb_mconn_fail(m, WB_EPROTO,
                             "channel 0x%02x: credit of %u bytes over %llu held exceeds 2^32 - 1",
                             h[1], bytes, (unsigned long long)ch->send_credit);
    ch->send_credit += bytes;
    return 0;
}

/* A msg header: checked, then the payload (if any) follows. */
static int got_msg_header(wb_mconn_t *m, const uint8_t *h)
{
    uint8_t id = h[1], flags = h[2];
    uint16_t len = be16(h + 3);
    chan_t *ch = find(m, id);
    if (ch == NULL)
        return wb_mconn_fail(m, WB_EPROTO, "unknown channel 0x%02x", id);
    if (flags & ~1u)
        return wb_mconn_fail(m, WB_EPROTO, "channel 0x%02x: bad flags 0x%02x", id, flags);
    if (len == 0 && !(flags & 1))
        return wb_mconn_fail(m, WB_EPROTO, "channel 0x%02x: empty msg packet without EOF", id);
    if (len > m->cfg.max_packet)
        return wb_mconn_fail(m, WB_EPROTO, "channel 0x%02x: packet of %u bytes exceeds %u", id, len,
                             m->cfg.max_packet);
    if ((uint64_t)ch->rlen + len > ch->c.max_message)
        return wb_mconn_fail(m, WB_ETOOBIG, "message on channel 0x%02x exceeds %u bytes", id,
                             ch->c.max_message);
    uint32_t cost = len > 0 ? len : 1;
    if (cost > ch->rx_allowed)
        return wb_mconn_fail(m, WB_EPROTO,
                             "channel 0x%02x: %llu bytes sent without credit (packet of %u, "
                             "credit %llu)",
                             id, (unsigned long long)(cost - ch->rx_allowed), cost,
                             (unsigned long long)ch->rx_allowed);
    if (ch->rlen + len > ch->rcap) {
        size_t need = ch->rlen + len;
        size_t ncap = ch->rcap > 0 ? ch->rcap : FIRST_RBUF;
        while (ncap < need)
            ncap *= 2;
        if (ncap > ch->c.max_message)
            ncap = ch->c.max_message;
        uint8_t *nb = realloc(ch->rbuf, ncap);
        if (nb == NULL)
            return wb_mconn_fail(m, WB_ENOMEM,
                                 "channel 0x%02x: out of memory for a %zu-byte "
                                 "message",
                                 id, need);
        ch->rbuf = nb;
        ch->rcap = ncap;
    }
    ch->rx_allowed -= cost;
    m->rx_ch = ch;
    m->rx_left = len;
    m->rx_cost = cost;
    m->rx_eof = flags & 1;
    return 0;
}

/* The packet's payload is all in: its credit goes back (now, or once the
 * waiting messages are delivered); on EOF the message goes up. */
static int packet_done(wb_mconn_t *m, uint8_t *chid, uint8_t **msg, size_t *msg_len)
{
    chan_t *ch = m->rx_ch;
    if (ch->undelivered == 0)
        ch->rx_to_send += m->rx_cost;
    else
        ch->rx_held += m->rx_cost;
    m->rx_cost = 0;
    m->rx_ch = NULL;
    m->rx_state = RX_HEADER;
    if (!m->rx_eof)
        return 0;
    *chid = ch->c.id;
    *msg = ch->rlen > 0 ? ch->rbuf : NULL;
    *msg_len = ch->rlen;
    if (ch->rlen == 0)
        free(ch->rbuf);
    ch->rbuf = NULL;
    ch->rcap = 0;
    ch->bytes_recv += ch->rlen;
    ch->rlen = 0;
    ch->msgs_recv++;
    ch->undelivered++;
    return 1;
}

int wb_mconn_read(wb_mconn_t *m, const uint8_t *in, size_t len, size_t *used, uint8_t *chid,
                  uint8_t **msg, size_t *msg_len)
{
    *used = 0;
    *msg = NULL;
    *msg_len = 0;
    if (m->err != 0)
        return m->err;
    WB_ASSERT(in != NULL || len == 0);
    size_t off = 0;
    while (off < len) {
        if (m->rx_state == RX_PAYLOAD) {
            chan_t *ch = m->rx_ch;
            size_t take = len - off < m->rx_left ? len - off : m->rx_left;
            memcpy(ch->rbuf + ch->rlen, in + off, take);
            ch->rlen += take;
            off += take;
            m->rx_left -= (uint32_t)take;
            if (m->rx_left > 0)
                break;
            if (packet_done(m, chid, msg, msg_len) == 1) {
                *used = off;
                return 1;
            }
            continue;
        }
        m->hdr[m->hdr_have++] = in[off++];
        size_t need = header_len(m->hdr[0]);
        if (need == 0) {
            *used = off;
            return wb_mconn_fail(m, WB_EPROTO, "unknown packet type 0x%02x", m->hdr[0]);
        }
        if (m->hdr_have < need)
            continue;
        m->hdr_have = 0;
        int rc = 0;
        switch (m->hdr[0]) {
        case WB_MCONN_PKT_PING:
            m->pong_pending = 1;
            break;
        case WB_MCONN_PKT_PONG:
            got_pong(m);
            break;
        case WB_MCONN_PKT_CREDIT:
            rc = got_credit(m, m->hdr);
            break;
        default:
            rc = got_msg_header(m, m->hdr);
            if (rc == 0) {
                m->rx_state = RX_PAYLOAD;
                if (m->rx_left == 0 && packet_done(m, chid, msg, msg_len) == 1) {
                    *used = off;
                    return 1;
                }
            }
            break;
        }
        if (rc < 0) {
            *used = off;
            return rc;
        }
    }
    *used = off;
    return 0;
}

void wb_mconn_delivered(wb_mconn_t *m, uint8_t id)
{
    chan_t *ch = find(m, id);
    if (ch == NULL || ch->undelivered == 0)
        return;
    if (--ch->undelivered == 0) {
        ch->rx_to_send += ch->rx_held;
        ch->rx_held = 0;
    }
}

/* ---- time ---- */

int wb_mconn_tick(wb_mconn_t *m, uint64_t now_ms)
{
    if (m->err != 0)
        return m->err;
    if (now_ms > m->now)
        m->now = now_ms;
    now_ms = m->now;
    if (m->awaiting_pong && now_ms >= m->pong_deadline)
        return wb_mconn_fail(m, WB_ETIMEDOUT, "pong timeout after %u ms", m->cfg.pong_timeout_ms);
    if (!m->awaiting_pong && now_ms >= m->next_ping) {
        m->ping_pending = 1;
        m->ping_written = 0;
        m->awaiting_pong = 1;
        m->ping_at = now_ms;
        m->pong_deadline = now_ms + m->cfg.pong_timeout_ms;
        m->next_ping = now_ms + m->cfg.ping_ms;
    }
    if (now_ms >= m->next_decay) {
        uint64_t periods = (now_ms - m->next_decay) / m->cfg.decay_ms + 1;
        for (size_t i = 0; i < m->n; i++) {
            chan_t *ch = &m->ch[i];
            if (periods > 200) {
                ch->recently_sent = 0;
                continue;
            }
            for (uint64_t k = 0; k < periods && ch->recently_sent > 0; k++)
                ch->recently_sent = ch->recently_sent / 5 * 4 + ch->recently_sent % 5 * 4 / 5;
        }
        m->next_decay += periods * m->cfg.decay_ms;
    }
    return 0;
}

uint64_t wb_mconn_next_deadline(const wb_mconn_t *m)
{
    uint64_t t = m->next_decay;
    uint64_t p = m->awaiting_pong ? m->pong_deadline : m->next_ping;
    return p < t ? p : t;
}

/* ---- stats ---- */

int wb_mconn_chan_stats(const wb_mconn_t *m, size_t index, wb_mconn_chan_stats_t *out)
{
    if (index >= m->n)
        return WB_ENOENT;
    const chan_t *ch = &m->ch[index];
    memset(out, 0, sizeof(*out));
    out->id = ch->c.id;
    out->priority = ch->c.priority;
    out->queued = ch->q_n;
    out->recently_sent = ch->recently_sent;
    out->send_credit = ch->send_credit;
    out->recv_undelivered = ch->undelivered;
    out->msgs_sent = ch->msgs_sent;
    out->msgs_recv = ch->msgs_recv;
    out->bytes_sent = ch->bytes_sent;
    out->bytes_recv = ch->bytes_recv;
    return 0;
}

size_t wb_mconn_nchannels(const wb_mconn_t *m)
{
    return m->n;
}

void wb_mconn_ping_stats(const wb_mconn_t *m, uint64_t *pings, uint64_t *pongs, uint64_t *rtt_ms)
{
    if (pings != NULL)
        *pings = m->pings;
    if (pongs != NULL)
        *pongs = m->pongs;
    if (rtt_ms != NULL)
        *rtt_ms = m->rtt;
}
