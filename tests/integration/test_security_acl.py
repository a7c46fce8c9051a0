"""ACL authorization (issue 9, docs/security-design.md section 3, "Authorization") against the
real binary.

One broker, one SASL_PLAINTEXT listener, PLAIN users admin (in ``super.users``), alice and
bob, ``StandardAuthorizer`` on. ACLs are created and deleted by admin with confluent-kafka's
AdminClient while the broker runs (they take effect without a restart). Covered: literal
topic WRITE; prefixed READ plus a group ACL for a consumer group (each missing one gives its
own error); DENY beats a prefixed ALLOW; host-restricted ACLs; Metadata filtering and
auto-creation needing CREATE; transactional and idempotent producers; DescribeConfigs of the
broker and CreateAcls refused to alice; kafka-python sees the same denials.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, ConfigResource, NewTopic,
                                   ResourcePatternType, ResourceType)

from conftest import _find_binary, free_port
from helpers import RDKAFKA_LOGGER, admin, consumer, producer, unique_topic
from test_security_sasl import Endpoint, SaslBroker, plain_jaas

USERS = {"admin": "admin-secret", "alice": "alice-pw", "bob": "bob-pw"}
# How long an ACL change may take to reach the broker's metadata image.
PROPAGATION_S = 10.0


class AclSetup:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.endpoint = Endpoint(self.port)
        self.broker = SaslBroker(_find_binary(), tmp, f"SASL_PLAINTEXT://127.0.0.1:{self.port}",
                                 self.port, {
                                     "sasl.enabled.mechanisms": "PLAIN",
                                     "sasl.jaas.config": plain_jaas(USERS),
                                     "authorizer.class.name":
                                         "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                                     "super.users": "User:admin",
                                 })
        self.broker.start()
        self.admin = admin(self.endpoint, **self.conf("admin"))

    def conf(self, user: str) -> dict:
        return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                "sasl.username": user, "sasl.password": USERS[user]}

    def kp_conf(self, user: str) -> dict:
        return {"bootstrap_servers": self.endpoint.bootstrap,
                "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                "sasl_plain_username": user, "sasl_plain_password": USERS[user]}

    def create_topic(self, topic: str) -> str:
        fs = self.admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=10)
        for f in fs.values():
            f.result(timeout=15)
        return topic

    def acl(self, resource_type, name: str, operation, principal: str = "User:alice",
            pattern=ResourcePatternType.LITERAL, permission=AclPermissionType.ALLOW,
            host: str = "*") -> AclBinding:
        binding = AclBinding(resource_type, name, pattern, principal, host, operation, permission)
        for f in self.admin.create_acls([binding]).values():
            f.result(timeout=15)
        return binding

    def delete(self, binding: AclBinding) -> None:
        flt = AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                               binding.principal, binding.host, binding.operation,
                               binding.permission_type)
        for f in self.admin.delete_acls([flt]).values():
            f.result(timeout=15)


@pytest.fixture(scope="module")
def s(tmp_path_factory):
    setup = AclSetup(tmp_path_factory.mktemp("fjord-acl"))
    yield setup
    if setup.broker.is_running():
        setup.broker.stop()


def produce_error(s: AclSetup, user: str, topic: str, **conf):
    """Produces one record as ``user``; the delivery error (None when delivered)."""
    p = producer(s.endpoint, **s.conf(user), **{"message.timeout.ms": 5000}, **conf)
    result = []
    p.produce(topic, b"x", on_delivery=lambda err, _m: result.append(err))
    p.flush(10)
    assert len(result) == 1, result
    return result[0]


def eventually(check, what: str):
    """ACL changes reach the image asynchronously: retry ``check`` until it returns True."""
    deadline = time.monotonic() + PROPAGATION_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def code(err) -> int | None:
    return None if err is None else err.code()


def test_topic_write_allow_and_deny_take_effect_without_restart(s):
    topic = s.create_topic(unique_topic("acl-write"))
    assert code(produce_error(s, "alice", topic)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    binding = s.acl(ResourceType.TOPIC, topic, AclOperation.WRITE)
    eventually(lambda: produce_error(s, "alice", topic) is None, "alice's WRITE never worked")
    assert code(produce_error(s, "bob", topic)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    s.delete(binding)
    eventually(lambda: code(produce_error(s, "alice", topic))
               == KafkaError.TOPIC_AUTHORIZATION_FAILED, "deleting the ACL never denied alice")


def group_consume(s: AclSetup, topic: str, group: str, timeout_s: float = 8.0):
    """Subscribes as alice in ``group``; ('ok', values) or ('error', code)."""
    c = consumer(s.endpoint, **s.conf("alice"), **{"group.id": group,
                                                   "session.timeout.ms": 6000})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                return ("error", m.error().code())
            return ("ok", m.value())
        return ("timeout", None)
    except KafkaException as e:
        return ("error", e.args[0].code())
    finally:
        c.close()


def test_prefixed_read_and_group_acl_for_a_consumer_group(s):
    topic = s.create_topic(f"logs-{unique_topic('app')}")
    p = producer(s.endpoint, **s.conf("admin"))
    p.produce(topic, b"hello")
    p.flush(10)
    group = "app-1"
    # Neither ACL: the group is checked first (FindCoordinator / JoinGroup).
    group_acl = s.acl(ResourceType.GROUP, group, AclOperation.READ)
    time.sleep(0.5)
    # Group ACL only: no READ on the topic.
    assert group_consume(s, topic, group) == ("error", KafkaError.TOPIC_AUTHORIZATION_FAILED)
    read = s.acl(ResourceType.TOPIC, "logs-", AclOperation.READ,
                 pattern=ResourcePatternType.PREFIXED)
    eventually(lambda: group_consume(s, topic, group) == ("ok", b"hello"),
               "prefixed READ + group READ never let alice consume")
    s.delete(group_acl)
    eventually(lambda: group_consume(s, topic, group)
               == ("error", KafkaError.GROUP_AUTHORIZATION_FAILED),
               "without the group ACL alice was never refused GROUP_AUTHORIZATION_FAILED")
    # kafka-python sees the same denial.
    from kafka import KafkaConsumer
    from kafka.errors import GroupAuthorizationFailedError
    kc = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest",
                       consumer_timeout_ms=5000, **s.kp_conf("alice"))
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            for _ in kc:
                pass
    finally:
        kc.close()
    s.delete(read)


def test_deny_beats_prefixed_allow(s):
    prefix = f"deny-{unique_topic('p')}-"
    allowed, denied = s.create_topic(prefix + "open"), s.create_topic(prefix + "secret")
    s.acl(ResourceType.TOPIC, prefix, AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED)
    s.acl(ResourceType.TOPIC, denied, AclOperation.WRITE, permission=AclPermissionType.DENY)
    eventually(lambda: produce_error(s, "alice", allowed) is None, "prefixed ALLOW never worked")
    assert code(produce_error(s, "alice", denied)) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_host_restricted_acl(s):
    topic = s.create_topic(unique_topic("acl-host"))
    s.acl(ResourceType.TOPIC, topic, AclOperation.WRITE, host="10.9.9.9")
    time.sleep(1.0)
    assert code(produce_error(s, "alice", topic)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    s.acl(ResourceType.TOPIC, topic, AclOperation.WRITE, host="127.0.0.1")
    eventually(lambda: produce_error(s, "alice", topic) is None,
               "an ACL for 127.0.0.1 never let alice write from 127.0.0.1")


def test_metadata_shows_only_describable_topics_and_auto_create_needs_create(s):
    prefix = f"vis-{unique_topic('m')}-"
    visible, hidden = s.create_topic(prefix + "a"), s.create_topic(unique_topic("hidden"))
    s.acl(ResourceType.TOPIC, prefix, AclOperation.DESCRIBE, pattern=ResourcePatternType.PREFIXED)
    s.acl(ResourceType.TOPIC, prefix, AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED)
    a = admin(s.endpoint, **s.conf("alice"))
    eventually(lambda: visible in a.list_topics(timeout=10).topics, "describable topic not listed")
    topics = a.list_topics(timeout=10).topics
    assert hidden not in topics and hidden in s.admin.list_topics(timeout=10).topics
    # Asked by name, the undescribable topic is refused rather than shown.
    md = a.list_topics(topic=hidden, timeout=10).topics[hidden]
    assert md.error is not None and md.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Producing to a topic that does not exist: WRITE (hence DESCRIBE) but no CREATE.
    new = prefix + "auto"
    err = produce_error(s, "alice", new)
    assert err is not None
    assert new not in s.admin.list_topics(timeout=10).topics
    s.acl(ResourceType.TOPIC, prefix, AclOperation.CREATE, pattern=ResourcePatternType.PREFIXED)
    eventually(lambda: produce_error(s, "alice", new) is None, "CREATE never allowed auto-creation")
    assert new in s.admin.list_topics(timeout=10).topics


def test_transactional_producer_needs_write_on_its_transactional_id(s):
    topic = s.create_topic(unique_topic("acl-txn"))
    txn_id = f"txn-{topic[-8:]}"
    s.acl(ResourceType.TOPIC, topic, AclOperation.WRITE)

    def init():
        p = Producer({"bootstrap.servers": s.endpoint.bootstrap, **s.conf("alice"),
                      "transactional.id": txn_id, "transaction.timeout.ms": 10000},
                     logger=RDKAFKA_LOGGER)
        try:
            p.init_transactions(10)
        except KafkaException as e:
            return None, e.args[0].code()
        return p, None

    p, err = init()
    assert p is None and err == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, err
    s.acl(ResourceType.TRANSACTIONAL_ID, txn_id, AclOperation.WRITE)
    deadline = time.monotonic() + PROPAGATION_S
    while p is None:
        assert time.monotonic() < deadline, f"init_transactions kept failing: {err}"
        time.sleep(0.3)
        p, err = init()
    p.begin_transaction()
    p.produce(topic, b"in-txn")
    p.commit_transaction(15)
    # The same transactional id on a topic alice may only DESCRIBE: AddPartitionsToTxn is
    # refused, the transaction cannot commit.
    other = s.create_topic(unique_topic("acl-txn-ro"))
    s.acl(ResourceType.TOPIC, other, AclOperation.DESCRIBE)
    time.sleep(1.0)
    p.begin_transaction()
    delivered = []

    def on_delivery(err, _m):
        delivered.append(err)

    p.produce(other, b"refused", on_delivery=on_delivery)
    with pytest.raises(KafkaException) as e:
        p.commit_transaction(15)
    codes = {e.value.args[0].code()} | {d.code() for d in delivered if d is not None}
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, (e.value, delivered)
    c = consumer(s.endpoint, **s.conf("admin"), **{"isolation.level": "read_committed"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        m = None
        end = time.monotonic() + 10
        while m is None and time.monotonic() < end:
            m = c.poll(0.5)
        assert m is not None and m.error() is None and m.value() == b"in-txn"
    finally:
        c.close()


def test_idempotent_producer_without_any_write_is_refused(s):
    """KIP-679: InitProducerId without a transactional id needs IDEMPOTENT_WRITE on the
    cluster or WRITE on some topic. bob may only DESCRIBE the topic (so metadata works and
    the producer gets as far as asking for a producer id)."""
    topic = s.create_topic(unique_topic("idem"))
    s.acl(ResourceType.TOPIC, topic, AclOperation.DESCRIBE, principal="User:bob")
    time.sleep(1.0)
    errors = []

    def on_error(e):
        errors.append(e)

    p = producer(s.endpoint, **s.conf("bob"), **{
        "enable.idempotence": True, "message.timeout.ms": 5000, "error_cb": on_error})
    delivered = []

    def on_delivery(err, _m):
        delivered.append(err)

    p.produce(topic, b"x", on_delivery=on_delivery)
    try:
        p.flush(10)
    except Exception as e:  # noqa: BLE001
        # The fatal error surfaces as a KafkaException, wrapped in a SystemError when it
        # is raised inside a callback.
        cause = e if isinstance(e, KafkaException) else e.__cause__
        assert isinstance(cause, KafkaException), repr(e)
        errors.append(cause.args[0])
    codes = {e.code() for e in errors} | {d.code() for d in delivered if d is not None}
    assert KafkaError.CLUSTER_AUTHORIZATION_FAILED in codes, (errors, delivered)


def test_describe_configs_and_create_acls_refused_to_alice(s):
    a = admin(s.endpoint, **s.conf("alice"))
    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    with pytest.raises(KafkaException) as e:
        a.describe_configs([resource])[resource].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # admin may.
    s.admin.describe_configs([resource])[resource].result(timeout=10)
    binding = AclBinding(ResourceType.TOPIC, "x", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.ALL, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException) as e:
        for f in a.create_acls([binding]).values():
            f.result(timeout=10)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_kafka_python_sees_the_same_denials(s):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KafkaTopicPartition
    from kafka.errors import TopicAuthorizationFailedError
    topic = s.create_topic(unique_topic("acl-kp"))
    kp = KafkaProducer(max_block_ms=8000, **s.kp_conf("bob"))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            kp.send(topic, b"x").get(timeout=10)
    finally:
        kp.close(timeout=2)
    # kafka-python's consumer logs the Metadata TOPIC_AUTHORIZATION_FAILED and reads nothing
    # (as against Kafka); the admin's data is there.
    p = producer(s.endpoint, **s.conf("admin"))
    p.produce(topic, b"secret")
    p.flush(10)
    kc = KafkaConsumer(auto_offset_reset="earliest", **s.kp_conf("bob"))
    try:
        kc.assign([KafkaTopicPartition(topic, 0)])
        got = {}
        for _ in range(3):
            got.update(kc.poll(timeout_ms=1000))
        assert got == {}
        assert topic in kc._client.cluster.unauthorized_topics
    finally:
        kc.close()
