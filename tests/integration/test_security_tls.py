"""TLS and mTLS listeners (issue 9, docs/security-design.md section 3) against the real binary.

Certificates come from ``trustme`` test CAs. Covered: produce and consume over an SSL
listener with confluent-kafka and kafka-python; a PLAINTEXT and an SSL listener on one broker,
each client seeing its own listener in Metadata; ``ssl.client.auth=required`` (a trusted
client certificate works, none or another CA's gets no data); certificate reload without a
restart; an untrusted server certificate refused by the client; start-up errors naming the
setting and file; an inline PEM keystore that DescribeConfigs never shows; the mapped client
certificate subject as the principal the authorizer checks.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import trustme
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from conftest import BrokerProcess, _find_binary, free_port
from helpers import admin, consume_n, consumer, produce_all, producer, unique_topic

# A client refused at the TLS layer never gets metadata; how long to let it try.
REFUSED_WAIT_S = 6.0


class TlsBroker(BrokerProcess):
    """A broker with the given ``listeners`` (NAME://HOST:PORT,...) instead of the fixture's
    single PLAINTEXT listener; ``port`` is the one waited for at start."""

    def __init__(self, binary, workdir, listeners: str, port: int, settings: dict):
        super().__init__(binary, workdir, settings=settings, port=port)
        self.listeners = listeners

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("--listen") + 1] = self.listeners
        cmd[cmd.index("--advertised-listener") + 1] = ""
        return cmd


class Endpoint:
    """What the helpers need of a broker: a bootstrap address."""

    def __init__(self, port: int):
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"


@pytest.fixture
def tls_factory(tmp_path_factory, request):
    created: list[TlsBroker] = []
    request.node.fjord_brokers = created

    def make(listeners: str, port: int, settings: dict) -> TlsBroker:
        workdir = tmp_path_factory.mktemp("fjord-tls")
        b = TlsBroker(_find_binary(), workdir, listeners, port, settings)
        created.append(b)
        b.start()
        return b

    yield make
    for b in created:
        if b.is_running():
            b.stop()


class Pki:
    """A CA and the files a broker and its clients need."""

    def __init__(self, directory: Path, name: str = "ca"):
        self.dir = directory
        self.ca = trustme.CA()
        self.ca_path = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self.name = name

    def broker_keystore(self, path: Path) -> Path:
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_and_cert_chain_pem.write_to_path(str(path))
        return path

    def client_cert(self, cn: str) -> tuple[Path, Path]:
        cert = self.ca.issue_cert(f"{cn}.example.org", common_name=cn)
        cert_path = self.dir / f"{self.name}-{cn}-cert.pem"
        key_path = self.dir / f"{self.name}-{cn}-key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        cert.private_key_pem.write_to_path(str(key_path))
        return cert_path, key_path


def ssl_conf(pki: Pki, client: tuple[Path, Path] | None = None) -> dict:
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca_path)}
    if client:
        conf["ssl.certificate.location"] = str(client[0])
        conf["ssl.key.location"] = str(client[1])
    return conf


def roundtrip(endpoint: Endpoint, conf: dict, n: int = 20) -> list[bytes]:
    topic = unique_topic("tls")
    p = producer(endpoint, **conf)
    produce_all(p, topic, [{"value": f"m{i}".encode()} for i in range(n)])
    c = consumer(endpoint, **conf)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        return [m.value() for m in consume_n(c, n)]
    finally:
        c.close()


def gets_no_data(endpoint: Endpoint, conf: dict) -> bool:
    """True when the client cannot even fetch metadata (the TLS layer refused it)."""
    try:
        admin(endpoint, **conf).list_topics(timeout=REFUSED_WAIT_S)
    except KafkaException:
        return True
    return False


def start_ssl_broker(tls_factory, pki: Pki, tmp_path: Path, **settings) -> tuple[TlsBroker, Endpoint]:
    port = free_port()
    keystore = pki.broker_keystore(tmp_path / "broker-keystore.pem")
    broker = tls_factory(f"SSL://127.0.0.1:{port}", port, {
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.location": str(pki.ca_path),
        **settings,
    })
    return broker, Endpoint(port)


def test_ssl_listener_serves_confluent_and_kafka_python(tls_factory, tmp_path):
    pki = Pki(tmp_path)
    _, endpoint = start_ssl_broker(tls_factory, pki, tmp_path)
    values = roundtrip(endpoint, ssl_conf(pki))
    assert values == [f"m{i}".encode() for i in range(20)]

    from kafka import KafkaConsumer, KafkaProducer
    topic = unique_topic("tls-kp")
    kp = KafkaProducer(bootstrap_servers=endpoint.bootstrap, security_protocol="SSL",
                       ssl_cafile=str(pki.ca_path), ssl_check_hostname=True)
    for i in range(10):
        kp.send(topic, f"k{i}".encode()).get(timeout=20)
    kp.close()
    kc = KafkaConsumer(topic, bootstrap_servers=endpoint.bootstrap, security_protocol="SSL",
                       ssl_cafile=str(pki.ca_path), auto_offset_reset="earliest",
                       consumer_timeout_ms=10000)
    got = [m.value for m in kc]
    kc.close()
    assert got == [f"k{i}".encode() for i in range(10)]


def test_each_listener_advertises_its_own_port(tls_factory, tmp_path):
    pki = Pki(tmp_path)
    plain_port, ssl_port = free_port(), free_port()
    keystore = pki.broker_keystore(tmp_path / "keystore.pem")
    tls_factory(f"PLAINTEXT://127.0.0.1:{plain_port},SSL://127.0.0.1:{ssl_port}", plain_port,
                {"ssl.keystore.location": str(keystore)})
    plain_md = admin(Endpoint(plain_port)).list_topics(timeout=10)
    ssl_md = admin(Endpoint(ssl_port), **ssl_conf(pki)).list_topics(timeout=10)
    assert [b.port for b in plain_md.brokers.values()] == [plain_port]
    assert [b.port for b in ssl_md.brokers.values()] == [ssl_port]
    # Data written on one listener is read on the other.
    topic = unique_topic("two-listeners")
    produce_all(producer(Endpoint(plain_port)), topic, [{"value": b"over plaintext"}])
    c = consumer(Endpoint(ssl_port), **ssl_conf(pki))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert [m.value() for m in consume_n(c, 1)] == [b"over plaintext"]
    finally:
        c.close()


def test_mtls_required_admits_only_trusted_client_certificates(tls_factory, tmp_path):
    pki = Pki(tmp_path)
    _, endpoint = start_ssl_broker(tls_factory, pki, tmp_path, **{"ssl.client.auth": "required"})
    trusted = pki.client_cert("alice")
    assert roundtrip(endpoint, ssl_conf(pki, trusted), n=5) == [f"m{i}".encode() for i in range(5)]
    # No client certificate.
    assert gets_no_data(endpoint, ssl_conf(pki))
    # A certificate of another CA.
    stranger = Pki(tmp_path, name="stranger").client_cert("mallory")
    assert gets_no_data(endpoint, ssl_conf(pki, stranger))


def test_untrusted_server_certificate_is_refused_by_the_client(tls_factory, tmp_path):
    pki = Pki(tmp_path)
    _, endpoint = start_ssl_broker(tls_factory, pki, tmp_path)
    other = Pki(tmp_path, name="other")
    assert gets_no_data(endpoint, ssl_conf(other))
    # The same broker is fine for a client trusting its CA.
    admin(endpoint, **ssl_conf(pki)).list_topics(timeout=10)


def peer_certificate_serial(port: int, ca_path: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca_path))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return int(tls.getpeercert()["serialNumber"], 16)


def test_certificates_reload_without_restart(tls_factory, tmp_path):
    pki = Pki(tmp_path)
    broker, endpoint = start_ssl_broker(
        tls_factory, pki, tmp_path, **{"ssl.reload.check.interval.ms": 200})
    keystore = tmp_path / "broker-keystore.pem"
    first = peer_certificate_serial(endpoint.port, pki.ca_path)
    # A broken file keeps the old certificate.
    keystore.write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
    time.sleep(1.0)
    assert peer_certificate_serial(endpoint.port, pki.ca_path) == first
    # A certificate of a new CA: new connections see it, the broker keeps running.
    new_pki = Pki(tmp_path, name="new-ca")
    new_pki.broker_keystore(keystore)
    deadline = time.monotonic() + 15
    serial = None
    while time.monotonic() < deadline:
        try:
            serial = peer_certificate_serial(endpoint.port, new_pki.ca_path)
            break
        except ssl.SSLError:
            time.sleep(0.2)
    assert serial is not None and serial != first, "the new certificate was never served"
    broker.assert_alive()
    assert "keeping the previous certificates" in broker.stderr_tail(50000)
    # Clients trusting the old CA are refused now; the new CA works end to end.
    assert gets_no_data(endpoint, ssl_conf(pki))
    assert roundtrip(endpoint, ssl_conf(new_pki), n=3) == [b"m0", b"m1", b"m2"]


def start_fails(tmp_path: Path, listeners: str, settings: dict) -> str:
    """Runs ``fjord serve`` expecting it to refuse the settings; returns its output."""
    cmd = [str(_find_binary()), "serve", "--data-dir", str(tmp_path / "data"),
           "--listen", listeners, "--metrics-listen", f"127.0.0.1:{free_port()}"]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={value}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode != 0, f"fjord started with {settings}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_bad_tls_settings_stop_the_broker_at_start(tmp_path):
    port = free_port()
    missing = tmp_path / "nope.pem"
    out = start_fails(tmp_path, f"SSL://127.0.0.1:{port}",
                      {"ssl.keystore.location": str(missing)})
    assert "ssl.keystore.location" in out and str(missing) in out, out
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is no PEM")
    out = start_fails(tmp_path, f"SSL://127.0.0.1:{port}",
                      {"listener.name.ssl.ssl.keystore.location": str(garbage)})
    assert "listener.name.ssl.ssl.keystore.location" in out and str(garbage) in out, out
    out = start_fails(tmp_path, f"SSL://127.0.0.1:{port}", {"ssl.keystore.type": "JKS"})
    assert "only PEM" in out, out
    out = start_fails(tmp_path, f"SASL_SSL://127.0.0.1:{port}", {})
    assert "a TLS listener needs ssl.keystore.location" in out, out
    out = start_fails(tmp_path, f"PLAINTEXT://127.0.0.1:{port}",
                      {"listener.name.plaintext.ssl.keystore.locaton": "x"})
    assert "unknown setting" in out, out


def test_inline_pem_keystore_works_and_is_never_described(tls_factory, tmp_path):
    from confluent_kafka.admin import ConfigResource
    pki = Pki(tmp_path)
    cert = pki.ca.issue_cert("127.0.0.1", "localhost")
    port = free_port()
    tls_factory(f"SSL://127.0.0.1:{port}", port, {
        "ssl.keystore.certificate.chain": cert.cert_chain_pems[0].bytes().decode(),
        "ssl.keystore.key": cert.private_key_pem.bytes().decode(),
    })
    endpoint = Endpoint(port)
    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    a = admin(endpoint, **ssl_conf(pki))
    described = a.describe_configs([resource])[resource].result(timeout=10)
    key = described["ssl.keystore.key"]
    assert key.is_sensitive and key.value is None
    assert "BEGIN CERTIFICATE" in described["ssl.keystore.certificate.chain"].value


def test_mtls_principal_is_what_the_authorizer_sees(tls_factory, tmp_path):
    """The mapped client certificate subject is the principal ACLs and super.users match:
    CN=admin (a super user) may write, CN=bob (no ACL) is refused TOPIC_AUTHORIZATION_FAILED."""
    pki = Pki(tmp_path)
    _, endpoint = start_ssl_broker(tls_factory, pki, tmp_path, **{
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),.*$/$1/L,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
    })
    admin_conf = ssl_conf(pki, pki.client_cert("Admin"))
    assert roundtrip(endpoint, admin_conf, n=3) == [b"m0", b"m1", b"m2"]
    bob = producer(endpoint, **ssl_conf(pki, pki.client_cert("bob")),
                   **{"message.timeout.ms": 8000})
    errors = []
    bob.produce(unique_topic("denied"), b"x", on_delivery=lambda err, _msg: errors.append(err))
    bob.flush(15)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
