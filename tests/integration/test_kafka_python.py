"""kafka-python 3.x against Fjord (it bootstraps with ApiVersions v4)."""

from __future__ import annotations

import time

import pytest

kafka = pytest.importorskip("kafka")
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.errors import TopicAlreadyExistsError  # noqa: E402

from helpers import create_topic, unique_topic  # noqa: E402

BASE_TS = 1_700_000_100_000


def _admin(b):
    return KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=15000)


def _consumer(b, **kw):
    conf = dict(bootstrap_servers=b.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=15000, fetch_max_wait_ms=100,
                consumer_timeout_ms=15000)
    conf.update(kw)
    return KafkaConsumer(**conf)


def _poll_n(c, n, timeout=20.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            out.extend(recs)
    assert len(out) >= n, f"consumed {len(out)} of {n} records"
    return out


def test_bootstrap_and_api_versions(broker):
    """kafka-python 3 opens with ApiVersions v4; if that reply does not decode it cannot bootstrap."""
    t = unique_topic("kp-boot")
    create_topic(broker, t, partitions=2)
    c = _consumer(broker)
    try:
        c.bootstrap(timeout_ms=15000)
        brokers = c._client.cluster.brokers()
        assert [(b.node_id, b.host, b.port) for b in brokers] == [(1, "127.0.0.1", broker.port)]
        assert t in c.topics()
        assert c.partitions_for_topic(t) == {0, 1}
        version = c._client.check_version(timeout_ms=10000)
        assert version is not None and tuple(version) >= (2, 8), version
    finally:
        c.close()


def test_admin_create_delete(broker):
    a = _admin(broker)
    try:
        t = unique_topic("kp-adm")
        res = a.create_topics({t: {"num_partitions": 3, "replication_factor": 1}})
        assert [x["error_code"] for x in res["topics"]] == [0]
        assert t in a.list_topics()
        desc = a.describe_topics([t])
        assert len(desc) == 1 and desc[0]["name"] == t
        assert sorted(p["partition_index"] for p in desc[0]["partitions"]) == [0, 1, 2]

        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics({t: {"num_partitions": 3, "replication_factor": 1}})

        res = a.delete_topics([t])
        assert [r["error_code"] for r in res["topics"]] == [0], res
        deadline = time.monotonic() + 10
        while t in a.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert t not in a.list_topics()
    finally:
        a.close()


def test_produce_consume_offsets(broker):
    t = unique_topic("kp")
    a = _admin(broker)
    try:
        a.create_topics({t: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        a.close()

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False,
                      linger_ms=5, request_timeout_ms=15000)
    try:
        futures = []
        for i in range(30):
            futures.append(p.send(t, key=f"k{i}".encode(), value=f"value-{i}".encode(), partition=0,
                                  headers=[("idx", str(i).encode()), ("src", b"kafka-python")],
                                  timestamp_ms=BASE_TS + i * 10))
        p.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futures]
        assert [m.offset for m in metas] == list(range(30))
    finally:
        p.close()

    tp = TopicPartition(t, 0)
    c = _consumer(broker)
    try:
        c.assign([tp])
        c.seek_to_beginning(tp)
        recs = _poll_n(c, 30)
        assert [r.offset for r in recs] == list(range(30))
        assert [r.key for r in recs] == [f"k{i}".encode() for i in range(30)]
        assert [r.value for r in recs] == [f"value-{i}".encode() for i in range(30)]
        assert [r.timestamp for r in recs] == [BASE_TS + i * 10 for i in range(30)]
        assert [list(r.headers) for r in recs] == [[("idx", str(i).encode()), ("src", b"kafka-python")]
                                                   for i in range(30)]

        assert c.end_offsets([tp]) == {tp: 30}
        assert c.beginning_offsets([tp]) == {tp: 0}
        res = c.offsets_for_times({tp: BASE_TS + 95})
        assert res[tp] is not None and res[tp].offset == 10 and res[tp].timestamp == BASE_TS + 100
        res = c.offsets_for_times({tp: BASE_TS + 10_000})
        assert res[tp] is None
    finally:
        c.close()


@pytest.mark.parametrize("codec", ["gzip", "lz4", "snappy", "zstd"])
def test_compressed_produce(broker, codec):
    t = unique_topic(f"kp-{codec}")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, enable_idempotence=False,
                      compression_type=codec, linger_ms=20, request_timeout_ms=15000)
    try:
        futs = [p.send(t, key=b"k", value=f"{codec}-{i}".encode() * 5, partition=0) for i in range(20)]
        p.flush(timeout=30)
        assert [f.get(timeout=30).offset for f in futs] == list(range(20))
    finally:
        p.close()
    c = _consumer(broker)
    try:
        tp = TopicPartition(t, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        recs = _poll_n(c, 20)
        assert [r.value for r in recs] == [f"{codec}-{i}".encode() * 5 for i in range(20)]
    finally:
        c.close()


def test_multi_partition_fetch_sessions(broker):
    """kafka-python uses incremental fetch sessions (KIP-227): consume 3 partitions while
    new data keeps arriving on some of them, so sessions must track per-partition positions."""
    t = unique_topic("kp-sess")
    a = _admin(broker)
    try:
        a.create_topics({t: {"num_partitions": 3, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        a.close()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False,
                      linger_ms=0, request_timeout_ms=15000)
    tps = [TopicPartition(t, i) for i in range(3)]
    c = _consumer(broker, fetch_max_wait_ms=200)
    expected = {tp: [] for tp in tps}
    got = {tp: [] for tp in tps}
    try:
        c.assign(tps)
        c.seek_to_beginning(*tps)
        for rnd in range(6):
            # each round writes to a rotating subset of partitions
            for part in range(3):
                if (rnd + part) % 3 == 2:
                    continue
                for j in range(5):
                    v = f"r{rnd}-p{part}-{j}".encode()
                    p.send(t, value=v, partition=part)
                    expected[tps[part]].append(v)
            p.flush(timeout=30)
            deadline = time.monotonic() + 20
            while any(len(got[tp]) < len(expected[tp]) for tp in tps) and time.monotonic() < deadline:
                for tp, recs in c.poll(timeout_ms=300).items():
                    got[tp].extend(r.value for r in recs)
            for tp in tps:
                assert got[tp] == expected[tp], f"round {rnd} {tp}: {got[tp][-5:]} vs {expected[tp][-5:]}"
        assert c.end_offsets(tps) == {tp: len(expected[tp]) for tp in tps}
    finally:
        c.close()
        p.close()
