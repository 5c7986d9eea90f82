#!/usr/bin/python3
"""Interop test for `waybill transit-relay`.

    /usr/bin/python3 tests/interop/transit_relay.py --waybill /path/to/waybill [-v]
    ... --only NAME      run one scenario (repeatable; see --list)

Runs in private network (+ mount, + pid) namespaces (tests/interop/netns.py,
needs root), where only `lo` exists: `waybill transit-relay` on
127.0.0.1:4001 (usage db in a temporary directory), a second one on
127.0.0.1:4003 with `--wait-timeout 2`, and `waybill mailbox-server` on
127.0.0.1:4000 for the real clients.

Raw scenarios (a few plain sockets; shared/notes/wormhole.md section 5):
  pair-sides      two sides, one token: `ok\\n` to both; 10 MB each way at
                  once, sha256 checked on both ends
  pair-legacy     two legacy lines pair; a legacy line pairs with a sided one
  same-side       same token and side never pair; a third, other side, pairs
                  with the oldest and the spare is closed ("redundant")
  third-waits     a third connection on a paired token waits alone
  bad-handshake   garbage, a newline too early, 105 bytes without one:
                  `bad handshake\\n`, then closed
  impatient       bytes after the line (same packet or later, before `ok`):
                  `impatient\\n`, then closed
  close-ends-pair A writes 1 MB and closes: B reads all of it, then EOF
  wait-timeout    an unpaired connection is closed after --wait-timeout (2 s)
  usage-rows      the usage db: Python's schema (version 1), one row per
                  pair (happy, bytes) and per refused/unpaired connection
Real clients (forced through the relay: `--no-listen` both sides):
  file-py-py      `wormhole --transit-helper tcp:127.0.0.1:4001 send
                  --no-listen FILE` -> `receive --no-listen --accept-file`:
                  2 MB file arrives intact; the relay logged the pair
  file-go-py      wormhole-william (its compiled-in relay
                  transit.magic-wormhole.io:4001, mapped to 127.0.0.1 by a
                  hosts file bind-mounted in our mount namespace) -> Python.
                  Skipped, saying why, where no private mount namespace can
                  hold that bind mount (e.g. `/` shared and not makeable
                  private inside a chroot).
"""
import argparse
import hashlib
import os
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
import netns  # noqa: E402

NETNS_MARK = "WAYBILL_TRANSIT_RELAY_NETNS"
OUTER_MNT = "WAYBILL_TRANSIT_RELAY_OUTER_MNT"
HOST = "127.0.0.1"
RELAY_PORT = 4001
RELAY2_PORT = 4003
MAILBOX_PORT = 4000
RELAY_URL = "ws://%s:%d/v1" % (HOST, MAILBOX_PORT)
TOKEN = "113064e96a4e111193823ddccd8af67719ad17534f918cf1a2ffb2ca29f0e4f5"
PY_WORMHOLE = "/usr/bin/wormhole"
GO_WORMHOLE = "/usr/bin/wormhole-william"
VERBOSE = False


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def log(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


def check(cond, what):
    if not cond:
        raise Fail(what)


_tok = [0]


def fresh_token():
    _tok[0] += 1
    return "%064x" % (0xabc000 + _tok[0])


def line(token, side=None):
    if side is None:
        return ("please relay %s\n" % token).encode()
    return ("please relay %s for side %s\n" % (token, side)).encode()


def conn(port=RELAY_PORT, first=None):
    s = socket.create_connection((HOST, port), timeout=10)
    if first is not None:
        s.sendall(first)
    return s


def read_exact(s, n, timeout=10):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            break
        buf += d
    return buf


def expect_nothing(s, secs=1.0):
    """Nothing arrives (and no EOF) within secs."""
    s.settimeout(secs)
    try:
        d = s.recv(100)
    except socket.timeout:
        return
    raise Fail("expected silence, got %r" % d)


def expect_closed(s, timeout=10, want=b""):
    """Reads until EOF; returns all bytes (must equal want)."""
    s.settimeout(timeout)
    buf = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except ConnectionResetError:
        pass
    check(buf == want, "expected %r then EOF, got %r" % (want, buf[:200]))


# --------------------------------------------------------------------------
# raw scenarios


def pump_both(a, b, size):
    """Send size random bytes each way at once; check sha256 both ends."""
    da, db = os.urandom(size), os.urandom(size)
    got = {}

    def reader(s, key):
        h, n = hashlib.sha256(), 0
        s.settimeout(60)
        while n < size:
            d = s.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        got[key] = (n, h.hexdigest())

    def writer(s, data):
        s.sendall(data)

    ts = [threading.Thread(target=reader, args=(b, "b")),
          threading.Thread(target=reader, args=(a, "a")),
          threading.Thread(target=writer, args=(a, da)),
          threading.Thread(target=writer, args=(b, db))]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    log("%d MB each way in %.2f s" % (size >> 20, time.time() - t0))
    check(got.get("b") == (size, hashlib.sha256(da).hexdigest()), "A->B bytes differ: %r" % (got.get("b"),))
    check(got.get("a") == (size, hashlib.sha256(db).hexdigest()), "B->A bytes differ: %r" % (got.get("a"),))


def sc_pair_sides(ctx):
    t = fresh_token()
    a = conn(first=line(t, "0123456789abcdef"))
    expect_nothing(a, 0.3)
    b = conn(first=line(t, "fedcba9876543210"))
    check(read_exact(a, 3) == b"ok\n", "A: no ok")
    check(read_exact(b, 3) == b"ok\n", "B: no ok")
    pump_both(a, b, 10 << 20)
    a.close()
    expect_closed(b)
    # transit.json's exact lines
    a = conn(first=line(TOKEN, "0123456789abcdef"))
    b = conn(first=line(TOKEN, "fedcba9876543210"))
    check(read_exact(a, 3) == b"ok\n" and read_exact(b, 3) == b"ok\n", "vector lines: no ok")
    a.sendall(b"transit sender x ready\n\n")
    check(read_exact(b, 24) == b"transit sender x ready\n\n", "vector lines: not relayed")
    b.close()
    expect_closed(a)


def sc_pair_legacy(ctx):
    t = fresh_token()
    a, b = conn(first=line(t)), conn(first=line(t))
    check(read_exact(a, 3) == b"ok\n" and read_exact(b, 3) == b"ok\n", "legacy pair: no ok")
    a.sendall(b"hello")
    check(read_exact(b, 5) == b"hello", "legacy pair: not relayed")
    a.close(), b.close()
    t = fresh_token()
    a, b = conn(first=line(t)), conn(first=line(t, "0123456789abcdef"))
    check(read_exact(a, 3) == b"ok\n" and read_exact(b, 3) == b"ok\n", "legacy+sided: no ok")
    a.close()
    expect_closed(b)


def sc_same_side(ctx):
    t = fresh_token()
    a1 = conn(first=line(t, "aaaaaaaaaaaaaaaa"))
    time.sleep(0.1)
    a2 = conn(first=line(t, "aaaaaaaaaaaaaaaa"))
    expect_nothing(a1, 0.7)
    expect_nothing(a2, 0.1)
    b = conn(first=line(t, "bbbbbbbbbbbbbbbb"))
    check(read_exact(b, 3) == b"ok\n", "B: no ok")
    check(read_exact(a1, 3) == b"ok\n", "the oldest waiting side did not get the pair")
    expect_closed(a2)  # redundant: closed without a word
    a1.sendall(b"x" * 1000)
    check(read_exact(b, 1000) == b"x" * 1000, "pair after redundant: not relayed")
    a1.close(), b.close()


def sc_third_waits(ctx):
    t = fresh_token()
    a, b = conn(first=line(t, "1111111111111111")), conn(first=line(t, "2222222222222222"))
    check(read_exact(a, 3) == b"ok\n" and read_exact(b, 3) == b"ok\n", "no ok")
    c = conn(first=line(t, "3333333333333333"))
    expect_nothing(c, 0.7)
    a.sendall(b"abc")
    check(read_exact(b, 3) == b"abc", "the pair broke when a third came")
    d = conn(first=line(t, "4444444444444444"))
    check(read_exact(c, 3) == b"ok\n" and read_exact(d, 3) == b"ok\n", "third and fourth did not pair")
    for s in (a, b, c, d):
        s.close()


def sc_bad_handshake(ctx):
    for first in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"please relay abc\n",
                  ("please relay %s for side 0123456789abcdef0\n" % TOKEN).encode(),
                  ("please relay %s\r\n" % TOKEN).encode()):
        s = conn(first=first)
        expect_closed(s, want=b"bad handshake\n")
    # 105 bytes without a newline, sent in pieces
    s = conn()
    s.sendall(b"please relay ")
    time.sleep(0.05)
    s.sendall(b"a" * 64 + b" for side ")
    time.sleep(0.05)
    try:
        s.sendall(b"b" * 18)
    except OSError:
        pass
    expect_closed(s, want=b"bad handshake\n")


def sc_impatient(ctx):
    t = fresh_token()
    s = conn(first=line(t, "0123456789abcdef") + b"transit sender")
    expect_closed(s, want=b"impatient\n")
    s = conn(first=line(t, "0123456789abcdef"))
    expect_nothing(s, 0.3)
    s.sendall(b"x")
    expect_closed(s, want=b"impatient\n")
    # the token is free again: a new pair on it works
    a, b = conn(first=line(t, "0123456789abcdef")), conn(first=line(t, "fedcba9876543210"))
    check(read_exact(a, 3) == b"ok\n" and read_exact(b, 3) == b"ok\n", "pair after impatience")
    a.close(), b.close()


def sc_close_ends_pair(ctx):
    t = fresh_token()
    a, b = conn(first=line(t, "0123456789abcdef")), conn(first=line(t, "fedcba9876543210"))
    check(read_exact(a, 3) == b"ok\n" and read_exact(b, 3) == b"ok\n", "no ok")
    data = os.urandom(1 << 20)
    a.sendall(data)
    a.close()
    b.settimeout(20)
    buf = b""
    while True:
        d = b.recv(1 << 20)
        if not d:
            break
        buf += d
    check(buf == data, "B got %d of %d bytes before EOF" % (len(buf), len(data)))
    # and the other way: B closes first, A is closed
    t = fresh_token()
    a, b = conn(first=line(t, "0123456789abcdef")), conn(first=line(t, "fedcba9876543210"))
    check(read_exact(a, 3) == b"ok\n" and read_exact(b, 3) == b"ok\n", "no ok")
    b.close()
    expect_closed(a)


def sc_wait_timeout(ctx):
    t = fresh_token()
    t0 = time.time()
    s = conn(RELAY2_PORT, first=line(t, "0123456789abcdef"))
    silent = conn(RELAY2_PORT)  # no handshake at all
    expect_closed(s, timeout=10)
    dt = time.time() - t0
    check(1.5 <= dt <= 5, "unpaired connection closed after %.1f s (want ~2 s)" % dt)
    expect_closed(silent, timeout=5)


def sc_usage_rows(ctx):
    # Stop the relay so that every row is in, then read the file.
    ctx.stop_relay()
    db = sqlite3.connect(ctx.usage_db)
    check(db.execute("SELECT version FROM version").fetchall() == [(1,)], "version row")
    cols = [r[1] for r in db.execute("PRAGMA table_info(usage)")]
    check(cols == ["started", "total_time", "waiting_time", "total_bytes", "result"],
          "usage columns %r" % cols)
    cols = [r[1] for r in db.execute("PRAGMA table_info(current)")]
    check(cols == ["rebooted", "updated", "connected", "waiting", "incomplete_bytes"],
          "current columns %r" % cols)
    res = dict(db.execute("SELECT result, COUNT(*) FROM usage GROUP BY result").fetchall())
    log("usage rows:", res)
    for r in ("happy", "errory", "redundant"):
        check(res.get(r, 0) >= 1, "no %r usage row (have %r)" % (r, res))
    big = db.execute("SELECT MAX(total_bytes) FROM usage WHERE result = 'happy'").fetchone()[0]
    check(big >= 20 << 20, "the 10 MB each-way pair recorded %r bytes" % big)
    db.close()
    ctx.start_relay()


# --------------------------------------------------------------------------
# real clients


def run_pair(ctx, send_argv, recv_argv, name, send_env=None):
    home = tempfile.mkdtemp(dir=ctx.dir)
    src = os.path.join(home, "payload.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(2 << 20))
    out = os.path.join(home, "received.bin")
    env = dict(PATH="/usr/sbin:/usr/bin:/sbin:/bin", HOME=home, LANG="C.UTF-8", LC_ALL="C.UTF-8",
               TMPDIR=home)
    code = "%d-purple-sausages" % (4000 + _tok[0])
    _tok[0] += 1
    send_argv = [a.replace("FILE", src).replace("CODE", code) for a in send_argv]
    recv_argv = [a.replace("OUT", out).replace("CODE", code) for a in recv_argv]
    log("send:", " ".join(send_argv))
    log("recv:", " ".join(recv_argv))
    before = ctx.relay_log_pairs()
    sp = subprocess.Popen(send_argv, cwd=home, env=dict(env, **(send_env or {})),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1.0)
    rp = subprocess.Popen(recv_argv, cwd=home, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        rout = rp.communicate(timeout=90)[0]
        sout = sp.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        sp.kill(), rp.kill()
        sp.wait(), rp.wait()
        raise Fail("%s: timed out" % name)
    log("sender:", sout.decode(errors="replace")[-400:])
    log("receiver:", rout.decode(errors="replace")[-400:])
    check(rp.returncode == 0 and sp.returncode == 0,
          "%s: exit %s/%s\nsender: %s\nreceiver: %s" % (name, sp.returncode, rp.returncode,
                                                        sout[-500:], rout[-500:]))
    with open(src, "rb") as f1, open(out, "rb") as f2:
        check(hashlib.sha256(f1.read()).digest() == hashlib.sha256(f2.read()).digest(),
              "%s: the file differs" % name)
    time.sleep(0.3)
    check(ctx.relay_log_pairs() > before, "%s: the relay logged no pair" % name)


def sc_file_py_py(ctx):
    common = [PY_WORMHOLE, "--relay-url", RELAY_URL, "--transit-helper",
              "tcp:%s:%d" % (HOST, RELAY_PORT)]
    run_pair(ctx, common + ["send", "--no-listen", "--hide-progress", "--code", "CODE", "FILE"],
             common + ["receive", "--no-listen", "--hide-progress", "--accept-file", "-o", "OUT",
                       "CODE"], "file-py-py")


def private_hosts(ctx):
    """Bind-mount a hosts file mapping transit.magic-wormhole.io to 127.0.0.1
    over /etc/hosts, in our own mount namespace only. Raises Skip when that
    cannot be made safe."""
    outer = os.environ.get(OUTER_MNT)
    if outer is None or os.readlink("/proc/self/ns/mnt") == outer:
        raise Skip("no private mount namespace (unshare --mount unavailable)")
    # The mount holding /etc/hosts must not propagate to the outside.
    prop = subprocess.run(["findmnt", "-n", "-o", "TARGET,PROPAGATION", "-T", "/etc/hosts"],
                          capture_output=True, text=True).stdout.split()
    if len(prop) >= 2 and prop[1] != "private":
        r = subprocess.run(["mount", "--make-private", prop[0]], capture_output=True, text=True)
        prop2 = subprocess.run(["findmnt", "-n", "-o", "PROPAGATION", "-T", "/etc/hosts"],
                               capture_output=True, text=True).stdout.strip()
        if prop2 != "private":
            raise Skip("the mount of /etc/hosts (%s) is %s and cannot be made private here: %s"
                       % (prop[0], prop[1], (r.stderr or "").strip()))
    hosts = os.path.join(ctx.dir, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost transit.magic-wormhole.io\n")
    r = subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip("cannot bind-mount a private /etc/hosts: %s" % r.stderr.strip())
    ctx.hosts_mounted = True


def sc_file_go_py(ctx):
    if not os.path.exists(GO_WORMHOLE):
        raise Skip("%s not installed" % GO_WORMHOLE)
    if not ctx.hosts_mounted:
        private_hosts(ctx)
    check(socket.gethostbyname("transit.magic-wormhole.io") == HOST, "hosts file not in effect")
    common = [PY_WORMHOLE, "--relay-url", RELAY_URL, "--transit-helper",
              "tcp:%s:%d" % (HOST, RELAY_PORT)]
    run_pair(ctx, [GO_WORMHOLE, "send", "--relay-url", RELAY_URL, "--hide-progress", "--code",
                   "CODE", "FILE"],
             common + ["receive", "--no-listen", "--hide-progress", "--accept-file", "-o", "OUT",
                       "CODE"], "file-go-py")


SCENARIOS = [
    ("pair-sides", sc_pair_sides), ("pair-legacy", sc_pair_legacy), ("same-side", sc_same_side),
    ("third-waits", sc_third_waits), ("bad-handshake", sc_bad_handshake),
    ("impatient", sc_impatient), ("close-ends-pair", sc_close_ends_pair),
    ("wait-timeout", sc_wait_timeout), ("usage-rows", sc_usage_rows),
    ("file-py-py", sc_file_py_py), ("file-go-py", sc_file_go_py),
]


# --------------------------------------------------------------------------
# servers


class Ctx:
    def __init__(self, waybill, tmp):
        self.waybill = waybill
        self.dir = tmp
        self.usage_db = os.path.join(tmp, "usage.sqlite")
        self.procs = {}
        self.hosts_mounted = False

    def _start(self, name, argv, port):
        logf = open(os.path.join(self.dir, name + ".log"), "ab")
        p = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=logf,
                             stderr=subprocess.STDOUT, env=dict(os.environ, WAYBILL_LOG="info"))
        self.procs[name] = p
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                return
            except OSError:
                if p.poll() is not None:
                    break
                time.sleep(0.05)
        raise Fail("%s did not start:\n%s" % (name, self.read_log(name)[-2000:]))

    def read_log(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def relay_log_pairs(self):
        return self.read_log("relay").count(" relay: pair ")

    def start_relay(self):
        self._start("relay", [self.waybill, "transit-relay", "--port",
                              "tcp:%d:interface=%s" % (RELAY_PORT, HOST), "--usage-db",
                              self.usage_db], RELAY_PORT)

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_relay(self):
        self.stop("relay")

    def start_all(self):
        self.start_relay()
        self._start("relay2", [self.waybill, "transit-relay", "--listen", HOST, "--port",
                               str(RELAY2_PORT), "--wait-timeout", "2"], RELAY2_PORT)
        self._start("mailbox", [self.waybill, "mailbox-server", "--listen", HOST, "--port",
                                str(MAILBOX_PORT), "--channel-db",
                                os.path.join(self.dir, "channel.sqlite")], MAILBOX_PORT)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)
        if self.hosts_mounted:
            subprocess.run(["umount", "/etc/hosts"])
            self.hosts_mounted = False


def main():
    global VERBOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("--waybill", required=True)
    ap.add_argument("--only", action="append")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    if args.list:
        for n, _ in SCENARIOS:
            print(n)
        return 0
    VERBOSE = args.v
    if OUTER_MNT not in os.environ:
        os.environ[OUTER_MNT] = os.readlink("/proc/self/ns/mnt")
    netns.enter(NETNS_MARK)
    waybill = os.path.abspath(args.waybill)
    tmp = tempfile.mkdtemp(prefix="wb_transit_relay_")
    ctx = Ctx(waybill, tmp)
    failed, skipped = [], []
    try:
        ctx.start_all()
        for name, fn in SCENARIOS:
            if args.only and name not in args.only:
                continue
            t0 = time.time()
            try:
                fn(ctx)
                print("ok   %-16s %.1f s" % (name, time.time() - t0), flush=True)
            except Skip as e:
                skipped.append(name)
                print("SKIP %-16s %s" % (name, e), flush=True)
            except Exception as e:  # noqa: BLE001
                failed.append(name)
                print("FAIL %-16s %s" % (name, e), flush=True)
                if VERBOSE or not isinstance(e, Fail):
                    traceback.print_exc()
    except Fail as e:
        failed.append("setup")
        print("FAIL setup: %s" % e, flush=True)
    finally:
        ctx.stop_all()
        if failed:
            for n in ("relay", "relay2", "mailbox"):
                print("---- %s log (tail)" % n)
                print("\n".join(ctx.read_log(n).splitlines()[-25:]))
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failed, %d skipped" % (len(failed), len(skipped)), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
