"""Randomized transactional history checker, in the spirit of Jepsen's Kafka workload.

Several transactional producers (threads, one confluent-kafka producer each) run random
transactions: random sends to random partitions of two topics, then commit or abort at random,
and now and then a new producer with the same transactional.id takes over in the middle of a
transaction (fencing the old one, whose commit must fail).  Each records what it sent and every
transaction's outcome (committed, aborted, or unknown when the client could not tell).
Meanwhile read_committed consumers (threads) read every partition from the start and record
what they saw, in order.  The checker then asserts:

* no lost writes: every record of a committed transaction is read by every consumer;
* no aborted reads: no record of an aborted transaction is ever read;
* atomicity of unknown outcomes: all of a transaction's records are read, or none;
* no duplicates and no phantoms (records nobody sent);
* order: one producer's records to one partition are read in send order, and all consumers
  read every partition identically (same records at the same offsets).

Randomness is seeded; the seed is printed and in every failure message
(rerun with FJORD_TXN_HISTORY_SEED=<seed>).  Variants: the slow one kill -9s the broker
mid-run; another puts the producers behind the fault proxy, which drops connections after the
broker handled produce, AddPartitionsToTxn or EndTxn requests (answers lost, clients retry).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from helpers import RDKAFKA_LOGGER, create_topic, unique_topic
from txnhelpers import read_all

WORKERS = 4
TXNS_PER_WORKER = 50
PARTITIONS = 3


class Txn:
    def __init__(self, worker, number, gen):
        self.worker, self.number, self.gen = worker, number, gen
        self.sends: list[tuple[str, int, bytes]] = []   # (topic, partition, value) in send order
        self.outcome = "open"                          # committed | aborted | unknown
        self.fenced = False
        self.note = ""


ABORT = threading.Event()  # set when a test ends: background threads stop at once


def _new_producer(bootstrap, txn_id):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": 30000, "linger.ms": 2, "message.timeout.ms": 30000,
                  "retry.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
                  # no re-bootstrap when the broker goes away (see test_transactions.py)
                  "metadata.recovery.strategy": "none"},
                 logger=RDKAFKA_LOGGER)
    deadline = time.monotonic() + 60
    while True:
        try:
            p.init_transactions(20)
            return p
        except KafkaException as e:
            if e.args[0].fatal() or time.monotonic() > deadline or ABORT.is_set():
                raise
            time.sleep(0.2)  # retriable, e.g. coordinator still loading after a restart


class Worker(threading.Thread):
    def __init__(self, k, bootstrap, tps, seed, progress):
        super().__init__(daemon=True, name=f"txn-worker-{k}")
        self.k, self.bootstrap, self.tps = k, bootstrap, tps
        self.rng = random.Random(seed * 1000 + k)
        self.txn_id = unique_topic(f"hist{k}")
        self.txns: list[Txn] = []
        self.gen = 0
        self.progress = progress
        self.error: BaseException | None = None
        self.violations: list[str] = []

    def run(self):
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.error = e

    def _finish(self, p, txn) -> Producer:
        """Commit (retrying what the client says is retriable); returns the producer to go on with."""
        for _ in range(5):
            try:
                p.commit_transaction(30)
                txn.outcome = "committed"
                return p
            except KafkaException as e:
                err = e.args[0]
                txn.note = str(err)
                if err.retriable():
                    continue
                if err.txn_requires_abort():
                    try:
                        p.abort_transaction(30)
                        txn.outcome = "aborted"   # the client knows the commit did not happen
                        return p
                    except KafkaException as e2:
                        txn.note += f"; abort: {e2.args[0]}"
                break
        txn.outcome = "unknown"
        self.gen += 1
        return _new_producer(self.bootstrap, self.txn_id)

    def _run(self):
        p = _new_producer(self.bootstrap, self.txn_id)
        for n in range(TXNS_PER_WORKER):
            if ABORT.is_set():
                return
            txn = Txn(self.k, n, self.gen)
            self.txns.append(txn)
            try:
                p.begin_transaction()
                for i in range(self.rng.randint(1, 8)):
                    topic, part = self.rng.choice(self.tps)
                    value = b"%d:%d:%d:%d" % (self.k, self.gen, n, i)
                    while True:
                        try:
                            p.produce(topic, partition=part, value=value)
                            break
                        except BufferError:
                            p.poll(0.05)
                    txn.sends.append((topic, part, value))
                    if self.rng.random() < 0.3:
                        p.poll(0)
                p.flush(30)  # aborted data reaches the log too
                r = self.rng.random()
                if r < 0.1:
                    # take over: a new instance with the same transactional.id fences this one
                    self.gen += 1
                    newer = _new_producer(self.bootstrap, self.txn_id)
                    txn.fenced = True
                    try:
                        p.commit_transaction(15)
                        txn.outcome = "committed"
                        self.violations.append(f"fenced producer {self.k} committed txn {n}")
                    except KafkaException as e:
                        txn.outcome = "aborted"  # InitProducerId aborted it; the commit never happened
                        txn.note = str(e.args[0])
                    p = newer
                elif r < 0.65:
                    p = self._finish(p, txn)
                else:
                    try:
                        p.abort_transaction(30)
                        txn.outcome = "aborted"
                    except KafkaException as e:
                        txn.outcome, txn.note = "unknown", str(e.args[0])
                        self.gen += 1
                        p = _new_producer(self.bootstrap, self.txn_id)
            except KafkaException as e:
                txn.outcome, txn.note = "unknown", f"{txn.note}; {e.args[0]}"
                self.gen += 1
                p = _new_producer(self.bootstrap, self.txn_id)
            self.progress.append(1)


class Reader(threading.Thread):
    """A read_committed consumer of every partition from offset 0, recording what it sees."""

    def __init__(self, name, bootstrap, tps, stop):
        super().__init__(daemon=True, name=name)
        self.bootstrap, self.tps, self.stop = bootstrap, tps, stop
        self.seen: dict[tuple[str, int], list[tuple[int, bytes]]] = defaultdict(list)
        self.error: BaseException | None = None

    def run(self):
        try:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "fjord-history-unused",
                          "enable.auto.commit": False, "enable.partition.eof": True,
                          "isolation.level": "read_committed", "fetch.wait.max.ms": 50,
                          "reconnect.backoff.max.ms": 500}, logger=RDKAFKA_LOGGER)
            c.assign([TopicPartition(t, q, 0) for t, q in self.tps])
            at_end = set()
            while not (self.stop.is_set() and len(at_end) == len(self.tps)) and not ABORT.is_set():
                msg = c.poll(0.1)
                if msg is None:
                    continue
                tp = (msg.topic(), msg.partition())
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(tp)
                    elif msg.error().fatal():
                        raise KafkaException(msg.error())
                    continue
                at_end.discard(tp)
                self.seen[tp].append((msg.offset(), msg.value()))
            c.close()
        except BaseException as e:
            self.error = e


def check_history(workers, readers, uncommitted_seen):
    """Returns a list of violations (empty = the history is valid)."""
    problems: list[str] = []
    txn_of: dict[bytes, Txn] = {}
    for w in workers:
        problems += w.violations
        for txn in w.txns:
            for _, _, v in txn.sends:
                txn_of[v] = txn
    visible_unknown: dict[int, set] = {}
    for r in readers:
        seen_values: dict[bytes, tuple] = {}
        for tp, rows in r.seen.items():
            offs = [o for o, _ in rows]
            if offs != sorted(set(offs)):
                problems.append(f"{r.name}: offsets of {tp} not strictly increasing")
            for o, v in rows:
                if v in seen_values:
                    problems.append(f"{r.name}: duplicate {v!r} at {tp}@{o} and {seen_values[v]}")
                seen_values[v] = (tp, o)
                txn = txn_of.get(v)
                if txn is None:
                    problems.append(f"{r.name}: phantom record {v!r} at {tp}@{o}")
                elif txn.outcome == "aborted":
                    problems.append(f"{r.name}: aborted read {v!r} at {tp}@{o} (txn {txn.worker}/{txn.number}, "
                                    f"fenced={txn.fenced})")
        vis = set()
        for w in workers:
            for txn in w.txns:
                got = [v for _, _, v in txn.sends if v in seen_values]
                if txn.outcome == "committed" and len(got) != len(txn.sends):
                    missing = [v for _, _, v in txn.sends if v not in seen_values]
                    problems.append(f"{r.name}: lost writes of committed txn {txn.worker}/{txn.number}: {missing}")
                if txn.outcome == "unknown":
                    if got and len(got) != len(txn.sends):
                        problems.append(f"{r.name}: txn {txn.worker}/{txn.number} (unknown outcome) "
                                        f"partially visible: {len(got)} of {len(txn.sends)}")
                    if got:
                        vis.add(id(txn))
        visible_unknown[id(r)] = vis
        # per producer, per partition: send order of the visible transactions
        for w in workers:
            expected = defaultdict(list)
            for txn in w.txns:
                if txn.outcome == "committed" or id(txn) in vis:
                    for topic, part, v in txn.sends:
                        expected[(topic, part)].append(v)
            for tp in set(expected) | set(r.seen):
                got = [v for _, v in r.seen.get(tp, []) if txn_of.get(v) is not None and txn_of[v].worker == w.k]
                if got != expected.get(tp, []):
                    problems.append(f"{r.name}: producer {w.k} on {tp}: read {len(got)} records "
                                    f"{got[:6]}... expected {len(expected.get(tp, []))} {expected.get(tp, [])[:6]}...")
    if len({frozenset(v) for v in visible_unknown.values()}) > 1:
        problems.append("readers disagree on which unknown-outcome transactions are visible")
    first = readers[0]
    for r in readers[1:]:
        for tp in set(first.seen) | set(r.seen):
            if first.seen.get(tp, []) != r.seen.get(tp, []):
                problems.append(f"{first.name} and {r.name} disagree on {tp}")
    aborted_in_log = [v for v, t in txn_of.items() if t.outcome == "aborted" and v in uncommitted_seen]
    if not aborted_in_log:
        problems.append("no aborted record is in the log at all: the aborted-read check is vacuous")
    return problems


def _run_history(broker, kill_broker: bool, proxy=None):
    ABORT.clear()
    try:
        return _history(broker, kill_broker, proxy)
    finally:
        ABORT.set()


def _history(broker, kill_broker: bool, proxy):
    seed = int(os.environ.get("FJORD_TXN_HISTORY_SEED", random.randrange(2**31)))
    print(f"txn history seed: {seed} (rerun: FJORD_TXN_HISTORY_SEED={seed})")
    topics = [unique_topic("histA"), unique_topic("histB")]
    for t in topics:
        create_topic(broker, t, partitions=PARTITIONS)
    tps = [(t, q) for t in topics for q in range(PARTITIONS)]
    stop = threading.Event()
    readers = [Reader(f"reader{i}", broker.bootstrap, tps, stop) for i in range(2)]
    for r in readers:
        r.start()
    progress: list[int] = []
    if proxy is not None:
        # producers go through the proxy, which loses the answers to some produce,
        # AddPartitionsToTxn and EndTxn requests after the broker handled them
        for api_key in (0, 24, 26):
            proxy.drop_response(api_key, probability=0.04, limit=8, seed=seed + api_key)
    producer_bootstrap = proxy.address if proxy is not None else broker.bootstrap
    workers = [Worker(k, producer_bootstrap, tps, seed, progress) for k in range(WORKERS)]
    for w in workers:
        w.start()
    if kill_broker:
        total = WORKERS * TXNS_PER_WORKER
        deadline = time.monotonic() + 120
        while len(progress) < total * 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(progress) < total, f"seed {seed}: the run ended before the broker kill"
        broker.kill9()
        broker.start()
    for w in workers:
        w.join(timeout=180)
        assert not w.is_alive(), f"seed {seed}: worker {w.k} hung"
        if w.error is not None:
            raise AssertionError(f"seed {seed}: worker {w.k} failed: {w.error!r}") from w.error
    stop.set()
    for r in readers:
        r.join(timeout=60)
        assert not r.is_alive(), f"seed {seed}: {r.name} never reached the end of every partition"
        if r.error is not None:
            raise AssertionError(f"seed {seed}: {r.name} failed: {r.error!r}") from r.error

    uncommitted_seen = set()
    for t in topics:
        for msgs in read_all(broker.bootstrap, t, PARTITIONS, "read_uncommitted", timeout=60).values():
            uncommitted_seen.update(m.value() for m in msgs)
    outcomes = defaultdict(int)
    for w in workers:
        for txn in w.txns:
            outcomes[txn.outcome + ("/fenced" if txn.fenced else "")] += 1
    read = sum(len(v) for v in readers[0].seen.values())
    print(f"txn history seed {seed}: outcomes {dict(outcomes)}, {read} records read committed, "
          f"{len(uncommitted_seen)} in the log")
    problems = check_history(workers, readers, uncommitted_seen)
    assert not problems, f"seed {seed}: {len(problems)} violations:\n" + "\n".join(problems[:30])
    assert outcomes["committed"] >= 10 and outcomes["aborted"] >= 5, f"seed {seed}: {dict(outcomes)}"
    if proxy is not None:
        lost = proxy.count("drop_response")
        print(f"txn history seed {seed}: {lost} responses lost by the proxy")
        assert lost >= 3, f"seed {seed}: only {lost} responses lost: faults not exercised"
    if not kill_broker and proxy is None:
        assert outcomes["unknown"] == 0, (
            f"seed {seed}: transactions failed without any fault injected: "
            + "; ".join(f"{w.k}/{t.number}: {t.note}" for w in workers for t in w.txns if t.outcome == "unknown"))
    return outcomes


def test_txn_history_random_commits_aborts_fencing(broker):
    _run_history(broker, kill_broker=False)


@pytest.mark.slow
def test_txn_history_with_broker_kill9(broker):
    _run_history(broker, kill_broker=True)


def test_txn_history_with_lost_responses(proxied_broker):
    broker, proxy = proxied_broker
    _run_history(broker, kill_broker=False, proxy=proxy)


def test_checker_detects_anomalies():
    """The checker itself (no broker): a valid synthetic history passes, and each kind of
    anomaly injected into it is reported."""
    import copy
    from types import SimpleNamespace

    def history():
        w0 = SimpleNamespace(k=0, violations=[], txns=[])
        w1 = SimpleNamespace(k=1, violations=[], txns=[])
        for w in (w0, w1):
            for n, outcome in enumerate(["committed", "aborted", "committed", "unknown"]):
                txn = Txn(w.k, n, 0)
                txn.outcome = outcome
                txn.sends = [("t", q, b"%d:0:%d:%d" % (w.k, n, q)) for q in (0, 1)]
                w.txns.append(txn)
        # log order: w0 t0, w1 t0, w1 t2, w0 t2, w0 t3 (unknown, visible); w1 t3 invisible
        order = [(0, 0), (1, 0), (1, 2), (0, 2), (0, 3)]
        seen = {("t", q): [(i, b"%d:0:%d:%d" % (k, n, q)) for i, (k, n) in enumerate(order)]
                for q in (0, 1)}
        readers = [SimpleNamespace(name=f"r{i}", seen=copy.deepcopy(seen)) for i in range(2)]
        uncommitted = {b"0:0:1:0", b"1:0:1:1"}
        return [w0, w1], readers, uncommitted

    assert check_history(*history()) == []

    def broken(mutate):
        ws, rs, un = history()
        mutate(ws, rs)
        return "\n".join(check_history(ws, rs, un))

    def drop(ws, rs):       # lost write of w1 t0 on partition 0
        del rs[0].seen[("t", 0)][1]
    assert "lost writes" in broken(drop)

    def aborted(ws, rs):    # w0 t1 was aborted but is read
        rs[0].seen[("t", 0)].append((9, b"0:0:1:0"))
    assert "aborted read" in broken(aborted)

    def dup(ws, rs):
        rs[1].seen[("t", 1)].append((9, b"0:0:0:1"))
    assert "duplicate" in broken(dup)

    def phantom(ws, rs):
        rs[0].seen[("t", 1)].append((9, b"7:7:7:7"))
    assert "phantom" in broken(phantom)

    def partial(ws, rs):    # unknown txn w0 t3 visible on partition 0 only
        for r in rs:
            r.seen[("t", 1)] = [x for x in r.seen[("t", 1)] if x[1] != b"0:0:3:1"]
    assert "partially visible" in broken(partial)

    def reorder(ws, rs):    # w1's t2 before its t0 on partition 1 (same offsets for both readers)
        for r in rs:
            rows = r.seen[("t", 1)]
            rows[1], rows[2] = (rows[1][0], rows[2][1]), (rows[2][0], rows[1][1])
    assert "producer 1 on ('t', 1)" in broken(reorder)

    def disagree(ws, rs):   # same records, but reader 1 sees them at other offsets
        rs[1].seen[("t", 0)] = [(o + 100, v) for o, v in rs[1].seen[("t", 0)]]
    assert "disagree" in broken(disagree)

    ws, rs, _ = history()
    assert "vacuous" in "\n".join(check_history(ws, rs, set()))
