#!/usr/bin/python3
"""Interop matrix for a Magic Wormhole mailbox (rendezvous) server.

Drives the real Debian clients -- `wormhole` (Python magic-wormhole 0.12.0)
and `wormhole-william` (Go 1.0.6) -- through a mailbox server and checks the
outcome of every scenario:

    /usr/bin/python3 tests/interop/wormhole_mailbox.py --server python [-v]
    /usr/bin/python3 tests/interop/wormhole_mailbox.py --server waybill:/path/to/waybill
    ... --only NAME      run one scenario (repeatable; see --list)

`--server python` runs the reference server (`twist3 wormhole-mailbox`,
python3-magic-wormhole-mailbox-server 0.4.1) and proves the harness;
`--server waybill:BIN` runs `BIN mailbox-server --listen 127.0.0.1 --port
4000 --channel-db DIR/relay.sqlite --usage-db DIR/usage.sqlite`.

The clients advertise every local address, so the script re-executes itself
in private network + mount (+ pid) namespaces (`unshare`, needs root) where
only `lo` exists; everything then stays on 127.0.0.1 and the fixed port 4000
cannot collide with anything outside. Being pid 1 of its own pid namespace,
everything it starts dies with it even if it is SIGKILLed; in the normal
path every process is still stopped explicitly, by pid.

Scenarios (each bounded by 60 s; every process is stopped by pid after it):
  text-fixed-{py,go}-{py,go}      `send --code N-purple-sausages --text MSG`
                                  -> `receive CODE`: both exit 0, the
                                  receiver prints MSG (space + non-ASCII)
  text-allocated-{py,go}-{py,go}  same, with a server-allocated code read
                                  from "Wormhole code is: CODE"
  wrong-code-py-{py,go}           Python sender N-aa-bb, receiver N-aa-cc:
                                  both exit non-zero, report the wrong key
  crowded                         a third real client on a nameplate in use
                                  gets "crowded"; the pair still finishes
  crowded-then-reconnect          same, then the sender's connection drops;
                                  it must reconnect and finish (0.4.1 fails
                                  this by design: sticky crowding, asserted
                                  as such in the python run)
  restart                         the server is SIGKILLed and restarted
                                  under a waiting Python sender; it
                                  reconnects and the transfer completes

Needs only the Python standard library and python3-websockets (for a tiny
observer client and the pausing proxy of the crowded scenario). Run it with
Debian's /usr/bin/python3 (the Debian modules are installed for it only).
"""
import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402  (tests/interop/netns.py)

NETNS_MARK = "WAYBILL_WORMHOLE_INTEROP_NETNS"
DEBIAN_PY = "/usr/bin/python3"
HOST = "127.0.0.1"
PORT = 4000          # the mailbox server, inside the private namespace
PROXY_PORT = 4002    # the pausing WebSocket proxy of the crowded scenario
RELAY_URL = "ws://%s:%d/v1" % (HOST, PORT)
APPID = "lothar.com/wormhole/text-or-file-xfer"  # both CLIs' appid
PY_WORMHOLE = "/usr/bin/wormhole"
GO_WORMHOLE = "/usr/bin/wormhole-william"
TWIST = "/usr/bin/twist3"
MSG = "hello w\u00f6rmhole 42"   # a space and a non-ASCII character
SCENARIO_TIMEOUT = 60.0
SERVER_READY_TIMEOUT = 15.0
CODE_RE = re.compile(r"Wormhole code is: (\S+)")
# Python prints this (textwrap-filled) for WrongPasswordError; the first
# sentence always stays on one line
PY_WRONG_KEY = "Key confirmation failed"

VERBOSE = False


def log(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


class Fail(Exception):
    pass


# --------------------------------------------------------------------------
# namespace


def enter_namespace():
    """Re-exec in a private network namespace (tests/interop/netns.py)."""
    netns.enter(NETNS_MARK)


# --------------------------------------------------------------------------
# processes


def child_env(home):
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "TMPDIR": home,
    }
    for k in ("WAYBILL_LOG",):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def tail(text, n=12):
    lines = text.rstrip("\n").splitlines()
    return lines[-n:]


class Proc:
    """A client process; stdout and stderr go to files."""

    def __init__(self, ctx, name, argv, stdin=None):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(ctx.dir, name + ".out")
        self.err_path = os.path.join(ctx.dir, name + ".err")
        with open(self.out_path, "wb") as so, open(self.err_path, "wb") as se:
            self.p = subprocess.Popen(
                argv, stdout=so, stderr=se, cwd=ctx.dir, env=ctx.env,
                stdin=subprocess.DEVNULL if stdin is None else stdin)
        self.t0 = time.monotonic()
        self.stopped = False
        ctx.procs.append(self)
        log("started %s pid %d: %s" % (name, self.p.pid, " ".join(argv)))

    @property
    def stdout(self):
        return read_text(self.out_path)

    @property
    def stderr(self):
        return read_text(self.err_path)

    @property
    def output(self):
        return self.stdout + self.stderr

    def wait(self, deadline):
        """Return the exit code, or None if still running at the deadline."""
        try:
            rc = self.p.wait(max(0.0, deadline - time.monotonic()))
            log("%s exited %d after %.1fs" % (self.name, rc, time.monotonic() - self.t0))
            return rc
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.p.poll() is None:
            self.stopped = True
            log("stopping %s (pid %d)" % (self.name, self.p.pid))
            try:
                os.kill(self.p.pid, signal.SIGTERM)
                self.p.wait(3)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
            except ProcessLookupError:
                pass

    def report(self, n=12):
        status = ("stopped by the harness" if self.stopped
                  else "exit %s" % self.p.poll())
        lines = ["    --- %s: %s (%s)" % (self.name, " ".join(self.argv), status)]
        for label, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            t = tail(text, n)
            if t:
                lines.append("    %s %s:" % (self.name, label))
                lines += ["      | " + l for l in t]
        return "\n".join(lines)


class Server:
    def __init__(self, spec, workdir, env):
        self.spec = spec
        self.dir = os.path.join(workdir, "server")
        os.makedirs(self.dir)
        self.log_path = os.path.join(self.dir, "server.log")
        self.env = env
        self.p = None
        self.starts = 0

    def argv(self):
        chan = os.path.join(self.dir, "relay.sqlite")
        usage = os.path.join(self.dir, "usage.sqlite")
        if self.spec == "python":
            return [TWIST, "--log-format=text", "wormhole-mailbox",
                    "--port", "tcp:%d:interface=%s" % (PORT, HOST),
                    "--channel-db", chan, "--usage-db", usage]
        binary = self.spec.split(":", 1)[1]
        return [binary, "mailbox-server", "--listen", HOST, "--port", str(PORT),
                "--channel-db", chan, "--usage-db", usage]

    @property
    def channel_db(self):
        return os.path.join(self.dir, "relay.sqlite")

    def start(self):
        self.starts += 1
        argv = self.argv()
        with open(self.log_path, "ab") as f:
            f.write(("==== start #%d: %s\n" % (self.starts, " ".join(argv))).encode())
            f.flush()
            self.p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.dir,
                                      env=self.env)
        log("server started, pid %d" % self.p.pid)
        self.wait_ready()

    def wait_ready(self):
        t0 = time.monotonic()
        end = t0 + SERVER_READY_TIMEOUT
        last = "no attempt"
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise Fail("server exited with %s while starting" % self.p.returncode)
            try:
                socket.create_connection((HOST, PORT), 0.5).close()
                c = http.client.HTTPConnection(HOST, PORT, timeout=2)
                c.request("GET", "/")
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status == 200:
                    log("server ready after %.2fs (GET / -> 200 %r)"
                        % (time.monotonic() - t0, body[:40]))
                    return
                last = "GET / answered %d" % r.status
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.1)
        raise Fail("server not ready within %.0fs (%s)" % (SERVER_READY_TIMEOUT, last))

    def kill(self):
        """SIGKILL, by pid."""
        if self.p and self.p.poll() is None:
            log("SIGKILL server pid %d" % self.p.pid)
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait()

    def stop(self):
        if self.p and self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def tail(self, n=30):
        return "\n".join("    server| " + l for l in tail(read_text(self.log_path), n))


# --------------------------------------------------------------------------
# clients


def py_send(code=None, text=MSG, url=RELAY_URL):
    a = [PY_WORMHOLE, "--relay-url", url, "send"]
    if code:
        a += ["--code", code]
    return a + ["--text", text]


def py_recv(code, url=RELAY_URL):
    return [PY_WORMHOLE, "--relay-url", url, "receive", code]


def go_send(code=None, text=MSG, url=RELAY_URL):
    a = [GO_WORMHOLE, "send", "--relay-url", url]
    if code:
        a += ["--code", code]
    return a + ["--text", text]


def go_recv(code, url=RELAY_URL):
    return [GO_WORMHOLE, "receive", "--relay-url", url, code]


SEND = {"py": py_send, "go": go_send}
RECV = {"py": py_recv, "go": go_recv}


class Ctx:
    """Per-scenario state: directory, deadline, processes to stop."""

    def __init__(self, name, workdir, server, home_env):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.server = server
        self.env = home_env
        self.procs = []
        self.deadline = time.monotonic() + SCENARIO_TIMEOUT
        self.notes = []
        self.cleanups = []

    def start(self, name, argv, **kw):
        return Proc(self, name, argv, **kw)

    def wait_code(self, proc, what="code"):
        """Wait for "Wormhole code is: CODE" on the process's stdout/stderr
        (Python prints it to stderr, Go to stdout)."""
        while time.monotonic() < self.deadline:
            m = CODE_RE.search(proc.stdout) or CODE_RE.search(proc.stderr)
            if m:
                log("%s printed code %s" % (proc.name, m.group(1)))
                return m.group(1)
            if proc.p.poll() is not None:
                raise Fail("%s exited %s before printing its %s"
                           % (proc.name, proc.p.returncode, what))
            time.sleep(0.05)
        raise Fail("%s printed no wormhole code before the timeout" % proc.name)

    def wait_exit(self, proc, until=None):
        rc = proc.wait(until or self.deadline)
        if rc is None:
            raise Fail("%s still running after the %.0fs timeout"
                       % (proc.name, SCENARIO_TIMEOUT))
        return rc

    def cleanup(self):
        for p in self.procs:
            p.stop()
        for fn in self.cleanups:
            fn()


def expect_text_delivered(ctx, snd, rcv, abort=None):
    """Both exit 0 and the receiver printed MSG as a line of its stdout.
    abort(): optional, polled while waiting; a string return fails at once."""
    if abort is not None:
        while snd.p.poll() is None or rcv.p.poll() is None:
            why = abort()
            if why:
                raise Fail(why)
            if time.monotonic() > ctx.deadline:
                break
            time.sleep(0.1)
    rs = ctx.wait_exit(snd)
    rr = ctx.wait_exit(rcv)
    if rs != 0 or rr != 0:
        raise Fail("sender exited %d, receiver exited %d (want 0, 0)" % (rs, rr))
    lines = rcv.stdout.splitlines()
    if MSG not in lines:
        raise Fail("receiver's stdout has no line %r (got %r)" % (MSG, rcv.stdout[-200:]))


def wait_for_pake_stored(ctx, nameplate):
    """Wait until the server has the sender's first message.

    Server-agnostic part: a raw WebSocket observer (own side, `list` only,
    so it never joins the mailbox) polls until the nameplate exists, i.e. the
    claim was processed. The Python client pipelines `open` + `add pake`
    right after `claimed`. Then, if the channel DB has the 0.4.1 schema
    (`messages` table), poll it read-only for the pake row; otherwise allow
    a bounded 1.5 s for the open+add to land."""
    while nameplate not in list_nameplates():
        if time.monotonic() > ctx.deadline:
            raise Fail("nameplate %s never appeared in `list`" % nameplate)
        time.sleep(0.1)
    log("nameplate %s listed by the server" % nameplate)
    try:
        db = sqlite3.connect("file:%s?mode=ro" % ctx.server.channel_db, uri=True,
                             timeout=2)
    except sqlite3.Error as e:
        log("channel DB not readable (%s): sleeping 1.5s instead" % e)
        time.sleep(1.5)
        return "slept 1.5s after `list` showed the nameplate"
    try:
        try:
            db.execute("SELECT 1 FROM messages LIMIT 1").fetchall()
        except sqlite3.Error as e:
            log("channel DB has no 0.4.1 `messages` table (%s): sleeping 1.5s" % e)
            time.sleep(1.5)
            return "slept 1.5s after `list` showed the nameplate"
        q = ("SELECT COUNT(*) FROM messages m JOIN nameplates n "
             "ON n.mailbox_id = m.mailbox_id AND n.app_id = m.app_id "
             "WHERE n.app_id = ? AND n.name = ? AND m.phase = 'pake'")
        while True:
            try:
                (n,) = db.execute(q, (APPID, nameplate)).fetchone()
            except sqlite3.Error as e:
                log("channel DB query failed (%s): sleeping 1.5s" % e)
                time.sleep(1.5)
                return "slept 1.5s after `list` showed the nameplate"
            if n:
                log("channel DB holds the pake of nameplate %s" % nameplate)
                return "channel DB holds the sender's pake"
            if time.monotonic() > ctx.deadline:
                raise Fail("the sender's pake never reached the channel DB")
            time.sleep(0.05)
    finally:
        db.close()


# --------------------------------------------------------------------------
# raw WebSocket helpers (python3-websockets)


def _ws():
    try:
        import websockets  # noqa: F401  (python3-websockets)
        import websockets.client
        import websockets.server
        return websockets
    except ImportError:
        raise Fail("python3-websockets is not installed for %s" % sys.executable)


def list_nameplates():
    ws_mod = _ws()

    async def run():
        async with ws_mod.client.connect(RELAY_URL, compression=None,
                                         ping_interval=None,
                                         open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "bind", "appid": APPID,
                                      "side": "interop0bs", "id": "0001",
                                      "client_version": ["waybill-interop", "0"]}))
            await ws.send(json.dumps({"type": "list", "id": "0002"}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if m.get("type") == "nameplates":
                    return [n["id"] for n in m["nameplates"]]
                if m.get("type") == "error":
                    raise Fail("server error to observer: %r" % m)

    try:
        return asyncio.run(run())
    except (OSError, asyncio.TimeoutError) as e:
        log("observer list failed: %r" % e)
        return []


def brief_errors(errs):
    return ", ".join("#%d %r on %s" % (n, e.get("error"),
                                       (e.get("orig") or {}).get("type"))
                     for n, e in errs)


class PausingProxy:
    """WebSocket proxy PROXY_PORT -> PORT in a background thread.

    Forwards every message unchanged in both directions, except that from
    the first client->server `release` on, client->server traffic is held
    (server->client traffic keeps flowing). A real Python client behind it
    therefore sits, after the key exchange, with its nameplate claim still
    registered on the server. Then either resume() forwards what was held
    and carries on, or drop() discards it and closes both legs of that
    connection, so the client sees a lost connection and reconnects (later
    connections are forwarded without holding)."""

    def __init__(self):
        self.ws = _ws()
        self.loop = asyncio.new_event_loop()
        self.held = threading.Event()
        self.errors = []
        self.server_errors = []  # (connection number, error message) to the client
        self.connections = 0
        self._gate = None
        self._drop = False
        self._ready = threading.Event()
        self._stop = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise Fail("proxy did not start")
        if self.errors:
            raise Fail("proxy failed to start: %s" % self.errors[0])

    @property
    def url(self):
        return "ws://%s:%d/v1" % (HOST, PROXY_PORT)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self):
        self._gate = asyncio.Event()
        self._stop = asyncio.Event()
        try:
            server = await self.ws.server.serve(
                self._handle, HOST, PROXY_PORT, compression=None,
                ping_interval=None, max_size=None)
        except OSError as e:
            self.errors.append(repr(e))
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        server.close()
        await server.wait_closed()

    async def _handle(self, down, path=None):
        self.connections += 1
        n = self.connections
        closed = self.ws.exceptions.ConnectionClosed
        log("proxy: connection #%d from the client" % n)
        try:
            async with self.ws.client.connect(RELAY_URL, compression=None,
                                              ping_interval=None,
                                              max_size=None) as up:
                async def c2s():
                    async for m in down:
                        t = json.loads(m).get("type") if isinstance(m, str) else None
                        if t == "release" and not self._gate.is_set():
                            log("proxy: #%d holding client->server from %s on"
                                % (n, m.strip()))
                            self.held.set()
                            await self._gate.wait()
                            if self._drop:
                                log("proxy: #%d dropping the held messages and "
                                    "the connection" % n)
                                await up.close()
                                await down.close(1001, "proxy drops")
                                return
                            log("proxy: #%d resumed" % n)
                        log("proxy: #%d c>s %s" % (n, str(m).strip()[:160]))
                        await up.send(m)

                async def s2c():
                    async for m in up:
                        log("proxy: #%d s>c %s" % (n, str(m).strip()[:160]))
                        try:
                            obj = json.loads(m)
                        except ValueError:
                            obj = {"unparsable": str(m)[:200]}
                        if isinstance(obj, dict) and obj.get("type") == "error":
                            self.server_errors.append((n, obj))
                        await down.send(m)

                async def guarded(coro):
                    try:
                        await coro
                    except closed:
                        pass

                tasks = [asyncio.ensure_future(guarded(c2s())),
                         asyncio.ensure_future(guarded(s2c()))]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await down.close()
        except closed:
            pass
        except Exception as e:
            self.errors.append("connection #%d: %r" % (n, e))
        log("proxy: connection #%d done" % n)

    def resume(self):
        self.loop.call_soon_threadsafe(self._gate.set)

    def drop(self):
        def f():
            self._drop = True
            self._gate.set()
        self.loop.call_soon_threadsafe(f)

    def close(self):
        if self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(5)


# --------------------------------------------------------------------------
# scenarios


def text_fixed(snd_kind, rcv_kind, nameplate):
    def run(ctx):
        code = "%s-purple-sausages" % nameplate
        snd = ctx.start("sender", SEND[snd_kind](code))
        # the sender is up (both CLIs print "Wormhole code is: ..." for a
        # given code too); which side claims first does not matter
        ctx.wait_code(snd)
        rcv = ctx.start("receiver", RECV[rcv_kind](code))
        expect_text_delivered(ctx, snd, rcv)
    return run


def text_allocated(snd_kind, rcv_kind):
    def run(ctx):
        snd = ctx.start("sender", SEND[snd_kind]())
        code = ctx.wait_code(snd)
        if not re.match(r"^\d+-[a-z]+-[a-z]+$", code):
            raise Fail("allocated code %r is not NAMEPLATE-word-word" % code)
        ctx.notes.append("code " + code)
        rcv = ctx.start("receiver", RECV[rcv_kind](code))
        expect_text_delivered(ctx, snd, rcv)
    return run


def wrong_code(rcv_kind, nameplate):
    def run(ctx):
        snd = ctx.start("sender", py_send("%s-aa-bb" % nameplate))
        ctx.wait_code(snd)
        rcv = ctx.start("receiver", RECV[rcv_kind]("%s-aa-cc" % nameplate))
        rs = ctx.wait_exit(snd)
        rr = ctx.wait_exit(rcv)
        if rs == 0 or rr == 0:
            raise Fail("sender exited %d, receiver exited %d (want both non-zero)"
                       % (rs, rr))
        if PY_WRONG_KEY not in snd.stderr:
            raise Fail("Python sender did not report %r" % PY_WRONG_KEY)
        if rcv_kind == "py" and PY_WRONG_KEY not in rcv.stderr:
            raise Fail("Python receiver did not report %r" % PY_WRONG_KEY)
        if rcv_kind == "go" and not GO_WRONG_KEY.search(rcv.output):
            raise Fail("Go receiver did not report %r" % GO_WRONG_KEY.pattern)
        if MSG in rcv.output:
            raise Fail("the receiver printed the message despite the wrong code")
    return run


# wormhole-william 1.0.6 with a wrong code, against a Python sender, on the
# 0.4.1 server: fails to open the sender's `version` message, logs
# "<date> <time> decrypt message failed" to stderr and exits 1 (observed).
GO_WRONG_KEY = re.compile(r"decrypt message failed")


def crowded(nameplate, reconnect):
    """A third real client on a nameplate in use is refused with `crowded`
    and the two real sides still finish.

    Timing: a Python client releases its nameplate as soon as it sees the
    peer's first message, so between two real clients the nameplate is in
    use only for milliseconds. To hold it, the sender talks to the server
    through PausingProxy, which holds the sender's `release` (and everything
    the sender sends after it): the sender's claim stays registered, the
    receiver has claimed, released and waits for the sender's `version`.
    The intruder is a real `wormhole receive` with the same code; it must
    exit non-zero saying "crowded" while the pair is still running.

    Then (reconnect=False) the proxy forwards what it held and the pair must
    complete. Or (reconnect=True) the proxy drops the sender's connection
    instead, discarding what it held: the Python sender reconnects with the
    same side and re-sends bind, claim, open, its un-echoed `version` and
    the release -- it must be let back in and the pair must complete. That
    is the part that tells whether the server recorded the intruder."""
    def run(ctx):
        code = "%s-purple-sausages" % nameplate
        proxy = PausingProxy()
        ctx.cleanups.append(proxy.close)
        snd = ctx.start("sender", py_send(code, url=proxy.url))
        ctx.wait_code(snd)
        rcv = ctx.start("receiver", py_recv(code))
        while not proxy.held.wait(0.1):
            for p in (snd, rcv):
                if p.p.poll() is not None:
                    raise Fail("%s exited %s before the key exchange was done"
                               % (p.name, p.p.returncode))
            if time.monotonic() > ctx.deadline:
                raise Fail("the sender never tried to release its nameplate")
        listed = list_nameplates()
        log("nameplates while the sender holds %s: %r" % (nameplate, listed))
        if nameplate not in listed:
            raise Fail("nameplate %s not listed while the sender still claims it"
                       % nameplate)
        intr = ctx.start("intruder", py_recv(code))
        ri = ctx.wait_exit(intr, until=min(ctx.deadline, time.monotonic() + 20))
        if ri == 0:
            raise Fail("the intruder exited 0")
        if "crowded" not in intr.output:
            raise Fail("the intruder's output does not mention 'crowded'")
        if MSG in intr.output:
            raise Fail("the intruder printed the message")
        for p in (snd, rcv):
            if p.p.poll() is not None:
                raise Fail("%s exited %s after the intruder was refused (pair "
                           "disturbed)" % (p.name, p.p.returncode))
        ctx.notes.append("intruder refused (exit %d)" % ri)
        if not reconnect:
            proxy.resume()
            expect_text_delivered(ctx, snd, rcv)
        else:
            proxy.drop()
            if ctx.server.spec == "python":
                # python3-magic-wormhole-mailbox-server 0.4.1 has "sticky"
                # crowding (notes/wormhole.md 1.6 and 9, a defect waybill
                # must not copy): the refused intruder's side row stays in
                # the mailbox. Observed: the reconnected sender sends bind,
                # release (ok), open -> error "crowded", its adds -> "must
                # open mailbox before adding", close(errory) -> "crowded";
                # then it waits forever for `closed`, and the receiver
                # forever for the sender's `version`. Assert that the server
                # refused the re-open with `crowded` and nothing was
                # delivered, so the reference run still proves the harness.
                while not any(n >= 2 and e.get("error") == "crowded"
                              and (e.get("orig") or {}).get("type") == "open"
                              for n, e in proxy.server_errors):
                    if time.monotonic() > ctx.deadline:
                        raise Fail("0.4.1 was expected to refuse the reconnected "
                                   "sender's open with 'crowded' (sticky "
                                   "crowding); server errors: %r"
                                   % proxy.server_errors)
                    if snd.p.poll() is not None and proxy.connections < 2:
                        raise Fail("sender exited %s without reconnecting"
                                   % snd.p.returncode)
                    time.sleep(0.05)
                time.sleep(2.0)
                if MSG in rcv.output or rcv.p.poll() == 0:
                    raise Fail("the message was delivered although 0.4.1 "
                               "refused the sender's re-open")
                ctx.notes.append(
                    "0.4.1 sticky crowding (expected defect): re-open refused "
                    "'crowded'; after 2s sender %s, receiver %s"
                    % ("still running" if snd.p.poll() is None
                       else "exited %d" % snd.p.returncode,
                       "still running" if rcv.p.poll() is None
                       else "exited %d" % rcv.p.returncode))
                return
            expect_text_delivered(
                ctx, snd, rcv,
                abort=lambda: proxy.server_errors and
                "the server sent the reconnected sender errors (was the refused "
                "intruder recorded?): %s" % brief_errors(proxy.server_errors))
            if proxy.connections < 2:
                raise Fail("the sender did not reconnect through the proxy")
            ctx.notes.append("sender reconnected (%d proxy connections)"
                             % proxy.connections)
        if proxy.server_errors:
            raise Fail("the server sent the sender errors: %s"
                       % brief_errors(proxy.server_errors))
        if proxy.errors:
            raise Fail("proxy errors: %s" % "; ".join(proxy.errors))
    return run


def restart(nameplate):
    """The server is SIGKILLed while a Python sender waits for its peer and
    restarted on the same port with the same channel DB; the sender must
    reconnect on its own (twisted ClientService: ~1 s backoff growing x1.5)
    and a receiver started after the restart must complete with it. The
    receiver can only find the sender's mailbox and pake if the server
    restored them from the channel DB."""
    def run(ctx):
        code = "%s-purple-sausages" % nameplate
        snd = ctx.start("sender", py_send(code))
        ctx.wait_code(snd)
        how = wait_for_pake_stored(ctx, nameplate)
        ctx.notes.append(how)
        ctx.server.kill()
        t_kill = time.monotonic()
        ctx.server.start()
        ctx.notes.append("server down %.2fs" % (time.monotonic() - t_kill))
        if snd.p.poll() is not None:
            raise Fail("the sender exited %s when the server went away"
                       % snd.p.returncode)
        rcv = ctx.start("receiver", py_recv(code))
        expect_text_delivered(ctx, snd, rcv)
    return run


def go_python_key_flake(name, ctx):
    """A text scenario between a Go and a Python client in which both ended
    with a key-confirmation failure."""
    if not name.startswith("text-") or not (name.endswith("-go-py") or name.endswith("-py-go")):
        return False
    out = "\n".join(p.report() for p in ctx.procs)
    return "Key confirmation failed" in out and "decrypt message failed" in out


def scenarios():
    s = []
    pairs = [("py", "py"), ("py", "go"), ("go", "py"), ("go", "go")]
    for i, (a, b) in enumerate(pairs):
        s.append(("text-fixed-%s-%s" % (a, b), text_fixed(a, b, str(21 + i))))
    for a, b in pairs:
        s.append(("text-allocated-%s-%s" % (a, b), text_allocated(a, b)))
    s.append(("wrong-code-py-py", wrong_code("py", "31")))
    s.append(("wrong-code-py-go", wrong_code("go", "32")))
    s.append(("crowded", crowded("41", reconnect=False)))
    s.append(("crowded-then-reconnect", crowded("42", reconnect=True)))
    s.append(("restart", restart("51")))
    return s


# --------------------------------------------------------------------------


def main():
    global VERBOSE
    names = [n for n, _ in scenarios()]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server",
                    help="'python' or 'waybill:/path/to/waybill'")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only this scenario (repeatable): " + ", ".join(names))
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.list:
        print("\n".join(names))
        return 0
    if args.server is None:
        ap.error("--server is required")
    if args.server != "python" and not args.server.startswith("waybill:"):
        ap.error("--server must be 'python' or 'waybill:/path/to/waybill'")
    if args.server.startswith("waybill:"):
        b = args.server.split(":", 1)[1]
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            ap.error("waybill binary %r is not an executable file" % b)
    for n in args.only:
        if n not in names:
            ap.error("unknown scenario %r (have: %s)" % (n, ", ".join(names)))
    VERBOSE = args.verbose

    enter_namespace()
    sys.stdout.reconfigure(line_buffering=True)

    t_all = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="wb-wormhole-interop-")
    home = os.path.join(workdir, "home")
    os.makedirs(home)
    env = child_env(home)
    server = Server(args.server, workdir, env)
    failed = []
    ran = 0
    try:
        try:
            server.start()
        except Fail as e:
            print("FAIL server-start: %s" % e)
            print(server.tail())
            return 1
        for name, fn in scenarios():
            if args.only and name not in args.only:
                continue
            ran += 1
            if not server.alive():
                try:
                    server.start()
                except Fail as e:
                    print("FAIL %s: server down and could not be restarted: %s"
                          % (name, e))
                    print(server.tail())
                    failed.append(name)
                    continue
            if VERBOSE:
                print("== %s" % name, flush=True)
            t0 = time.monotonic()
            for attempt in (1, 2):
                ctx = Ctx(name, workdir, server, env)
                err = None
                try:
                    fn(ctx)
                except Fail as e:
                    err = str(e)
                except Exception:
                    err = "harness error:\n" + traceback.format_exc()
                finally:
                    ctx.cleanup()
                if err is None or attempt == 2 or not go_python_key_flake(name, ctx):
                    break
                # About once in a hundred exchanges with the Go client both
                # sides fail key confirmation (different SPAKE2 keys) although
                # they used the same code and mailbox; the same code works when
                # re-run. Seen through waybill mailbox-server and, with
                # waybill's own client, through the Python server too: the Go
                # client's SPAKE2 against python-spake2's. Retried once, loudly.
                print("RETRY %s: both sides failed key confirmation (Go<->Python); "
                      "outputs follow, then one more attempt" % name, flush=True)
                for p in ctx.procs:
                    print(p.report())
            dt = time.monotonic() - t0
            extra = (" [" + "; ".join(ctx.notes) + "]") if ctx.notes and VERBOSE else ""
            if err is None:
                print("PASS %s (%.1fs)%s" % (name, dt, extra), flush=True)
            else:
                failed.append(name)
                print("FAIL %s: %s (%.1fs)" % (name, err, dt), flush=True)
                for p in ctx.procs:
                    print(p.report())
                print(server.tail())
                sys.stdout.flush()
    finally:
        server.stop()
        if not args.keep and not failed:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.monotonic() - t_all
    if failed:
        print("%d of %d scenarios FAILED (%.1fs): %s (work dir kept: %s)"
              % (len(failed), ran, total, " ".join(failed), workdir))
        return 1
    print("all %d scenarios passed (%.1fs)" % (ran, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
