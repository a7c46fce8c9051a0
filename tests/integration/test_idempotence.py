"""Idempotent producer: sequence deduplication with real clients and raw requests.

The fault proxy (faultproxy.py) sits between client and broker (the broker advertises the
proxy), forwards produce requests and drops the connection instead of relaying the broker's
answer: the broker appended, the client never saw the ack and retries the same batch (same
producer id, epoch and sequence), which the broker must recognise as a duplicate.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

import kwire
from helpers import RDKAFKA_LOGGER, create_topic, read_partition, unique_topic, watermarks
from txnhelpers import read_all, values

BASE_TS = 1_700_000_900_000


def _idempotent_producer(bootstrap, **conf):
    c = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 40,
        "max.in.flight.requests.per.connection": 5,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "message.timeout.ms": 90000,
    }
    c.update(conf)
    return Producer(c, logger=RDKAFKA_LOGGER)


def test_idempotent_producer_exactly_once_despite_lost_acks(proxied_broker):
    b, proxy = proxied_broker
    t = unique_topic("idem")
    P, N = 3, 3000
    create_topic(b, t, partitions=P)
    # Lose the ack of the 2nd, 5th, 9th... produce request, and ~8% of the others, seeded.
    proxy.drop_response(kwire.PRODUCE, nth={2, 5, 9, 14, 20, 27}, probability=0.08, limit=14, seed=7)
    p = _idempotent_producer(proxy.address)
    acked: dict[tuple[int, int], int] = {}   # (partition, seq) -> offset reported to the client
    errors = []
    double_acks = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
            return
        part, seq = (int(x) for x in msg.value().split(b":")[:2])
        if (part, seq) in acked:
            double_acks.append((part, seq))
        acked[(part, seq)] = msg.offset()

    sent = {q: 0 for q in range(P)}
    for i in range(N):
        q = i % P
        val = b"%d:%d:" % (q, sent[q]) + b"v" * 100
        while True:
            try:
                p.produce(t, partition=q, value=val, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        sent[q] += 1
        p.poll(0)
    assert p.flush(120) == 0, "messages still undelivered"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert not double_acks, f"the client got two acks for {double_acks[:5]}"
    assert len(acked) == N
    dropped = proxy.count("drop_response")
    assert dropped >= 6, f"the proxy dropped only {dropped} produce responses: fault not exercised"
    print(f"idempotence: {dropped} produce acks lost, {proxy.connections_accepted} connections")

    # The truth, read from the broker directly: each message exactly once, in order, offsets dense,
    # and each at the offset the client was told (a retried duplicate answers the original offset).
    got = read_all(b.bootstrap, t, P, isolation="read_uncommitted")
    for q in range(P):
        vals = [m.value() for m in got[q]]
        seqs = [int(v.split(b":")[1]) for v in vals]
        dups = len(seqs) - len(set(seqs))
        assert dups == 0, f"partition {q}: {dups} duplicated messages"
        assert seqs == list(range(sent[q])), (
            f"partition {q}: gaps or reordering; first difference at index "
            f"{next((i for i, (a, e) in enumerate(zip(seqs, range(sent[q]))) if a != e), len(seqs))}")
        assert [m.offset() for m in got[q]] == list(range(sent[q]))
        wrong = [(s, acked[(q, s)], m.offset()) for s, m in zip(seqs, got[q]) if acked[(q, s)] != m.offset()]
        assert not wrong, f"partition {q}: acked offset differs from the log (seq, acked, actual): {wrong[:5]}"
        assert watermarks(b, t, q) == (0, sent[q])


@pytest.mark.slow
def test_idempotent_retry_after_broker_kill9_is_deduplicated(proxied_broker):
    """The broker appends a batch, its ack is swallowed, the broker is kill -9'd and restarted;
    the client's retry of that batch must be recognised as a duplicate from recovered state."""
    b, proxy = proxied_broker
    t = unique_topic("idemkill")
    create_topic(b, t, partitions=1)
    p = _idempotent_producer(proxy.address, **{"linger.ms": 0, "request.timeout.ms": 60000})
    reports = {}

    def on_delivery(err, msg):
        reports[msg.value()] = (err, msg.offset())

    for i in range(10):
        p.produce(t, partition=0, value=b"m%d" % i, on_delivery=on_delivery)
    assert p.flush(30) == 0
    assert all(reports[b"m%d" % i] == (None, i) for i in range(10)), reports

    proxy.stall_response(kwire.PRODUCE, nth={1})
    p.produce(t, partition=0, value=b"m10", on_delivery=on_delivery)
    p.poll(0)
    proxy.wait_for(lambda px: px.count("stall_response") == 1, timeout=30,
                   what="the broker's answer to the produce of m10")
    assert watermarks(b, t, 0) == (0, 11), "the broker did not append m10 before its ack was lost"
    assert b"m10" not in reports

    b.kill9()
    b.start()
    forwarded_before = proxy.forwarded_count(kwire.PRODUCE)
    proxy.release_stalled()  # the client's connection closes now; it retries m10
    deadline = time.monotonic() + 90
    while b"m10" not in reports and time.monotonic() < deadline:
        p.poll(0.1)
    assert b"m10" in reports, "no delivery report for m10 after the broker came back"
    assert proxy.forwarded_count(kwire.PRODUCE) > forwarded_before, "the client never retried m10"
    err, off = reports[b"m10"]
    assert err is None, f"retry of m10 after restart failed: {err}"
    assert off == 10, f"retried m10 acknowledged at offset {off}, the original append is at 10"
    assert watermarks(b, t, 0) == (0, 11), "the retry of m10 was appended a second time"

    for i in range(11, 15):
        p.produce(t, partition=0, value=b"m%d" % i, on_delivery=on_delivery)
    assert p.flush(30) == 0
    got = read_partition(b, t, 0, 15, **{"isolation.level": "read_uncommitted"})
    assert [m.value() for m in got] == [b"m%d" % i for i in range(15)]
    assert watermarks(b, t, 0) == (0, 15)
    assert all(reports[b"m%d" % i] == (None, i) for i in range(15)), reports


# ------------------------------------------------------------------ raw protocol
def _batch(pid, epoch, seq, vals, transactional=False):
    return kwire.record_batch([(None, v, []) for v in vals], BASE_TS, producer_id=pid,
                              producer_epoch=epoch, base_sequence=seq, transactional=transactional)


@pytest.mark.slow
def test_raw_duplicate_batch_answers_original_offset_across_kill9(broker):
    t = unique_topic("idemraw")
    create_topic(broker, t, partitions=1)
    with kwire.Conn(broker.port) as c:
        err, pid, epoch = c.init_producer_id_retrying(None)
        assert err == kwire.NONE, f"InitProducerId (idempotent) failed: {err}"
        assert pid >= 0 and epoch >= 0, (pid, epoch)
        b0 = _batch(pid, epoch, 0, [b"a0", b"a1", b"a2"])
        b1 = _batch(pid, epoch, 3, [b"b0", b"b1"])
        assert c.produce(t, 0, b0) == (kwire.NONE, 0)
        assert c.produce(t, 0, b1) == (kwire.NONE, 3)
        # retries of the last and of an earlier batch (within the last five): original offsets
        assert c.produce(t, 0, b1) == (kwire.NONE, 3), "duplicate of the last batch"
        assert c.produce(t, 0, b0) == (kwire.NONE, 0), "duplicate of an earlier batch"
        assert watermarks(broker, t, 0) == (0, 5)

    broker.kill9()
    broker.start()
    with kwire.Conn(broker.port) as c:
        assert c.produce(t, 0, b1) == (kwire.NONE, 3), \
            "the retry of the last batch after kill -9 was not recognised as a duplicate"
        assert watermarks(broker, t, 0) == (0, 5)
        b2 = _batch(pid, epoch, 5, [b"c0"])
        assert c.produce(t, 0, b2) == (kwire.NONE, 5), "the next sequence continues after recovery"

    broker.restart()  # graceful: producer state from the shutdown snapshot
    with kwire.Conn(broker.port) as c:
        assert c.produce(t, 0, b2) == (kwire.NONE, 5), \
            "the retry of the last batch after a graceful restart was not recognised as a duplicate"
        err, _ = c.produce(t, 0, _batch(pid, epoch, 9, [b"gap"]))
        assert err == kwire.OUT_OF_ORDER_SEQUENCE_NUMBER, f"sequence gap answered {err}, expected 45"
        assert c.produce(t, 0, _batch(pid, epoch, 6, [b"d0"])) == (kwire.NONE, 6)
    got = read_partition(broker, t, 0, 7, **{"isolation.level": "read_uncommitted"})
    assert [m.value() for m in got] == [b"a0", b"a1", b"a2", b"b0", b"b1", b"c0", b"d0"]
    assert watermarks(broker, t, 0) == (0, 7)


def test_raw_sequence_errors(broker):
    t = unique_topic("idemseq")
    create_topic(broker, t, partitions=2)
    with kwire.Conn(broker.port) as c:
        err, pid, epoch = c.init_producer_id_retrying(None)
        assert err == kwire.NONE
        assert c.produce(t, 0, _batch(pid, epoch, 0, [b"x0", b"x1"])) == (kwire.NONE, 0)
        # gap: next expected sequence is 2
        err, _ = c.produce(t, 0, _batch(pid, epoch, 3, [b"gap"]))
        assert err == kwire.OUT_OF_ORDER_SEQUENCE_NUMBER, f"gap answered {err}, expected 45"
        # overlapping but not a duplicate of any appended batch
        err, _ = c.produce(t, 0, _batch(pid, epoch, 1, [b"y1", b"y2"]))
        assert err in (kwire.OUT_OF_ORDER_SEQUENCE_NUMBER, kwire.DUPLICATE_SEQUENCE_NUMBER), \
            f"batch overlapping an appended one answered {err}"
        assert watermarks(broker, t, 0) == (0, 2), "a rejected batch was appended"
        # sequences are per partition: partition 1 starts at 0
        assert c.produce(t, 1, _batch(pid, epoch, 0, [b"z0"])) == (kwire.NONE, 0)
        assert c.produce(t, 0, _batch(pid, epoch, 2, [b"x2"])) == (kwire.NONE, 2)
        # another producer id has its own sequences
        err, pid2, epoch2 = c.init_producer_id_retrying(None)
        assert err == kwire.NONE and pid2 != pid, (err, pid, pid2)
        assert c.produce(t, 0, _batch(pid2, epoch2, 0, [b"w0"])) == (kwire.NONE, 3)
    got = read_partition(broker, t, 0, 4, **{"isolation.level": "read_uncommitted"})
    assert [m.value() for m in got] == [b"x0", b"x1", b"x2", b"w0"]


def test_raw_old_epoch_is_fenced(broker):
    """InitProducerId for a transactional id bumps the epoch (and aborts the open transaction);
    the old epoch is refused by the partition and by the coordinator."""
    t = unique_topic("fence")
    create_topic(broker, t, partitions=1)
    txn = unique_topic("txid")
    with kwire.Conn(broker.port) as c:
        err, pid, e0 = c.init_producer_id_retrying(txn, timeout_ms=60000)
        assert err == kwire.NONE, f"InitProducerId({txn}) failed: {err}"
        res = c.add_partitions_to_txn(txn, pid, e0, t, [0])
        assert res == {0: kwire.NONE}, res
        assert c.produce(t, 0, _batch(pid, e0, 0, [b"old0"], transactional=True),
                         transactional_id=txn) == (kwire.NONE, 0)

        err, pid_b, e1 = c.init_producer_id_retrying(txn, timeout_ms=60000)
        assert err == kwire.NONE, f"second InitProducerId({txn}) failed: {err}"
        assert pid_b == pid and e1 > e0, f"expected same producer id with a higher epoch: {pid}/{e0} -> {pid_b}/{e1}"

        err, _ = c.produce(t, 0, _batch(pid, e0, 1, [b"old1"], transactional=True), transactional_id=txn)
        assert err in (kwire.INVALID_PRODUCER_EPOCH, kwire.PRODUCER_FENCED), \
            f"produce with the fenced epoch {e0} (current {e1}) answered {err}, expected 47 or 90"
        err = c.end_txn(txn, pid, e0, commit=True)
        assert err in (kwire.INVALID_PRODUCER_EPOCH, kwire.PRODUCER_FENCED), \
            f"EndTxn(commit) with the fenced epoch answered {err}, expected 47 or 90"

        # the new epoch works: a transaction with it commits
        assert c.add_partitions_to_txn(txn, pid, e1, t, [0]) == {0: kwire.NONE}
        err, new_off = c.produce(t, 0, _batch(pid, e1, 0, [b"new0"], transactional=True),
                                 transactional_id=txn)
        assert err == kwire.NONE, f"produce with the current epoch answered {err}"
        deadline = time.monotonic() + 20
        while True:
            err = c.end_txn(txn, pid, e1, commit=True)
            if err != kwire.CONCURRENT_TRANSACTIONS or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert err == kwire.NONE, f"EndTxn(commit) with the current epoch answered {err}"
    committed = values(read_all(broker.bootstrap, t, 1, "read_committed"))
    assert committed == {0: [b"new0"]}, f"read_committed sees {committed}"
    everything = values(read_all(broker.bootstrap, t, 1, "read_uncommitted"))
    assert everything == {0: [b"old0", b"new0"]}, f"read_uncommitted sees {everything}"


def test_control_lost_acks_duplicate_without_idempotence(proxied_broker):
    """Control for the test above: the same fault with idempotence off does duplicate (so the
    proxy really makes the broker append batches whose acks the client never sees)."""
    b, proxy = proxied_broker
    t = unique_topic("nonidem")
    create_topic(b, t, partitions=1)
    proxy.drop_response(kwire.PRODUCE, nth={2, 4, 6}, seed=3)
    p = _idempotent_producer(proxy.address, **{"enable.idempotence": False, "retries": 100,
                                               "max.in.flight.requests.per.connection": 1})
    n = 400
    for i in range(n):
        p.produce(t, partition=0, value=b"%d" % i)
        p.poll(0)
        if i % 40 == 39:
            p.flush(30)  # one produce request per 40 messages at least
    assert p.flush(60) == 0
    assert proxy.count("drop_response") == 3
    low, high = watermarks(b, t, 0)
    got = read_partition(b, t, 0, high, **{"isolation.level": "read_uncommitted"})
    seqs = [int(m.value()) for m in got]
    assert set(seqs) == set(range(n))
    assert len(seqs) > n, "no duplicates although three acks were lost and the batches retried"
