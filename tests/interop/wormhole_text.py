#!/usr/bin/python3
"""Interop test of `waybill send --text` / `waybill receive` against the real
Magic Wormhole clients -- `wormhole` (Python magic-wormhole 0.12.0) and
`wormhole-william` (Go 1.0.6) -- and against itself, through both mailbox
servers: `waybill mailbox-server` and the reference `twist3 wormhole-mailbox`
(python3-magic-wormhole-mailbox-server 0.4.1).

    /usr/bin/python3 tests/interop/wormhole_text.py --waybill BUILD/waybill [-v]
        [--server waybill|python|both] [--only NAME ...] [--list]

Scenarios (per server; each bounded by 60 s, every process stopped by pid):
  fixed-SND-RCV       SND sends a text with --code N-purple-sausages, RCV
                      receives it; both exit 0 and RCV prints exactly the
                      text (a space and non-ASCII). Pairs: wb-py py-wb wb-go
                      go-wb wb-wb.
  allocated-SND-RCV   same with a server-allocated code read from "Wormhole
                      code is: CODE". Pairs as above.
  big-SND-RCV         a 100 kB text (multi-byte UTF-8 throughout), the waybill
                      sender reading it from stdin (--text -); 12 kB for the
                      Go receiver, which cannot take a WebSocket message over
                      32 KiB whoever sends it.
  wrong-SND-RCV       the receiver types a different code: both exit non-zero,
                      nobody hangs, waybill says "Key confirmation failed" and
                      exits 3. Pairs: wb-py py-wb wb-wb.
  verify-SND-RCV      --verify on both sides (the sender answers "yes" on
                      stdin): both show the same verifier, the text arrives.
  stdin-code          `waybill receive` with no code reads it from stdin.
  zero                -0 on both sides (the code "0-").
  complete            `waybill receive` on a pseudo-terminal, the code typed
                      with Tab completion: "N" Tab gives "N-" (the server's
                      nameplate list), "publ" Tab "publisher-", "saw" Tab
                      "sawdust", Enter; the Python sender's text arrives.
  complete-typed      the same code typed whole without Tab: it arrives, and
                      the note "(note: you can use <Tab> to complete words)".
  restart-FIRST       waybill FIRST (send or recv) connects with a fixed code
                      and waits; the mailbox server (its own, of the kind
                      under test, with a channel db) is killed with SIGKILL
                      and restarted on the same db and port; then the other
                      waybill side starts: both finish (FIRST reconnected).

The clients advertise local addresses, so the script re-executes itself in
private network + mount (+ pid) namespaces (`unshare`, needs root) where only
`lo` exists (the same approach as wormhole_mailbox.py).
"""
import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402  (tests/interop/netns.py)

NETNS_MARK = "WAYBILL_WORMHOLE_TEXT_NETNS"
DEBIAN_PY = "/usr/bin/python3"
HOST = "127.0.0.1"
PORT = 4000
URL = "ws://%s:%d/v1" % (HOST, PORT)
RESTART_PORT = 4001  # the restart scenarios' own server
PY = "/usr/bin/wormhole"
GO = "/usr/bin/wormhole-william"
TWIST = "/usr/bin/twist3"
MSG = "hello w\u00f6rmhole \u2603 42"
TIMEOUT = 60.0
CODE_RE = re.compile(r"Wormhole code is: (\S+)")
VERIFIER_RE = re.compile(r"Verifier ([0-9a-f]{64})")
VERBOSE = False
WAYBILL = None
SERVER_KIND = ["waybill"]  # the kind under test, for scenarios that run their own


def log(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


class Fail(Exception):
    pass


def enter_namespace():
    """Re-exec in a private network namespace (tests/interop/netns.py)."""
    netns.enter(NETNS_MARK, only_lo=False)


def child_env(home):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "TMPDIR": home}
    if "WAYBILL_LOG" in os.environ:
        env["WAYBILL_LOG"] = os.environ["WAYBILL_LOG"]
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Proc:
    def __init__(self, ctx, name, argv, stdin_data=None, env=None):
        self.name, self.argv = name, argv
        self.out_path = os.path.join(ctx.dir, name + ".out")
        self.err_path = os.path.join(ctx.dir, name + ".err")
        with open(self.out_path, "wb") as so, open(self.err_path, "wb") as se:
            self.p = subprocess.Popen(argv, stdout=so, stderr=se, cwd=ctx.dir,
                                      env=env if env is not None else ctx.env,
                                      stdin=subprocess.PIPE)
        if stdin_data is not None:
            try:
                self.p.stdin.write(stdin_data)
            except BrokenPipeError:
                pass
        self.p.stdin.close()
        ctx.procs.append(self)
        log("started %s pid %d: %s" % (name, self.p.pid, " ".join(argv)[:200]))

    @property
    def stdout(self):
        return read(self.out_path)

    @property
    def stderr(self):
        return read(self.err_path)

    def wait(self, deadline):
        try:
            return self.p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGTERM)
                self.p.wait(3)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
            except ProcessLookupError:
                pass

    def report(self):
        lines = ["    --- %s: %s (exit %s)" % (self.name, " ".join(self.argv)[:200], self.p.poll())]
        for label, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            for l in text.rstrip("\n").splitlines()[-10:]:
                lines.append("      %s| %s" % (label, l[:200]))
        return "\n".join(lines)


class Server:
    def __init__(self, kind, workdir, env, port=PORT):
        self.kind, self.env, self.port = kind, env, port
        self.dir = os.path.join(workdir, "server-" + kind)
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "server.log")
        self.p = None

    def start(self):
        self.chan = chan = os.path.join(self.dir, "relay.sqlite")
        if self.kind == "python":
            argv = [TWIST, "--log-format=text", "wormhole-mailbox", "--port",
                    "tcp:%d:interface=%s" % (self.port, HOST), "--channel-db", chan]
        else:
            argv = [WAYBILL, "mailbox-server", "--listen", HOST, "--port", str(self.port),
                    "--channel-db", chan]
        with open(self.log, "ab") as f:
            self.p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.dir, env=self.env)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise Fail("server exited with %s while starting" % self.p.returncode)
            try:
                c = http.client.HTTPConnection(HOST, self.port, timeout=2)
                c.request("GET", "/")
                ok = c.getresponse().status == 200
                c.close()
                if ok:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise Fail("server not ready within 15 s")

    def kill(self):
        """SIGKILL, by pid: no goodbye to the clients, no last commit."""
        if self.p and self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait()

    def stop(self):
        if self.p and self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()


class Ctx:
    def __init__(self, name, workdir, home_env):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.env = home_env
        self.procs = []
        self.servers = []
        self.deadline = time.monotonic() + TIMEOUT

    def cleanup(self):
        for p in self.procs:
            p.stop()
        for srv in self.servers:
            srv.stop()


# ---- client command lines --------------------------------------------------------------

def send_argv(kind, code=None, text=MSG, verify=False, zero=False, url=URL):
    if kind == "py":
        a = [PY, "--relay-url", url, "send"]
    elif kind == "go":
        a = [GO, "--relay-url", url, "send"]
    else:
        a = [WAYBILL, "send", "--relay-url", url]
    if code:
        a += ["--code", code]
    if verify:
        a += ["--verify"]
    if zero:
        a += ["-0"]
    return a + ["--text", text]


def recv_argv(kind, code, verify=False, zero=False, url=URL):
    if kind == "py":
        a = [PY, "--relay-url", url, "receive"]
    elif kind == "go":
        a = [GO, "--relay-url", url, "receive"]
    else:
        a = [WAYBILL, "receive", "--relay-url", url]
    if verify:
        a += ["--verify"]
    if zero:
        a += ["-0"]
    return a + ([code] if code else [])


def wait_code(ctx, proc):
    while time.monotonic() < ctx.deadline:
        m = CODE_RE.search(proc.stdout + proc.stderr)
        if m:
            return m.group(1)
        if proc.p.poll() is not None:
            raise Fail("%s exited (%s) before printing a code" % (proc.name, proc.p.returncode))
        time.sleep(0.05)
    raise Fail("no code from %s" % proc.name)


def wait_exit(ctx, proc):
    rc = proc.wait(ctx.deadline)
    if rc is None:
        raise Fail("%s did not exit within %.0f s (hung)" % (proc.name, TIMEOUT))
    return rc


def expect_delivered(ctx, snd, rcv, text):
    rs, rr = wait_exit(ctx, snd), wait_exit(ctx, rcv)
    if rs != 0 or rr != 0:
        raise Fail("exit codes: sender %s, receiver %s" % (rs, rr))
    if rcv.stdout != text + "\n":
        raise Fail("receiver printed %r (%d chars), expected %r (%d chars)"
                   % (rcv.stdout[:80], len(rcv.stdout), (text + "\n")[:80], len(text) + 1))


# ---- scenarios -------------------------------------------------------------------------

PAIRS = [("wb", "py"), ("py", "wb"), ("wb", "go"), ("go", "wb"), ("wb", "wb")]
_np = [20]


def nameplate():
    _np[0] += 1
    return _np[0]


def fixed(s, r):
    def run(ctx):
        code = "%d-purple-sausages" % nameplate()
        snd = Proc(ctx, "send", send_argv(s, code))
        time.sleep(0.3)
        rcv = Proc(ctx, "recv", recv_argv(r, code))
        expect_delivered(ctx, snd, rcv, MSG)
    return run


def allocated(s, r):
    def run(ctx):
        snd = Proc(ctx, "send", send_argv(s))
        code = wait_code(ctx, snd)
        log("code", code)
        rcv = Proc(ctx, "recv", recv_argv(r, code))
        expect_delivered(ctx, snd, rcv, MSG)
    return run


def big(s, r, size=100000):
    def run(ctx):
        unit = "\u00e9t\u00e9 \u2603 long text line %d\n"
        text, i = "", 0
        while len(text.encode()) < size:
            text += unit % i
            i += 1
        text = text.rstrip("\n")
        code = "%d-big-text" % nameplate()
        if s == "wb":
            snd = Proc(ctx, "send", send_argv(s, code, text="-"), stdin_data=text.encode())
        else:
            snd = Proc(ctx, "send", send_argv(s, code, text=text))
        time.sleep(0.3)
        rcv = Proc(ctx, "recv", recv_argv(r, code))
        expect_delivered(ctx, snd, rcv, text)
    return run


def wrong(s, r):
    def run(ctx):
        n = nameplate()
        snd = Proc(ctx, "send", send_argv(s, "%d-aardvark-absurd" % n))
        time.sleep(0.3)
        rcv = Proc(ctx, "recv", recv_argv(r, "%d-aardvark-adroitness" % n))
        rs, rr = wait_exit(ctx, snd), wait_exit(ctx, rcv)
        if rs == 0 or rr == 0:
            raise Fail("exit codes: sender %s, receiver %s (both should fail)" % (rs, rr))
        for p, kind, rc in ((snd, s, rs), (rcv, r, rr)):
            if "Key confirmation failed" not in p.stderr:
                raise Fail("%s does not report the wrong key" % p.name)
            if kind == "wb" and rc != 3:
                raise Fail("waybill %s exited %d, expected 3 (wrong code)" % (p.name, rc))
        if rcv.stdout:
            raise Fail("the receiver printed something: %r" % rcv.stdout[:80])
    return run


def verify(s, r):
    def run(ctx):
        code = "%d-verify-me" % nameplate()
        snd = Proc(ctx, "send", send_argv(s, code, verify=True), stdin_data=b"yes\n")
        time.sleep(0.3)
        rcv = Proc(ctx, "recv", recv_argv(r, code, verify=True))
        expect_delivered(ctx, snd, rcv, MSG)
        vs = VERIFIER_RE.findall(snd.stdout + snd.stderr)
        vr = VERIFIER_RE.findall(rcv.stdout + rcv.stderr)
        if len(vs) != 1 or len(vr) != 1 or vs != vr:
            raise Fail("verifiers: sender %r, receiver %r" % (vs, vr))
        if "ok? (yes/no): " not in snd.stdout:
            raise Fail("the sender did not ask 'Verifier ... ok? (yes/no): '")
    return run


def stdin_code(ctx):
    snd = Proc(ctx, "send", send_argv("py"))
    code = wait_code(ctx, snd)
    rcv = Proc(ctx, "recv", recv_argv("wb", None), stdin_data=(code + "\n").encode())
    expect_delivered(ctx, snd, rcv, MSG)


def zero(ctx):
    snd = Proc(ctx, "send", send_argv("wb", zero=True))
    time.sleep(0.3)
    rcv = Proc(ctx, "recv", recv_argv("py", None, zero=True))
    expect_delivered(ctx, snd, rcv, MSG)


class PtyProc(Proc):
    """A process whose stdin and stderr are a pseudo-terminal we type into
    (stdout stays a file: the received text alone)."""

    def __init__(self, ctx, name, argv):
        import pty
        self.name, self.argv = name, argv
        self.out_path = os.path.join(ctx.dir, name + ".out")
        self.err_path = os.path.join(ctx.dir, name + ".err")
        self.master, slave = pty.openpty()
        env = dict(ctx.env, TERM="xterm")
        with open(self.out_path, "wb") as so:
            self.p = subprocess.Popen(argv, stdin=slave, stdout=so, stderr=slave, cwd=ctx.dir,
                                      env=env, start_new_session=True)
        os.close(slave)
        self.screen = b""
        ctx.procs.append(self)
        log("started %s pid %d on a pty: %s" % (name, self.p.pid, " ".join(argv)[:200]))

    def pump(self, timeout):
        """Read what the terminal got within timeout: true when it got some."""
        import select
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: the child closed its side
            data = b""
        self.screen += data
        with open(self.err_path, "ab") as f:
            f.write(data)
        return data != b""

    def text(self):
        """What the terminal shows: its lines joined with newlines, after the
        cursor motions libedit redraws with (CR, BS, CSI n G/C/D, CSI K)."""
        lines, line, col = [], [], 0
        t = self.screen.decode("utf-8", "replace")
        i = 0
        while i < len(t):
            ch = t[i]
            m = re.match(r"\x1b\[([0-9;?]*)([A-Za-z])", t[i:])
            if m:
                n = int(m.group(1)) if m.group(1).isdigit() else 1
                op = m.group(2)
                if op == "G":
                    col = n - 1
                elif op == "C":
                    col += n
                elif op == "D":
                    col = max(0, col - n)
                elif op == "K":
                    del line[col:]
                i += m.end()
                continue
            if ch == "\r":
                col = 0
            elif ch == "\n":
                lines.append("".join(line))
                line, col = [], 0
            elif ch == "\b":
                col = max(0, col - 1)
            elif ch >= " ":
                line.extend(" " * (col + 1 - len(line)))
                line[col] = ch
                col += 1
            i += 1
        return "\n".join(lines + ["".join(line)])

    def expect(self, ctx, what, since=0):
        end = min(ctx.deadline, time.monotonic() + 10)
        while time.monotonic() < end:
            if what in self.text()[since:]:
                return
            if self.p.poll() is not None:
                self.pump(0.1)
                if what in self.text()[since:]:
                    return
                raise Fail("%s exited (%s) before showing %r" % (self.name, self.p.returncode, what))
            self.pump(0.1)
        raise Fail("%s: %r never shown; the terminal shows %r" % (self.name, what, self.text()[-300:]))

    def type(self, keys):
        log("type %r" % keys)
        os.write(self.master, keys.encode())

    def wait(self, deadline):
        while self.p.poll() is None and time.monotonic() < deadline:
            self.pump(0.1)
        if self.p.poll() is not None:  # what it wrote last
            while self.pump(0.1) and time.monotonic() < deadline:
                pass
        return self.p.poll()


def complete(ctx):
    """`waybill receive` on a terminal: Tab completes the nameplate from the
    server's list, then each word from its PGP list."""
    n = nameplate()
    code = "%d-publisher-sawdust" % n  # the only odd word "publ...", even "saw..."
    snd = Proc(ctx, "send", send_argv("py", code))
    wait_code(ctx, snd)
    time.sleep(0.5)  # the sender has claimed the nameplate
    rcv = PtyProc(ctx, "recv", recv_argv("wb", None))
    rcv.expect(ctx, "Enter receive wormhole code: ")
    mark = len(rcv.text())
    rcv.type("%d\t" % n)
    rcv.expect(ctx, "%d-" % n, mark)
    rcv.type("publ\t")
    rcv.expect(ctx, "%d-publisher-" % n, mark)
    rcv.type("saw\t")
    rcv.expect(ctx, "sawdust", mark)
    rcv.type("\r")
    expect_delivered(ctx, snd, rcv, MSG)
    if "(note: you can use <Tab>" in rcv.text():
        raise Fail("the receiver says Tab was not used")


def wait_pake(ctx, srv, proc, name):
    """Until the server's channel db holds proc's pake in the mailbox of
    nameplate `name`: connected, claimed, opened, added, committed."""
    import sqlite3
    q = ("SELECT COUNT(*) FROM nameplates n JOIN messages m ON m.mailbox_id = n.mailbox_id"
         " WHERE n.name = ? AND m.phase = 'pake'")
    end = min(ctx.deadline, time.monotonic() + 15)
    while time.monotonic() < end:
        if proc.p.poll() is not None:
            raise Fail("%s exited (%s) before the restart" % (proc.name, proc.p.returncode))
        try:
            db = sqlite3.connect(srv.chan, timeout=1)
            try:
                if db.execute(q, (name,)).fetchone()[0] > 0:
                    return
            finally:
                db.close()
        except sqlite3.Error:
            pass  # not created yet, or busy
        time.sleep(0.05)
    raise Fail("%s's pake never reached the channel db" % proc.name)


def restart(first):
    """The first waybill client connects and waits; its mailbox server (one
    of the kind under test, on its own port, with a channel db) is killed
    with SIGKILL and started again with the same db and port; then the other
    waybill client comes. Both must finish: the first reconnects after its
    random delay, claims and opens again, and sends what was not echoed."""
    def run(ctx):
        srv = Server(SERVER_KIND[0], ctx.dir, ctx.env, port=RESTART_PORT)
        ctx.servers.append(srv)
        srv.start()
        url = "ws://%s:%d/v1" % (HOST, RESTART_PORT)
        code = "%d-restart-me" % nameplate()
        mk = {"send": lambda: Proc(ctx, "send", send_argv("wb", code, url=url)),
              "recv": lambda: Proc(ctx, "recv", recv_argv("wb", code, url=url))}
        a = mk[first]()
        wait_pake(ctx, srv, a, code.split("-")[0])
        srv.kill()
        log("server killed")
        time.sleep(0.3)
        srv.start()
        log("server restarted")
        b = mk["recv" if first == "send" else "send"]()
        snd, rcv = (a, b) if first == "send" else (b, a)
        expect_delivered(ctx, snd, rcv, MSG)
    return run


def complete_typed(ctx):
    """On a terminal without Tab: the code typed whole works, and the Python
    CLI's note about <Tab> follows."""
    code = "%d-publisher-sawdust" % nameplate()
    snd = Proc(ctx, "send", send_argv("py", code))
    wait_code(ctx, snd)
    rcv = PtyProc(ctx, "recv", recv_argv("wb", None))
    rcv.expect(ctx, "Enter receive wormhole code: ")
    rcv.type(code + "\r")
    expect_delivered(ctx, snd, rcv, MSG)
    if "(note: you can use <Tab> to complete words)" not in rcv.text():
        raise Fail("no note about <Tab>")


WSS_PORT = 4003


def make_certs(d):
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""
    sh = lambda cmd: subprocess.run(cmd, shell=True, cwd=d, check=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key"
       " -out ca.pem -days 2 -subj '/CN=waybill test CA'")
    sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
       "extendedKeyUsage=serverAuth\\n' > ext.cnf")
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key"
       " -out srv.csr -subj '/CN=localhost'")
    sh("openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem"
       " -days 2 -extfile ext.cnf")
    return os.path.join(d, "ca.pem")


def wss(ctx):
    """wss:// through the Python mailbox server behind Twisted's TLS endpoint,
    its certificate from a test CA: waybill->waybill, ->go and ->python with
    the CA given as SSL_CERT_FILE (OpenSSL's, Go's and pyOpenSSL's); without it
    the system store refuses the certificate and waybill says so (exit 6)."""
    ca = make_certs(ctx.dir)
    log_path = os.path.join(ctx.dir, "twist-tls.log")
    argv = [TWIST, "--log-format=text", "wormhole-mailbox", "--port",
            "ssl:%d:interface=%s:privateKey=%s:certKey=%s"
            % (WSS_PORT, HOST, os.path.join(ctx.dir, "srv.key"), os.path.join(ctx.dir, "srv.pem")),
            "--channel-db", os.path.join(ctx.dir, "relay.sqlite")]
    with open(log_path, "ab") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=ctx.dir, env=ctx.env)
    try:
        end = time.monotonic() + 15
        while True:
            if p.poll() is not None:
                raise Fail("TLS mailbox server exited (%s): %s" % (p.returncode, read(log_path)[-500:]))
            try:
                socket.create_connection((HOST, WSS_PORT), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise Fail("TLS mailbox server not listening within 15 s")
                time.sleep(0.1)
        url = "wss://%s:%d/v1" % (HOST, WSS_PORT)
        env = dict(ctx.env, SSL_CERT_FILE=ca)
        for r in ("wb", "go", "py"):
            code = "%d-purple-sausages" % nameplate()
            snd = Proc(ctx, "send-wss-" + r, send_argv("wb", code, url=url), env=env)
            wait_code(ctx, snd)
            rcv = Proc(ctx, "recv-wss-" + r, recv_argv(r, code, url=url), env=env)
            expect_delivered(ctx, snd, rcv, MSG)
        bad = Proc(ctx, "send-untrusted", send_argv("wb", "%d-a-b" % nameplate(), url=url))
        rc = wait_exit(ctx, bad)
        if rc != 6 or "certificate verify failed" not in bad.stderr:
            raise Fail("untrusted certificate: exit %s, stderr %r" % (rc, bad.stderr[-300:]))
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


def go_key_flake(ctx):
    """Both sides of an exchange with the Go client failed key confirmation."""
    if not any(p.argv and p.argv[0] == GO for p in ctx.procs):
        return False
    text = "".join(p.stdout + p.stderr for p in ctx.procs)
    return "decrypt message failed" in text and "Key confirmation failed" in text


def scenarios():
    out = []
    for s, r in PAIRS:
        out.append(("fixed-%s-%s" % (s, r), fixed(s, r)))
    for s, r in PAIRS:
        out.append(("allocated-%s-%s" % (s, r), allocated(s, r)))
    for s, r in (("wb", "py"), ("py", "wb"), ("wb", "wb")):
        out.append(("big-%s-%s" % (s, r), big(s, r)))
    # wormhole-william cannot receive a WebSocket message above 32 KiB (its
    # library's default read limit; a 40 kB text from the Python sender
    # hangs it too), and the body is hex: 12 kB is what it can take.
    out.append(("big-wb-go", big("wb", "go", 12000)))
    for s, r in (("wb", "py"), ("py", "wb"), ("wb", "wb")):
        out.append(("wrong-%s-%s" % (s, r), wrong(s, r)))
    for s, r in (("wb", "py"), ("py", "wb"), ("wb", "wb")):
        out.append(("verify-%s-%s" % (s, r), verify(s, r)))
    out.append(("stdin-code", stdin_code))
    out.append(("zero", zero))
    out.append(("complete", complete))
    out.append(("complete-typed", complete_typed))
    out.append(("restart-send-first", restart("send")))
    out.append(("restart-recv-first", restart("recv")))
    if SERVER_KIND[0] == "python":
        out.append(("wss", wss))  # the TLS server is Python's; once is enough
    return out


def main():
    global VERBOSE, WAYBILL
    ap = argparse.ArgumentParser()
    ap.add_argument("--waybill", required=True)
    ap.add_argument("--server", default="both", choices=["waybill", "python", "both"])
    ap.add_argument("--only", action="append")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.v
    WAYBILL = os.path.abspath(args.waybill)
    if args.list:
        for name, _ in scenarios():
            print(name)
        return 0
    for b in (WAYBILL, PY, GO, TWIST):
        if not os.access(b, os.X_OK):
            print("FAIL setup: %s is missing" % b)
            return 2
    enter_namespace()
    workdir = tempfile.mkdtemp(prefix="wormhole-text-")
    home = os.path.join(workdir, "home")
    os.makedirs(home)
    env = child_env(home)
    servers = ["waybill", "python"] if args.server == "both" else [args.server]
    failed = passed = 0
    for sk in servers:
        SERVER_KIND[0] = sk
        srv = Server(sk, workdir, env)
        try:
            srv.start()
        except Fail as e:
            print("FAIL %s server: %s" % (sk, e))
            print(read(srv.log)[-3000:])
            failed += 1
            continue
        for name, fn in scenarios():
            if args.only and name not in args.only:
                continue
            full = "%s/%s" % (sk, name)
            t0 = time.monotonic()
            for attempt in (1, 2):
                ctx = Ctx(full.replace("/", "_") + ("" if attempt == 1 else "-retry"), workdir, env)
                err = None
                try:
                    fn(ctx)
                except Fail as e:
                    err = e
                finally:
                    ctx.cleanup()
                if err is None or attempt == 2 or not go_key_flake(ctx):
                    break
                # wormhole-william and a SPAKE2 of python-spake2's kind
                # (Python's, or ours, which is byte-exact with it) now and
                # then derive different keys: seen about once in a hundred
                # Go exchanges, through either mailbox server, never with the
                # same inputs twice. Retried once, loudly; see the notes.
                print("RETRY %-27s Go client key mismatch: %s" % (full, err), flush=True)
                for p in ctx.procs:
                    print(p.report())
            if err is None:
                passed += 1
                print("ok   %-28s %.1fs" % (full, time.monotonic() - t0), flush=True)
            else:
                failed += 1
                print("FAIL %-28s %s" % (full, err), flush=True)
                for p in ctx.procs:
                    print(p.report())
        srv.stop()
        if srv.p is not None and sk == "waybill" and srv.p.returncode not in (0, None):
            print("FAIL waybill mailbox-server exited %s" % srv.p.returncode)
            print(read(srv.log)[-3000:])
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    if failed == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("work directory kept: %s" % workdir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
