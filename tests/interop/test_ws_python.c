/*
 * test_ws_python.c - our WebSocket server (sockets/websocket.h on a raw
 * sockets/tcp.h listener, run by an actor) against a real peer: Debian's
 * python3-websockets client, which offers permessage-deflate (declined),
 * masks its frames, fragments when asked, and pings.
 *
 * The Python side checks: GET / is the text/plain page, GET /nope is 404; on
 * /v1 no extension is negotiated; text, 1 MiB binary and a fragmented
 * message come back intact; a ping is answered; the close handshake ends
 * with 1000; a 3 MiB message is refused with 1009; an upgrade on /v2 gets
 * 404; a raw socket that never finishes its request is closed after the
 * handshake timeout (1 s here).
 *
 * And our client (sockets/websocket.h on a raw dial) against
 * python3-websockets' server: text and a 1 MiB binary message echoed, then
 * the close handshake with 1000.
 *
 * And the same client script against a listener in WebSocket mode
 * (wb_tcp_opts_t.ws: the handshake, frames and closes run on the network
 * lane), whose actor only sees whole messages and echoes them back with
 * their kind (WB_TCP_BLOB_BINARY) kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"
#include "sockets/websocket.h"

#define PYTHON "/usr/bin/python3"
#define SLOTS  32

typedef struct {
    uint64_t conn, timer;
    wb_ws_conn_t *ws;
} slot_t;

typedef struct {
    wb_rt_t *rt;
    uint64_t self;
    slot_t slots[SLOTS];
    _Atomic int port; /* set once LISTENING arrived */
} srv_t;

static void echo(wb_ws_conn_t *c, void *u, int op, const uint8_t *d, size_t n)
{
    wb_ws_send(c, op, d, n);
}

static slot_t *find(srv_t *s, uint64_t conn)
{
    for (int i = 0; i < SLOTS; i++)
        if (s->slots[i].ws != NULL && s->slots[i].conn == conn)
            return &s->slots[i];
    return NULL;
}

static void flush(srv_t *s, slot_t *sl)
{
    const uint8_t *p;
    size_t n = wb_ws_output(sl->ws, &p);
    if (n > 0) {
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, p, n);
        wb_event_route(ev, WB_LANE_ACTOR, s->self, WB_LANE_NET, sl->conn);
        if (wb_tcp_send(s->rt, sl->conn, ev) != 0)
            wb_event_free(ev);
        wb_ws_output_done(sl->ws);
    }
    if (wb_ws_state(sl->ws) == WB_WS_DONE)
        wb_tcp_close(s->rt, sl->conn);
}

static void srv_handle(wb_actor_t *self, wb_event_t *ev)
{
    srv_t *s = wb_actor_state(self);
    s->self = wb_actor_id(self);
    slot_t *sl;
    switch (ev->type) {
    case WB_EV_TCP_LISTENING:
        s->port = ev->status == 0 ? (int)ev->cookie : -1;
        break;
    case WB_EV_TCP_OPENED:
        for (int i = 0; i < SLOTS; i++) {
            if (s->slots[i].ws != NULL)
                continue;
            wb_ws_opts_t o;
            wb_ws_opts_init(&o);
            o.max_message = 2u << 20;
            o.handshake_timeout_ms = 1000;
            static const wb_ws_cb_t cb = {NULL, echo, NULL};
            sl = &s->slots[i];
            if (wb_ws_new(&sl->ws, WB_WS_SERVER, &o, &cb, s) != 0)
                break;
            sl->conn = ev->src;
            wb_timer_start(self, o.handshake_timeout_ms, &sl->timer);
            break;
        }
        break;
    case WB_EV_TCP_BLOB:
        if ((sl = find(s, ev->src)) != NULL) {
            wb_ws_feed(sl->ws, ev->data, ev->len);
            flush(s, sl);
        }
        break;
    case WB_EV_TIMER:
        for (int i = 0; i < SLOTS; i++) {
            sl = &s->slots[i];
            if (sl->ws != NULL && sl->timer == ev->cookie && wb_ws_timeout(sl->ws))
                flush(s, sl);
        }
        break;
    case WB_EV_TCP_CLOSED:
        if ((sl = find(s, ev->src)) != NULL) {
            wb_ws_free(sl->ws);
            memset(sl, 0, sizeof(*sl));
        }
        break;
    default:
        break;
    }
    wb_event_free(ev);
}

static void srv_fini(wb_actor_t *self)
{
    srv_t *s = wb_actor_state(self);
    for (int i = 0; i < SLOTS; i++)
        wb_ws_free(s->slots[i].ws);
}

static const wb_actor_def_t srv_def = {"ws-server", srv_handle, srv_fini};

static const char SCRIPT[] =
    "import asyncio, sys, socket, time, http.client, websockets\n"
    "port = int(sys.argv[1])\n"
    "c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)\n"
    "c.request('GET', '/'); r = c.getresponse(); b = r.read()\n"
    "assert r.status == 200, r.status\n"
    "assert r.getheader('Content-Type').startswith('text/plain'), r.getheader('Content-Type')\n"
    "assert b'WebSocket on /v1' in b, b\n"
    "c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)\n"
    "c.request('GET', '/nope'); r = c.getresponse(); r.read()\n"
    "assert r.status == 404, r.status\n"
    "async def main():\n"
    "    url = 'ws://127.0.0.1:%d/v1' % port\n"
    "    async with websockets.connect(url, max_size=2**22) as ws:\n"
    "        assert ws.extensions == [], ws.extensions\n"
    "        await ws.send('hello'); assert await ws.recv() == 'hello'\n"
    "        big = bytes(range(256)) * 4096\n"
    "        await ws.send(big); assert await ws.recv() == big\n"
    "        await ws.send(iter(['frag', 'mented', ' text']))\n"
    "        assert await ws.recv() == 'fragmented text'\n"
    "        await asyncio.wait_for(await ws.ping(b'x'), 10)\n"
    "    assert ws.close_code == 1000, ws.close_code\n"
    "    async with websockets.connect(url, max_size=None) as ws:\n"
    "        await ws.send(bytes(3 << 20))\n"
    "        try:\n"
    "            await ws.recv(); raise SystemExit('3 MiB accepted')\n"
    "        except websockets.exceptions.ConnectionClosed as e:\n"
    "            assert e.rcvd is not None and e.rcvd.code == 1009, e\n"
    "    try:\n"
    "        async with websockets.connect('ws://127.0.0.1:%d/v2' % port):\n"
    "            raise SystemExit('upgrade on /v2 accepted')\n"
    "    except websockets.exceptions.InvalidStatusCode as e:\n"
    "        assert e.status_code == 404, e.status_code\n"
    "asyncio.run(main())\n"
    "s = socket.create_connection(('127.0.0.1', port)); s.settimeout(10)\n"
    "t = time.monotonic(); s.sendall(b'GET /v1 HTTP/1.1\\r\\nHost: x\\r\\n')\n"
    "assert s.recv(100) == b'', 'slow request not closed'\n"
    "assert 0.5 < time.monotonic() - t < 8, time.monotonic() - t\n"
    "print('python websockets client: ok')\n";

static void require_python(void)
{
    if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import websockets' 2>/dev/null") != 0) {
        fprintf(stderr, "python3-websockets not installed (scripts/deps.sh installs it)\n");
        fail();
    }
}

/* Run SCRIPT against port; its exit status. */
static int run_script(int port)
{
    char script[] = "/tmp/wb_ws_python_XXXXXX";
    int fd = mkstemp(script);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, SCRIPT, sizeof(SCRIPT) - 1), (ssize_t)(sizeof(SCRIPT) - 1));
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "timeout 60 " PYTHON " %s %d", script, port);
    int rc = system(cmd);
    unlink(script);
    return rc;
}

static void test_python_client(void **st)
{
    require_python();
    srv_t s;
    memset(&s, 0, sizeof(s));
    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    assert_int_equal(wb_rt_new(&s.rt, &cfg), 0);
    assert_int_equal(wb_sockets_attach(s.rt, NULL), 0);
    assert_int_equal(wb_rt_start(s.rt), 0);
    uint64_t aid, lid;
    assert_int_equal(wb_actor_spawn(s.rt, NULL, &srv_def, &s, &aid), 0);
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.raw = 1;
    to.max_message = 4u << 20;
    assert_int_equal(wb_tcp_listen(s.rt, WB_LANE_ACTOR, aid, "127.0.0.1", 0, &to, &lid), 0);
    for (int i = 0; i < 1000 && s.port == 0; i++)
        usleep(10000);
    assert_true(s.port > 0);
    int rc = run_script(s.port);
    wb_rt_stop(s.rt);
    wb_rt_free(s.rt);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 0);
}

/* ---- the same client against a listener in WebSocket mode ---- */

typedef struct {
    wb_rt_t *rt;
    _Atomic int port;
    _Atomic int opened, closed, bad; /* OPENED and CLOSED seen; events that should not come */
} lane_srv_t;

static void lane_handle(wb_actor_t *self, wb_event_t *ev)
{
    lane_srv_t *s = wb_actor_state(self);
    switch (ev->type) {
    case WB_EV_TCP_LISTENING:
        s->port = ev->status == 0 ? (int)ev->cookie : -1;
        break;
    case WB_EV_TCP_OPENED:
        s->opened++;
        break;
    case WB_EV_TCP_CLOSED:
        s->closed++;
        break;
    case WB_EV_TCP_BLOB: {
        /* Echo: the same event, WB_TCP_BLOB_BINARY and all. */
        uint64_t conn = ev->src;
        wb_event_route(ev, WB_LANE_ACTOR, wb_actor_id(self), WB_LANE_NET, conn);
        if (wb_tcp_send(s->rt, conn, ev) == 0)
            return;
        s->bad++;
        break;
    }
    default:
        break;
    }
    wb_event_free(ev);
}

static const wb_actor_def_t lane_def = {"ws-lane-server", lane_handle, NULL};

static void test_python_client_lane(void **st)
{
    require_python();
    lane_srv_t s;
    memset(&s, 0, sizeof(s));
    wb_rt_config_t cfg;
    wb_rt_config_init(&cfg);
    assert_int_equal(wb_rt_new(&s.rt, &cfg), 0);
    assert_int_equal(wb_sockets_attach(s.rt, NULL), 0);
    assert_int_equal(wb_rt_start(s.rt), 0);
    uint64_t aid, lid;
    assert_int_equal(wb_actor_spawn(s.rt, NULL, &lane_def, &s, &aid), 0);
    wb_ws_opts_t o;
    wb_ws_opts_init(&o);
    o.max_message = 2u << 20;
    o.handshake_timeout_ms = 1000;
    wb_tcp_opts_t to;
    wb_tcp_opts_init(&to);
    to.max_message = 4u << 20;
    to.ws = &o;
    assert_int_equal(wb_tcp_listen(s.rt, WB_LANE_ACTOR, aid, "127.0.0.1", 0, &to, &lid), 0);
    for (int i = 0; i < 1000 && s.port == 0; i++)
        usleep(10000);
    assert_true(s.port > 0);
    int rc = run_script(s.port);
    /* The script's two upgraded connections were the only ones the actor
     * heard of (GET /, the 404s and the slow request never reach it). */
    for (int i = 0; i < 500 && s.closed < 2; i++)
        usleep(10000);
    wb_rt_stop(s.rt);
    wb_rt_free(s.rt);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 0);
    assert_int_equal(s.opened, 2);
    assert_int_equal(s.closed, 2);
    assert_int_equal(s.bad, 0);
}

/* ---- our client against python3-websockets' server ---- */

#define BIG (1u << 20)

typedef struct {
    wb_rt_t *rt;
    uint64_t self, conn;
    int port;
    wb_ws_conn_t *ws;
    uint8_t *big;
    int echoes;
    _Atomic int result; /* 0 running, 1 ok, -1 failed */
} cli_t;

static void cli_flush(cli_t *c)
{
    const uint8_t *p;
    size_t n = wb_ws_output(c->ws, &p);
    if (n > 0) {
        wb_event_t *ev = wb_event_new_copy(WB_EV_USER, p, n);
        wb_event_route(ev, WB_LANE_ACTOR, c->self, WB_LANE_NET, c->conn);
        if (wb_tcp_send(c->rt, c->conn, ev) != 0) {
            wb_event_free(ev);
            c->result = -1;
        }
        wb_ws_output_done(c->ws);
    }
    if (wb_ws_state(c->ws) == WB_WS_DONE)
        wb_tcp_close(c->rt, c->conn);
}

static void cli_open(wb_ws_conn_t *w, void *u)
{
    cli_t *c = u;
    if (wb_ws_send(w, WB_WS_TEXT, (const uint8_t *)"hello", 5) != 0 ||
        wb_ws_send(w, WB_WS_BINARY, c->big, BIG) != 0)
        c->result = -1;
}

static void cli_msg(wb_ws_conn_t *w, void *u, int op, const uint8_t *d, size_t n)
{
    cli_t *c = u;
    int ok = c->echoes == 0 ? op == WB_WS_TEXT && n == 5 && memcmp(d, "hello", 5) == 0
                            : op == WB_WS_BINARY && n == BIG && memcmp(d, c->big, BIG) == 0;
    if (!ok)
        c->result = -1;
    else if (++c->echoes == 2)
        wb_ws_close(w, WB_WS_CLOSE_NORMAL, "done");
}

static void cli_handle(wb_actor_t *self, wb_event_t *ev)
{
    cli_t *c = wb_actor_state(self);
    if (ev->type == WB_EV_USER && c->ws == NULL) {
        /* The test thread's go: dial. */
        c->self = wb_actor_id(self);
        wb_ws_opts_t o;
        wb_ws_opts_init(&o);
        o.max_message = 2u << 20;
        o.host = "127.0.0.1";
        static const wb_ws_cb_t cb = {cli_open, cli_msg, NULL};
        wb_tcp_opts_t to;
        wb_tcp_opts_init(&to);
        to.raw = 1;
        to.max_message = 4u << 20;
        if (wb_ws_new(&c->ws, WB_WS_CLIENT, &o, &cb, c) != 0 ||
            wb_tcp_dial(c->rt, WB_LANE_ACTOR, c->self, "127.0.0.1", (uint16_t)c->port, &to,
                        &c->conn) != 0)
            c->result = -1;
        else
            cli_flush(c);
    } else if (ev->type == WB_EV_TCP_BLOB && ev->src == c->conn) {
        if (wb_ws_feed(c->ws, ev->data, ev->len) != 0)
            c->result = -1;
        cli_flush(c);
    } else if (ev->type == WB_EV_TCP_CLOSED && ev->src == c->conn) {
        int ok = wb_ws_state(c->ws) == WB_WS_DONE && c->echoes == 2 &&
                 wb_ws_close_code(c->ws) == WB_WS_CLOSE_NORMAL;
        if (c->result == 0)
            c->result = ok ? 1 : -1;
    }
    wb_event_free(ev);
}

static void cli_fini(wb_actor_t *self)
{
    cli_t *c = wb_actor_state(self);
    wb_ws_free(c->ws);
}

static const wb_actor_def_t cli_def = {"ws-client", cli_handle, cli_fini};

static const char SERVER_SCRIPT[] =
    "import asyncio, sys, websockets\n"
    "async def echo(ws):\n"
    "    async for m in ws:\n"
    "        await ws.send(m)\n"
    "async def main():\n"
    "    async with websockets.serve(echo, '127.0.0.1', 0, max_size=2**22) as srv:\n"
    "        print(srv.sockets[0].getsockname()[1], flush=True)\n"
    "        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)\n"
    "asyncio.run(main())\n";

static void test_python_server(void **st)
{
    char script[] = "/tmp/wb_ws_pyserver_XXXXXX";
    int fd = mkstemp(script);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, SERVER_SCRIPT, sizeof(SERVER_SCRIPT) - 1),
                     (ssize_t)(sizeof(SERVER_SCRIPT) - 1));
    close(fd);
    /* The server reads stdin until EOF: closing our end stops it. */
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl("/usr/bin/timeout", "timeout", "60", PYTHON, script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    /* Read the port line; keep the pipe open until the server is gone. */
    char line[32] = {0};
    size_t got = 0;
    while (got < sizeof(line) - 1 && memchr(line, '\n', got) == NULL) {
        ssize_t n = read(out[0], line + got, sizeof(line) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    unlink(script);
    int port = memchr(line, '\n', got) != NULL ? atoi(line) : 0;
    cli_t c;
    memset(&c, 0, sizeof(c));
    c.port = port;
    c.big = malloc(BIG);
    for (uint32_t i = 0; i < BIG; i++)
        c.big[i] = (uint8_t)(i * 2654435761u >> 11);
    if (port > 0) {
        wb_rt_config_t cfg;
        wb_rt_config_init(&cfg);
        assert_int_equal(wb_rt_new(&c.rt, &cfg), 0);
        assert_int_equal(wb_sockets_attach(c.rt, NULL), 0);
        assert_int_equal(wb_rt_start(c.rt), 0);
        uint64_t aid;
        assert_int_equal(wb_actor_spawn(c.rt, NULL, &cli_def, &c, &aid), 0);
        wb_event_t *go = wb_event_new(WB_EV_USER, 0);
        wb_event_route(go, WB_LANE_ACTOR, 0, WB_LANE_ACTOR, aid);
        assert_int_equal(wb_rt_send(c.rt, go), 0);
        for (int i = 0; i < 3000 && c.result == 0; i++)
            usleep(10000);
        wb_rt_stop(c.rt);
        wb_rt_free(c.rt);
    }
    close(in[1]);
    int status;
    waitpid(pid, &status, 0);
    close(out[0]);
    free(c.big);
    assert_true(port > 0);
    assert_int_equal(c.result, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_client),
        cmocka_unit_test(test_python_server),
        cmocka_unit_test(test_python_client_lane),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
