"""A local multi-node Fjord cluster for black-box tests: N ``fjord serve`` processes on loopback.

Nodes 1..size are combined broker+controllers (``process.roles=broker,controller``), the voters
of the Raft metadata quorum; ``brokers=M`` (or ``add_broker()``) adds broker-only nodes
(``process.roles=broker``, ids size+1..), observers that fetch the committed metadata log from
the voters and bind no controller listener.  Every node runs on free ports (clients,
controllers, metrics), with ``--broker-rack rack-N`` and its own data dir; its stdout+stderr are appended to ``<workdir>/node-N/node.log``
across restarts (a banner per start).  Nodes are started exactly as ``scripts/cluster`` does.

``Cluster`` offers process control (``kill`` = SIGKILL, ``stop`` = SIGTERM and wait, ``start``,
``pause``/``resume`` = SIGSTOP/SIGCONT, ``wait_ready`` = ``/health/ready`` answers 200),
client views (``metadata()`` through confluent-kafka's AdminClient, ``raw_metadata()`` through a
hand-built Metadata v7 request, which also carries leader epochs, offline replicas, racks and the
cluster id that librdkafka does not expose), ``active_controller()`` (DescribeQuorum's Raft leader, agreeing with the "became the active
controller" lines of the logs), and
``wait_for`` to poll a condition with a deadline (never a timing assertion: the deadline only
bounds how long a test waits for something that must eventually happen); ``create_topic`` and
``wait_topic`` create a topic through a real client and wait until every node serves it;
``wait_isr``, ``leader_of``, ``read_all`` and ``assert_no_acked_loss`` for replication tests.

Network faults between nodes: ``Cluster(..., mesh=True)`` starts a ``ProxyMesh``
(tests/chaos/mesh.py) with a fault-injecting TCP proxy on every directed node-to-node link
(each peer's Kafka listener and controller listener), wired through the hidden
``test.peer.address.overrides`` setting (``FJORD_TEST_HOOKS=1``).  Clients still connect to the
nodes directly.  ``partition(a, b)``, ``isolate(n)``, ``split(group_a, group_b)`` cut links
(``mode="hold"``: connections stay open and nothing flows; ``"drop"``: connections closed and
refused), ``heal()`` restores every link.  Clock jumps: ``Cluster(..., clock_offsets=True)``
points each node's ``FJORD_TEST_CLOCK_OFFSET_FILE`` at ``node-N/clock-offset-ms``;
``set_clock_offset(n, ms)`` shifts that node's wall clock (the broker re-reads it within
100 ms).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import kwire  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from helpers import OP_TIMEOUT, RDKAFKA_LOGGER, consumer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))

from mesh import ProxyMesh  # noqa: E402
from confluent_kafka import KafkaError, KafkaException, TopicPartition  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0

# Small timeouts so that fencing and failover happen within seconds in tests.  A bounded
# shutdown.timeout.ms because the node that stops last (all nodes SIGTERMed at once at teardown)
# has no controller quorum left to finish its controlled shutdown with and waits that long.
TEST_SETTINGS = {
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
    "shutdown.timeout.ms": 5000,
}

# Kafka error codes the cluster tests look for.
NOT_ENOUGH_REPLICAS = 19
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INCONSISTENT_CLUSTER_ID = 104

METADATA_V7 = 7


def find_binary() -> Path:
    env = os.environ.get("FJORD_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO_ROOT / "target")
    return Path(target) / "release" / "fjord"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free a moment ago (all sockets held until all are chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def read_meta_properties(data_dir: Path) -> dict[str, str]:
    """``meta.properties`` as a dict (Java properties: ``key=value`` lines, ``#`` comments)."""
    out = {}
    for line in (Path(data_dir) / "meta.properties").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


# --------------------------------------------------------------------- Metadata v7 (raw)
@dataclass
class RawPartition:
    partition: int
    error: int
    leader: int
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    offline: list[int]


@dataclass
class RawTopic:
    name: str
    error: int
    partitions: dict[int, RawPartition] = field(default_factory=dict)


@dataclass
class RawMetadata:
    cluster_id: str | None
    controller_id: int
    brokers: dict[int, tuple[str, int, str | None]]       # id -> (host, port, rack)
    topics: dict[str, RawTopic]


def _metadata_v7_body(topics: list[str] | None) -> bytes:
    body = kwire.i32(-1) if topics is None else (
        kwire.i32(len(topics)) + b"".join(kwire.string(t) for t in topics))
    return body + kwire.i8(0)  # allow_auto_topic_creation = false


def _parse_metadata_v7(r: kwire.Reader) -> RawMetadata:
    r.i32()  # throttle_time_ms
    brokers = {}
    for _ in range(r.i32()):
        node, host, port, rack = r.i32(), r.string(), r.i32(), r.string()
        brokers[node] = (host, port, rack)
    cluster_id = r.string()
    controller_id = r.i32()
    topics = {}
    for _ in range(r.i32()):
        err = r.i16()
        name = r.string()
        r.i8()  # is_internal
        topic = RawTopic(name, err)
        for _ in range(r.i32()):
            p_err = r.i16()
            index = r.i32()
            leader = r.i32()
            epoch = r.i32()
            replicas = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            offline = [r.i32() for _ in range(r.i32())]
            topic.partitions[index] = RawPartition(index, p_err, leader, epoch, replicas, isr, offline)
        topics[name] = topic
    return RawMetadata(cluster_id, controller_id, brokers, topics)


def raw_metadata(port: int, topics: list[str] | None = None, timeout: float = 10.0) -> RawMetadata:
    """Metadata v7 from the broker on ``port`` (no auto-creation)."""
    with kwire.Conn(port, timeout=timeout) as conn:
        version = conn.version(kwire.METADATA, METADATA_V7, lowest_known=METADATA_V7)
        assert version == METADATA_V7
        return _parse_metadata_v7(conn.request(kwire.METADATA, version, _metadata_v7_body(topics),
                                               flexible=False))


DESCRIBE_QUORUM = 55
METADATA_TOPIC = "__cluster_metadata"


def raw_quorum_leader(port: int, timeout: float = 3.0) -> tuple[int, int] | None:
    """DescribeQuorum v0 for ``__cluster_metadata``-0 at ``port``: (leader id, leader epoch =
    Raft term), None on NOT_LEADER_OR_FOLLOWER or any other error.  On a controller listener
    only the Raft leader answers (Kafka's ``KafkaRaftClient``); a broker listener forwards the
    request to the leader (as Kafka brokers do), so every broker answers with the leader's view."""
    body = kwire.compact_array([
        kwire.compact_string(METADATA_TOPIC)
        + kwire.compact_array([kwire.i32(0) + kwire.TAGS])
        + kwire.TAGS]) + kwire.TAGS
    with kwire.Conn(port, timeout=timeout) as conn:
        version = conn.version(DESCRIBE_QUORUM, 0)
        r = conn.request(DESCRIBE_QUORUM, version, body, flexible=True)
        if r.i16() != 0:
            return None
        if version >= 2:
            kwire._compact_string_r(r)            # error message
        for _ in range(r.uvarint() - 1):          # topics
            kwire._compact_string_r(r)
            for _ in range(r.uvarint() - 1):      # partitions: the first one is all we need
                r.i32()                           # partition index
                err = r.i16()
                if version >= 2:
                    kwire._compact_string_r(r)
                leader, epoch = r.i32(), r.i32()
                return (leader, epoch) if err == 0 and leader >= 0 else None
    return None


CREATE_TOPICS_V4 = 4


def raw_create_topic(port: int, topic: str, partitions: int = -1, replication_factor: int = -1,
                     assignments: dict[int, list[int]] | None = None,
                     configs: dict[str, str] | None = None, timeout_ms: int = 10000,
                     timeout: float = 20.0) -> tuple[int, str | None]:
    """CreateTopics v4 sent to the broker on ``port`` itself (not to the controller a client
    library would pick): returns (error_code, error_message) of the topic."""
    assignments = assignments or {}
    configs = configs or {}
    body = kwire.i32(1) + kwire.string(topic) + kwire.i32(partitions) + kwire.i16(replication_factor)
    body += kwire.i32(len(assignments))
    for p, brokers in sorted(assignments.items()):
        body += kwire.i32(p) + kwire.i32(len(brokers)) + b"".join(kwire.i32(b) for b in brokers)
    body += kwire.i32(len(configs))
    for key, value in configs.items():
        body += kwire.string(key) + kwire.string(value)
    body += kwire.i32(timeout_ms) + kwire.i8(0)  # validate_only = false
    with kwire.Conn(port, timeout=timeout) as conn:
        version = conn.version(kwire.CREATE_TOPICS, CREATE_TOPICS_V4, lowest_known=CREATE_TOPICS_V4)
        r = conn.request(kwire.CREATE_TOPICS, version, body, flexible=False)
        r.i32()  # throttle_time_ms
        result = None
        for _ in range(r.i32()):
            name, err, message = r.string(), r.i16(), r.string()
            if name == topic:
                result = (err, message)
        assert result is not None, f"CreateTopics answer without topic {topic}"
        return result


# ------------------------------------------------------------------------------- nodes
class ClusterNode:
    """One ``fjord serve`` process of the cluster, on fixed ports and a fixed data dir."""

    def __init__(self, cluster: "Cluster", node_id: int, client_port: int, controller_port: int,
                 metrics_port: int, controller: bool = True):
        self.cluster = cluster
        self.node_id = node_id
        # A voter (broker,controller) or a broker-only observer (no controller listener).
        self.controller = controller
        self.client_port = client_port
        self.controller_port = controller_port
        self.metrics_port = metrics_port
        self.workdir = cluster.workdir / f"node-{node_id}"
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "node.log"
        self.clock_offset_path = self.workdir / "clock-offset-ms"
        self.rack = f"rack-{node_id}"
        # Kafka listeners (NAME://HOST:PORT,...) instead of the single PLAINTEXT client port;
        # None keeps the default. Per-node settings go in ``extra_args`` (``--set K=V``).
        self.listeners: str | None = None
        self.extra_args: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self._log_file = None
        self.starts = 0
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def controller_address(self) -> str:
        return f"127.0.0.1:{self.controller_port}"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        cmd = [
            str(self.cluster.binary), "serve",
            "--node-id", str(self.node_id),
            "--data-dir", str(self.data_dir),
            "--listen", self.listeners or self.bootstrap,
        ]
        if self.controller:
            cmd += ["--controller-listen", self.controller_address]
        else:
            cmd += ["--process-roles", "broker"]
        cmd += [
            "--controller-quorum-voters", self.cluster.voters,
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--broker-rack", self.rack,
        ]
        for key, value in self.cluster.settings.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            cmd += ["--set", f"{key}={value}"]
        if self.cluster.mesh is not None:
            cmd += ["--set", f"test.peer.address.overrides={self.cluster.mesh.peer_overrides(self.node_id)}"]
        return cmd + self.extra_args

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, max_bytes: int = 6000) -> str:
        text = self.log_text()
        return text[-max_bytes:] if text else "<no log>"

    def start(self, wait: bool = True) -> "ClusterNode":
        assert not self.is_running(), f"node {self.node_id} already runs"
        binary = self.cluster.binary
        assert binary.exists(), (f"fjord binary not found at {binary} (set FJORD_BIN or build "
                                 f"`cargo build --release -p fjord --bin fjord`)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.paused = False
        self._close_log()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"
        if self.cluster.mesh is not None or self.cluster.clock_offsets:
            env["FJORD_TEST_HOOKS"] = "1"
        if self.cluster.clock_offsets:
            env["FJORD_TEST_CLOCK_OFFSET_FILE"] = str(self.clock_offset_path)
        self.proc = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=str(self.workdir))
        if wait:
            self.wait_ready()
        return self

    def health(self, path: str = "/health/ready") -> int | None:
        """HTTP status of the metrics listener's ``path``, or None if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, urllib.error.URLError):
            return None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until GET /health/ready answers 200 (registered, unfenced, Kafka listener bound)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node {self.node_id} exited with {self.proc.returncode} while "
                                     f"starting\n--- {self.log_path} ---\n{self.log_tail()}")
            if self.health() == 200:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.node_id} not ready within {timeout}s\n"
                                     f"--- {self.log_path} ---\n{self.log_tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """kill -9 (SIGKILL); returns once the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)   # a paused process dies just the same
            self.proc.kill()
            self.proc.wait()
        self.paused = False
        self._close_log()

    def stop(self, timeout: float = STOP_TIMEOUT_S, check: bool = True) -> int | None:
        """SIGTERM (controlled shutdown), waits for the exit; asserts exit code 0 with ``check``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                raise AssertionError(f"node {self.node_id} did not exit within {timeout}s of "
                                     f"SIGTERM\n--- {self.log_path} ---\n{self.log_tail()}")
        rc = self.proc.returncode
        self._close_log()
        if check:
            assert rc == 0, (f"node {self.node_id} exited with {rc} after SIGTERM\n"
                             f"--- {self.log_path} ---\n{self.log_tail()}")
        return rc

    def pause(self) -> None:
        assert self.is_running(), f"node {self.node_id} does not run"
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.is_running(), f"node {self.node_id} does not run"
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# ----------------------------------------------------------------------------- cluster
_ACTIVE_CONTROLLER = re.compile(r"became the active controller.*?\bterm=(\d+)")


class Cluster:
    """``size`` combined broker+controller nodes forming one quorum (ids 1..size), plus
    ``brokers`` broker-only nodes (ids size+1..size+brokers)."""

    def __init__(self, workdir: Path, size: int = 3, settings: dict | None = None,
                 binary: Path | None = None, brokers: int = 0, mesh: bool = False,
                 clock_offsets: bool = False):
        self.workdir = Path(workdir)
        self.binary = Path(binary or find_binary())
        self.settings = dict(TEST_SETTINGS)
        self.settings.update(settings or {})
        ports = free_ports(3 * size)
        self.nodes: dict[int, ClusterNode] = {}
        for i in range(size):
            n = i + 1
            self.nodes[n] = ClusterNode(self, n, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])
        self._describe_quorum: bool | None = None   # whether the binary serves DescribeQuorum
        self.voters = ",".join(f"{n}@{node.controller_address}" for n, node in self.nodes.items())
        self.mesh: ProxyMesh | None = None
        if mesh:
            self.mesh = ProxyMesh(seed=size)
            for n, node in self.nodes.items():
                self.mesh.add_node(n, node.client_port, node.controller_port)
        self.clock_offsets = clock_offsets

        for _ in range(brokers):
            self.add_broker(start=False)

    def add_broker(self, start: bool = True, wait: bool = True) -> ClusterNode:
        """A new broker-only node (``process.roles=broker``) with the next free id; started
        (and waited for) unless ``start=False``. Not with ``mesh=True``: the mesh proxies the
        voters' links only."""
        assert self.mesh is None, "broker-only nodes are not wired into the proxy mesh"
        # Ids are never reused within a cluster (a removed node's data dir stays behind).
        n = max(max(self.nodes), getattr(self, "_last_broker_id", 0)) + 1
        self._last_broker_id = n
        client, metrics = free_ports(2)
        node = ClusterNode(self, n, client, 0, metrics, controller=False)
        self.nodes[n] = node
        if start:
            node.start(wait=wait)
        return node

    def voter_ids(self) -> list[int]:
        return sorted(n for n, node in self.nodes.items() if node.controller)

    def broker_only_ids(self) -> list[int]:
        return sorted(n for n, node in self.nodes.items() if not node.controller)

    # ------------------------------------------------------------------ process control
    def node(self, n: int) -> ClusterNode:
        return self.nodes[n]

    def ids(self) -> list[int]:
        return sorted(self.nodes)

    def start_all(self) -> "Cluster":
        # Every voter must run before any becomes ready: a majority is needed to form the cluster.
        for node in self.nodes.values():
            if not node.is_running():
                node.start(wait=False)
        for node in self.nodes.values():
            node.wait_ready()
        return self

    def start(self, n: int, wait: bool = True) -> ClusterNode:
        return self.nodes[n].start(wait=wait)

    def kill(self, n: int) -> None:
        self.nodes[n].kill()

    def stop(self, n: int, check: bool = True) -> int | None:
        return self.nodes[n].stop(check=check)

    def pause(self, n: int) -> None:
        self.nodes[n].pause()

    def resume(self, n: int) -> None:
        self.nodes[n].resume()

    def wait_ready(self, n: int, timeout: float = READY_TIMEOUT_S) -> None:
        self.nodes[n].wait_ready(timeout)

    def running(self) -> list[int]:
        return [n for n, node in sorted(self.nodes.items()) if node.is_running()]

    def live(self) -> list[int]:
        """Running and not paused: the nodes that answer."""
        return [n for n, node in sorted(self.nodes.items()) if node.is_running() and not node.paused]

    # ------------------------------------------------------------------ network and clocks
    def _mesh(self) -> ProxyMesh:
        assert self.mesh is not None, "start the cluster with mesh=True for network faults"
        return self.mesh

    def partition(self, a: int, b: int, mode: str = "hold") -> None:
        """Cuts every link between nodes ``a`` and ``b`` (both directions, both listeners)."""
        self._mesh().partition(a, b, mode)

    def isolate(self, n: int, mode: str = "hold") -> None:
        """Cuts node ``n`` off from every other node; clients still reach it directly."""
        self._mesh().isolate(n, mode, clients=False)

    def split(self, group_a: list[int], group_b: list[int], mode: str = "hold") -> None:
        """Cuts every link between the two groups of nodes."""
        self._mesh().split(group_a, group_b, mode)

    def heal(self) -> None:
        """Every node-to-node link relays again (a no-op without a mesh)."""
        if self.mesh is not None:
            self.mesh.heal()

    def set_clock_offset(self, n: int, offset_ms: int) -> None:
        """Shifts node ``n``'s wall clock by ``offset_ms`` (0 heals); atomic replace."""
        assert self.clock_offsets, "start the cluster with clock_offsets=True for clock jumps"
        node = self.nodes[n]
        tmp = node.clock_offset_path.with_suffix(".tmp")
        tmp.write_text(f"{int(offset_ms)}\n")
        os.replace(tmp, node.clock_offset_path)

    def close(self) -> None:
        """Closes the proxies (after the nodes are down)."""
        if self.mesh is not None:
            self.mesh.close()

    def shutdown(self) -> list[str]:
        """SIGTERM to every running node at once, then wait; returns problems (bad exit codes).
        Heals the network and clocks first: a controlled shutdown needs the controller."""
        self.heal()
        if self.clock_offsets:
            for n in self.nodes:
                self.set_clock_offset(n, 0)
        problems = []
        live = [node for node in self.nodes.values() if node.is_running()]
        for node in live:
            node.proc.send_signal(signal.SIGCONT)
            node.proc.send_signal(signal.SIGTERM)
        for node in live:
            try:
                node.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
                problems.append(f"node {node.node_id} did not exit within {STOP_TIMEOUT_S}s of SIGTERM")
            node._close_log()
        return problems

    def kill_all(self) -> None:
        for node in self.nodes.values():
            node.kill()

    # --------------------------------------------------------------------- client views
    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    def bootstrap_of(self, *ids: int) -> str:
        return ",".join(self.nodes[n].bootstrap for n in ids)

    def live_bootstrap(self) -> str:
        return self.bootstrap_of(*self.live())

    def admin(self, bootstrap: str | None = None, **conf) -> AdminClient:
        c = {"bootstrap.servers": bootstrap or self.live_bootstrap(), "socket.timeout.ms": 10000}
        c.update(conf)
        return AdminClient(c, logger=RDKAFKA_LOGGER)

    def metadata(self, topic: str | None = None, bootstrap: str | None = None, timeout: float = 15.0):
        """confluent-kafka ``ClusterMetadata`` (AdminClient.list_topics)."""
        return self.admin(bootstrap).list_topics(topic=topic, timeout=timeout)

    def raw_metadata(self, n: int | None = None, topics: list[str] | None = None) -> RawMetadata:
        """Metadata v7 as node ``n`` (default: the first live node) sees it."""
        if n is None:
            n = self.live()[0]
        return raw_metadata(self.nodes[n].client_port, topics)

    def supports_describe_quorum(self) -> bool:
        if self._describe_quorum is None:
            n = self.live()[0]
            with kwire.Conn(self.nodes[n].client_port) as conn:
                self._describe_quorum = DESCRIBE_QUORUM in conn.apis
        return self._describe_quorum

    def quorum_leader(self) -> tuple[int, int] | None:
        """(leader id, Raft term) from DescribeQuorum, asking the controller listener of every
        running, not paused node (only the Raft leader answers there); the highest term wins."""
        best = None
        for n, node in sorted(self.nodes.items()):
            if not node.is_running() or node.paused:
                continue
            try:
                answer = raw_quorum_leader(node.controller_port)
            except (OSError, ValueError, AssertionError):
                continue
            if answer is not None and (best is None or answer[1] > best[1]):
                best = answer
        return best

    def active_controller(self) -> int | None:
        """The active controller: the Raft leader per DescribeQuorum, cross-checked with the
        logs (a node logs "became the active controller" with its term once it has caught up
        with the log); from the logs alone on a binary without DescribeQuorum."""
        from_logs = self._active_controller_from_logs()
        if not self.supports_describe_quorum():
            return from_logs
        leader = self.quorum_leader()
        if leader is None or leader[0] != from_logs:
            return None    # an election is under way, or the leader has not caught up yet
        return leader[0]

    def _active_controller_from_logs(self) -> int | None:
        """The running node whose log says it became the active controller in the highest term
        (a node elected later always logs a higher term)."""
        best = None
        for n, node in self.nodes.items():
            if not node.is_running() or not node.controller:
                continue
            for m in _ACTIVE_CONTROLLER.finditer(node.log_text()):
                term = int(m.group(1))
                if best is None or term > best[0]:
                    best = (term, n)
        return None if best is None else best[1]

    def controller_terms(self) -> dict[int, int]:
        """Highest term each node (running or not) logged becoming the active controller in."""
        out = {}
        for n, node in self.nodes.items():
            terms = [int(m.group(1)) for m in _ACTIVE_CONTROLLER.finditer(node.log_text())]
            if terms:
                out[n] = max(terms)
        return out

    def wait_for(self, what: str, predicate, timeout: float = 30.0, interval: float = 0.2):
        """Polls ``predicate()`` until it returns a truthy value (returned); exceptions count as
        "not yet".  On timeout fails with ``what``, the last value or exception."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                last = e
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
            time.sleep(interval)

    def wait_brokers(self, expected: set[int], n: int | None = None, timeout: float = 30.0) -> RawMetadata:
        """Until node ``n``'s Metadata lists exactly the brokers ``expected``."""
        def check():
            md = self.raw_metadata(n)
            return md if set(md.brokers) == expected else None
        return self.wait_for(f"brokers {sorted(expected)} in Metadata", check, timeout)

    def ensure_healthy(self) -> None:
        """Every link healed, every clock back, every node running and ready, and every node's
        Metadata lists all brokers."""
        self.heal()
        if self.clock_offsets:
            for n in self.nodes:
                self.set_clock_offset(n, 0)
        for node in self.nodes.values():
            if node.proc is not None and node.is_running():
                node.proc.send_signal(signal.SIGCONT)
                node.paused = False
        for node in self.nodes.values():
            if not node.is_running():
                node.start(wait=False)
        for node in self.nodes.values():
            node.wait_ready()
        for n in self.nodes:
            self.wait_brokers(set(self.nodes), n)

    def logs_report(self, max_bytes: int = 6000) -> list[tuple[str, str]]:
        return [(f"node {n} log tail ({node.log_path})", node.log_tail(max_bytes))
                for n, node in sorted(self.nodes.items())]

    def copy_data_dir(self, n: int, dest: Path) -> Path:
        shutil.copytree(self.nodes[n].data_dir, dest)
        return dest


# ------------------------------------------------------------------------ topic helpers
class Bootstrap:
    """What helpers.producer/consumer/admin take: anything with ``.bootstrap``."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap


def create_topic(cluster, topic: str, partitions: int, rf: int, bootstrap: str | None = None,
                 config: dict | None = None, assignment=None):
    a = cluster.admin(bootstrap)
    if assignment is not None:
        # confluent-kafka wants the partition count with an assignment (librdkafka does not)
        new = NewTopic(topic, num_partitions=len(assignment), replica_assignment=assignment,
                       config=config or {})
    else:
        new = NewTopic(topic, num_partitions=partitions, replication_factor=rf, config=config or {})
    a.create_topics([new], operation_timeout=10)[topic].result(timeout=OP_TIMEOUT)
    return wait_topic(cluster, topic, partitions)


def wait_topic(cluster, topic: str, partitions: int, n: int | None = None):
    """Until node ``n`` (default: every running node) shows ``topic`` with ``partitions``
    partitions, each with a leader; returns the last node's view of the topic."""
    nodes = [n] if n is not None else cluster.live()
    view = None
    for node in nodes:
        def check():
            t = cluster.raw_metadata(node, [topic]).topics.get(topic)
            ok = (t is not None and t.error == 0 and len(t.partitions) == partitions
                  and all(p.leader >= 0 for p in t.partitions.values()))
            return t if ok else None
        view = cluster.wait_for(f"{topic} with {partitions} led partitions on node {node}", check)
    return view


# ------------------------------------------------------------------ replication helpers
def wait_isr(cluster, topic: str, partitions: int, members: set[int], timeout: float = 60.0,
             nodes: list[int] | None = None):
    """Until every live node (or each of ``nodes``) shows ISR == ``members`` for every
    partition of ``topic``; returns the last node's view of the topic."""
    t = None
    for n in nodes if nodes is not None else cluster.live():
        def check():
            t = cluster.raw_metadata(n, [topic]).topics[topic]
            ok = len(t.partitions) == partitions and all(
                set(p.isr) == members for p in t.partitions.values())
            return t if ok else None
        t = cluster.wait_for(f"ISR {sorted(members)} of {topic} on node {n}", check, timeout)
    return t


def leader_of(cluster, topic: str, partition: int, n: int | None = None) -> int:
    """The leader of ``topic``-``partition`` as node ``n`` (default: the first live) sees it."""
    return cluster.raw_metadata(n, [topic]).topics[topic].partitions[partition].leader


def high_watermark(c, topic: str, p: int, deadline: float) -> int:
    """Partition ``p``'s high watermark from its leader through consumer ``c``, asking again
    until ``deadline`` (``time.monotonic()``) while the answer is retriable: a leader change in
    progress, or a new leader whose high watermark still lags its epoch's start offset
    (OFFSET_NOT_AVAILABLE, KIP-207)."""
    while True:
        try:
            return c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT,
                                           cached=False)[1]
        except KafkaException as e:
            error = e.args[0]
            if not (error.retriable() or error.code() == KafkaError.OFFSET_NOT_AVAILABLE):
                raise
            assert time.monotonic() < deadline, f"no watermarks for {topic}-{p}: {error}"
            time.sleep(0.1)


def read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0,
             min_ends: dict[int, int] | None = None) -> dict[int, dict[int, bytes]]:
    """Every record of every partition up to its high watermark: {partition: {offset: value}}.
    ``min_ends``: first wait until partition p's high watermark reaches ``min_ends[p]`` (a newly
    elected leader's high watermark may trail the previous leader's until its followers fetch
    again, as in Kafka; meanwhile ListOffsets answers the retriable OFFSET_NOT_AVAILABLE,
    KIP-207)."""
    c = consumer(Bootstrap(bootstrap), **{"enable.partition.eof": True})
    out: dict[int, dict[int, bytes]] = {p: {} for p in range(partitions)}
    try:
        ends = {}
        deadline = time.monotonic() + timeout
        for p in range(partitions):
            while True:
                hi = high_watermark(c, topic, p, deadline)
                if hi >= (min_ends or {}).get(p, 0):
                    break
                assert time.monotonic() < deadline, (
                    f"high watermark of {topic}-{p} stayed at {hi}, below {min_ends[p]}")
                time.sleep(0.1)
            ends[p] = hi
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p] > 0])
        pending = {p for p in range(partitions) if ends[p] > 0}
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"reading {topic} did not reach the ends {ends}"
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if msg.offset() >= ends[msg.partition()]:
                        pending.discard(msg.partition())
                continue
            out[msg.partition()][msg.offset()] = msg.value()
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
    finally:
        c.close()
    return out


def assert_no_acked_loss(acked: dict[bytes, tuple[int, int]], log: dict[int, dict[int, bytes]]) -> None:
    """Every acknowledged value is at its acknowledged (partition, offset)."""
    lost = [(v, where) for v, where in acked.items() if log.get(where[0], {}).get(where[1]) != v]
    assert not lost, (f"{len(lost)} of {len(acked)} acknowledged records are not at their offsets "
                      f"(first: {sorted(lost, key=lambda x: x[1])[:5]})")
