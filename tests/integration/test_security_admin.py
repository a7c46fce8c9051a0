"""ACL and SCRAM credential administration against the real binary with confluent-kafka's
AdminClient (CreateAcls, DescribeAcls, DeleteAcls, AlterUserScramCredentials,
DescribeUserScramCredentials) and kafka-python's: Kafka's filter semantics and error codes,
and that ACLs and credentials survive a restart (metadata log replay) and a kill -9.
Client quotas (no admin API in either client) are covered by
`crates/broker/tests/security_admin.rs`."""

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from helpers import admin


def binding(name, pattern=ResourcePatternType.LITERAL, principal="User:alice",
            operation=AclOperation.READ, permission=AclPermissionType.ALLOW,
            resource=ResourceType.TOPIC):
    return AclBinding(resource, name, pattern, principal, "*", operation, permission)


def any_filter(**kw):
    args = dict(restype=ResourceType.ANY, name=None, resource_pattern_type=ResourcePatternType.ANY,
                principal=None, host=None, operation=AclOperation.ANY,
                permission_type=AclPermissionType.ANY)
    args.update(kw)
    return AclBindingFilter(**args)


def create(a, bindings):
    """{binding: None or the KafkaException}"""
    out = {}
    for b, f in a.create_acls(bindings, request_timeout=10).items():
        try:
            f.result(timeout=10)
            out[b] = None
        except KafkaException as e:
            out[b] = e
    return out


def describe(a, acl_filter):
    return set(a.describe_acls(acl_filter, request_timeout=10).result(timeout=10))


def test_acls_create_describe_delete_and_survive_restart(broker):
    a = admin(broker)
    orders = binding("orders")
    prefixed = binding("ord", ResourcePatternType.PREFIXED, "User:bob", AclOperation.WRITE)
    wildcard = binding("*", principal="User:carol", operation=AclOperation.DESCRIBE,
                       permission=AclPermissionType.DENY)
    group = binding("g1", resource=ResourceType.GROUP)
    results = create(a, [orders, prefixed, wildcard, group])
    assert all(e is None for e in results.values()), results
    # An identical ACL again: success, nothing new.
    assert create(a, [orders]) == {orders: None}
    # A CLUSTER ACL must name kafka-cluster.
    bad = binding("not-the-cluster", resource=ResourceType.BROKER, operation=AclOperation.ALTER)
    err = create(a, [bad])[bad]
    assert err is not None
    assert err.args[0].code() == KafkaError.INVALID_REQUEST

    assert describe(a, any_filter()) == {orders, prefixed, wildcard, group}
    # Exact topic filter (LITERAL): only the literal ACL of that name.
    assert describe(a, any_filter(restype=ResourceType.TOPIC, name="orders",
                                  resource_pattern_type=ResourcePatternType.LITERAL)) == {orders}
    # MATCH: every ACL that applies to topic "orders": literal, wildcard and prefix.
    assert describe(a, any_filter(restype=ResourceType.TOPIC, name="orders",
                                  resource_pattern_type=ResourcePatternType.MATCH)) == {
        orders, prefixed, wildcard}
    assert describe(a, any_filter(principal="User:bob")) == {prefixed}
    assert describe(a, any_filter(permission_type=AclPermissionType.DENY)) == {wildcard}

    broker.restart()
    a = admin(broker)
    assert describe(a, any_filter()) == {orders, prefixed, wildcard, group}

    # DeleteAcls: per filter the ACLs it deleted.
    fs = a.delete_acls([any_filter(principal="User:bob"),
                        any_filter(restype=ResourceType.GROUP)], request_timeout=10)
    deleted = {f: set(fut.result(timeout=10)) for f, fut in fs.items()}
    assert sorted(len(v) for v in deleted.values()) == [1, 1]
    assert set().union(*deleted.values()) == {prefixed, group}
    assert describe(a, any_filter()) == {orders, wildcard}

    broker.kill9()
    broker.restart()
    assert describe(admin(broker), any_filter()) == {orders, wildcard}


def scram(a, alterations):
    out = {}
    for user, f in a.alter_user_scram_credentials(alterations, request_timeout=10).items():
        try:
            f.result(timeout=10)
            out[user] = None
        except KafkaException as e:
            out[user] = e.args[0].code()
    return out


def describe_users(a, users=None):
    fut = a.describe_user_scram_credentials(users, request_timeout=10)
    if isinstance(fut, dict):
        out = {}
        for user, f in fut.items():
            try:
                out[user] = f.result(timeout=10)
            except KafkaException as e:
                out[user] = e.args[0].code()
        return out
    return fut.result(timeout=10)


def mechanisms(description):
    return {(info.mechanism, info.iterations) for info in description.scram_credential_infos}


def test_scram_credentials_alter_describe_and_survive_restart(broker):
    a = admin(broker)
    results = scram(a, [
        UserScramCredentialUpsertion(
            "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"alice-secret"),
        UserScramCredentialUpsertion(
            "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"bob-secret"),
        UserScramCredentialUpsertion(
            "eve", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"too-few"),
        UserScramCredentialDeletion("nobody", ScramMechanism.SCRAM_SHA_256),
    ])
    assert results == {"alice": None, "bob": None,
                       "eve": KafkaError.UNACCEPTABLE_CREDENTIAL,
                       "nobody": KafkaError.RESOURCE_NOT_FOUND}
    # A second mechanism for alice.
    assert scram(a, [UserScramCredentialUpsertion(
        "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"x")]) == {
        "alice": None}

    everyone = describe_users(a)
    assert set(everyone) == {"alice", "bob"}
    assert mechanisms(everyone["alice"]) == {(ScramMechanism.SCRAM_SHA_256, 4096),
                                             (ScramMechanism.SCRAM_SHA_512, 4096)}
    assert mechanisms(everyone["bob"]) == {(ScramMechanism.SCRAM_SHA_512, 8192)}
    named = describe_users(a, ["bob", "nobody"])
    assert mechanisms(named["bob"]) == {(ScramMechanism.SCRAM_SHA_512, 8192)}
    assert named["nobody"] == KafkaError.RESOURCE_NOT_FOUND

    broker.restart()
    a = admin(broker)
    assert set(describe_users(a)) == {"alice", "bob"}
    assert scram(a, [UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_256)]) == {
        "alice": None}
    assert mechanisms(describe_users(a, ["alice"])["alice"]) == {
        (ScramMechanism.SCRAM_SHA_512, 4096)}
    broker.kill9()
    broker.restart()
    assert mechanisms(describe_users(admin(broker), ["alice"])["alice"]) == {
        (ScramMechanism.SCRAM_SHA_512, 4096)}


def test_kafka_python_sees_the_same_acls_and_credentials(broker):
    kafka_admin = pytest.importorskip("kafka.admin")
    a = admin(broker)
    assert create(a, [binding("shared")]) == {binding("shared"): None}
    assert scram(a, [UserScramCredentialUpsertion(
        "dana", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw")]) == {
        "dana": None}
    client = kafka_admin.KafkaAdminClient(bootstrap_servers=broker.bootstrap,
                                          request_timeout_ms=10000)
    try:
        acl_filter = kafka_admin.ACLFilter(
            principal=None, host="*", operation=kafka_admin.ACLOperation.ANY,
            permission_type=kafka_admin.ACLPermissionType.ANY,
            resource_pattern=kafka_admin.ResourcePatternFilter(
                kafka_admin.ResourceType.TOPIC, "shared", kafka_admin.ACLResourcePatternType.ANY))
        acls, error = client.describe_acls(acl_filter)
        assert [acl.principal for acl in acls] == ["User:alice"], (acls, error)
        described = client.describe_user_scram_credentials(["dana", "ghost"])
        assert described["dana"]["error"] is None
        assert [(int(c["mechanism"]), c["iterations"])
                for c in described["dana"]["credential_infos"]] == [(1, 4096)]
        assert described["ghost"]["error"] is not None
    finally:
        client.close()
