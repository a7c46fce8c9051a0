"""ACLs and SCRAM credentials in a 3-node cluster: CreateAcls, DeleteAcls and
AlterUserScramCredentials sent to every node (the nodes that are not the active controller
forward them over the controller listener), and every node describes the same ACLs and
credentials from its own metadata image, also after the active controller is killed and
restarted."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fjordcluster import raw_quorum_leader  # noqa: E402
from helpers import admin  # noqa: E402

ANY = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                       AclOperation.ANY, AclPermissionType.ANY)


def acl(name: str) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, f"User:{name}",
                      "*", AclOperation.READ, AclPermissionType.ALLOW)


def node_admin(node):
    return admin(node, **{"bootstrap.servers": node.bootstrap})


def described(node) -> set:
    a = node_admin(node)  # kept alive until the future resolves
    return set(a.describe_acls(ANY, request_timeout=10).result(timeout=15))


def wait_all(cluster, expected: set, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while True:
        seen = {n: described(cluster.node(n)) for n in cluster.running()}
        if all(v == expected for v in seen.values()):
            return
        assert time.time() < deadline, f"nodes disagree: {seen}"
        time.sleep(0.2)


def test_acls_and_credentials_through_every_node(cluster_factory):
    cluster = cluster_factory()
    expected = set()
    for n in cluster.ids():
        binding = acl(f"from-node-{n}")
        a = node_admin(cluster.node(n))
        a.create_acls([binding], request_timeout=15)[binding].result(timeout=20)
        expected.add(binding)
        # Answered once this node's image has it.
        assert binding in described(cluster.node(n))
    wait_all(cluster, expected)

    for n in cluster.ids():
        user = f"user-{n}"
        a = node_admin(cluster.node(n))
        fs = a.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(
                user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"pw")],
            request_timeout=15)
        fs[user].result(timeout=20)
    for n in cluster.ids():
        a = node_admin(cluster.node(n))
        users = a.describe_user_scram_credentials(request_timeout=10).result(timeout=15)
        assert set(users) == {f"user-{m}" for m in cluster.ids()}

    # Delete through a node that is not the active controller.
    leader = raw_quorum_leader(cluster.node(1).client_port)
    assert leader is not None
    other = next(n for n in cluster.ids() if n != leader[0])
    gone = acl(f"from-node-{other}")
    flt = AclBindingFilter(ResourceType.TOPIC, gone.name, ResourcePatternType.LITERAL, None,
                           None, AclOperation.ANY, AclPermissionType.ANY)
    a = node_admin(cluster.node(other))
    fs = a.delete_acls([flt], request_timeout=15)
    assert set(fs[flt].result(timeout=20)) == {gone}
    expected.discard(gone)
    wait_all(cluster, expected)

    # The active controller restarts: the others keep serving, it catches up from the log.
    cluster.kill(leader[0])
    cluster.start(leader[0])
    wait_all(cluster, expected, timeout=60)
