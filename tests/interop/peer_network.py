#!/usr/bin/python3
"""Interop test of `waybill peer`: real nodes on 127.0.0.1 in a private
network namespace, watched through their --json events.

    /usr/bin/python3 tests/interop/peer_network.py --waybill BUILD/waybill
        [--quick] [-v] [--only NAME ...] [--list] [--keep]

Scenarios (in this order; every wait bounded, every process ours, stopped by
pid):
  network       a seed (--seed-mode, port 0) and NODES nodes started at once,
                each knowing only the seed (--max-outbound TARGET,
                --pex-interval 300): every node reaches TARGET outbound peers
                other than the seed (its events and its status line agree)
                within 60 s -- printed as "peer_network_converge: X s"; no
                status ever shows more than TARGET outbound; no node reports
                itself as a peer (and reaches itself at most 3 times); every
                node's book holds more than one address; the seed keeps no
                peer longer than SEED_HOLD seconds (it hangs up); the id in
                each "listening" event is the one `--show-id` printed.
  persistence   one node of that network gets SIGTERM (exit 0), and is
                started again with the same --data-dir on the same port:
                `--show-id` and its "listening" event give the same id, the
                key file is 0600, its first status line shows a non-empty
                book (loaded from addrbook.sqlite), it reaches TARGET outbound
                peers again within 30 s, and so do all the others (those
                that had it as a peer dial others). (Whether it asks the seed
                is not checked: the seed's address is in every book -- it
                crawled them -- and may be picked like any other.)
  redial        P (fixed port) and Q (--persistent-peers P, --no-pex, both
                --chat): connected; P gets SIGKILL; Q reports peer_removed
                and a failed redial; P restarts on the same port and data
                dir; Q reports peer_added for P again within 30 s (the redial
                backoff is capped) -- printed as "peer_network_redial: X s".
  no-pex-only   two nodes with --no-pex and nothing else (no reactor, no
                channel), one a persistent peer of the other: they connect
                (docs/peer.md: "--no-pex: only persistent peers and those who
                dial us").
  chat          A - B - C in a line (persistent peers, --no-pex, --chat): a
                line written to A's stdin arrives at B (hops 0) and C (hops
                1) once, "from" A's id, and never comes back to A; the same
                from C to A.
  refusals      R (--network other) dials T: dial_failed naming the network,
                never a peer on either side; W dials T's address with the id
                of another key: dial_failed with an authentication reason
                ("expected ..."), never a peer on either side; all three
                status lines stay at 0 peers.
At the end every process still running gets SIGTERM, then SIGKILL after a
grace period; those stopped by SIGTERM must exit 0, and no process may remain
(in our own pid namespace: none at all besides this script).

--quick (sanitizer builds): 8 nodes with --max-outbound 2 instead of 20 with
4 (8 nodes cannot all hold 4 distinct outbound peers: 32 connections > 28
pairs), everything else the same.

On a failure: a FAIL line naming the scenario, the node and what was expected,
then the last JSON lines (and the last status line) and stderr tail of the
nodes concerned.
"""
import argparse
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402  (tests/interop/netns.py)

NETNS_MARK = "WAYBILL_PEER_NETWORK_NETNS"
HOST = "127.0.0.1"
NET = "t"
REDIAL_PORT = 26700
CONVERGE_S = 60.0
RESTART_S = 30.0
REDIAL_S = 30.0
CONNECT_S = 10.0
SEED_HOLD = 5.0     # seconds a seed may keep a peer
SELF_DIALS = 3      # dials that reach ourselves, at most, per node
GRACE = 5.0         # SIGTERM -> SIGKILL
AUTH_RE = re.compile(r"expected|identity|auth", re.I)
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                          r"ThreadSanitizer")
VERBOSE = False
WAYBILL = None


def log(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


class Fail(Exception):
    def __init__(self, msg, nodes=()):
        super().__init__(msg)
        self.nodes = [n for n in nodes if n is not None]


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def child_env(home):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "TMPDIR": home}
    for k in ("WAYBILL_LOG", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


class Harness:
    def __init__(self, workdir):
        self.dir = workdir
        self.home = os.path.join(workdir, "home")
        os.makedirs(self.home)
        self.env = child_env(self.home)
        self.nodes = []       # every Node made
        self.popens = []      # every process started: (Node, Popen, how it was stopped)

    def show_id(self, data_dir, who):
        try:
            r = subprocess.run([WAYBILL, "peer", "--data-dir", data_dir, "--show-id"],
                               capture_output=True, text=True, env=self.env, timeout=15,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise Fail("%s: `waybill peer --data-dir %s --show-id` did not exit within 15 s"
                       % (who, data_dir))
        out = r.stdout.strip()
        if r.returncode != 0 or not re.fullmatch(r"[0-9a-f]{64}", out):
            raise Fail("%s: `waybill peer --data-dir %s --show-id`: exit %d, expected 0 and "
                       "64 lowercase hex characters; stdout %r, stderr %r"
                       % (who, data_dir, r.returncode, out[:200], r.stderr.strip()[-300:]))
        return out


class Node:
    def __init__(self, h, name, args, chat=False):
        self.h, self.name, self.args, self.chat = h, name, list(args), chat
        self.data = os.path.join(h.dir, name)
        os.makedirs(self.data, exist_ok=True)
        self.runs = 0
        self.p = None
        self.id = self.port = None
        self.stopped_by = None
        h.nodes.append(self)

    # ---- process ----

    def argv(self):
        a = [WAYBILL, "peer", "--data-dir", self.data, "--json", "--status-interval", "200"]
        return a + self.args + (["--chat"] if self.chat else [])

    def start(self):
        self.runs += 1
        sfx = "" if self.runs == 1 else ".%d" % self.runs
        self.out_path = os.path.join(self.h.dir, self.name + sfx + ".out")
        self.err_path = os.path.join(self.h.dir, self.name + sfx + ".err")
        self.events = []   # (time seen, object) of this run
        self.bad = []      # stdout lines that are not JSON events
        self.buf = b""
        self.off = 0
        self.id = self.port = None
        self.stopped_by = None
        self.t_start = time.monotonic()
        with open(self.out_path, "wb") as so, open(self.err_path, "wb") as se:
            self.p = subprocess.Popen(self.argv(), stdout=so, stderr=se, cwd=self.data,
                                      env=self.h.env,
                                      stdin=subprocess.PIPE if self.chat else subprocess.DEVNULL)
        self.h.popens.append((self, self.p))
        log("started %s pid %d: %s" % (self.name, self.p.pid, " ".join(self.argv()[1:])))

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.stopped_by = sig
            os.kill(self.p.pid, sig)

    def term(self):
        """SIGTERM, by pid; SIGKILL after GRACE. Returns the exit status."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.p.wait(GRACE)
            except subprocess.TimeoutExpired:
                self.stopped_by = signal.SIGKILL
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
                self.pump()
                raise Fail("%s did not exit within %.0f s of SIGTERM (killed)"
                           % (self.name, GRACE), [self])
        self.pump()
        return self.p.returncode

    def kill(self):
        if self.alive():
            self.signal(signal.SIGKILL)
            self.p.wait()
        self.pump()

    def say(self, text):
        self.p.stdin.write((text + "\n").encode())
        self.p.stdin.flush()

    # ---- output ----

    def pump(self):
        try:
            with open(self.out_path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return
        self.off += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        now = time.monotonic()
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            try:
                o = json.loads(line)
            except ValueError:
                o = None
            if not isinstance(o, dict) or not isinstance(o.get("event"), str):
                self.bad.append(line)
                continue
            self.events.append((now, o))
            if o["event"] == "listening" and self.id is None:
                self.id, self.port = o.get("id"), o.get("port")

    def evs(self, kind=None):
        return [o for _, o in self.events if kind is None or o["event"] == kind]

    def statuses(self):
        return self.evs("status")

    def last_status(self):
        s = self.statuses()
        return s[-1] if s else None

    def peers(self):
        """Connections now, from peer_added / peer_removed: {(id, outbound): count}.
        Keyed by direction too: a duplicate's replacement (the other
        direction) is added before the old one's removal is reported."""
        c = {}
        for _, o in self.events:
            if o["event"] in ("peer_added", "peer_removed"):
                k = (o.get("id"), bool(o.get("outbound")))
                c[k] = c.get(k, 0) + (1 if o["event"] == "peer_added" else -1)
        return {k: v for k, v in c.items() if v > 0}

    def outbound_ids(self, exclude=()):
        return sorted({i for (i, out) in self.peers() if out and i not in exclude})

    def has_peer(self, pid):
        return any(i == pid for (i, _) in self.peers())

    def report(self):
        if self.p is None:
            return "    --- %s: never started" % self.name
        rc = self.p.poll()
        lines = ["    --- %s (id %s, port %s, pid %s, exit %s%s): %s"
                 % (self.name, (self.id or "?")[:16], self.port, self.p.pid if self.p else "-",
                    rc, ", stopped by %s" % signal.Signals(self.stopped_by).name
                    if self.stopped_by else "", " ".join(self.argv()[1:])[:400])]
        self.pump()
        other = [(t, o) for t, o in self.events if o["event"] != "status"]
        counts = {}
        for _, o in other:
            k = o["event"] + (" [%s]" % o["reason"] if o.get("reason") else "")
            counts[k] = counts.get(k, 0) + 1
        if counts:
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
            lines.append("      events| %s" % ", ".join("%s x%d" % (k[:90], v) for k, v in top))
        st = self.last_status()
        for t, o in other[-14:]:
            lines.append("      json| +%5.1fs %s" % (t - self.t_start, json.dumps(o)[:300]))
        if st is not None:
            lines.append("      json| (last status of %d) %s" % (len(self.statuses()),
                                                              json.dumps(st)))
        for b in self.bad[-5:]:
            lines.append("      not json| %s" % b[:300])
        for l in read(self.err_path).rstrip("\n").splitlines()[-10:]:
            lines.append("      stderr| %s" % l[:300])
        return "\n".join(lines)


def short(i):
    return (i or "?")[:16]


def wait_for(what, timeout, nodes, check):
    """Poll until check() returns None (done); it returns a string saying what
    is still missing, or (string, [culprit nodes]). Fails at the deadline, or
    at once when one of `nodes` exits."""
    end = time.monotonic() + timeout
    while True:
        for n in nodes:
            n.pump()
            if n.p is not None and n.p.poll() is not None and n.stopped_by is None:
                raise Fail("%s exited (status %s; not stopped by this test) while waiting for: %s"
                           % (n.name, n.p.returncode, what), [n])
        r = check()
        if r is None:
            return
        if time.monotonic() > end:
            msg, culprits = r if isinstance(r, tuple) else (r, nodes)
            raise Fail("%s: not within %.0f s: %s" % (what, timeout, msg), culprits[:4])
        time.sleep(0.1)


def wait_listening(nodes, expect_ids=None, timeout=CONNECT_S):
    def check():
        missing = [n for n in nodes if n.id is None]
        if missing:
            return ("no \"listening\" event from %s" % ", ".join(n.name for n in missing[:6]),
                    missing)
        return None
    wait_for("listening events", timeout, nodes, check)
    for n in nodes:
        if not re.fullmatch(r"[0-9a-f]{64}", n.id or "") or not isinstance(n.port, int) \
                or not 0 < n.port < 65536:
            raise Fail("%s: listening event with id %r port %r: expected 64 hex and a port"
                       % (n.name, n.id, n.port), [n])
        if expect_ids is not None and n.id != expect_ids[n.name]:
            raise Fail("%s: listening id %s, expected %s (what --show-id printed)"
                       % (n.name, n.id, expect_ids[n.name]), [n])


def check_invariants(nodes, max_outbound=None):
    """What must hold for every node at any time."""
    for n in nodes:
        n.pump()
        if n.bad:
            raise Fail("%s: stdout line that is not a JSON event: %r" % (n.name, n.bad[0][:200]),
                       [n])
        for o in n.evs("peer_added"):
            if o.get("id") == n.id:
                raise Fail("%s: reports itself as a peer (peer_added with its own id %s)"
                           % (n.name, short(n.id)), [n])
        selfdials = [o for o in n.evs("dial_failed") if "ourselves" in (o.get("reason") or "")]
        if len(selfdials) > SELF_DIALS:
            raise Fail("%s: reached itself %d times (expected at most %d: the address is "
                       "recorded as ours after the first)" % (n.name, len(selfdials), SELF_DIALS),
                       [n])
        if max_outbound is not None:
            for o in n.statuses():
                if o.get("outbound", 0) > max_outbound:
                    raise Fail("%s: status with %s outbound peers, above --max-outbound %d: %s"
                               % (n.name, o.get("outbound"), max_outbound, json.dumps(o)), [n])
        err = read(n.err_path)
        m = SANITIZER_RE.search(err)
        if m:
            raise Fail("%s: sanitizer report on stderr: %r" % (n.name, err[m.start():][:300]),
                       [n])


def status_ok(n, pred):
    s = n.last_status()
    return s is not None and pred(s)


# ---- scenarios -------------------------------------------------------------------------

class Network:
    """State shared by `network` and `persistence`."""
    seed = None
    nodes = []
    target = 0
    pex_ms = 300
    show = {}


def node_args(port, seed):
    return ["--listen", "%s:%d" % (HOST, port), "--network", NET,
            "--seeds", "%s@%s:%d" % (seed.id, HOST, seed.port),
            "--max-outbound", str(Network.target), "--pex-interval", str(Network.pex_ms)]


def converged(nodes, seed, target):
    def check():
        behind = []
        for n in nodes:
            out = n.outbound_ids(exclude={seed.id})
            st = n.last_status()
            # PEX never drops a peer to make room: a node every other node
            # dialed first has no one left to dial (likely in --quick's small
            # network). Connected to all the others is as far as it can go.
            full = (st is not None and len(out) >= 1 and len(out) == st.get("outbound")
                    and st.get("outbound", 0) + st.get("inbound", 0) >= len(nodes) - 1)
            if full:
                continue
            if len(out) != target or st is None or st.get("outbound") != target:
                behind.append((n, len(out), st.get("outbound") if st else None))
        if behind:
            return ("%d node(s) short of %d outbound peers (seed excluded): %s"
                    % (len(behind), target, ", ".join("%s events %d status %s" % (n.name, e, s)
                                                       for n, e, s in behind[:8])),
                    [b[0] for b in behind])
        return None
    return check


def sc_network(h, quick):
    nn, target = (8, 2) if quick else (20, 4)
    Network.target = target
    seed = Network.seed = Node(h, "seed", ["--seed-mode", "--listen", "%s:0" % HOST,
                                           "--network", NET, "--pex-interval",
                                           str(Network.pex_ms)])
    Network.show["seed"] = h.show_id(seed.data, "seed")
    seed.start()
    wait_listening([seed], Network.show)
    nodes = Network.nodes = [Node(h, "n%02d" % i, []) for i in range(nn)]
    for n in nodes:
        n.args = node_args(0, seed)
        Network.show[n.name] = h.show_id(n.data, n.name)
    t0 = time.monotonic()
    for n in nodes:
        n.start()
    wait_listening(nodes, Network.show)
    wait_for("all %d nodes at %d outbound peers" % (nn, target), CONVERGE_S, nodes + [seed],
             converged(nodes, seed, target))
    dt = time.monotonic() - t0
    print("peer_network_converge: %.1f s (%d nodes, %d outbound each)" % (dt, nn, target),
          flush=True)
    check_invariants(nodes, target)
    check_invariants([seed])

    def books():
        small = [n for n in nodes if not status_ok(n, lambda s: s.get("book", 0) > 1)]
        if small:
            return ("status \"book\" <= 1 at %s" % ", ".join(
                "%s (%s)" % (n.name, (n.last_status() or {}).get("book")) for n in small[:8]),
                small)
        return None
    wait_for("every node's address book > 1", 3, nodes, books)

    # The seed hangs up: every peer_added at the seed is followed by its
    # peer_removed within SEED_HOLD. Watch long enough for that to show.
    served = seed.evs("peer_added")
    if not served:
        raise Fail("seed: no peer_added at all (it served %d nodes?)" % nn, [seed])
    first_t = min(t for t, o in seed.events if o["event"] == "peer_added")
    wait = first_t + SEED_HOLD + 1.0 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    seed.pump()
    open_since = {}
    for t, o in seed.events:
        k = (o.get("id"), bool(o.get("outbound")))
        if o["event"] == "peer_added":
            open_since.setdefault(k, []).append(t)
        elif o["event"] == "peer_removed" and open_since.get(k):
            open_since[k].pop(0)
    now = time.monotonic()
    held = [(k, now - ts[0]) for k, ts in open_since.items() if ts and now - ts[0] > SEED_HOLD]
    if held:
        names = {n.id: n.name for n in nodes}
        raise Fail("seed: keeps peers longer than %.0f s (seed mode should hang up): %s"
                   % (SEED_HOLD, ", ".join("%s (%s) %.1f s" % (names.get(k[0], short(k[0])),
                                                              "outbound" if k[1] else "inbound", a)
                                           for k, a in held[:6])), [seed])
    if not seed.evs("peer_removed"):
        raise Fail("seed: never hung up on anyone", [seed])
    log("seed: %d peer_added, %d peer_removed" % (len(served), len(seed.evs("peer_removed"))))


def sc_persistence(h, quick):
    seed, nodes, target = Network.seed, Network.nodes, Network.target
    if seed is None or not nodes:
        raise Fail("needs the network of the `network` scenario")
    k = next((n for n in nodes if n.alive() and n.id), None)
    if k is None:
        raise Fail("no node of the network is running")
    old_id, old_port = k.id, k.port
    before = Network.show[k.name]
    rc = k.term()
    if rc != 0:
        raise Fail("%s: exit status %s after SIGTERM, expected 0" % (k.name, rc), [k])
    after = h.show_id(k.data, k.name)
    if after != before:
        raise Fail("%s: --show-id after the stop gives %s, before it gave %s"
                   % (k.name, after, before), [k])
    keyf = os.path.join(k.data, "node_key.json")
    try:
        mode = stat.S_IMODE(os.stat(keyf).st_mode)
    except OSError as e:
        raise Fail("%s: %s: %s (docs/peer.md: node_key.json in the data dir)" % (k.name, keyf, e))
    if mode & 0o077:
        raise Fail("%s: %s has mode %o, expected 0600" % (k.name, keyf, mode))
    book = os.path.join(k.data, "addrbook.sqlite")
    if not os.path.isfile(book) or os.path.getsize(book) == 0:
        raise Fail("%s: no (or an empty) %s after the stop" % (k.name, book), [k])
    k.args = node_args(old_port, seed)
    t0 = time.monotonic()
    k.start()
    wait_listening([k], {k.name: old_id})
    if k.port != old_port:
        raise Fail("%s: listening on %s, asked for %d" % (k.name, k.port, old_port), [k])

    def first_status():
        return None if k.statuses() else "no status line yet"
    wait_for("%s: a status line after the restart" % k.name, 5, [k], first_status)
    st = k.statuses()[0]
    if not st.get("book", 0) > 0:
        raise Fail("%s: first status line after the restart shows book %s, expected > 0 (the "
                   "book loaded from addrbook.sqlite): %s" % (k.name, st.get("book"),
                                                              json.dumps(st)), [k])
    if st.get("id") != old_id:
        raise Fail("%s: status id %s, expected %s" % (k.name, st.get("id"), old_id), [k])
    wait_for("%s at %d outbound peers again after the restart" % (k.name, target), RESTART_S,
             [k], converged([k], seed, target))
    log("%s back at %d outbound peers in %.1f s" % (k.name, target, time.monotonic() - t0))
    check_invariants([k], target)
    # Those that had k as an outbound peer lost it: they dial others.
    wait_for("the whole network at %d outbound peers again" % target, RESTART_S, nodes + [seed],
             converged(nodes, seed, target))
    check_invariants(nodes, target)


def sc_redial(h, quick):
    p = Node(h, "redial-P", ["--listen", "%s:%d" % (HOST, REDIAL_PORT), "--no-pex"], chat=True)
    pid = h.show_id(p.data, p.name)
    q = Node(h, "redial-Q", ["--listen", "%s:0" % HOST, "--no-pex", "--persistent-peers",
                             "%s@%s:%d" % (pid, HOST, REDIAL_PORT)], chat=True)
    p.start()
    wait_listening([p], {p.name: pid})
    q.start()
    wait_listening([q])
    both = [p, q]

    def connected():
        if not q.has_peer(pid):
            return ("Q has no peer_added for P", [q, p])
        if not p.has_peer(q.id):
            return ("P has no peer_added for Q", [p, q])
        return None
    wait_for("P and Q connected", CONNECT_S, both, connected)
    if q.outbound_ids() != [pid]:
        raise Fail("Q: outbound peers %s, expected P only" % [short(i) for i in q.outbound_ids()],
                   [q])
    p.kill()
    t_kill = time.monotonic()
    nrem = len([o for o in q.evs("peer_removed") if o.get("id") == pid])

    def removed():
        if len([o for o in q.evs("peer_removed") if o.get("id") == pid]) == 0:
            return ("Q reported no peer_removed for P after P's SIGKILL", [q])
        if not [o for o in q.evs("dial_failed") if o.get("id") == pid]:
            return ("Q reported no failed redial of P while P is down", [q])
        return None
    wait_for("Q notices P's death and redials", CONNECT_S, [q], removed)
    log("Q: peer_removed after %.1f s (%d before)" % (time.monotonic() - t_kill, nrem))
    n_added = len([o for o in q.evs("peer_added") if o.get("id") == pid])
    p.start()
    wait_listening([p], {p.name: pid})
    if p.port != REDIAL_PORT:
        raise Fail("P: restarted on port %s, asked for %d" % (p.port, REDIAL_PORT), [p])
    t0 = time.monotonic()

    def back():
        if len([o for o in q.evs("peer_added") if o.get("id") == pid]) <= n_added:
            return ("Q has no new peer_added for P", [q, p])
        return None
    wait_for("Q redials restarted P", REDIAL_S, both, back)
    dt = time.monotonic() - t0
    print("peer_network_redial: %.1f s" % dt, flush=True)
    wait_for("P sees Q again", 5, both,
             lambda: None if p.has_peer(q.id) else ("P has no peer_added for Q", [p]))
    check_invariants(both)


def sc_no_pex_only(h, quick):
    u = Node(h, "bare-U", ["--listen", "%s:0" % HOST, "--no-pex"])
    u.start()
    wait_listening([u])
    v = Node(h, "bare-V", ["--listen", "%s:0" % HOST, "--no-pex", "--persistent-peers",
                           "%s@%s:%d" % (u.id, HOST, u.port)])
    v.start()
    wait_listening([v])

    def connected():
        if not v.has_peer(u.id):
            fails = v.evs("dial_failed")
            return ("V (--no-pex, --persistent-peers U) has no peer_added for U (U has --no-pex "
                    "too)%s" % ("; last dial_failed reason %r" % fails[-1].get("reason")
                                if fails else ""), [v, u])
        if not u.has_peer(v.id):
            return ("U has no peer_added for V", [u, v])
        return None
    wait_for("two --no-pex nodes connected", CONNECT_S, [u, v], connected)
    check_invariants([u, v])


def sc_chat(h, quick):
    a = Node(h, "chat-A", ["--listen", "%s:0" % HOST, "--no-pex"], chat=True)
    a.start()
    wait_listening([a])
    b = Node(h, "chat-B", ["--listen", "%s:0" % HOST, "--no-pex", "--persistent-peers",
                           "%s@%s:%d" % (a.id, HOST, a.port)], chat=True)
    b.start()
    wait_listening([b])
    c = Node(h, "chat-C", ["--listen", "%s:0" % HOST, "--no-pex", "--persistent-peers",
                           "%s@%s:%d" % (b.id, HOST, b.port)], chat=True)
    c.start()
    wait_listening([c])
    line = [a, b, c]

    def connected():
        want = [(a, [b]), (b, [a, c]), (c, [b])]
        for n, ps in want:
            got = {i for (i, _) in n.peers()}
            if got != {p.id for p in ps}:
                return ("%s has peers %s, expected %s" % (n.name, [short(i) for i in got],
                                                          [p.name for p in ps]), [n])
        return None
    wait_for("A - B - C connected", CONNECT_S, line, connected)

    for src, mid, dst in ((a, b, c), (c, b, a)):
        text = "hello from %s \u2603 %d" % (src.name, os.getpid())
        src.say(text)

        def arrived():
            if not [o for o in dst.evs("chat") if o.get("text") == text]:
                return ("%s got no chat event with %r" % (dst.name, text), [dst, mid, src])
            return None
        wait_for("a line from %s's stdin at %s" % (src.name, dst.name), CONNECT_S, line, arrived)
        time.sleep(0.5)  # duplicates, echoes
        for n, hops in ((mid, 0), (dst, 1)):
            n.pump()
            got = [o for o in n.evs("chat") if o.get("text") == text]
            if len(got) != 1:
                raise Fail("%s: %d chat events for %r, expected exactly 1: %s"
                           % (n.name, len(got), text, got), [n])
            o = got[0]
            if o.get("from") != src.id or o.get("hops") != hops:
                raise Fail("%s: chat event %s, expected from %s (%s) with hops %d"
                           % (n.name, json.dumps(o), src.id, src.name, hops), [n])
        src.pump()
        echo = [o for o in src.evs("chat") if o.get("text") == text]
        if echo:
            raise Fail("%s: its own line came back: %s" % (src.name, json.dumps(echo[0])), [src])
    check_invariants(line)


def sc_refusals(h, quick):
    t = Node(h, "refuse-T", ["--listen", "%s:0" % HOST, "--no-pex"], chat=True)
    t.start()
    wait_listening([t])
    other = Node(h, "refuse-X", [])
    x_id = h.show_id(other.data, other.name)  # a key nobody runs
    r = Node(h, "refuse-R", ["--listen", "%s:0" % HOST, "--no-pex", "--network", "other",
                             "--persistent-peers", "%s@%s:%d" % (t.id, HOST, t.port)], chat=True)
    w = Node(h, "refuse-W", ["--listen", "%s:0" % HOST, "--no-pex",
                             "--persistent-peers", "%s@%s:%d" % (x_id, HOST, t.port)], chat=True)
    r.start()
    w.start()
    wait_listening([r, w])
    allp = [t, r, w]

    def refused():
        fr = r.evs("dial_failed")
        if len(fr) < 2:
            return ("R (--network other) has %d dial_failed events for T, expected 2 (a dial "
                    "and a redial)" % len(fr), [r, t])
        if not any("network" in (o.get("reason") or "") for o in fr):
            return ("R: no dial_failed reason names the network: %s"
                    % [o.get("reason") for o in fr[-3:]], [r, t])
        fw = w.evs("dial_failed")
        if len(fw) < 2:
            return ("W (dials T's address with another key's id) has %d dial_failed events, "
                    "expected 2 (a dial and a redial)" % len(fw), [w, t])
        if not any(AUTH_RE.search(o.get("reason") or "") for o in fw):
            return ("W: no dial_failed reason says another key answered (%s): %s"
                    % (AUTH_RE.pattern, [o.get("reason") for o in fw[-3:]]), [w, t])
        if any(o.get("id") != x_id for o in fw):
            return ("W: a dial_failed event with an id other than the one dialed (%s): %s"
                    % (short(x_id), [json.dumps(o) for o in fw if o.get("id") != x_id][:2]),
                    [w])
        return None
    wait_for("R and W refused", 15, allp, refused)
    time.sleep(0.5)  # a status line after the refusals
    for n in allp:
        n.pump()
        added = n.evs("peer_added")
        if added:
            raise Fail("%s: peer_added although every connection here must be refused: %s"
                       % (n.name, json.dumps(added[0])), [n, t])
        busy = [s for s in n.statuses() if s.get("outbound") or s.get("inbound")]
        if busy:
            raise Fail("%s: status with a peer although every connection must be refused: %s"
                       % (n.name, json.dumps(busy[0])), [n])
        if not n.statuses():
            raise Fail("%s: no status line (--status-interval 200)" % n.name, [n])
    check_invariants(allp)


SCENARIOS = [
    ("network", sc_network),
    ("persistence", sc_persistence),
    ("redial", sc_redial),
    ("no-pex-only", sc_no_pex_only),
    ("chat", sc_chat),
    ("refusals", sc_refusals),
]


def stop_all(h):
    """SIGTERM to every process still running, SIGKILL after GRACE; each
    stopped here must exit 0. Returns a list of problems."""
    problems = []
    live = [n for n in h.nodes if n.alive()]
    for n in live:
        n.signal(signal.SIGTERM)
    end = time.monotonic() + GRACE
    for n in live:
        try:
            n.p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            n.stopped_by = signal.SIGKILL
            os.kill(n.p.pid, signal.SIGKILL)
            n.p.wait()
            problems.append(("%s did not exit within %.0f s of SIGTERM (killed)"
                             % (n.name, GRACE), n))
            continue
        if n.p.returncode != 0:
            problems.append(("%s exited %s after SIGTERM, expected 0" % (n.name, n.p.returncode),
                             n))
    for n, p in h.popens:
        if p.poll() is None:
            problems.append(("%s (pid %d) still running" % (n.name, p.pid), n))
    for n in h.nodes:
        if n.p is not None:
            err = read(n.err_path)
            m = SANITIZER_RE.search(err)
            if m:
                problems.append(("%s: sanitizer report on stderr: %r"
                                 % (n.name, err[m.start():][:300]), n))
    if os.getpid() == 1:  # our own pid namespace: nothing else may be left
        others = []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != 1:
                cmd = read("/proc/%s/cmdline" % d).replace("\0", " ").strip()
                if cmd:
                    others.append("pid %s: %s" % (d, cmd[:150]))
        if others:
            problems.append(("processes left in the namespace: %s" % "; ".join(others), None))
    return problems


def stop_nodes(scenario, nodes):
    """SIGTERM (SIGKILL after GRACE) to what a scenario leaves running: each
    must exit 0. Returns the number of failures."""
    bad = 0
    for n in nodes:
        try:
            rc = n.term()
        except Fail as e:
            print("FAIL %-12s %s" % (scenario, e), flush=True)
            print(n.report(), flush=True)
            bad += 1
            continue
        if rc != 0:
            bad += 1
            print("FAIL %-12s %s exited %s after SIGTERM, expected 0" % (scenario, n.name, rc),
                  flush=True)
            print(n.report(), flush=True)
    return bad


def main():
    global VERBOSE, WAYBILL
    ap = argparse.ArgumentParser()
    ap.add_argument("--waybill", required=True)
    ap.add_argument("--quick", action="store_true", help="8 nodes (sanitizer builds)")
    ap.add_argument("--only", action="append")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--pex-interval", type=int, default=300,
                    help="the network's --pex-interval (ms; for diagnosis, default 300)")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.v
    WAYBILL = os.path.abspath(args.waybill)
    Network.pex_ms = args.pex_interval
    if args.list:
        for name, _ in SCENARIOS:
            print(name)
        return 0
    if not os.access(WAYBILL, os.X_OK):
        print("FAIL setup: %s is missing" % WAYBILL)
        return 2
    netns.enter(NETNS_MARK)
    workdir = tempfile.mkdtemp(prefix="peer-network-")
    h = Harness(workdir)
    t_all = time.monotonic()
    failed = passed = 0
    for name, fn in SCENARIOS:
        if args.only and name not in args.only:
            continue
        if name == "persistence" and args.only and "network" not in args.only:
            print("FAIL %-12s needs the network scenario (--only network --only persistence)"
                  % name)
            failed += 1
            continue
        t0 = time.monotonic()
        try:
            fn(h, args.quick)
        except Fail as e:
            failed += 1
            print("FAIL %-12s %s" % (name, e), flush=True)
            for n in e.nodes:
                print(n.report(), flush=True)
        else:
            passed += 1
            print("ok   %-12s %.1fs" % (name, time.monotonic() - t0), flush=True)
        keep_network = name == "network" and (not args.only or "persistence" in args.only)
        if not keep_network:  # the network stays up for `persistence`
            failed += stop_nodes(name, [n for n in h.nodes if n.alive()])
    problems = stop_all(h)
    for msg, n in problems:
        failed += 1
        print("FAIL %-12s %s" % ("cleanup", msg), flush=True)
        if n is not None:
            print(n.report(), flush=True)
    print("%d passed, %d failed (%.1f s)" % (passed, failed, time.monotonic() - t_all))
    if failed == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("work directory kept: %s" % workdir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
