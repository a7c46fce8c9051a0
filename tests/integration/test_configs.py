"""DescribeConfigs / IncrementalAlterConfigs / AlterConfigs with confluent-kafka's admin client:
sources, round trips, validation errors, persistence across a crash, and live effect."""

import time

from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   ResourceType)

from helpers import admin, create_topic, unique_topic
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
    # Broker settings are described (read-only) and not alterable yet.
    broker_configs = describe(a, ConfigResource(ResourceType.BROKER, "1"))
    assert broker_configs["log.retention.ms"].value == "604800000"
    assert broker_configs["log.retention.ms"].is_read_only


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
