"""Coordinator failover, decommissioning and reassignments across controller restarts, on real
processes (issue 8, docs/cluster-design.md sections 4, 6 and 9).

* Transactions across the kill -9 of the transaction coordinator: a confluent-kafka
  transactional producer has a transaction open (records flushed) when the leader of its
  ``__transaction_state`` partition dies; the same producer commits it through the new
  coordinator and goes on committing and aborting; a read_committed consumer reads exactly the
  committed transactions' records, once each (the aborted ones are in the log, read_uncommitted
  sees them).
* A subscribed consumer group keeps consuming and committing across the kill -9 of its group
  coordinator; the committed offsets the coordinator reports never go backwards and end at the
  log end.
* Decommissioning a broker-only node (Kafka's procedure): reassign every replica off it
  (``fjord partition reassign``), SIGTERM it, ``fjord cluster unregister --id N``; no node lists
  it or names it in a partition afterwards and produce/consume goes on.  Adding one: a new
  broker-only node gets a replica by reassignment, with every record copied (made the leader by
  a preferred election, it serves them all).
* A throttled reassignment survives the kill -9 of the active controller: the new controller
  finishes it (ListPartitionReassignments empty, replicas as planned, every record on the new
  replica) and ``--verify`` then clears the throttle configs.

Every wait is bounded by a deadline (``Cluster.wait_for``); nothing asserts on timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kwire  # noqa: E402
from fjordcluster import (Bootstrap, Cluster, create_topic, high_watermark, leader_of,  # noqa: E402
                          read_all)
from helpers import OP_TIMEOUT, RDKAFKA_LOGGER, producer, unique_topic  # noqa: E402
from txnhelpers import read_all as read_isolated  # noqa: E402
from txnhelpers import txn_producer  # noqa: E402

pytestmark = pytest.mark.replication

TXN_STATE = "__transaction_state"
OFFSETS = "__consumer_offsets"
LIST_PARTITION_REASSIGNMENTS = 46
NO_THROTTLE = str(2**63 - 1)


# ----------------------------------------------------------------------------- helpers
def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (UTF-16 code units, 32-bit wrap-around)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def coordinator_partition(key: str, partitions: int) -> int:
    """Kafka's ``Utils.abs(key.hashCode) % partitions`` (``Utils.abs`` maps MIN_VALUE to 0)."""
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def fjord(cluster: Cluster, *args, check: bool = True) -> subprocess.CompletedProcess:
    """``fjord <args> --bootstrap <first live node>``."""
    bootstrap = cluster.node(cluster.live()[0]).bootstrap
    proc = subprocess.run([str(cluster.binary), *args, "--bootstrap", bootstrap],
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"fjord {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def execute(cluster: Cluster, plan_path: Path, moves: dict[tuple[str, int], list[int]],
            throttle: int | None = None) -> None:
    plan_path.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": t, "partition": p, "replicas": r} for (t, p), r in sorted(moves.items())]}))
    args = ["partition", "reassign", "--execute", "--plan", str(plan_path)]
    if throttle is not None:
        args += ["--throttle", str(throttle)]
    fjord(cluster, *args)


def verify(cluster: Cluster, plan_path: Path) -> dict:
    out = fjord(cluster, "partition", "reassign", "--verify", "--plan", str(plan_path),
                "--output", "json").stdout
    return json.loads(out)


def wait_reassigned(cluster: Cluster, plan_path: Path, timeout: float = 90.0) -> dict:
    """``--verify`` until the plan is complete (that call clears the plan's throttles)."""
    return cluster.wait_for("the reassignment to complete",
                            lambda: (lambda r: r if r["complete"] else None)(verify(cluster, plan_path)),
                            timeout=timeout)


def list_partition_reassignments(port: int) -> dict[tuple[str, int], tuple[list, list, list]]:
    """ListPartitionReassignments v0 for every topic, sent to the broker on ``port``:
    {(topic, partition): (replicas, adding, removing)}."""
    body = kwire.i32(30000) + kwire.uvarint(0) + kwire.TAGS   # topics = null: all
    with kwire.Conn(port) as conn:
        version = conn.version(LIST_PARTITION_REASSIGNMENTS, 0)
        r = conn.request(LIST_PARTITION_REASSIGNMENTS, version, body, flexible=True)
    r.i32()  # throttle_time_ms
    err = r.i16()
    message = kwire._compact_string_r(r)
    assert err == 0, f"ListPartitionReassignments: error {err} {message}"

    def ids():
        return [r.i32() for _ in range(r.uvarint() - 1)]
    out = {}
    for _ in range(r.uvarint() - 1):
        name = kwire._compact_string_r(r)
        for _ in range(r.uvarint() - 1):
            index = r.i32()
            out[(name, index)] = (ids(), ids(), ids())
            kwire._skip_tags(r)
        kwire._skip_tags(r)
    return out


def wait_in_sync(cluster: Cluster, topic: str, timeout: float = 60.0) -> None:
    """Until every live node shows every partition of ``topic`` with ISR == replicas (an
    internal topic created while a node was down has fewer replicas than nodes)."""
    for n in cluster.live():
        cluster.wait_for(f"every replica of {topic} in sync on node {n}", lambda n=n: all(
            set(p.isr) == set(p.replicas)
            for p in cluster.raw_metadata(n, [topic]).topics[topic].partitions.values()),
            timeout)


def describe(cluster: Cluster, resource: ConfigResource) -> dict[str, str]:
    """The resource's configs; asks again while librdkafka is still finding a live controller
    (just after a node was killed its cached metadata may name the dead one)."""
    deadline = time.monotonic() + 60
    while True:
        admin = cluster.admin()   # kept alive until the answer is in
        try:
            result = admin.describe_configs([resource])[resource].result(timeout=OP_TIMEOUT)
            return {name: entry.value for name, entry in result.items()}
        except KafkaException as e:
            if not e.args[0].retriable() and e.args[0].code() != KafkaError._TIMED_OUT:
                raise
            assert time.monotonic() < deadline, f"describe_configs kept failing: {e}"
            time.sleep(0.5)


def produce_values(bootstrap: str, topic: str, values: list[bytes], partition: int | None = None,
                   **conf) -> dict[bytes, tuple[int, int]]:
    """acks=all, idempotent: {value: (partition, offset)} of every acknowledged value."""
    p = producer(Bootstrap(bootstrap), acks="all", **{"enable.idempotence": True,
                                                      "message.timeout.ms": 60000, **conf})
    acked, errors = {}, []

    def report(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            errors.append((msg.value(), err))
    for i, v in enumerate(values):
        kwargs = {"key": f"k-{i}".encode(), "value": v, "on_delivery": report}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(90) == 0, "records undelivered"
    assert not errors, f"delivery errors: {errors[:5]}"
    return acked


# ------------------------------------------------------------------ coordinator failover
def test_transactions_go_on_across_the_transaction_coordinators_kill9(cluster):
    topic = unique_topic("txn-failover")
    partitions = 3
    create_topic(cluster, topic, partitions=partitions, rf=3, config={"min.insync.replicas": "2"})
    txid = unique_topic("txid")
    p = txn_producer(cluster.bootstrap, txid, **{"transaction.timeout.ms": 60000,
                                                  "socket.timeout.ms": 10000,
                                                  "retry.backoff.ms": 100})
    state_partitions = len(cluster.raw_metadata(None, [TXN_STATE]).topics[TXN_STATE].partitions)
    assert state_partitions > 0
    state_partition = coordinator_partition(txid, state_partitions)
    committed: list[bytes] = []
    aborted: list[bytes] = []
    seq = 0

    def send_txn(count: int = 4) -> list[bytes]:
        nonlocal seq
        values = []
        p.begin_transaction()
        for _ in range(count):
            value = f"{txid}-{seq}".encode()
            p.produce(topic, partition=seq % partitions, value=value)
            values.append(value)
            seq += 1
        assert p.flush(60) == 0
        return values

    def finish(values: list[bytes], commit: bool) -> None:
        """Commits (or aborts) the open transaction, retrying what librdkafka calls retriable;
        a commit that must be aborted (Kafka: abortable error) is aborted and counted so."""
        deadline = time.monotonic() + 90
        while True:
            try:
                if commit:
                    p.commit_transaction(30)
                    committed.extend(values)
                else:
                    p.abort_transaction(30)
                    aborted.extend(values)
                return
            except KafkaException as e:
                err = e.args[0]
                assert not err.fatal(), f"fatal transactional error: {err}"
                assert time.monotonic() < deadline, f"transaction not finished: {err}"
                if commit and err.txn_requires_abort():
                    commit = False
                    continue
                assert err.retriable(), f"neither retriable nor abortable: {err}"

    for i in range(6):
        finish(send_txn(), commit=i % 3 != 2)

    # Every replica of the coordinator's partition in sync, so the kill loses no state.
    wait_in_sync(cluster, TXN_STATE)
    old_coordinator = leader_of(cluster, TXN_STATE, state_partition)
    open_values = send_txn()               # Ongoing on the coordinator, records in the logs
    cluster.kill(old_coordinator)
    survivors = [n for n in cluster.ids() if n != old_coordinator]
    new_coordinator = cluster.wait_for(
        f"a new leader of {TXN_STATE}-{state_partition}",
        lambda: (lambda l: l if l in survivors else None)(
            leader_of(cluster, TXN_STATE, state_partition, survivors[0])))
    committed_before = len(committed)
    finish(open_values, commit=True)       # EndTxn through the new coordinator
    for i in range(9):
        finish(send_txn(), commit=i % 3 != 1)
    assert len(committed) - committed_before >= 4 * 6, "commits after the failover"
    p.flush(10)

    bootstrap = cluster.bootstrap_of(*survivors)
    log = read_isolated(bootstrap, topic, partitions, "read_committed", timeout=60)
    values = [m.value() for msgs in log.values() for m in msgs]
    assert len(values) == len(set(values)), "a committed record read twice"
    assert sorted(values) == sorted(committed), (
        f"read_committed: {len(set(values) - set(committed))} unexpected "
        f"({len(set(values) & set(aborted))} aborted), {len(set(committed) - set(values))} missing")
    # The aborted records are in the log: only isolation keeps them out.
    everything = read_isolated(bootstrap, topic, partitions, "read_uncommitted", timeout=60)
    raw_values = {m.value() for msgs in everything.values() for m in msgs}
    assert aborted and set(aborted) <= raw_values
    print(f"coordinator {old_coordinator} -> {new_coordinator}: {len(committed)} committed, "
          f"{len(aborted)} aborted records")

    cluster.start(old_coordinator)
    cluster.wait_brokers(set(cluster.ids()))


def test_a_subscribed_group_keeps_committing_across_the_group_coordinators_kill9(cluster):
    topic = unique_topic("group-go-on")
    group = unique_topic("g")
    partitions = 3
    create_topic(cluster, topic, partitions=partitions, rf=3, config={"min.insync.replicas": "2"})
    first = [f"a-{i}".encode() for i in range(400)]
    later = [f"b-{i}".encode() for i in range(200)]
    produce_values(cluster.bootstrap, topic, first)

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                  "fetch.wait.max.ms": 100, "socket.timeout.ms": 10000}, logger=RDKAFKA_LOGGER)
    tps = [TopicPartition(topic, q) for q in range(partitions)]
    seen: set[bytes] = set()
    high: dict[int, int] = {}               # the highest committed offset reported per partition
    reports = 0
    commit_failures = []

    def commit_and_check() -> None:
        nonlocal reports
        try:
            c.commit(asynchronous=False)
        except KafkaException as e:
            commit_failures.append(e.args[0])   # the coordinator is moving: commit again later
            return
        try:
            got = c.committed(tps, timeout=5)
        except KafkaException:
            return
        reports += 1
        for tp in got:
            before = high.get(tp.partition)
            # No committed offset (OFFSET_INVALID, -1001) after one was reported is going back.
            assert before is None or tp.offset >= before, (
                f"committed offset of {topic}-{tp.partition} went back: {before} -> {tp.offset}")
            if tp.offset >= 0:
                high[tp.partition] = tp.offset

    def consume(until_seen: set[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        since_commit = 0
        while not until_seen <= seen:
            assert time.monotonic() < deadline, (
                f"consumed {len(until_seen & seen)} of {len(until_seen)}; commit failures "
                f"{commit_failures[:5]}")
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            seen.add(msg.value())
            since_commit += 1
            if since_commit >= 25:
                commit_and_check()
                since_commit = 0
        commit_and_check()

    c.subscribe([topic])
    try:
        consume(set(first[:200]), timeout=60)
        a = cluster.admin()   # must outlive the future
        coordinator = a.describe_consumer_groups([group])[group].result(
            timeout=OP_TIMEOUT).coordinator.id
        wait_in_sync(cluster, OFFSETS)
        reports_before = reports
        cluster.kill(coordinator)
        survivors = [n for n in cluster.ids() if n != coordinator]
        produce_values(cluster.bootstrap_of(*survivors), topic, later)
        consume(set(first) | set(later), timeout=90)
        # The group coordinator moved and the same consumer committed through the new one, up
        # to the log end of every partition.
        deadline = time.monotonic() + 60
        ends = {q: high_watermark(c, topic, q, deadline) for q in range(partitions)}
        final = cluster.wait_for("the final commit at the log ends", lambda: (
            commit_and_check(), high == ends and high)[1], timeout=60)
        assert reports > reports_before, "no committed offsets reported after the kill"
        a = cluster.admin(cluster.bootstrap_of(*survivors))
        new_coordinator = a.describe_consumer_groups([group])[group].result(
            timeout=OP_TIMEOUT).coordinator.id
        assert new_coordinator in survivors
        print(f"group coordinator {coordinator} -> {new_coordinator}; final {final}; "
              f"{len(commit_failures)} commits failed and were redone")
    finally:
        c.close()
    cluster.start(coordinator)
    cluster.wait_brokers(set(cluster.ids()))


# ------------------------------------------------------------------ brokers leaving, joining
def test_decommissioning_a_broker_and_adding_one(cluster_factory, tmp_path):
    c = cluster_factory(brokers=1)
    gone = c.broker_only_ids()[0]
    voters = c.voter_ids()
    topic = unique_topic("decommission")
    partitions = 3
    create_topic(c, topic, partitions=partitions, rf=-1, config={"min.insync.replicas": "2"},
                 assignment=[[gone, 1, 2], [2, gone, 3], [3, 1, gone]])
    for q in range(partitions):
        c.wait_for(f"{topic}-{q} fully in sync", lambda q=q: len(
            c.raw_metadata(1, [topic]).topics[topic].partitions[q].isr) == 3)
    acked = produce_values(c.bootstrap, topic, [f"d-{i}".encode() for i in range(300)])

    # Every replica on `gone` (internal topics included) moves to a voter it is not on yet.
    md = c.raw_metadata(1)
    moves = {}
    for name, t in md.topics.items():
        for q, part in t.partitions.items():
            if gone in part.replicas:
                spare = next(v for v in voters if v not in part.replicas)
                moves[(name, q)] = [spare if r == gone else r for r in part.replicas]
    assert {(topic, q) for q in range(partitions)} <= set(moves)
    plan = tmp_path / "decommission.json"
    execute(c, plan, moves)
    result = wait_reassigned(c, plan)
    assert all(s["replicas"] == s["target_replicas"] for s in result["partitions"]), result
    for n in c.ids():
        c.wait_for(f"node {n} to name {gone} in no partition", lambda n=n: not [
            (name, q) for name, t in c.raw_metadata(n).topics.items()
            for q, part in t.partitions.items() if gone in part.replicas + part.isr])

    c.stop(gone)                                   # SIGTERM: controlled shutdown, exit 0
    out = fjord(c, "cluster", "unregister", "--id", str(gone)).stdout
    print(out)
    for n in voters:
        md = c.wait_brokers(set(voters), n)
        named = [(name, q) for name, t in md.topics.items() for q, part in t.partitions.items()
                 if gone in part.replicas + part.isr + part.offline or part.leader == gone]
        assert not named, f"node {n} still names {gone} in {named}"
    more = produce_values(c.live_bootstrap(), topic, [f"e-{i}".encode() for i in range(100)])
    acked.update(more)
    log = read_all(c.live_bootstrap(), topic, partitions)
    assert {v: (q, o) for q, recs in log.items() for o, v in recs.items()} == acked

    # A new broker-only node joins and takes a replica of partition 0 with all its data.
    new = c.add_broker().node_id
    c.wait_brokers(set(voters) | {new})
    p0 = c.raw_metadata(1, [topic]).topics[topic].partitions[0].replicas
    target = [new] + p0[1:]
    plan2 = tmp_path / "add.json"
    execute(c, plan2, {(topic, 0): target})
    result = wait_reassigned(c, plan2)
    assert result["partitions"][0]["replicas"] == target, result
    c.wait_for(f"{new} in the ISR of {topic}-0",
               lambda: new in c.raw_metadata(new, [topic]).topics[topic].partitions[0].isr)
    fjord(c, "partition", "elect", "--type", "preferred", "--topic", topic, "--partition", "0")
    c.wait_for(f"{new} to lead {topic}-0", lambda: leader_of(c, topic, 0, new) == new)
    expected = {o: v for v, (q, o) in acked.items() if q == 0}
    got = read_all(c.node(new).bootstrap, topic, 1, min_ends={0: max(expected) + 1})[0]
    assert got == expected, f"{len(got)} of {len(expected)} records on the new broker {new}"


# ------------------------------------------------------------- reassignment and controller
def test_a_throttled_reassignment_survives_the_active_controllers_kill9(cluster_factory, tmp_path):
    c = cluster_factory()
    controller = c.wait_for("an active controller", c.active_controller)
    source, dest = [n for n in c.ids() if n != controller]
    topic = unique_topic("reassign-ctl")
    create_topic(c, topic, partitions=1, rf=-1, assignment=[[source]])
    values = [f"r-{i:05d}-".encode() + b"z" * 1000 for i in range(2500)]   # ~2.5 MB
    acked = produce_values(c.bootstrap, topic, values, partition=0, **{"linger.ms": 20})

    rate = 400_000          # B/s: the copy takes several seconds
    plan = tmp_path / "plan.json"
    execute(c, plan, {(topic, 0): [dest]}, throttle=rate)
    assert describe(c, ConfigResource(ResourceType.TOPIC, topic))[
        "follower.replication.throttled.replicas"] == f"0:{dest}"
    ongoing = list_partition_reassignments(c.node(source).client_port)
    assert (topic, 0) in ongoing, f"the reassignment is not under way: {ongoing}"
    assert ongoing[(topic, 0)][1] == [dest], ongoing        # adding

    c.kill(controller)
    new_controller = c.wait_for("a new active controller", lambda: (
        lambda a: a if a in (source, dest) else None)(c.active_controller()))
    result = wait_reassigned(c, plan, timeout=120)
    assert result["partitions"][0]["replicas"] == [dest], result
    assert result["throttles_cleared"] is not None, result
    for n in (source, dest):
        assert list_partition_reassignments(c.node(n).client_port) == {}
        part = c.wait_for(f"{topic}-0 on {dest} alone in node {n}'s view", lambda n=n: (
            lambda p: p if p.replicas == [dest] and p.leader == dest else None)(
                c.raw_metadata(n, [topic]).topics[topic].partitions[0]))
        assert part.isr == [dest]
    log = read_all(c.node(dest).bootstrap, topic, 1, min_ends={0: len(values)})[0]
    assert log == {o: v for v, (_, o) in acked.items()}

    # --verify removed the throttle configs (Kafka's tool does once nothing moves).
    configs = describe(c, ConfigResource(ResourceType.TOPIC, topic))
    assert configs["leader.replication.throttled.replicas"] == "", configs
    assert configs["follower.replication.throttled.replicas"] == "", configs
    for broker in (source, dest):
        configs = describe(c, ConfigResource(ResourceType.BROKER, str(broker)))
        assert configs["leader.replication.throttled.rate"] == NO_THROTTLE, configs
        assert configs["follower.replication.throttled.rate"] == NO_THROTTLE, configs
    print(f"controller {controller} -> {new_controller}")

    c.start(controller)
    c.wait_brokers(set(c.ids()))
