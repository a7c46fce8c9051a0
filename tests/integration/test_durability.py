"""Crash (kill -9) and graceful-restart durability tests."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import TopicCollection, TopicPartition

from helpers import (OP_TIMEOUT, admin, consume_n, consumer, create_topic, produce_all, producer,
                     read_partition, unique_topic, watermarks)

BASE_TS = 1_700_000_400_000
PAD = b"x" * 500


def _consume_all(b, topic, partition, expected_end, timeout=60.0):
    """Read [0, expected_end) of a partition; returns the messages."""
    if expected_end == 0:
        return []
    return read_partition(b, topic, partition, expected_end, timeout=timeout,
                          **{"fetch.wait.max.ms": 50})


@pytest.mark.slow
def test_kill9_mid_stream_keeps_acknowledged(broker):
    N = 20_000
    KILL_AFTER_ACKS = 3_000
    t = unique_topic("crash")
    create_topic(broker, t, partitions=1)

    acked: list[int] = []
    failed: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    p = producer(broker, **{"acks": "all", "linger.ms": 2, "batch.num.messages": 200,
                            "message.timeout.ms": 60000, "retries": 0,
                            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200})

    def on_delivery(err, msg):
        i = int(msg.value().split(b":")[1])
        with lock:
            (failed if err is not None else acked).append(i)

    sent = []

    def run():
        for i in range(N):
            if stop.is_set():
                break
            while True:
                try:
                    p.produce(t, partition=0, key=b"k%d" % i, value=b"msg:%d:" % i + PAD,
                              on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.05)
                    if stop.is_set():
                        return
            sent.append(i)
            if i % 256 == 0:
                p.poll(0)
        while not stop.is_set():
            p.poll(0.05)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= KILL_AFTER_ACKS:
                break
        time.sleep(0.005)
    with lock:
        assert len(acked) >= KILL_AFTER_ACKS, f"only {len(acked)} acks before timeout"
    broker.kill9()
    with lock:
        acked_at_kill = len(acked)
    stop.set()
    th.join(timeout=30)
    assert not th.is_alive()
    # drop everything still queued/in flight; those are unacknowledged by definition
    p.purge(in_queue=True, in_flight=True, blocking=False)
    p.flush(10)
    del p
    with lock:
        acked_set = set(acked)
        assert len(acked_set) == len(acked), "client reported the same message acked twice"
    assert acked_at_kill < N, "all messages were acknowledged before the kill: not a mid-stream crash"
    assert len(sent) < N or len(acked_set) < N

    broker.start()
    low, high = watermarks(broker, t)
    print(f"crash stats: sent={len(sent)} acked={len(acked_set)} (at kill {acked_at_kill}) "
          f"failed={len(failed)} log_end_after_restart={high}")
    assert low == 0
    assert high >= len(acked_set), f"log end {high} < {len(acked_set)} acknowledged messages"
    msgs = _consume_all(broker, t, 0, high)
    assert [m.offset() for m in msgs[:high]] == list(range(high)), "offsets not contiguous from 0"
    seq = [int(m.value().split(b":")[1]) for m in msgs[:high]]
    for m, i in zip(msgs, seq):
        assert m.key() == b"k%d" % i and m.value() == b"msg:%d:" % i + PAD, \
            f"corrupted record at offset {m.offset()}"
    assert len(seq) == len(set(seq)), "duplicated records after crash recovery"
    assert seq == sorted(seq), "records out of order after crash recovery"
    missing = sorted(acked_set - set(seq))
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:10]}"
    assert set(seq) <= set(sent)

    # new writes continue exactly at the log end
    p2 = producer(broker)
    log = produce_all(p2, t, [{"key": b"after", "value": b"after-crash", "timestamp": BASE_TS}])
    log.assert_all_ok(1)
    assert log.reports[0][3] == high, f"new record got offset {log.reports[0][3]}, expected {high}"
    got = read_partition(broker, t, 0, 1, start_offset=high)
    assert got[0].value() == b"after-crash" and got[0].offset() == high


@pytest.mark.slow
def test_kill9_recovers_multiple_partitions_and_segments(broker_factory):
    """Small segments so the crash leaves several segment files; all acked data must survive."""
    b = broker_factory(settings={"log.segment.bytes": 16384})  # ~7 segments per partition
    t = unique_topic("crashseg")
    create_topic(b, t, partitions=3)
    # batches must stay below the segment size (Kafka rejects larger ones: RECORD_LIST_TOO_LARGE)
    p = producer(b, **{"linger.ms": 0, "batch.size": 8192})
    expected = {}
    for part in range(3):
        msgs = [{"key": f"{part}-{i}".encode(), "value": (f"p{part}-{i}-" * 20).encode(),
                 "timestamp": BASE_TS + i} for i in range(300)]
        produce_all(p, t, msgs, partition=part).assert_all_ok(len(msgs))
        expected[part] = msgs
    b.kill9()
    b.start()
    for part, msgs in expected.items():
        assert watermarks(b, t, part) == (0, len(msgs))
        got = _consume_all(b, t, part, len(msgs))
        assert [m.value() for m in got] == [m["value"] for m in msgs]
        assert [m.offset() for m in got] == list(range(len(msgs)))
    # timestamp index / search still works after recovery
    c = consumer(b)
    try:
        res = c.offsets_for_times([TopicPartition(t, 1, BASE_TS + 250)], timeout=OP_TIMEOUT)
        assert res[0].offset == 250
    finally:
        c.close()


def _describe(b, topics):
    a = admin(b)
    fs = a.describe_topics(TopicCollection(topics), request_timeout=OP_TIMEOUT)
    return {t: fs[t].result(timeout=OP_TIMEOUT) for t in topics}


def test_graceful_restart_keeps_topics_and_data(broker):
    t3, t1 = unique_topic("rs3"), unique_topic("rs1")
    create_topic(broker, t3, partitions=3)
    create_topic(broker, t1, partitions=1)
    p = producer(broker, **{"compression.type": "lz4"})
    data = {}
    for topic, parts in ((t3, 3), (t1, 1)):
        for part in range(parts):
            msgs = [{"key": f"{topic}-{part}-{i}".encode(), "value": f"v{i}".encode() * 10,
                     "headers": [("h", str(i).encode())], "timestamp": BASE_TS + i}
                    for i in range(17 + part)]
            produce_all(p, topic, msgs, partition=part).assert_all_ok(len(msgs))
            data[(topic, part)] = msgs
    before = _describe(broker, [t3, t1])
    adm = admin(broker)
    cluster_before = adm.describe_cluster(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)

    rc = broker.stop()
    assert rc == 0
    broker.start()

    after = _describe(broker, [t3, t1])
    for topic in (t3, t1):
        assert len(after[topic].partitions) == len(before[topic].partitions)
        assert str(after[topic].topic_id) == str(before[topic].topic_id), "topic id changed on restart"
    for (topic, part), msgs in data.items():
        assert watermarks(broker, topic, part) == (0, len(msgs))
        got = read_partition(broker, topic, part, len(msgs))
        assert [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got] == \
            [(i, m["key"], m["value"], m["headers"], m["timestamp"]) for i, m in enumerate(msgs)]

    # appends continue at the log end
    log = produce_all(p, t1, [{"key": b"x", "value": b"post-restart", "timestamp": BASE_TS}])
    log.assert_all_ok(1)
    assert log.reports[0][3] == len(data[(t1, 0)])

    adm = admin(broker)
    cluster_after = adm.describe_cluster(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    assert cluster_after.cluster_id == cluster_before.cluster_id, "cluster id changed across restart"

    # a deleted topic stays deleted across a restart
    adm = admin(broker)
    fs = adm.delete_topics([t3], operation_timeout=10)
    fs[t3].result(timeout=OP_TIMEOUT)
    broker.restart()
    names = set(admin(broker).list_topics(timeout=OP_TIMEOUT).topics)
    assert t3 not in names and t1 in names


UNCLEAN = "previous shutdown was not clean"


def test_only_an_existing_dir_without_the_marker_is_unclean(broker):
    # A brand-new data dir had no previous run to shut down.
    assert UNCLEAN not in broker.log_path.read_text(errors="replace")
    broker.restart()      # graceful: the marker is written
    assert UNCLEAN not in broker.log_path.read_text(errors="replace")
    broker.kill9()
    broker.start()
    assert UNCLEAN in broker.log_path.read_text(errors="replace")


def test_stray_partition_dirs_are_renamed_at_start(broker):
    t = unique_topic("kept")
    create_topic(broker, t, partitions=1)
    broker.stop()
    ghost = broker.data_dir / "ghost-topic-0"     # no such topic in the metadata
    ghost.mkdir()
    (ghost / "evidence").write_bytes(b"kept for an operator")
    broker.start()      # returns once the Kafka listener is bound, after the stray check
    assert not ghost.exists()
    strays = [d for d in broker.data_dir.iterdir() if d.name.endswith("-stray")]
    assert [d.name.split(".")[0] for d in strays] == ["ghost-topic-0"], strays
    assert (strays[0] / "evidence").read_bytes() == b"kept for an operator"
    assert (broker.data_dir / f"{t}-0").is_dir()
    assert watermarks(broker, t, 0) == (0, 0)
    broker.restart()    # a stray stays a stray
    assert [d.name for d in broker.data_dir.iterdir() if d.name.endswith("-stray")] == \
        [strays[0].name]


def test_restart_twice_with_empty_topic(broker):
    t = unique_topic("empty-rs")
    create_topic(broker, t, partitions=2)
    broker.restart()
    broker.restart()
    assert watermarks(broker, t, 0) == (0, 0)
    assert watermarks(broker, t, 1) == (0, 0)
    p = producer(broker)
    log = produce_all(p, t, [{"value": b"first", "timestamp": BASE_TS}], partition=1)
    log.assert_all_ok(1)
    assert log.reports[0][3] == 0


def test_sigterm_with_active_clients(broker):
    """SIGTERM while a consumer has a long-poll fetch parked and a producer is connected:
    the broker must still exit 0 and keep everything that was acknowledged."""
    t = unique_topic("termact")
    create_topic(broker, t)
    p = producer(broker, **{"linger.ms": 0})
    produce_all(p, t, [{"value": b"v%d" % i, "timestamp": BASE_TS + i} for i in range(50)]).assert_all_ok(50)
    c = consumer(broker, **{"fetch.wait.max.ms": 10000, "socket.timeout.ms": 30000})
    try:
        c.assign([TopicPartition(t, 0, 0)])
        consume_n(c, 50)
        c.poll(0.5)  # now parked at the log end
        broker.stop()  # asserts exit code 0
    finally:
        c.close()
    broker.start()
    assert watermarks(broker, t) == (0, 50)


def test_concurrent_producers_same_partition(broker):
    t = unique_topic("conc")
    create_topic(broker, t)
    n_threads, per_thread = 4, 2000
    errors = []

    def run(k):
        try:
            p = producer(broker, **{"linger.ms": 1})
            log = produce_all(p, t, ({"key": b"%d" % k, "value": b"%d:%d" % (k, i)} for i in range(per_thread)))
            log.assert_all_ok(per_thread)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    total = n_threads * per_thread
    assert watermarks(broker, t) == (0, total)
    got = _consume_all(broker, t, 0, total)
    assert [m.offset() for m in got[:total]] == list(range(total))
    per_key = {}
    for m in got[:total]:
        k, i = m.value().split(b":")
        assert m.key() == k
        per_key.setdefault(int(k), []).append(int(i))
    assert {k: v for k, v in per_key.items()} == {k: list(range(per_thread)) for k in range(n_threads)}


def _active_segment(b, topic, partition):
    d = b.data_dir / f"{topic}-{partition}"
    logs = sorted(d.glob("*.log"))
    assert logs, f"no segment files in {d}: {sorted(p.name for p in d.iterdir())}"
    return logs[-1]


@pytest.mark.parametrize("tail", ["garbage", "partial_batch", "bad_crc_batch", "zeros"])
def test_recovery_truncates_torn_tail(broker, tail):
    """After kill -9, a torn/corrupt tail in the active segment (as a crash mid-write leaves)
    must be truncated on recovery; all earlier records survive and appends continue at the end."""
    import os
    import kwire as kw
    t = unique_topic(f"torn-{tail}")
    create_topic(broker, t)
    p = producer(broker, **{"linger.ms": 0})
    msgs = [{"key": b"k%d" % i, "value": b"v%d" % i, "timestamp": BASE_TS + i} for i in range(100)]
    produce_all(p, t, msgs).assert_all_ok(100)
    broker.kill9()
    seg = _active_segment(broker, t, 0)
    good = kw.record_batch([(None, b"ghost-%d" % i, []) for i in range(3)], BASE_TS, base_offset=100)
    extra = {
        "garbage": os.urandom(37),
        "partial_batch": good[:30],
        "bad_crc_batch": good[:-1] + bytes([good[-1] ^ 0xFF]),
        "zeros": b"\x00" * 4096,  # preallocated / zero-filled tail
    }[tail]
    with open(seg, "ab") as f:
        f.write(extra)
    broker.start()
    assert watermarks(broker, t) == (0, 100)
    got = _consume_all(broker, t, 0, 100)
    assert [(m.offset(), m.value()) for m in got[:100]] == [(i, b"v%d" % i) for i in range(100)]
    log = produce_all(producer(broker), t, [{"value": b"after", "timestamp": BASE_TS}])
    log.assert_all_ok(1)
    assert log.reports[0][3] == 100
    got = read_partition(broker, t, 0, 1, start_offset=100)
    assert got[0].value() == b"after"
