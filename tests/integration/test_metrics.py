"""The metrics and health HTTP listener (``--metrics-listen``): Prometheus ``/metrics`` parsed
with ``prometheus_client``, counters checked against what the test did, and readiness across a
kill -9 recovery and a graceful shutdown."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time

import pytest
from confluent_kafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

import kwire
from helpers import consumer, create_topic, produce_all, producer, read_partition, unique_topic

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# ------------------------------------------------------------------------------ helpers
def http_request(broker, path: str, method: str = "GET", timeout: float = 5.0):
    """(status, content type, body) or None if the listener refuses the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", broker.metrics_port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    finally:
        conn.close()


def scrape(broker) -> dict:
    """{(sample name, frozenset of labels): value}; fails if the text does not parse."""
    status, content_type, body = http_request(broker, "/metrics")
    assert status == 200
    assert content_type == CONTENT_TYPE
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, default: float | None = 0.0, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())), default)


def kafka_port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"{what} not reached within {timeout}s")


# -------------------------------------------------------------------------------- tests
def test_endpoints_status_codes_and_exposition_format(broker):
    assert http_request(broker, "/health/live")[::2] == (200, "ok\n")
    assert http_request(broker, "/health/ready")[0] == 200
    assert http_request(broker, "/nope")[0] == 404
    assert http_request(broker, "/metrics", method="POST")[0] == 405
    assert http_request(broker, "/metrics", method="HEAD")[::2] == (200, "")
    status, _, body = http_request(broker, "/metrics")
    assert status == 200
    type_lines = [line for line in body.splitlines() if line.startswith("# TYPE ")]
    assert len(type_lines) == len(set(type_lines)), "a family's TYPE line appears twice"
    help_names = [line.split()[2] for line in body.splitlines() if line.startswith("# HELP ")]
    assert len(help_names) == len(set(help_names))
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["fjord_request_duration_seconds"].type == "histogram"
    assert families["fjord_requests"].type == "counter"  # the parser strips _total


def test_process_metrics_are_present_and_sane(broker):
    samples = scrape(broker)
    build = [v for (name, _), v in samples.items() if name == "fjord_build_info"]
    assert build == [1]
    assert value(samples, "process_resident_memory_bytes") > 1_000_000
    assert value(samples, "process_virtual_memory_bytes") >= value(
        samples, "process_resident_memory_bytes")
    open_fds = value(samples, "process_open_fds")
    assert 3 <= open_fds <= value(samples, "process_max_fds")
    start = value(samples, "process_start_time_seconds")
    assert time.time() - 3600 < start <= time.time() + 1
    assert value(samples, "process_cpu_seconds_total", None) is not None
    assert value(samples, "fjord_up_seconds") >= 0


def test_produce_and_fetch_traffic_requests_and_log_gauges(broker):
    topic = unique_topic("metrics")
    create_topic(broker, topic, partitions=1)
    before = scrape(broker)
    n = 300
    p = producer(broker)
    produce_all(p, topic, ({"value": b"x" * 100, "key": str(i).encode()} for i in range(n)))

    after_produce = scrape(broker)
    assert value(after_produce, "fjord_topic_messages_in_total", topic=topic) == n
    bytes_in = value(after_produce, "fjord_topic_bytes_in_total", topic=topic)
    assert bytes_in > n * 100
    for name in ("fjord_requests_total", "fjord_request_duration_seconds_count"):
        assert value(after_produce, name, api="Produce") > value(before, name, api="Produce")
    assert value(after_produce, "fjord_topics") >= 1
    assert value(after_produce, "fjord_partitions") >= 1
    # A single node is the ISR of every partition it leads.
    assert value(after_produce, "fjord_under_replicated_partitions") == 0
    # Kafka's IsrShrinksPerSec / IsrExpandsPerSec as counters: nothing to shrink or expand.
    assert value(after_produce, "fjord_isr_shrinks_total") == 0
    assert value(after_produce, "fjord_isr_expands_total") == 0
    assert value(after_produce, "fjord_log_end_offset", topic=topic, partition="0") == n
    assert value(after_produce, "fjord_log_start_offset", topic=topic, partition="0") == 0
    assert value(after_produce, "fjord_log_size_bytes", topic=topic, partition="0") >= bytes_in
    assert value(after_produce, "fjord_topic_bytes_out_total", topic=topic) == 0
    # Buckets are cumulative and end in +Inf == _count.
    count = value(after_produce, "fjord_request_duration_seconds_count", api="Produce")
    assert value(after_produce, "fjord_request_duration_seconds_bucket", api="Produce",
                 le="+Inf") == count
    assert value(after_produce, "fjord_request_duration_seconds_bucket", api="Produce",
                 le="10") <= count

    read_partition(broker, topic, 0, n)
    after_fetch = scrape(broker)
    assert value(after_fetch, "fjord_topic_bytes_out_total", topic=topic) >= bytes_in
    assert value(after_fetch, "fjord_topic_messages_out_total", topic=topic) == n
    for name in ("fjord_requests_total", "fjord_request_duration_seconds_count"):
        assert value(after_fetch, name, api="Fetch") > value(after_produce, name, api="Fetch")


def test_errors_are_counted_by_api_and_kafka_error_name(broker):
    topic = unique_topic("errors")
    create_topic(broker, topic, partitions=1)
    before = scrape(broker)
    batch = kwire.record_batch([(None, b"v", [])], base_timestamp=int(time.time() * 1000))
    _, results = kwire.parse_produce_v3(
        kwire.roundtrip(broker.port, kwire.produce_v3(7, topic, 5, batch)))
    assert results[(topic, 5)][0] == 3  # UNKNOWN_TOPIC_OR_PARTITION
    # ApiVersions at an unknown version is answered (KIP-511); another API is closed on.
    _, error, _ = kwire.parse_api_versions_v0(
        kwire.roundtrip(broker.port, kwire.frame(kwire.request_header_v1(18, 99, 8))))
    assert error == 35
    with kwire.connect(broker.port) as s:
        s.sendall(kwire.frame(kwire.request_header_v1(3, 99, 9) + kwire.i32(-1)))
        assert kwire.wait_closed(s) == b""

    after = scrape(broker)

    def grew(api: str, error: str) -> float:
        name = "fjord_request_errors_total"
        return value(after, name, api=api, error=error) - value(before, name, api=api, error=error)

    assert grew("Produce", "UNKNOWN_TOPIC_OR_PARTITION") == 1
    assert grew("ApiVersions", "UNSUPPORTED_VERSION") == 1
    assert grew("Metadata", "UNSUPPORTED_VERSION") == 1


def test_consumer_group_lag_is_high_watermark_minus_committed(broker):
    topic = unique_topic("lag")
    group = unique_topic("group")
    create_topic(broker, topic, partitions=2)
    p = producer(broker)
    produce_all(p, topic, ({"value": b"v"} for _ in range(100)), partition=0)
    produce_all(p, topic, ({"value": b"v"} for _ in range(10)), partition=1)
    c = consumer(broker, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 30), TopicPartition(topic, 1, 10)],
                 asynchronous=False)
    finally:
        c.close()
    samples = scrape(broker)
    assert value(samples, "fjord_consumer_group_lag", None, group=group, topic=topic,
                 partition="0") == 100 - 30
    assert value(samples, "fjord_consumer_group_lag", None, group=group, topic=topic,
                 partition="1") == 0


def test_connection_gauges(broker_factory):
    broker = broker_factory(settings={"max.connections": 3})
    # The fixture's readiness probe connected and closed: the kernel completed that handshake,
    # but the broker may accept (and count) it only after start() returned. Settle it first.
    wait_for(lambda: value(scrape(broker), "fjord_connections_accepted_total") >= 1
             and value(scrape(broker), "fjord_connections") == 0,
             what="the readiness probe's connection accounted for")
    baseline = scrape(broker)
    sockets = [kwire.connect(broker.port) for _ in range(3)]
    try:
        for i, s in enumerate(sockets):  # a round trip proves each one was accepted
            s.sendall(kwire.api_versions_v0(i))
            kwire.read_frame(s)
        opened = scrape(broker)
        assert value(opened, "fjord_connections") == 3
        assert value(opened, "fjord_connections_accepted_total") - value(
            baseline, "fjord_connections_accepted_total") == 3
        with kwire.connect(broker.port) as extra:  # over max.connections: closed at accept
            assert kwire.wait_closed(extra) == b""
        assert value(scrape(broker), "fjord_connections_rejected_total") >= 1
    finally:
        for s in sockets:
            s.close()
    wait_for(lambda: value(scrape(broker), "fjord_connections") == 0,
             what="fjord_connections back to 0")


def test_fetch_purgatory_counts_parked_long_polls(broker):
    topic = unique_topic("poll")
    create_topic(broker, topic, partitions=1)
    c = consumer(broker, **{"fetch.wait.max.ms": 5000})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        # librdkafka keeps a long poll parked on the empty partition.
        def parked() -> bool:
            c.poll(0.1)
            return value(scrape(broker), "fjord_purgatory_size", purgatory="fetch") >= 1

        wait_for(parked, what="a parked fetch")
        assert value(scrape(broker), "fjord_purgatory_size", None, purgatory="produce") == 0
    finally:
        c.close()


def fill_for_recovery(broker, topic: str, size_bytes: int) -> None:
    """Unflushed data the next start must recover (kill -9 leaves no clean-shutdown marker)."""
    p = producer(broker, **{"linger.ms": 50, "batch.size": 1_000_000,
                            "compression.type": "none", "acks": "1"})
    chunk = os.urandom(100_000)
    for i in range(size_bytes // len(chunk)):
        while True:
            try:
                p.produce(topic, partition=i % 8, value=chunk)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0


def test_ready_flips_only_after_recovery_and_turns_off_at_shutdown(broker):
    topic = unique_topic("recover")
    create_topic(broker, topic, partitions=8)
    fill_for_recovery(broker, topic, 800_000_000)
    broker.kill9()

    started = time.monotonic()
    broker.start(wait=False)
    saw_live_not_ready = False
    recovery_s = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready = http_request(broker, "/health/ready", timeout=2)
        live = http_request(broker, "/health/live", timeout=2)
        # Ready is read before the Kafka port: once ready says 200 the port is bound, so a
        # refusal after it would be a real violation.
        accepts = kafka_port_accepts(broker.port)
        if ready is not None and ready[0] == 200:
            assert accepts, "ready while the Kafka port refused connections"
            recovery_s = time.monotonic() - started
            break
        if ready is not None:
            assert ready[0] == 503
        if ready is not None and ready[0] == 503 and live is not None and live[0] == 200:
            saw_live_not_ready = True
        broker.assert_alive()
    assert recovery_s is not None, "never became ready"
    print(f"recovery of ~800 MB after kill -9: ready after {recovery_s:.2f}s")
    assert saw_live_not_ready, "never observed live=200 with ready=503 during recovery"
    assert kafka_port_accepts(broker.port)

    # Graceful shutdown: close flushes every log, which takes a while with this much data.
    broker.proc.send_signal(signal.SIGTERM)
    seen = []
    while broker.proc.poll() is None:
        ready = http_request(broker, "/health/ready", timeout=2)
        if ready is None:
            break
        seen.append(ready[0])
    broker.proc.wait(30)
    assert broker.proc.returncode == 0
    broker._close_log()
    if 503 not in seen:
        pytest.skip(f"shutdown was too quick to observe ready=503 (saw {seen})")
    first = seen.index(503)
    assert all(s == 503 for s in seen[first:]), f"ready came back during shutdown: {seen}"
