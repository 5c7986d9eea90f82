/*
 * secret.h - secret connections: an authenticated key exchange between two
 * Ed25519 identities, then an encrypted, framed byte stream. Sans-io: bytes
 * in, bytes out; no sockets, no threads, no clock. sockets/peerconn.h runs it
 * over a TCP connection.
 *
 * Handshake (both sides at once, neither waits for the other to begin):
 *
 *   1. hello: "WBS1" (4 bytes) then a fresh ephemeral X25519 public key
 *      (32 bytes): WB_SC_HELLO_LEN bytes, in the clear.
 *   2. On the peer's hello: refuse a bad magic, a key equal to our own
 *      ephemeral key, and a small-order key or all-zero shared secret
 *      (crypto_scalarmult's -1); dh = X25519(our eph secret, their eph).
 *      lo, hi = the two ephemeral public keys in byte order.
 *      okm = HKDF-SHA256(salt = "waybill secret connection v1",
 *                        ikm = lo || hi || dh,
 *                        info = "keys and challenge", 96 bytes)
 *      okm[0..32) seals what the lo side sends, okm[32..64) what the hi side
 *      sends, okm[64..96) is the challenge. The challenge binds the DH
 *      result: a man in the middle who swaps ephemeral keys holds two
 *      different shared secrets, so the two sides sign different challenges
 *      and each signature fails at the other end.
 *   3. auth: the first sealed frame each way, 96 bytes of plaintext: our
 *      Ed25519 public key (32) and our signature of the challenge (64).
 *   4. On the peer's auth: verify the signature with the key it carries;
 *      when an expected identity was given (the dialer knows whom it
 *      dialed), the key must be that one. Then the session is established.
 *
 * Frames (both directions, auth included):
 *
 *   len (4 bytes, big-endian, 1..WB_SC_MAX_FRAME) | ciphertext (len + 16)
 *
 *   ciphertext = ChaCha20-Poly1305-IETF(key of this direction,
 *                nonce = 4 zero bytes || counter as 8 bytes little-endian,
 *                additional data = the 4 length bytes, plaintext)
 *
 * The counter starts at 0 for each direction and grows by one per frame; a
 * frame whose tag does not verify under the next counter ends the session
 * (reordered, replayed, dropped or altered frames all fail that way). The
 * session refuses to seal or open frame number 2^64 - 1 (WB_ECLOSED): a
 * counter never wraps. The length is checked against WB_SC_MAX_FRAME before
 * anything is allocated.
 *
 * Errors are sticky: after one, every call returns it again, and
 * wb_sc_error() gives a one-line reason ("bad magic", "small-order
 * ephemeral key", "challenge signature does not verify", "peer is
 * 3f2a...: expected 9c01...", "frame 17 does not decrypt", "frame of 70000
 * bytes exceeds 65536").
 *
 * Threads: a session belongs to one thread at a time; no global state but
 * libsodium's (sodium_init() is called by wb_sc_init).
 */
#ifndef WB_SECRET_H
#define WB_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define WB_SC_MAGIC "WBS1"
#define WB_SC_HELLO_LEN 36         /* magic + ephemeral public key */
#define WB_SC_KEY_LEN 32           /* X25519, Ed25519 public key, AEAD key */
#define WB_SC_SIG_LEN 64           /* Ed25519 signature */
#define WB_SC_ID_SECRET_LEN 64     /* libsodium's Ed25519 secret key (seed || public) */
#define WB_SC_AUTH_LEN 96          /* auth plaintext: public key || signature */
#define WB_SC_FRAME_HEADER 4       /* length prefix */
#define WB_SC_TAG 16               /* Poly1305 tag */
#define WB_SC_OVERHEAD (WB_SC_FRAME_HEADER + WB_SC_TAG) /* bytes a frame adds */
#define WB_SC_MAX_FRAME 65536      /* largest plaintext of one frame */
#define WB_SC_AUTH_WIRE_LEN (WB_SC_AUTH_LEN + WB_SC_OVERHEAD)

typedef enum {
    WB_SC_HELLO = 0,   /* waiting for the peer's hello */
    WB_SC_AUTH,        /* waiting for the peer's auth frame */
    WB_SC_ESTABLISHED, /* data frames both ways */
    WB_SC_FAILED,      /* an error ended it (wb_sc_error) */
} wb_sc_state_t;

typedef struct {
    wb_sc_state_t state;
    int err;
    char errmsg[160];
    uint8_t id_sk[WB_SC_ID_SECRET_LEN]; /* our identity (secret key) */
    uint8_t id_pk[WB_SC_KEY_LEN];
    uint8_t expect[WB_SC_KEY_LEN]; /* expected remote identity, if have_expect */
    uint8_t have_expect;
    uint8_t eph_sk[WB_SC_KEY_LEN], eph_pk[WB_SC_KEY_LEN];
    uint8_t remote_eph[WB_SC_KEY_LEN];
    uint8_t remote_id[WB_SC_KEY_LEN]; /* the peer's identity, once ESTABLISHED */
    uint8_t send_key[WB_SC_KEY_LEN], recv_key[WB_SC_KEY_LEN];
    uint8_t challenge[WB_SC_KEY_LEN];
    uint64_t send_ctr, recv_ctr; /* the next frame's counter each way */
    /* Input assembly: a hello, or a frame that spans fed chunks. */
    uint8_t hello[WB_SC_HELLO_LEN];
    uint32_t hello_have;
    uint8_t hdr[WB_SC_FRAME_HEADER];
    uint32_t hdr_have;
    uint32_t need;  /* ciphertext bytes of the frame in progress (len + 16), 0: none */
    uint32_t have;  /* of those, bytes held in buf */
    uint8_t *buf;   /* WB_SC_MAX_FRAME + WB_SC_TAG bytes, allocated on first use */
} wb_sc_t;

/* Start a session as identity id_sk (libsodium's 64-byte Ed25519 secret
 * key). expect_pk: the identity the peer must prove (a dialer's), or NULL.
 * eph_sk: the ephemeral secret key to use, for test vectors only; NULL makes
 * a fresh random one (the only right choice outside tests). Writes our hello
 * into hello_out: send it at once. Returns 0 or WB_ENOMEM/WB_EINVAL. */
int wb_sc_init(wb_sc_t *sc, const uint8_t id_sk[WB_SC_ID_SECRET_LEN],
               const uint8_t *expect_pk, const uint8_t *eph_sk,
               uint8_t hello_out[WB_SC_HELLO_LEN]);

/* Wipe the keys and free the buffer. The session may be initialised again. */
void wb_sc_fini(wb_sc_t *sc);

/* Feed handshake bytes from the peer: in[0..len); *used says how many were
 * taken (bytes after the peer's auth frame are left: they are data frames,
 * feed them to wb_sc_open). When the peer's hello completes, our auth frame
 * (WB_SC_AUTH_WIRE_LEN bytes) is written to auth_out and *auth_len set to
 * its length (otherwise *auth_len is 0): send it. Returns
 *   0             more bytes needed;
 *   1             established: sc->remote_id is the peer's proven identity;
 *   WB_EPROTO     the peer failed the handshake (wb_sc_error says how);
 *   WB_ENOMEM     no buffer for an auth frame that spans calls;
 *   WB_ESTATE     not in a handshake state.
 * auth_out must have room for WB_SC_AUTH_WIRE_LEN bytes. */
int wb_sc_handshake(wb_sc_t *sc, const uint8_t *in, size_t len, size_t *used,
                    uint8_t auth_out[WB_SC_AUTH_WIRE_LEN], size_t *auth_len);

/* Bytes wb_sc_seal writes for len bytes of plaintext cut into frames of at
 * most frame_max (1..WB_SC_MAX_FRAME) bytes. len 0 gives 0. */
size_t wb_sc_sealed_size(size_t len, size_t frame_max);

/* Seal plain[0..len) as frames of at most frame_max bytes into out (room for
 * wb_sc_sealed_size(len, frame_max)). out may not overlap plain. Returns the
 * bytes written (> 0), 0 for len 0, or a negative code (not established,
 * WB_ECLOSED at the counter's end, or the sticky error). */
long wb_sc_seal(wb_sc_t *sc, const uint8_t *plain, size_t len, size_t frame_max, uint8_t *out);

/* Open data frames from in[0..len), which the call may overwrite (a frame
 * that lies wholly in it is decrypted in place). Takes bytes until one frame
 * is complete or the input runs out; *used says how many. Returns
 *   1   a frame: *plain, *plain_len point at its plaintext (inside in, or
 *       inside the session's buffer for a frame that spanned calls), valid
 *       until the next call;
 *   0   every byte was taken, no frame complete;
 *   WB_EPROTO (tag fails: "frame N does not decrypt"), WB_ETOOBIG (length
 *       above WB_SC_MAX_FRAME or 0), WB_ECLOSED (counter at its end),
 *       WB_ENOMEM, WB_ESTATE (not established). Sticky. */
int wb_sc_open(wb_sc_t *sc, uint8_t *in, size_t len, size_t *used, const uint8_t **plain,
               size_t *plain_len);

/* The reason of the sticky error, or "" when none. */
const char *wb_sc_error(const wb_sc_t *sc);

/* The key schedule alone (for golden vectors): from our and the peer's
 * ephemeral public keys and the X25519 result, our send and receive keys
 * and the challenge. */
void wb_sc_derive(const uint8_t local_eph_pk[WB_SC_KEY_LEN],
                  const uint8_t remote_eph_pk[WB_SC_KEY_LEN], const uint8_t dh[WB_SC_KEY_LEN],
                  uint8_t send_key[WB_SC_KEY_LEN], uint8_t recv_key[WB_SC_KEY_LEN],
                  uint8_t challenge[WB_SC_KEY_LEN]);

/* A node identity: a new Ed25519 key pair (libsodium's forms). */
void wb_sc_keypair(uint8_t pk[WB_SC_KEY_LEN], uint8_t sk[WB_SC_ID_SECRET_LEN]);

#endif
