"""Retention (time, size) and DeleteRecords against the real broker, with confluent-kafka."""

import time

from confluent_kafka import TopicPartition

from helpers import admin, consumer, create_topic, producer, unique_topic

# Check retention every second; topics roll small segments so retention has closed ones.
SETTINGS = {"log.retention.check.interval.ms": 1000}
SMALL_SEGMENTS = {"segment.bytes": "20000"}


def produce(broker, topic, count, timestamp_ms=None, size=1000):
    p = producer(broker, **{"linger.ms": 0, "batch.num.messages": 1})
    for i in range(count):
        kwargs = {"timestamp": timestamp_ms} if timestamp_ms else {}
        p.produce(topic, value=b"%08d" % i + b"x" * (size - 8), partition=0, **kwargs)
        p.poll(0)
    assert p.flush(30) == 0


def watermarks(broker, topic):
    c = consumer(broker)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def wait_for(predicate, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def first_offset_read(broker, topic):
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                return m.offset()
        return None
    finally:
        c.close()


def test_retention_by_size_deletes_old_segments(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("ret-size")
    create_topic(broker, topic, config={**SMALL_SEGMENTS, "retention.bytes": "50000"})
    produce(broker, topic, 200)  # about 200 KB in 20 KB segments
    low, high = wait_for(lambda: (lambda w: w if w[0] > 0 else None)(watermarks(broker, topic)))
    assert high == 200
    # At least retention.bytes is kept, whole segments are dropped from the head.
    assert 0 < low <= 200 - 50
    assert first_offset_read(broker, topic) == low
    broker.restart()
    assert watermarks(broker, topic)[0] >= low


def test_retention_by_time_uses_record_timestamps(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("ret-time")
    create_topic(broker, topic, config={**SMALL_SEGMENTS, "retention.ms": "60000"})
    hour_ago_ms = int(time.time() * 1000) - 3_600_000
    produce(broker, topic, 100, timestamp_ms=hour_ago_ms)  # old records
    produce(broker, topic, 30)  # fresh ones
    low, high = wait_for(lambda: (lambda w: w if w[0] > 0 else None)(watermarks(broker, topic)))
    assert high == 130
    assert 0 < low <= 100, "only segments of old records go"
    # A topic without retention.ms override keeps the 7-day default: nothing deleted.
    keep = unique_topic("ret-keep")
    create_topic(broker, keep, config=SMALL_SEGMENTS)
    produce(broker, keep, 100, timestamp_ms=int(time.time() * 1000) - 3_600_000)
    time.sleep(2.5)
    assert watermarks(broker, keep) == (0, 100)


def test_delete_records_moves_the_low_watermark_durably(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("delrec")
    create_topic(broker, topic, config=SMALL_SEGMENTS)
    produce(broker, topic, 100)
    a = admin(broker)
    result = a.delete_records([TopicPartition(topic, 0, 42)])
    deleted = result[TopicPartition(topic, 0, 42)].result(timeout=10)
    assert deleted.low_watermark == 42
    assert watermarks(broker, topic) == (42, 100)
    assert first_offset_read(broker, topic) == 42
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    bad = a.delete_records([TopicPartition(topic, 0, 500)])
    try:
        bad[TopicPartition(topic, 0, 500)].result(timeout=10)
        raise AssertionError("deleting beyond the high watermark must fail")
    except Exception as e:  # KafkaException(OFFSET_OUT_OF_RANGE)
        assert "OFFSET_OUT_OF_RANGE" in str(e) or "out of range" in str(e).lower(), e
    broker.kill9()
    broker.restart()
    assert watermarks(broker, topic) == (42, 100)
    assert first_offset_read(broker, topic) == 42


def test_create_partitions_grows_topics_and_survives_restart(broker_factory):
    from confluent_kafka.admin import NewPartitions

    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("grow")
    create_topic(broker, topic, partitions=2)
    a = admin(broker)
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=10)
    assert len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 5
    p = producer(broker)
    p.produce(topic, value=b"in a new partition", partition=4)
    assert p.flush(10) == 0
    # Shrinking or staying put is refused with INVALID_PARTITIONS and Kafka's message.
    for count, message in [(3, "which is higher than the requested 3"),
                           (5, "already has 5 partitions")]:
        try:
            a.create_partitions([NewPartitions(topic, count)])[topic].result(timeout=10)
            raise AssertionError(f"{count} partitions must be refused")
        except Exception as e:
            assert "INVALID_PARTITIONS" in str(e) and message in str(e), e
    try:
        a.create_partitions([NewPartitions("no-such-topic", 3)])["no-such-topic"].result(timeout=10)
        raise AssertionError("unknown topic must be refused")
    except Exception as e:
        assert "UNKNOWN_TOPIC_OR_PART" in str(e), e
    broker.kill9()
    broker.restart()
    a = admin(broker)
    assert len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 5
    assert watermarks_of(broker, topic, 4) == (0, 1)


def watermarks_of(broker, topic, partition):
    c = consumer(broker)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def test_describe_log_dirs_reports_partition_sizes(broker_factory):
    from kafka import KafkaAdminClient

    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("logdirs")
    create_topic(broker, topic, partitions=2)
    produce(broker, topic, 50, size=1000)  # partition 0 only
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        result = client.describe_log_dirs({topic: [0, 1]})
    finally:
        client.close()
    # kafka-python: [{"broker": id, "log_dirs": [{"log_dir", "topics": [...], ...}]}]
    (entry,) = result
    (log_dir,) = entry["log_dirs"]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"] == str(broker.data_dir.resolve())
    assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0
    sizes = {p["partition_index"]: p["partition_size"]
             for t in log_dir["topics"] if t["name"] == topic for p in t["partitions"]}
    text = repr(result)
    assert sizes.get(1) == 0, (sizes, text[:2000])
    assert sizes.get(0, 0) > 50 * 1000, (sizes, text[:2000])
