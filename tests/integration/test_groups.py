"""Consumer groups against a real Fjord broker: confluent-kafka (eager range and roundrobin,
cooperative-sticky), kafka-python, raw wire requests. kafkajs groups are in js/test.js.

Test brokers run with group.initial.rebalance.delay.ms=0 (except where the delay is the
subject) and group.min.session.timeout.ms=1000, so that session expiry tests take seconds.
Latencies are printed (run with -s to see them), never asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                             KafkaException, TopicPartition)
from confluent_kafka.admin import OffsetSpec

import kwire
from helpers import (OP_TIMEOUT, RDKAFKA_LOGGER, admin, consume_n, create_topic, producer,
                     unique_topic)
from confluent_kafka import Consumer

GROUP_BROKER = {"group.initial.rebalance.delay.ms": 0, "group.min.session.timeout.ms": 1000}
HERE = Path(__file__).resolve().parent
SPLIT_TIMEOUT_S = 45.0


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(settings=GROUP_BROKER)


def unique_group(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def group_consumer(broker, group: str, strategy: str = "range", **conf) -> Consumer:
    c = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "partition.assignment.strategy": strategy,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "reconnect.backoff.max.ms": 500,
    }
    c.update(conf)
    return Consumer(c, logger=RDKAFKA_LOGGER)


def fill(broker, topic: str, partitions: int, per_partition: int) -> None:
    p = producer(broker)
    for part in range(partitions):
        for i in range(per_partition):
            p.produce(topic, partition=part, value=f"{part}:{i}".encode())
    assert p.flush(30) == 0


def is_split(assignments: list[frozenset], partitions: int) -> bool:
    """Every member has partitions, none twice, all covered."""
    union = frozenset().union(*assignments)
    return (all(assignments) and sum(len(a) for a in assignments) == partitions
            and union == frozenset(range(partitions)))


def wait_for_split(consumers, partitions: int, timeout: float = SPLIT_TIMEOUT_S):
    """Polls every consumer until their assignments split the partitions; returns the
    assignments and the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        for c in consumers:
            c.poll(0.05)
        last = [frozenset(tp.partition for tp in c.assignment()) for c in consumers]
        if is_split(last, partitions):
            return last, time.monotonic() - t0
    raise AssertionError(f"no disjoint full assignment of {partitions} partitions within "
                         f"{timeout}s; last: {[sorted(a) for a in last or []]}")


def poll_for(consumers, seconds: float):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for c in consumers:
            c.poll(0.05)


def describe(broker, group: str):
    # Keep the client referenced until the result is in: a collected AdminClient never
    # delivers it.
    a = admin(broker)
    return a.describe_consumer_groups([group], request_timeout=OP_TIMEOUT)[group].result(timeout=OP_TIMEOUT)


# ----------------------------------------------------------------- confluent-kafka
@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_three_members_split_six_partitions_and_a_leaver_is_covered(gbroker, strategy):
    topic = unique_topic("split")
    create_topic(gbroker, topic, partitions=6)
    group = unique_group(f"split-{strategy}")
    consumers = [group_consumer(gbroker, group, strategy) for _ in range(3)]
    try:
        t0 = time.monotonic()
        for c in consumers:
            c.subscribe([topic])
        assignments, first_s = wait_for_split(consumers, 6)
        first_s = time.monotonic() - t0
        # Stays split: no late rebalance undoes it.
        poll_for(consumers, 1.0)
        again = [frozenset(tp.partition for tp in c.assignment()) for c in consumers]
        assert is_split(again, 6), again
        leaver, survivors = consumers[0], consumers[1:]
        moved = again[0]
        t1 = time.monotonic()
        leaver.close()
        after, _ = wait_for_split(survivors, 6)
        leave_s = time.monotonic() - t1
        assert moved <= frozenset().union(*after)
        print(f"\n[latency] {strategy}: first full assignment {first_s:.2f}s, "
              f"rebalance after leave {leave_s:.2f}s")
        described = describe(gbroker, group)
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == strategy
        assert len(described.members) == 2
    finally:
        for c in consumers[1:]:
            c.close()


def test_killed_member_partitions_move_after_its_session_expires(gbroker):
    topic = unique_topic("kill")
    create_topic(gbroker, topic, partitions=6)
    group = unique_group("kill")
    session_ms = 2000
    proc = subprocess.Popen([sys.executable, str(HERE / "group_member.py"), gbroker.bootstrap,
                             group, topic, str(session_ms)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    consumers = [group_consumer(gbroker, group, **{"session.timeout.ms": session_ms,
                                                    "heartbeat.interval.ms": 200})
                 for _ in range(2)]
    try:
        for c in consumers:
            c.subscribe([topic])
        # Three members share the partitions (the killable one holds what the others do not).
        deadline = time.monotonic() + SPLIT_TIMEOUT_S
        while True:
            poll_for(consumers, 0.5)
            d = describe(gbroker, group)
            parts = [frozenset(tp.partition for tp in m.assignment.topic_partitions)
                     for m in d.members]
            if d.state == ConsumerGroupState.STABLE and len(d.members) == 3 and is_split(parts, 6):
                break
            assert time.monotonic() < deadline, f"never split three ways: {d.state} {parts}"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _, _ = wait_for_split(consumers, 6)
        print(f"\n[latency] killed member's partitions moved after {time.monotonic() - t0:.2f}s "
              f"(session.timeout.ms={session_ms})")
        assert len(describe(gbroker, group).members) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in consumers:
            c.close()


def test_static_member_restart_keeps_its_partitions_without_a_rebalance(gbroker):
    topic = unique_topic("static")
    create_topic(gbroker, topic, partitions=6)
    group = unique_group("static")
    assigned_calls = [0, 0, 0]

    def counting(i):
        def on_assign(consumer, partitions):
            assigned_calls[i] += 1
        return on_assign

    def member(i):
        c = group_consumer(gbroker, group, **{"group.instance.id": f"instance-{i}",
                                              "session.timeout.ms": 15000})
        c.subscribe([topic], on_assign=counting(i))
        return c

    consumers = [member(i) for i in range(3)]
    try:
        wait_for_split(consumers, 6)
        poll_for(consumers, 1.0)
        before = [frozenset(tp.partition for tp in c.assignment()) for c in consumers]
        assert is_split(before, 6)
        calls_before = list(assigned_calls)
        old_member_ids = {m.group_instance_id: m.member_id for m in describe(gbroker, group).members}
        generation_before = _current_generation(gbroker.port, group, consumers[1].memberid())
        # A static member does not send LeaveGroup on close: a restart within the session
        # timeout takes its place again.
        consumers[0].close()
        consumers[0] = member(0)
        deadline = time.monotonic() + SPLIT_TIMEOUT_S
        while frozenset(tp.partition for tp in consumers[0].assignment()) != before[0]:
            assert time.monotonic() < deadline, "restarted static member did not get its partitions back"
            poll_for(consumers, 0.1)
        poll_for(consumers, 2.0)
        after = [frozenset(tp.partition for tp in c.assignment()) for c in consumers]
        assert after == before
        assert assigned_calls[1:] == calls_before[1:], "the other members went through a rebalance"
        assert _current_generation(gbroker.port, group, consumers[1].memberid()) == generation_before
        members = {m.group_instance_id: m.member_id for m in describe(gbroker, group).members}
        assert members["instance-0"] != old_member_ids["instance-0"], "the restart has a new member id"
        assert members["instance-1"] == old_member_ids["instance-1"]
    finally:
        for c in consumers:
            c.close()


@pytest.mark.slow
def test_committed_offsets_and_group_survive_kill9(gbroker):
    topic = unique_topic("resume")
    create_topic(gbroker, topic, partitions=3)
    fill(gbroker, topic, 3, 30)
    group = unique_group("resume")
    a = group_consumer(gbroker, group, **{"session.timeout.ms": 15000})
    a.subscribe([topic])
    try:
        consumed = consume_n(a, 45, timeout=30)
        a.commit(asynchronous=False)
        committed = {tp.partition: tp.offset
                     for tp in a.committed([TopicPartition(topic, p) for p in range(3)], timeout=OP_TIMEOUT)}
        # Partitions the member never read have no committed offset (-1001, "invalid").
        starts = {p: max(o, 0) for p, o in committed.items()}
        assert sum(starts.values()) == 45, committed
        assert {m.partition() for m in consumed} == {p for p, o in committed.items() if o >= 0}
        member_id = a.memberid()

        gbroker.kill9()
        gbroker.start()

        a_admin = admin(gbroker)
        offsets = a_admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=OP_TIMEOUT)[group].result(timeout=OP_TIMEOUT)
        assert ({tp.partition: tp.offset for tp in offsets.topic_partitions}
                == {p: o for p, o in committed.items() if o >= 0})
        # The group came back Stable with its member, which carries on (heartbeats, no rejoin).
        deadline = time.monotonic() + 20
        while True:
            poll_for([a], 0.5)
            d = describe(gbroker, group)
            if d.state == ConsumerGroupState.STABLE and [m.member_id for m in d.members] == [member_id]:
                break
            assert time.monotonic() < deadline, f"group not back: {d.state} {[m.member_id for m in d.members]}"
    finally:
        a.close()
    # A new member resumes exactly at the commit: nothing before it again, nothing missing.
    b = group_consumer(gbroker, group)
    b.subscribe([topic])
    try:
        rest = consume_n(b, 45, timeout=30, allow_more_wait=1.0)
        got = sorted((m.partition(), m.offset()) for m in rest)
        expected = sorted((p, o) for p in range(3) for o in range(starts[p], 30))
        assert got == expected
    finally:
        b.close()


def test_two_groups_each_read_everything(gbroker):
    topic = unique_topic("fanout")
    create_topic(gbroker, topic, partitions=4)
    fill(gbroker, topic, 4, 10)
    groups = {name: [group_consumer(gbroker, unique_group(name)) for _ in range(n)]
              for name, n in (("x", 2), ("y", 1))}
    try:
        for members in groups.values():
            for c in members:
                c.subscribe([topic])
        for name, members in groups.items():
            seen = set()
            deadline = time.monotonic() + SPLIT_TIMEOUT_S
            while len(seen) < 40:
                assert time.monotonic() < deadline, f"group {name} read {len(seen)} of 40"
                for c in members:
                    m = c.poll(0.1)
                    if m is not None and not m.error():
                        key = (m.partition(), m.offset())
                        assert key not in seen or name == "x", f"duplicate {key} in group {name}"
                        seen.add(key)
            assert seen == {(p, o) for p in range(4) for o in range(10)}
    finally:
        for members in groups.values():
            for c in members:
                c.close()


def test_admin_shows_lag_lists_describes_and_deletes_groups(gbroker):
    topic = unique_topic("lag")
    create_topic(gbroker, topic, partitions=3)
    fill(gbroker, topic, 3, 10)
    group = unique_group("lag")
    a = admin(gbroker)
    c = group_consumer(gbroker, group)
    c.subscribe([topic])
    try:
        wait_for_split([c], 3)
        c.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 5),
                          TopicPartition(topic, 2, 0)], asynchronous=False)
        committed = a.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=OP_TIMEOUT)[group].result(timeout=OP_TIMEOUT)
        committed = {tp.partition: tp.offset for tp in committed.topic_partitions}
        ends = a.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(3)},
                              request_timeout=OP_TIMEOUT)
        ends = {tp.partition: f.result(timeout=OP_TIMEOUT).offset for tp, f in ends.items()}
        lag = {p: ends[p] - committed[p] for p in range(3)}
        assert lag == {0: 6, 1: 5, 2: 10}

        d = describe(gbroker, group)
        assert d.state == ConsumerGroupState.STABLE
        assert d.partition_assignor == "range"
        assert not d.is_simple_consumer_group
        assert len(d.members) == 1
        assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1, 2]
        assert d.coordinator.id == 1

        def listed(**kwargs):
            result = a.list_consumer_groups(request_timeout=OP_TIMEOUT, **kwargs).result(timeout=OP_TIMEOUT)
            return {g.group_id: g.state for g in result.valid}

        assert listed()[group] == ConsumerGroupState.STABLE
        assert group in listed(states={ConsumerGroupState.STABLE})
        assert group not in listed(states={ConsumerGroupState.EMPTY})

        with pytest.raises(KafkaException) as e:
            a.delete_consumer_groups([group], request_timeout=OP_TIMEOUT)[group].result(timeout=OP_TIMEOUT)
        assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    finally:
        c.close()
    assert listed()[group] == ConsumerGroupState.EMPTY
    a.delete_consumer_groups([group], request_timeout=OP_TIMEOUT)[group].result(timeout=OP_TIMEOUT)
    assert group not in listed()
    after = a.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])],
        request_timeout=OP_TIMEOUT)[group].result(timeout=OP_TIMEOUT)
    assert [tp.offset for tp in after.topic_partitions] == [-1001], "offsets deleted with the group"


def test_initial_rebalance_delay_gathers_starting_members_into_one_generation(broker_factory):
    """With the default 3 s delay, members that start together get one rebalance, not one per
    member: each member sees exactly one assignment."""
    b = broker_factory()
    topic = unique_topic("delay")
    create_topic(b, topic, partitions=6)
    group = unique_group("delay")
    calls = [0, 0, 0]

    def counting(i):
        def on_assign(consumer, partitions):
            calls[i] += 1
        return on_assign

    consumers = [group_consumer(b, group) for _ in range(3)]
    try:
        t0 = time.monotonic()
        for i, c in enumerate(consumers):
            c.subscribe([topic], on_assign=counting(i))
        wait_for_split(consumers, 6)
        print(f"\n[latency] first full assignment with group.initial.rebalance.delay.ms=3000: "
              f"{time.monotonic() - t0:.2f}s")
        poll_for(consumers, 1.0)
        assert calls == [1, 1, 1]
    finally:
        for c in consumers:
            c.close()


# ----------------------------------------------------------------- kafka-python
def test_kafka_python_group_splits_and_rebalances(gbroker):
    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError, RebalanceInProgressError

    topic = unique_topic("kpy")
    create_topic(gbroker, topic, partitions=6)
    fill(gbroker, topic, 6, 5)
    group = unique_group("kpy")
    stop = threading.Event()
    assignments: dict[int, frozenset] = {}
    seen: dict[int, set] = {}
    closing: set[int] = set()
    errors = []

    def run(i):
        # kafka-python joins inside poll(): one thread per member, so that no member's
        # JoinGroup waits on another member's poll loop.
        try:
            c = KafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id=group,
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              session_timeout_ms=6000, heartbeat_interval_ms=300,
                              client_id=f"kpy-{i}")
            # Load the topic's metadata before the first poll joins the group. Without it a
            # leader elected on its first poll can assign from empty metadata ("No partition
            # metadata for topic"); in CI that once left kafka-python's leader silent until
            # its session expired (a client-side race, cf. KAFKA-3949).
            if c.partitions_for_topic(topic) != set(range(6)):
                raise AssertionError(f"kpy-{i}: no metadata for {topic}")
            seen[i] = set()
            while not stop.is_set() and i not in closing:
                for records in c.poll(timeout_ms=100).values():
                    seen[i].update((r.partition, r.offset) for r in records)
                if seen[i]:
                    try:
                        c.commit()
                    except (CommitFailedError, RebalanceInProgressError):
                        pass  # a rebalance started: commit again after the next poll

                assignments[i] = frozenset(tp.partition for tp in c.assignment())
            c.close()
            assignments[i] = frozenset()
        except Exception as e:  # surfaced by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        def wait(members):
            deadline = time.monotonic() + SPLIT_TIMEOUT_S
            while not is_split([assignments.get(i, frozenset()) for i in members], 6):
                assert not errors, errors
                assert time.monotonic() < deadline, f"kafka-python members never split: {assignments}"
                time.sleep(0.1)

        wait([0, 1, 2])
        closing.add(0)
        threads[0].join(30)
        wait([1, 2])
        deadline = time.monotonic() + SPLIT_TIMEOUT_S
        while len(set().union(*seen.values())) < 30:
            assert time.monotonic() < deadline, "kafka-python group did not read everything"
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    a = admin(gbroker)
    committed = a.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=OP_TIMEOUT)[group].result(timeout=OP_TIMEOUT)
    assert {tp.partition: tp.offset for tp in committed.topic_partitions} == {p: 5 for p in range(6)}


# ----------------------------------------------------------------- raw wire
def _join_v4(port: int, group: str, member_id: str = "") -> tuple[int, str]:
    body = (kwire.string(group) + kwire.i32(10000) + kwire.i32(10000) + kwire.string(member_id)
            + kwire.string("consumer") + kwire.i32(1) + kwire.string("range") + kwire.nbytes(b""))
    payload = kwire.roundtrip(port, kwire.frame(kwire.request_header_v1(11, 4, 1) + body))
    r = kwire.Reader(payload)
    assert r.i32() == 1  # correlation id
    r.i32()  # throttle
    error = r.i16()
    r.i32()  # generation
    r.string()  # protocol name
    r.string()  # leader
    return error, r.string()


def _commit_v2(port: int, group: str, generation: int, member_id: str, topic: str) -> int:
    body = (kwire.string(group) + kwire.i32(generation) + kwire.string(member_id) + kwire.i64(-1)
            + kwire.i32(1) + kwire.string(topic) + kwire.i32(1) + kwire.i32(0) + kwire.i64(1)
            + kwire.string(""))
    payload = kwire.roundtrip(port, kwire.frame(kwire.request_header_v1(8, 2, 2) + body))
    r = kwire.Reader(payload)
    assert r.i32() == 2
    assert r.i32() == 1 and r.string() == topic
    assert r.i32() == 1 and r.i32() == 0
    return r.i16()


def _heartbeat_v0(port: int, group: str, generation: int, member_id: str) -> int:
    body = kwire.string(group) + kwire.i32(generation) + kwire.string(member_id)
    r = kwire.Reader(kwire.roundtrip(port, kwire.frame(kwire.request_header_v1(12, 0, 3) + body)))
    assert r.i32() == 3
    return r.i16()


MEMBER_ID_REQUIRED, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS = 79, 22, 25, 27


def _current_generation(port: int, group: str, member_id: str) -> int:
    """The group's generation, found by heartbeating as `member_id` with each candidate: only
    the current one is not ILLEGAL_GENERATION. (A heartbeat just renews the session.)"""
    for generation in range(100):
        error = _heartbeat_v0(port, group, generation, member_id)
        if error in (0, REBALANCE_IN_PROGRESS):
            return generation
        assert error == ILLEGAL_GENERATION, error
    raise AssertionError("no generation below 100 accepted")


def test_bad_member_ids_and_generations_get_kafka_error_codes(gbroker):
    topic = unique_topic("wire")
    create_topic(gbroker, topic, partitions=1)
    group = unique_group("wire")
    error, member_id = _join_v4(gbroker.port, group)
    assert error == MEMBER_ID_REQUIRED and member_id, (error, member_id)
    c = group_consumer(gbroker, group)
    c.subscribe([topic])
    try:
        wait_for_split([c], 1)
        real = c.memberid()
        assert _commit_v2(gbroker.port, group, 1, "nobody", topic) == UNKNOWN_MEMBER_ID
        assert _commit_v2(gbroker.port, group, 999, real, topic) == ILLEGAL_GENERATION
        assert _commit_v2(gbroker.port, group, -1, "", topic) == UNKNOWN_MEMBER_ID
        assert _heartbeat_v0(gbroker.port, group, 1, "nobody") == UNKNOWN_MEMBER_ID
        assert _heartbeat_v0(gbroker.port, group, 999, real) == ILLEGAL_GENERATION
        # None of these moved the committed offset.
        tp = c.committed([TopicPartition(topic, 0)], timeout=OP_TIMEOUT)[0]
        assert tp.offset < 0
    finally:
        c.close()
    # A standalone commit (generation -1, no member id) is fine once the group is empty.
    assert _commit_v2(gbroker.port, group, -1, "", topic) == 0
    gbroker.assert_alive()
