#!/usr/bin/env python3
"""Transaction throughput and latency against a running broker (Fjord or Kafka), with
confluent-kafka (librdkafka).

One transactional producer runs --txns transactions back to back on a new topic; each sends
--messages records of --size bytes spread over --partitions partitions, then commits (or, with
--abort-every N, aborts every Nth). Reported:
  begin+produce+commit  wall time of each transaction, percentiles
  commit                commit_transaction() alone (EndTxn + markers), percentiles
  txn/s, MB/s           over the whole run
Then a read_committed consumer reads the topic back and the committed record count is checked.

    .venv/bin/python scripts/txn_latency.py --bootstrap 127.0.0.1:9092 [--txns 500]
        [--messages 10] [--size 1024] [--partitions 3] [--abort-every 0]
"""

from __future__ import annotations

import argparse
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def percentiles(samples_s: list[float]) -> str:
    ordered = sorted(samples_s)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {at(0.5):7.2f}  p99 {at(0.99):7.2f}  max {ordered[-1] * 1000:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--txns", type=int, default=500)
    parser.add_argument("--messages", type=int, default=10, help="records per transaction")
    parser.add_argument("--size", type=int, default=1024, help="bytes per record")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--abort-every", type=int, default=0, help="abort every Nth transaction")
    args = parser.parse_args()

    topic = f"txn-latency-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "transactional.id": f"txn-latency-{uuid.uuid4().hex[:8]}",
        "linger.ms": 0,
    })
    producer.init_transactions(30)
    value = b"x" * args.size
    totals, commits = [], []
    committed = 0
    started = time.perf_counter()
    for n in range(args.txns):
        t0 = time.perf_counter()
        producer.begin_transaction()
        for i in range(args.messages):
            producer.produce(topic, value=value, partition=i % args.partitions)
        abort = args.abort_every > 0 and (n + 1) % args.abort_every == 0
        t1 = time.perf_counter()
        if abort:
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
            committed += args.messages
        t2 = time.perf_counter()
        totals.append(t2 - t0)
        commits.append(t2 - t1)
    elapsed = time.perf_counter() - started
    payload_mb = args.txns * args.messages * args.size / 1e6
    print(f"{args.txns} transactions x {args.messages} records x {args.size} B over "
          f"{args.partitions} partitions in {elapsed:.2f} s: {args.txns / elapsed:.1f} txn/s, "
          f"{payload_mb / elapsed:.2f} MB/s")
    print(f"  begin+produce+commit  {percentiles(totals)}")
    print(f"  commit/abort          {percentiles(commits)}")

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"txn-latency-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    seen, deadline = 0, time.time() + 60
    while seen < committed and time.time() < deadline:
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                seen += 1
    consumer.close()
    print(f"  read_committed read back {seen} of {committed} committed records")
    if seen != committed:
        raise SystemExit("read_committed count mismatch")


if __name__ == "__main__":
    main()
