"""Minimal hand-rolled Kafka wire protocol helpers for raw-socket tests.

Only what the tests need: request framing, a few request encoders, response
readers and a v2 record batch builder (with CRC-32C), all written from the
Apache Kafka protocol specification, independent of any client library.
"""

from __future__ import annotations

import socket
import struct
import time

# API keys
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
API_VERSIONS = 18
CREATE_TOPICS = 19

# error codes
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35


# ---------------------------------------------------------------- primitives
def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def u32(v):
    return struct.pack(">I", v)


def i64(v):
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag encoded signed varint (also used for varlong)."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


# ------------------------------------------------------------------- CRC-32C
def _make_crc32c_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # standard check value


# -------------------------------------------------------------- record batch
def record_batch(records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
                 base_timestamp: int, base_offset: int = 0, producer_id: int = -1,
                 producer_epoch: int = -1, base_sequence: int = -1,
                 transactional: bool = False) -> bytes:
    """Build an uncompressed magic-2 record batch.

    ``records`` is a list of (key, value, headers); record i gets timestamp
    ``base_timestamp + i``.  ``producer_id``/``producer_epoch``/``base_sequence``
    make it an idempotent batch, ``transactional`` sets attribute bit 4.
    """
    body = bytearray()
    for i, (key, value, headers) in enumerate(records):
        rec = bytearray()
        rec += i8(0)                      # attributes
        rec += varint(i)                  # timestamp delta
        rec += varint(i)                  # offset delta
        if key is None:
            rec += varint(-1)
        else:
            rec += varint(len(key)) + key
        if value is None:
            rec += varint(-1)
        else:
            rec += varint(len(value)) + value
        rec += varint(len(headers))
        for hk, hv in headers:
            hkb = hk.encode()
            rec += varint(len(hkb)) + hkb
            rec += varint(-1) if hv is None else varint(len(hv)) + hv
        body += varint(len(rec)) + rec
    n = len(records)
    after_crc = (
        i16(0x10 if transactional else 0)  # attributes: no compression, create time
        + i32(n - 1)                      # last offset delta
        + i64(base_timestamp)             # base timestamp
        + i64(base_timestamp + n - 1)     # max timestamp
        + i64(producer_id)                # producer id
        + i16(producer_epoch)             # producer epoch
        + i32(base_sequence)              # base sequence
        + i32(n)                          # record count
        + bytes(body)
    )
    crc = crc32c(after_crc)
    after_length = i32(-1) + i8(2) + u32(crc) + after_crc  # leader epoch, magic, crc
    return i64(base_offset) + i32(len(after_length)) + after_length


# ------------------------------------------------------------------- framing
def request_header_v1(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = "fjord-raw-test") -> bytes:
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def request_header_v2(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = "fjord-raw-test") -> bytes:
    return request_header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def connect(bootstrap_port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", bootstrap_port), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack(">i", recv_exact(sock, 4))
    assert 0 <= length < 100 * 1024 * 1024, f"implausible response length {length}"
    return recv_exact(sock, length)


def wait_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the peer closes; returns whatever was received before EOF.

    Raises AssertionError if the connection is still open after ``timeout``.
    """
    sock.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(data)
        except socket.timeout:
            raise AssertionError(f"broker kept the connection open for {timeout}s "
                                 f"(received {len(data)} bytes)")
        if not chunk:
            return bytes(data)
        data += chunk
        if time.monotonic() > deadline:
            raise AssertionError("broker kept sending data and never closed the connection")


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n):
        b = self.data[self.pos:self.pos + n]
        if len(b) != n:
            raise ValueError(f"short read at {self.pos}: wanted {n}, have {len(b)}")
        self.pos += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def uvarint(self):
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def remaining(self):
        return len(self.data) - self.pos


# ---------------------------------------------------------- request builders
def api_versions_v0(correlation_id: int) -> bytes:
    return frame(request_header_v1(API_VERSIONS, 0, correlation_id))


def metadata_v1(correlation_id: int, topics: list[str] | None) -> bytes:
    body = i32(-1) if topics is None else i32(len(topics)) + b"".join(string(t) for t in topics)
    return frame(request_header_v1(METADATA, 1, correlation_id) + body)


def metadata_v4(correlation_id: int, topics: list[str] | None, allow_auto_create: bool) -> bytes:
    body = i32(-1) if topics is None else i32(len(topics)) + b"".join(string(t) for t in topics)
    body += i8(1 if allow_auto_create else 0)
    return frame(request_header_v1(METADATA, 4, correlation_id) + body)


def produce_v3(correlation_id: int, topic: str, partition: int, batch: bytes,
               acks: int = -1, timeout_ms: int = 10000,
               transactional_id: str | None = None) -> bytes:
    body = (
        string(transactional_id)          # transactional id
        + i16(acks)
        + i32(timeout_ms)
        + i32(1) + string(topic)          # [topic_data]
        + i32(1) + i32(partition) + nbytes(batch)
    )
    return frame(request_header_v1(PRODUCE, 3, correlation_id) + body)


# ---------------------------------------------------------- response parsers
def parse_api_versions_v0(payload: bytes):
    r = Reader(payload)
    corr = r.i32()
    err = r.i16()
    n = r.i32()
    apis = {}
    for _ in range(max(n, 0)):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        apis[k] = (lo, hi)
    return corr, err, apis


def parse_produce_v3(payload: bytes):
    """Returns (correlation_id, {(topic, partition): (error_code, base_offset)})."""
    r = Reader(payload)
    corr = r.i32()
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition = r.i32()
            err = r.i16()
            base_offset = r.i64()
            r.i64()  # log append time
            out[(topic, partition)] = (err, base_offset)
    r.i32()  # throttle time
    return corr, out


def parse_metadata_v4(payload: bytes):
    """Returns (correlation_id, brokers, {topic: (error_code, [partition ids])})."""
    r = Reader(payload)
    corr = r.i32()
    r.i32()  # throttle
    brokers = []
    for _ in range(r.i32()):
        node, host, port, rack = r.i32(), r.string(), r.i32(), r.string()
        brokers.append((node, host, port, rack))
    r.string()  # cluster id
    r.i32()  # controller id
    topics = {}
    for _ in range(r.i32()):
        err = r.i16()
        name = r.string()
        r.i8()  # is internal
        parts = []
        for _ in range(r.i32()):
            r.i16()  # partition error
            pid = r.i32()
            r.i32()  # leader
            for _ in range(r.i32()):
                r.i32()  # replicas
            for _ in range(r.i32()):
                r.i32()  # isr (offline replicas only from v5)
            parts.append(pid)
        topics[name] = (err, parts)
    return corr, brokers, topics


def roundtrip(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    with connect(port, timeout) as s:
        s.sendall(request)
        return read_frame(s)


def api_versions_ok(port: int) -> dict:
    """Open a fresh connection and do an ApiVersions v0 round trip."""
    corr, err, apis = parse_api_versions_v0(roundtrip(port, api_versions_v0(4242)))
    assert corr == 4242
    assert err == NONE, f"ApiVersions v0 returned error {err}"
    return apis


# ------------------------------------------------- idempotent / transactional
# (Kafka's InitProducerId, AddPartitionsToTxn, EndTxn; versions negotiated with ApiVersions)
INIT_PRODUCER_ID = 22
ADD_PARTITIONS_TO_TXN = 24
END_TXN = 26

COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
CONCURRENT_TRANSACTIONS = 51
UNKNOWN_PRODUCER_ID = 59
PRODUCER_FENCED = 90

RETRIABLE_COORDINATOR_ERRORS = (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
                                NOT_COORDINATOR, CONCURRENT_TRANSACTIONS)


def compact_nbytes(b: bytes | None) -> bytes:
    if b is None:
        return uvarint(0)
    return uvarint(len(b) + 1) + b


def compact_array(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


TAGS = uvarint(0)  # empty tagged-field section


def _skip_tags(r: Reader) -> None:
    for _ in range(r.uvarint()):
        r.uvarint()
        r.take(r.uvarint())


def _compact_string_r(r: Reader):
    n = r.uvarint()
    return None if n == 0 else r.take(n - 1).decode()


class Conn:
    """One connection to the broker: request/response with correlation ids and
    version negotiation (highest version both sides support, capped per call)."""

    def __init__(self, port: int, timeout: float = 15.0):
        self.port = port
        self.sock = connect(port, timeout)
        self.corr = 100
        corr, err, apis = parse_api_versions_v0(self._roundtrip_raw(api_versions_v0(self.corr)))
        assert err == NONE, f"ApiVersions failed: {err}"
        self.apis = apis

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _roundtrip_raw(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        return read_frame(self.sock)

    def version(self, api_key: int, highest_known: int, lowest_known: int = 0) -> int:
        assert api_key in self.apis, f"broker does not advertise api key {api_key}"
        lo, hi = self.apis[api_key]
        v = min(hi, highest_known)
        assert v >= max(lo, lowest_known), (
            f"no common version for api {api_key}: broker {lo}-{hi}, test {lowest_known}-{highest_known}")
        return v

    def request(self, api_key: int, version: int, body: bytes, flexible: bool) -> Reader:
        self.corr += 1
        header = (request_header_v2 if flexible else request_header_v1)(api_key, version, self.corr)
        payload = self._roundtrip_raw(frame(header + body))
        r = Reader(payload)
        corr = r.i32()
        assert corr == self.corr, f"correlation id {corr}, expected {self.corr}"
        if flexible:
            _skip_tags(r)
        return r

    # ---------------------------------------------------------------- calls
    def init_producer_id(self, transactional_id: str | None = None, timeout_ms: int = 60000,
                         producer_id: int = -1, producer_epoch: int = -1):
        """Returns (error_code, producer_id, producer_epoch)."""
        v = self.version(INIT_PRODUCER_ID, 4)
        if v >= 2:
            body = compact_string(transactional_id) + i32(timeout_ms)
            if v >= 3:
                body += i64(producer_id) + i16(producer_epoch)
            body += TAGS
        else:
            body = string(transactional_id) + i32(timeout_ms)
        r = self.request(INIT_PRODUCER_ID, v, body, flexible=v >= 2)
        r.i32()  # throttle
        err = r.i16()
        return err, r.i64(), r.i16()

    def init_producer_id_retrying(self, transactional_id: str | None = None,
                                  timeout_ms: int = 60000, deadline_s: float = 30.0):
        """InitProducerId, retried while the coordinator loads or completes an abort."""
        end = time.monotonic() + deadline_s
        while True:
            err, pid, epoch = self.init_producer_id(transactional_id, timeout_ms)
            if err not in RETRIABLE_COORDINATOR_ERRORS or time.monotonic() > end:
                return err, pid, epoch
            time.sleep(0.1)

    def add_partitions_to_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                              topic: str, partitions: list[int]) -> dict:
        """Returns {partition: error_code}."""
        v = self.version(ADD_PARTITIONS_TO_TXN, 3)
        if v >= 3:
            body = (compact_string(transactional_id) + i64(producer_id) + i16(producer_epoch)
                    + compact_array([compact_string(topic)
                                     + compact_array([i32(p) for p in partitions]) + TAGS])
                    + TAGS)
        else:
            body = (string(transactional_id) + i64(producer_id) + i16(producer_epoch)
                    + i32(1) + string(topic) + i32(len(partitions))
                    + b"".join(i32(p) for p in partitions))
        r = self.request(ADD_PARTITIONS_TO_TXN, v, body, flexible=v >= 3)
        r.i32()  # throttle
        out = {}
        if v >= 3:
            for _ in range(r.uvarint() - 1):
                _compact_string_r(r)
                for _ in range(r.uvarint() - 1):
                    p, err = r.i32(), r.i16()
                    _skip_tags(r)
                    out[p] = err
                _skip_tags(r)
        else:
            for _ in range(r.i32()):
                r.string()
                for _ in range(r.i32()):
                    p, err = r.i32(), r.i16()
                    out[p] = err
        return out

    def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                commit: bool) -> int:
        """Returns the error code."""
        v = self.version(END_TXN, 4)
        if v >= 3:
            body = (compact_string(transactional_id) + i64(producer_id) + i16(producer_epoch)
                    + i8(1 if commit else 0) + TAGS)
        else:
            body = string(transactional_id) + i64(producer_id) + i16(producer_epoch) + i8(1 if commit else 0)
        r = self.request(END_TXN, v, body, flexible=v >= 3)
        r.i32()  # throttle
        return r.i16()

    def produce(self, topic: str, partition: int, batch: bytes,
                transactional_id: str | None = None, acks: int = -1):
        """Produce v3; returns (error_code, base_offset)."""
        self.corr += 1
        req = produce_v3(self.corr, topic, partition, batch, acks=acks,
                         transactional_id=transactional_id)
        corr, res = parse_produce_v3(self._roundtrip_raw(req))
        assert corr == self.corr
        return res[(topic, partition)]
