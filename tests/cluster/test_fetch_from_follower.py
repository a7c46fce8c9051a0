"""Fetch from follower (KIP-392) and replication throttles (KIP-73) across real processes
(docs/cluster-design.md 5.2, 5.3, 5.6).

* With ``replica.selector.class`` = Kafka's ``RackAwareReplicaSelector``, a consumer whose
  ``client.rack`` is a follower's rack is told ``preferred_read_replica`` = that follower by the
  leader (raw Fetch v11) and a real confluent-kafka consumer then reads every message through
  the follower: the follower's ``fjord_topic_bytes_out_total`` (consumer traffic only) carries
  the data, the leader's stays 0.
* ``fjord partition reassign --execute --throttle`` sets Kafka's throttle configs (topic lists of
  sources and destinations, rates on every broker involved), the move completes, the throttle
  metrics count the moved bytes, and ``--verify`` removes the configs once it is complete.

Every wait is bounded by a deadline (``Cluster.wait_for``); nothing asserts on timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kwire  # noqa: E402
from fjordcluster import Bootstrap, create_topic  # noqa: E402
from helpers import OP_TIMEOUT, consume_n, consumer, produce_all, producer, unique_topic  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = pytest.mark.replication

RACK_AWARE = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
FETCH_V11 = 11


# ----------------------------------------------------------------------------- helpers
def raw_fetch_v11(port: int, topic: str, offset: int, rack: str) -> dict:
    """A sessionless consumer Fetch v11 (the first with ``rack_id``) of partition 0:
    {error, high_watermark, preferred_read_replica, records_size}."""
    body = (kwire.i32(-1)              # replica_id: a consumer
            + kwire.i32(0)             # max_wait_ms
            + kwire.i32(0)             # min_bytes
            + kwire.i32(1 << 20)       # max_bytes
            + kwire.i8(0)              # isolation_level
            + kwire.i32(0)             # session_id
            + kwire.i32(-1)            # session_epoch: no session
            + kwire.i32(1) + kwire.string(topic)
            + kwire.i32(1) + kwire.i32(0)      # partition 0
            + kwire.i32(-1)            # current_leader_epoch
            + kwire.i64(offset)
            + kwire.i64(-1)            # log_start_offset
            + kwire.i32(1 << 20)       # partition_max_bytes
            + kwire.i32(0)             # forgotten topics
            + kwire.string(rack))
    with kwire.Conn(port) as conn:
        version = conn.version(kwire.FETCH, FETCH_V11, lowest_known=FETCH_V11)
        r = conn.request(kwire.FETCH, version, body, flexible=False)
    r.i32()  # throttle_time_ms
    top_error = r.i16()
    r.i32()  # session_id
    assert top_error == 0, f"Fetch failed: {top_error}"
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            out = {"partition": r.i32(), "error": r.i16(), "high_watermark": r.i64()}
            r.i64()  # last_stable_offset
            r.i64()  # log_start_offset
            aborted = r.i32()
            for _ in range(max(aborted, 0)):
                r.i64(), r.i64()
            out["preferred_read_replica"] = r.i32()
            size = r.i32()
            out["records_size"] = max(size, 0)
            if size > 0:
                r.take(size)
            return out
    raise AssertionError("Fetch answered no partition")


def scrape(node) -> dict:
    """{(sample name, frozenset of labels): value} of a node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(node, name: str, **labels) -> float:
    return scrape(node).get((name, frozenset(labels.items())), 0.0)


def fjord_cli(cluster, *args) -> tuple[str, str]:
    proc = subprocess.run([str(cluster.binary), *args, "--bootstrap", cluster.bootstrap],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"fjord {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout, proc.stderr


def describe(cluster, resource: ConfigResource) -> dict[str, str]:
    admin = cluster.admin()   # kept alive until the answer is in
    result = admin.describe_configs([resource])[resource].result(timeout=OP_TIMEOUT)
    return {name: entry.value for name, entry in result.items()}


# ------------------------------------------------------------------------------- tests
def test_a_client_rack_consumer_reads_every_message_through_its_racks_follower(cluster_factory):
    c = cluster_factory(settings={"replica.selector.class": RACK_AWARE})
    topic = unique_topic("ffr")
    view = create_topic(c, topic, partitions=1, rf=3, config={"min.insync.replicas": "2"})
    part = view.partitions[0]
    leader = part.leader
    follower = next(r for r in part.replicas if r != leader)
    follower_rack = c.node(follower).rack

    n = 300
    values = [f"value-{i:05d}-".encode() + b"x" * 100 for i in range(n)]
    p = producer(Bootstrap(c.bootstrap), acks="all")
    produce_all(p, topic, [{"key": f"k{i}".encode(), "value": v} for i, v in enumerate(values)])

    # The follower knows the high watermark (it learns it from its next fetch).
    c.wait_for("the follower's high watermark", lambda: raw_fetch_v11(
        c.node(follower).client_port, topic, 0, "")["high_watermark"] == n)

    # The leader sends a consumer of the follower's rack there, without records; consumers of
    # its own rack or of no rack are served by it.
    answer = raw_fetch_v11(c.node(leader).client_port, topic, 0, follower_rack)
    assert answer["error"] == 0, answer
    assert answer["preferred_read_replica"] == follower, answer
    assert answer["records_size"] == 0, answer
    assert answer["high_watermark"] == n, answer
    for rack in (c.node(leader).rack, ""):
        own = raw_fetch_v11(c.node(leader).client_port, topic, 0, rack)
        assert own["preferred_read_replica"] == -1 and own["records_size"] > 0, (rack, own)
    # The follower itself serves v11 consumers.
    served = raw_fetch_v11(c.node(follower).client_port, topic, 0, follower_rack)
    assert served["error"] == 0 and served["records_size"] > 0, served

    leader_bytes_before = metric(c.node(leader), "fjord_topic_bytes_out_total", topic=topic)
    follower_bytes_before = metric(c.node(follower), "fjord_topic_bytes_out_total", topic=topic)

    # librdkafka follows preferred_read_replica: every message, in order, from the follower.
    cons = consumer(Bootstrap(c.bootstrap), **{"client.rack": follower_rack})
    try:
        cons.assign([TopicPartition(topic, 0, 0)])
        got = consume_n(cons, n, timeout=60)
    finally:
        cons.close()
    assert [m.value() for m in got[:n]] == values
    assert [m.offset() for m in got[:n]] == list(range(n))

    payload = sum(len(v) for v in values)
    follower_bytes = metric(c.node(follower), "fjord_topic_bytes_out_total", topic=topic)
    leader_bytes = metric(c.node(leader), "fjord_topic_bytes_out_total", topic=topic)
    assert follower_bytes - follower_bytes_before >= payload, (follower_bytes, payload)
    assert leader_bytes == leader_bytes_before, "the leader served the consumer no records"
    # The leader's replication traffic is counted apart from consumer traffic.
    assert metric(c.node(leader), "fjord_topic_replication_bytes_out_total", topic=topic) >= payload


def test_a_throttled_reassignment_completes_and_verify_removes_the_throttle(cluster_factory,
                                                                           tmp_path):
    c = cluster_factory()
    topic = unique_topic("throttled")
    create_topic(c, topic, partitions=1, rf=2, assignment=[[1, 2]])
    n = 400
    p = producer(Bootstrap(c.bootstrap), acks="all")
    produce_all(p, topic, [{"key": f"k{i}".encode(), "value": b"y" * 1000} for i in range(n)])

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [1, 2, 3]}]}))
    rate = 200_000
    out, _ = fjord_cli(c, "partition", "reassign", "--execute", "--plan", str(plan),
                       "--throttle", str(rate))
    assert f"throttle limit was set to {rate} B/s" in out, out

    # Kafka's throttle configs: sources throttled as leaders, the new replica as follower.
    topic_configs = describe(c, ConfigResource(ResourceType.TOPIC, topic))
    assert topic_configs["leader.replication.throttled.replicas"] == "0:1,0:2", topic_configs
    assert topic_configs["follower.replication.throttled.replicas"] == "0:3", topic_configs
    for broker in (1, 2, 3):
        broker_configs = describe(c, ConfigResource(ResourceType.BROKER, str(broker)))
        assert broker_configs["leader.replication.throttled.rate"] == str(rate), broker_configs
        assert broker_configs["follower.replication.throttled.rate"] == str(rate), broker_configs

    def verified():
        out, _ = fjord_cli(c, "partition", "reassign", "--verify", "--plan", str(plan),
                           "--output", "json")
        return json.loads(out)
    result = c.wait_for("the throttled reassignment to complete",
                        lambda: (lambda r: r if r["complete"] else None)(verified()), timeout=120)
    assert result["throttles_cleared"] is not None, result
    assert result["partitions"][0]["replicas"] == [1, 2, 3], result

    # The new replica holds every message.
    c.wait_for("the new replica in the ISR", lambda: 3 in c.raw_metadata(1, [topic])
               .topics[topic].partitions[0].isr)
    # The moved bytes went through both quotas.
    assert metric(c.node(3), "fjord_replication_throttled_bytes_total", side="follower") > 0
    assert sum(metric(c.node(b), "fjord_replication_throttled_bytes_total", side="leader")
               for b in (1, 2)) > 0

    # --verify removed the throttle configs.
    topic_configs = describe(c, ConfigResource(ResourceType.TOPIC, topic))
    assert topic_configs["leader.replication.throttled.replicas"] == "", topic_configs
    assert topic_configs["follower.replication.throttled.replicas"] == "", topic_configs
    for broker in (1, 2, 3):
        broker_configs = describe(c, ConfigResource(ResourceType.BROKER, str(broker)))
        assert broker_configs["leader.replication.throttled.rate"] == str(2**63 - 1), broker_configs


def test_a_follower_is_chosen_on_a_listener_not_named_plaintext(cluster_factory):
    """KIP-392 on a cluster whose client listener is called CLIENT (mapped to PLAINTEXT): the
    follower must be reachable on the listener the fetch came in on, whatever its name."""
    c = cluster_factory(settings={"replica.selector.class": RACK_AWARE}, start=False)
    for node in c.nodes.values():
        node.listeners = f"CLIENT://127.0.0.1:{node.client_port}"
        node.extra_args += ["--set", "listener.security.protocol.map=CLIENT:PLAINTEXT",
                            "--set", "inter.broker.listener.name=CLIENT"]
    c.start_all()
    topic = unique_topic("ffr-client")
    view = create_topic(c, topic, partitions=1, rf=3, config={"min.insync.replicas": "2"})
    part = view.partitions[0]
    leader = part.leader
    follower = next(r for r in part.replicas if r != leader)
    p = producer(Bootstrap(c.bootstrap), acks="all")
    produce_all(p, topic, [{"value": f"v{i}".encode()} for i in range(10)])
    c.wait_for("the follower's high watermark", lambda: raw_fetch_v11(
        c.node(follower).client_port, topic, 0, "")["high_watermark"] == 10)
    answer = raw_fetch_v11(c.node(leader).client_port, topic, 0, c.node(follower).rack)
    assert answer["preferred_read_replica"] == follower, answer
