/*
 * test_tls.c - TLS: the sans-io core (sockets/tls.h) and TLS streams on the
 * network lane (wb_tcp_opts_t.tls), against certificates made here.
 *
 * Setup: a throwaway CA, a second CA nobody trusts, a server certificate
 * for localhost / 127.0.0.1 / ::1 signed by the first, and an expired one,
 * made with OpenSSL's C API (P-256 keys) in a temporary directory.
 *
 * Sans-io: a client and a server wb_tls_t shuttled in memory (handshake,
 * data both ways, close_notify), byte by byte; verification failures (wrong
 * CA, hostname mismatch, IP mismatch, expired) with their reasons; insecure;
 * garbage instead of a ServerHello; the timeout; bad files.
 *
 * On the network lane (real loopback sockets, the runtime's threads, so it
 * runs under TSan too): a raw TLS listener and dial exchanging bytes both
 * ways (1 MiB, sent before the handshake was done), framed messages over
 * TLS, WebSocket over TLS (text, binary, close code 1000), owner close sends
 * close_notify (the peer sees "peer closed"), the verification failures as
 * CLOSED WB_EPROTO with their reasons, insecure, a peer that answers
 * garbage, a peer that says nothing (handshake timeout, WB_ETIMEDOUT), a
 * plain client at a TLS listener (the owner hears nothing), a persistent
 * dialer whose attempts fail verification (RETRY with the reason), bad
 * options refused at the call, and shutdown with TLS connections open.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/pool.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"
#include "sockets/tls.h"
#include "sockets/websocket.h"

#define WAIT_MS 20000

/* ---- certificates ----------------------------------------------------------- */

static char dir[64];
static char ca_pem[128], ca2_pem[128], srv_pem[128], srv_key[128], old_pem[128], old_key[128];

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate for key, named cn, valid from now + from_s to now + to_s,
 * signed by issuer (NULL: self-signed, a CA). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       const char *san, long from_s, long to_s)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : n);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    if (issuer == NULL) {
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    } else {
        add_ext(x, &ctx, NID_basic_constraints, "CA:FALSE");
        add_ext(x, &ctx, NID_ext_key_usage, "serverAuth");
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
        add_ext(x, &ctx, NID_subject_alt_name, san);
    }
    assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void write_cert(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static void write_key(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static int make_certs(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/wb-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
    snprintf(ca2_pem, sizeof(ca2_pem), "%s/ca2.pem", dir);
    snprintf(srv_pem, sizeof(srv_pem), "%s/srv.pem", dir);
    snprintf(srv_key, sizeof(srv_key), "%s/srv.key", dir);
    snprintf(old_pem, sizeof(old_pem), "%s/old.pem", dir);
    snprintf(old_key, sizeof(old_key), "%s/old.key", dir);
    EVP_PKEY *cak = EVP_EC_gen("P-256"), *ca2k = EVP_EC_gen("P-256");
    EVP_PKEY *sk = EVP_EC_gen("P-256"), *ok = EVP_EC_gen("P-256");
    X509 *ca = make_cert(cak, "waybill test CA", NULL, NULL, NULL, -3600, 86400);
    X509 *ca2 = make_cert(ca2k, "waybill other CA", NULL, NULL, NULL, -3600, 86400);
    X509 *srv =
        make_cert(sk, "localhost", ca, cak, "DNS:localhost,IP:127.0.0.1,IP:::1", -3600, 86400);
    X509 *old =
        make_cert(ok, "localhost", ca, cak, "DNS:localhost,IP:127.0.0.1", -3 * 86400, -2 * 86400);
    write_cert(ca_pem, ca);
    write_cert(ca2_pem, ca2);
    write_cert(srv_pem, srv);
    write_key(srv_key, sk);
    write_cert(old_pem, old);
    write_key(old_key, ok);
    X509_free(ca);
    X509_free(ca2);
    X509_free(srv);
    X509_free(old);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(ca2k);
    EVP_PKEY_free(sk);
    EVP_PKEY_free(ok);
    return 0;
}

static int remove_certs(void **state)
{
    (void)state;
    const char *files[] = {ca_pem, ca2_pem, srv_pem, srv_key, old_pem, old_key};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(dir);
    return 0;
}

static void client_opts(wb_tls_opts_t *o, const char *name, const char *ca)
{
    wb_tls_opts_init(o);
    o->server_name = name;
    o->ca_file = ca;
}

static void server_opts(wb_tls_opts_t *o, const char *cert, const char *key)
{
    wb_tls_opts_init(o);
    o->cert_file = cert;
    o->key_file = key;
}

/* ---- sans-io ---------------------------------------------------------------- */

/* Move a's output into b, at most step bytes per feed (0: all at once).
 * Returns how many bytes moved. */
static size_t shuttle(wb_tls_t *a, wb_tls_t *b, size_t step)
{
    const uint8_t *p;
    size_t n = wb_tls_output(a, &p), moved = n;
    uint8_t *copy = malloc(n + 1);
    memcpy(copy, p, n);
    wb_tls_output_done(a);
    for (size_t off = 0; off < n;) {
        size_t k = step == 0 || n - off < step ? n - off : step;
        wb_tls_feed(b, copy + off, k);
        off += k;
    }
    free(copy);
    return moved;
}

/* Run both until neither has anything to say. */
static void converse(wb_tls_t *c, wb_tls_t *s, size_t step)
{
    for (int i = 0; i < 100; i++) {
        uint8_t buf[64];
        size_t got;
        wb_tls_read(c, buf, 0, &got);
        wb_tls_read(s, buf, 0, &got);
        if (shuttle(c, s, step) + shuttle(s, c, step) == 0)
            return;
    }
    fail_msg("no end to the conversation");
}

static size_t read_all(wb_tls_t *t, uint8_t *buf, size_t cap)
{
    size_t total = 0, got;
    do {
        assert_int_equal(wb_tls_read(t, buf + total, cap - total, &got), 0);
        total += got;
    } while (got > 0 && total < cap);
    return total;
}

static void pair_new(wb_tls_t **c, wb_tls_t **s, const wb_tls_opts_t *co, const char *cert,
                     const char *key)
{
    wb_tls_opts_t so;
    server_opts(&so, cert, key);
    char err[300] = "";
    int rc = wb_tls_new(c, WB_TLS_CLIENT, co, NULL, err, sizeof(err));
    if (rc != 0)
        fail_msg("client: %s", err);
    rc = wb_tls_new(s, WB_TLS_SERVER, &so, NULL, err, sizeof(err));
    if (rc != 0)
        fail_msg("server: %s", err);
    assert_int_equal(wb_tls_state(*c), WB_TLS_HANDSHAKE);
    const uint8_t *p;
    assert_true(wb_tls_output(*c, &p) > 0); /* the ClientHello */
    assert_int_equal(p[0], 22);             /* a handshake record */
}

static void test_sansio_exchange(void **state)
{
    (void)state;
    for (size_t step = 0; step <= 1; step++) { /* all at once, then byte by byte */
        wb_tls_opts_t co;
        client_opts(&co, "localhost", ca_pem);
        wb_tls_t *c, *s;
        pair_new(&c, &s, &co, srv_pem, srv_key);
        assert_int_equal(wb_tls_write(c, (const uint8_t *)"x", 1), WB_EAGAIN);
        converse(c, s, step);
        assert_int_equal(wb_tls_state(c), WB_TLS_OPEN);
        assert_int_equal(wb_tls_state(s), WB_TLS_OPEN);
        assert_string_equal(wb_tls_version(c), "TLSv1.3");

        static uint8_t big[300000], got[300001];
        for (size_t i = 0; i < sizeof(big); i++)
            big[i] = (uint8_t)(i * 7 + i / 251);
        assert_int_equal(wb_tls_write(c, big, sizeof(big)), 0);
        shuttle(c, s, step ? 1000 : 0);
        assert_int_equal(read_all(s, got, sizeof(got)), sizeof(big));
        assert_memory_equal(got, big, sizeof(big));
        assert_int_equal(wb_tls_write(s, (const uint8_t *)"pong", 4), 0);
        shuttle(s, c, step);
        /* pulled in small pieces: what is not pulled stays inside */
        uint8_t two[2];
        size_t n;
        assert_int_equal(wb_tls_read(c, two, 2, &n), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(two, "po", 2);
        assert_int_equal(wb_tls_read(c, two, 2, &n), 0);
        assert_memory_equal(two, "ng", 2);
        assert_int_equal(wb_tls_read(c, two, 2, &n), 0);
        assert_int_equal(n, 0);

        assert_int_equal(wb_tls_close(c), 0);
        assert_int_equal(wb_tls_state(c), WB_TLS_DONE);
        assert_int_equal(wb_tls_write(c, (const uint8_t *)"x", 1), WB_ECLOSED);
        shuttle(c, s, step);
        assert_int_equal(wb_tls_read(s, got, 10, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(wb_tls_state(s), WB_TLS_DONE);
        assert_true(wb_tls_peer_closed(s));
        const char *why;
        assert_int_equal(wb_tls_result(s, &why), 0);
        assert_string_equal(why, "");
        wb_tls_free(c);
        wb_tls_free(s);
    }
}

/* A handshake that the client must refuse: the reason it gives. */
static void expect_refused(const wb_tls_opts_t *co, const char *cert, const char *key,
                           const char *reason)
{
    wb_tls_t *c, *s;
    pair_new(&c, &s, co, cert, key);
    converse(c, s, 0);
    const char *why;
    assert_int_equal(wb_tls_state(c), WB_TLS_DONE);
    assert_int_equal(wb_tls_result(c, &why), WB_EPROTO);
    if (strcmp(why, reason) != 0)
        fail_msg("reason \"%s\", expected \"%s\"", why, reason);
    /* the server heard the client's alert */
    assert_int_equal(wb_tls_state(s), WB_TLS_DONE);
    assert_int_equal(wb_tls_result(s, &why), WB_EPROTO);
    assert_non_null(strstr(why, "tls: "));
    wb_tls_free(c);
    wb_tls_free(s);
}

static void test_sansio_verify(void **state)
{
    (void)state;
    wb_tls_opts_t co;
    client_opts(&co, "localhost", ca2_pem);
    expect_refused(&co, srv_pem, srv_key,
                   "tls: certificate verify failed: unable to get local issuer certificate "
                   "(host localhost)");
    client_opts(&co, "relay.example", ca_pem);
    expect_refused(&co, srv_pem, srv_key,
                   "tls: certificate verify failed: hostname mismatch (host relay.example)");
    client_opts(&co, "127.0.0.2", ca_pem);
    expect_refused(&co, srv_pem, srv_key,
                   "tls: certificate verify failed: IP address mismatch (host 127.0.0.2)");
    client_opts(&co, "localhost", ca_pem);
    expect_refused(&co, old_pem, old_key,
                   "tls: certificate verify failed: certificate has expired (host localhost)");
    /* the system store does not know our CA */
    client_opts(&co, "localhost", NULL);
    expect_refused(&co, srv_pem, srv_key,
                   "tls: certificate verify failed: unable to get local issuer certificate "
                   "(host localhost)");

    /* accepted: by IP address, [::1], and anything when insecure */
    const char *names[] = {"127.0.0.1", "::1", "[::1]", "LOCALHOST"};
    for (size_t i = 0; i < 4; i++) {
        wb_tls_t *c, *s;
        client_opts(&co, names[i], ca_pem);
        pair_new(&c, &s, &co, srv_pem, srv_key);
        converse(c, s, 0);
        assert_int_equal(wb_tls_state(c), WB_TLS_OPEN);
        wb_tls_free(c);
        wb_tls_free(s);
    }
    client_opts(&co, "relay.example", ca2_pem);
    co.insecure = 1;
    wb_tls_t *c, *s;
    pair_new(&c, &s, &co, old_pem, old_key);
    converse(c, s, 0);
    assert_int_equal(wb_tls_state(c), WB_TLS_OPEN);
    wb_tls_free(c);
    wb_tls_free(s);
}

static void test_sansio_garbage_and_timeout(void **state)
{
    (void)state;
    wb_tls_opts_t co;
    client_opts(&co, "localhost", ca_pem);
    const char *answers[] = {"HTTP/1.1 400 Bad Request\r\n\r\n",
                             "\x15\x03\x03\x00\x02\x02\x28", /* a fatal alert */
                             "\x16\x03\x03\xff\xff"};        /* a record too long */
    const char *reasons[] = {"tls: handshake failed: wrong version number",
                             "tls: handshake failed: sslv3 alert handshake failure",
                             "tls: handshake failed: packet length too long"};
    for (size_t i = 0; i < 3; i++) {
        wb_tls_t *c;
        assert_int_equal(wb_tls_new(&c, WB_TLS_CLIENT, &co, NULL, NULL, 0), 0);
        const uint8_t *p;
        wb_tls_output(c, &p);
        wb_tls_output_done(c);
        uint8_t junk[64] = {0};
        size_t n = strlen(answers[i]);
        if (i == 1)
            n = 7;
        memcpy(junk, answers[i], n);
        int rc = wb_tls_feed(c, junk, i == 2 ? 64 : n);
        assert_int_equal(rc, WB_EPROTO);
        assert_int_equal(wb_tls_state(c), WB_TLS_DONE);
        const char *why;
        assert_int_equal(wb_tls_result(c, &why), WB_EPROTO);
        if (strcmp(why, reasons[i]) != 0)
            fail_msg("reason \"%s\", expected \"%s\"", why, reasons[i]);
        /* more bytes after the end are ignored */
        assert_int_equal(wb_tls_feed(c, junk, 10), 0);
        wb_tls_free(c);
    }
    wb_tls_t *c;
    co.handshake_timeout_ms = 1234;
    assert_int_equal(wb_tls_new(&c, WB_TLS_CLIENT, &co, NULL, NULL, 0), 0);
    assert_int_equal(wb_tls_timeout(c), 1);
    const char *why;
    assert_int_equal(wb_tls_result(c, &why), WB_ETIMEDOUT);
    assert_string_equal(why, "tls: handshake timed out after 1234 ms");
    assert_int_equal(wb_tls_timeout(c), 0);
    wb_tls_free(c);
}

static void test_sansio_bad_options(void **state)
{
    (void)state;
    wb_tls_t *t = NULL;
    char err[300];
    wb_tls_opts_t o;
    client_opts(&o, NULL, ca_pem);
    assert_int_equal(wb_tls_new(&t, WB_TLS_CLIENT, &o, NULL, err, sizeof(err)), WB_EINVAL);
    assert_string_equal(err, "tls: a client needs server_name (1 to 253 bytes)");
    client_opts(&o, "localhost", "/nonexistent/ca.pem");
    assert_int_equal(wb_tls_new(&t, WB_TLS_CLIENT, &o, NULL, err, sizeof(err)), WB_EINVAL);
    assert_string_equal(err, "tls: ca_file /nonexistent/ca.pem: No such file or directory");
    client_opts(&o, "localhost", srv_key); /* a key, not certificates */
    assert_int_equal(wb_tls_new(&t, WB_TLS_CLIENT, &o, NULL, err, sizeof(err)), WB_EINVAL);
    assert_non_null(strstr(err, "tls: ca_file "));
    server_opts(&o, srv_pem, NULL);
    assert_int_equal(wb_tls_new(&t, WB_TLS_SERVER, &o, NULL, err, sizeof(err)), WB_EINVAL);
    assert_string_equal(err, "tls: a server needs cert_file and key_file");
    server_opts(&o, srv_pem, old_key); /* the wrong key */
    assert_int_equal(wb_tls_new(&t, WB_TLS_SERVER, &o, NULL, err, sizeof(err)), WB_EINVAL);
    assert_non_null(strstr(err, "tls: key_file "));
    assert_null(t);

    /* a cache shares one context per CA file; connections outlive it */
    wb_tls_cache_t *cache;
    assert_int_equal(wb_tls_cache_new(&cache), 0);
    client_opts(&o, "localhost", ca_pem);
    wb_tls_t *a, *b;
    assert_int_equal(wb_tls_cache_prepare(cache, WB_TLS_CLIENT, &o, err, sizeof(err)), 0);
    assert_int_equal(wb_tls_new(&a, WB_TLS_CLIENT, &o, cache, err, sizeof(err)), 0);
    assert_int_equal(wb_tls_new(&b, WB_TLS_CLIENT, &o, cache, err, sizeof(err)), 0);
    wb_tls_cache_free(cache);
    wb_tls_free(a);
    wb_tls_free(b);
}

/* ---- a recording actor ------------------------------------------------------ */

enum { MAX_REC = 128, TEXT_MAX = 300 };

typedef struct {
    uint16_t type;
    int32_t status;
    uint64_t src, cookie;
    char text[TEXT_MAX];
} rec_t;

typedef struct peer_s peer_t;
/* Called on the actor lane for each event; return 1 when it took ev. */
typedef int (*peer_hook)(peer_t *p, wb_event_t *ev);

struct peer_s {
    wb_rt_t *rt;
    uint64_t id;
    peer_hook hook;
    pthread_mutex_t m;
    pthread_cond_t c;
    rec_t recs[MAX_REC];
    size_t nrec;
    uint8_t *data; /* the bytes of every blob, in order */
    size_t len, cap;
    size_t nblobs;
    uint8_t last_flags;
    const char *greeting; /* sent on every OPENED, raw */
    size_t greeting_len;
};

static void peer_init(peer_t *p, wb_rt_t *rt, peer_hook hook)
{
    memset(p, 0, sizeof(*p));
    p->rt = rt;
    p->hook = hook;
    pthread_mutex_init(&p->m, NULL);
    pthread_cond_init(&p->c, NULL);
}

static void peer_fini(peer_t *p)
{
    free(p->data);
    pthread_mutex_destroy(&p->m);
    pthread_cond_destroy(&p->c);
}

static void peer_send(peer_t *p, uint64_t conn, const void *data, size_t len, int binary)
{
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, data, len);
    assert_non_null(ev);
    if (binary)
        ev->flags |= WB_TCP_BLOB_BINARY;
    wb_event_route(ev, WB_LANE_ACTOR, p->id, WB_LANE_NET, conn);
    assert_int_equal(wb_tcp_send(p->rt, conn, ev), 0);
}

static void peer_handle(wb_actor_t *self, wb_event_t *ev)
{
    peer_t *p = wb_actor_state(self);
    pthread_mutex_lock(&p->m);
    if (ev->type == WB_EV_TCP_BLOB) {
        if (p->len + ev->len > p->cap) {
            p->cap = (p->len + ev->len) * 2;
            p->data = realloc(p->data, p->cap);
        }
        memcpy(p->data + p->len, ev->data, ev->len);
        p->len += ev->len;
        p->nblobs++;
        p->last_flags = ev->flags;
    } else if (ev->type >= WB_EV_TCP_LISTENING && ev->type <= WB_EV_TCP_RETRY &&
               p->nrec < MAX_REC) {
        rec_t *r = &p->recs[p->nrec++];
        r->type = ev->type;
        r->status = ev->status;
        r->src = ev->src;
        r->cookie = ev->cookie;
        size_t n = ev->len < TEXT_MAX - 1 ? ev->len : TEXT_MAX - 1;
        memcpy(r->text, ev->data, n);
        r->text[n] = '\0';
    }
    pthread_cond_broadcast(&p->c);
    pthread_mutex_unlock(&p->m);
    if (ev->type == WB_EV_TCP_OPENED && p->greeting != NULL)
        peer_send(p, ev->src, p->greeting, p->greeting_len, 0);
    if (p->hook == NULL || !p->hook(p, ev))
        wb_event_free(ev);
}

static const wb_actor_def_t peer_def = {"peer", peer_handle, NULL};

static void peer_spawn(peer_t *p)
{
    assert_int_equal(wb_actor_spawn(p->rt, NULL, &peer_def, p, &p->id), 0);
}

static void deadline(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The first record from `from` on of type (and src when not 0); -1 after
 * WAIT_MS. */
static int wait_rec(peer_t *p, uint16_t type, uint64_t src, size_t from, rec_t *out)
{
    struct timespec ts;
    deadline(&ts, WAIT_MS);
    pthread_mutex_lock(&p->m);
    int found = -1;
    for (;;) {
        for (size_t i = from; i < p->nrec && found < 0; i++) {
            if (p->recs[i].type == type && (src == 0 || p->recs[i].src == src)) {
                found = (int)i;
                if (out != NULL)
                    *out = p->recs[i];
            }
        }
        if (found >= 0 || pthread_cond_timedwait(&p->c, &p->m, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&p->m);
    return found;
}

static size_t nrec(peer_t *p)
{
    pthread_mutex_lock(&p->m);
    size_t n = p->nrec;
    pthread_mutex_unlock(&p->m);
    return n;
}

/* Wait until p has received at least n bytes; returns how many. */
static size_t wait_bytes(peer_t *p, size_t n)
{
    struct timespec ts;
    deadline(&ts, WAIT_MS);
    pthread_mutex_lock(&p->m);
    while (p->len < n)
        if (pthread_cond_timedwait(&p->c, &p->m, &ts) != 0)
            break;
    size_t got = p->len;
    pthread_mutex_unlock(&p->m);
    return got;
}

/* Count of records of type (any src). */
static size_t count_type(peer_t *p, uint16_t type)
{
    pthread_mutex_lock(&p->m);
    size_t n = 0;
    for (size_t i = 0; i < p->nrec; i++)
        n += p->recs[i].type == type;
    pthread_mutex_unlock(&p->m);
    return n;
}

/* Wait for the nth record of type (any src); 1 with it in *out. */
static int wait_nth(peer_t *p, uint16_t type, size_t nth, rec_t *out)
{
    struct timespec ts;
    deadline(&ts, WAIT_MS);
    pthread_mutex_lock(&p->m);
    int found = 0;
    for (;;) {
        size_t k = 0;
        for (size_t i = 0; i < p->nrec && !found; i++) {
            if (p->recs[i].type == type && ++k == nth) {
                *out = p->recs[i];
                found = 1;
            }
        }
        if (found || pthread_cond_timedwait(&p->c, &p->m, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&p->m);
    return found;
}

/* Hook: send every blob back on its connection, flags and all. */
static int echo_hook(peer_t *p, wb_event_t *ev)
{
    if (ev->type != WB_EV_TCP_BLOB)
        return 0;
    uint64_t conn = ev->src;
    wb_event_route(ev, WB_LANE_ACTOR, p->id, WB_LANE_NET, conn);
    if (wb_tcp_send(p->rt, conn, ev) != 0)
        return 0;
    return 1;
}

static wb_rt_t *rt_new_limit(uint32_t inbox_limit)
{
    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    if (inbox_limit != 0)
        cfg.inbox_limit = inbox_limit;
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, &cfg), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    return rt;
}

static wb_rt_t *rt_new(void)
{
    return rt_new_limit(0);
}

static void rt_free(wb_rt_t *rt)
{
    wb_rt_free(rt);
    assert_int_equal(wb_pool_trim(), 0);
}

static uint16_t listen_on(peer_t *p, const wb_tcp_opts_t *opts, uint64_t *lid)
{
    size_t from = nrec(p);
    assert_int_equal(wb_tcp_listen(p->rt, WB_LANE_ACTOR, p->id, "127.0.0.1", 0, opts, lid), 0);
    rec_t r;
    assert_true(wait_rec(p, WB_EV_TCP_LISTENING, *lid, from, &r) >= 0);
    if (r.status != 0)
        fail_msg("listen: %s", r.text);
    return (uint16_t)r.cookie;
}

/* A TLS listener (raw unless ws is given) with the server certificate. */
static uint16_t tls_listen(peer_t *p, const char *cert, const char *key, const wb_ws_opts_t *ws,
                           int raw, uint64_t *lid)
{
    wb_tls_opts_t so;
    server_opts(&so, cert, key);
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.tls = &so;
    to.ws = ws;
    to.raw = (uint32_t)raw;
    return listen_on(p, &to, lid);
}

static uint64_t tls_dial(peer_t *p, uint16_t port, const wb_tls_opts_t *co, const wb_ws_opts_t *ws,
                         int raw)
{
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.tls = co;
    to.ws = ws;
    to.raw = (uint32_t)raw;
    uint64_t conn;
    assert_int_equal(wb_tcp_dial(p->rt, WB_LANE_ACTOR, p->id, "127.0.0.1", port, &to, &conn), 0);
    return conn;
}

/* ---- on the network lane ---------------------------------------------------- */

static void test_raw_both_ways(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new();
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    uint64_t lid;
    uint16_t port = tls_listen(&srv, srv_pem, srv_key, NULL, 1, &lid);

    wb_tls_opts_t co;
    client_opts(&co, "localhost", ca_pem);
    uint64_t conn = tls_dial(&cli, port, &co, NULL, 1);
    /* sent before the handshake: waits for it */
    enum { N = 1u << 20, PIECE = 65536 };
    uint8_t *big = malloc(N);
    for (size_t i = 0; i < N; i++)
        big[i] = (uint8_t)(i * 13 + i / 4093);
    for (size_t off = 0; off < N; off += PIECE)
        peer_send(&cli, conn, big + off, PIECE, 0);
    rec_t r;
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, conn, 0, &r) >= 0);
    assert_memory_equal(r.text, "127.0.0.1:", 10); /* the peer's address */
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, &r) >= 0);
    assert_int_equal(r.cookie, lid);
    uint64_t sconn = r.src;
    assert_int_equal(wait_bytes(&cli, N), N);
    pthread_mutex_lock(&cli.m);
    assert_memory_equal(cli.data, big, N);
    pthread_mutex_unlock(&cli.m);
    pthread_mutex_lock(&srv.m);
    assert_int_equal(srv.len, N);
    pthread_mutex_unlock(&srv.m);
    free(big);

    /* owner close: close_notify after what is queued; the server sees the end */
    peer_send(&cli, conn, "bye", 3, 0);
    size_t from = nrec(&cli);
    assert_int_equal(wb_tcp_close(rt, conn), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, from, &r) >= 0);
    assert_int_equal(r.status, 0);
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, sconn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed");
    pthread_mutex_lock(&srv.m);
    assert_int_equal(srv.len, N + 3);
    assert_memory_equal(srv.data + N, "bye", 3);
    pthread_mutex_unlock(&srv.m);

    wb_tcp_close(rt, lid);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

static void test_framed(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new();
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    uint64_t lid;
    uint16_t port = tls_listen(&srv, srv_pem, srv_key, NULL, 0, &lid);
    wb_tls_opts_t co;
    client_opts(&co, "127.0.0.1", ca_pem);
    co.server_name = NULL; /* the dialed address is checked */
    uint64_t conn = tls_dial(&cli, port, &co, NULL, 0);
    char msg[32];
    size_t total = 0;
    for (int i = 0; i < 500; i++) {
        int n = snprintf(msg, sizeof(msg), "message %d", i);
        peer_send(&cli, conn, msg, (size_t)n, 0);
        total += (size_t)n;
    }
    assert_int_equal(wait_bytes(&cli, total), total);
    pthread_mutex_lock(&cli.m);
    assert_int_equal(cli.nblobs, 500); /* message boundaries kept */
    assert_memory_equal(cli.data, "message 0message 1", 18);
    pthread_mutex_unlock(&cli.m);
    wb_tcp_close(rt, conn);
    wb_tcp_close(rt, lid);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* 20000 framed messages in one TLS write, to an owner whose inbox holds 16:
 * blobs are held, the rest of the plaintext stashed, TLS keeps what it has
 * not given out, and on each resume all goes on, in order, none lost. */
static void test_tiny_inbox(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new_limit(16);
    peer_t srv, cli;
    peer_init(&srv, rt, NULL);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    uint64_t lid;
    uint16_t port = tls_listen(&srv, srv_pem, srv_key, NULL, 0, &lid);
    wb_tls_opts_t co;
    client_opts(&co, "localhost", ca_pem);
    uint64_t conn = tls_dial(&cli, port, &co, NULL, 1); /* raw: we frame by hand */
    enum { N = 20000 };
    uint8_t *wire = malloc(N * 12), *want = malloc(N * 8);
    for (unsigned i = 0; i < N; i++) {
        uint8_t *f = wire + i * 12;
        f[0] = f[1] = f[2] = 0;
        f[3] = 8;
        char num[9];
        snprintf(num, sizeof(num), "%08u", i);
        memcpy(f + 4, num, 8);
        memcpy(want + i * 8, num, 8);
    }
    peer_send(&cli, conn, wire, N * 12, 0);
    assert_int_equal(wait_bytes(&srv, N * 8), N * 8);
    pthread_mutex_lock(&srv.m);
    assert_int_equal(srv.nblobs, N);
    assert_memory_equal(srv.data, want, N * 8);
    pthread_mutex_unlock(&srv.m);
    free(wire);
    free(want);
    wb_tcp_close(rt, conn);
    wb_tcp_close(rt, lid);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

static void test_ws_over_tls(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new();
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_ws_opts_t wo;
    wb_ws_opts_init(&wo);
    uint64_t lid;
    uint16_t port = tls_listen(&srv, srv_pem, srv_key, &wo, 0, &lid);
    wb_tls_opts_t co;
    client_opts(&co, "localhost", ca_pem);
    uint64_t conn = tls_dial(&cli, port, &co, &wo, 0);
    peer_send(&cli, conn, "{\"type\":\"bind\"}", 15, 0);
    rec_t r;
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, conn, 0, &r) >= 0);
    assert_int_equal(wait_bytes(&cli, 15), 15);
    static uint8_t bin[200000];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)i;
    peer_send(&cli, conn, bin, sizeof(bin), 1);
    assert_int_equal(wait_bytes(&cli, 15 + sizeof(bin)), 15 + sizeof(bin));
    pthread_mutex_lock(&cli.m);
    assert_memory_equal(cli.data, "{\"type\":\"bind\"}", 15);
    assert_memory_equal(cli.data + 15, bin, sizeof(bin));
    assert_int_equal(cli.nblobs, 2);
    assert_true(cli.last_flags & WB_TCP_BLOB_BINARY);
    pthread_mutex_unlock(&cli.m);
    assert_true(wait_rec(&srv, WB_EV_TCP_OPENED, 0, 0, &r) >= 0);
    uint64_t sconn = r.src;
    wb_tcp_close(rt, conn);
    assert_true(wait_rec(&srv, WB_EV_TCP_CLOSED, sconn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_string_equal(r.text, "peer closed (code 1000)");
    wb_tcp_close(rt, lid);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* A dial whose handshake must fail: its CLOSED. */
static void expect_closed(const char *cert, const char *key, const wb_tls_opts_t *co,
                          const wb_ws_opts_t *ws, int status, const char *reason)
{
    wb_rt_t *rt = rt_new();
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    uint64_t lid;
    uint16_t port = tls_listen(&srv, cert, key, ws, 0, &lid);
    uint64_t conn = tls_dial(&cli, port, co, ws, 0);
    peer_send(&cli, conn, "never sent", 10, 0);
    rec_t r;
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, status);
    if (strcmp(r.text, reason) != 0)
        fail_msg("reason \"%s\", expected \"%s\"", r.text, reason);
    assert_int_equal(count_type(&cli, WB_EV_TCP_OPENED), 0);
    usleep(100000);
    /* the server's owner never heard of a connection that failed its handshake */
    assert_int_equal(count_type(&srv, WB_EV_TCP_OPENED), 0);
    assert_int_equal(count_type(&srv, WB_EV_TCP_CLOSED), 0);
    wb_tcp_close(rt, lid);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

static void test_verify_failures(void **state)
{
    (void)state;
    wb_ws_opts_t wo;
    wb_ws_opts_init(&wo);
    wb_tls_opts_t co;
    client_opts(&co, "localhost", ca2_pem);
    expect_closed(srv_pem, srv_key, &co, NULL, WB_EPROTO,
                  "tls: certificate verify failed: unable to get local issuer certificate "
                  "(host localhost)");
    client_opts(&co, "relay.example", ca_pem);
    expect_closed(srv_pem, srv_key, &co, &wo, WB_EPROTO,
                  "tls: certificate verify failed: hostname mismatch (host relay.example)");
    client_opts(&co, "localhost", ca_pem);
    expect_closed(old_pem, old_key, &co, &wo, WB_EPROTO,
                  "tls: certificate verify failed: certificate has expired (host localhost)");
}

static void test_insecure(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new();
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    uint64_t lid;
    uint16_t port = tls_listen(&srv, old_pem, old_key, NULL, 1, &lid);
    wb_tls_opts_t co;
    client_opts(&co, "relay.example", ca2_pem);
    co.insecure = 1;
    uint64_t conn = tls_dial(&cli, port, &co, NULL, 1);
    peer_send(&cli, conn, "hello", 5, 0);
    assert_int_equal(wait_bytes(&cli, 5), 5);
    wb_tcp_close(rt, conn);
    wb_tcp_close(rt, lid);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

/* A plain TCP peer that answers garbage, or nothing. */
static void test_garbage_and_timeout(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new();
    peer_t srv, cli;
    peer_init(&srv, rt, NULL);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_tcp_opts_t plain;
    wb_tcp_opts_init(&plain);
    plain.raw = 1;
    uint64_t lid;
    srv.greeting = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
    srv.greeting_len = strlen(srv.greeting);
    uint16_t port = listen_on(&srv, &plain, &lid);
    wb_tls_opts_t co;
    client_opts(&co, "localhost", ca_pem);
    uint64_t conn = tls_dial(&cli, port, &co, NULL, 1);
    rec_t r;
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EPROTO);
    assert_string_equal(r.text, "tls: handshake failed: wrong version number");

    /* the server says nothing: the handshake timer */
    pthread_mutex_lock(&srv.m);
    srv.greeting = NULL;
    pthread_mutex_unlock(&srv.m);
    co.handshake_timeout_ms = 300;
    conn = tls_dial(&cli, port, &co, NULL, 1);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ETIMEDOUT);
    assert_string_equal(r.text, "tls: handshake timed out after 300 ms");

    /* the peer hangs up in the middle of the handshake */
    size_t opened = count_type(&srv, WB_EV_TCP_OPENED);
    co.handshake_timeout_ms = 0;
    conn = tls_dial(&cli, port, &co, NULL, 1);
    rec_t o = {0};
    assert_true(wait_nth(&srv, WB_EV_TCP_OPENED, opened + 1, &o));
    wb_tcp_close(rt, o.src);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, conn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EPROTO);
    assert_string_equal(r.text, "tls: handshake failed: peer closed the connection");

    /* a plain client at a TLS listener: answered with an alert and closed;
     * the listener's owner hears nothing */
    peer_t tsrv;
    peer_init(&tsrv, rt, NULL);
    peer_spawn(&tsrv);
    uint64_t tlid;
    uint16_t tport = tls_listen(&tsrv, srv_pem, srv_key, NULL, 1, &tlid);
    uint64_t pconn;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", tport, &plain, &pconn), 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, pconn, 0, NULL) >= 0);
    peer_send(&cli, pconn, "GET / HTTP/1.1\r\n\r\n", 18, 0);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, pconn, 0, &r) >= 0);
    assert_int_equal(r.status, WB_ECLOSED);
    assert_int_equal(count_type(&tsrv, WB_EV_TCP_OPENED), 0);
    assert_int_equal(count_type(&tsrv, WB_EV_TCP_CLOSED), 0);

    wb_tcp_close(rt, lid);
    wb_tcp_close(rt, tlid);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
    peer_fini(&tsrv);
}

static void test_dialer_retries(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new();
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    uint64_t lid;
    uint16_t port = tls_listen(&srv, srv_pem, srv_key, NULL, 1, &lid);
    wb_tls_opts_t co;
    client_opts(&co, "relay.example", ca_pem);
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.tls = &co;
    to.raw = 1;
    to.reconnect_min_ms = 10;
    to.reconnect_max_ms = 20;
    uint64_t d;
    assert_int_equal(wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, &to, &d),
                     0);
    rec_t r;
    int i = wait_rec(&cli, WB_EV_TCP_RETRY, d, 0, &r);
    assert_true(i >= 0);
    assert_int_equal(r.status, WB_EPROTO);
    assert_non_null(strstr(r.text, "tls: certificate verify failed: hostname mismatch (host "
                                   "relay.example); retrying in "));
    assert_true(wait_rec(&cli, WB_EV_TCP_RETRY, d, (size_t)i + 1, NULL) >= 0);
    assert_int_equal(count_type(&cli, WB_EV_TCP_OPENED), 0);
    wb_tcp_close(rt, d);
    assert_true(wait_rec(&cli, WB_EV_TCP_CLOSED, d, 0, &r) >= 0);

    /* the same with the right name connects, and the dialer's cookie is on OPENED */
    co.server_name = "localhost";
    assert_int_equal(wb_tcp_dial_persistent(rt, WB_LANE_ACTOR, cli.id, "127.0.0.1", port, &to, &d),
                     0);
    assert_true(wait_rec(&cli, WB_EV_TCP_OPENED, 0, 0, &r) >= 0);
    assert_int_equal(r.cookie, d);
    wb_tcp_close(rt, d);
    wb_tcp_close(rt, lid);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

static void test_bad_options(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new();
    peer_t p;
    peer_init(&p, rt, NULL);
    peer_spawn(&p);
    wb_tls_opts_t o;
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.tls = &o;
    uint64_t id;
    /* a listener without a certificate, a name too long: refused at the call */
    client_opts(&o, "localhost", ca_pem);
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, p.id, "127.0.0.1", 0, &to, &id), WB_EINVAL);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    o.server_name = longname;
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, p.id, "127.0.0.1", 9, &to, &id), WB_EINVAL);
    /* files that cannot be read: LISTENING(<0) / CLOSED with the reason */
    server_opts(&o, "/nonexistent/cert.pem", srv_key);
    assert_int_equal(wb_tcp_listen(rt, WB_LANE_ACTOR, p.id, "127.0.0.1", 0, &to, &id), 0);
    rec_t r;
    assert_true(wait_rec(&p, WB_EV_TCP_LISTENING, id, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EINVAL);
    assert_string_equal(r.text, "tls: cert_file /nonexistent/cert.pem: No such file or directory");
    client_opts(&o, "localhost", "/nonexistent/ca.pem");
    assert_int_equal(wb_tcp_dial(rt, WB_LANE_ACTOR, p.id, "127.0.0.1", 9, &to, &id), 0);
    assert_true(wait_rec(&p, WB_EV_TCP_CLOSED, id, 0, &r) >= 0);
    assert_int_equal(r.status, WB_EINVAL);
    assert_string_equal(r.text, "tls: ca_file /nonexistent/ca.pem: No such file or directory");
    rt_free(rt);
    peer_fini(&p);
}

/* Stop the runtime with TLS connections in every state: nothing leaks. */
static void test_stop_with_everything_open(void **state)
{
    (void)state;
    wb_rt_t *rt = rt_new();
    peer_t srv, cli;
    peer_init(&srv, rt, echo_hook);
    peer_init(&cli, rt, NULL);
    peer_spawn(&srv);
    peer_spawn(&cli);
    wb_ws_opts_t wo;
    wb_ws_opts_init(&wo);
    uint64_t lid, lid2;
    uint16_t port = tls_listen(&srv, srv_pem, srv_key, NULL, 1, &lid);
    uint16_t port2 = tls_listen(&srv, srv_pem, srv_key, &wo, 0, &lid2);
    wb_tls_opts_t co;
    client_opts(&co, "localhost", ca_pem);
    uint64_t a = tls_dial(&cli, port, &co, NULL, 1);
    uint64_t b = tls_dial(&cli, port2, &co, &wo, 0);
    peer_send(&cli, a, "x", 1, 0);
    peer_send(&cli, b, "y", 1, 0);
    assert_int_equal(wait_bytes(&cli, 2), 2);
    for (int i = 0; i < 5; i++) {
        uint64_t c = tls_dial(&cli, i % 2 ? port : port2, &co, i % 2 ? NULL : &wo, i % 2);
        peer_send(&cli, c, "z", 1, 0);
    }
    wb_tcp_close(rt, a);
    rt_free(rt);
    peer_fini(&srv);
    peer_fini(&cli);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sansio_exchange),
        cmocka_unit_test(test_sansio_verify),
        cmocka_unit_test(test_sansio_garbage_and_timeout),
        cmocka_unit_test(test_sansio_bad_options),
        cmocka_unit_test(test_raw_both_ways),
        cmocka_unit_test(test_framed),
        cmocka_unit_test(test_tiny_inbox),
        cmocka_unit_test(test_ws_over_tls),
        cmocka_unit_test(test_verify_failures),
        cmocka_unit_test(test_insecure),
        cmocka_unit_test(test_garbage_and_timeout),
        cmocka_unit_test(test_dialer_retries),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_stop_with_everything_open),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
