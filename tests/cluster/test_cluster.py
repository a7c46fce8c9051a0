"""A 3-node cluster of real ``fjord serve`` processes: formation, placement, failover of the
controller and of brokers, controlled shutdown, cluster identity, and a client on one node.

These hold without partition data replication (a follower's log may stay empty): they check the
metadata side (Raft quorum, registration, heartbeats, fencing, leader moves) that Kafka's KRaft
controller gives.  ``test_replication.py`` has the data-path tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fjordcluster import (  # noqa: E402
    INVALID_REPLICA_ASSIGNMENT, INVALID_REPLICATION_FACTOR, Bootstrap, create_topic,
    raw_create_topic, raw_quorum_leader, read_meta_properties, wait_topic)
from helpers import (  # noqa: E402
    OP_TIMEOUT, consume_n, consumer, error_code_of, produce_all, producer, unique_topic)


def leaders_of(topic_view) -> dict[int, int]:
    return {p: part.leader for p, part in topic_view.partitions.items()}


# --------------------------------------------------------------------------- 1. formation
def test_cluster_forms_with_one_id_and_racks(cluster):
    ids = set(cluster.ids())
    cluster_ids = {}
    for n in cluster.ids():
        md = cluster.raw_metadata(n)
        assert set(md.brokers) == ids, f"node {n} lists brokers {sorted(md.brokers)}"
        for b, (host, port, rack) in md.brokers.items():
            assert (host, port) == ("127.0.0.1", cluster.node(b).client_port), (n, b, host, port)
            assert rack == f"rack-{b}", f"node {n} says broker {b} is in rack {rack!r}"
        assert md.controller_id in ids, f"node {n} names controller {md.controller_id}"
        cluster_ids[n] = md.cluster_id
    assert len(set(cluster_ids.values())) == 1, f"nodes disagree on the cluster id: {cluster_ids}"
    cluster_id = cluster_ids[1]
    assert cluster_id, "empty cluster id"

    for n in cluster.ids():
        meta = read_meta_properties(cluster.node(n).data_dir)
        assert meta.get("cluster.id") == cluster_id, f"node {n} meta.properties: {meta}"
        assert meta.get("node.id") == str(n), f"node {n} meta.properties: {meta}"

    # The same through a real client, bootstrapped at each node alone.
    for n in cluster.ids():
        bootstrap = cluster.bootstrap_of(n)
        md = cluster.metadata(bootstrap=bootstrap)
        assert md.cluster_id == cluster_id
        assert set(md.brokers) == ids
        a = cluster.admin(bootstrap)   # must outlive the future
        desc = a.describe_cluster().result(timeout=OP_TIMEOUT)
        assert desc.cluster_id == cluster_id
        assert {node.id: node.rack for node in desc.nodes} == {b: f"rack-{b}" for b in ids}


def test_describe_quorum_is_answered_by_the_leader_and_forwarded_by_every_broker(cluster):
    leader = cluster.wait_for("a Raft leader", cluster.quorum_leader)
    for n in cluster.ids():
        # Controller listeners: only the Raft leader describes the quorum (KafkaRaftClient).
        on_controller = raw_quorum_leader(cluster.node(n).controller_port)
        assert on_controller == (leader if n == leader[0] else None), (n, on_controller)
        # Broker listeners forward to the leader, as Kafka brokers do.
        assert raw_quorum_leader(cluster.node(n).client_port) == leader, n
    # The CLI connected to a follower gets its answer from that broker.
    follower = next(n for n in cluster.ids() if n != leader[0])
    result = subprocess.run(
        [str(cluster.binary), "cluster", "describe-quorum", "--bootstrap",
         cluster.bootstrap_of(follower), "--output", "json"],
        capture_output=True, text=True, timeout=60, check=True)
    quorum = json.loads(result.stdout)
    assert quorum["answered_by"] == cluster.bootstrap_of(follower), quorum
    assert (quorum["leader_id"], quorum["leader_epoch"]) == leader, quorum
    assert sorted(v["node_id"] for v in quorum["voters"]) == sorted(cluster.ids()), quorum


# --------------------------------------------------------------------------- 2. placement
def test_create_topics_rf3_spreads_replicas_leaders_and_racks(cluster):
    topic = unique_topic("rf3")
    view = create_topic(cluster, topic, partitions=6, rf=3)
    ids = set(cluster.ids())
    for p, part in sorted(view.partitions.items()):
        assert len(part.replicas) == 3 and set(part.replicas) == ids, (p, part)
        assert part.leader in part.replicas, (p, part)
        assert part.leader == part.replicas[0], f"partition {p}: leader is not the preferred replica {part}"
        assert sorted(part.isr) == sorted(part.replicas), (p, part)
        assert part.offline == [], (p, part)
        racks = {cluster.node(b).rack for b in part.replicas}
        assert len(racks) == 3, f"partition {p} replicas {part.replicas} share racks"
    leaders = leaders_of(view)
    assert set(leaders.values()) == ids, f"leaders not spread over all brokers: {leaders}"
    # Every node serves the same assignment.
    for n in cluster.ids():
        other = cluster.raw_metadata(n, [topic]).topics[topic]
        assert {p: (x.leader, x.replicas) for p, x in other.partitions.items()} == \
            {p: (x.leader, x.replicas) for p, x in view.partitions.items()}, f"node {n} differs"


def test_create_topics_rf4_is_invalid_replication_factor(cluster):
    topic = unique_topic("rf4")
    a = cluster.admin()
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=4)], operation_timeout=10)
    with pytest.raises(KafkaException) as info:
        fs[topic].result(timeout=OP_TIMEOUT)
    assert error_code_of(info.value) == INVALID_REPLICATION_FACTOR
    # Sent to each node directly (forwarded to the active controller by the followers).
    for n in cluster.ids():
        err, message = raw_create_topic(cluster.node(n).client_port, topic, 1, 4)
        assert err == INVALID_REPLICATION_FACTOR, (n, err, message)
    assert topic not in cluster.raw_metadata(None, [topic]).topics or \
        cluster.raw_metadata(None, [topic]).topics[topic].error != 0


def test_create_topics_explicit_assignment_is_honoured(cluster):
    topic = unique_topic("assigned")
    assignment = [[2, 3], [3, 1], [1, 2], [3, 2]]
    view = create_topic(cluster, topic, partitions=4, rf=-1, assignment=assignment)
    for p, replicas in enumerate(assignment):
        part = view.partitions[p]
        assert part.replicas == replicas, (p, part)
        assert part.leader == replicas[0], (p, part)
    # Refused as Kafka does: a broker that is not registered, a broker twice in one partition,
    # partitions with different replica counts.
    for bad_assignment in ({0: [1, 9]}, {0: [2, 2]}, {0: [1, 2], 1: [3]}):
        bad = unique_topic("badassign")
        err, message = raw_create_topic(cluster.node(1).client_port, bad, assignments=bad_assignment)
        assert err == INVALID_REPLICA_ASSIGNMENT, (bad_assignment, err, message)


# ----------------------------------------------------------------- 3. controller failover
def test_active_controller_kill9_new_controller_serves_create_topics(cluster):
    active = cluster.wait_for("an active controller in the logs", cluster.active_controller)
    old_term = cluster.controller_terms()[active]
    cluster.kill(active)
    survivors = [n for n in cluster.ids() if n != active]

    new = cluster.wait_for("a new active controller", lambda: (
        cluster.active_controller() if cluster.active_controller() not in (None, active) else None))
    assert new in survivors
    assert cluster.controller_terms()[new] > old_term

    # CreateTopics through each survivor succeeds (forwarded to the new active controller).
    for n in survivors:
        topic = unique_topic(f"after-failover-{n}")
        result = cluster.wait_for(
            f"CreateTopics through node {n}",
            lambda: (lambda r: r if r[0] == 0 else None)(
                raw_create_topic(cluster.node(n).client_port, topic, 2, 2)),
            timeout=30)
        assert result[0] == 0
        view = wait_topic(cluster, topic, 2)
        assert all(len(p.replicas) == 2 for p in view.partitions.values())

    # The dead node is fenced, then restarts and is listed again everywhere.
    cluster.wait_brokers(set(survivors), survivors[0])
    cluster.start(active)
    for n in cluster.ids():
        cluster.wait_brokers(set(cluster.ids()), n)


# ---------------------------------------------------------------------- 4. broker kill -9
def test_broker_kill9_is_fenced_and_leaderships_move(cluster):
    topic = unique_topic("fence")
    before = create_topic(cluster, topic, partitions=6, rf=3)
    controller = cluster.active_controller()
    victim = next(n for n in cluster.ids() if n != controller
                  and any(p.leader == n for p in before.partitions.values()))
    led = {p: part for p, part in before.partitions.items() if part.leader == victim}
    survivors = [n for n in cluster.ids() if n != victim]
    expands_before = sum(metric(cluster.node(n), "fjord_isr_expands_total") for n in survivors)

    cluster.kill(victim)

    def moved(n):
        md = cluster.raw_metadata(n, [topic])
        if victim in md.brokers:
            return None
        t = md.topics[topic]
        for p, old in led.items():
            now = t.partitions[p]
            if now.leader not in survivors or now.leader_epoch <= old.leader_epoch:
                return None
        return t

    for n in survivors:
        t = cluster.wait_for(f"node {n}: broker {victim} fenced, its leaderships moved",
                             lambda: moved(n), timeout=30)
        for p, part in t.partitions.items():
            assert victim in part.offline, f"node {n}, partition {p}: offline {part.offline}"
            assert victim in part.replicas, "replica assignment must not change on fencing"
            assert victim not in part.isr, f"node {n}, partition {p}: isr {part.isr}"
            assert part.leader in part.isr
            if p not in led:
                assert part.leader == before.partitions[p].leader, \
                    f"partition {p} not led by {victim} changed leader: {before.partitions[p]} -> {part}"
    # Every partition of the topic now lacks the victim in its ISR: the surviving leaders
    # report them under-replicated (Kafka's UnderReplicatedPartitions).
    under = sum(metric(cluster.node(n), "fjord_under_replicated_partitions") for n in survivors)
    assert under >= len(before.partitions), f"under-replicated partitions reported: {under}"

    cluster.start(victim)
    for n in cluster.ids():
        cluster.wait_brokers(set(cluster.ids()), n)
    after = cluster.raw_metadata(victim, [topic]).topics[topic]
    for p, part in after.partitions.items():
        assert victim not in part.offline, f"partition {p} still lists {victim} offline: {part}"

    # Fencing took it out of every ISR at the controller; the surviving leaders put it back
    # with AlterPartition once it caught up, each counted (Kafka's IsrExpandsPerSec).
    def rejoined():
        t = cluster.raw_metadata(survivors[0], [topic]).topics[topic]
        return all(victim in part.isr for part in t.partitions.values())

    cluster.wait_for(f"broker {victim} back in every ISR", rejoined, timeout=60)
    expands = sum(metric(cluster.node(n), "fjord_isr_expands_total") for n in survivors)
    assert expands - expands_before >= len(before.partitions), (expands_before, expands)


def test_paused_broker_is_fenced_and_unfenced_after_resume(cluster):
    topic = unique_topic("pause")
    before = create_topic(cluster, topic, partitions=6, rf=3)
    controller = cluster.active_controller()
    victim = next(n for n in cluster.ids() if n != controller
                  and any(p.leader == n for p in before.partitions.values()))
    observer = next(n for n in cluster.ids() if n != victim)
    cluster.pause(victim)    # SIGSTOP: no heartbeats, sockets stay open
    try:
        cluster.wait_brokers({n for n in cluster.ids() if n != victim}, observer)
        t = cluster.raw_metadata(observer, [topic]).topics[topic]
        assert all(p.leader != victim and victim in p.offline for p in t.partitions.values()), t
    finally:
        cluster.resume(victim)
    # The same process heartbeats again and is unfenced (no restart, same broker epoch rules).
    for n in cluster.ids():
        cluster.wait_brokers(set(cluster.ids()), n)
    assert cluster.node(victim).is_running()
    assert cluster.node(victim).health() == 200


def test_paused_active_controller_is_replaced_and_follows_after_resume(cluster):
    active = cluster.wait_for("an active controller in the logs", cluster.active_controller)
    old_term = cluster.controller_terms()[active]
    cluster.pause(active)
    try:
        new = cluster.wait_for("a new active controller", lambda: (
            cluster.active_controller() if cluster.active_controller() not in (None, active) else None))
        assert cluster.controller_terms()[new] > old_term
    finally:
        cluster.resume(active)
    # The resumed node learns the higher term and follows: CreateTopics through it reaches the
    # new controller, and it rejoins as a broker.
    topic = unique_topic("after-pause")
    result = cluster.wait_for(
        f"CreateTopics through the resumed node {active}",
        lambda: (lambda r: r if r[0] == 0 else None)(
            raw_create_topic(cluster.node(active).client_port, topic, 3, 3)), timeout=30)
    assert result[0] == 0
    wait_topic(cluster, topic, 3)
    for n in cluster.ids():
        cluster.wait_brokers(set(cluster.ids()), n)
    assert cluster.active_controller() == new


# ------------------------------------------------------------------ 5. controlled shutdown
@pytest.mark.parametrize("which", ["broker", "active-controller"])
def test_sigterm_moves_leaderships_before_exit(cluster, which):
    topic = unique_topic("ctrl-shutdown")
    before = create_topic(cluster, topic, partitions=6, rf=3)
    controller = cluster.active_controller()
    if which == "active-controller":
        victim = controller
    else:
        victim = next(n for n in cluster.ids() if n != controller)
    led = {p: part for p, part in before.partitions.items() if part.leader == victim}
    assert led, f"node {victim} leads nothing: {before.partitions}"
    observer = next(n for n in cluster.ids() if n != victim)

    log_starts = {n: len(cluster.node(n).log_text()) for n in cluster.ids()}
    cluster.stop(victim)  # SIGTERM; returns once the process exited with code 0
    exited = time.monotonic()
    # Leaderships were moved before the process exited: an observer's Metadata shows it at
    # once (1 s covers the other node applying the committed record; fencing by session
    # timeout would take broker.session.timeout.ms = 3 s).
    last = None
    while True:
        t = cluster.raw_metadata(observer, [topic]).topics[topic]
        still = {p: x.leader for p, x in t.partitions.items() if x.leader == victim or x.leader < 0}
        if not still:
            break
        last = still
        assert time.monotonic() - exited < 1.0, (
            f"1 s after node {victim} exited, node {observer} still shows partitions led by it or "
            f"leaderless: {last}")
        time.sleep(0.05)
    for p, old in led.items():
        now = t.partitions[p]
        assert now.leader != victim and now.leader in now.replicas
        assert now.leader_epoch > old.leader_epoch, (p, old, now)
        assert victim not in now.isr, (p, now)
    # The logs tell the same without timing: the controller saw a controlled shutdown, not a
    # session timeout, and the node finished it before exiting.
    since = {n: cluster.node(n).log_text()[start:] for n, start in log_starts.items()}
    assert "controlled shutdown complete" in since[victim], since[victim][-3000:]
    assert any(f"broker enters controlled shutdown broker={victim}" in text for text in since.values())
    assert not any(f"its session timed out broker={victim}" in text for text in since.values())
    cluster.start(victim)
    for n in cluster.ids():
        cluster.wait_brokers(set(cluster.ids()), n)


# -------------------------------------------------------------------- 6. cluster identity
def test_data_dir_of_another_cluster_is_refused(cluster, cluster_factory, tmp_path):
    other = cluster_factory()
    other_id = read_meta_properties(other.node(1).data_dir)["cluster.id"]
    our_id = read_meta_properties(cluster.node(1).data_dir)["cluster.id"]
    assert other_id != our_id
    other.kill_all()
    foreign = other.copy_data_dir(1, tmp_path / "foreign")

    node = cluster.node(1)
    node.stop()
    original = tmp_path / "original"
    node.data_dir.rename(original)
    shutil.copytree(foreign, node.data_dir)
    log_start = len(node.log_text())
    try:
        node.start(wait=False)
        try:
            node.proc.wait(timeout=20)   # Kafka exits at the first refused request
        except Exception:  # noqa: BLE001 - reported below
            pass
        log = node.log_text()[log_start:]
        assert node.proc.returncode is not None, (
            f"node 1 with cluster {other_id}'s data dir still runs in cluster {our_id}\n{log[-4000:]}")
        assert node.proc.returncode != 0
        lines = [line for line in log.splitlines() if "INCONSISTENT_CLUSTER_ID" in line]
        assert lines, f"no INCONSISTENT_CLUSTER_ID line in the log:\n{log[-4000:]}"
        # Nothing of the foreign cluster leaked into ours.
        for n in (2, 3):
            md = cluster.raw_metadata(n)
            assert md.cluster_id == our_id
    finally:
        node.kill()
        shutil.rmtree(node.data_dir)
        original.rename(node.data_dir)
    cluster.start(1)
    for n in cluster.ids():
        cluster.wait_brokers(set(cluster.ids()), n)
    assert cluster.raw_metadata(1).cluster_id == our_id


# -------------------------------------------------------------- 7. a client on one node
def test_produce_acks1_and_consume_through_one_node(cluster):
    topic = unique_topic("client")
    create_topic(cluster, topic, partitions=3, rf=3)
    for n in cluster.ids():
        one = Bootstrap(cluster.bootstrap_of(n))
        p = producer(one, acks=1)
        expected = {}
        start = {}
        for partition in range(3):
            values = [f"n{n}-p{partition}-{i}".encode() for i in range(50)]
            log = produce_all(p, topic, [{"value": v, "key": b"k"} for v in values],
                              partition=partition)
            log.assert_all_ok(50)
            expected[partition] = values
            # From the acknowledged offsets (acks=1 answers before the high watermark moves).
            start[partition] = min(r[3] for r in log.reports)
        c = consumer(one)
        try:
            c.assign([TopicPartition(topic, partition, start[partition]) for partition in range(3)])
            got = consume_n(c, 150, timeout=30)
        finally:
            c.close()
        by_partition = {}
        for m in got:
            by_partition.setdefault(m.partition(), []).append(m.value())
        assert by_partition == expected, f"bootstrap {one.bootstrap}"


def metric(node, name: str) -> float:
    """The value of an unlabelled gauge in the node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics of node {node.node_id}")
