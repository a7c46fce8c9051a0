"""Exactly-once consume-transform-produce (eos_app.py) killed with SIGKILL mid-run.

The application reads an input topic with read_committed in a consumer group and, per small
batch, produces the transformed records and commits its input offsets in one transaction
(send_offsets_to_transaction).  It is SIGKILLed several times while running, and once a second
instance is started next to a live one (the zombie must be fenced).  At the end a read_committed
read of the output must be exactly the transformed input: every record once, per-partition
order kept.
"""

from __future__ import annotations

import queue
import threading
import time

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from confluent_kafka.admin import AdminClient

from helpers import RDKAFKA_LOGGER, create_topic, produce_all, producer, unique_topic
from txnhelpers import read_all, spawn, values

P = 3
N_PER_PARTITION = 800
BATCH = 20


class App:
    """One eos_app.py process and a thread collecting its output lines."""

    def __init__(self, args, lines: queue.Queue):
        self.proc = spawn("eos_app.py", *args, env={"EOS_APP_PAUSE_S": "0.005"})
        self.output: list[str] = []
        self.committed = 0
        self._lines = lines
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("COMMITTED"):
                self._lines.put(int(line.split()[1]))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def tail(self):
        return "".join(self.output[-20:])


def _committed_offsets(bootstrap, group, topic):
    a = AdminClient({"bootstrap.servers": bootstrap}, logger=RDKAFKA_LOGGER)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, q) for q in range(P)])
    res = a.list_consumer_group_offsets([req], require_stable=True)[group].result(timeout=15)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


@pytest.mark.slow
def test_consume_transform_produce_exactly_once_across_kills(broker):
    in_t, out_t = unique_topic("eos-in"), unique_topic("eos-out")
    create_topic(broker, in_t, partitions=P)
    create_topic(broker, out_t, partitions=P)
    inputs = {q: [b"%d:%d" % (q, i) for i in range(N_PER_PARTITION)] for q in range(P)}
    p = producer(broker, **{"linger.ms": 20})
    for q in range(P):
        produce_all(p, in_t, [{"value": v, "key": b"k%d" % q} for v in inputs[q]], partition=q)
    N = P * N_PER_PARTITION
    group, txn_id = unique_topic("eos-group"), unique_topic("eos-app")
    args = [broker.bootstrap, in_t, out_t, group, txn_id, str(BATCH)]

    commits: queue.Queue = queue.Queue()
    progress = 0
    app = App(args, commits)
    apps = [app]
    # SIGKILL at these progress points (records whose transaction committed), then a zombie
    kill_at = [int(N * f) for f in (0.15, 0.35, 0.55)]
    zombie_at = int(N * 0.75)
    deadline = time.monotonic() + 150
    kills = 0
    zombie_done = False

    def done():
        offs = _committed_offsets(broker.bootstrap, group, in_t)
        return all(offs.get(q) == N_PER_PARTITION for q in range(P))

    while True:
        assert time.monotonic() < deadline, (
            f"application did not finish: progress {progress}/{N}, kills {kills}; output:\n{app.tail()}")
        try:
            progress += commits.get(timeout=0.5)
        except queue.Empty:
            if app.proc.poll() is not None:
                pytest.fail(f"eos_app exited with {app.proc.returncode}:\n{app.tail()}")
            if progress >= N * 0.9 and done():
                break
            continue
        if kills < len(kill_at) and progress >= kill_at[kills]:
            app.kill()
            kills += 1
            app = App(args, commits)
            apps.append(app)
        elif not zombie_done and kills == len(kill_at) and progress >= zombie_at:
            zombie, app = app, App(args, commits)  # a second instance while the first runs
            apps.append(app)
            zombie.proc.wait(timeout=60)
            assert zombie.proc.returncode == 3, (
                f"the older instance was not fenced (exit {zombie.proc.returncode}):\n{zombie.tail()}")
            zombie_done = True
    assert kills == len(kill_at) and zombie_done, "the run ended before every disruption happened"
    app.kill()
    for a in apps:
        a.kill()
    while not commits.empty():
        progress += commits.get()
    # every record of a committed transaction was reported at most once by the applications
    assert progress <= N, f"applications committed {progress} input records for {N} inputs"

    out = values(read_all(broker.bootstrap, out_t, P, "read_committed", timeout=60))
    for q in range(P):
        exp = [b"out:" + v for v in inputs[q]]
        got = out[q]
        if got != exp:
            dups = len(got) - len(set(got))
            missing = len(set(exp) - set(got))
            first = next((i for i, (a, e) in enumerate(zip(got, exp)) if a != e), min(len(got), len(exp)))
            pytest.fail(f"output partition {q}: {len(got)} records, expected {len(exp)}; "
                        f"{dups} duplicates, {missing} missing, first difference at index {first}: "
                        f"{got[first:first + 3]} vs {exp[first:first + 3]}")
    assert _committed_offsets(broker.bootstrap, group, in_t) == {q: N_PER_PARTITION for q in range(P)}
    ru = values(read_all(broker.bootstrap, out_t, P, "read_uncommitted", timeout=60))
    aborted = sum(len(v) for v in ru.values()) - N
    print(f"eos: {kills} kills + 1 zombie, {len(apps)} instances, {aborted} aborted output records")
