"""A mesh of fault-injecting TCP proxies (``faultproxy.FaultProxy``) on directed links.

Every endpoint is a name: node ids (ints) for nodes and ``"client"`` for all Kafka clients.
A link ``(src, dst, listener)`` is one proxy in front of one listener of node ``dst``, used by
``src`` only:

* ``("client", n, "kafka")`` sits in front of node ``n``'s Kafka listener; node ``n``
  advertises its address, so every client connection to ``n`` goes through it (bootstrap and
  per-broker alike).  Optional: a test whose clients connect directly creates none.
* ``(a, b, "kafka")`` and ``(a, b, "controller")`` carry node ``a``'s connections to node
  ``b``'s Kafka listener (replica fetches, transaction markers) and controller listener (Raft
  frames, broker registration, heartbeats, AlterPartition).  Node ``a`` is wired to them by
  ``peer_overrides(a)``, the value of the hidden ``test.peer.address.overrides`` setting
  (honoured with ``FJORD_TEST_HOOKS=1``; docs/cluster-design.md section 9).

Faults act on links, so the same calls work for one node and for N nodes:
``partition(a, b)`` cuts both directions between two endpoints (every listener),
``isolate(n)`` cuts every link into and out of ``n`` (clients included unless
``clients=False``), ``split(group_a, group_b)`` cuts every link across two groups,
``lose_responses`` drops answers after the node handled the request, and ``heal()`` undoes
everything.  A cut either *holds* connections (nothing relayed, nothing closed: looks like a
network partition with TCP still up) or *drops* them (open connections closed, new ones
refused).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from faultproxy import FaultProxy  # noqa: E402

CLIENT = "client"
KAFKA = "kafka"
CONTROLLER = "controller"
LISTENERS = (KAFKA, CONTROLLER)
CUT_MODES = ("hold", "drop")


class ProxyMesh:
    def __init__(self, seed: int = 0):
        self.seed = seed
        self._lock = threading.Lock()
        self._upstreams: dict[object, dict[str, int]] = {}   # node id -> {listener: port}
        self._links: dict[tuple[object, object, str], FaultProxy] = {}

    # ------------------------------------------------------------ topology
    def add_node(self, node_id, port: int, controller_port: int | None = None) -> None:
        """Registers node ``node_id`` with its Kafka listener on ``port`` (127.0.0.1) and, for a
        controller, its controller listener on ``controller_port``."""
        with self._lock:
            ports = {KAFKA: port}
            if controller_port is not None:
                ports[CONTROLLER] = controller_port
            self._upstreams[node_id] = ports

    def nodes(self) -> list:
        with self._lock:
            return sorted(self._upstreams)

    def link(self, src, dst, listener: str = KAFKA) -> FaultProxy:
        """The proxy carrying ``src``'s connections to ``listener`` of node ``dst`` (created and
        started on first use)."""
        with self._lock:
            key = (src, dst, listener)
            proxy = self._links.get(key)
            if proxy is None:
                assert dst in self._upstreams, f"unknown node {dst!r}"
                assert listener in self._upstreams[dst], f"node {dst!r} has no {listener} listener"
                n = len(self._links)
                proxy = FaultProxy(upstream_port=self._upstreams[dst][listener],
                                   seed=self.seed * 1009 + n)
                proxy.start()
                self._links[key] = proxy
            return proxy

    def address(self, src, dst, listener: str = KAFKA) -> str:
        return self.link(src, dst, listener).address

    def client_address(self, node_id) -> str:
        return self.address(CLIENT, node_id)

    def peer_overrides(self, node_id) -> str:
        """``test.peer.address.overrides`` for ``node_id``: where it must connect to reach each
        listener of each peer (``2@127.0.0.1:p,controller:2@127.0.0.1:q,...``).  Creates the
        node-to-node links."""
        entries = []
        for peer in self.nodes():
            if peer == node_id:
                continue
            entries.append(f"{peer}@{self.address(node_id, peer, KAFKA)}")
            if CONTROLLER in self._upstreams[peer]:
                entries.append(f"{CONTROLLER}:{peer}@{self.address(node_id, peer, CONTROLLER)}")
        return ",".join(entries)

    def links(self) -> list[tuple[object, object, str]]:
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

    def partition(self, a, b, mode: str = "hold") -> list[tuple[object, object, str]]:
        """Cuts every link a->b and b->a (each listener; those that exist or can exist);
        returns the links cut."""
        cut = []
        for src, dst in ((a, b), (b, a)):
            if dst not in self._upstreams:
                continue
            listeners = (KAFKA,) if src == CLIENT else tuple(self._upstreams[dst])
            for listener in listeners:
                self._cut(self.link(src, dst, listener), mode)
                cut.append((src, dst, listener))
        return cut

    def isolate(self, node_id, mode: str = "hold", clients: bool = True) -> list[tuple[object, object, str]]:
        """Cuts every link into and out of ``node_id``: the other nodes, and clients (through
        their proxy) unless ``clients=False``."""
        others = [n for n in self.nodes() if n != node_id]
        return self.split([node_id], others + ([CLIENT] if clients else []), mode)

    def split(self, group_a, group_b, mode: str = "hold") -> list[tuple[object, object, str]]:
        """Cuts every link between a member of ``group_a`` and a member of ``group_b``."""
        cut = []
        for a in group_a:
            for b in group_b:
                cut += self.partition(a, b, mode)
        return cut

    def lose_responses(self, src, dst, api_keys, probability: float, seed: int) -> None:
        """The link src->dst (Kafka listener) drops the connection instead of relaying the
        answer to each request of ``api_keys`` with ``probability`` (the node did handle it)."""
        proxy = self.link(src, dst)
        for k in api_keys:
            proxy.drop_response(k, probability=probability, seed=seed + k)

    def heal(self) -> None:
        """Every link relays again: no cut, no rule; held connections resume."""
        with self._lock:
            proxies = list(self._links.values())
        for proxy in proxies:
            proxy.clear_rules()
            proxy.refuse(False)
            proxy.blackhole(False)

    def close(self) -> None:
        with self._lock:
            proxies = list(self._links.values())
        for proxy in proxies:
            proxy.close()
