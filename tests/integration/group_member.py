"""A consumer group member in its own process, for tests that kill it with SIGKILL.

Usage: python group_member.py BOOTSTRAP GROUP TOPIC SESSION_TIMEOUT_MS [STRATEGY]
Prints one line "assigned p1,p2,..." whenever its assignment changes, polls until killed.
"""

import sys

from confluent_kafka import Consumer


def main():
    bootstrap, group, topic, session_ms = sys.argv[1:5]
    strategy = sys.argv[5] if len(sys.argv) > 5 else "range"
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": "killable-member",
        "partition.assignment.strategy": strategy,
        "session.timeout.ms": int(session_ms),
        "heartbeat.interval.ms": max(100, int(session_ms) // 5),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    last = None
    while True:
        c.poll(0.1)
        now = sorted(tp.partition for tp in c.assignment())
        if now != last:
            print("assigned " + ",".join(map(str, now)), flush=True)
            last = now


if __name__ == "__main__":
    main()
