"""SASL (issue 9, docs/security-design.md section 3) against the real binary.

One broker with three listeners (SASL_PLAINTEXT, SASL_SSL, PLAINTEXT) serves every case but
re-authentication. Covered, each with confluent-kafka and kafka-python: PLAIN over
SASL_PLAINTEXT and SASL_SSL (JAAS users); SCRAM-SHA-256 and SCRAM-SHA-512 over SASL_SSL
(credentials created with AlterUserScramCredentials on the PLAINTEXT listener, authorizer
off); OAUTHBEARER with an RS256 token checked against a ``file://`` JWKS, issuer and audience.
A wrong password, an unknown user, an expired and a wrongly signed token get no data and are
counted as failures in ``/metrics``. KIP-368: with ``connections.max.reauth.ms=3000`` a
consumer keeps consuming across re-authentications. A request before authentication closes
the connection.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from pathlib import Path

import jwt
import pytest
import trustme
from confluent_kafka import KafkaException, TopicPartition
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from conftest import BrokerProcess, _find_binary, free_port
from helpers import admin, consume_n, consumer, produce_all, producer, unique_topic
from test_metrics import http_request

# A client refused at authentication never gets metadata; how long to let it try.
REFUSED_WAIT_S = 2.0
ISSUER = "https://issuer.test"
AUDIENCE = "fjord"
USERS = {"admin": "admin-secret", "alice": "alice-pw", "bob": "bob-pw"}


class SaslBroker(BrokerProcess):
    """A broker with the given ``listeners`` instead of the fixture's single PLAINTEXT one;
    ``port`` is the one waited for at start."""

    def __init__(self, binary, workdir, listeners: str, port: int, settings: dict):
        super().__init__(binary, workdir, settings=settings, port=port)
        self.listeners = listeners

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("--listen") + 1] = self.listeners
        cmd[cmd.index("--advertised-listener") + 1] = ""
        return cmd


class Endpoint:
    def __init__(self, port: int):
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"


def plain_jaas(users: dict) -> str:
    entries = " ".join(f'user_{u}="{p}"' for u, p in users.items())
    return ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="admin" password="{users["admin"]}" {entries};')


class Setup:
    """The broker, its endpoints, the CA and the token signing key."""

    def __init__(self, tmp: Path, extra: dict | None = None, env: dict | None = None):
        self.tmp = tmp
        self.ca = trustme.CA()
        self.ca_path = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        keystore = tmp / "keystore.pem"
        self.ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            str(keystore))
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
        jwks = tmp / "jwks.json"
        jwks.write_text(json.dumps({"keys": [jwk]}))
        self.sasl_plain, self.sasl_ssl, self.plain = free_port(), free_port(), free_port()
        listeners = (f"PLAINTEXT://127.0.0.1:{self.plain},"
                     f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_plain},"
                     f"SASL_SSL://127.0.0.1:{self.sasl_ssl}")
        settings = {
            "inter.broker.listener.name": "PLAINTEXT",
            "ssl.keystore.location": str(keystore),
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
            "sasl.jaas.config": plain_jaas(USERS),
            "sasl.oauthbearer.jwks.endpoint.url": f"file://{jwks}",
            "sasl.oauthbearer.expected.issuer": ISSUER,
            "sasl.oauthbearer.expected.audience": AUDIENCE,
            **(extra or {}),
        }
        self.broker = SaslBroker(_find_binary(), tmp, listeners, self.plain, settings)
        self.broker.env.update(env or {})
        self.broker.start()

    def token(self, sub: str = "alice", lifetime_s: int = 3600, key=None) -> tuple[str, float]:
        now = int(time.time())
        exp = now + lifetime_s
        claims = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now - 60 if lifetime_s > 0
                  else now - 7200, "exp": exp, "scope": "kafka"}
        token = jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "k1"})
        return token, float(exp)

    def conf(self, mechanism: str, ssl: bool, user: str = "alice",
             password: str | None = None) -> dict:
        conf = {"security.protocol": "SASL_SSL" if ssl else "SASL_PLAINTEXT",
                "sasl.mechanism": mechanism}
        if ssl:
            conf["ssl.ca.location"] = str(self.ca_path)
        if mechanism != "OAUTHBEARER":
            conf["sasl.username"] = user
            conf["sasl.password"] = USERS.get(user, "x") if password is None else password
        return conf

    def endpoint(self, ssl: bool) -> Endpoint:
        return Endpoint(self.sasl_ssl if ssl else self.sasl_plain)

    def kp_conf(self, mechanism: str, ssl: bool, user: str = "alice",
                password: str | None = None) -> dict:
        conf = {"bootstrap_servers": self.endpoint(ssl).bootstrap,
                "security_protocol": "SASL_SSL" if ssl else "SASL_PLAINTEXT",
                "sasl_mechanism": mechanism}
        if ssl:
            conf["ssl_cafile"] = str(self.ca_path)
        if mechanism != "OAUTHBEARER":
            conf["sasl_plain_username"] = user
            conf["sasl_plain_password"] = USERS.get(user, "x") if password is None else password
        return conf


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    s = Setup(tmp_path_factory.mktemp("fjord-sasl"))
    yield s
    if s.broker.is_running():
        s.broker.stop()


def sasl_counts(broker) -> dict:
    """{(mechanism, result): count} of fjord_sasl_authentications_total."""
    status, _, body = http_request(broker, "/metrics")
    assert status == 200
    out = {}
    for line in body.splitlines():
        m = re.match(r'fjord_sasl_authentications_total\{(.*)\} ([0-9.e+]+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out[(labels.get("mechanism"), labels.get("result"))] = float(m.group(2))
    return out


def confluent_roundtrip(endpoint: Endpoint, conf: dict, n: int = 10) -> list[bytes]:
    topic = unique_topic("sasl")
    produce_all(producer(endpoint, **conf), topic,
                [{"value": f"m{i}".encode()} for i in range(n)])
    c = consumer(endpoint, **conf)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        return [m.value() for m in consume_n(c, n)]
    finally:
        c.close()


def kafka_python_roundtrip(conf: dict, n: int = 5) -> list[bytes]:
    from kafka import KafkaConsumer, KafkaProducer
    topic = unique_topic("sasl-kp")
    kp = KafkaProducer(max_block_ms=20000, **conf)
    try:
        for i in range(n):
            kp.send(topic, f"k{i}".encode()).get(timeout=20)
    finally:
        kp.close()
    kc = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=8000, **conf)
    try:
        got = []
        for m in kc:
            got.append(m.value)
            if len(got) == n:
                break
        return got
    finally:
        kc.close()


def confluent_gets_no_data(endpoint: Endpoint, conf: dict) -> bool:
    try:
        admin(endpoint, **conf).list_topics(timeout=REFUSED_WAIT_S)
    except KafkaException:
        return True
    return False


def kafka_python_gets_no_data(conf: dict) -> bool:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KpError
    try:
        kp = KafkaProducer(max_block_ms=int(REFUSED_WAIT_S * 1000),
                           bootstrap_timeout_ms=int(REFUSED_WAIT_S * 1000), **conf)
    except KpError:
        return True
    try:
        kp.send(unique_topic("refused"), b"x").get(timeout=REFUSED_WAIT_S)
    except KpError:
        return True
    finally:
        kp.close(timeout=1)
    return False


EXPECTED = [f"m{i}".encode() for i in range(10)]
EXPECTED_KP = [f"k{i}".encode() for i in range(5)]


@pytest.mark.parametrize("ssl", [False, True], ids=["SASL_PLAINTEXT", "SASL_SSL"])
def test_plain(setup, ssl):
    before = sasl_counts(setup.broker).get(("PLAIN", "success"), 0)
    assert confluent_roundtrip(setup.endpoint(ssl), setup.conf("PLAIN", ssl)) == EXPECTED
    assert kafka_python_roundtrip(setup.kp_conf("PLAIN", ssl)) == EXPECTED_KP
    assert sasl_counts(setup.broker).get(("PLAIN", "success"), 0) > before


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_over_sasl_ssl(setup, mechanism):
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    user = f"scram-{mechanism[-3:]}"
    password = f"{user}-pw"
    kind = ScramMechanism.SCRAM_SHA_256 if mechanism.endswith("256") else ScramMechanism.SCRAM_SHA_512
    a = admin(Endpoint(setup.plain))
    futures = a.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, ScramCredentialInfo(kind, 8192), password.encode())])
    for f in futures.values():
        f.result(timeout=15)
    conf = setup.conf(mechanism, True, user=user, password=password)
    # The credential reaches the broker's image through the metadata log.
    deadline = time.monotonic() + 10
    while confluent_gets_no_data(setup.endpoint(True), conf):
        assert time.monotonic() < deadline, "the SCRAM user never became usable"
    assert confluent_roundtrip(setup.endpoint(True), conf) == EXPECTED
    kp = setup.kp_conf(mechanism, True)
    kp.update(sasl_plain_username=user, sasl_plain_password=password)
    assert kafka_python_roundtrip(kp) == EXPECTED_KP
    # The wrong password for that user is refused.
    bad = setup.conf(mechanism, True, user=user, password="wrong")
    assert confluent_gets_no_data(setup.endpoint(True), bad)
    assert sasl_counts(setup.broker).get((mechanism, "failure"), 0) >= 1


from kafka.net.sasl.oauth import AbstractTokenProvider  # noqa: E402


class TokenProvider(AbstractTokenProvider):
    """kafka-python's sasl_oauth_token_provider."""

    def __init__(self, token: str):
        super().__init__()
        self._token = token

    def token(self):
        return self._token

    def extensions(self):
        return {}


@pytest.mark.parametrize("ssl", [False, True], ids=["SASL_PLAINTEXT", "SASL_SSL"])
def test_oauthbearer(setup, ssl):
    token, exp = setup.token()
    conf = setup.conf("OAUTHBEARER", ssl)
    conf["oauth_cb"] = lambda _config: (token, exp)
    assert confluent_roundtrip(setup.endpoint(ssl), conf) == EXPECTED
    kp = setup.kp_conf("OAUTHBEARER", ssl)
    kp["sasl_oauth_token_provider"] = TokenProvider(token)
    assert kafka_python_roundtrip(kp) == EXPECTED_KP
    assert sasl_counts(setup.broker).get(("OAUTHBEARER", "success"), 0) >= 2


def test_bad_credentials_get_no_data_and_are_counted(setup):
    before = sasl_counts(setup.broker)
    # Wrong password and unknown user, PLAIN, both clients.
    for user, password in [("alice", "wrong"), ("nobody", "whatever")]:
        assert confluent_gets_no_data(setup.endpoint(False),
                                      setup.conf("PLAIN", False, user=user, password=password))
        assert kafka_python_gets_no_data(setup.kp_conf("PLAIN", True, user=user,
                                                       password=password))
    # An unknown SCRAM user.
    assert confluent_gets_no_data(setup.endpoint(True),
                                  setup.conf("SCRAM-SHA-256", True, user="ghost", password="x"))
    # An expired token and a token signed by another key.
    for token, exp in [setup.token(lifetime_s=-3600),
                       setup.token(key=setup.other_key)]:
        conf = setup.conf("OAUTHBEARER", True)
        # librdkafka refuses a token it knows is expired before sending it; claim a future
        # expiry so the broker is the one that judges it.
        conf["oauth_cb"] = lambda _c, t=token: (t, time.time() + 3600)
        assert confluent_gets_no_data(setup.endpoint(True), conf)
        kp = setup.kp_conf("OAUTHBEARER", False)
        kp["sasl_oauth_token_provider"] = TokenProvider(token)
        assert kafka_python_gets_no_data(kp)
    after = sasl_counts(setup.broker)

    def grew(mechanism, by):
        return after.get((mechanism, "failure"), 0) - before.get((mechanism, "failure"), 0) >= by

    assert grew("PLAIN", 4), (before, after)
    assert grew("SCRAM-SHA-256", 1), (before, after)
    assert grew("OAUTHBEARER", 4), (before, after)


def metadata_v0_request(correlation_id: int) -> bytes:
    client_id = b"raw"
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)
    return struct.pack(">i", len(body)) + body


def read_until_closed(s: socket.socket) -> bytes:
    """Everything the broker sends until it closes (a timeout fails the test)."""
    s.settimeout(5)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def read_response(s: socket.socket) -> bytes:
    s.settimeout(5)
    size = struct.unpack(">i", s.recv(4))[0]
    body = b""
    while len(body) < size:
        body += s.recv(size - len(body))
    return body


def test_request_before_authentication_closes_the_connection(setup):
    with socket.create_connection(("127.0.0.1", setup.sasl_plain), timeout=5) as s:
        s.sendall(metadata_v0_request(7))
        data = read_until_closed(s)
        assert data == b"", f"the broker answered an unauthenticated Metadata: {data!r}"
    # ApiVersions is answered before authentication; a Metadata after it still closes.
    with socket.create_connection(("127.0.0.1", setup.sasl_plain), timeout=5) as s:
        body = struct.pack(">hhih", 18, 0, 1, 3) + b"raw"
        s.sendall(struct.pack(">i", len(body)) + body)
        assert struct.unpack(">ih", read_response(s)[:6]) == (1, 0)
        s.sendall(metadata_v0_request(2))
        assert read_until_closed(s) == b""
    # A frame larger than sasl.server.max.receive.size before authentication.
    with socket.create_connection(("127.0.0.1", setup.sasl_plain), timeout=5) as s:
        s.sendall(struct.pack(">i", 100_000_000) + bytes(100))
        assert read_until_closed(s) == b""
    setup.broker.assert_alive()
    # The PLAINTEXT listener answers the same request.
    with socket.create_connection(("127.0.0.1", setup.plain), timeout=5) as s:
        s.sendall(metadata_v0_request(8))
        assert struct.unpack(">i", read_response(s)[:4])[0] == 8


def test_reauthentication_keeps_a_consumer_consuming(tmp_path):
    s = Setup(tmp_path, {"connections.max.reauth.ms": 3000},
              env={"RUST_LOG": "info,fjord_sasl=debug"})
    try:
        endpoint = s.endpoint(True)
        conf = s.conf("PLAIN", True)
        topic = unique_topic("reauth")
        p = producer(endpoint, **conf)
        produce_all(p, topic, [{"value": b"first"}])
        c = consumer(endpoint, **conf)
        c.assign([TopicPartition(topic, 0, 0)])
        before = sasl_counts(s.broker).get(("PLAIN", "success"), 0)
        got = [m.value() for m in consume_n(c, 1)]
        sent = [b"first"]
        deadline = time.monotonic() + 10
        i = 0
        while time.monotonic() < deadline:
            value = f"during-{i}".encode()
            produce_all(p, topic, [{"value": value}])
            sent.append(value)
            got += [m.value() for m in consume_n(c, 1)]
            i += 1
            time.sleep(0.5)
        c.close()
        assert got == sent
        after = sasl_counts(s.broker).get(("PLAIN", "success"), 0)
        # Producer and consumer connections re-authenticate every ~3 s for 10 s.
        assert after - before >= 4, (before, after)
        s.broker.assert_alive()
        # Re-authenticated on the same connections (KIP-368), not reconnected after the
        # broker closed an expired session.
        log = s.broker.stderr_tail(2_000_000)
        assert log.count("reauthentication=true") >= 4, log[-3000:]
        assert "SASL session expired" not in log
    finally:
        s.broker.stop()
