#!/usr/bin/env python3
"""Jepsen-style chaos run against Fjord node(s); the verdict comes from ``fjord-chaos-check``.

Usually started through ``scripts/chaos`` (builds the binaries, sets up the venv)::

    ./scripts/chaos                                   # 60 s, random seed, one node
    ./scripts/chaos --duration 1800 --seed 42         # a long schedule (30 min)
    ./scripts/chaos --faults kill,pause --seed 7 --out /tmp/run7
    ./scripts/chaos --nodes 3 --faults kill,pause,partition,clock --seed 3   # a cluster

What runs, concurrently, for ``--duration`` seconds:

* idempotent acks=all producers ``p0..`` writing unique values ``p<k>-<seq>`` to random
  partitions, and one acks=1 non-idempotent producer ``n0`` (declared so in the history:
  excluded from the loss, duplicate and order checks);
* consumers with manual assignment of every partition from offset 0, ``c0`` read_uncommitted,
  ``c1`` read_committed (alternating when there are more);
* transactional workers ``t0..`` sending 1-4 values per transaction, committing or aborting at
  random;
* a seeded nemesis (``random.Random(seed)``, the schedule is fixed before the run starts):
  ``kill`` (kill -9, restart after a pause), ``pause`` (SIGSTOP ... SIGCONT), ``proxy``
  (client-side network faults through the proxy in front of each node: hold every
  connection, drop and refuse connections, or lose produce/fetch/transaction answers after the
  node handled them), ``partition`` (node-to-node: one node isolated from the others, or two
  nodes cut from each other, holding or dropping connections, then healed; needs >= 2 nodes)
  and ``clock`` (one node's wall clock jumps by up to +-2 minutes, then back: the hidden
  ``FJORD_TEST_CLOCK_OFFSET_FILE``; intervals inside the broker are on a monotonic clock, so
  what may move are timestamps and wall-clock timers such as transaction timeouts).

Every operation goes through one thread-safe recorder into ``history.jsonl`` (schema: the docs
of crates/chaos).  After the duration the nemesis heals everything, restarts what is down,
waits for the node(s) to answer, lets the clients finish, and drains every partition twice
(read_uncommitted and read_committed, recorded separately).  Then the checker runs; its
summary and the fault schedule are printed, and the exit code is the checker's: 0 valid,
1 anomalies, 2 bad history.  3 means the driver itself failed (a node did not come back, a
client thread hung).

Everything stays in ``--out`` (default ``./chaos-out/<timestamp>``): ``history.jsonl``,
``schedule.json`` (planned and executed faults), ``check.json`` / ``check.txt`` (the verdict),
``run.json`` (arguments, seed, counts) and ``nodes/<id>/{broker.log,data/}``.  A run is
deterministic given the seed except for timing (which sends a fault hits, offsets).

Long schedules: ``--duration 1800`` (or more) with a fixed ``--seed``; ``--rate`` bounds the
history's growth (sends per second per producer; about 100 bytes per event, so 30 minutes at
the defaults is a few hundred MB, which the checker streams).  A failing run is reproduced by
its seed: ``./scripts/chaos --seed <seed> --duration <same>``.

More than one node: ``--nodes N`` starts a cluster of N combined broker+controller nodes
(every node a voter; controller listeners on free ports).  Every node-to-node link (Kafka and
controller listeners) goes through the proxy mesh (tests/chaos/mesh.py), wired by the hidden
``test.peer.address.overrides`` setting; every node runs with ``FJORD_TEST_HOOKS=1`` and its
own clock offset file.  ``--node-arg`` adds arguments to every node (placeholders ``{id}``,
``{port}``, ``{data_dir}``, ``{bootstrap}``, ``{peer_overrides}``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from mesh import CLIENT, ProxyMesh  # noqa: E402

from confluent_kafka import (Consumer, IsolationLevel, KafkaError, KafkaException,  # noqa: E402
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # noqa: E402

import logging  # noqa: E402

# librdkafka's complaints while nodes are down would drown the summary; they go to a file.
RDKAFKA_LOGGER = logging.getLogger("rdkafka")
RDKAFKA_LOGGER.propagate = False

LINE_BYTES_MAX = 1024 * 1024           # the checker's limit
DRAIN_RECORDS_PER_EVENT = 2000
POLL_RECORDS_MAX = 500
READY_TIMEOUT_S = 60.0
CLIENT_STOP_TIMEOUT_S = 120.0
FAULT_KINDS = ("kill", "pause", "proxy", "partition", "clock")
CLOCK_JUMP_MS_MAX = 120_000
# Cluster nodes: fencing and failover within seconds (as tests/cluster), bounded shutdown.
CLUSTER_SETTINGS = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500,
                    "shutdown.timeout.ms": 5000}
PRODUCE, FETCH, ADD_PARTITIONS_TO_TXN, END_TXN = 0, 1, 24, 26

DRIVER_FAILED = 3
DRIVER_ENV_VARS = ("FJORD_CHAOS_CHECK_BIN",)


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- recorder
class Recorder:
    """Writes history events (JSON lines) with a global, strictly increasing ``i``."""

    def __init__(self, path: Path):
        self._f = open(path, "w", encoding="utf-8", buffering=1 << 20)
        self._lock = threading.Lock()
        self._i = 0
        self._t0 = time.monotonic_ns()
        self.closed = False

    def event(self, process: str, type_: str, f: str, value) -> None:
        with self._lock:
            if self.closed:
                return
            line = json.dumps({"i": self._i, "t_ns": time.monotonic_ns() - self._t0,
                               "process": process, "type": type_, "f": f, "value": value},
                              separators=(",", ":"))
            assert len(line) <= LINE_BYTES_MAX, f"history line of {len(line)} bytes"
            self._f.write(line + "\n")
            self._i += 1

    def declare(self, process: str, **decl) -> None:
        self.event(process, "info", "process", decl)

    def nemesis(self, what: dict) -> None:
        self.event("nemesis", "info", "nemesis", what)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._f.close()


# ------------------------------------------------------------------------------- nodes
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One ``fjord serve`` process; ``command`` is built from templates so a cluster node is
    only a matter of extra arguments."""

    def __init__(self, node_id: int, binary: Path, workdir: Path, settings: dict,
                 extra_args: list[str]):
        self.id = node_id
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.port = free_port()
        self.metrics_port = free_port()
        self.advertised = f"127.0.0.1:{self.port}"
        self.controller_port: int | None = None   # set for a cluster node
        self.voters = ""
        self.peer_overrides = ""
        self.clock_offset_path = workdir / "clock-offset-ms"
        self.settings = settings
        self.extra_args = extra_args
        self.placeholders: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self.starts = 0

    def command(self) -> list[str]:
        cmd = [str(self.binary), "serve", "--data-dir", str(self.data_dir),
               "--listen", f"127.0.0.1:{self.port}",
               "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
               "--advertised-listener", self.advertised, "--node-id", str(self.id)]
        for k, v in self.settings.items():
            cmd += ["--set", f"{k}={v}"]
        if self.controller_port is not None:
            cmd += ["--controller-listen", f"127.0.0.1:{self.controller_port}",
                    "--controller-quorum-voters", self.voters]
        if self.peer_overrides:
            cmd += ["--set", f"test.peer.address.overrides={self.peer_overrides}"]
        ph = {"id": str(self.id), "port": str(self.port), "data_dir": str(self.data_dir),
              **self.placeholders}
        return cmd + [a.format(**ph) for a in self.extra_args]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.is_running()
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        logf = open(self.log_path, "ab")
        # the driver's own FJORD_* variables are no broker settings (the broker warns about them)
        env = {k: v for k, v in os.environ.items() if k not in DRIVER_ENV_VARS}
        env.update(RUST_BACKTRACE="1", NO_COLOR="1", FJORD_TEST_HOOKS="1",
                   FJORD_TEST_CLOCK_OFFSET_FILE=str(self.clock_offset_path))
        self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=str(self.workdir))
        logf.close()
        self.paused = False

    def wait_port(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node {self.id} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"node {self.id} did not listen on {self.port} within {timeout}s")

    def kill9(self) -> None:
        if self.is_running():
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.paused = False

    def pause(self) -> None:
        if self.is_running():
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.is_running() and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def set_clock_offset(self, offset_ms: int) -> None:
        """Shifts this node's wall clock (read by the broker within 100 ms); 0 heals."""
        tmp = self.clock_offset_path.with_suffix(".tmp")
        tmp.write_text(f"{int(offset_ms)}\n")
        os.replace(tmp, self.clock_offset_path)

    def stop(self, timeout: float = 30.0) -> int | None:
        if not self.is_running():
            return None if self.proc is None else self.proc.returncode
        self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def dump_stacks(nodes: dict[int, "Node"]) -> None:
    """On a driver failure (a node that stopped answering): every running node's thread
    stacks into ``nodes/<id>/stacks.txt`` when gdb is installed (best effort)."""
    gdb = shutil.which("gdb")
    for node in nodes.values():
        if gdb is None or not node.is_running():
            continue
        try:
            dump = subprocess.run([gdb, "-batch", "-p", str(node.proc.pid), "-ex", "thread apply all bt"],
                                  capture_output=True, text=True, timeout=60)
            (node.workdir / "stacks.txt").write_text(dump.stdout + dump.stderr)
            log(f"node {node.id}: stacks in {node.workdir / 'stacks.txt'}")
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"node {node.id}: no stacks ({e!r})")


def stop_all(nodes: dict[int, "Node"], timeout: float = 30.0) -> dict[int, int | None]:
    """SIGTERM to every running node at once (a cluster's controlled shutdowns overlap instead
    of each waiting for a quorum the previous one took away), then waits; exit codes by id."""
    for node in nodes.values():
        if node.is_running():
            node.resume()
            node.proc.send_signal(signal.SIGTERM)
    exits: dict[int, int | None] = {}
    deadline = time.monotonic() + timeout
    for n, node in nodes.items():
        if node.proc is None:
            exits[n] = None
            continue
        try:
            exits[n] = node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.proc.kill()
            exits[n] = node.proc.wait()
    return exits


# ---------------------------------------------------------------------------- schedule
def make_schedule(seed: int, duration_s: float, faults: list[str], node_ids: list[int]) -> list[dict]:
    """The fault plan, fixed by the seed before the run: one fault at a time.  The first round
    injects every enabled kind once (shuffled), so even a short run has each of them."""
    rng = random.Random(seed)
    plan: list[dict] = []
    first_round = list(faults)
    rng.shuffle(first_round)
    t = rng.uniform(1.0, 2.0)
    while True:
        kind = first_round.pop(0) if first_round else rng.choice(faults)
        ev: dict = {"kind": kind, "at_s": round(t, 3)}
        if kind == "kill":
            ev.update(node=rng.choice(node_ids), down_s=round(rng.uniform(0.2, 1.5), 3))
            length = ev["down_s"]
        elif kind == "pause":
            ev.update(node=rng.choice(node_ids), pause_s=round(rng.uniform(0.5, 2.5), 3))
            length = ev["pause_s"]
        elif kind == "proxy":
            ev.update(node=rng.choice(node_ids), mode=rng.choice(["hold", "drop", "lose"]),
                      length_s=round(rng.uniform(0.5, 2.5), 3), rule_seed=rng.randrange(1 << 30))
            length = ev["length_s"]
        elif kind == "clock":
            offset = rng.randint(1000, CLOCK_JUMP_MS_MAX) * rng.choice([-1, 1])
            ev.update(node=rng.choice(node_ids), offset_ms=offset,
                      length_s=round(rng.uniform(1.0, 4.0), 3))
            length = ev["length_s"]
        else:  # partition: two nodes, or one node from all others
            a = rng.choice(node_ids)
            others = [n for n in node_ids if n != a]
            ev.update(a=a, b=rng.choice(others + ["others"]), mode=rng.choice(["hold", "drop"]),
                      length_s=round(rng.uniform(0.5, 3.0), 3))
            length = ev["length_s"]
        if t + length > duration_s - 1.0:
            break
        plan.append(ev)
        t += length + rng.uniform(0.5, 2.0)
    return plan


class Nemesis(threading.Thread):
    """Executes the plan at its planned times; records every action in the history and in
    ``executed`` (with the actual times)."""

    def __init__(self, plan, nodes: dict[int, Node], mesh: ProxyMesh, rec: Recorder, t0: float,
                 stop: threading.Event):
        super().__init__(daemon=True, name="nemesis")
        self.plan, self.nodes, self.mesh, self.rec, self.t0, self.stop = plan, nodes, mesh, rec, t0, stop
        self.executed: list[dict] = []
        self.error: BaseException | None = None

    def _now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def _sleep_until(self, t: float) -> bool:
        while not self.stop.is_set():
            left = self.t0 + t - time.monotonic()
            if left <= 0:
                return True
            self.stop.wait(min(left, 0.1))
        return False

    def _hold(self, seconds: float) -> None:
        self.stop.wait(seconds)  # ends early on stop; the final heal undoes the fault

    def run(self) -> None:
        try:
            for ev in self.plan:
                if not self._sleep_until(ev["at_s"]):
                    return
                done = dict(ev, started_s=self._now())
                self.rec.nemesis({"start": ev})
                log(f"fault: {ev}")
                kind = ev["kind"]
                if kind == "kill":
                    node = self.nodes[ev["node"]]
                    node.kill9()
                    self._hold(ev["down_s"])
                    node.start()
                    node.wait_port()
                elif kind == "pause":
                    node = self.nodes[ev["node"]]
                    node.pause()
                    self._hold(ev["pause_s"])
                    node.resume()
                elif kind == "proxy":
                    if ev["mode"] == "lose":
                        self.mesh.lose_responses(CLIENT, ev["node"], (PRODUCE, FETCH, ADD_PARTITIONS_TO_TXN, END_TXN),
                                                 probability=0.2, seed=ev["rule_seed"])
                    else:
                        self.mesh.partition(CLIENT, ev["node"], ev["mode"])
                    self._hold(ev["length_s"])
                    self.mesh.heal()
                elif kind == "clock":
                    node = self.nodes[ev["node"]]
                    node.set_clock_offset(ev["offset_ms"])   # a jump ...
                    self._hold(ev["length_s"])
                    node.set_clock_offset(0)                 # ... and one back
                else:
                    if ev["b"] == "others":
                        for other in self.nodes:
                            if other != ev["a"]:
                                self.mesh.partition(ev["a"], other, ev["mode"])
                    else:
                        self.mesh.partition(ev["a"], ev["b"], ev["mode"])
                    self._hold(ev["length_s"])
                    self.mesh.heal()
                done["ended_s"] = self._now()
                self.executed.append(done)
                self.rec.nemesis({"end": ev})
        except BaseException as e:  # noqa: BLE001 - reported by the driver
            self.error = e


# ---------------------------------------------------------------------------- clients
class Client(threading.Thread):
    def __init__(self, name: str, rec: Recorder, stop: threading.Event, seed: int):
        super().__init__(daemon=True, name=name)
        self.base = name
        self.rec, self.stop, self.rng = rec, stop, random.Random(seed)
        self.error: BaseException | None = None
        self.generation = 0

    def process_name(self) -> str:
        return self.base if self.generation == 0 else f"{self.base}.{self.generation}"

    def run(self) -> None:
        try:
            self.body()
        except BaseException as e:  # noqa: BLE001
            self.error = e
            log(f"{self.name} failed: {e!r}")


class PlainProducer(Client):
    """Sends ``<base>-<seq>`` to random partitions at ``rate`` per second."""

    def __init__(self, name, rec, stop, seed, bootstrap, topic, partitions, idempotent: bool, rate: float):
        super().__init__(name, rec, stop, seed)
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.idempotent, self.rate = idempotent, rate
        self.fatal = threading.Event()
        self.pending = 0

    def _new(self) -> Producer:
        self.rec.declare(self.process_name(), role="producer", idempotent=self.idempotent)
        conf = {"bootstrap.servers": self.bootstrap, "linger.ms": 5, "message.timeout.ms": 30000,
                "retry.backoff.ms": 50, "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
                "socket.timeout.ms": 10000, "error_cb": self._on_error}
        if self.idempotent:
            conf.update({"enable.idempotence": True, "acks": "all"})
        else:
            conf.update({"enable.idempotence": False, "acks": 1})
        return Producer(conf, logger=RDKAFKA_LOGGER)

    def _callback(self, process: str, part: int, value: str):
        def done(err, msg):
            self.pending -= 1
            if err is None:
                self.rec.event(process, "ok", "send", [self.topic, part, msg.offset(), value])
            else:
                # a delivery error can still have been written (timeouts, lost answers)
                self.rec.event(process, "info", "send", [self.topic, part, None, value])
                if err.fatal():
                    self.fatal.set()
        return done

    def _on_error(self, err) -> None:
        if err.fatal():  # e.g. an idempotent producer's sequence state can no longer be trusted
            self.fatal.set()

    def _retire(self, p: Producer) -> None:
        p.purge(in_queue=True, in_flight=True, blocking=False)
        p.flush(10)  # fires the purged sends' callbacks (recorded as unknown)

    def body(self) -> None:
        p = self._new()
        seq = 0
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            if self.fatal.is_set():
                log(f"{self.process_name()}: fatal producer error, new producer")
                self._retire(p)
                self.fatal.clear()
                self.generation += 1
                p = self._new()
            now = time.monotonic()
            if now < next_at:
                p.poll(min(next_at - now, 0.05))
                continue
            next_at += interval
            if now - next_at > 1.0:
                next_at = now  # do not burst after a stall
            part = self.rng.randrange(self.partitions)
            value = f"{self.base}-{seq}"
            process = self.process_name()
            try:
                p.produce(self.topic, partition=part, value=value.encode(),
                          on_delivery=self._callback(process, part, value))
            except BufferError:
                p.poll(0.1)
                continue
            except KafkaException as e:
                if not e.args[0].fatal():
                    raise
                self.fatal.set()
                continue
            # delivery callbacks only run inside poll/flush on this thread: invoke comes first
            self.rec.event(process, "invoke", "send", [self.topic, part, None, value])
            self.pending += 1
            seq += 1
            p.poll(0)
        left = p.flush(60)
        if left:
            log(f"{self.process_name()}: {left} sends unacknowledged at the end (unknown)")
            self._retire(p)


class TxnWorker(Client):
    """Transactions of 1-4 sends to random partitions; commits with probability 0.6."""

    def __init__(self, name, rec, stop, seed, bootstrap, topic, partitions):
        super().__init__(name, rec, stop, seed)
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.outcomes = {"commit": 0, "abort": 0, "unknown": 0}

    def _new(self) -> Producer:
        self.rec.declare(self.process_name(), role="txn")
        p = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": f"chaos-{self.base}",
                      "transaction.timeout.ms": 20000, "linger.ms": 5, "message.timeout.ms": 20000,
                      "retry.backoff.ms": 50, "reconnect.backoff.ms": 50,
                      "reconnect.backoff.max.ms": 500, "socket.timeout.ms": 10000},
                     logger=RDKAFKA_LOGGER)
        deadline = time.monotonic() + 120
        while True:
            try:
                p.init_transactions(30)
                return p
            except KafkaException as e:
                if time.monotonic() > deadline or not e.args[0].retriable():
                    raise
                time.sleep(0.2)

    def _replace(self, p: Producer) -> Producer:
        try:
            p.purge(in_queue=True, in_flight=True, blocking=False)
            p.flush(5)
        except KafkaException:
            pass
        self.generation += 1
        return self._new()

    def _finish(self, p: Producer, commit: bool) -> str:
        for _ in range(5):
            try:
                if commit:
                    p.commit_transaction(30)
                    return "commit"
                p.abort_transaction(30)
                return "abort"
            except KafkaException as e:
                err = e.args[0]
                if err.retriable():
                    continue
                if commit and err.txn_requires_abort():
                    commit = False  # the commit definitely did not happen; abort instead
                    continue
                return "unknown"
        return "unknown"

    def body(self) -> None:
        p = self._new()
        seq = 0
        while not self.stop.is_set():
            process = self.process_name()
            sends: list[list] = []

            def on_delivery(idx):
                def done(err, msg):
                    if err is None:
                        sends[idx][2] = msg.offset()
                return done

            self.rec.event(process, "invoke", "txn", None)
            outcome = "unknown"
            try:
                p.begin_transaction()
                for _ in range(self.rng.randint(1, 4)):
                    part = self.rng.randrange(self.partitions)
                    value = f"{self.base}-{seq}"
                    seq += 1
                    sends.append([self.topic, part, None, value])
                    while True:
                        try:
                            p.produce(self.topic, partition=part, value=value.encode(),
                                      on_delivery=on_delivery(len(sends) - 1))
                            break
                        except BufferError:
                            p.poll(0.05)
                p.flush(30)
                outcome = self._finish(p, self.rng.random() < 0.6)
            except KafkaException as e:
                err = e.args[0]
                if err.txn_requires_abort() and not err.fatal():
                    outcome = self._finish(p, False)
                else:
                    outcome = "unknown"
            type_ = {"commit": "ok", "abort": "fail", "unknown": "info"}[outcome]
            self.rec.event(process, type_, "txn", {"outcome": outcome, "sends": sends})
            self.outcomes[outcome] += 1
            if outcome == "unknown":
                p = self._replace(p)
            time.sleep(self.rng.uniform(0.0, 0.05))
        try:
            p.flush(10)
        except KafkaException:
            pass


class PollConsumer(Client):
    """Manual assignment of every partition from offset 0; records every non-empty poll.  A
    fatal error starts a new session (new process name, from offset 0 again)."""

    def __init__(self, name, rec, stop, seed, bootstrap, topic, partitions, isolation: str):
        super().__init__(name, rec, stop, seed)
        self.bootstrap, self.topic, self.partitions, self.isolation = bootstrap, topic, partitions, isolation
        self.records = 0

    def _new(self) -> Consumer:
        self.rec.declare(self.process_name(), role="consumer", isolation=self.isolation)
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "fjord-chaos-unused",
                      "enable.auto.commit": False, "enable.auto.offset.store": False,
                      "auto.offset.reset": "earliest", "isolation.level": self.isolation,
                      "fetch.wait.max.ms": 100, "reconnect.backoff.ms": 50,
                      "reconnect.backoff.max.ms": 500, "socket.timeout.ms": 10000},
                     logger=RDKAFKA_LOGGER)
        c.assign([TopicPartition(self.topic, q, 0) for q in range(self.partitions)])
        return c

    def body(self) -> None:
        c = self._new()
        while not self.stop.is_set():
            msgs = c.consume(num_messages=POLL_RECORDS_MAX, timeout=0.2)
            recs = []
            fatal = None
            for m in msgs:
                if m.error():
                    if m.error().fatal():
                        fatal = m.error()
                    continue
                recs.append([m.topic(), m.partition(), m.offset(), m.value().decode()])
            if recs:
                process = self.process_name()
                self.rec.event(process, "invoke", "poll", None)
                self.rec.event(process, "ok", "poll", recs)
                self.records += len(recs)
            if fatal is not None:
                log(f"{self.process_name()}: fatal consumer error {fatal}, new session")
                c.close()
                self.generation += 1
                c = self._new()
        c.close()


# ------------------------------------------------------------------------------ driver
def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000},
                       logger=RDKAFKA_LOGGER)


def wait_serving(bootstrap: str, topic: str, partitions: int, timeout: float = READY_TIMEOUT_S) -> None:
    """Until metadata shows every partition of ``topic`` with a leader."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            md = admin(bootstrap).list_topics(topic=topic, timeout=5)
            t = md.topics.get(topic)
            if t is not None and t.error is None and len(t.partitions) == partitions and \
                    all(p.leader >= 0 for p in t.partitions.values()):
                return
            last = t
        except KafkaException as e:
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{topic} not served within {timeout}s: {last}")


def end_offsets(bootstrap: str, topic: str, partitions: int, committed: bool) -> dict[int, int]:
    a = admin(bootstrap)
    iso = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    tps = [TopicPartition(topic, q) for q in range(partitions)]
    fs = a.list_offsets({tp: OffsetSpec.latest() for tp in tps}, isolation_level=iso, request_timeout=15)
    return {tp.partition: fs[tp].result(timeout=15).offset for tp in tps}


def drain(rec: Recorder, bootstrap: str, topic: str, partitions: int, isolation: str,
          timeout: float = 120.0) -> int:
    """Reads every partition from 0 to its current end (partition EOF) and records it."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fjord-chaos-drain",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": isolation, "fetch.wait.max.ms": 50}, logger=RDKAFKA_LOGGER)
    c.assign([TopicPartition(topic, q, 0) for q in range(partitions)])
    at_end: set[int] = set()
    batch: list[list] = []
    total = 0
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < partitions:
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain {isolation}: partitions "
                                   f"{sorted(set(range(partitions)) - at_end)} did not reach their end")
            for m in c.consume(num_messages=POLL_RECORDS_MAX, timeout=0.2):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(m.partition())
                    elif m.error().fatal():
                        raise KafkaException(m.error())
                    continue
                at_end.discard(m.partition())
                batch.append([m.topic(), m.partition(), m.offset(), m.value().decode()])
                if len(batch) >= DRAIN_RECORDS_PER_EVENT:
                    rec.event("drain", "ok", "drain", {"isolation": isolation, "records": batch})
                    total += len(batch)
                    batch = []
        rec.event("drain", "ok", "drain", {"isolation": isolation, "records": batch})
        return total + len(batch)
    finally:
        c.close()


def find_binary(env: str, name: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    return target / "release" / name


def parse_args(argv=None):
    head, _, rest = __doc__.partition("\n\n")
    ap = argparse.ArgumentParser(description=head, epilog=rest,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of faults (default 60)")
    ap.add_argument("--seed", type=int, default=None, help="fault schedule and workload seed (default: random)")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--faults", default="kill,pause,proxy",
                    help=f"comma-separated subset of {','.join(FAULT_KINDS)} (partition needs >= 2 nodes)")
    ap.add_argument("--out", type=Path, default=None, help="output dir (default ./chaos-out/<timestamp>)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--replication-factor", type=int, default=None, help="default: min(nodes, 3)")
    ap.add_argument("--min-insync-replicas", type=int, default=None, help="default: min(nodes, 2)")
    ap.add_argument("--producers", type=int, default=2, help="idempotent acks=all producers")
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--txn-workers", type=int, default=1)
    ap.add_argument("--rate", type=float, default=100.0, help="sends per second per producer")
    ap.add_argument("--set", dest="broker_set", action="append", default=[], metavar="KEY=VALUE",
                    help="broker setting for every node (repeatable)")
    ap.add_argument("--node-arg", action="append", default=[],
                    help="extra argument for every node; placeholders {id} {port} {data_dir} "
                         "{bootstrap} {peer_overrides} (repeatable)")
    ap.add_argument("--fjord-bin", type=Path, default=None)
    ap.add_argument("--check-bin", type=Path, default=None)
    args = ap.parse_args(argv)
    args.faults = [f for f in args.faults.split(",") if f]
    for f in args.faults:
        if f not in FAULT_KINDS:
            ap.error(f"unknown fault {f!r} (known: {', '.join(FAULT_KINDS)})")
    if not args.faults:
        ap.error("--faults is empty")
    if args.nodes < 1:
        ap.error("--nodes must be >= 1")
    if "partition" in args.faults and args.nodes < 2:
        ap.error("the partition fault needs at least two nodes (use proxy for client-side faults)")
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    if args.out is None:
        args.out = Path("chaos-out") / datetime.now().strftime("%Y%m%d-%H%M%S")
    args.fjord_bin = args.fjord_bin or find_binary("FJORD_BIN", "fjord")
    args.check_bin = args.check_bin or find_binary("FJORD_CHAOS_CHECK_BIN", "fjord-chaos-check")
    args.replication_factor = args.replication_factor or min(args.nodes, 3)
    args.min_insync_replicas = args.min_insync_replicas or min(args.nodes, 2)
    return args


def run(args) -> int:
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "clients.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    RDKAFKA_LOGGER.addHandler(handler)
    RDKAFKA_LOGGER.setLevel(logging.INFO)
    for b in (args.fjord_bin, args.check_bin):
        if not Path(b).exists():
            log(f"binary not found: {b} (scripts/chaos builds it)")
            return DRIVER_FAILED
    seed = args.seed
    log(f"seed {seed}, duration {args.duration}s, nodes {args.nodes}, faults {args.faults}, out {out}")
    settings = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000}
    if args.nodes > 1:
        settings.update(CLUSTER_SETTINGS)
    for kv in args.broker_set:
        k, _, v = kv.partition("=")
        settings[k] = v
    node_ids = list(range(1, args.nodes + 1))
    nodes = {n: Node(n, Path(args.fjord_bin), out / "nodes" / str(n), settings, args.node_arg) for n in node_ids}
    if args.nodes > 1:
        for node in nodes.values():
            node.controller_port = free_port()
        voters = ",".join(f"{n}@127.0.0.1:{node.controller_port}" for n, node in nodes.items())
        for node in nodes.values():
            node.voters = voters
    mesh = ProxyMesh(seed)
    for n, node in nodes.items():
        mesh.add_node(n, node.port, node.controller_port)
    for n, node in nodes.items():
        node.peer_overrides = mesh.peer_overrides(n) if args.nodes > 1 else ""
    for n, node in nodes.items():
        node.advertised = mesh.client_address(n)
    bootstrap = ",".join(mesh.client_address(n) for n in node_ids)
    for n, node in nodes.items():
        node.placeholders = {"bootstrap": bootstrap,
                             "peer_overrides": node.peer_overrides}
    plan = make_schedule(seed, args.duration, args.faults, node_ids)
    (out / "schedule.json").write_text(json.dumps({"seed": seed, "planned": plan}, indent=1))
    rec = Recorder(out / "history.jsonl")
    topic = "chaos"
    stop_nemesis, stop_producers, stop_consumers = threading.Event(), threading.Event(), threading.Event()
    producers: list[Client] = []
    consumers: list[PollConsumer] = []
    nemesis = None
    run_info = {"seed": seed, "argv": sys.argv[1:], "duration_s": args.duration, "nodes": args.nodes,
                "faults": args.faults, "topic": topic, "partitions": args.partitions}
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            node.wait_port()
        a = admin(bootstrap)
        fs = a.create_topics([NewTopic(topic, num_partitions=args.partitions,
                                       replication_factor=args.replication_factor,
                                       config={"min.insync.replicas": str(args.min_insync_replicas)})],
                             operation_timeout=30)
        fs[topic].result(timeout=30)
        wait_serving(bootstrap, topic, args.partitions)

        rng = random.Random(seed)
        for k in range(args.producers):
            producers.append(PlainProducer(f"p{k}", rec, stop_producers, rng.randrange(1 << 30), bootstrap,
                                           topic, args.partitions, idempotent=True, rate=args.rate))
        producers.append(PlainProducer("n0", rec, stop_producers, rng.randrange(1 << 30), bootstrap,
                                       topic, args.partitions, idempotent=False, rate=args.rate))
        for k in range(args.txn_workers):
            producers.append(TxnWorker(f"t{k}", rec, stop_producers, rng.randrange(1 << 30), bootstrap,
                                       topic, args.partitions))
        for k in range(args.consumers):
            iso = "read_uncommitted" if k % 2 == 0 else "read_committed"
            consumers.append(PollConsumer(f"c{k}", rec, stop_consumers, rng.randrange(1 << 30), bootstrap,
                                          topic, args.partitions, iso))
        for c in consumers + producers:
            c.start()

        t0 = time.monotonic()
        nemesis = Nemesis(plan, nodes, mesh, rec, t0, stop_nemesis)
        nemesis.start()
        while time.monotonic() - t0 < args.duration and nemesis.error is None:
            failed = [f"{c.name}: {c.error!r}" for c in producers + consumers if c.error is not None]
            if failed:
                raise RuntimeError(f"client threads failed: {failed}")
            time.sleep(0.2)
        stop_nemesis.set()
        nemesis.join(timeout=READY_TIMEOUT_S)
        if nemesis.error is not None:
            raise RuntimeError(f"nemesis failed: {nemesis.error!r}")

        # heal: network, paused and dead nodes
        log("healing")
        rec.nemesis({"heal": True})
        mesh.heal()
        for node in nodes.values():
            node.set_clock_offset(0)
            if node.is_running():
                node.resume()
            else:
                node.start()
        for node in nodes.values():
            node.wait_port()
        wait_serving(bootstrap, topic, args.partitions)
        time.sleep(2.0)  # a little traffic on the healed node(s)
        stop_producers.set()
        for c in producers:
            c.join(timeout=CLIENT_STOP_TIMEOUT_S)
        hung = [c.name for c in producers if c.is_alive()]
        if hung:
            raise RuntimeError(f"client threads did not stop: {hung}")
        # let consumers catch up with the last acknowledged writes (never-read is information)
        deadline = time.monotonic() + 10
        hw = end_offsets(bootstrap, topic, args.partitions, committed=False)
        while time.monotonic() < deadline and sum(c.records for c in consumers[:1]) < sum(hw.values()):
            time.sleep(0.2)
        stop_consumers.set()
        for c in consumers:
            c.join(timeout=CLIENT_STOP_TIMEOUT_S)
        hung = [c.name for c in consumers if c.is_alive()]
        if hung:
            raise RuntimeError(f"consumer threads did not stop: {hung}")
        failed = [f"{c.name}: {c.error!r}" for c in producers + consumers if c.error is not None]
        if failed:
            raise RuntimeError(f"client threads failed: {failed}")

        # transactions left open by abandoned producers time out (transaction.timeout.ms)
        deadline = time.monotonic() + 60
        while True:
            hw = end_offsets(bootstrap, topic, args.partitions, committed=False)
            lso = end_offsets(bootstrap, topic, args.partitions, committed=True)
            if hw == lso or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        run_info["high_watermarks"] = hw
        run_info["last_stable_offsets"] = lso
        if hw != lso:
            log(f"warning: LSO {lso} still below HW {hw}: the read_committed drain stops at the LSO")
        drained_uc = drain(rec, bootstrap, topic, args.partitions, "read_uncommitted")
        drained_rc = drain(rec, bootstrap, topic, args.partitions, "read_committed")
        log(f"drained {drained_uc} records read_uncommitted, {drained_rc} read_committed")
        run_info["drained"] = {"read_uncommitted": drained_uc, "read_committed": drained_rc}
        run_info["txn_outcomes"] = {c.name: c.outcomes for c in producers if isinstance(c, TxnWorker)}
    except Exception as e:  # noqa: BLE001
        log(f"driver failed: {e!r}")
        dump_stacks(nodes)
        run_info["driver_error"] = repr(e)
        return DRIVER_FAILED
    finally:
        stop_nemesis.set()
        stop_producers.set()
        stop_consumers.set()
        rec.close()
        mesh.close()
        exits = stop_all(nodes)
        run_info["node_exit_codes"] = exits
        executed = nemesis.executed if nemesis is not None else []
        (out / "schedule.json").write_text(json.dumps({"seed": seed, "planned": plan, "executed": executed},
                                                      indent=1))
        (out / "run.json").write_text(json.dumps(run_info, indent=1, default=str))

    human = subprocess.run([str(args.check_bin), "--json-out", str(out / "check.json"),
                            str(out / "history.jsonl")], capture_output=True, text=True)
    (out / "check.txt").write_text(human.stdout + human.stderr)
    print(human.stdout + human.stderr, end="")
    print("fault schedule (executed):")
    for ev in executed:
        detail = {k: v for k, v in ev.items() if k not in ("kind", "at_s", "started_s", "ended_s")}
        print(f"  {ev['started_s']:8.2f}s .. {ev['ended_s']:8.2f}s  {ev['kind']:<9} {detail}")
    kinds = {}
    for ev in executed:
        kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
    print(f"faults: {kinds}; seed {seed}; output in {out}")
    print(f"rerun: ./scripts/chaos --seed {seed} --duration {args.duration:g} --nodes {args.nodes} --faults {','.join(args.faults)}")
    return human.returncode


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
