"""Log compaction (cleanup.policy=compact) against the real broker, with confluent-kafka.

Every test checks real outcomes: what a consumer reads from the beginning after the cleaner
ran, compared record by record with what the producer got acknowledged.
"""

import os
import random
import threading
import time

import pytest
from confluent_kafka import TopicPartition

from helpers import consumer, create_topic, producer, produce_all, unique_topic, watermarks

# Clean as soon as anything is dirty; small segments so there are sealed ones to clean.
SETTINGS = {"log.cleaner.backoff.ms": 100}
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": "16384",
    "min.cleanable.dirty.ratio": "0.01",
}


def small_batch_producer(broker, **conf):
    """Batches well below segment.bytes (RECORD_LIST_TOO_LARGE otherwise)."""
    return producer(broker, **{"batch.size": 4000, **conf})


def produced_by_offset(log):
    """offset -> (key, value) from delivery reports (all must be ok)."""
    assert not log.errors, log.errors[:3]
    return {r[3]: (r[4], r[5]) for r in log.reports}


def read_all(broker, topic, timeout_s=20.0):
    """Every record from the beginning to the high watermark at the time of the call."""
    _, high = watermarks(broker, topic)
    c = consumer(broker, **{"fetch.wait.max.ms": 50})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                position = c.position([TopicPartition(topic, 0)])[0].offset
                if position >= high:
                    break
                continue
            if m.error():
                continue
            out.append((m.offset(), m.key(), m.value()))
            if m.offset() >= high - 1:
                break
        else:
            raise AssertionError(f"did not reach the high watermark {high} within {timeout_s}s")
    finally:
        c.close()
    return out


def latest_by_key(produced):
    latest = {}
    for offset in sorted(produced):
        key, value = produced[offset]
        latest[key] = (offset, value)
    return latest


def assert_consistent(records, produced):
    """In order, and each record exactly what was acknowledged at that offset."""
    offsets = [r[0] for r in records]
    assert offsets == sorted(set(offsets)), "offsets out of order or duplicated"
    for offset, key, value in records:
        assert produced.get(offset) == (key, value), f"offset {offset}: read {(key, value)}"


def wait_compacted(broker, topic, produced, max_records, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_all(broker, topic)
        assert_consistent(records, produced)
        if len(records) <= max_records or time.monotonic() > deadline:
            return records
        time.sleep(0.3)


def test_compaction_keeps_exactly_the_latest_value_per_key(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("compact")
    create_topic(broker, topic, config=COMPACTED)
    keys = [b"key-%03d" % i for i in range(40)]
    rng = random.Random(7)
    p = small_batch_producer(broker, **{"compression.type": "gzip", "linger.ms": 2})
    messages = [{"key": rng.choice(keys), "value": b"v%06d-" % i + rng.randbytes(200)} for i in range(3000)]
    log = produce_all(p, topic, messages)
    produced = produced_by_offset(log)
    latest = latest_by_key(produced)
    # 3000 records of ~220 bytes in 16 KiB segments: everything but the active segment is
    # compacted down to at most one record per key.
    # Incompressible values: about 70 records fit the active 16 KiB segment.
    records = wait_compacted(broker, topic, produced, max_records=40 + 80)
    assert len(records) <= 40 + 80, f"{len(records)} records left after compaction"
    by_key = {}
    for offset, key, value in records:
        by_key[key] = (offset, value)
    assert by_key == latest, "the last value read per key is not the last value written"
    # Below the active segment's records each key appears at most once.
    low, high = watermarks(broker, topic)
    assert low == 0 and high == 3000, "compaction never moves the log start or end"


def test_tombstones_are_removed_after_delete_retention_ms(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("tomb")
    create_topic(broker, topic, config={**COMPACTED, "delete.retention.ms": "1500"})
    p = small_batch_producer(broker, **{"linger.ms": 0})
    doomed = [b"doomed-%d" % i for i in range(5)]
    kept = [b"kept-%d" % i for i in range(5)]
    messages = [{"key": k, "value": b"old"} for k in doomed + kept]
    messages += [{"key": k, "value": b"new"} for k in kept]
    messages += [{"key": k, "value": None} for k in doomed]  # tombstones
    produced = produced_by_offset(produce_all(p, topic, messages))

    def filler(n):
        fill = [{"key": b"filler-%d" % (i % 50), "value": os.urandom(500)} for i in range(n)]
        produced.update(produced_by_offset(produce_all(p, topic, fill)))

    # Roll the tombstones out of the active segment; soon after, the old values are gone but
    # the tombstones are still there (younger than delete.retention.ms).
    filler(100)
    records = read_all(broker, topic)
    deadline = time.monotonic() + 20
    while any(k in doomed and v == b"old" for _, k, v in records):
        assert time.monotonic() < deadline, "old values of deleted keys never compacted away"
        time.sleep(0.2)
        records = read_all(broker, topic)
    assert_consistent(records, produced)
    tombstones = [k for _, k, v in records if k in doomed and v is None]
    assert sorted(tombstones) == sorted(doomed), "tombstones must survive delete.retention.ms"

    # After delete.retention.ms the next pass (new data makes the log dirty again) drops them.
    deadline = time.monotonic() + 30
    while True:
        time.sleep(0.5)
        filler(100)
        records = read_all(broker, topic)
        assert_consistent(records, produced)
        if not any(k in doomed for _, k, _ in records):
            break
        assert time.monotonic() < deadline, "tombstones never removed"
    values = {k: v for _, k, v in records if k in kept}
    assert values == {k: b"new" for k in kept}


def test_consumers_reading_during_compaction_see_a_consistent_log(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("live")
    create_topic(broker, topic, config=COMPACTED)
    keys = [b"k%02d" % i for i in range(30)]
    produced = {}
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def produce_loop():
        p = small_batch_producer(broker, **{"compression.type": "lz4", "linger.ms": 1})
        i = 0
        try:
            while not stop.is_set():
                batch = [{"key": keys[(i + j) % len(keys)], "value": b"%08d" % (i + j) + os.urandom(100)}
                         for j in range(200)]
                i += 200
                log = produce_all(p, topic, batch)
                with lock:
                    produced.update(produced_by_offset(log))
        except Exception as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=produce_loop, daemon=True)
    t.start()
    try:
        passes = 0
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            records = read_all(broker, topic)
            with lock:
                snapshot = dict(produced)
            # Everything read was acknowledged (a record read before its ack arrives is
            # possible; only check those whose ack is in).
            acked = [r for r in records if r[0] in snapshot]
            assert_consistent(acked, snapshot)
            offsets = [r[0] for r in records]
            assert offsets == sorted(set(offsets))
            passes += 1
        assert passes >= 3
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors
    records = wait_compacted(broker, topic, produced, max_records=30 + 200, timeout_s=20)
    latest = latest_by_key(produced)
    assert {k: (o, v) for o, k, v in records} == latest


@pytest.mark.slow
def test_kill9_during_cleaning_loses_no_latest_value(broker_factory):
    # Throttle the cleaner so that its passes take long enough to be killed in the middle.
    broker = broker_factory(settings={**SETTINGS, "log.cleaner.io.max.bytes.per.second": 4_000_000})
    topic = unique_topic("crash")
    create_topic(broker, topic, config={**COMPACTED, "segment.bytes": "262144"})
    rng = random.Random(11)
    keys = [b"key-%04d" % i for i in range(500)]
    produced = {}
    for round_ in range(4):
        p = small_batch_producer(broker, **{"compression.type": "snappy", "linger.ms": 5})
        messages = [{"key": rng.choice(keys), "value": b"r%d-%06d-" % (round_, i) + rng.randbytes(300)}
                    for i in range(6000)]
        produced.update(produced_by_offset(produce_all(p, topic, messages, timeout=60)))
        # Kill while the cleaner works through the ~2 MB just written.
        time.sleep(rng.uniform(0.2, 0.8))
        broker.kill9()
        broker.start()
    records = wait_compacted(broker, topic, produced, max_records=500 + 1200, timeout_s=60)
    latest = latest_by_key(produced)
    by_key = {k: (o, v) for o, k, v in records}
    assert by_key == latest, "a latest value was lost or an older one resurfaced"
