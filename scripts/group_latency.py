#!/usr/bin/env python3
"""Consumer group latencies against a running broker (Fjord or Kafka), with confluent-kafka.

Measures, per run, with N members of a new group on a new topic:
  first assignment  from subscribe() until the members' assignments split every partition
  after leave       from one member's close() until the others cover every partition again

    .venv/bin/python scripts/group_latency.py --bootstrap 127.0.0.1:9092 [--runs 5]
        [--members 3] [--partitions 6] [--strategy range] [--heartbeat-ms 3000]
        [--group-protocol consumer]

With --group-protocol consumer the members use KIP-848 (the broker assigns; its
group.consumer.heartbeat.interval.ms, 5 s by default, plays the heartbeat's part and
--strategy/--heartbeat-ms do not apply).

The group's first assignment includes the broker's group.initial.rebalance.delay.ms (3 s by
default, extended once when several members arrive during it, as in Kafka); the time after a
leave is bounded below by the survivors' heartbeat interval (how they learn of the rebalance).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic


def split(consumers, partitions: int, timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        for c in consumers:
            c.poll(0.02)
        parts = [frozenset(tp.partition for tp in c.assignment()) for c in consumers]
        if all(parts) and sum(map(len, parts)) == partitions \
                and frozenset().union(*parts) == frozenset(range(partitions)):
            return time.monotonic() - t0
    raise SystemExit(f"no full assignment within {timeout_s}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--strategy", default="range")
    ap.add_argument("--heartbeat-ms", type=int, default=3000, help="librdkafka default: 3000")
    ap.add_argument("--group-protocol", choices=["classic", "consumer"], default="classic")
    args = ap.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=args.partitions)])[topic].result(30)
    first, leave = [], []
    for _ in range(args.runs):
        group = f"latency-{uuid.uuid4().hex[:8]}"
        if args.group_protocol == "consumer":
            conf = {"group.protocol": "consumer"}
        else:
            conf = {"partition.assignment.strategy": args.strategy,
                    "heartbeat.interval.ms": args.heartbeat_ms, "session.timeout.ms": 45000}
        consumers = [Consumer({"bootstrap.servers": args.bootstrap, "group.id": group, **conf})
                     for _ in range(args.members)]
        for c in consumers:
            c.subscribe([topic])
        first.append(split(consumers, args.partitions, 120))
        consumers[0].close()
        leave.append(split(consumers[1:], args.partitions, 120))
        for c in consumers[1:]:
            c.close()
    fmt = lambda xs: f"median {statistics.median(xs):.2f}s (min {min(xs):.2f}, max {max(xs):.2f})"
    how = ("KIP-848 consumer protocol" if args.group_protocol == "consumer"
           else f"{args.strategy}, heartbeat.interval.ms={args.heartbeat_ms}")
    print(f"{args.members} members, {args.partitions} partitions, {how}, {args.runs} runs")
    print(f"  first assignment: {fmt(first)}")
    print(f"  after leave:      {fmt(leave)}")


if __name__ == "__main__":
    main()
