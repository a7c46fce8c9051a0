"""`fjord serve --secure`: one flag gives a SASL_SSL broker with SCRAM, the authorizer on, a
generated CA and an admin user (issue 9). Real clients (confluent-kafka, kafka-python) use the
settings it prints."""

import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

pytestmark = pytest.mark.timeout(180)


def secure_broker(broker_factory):
    return broker_factory(extra_args=["--secure"])


def client_config(broker, user="admin", password=None, mechanism="SCRAM-SHA-512", **extra):
    security = broker.data_dir / "security"
    if password is None:
        password = (security / "admin.password").read_text().strip()
    config = {
        "bootstrap.servers": broker.bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(security / "ca.crt"),
    }
    config.update(extra)
    return config


def produce(config, topic, values):
    """Produces `values`; returns the delivery errors (empty when all were acknowledged)."""
    errors = []
    producer = Producer({**config, "message.timeout.ms": 10000})
    for value in values:
        producer.produce(topic, value=value,
                         on_delivery=lambda err, msg: errors.append(err) if err else None)
    remaining = producer.flush(20)
    assert remaining == 0 or errors, "flush timed out without a delivery report"
    return errors


def consume_all(config, topic, expected, timeout_s=20.0):
    consumer = Consumer({**config, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_secure_broker_serves_admin_over_sasl_ssl_with_both_clients(broker_factory):
    broker = secure_broker(broker_factory)
    deadline = time.monotonic() + 20
    while "security.protocol=SASL_SSL" not in broker.stderr_tail(20000):
        assert time.monotonic() < deadline, "the client settings are printed at start"
        time.sleep(0.1)
    config = client_config(broker)
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    assert produce(config, topic, [f"v{i}".encode() for i in range(10)]) == []
    assert consume_all(config, topic, 10) == [f"v{i}".encode() for i in range(10)]

    from kafka import KafkaConsumer
    security = broker.data_dir / "security"
    consumer = KafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="admin",
        sasl_plain_password=(security / "admin.password").read_text().strip(),
        ssl_cafile=str(security / "ca.crt"), auto_offset_reset="earliest",
        consumer_timeout_ms=10000)
    try:
        assert [m.value for m in consumer][:10] == [f"v{i}".encode() for i in range(10)]
    finally:
        consumer.close()


def test_wrong_password_and_plaintext_get_no_data(broker_factory):
    broker = secure_broker(broker_factory)
    config = client_config(broker)
    topic = f"secret-{uuid.uuid4().hex[:8]}"
    assert produce(config, topic, [b"secret"]) == []

    got, auth_errors = [], []
    wrong = client_config(broker, password="not-the-password", **{"socket.timeout.ms": 5000})
    consumer = Consumer({**wrong, "group.id": "intruder", "auto.offset.reset": "earliest",
                         "error_cb": auth_errors.append})
    consumer.subscribe([topic])
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            auth_errors.append(msg.error())
            continue
        got.append(msg.value())
    consumer.close()
    assert got == []
    assert any(e.code() == KafkaError._AUTHENTICATION for e in auth_errors), auth_errors
    with urllib.request.urlopen(f"{broker.metrics_url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'result="failure"' in metrics, "the failed authentication is counted"

    plain = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "plain",
                      "auto.offset.reset": "earliest", "socket.timeout.ms": 3000})
    plain.subscribe([topic])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        msg = plain.poll(0.5)
        assert msg is None or msg.error(), "a plaintext client read data"
    plain.close()


def test_new_user_needs_acls_then_writes_its_prefix(broker_factory):
    broker = secure_broker(broker_factory)
    admin = AdminClient(client_config(broker))
    alice_password = "alice-" + uuid.uuid4().hex
    futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
        alice_password.encode())])
    for f in futures.values():
        f.result(timeout=20)
    topic = f"alice-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(20)

    alice = client_config(broker, user="alice", password=alice_password)
    errors = produce(alice, topic, [b"denied"])
    assert errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors

    acl = AclBinding(ResourceType.TOPIC, "alice-", ResourcePatternType.PREFIXED, "User:alice",
                     "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    for f in admin.create_acls([acl]).values():
        f.result(timeout=20)
    deadline = time.monotonic() + 20
    while True:
        errors = produce(alice, topic, [b"allowed"])
        if not errors or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert errors == []
    assert b"allowed" in consume_all(client_config(broker), topic, 1)


def test_material_is_reused_after_a_restart(broker_factory):
    broker = secure_broker(broker_factory)
    ca_before = (broker.data_dir / "security" / "ca.crt").read_bytes()
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    assert produce(client_config(broker), topic, [b"before"]) == []
    broker.stop()
    broker.start()
    assert (broker.data_dir / "security" / "ca.crt").read_bytes() == ca_before
    assert produce(client_config(broker), topic, [b"after"]) == []
    assert consume_all(client_config(broker), topic, 2) == [b"before", b"after"]


def test_fjord_cli_administers_a_secure_broker_with_command_config(broker_factory, tmp_path):
    """The printed librdkafka settings, saved as a file, are what `fjord acl|user` need."""
    import subprocess
    from conftest import _find_binary

    broker = secure_broker(broker_factory)
    security = broker.data_dir / "security"
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=admin\n"
        f"sasl.password={(security / 'admin.password').read_text().strip()}\n"
        f"ssl.ca.location={security / 'ca.crt'}\n")

    def fjord(*args, input=None):
        return subprocess.run([str(_find_binary()), *args, "--bootstrap", broker.bootstrap,
                               "--command-config", str(props)],
                              capture_output=True, text=True, timeout=60, input=input)

    created = fjord("user", "create", "--user", "carol", "--password", "carol-pw",
                    "--mechanism", "SCRAM-SHA-256")
    assert created.returncode == 0, created.stderr
    topic = f"carol-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(client_config(broker))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(20)
    acl = fjord("acl", "create", "--allow-principal", "User:carol", "--operation", "Write",
                "--topic", topic)
    assert acl.returncode == 0, acl.stderr
    listed = fjord("acl", "list", "--topic", topic, "--output", "json")
    assert listed.returncode == 0 and "User:carol" in listed.stdout, listed
    carol = client_config(broker, user="carol", password="carol-pw", mechanism="SCRAM-SHA-256")
    deadline = time.monotonic() + 20
    while (errors := produce(carol, topic, [b"from carol"])) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert errors == []

    produced = fjord("produce", topic, input="from the cli\n")
    assert produced.returncode == 0, produced.stderr
    consumed = fjord("consume", topic, "--from-beginning", "--count", "2")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == ["from carol", "from the cli"], consumed.stdout

    props.write_text(props.read_text().replace("sasl.password=", "sasl.password=wrong"))
    refused = fjord("acl", "list")
    assert refused.returncode != 0 and "SASL" in refused.stderr, refused
