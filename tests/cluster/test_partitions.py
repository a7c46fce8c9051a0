"""Network partitions between nodes and wall-clock jumps (docs/cluster-design.md section 9).

The ``mesh_cluster`` fixture puts a fault-injecting TCP proxy on every directed node-to-node
link (Kafka and controller listeners), wired through the hidden
``test.peer.address.overrides``; clients connect to the nodes directly, so a node cut off from
its peers still talks to clients, as a real partition between racks would let it.

What the broker is held to (Kafka's guarantees):
* a partition leader cut off from the other nodes stops acknowledging acks=all writes
  (``min.insync.replicas=2``), the others fence it and elect a new leader at a higher leader
  epoch, and acks=all goes on through them; after healing, the old leader follows, truncates
  the tail nobody acknowledged, rejoins the ISR and, made leader again, serves exactly the
  acknowledged records;
* the active controller cut off from the others loses the Raft leadership to one of them (at a
  higher term) and stops claiming it; metadata changes go on through the majority; after
  healing it follows the new controller;
* wall-clock jumps (forwards and back, on every node) do not fence brokers or shrink ISRs:
  sessions, ISR lag and the acks=all purgatory are on the monotonic clock; record timestamps
  follow the shifted wall clock.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kwire  # noqa: E402
from fjordcluster import (Bootstrap, assert_no_acked_loss, create_topic, leader_of,  # noqa: E402
                          raw_create_topic, raw_quorum_leader, read_all, wait_isr)
from helpers import producer, unique_topic  # noqa: E402

pytestmark = pytest.mark.replication

REQUEST_TIMED_OUT = 7
ISOLATED_PRODUCE_TIMEOUT_MS = 4000
FENCED_LINE = "fencing broker: its session timed out"
SHRINK_LINE = "shrinking the ISR"


def produce_acked(bootstrap: str, topic: str, values: list[bytes]) -> dict[bytes, tuple[int, int]]:
    """acks=all (idempotent) to partition 0 through ``bootstrap``; every value must be
    acknowledged.  Returns value -> (partition, offset)."""
    p = producer(Bootstrap(bootstrap), acks="all", **{"enable.idempotence": True,
                                                       "message.timeout.ms": 60000})
    acked: dict[bytes, tuple[int, int]] = {}
    errors = []

    def report(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            errors.append((msg.value(), err))

    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=report)
    assert p.flush(90) == 0, "records undelivered"
    assert not errors, f"acks=all through {bootstrap} failed: {errors[:3]}"
    assert set(acked) == set(values)
    return acked


def produce_unacknowledged(port: int, topic: str, values: list[bytes]) -> str:
    """One acks=all Produce of ``values`` on a connection to the node on ``port`` only; it must
    not be acknowledged: an error, or no answer at all.  Returns what happened."""
    batch = kwire.record_batch([(None, v, []) for v in values], base_timestamp=int(time.time() * 1000))
    sock = kwire.connect(port, timeout=ISOLATED_PRODUCE_TIMEOUT_MS / 1000 + 10)
    try:
        sock.sendall(kwire.produce_v3(1, topic, 0, batch, acks=-1, timeout_ms=ISOLATED_PRODUCE_TIMEOUT_MS))
        try:
            _, result = kwire.parse_produce_v3(kwire.read_frame(sock))
        except (OSError, ConnectionError) as e:
            return f"no answer ({e!r})"
    finally:
        sock.close()
    err, base_offset = result[(topic, 0)]
    assert err != 0, f"an isolated leader acknowledged acks=all at offset {base_offset}"
    return f"error {err}"


def partition_view(cluster, n: int, topic: str):
    return cluster.raw_metadata(n, [topic]).topics[topic].partitions[0]


def count_lines(cluster, n: int, text: str) -> int:
    return cluster.node(n).log_text().count(text)


# ------------------------------------------------------------------------------- tests
def test_isolated_leader_stops_acking_and_a_new_leader_takes_over(mesh_cluster):
    c = mesh_cluster
    controller = c.wait_for("an active controller", c.active_controller)
    leader = next(n for n in c.ids() if n != controller)   # a plain broker; the controller: below
    others = [n for n in c.ids() if n != leader]
    topic = unique_topic("isolated-leader")
    # The isolated node is the preferred replica, so a preferred election can hand it the
    # partition back after the heal.
    create_topic(c, topic, partitions=1, rf=-1, config={"min.insync.replicas": "2"},
                 assignment=[[leader] + others])
    wait_isr(c, topic, 1, set(c.ids()))
    assert leader_of(c, topic, 0) == leader
    epoch_before = partition_view(c, leader, topic).leader_epoch

    acked = produce_acked(c.bootstrap, topic, [f"before-{i}".encode() for i in range(50)])

    c.isolate(leader)
    unacked = [f"isolated-{i}".encode() for i in range(5)]
    outcome = produce_unacknowledged(c.node(leader).client_port, topic, unacked)
    print(f"acks=all to the isolated leader: {outcome}")

    # The majority fences the isolated broker and elects a new leader at a higher epoch.
    def new_leadership():
        views = [partition_view(c, n, topic) for n in others]
        ok = all(v.leader in others and v.leader_epoch > epoch_before and leader not in v.isr
                 for v in views)
        return views[0] if ok else None
    view = c.wait_for("a new leader among the others at a higher leader epoch", new_leadership)
    assert leader not in c.raw_metadata(others[0]).brokers, "the isolated broker is not fenced"
    acked.update(produce_acked(c.bootstrap_of(*others), topic,
                               [f"during-{i}".encode() for i in range(50)]))
    # Still isolated and still believing it leads: more writes it must not acknowledge, now
    # at offsets where the new leader has acknowledged records.
    unacked2 = [f"isolated-late-{i}".encode() for i in range(5)]
    produce_unacknowledged(c.node(leader).client_port, topic, unacked2)
    unacked += unacked2

    c.heal()
    # The old leader follows the new one, truncates its divergent tail, rejoins the ISR.
    wait_isr(c, topic, 1, set(c.ids()), nodes=c.ids())
    truncated = re.compile(rf"truncated a divergent log tail.*{re.escape(topic)}|"
                           rf"{re.escape(topic)}.*truncated a divergent log tail")
    c.wait_for(f"node {leader} to log the truncation of its divergent tail",
               lambda: truncated.search(c.node(leader).log_text()))
    acked.update(produce_acked(c.bootstrap, topic, [f"after-{i}".encode() for i in range(20)]))

    # Hand the partition back to the old leader: it must serve exactly the acknowledged records.
    subprocess.run([str(c.binary), "partition", "elect", "--type", "preferred", "--topic", topic,
                    "--bootstrap", c.node(others[0]).bootstrap], check=True, capture_output=True,
                   timeout=60)
    c.wait_for(f"node {leader} to lead {topic} again",
               lambda: all(partition_view(c, n, topic).leader == leader for n in c.ids()))
    assert partition_view(c, leader, topic).leader_epoch > view.leader_epoch
    log = read_all(c.bootstrap_of(leader), topic, 1,
                   min_ends={0: max(offset for _, offset in acked.values()) + 1})
    assert_no_acked_loss(acked, log)
    values = list(log[0].values())
    assert len(values) == len(set(values)), "a record is in the log twice"
    assert set(values) == set(acked), (
        f"records nobody acknowledged survived: {sorted(set(values) - set(acked))[:10]}")
    assert not set(unacked) & set(values)


def test_isolated_active_controller_is_replaced(mesh_cluster):
    c = mesh_cluster
    controller = c.wait_for("an active controller", c.active_controller)
    term_before = c.quorum_leader()[1]
    others = [n for n in c.ids() if n != controller]

    c.isolate(controller)

    # Asked on the controller listeners, where only the Raft leader describes the quorum (a
    # broker listener forwards DescribeQuorum to the leader, as Kafka brokers do).
    def new_controller():
        for n in others:
            answer = raw_quorum_leader(c.node(n).controller_port)
            if answer is not None and answer[0] in others and answer[1] > term_before:
                return answer
        return None
    leader, term = c.wait_for("a new Raft leader among the others at a higher term", new_controller)
    # Check-quorum: the isolated node stops claiming the leadership it cannot exercise.
    c.wait_for(f"node {controller} to step down",
               lambda: raw_quorum_leader(c.node(controller).controller_port) is None)
    # The majority goes on: a metadata change through a survivor, the isolated broker fenced.
    topic = unique_topic("after-controller-cut")
    err, message = raw_create_topic(c.node(others[0]).client_port, topic, partitions=1,
                                    replication_factor=2)
    assert err == 0, (err, message)
    c.wait_brokers(set(others), others[0])

    c.heal()
    c.wait_brokers(set(c.ids()), controller)
    for n in c.ids():
        c.wait_brokers(set(c.ids()), n)
    answer = c.wait_for("a Raft leader after the heal", c.quorum_leader)
    assert answer[1] >= term, f"the Raft term went back: {answer} after {term}"
    # The rejoined node serves the change made while it was cut off, and forwards new ones.
    assert topic in c.raw_metadata(controller, [topic]).topics
    topic2 = unique_topic("after-heal")
    err, message = raw_create_topic(c.node(controller).client_port, topic2, partitions=1,
                                    replication_factor=3)
    assert err == 0, (err, message)


def test_wall_clock_jumps_fence_nobody_and_shrink_no_isr(mesh_cluster):
    c = mesh_cluster
    topic = unique_topic("clock-jump")
    create_topic(c, topic, partitions=1, rf=3,
                 config={"min.insync.replicas": "2", "message.timestamp.type": "LogAppendTime"})
    wait_isr(c, topic, 1, set(c.ids()))
    fenced = {n: count_lines(c, n, FENCED_LINE) for n in c.ids()}
    shrinks = {n: count_lines(c, n, SHRINK_LINE) for n in c.ids()}
    acked = produce_acked(c.bootstrap, topic, [b"clock-0"])

    jump_ms = 15 * 60 * 1000   # far beyond broker.session.timeout.ms and replica.lag.time.max.ms
    for step, offset in enumerate((jump_ms, -jump_ms, 0)):
        for n in c.ids():
            c.set_clock_offset(n, offset)
        # The leader stamps LogAppendTime from its (shifted) wall clock: the offset applies.
        expected_ms = time.time() * 1000 + offset

        def stamped():
            """Produces one record; returns it if its LogAppendTime is near ``expected_ms``."""
            value = f"clock-{step + 1}-stamp-{time.monotonic_ns()}".encode()
            p = producer(Bootstrap(c.bootstrap), acks="all")
            got = []
            p.produce(topic, value=value, partition=0,
                      on_delivery=lambda err, msg: got.append((err, msg)))
            p.flush(30)
            err, msg = got[0]
            assert err is None, err
            acked[value] = (0, msg.offset())
            return msg if abs(msg.timestamp()[1] - expected_ms) < 60_000 else None

        msg = c.wait_for(f"a record stamped at wall clock {offset:+} ms", stamped)
        assert msg.timestamp()[1] > 0
        # Heartbeats and replication go on across the jump for longer than a session.
        acked.update(produce_acked(c.bootstrap, topic,
                                   [f"clock-{step + 1}-{i}".encode() for i in range(200)]))
    wait_isr(c, topic, 1, set(c.ids()), nodes=c.ids())
    for n in c.ids():
        assert count_lines(c, n, FENCED_LINE) == fenced[n], f"node {n} fenced a broker after a clock jump"
        assert count_lines(c, n, SHRINK_LINE) == shrinks[n], f"node {n} shrank an ISR after a clock jump"
    c.wait_brokers(set(c.ids()))
    assert_no_acked_loss(acked, read_all(c.bootstrap, topic, 1,
                                         min_ends={0: max(o for _, o in acked.values()) + 1}))
