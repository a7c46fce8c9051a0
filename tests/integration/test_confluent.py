"""confluent-kafka (librdkafka) against a real Fjord broker."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition, TIMESTAMP_CREATE_TIME
from confluent_kafka.admin import NewTopic, OffsetSpec

from helpers import (OP_TIMEOUT, admin, consume_n, consumer, create_topic, error_code_of,
                     produce_all, producer, read_partition, unique_topic, wait_for_topic,
                     watermarks)


# --------------------------------------------------------------------- admin
def test_admin_create_list_delete(broker):
    a = admin(broker)
    t1, t2 = unique_topic("adm3"), unique_topic("adm1")
    fs = a.create_topics([NewTopic(t1, num_partitions=3, replication_factor=1),
                          NewTopic(t2, num_partitions=1, replication_factor=1)],
                         operation_timeout=10)
    assert set(fs) == {t1, t2}
    for f in fs.values():
        assert f.result(timeout=OP_TIMEOUT) is None

    md = a.list_topics(timeout=OP_TIMEOUT)
    assert t1 in md.topics and t2 in md.topics
    assert sorted(md.topics[t1].partitions) == [0, 1, 2]
    assert sorted(md.topics[t2].partitions) == [0]
    for p in md.topics[t1].partitions.values():
        assert p.leader == 1, f"partition {p.id} leader {p.leader}, expected node 1"
        assert p.replicas == [1]
        assert p.isrs == [1]
        assert p.error is None
    assert list(md.brokers) == [1]
    assert md.brokers[1].host == "127.0.0.1" and md.brokers[1].port == broker.port

    fs = a.delete_topics([t1], operation_timeout=10)
    assert fs[t1].result(timeout=OP_TIMEOUT) is None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = set(a.list_topics(timeout=OP_TIMEOUT).topics)
        if t1 not in names:
            break
        time.sleep(0.1)
    names = set(a.list_topics(timeout=OP_TIMEOUT).topics)
    assert t1 not in names
    assert t2 in names


def test_create_existing_topic_fails(broker):
    t = unique_topic("dup")
    create_topic(broker, t, partitions=2)
    adm = admin(broker)
    fs = adm.create_topics([NewTopic(t, num_partitions=2, replication_factor=1)],
                                     operation_timeout=10)
    with pytest.raises(KafkaException) as ei:
        fs[t].result(timeout=OP_TIMEOUT)
    assert error_code_of(ei.value) == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("bad_name", ["has space", "bad/slash", "a" * 250, ".", ".."])
def test_create_invalid_topic_name(broker, bad_name):
    adm = admin(broker)
    fs = adm.create_topics([NewTopic(bad_name, num_partitions=1, replication_factor=1)],
                                     operation_timeout=10)
    with pytest.raises(KafkaException) as ei:
        fs[bad_name].result(timeout=OP_TIMEOUT)
    assert error_code_of(ei.value) == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)
    assert bad_name not in admin(broker).list_topics(timeout=OP_TIMEOUT).topics


def test_delete_unknown_topic(broker):
    t = unique_topic("nope")
    adm = admin(broker)
    fs = adm.delete_topics([t], operation_timeout=10)
    with pytest.raises(KafkaException) as ei:
        fs[t].result(timeout=OP_TIMEOUT)
    assert error_code_of(ei.value) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_cluster_and_topic_ids(broker):
    from confluent_kafka import TopicCollection
    a = admin(broker)
    cl = a.describe_cluster(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    assert cl.cluster_id, "DescribeCluster returned no cluster id"
    assert [n.id for n in cl.nodes] == [1]
    assert cl.nodes[0].host == "127.0.0.1" and cl.nodes[0].port == broker.port
    assert cl.controller is not None and cl.controller.id == 1

    t = unique_topic("desc")
    create_topic(broker, t, partitions=3)
    d = a.describe_topics(TopicCollection([t]), request_timeout=OP_TIMEOUT)[t].result(timeout=OP_TIMEOUT)
    assert d.name == t
    assert len(d.partitions) == 3
    assert str(d.topic_id) not in ("", "AAAAAAAAAAAAAAAAAAAAAA"), "topic id must be a non-zero uuid"


# ----------------------------------------------------------- produce/consume
BASE_TS = 1_700_000_000_000


def _messages(n: int, tag: str):
    msgs = []
    for i in range(n):
        if i == n - 2:
            # null key, empty value, no headers
            msgs.append({"key": None, "value": b"", "timestamp": BASE_TS + i})
        elif i == n - 1:
            # tombstone: key with null value
            msgs.append({"key": f"key-{i}".encode(), "value": None, "timestamp": BASE_TS + i,
                         "headers": [("tomb", b"1")]})
        else:
            msgs.append({
                "key": f"key-{i}".encode(),
                "value": (f"{tag}-value-{i}-" + "abcdefgh" * (i % 7)).encode(),
                "headers": [("idx", str(i).encode()), ("codec", tag.encode()), ("dup", b"a"), ("dup", b"b")],
                "timestamp": BASE_TS + i * 3,
            })
    return msgs


def _assert_messages_equal(got, expected, topic, partition=0, first_offset=0):
    assert len(got) == len(expected), f"got {len(got)} messages, expected {len(expected)}"
    for i, (m, e) in enumerate(zip(got, expected)):
        assert m.topic() == topic and m.partition() == partition
        assert m.offset() == first_offset + i, f"message {i}: offset {m.offset()}"
        assert m.key() == e.get("key"), f"message {i}: key {m.key()!r} != {e.get('key')!r}"
        assert m.value() == e.get("value"), f"message {i}: value {m.value()!r} != {e.get('value')!r}"
        assert (m.headers() or []) == [(k, v) for k, v in e.get("headers", [])], \
            f"message {i}: headers {m.headers()!r}"
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, e["timestamp"]), f"message {i}: ts {m.timestamp()}"


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_codec(broker, codec):
    t = unique_topic(f"codec-{codec}")
    create_topic(broker, t, partitions=1)
    expected = _messages(60, codec)
    p = producer(broker, **{"compression.type": codec, "linger.ms": 20, "batch.num.messages": 25})
    log = produce_all(p, t, expected)
    log.assert_all_ok(len(expected))
    assert sorted(r[3] for r in log.reports) == list(range(len(expected)))
    got = read_partition(broker, t, 0, len(expected))
    _assert_messages_equal(got, expected, t)
    assert watermarks(broker, t) == (0, len(expected))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_acks(broker, acks):
    t = unique_topic(f"acks{acks}")
    create_topic(broker, t, partitions=1)
    expected = [{"key": f"k{i}".encode(), "value": f"acks-{acks}-{i}".encode(), "timestamp": BASE_TS + i}
                for i in range(25)]
    p = producer(broker, acks=acks, **{"max.in.flight.requests.per.connection": 1})
    log = produce_all(p, t, expected)
    log.assert_all_ok(len(expected))
    if acks != "0":
        assert [r[3] for r in log.reports] == list(range(len(expected)))
    got = read_partition(broker, t, 0, len(expected))
    _assert_messages_equal(got, expected, t)


def test_produce_to_multiple_partitions(broker):
    t = unique_topic("multi")
    create_topic(broker, t, partitions=3)
    p = producer(broker)
    per_part = {}
    for part in range(3):
        msgs = [{"key": f"p{part}-{i}".encode(), "value": f"v{part}-{i}".encode(), "timestamp": BASE_TS + i}
                for i in range(10 + part)]
        per_part[part] = msgs
        produce_all(p, t, msgs, partition=part).assert_all_ok(len(msgs))
    for part, msgs in per_part.items():
        got = read_partition(broker, t, part, len(msgs))
        _assert_messages_equal(got, msgs, t, partition=part)
        assert watermarks(broker, t, part) == (0, len(msgs))


# -------------------------------------------------------------- list offsets
def _ts_messages():
    # record i has timestamp BASE_TS + 10*i, except record 7 which carries the maximum
    msgs = []
    for i in range(12):
        ts = BASE_TS + 100_000 if i == 7 else BASE_TS + 10 * i
        msgs.append({"key": b"k", "value": f"m{i}".encode(), "timestamp": ts})
    return msgs


def test_offsets_for_times(broker):
    t = unique_topic("ts")
    create_topic(broker, t, partitions=1)
    p = producer(broker, **{"linger.ms": 0, "max.in.flight.requests.per.connection": 1})
    msgs = _ts_messages()
    # first 6 records in one batch, rest one by one: exercises in-batch and cross-batch search
    produce_all(p, t, msgs[:6]).assert_all_ok(6)
    for m in msgs[6:]:
        produce_all(p, t, [m]).assert_all_ok(1)

    c = consumer(broker)
    try:
        def lookup(ts):
            res = c.offsets_for_times([TopicPartition(t, 0, ts)], timeout=OP_TIMEOUT)
            assert res[0].error is None, res[0].error
            return res[0].offset

        assert lookup(0) == 0
        assert lookup(BASE_TS) == 0
        assert lookup(BASE_TS + 1) == 1
        assert lookup(BASE_TS + 30) == 3        # exact match
        assert lookup(BASE_TS + 55) == 6        # first ts >= target, inside first batch
        assert lookup(BASE_TS + 61) == 7        # record 7 has the huge ts and comes first
        assert lookup(BASE_TS + 100_000) == 7
        assert lookup(BASE_TS + 100_001) == -1  # nothing at or after -> OFFSET_END/-1
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT, cached=False) == (0, 12)
    finally:
        c.close()


def test_admin_list_offsets(broker):
    t = unique_topic("lo")
    create_topic(broker, t, partitions=1)
    p = producer(broker, **{"linger.ms": 0, "max.in.flight.requests.per.connection": 1})
    msgs = _ts_messages()
    for m in msgs:
        produce_all(p, t, [m]).assert_all_ok(1)

    a = admin(broker)
    tp = TopicPartition(t, 0)

    def lo(spec):
        res = a.list_offsets({tp: spec}, request_timeout=OP_TIMEOUT)[tp].result(timeout=OP_TIMEOUT)
        return res.offset, res.timestamp

    assert lo(OffsetSpec.earliest())[0] == 0
    assert lo(OffsetSpec.latest())[0] == 12
    assert lo(OffsetSpec.max_timestamp()) == (7, BASE_TS + 100_000)
    assert lo(OffsetSpec.for_timestamp(BASE_TS + 55)) == (6, BASE_TS + 60)
    assert lo(OffsetSpec.for_timestamp(BASE_TS + 100_001))[0] == -1


def test_list_offsets_empty_partition(broker):
    t = unique_topic("empty")
    create_topic(broker, t, partitions=2)
    assert watermarks(broker, t, 0) == (0, 0)
    assert watermarks(broker, t, 1) == (0, 0)
    c = consumer(broker)
    try:
        res = c.offsets_for_times([TopicPartition(t, 1, BASE_TS)], timeout=OP_TIMEOUT)
        assert res[0].offset == -1
    finally:
        c.close()


# ------------------------------------------------------- auto topic creation
def test_auto_create_topic_on_produce(broker_factory):
    b = broker_factory(settings={"num.partitions": 2})
    t = unique_topic("auto")
    p = producer(b)
    log = produce_all(p, t, [{"key": b"k", "value": b"hello auto", "timestamp": BASE_TS}])
    log.assert_all_ok(1)
    md = wait_for_topic(b, t, partitions=2)
    assert sorted(md.partitions) == [0, 1]
    part = log.reports[0][2]
    got = read_partition(b, t, part, 1)
    assert got[0].value() == b"hello auto" and got[0].offset() == 0


def test_auto_create_default_is_enabled(broker):
    t = unique_topic("autodef")
    p = producer(broker)
    produce_all(p, t, [{"key": b"k", "value": b"x", "timestamp": BASE_TS}]).assert_all_ok(1)
    wait_for_topic(broker, t)


def test_no_auto_create_when_disabled(broker_factory):
    b = broker_factory(settings={"auto.create.topics.enable": "false"})
    t = unique_topic("noauto")
    p = producer(b, **{"topic.metadata.propagation.max.ms": 500, "message.timeout.ms": 5000})
    log = produce_all(p, t, [{"key": b"k", "value": b"x"}], timeout=30)
    assert len(log.errors) == 1
    assert log.errors[0][0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), \
        log.errors[0][0]
    md = admin(b).list_topics(topic=t, timeout=OP_TIMEOUT)
    assert md.topics[t].error is not None
    assert md.topics[t].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert t not in admin(b).list_topics(timeout=OP_TIMEOUT).topics


# -------------------------------------------------------------- size limits
LIMIT = 100_000
# An uncompressed v2 batch holding one record with a null key, no headers and
# timestamp/offset delta 0 is 61 (batch header) + 3 (record length varint) +
# 1 (attrs) + 1 (ts delta) + 1 (offset delta) + 1 (key len) + 3 (value len) +
# 1 (header count) = 72 bytes plus the value.
BATCH_OVERHEAD = 72


def _size_producer(b):
    return producer(b, **{"message.max.bytes": 5_000_000, "linger.ms": 0, "compression.type": "none",
                          "max.in.flight.requests.per.connection": 1, "retries": 0})


def test_message_size_limit(broker_factory):
    b = broker_factory(settings={"message.max.bytes": LIMIT})
    t = unique_topic("size")
    create_topic(b, t)
    p = _size_producer(b)

    near = b"n" * (LIMIT - 1000)
    produce_all(p, t, [{"value": near}]).assert_all_ok(1)

    over = b"o" * (LIMIT + 1)
    log = produce_all(p, t, [{"value": over}])
    assert len(log.errors) == 1
    assert log.errors[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, log.errors[0][0]

    # the partition is still usable and the rejected message left no trace
    produce_all(p, t, [{"value": b"after"}]).assert_all_ok(1)
    got = read_partition(b, t, 0, 2, **{"fetch.max.bytes": 10_000_000,
                                         "max.partition.fetch.bytes": 10_000_000})
    assert [m.value() for m in got] == [near, b"after"]
    assert [m.offset() for m in got] == [0, 1]
    assert watermarks(b, t) == (0, 2)


def test_message_size_limit_exact_boundary(broker_factory):
    """A batch of exactly message.max.bytes is accepted, one byte more is rejected (Kafka: size > max)."""
    b = broker_factory(settings={"message.max.bytes": LIMIT})
    t = unique_topic("sizeb")
    create_topic(b, t)
    p = _size_producer(b)
    exact = b"e" * (LIMIT - BATCH_OVERHEAD)
    produce_all(p, t, [{"value": exact, "timestamp": BASE_TS}]).assert_all_ok(1)
    log = produce_all(p, t, [{"value": exact + b"+", "timestamp": BASE_TS}])
    assert len(log.errors) == 1 and log.errors[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, log.reports


# ------------------------------------------------------------------ long poll
def test_long_poll_wakes_on_produce(broker):
    """A fetch parked for up to 10 s must be answered as soon as data arrives.

    poll(4.0) can only return the new message if the parked fetch was woken: without
    wake-up the broker would answer the outstanding fetch only after fetch.wait.max.ms.
    """
    t = unique_topic("lp")
    create_topic(broker, t)
    p = producer(broker, **{"linger.ms": 0})
    produce_all(p, t, [{"value": b"first", "timestamp": BASE_TS}]).assert_all_ok(1)

    c = consumer(broker, **{"fetch.wait.max.ms": 10000, "socket.timeout.ms": 30000})
    try:
        c.assign([TopicPartition(t, 0, 1)])
        # let the consumer connect and park a fetch at offset 1 (log end)
        for _ in range(3):
            m = c.poll(0.5)
            assert m is None or m.error(), f"unexpected message {m.value() if m else None}"
        produce_all(p, t, [{"value": b"second", "timestamp": BASE_TS + 1}]).assert_all_ok(1)
        deadline = time.monotonic() + 4.0
        got = None
        while got is None and time.monotonic() < deadline:
            m = c.poll(max(0.0, deadline - time.monotonic()))
            if m is not None and not m.error():
                got = m
        assert got is not None, "parked fetch was not woken by the produce (no message within 4 s, " \
                                "fetch.wait.max.ms=10000)"
        assert got.value() == b"second" and got.offset() == 1
    finally:
        c.close()


def test_consume_from_middle_and_out_of_range(broker):
    t = unique_topic("mid")
    create_topic(broker, t)
    msgs = [{"key": None, "value": f"v{i}".encode(), "timestamp": BASE_TS + i} for i in range(20)]
    produce_all(producer(broker), t, msgs).assert_all_ok(20)
    got = read_partition(broker, t, 0, 5, start_offset=15)
    assert [m.offset() for m in got] == [15, 16, 17, 18, 19]
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(15, 20)]

    # out of range offset with auto.offset.reset=earliest -> restarts at 0
    got = read_partition(broker, t, 0, 20, start_offset=1000)
    assert [m.offset() for m in got[:20]] == list(range(20))


def test_fetch_size_limits(broker):
    """Small fetch limits force many partial fetch responses; a batch larger than the
    limits must still be returned (KIP-74) so the consumer makes progress."""
    t = unique_topic("fsz")
    create_topic(broker, t)
    p = producer(broker, **{"linger.ms": 5, "batch.size": 64 * 1024})
    msgs = [{"key": b"%d" % i, "value": bytes([65 + i % 26]) * 10_000, "timestamp": BASE_TS + i}
            for i in range(300)]
    msgs.append({"key": b"big", "value": b"B" * 200_000, "timestamp": BASE_TS + 300})
    msgs += [{"key": b"tail%d" % i, "value": b"t", "timestamp": BASE_TS + 301 + i} for i in range(5)]
    produce_all(p, t, msgs).assert_all_ok(len(msgs))
    got = read_partition(broker, t, 0, len(msgs), timeout=60,
                         **{"fetch.max.bytes": 50_000, "message.max.bytes": 10_000,
                            "max.partition.fetch.bytes": 1_024,
                            "fetch.wait.max.ms": 10})
    assert [m.offset() for m in got] == list(range(len(msgs)))
    assert [m.key() for m in got] == [m["key"] for m in msgs]
    assert [m.value() for m in got] == [m["value"] for m in msgs]


# ------------------------------------------------------- more admin semantics
def test_create_topic_invalid_partitions_and_replication(broker):
    a = admin(broker)
    t0, t3 = unique_topic("p0"), unique_topic("rf3")
    fs = a.create_topics([NewTopic(t0, num_partitions=0, replication_factor=1),
                          NewTopic(t3, num_partitions=1, replication_factor=3)], operation_timeout=10)
    with pytest.raises(KafkaException) as ei:
        fs[t0].result(timeout=OP_TIMEOUT)
    assert error_code_of(ei.value) == KafkaError.INVALID_PARTITIONS
    with pytest.raises(KafkaException) as ei:
        fs[t3].result(timeout=OP_TIMEOUT)
    assert error_code_of(ei.value) == KafkaError.INVALID_REPLICATION_FACTOR
    names = set(a.list_topics(timeout=OP_TIMEOUT).topics)
    assert t0 not in names and t3 not in names


def test_create_topic_validate_only(broker):
    a = admin(broker)
    t = unique_topic("vo")
    fs = a.create_topics([NewTopic(t, num_partitions=2, replication_factor=1)], validate_only=True,
                         operation_timeout=10)
    assert fs[t].result(timeout=OP_TIMEOUT) is None
    assert t not in a.list_topics(timeout=OP_TIMEOUT).topics


def test_create_topic_default_partitions(broker_factory):
    b = broker_factory(settings={"num.partitions": 4})
    a = admin(b)
    t = unique_topic("defp")
    fs = a.create_topics([NewTopic(t)], operation_timeout=10)  # num_partitions=-1, rf=-1
    assert fs[t].result(timeout=OP_TIMEOUT) is None
    assert len(wait_for_topic(b, t, 4).partitions) == 4


def test_delete_and_recreate_topic_starts_empty(broker):
    from confluent_kafka import TopicCollection
    t = unique_topic("recreate")
    create_topic(broker, t, partitions=1)
    a = admin(broker)
    old_id = str(a.describe_topics(TopicCollection([t]))[t].result(timeout=OP_TIMEOUT).topic_id)
    produce_all(producer(broker), t, [{"value": b"old-%d" % i, "timestamp": BASE_TS} for i in range(5)]) \
        .assert_all_ok(5)
    a.delete_topics([t], operation_timeout=10)[t].result(timeout=OP_TIMEOUT)
    deadline = time.monotonic() + 10
    while t in a.list_topics(timeout=OP_TIMEOUT).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    create_topic(broker, t, partitions=2)
    new_id = str(a.describe_topics(TopicCollection([t]))[t].result(timeout=OP_TIMEOUT).topic_id)
    assert new_id != old_id, "re-created topic reuses the old topic id"
    assert watermarks(broker, t, 0) == (0, 0), "re-created topic still has the old data"
    log = produce_all(producer(broker), t, [{"value": b"new", "timestamp": BASE_TS}])
    log.assert_all_ok(1)
    assert log.reports[0][3] == 0
    got = read_partition(broker, t, 0, 1)
    assert got[0].value() == b"new"


def test_offset_for_leader_epoch(broker):
    """OffsetForLeaderEpoch v2 (raw) for the current leader epoch returns the log end offset."""
    import kwire as kw
    t = unique_topic("ofle")
    create_topic(broker, t)
    produce_all(producer(broker), t, [{"value": b"v%d" % i, "timestamp": BASE_TS} for i in range(7)]) \
        .assert_all_ok(7)
    a = admin(broker)
    tp = TopicPartition(t, 0)
    info = a.list_offsets({tp: OffsetSpec.latest()}, request_timeout=OP_TIMEOUT)[tp].result(timeout=OP_TIMEOUT)
    assert info.offset == 7
    epoch = info.leader_epoch
    assert epoch is not None and epoch >= 0, f"ListOffsets returned leader epoch {epoch}"
    body = (kw.i32(1) + kw.string(t) + kw.i32(1)
            + kw.i32(0) + kw.i32(epoch) + kw.i32(epoch))  # partition, current_leader_epoch, leader_epoch
    resp = kw.roundtrip(broker.port, kw.frame(kw.request_header_v1(23, 2, 77) + body))
    r = kw.Reader(resp)
    assert r.i32() == 77
    r.i32()  # throttle
    assert r.i32() == 1 and r.string() == t and r.i32() == 1
    err, part, leader_epoch, end_offset = r.i16(), r.i32(), r.i32(), r.i64()
    assert (err, part, leader_epoch, end_offset) == (0, 0, epoch, 7)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_offsets_for_times_inside_compressed_batch(broker, codec):
    t = unique_topic(f"tsc-{codec}")
    create_topic(broker, t)
    p = producer(broker, **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 1000})
    msgs = [{"key": b"k", "value": b"m%d" % i, "timestamp": BASE_TS + 10 * i} for i in range(40)]
    produce_all(p, t, msgs).assert_all_ok(40)  # one compressed batch (or a few)
    c = consumer(broker)
    try:
        res = c.offsets_for_times([TopicPartition(t, 0, BASE_TS + 205)], timeout=OP_TIMEOUT)
        assert res[0].offset == 21
        res = c.offsets_for_times([TopicPartition(t, 0, BASE_TS + 390)], timeout=OP_TIMEOUT)
        assert res[0].offset == 39
    finally:
        c.close()
    # consuming from the middle of a compressed batch yields exactly the requested suffix
    got = read_partition(broker, t, 0, 19, start_offset=21)
    assert [m.offset() for m in got] == list(range(21, 40))
    assert [m.value() for m in got] == [b"m%d" % i for i in range(21, 40)]


def test_log_append_time_topic(broker):
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    t = unique_topic("lat")
    create_topic(broker, t, config={"message.timestamp.type": "LogAppendTime"})
    before_ms = int(time.time() * 1000)
    p = producer(broker, **{"compression.type": "gzip"})
    produce_all(p, t, [{"value": b"v%d" % i, "timestamp": 1000 + i} for i in range(3)]).assert_all_ok(3)
    after_ms = int(time.time() * 1000)
    got = read_partition(broker, t, 0, 3)
    for m in got:
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, m.timestamp()
        assert before_ms - 1000 <= ts <= after_ms + 1000, f"log append time {ts} not ~now"


def test_topic_name_boundaries(broker):
    a = admin(broker)
    ok_names = ["a" * 249, "with.dot_and-dash", "UPPER_lower_123"]
    fs = a.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in ok_names],
                         operation_timeout=10)
    for n in ok_names:
        assert fs[n].result(timeout=OP_TIMEOUT) is None, n
    names = set(a.list_topics(timeout=OP_TIMEOUT).topics)
    assert set(ok_names) <= names
    # the 249-character topic is fully usable
    log = produce_all(producer(broker), "a" * 249, [{"value": b"long", "timestamp": BASE_TS}])
    log.assert_all_ok(1)
    assert read_partition(broker, "a" * 249, 0, 1)[0].value() == b"long"


def test_topic_max_message_bytes_override(broker):
    small, big = unique_topic("mmb-small"), unique_topic("mmb-default")
    create_topic(broker, small, config={"max.message.bytes": "2000"})
    create_topic(broker, big)
    p = producer(broker, **{"linger.ms": 0, "retries": 0, "compression.type": "none"})
    log = produce_all(p, small, [{"value": b"x" * 3000}])
    assert len(log.errors) == 1 and log.errors[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, log.reports
    produce_all(p, small, [{"value": b"x" * 1000}]).assert_all_ok(1)
    produce_all(p, big, [{"value": b"x" * 3000}]).assert_all_ok(1)
