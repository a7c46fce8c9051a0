"""A client flooding the coordinator with JoinGroup requests is bounded: pending members per
group stop at `group.max.size` (GROUP_MAX_SIZE_REACHED), and the broker keeps serving."""

import uuid

import kwire

MEMBER_ID_REQUIRED = 79
GROUP_MAX_SIZE_REACHED = 81
MAX_SIZE = 20


def first_join_v4(port: int, group: str, correlation_id: int) -> int:
    """JoinGroup v4 without a member id (KIP-394: answered at once); returns the error code."""
    body = (kwire.string(group) + kwire.i32(10000) + kwire.i32(10000) + kwire.string("")
            + kwire.string("consumer") + kwire.i32(1) + kwire.string("range") + kwire.nbytes(b""))
    payload = kwire.roundtrip(
        port, kwire.frame(kwire.request_header_v1(11, 4, correlation_id) + body))
    r = kwire.Reader(payload)
    assert r.i32() == correlation_id
    r.i32()  # throttle
    return r.i16()


def test_join_flood_is_bounded_by_group_max_size(broker_factory):
    broker = broker_factory(settings={"group.max.size": MAX_SIZE})
    group = f"flood-{uuid.uuid4().hex[:8]}"
    errors = [first_join_v4(broker.port, group, i) for i in range(1, 301)]
    assert errors[:MAX_SIZE] == [MEMBER_ID_REQUIRED] * MAX_SIZE
    assert set(errors[MAX_SIZE:]) == {GROUP_MAX_SIZE_REACHED}
    # Other groups are unaffected and the broker still answers.
    assert first_join_v4(broker.port, group + "-other", 999) == MEMBER_ID_REQUIRED
    broker.assert_alive()
