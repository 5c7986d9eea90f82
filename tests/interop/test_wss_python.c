/*
 * test_wss_python.c - our WebSocket-over-TLS client (wb_tcp_opts_t.ws and
 * .tls on a dial) against the real Python mailbox server behind TLS:
 * `twist3 wormhole-mailbox --port ssl:PORT:...` (Debian's
 * python3-magic-wormhole-mailbox-server on Twisted's TLS endpoint, which
 * needs python3-openssl). Its certificate, for localhost and 127.0.0.1, is
 * signed by a throwaway CA made here with the `openssl` command.
 *
 * Checked: verifying by name ("localhost") and by address (the dialed
 * 127.0.0.1), the server's welcome arrives; bind and ping get their acks
 * and the pong; our close ends with CLOSED(0). Then the same server
 * against the system trust store (which does not know our CA) and against
 * a name the certificate does not carry: CLOSED WB_EPROTO with the reason.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"
#include "sockets/tls.h"
#include "sockets/websocket.h"

#define TWIST   "/usr/bin/twist3"
#define WAIT_MS 20000

static char dir[64];
static char ca_pem[128];
static int port;
static pid_t server = -1;

/* ---- the server ------------------------------------------------------------- */

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

static int port_open(int p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)p);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int start_server(void **state)
{
    (void)state;
    if (access(TWIST, X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import OpenSSL' 2>/dev/null") != 0 ||
        system("openssl version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "needs twist3 (python3-magic-wormhole-mailbox-server), python3-openssl "
                        "and openssl: scripts/deps.sh installs them\n");
        return -1;
    }
    snprintf(dir, sizeof(dir), "/tmp/wb-wss-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
    const char *q = ">/dev/null 2>&1";
    if (sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout ca.key -out ca.pem -days 2 -subj '/CN=waybill test CA' %s",
           dir, q) != 0 ||
        sh("cd %s && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints="
           "CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && openssl req -newkey ec "
           "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr "
           "-subj '/CN=localhost' %s && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
           "-CAcreateserial -out srv.pem -days 2 -extfile ext.cnf %s",
           dir, q, q) != 0) {
        fprintf(stderr, "openssl could not make the certificates\n");
        return -1;
    }
    port = free_port();
    if (port <= 0)
        return -1;
    char endpoint[512], db[128];
    snprintf(endpoint, sizeof(endpoint),
             "ssl:%d:interface=127.0.0.1:privateKey=%s/srv.key:certKey=%s/srv.pem", port, dir, dir);
    snprintf(db, sizeof(db), "--channel-db=%s/relay.sqlite", dir);
    server = fork();
    if (server == 0) {
        if (chdir(dir) != 0)
            _exit(126);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execl(TWIST, "twist3", "wormhole-mailbox", "--port", endpoint, db, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        if (port_open(port))
            return 0;
        int st;
        if (waitpid(server, &st, WNOHANG) == server) {
            fprintf(stderr, "twist3 exited early (status %d)\n", st);
            server = -1;
            return -1;
        }
        usleep(50000);
    }
    fprintf(stderr, "twist3 did not listen on %d\n", port);
    return -1;
}

static int stop_server(void **state)
{
    (void)state;
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    sh("rm -rf %s", dir);
    return 0;
}

/* ---- a client actor --------------------------------------------------------- */

enum { MAX_MSG = 32 };

typedef struct {
    wb_rt_t *rt;
    uint64_t id;
    pthread_mutex_t m;
    pthread_cond_t c;
    uint64_t conn;
    int opened, closed, closed_status;
    char closed_text[300];
    char *types[MAX_MSG]; /* "type" of each message received, in order */
    int nmsg;
    int pong;
} client_t;

static void client_handle(wb_actor_t *self, wb_event_t *ev)
{
    client_t *c = wb_actor_state(self);
    pthread_mutex_lock(&c->m);
    if (ev->type == WB_EV_TCP_OPENED) {
        c->opened = 1;
    } else if (ev->type == WB_EV_TCP_CLOSED) {
        c->closed = 1;
        c->closed_status = ev->status;
        snprintf(c->closed_text, sizeof(c->closed_text), "%.*s", (int)ev->len,
                 (const char *)ev->data);
    } else if (ev->type == WB_EV_TCP_BLOB && c->nmsg < MAX_MSG) {
        json_t *j = json_loadb(ev->data, ev->len, 0, NULL);
        const char *t = j != NULL ? json_string_value(json_object_get(j, "type")) : NULL;
        c->types[c->nmsg++] = strdup(t != NULL ? t : "?");
        if (t != NULL && strcmp(t, "pong") == 0)
            c->pong = (int)json_integer_value(json_object_get(j, "pong"));
        json_decref(j);
    }
    pthread_cond_broadcast(&c->c);
    pthread_mutex_unlock(&c->m);
    wb_event_free(ev);
}

static const wb_actor_def_t client_def = {"wss-client", client_handle, NULL};

static void send_json(client_t *c, const char *text)
{
    wb_event_t *ev = wb_event_new_copy(WB_EV_USER, text, strlen(text));
    assert_non_null(ev);
    wb_event_route(ev, WB_LANE_ACTOR, c->id, WB_LANE_NET, c->conn);
    assert_int_equal(wb_tcp_send(c->rt, c->conn, ev), 0);
}

/* Wait until cond(c) holds (the lock held while it is checked). */
static int wait_for(client_t *c, int (*cond)(client_t *))
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&c->m);
    int ok;
    while (!(ok = cond(c)))
        if (pthread_cond_timedwait(&c->c, &c->m, &ts) != 0)
            break;
    pthread_mutex_unlock(&c->m);
    return ok;
}

static int is_closed(client_t *c)
{
    return c->closed;
}

static int count_type(client_t *c, const char *type)
{
    int n = 0;
    for (int i = 0; i < c->nmsg; i++)
        n += strcmp(c->types[i], type) == 0;
    return n;
}

static int has_welcome(client_t *c)
{
    return c->closed || count_type(c, "welcome") == 1;
}

static int has_all(client_t *c)
{
    return c->closed || (count_type(c, "ack") == 2 && c->pong == 7);
}

/* A wss dial to the server; server_name NULL checks the dialed address. */
static void dial(wb_rt_t *rt, client_t *c, const char *server_name, const char *ca)
{
    memset(c, 0, sizeof(*c));
    c->rt = rt;
    pthread_mutex_init(&c->m, NULL);
    pthread_cond_init(&c->c, NULL);
    assert_int_equal(wb_actor_spawn(rt, NULL, &client_def, c, &c->id), 0);
    wb_ws_opts_t wo;
    wb_ws_opts_init(&wo);
    wb_tls_opts_t tlo;
    wb_tls_opts_init(&tlo);
    tlo.server_name = server_name;
    tlo.ca_file = ca;
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.ws = &wo;
    to.tls = &tlo;
    assert_int_equal(
        wb_tcp_dial(rt, WB_LANE_ACTOR, c->id, "127.0.0.1", (uint16_t)port, &to, &c->conn), 0);
}

static void client_fini(client_t *c)
{
    for (int i = 0; i < c->nmsg; i++)
        free(c->types[i]);
    pthread_mutex_destroy(&c->m);
    pthread_cond_destroy(&c->c);
}

static void exchange(const char *server_name)
{
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    client_t c;
    dial(rt, &c, server_name, ca_pem);
    if (!wait_for(&c, has_welcome) || c.closed)
        fail_msg("no welcome: %s", c.closed ? c.closed_text : "timed out");
    assert_true(c.opened);
    assert_string_equal(c.types[0], "welcome");
    send_json(&c, "{\"type\": \"bind\", \"appid\": \"waybill.test/wss\", \"side\": \"abcd\", "
                  "\"client_version\": [\"waybill\", \"0\"], \"id\": \"b1\"}");
    send_json(&c, "{\"type\": \"ping\", \"ping\": 7, \"id\": \"p1\"}");
    if (!wait_for(&c, has_all) || c.closed)
        fail_msg("no ack/pong: %s", c.closed ? c.closed_text : "timed out");
    assert_int_equal(count_type(&c, "error"), 0);
    assert_int_equal(wb_tcp_close(rt, c.conn), 0);
    assert_true(wait_for(&c, is_closed));
    assert_int_equal(c.closed_status, 0);
    wb_rt_free(rt);
    client_fini(&c);
}

static void test_by_name(void **state)
{
    (void)state;
    exchange("localhost");
}

static void test_by_address(void **state)
{
    (void)state;
    exchange(NULL);
}

static void refused(const char *server_name, const char *ca, const char *reason)
{
    wb_rt_t *rt;
    assert_int_equal(wb_rt_new(&rt, NULL), 0);
    assert_int_equal(wb_sockets_attach(rt, NULL), 0);
    assert_int_equal(wb_rt_start(rt), 0);
    client_t c;
    dial(rt, &c, server_name, ca);
    assert_true(wait_for(&c, is_closed));
    assert_false(c.opened);
    assert_int_equal(c.closed_status, WB_EPROTO);
    if (strcmp(c.closed_text, reason) != 0)
        fail_msg("reason \"%s\", expected \"%s\"", c.closed_text, reason);
    wb_rt_free(rt);
    client_fini(&c);
}

static void test_refused(void **state)
{
    (void)state;
    refused("localhost", NULL,
            "tls: certificate verify failed: unable to get local issuer certificate "
            "(host localhost)");
    refused("relay.example", ca_pem,
            "tls: certificate verify failed: hostname mismatch (host relay.example)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_name),
        cmocka_unit_test(test_by_address),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
