"""Transactions with real clients (confluent-kafka producers/consumers, kafka-python admin).

read_committed consumers must see exactly the committed records, in order, never an aborted
one and never a control marker; the last stable offset (LSO) holds them back while a
transaction is open; fencing, client death and broker kill -9 must not leak partial data.
"""

from __future__ import annotations

import signal

import pytest
from confluent_kafka import KafkaException

from helpers import create_topic, unique_topic
from txnhelpers import (FAST_TXN_TIMEOUT_SETTINGS, kafka_python_admin, list_offsets, poll_until,
                        read_all, read_line_starting, spawn, txn_producer, values)


def _produce_txn(p, topic, records, flush=True):
    """records: [(partition, value)]; returns the delivery reports [(partition, offset, value)]."""
    reports, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports.append((msg.partition(), msg.offset(), msg.value()))

    for part, val in records:
        p.produce(topic, partition=part, value=val, on_delivery=on_delivery)
    if flush:
        assert p.flush(30) == 0
        assert not errors, f"delivery errors: {errors[:5]}"
    return reports


def test_commit_abort_mix_read_committed_and_uncommitted(broker):
    t = unique_topic("txmix")
    P, TXNS, PER = 3, 8, 4
    create_topic(broker, t, partitions=P)
    p = txn_producer(broker.bootstrap, unique_topic("mix"))
    committed = {q: [] for q in range(P)}
    everything = {q: [] for q in range(P)}
    outcomes = []
    delivered = {}
    for i in range(TXNS):
        commit = i % 3 != 1  # txns 1, 4, 7 abort
        p.begin_transaction()
        recs = [(q, b"t%d-p%d-%d" % (i, q, j)) for j in range(PER) for q in range(P)]
        for q, off, v in _produce_txn(p, t, recs):  # flushed: aborted data reaches the log too
            delivered[v] = (q, off)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
        outcomes.append(commit)
        for q, v in recs:
            everything[q].append(v)
            if commit:
                committed[q].append(v)

    rc = read_all(broker.bootstrap, t, P, "read_committed")
    ru = read_all(broker.bootstrap, t, P, "read_uncommitted")
    assert values(rc) == committed, "read_committed must see exactly the committed records in order"
    assert values(ru) == everything, "read_uncommitted sees every record (aborted too), no markers"
    for q in range(P):
        for m in ru[q]:
            assert delivered[m.value()] == (q, m.offset()), f"{m.value()} acked at {delivered[m.value()]}"
        # one control marker per transaction per partition, never delivered as a message
        high = list_offsets(broker.bootstrap, t, q, committed=False)
        assert high == TXNS * PER + TXNS, f"partition {q}: log end {high}, expected records + markers"
        assert list_offsets(broker.bootstrap, t, q, committed=True) == high, "LSO != HW with no open txn"
        offs = [m.offset() for m in ru[q]]
        assert len(offs) == TXNS * PER and offs == sorted(offs)


def test_second_producer_fences_the_first(broker):
    t = unique_topic("txfence")
    create_topic(broker, t, partitions=1)
    txn_id = unique_topic("fence")
    p1 = txn_producer(broker.bootstrap, txn_id)
    p1.begin_transaction()
    _produce_txn(p1, t, [(0, b"zombie-1"), (0, b"zombie-2")])

    p2 = txn_producer(broker.bootstrap, txn_id)  # bumps the epoch, aborts p1's open txn
    p2.begin_transaction()
    _produce_txn(p2, t, [(0, b"new-1")])
    p2.commit_transaction(30)

    with pytest.raises(KafkaException) as ei:
        p1.produce(t, partition=0, value=b"zombie-3")
        p1.commit_transaction(30)
    err = ei.value.args[0]
    assert err.fatal(), f"fenced producer's commit failed with a non-fatal error: {err}"

    p2.begin_transaction()
    _produce_txn(p2, t, [(0, b"new-2")])
    p2.commit_transaction(30)
    assert values(read_all(broker.bootstrap, t, 1, "read_committed")) == {0: [b"new-1", b"new-2"]}
    ru = values(read_all(broker.bootstrap, t, 1, "read_uncommitted"))[0]
    assert ru == [b"zombie-1", b"zombie-2", b"new-1", b"new-2"], \
        f"read_uncommitted: {ru} (zombie-3 must have been refused)"


@pytest.mark.slow
def test_killed_client_transaction_times_out_and_unblocks(broker_factory):
    b = broker_factory(settings=FAST_TXN_TIMEOUT_SETTINGS)
    t = unique_topic("txdead")
    create_topic(b, t, partitions=1)
    pa = txn_producer(b.bootstrap, unique_topic("a"))
    pa.begin_transaction()
    _produce_txn(pa, t, [(0, b"a%d" % i) for i in range(3)])
    pa.commit_transaction(30)                                   # offsets 0-2, marker 3

    zombie_id = unique_topic("dead")
    proc = spawn("txn_client.py", b.bootstrap, zombie_id, t, "0", "3", "6000")
    try:
        line = read_line_starting(proc, "PRODUCED", timeout=60)
        first, last = (int(x) for x in line.split()[1:3])
        assert (first, last) == (4, 6), line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    pb = txn_producer(b.bootstrap, unique_topic("b"))
    pb.begin_transaction()
    _produce_txn(pb, t, [(0, b"b%d" % i) for i in range(3)])
    pb.commit_transaction(30)                                   # offsets 7-9, marker 10

    # While the dead client's transaction is open, the LSO is its first offset: read_committed
    # readers see a0-a2 only, although b's transaction (after it in the log) is committed.
    lso = list_offsets(b.bootstrap, t, 0, committed=True)
    hw = list_offsets(b.bootstrap, t, 0, committed=False)
    blocked = values(read_all(b.bootstrap, t, 1, "read_committed"))[0]
    kp = kafka_python_admin(b.bootstrap)
    try:
        desc = kp.describe_transactions([zombie_id])[zombie_id]
    finally:
        kp.close()
    if str(desc.state.value) != "Ongoing":
        pytest.fail(f"the dead client's transaction was already {desc.state} when the checks ran: "
                    f"this machine is too slow for a 6 s transaction timeout")
    assert hw == 11
    assert lso == 4, f"ListOffsets(read_committed) = {lso} with a transaction open at offset 4"
    assert blocked == [b"a0", b"a1", b"a2"], f"read_committed beyond the LSO: {blocked}"

    # After transaction.timeout.ms the coordinator aborts it; readers proceed past it.
    def unblocked():
        return values(read_all(b.bootstrap, t, 1, "read_committed"))[0] == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"]
    poll_until(unblocked, timeout=60, what="read_committed past the timed-out transaction", interval=0.5)
    assert list_offsets(b.bootstrap, t, 0, committed=True) == list_offsets(b.bootstrap, t, 0, committed=False)
    assert values(read_all(b.bootstrap, t, 1, "read_uncommitted"))[0] == [
        b"a0", b"a1", b"a2", b"s0", b"s1", b"s2", b"b0", b"b1", b"b2"]
    kp = kafka_python_admin(b.bootstrap)
    try:
        state = kp.describe_transactions([zombie_id])[zombie_id].state.value
    finally:
        kp.close()
    assert state in ("CompleteAbort", "PrepareAbort"), f"timed-out transaction is {state}"
    # the transactional id is usable again
    pz = txn_producer(b.bootstrap, zombie_id)
    pz.begin_transaction()
    _produce_txn(pz, t, [(0, b"z0")])
    pz.commit_transaction(30)
    assert values(read_all(b.bootstrap, t, 1, "read_committed"))[0][-1] == b"z0"


@pytest.mark.slow
def test_broker_kill9_mid_transaction(broker):
    t = unique_topic("txkill")
    P = 2
    create_topic(broker, t, partitions=P)
    txn_id = unique_topic("k9")
    p1 = txn_producer(broker.bootstrap, txn_id, **{"message.timeout.ms": 10000})
    p1.begin_transaction()
    _produce_txn(p1, t, [(q, b"c%d-%d" % (q, i)) for i in range(3) for q in range(P)])
    p1.commit_transaction(30)
    p1.begin_transaction()
    _produce_txn(p1, t, [(q, b"d%d-%d" % (q, i)) for i in range(3) for q in range(P)])

    broker.kill9()
    broker.start()
    committed_c = {q: [b"c%d-%d" % (q, i) for i in range(3)] for q in range(P)}
    # The interrupted transaction is still open after recovery: readers stop at its start.
    assert values(read_all(broker.bootstrap, t, P, "read_committed")) == committed_c
    for q in range(P):
        assert list_offsets(broker.bootstrap, t, q, committed=True) == 4, "LSO after recovery"

    # A new producer with the same id aborts it, then transacts normally.
    p2 = txn_producer(broker.bootstrap, txn_id)
    p2.begin_transaction()
    _produce_txn(p2, t, [(q, b"e%d-%d" % (q, i)) for i in range(3) for q in range(P)])
    p2.commit_transaction(30)
    expected = {q: committed_c[q] + [b"e%d-%d" % (q, i) for i in range(3)] for q in range(P)}
    assert values(read_all(broker.bootstrap, t, P, "read_committed")) == expected
    ru = values(read_all(broker.bootstrap, t, P, "read_uncommitted"))
    for q in range(P):
        assert ru[q] == committed_c[q] + [b"d%d-%d" % (q, i) for i in range(3)] + expected[q][3:]
    # the zombie cannot commit its transaction
    with pytest.raises(KafkaException):
        p1.commit_transaction(15)
    assert values(read_all(broker.bootstrap, t, P, "read_committed")) == expected

    # and once more across a graceful restart
    broker.restart()
    assert values(read_all(broker.bootstrap, t, P, "read_committed")) == expected


def test_list_offsets_isolation_returns_lso(broker):
    t = unique_topic("txlso")
    create_topic(broker, t, partitions=1)
    p = txn_producer(broker.bootstrap, unique_topic("lso"))
    p.begin_transaction()
    _produce_txn(p, t, [(0, b"x%d" % i) for i in range(3)])
    p.commit_transaction(30)                                   # 0-2, marker 3
    assert list_offsets(broker.bootstrap, t, 0, committed=False) == 4
    assert list_offsets(broker.bootstrap, t, 0, committed=True) == 4

    p.begin_transaction()
    _produce_txn(p, t, [(0, b"y%d" % i) for i in range(2)])    # 4-5, open
    assert list_offsets(broker.bootstrap, t, 0, committed=False) == 6
    assert list_offsets(broker.bootstrap, t, 0, committed=True) == 4
    # the same through kafka-python's consumer
    from kafka import KafkaConsumer, TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                       request_timeout_ms=15000)
    ku = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_uncommitted",
                       request_timeout_ms=15000)
    try:
        assert kc.end_offsets([KTP(t, 0)]) == {KTP(t, 0): 4}
        assert ku.end_offsets([KTP(t, 0)]) == {KTP(t, 0): 6}
        p.commit_transaction(30)                               # marker 6
        assert kc.end_offsets([KTP(t, 0)]) == {KTP(t, 0): 7}
        assert ku.end_offsets([KTP(t, 0)]) == {KTP(t, 0): 7}
    finally:
        kc.close()
        ku.close()

    p.begin_transaction()
    _produce_txn(p, t, [(0, b"z0")])                            # 7, open
    assert list_offsets(broker.bootstrap, t, 0, committed=True) == 7
    p.abort_transaction(30)                                    # marker 8
    assert list_offsets(broker.bootstrap, t, 0, committed=True) == 9
    assert list_offsets(broker.bootstrap, t, 0, committed=False) == 9
    assert values(read_all(broker.bootstrap, t, 1, "read_committed"))[0] == [
        b"x0", b"x1", b"x2", b"y0", b"y1"]


def test_describe_and_list_transactions_and_producers(broker):
    from kafka import TopicPartition as KTP
    from kafka.errors import KafkaError as KPError

    t = unique_topic("txdesc")
    create_topic(broker, t, partitions=2)
    txn_id = unique_topic("desc")
    p = txn_producer(broker.bootstrap, txn_id, **{"transaction.timeout.ms": 45000})
    p.begin_transaction()
    _produce_txn(p, t, [(0, b"a"), (0, b"b"), (1, b"c")])
    kp = kafka_python_admin(broker.bootstrap)
    try:
        d = kp.describe_transactions([txn_id])[txn_id]
        assert d.state.value == "Ongoing", d
        assert d.producer_id >= 0 and d.producer_epoch >= 0, d
        assert d.transaction_timeout_ms == 45000, d
        assert d.transaction_start_time_ms > 0, d
        assert d.topic_partitions == {KTP(t, 0), KTP(t, 1)}, d
        pid, epoch = d.producer_id, d.producer_epoch

        listed = [x for rows in kp.list_transactions().values() for x in rows]
        mine = [x for x in listed if x.transactional_id == txn_id]
        assert len(mine) == 1 and mine[0].producer_id == pid and mine[0].state.value == "Ongoing", listed
        ongoing = [x for rows in kp.list_transactions(state_filters=["Ongoing"]).values() for x in rows]
        assert txn_id in [x.transactional_id for x in ongoing]
        done = [x for rows in kp.list_transactions(state_filters=["CompleteCommit"]).values() for x in rows]
        assert txn_id not in [x.transactional_id for x in done]
        by_pid = [x for rows in kp.list_transactions(producer_id_filters=[pid]).values() for x in rows]
        assert [x.transactional_id for x in by_pid] == [txn_id], by_pid

        prods = kp.describe_producers([KTP(t, 0), KTP(t, 1)])
        for q, n, start in ((0, 2, 0), (1, 1, 0)):
            act = [s for s in prods[KTP(t, q)].active_producers if s.producer_id == pid]
            assert len(act) == 1, prods
            s = act[0]
            assert s.producer_epoch == epoch and s.last_sequence == n - 1, s
            assert s.current_transaction_start_offset == start, s

        p.commit_transaction(30)
        d = kp.describe_transactions([txn_id])[txn_id]
        assert d.state.value == "CompleteCommit", d
        assert d.topic_partitions == set(), d
        prods = kp.describe_producers([KTP(t, 0)])
        s = [s for s in prods[KTP(t, 0)].active_producers if s.producer_id == pid][0]
        assert s.current_transaction_start_offset == -1, s

        with pytest.raises(KPError) as ei:
            kp.describe_transactions([unique_topic("nosuch")])
        assert "TransactionalIdNotFound" in type(ei.value).__name__, repr(ei.value)
    finally:
        kp.close()


def test_lost_coordinator_and_produce_responses_are_retried_safely(proxied_broker):
    """The proxy drops the connection after the broker handled AddPartitionsToTxn, a
    transactional Produce, AddOffsetsToTxn/TxnOffsetCommit and EndTxn, before the client saw the
    answer; the client retries each, and the result is still each record exactly once and the
    offsets committed once."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    import kwire
    from helpers import RDKAFKA_LOGGER

    b, proxy = proxied_broker
    t = unique_topic("txlost")
    src = unique_topic("txsrc")
    create_topic(b, t, partitions=2)
    create_topic(b, src, partitions=1)
    group = unique_topic("txgroup")
    p = txn_producer(proxy.address, unique_topic("lost"), **{"retry.backoff.ms": 50,
                                                             "reconnect.backoff.ms": 50})
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for txn in range(3):
            proxy.drop_response(kwire.ADD_PARTITIONS_TO_TXN, nth={1})
            proxy.drop_response(kwire.PRODUCE, nth={2})
            proxy.drop_response(25, nth={1})   # AddOffsetsToTxn
            proxy.drop_response(28, nth={1})   # TxnOffsetCommit
            proxy.drop_response(kwire.END_TXN, nth={1})
            p.begin_transaction()
            recs = [(q, b"r%d-%d-%d" % (txn, q, i)) for i in range(4) for q in range(2)]
            for q, v in recs:
                p.produce(t, partition=q, value=v)
                p.flush(30)  # one produce request per record, so the 2nd one's ack is lost
            p.send_offsets_to_transaction([TopicPartition(src, 0, 10 * (txn + 1))],
                                          c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            proxy.clear_rules()
    finally:
        c.close()
    lost = proxy.count("drop_response")
    assert lost >= 12, f"only {lost} responses were lost: the faults were not exercised"
    expected = {q: [b"r%d-%d-%d" % (txn, q, i) for txn in range(3) for i in range(4)] for q in range(2)}
    assert values(read_all(b.bootstrap, t, 2, "read_committed")) == expected
    assert values(read_all(b.bootstrap, t, 2, "read_uncommitted")) == expected
    a = AdminClient({"bootstrap.servers": b.bootstrap}, logger=RDKAFKA_LOGGER)
    res = a.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(src, 0)])], require_stable=True)
    got = res[group].result(timeout=15).topic_partitions
    assert [(tp.topic, tp.partition, tp.offset) for tp in got] == [(src, 0, 30)]
