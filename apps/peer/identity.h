/*
 * identity.h - a node's identity key, created on first start and kept in
 * its data directory.
 *
 * File DATA_DIR/node_key.json, mode 0600:
 *   {"type": "ed25519", "seed": "<64 hex>", "id": "<64 hex>"}
 * seed is the Ed25519 seed (the secret), id the public key it gives (the
 * node id); a file whose id does not match its seed is refused. A new file
 * is written whole to a temporary name, synced, then renamed, so a crash
 * never leaves half a key.
 *
 * Threads: blocking file I/O: call it before the runtime starts.
 */
#ifndef WB_PEER_IDENTITY_H
#define WB_PEER_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

/* Load the key from dir, or create dir (mode 0700) and a new key. *created
 * says which. Returns 0 or a negative code with the reason in err. */
int wb_identity_load(const char *dir, uint8_t pk[32], uint8_t sk[64], int *created, char *err,
                     size_t errlen);

/* 64 lowercase hex characters and a NUL. */
void wb_identity_hex(const uint8_t id[32], char out[65]);

/* Parse 64 hex characters (either case). 0 or WB_EINVAL. */
int wb_identity_parse(const char *hex, uint8_t id[32]);

#endif
