"""The controller listener secured (issue 9, docs/security-design.md section 1): a cluster of
3 voters and a broker-only observer whose controller listener is SSL with
``ssl.client.auth=required`` (``controller.listener.names=CONTROLLER``,
``listener.security.protocol.map=...,CONTROLLER:SSL``) and the StandardAuthorizer on, with the
nodes' certificate principal (``User:fjord-node``, through ``ssl.principal.mapping.rules``) a
super user.  Raft between the voters, registration and heartbeats, forwarded CreateTopics and
the observer's FetchMetadata all go over mTLS; a node killed with SIGKILL rejoins.  Then,
against a voter's controller port directly:

(a) plain TCP gets no Kafka answer (the TLS listener closes, at most with a TLS alert);
(b) TLS without a client certificate fails the handshake;
(c) a certificate of the same CA for another principal (no ACL, not a super user) gets
    CLUSTER_AUTHORIZATION_FAILED for DescribeQuorum (ApiVersions still answers), and the node
    logs the denial with the principal;
(d) the nodes' certificate gets a real DescribeQuorum answer naming the Raft leader.

Clients use a Kafka listener ``CLIENT`` that is SSL with mTLS too (the admin certificate is a
super user), so the whole cluster runs with the authorizer on.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
from pathlib import Path

import pytest
import trustme
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import kwire  # noqa: E402
from fjordcluster import Bootstrap  # noqa: E402
from helpers import (OP_TIMEOUT, RDKAFKA_LOGGER, consume_n, consumer, produce_all,  # noqa: E402
                     producer, unique_topic)

pytestmark = pytest.mark.replication

DESCRIBE_QUORUM = 55
CLUSTER_AUTHORIZATION_FAILED = 31
METADATA_TOPIC = "__cluster_metadata"
# The mTLS principal: the certificate's CN (trustme adds OU and O after it).
PRINCIPAL_RULES = "RULE:^CN=([a-z-]+).*$/$1/"


class Certificates:
    def __init__(self, tmp_path: Path):
        self.ca = trustme.CA()
        self.ca_path = tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self.dir = tmp_path

    def issue(self, cn: str) -> tuple[Path, Path, Path]:
        """(key+chain PEM, chain PEM, key PEM) of a certificate for 127.0.0.1 with CN ``cn``."""
        cert = self.ca.issue_cert("127.0.0.1", "localhost", common_name=cn)
        both, chain, key = (self.dir / f"{cn}.pem", self.dir / f"{cn}.crt", self.dir / f"{cn}.key")
        cert.private_key_and_cert_chain_pem.write_to_path(str(both))
        with open(chain, "wb") as f:
            for pem in cert.cert_chain_pems:
                f.write(pem.bytes())
        cert.private_key_pem.write_to_path(str(key))
        return both, chain, key

    def context(self, cn: str | None) -> ssl.SSLContext:
        """A client context trusting the CA, presenting the certificate of ``cn`` if given."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        if cn is not None:
            _, chain, key = self.issue(cn)
            ctx.load_cert_chain(str(chain), str(key))
        return ctx


def ssl_client_conf(certs: Certificates, chain: Path, key: Path) -> dict:
    return {
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs.ca_path),
        "ssl.certificate.location": str(chain),
        "ssl.key.location": str(key),
    }


def describe_quorum_v0(correlation_id: int) -> bytes:
    body = kwire.compact_array([
        kwire.compact_string(METADATA_TOPIC)
        + kwire.compact_array([kwire.i32(0) + kwire.TAGS])
        + kwire.TAGS]) + kwire.TAGS
    return kwire.frame(kwire.request_header_v2(DESCRIBE_QUORUM, 0, correlation_id) + body)


def parse_describe_quorum_v0(payload: bytes, correlation_id: int) -> tuple[int, int | None]:
    """(top-level error code, Raft leader of __cluster_metadata-0 or None)."""
    r = kwire.Reader(payload)
    assert r.i32() == correlation_id
    r.uvarint()                                   # response header tags
    error = r.i16()
    if error != 0:
        return error, None
    for _ in range(r.uvarint() - 1):              # topics
        kwire._compact_string_r(r)
        for _ in range(r.uvarint() - 1):          # partitions
            r.i32()
            p_error, leader = r.i16(), r.i32()
            return 0, leader if p_error == 0 and leader >= 0 else None
    return 0, None


def tls_connect(ctx: ssl.SSLContext, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.settimeout(10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def describe_quorum_over_tls(ctx: ssl.SSLContext, port: int) -> tuple[int, int | None]:
    with tls_connect(ctx, port) as s:
        s.sendall(describe_quorum_v0(7))
        return parse_describe_quorum_v0(kwire.read_frame(s), 7)


def refused_without_answer(ctx: ssl.SSLContext, port: int) -> bool:
    """True if a TLS connection (handshake, then a DescribeQuorum frame) ends without an answer:
    the handshake fails, or the server closes or resets the connection."""
    try:
        with tls_connect(ctx, port) as s:
            s.sendall(describe_quorum_v0(9))
            data = s.recv(65536)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return data == b""


def isr_complete(admin: AdminClient, topic: str) -> bool:
    md = admin.list_topics(topic=topic, timeout=OP_TIMEOUT).topics[topic]
    return bool(md.partitions) and all(
        sorted(p.isrs) == sorted(p.replicas) and len(p.replicas) == 3
        for p in md.partitions.values())


def test_controller_listener_over_mtls_with_authorization(cluster_factory, tmp_path):
    certs = Certificates(tmp_path)
    node_pem, _, _ = certs.issue("fjord-node")
    _, admin_chain, admin_key = certs.issue("admin")
    settings = {
        "listener.security.protocol.map": "CLIENT:SSL,CONTROLLER:SSL",
        "controller.listener.names": "CONTROLLER",
        "ssl.keystore.location": str(node_pem),
        "ssl.truststore.location": str(certs.ca_path),
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": PRINCIPAL_RULES,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:fjord-node;User:admin",
    }
    cluster = cluster_factory(size=3, settings=settings, start=False, brokers=1)
    for node in cluster.nodes.values():
        node.listeners = f"CLIENT://127.0.0.1:{node.client_port}"
    cluster.start_all()    # every node ready: the quorum formed and every broker unfenced

    conf = ssl_client_conf(certs, admin_chain, admin_key)
    bootstrap = cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000, **conf},
                        logger=RDKAFKA_LOGGER)
    md = admin.list_topics(timeout=OP_TIMEOUT)
    assert sorted(md.brokers) == [1, 2, 3, 4]

    # CreateTopics goes from the broker to the active controller over the mTLS channel.
    topic = unique_topic("ctrl-tls")
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)],
                        operation_timeout=10)[topic].result(timeout=OP_TIMEOUT)
    cluster.wait_for(f"ISR complete for {topic}", lambda: isr_complete(admin, topic), timeout=60)

    boot = Bootstrap(bootstrap)
    p = producer(boot, acks="all", **conf, **{"message.timeout.ms": 60000})
    first = [f"a{i}".encode() for i in range(150)]
    for partition in range(3):
        batch = first[partition::3]
        produce_all(p, topic, [{"value": v} for v in batch], partition=partition) \
            .assert_all_ok(len(batch))

    # A voter killed with SIGKILL comes back: its Raft links, registration and follower
    # fetches all go over mTLS again.
    cluster.kill(2)
    cluster.start(2)
    cluster.wait_for(f"ISR complete for {topic} after node 2 restarted",
                     lambda: isr_complete(admin, topic), timeout=60)
    second = [f"b{i}".encode() for i in range(150)]
    for partition in range(3):
        batch = second[partition::3]
        produce_all(p, topic, [{"value": v} for v in batch], partition=partition) \
            .assert_all_ok(len(batch))
    p.flush(OP_TIMEOUT)
    c = consumer(boot, **conf)
    try:
        c.assign([TopicPartition(topic, partition, 0) for partition in range(3)])
        got = sorted(m.value() for m in consume_n(c, len(first) + len(second), timeout=60))
    finally:
        c.close()
    assert got == sorted(first + second)

    voter = cluster.nodes[1]
    port = voter.controller_port

    # (a) Plain TCP: no Kafka answer, only the close (perhaps after a TLS alert record).
    with kwire.connect(port) as s:
        s.sendall(kwire.api_versions_v0(1))
        data = kwire.wait_closed(s)
    assert data == b"" or data[0] == 0x15, f"plain TCP got an answer: {data[:32]!r}"
    with kwire.connect(port) as s:
        s.sendall(describe_quorum_v0(2))
        data = kwire.wait_closed(s)
    assert data == b"" or data[0] == 0x15, f"plain TCP got an answer: {data[:32]!r}"

    # (b) TLS without a client certificate: ssl.client.auth=required refuses the handshake.
    assert refused_without_answer(certs.context(None), port)
    cluster.wait_for("the handshake failure in node 1's log",
                     lambda: "TLS handshake failed on the controller listener" in voter.log_text())

    # (c) Same CA, another principal, no ACL: authenticated, but not authorized.
    intruder = certs.context("intruder")
    error, leader = describe_quorum_over_tls(intruder, port)
    assert (error, leader) == (CLUSTER_AUTHORIZATION_FAILED, None)
    with tls_connect(intruder, port) as s:           # ApiVersions needs no authorization
        s.sendall(kwire.api_versions_v0(3))
        r = kwire.Reader(kwire.read_frame(s))
        assert r.i32() == 3 and r.i16() == 0
    cluster.wait_for(
        "the denial with the principal in node 1's log",
        lambda: any("not authorized" in line and "User:intruder" in line
                    for line in voter.log_text().splitlines()))

    # (d) The nodes' certificate: a real DescribeQuorum answer; exactly the Raft leader names
    # itself.
    nodes_ctx = certs.context("fjord-node")
    answers = {n: describe_quorum_over_tls(nodes_ctx, cluster.nodes[n].controller_port)
               for n in cluster.voter_ids()}
    assert all(error == 0 for error, _ in answers.values()), answers
    leaders = [leader for _, leader in answers.values() if leader is not None]
    assert len(leaders) == 1 and leaders[0] in cluster.voter_ids(), answers

    for node in cluster.nodes.values():
        text = node.log_text()
        assert "panicked" not in text, node.log_tail()
