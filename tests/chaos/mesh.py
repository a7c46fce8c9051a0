"""A mesh of fault-injecting TCP proxies (``faultproxy.FaultProxy``) on directed links.

Every endpoint is a name: node ids (ints) for brokers and ``"client"`` for all Kafka clients.
A link ``(src, dst)`` is one proxy in front of node ``dst`` used by ``src``:

* ``("client", n)`` sits in front of node ``n``'s Kafka listener; node ``n`` advertises its
  address, so every client connection to ``n`` goes through it (bootstrap and per-broker alike).
* ``(a, b)`` between nodes carries ``a``'s connections to ``b`` (replica fetches, controller
  traffic).  Nodes are wired to it through ``peer_overrides(a)`` (the hidden
  ``test.peer.address.overrides`` of docs/cluster-design.md section 9, once the cluster exists).

Faults act on links, so the same calls work for one node today and N nodes later:
``partition(a, b)`` cuts both directions between two endpoints, ``isolate(n)`` cuts every link
into and out of ``n`` (clients included), ``lose_responses`` drops answers after the node
handled the request, and ``heal()`` undoes everything.  A cut either *holds* connections
(nothing relayed, nothing closed: looks like a network partition with TCP still up) or
*drops* them (open connections closed, new ones refused).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from faultproxy import FaultProxy  # noqa: E402

CLIENT = "client"
CUT_MODES = ("hold", "drop")


class ProxyMesh:
    def __init__(self, seed: int = 0):
        self.seed = seed
        self._lock = threading.Lock()
        self._upstreams: dict[object, int] = {}       # node id -> Kafka port
        self._links: dict[tuple[object, object], FaultProxy] = {}

    # ------------------------------------------------------------ topology
    def add_node(self, node_id, port: int) -> None:
        """Registers node ``node_id`` listening on ``port`` (127.0.0.1)."""
        with self._lock:
            self._upstreams[node_id] = port

    def link(self, src, dst) -> FaultProxy:
        """The proxy carrying ``src``'s connections to node ``dst`` (created and started on first use)."""
        with self._lock:
            proxy = self._links.get((src, dst))
            if proxy is None:
                assert dst in self._upstreams, f"unknown node {dst!r}"
                n = len(self._links)
                proxy = FaultProxy(upstream_port=self._upstreams[dst], seed=self.seed * 1009 + n)
                proxy.start()
                self._links[(src, dst)] = proxy
            return proxy

    def address(self, src, dst) -> str:
        return self.link(src, dst).address

    def client_address(self, node_id) -> str:
        return self.address(CLIENT, node_id)

    def peer_overrides(self, node_id) -> str:
        """``"2=127.0.0.1:p,3=127.0.0.1:q"``: where ``node_id`` must connect to reach each peer."""
        peers = sorted(n for n in self._upstreams if n != node_id)
        return ",".join(f"{p}={self.address(node_id, p)}" for p in peers)

    def links(self) -> list[tuple[object, object]]:
        with self._lock:
            return list(self._links)

    # -------------------------------------------------------------- faults
    def _cut(self, proxy: FaultProxy, mode: str) -> None:
        assert mode in CUT_MODES, mode
        if mode == "hold":
            proxy.blackhole(True)
        else:
            proxy.refuse(True)
            proxy.sever_all()

    def partition(self, a, b, mode: str = "hold") -> list[tuple[object, object]]:
        """Cuts the links a->b and b->a (those that exist or can exist); returns the links cut."""
        cut = []
        for src, dst in ((a, b), (b, a)):
            if dst in self._upstreams:
                self._cut(self.link(src, dst), mode)
                cut.append((src, dst))
        return cut

    def isolate(self, node_id, mode: str = "hold") -> list[tuple[object, object]]:
        """Cuts every link into and out of ``node_id``: clients and the other nodes."""
        cut = []
        for other in [CLIENT] + [n for n in self._upstreams if n != node_id]:
            cut += self.partition(node_id, other, mode)
        return cut

    def lose_responses(self, src, dst, api_keys, probability: float, seed: int) -> None:
        """The link src->dst drops the connection instead of relaying the answer to each request
        of ``api_keys`` with ``probability`` (the node did handle it)."""
        proxy = self.link(src, dst)
        for k in api_keys:
            proxy.drop_response(k, probability=probability, seed=seed + k)

    def heal(self) -> None:
        """Every link relays again: no cut, no rule; held connections resume."""
        for key in self.links():
            proxy = self._links[key]
            proxy.clear_rules()
            proxy.refuse(False)
            proxy.blackhole(False)

    def close(self) -> None:
        for key in self.links():
            self._links[key].close()
