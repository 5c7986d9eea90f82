/*
 * pex.h - the peer exchange reactor: nodes find each other.
 *
 * Channel WB_PEX_CHANNEL (priority 1, queue 10); messages are pex_proto.h's
 * (a request, or a list of addresses). What it does, on the switch's
 * events and its own timer:
 *
 *   - An outbound peer is asked for addresses when the book wants more;
 *     an inbound peer's self-reported listen address goes into the book
 *     with the peer as its source.
 *   - A request is answered with a random selection of the book (a seed's
 *     answer favours vetted addresses: 30% new). A peer that asks again
 *     sooner than ensure_ms / 3 after its previous request is
 *     disconnected, as is one that sends addresses we did not ask for
 *     (one request outstanding per peer).
 *   - Every ensure_ms (the first time soon after start): dial book picks
 *     until the switch's outbound target is reached (biased towards new
 *     addresses while we have few outbound peers, towards vetted ones
 *     later), never an address still in its dial backoff; ask a peer for
 *     more when the book is short; with no peers and nothing to dial, dial
 *     the seeds.
 *   - A dial that fails is an attempt against the address (the book gives
 *     up on it after repeated failures); one that reached another key
 *     marks it bad; one that reached ourselves records the address as ours.
 *     A peer that stays connected is marked good (moved to the vetted
 *     buckets).
 *   - Seed mode: no outbound target; every ensure_ms crawl the book (dial
 *     addresses not tried for a while, ask each for addresses, hang up when
 *     the answer came), hang up on inbound peers once their request is
 *     answered.
 *
 * The book (addrbook.h) is kept in memory and written through to SQLite on
 * the database lane when the runtime has one (wb_pex_config_t.persist);
 * it is loaded from there at start, so it survives restarts.
 *
 * Threads: the actor lane.
 */
#ifndef WB_PEER_PEX_H
#define WB_PEER_PEX_H

#include <stddef.h>
#include <stdint.h>

#include "apps/peer/switch.h"

#define WB_PEX_CHANNEL 0x00

typedef struct {
    const char *const *seeds; /* "ID@IP:port" */
    size_t nseeds;
    uint32_t ensure_ms; /* period of the dial/crawl round (default 30000) */
    int seed_mode;
    int persist;   /* 1: the runtime has the address book's database lane */
    int strict;    /* 1: only routable addresses go into the book */
    uint64_t seed; /* randomness for the book and picks (0: random) */
} wb_pex_config_t;

/* Book and traffic counters. */
typedef struct {
    uint32_t book_size, book_new, book_old;
    uint64_t requests_sent, requests_answered, addrs_received, dials, dial_failures;
    uint64_t peers_dropped; /* for abuse */
} wb_pex_stats_t;

void wb_pex_config_init(wb_pex_config_t *cfg);

/* A PEX reactor, child of parent, registered on sw (before wb_switch_start).
 * Returns 0 and its actor id, or WB_EINVAL (a seed that does not parse) /
 * WB_ENOMEM. */
int wb_pex_new(wb_rt_t *rt, wb_actor_t *parent, wb_switch_t *sw, const wb_pex_config_t *cfg,
               uint64_t *actor);

int wb_pex_stats(wb_rt_t *rt, uint64_t actor, wb_pex_stats_t *out);

#endif
