#!/usr/bin/env python3
"""Quick produce/consume throughput check against a running broker, driven by librdkafka
(confluent-kafka). The full benchmark suite (fjord-bench) is a separate tool; this is the
five-second sanity number.

Usage: .venv/bin/python scripts/throughput.py [--bootstrap 127.0.0.1:9092] [--messages 1000000]
       [--replication-factor 3 --min-insync-replicas 2 --acks all]   (replicated, e.g. on scripts/cluster)
       [--size 1024] [--acks 1] [--compression none]
"""
import argparse
import os
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=1024, help="value size in bytes")
    ap.add_argument("--acks", default="1")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--replication-factor", type=int, default=-1,
                    help="replicas per partition (-1: the broker default); with 3 on a 3-node "
                         "cluster and --acks all this measures replicated produce")
    ap.add_argument("--min-insync-replicas", type=int, default=0,
                    help="topic min.insync.replicas (0: the broker default)")
    args = ap.parse_args()

    topic = f"throughput-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    configs = {}
    if args.min_insync_replicas:
        configs["min.insync.replicas"] = str(args.min_insync_replicas)
    admin.create_topics([NewTopic(topic, num_partitions=args.partitions,
                                  replication_factor=args.replication_factor,
                                  config=configs)])[topic].result(30)

    payload = os.urandom(args.size)
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "compression.type": args.compression,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    })
    errors = 0

    def on_delivery(err, _msg):
        nonlocal errors
        if err is not None:
            errors += 1

    start = time.perf_counter()
    for _ in range(args.messages):
        while True:
            try:
                producer.produce(topic, payload, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    produce_s = time.perf_counter() - start
    mb = args.messages * args.size / 1e6
    print(f"produce: {args.messages} msgs of {args.size} B in {produce_s:.2f} s = "
          f"{args.messages / produce_s:,.0f} msgs/s, {mb / produce_s:,.1f} MB/s (acks={args.acks}, "
          f"compression={args.compression}, delivery errors={errors})")

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "throughput",
        "enable.auto.commit": False,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 10_485_760,
        "queued.max.messages.kbytes": 1_048_576,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(args.partitions)])
    received = 0
    start = time.perf_counter()
    while received < args.messages:
        batch = consumer.consume(num_messages=10_000, timeout=10)
        if not batch:
            break
        received += sum(1 for m in batch if m.error() is None)
    consume_s = time.perf_counter() - start
    consumer.close()
    print(f"consume: {received} msgs in {consume_s:.2f} s = {received / consume_s:,.0f} msgs/s, "
          f"{received * args.size / 1e6 / consume_s:,.1f} MB/s")
    admin.delete_topics([topic])[topic].result(30)
    if received != args.messages or errors:
        raise SystemExit(f"lost messages: produced {args.messages}, errors {errors}, consumed {received}")


if __name__ == "__main__":
    main()
