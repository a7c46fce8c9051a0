"""Helpers for the exactly-once tests (idempotence, transactions, EOS, history checker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import (Consumer, IsolationLevel, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

from helpers import OP_TIMEOUT, RDKAFKA_LOGGER

HERE = Path(__file__).resolve().parent

# settings for brokers whose tests wait for transaction timeouts
FAST_TXN_TIMEOUT_SETTINGS = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": 500}


def txn_producer(bootstrap: str, transactional_id: str, init: bool = True, **conf) -> Producer:
    c = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    c.update(conf)
    p = Producer(c, logger=RDKAFKA_LOGGER)
    if init:
        p.init_transactions(30)
    return p


def read_all(bootstrap: str, topic: str, partitions: int, isolation: str = "read_committed",
             timeout: float = 30.0, **conf) -> dict[int, list]:
    """Everything a consumer with ``isolation`` can read from every partition of ``topic``, up
    to the end it sees now (high watermark, or last stable offset for read_committed).

    Uses partition-EOF events, so it returns as soon as each partition's end was reached (an
    open transaction's data and everything after it is not returned to read_committed).
    Returns {partition: [Message, ...]} in offset order."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "fjord-txn-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
        "fetch.wait.max.ms": 50,
        **conf,
    }, logger=RDKAFKA_LOGGER)
    out: dict[int, list] = {p: [] for p in range(partitions)}
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        at_end: set[int] = set()
        errors = []
        deadline = time.monotonic() + timeout
        while len(at_end) < partitions:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"read_all({topic}, {isolation}): partitions {sorted(set(range(partitions)) - at_end)} "
                    f"did not reach their end within {timeout}s; read so far "
                    f"{ {p: len(v) for p, v in out.items()} }; errors {errors[:5]}")
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                errors.append(msg.error())
                continue
            out[msg.partition()].append(msg)
            at_end.discard(msg.partition())
        return out
    finally:
        c.close()


def values(msgs_by_partition: dict[int, list]) -> dict[int, list[bytes]]:
    return {p: [m.value() for m in msgs] for p, msgs in msgs_by_partition.items()}


def list_offsets(bootstrap: str, topic: str, partition: int, committed: bool) -> int:
    """ListOffsets LATEST with the given isolation level through confluent-kafka's AdminClient."""
    a = AdminClient({"bootstrap.servers": bootstrap}, logger=RDKAFKA_LOGGER)
    iso = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    tp = TopicPartition(topic, partition)
    fs = a.list_offsets({tp: OffsetSpec.latest()}, isolation_level=iso, request_timeout=OP_TIMEOUT)
    return fs[tp].result(timeout=OP_TIMEOUT).offset


def kafka_python_admin(bootstrap: str):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)


def poll_until(fn, timeout: float, what: str, interval: float = 0.2):
    """Call ``fn`` until it returns something truthy; returns it.  ``fn`` may raise
    AssertionError meanwhile (the last one is reported on timeout)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            r = fn()
            if r:
                return r
            last = r
        except AssertionError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; last: {last}")
        time.sleep(interval)


def spawn(script: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Run a helper script of this directory in its own Python process (text stdout, line
    buffered), so the test can SIGKILL it."""
    e = dict(os.environ)
    e["PYTHONUNBUFFERED"] = "1"
    e.update(env or {})
    return subprocess.Popen([sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            bufsize=1, env=e, cwd=str(HERE))


def read_line_starting(proc: subprocess.Popen, prefix: str, timeout: float = 60.0) -> str:
    """Read the process's output until a line starting with ``prefix`` (blocking reads in a
    thread so a silent process cannot hang the test)."""
    import threading
    result: list[str] = []
    seen: list[str] = []

    def run():
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(prefix):
                result.append(line.strip())
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert result, (f"{Path(proc.args[1]).name} printed no '{prefix}' line within {timeout}s "
                    f"(exit code {proc.poll()}); output:\n{''.join(seen)[-3000:]}")
    return result[0]
