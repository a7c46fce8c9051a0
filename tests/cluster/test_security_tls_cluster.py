"""Replication over TLS (issue 9, docs/security-design.md section 3): a 3-node cluster whose
inter-broker listener is SSL with mutual authentication (``ssl.client.auth=required``), while
clients use a PLAINTEXT listener. acks=all writes to a topic with ``min.insync.replicas=3``
succeed only if both followers fetch over the SSL listener, and every replica then serves the
same records.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trustme
from confluent_kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from fjordcluster import Bootstrap, create_topic, free_ports, wait_isr  # noqa: E402
from helpers import consume_n, consumer, produce_all, producer, unique_topic  # noqa: E402

pytestmark = pytest.mark.replication


def test_replication_over_mutual_tls_inter_broker_listener(cluster_factory, tmp_path):
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cluster = cluster_factory(size=3, start=False)
    for n, node in cluster.nodes.items():
        (ssl_port,) = free_ports(1)
        keystore = tmp_path / f"node-{n}.pem"
        ca.issue_cert("127.0.0.1", "localhost", common_name=f"broker-{n}") \
            .private_key_and_cert_chain_pem.write_to_path(str(keystore))
        node.listeners = f"PLAINTEXT://127.0.0.1:{node.client_port},INTERNAL://127.0.0.1:{ssl_port}"
        node.ssl_port = ssl_port
        for key, value in {
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SSL",
            "inter.broker.listener.name": "INTERNAL",
            "listener.name.internal.ssl.client.auth": "required",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.location": str(ca_path),
        }.items():
            node.extra_args += ["--set", f"{key}={value}"]
    cluster.start_all()

    # Clients see the PLAINTEXT listener of every broker.
    md = cluster.admin().list_topics(timeout=15)
    assert sorted(b.port for b in md.brokers.values()) == sorted(
        node.client_port for node in cluster.nodes.values())

    topic = unique_topic("tls-repl")
    create_topic(cluster, topic, partitions=3, rf=3, config={"min.insync.replicas": "3"})
    wait_isr(cluster, topic, 3, {1, 2, 3})
    p = producer(Bootstrap(cluster.bootstrap), acks="all", **{"message.timeout.ms": 60000})
    values = [f"v{i}".encode() for i in range(300)]
    for partition in range(3):
        batch = values[partition::3]
        produce_all(p, topic, [{"value": v} for v in batch], partition=partition) \
            .assert_all_ok(len(batch))
    # With min.insync.replicas=3 each acknowledgement needed both followers to fetch over
    # the SSL listener; they are still in sync afterwards.
    wait_isr(cluster, topic, 3, {1, 2, 3})
    c = consumer(Bootstrap(cluster.bootstrap))
    try:
        c.assign([TopicPartition(topic, partition, 0) for partition in range(3)])
        got = sorted(m.value() for m in consume_n(c, len(values)))
    finally:
        c.close()
    assert got == sorted(values)
    for node in cluster.nodes.values():
        text = node.log_text()
        assert "TLS handshake failed" not in text, node.log_tail()
