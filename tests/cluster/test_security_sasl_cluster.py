"""Replication over SASL_SSL (issue 9, docs/security-design.md section 3): a 3-node cluster
whose inter-broker listener INTERNAL is SASL_SSL with PLAIN
(``sasl.mechanism.inter.broker.protocol=PLAIN``, each broker authenticating as ``User:broker``),
clients on a second SASL_SSL listener EXTERNAL, the authorizer on with
``super.users=User:broker;User:admin``. acks=all writes with ``min.insync.replicas=3`` succeed
only if both followers fetch over the authenticated listener; after a kill -9 of one node, writes
with ``min.insync.replicas=2`` go on, and the restarted node catches up without losing an
acknowledged record.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import trustme
from confluent_kafka import TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, NewTopic,
                                   ResourcePatternType, ResourceType)

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from fjordcluster import Bootstrap, free_ports  # noqa: E402
from helpers import admin, consume_n, consumer, produce_all, producer, unique_topic  # noqa: E402

pytestmark = pytest.mark.replication

PASSWORDS = {"broker": "broker-secret", "admin": "admin-secret", "client": "client-secret"}


def jaas(broker_password: str) -> str:
    users = " ".join(f'user_{u}="{p}"' for u, p in PASSWORDS.items())
    return ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="broker" password="{broker_password}" {users};')


def secure_cluster(cluster_factory, tmp_path: Path, wrong_password_node: int | None = None):
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cluster = cluster_factory(size=3, start=False)
    for n, node in cluster.nodes.items():
        (internal_port,) = free_ports(1)
        keystore = tmp_path / f"node-{n}.pem"
        ca.issue_cert("127.0.0.1", "localhost", common_name=f"broker-{n}") \
            .private_key_and_cert_chain_pem.write_to_path(str(keystore))
        node.listeners = (f"EXTERNAL://127.0.0.1:{node.client_port},"
                          f"INTERNAL://127.0.0.1:{internal_port}")
        for key, value in {
            "listener.security.protocol.map": "EXTERNAL:SASL_SSL,INTERNAL:SASL_SSL",
            "inter.broker.listener.name": "INTERNAL",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.jaas.config": jaas("wrong" if n == wrong_password_node else PASSWORDS["broker"]),
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.location": str(ca_path),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:broker;User:admin",
        }.items():
            node.extra_args += ["--set", f"{key}={value}"]
    return cluster, ca_path


def client_conf(ca_path: Path, user: str) -> dict:
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": PASSWORDS[user],
            "ssl.ca.location": str(ca_path)}


def wait_isr(a, topic: str, partitions: int, members: set[int], timeout_s: float = 60.0):
    """Until the metadata (over SASL_SSL) shows ISR == ``members`` for every partition."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(topic=topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            last = {p: set(pm.isrs) for p, pm in md.partitions.items()}
            if all(isr == members for isr in last.values()):
                return
        time.sleep(0.3)
    raise AssertionError(f"ISR of {topic} never became {sorted(members)}: {last}")


def test_replication_over_sasl_ssl_inter_broker_listener(cluster_factory, tmp_path):
    cluster, ca_path = secure_cluster(cluster_factory, tmp_path)
    cluster.start_all()
    bootstrap = Bootstrap(cluster.bootstrap)
    a = admin(bootstrap, **client_conf(ca_path, "admin"))
    topic = unique_topic("sasl-repl")
    a.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "3"})],
                    operation_timeout=10)[topic].result(timeout=20)
    # User:client may write and read the topic (not a super user).
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:client",
                         "*", AclOperation.ALL, AclPermissionType.ALLOW)
    for f in a.create_acls([binding]).values():
        f.result(timeout=15)
    wait_isr(a, topic, 3, {1, 2, 3})

    conf = client_conf(ca_path, "client")
    p = producer(bootstrap, acks="all", **conf, **{"message.timeout.ms": 60000})
    values = [f"v{i}".encode() for i in range(300)]
    for partition in range(3):
        batch = values[partition::3]
        produce_all(p, topic, [{"value": v} for v in batch], partition=partition) \
            .assert_all_ok(len(batch))
    # Each acknowledgement with min.insync.replicas=3 needed both followers to fetch over the
    # SASL_SSL inter-broker listener.
    wait_isr(a, topic, 3, {1, 2, 3})

    # kill -9 one node; with min.insync.replicas=2 writes go on.
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("min.insync.replicas", "2", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([resource])[resource].result(timeout=15)
    victim = 3
    cluster.kill(victim)
    survivors = Bootstrap(cluster.bootstrap_of(1, 2))
    a = admin(survivors, **client_conf(ca_path, "admin"))
    wait_isr(a, topic, 3, {1, 2})
    p = producer(survivors, acks="all", **conf, **{"message.timeout.ms": 60000})
    more = [f"w{i}".encode() for i in range(150)]
    for partition in range(3):
        batch = more[partition::3]
        produce_all(p, topic, [{"value": v} for v in batch], partition=partition) \
            .assert_all_ok(len(batch))
    cluster.start(victim)
    # Back in the ISR means it fetched up to the high watermark over SASL_SSL.
    wait_isr(a, topic, 3, {1, 2, 3})

    expected = sorted(values + more)
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, partition, 0) for partition in range(3)])
        got = sorted(m.value() for m in consume_n(c, len(expected)))
    finally:
        c.close()
    assert got == expected
    for node in cluster.nodes.values():
        text = node.log_text()
        assert "authentication failed" not in text.lower(), node.log_tail()


def test_wrong_inter_broker_password_stops_replication(cluster_factory, tmp_path):
    """Node 3 authenticates to its peers with a wrong password: it can follow nothing, so an
    acks=all write with min.insync.replicas=3 to a partition it follows is never acknowledged,
    and its peers count the failed authentications."""
    cluster, ca_path = secure_cluster(cluster_factory, tmp_path, wrong_password_node=3)
    cluster.start_all()
    bootstrap = Bootstrap(cluster.bootstrap)
    a = admin(bootstrap, **client_conf(ca_path, "admin"))
    topic = unique_topic("sasl-bad")
    a.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "3"})],
                    operation_timeout=10)[topic].result(timeout=20)
    md = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        md = a.list_topics(topic=topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == 3 \
                and all(pm.leader >= 0 for pm in md.partitions.values()):
            break
        time.sleep(0.3)
    followed_by_3 = [q for q, pm in md.partitions.items() if pm.leader != 3]
    assert followed_by_3, md.partitions
    p = producer(bootstrap, acks="all", **client_conf(ca_path, "admin"),
                 **{"message.timeout.ms": 8000})
    log = produce_all(p, topic, [{"value": b"never"}], partition=followed_by_3[0])
    assert len(log.errors) == 1, "a write was acknowledged without node 3 fetching"
    peers = [cluster.nodes[n].log_text() + "" for n in (1, 2)]
    assert any("PLAIN" in t and "fail" in t.lower() for t in peers), cluster.nodes[1].log_tail()
