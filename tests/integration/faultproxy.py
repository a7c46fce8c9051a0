"""A fault-injecting TCP proxy that understands Kafka framing.

Placed between a client and a broker that advertises the proxy's address (start the broker
with ``settings={"advertised.listener": proxy.address}``), so every connection a client makes,
bootstrap and per-broker alike, goes through it.  It cuts the byte streams into Kafka frames
(4-byte big-endian length), reads each request's header (api_key int16, api_version int16,
correlation_id int32) and each response's correlation id, and can:

* ``drop_response``: forward a request to the broker, and when the broker's response to it
  comes back, close the connection instead of relaying it.  The broker has handled the request
  (a produce was appended) but the client never sees the answer and must retry.
* ``stall_response``: like ``drop_response`` but the connection is frozen instead of closed:
  the response is swallowed and nothing more is relayed in either direction until
  ``release_stalled()`` (or the broker side closes), then the connection is closed.
* ``drop_request``: close the connection instead of forwarding the request.
* ``set_delay``: delay every forwarded request (optionally only one api key).
* ``blackhole``: stop relaying in both directions on every connection (existing and new)
  without closing anything, until ``blackhole(False)``.
* ``sever_all``: close every open connection now.
* ``refuse``: close every new connection at once (the node looks unreachable) until
  ``refuse(False)``; with ``sever_all`` this cuts a link instead of holding it.

Which requests a fault hits: the Nth, N+1th... request of an api key seen by the proxy
(``nth=[3, 7]``, 1-based, counted across all connections from the moment the rule is set),
or each with probability ``p`` (seeded), up to ``limit`` times.

Every fault is recorded in ``events`` (kind, api_key, correlation_id, the request index);
``wait_for(predicate)`` polls the proxy's counters under its lock.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

PRODUCE = 0


@dataclass
class Rule:
    kind: str                      # "drop_response" | "stall_response" | "drop_request"
    api_key: int
    nth: set[int] = field(default_factory=set)
    probability: float = 0.0
    limit: int | None = None
    rng: random.Random = field(default_factory=random.Random)
    seen: int = 0                  # requests of api_key seen since the rule was set
    fired: int = 0

    def hits(self) -> bool:
        self.seen += 1
        if self.limit is not None and self.fired >= self.limit:
            return False
        hit = self.seen in self.nth or (self.probability > 0 and self.rng.random() < self.probability)
        if hit:
            self.fired += 1
        return hit


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> bytes | None:
    """One whole frame including its 4-byte length prefix, or None on EOF/error."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">i", head)
    if length < 0 or length > 512 * 1024 * 1024:
        return None
    body = _recv_exact(sock, length)
    if body is None:
        return None
    return head + body


class _Conn:
    def __init__(self, proxy: "FaultProxy", client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.faults: dict[int, tuple[str, int]] = {}   # correlation id -> (kind, request index)
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.stalled = threading.Event()

    def start(self):
        threading.Thread(target=self._c2s, daemon=True, name="proxy-c2s").start()
        threading.Thread(target=self._s2c, daemon=True, name="proxy-s2c").start()

    def close(self):
        if self.closed.is_set():
            return
        self.closed.set()
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.proxy._forget(self)

    def _hold(self):
        """Wait while black-holed or stalled; returns False if the connection should close."""
        p = self.proxy
        while not self.closed.is_set():
            if self.stalled.is_set():
                if p._release_stalled.wait(0.05):
                    return False
                continue
            if p._blackholed.is_set():
                time.sleep(0.02)
                continue
            return True
        return False

    def _c2s(self):
        p = self.proxy
        try:
            while not self.closed.is_set():
                frame = _read_frame(self.client)
                if frame is None or not self._hold():
                    break
                api_key, api_version, corr = struct.unpack(">hhi", frame[4:12])
                kind, index = p._decide(api_key, api_version, corr)
                if kind == "drop_request":
                    p._record("drop_request", api_key, corr, index)
                    break
                if kind is not None:
                    with self.lock:
                        self.faults[corr] = (kind, index)
                delay = p._delay_for(api_key)
                if delay:
                    time.sleep(delay)
                if not self._hold():
                    break
                self.upstream.sendall(frame)
                p._count_forwarded(api_key)
        except OSError:
            pass
        self.close()

    def _s2c(self):
        p = self.proxy
        try:
            while not self.closed.is_set():
                frame = _read_frame(self.upstream)
                if frame is None:
                    break
                (corr,) = struct.unpack(">i", frame[4:8])
                with self.lock:
                    fault = self.faults.pop(corr, None)
                if fault is not None:
                    kind, index = fault
                    p._record(kind, None, corr, index)
                    if kind == "stall_response":
                        self.stalled.set()
                        self._hold()  # until released or closed; never relays the response
                    break
                if not self._hold():
                    break
                self.client.sendall(frame)
        except OSError:
            pass
        self.close()


class FaultProxy:
    def __init__(self, upstream_port: int | None = None, upstream_host: str = "127.0.0.1",
                 seed: int | None = None):
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.seed = seed
        self._lock = threading.Condition()
        self._conns: set[_Conn] = set()
        self._rules: list[Rule] = []
        self._delay: tuple[float, int | None] = (0.0, None)
        self._blackholed = threading.Event()
        self._refusing = threading.Event()
        self._release_stalled = threading.Event()
        self.events: list[tuple[str, int | None, int, int]] = []
        self.forwarded: dict[int, int] = {}
        self.connections_accepted = 0
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "FaultProxy":
        assert self.upstream_port is not None, "set upstream_port before start()"
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept")
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        self._release_stalled.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self.sever_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept_loop(self):
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self._refusing.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection((self.upstream_host, self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()  # broker down: the client sees a refused/closed connection
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, client, upstream)
            with self._lock:
                self._conns.add(conn)
                self.connections_accepted += 1
            conn.start()

    def _forget(self, conn: _Conn):
        with self._lock:
            self._conns.discard(conn)
            self._lock.notify_all()

    # --------------------------------------------------------------- faults
    def _add_rule(self, kind, api_key, nth, probability, limit, seed) -> Rule:
        if seed is None:
            seed = self.seed
        rule = Rule(kind, api_key, set(nth or ()), probability, limit, random.Random(seed))
        with self._lock:
            self._rules.append(rule)
        return rule

    def drop_response(self, api_key: int = PRODUCE, nth=None, probability: float = 0.0,
                      limit: int | None = None, seed: int | None = None) -> Rule:
        return self._add_rule("drop_response", api_key, nth, probability, limit, seed)

    def stall_response(self, api_key: int = PRODUCE, nth=None, probability: float = 0.0,
                       limit: int | None = None, seed: int | None = None) -> Rule:
        self._release_stalled.clear()
        return self._add_rule("stall_response", api_key, nth, probability, limit, seed)

    def drop_request(self, api_key: int = PRODUCE, nth=None, probability: float = 0.0,
                     limit: int | None = None, seed: int | None = None) -> Rule:
        return self._add_rule("drop_request", api_key, nth, probability, limit, seed)

    def clear_rules(self):
        with self._lock:
            self._rules.clear()

    def set_delay(self, seconds: float, api_key: int | None = None):
        with self._lock:
            self._delay = (seconds, api_key)

    def blackhole(self, on: bool = True):
        if on:
            self._blackholed.set()
        else:
            self._blackholed.clear()

    def refuse(self, on: bool = True):
        if on:
            self._refusing.set()
        else:
            self._refusing.clear()

    def release_stalled(self):
        """Close every stalled connection (their swallowed responses are never relayed)."""
        self._release_stalled.set()

    def sever_all(self):
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.close()

    def _decide(self, api_key, api_version, corr):
        with self._lock:
            for rule in self._rules:
                if rule.api_key == api_key and rule.hits():
                    return rule.kind, rule.seen
        return None, 0

    def _delay_for(self, api_key):
        seconds, only = self._delay
        if seconds and (only is None or only == api_key):
            return seconds
        return 0.0

    def _count_forwarded(self, api_key):
        with self._lock:
            self.forwarded[api_key] = self.forwarded.get(api_key, 0) + 1
            self._lock.notify_all()

    def _record(self, kind, api_key, corr, index):
        with self._lock:
            self.events.append((kind, api_key, corr, index))
            self._lock.notify_all()

    # ------------------------------------------------------------- queries
    def count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for e in self.events if e[0] == kind)

    def forwarded_count(self, api_key: int = PRODUCE) -> int:
        with self._lock:
            return self.forwarded.get(api_key, 0)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition"):
        """Wait until ``predicate(self)`` holds (evaluated whenever the proxy records something)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                # predicate may call count()/forwarded_count(): Condition wraps an RLock
                if predicate(self):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"proxy: {what} not reached within {timeout}s "
                                         f"(events={self.events[-10:]}, forwarded={self.forwarded})")
                self._lock.wait(min(left, 0.1))
