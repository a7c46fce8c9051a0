"""`fjord group ...` against the real broker, with confluent-kafka as the consumer that owns
the committed offsets being listed, described, reset and deleted."""

import subprocess
import time

from confluent_kafka import TopicPartition

from helpers import consumer, create_topic, producer, unique_topic

MESSAGES_PER_PARTITION = 10
PARTITIONS = 3


def fjord(broker, *args, check=True):
    """Runs the fjord CLI against `broker`; returns (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [str(broker.binary), "group", "--bootstrap-server", broker.bootstrap, *args],
        capture_output=True, text=True, timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fjord group {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.returncode, proc.stdout, proc.stderr


def rows(stdout, first_column):
    """Table rows (split on whitespace) whose first cell is `first_column`."""
    return [line.split() for line in stdout.splitlines() if line.split()[:1] == [first_column]]


def fill(broker, topic):
    p = producer(broker)
    for partition in range(PARTITIONS):
        for i in range(MESSAGES_PER_PARTITION):
            p.produce(topic, value=f"{partition}-{i}".encode(), partition=partition)
    assert p.flush(20) == 0


def commit(broker, group, topic, offsets):
    """Commits `offsets[partition]` for `group` as a standalone consumer (no subscription)."""
    c = consumer(broker, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()


def committed(broker, group, topic):
    c = consumer(broker, **{"group.id": group})
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in parts}
    finally:
        c.close()


def test_list_describe_reset_delete(broker):
    topic = unique_topic("cli")
    group = unique_topic("cli-group")
    create_topic(broker, topic, partitions=PARTITIONS)
    fill(broker, topic)
    commit(broker, group, topic, {0: 4, 1: 10, 2: 0})

    _, out, _ = fjord(broker, "list")
    listed = rows(out, group)
    assert listed, out
    assert listed[0][1] == "Empty", out

    _, out, _ = fjord(broker, "describe", group)
    described = {int(r[2]): r for r in rows(out, group)}
    assert set(described) == {0, 1, 2}, out
    # CURRENT-OFFSET, LOG-END-OFFSET, LAG
    assert described[0][3:6] == ["4", "10", "6"], out
    assert described[1][3:6] == ["10", "10", "0"], out
    assert described[2][3:6] == ["0", "10", "10"], out

    # A dry run changes nothing.
    _, out, _ = fjord(broker, "reset-offsets", "--group", group, "--topic", topic, "--to-earliest")
    assert "Dry run" in out
    assert committed(broker, group, topic) == {0: 4, 1: 10, 2: 0}

    # --execute commits; targets are clamped into [earliest, latest].
    fjord(broker, "reset-offsets", "--group", group, "--topic", f"{topic}:0,1",
          "--shift-by", "-5", "--execute")
    assert committed(broker, group, topic) == {0: 0, 1: 5, 2: 0}
    fjord(broker, "reset-offsets", "--group", group, "--all-topics", "--to-offset", "99",
          "--execute")
    assert committed(broker, group, topic) == {0: 10, 1: 10, 2: 10}
    fjord(broker, "reset-offsets", "--group", group, "--topic", topic, "--to-datetime",
          "1970-01-01T00:00:00Z", "--execute")
    assert committed(broker, group, topic) == {0: 0, 1: 0, 2: 0}

    fjord(broker, "delete", group)
    _, out, _ = fjord(broker, "list")
    assert not rows(out, group), out
    code, _, err = fjord(broker, "delete", group, check=False)
    assert code != 0 and "GROUP_ID_NOT_FOUND" in err, err


def test_reset_refuses_a_group_with_active_members(broker):
    topic = unique_topic("cli-active")
    group = unique_topic("cli-active-group")
    create_topic(broker, topic, partitions=1)
    fill_one = producer(broker)
    fill_one.produce(topic, value=b"x")
    assert fill_one.flush(10) == 0
    member = consumer(broker, **{"group.id": group, "session.timeout.ms": 6000})
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment(), "the consumer never joined the group"
        code, out, err = fjord(broker, "reset-offsets", "--group", group, "--topic", topic,
                               "--to-earliest", "--execute", check=False)
        assert code != 0, out
        assert "no active members" in err, err
        _, out, _ = fjord(broker, "describe", group)
        assert "Stable" in out and "1 member" in out, out
    finally:
        member.close()


def test_describe_unknown_group_reports_dead(broker):
    _, out, _ = fjord(broker, "describe", unique_topic("nobody"))
    assert "state Dead" in out, out
