/*
 * netaddr.h - a peer's network address: node id, IP literal, port.
 *
 * Text forms: "ID@IP:port", "IP:port", "ID@[v6]:port", "[v6]:port", each
 * with an optional "tcp://" prefix. ID is the node's Ed25519 public key as
 * 64 hex characters (written lowercase, read in either case). Only IP
 * literals are parsed: nothing here resolves names (this runs on the actor
 * thread). A host that is not an IP literal makes wb_netaddr_parse return
 * WB_ENOENT, so a caller that may block (the CLI) can split the text
 * (wb_netaddr_split), resolve the host itself and build the address with
 * wb_netaddr_set_ip.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are stored as IPv4, so one
 * host has one form.
 *
 * Properties follow tendermint's NetAddress (peers.md 1.8):
 *   valid     not unspecified, not 255.255.255.255, not 2001:db8::/32
 *   local     loopback (127/8, ::1) or 0/8
 *   routable  valid, not local, not RFC1918 (10/8, 172.16/12, 192.168/16),
 *             RFC3927 (169.254/16), RFC4862 (fe80::/64), RFC4193 (fc00::/7),
 *             RFC4843 (2001:10::/28)
 * The group of an address (what the address book spreads buckets by) is
 * the MASKED network: IPv4 /16 ("10.1.0.0/16"), IPv6 /32 ("2a01:4f8::/32"),
 * /36 inside Hurricane Electric's 2001:470::/32; IPv6 forms that embed an
 * IPv4 address (6to4 2002::/16, Teredo 2001::/32, NAT64 64:ff9b::/96) give
 * the embedded IPv4's /16. With `strict`, "local" for local addresses and
 * "unroutable" for the other unroutable ones; without (a test network on
 * loopback or a LAN), the /16 or /32 as for any other address.
 *
 * Threads: pure functions, any thread.
 */
#ifndef WB_PEER_NETADDR_H
#define WB_PEER_NETADDR_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;

typedef struct {
    uint8_t id[32];
    uint8_t has_id;
    uint8_t family; /* 4 or 6 */
    uint8_t ip[16]; /* IPv4 in the first 4 bytes, the rest zero */
    uint16_t port;
} wb_netaddr_t;

#define WB_NODE_ID_HEX 64 /* characters of a node id in text */

/* Longest text of wb_netaddr_str, NUL included: id @ [v6] : port. */
#define WB_NETADDR_STRLEN (WB_NODE_ID_HEX + 1 + 48 + 1 + 5 + 1)

/* Longest group text, NUL included. */
#define WB_NETADDR_GROUPLEN 56

/* 64 lowercase hex characters and a NUL. */
void wb_node_id_hex(const uint8_t id[32], char out[WB_NODE_ID_HEX + 1]);

/* Parse exactly 64 hex characters (either case) of hex[0..len). 0 or
 * WB_EINVAL. */
int wb_node_id_parse(const char *hex, size_t len, uint8_t id[32]);

/* Split text into its parts without reading the host: the id (when there
 * is one; need_id makes it required), the host (brackets removed) into
 * host[hostlen] and the port (1..65535). 0, or WB_EINVAL with the reason
 * in err ("node id must be 64 hex characters", "port out of range", ...). */
int wb_netaddr_split(const char *text, int need_id, uint8_t id[32], int *has_id, char *host,
                     size_t hostlen, uint16_t *port, char *err, size_t errlen);

/* 1 if host is an IPv4 or IPv6 literal (no brackets), else 0. */
int wb_netaddr_is_ip_literal(const char *host);

/* Set a's family and ip from an IP literal (IPv4-mapped becomes IPv4).
 * 0 or WB_EINVAL. */
int wb_netaddr_set_ip(wb_netaddr_t *a, const char *ip);

/* Parse text into *out (zeroed first). 0; WB_ENOENT when the host is not an
 * IP literal (resolve it, then wb_netaddr_set_ip); WB_EINVAL for the rest.
 * The reason goes to err in both cases. */
int wb_netaddr_parse(const char *text, int need_id, wb_netaddr_t *out, char *err, size_t errlen);

/* From a socket address (AF_INET / AF_INET6); no id. 0 or WB_EINVAL. */
int wb_netaddr_from_sockaddr(wb_netaddr_t *out, const struct sockaddr *sa);

/* Into a socket address (sockaddr_storage-sized out). Returns its length,
 * or 0 for a malformed address. */
size_t wb_netaddr_to_sockaddr(const wb_netaddr_t *a, struct sockaddr *out, size_t outlen);

/* Text of the address: "ID@IP:port" when with_id and a has an id, else
 * "IP:port"; IPv6 in brackets. Returns the length written (snprintf-style:
 * truncated if n is short; WB_NETADDR_STRLEN always suffices). */
size_t wb_netaddr_str(const wb_netaddr_t *a, int with_id, char *out, size_t n);

/* The IP alone, as inet_ntop writes it (no brackets): for dialing. */
size_t wb_netaddr_ip_str(const wb_netaddr_t *a, char *out, size_t n);

int wb_netaddr_valid(const wb_netaddr_t *a);
int wb_netaddr_local(const wb_netaddr_t *a);
int wb_netaddr_routable(const wb_netaddr_t *a);

/* The group text (see above); returns its length. */
size_t wb_netaddr_group(const wb_netaddr_t *a, int strict, char out[WB_NETADDR_GROUPLEN]);

/* Same family, IP and port (the dial address; ids ignored). */
int wb_netaddr_same_endpoint(const wb_netaddr_t *a, const wb_netaddr_t *b);

/* Same endpoint, and the same id or both without one. */
int wb_netaddr_equal(const wb_netaddr_t *a, const wb_netaddr_t *b);

/* tendermint's Same: the same endpoint, or both have the same id. */
int wb_netaddr_same(const wb_netaddr_t *a, const wb_netaddr_t *b);

#endif
