"""Client-side helpers shared by the integration tests (confluent-kafka based)."""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

OP_TIMEOUT = 15.0

# librdkafka logs go through Python logging (captured by pytest, shown for failing tests)
# instead of raw stderr noise from clients that outlive their broker.
RDKAFKA_LOGGER = logging.getLogger("rdkafka")


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def admin(broker, **conf) -> AdminClient:
    c = {"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10000}
    c.update(conf)
    return AdminClient(c, logger=RDKAFKA_LOGGER)


def producer(broker, **conf) -> Producer:
    c = {
        "bootstrap.servers": broker.bootstrap,
        "enable.idempotence": False,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 20000,
    }
    c.update(conf)
    return Producer(c, logger=RDKAFKA_LOGGER)


def consumer(broker, **conf) -> Consumer:
    c = {
        "bootstrap.servers": broker.bootstrap,
        # group.id is mandatory in confluent-kafka; these consumers use manual assign()
        # and never commit, so the group stays unused (test_groups.py covers groups).
        "group.id": "fjord-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
    }
    c.update(conf)
    return Consumer(c, logger=RDKAFKA_LOGGER)


def create_topic(broker, topic: str, partitions: int = 1, config: dict | None = None) -> None:
    a = admin(broker)
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                   config=config or {})], operation_timeout=10)
    fs[topic].result(timeout=OP_TIMEOUT)
    wait_for_topic(broker, topic, partitions)


def wait_for_topic(broker, topic: str, partitions: int | None = None, timeout: float = 10.0):
    """Wait until metadata shows the topic (creation may complete asynchronously in Kafka)."""
    a = admin(broker)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(topic=topic, timeout=OP_TIMEOUT)
        t = md.topics.get(topic)
        if t is not None and t.error is None and (partitions is None or len(t.partitions) == partitions):
            return t
        last = t
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} not visible in metadata with {partitions} partitions: {last} "
                         f"error={getattr(last, 'error', None)}")


class DeliveryLog:
    """Collects delivery reports: list of (err, topic, partition, offset, key, value)."""

    def __init__(self):
        self.reports = []

    def __call__(self, err, msg):
        self.reports.append((err, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()))

    @property
    def errors(self):
        return [r for r in self.reports if r[0] is not None]

    def assert_all_ok(self, expected: int):
        assert len(self.reports) == expected, f"{len(self.reports)} delivery reports, expected {expected}"
        assert not self.errors, f"delivery errors: {self.errors[:5]}"


def produce_all(p: Producer, topic: str, messages, partition: int = 0, timeout: float = 30.0) -> DeliveryLog:
    """messages: iterable of dicts with key/value/headers/timestamp."""
    log = DeliveryLog()
    n = 0
    for m in messages:
        kwargs = dict(m)
        p.produce(topic, partition=partition, on_delivery=log, **kwargs)
        n += 1
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    assert len(log.reports) == n
    return log


def consume_n(c: Consumer, n: int, timeout: float = 20.0, allow_more_wait: float = 0.0):
    """Poll until n messages arrived (or timeout). Ignores non-fatal client errors but records them."""
    out = []
    errors = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            errors.append(msg.error())
            if msg.error().fatal():
                raise KafkaException(msg.error())
            continue
        out.append(msg)
    if allow_more_wait:
        end = time.monotonic() + allow_more_wait
        while time.monotonic() < end:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
    assert len(out) >= n, (f"consumed only {len(out)} of {n} messages within {timeout}s; "
                           f"client errors: {errors[:5]}")
    return out


def read_partition(broker, topic: str, partition: int, n: int, start_offset: int = 0,
                   timeout: float = 20.0, **conf):
    c = consumer(broker, **conf)
    try:
        c.assign([TopicPartition(topic, partition, start_offset)])
        return consume_n(c, n, timeout=timeout)
    finally:
        c.close()


def watermarks(broker, topic: str, partition: int = 0):
    c = consumer(broker)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT, cached=False)
    finally:
        c.close()


def error_code_of(exc: BaseException) -> int:
    assert isinstance(exc, KafkaException), f"expected KafkaException, got {exc!r}"
    err = exc.args[0]
    assert isinstance(err, KafkaError), f"expected KafkaError, got {err!r}"
    return err.code()
