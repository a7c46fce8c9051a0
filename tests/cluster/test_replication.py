"""Partition data replication across real processes (docs/cluster-design.md sections 5 and 9).

Written against the design before followers fetch: every test is marked ``replication`` and
``scripts/test`` deselects the marker until replication lands.  Run them by hand with
``FJORD_BIN=... .venv/bin/pytest tests/cluster -m replication``.

What they hold the broker to (Kafka's guarantees):
* acks=all with ``min.insync.replicas=2``: no acknowledged record is lost when the leader is
  killed (-9); the new leader has every acknowledged record at its offset; consumers go on;
* a restarted replica truncates/catches up and rejoins the ISR, and can then lead with all data;
* too few in-sync replicas: acks=all is refused (NOT_ENOUGH_REPLICAS), never acknowledged;
* a rolling restart (SIGTERM one node at a time) under acks=all load loses nothing;
* a consumer group's committed offsets survive the kill -9 of its coordinator's node.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kwire  # noqa: E402
from fjordcluster import (NOT_ENOUGH_REPLICAS, Bootstrap, assert_no_acked_loss, create_topic,  # noqa: E402
                          leader_of, read_all, wait_isr)
from helpers import OP_TIMEOUT, RDKAFKA_LOGGER, consumer, producer, unique_topic  # noqa: E402

pytestmark = pytest.mark.replication

NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
REQUEST_TIMED_OUT = 7


# ----------------------------------------------------------------------------- helpers
class AckingProducer(threading.Thread):
    """Produces ``v-<i>`` values (keys spread over partitions, or one partition) as fast as
    acks=all allows, and records every acknowledged (partition, offset, value) and every error.
    ``stop()`` ends producing and flushes what is in flight."""

    def __init__(self, bootstrap: str, topic: str, partition: int | None = None,
                 rate_per_s: float = 500.0, **conf):
        super().__init__(daemon=True)
        self.topic = topic
        self.partition = partition
        self.interval_s = 1.0 / rate_per_s
        settings = {"acks": "all", "enable.idempotence": True, "message.timeout.ms": 120000,
                    "linger.ms": 2, "retry.backoff.ms": 100}
        settings.update(conf)
        self.producer = producer(Bootstrap(bootstrap), **settings)
        self.lock = threading.Lock()
        self.acked: dict[bytes, tuple[int, int]] = {}      # value -> (partition, offset)
        self.acked_order: list[bytes] = []                 # values in acknowledgement order
        self.errors: list[tuple[bytes, KafkaError]] = []
        self.sent = 0
        self._halt = threading.Event()

    def _report(self, err, msg):
        with self.lock:
            if err is None:
                self.acked[msg.value()] = (msg.partition(), msg.offset())
                self.acked_order.append(msg.value())
            else:
                self.errors.append((msg.value(), err))

    def run(self):
        i = 0
        while not self._halt.is_set():
            value = f"v-{i}".encode()
            kwargs = {"value": value, "key": f"k-{i}".encode(), "on_delivery": self._report}
            if self.partition is not None:
                kwargs["partition"] = self.partition
            try:
                self.producer.produce(self.topic, **kwargs)
                i += 1
                with self.lock:
                    self.sent = i
            except BufferError:
                pass
            self.producer.poll(self.interval_s)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_acked(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked_count() < count:
            assert time.monotonic() < deadline, (
                f"only {self.acked_count()} of {count} records acknowledged within {timeout}s; "
                f"errors: {self.errors[:5]}")
            time.sleep(0.05)

    def stop(self, flush_timeout: float = 120.0) -> None:
        self._halt.set()
        self.join(timeout=30)
        remaining = self.producer.flush(flush_timeout)
        assert remaining == 0, f"{remaining} records undelivered after {flush_timeout}s"


class Tail(threading.Thread):
    """A consumer reading one partition from the start, recording every value it sees."""

    def __init__(self, bootstrap: str, topic: str, partition: int):
        super().__init__(daemon=True)
        self.c: Consumer = consumer(Bootstrap(bootstrap))
        self.c.assign([TopicPartition(topic, partition, 0)])
        self.values: list[bytes] = []
        self.lock = threading.Lock()
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            msg = self.c.poll(0.2)
            if msg is not None and not msg.error():
                with self.lock:
                    self.values.append(msg.value())
        self.c.close()

    def seen(self) -> set[bytes]:
        with self.lock:
            return set(self.values)

    def stop(self):
        self._halt.set()
        self.join(timeout=30)


def raw_produce(port: int, topic: str, partition: int, acks: int, value: bytes) -> tuple[int, int]:
    batch = kwire.record_batch([(None, value, [])], base_timestamp=int(time.time() * 1000))
    with kwire.Conn(port) as conn:
        return conn.produce(topic, partition, batch, acks=acks)


# ------------------------------------------------------------------------------- tests
def test_leader_kill9_under_acks_all_loses_nothing_acknowledged(cluster):
    topic = unique_topic("acks-all-kill")
    create_topic(cluster, topic, partitions=1, rf=3, config={"min.insync.replicas": "2"})
    wait_isr(cluster, topic, 1, set(cluster.ids()))
    leader = leader_of(cluster, topic, 0)
    others = [n for n in cluster.ids() if n != leader]

    tail = Tail(cluster.bootstrap, topic, 0)
    tail.start()
    prod = AckingProducer(cluster.bootstrap, topic, partition=0)
    prod.start()
    try:
        prod.wait_acked(500)
        cluster.kill(leader)
        acked_at_kill = prod.acked_count()
        prod.wait_acked(acked_at_kill + 500, timeout=90)
    finally:
        prod.stop()
    new_leader = leader_of(cluster, topic, 0)
    assert new_leader in others

    log = read_all(cluster.bootstrap_of(*others), topic, 1)
    assert_no_acked_loss(prod.acked, log)

    # The consumer went on past the failover: it saw records acknowledged only after the kill.
    acked_late = set(prod.acked_order[acked_at_kill:][-100:])
    assert acked_late
    cluster.wait_for("the tailing consumer to read records produced after the kill",
                     lambda: acked_late <= tail.seen(), timeout=60)
    tail.stop()


def test_restarted_replica_catches_up_rejoins_isr_and_can_lead(cluster):
    topic = unique_topic("catch-up")
    r, l, x = 1, 2, 3   # r is the preferred leader: first in the assignment
    create_topic(cluster, topic, partitions=1, rf=-1, config={"min.insync.replicas": "2"},
                 assignment=[[r, l, x]])
    wait_isr(cluster, topic, 1, {r, l, x})
    prod = AckingProducer(cluster.bootstrap, topic, partition=0)
    prod.start()
    try:
        prod.wait_acked(300)
        cluster.kill(r)
        wait_isr(cluster, topic, 1, {l, x})
        n = prod.acked_count()
        prod.wait_acked(n + 500)     # written while r is down: r must fetch them
        cluster.start(r)
        prod.wait_acked(prod.acked_count() + 200)
    finally:
        prod.stop()
    wait_isr(cluster, topic, 1, {r, l, x})

    # Controlled shutdown of the current leader hands the partition to the first live ISR
    # member in assignment order: r, which must then serve everything acknowledged.
    current = leader_of(cluster, topic, 0)
    assert current in (l, x)
    cluster.stop(current)
    cluster.wait_for(f"{r} to lead {topic}", lambda: leader_of(cluster, topic, 0) == r)
    log = read_all(cluster.bootstrap_of(r), topic, 1)
    assert_no_acked_loss(prod.acked, log)


def test_too_few_in_sync_replicas_refuse_acks_all(cluster):
    # min.insync.replicas=3 and one node down (fenced, out of the ISR; quorum intact): Kafka
    # refuses acks=all before appending with NOT_ENOUGH_REPLICAS, and still takes acks=1.
    topic = unique_topic("nerepl")
    create_topic(cluster, topic, partitions=1, rf=3, config={"min.insync.replicas": "3"})
    wait_isr(cluster, topic, 1, set(cluster.ids()))
    leader = leader_of(cluster, topic, 0)
    down = next(n for n in cluster.ids() if n != leader and n != cluster.active_controller())
    cluster.kill(down)
    live = [n for n in cluster.ids() if n != down]
    wait_isr(cluster, topic, 1, set(live))
    port = cluster.node(leader).client_port
    err, _ = raw_produce(port, topic, 0, acks=-1, value=b"must-not-be-acked")
    assert err == NOT_ENOUGH_REPLICAS, err
    err, _ = raw_produce(port, topic, 0, acks=1, value=b"acks-1")
    assert err == 0, err

    # With 2 of 3 nodes down (min.insync.replicas=2): the controller quorum is lost too, so the
    # ISR cannot shrink further; Kafka then refuses (NOT_ENOUGH_REPLICAS) or never acknowledges
    # (the request times out). What must never happen is an acknowledged acks=all write.
    topic2 = unique_topic("nerepl2")
    cluster.start(down)
    create_topic(cluster, topic2, partitions=1, rf=3, config={"min.insync.replicas": "2"})
    wait_isr(cluster, topic2, 1, set(cluster.ids()))
    leader = leader_of(cluster, topic2, 0)
    followers = [n for n in cluster.ids() if n != leader]
    cluster.kill(followers[0])
    wait_isr(cluster, topic2, 1, {leader, followers[1]})
    cluster.kill(followers[1])
    port = cluster.node(leader).client_port
    err, _ = raw_produce(port, topic2, 0, acks=-1, value=b"must-not-be-acked-2")
    print(f"acks=all with 2 of 3 nodes down answered error {err}")
    assert err in (NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT), (
        f"acks=all with 2 of 3 nodes down answered {err}")


def test_rolling_restart_under_acks_all_loses_nothing(cluster):
    topic = unique_topic("rolling")
    partitions = 6
    create_topic(cluster, topic, partitions=partitions, rf=3, config={"min.insync.replicas": "2"})
    wait_isr(cluster, topic, partitions, set(cluster.ids()))
    prod = AckingProducer(cluster.bootstrap, topic)
    prod.start()
    try:
        prod.wait_acked(300)
        for n in cluster.ids():
            wait_isr(cluster, topic, partitions, set(cluster.ids()))
            cluster.stop(n)
            before = prod.acked_count()
            prod.wait_acked(before + 100)     # acks=all goes on with 2 of 3
            cluster.start(n)
        wait_isr(cluster, topic, partitions, set(cluster.ids()))
        prod.wait_acked(prod.acked_count() + 100)
    finally:
        prod.stop()
    assert not prod.errors, f"delivery errors during the rolling restart: {prod.errors[:5]}"
    log = read_all(cluster.bootstrap, topic, partitions)
    assert_no_acked_loss(prod.acked, log)
    values = [v for p in log.values() for v in p.values()]
    assert len(values) == len(set(values)), "idempotent producer's records duplicated"


def test_group_offsets_survive_coordinator_kill9(cluster):
    topic = unique_topic("group-failover")
    group = unique_topic("g")
    partitions = 3
    create_topic(cluster, topic, partitions=partitions, rf=3, config={"min.insync.replicas": "2"})
    p = producer(Bootstrap(cluster.bootstrap), acks="all", **{"enable.idempotence": True})
    for i in range(300):
        p.produce(topic, value=f"m-{i}".encode(), key=f"k-{i}".encode())
    assert p.flush(60) == 0

    def group_consumer(bootstrap):
        return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                        logger=RDKAFKA_LOGGER)

    c = group_consumer(cluster.bootstrap)
    c.subscribe([topic])
    first = []
    deadline = time.monotonic() + 60
    while len(first) < 150 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            first.append(msg)
    assert len(first) >= 150, f"group consumed {len(first)} of 150"
    c.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in
                 c.committed([TopicPartition(topic, q) for q in range(partitions)], timeout=OP_TIMEOUT)}
    c.close()
    consumed_first = {m.value() for m in first}

    a = cluster.admin()   # must outlive the future
    desc = a.describe_consumer_groups([group])[group].result(timeout=OP_TIMEOUT)
    coordinator = desc.coordinator.id
    # Every replica of the offsets topic in sync (earlier tests restarted nodes): the commit is
    # on the followers of the coordinator's partition.
    offsets_partitions = len(cluster.raw_metadata(None, ["__consumer_offsets"])
                             .topics["__consumer_offsets"].partitions)
    wait_isr(cluster, "__consumer_offsets", offsets_partitions, set(cluster.ids()))
    cluster.kill(coordinator)
    survivors = [n for n in cluster.ids() if n != coordinator]
    cluster.wait_brokers(set(survivors), survivors[0])

    c2 = group_consumer(cluster.bootstrap_of(*survivors))
    try:
        got = cluster.wait_for(
            "committed offsets from the new coordinator",
            lambda: {tp.partition: tp.offset for tp in c2.committed(
                [TopicPartition(topic, q) for q in range(partitions)], timeout=5)}, timeout=60)
        assert got == committed, f"committed offsets changed across the failover: {committed} -> {got}"
        c2.subscribe([topic])
        rest = []
        deadline = time.monotonic() + 60
        while len(rest) < 300 - len(consumed_first) and time.monotonic() < deadline:
            msg = c2.poll(0.5)
            if msg is not None and not msg.error():
                rest.append(msg)
    finally:
        c2.close()
    for m in rest:
        assert m.offset() >= committed[m.partition()], f"re-read below the committed offset: {m.offset()}"
    assert {m.value() for m in rest} | consumed_first == {f"m-{i}".encode() for i in range(300)}
    cluster.start(coordinator)


@pytest.mark.parametrize("unclean", [True, False], ids=["unclean-enabled", "default"])
def test_only_in_sync_replica_dies_unclean_leader_election_decides(cluster, unclean):
    # Replicas a and b, node c none. b falls out of the ISR (killed, fenced); a takes records
    # b never gets; then a, the only ISR member, dies and b comes back. With
    # unclean.leader.election.enable=true on the topic the controller elects b anyway (Kafka's
    # unclean election: a's last records are lost); with the default the partition stays
    # offline (leader -1, ISR [a]) until a returns, losing nothing.
    a, b = 1, 2
    topic = unique_topic("unclean" if unclean else "clean-only")
    config = {"min.insync.replicas": "1"}
    if unclean:
        config["unclean.leader.election.enable"] = "true"
    create_topic(cluster, topic, partitions=1, rf=-1, config=config, assignment=[[a, b]])
    wait_isr(cluster, topic, 1, {a, b})
    p = producer(Bootstrap(cluster.bootstrap), acks="all")
    for value in (b"both-0", b"both-1"):
        p.produce(topic, value=value, partition=0)
    assert p.flush(30) == 0
    epoch_before = cluster.raw_metadata(a, [topic]).topics[topic].partitions[0].leader_epoch

    cluster.kill(b)
    wait_isr(cluster, topic, 1, {a})
    only_a = [f"only-a-{i}".encode() for i in range(3)]
    for value in only_a:
        err, _ = raw_produce(cluster.node(a).client_port, topic, 0, acks=1, value=value)
        assert err == 0, err
    # The only ISR member dies; with b down as well the metadata quorum waits for b.
    cluster.kill(a)
    cluster.start(b)

    # Settled: b unfenced and a fenced, as b sees it. The elections these trigger are in the
    # same metadata entries, so what b shows now is the controller's decision.
    def settled():
        md = cluster.raw_metadata(b, [topic])
        return md if b in md.brokers and a not in md.brokers else None

    part = cluster.wait_for(f"broker {b} unfenced and {a} fenced", settled, timeout=60) \
        .topics[topic].partitions[0]
    if unclean:
        assert (part.leader, part.isr) == (b, [b]), part
        assert part.leader_epoch > epoch_before, part
        # b leads with what it had: a's last records are gone.
        assert list(read_all(cluster.bootstrap_of(b), topic, 1)[0].values()) == [b"both-0", b"both-1"]
        err, offset = raw_produce(cluster.node(b).client_port, topic, 0, acks=1, value=b"after")
        assert (err, offset) == (0, 2)
        # a returns as a follower and truncates its divergent tail (KIP-101).
        cluster.start(a)
        wait_isr(cluster, topic, 1, {a, b})
        expected = [b"both-0", b"both-1", b"after"]
    else:
        assert (part.leader, part.isr) == (-1, [a]), part
        # a returns: the partition is led by its only in-sync replica again, nothing lost.
        cluster.start(a)
        cluster.wait_for(f"{a} to lead {topic} again", lambda: leader_of(cluster, topic, 0) == a)
        wait_isr(cluster, topic, 1, {a, b})
        expected = [b"both-0", b"both-1", *only_a]
    assert list(read_all(cluster.bootstrap, topic, 1)[0].values()) == expected
