"""Raw-socket protocol tests: malformed input, hand-built requests, pipelining.

Every test ends by checking the broker process is still alive and serving.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest

import kwire as kw
from helpers import admin, create_topic, produce_all, producer, read_partition, unique_topic

BASE_TS = 1_700_000_500_000


def assert_serving(b):
    b.assert_alive()
    apis = kw.api_versions_ok(b.port)
    assert kw.API_VERSIONS in apis and kw.PRODUCE in apis and kw.FETCH in apis
    # and a real client still works
    md = admin(b).list_topics(timeout=10)
    assert list(md.brokers) == [1]


def _send_and_expect_close(b, payload: bytes, timeout: float = 10.0) -> bytes:
    s = kw.connect(b.port)
    try:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        return kw.wait_closed(s, timeout)
    finally:
        s.close()


# ------------------------------------------------------------- bad framing
def test_garbage_bytes(broker):
    rnd = os.urandom(4096)
    s = kw.connect(broker.port)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + rnd)
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()
    # "GET " read as a frame length is 0x47455420 (~1.2 GB): must be refused, not allocated
    _send_and_expect_close(broker, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_serving(broker)


def test_frame_length_max_int(broker):
    _send_and_expect_close(broker, struct.pack(">i", 2**31 - 1) + b"\x00" * 64)
    assert_serving(broker)


def test_frame_length_over_request_limit(broker_factory):
    b = broker_factory(settings={"socket.request.max.bytes": 1_000_000})
    _send_and_expect_close(b, struct.pack(">i", 1_000_001) + b"\x00" * 1024)
    assert_serving(b)


def test_negative_frame_length(broker):
    _send_and_expect_close(broker, struct.pack(">i", -5) + b"\x00" * 16)
    _send_and_expect_close(broker, struct.pack(">i", -(2**31)))
    assert_serving(broker)


def test_zero_and_tiny_frames(broker):
    # a frame too short to even hold a request header
    _send_and_expect_close(broker, struct.pack(">i", 0))
    _send_and_expect_close(broker, struct.pack(">i", 3) + b"\x00\x12\x00")
    assert_serving(broker)


def test_truncated_request_then_close(broker):
    full = kw.metadata_v1(1, None)
    for cut in (2, 4, 6, len(full) - 1):
        s = kw.connect(broker.port)
        s.sendall(full[:cut])
        s.close()
    # announce 100 bytes, send 20, close
    s = kw.connect(broker.port)
    s.sendall(struct.pack(">i", 100) + b"\x00" * 20)
    s.close()
    # half-close (FIN) with an incomplete frame: broker must close its side too
    s = kw.connect(broker.port)
    s.sendall(full[:-1])
    s.shutdown(socket.SHUT_WR)
    kw.wait_closed(s, 10)
    s.close()
    assert_serving(broker)


def test_unknown_api_key(broker):
    for api_key in (9999, -1, 200):
        req = kw.frame(kw.request_header_v1(api_key, 0, 77) + b"\x00" * 8)
        s = kw.connect(broker.port)
        try:
            s.sendall(req)
            # Apache Kafka closes the connection on an unknown api key.
            kw.wait_closed(s, 10)
        finally:
            s.close()
    assert_serving(broker)


def send_and_await_reply_or_close(broker, payload, timeout_s):
    """Sends one framed request on a fresh connection and waits for a reply, a close or the timeout."""
    s = kw.connect(broker.port)
    try:
        s.sendall(kw.frame(payload))
        try:
            s.settimeout(timeout_s)
            s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            pass
    finally:
        s.close()


def test_garbage_inside_valid_frame(broker):
    for _ in range(20):
        body = os.urandom(64)
        # keep the api key valid-ish (Metadata v1) so the body parser is exercised
        send_and_await_reply_or_close(broker, kw.request_header_v1(kw.METADATA, 1, 5) + body, 5)
    assert_serving(broker)


def test_huge_array_count_in_small_body(broker):
    # Metadata v1 whose topics array claims 0x7fffffff entries but carries none
    # An error response or a close are both acceptable; a crash is not.
    send_and_await_reply_or_close(broker, kw.request_header_v1(kw.METADATA, 1, 9) + kw.i32(0x7FFFFFFF), 10)
    # same for a Produce v3 with a huge topic count and huge record-bytes length
    payload = kw.request_header_v1(kw.PRODUCE, 3, 10) + kw.string(None) + kw.i16(1) + kw.i32(1000) \
        + kw.i32(0x7FFFFFFF)
    send_and_await_reply_or_close(broker, payload, 10)
    assert_serving(broker)


# ------------------------------------------------------------- ApiVersions
def test_api_versions_v0(broker):
    corr, err, apis = kw.parse_api_versions_v0(kw.roundtrip(broker.port, kw.api_versions_v0(31337)))
    assert corr == 31337 and err == 0
    expected_min_max = {
        kw.PRODUCE: 3, kw.FETCH: 4, kw.LIST_OFFSETS: None, kw.METADATA: None,
        kw.API_VERSIONS: None, kw.CREATE_TOPICS: None,
    }
    for key, max_at_least in expected_min_max.items():
        assert key in apis, f"api {key} missing from ApiVersions"
        lo, hi = apis[key]
        assert 0 <= lo <= hi
        if max_at_least is not None:
            assert hi >= max_at_least
    assert apis[kw.API_VERSIONS][1] >= 3


def test_api_versions_lists_the_cluster_admin_apis(broker):
    """ElectLeaders (43), AlterPartitionReassignments (45), ListPartitionReassignments (46),
    DescribeQuorum (55) and UnregisterBroker (64), at Kafka's version ranges."""
    _, err, apis = kw.parse_api_versions_v0(kw.roundtrip(broker.port, kw.api_versions_v0(7)))
    assert err == 0
    assert {key: apis.get(key) for key in (43, 45, 46, 55, 64)} == {
        43: (0, 2), 45: (0, 0), 46: (0, 0), 55: (0, 2), 64: (0, 0)}


def test_api_versions_unsupported_version(broker):
    # v99 with a flexible (v2) header, as a future client would send it
    payload = kw.request_header_v2(kw.API_VERSIONS, 99, 4711) + kw.compact_string("future-client") \
        + kw.compact_string("9.9") + kw.uvarint(0)
    resp = kw.roundtrip(broker.port, kw.frame(payload))
    corr, err, apis = kw.parse_api_versions_v0(resp)
    assert corr == 4711
    assert err == kw.UNSUPPORTED_VERSION
    assert kw.API_VERSIONS in apis and kw.PRODUCE in apis and kw.FETCH in apis, apis
    assert_serving(broker)


# ---------------------------------------------------------------- Produce
def test_raw_produce_valid_then_corrupted_crc(broker):
    t = unique_topic("crc")
    create_topic(broker, t)
    recs = [(b"k0", b"hello", [("h", b"1")]), (None, b"world", []), (b"k2", None, [])]
    batch = kw.record_batch(recs, BASE_TS)

    with kw.connect(broker.port) as s:
        s.sendall(kw.produce_v3(1, t, 0, batch))
        corr, res = kw.parse_produce_v3(kw.read_frame(s))
        assert corr == 1
        assert res == {(t, 0): (0, 0)}, res

        bad = bytearray(batch)
        bad[-3] ^= 0xFF  # flip a byte inside the last record
        s.sendall(kw.produce_v3(2, t, 0, bytes(bad)))
        corr, res = kw.parse_produce_v3(kw.read_frame(s))
        assert corr == 2
        assert res[(t, 0)][0] == kw.CORRUPT_MESSAGE, res

        bad = bytearray(batch)
        bad[17] ^= 0x01  # flip a bit inside the stored CRC itself
        s.sendall(kw.produce_v3(3, t, 0, bytes(bad)))
        corr, res = kw.parse_produce_v3(kw.read_frame(s))
        assert corr == 3 and res[(t, 0)][0] == kw.CORRUPT_MESSAGE, res

        # batch length field larger than the data actually present
        bad = bytearray(batch)
        bad[8:12] = kw.i32(len(batch) + 100)
        s.sendall(kw.produce_v3(4, t, 0, bytes(bad)))
        corr, res = kw.parse_produce_v3(kw.read_frame(s))
        assert corr == 4 and res[(t, 0)][0] != 0, res

        # the same connection still works and the next append gets offset 3
        s.sendall(kw.produce_v3(5, t, 0, kw.record_batch([(b"k3", b"again", [])], BASE_TS + 10)))
        corr, res = kw.parse_produce_v3(kw.read_frame(s))
        assert corr == 5 and res == {(t, 0): (0, 3)}, res

    got = read_partition(broker, t, 0, 4)
    assert [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got] == [
        (0, b"k0", b"hello", [("h", b"1")], BASE_TS),
        (1, None, b"world", None, BASE_TS + 1),
        (2, b"k2", None, None, BASE_TS + 2),
        (3, b"k3", b"again", None, BASE_TS + 10),
    ]
    assert_serving(broker)


def test_raw_produce_unknown_topic_and_partition(broker_factory):
    b = broker_factory(settings={"auto.create.topics.enable": "false"})
    t = unique_topic("known")
    create_topic(b, t, partitions=2)
    batch = kw.record_batch([(b"k", b"v", [])], BASE_TS)
    with kw.connect(b.port) as s:
        s.sendall(kw.produce_v3(1, "no-such-topic-" + t, 0, batch))
        _, res = kw.parse_produce_v3(kw.read_frame(s))
        assert res[("no-such-topic-" + t, 0)][0] == kw.UNKNOWN_TOPIC_OR_PARTITION, res
        s.sendall(kw.produce_v3(2, t, 5, batch))
        _, res = kw.parse_produce_v3(kw.read_frame(s))
        assert res[(t, 5)][0] == kw.UNKNOWN_TOPIC_OR_PARTITION, res
    assert_serving(b)


def test_raw_produce_acks0_no_response(broker):
    t = unique_topic("acks0raw")
    create_topic(broker, t)
    with kw.connect(broker.port) as s:
        s.sendall(kw.produce_v3(1, t, 0, kw.record_batch([(None, b"fire-and-forget", [])], BASE_TS),
                                acks=0))
        # acks=0 gets no response: the next response on this socket must be for correlation id 2
        s.sendall(kw.api_versions_v0(2))
        corr, err, _ = kw.parse_api_versions_v0(kw.read_frame(s))
        assert corr == 2 and err == 0
    got = read_partition(broker, t, 0, 1)
    assert got[0].value() == b"fire-and-forget"


def test_metadata_no_auto_create_when_disabled(broker_factory):
    b = broker_factory(settings={"auto.create.topics.enable": "false"})
    t = unique_topic("mdnoauto")
    corr, brokers, topics = kw.parse_metadata_v4(kw.roundtrip(b.port, kw.metadata_v4(8, [t], True)))
    assert corr == 8
    assert brokers == [(1, "127.0.0.1", b.port, None)]
    assert topics[t][0] == kw.UNKNOWN_TOPIC_OR_PARTITION
    _, _, topics = kw.parse_metadata_v4(kw.roundtrip(b.port, kw.metadata_v4(9, [t], True)))
    assert topics[t][0] == kw.UNKNOWN_TOPIC_OR_PARTITION, "topic must not have been created"


def test_metadata_auto_create_flag_respected(broker):
    t = unique_topic("mdauto")
    _, _, topics = kw.parse_metadata_v4(kw.roundtrip(broker.port, kw.metadata_v4(1, [t], False)))
    assert topics[t][0] == kw.UNKNOWN_TOPIC_OR_PARTITION, "allow_auto_topic_creation=false must not create"
    _, _, topics = kw.parse_metadata_v4(kw.roundtrip(broker.port, kw.metadata_v4(2, [t], True)))
    # Kafka answers LEADER_NOT_AVAILABLE (5) while the new topic is being set up, or NONE
    assert topics[t][0] in (0, 5), topics[t]
    _, _, topics = kw.parse_metadata_v4(kw.roundtrip(broker.port, kw.metadata_v4(3, [t], False)))
    assert topics[t][0] in (0, 5) and t in topics


# --------------------------------------------------------------- pipelining
def test_pipelined_requests_answered_in_order(broker):
    t = unique_topic("pipe")
    create_topic(broker, t)
    reqs = [
        kw.metadata_v1(101, None),
        kw.api_versions_v0(102),
        kw.produce_v3(103, t, 0, kw.record_batch([(b"k", b"v", [])], BASE_TS)),
        kw.metadata_v1(104, [t]),
        kw.api_versions_v0(105),
    ]
    with kw.connect(broker.port) as s:
        s.sendall(b"".join(reqs))
        corrs = [struct.unpack(">i", kw.read_frame(s)[:4])[0] for _ in reqs]
    assert corrs == [101, 102, 103, 104, 105]


def test_many_pipelined_produces(broker):
    t = unique_topic("pipe2")
    create_topic(broker, t)
    n = 200
    with kw.connect(broker.port) as s:
        s.sendall(b"".join(kw.produce_v3(1000 + i, t, 0,
                                         kw.record_batch([(None, b"p%d" % i, [])], BASE_TS + i))
                           for i in range(n)))
        results = [kw.parse_produce_v3(kw.read_frame(s)) for _ in range(n)]
    assert [c for c, _ in results] == [1000 + i for i in range(n)]
    assert [r[(t, 0)] for _, r in results] == [(0, i) for i in range(n)]


def test_client_id_null_and_empty(broker):
    for cid in (None, ""):
        payload = kw.request_header_v1(kw.API_VERSIONS, 0, 55, client_id=cid)
        corr, err, _ = kw.parse_api_versions_v0(kw.roundtrip(broker.port, kw.frame(payload)))
        assert corr == 55 and err == 0


def test_broker_survives_after_all_abuse_and_real_client_works(broker):
    """Combine several abuses on one broker, then a full produce/consume round trip."""
    for payload in (struct.pack(">i", 2**31 - 1), struct.pack(">i", -1), os.urandom(100),
                    kw.frame(kw.request_header_v1(4242, 0, 1))):
        s = kw.connect(broker.port)
        try:
            s.sendall(payload)
        except OSError:
            pass
        s.close()
    t = unique_topic("alive")
    create_topic(broker, t)
    produce_all(producer(broker), t, [{"key": b"a", "value": b"b", "timestamp": BASE_TS}]).assert_all_ok(1)
    got = read_partition(broker, t, 0, 1)
    assert got[0].value() == b"b"
    assert_serving(broker)


def test_batch_larger_than_segment_size(broker_factory):
    """Kafka rejects a batch bigger than the segment size with RECORD_LIST_TOO_LARGE (18),
    a non-retriable error (UnifiedLog.append -> RecordBatchTooLargeException)."""
    b = broker_factory(settings={"log.segment.bytes": 4096})
    t = unique_topic("segbig")
    create_topic(b, t)
    with kw.connect(b.port) as s:
        s.sendall(kw.produce_v3(1, t, 0, kw.record_batch([(None, b"x" * 5000, [])], BASE_TS)))
        _, res = kw.parse_produce_v3(kw.read_frame(s))
        assert res[(t, 0)][0] == 18, f"expected RECORD_LIST_TOO_LARGE (18), got {res}"
        # a batch that fits still works
        s.sendall(kw.produce_v3(2, t, 0, kw.record_batch([(None, b"y" * 1000, [])], BASE_TS)))
        _, res = kw.parse_produce_v3(kw.read_frame(s))
        assert res[(t, 0)] == (0, 0), res


def _patch_batch(batch: bytes, offset: int, new: bytes) -> bytes:
    """Patch bytes after the CRC field and recompute the CRC so only semantics are wrong."""
    b = bytearray(batch)
    b[offset:offset + len(new)] = new
    b[17:21] = kw.u32(kw.crc32c(bytes(b[21:])))
    return bytes(b)


@pytest.mark.parametrize("what", ["count_too_high", "count_too_low", "last_offset_delta", "magic1"])
def test_raw_produce_inconsistent_batch(broker, what):
    """Batches with a valid CRC but inconsistent contents must be rejected (Kafka:
    CORRUPT_MESSAGE / INVALID_RECORD / UNSUPPORTED_FOR_MESSAGE_FORMAT) and must not be stored."""
    t = unique_topic("incons")
    create_topic(broker, t)
    batch = kw.record_batch([(None, b"a", []), (None, b"b", [])], BASE_TS)
    # offsets after the CRC: attributes 21, lastOffsetDelta 23, baseTs 27, maxTs 35,
    # producerId 43, epoch 51, baseSeq 53, count 57, records 61
    if what == "count_too_high":
        bad = _patch_batch(batch, 57, kw.i32(3))
    elif what == "count_too_low":
        bad = _patch_batch(batch, 57, kw.i32(1))
    elif what == "last_offset_delta":
        bad = _patch_batch(batch, 23, kw.i32(5))
    else:
        b = bytearray(batch)
        b[16] = 1  # magic 1 with v2 layout
        bad = bytes(b)
    with kw.connect(broker.port) as s:
        s.sendall(kw.produce_v3(1, t, 0, bad))
        _, res = kw.parse_produce_v3(kw.read_frame(s))
        assert res[(t, 0)][0] in (2, 87, 43, 35), f"{what}: expected rejection, got {res}"
        s.sendall(kw.produce_v3(2, t, 0, batch))
        _, res = kw.parse_produce_v3(kw.read_frame(s))
        assert res[(t, 0)] == (0, 0), f"{what}: rejected batch left a trace: {res}"
    assert_serving(broker)
