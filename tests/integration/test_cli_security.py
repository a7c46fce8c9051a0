"""`fjord acl`, `fjord user` and `fjord quota` against the real broker: ACLs created, listed
and deleted (and seen by confluent-kafka's admin client, which also speaks CreateAcls and
DescribeAcls), SCRAM users created, described and deleted, quotas set, described and
deleted; errors print the Kafka error name and exit non-zero."""

import json
import subprocess

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from conftest import _find_binary, free_port
from helpers import admin, unique_topic

CLI_TIMEOUT_S = 60
ADMIN_TIMEOUT_S = 30


def fjord(broker, *args, check=True, stdin=None):
    """Runs `fjord ARGS --bootstrap-server ...`; returns (exit code, stdout, stderr)."""
    proc = subprocess.run([str(broker.binary), *args, "--bootstrap-server", broker.bootstrap],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"fjord {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.returncode, proc.stdout, proc.stderr


def fjord_json(broker, *args, stdin=None):
    _, out, _ = fjord(broker, *args, "--output", "json", stdin=stdin)
    return json.loads(out)


def table(out):
    """The rows of a text table (header dropped), each split on whitespace."""
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


def test_acl_create_list_delete(broker):
    topic = unique_topic("acl")
    _, out, _ = fjord(broker, "acl", "create", "--producer", "--topic", topic,
                      "--transactional-id", "tx-1", "--allow-principal", "User:alice")
    assert out.startswith("Created 5 ACL(s):"), out
    fjord(broker, "acl", "create", "--topic", topic, "--deny-principal", "User:mallory",
          "--deny-host", "10.9.9.9", "--operation", "Read")
    _, out, _ = fjord(broker, "acl", "list", "--topic", topic)
    rows = table(out)
    assert ["TOPIC", topic, "LITERAL", "User:alice", "*", "WRITE", "ALLOW"] in rows, out
    assert ["TOPIC", topic, "LITERAL", "User:mallory", "10.9.9.9", "READ", "DENY"] in rows, out
    assert len(rows) == 4, out  # WRITE, DESCRIBE, CREATE for alice; READ denied for mallory

    listed = fjord_json(broker, "acl", "list", "--principal", "User:alice")["acls"]
    assert {(a["resource_type"], a["operation"]) for a in listed} >= {
        ("TOPIC", "CREATE"), ("TRANSACTIONAL_ID", "WRITE"), ("TRANSACTIONAL_ID", "DESCRIBE")}, listed
    assert all(a["principal"] == "User:alice" for a in listed), listed

    # What the CLI created is what another Kafka client sees, and the other way round.
    client = admin(broker)
    seen = client.describe_acls(AclBindingFilter(
        ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, None, None, AclOperation.ANY,
        AclPermissionType.ANY)).result(timeout=ADMIN_TIMEOUT_S)
    assert len(seen) == 4, seen
    prefix = unique_topic("pfx-")
    created = client.create_acls([AclBinding(
        ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, "User:bob", "*",
        AclOperation.READ, AclPermissionType.ALLOW)])
    for future in created.values():
        future.result(timeout=ADMIN_TIMEOUT_S)
    _, out, _ = fjord(broker, "acl", "list", "--topic", prefix + "x", "--resource-pattern-type",
                      "match")
    assert ["TOPIC", prefix, "PREFIXED", "User:bob", "*", "READ", "ALLOW"] in table(out), out

    # A delete that matches every ACL of a resource needs --yes.
    code, _, err = fjord(broker, "acl", "delete", "--topic", topic, check=False)
    assert code == 1 and "--yes" in err and "Traceback" not in err, err
    deleted = fjord_json(broker, "acl", "delete", "--topic", topic, "--allow-principal",
                         "User:alice")["deleted"]
    assert sorted(a["operation"] for a in deleted) == ["CREATE", "DESCRIBE", "WRITE"], deleted
    _, out, _ = fjord(broker, "acl", "delete", "--topic", topic, "--yes")
    assert out.startswith("Deleted 1 ACL(s):") and "User:mallory" in out, out
    _, out, _ = fjord(broker, "acl", "list", "--topic", topic)
    assert table(out) == [], out
    fjord(broker, "acl", "delete", "--allow-principal", "User:alice")
    fjord(broker, "acl", "delete", "--allow-principal", "User:bob")
    assert fjord_json(broker, "acl", "list", "--principal", "User:alice")["acls"] == []

    # Usage errors are clap's (exit 2); a resource type's invalid operation is refused locally.
    code, _, err = fjord(broker, "acl", "create", "--topic", topic, check=False)
    assert code == 2 and "--allow-principal" in err, err
    code, _, err = fjord(broker, "acl", "create", "--topic", topic, "--allow-principal",
                         "User:a", "--operation", "IdempotentWrite", check=False)
    assert code == 1 and "cannot have operation IDEMPOTENT_WRITE" in err, err


def test_scram_user_create_describe_delete(broker):
    _, out, _ = fjord(broker, "user", "create", "--user", "alice", "--password-stdin",
                      "--iterations", "8192", stdin="alice-secret\n")
    assert "SCRAM-SHA-256 and SCRAM-SHA-512" in out, out
    fjord(broker, "user", "create", "--user", "bob", "--password", "bob-pw", "--mechanism",
          "SCRAM-SHA-512")
    _, out, _ = fjord(broker, "user", "describe", "--user", "alice")
    assert table(out) == [["alice", "SCRAM-SHA-256", "8192"],
                          ["alice", "SCRAM-SHA-512", "8192"]], out
    users = {u["user"]: u["credentials"] for u in fjord_json(broker, "user", "list")["users"]}
    assert users["bob"] == [{"mechanism": "SCRAM-SHA-512", "iterations": 4096}], users
    assert len(users["alice"]) == 2, users

    # Another Kafka admin client reads the same credentials.
    client = admin(broker)  # kept alive until the result is in
    described = client.describe_user_scram_credentials(["alice"])["alice"].result(
        timeout=ADMIN_TIMEOUT_S)
    assert sorted(i.iterations for i in described.scram_credential_infos) == [8192, 8192]

    fjord(broker, "user", "delete", "--user", "alice", "--mechanism", "SCRAM-SHA-256")
    _, out, _ = fjord(broker, "user", "describe", "--user", "alice")
    assert table(out) == [["alice", "SCRAM-SHA-512", "8192"]], out
    deleted = fjord_json(broker, "user", "delete", "--user", "alice")
    assert deleted == {"user": "alice", "deleted": ["SCRAM-SHA-512"]}, deleted
    code, _, err = fjord(broker, "user", "describe", "--user", "alice", check=False)
    assert code == 1 and "RESOURCE_NOT_FOUND" in err, err
    code, _, err = fjord(broker, "user", "create", "--user", "carol", "--password", "pw",
                         "--iterations", "100", check=False)
    assert code == 1 and "4096" in err, err
    fjord(broker, "user", "delete", "--user", "bob")


def test_quota_set_describe_delete(broker):
    fjord(broker, "quota", "set", "--user", "alice", "--producer-byte-rate", "1048576",
          "--consumer-byte-rate", "2097152")
    fjord(broker, "quota", "set", "--user", "alice", "--client-id", "app",
          "--request-percentage", "25")
    fjord(broker, "quota", "set", "--user-default", "--producer-byte-rate", "4096")
    fjord(broker, "quota", "set", "--client-default", "--consumer-byte-rate", "8192")

    _, out, _ = fjord(broker, "quota", "describe", "--user", "alice")
    assert table(out) == [["alice", "-", "1048576", "2097152", "-"]], out
    _, out, _ = fjord(broker, "quota", "list")
    rows = table(out)
    assert ["alice", "app", "-", "-", "25"] in rows, out
    assert ["<default>", "-", "4096", "-", "-"] in rows, out
    assert ["-", "<default>", "-", "8192", "-"] in rows, out
    # list --user alice: every entity that includes alice.
    listed = fjord_json(broker, "quota", "list", "--user", "alice")["quotas"]
    assert sorted(json.dumps(q["entity"], sort_keys=True) for q in listed) == [
        '{"client-id": "app", "user": "alice"}', '{"user": "alice"}'], listed
    described = fjord_json(broker, "quota", "describe", "--user-default")["quotas"]
    assert described == [{"entity": {"user": None}, "quotas": {"producer_byte_rate": 4096.0}}]

    fjord(broker, "quota", "delete", "--user", "alice", "--key", "producer_byte_rate")
    _, out, _ = fjord(broker, "quota", "describe", "--user", "alice")
    assert table(out) == [["alice", "-", "-", "2097152", "-"]], out
    code, _, err = fjord(broker, "quota", "delete", "--user", "alice", "--key",
                         "request_percentage", check=False)
    assert code == 1 and "has no quota request_percentage" in err, err
    for entity in (["--user", "alice"], ["--user", "alice", "--client-id", "app"],
                   ["--user-default"], ["--client-default"]):
        fjord(broker, "quota", "delete", *entity)
    _, out, _ = fjord(broker, "quota", "describe", "--user", "alice")
    assert out.startswith("(no quotas set for user 'alice')"), out
    assert fjord_json(broker, "quota", "list")["quotas"] == []
    code, _, err = fjord(broker, "quota", "delete", "--user", "alice", check=False)
    assert code == 1 and "no quotas are set for user 'alice'" in err, err
    # A key the broker does not know is the broker's error, by its Kafka name.
    code, _, err = fjord(broker, "quota", "set", "--user", "alice", "--set", "bogus_rate=5",
                         check=False)
    assert code == 1 and "INVALID_REQUEST" in err, err


SECURITY_COMMANDS = [
    ["acl", "list"],
    ["acl", "create", "--topic", "t", "--allow-principal", "User:a"],
    ["acl", "delete", "--allow-principal", "User:a"],
    ["user", "list"],
    ["user", "describe", "--user", "a"],
    ["user", "create", "--user", "a", "--password", "p"],
    ["user", "delete", "--user", "a"],
    ["quota", "list"],
    ["quota", "describe", "--user", "a"],
    ["quota", "set", "--user", "a", "--producer-byte-rate", "1"],
    ["quota", "delete", "--user", "a"],
]


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize("command", SECURITY_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_security_commands_against_a_closed_port_fail_in_one_line(command, output):
    port = free_port()  # nothing listens there
    proc = subprocess.run([str(_find_binary()), *command, "--bootstrap", f"127.0.0.1:{port}",
                           "--output", output], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert proc.returncode == 1 and proc.stdout == "", proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and f"127.0.0.1:{port}" in lines[0], \
        proc.stderr
