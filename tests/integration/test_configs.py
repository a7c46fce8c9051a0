"""DescribeConfigs / IncrementalAlterConfigs / AlterConfigs with confluent-kafka's admin client
(and kafka-python's for the legacy API): topic configs and dynamic broker configs (cluster
default and per broker): sources, synonyms, round trips, validation errors, persistence across
a restart and a crash, and live effect."""

import time

from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   ResourceType)

from helpers import admin, create_topic, unique_topic
from test_topic_cli import fjord
from test_retention import SETTINGS, SMALL_SEGMENTS, produce, wait_for, watermarks


def describe(a, resource):
    return a.describe_configs([resource])[resource].result(timeout=10)


def incremental(a, topic, *ops):
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=op) for name, value, op in ops])
    return a.incremental_alter_configs([resource])[resource].result(timeout=10)


def test_describe_alter_round_trip_and_survive_a_crash(broker_factory):
    broker = broker_factory(settings={**SETTINGS, "log.retention.bytes": "123456789"})
    topic = unique_topic("cfg")
    create_topic(broker, topic, config={"retention.ms": "86400000"})
    a = admin(broker)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = describe(a, resource)
    assert configs["retention.ms"].value == "86400000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Inherited from a broker setting given explicitly: STATIC_BROKER_CONFIG.
    assert configs["retention.bytes"].value == "123456789"
    assert configs["retention.bytes"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    incremental(a, topic,
                ("retention.ms", "3600000", AlterConfigOpType.SET),
                ("cleanup.policy", "compact", AlterConfigOpType.APPEND),
                ("max.message.bytes", None, AlterConfigOpType.DELETE))
    configs = describe(a, resource)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete,compact"
    incremental(a, topic, ("cleanup.policy", "compact", AlterConfigOpType.SUBTRACT),
                ("retention.ms", None, AlterConfigOpType.DELETE))
    configs = describe(a, resource)
    assert configs["cleanup.policy"].value == "delete"
    assert configs["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    incremental(a, topic, ("segment.ms", "600000", AlterConfigOpType.SET))
    broker.kill9()
    broker.restart()
    configs = describe(admin(broker), resource)
    assert configs["segment.ms"].value == "600000"
    assert configs["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_invalid_configs_are_refused_with_invalid_config(broker_factory):
    broker = broker_factory()
    topic = unique_topic("cfg-bad")
    create_topic(broker, topic)
    a = admin(broker)
    for name, value, reason in [("retention.ms", "soon", "retention.ms"),
                                ("no.such.config", "1", "Unknown topic config name")]:
        try:
            incremental(a, topic, (name, value, AlterConfigOpType.SET))
            raise AssertionError(f"{name}={value} must be refused")
        except Exception as e:
            assert "INVALID_CONFIG" in str(e) and reason in str(e), e
    try:
        incremental(a, "no-such-topic", ("retention.ms", "1", AlterConfigOpType.SET))
        raise AssertionError("unknown topic must be refused")
    except Exception as e:
        assert "UNKNOWN_TOPIC_OR_PART" in str(e), e
    # Broker settings are described; the dynamic ones are not read-only.
    broker_configs = describe(a, ConfigResource(ResourceType.BROKER, "1"))
    assert broker_configs["log.retention.ms"].value == "604800000"
    assert not broker_configs["log.retention.ms"].is_read_only
    assert broker_configs["node.id"].is_read_only


def test_altered_retention_takes_effect_without_a_restart(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("cfg-live")
    create_topic(broker, topic, config=SMALL_SEGMENTS)
    produce(broker, topic, 200)
    time.sleep(1.5)
    assert watermarks(broker, topic)[0] == 0
    incremental(admin(broker), topic, ("retention.bytes", "50000", AlterConfigOpType.SET))
    low, high = wait_for(lambda: (lambda w: w if w[0] > 0 else None)(watermarks(broker, topic)))
    assert 0 < low < high == 200


def test_compacted_topics_refuse_records_without_keys(broker):
    from helpers import producer

    topic = unique_topic("compacted")
    create_topic(broker, topic, config={"cleanup.policy": "compact"})
    for compression in ["none", "lz4", "zstd"]:
        results = []
        p = producer(broker, **{"compression.type": compression, "retries": 0})
        p.produce(topic, key=b"k", value=b"keyed", on_delivery=lambda e, m: results.append(e))
        assert p.flush(10) == 0
        p.produce(topic, value=b"no key", on_delivery=lambda e, m: results.append(e))
        assert p.flush(10) == 0
        assert results[0] is None, results
        assert results[1] is not None and "INVALID_RECORD" in str(results[1].name()), results


# ---------------------------------------------------------------- dynamic broker configs

SET, DELETE, APPEND = AlterConfigOpType.SET, AlterConfigOpType.DELETE, AlterConfigOpType.APPEND
DYNAMIC_BROKER = ConfigSource.DYNAMIC_BROKER_CONFIG.value
DYNAMIC_DEFAULT = ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
STATIC = ConfigSource.STATIC_BROKER_CONFIG.value
DEFAULT = ConfigSource.DEFAULT_CONFIG.value


def alter_broker(a, name, *ops, validate_only=False):
    """IncrementalAlterConfigs on BROKER `name` (this broker's id)."""
    resource = ConfigResource(ResourceType.BROKER, name, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=op) for key, value, op in ops])
    return a.incremental_alter_configs([resource], validate_only=validate_only)[resource].result(
        timeout=10)


def alter_default(broker, *ops):
    """The cluster-wide default (BROKER resource ""): librdkafka refuses an empty broker resource
    name and kafka-python wants an integer, so this goes through `fjord config alter
    --broker-defaults` (a wire-protocol client too). Ops: ("key", "value") sets, ("key", None)
    deletes."""
    args = []
    for key, value in ops:
        args += ["--set", f"{key}={value}"] if value is not None else ["--delete", key]
    return fjord(broker, "config", "alter", "--broker-defaults", *args)


def described_defaults(broker):
    """{name: (value, source name)} of the BROKER resource "" (`fjord config describe`)."""
    _, out, _ = fjord(broker, "config", "describe", "--broker-defaults")
    rows = [line.split(None, 2) for line in out.splitlines()[1:] if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows if len(r) == 3}


def refused(call):
    try:
        call()
    except Exception as e:  # confluent_kafka.KafkaException
        return str(e)
    raise AssertionError("the change must be refused")


def synonyms(broker, resource_type, name, config):
    """[(name, value, source)] of one config, with kafka-python (confluent-kafka keys synonyms by
    name, so the levels of one broker setting collapse into one)."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType

    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        kind = ConfigResourceType.TOPIC if resource_type == ResourceType.TOPIC else \
            ConfigResourceType.BROKER
        described = client.describe_configs([KConfigResource(kind, name, configs=[config])],
                                            include_synonyms=True, config_filter="all")
        entry = described[kind.name.lower()][name][config]
        return [(s["name"], s["value"], getattr(ConfigSource, s["source"]).value)
                for s in entry["synonyms"]]
    finally:
        client.close()


def test_dynamic_broker_configs_sources_synonyms_and_delete(broker_factory):
    broker = broker_factory(settings={**SETTINGS, "log.retention.ms": "86400000"})
    topic = unique_topic("dyn")
    create_topic(broker, topic)
    a = admin(broker)
    topic_resource = ConfigResource(ResourceType.TOPIC, topic)

    # Cluster-wide default: the topic inherits it, source DYNAMIC_DEFAULT_BROKER_CONFIG.
    alter_default(broker, ("log.retention.ms", "7200000"))
    retention = describe(a, topic_resource)["retention.ms"]
    assert (retention.value, retention.source) == ("7200000", DYNAMIC_DEFAULT)
    assert synonyms(broker, ResourceType.TOPIC, topic, "retention.ms") == [
        ("log.retention.ms", "7200000", DYNAMIC_DEFAULT),
        ("log.retention.ms", "86400000", STATIC),
        ("log.retention.ms", "604800000", DEFAULT)]
    assert described_defaults(broker) == {
        "log.retention.ms": ("7200000", "dynamic default broker")}

    # Per broker, over the cluster default.
    alter_broker(a, "1", ("log.retention.ms", "3600000", SET))
    retention = describe(a, topic_resource)["retention.ms"]
    assert (retention.value, retention.source) == ("3600000", DYNAMIC_BROKER)
    entry = describe(a, ConfigResource(ResourceType.BROKER, "1"))["log.retention.ms"]
    assert (entry.value, entry.source, entry.is_read_only) == ("3600000", DYNAMIC_BROKER, False)
    assert synonyms(broker, ResourceType.BROKER, "1", "log.retention.ms") == [
        ("log.retention.ms", "3600000", DYNAMIC_BROKER),
        ("log.retention.ms", "7200000", DYNAMIC_DEFAULT),
        ("log.retention.ms", "86400000", STATIC),
        ("log.retention.ms", "604800000", DEFAULT)]
    assert [s for _, _, s in synonyms(broker, ResourceType.TOPIC, topic, "retention.ms")] == [
        DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT]

    # validate_only changes nothing.
    alter_broker(a, "1", ("log.retention.ms", "60000", SET), validate_only=True)
    assert describe(a, topic_resource)["retention.ms"].value == "3600000"

    # DELETE falls back one level at a time.
    alter_broker(a, "1", ("log.retention.ms", None, DELETE))
    retention = describe(a, topic_resource)["retention.ms"]
    assert (retention.value, retention.source) == ("7200000", DYNAMIC_DEFAULT)
    alter_default(broker, ("log.retention.ms", None))
    retention = describe(a, topic_resource)["retention.ms"]
    assert (retention.value, retention.source) == ("86400000", STATIC)
    assert described_defaults(broker) == {}

    # APPEND on the list setting log.cleanup.policy (from Kafka's default, "delete").
    alter_broker(a, "1", ("log.cleanup.policy", "compact", APPEND))
    policy = describe(a, topic_resource)["cleanup.policy"]
    assert (policy.value, policy.source) == ("delete,compact", DYNAMIC_BROKER)


def test_dynamic_retention_acts_on_running_logs(broker_factory):
    broker = broker_factory(settings={**SETTINGS, "log.retention.check.interval.ms": 200})
    topic = unique_topic("dyn-live")
    create_topic(broker, topic)  # no overrides: everything comes from the broker settings
    a = admin(broker)
    alter_default(broker, ("log.segment.bytes", "20000"))
    produce(broker, topic, 200)  # about 200 KB, rolled into 20 KB segments
    time.sleep(1)
    assert watermarks(broker, topic)[0] == 0
    alter_broker(a, "1", ("log.retention.bytes", "50000", SET))
    low, high = wait_for(lambda: (lambda w: w if w[0] > 0 else None)(watermarks(broker, topic)))
    assert 0 < low <= 200 - 50 and high == 200


def test_dynamic_broker_configs_survive_restart_and_crash(broker_factory):
    broker = broker_factory(settings=SETTINGS)
    topic = unique_topic("dyn-keep")
    create_topic(broker, topic)
    a = admin(broker)
    alter_default(broker, ("log.retention.ms", "7200000"), ("message.max.bytes", "500000"))
    alter_broker(a, "1", ("log.retention.bytes", "123456789", SET))

    def check():
        configs = describe(admin(broker), ConfigResource(ResourceType.TOPIC, topic))
        assert (configs["retention.ms"].value, configs["retention.ms"].source) == (
            "7200000", DYNAMIC_DEFAULT)
        assert (configs["retention.bytes"].value, configs["retention.bytes"].source) == (
            "123456789", DYNAMIC_BROKER)
        assert configs["max.message.bytes"].value == "500000"

    broker.restart()
    check()
    alter_broker(admin(broker), "1", ("log.roll.ms", "600000", SET))
    broker.kill9()
    broker.start()
    check()
    entry = describe(admin(broker), ConfigResource(ResourceType.BROKER, "1"))["log.roll.ms"]
    assert (entry.value, entry.source) == ("600000", DYNAMIC_BROKER)


def test_invalid_dynamic_broker_configs_are_refused(broker_factory):
    broker = broker_factory()
    a = admin(broker)
    err = refused(lambda: alter_broker(a, "1", ("log.retention.ms", "soon", SET)))
    assert "INVALID_CONFIG" in err and "log.retention.ms" in err and "soon" in err, err
    err = refused(lambda: alter_broker(a, "1", ("log.segment.bytes", "0", SET)))
    assert "INVALID_CONFIG" in err and "log.segment.bytes" in err, err
    err = refused(lambda: alter_broker(a, "1", ("node.id", "2", SET)))
    assert "INVALID_REQUEST" in err and "Cannot update these configs dynamically: Set(node.id)" \
        in err, err
    err = refused(lambda: alter_broker(a, "1", ("listeners", "PLAINTEXT://127.0.0.1:1", SET)))
    assert "INVALID_REQUEST" in err and "listeners" in err, err
    code, _, err = fjord(broker, "config", "alter", "--broker-defaults", "--set",
                         "log.retention.ms=soon", check=False)
    assert code == 1 and "INVALID_CONFIG" in err and "log.retention.ms" in err, err
    err = refused(lambda: alter_broker(a, "1", ("no.such.setting", "1", SET)))
    assert "INVALID_CONFIG" in err and "no.such.setting" in err, err
    err = refused(lambda: alter_broker(a, "1", ("log.retention.ms", "1", APPEND)))
    assert "INVALID_CONFIG" in err, err
    # Nothing was applied.
    assert described_defaults(broker) == {}
    entry = describe(a, ConfigResource(ResourceType.BROKER, "1"))["log.retention.ms"]
    assert (entry.value, entry.source) == ("604800000", DEFAULT)


def test_legacy_alter_configs_replaces_a_brokers_dynamic_set(broker_factory):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType

    broker = broker_factory()
    a = admin(broker)
    alter_broker(a, "1", ("log.retention.ms", "7200000", SET), ("log.roll.ms", "600000", SET))
    # confluent-kafka's legacy alter_configs: the whole per-broker set is replaced.
    resource = ConfigResource(ResourceType.BROKER, "1", set_config={"log.retention.bytes": "999999"})
    a.alter_configs([resource])[resource].result(timeout=10)
    configs = describe(a, ConfigResource(ResourceType.BROKER, "1"))
    assert (configs["log.retention.bytes"].value, configs["log.retention.bytes"].source) == (
        "999999", DYNAMIC_BROKER)
    assert configs["log.retention.ms"].source == DEFAULT
    assert configs["log.roll.ms"].source == DEFAULT

    # kafka-python: legacy AlterConfigs (it re-sends the other modified dynamic configs) and
    # DescribeConfigs with synonyms.
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        result = client.alter_configs(
            [KConfigResource(ConfigResourceType.BROKER, "1", configs={"log.roll.ms": "900000"})],
            incremental=False)
        assert result == {"broker": {"1": "OK"}}, result
        described = client.describe_configs(
            [KConfigResource(ConfigResourceType.BROKER, "1")], include_synonyms=True)
        text = str(described)
        assert "900000" in text and "999999" in text, text
    finally:
        client.close()
    configs = describe(a, ConfigResource(ResourceType.BROKER, "1"))
    assert (configs["log.roll.ms"].value, configs["log.roll.ms"].source) == (
        "900000", DYNAMIC_BROKER)
    assert configs["log.retention.bytes"].value == "999999"


def test_max_connections_is_dynamic(broker_factory):
    import kwire

    broker = broker_factory()
    fjord(broker, "config", "alter", "--broker", "1", "--set", "max.connections=2")
    first = kwire.connect(broker.port)
    second = kwire.connect(broker.port)
    try:
        for sock in (first, second):
            sock.sendall(kwire.api_versions_v0(1))
            assert kwire.parse_api_versions_v0(kwire.read_frame(sock))[1] == kwire.NONE
        # A third connection is over the limit: closed at accept.
        third = kwire.connect(broker.port)
        with third:
            kwire.wait_closed(third)
    finally:
        second.close()
    # Back under the limit: the CLI gets in again and raises it.
    time.sleep(0.2)
    fjord(broker, "config", "alter", "--broker", "1", "--delete", "max.connections")
    first.close()
    kwire.api_versions_ok(broker.port)
