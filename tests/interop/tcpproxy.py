"""A TCP proxy for the interop tests, run as threads inside the test script:
every connection accepted on 127.0.0.1:PORT is forwarded to a target, and
can be slowed down (a rate cap per direction) or corrupted (one byte of the
transit record stream flipped).

    p = Proxy(4005, ("127.0.0.1", 4001), rate=8 << 20)
    p.start()
    ... p.bytes_up (client -> target), p.bytes_down, p.conns, p.flipped
    p.stop()

Corruption (corrupt=True) knows the transit framing of a relayed connection
(shared/notes/wormhole.md 3.2-3.4): the client's first line is the relay's
`please relay TOKEN for side SIDE\\n`, then its handshake. On a connection
whose handshake is `transit sender ...` the proxy waits for the sender's
`go\\n` and flips one byte inside the ciphertext of the first record after
it (so the receiver's secretbox open must fail). Other connections, and
everything else, pass unchanged.
"""
import socket
import threading
import time

SENDER_HS_LEN = len("transit sender ") + 64 + len(" ready\n\n")


class Proxy:
    def __init__(self, port, target, rate=None, corrupt=False, host="127.0.0.1"):
        self.port, self.target, self.rate, self.corrupt = port, target, rate, corrupt
        self.host = host
        self.bytes_up = 0
        self.bytes_down = 0
        self.conns = 0
        self.flipped = 0
        self._lock = threading.Lock()
        self._socks = []
        self._stop = False
        self._ls = None

    def start(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(16)
        self._ls = ls
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self._stop = True
        for s in [self._ls] + self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self._lock:
                self.conns += 1
                self._socks += [c, u]
            state = {"closed": False}
            threading.Thread(target=self._pump, args=(c, u, True, state), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False, state), daemon=True).start()

    def _pump(self, src, dst, up, state):
        t0, moved = time.monotonic(), 0
        # corruption state (client -> target only)
        head, role, flip_at = b"", None, None
        pos = 0
        try:
            while True:
                d = src.recv(65536 if self.rate is None else min(65536, max(1024, self.rate // 20)))
                if not d:
                    break
                if up and self.corrupt and role != "done":
                    d, head, role, flip_at = self._maybe_flip(d, pos, head, role, flip_at)
                pos += len(d)
                dst.sendall(d)
                moved += len(d)
                with self._lock:
                    if up:
                        self.bytes_up += len(d)
                    else:
                        self.bytes_down += len(d)
                if self.rate:
                    ahead = moved / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            # No half-close (like the relays): one end gone, both closed.
            if not state["closed"]:
                state["closed"] = True
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def _maybe_flip(self, d, pos, head, role, flip_at):
        """d: the next chunk, starting at stream offset pos."""
        if flip_at is None:
            head += d
            nl = head.find(b"\n")
            if nl < 0 or len(head) < nl + 1 + SENDER_HS_LEN + 3:
                if nl >= 0 and len(head) > nl + 1 + 16 and not head[nl + 1:].startswith(b"transit sender"):
                    role = "done"  # a receiver's connection: leave it alone
                return d, head, role, flip_at
            hs = head[nl + 1:]
            if not hs.startswith(b"transit sender "):
                return d, head, "done", flip_at
            go = nl + 1 + SENDER_HS_LEN
            if head[go:go + 3] != b"go\n":
                # "nevermind\n" (a losing connection) or something unexpected
                return d, head, "done", flip_at
            # first record: u32 length, 24-byte nonce, then ciphertext
            flip_at = go + 3 + 4 + 24 + 20
            role = "sender"
        if role == "sender" and pos <= flip_at < pos + len(d):
            b = bytearray(d)
            b[flip_at - pos] ^= 0x40
            d = bytes(b)
            with self._lock:
                self.flipped += 1
            role = "done"
        return d, head, role, flip_at
