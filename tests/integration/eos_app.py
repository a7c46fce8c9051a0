"""A consume-transform-produce application with exactly-once semantics (confluent-kafka),
run as its own process so that tests can SIGKILL it at any moment.

Usage: eos_app.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC GROUP TRANSACTIONAL_ID BATCH

Reads INPUT_TOPIC with isolation.level=read_committed in consumer group GROUP (static member,
so a restarted instance takes its place at once), and for every polled batch of up to BATCH
records runs one transaction: produce b"out:" + value to the same partition of OUTPUT_TOPIC,
send_offsets_to_transaction, commit.  Prints "COMMITTED <records in this txn> <total>" after
each commit.  Any error is fatal for the process (the test restarts it); a fenced instance
prints "FENCED" and exits 3.
"""

import os
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer


def main():
    bootstrap, in_topic, out_topic, group, txn_id, batch = sys.argv[1:7]
    batch = int(batch)
    pause = float(os.environ.get("EOS_APP_PAUSE_S", "0"))
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": 20000, "linger.ms": 1})
    p.init_transactions(60)  # fences older instances and aborts their open transaction
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "group.instance.id": txn_id, "session.timeout.ms": 6000,
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
    c.subscribe([in_topic])
    total = 0
    try:
        while True:
            polled = c.consume(num_messages=batch, timeout=0.5)
            for m in polled:
                if m.error() and m.error().fatal():  # e.g. FENCED_INSTANCE_ID: a newer instance
                    raise KafkaException(m.error())
            msgs = [m for m in polled if not m.error()]
            if not msgs:
                continue
            p.begin_transaction()
            for m in msgs:
                p.produce(out_topic, partition=m.partition(), key=m.key(), value=b"out:" + m.value())
            if pause:
                time.sleep(pause)  # widen the window for a kill inside a transaction
            positions = [tp for tp in c.position(c.assignment()) if tp.offset >= 0]
            p.send_offsets_to_transaction(positions, c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            total += len(msgs)
            print(f"COMMITTED {len(msgs)} {total}", flush=True)
    except KafkaException as e:
        err = e.args[0]
        # _FENCED, PRODUCER_FENCED, INVALID_PRODUCER_EPOCH, FENCED_INSTANCE_ID
        if "fenced" in str(err).lower() or err.code() in (-144, 90, 47, 82):
            print(f"FENCED {err}", flush=True)
            sys.exit(3)
        print(f"ERROR {err}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
