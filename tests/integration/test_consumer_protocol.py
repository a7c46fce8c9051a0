"""KIP-848 consumer groups (`group.protocol=consumer`) with librdkafka (confluent-kafka):
server-side assignment, incremental reconciliation, leave and session expiry, commits with
member epochs, and what admin tools see."""

import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from helpers import admin, create_topic, producer, unique_topic

PARTITIONS = 6
MESSAGES = 600
# Fast group timing for tests; the defaults are 5 s heartbeats and a 45 s session.
SETTINGS = {
    "group.consumer.heartbeat.interval.ms": 500,
    "group.consumer.session.timeout.ms": 6000,
}


def member(broker, group, **conf):
    c = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    c.update(conf)
    return Consumer(c)


def fill(broker, topic):
    p = producer(broker)
    for i in range(MESSAGES):
        p.produce(topic, value=str(i).encode(), partition=i % PARTITIONS)
    assert p.flush(20) == 0


def assignments(consumers):
    return [sorted(tp.partition for tp in c.assignment()) for c in consumers]


def poll_until(consumers, done, timeout_s, on_message=None):
    """Polls every consumer until `done()` holds; returns False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and not m.error() and on_message:
                on_message(c, m)
        if done():
            return True
    return False


def disjoint_and_complete(assigned):
    flat = sorted(p for a in assigned for p in a)
    return flat == list(range(PARTITIONS))


def test_three_members_share_six_partitions_and_read_everything_once(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic, group = unique_topic("k848"), unique_topic("g848")
    create_topic(broker, topic, partitions=PARTITIONS)
    consumers = [member(broker, group) for _ in range(3)]
    for c in consumers:
        c.subscribe([topic])
    # Nothing is committed until the end, so a partition that moved while being read would be
    # read again from the start by its new owner: let the group settle first, then produce.
    assert poll_until(consumers, lambda: sorted(map(len, assignments(consumers))) == [2, 2, 2],
                      60), assignments(consumers)
    fill(broker, topic)
    seen = {}

    def record(c, m):
        seen.setdefault((m.partition(), m.offset()), []).append(id(c))

    try:
        assert poll_until(consumers, lambda: len(seen) == MESSAGES, 60, record), (
            f"read {len(seen)} of {MESSAGES}; assignments {assignments(consumers)}")
        assigned = assignments(consumers)
        assert disjoint_and_complete(assigned), assigned
        assert all(len(a) == 2 for a in assigned), assigned
        duplicates = {k: v for k, v in seen.items() if len(v) > 1}
        assert not duplicates, f"{len(duplicates)} records read twice"
        # Commits carry the member epoch (OffsetCommit v9) and must be accepted.
        for c in consumers:
            c.commit(asynchronous=False)
        committed = consumers[0].committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        assert [tp.offset for tp in committed] == [MESSAGES // PARTITIONS] * PARTITIONS
        tools = admin(broker)
        # librdkafka asks every broker it knows; make sure it knows this one first.
        tools.list_topics(timeout=10)
        listed = tools.list_consumer_groups().result(timeout=10)
        states = {g.group_id: str(g.state) for g in listed.valid}
        assert group in states and "STABLE" in states[group], states
        # The CLI describes KIP-848 groups through ConsumerGroupDescribe.
        out = subprocess.run([str(broker.binary), "group", "--bootstrap-server",
                              broker.bootstrap, "describe", group],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        assert "state Stable, 3 member(s)" in out, out
        rows = [line.split() for line in out.splitlines() if line.startswith(group)]
        assert sorted(int(r[2]) for r in rows) == list(range(PARTITIONS)), out
        assert all(r[5] == "0" and r[6] != "-" for r in rows), out  # no lag, every partition owned
    finally:
        for c in consumers:
            c.close()


def test_partitions_move_when_a_member_leaves(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic, group = unique_topic("k848"), unique_topic("g848")
    create_topic(broker, topic, partitions=PARTITIONS)
    consumers = [member(broker, group) for _ in range(3)]
    for c in consumers:
        c.subscribe([topic])
    try:
        assert poll_until(consumers, lambda: disjoint_and_complete(assignments(consumers)), 30)
        leaving = consumers.pop()
        leaving.close()
        started = time.monotonic()
        assert poll_until(consumers, lambda: disjoint_and_complete(assignments(consumers)), 30), (
            assignments(consumers))
        # Well under the 6 s session timeout: the leave heartbeat triggers the rebalance.
        print(f"rebalanced {time.monotonic() - started:.2f}s after a member left")
    finally:
        for c in consumers:
            c.close()


MEMBER_SCRIPT = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "group.protocol": "consumer", "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.1)
    if c.assignment():
        print("assigned", flush=True)
"""


def test_a_killed_member_s_partitions_move_after_the_session_timeout(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic, group = unique_topic("k848"), unique_topic("g848")
    create_topic(broker, topic, partitions=PARTITIONS)
    doomed = subprocess.Popen([sys.executable, "-c", MEMBER_SCRIPT, broker.bootstrap, group, topic],
                              stdout=subprocess.PIPE, text=True)
    survivor = None
    try:
        # The doomed member joins first and takes everything; the survivor's arrival makes it
        # give half back (it keeps polling in its own process).
        assert doomed.stdout.readline().strip() == "assigned"
        survivor = member(broker, group)
        survivor.subscribe([topic])
        assert poll_until([survivor],
                          lambda: 0 < len(survivor.assignment()) < PARTITIONS, 30), (
            assignments([survivor]))
        doomed.kill()
        doomed.wait()
        killed_at = time.monotonic()
        assert poll_until([survivor], lambda: len(survivor.assignment()) == PARTITIONS, 30), (
            assignments([survivor]))
        waited = time.monotonic() - killed_at
        assert waited > 3, f"partitions moved after {waited:.1f}s, before any session timeout"
        print(f"partitions of a killed member moved after {waited:.2f}s (session timeout 6 s)")
    finally:
        if doomed.poll() is None:
            doomed.kill()
        if survivor is not None:
            survivor.close()


def test_a_group_with_classic_members_refuses_consumer_protocol_members(broker_factory):
    broker = broker_factory(settings={**SETTINGS, "group.initial.rebalance.delay.ms": 0})
    topic, group = unique_topic("k848"), unique_topic("g848")
    create_topic(broker, topic, partitions=PARTITIONS)
    classic = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                        "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    classic.subscribe([topic])
    try:
        assert poll_until([classic], lambda: len(classic.assignment()) == PARTITIONS, 30)
        newcomer = member(broker, group)
        newcomer.subscribe([topic])
        errors = []
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not errors:
                try:
                    m = newcomer.poll(0.2)
                    if m is not None and m.error():
                        errors.append(m.error())
                except KafkaException as e:
                    errors.append(e.args[0])
            assert not newcomer.assignment(), "a consumer-protocol member joined a classic group"
            assert len(classic.assignment()) == PARTITIONS
        finally:
            newcomer.close()
    finally:
        classic.close()


def test_members_rejoin_and_resume_from_commits_after_a_broker_crash(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic, group = unique_topic("k848"), unique_topic("g848")
    create_topic(broker, topic, partitions=PARTITIONS)
    consumer = member(broker, group)
    consumer.subscribe([topic])
    try:
        assert poll_until([consumer], lambda: len(consumer.assignment()) == PARTITIONS, 30)
        fill(broker, topic)
        first = []
        assert poll_until([consumer], lambda: len(first) == MESSAGES, 30,
                          lambda c, m: first.append((m.partition(), m.offset())))
        consumer.commit(asynchronous=False)
        broker.kill9()
        broker.restart()
        fill(broker, topic)  # a second batch after the crash
        second = []
        assert poll_until([consumer], lambda: len(second) >= MESSAGES, 60,
                          lambda c, m: second.append((m.partition(), m.offset()))), len(second)
        # Resumed from the commits: only the new records, each once.
        assert len(second) == len(set(second)) == MESSAGES
        assert min(offset for _, offset in second) == MESSAGES // PARTITIONS
        assert len(consumer.assignment()) == PARTITIONS
    finally:
        consumer.close()
