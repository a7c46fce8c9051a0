"""A transactional producer in its own process, for tests that SIGKILL it mid-transaction.

Usage: txn_client.py BOOTSTRAP TRANSACTIONAL_ID TOPIC PARTITION COUNT TXN_TIMEOUT_MS

Initialises, begins a transaction, produces COUNT records b"s<i>" to TOPIC/PARTITION, waits for
their acks, prints "PRODUCED <first offset> <last offset>" and then sleeps (never commits).
"""

import sys
import time

from confluent_kafka import Producer


def main():
    bootstrap, txn_id, topic, partition, count, timeout_ms = sys.argv[1:7]
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": int(timeout_ms), "linger.ms": 0})
    p.init_transactions(30)
    p.begin_transaction()
    offsets = []

    def on_delivery(err, msg):
        if err is not None:
            print(f"DELIVERY-ERROR {err}", flush=True)
            sys.exit(2)
        offsets.append(msg.offset())

    for i in range(int(count)):
        p.produce(topic, partition=int(partition), value=b"s%d" % i, on_delivery=on_delivery)
    assert p.flush(30) == 0
    print(f"PRODUCED {min(offsets)} {max(offsets)}", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
