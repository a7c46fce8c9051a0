"""`fjord txn ...` against the real broker, with a confluent-kafka transactional producer
whose transaction is left open while it is listed, described and its producers shown, then
committed (or aborted) and looked at again."""

import subprocess
import time

from helpers import create_topic, producer, unique_topic

PARTITIONS = 2
TXN_TIMEOUT_MS = 60000


def fjord_txn(broker, *args, check=True):
    """Runs `fjord txn ARGS` against `broker`; returns (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [str(broker.binary), "txn", "--bootstrap-server", broker.bootstrap, *args],
        capture_output=True, text=True, timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fjord txn {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.returncode, proc.stdout, proc.stderr


def rows(stdout, first_column):
    """Table rows (split on whitespace) whose first cell is `first_column`."""
    return [line.split() for line in stdout.splitlines() if line.split()[:1] == [first_column]]


def listed(broker, transactional_id, *args):
    """The `fjord txn list` row of `transactional_id`: [id, coordinator, producer id, state]."""
    _, out, _ = fjord_txn(broker, "list", *args)
    assert out.splitlines()[0].split() == [
        "TransactionalId", "Coordinator", "ProducerId", "TransactionState"], out
    found = rows(out, transactional_id)
    assert len(found) <= 1, out
    return found[0] if found else None


def described(broker, transactional_id):
    """The `fjord txn describe` row of `transactional_id`, by column name."""
    _, out, _ = fjord_txn(broker, "describe", "--transactional-id", transactional_id)
    header = out.splitlines()[0].split()
    assert header == ["CoordinatorId", "TransactionalId", "ProducerId", "ProducerEpoch",
                      "TransactionState", "TransactionTimeoutMs",
                      "CurrentTransactionStartTimeMs", "TransactionDurationMs",
                      "TopicPartitions"], out
    found = [r for r in (line.split() for line in out.splitlines()[1:]) if r[1:2] == [transactional_id]]
    assert len(found) == 1, out
    return dict(zip(header, found[0]))


def producer_rows(broker, topic, *args):
    """`fjord txn producers --topic topic` rows, by column name."""
    _, out, _ = fjord_txn(broker, "producers", "--topic", topic, *args)
    header = out.splitlines()[0].split()
    assert header == ["Partition", "ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch",
                      "LastSequence", "LastTimestamp", "CurrentTransactionStartOffset"], out
    return [dict(zip(header, line.split())) for line in out.splitlines()[1:] if line.strip()]


def wait_for_state(broker, transactional_id, state, timeout=15.0):
    """Polls `fjord txn list` until the transaction is in `state` (markers are written after
    EndTxn is answered, so Prepare* may be seen first)."""
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        row = listed(broker, transactional_id)
        if row is not None and row[3] == state:
            return row
        time.sleep(0.2)
    raise AssertionError(f"{transactional_id} never reached {state}; last listed as {row}")


def open_transaction(broker, topic, transactional_id):
    """A transactional producer with one record written to each partition of `topic` in a
    transaction that stays open."""
    p = producer(broker, **{
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "transaction.timeout.ms": TXN_TIMEOUT_MS,
    })
    p.init_transactions(30)
    p.begin_transaction()
    for partition in range(PARTITIONS):
        p.produce(topic, value=f"in-txn-{partition}".encode(), partition=partition)
    assert p.flush(20) == 0
    return p


def test_open_transaction_then_commit(broker):
    topic = unique_topic("txn-cli")
    transactional_id = unique_topic("txn-cli-id")
    create_topic(broker, topic, partitions=PARTITIONS)
    started_ms = int(time.time() * 1000)
    p = open_transaction(broker, topic, transactional_id)

    # list: the open transaction, coordinated by the one broker (node id 1).
    row = listed(broker, transactional_id)
    assert row is not None and row[1] == "1" and row[3] == "Ongoing", row
    producer_id = row[2]
    assert int(producer_id) >= 0
    # Filters: by state and by producer id.
    assert listed(broker, transactional_id, "--state", "Ongoing") == row
    assert listed(broker, transactional_id, "--state", "CompleteCommit") is None
    assert listed(broker, transactional_id, "--producer-id", producer_id) == row
    assert listed(broker, transactional_id, "--producer-id", str(int(producer_id) + 1)) is None
    assert listed(broker, transactional_id, "--duration-filter-ms", "0") == row
    assert listed(broker, transactional_id, "--duration-filter-ms", "3600000") is None

    # describe: its coordinator, producer, timeout and partitions.
    d = described(broker, transactional_id)
    assert d["CoordinatorId"] == "1", d
    assert d["ProducerId"] == producer_id, d
    assert int(d["ProducerEpoch"]) >= 0, d
    assert d["TransactionState"] == "Ongoing", d
    assert d["TransactionTimeoutMs"] == str(TXN_TIMEOUT_MS), d
    assert started_ms - 5000 <= int(d["CurrentTransactionStartTimeMs"]) <= int(time.time() * 1000), d
    assert int(d["TransactionDurationMs"]) >= 0, d
    assert d["TopicPartitions"].split(",") == [f"{topic}-{p}" for p in range(PARTITIONS)], d

    # producers: the partitions' leader knows the producer and its open transaction.
    found = producer_rows(broker, topic)
    assert sorted(int(r["Partition"]) for r in found) == list(range(PARTITIONS)), found
    for r in found:
        assert r["ProducerId"] == producer_id, found
        assert r["ProducerEpoch"] == d["ProducerEpoch"], found
        assert r["LastSequence"] == "0", found
        assert r["CurrentTransactionStartOffset"] == "0", found
    only_one = producer_rows(broker, topic, "--partition", "1")
    assert [r["Partition"] for r in only_one] == ["1"], only_one

    p.commit_transaction(30)

    row = wait_for_state(broker, transactional_id, "CompleteCommit")
    assert row[2] == producer_id, row
    assert listed(broker, transactional_id, "--state", "Ongoing") is None
    d = described(broker, transactional_id)
    assert d["TransactionState"] == "CompleteCommit", d
    assert d["TransactionDurationMs"] == "-", d
    assert d["TopicPartitions"] == "-", d
    for r in producer_rows(broker, topic):
        assert r["ProducerId"] == producer_id
        assert r["CurrentTransactionStartOffset"] == "-", r


def test_aborted_transaction(broker):
    topic = unique_topic("txn-cli-abort")
    transactional_id = unique_topic("txn-cli-abort-id")
    create_topic(broker, topic, partitions=PARTITIONS)
    p = open_transaction(broker, topic, transactional_id)
    assert listed(broker, transactional_id)[3] == "Ongoing"
    p.abort_transaction(30)
    wait_for_state(broker, transactional_id, "CompleteAbort")
    assert described(broker, transactional_id)["TransactionState"] == "CompleteAbort"


def test_describe_unknown_transactional_id_fails(broker):
    code, out, err = fjord_txn(broker, "describe", "--transactional-id", unique_topic("nobody"),
                               check=False)
    assert code == 1, out
    assert "TRANSACTIONAL_ID_NOT_FOUND" in err and "Stack backtrace" not in err, err


def test_producers_of_unknown_topic_or_partition_fail(broker):
    code, _, err = fjord_txn(broker, "producers", "--topic", unique_topic("missing"), check=False)
    assert code == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in err, err
    topic = unique_topic("txn-cli-parts")
    create_topic(broker, topic, partitions=1)
    code, _, err = fjord_txn(broker, "producers", "--topic", topic, "--partition", "7",
                             check=False)
    assert code == 1 and f"{topic}-7" in err and "no such partition" in err, err


def test_help_names_every_subcommand(broker):
    proc = subprocess.run([str(broker.binary), "txn", "--help"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    for sub in ("list", "describe", "producers"):
        assert f"  {sub} " in proc.stdout, proc.stdout
