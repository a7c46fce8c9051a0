"""Broker-only nodes (``process.roles=broker``): observers of the metadata quorum.

A 3-voter cluster plus broker-only node 4, which binds no controller listener, fetches the
committed metadata log from the voters (FetchMetadata on their controller listeners), keeps it
in its own ``__cluster_metadata-0`` (no ``quorum-state``) and registers and heartbeats like any
broker.  Checked: every node lists it, topics can be placed on it (explicitly and by RF=3 over 4
brokers), acks=all produce and consume go through it, a kill -9 + restart catches up the
metadata written while it was down, a late broker-only node starts from the voters' snapshot
(the voters snapshot every few KiB here), and a broker-only node of another cluster is refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import _register  # noqa: E402
from fjordcluster import (  # noqa: E402
    Bootstrap, Cluster, create_topic, raw_create_topic, read_meta_properties, wait_topic)
from helpers import consume_n, consumer, produce_all, producer, unique_topic  # noqa: E402

BROKER_ONLY = 4
# Small, so that the voters snapshot and trim their logs during the module and a late
# broker-only node must start from a snapshot.
SETTINGS = {"metadata.log.max.record.bytes.between.snapshots": 8192}
_OBSERVER_STARTED = re.compile(r"metadata observer started.*?next_index=(\d+)")


@pytest.fixture(scope="module")
def _observer_cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("observer"), settings=SETTINGS, brokers=1)
    try:
        c.start_all()
    except BaseException:
        c.kill_all()
        raise
    yield c
    problems = c.shutdown()
    c.kill_all()
    assert not problems, "\n".join(problems)


@pytest.fixture
def cluster(_observer_cluster, request) -> Cluster:
    _register(request, _observer_cluster)
    _observer_cluster.ensure_healthy()
    return _observer_cluster


def test_broker_only_node_is_an_observer_listed_by_every_node(cluster):
    assert cluster.voter_ids() == [1, 2, 3]
    assert cluster.broker_only_ids() == [BROKER_ONLY]
    everyone = set(cluster.ids())
    for n in cluster.ids():
        md = cluster.wait_brokers(everyone, n)
        assert md.brokers[BROKER_ONLY][2] == f"rack-{BROKER_ONLY}"
    node = cluster.node(BROKER_ONLY)
    log = node.log_text()
    assert "metadata observer started" in log, log[-3000:]
    assert "became the active controller" not in log
    # The voters' layout minus quorum-state; the cluster id formed from the fetched log.
    metadata_dir = node.data_dir / "__cluster_metadata-0"
    assert (metadata_dir / "raft-entries.log").exists() or list(metadata_dir.glob("*.checkpoint"))
    assert not (metadata_dir / "quorum-state").exists()
    ours = read_meta_properties(cluster.node(1).data_dir)["cluster.id"]
    assert read_meta_properties(node.data_dir)["cluster.id"] == ours
    assert cluster.raw_metadata(BROKER_ONLY).cluster_id == ours
    # It never became a voter: the active controller is one of the three.
    leader = cluster.wait_for("an active controller", cluster.active_controller)
    assert leader in (1, 2, 3)


def test_cluster_status_shows_the_broker_only_node(cluster):
    # Asked through the broker-only node itself: it answers from its image, and forwards
    # DescribeQuorum to the quorum's leader (as Kafka brokers do).
    def status():
        proc = subprocess.run(
            [str(cluster.binary), "cluster", "status", "--bootstrap",
             cluster.node(BROKER_ONLY).bootstrap, "--output", "json"],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = json.loads(proc.stdout)
        roles = {b["node_id"]: (b["roles"], b["fenced"]) for b in out["brokers"]}
        return out if roles.get(BROKER_ONLY) == ("broker", False) else None
    out = cluster.wait_for("broker 4 listed as broker-only by fjord cluster status", status)
    roles = {b["node_id"]: b["roles"] for b in out["brokers"]}
    assert roles == {1: "broker,controller", 2: "broker,controller", 3: "broker,controller",
                     BROKER_ONLY: "broker"}
    assert sorted(v["node_id"] for v in out["quorum"]["voters"]) == [1, 2, 3]
    # DescribeQuorum lists it as an observer (Kafka's term for a broker-only node), with the
    # metadata offset of its last heartbeat.
    proc = subprocess.run(
        [str(cluster.binary), "cluster", "describe-quorum", "--bootstrap",
         cluster.node(BROKER_ONLY).bootstrap, "--output", "json"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    quorum = json.loads(proc.stdout)
    observers = {o["node_id"]: o for o in quorum["observers"]}
    assert BROKER_ONLY in observers and not set(observers) & {1, 2, 3}, quorum


def test_topics_are_placed_on_the_broker_only_node(cluster):
    topic = unique_topic("explicit")
    assignment = {0: [BROKER_ONLY, 1, 2], 1: [1, BROKER_ONLY, 3], 2: [2, 3, BROKER_ONLY]}
    err, message = raw_create_topic(cluster.node(BROKER_ONLY).client_port, topic,
                                    assignments=assignment)
    assert err == 0, message
    view = wait_topic(cluster, topic, 3)
    assert {p: part.replicas for p, part in view.partitions.items()} == assignment
    assert view.partitions[0].leader == BROKER_ONLY

    spread = unique_topic("rf3")
    view = create_topic(cluster, spread, partitions=8, rf=3,
                        bootstrap=cluster.bootstrap_of(BROKER_ONLY))
    holders = {b for part in view.partitions.values() for b in part.replicas}
    assert holders == {1, 2, 3, BROKER_ONLY}
    assert all(len(set(part.replicas)) == 3 for part in view.partitions.values())
    assert BROKER_ONLY in {part.leader for part in view.partitions.values()}


def test_acks_all_produce_and_consume_through_the_broker_only_node(cluster):
    topic = unique_topic("through4")
    assignment = {0: [BROKER_ONLY, 1, 2], 1: [1, BROKER_ONLY, 3]}
    err, message = raw_create_topic(cluster.node(BROKER_ONLY).client_port, topic,
                                    assignments=assignment,
                                    configs={"min.insync.replicas": "2"})
    assert err == 0, message
    wait_topic(cluster, topic, 2)
    only4 = Bootstrap(cluster.bootstrap_of(BROKER_ONLY))
    p = producer(only4, acks="all")
    expected = {}
    for partition in (0, 1):
        values = [f"p{partition}-{i}".encode() for i in range(100)]
        produce_all(p, topic, [{"value": v} for v in values], partition=partition).assert_all_ok(100)
        expected[partition] = values
    c = consumer(only4)
    try:
        c.assign([TopicPartition(topic, partition, 0) for partition in (0, 1)])
        got = consume_n(c, 200, timeout=30)
    finally:
        c.close()
    by_partition = {}
    for m in got:
        by_partition.setdefault(m.partition(), []).append(m.value())
    assert by_partition == expected
    # acks=all: the followers hold everything too (the ISR had to acknowledge it).
    for partition, replicas in assignment.items():
        view = cluster.raw_metadata(BROKER_ONLY, [topic]).topics[topic].partitions[partition]
        assert set(view.isr) >= {view.leader}
        assert len(view.isr) >= 2


def test_kill9_and_restart_catch_up_metadata_written_while_down(cluster):
    node = cluster.node(BROKER_ONLY)
    starts_before = len(_OBSERVER_STARTED.findall(node.log_text()))
    cluster.kill(BROKER_ONLY)
    topics = [unique_topic("while-down") for _ in range(3)]
    for topic in topics:
        err, message = raw_create_topic(cluster.node(1).client_port, topic, partitions=2,
                                        replication_factor=2)
        assert err == 0, message
    cluster.start(BROKER_ONLY)
    # It resumed from its own log (not from index 1) ...
    starts = _OBSERVER_STARTED.findall(node.log_text())
    assert len(starts) == starts_before + 1
    assert int(starts[-1]) > 1, starts
    # ... and fetched what it missed.
    for topic in topics:
        wait_topic(cluster, topic, 2, n=BROKER_ONLY)
    cluster.wait_brokers(set(cluster.ids()), BROKER_ONLY)
    for n in (1, 2, 3):
        cluster.wait_brokers(set(cluster.ids()), n)


def test_a_late_broker_only_node_starts_from_the_voters_snapshot(cluster):
    # Enough metadata for every voter to have snapshotted (and trimmed its log) past the start.
    def every_voter_snapshotted():
        if all(list((cluster.node(n).data_dir / "__cluster_metadata-0").glob("*.checkpoint"))
               for n in cluster.voter_ids()):
            return True
        err, message = raw_create_topic(cluster.node(1).client_port, unique_topic("fill"),
                                        partitions=8, replication_factor=1)
        assert err == 0, message
        return False
    cluster.wait_for("a snapshot on every voter", every_voter_snapshotted, timeout=60)
    late = cluster.add_broker(start=False)
    try:
        late.start()
        log = late.log_text()
        assert "installed the voters' snapshot" in log, log[-4000:]
        everyone = set(cluster.ids())
        for n in cluster.ids():
            cluster.wait_brokers(everyone, n)
        topic = unique_topic("on-late")
        err, message = raw_create_topic(cluster.node(1).client_port, topic,
                                        assignments={0: [late.node_id, 1]})
        assert err == 0, message
        wait_topic(cluster, topic, 1, n=late.node_id)
    finally:
        late.stop()
        del cluster.nodes[late.node_id]
    # Unregistered brokers stay registered (fenced) in Kafka too; the others carry on.


def test_broker_only_node_of_another_cluster_is_refused(cluster):
    foreign = cluster.add_broker(start=False)
    ours = read_meta_properties(cluster.node(1).data_dir)["cluster.id"]
    foreign.data_dir.mkdir(parents=True, exist_ok=True)
    (foreign.data_dir / "meta.properties").write_text(
        f"#\nversion=1\nnode.id={foreign.node_id}\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    try:
        foreign.start(wait=False)
        try:
            foreign.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - reported below
            pass
        log = foreign.log_text()
        assert foreign.proc.returncode is not None, f"still runs\n{log[-4000:]}"
        assert foreign.proc.returncode != 0
        assert "INCONSISTENT_CLUSTER_ID" in log, log[-4000:]
        for n in (1, 2, 3):
            md = cluster.raw_metadata(n)
            assert md.cluster_id == ours
            assert foreign.node_id not in md.brokers
        assert any("INCONSISTENT_CLUSTER_ID" in cluster.node(n).log_text() for n in (1, 2, 3))
    finally:
        foreign.kill()
        del cluster.nodes[foreign.node_id]
