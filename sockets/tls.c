/*
 * tls.c - TLS, sans-io, over OpenSSL with memory BIOs. The contract is in
 * tls.h. How it is kept:
 *
 * Each connection is an SSL whose read BIO is a memory BIO we write the
 * peer's ciphertext into and whose write BIO is a memory BIO we take the
 * ciphertext to send from (BIO_get_mem_data, then BIO_reset: no copy out
 * of OpenSSL but the caller's). An empty read BIO answers "retry", so every
 * SSL call returns WANT_READ instead of blocking, and the handshake is
 * simply re-run after each feed. Memory BIOs keep their largest buffer; a
 * connection that is idle gives back any above BIO_KEEP, and
 * SSL_MODE_RELEASE_BUFFERS lets OpenSSL drop its record buffers between
 * records, so an idle TLS connection costs the SSL object only.
 *
 * Errors. OpenSSL reports through a per-thread queue: it is cleared before
 * each call and read after a failure. A verification failure is told from
 * SSL_get_verify_result (X509_verify_cert_error_string: "hostname
 * mismatch", "certificate has expired"...), anything else from the first
 * reason on the queue ("wrong version number", the text of an alert).
 */
#include "sockets/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "runtime/assert.h"
#include "runtime/error.h"

#define REASON_MAX     300
#define NAME_MAX_      253
#define BIO_KEEP       (64u << 10) /* an idle connection's BIO buffer above this is dropped */
#define DEF_TIMEOUT_MS 10000u

typedef struct ctxent_s {
    struct ctxent_s *next;
    wb_tls_role_t role;
    char *ca, *cert, *key; /* the key; NULL for none */
    SSL_CTX *ctx;
} ctxent_t;

struct wb_tls_cache_s {
    ctxent_t *head;
};

struct wb_tls_s {
    SSL *ssl;
    wb_tls_role_t role;
    wb_tls_state_t state;
    int result;
    int closing;
    int peer_closed;
    int insecure;
    uint32_t timeout_ms;
    char host[NAME_MAX_ + 1];
    char reason[REASON_MAX];
};

void wb_tls_opts_init(wb_tls_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->handshake_timeout_ms = DEF_TIMEOUT_MS;
}

/* ---- errors ----------------------------------------------------------------- */

/* The first reason on OpenSSL's queue (the queue is emptied). */
static void queue_text(char *out, size_t n, int *nomem)
{
    unsigned long e, first = 0;
    while ((e = ERR_get_error()) != 0)
        if (first == 0)
            first = e;
    if (first == 0) {
        snprintf(out, n, "unexpected end of handshake data");
        return;
    }
    if (nomem != NULL && ERR_GET_REASON(first) == ERR_R_MALLOC_FAILURE)
        *nomem = 1;
    const char *r = ERR_reason_error_string(first);
    if (r != NULL) {
        snprintf(out, n, "%s", r);
    } else {
        ERR_error_string_n(first, out, n);
    }
}

/* The connection failed in an SSL call that returned err (SSL_get_error):
 * DONE with the reason. Returns the result. */
static int fail(wb_tls_t *t, int err)
{
    char why[REASON_MAX - 64];
    int nomem = 0;
    long v = t->role == WB_TLS_CLIENT && !t->insecure ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    if (v != X509_V_OK) {
        ERR_clear_error();
        snprintf(t->reason, sizeof(t->reason), "tls: certificate verify failed: %s (host %s)",
                 X509_verify_cert_error_string(v), t->host);
    } else {
        if (err == SSL_ERROR_SSL)
            queue_text(why, sizeof(why), &nomem);
        else
            snprintf(why, sizeof(why), "unexpected error %d", err);
        ERR_clear_error();
        snprintf(t->reason, sizeof(t->reason), "tls: %s%s",
                 t->state == WB_TLS_HANDSHAKE ? "handshake failed: " : "", why);
    }
    t->state = WB_TLS_DONE;
    t->result = nomem ? WB_ENOMEM : WB_EPROTO;
    return t->result;
}

/* ---- contexts --------------------------------------------------------------- */

static int streq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static char *dup_or_null(const char *s, int *bad)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *bad = 1;
    return d;
}

/* A file we are about to give OpenSSL: a clear reason when it cannot be read. */
static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        wb_errf(err, errlen, "tls: %s %s: %s", what, path, strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

static int load_failed(const char *what, const char *path, char *err, size_t errlen)
{
    char why[200];
    queue_text(why, sizeof(why), NULL);
    wb_errf(err, errlen, "tls: %s %s: %s", what, path, why);
    return WB_EINVAL;
}

static int ctx_make(SSL_CTX **out, wb_tls_role_t role, const wb_tls_opts_t *o, char *err,
                    size_t errlen)
{
    ERR_clear_error();
    if (role == WB_TLS_SERVER && (o->cert_file == NULL || o->key_file == NULL)) {
        wb_errf(err, errlen, "tls: a server needs cert_file and key_file");
        return WB_EINVAL;
    }
    SSL_CTX *ctx = SSL_CTX_new(role == WB_TLS_CLIENT ? TLS_client_method() : TLS_server_method());
    if (ctx == NULL) {
        wb_errf(err, errlen, "tls: out of memory");
        return WB_ENOMEM;
    }
    int rc = 0;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (role == WB_TLS_CLIENT) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (o->ca_file != NULL) {
            if (!readable("ca_file", o->ca_file, err, errlen))
                rc = WB_EINVAL;
            else if (SSL_CTX_load_verify_file(ctx, o->ca_file) != 1)
                rc = load_failed("ca_file", o->ca_file, err, errlen);
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            rc = load_failed("system trust store", "", err, errlen);
        }
    } else {
        if (!readable("cert_file", o->cert_file, err, errlen) ||
            !readable("key_file", o->key_file, err, errlen))
            rc = WB_EINVAL;
        else if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1)
            rc = load_failed("cert_file", o->cert_file, err, errlen);
        else if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1)
            rc = load_failed("key_file", o->key_file, err, errlen);
        else if (SSL_CTX_check_private_key(ctx) != 1)
            rc = load_failed("key_file", o->key_file, err, errlen);
    }
    ERR_clear_error();
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

int wb_tls_cache_new(wb_tls_cache_t **out)
{
    WB_ASSERT(out != NULL);
    *out = calloc(1, sizeof(**out));
    return *out != NULL ? 0 : WB_ENOMEM;
}

void wb_tls_cache_free(wb_tls_cache_t *c)
{
    if (c == NULL)
        return;
    while (c->head != NULL) {
        ctxent_t *e = c->head;
        c->head = e->next;
        SSL_CTX_free(e->ctx); /* connections keep their own reference */
        free(e->ca);
        free(e->cert);
        free(e->key);
        free(e);
    }
    free(c);
}

/* The cache's context for role and o (made on first use). */
static int cache_get(wb_tls_cache_t *c, wb_tls_role_t role, const wb_tls_opts_t *o, SSL_CTX **out,
                     char *err, size_t errlen)
{
    const char *ca = role == WB_TLS_CLIENT ? o->ca_file : NULL;
    const char *cert = role == WB_TLS_SERVER ? o->cert_file : NULL;
    const char *key = role == WB_TLS_SERVER ? o->key_file : NULL;
    for (ctxent_t *e = c->head; e != NULL; e = e->next) {
        if (e->role == role && streq(e->ca, ca) && streq(e->cert, cert) && streq(e->key, key)) {
            *out = e->ctx;
            return 0;
        }
    }
    SSL_CTX *ctx;
    int rc = ctx_make(&ctx, role, o, err, errlen);
    if (rc != 0)
        return rc;
    int bad = 0;
    ctxent_t *e = calloc(1, sizeof(*e));
    if (e != NULL) {
        e->ca = dup_or_null(ca, &bad);
        e->cert = dup_or_null(cert, &bad);
        e->key = dup_or_null(key, &bad);
    }
    if (e == NULL || bad) {
        if (e != NULL) {
            free(e->ca);
            free(e->cert);
            free(e->key);
            free(e);
        }
        SSL_CTX_free(ctx);
        wb_errf(err, errlen, "tls: out of memory");
        return WB_ENOMEM;
    }
    e->role = role;
    e->ctx = ctx;
    e->next = c->head;
    c->head = e;
    *out = ctx;
    return 0;
}

int wb_tls_cache_prepare(wb_tls_cache_t *c, wb_tls_role_t role, const wb_tls_opts_t *opts,
                         char *err, size_t errlen)
{
    SSL_CTX *ctx;
    if (c == NULL || opts == NULL)
        return WB_EINVAL;
    return cache_get(c, role, opts, &ctx, err, errlen);
}

/* ---- connections ------------------------------------------------------------ */

static BIO *mem_bio(void)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL)
        BIO_set_mem_eof_return(b, -1); /* empty: retry, not EOF */
    return b;
}

/* Whether name is an IP address literal (brackets stripped into buf). */
static int is_ip(const char *name, char *buf, size_t n)
{
    size_t len = strlen(name);
    if (len >= 2 && name[0] == '[' && name[len - 1] == ']' && len - 2 < n) {
        memcpy(buf, name + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        snprintf(buf, n, "%s", name);
    }
    unsigned char a[16];
    return inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1;
}

/* Run the handshake as far as the input allows. */
static int step(wb_tls_t *t)
{
    if (t->state != WB_TLS_HANDSHAKE)
        return t->state == WB_TLS_DONE ? t->result : 0;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->state = WB_TLS_OPEN;
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
    }
    return fail(t, e);
}

int wb_tls_new(wb_tls_t **out, wb_tls_role_t role, const wb_tls_opts_t *opts, wb_tls_cache_t *cache,
               char *err, size_t errlen)
{
    if (out == NULL || opts == NULL || (role != WB_TLS_CLIENT && role != WB_TLS_SERVER))
        return WB_EINVAL;
    *out = NULL;
    const char *name = opts->server_name;
    if (role == WB_TLS_CLIENT &&
        ((name == NULL && !opts->insecure) ||
         (name != NULL && (name[0] == '\0' || strlen(name) > NAME_MAX_)))) {
        wb_errf(err, errlen, "tls: a client needs server_name (1 to %d bytes)", NAME_MAX_);
        return WB_EINVAL;
    }
    SSL_CTX *ctx;
    int rc = cache != NULL ? cache_get(cache, role, opts, &ctx, err, errlen)
                           : ctx_make(&ctx, role, opts, err, errlen);
    if (rc != 0)
        return rc;
    wb_tls_t *t = calloc(1, sizeof(*t));
    SSL *ssl = t != NULL ? SSL_new(ctx) : NULL;
    if (cache == NULL)
        SSL_CTX_free(ctx); /* the SSL holds it */
    BIO *rb = ssl != NULL ? mem_bio() : NULL;
    BIO *wb = rb != NULL ? mem_bio() : NULL;
    if (wb == NULL) {
        BIO_free(rb);
        SSL_free(ssl);
        free(t);
        ERR_clear_error();
        wb_errf(err, errlen, "tls: out of memory");
        return WB_ENOMEM;
    }
    SSL_set_bio(ssl, rb, wb);
    t->ssl = ssl;
    t->role = role;
    t->insecure = opts->insecure != 0;
    t->timeout_ms = opts->handshake_timeout_ms ? opts->handshake_timeout_ms : DEF_TIMEOUT_MS;
    if (role == WB_TLS_SERVER) {
        SSL_set_accept_state(ssl);
        *out = t;
        return 0;
    }
    int ok = 1;
    if (name != NULL) {
        char ip[NAME_MAX_ + 1];
        snprintf(t->host, sizeof(t->host), "%s", name);
        if (is_ip(name, ip, sizeof(ip))) {
            if (!t->insecure)
                ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) == 1;
        } else {
            ok = SSL_set_tlsext_host_name(ssl, name) == 1;
            if (ok && !t->insecure) {
                X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
                X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                ok = X509_VERIFY_PARAM_set1_host(vp, name, 0) == 1;
            }
        }
    }
    if (!ok) {
        char why[200];
        queue_text(why, sizeof(why), NULL);
        wb_errf(err, errlen, "tls: server_name %s: %s", name, why);
        SSL_free(ssl);
        free(t);
        return WB_EINVAL;
    }
    if (t->insecure)
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    SSL_set_connect_state(ssl);
    step(t); /* the ClientHello */
    if (t->state == WB_TLS_DONE) {
        wb_errf(err, errlen, "%s", t->reason);
        rc = t->result;
        wb_tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void wb_tls_free(wb_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and its BIOs */
    free(t);
}

int wb_tls_feed(wb_tls_t *t, const uint8_t *in, size_t len)
{
    WB_ASSERT(t != NULL);
    if (t->state == WB_TLS_DONE)
        return 0;
    while (len > 0) {
        int k = len > (1u << 30) ? 1 << 30 : (int)len;
        ERR_clear_error();
        if (BIO_write(SSL_get_rbio(t->ssl), in, k) != k) {
            ERR_clear_error();
            snprintf(t->reason, sizeof(t->reason), "tls: out of memory");
            t->state = WB_TLS_DONE;
            t->result = WB_ENOMEM;
            return t->result;
        }
        in += k;
        len -= (size_t)k;
    }
    return step(t);
}

/* Give back a memory BIO's buffer when it is empty and large. */
static void trim(wb_tls_t *t)
{
    BUF_MEM *m;
    BIO *r = SSL_get_rbio(t->ssl);
    if (BIO_ctrl_pending(r) == 0 && BIO_get_mem_ptr(r, &m) == 1 && m->max > BIO_KEEP) {
        BIO *nb = mem_bio();
        if (nb != NULL)
            SSL_set0_rbio(t->ssl, nb);
    }
}

int wb_tls_read(wb_tls_t *t, uint8_t *buf, size_t cap, size_t *got)
{
    WB_ASSERT(t != NULL && got != NULL);
    *got = 0;
    int rc = step(t);
    if (t->state != WB_TLS_OPEN || cap == 0)
        return rc;
    ERR_clear_error();
    size_t n = 0;
    int r = SSL_read_ex(t->ssl, buf, cap, &n);
    if (r == 1) {
        *got = n;
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        trim(t);
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        t->peer_closed = 1;
        t->state = WB_TLS_DONE;
        t->result = 0;
        t->reason[0] = '\0';
        return 0;
    }
    return fail(t, e);
}

int wb_tls_write(wb_tls_t *t, const uint8_t *p, size_t len)
{
    WB_ASSERT(t != NULL);
    if (t->state == WB_TLS_DONE || t->closing)
        return WB_ECLOSED;
    if (t->state == WB_TLS_HANDSHAKE)
        return WB_EAGAIN;
    while (len > 0) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_write_ex(t->ssl, p, len, &n);
        if (r != 1) {
            int rc = fail(t, SSL_get_error(t->ssl, r));
            return rc == WB_ENOMEM ? WB_ENOMEM : WB_ECLOSED;
        }
        p += n;
        len -= n;
    }
    return 0;
}

int wb_tls_close(wb_tls_t *t)
{
    WB_ASSERT(t != NULL);
    if (t->state == WB_TLS_HANDSHAKE) {
        t->state = WB_TLS_DONE;
        t->result = 0;
        return 0;
    }
    /* After the peer's close_notify ours answers it. */
    if ((t->state == WB_TLS_OPEN || (t->state == WB_TLS_DONE && t->peer_closed)) && !t->closing) {
        t->closing = 1;
        ERR_clear_error();
        SSL_shutdown(t->ssl); /* close_notify into the output; no wait for the peer's */
        ERR_clear_error();
        t->state = WB_TLS_DONE;
        t->result = 0;
    }
    return 0;
}

int wb_tls_timeout(wb_tls_t *t)
{
    WB_ASSERT(t != NULL);
    if (t->state != WB_TLS_HANDSHAKE)
        return 0;
    snprintf(t->reason, sizeof(t->reason), "tls: handshake timed out after %u ms", t->timeout_ms);
    t->state = WB_TLS_DONE;
    t->result = WB_ETIMEDOUT;
    return 1;
}

size_t wb_tls_output(wb_tls_t *t, const uint8_t **p)
{
    WB_ASSERT(t != NULL && p != NULL);
    char *d = NULL;
    long n = BIO_get_mem_data(SSL_get_wbio(t->ssl), &d);
    *p = (const uint8_t *)d;
    return n > 0 ? (size_t)n : 0;
}

void wb_tls_output_done(wb_tls_t *t)
{
    WB_ASSERT(t != NULL);
    BIO *w = SSL_get_wbio(t->ssl);
    BUF_MEM *m;
    if (BIO_get_mem_ptr(w, &m) == 1 && m->max > BIO_KEEP) {
        BIO *nb = mem_bio();
        if (nb != NULL) {
            SSL_set0_wbio(t->ssl, nb); /* frees the old one */
            return;
        }
    }
    (void)BIO_reset(w);
}

wb_tls_state_t wb_tls_state(const wb_tls_t *t)
{
    return t->state;
}

int wb_tls_result(const wb_tls_t *t, const char **reason)
{
    int done = t->state == WB_TLS_DONE;
    if (reason != NULL)
        *reason = done ? t->reason : "";
    return done ? t->result : 0;
}

int wb_tls_peer_closed(const wb_tls_t *t)
{
    return t->peer_closed;
}

const char *wb_tls_version(const wb_tls_t *t)
{
    return t->state == WB_TLS_OPEN ? SSL_get_version(t->ssl) : "";
}
