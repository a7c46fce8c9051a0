"""`fjord topic ...` and `fjord config ...` against the real broker."""

import subprocess

from helpers import unique_topic


def fjord(broker, *args, check=True):
    proc = subprocess.run([str(broker.binary), *args, "--bootstrap-server", broker.bootstrap],
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"fjord {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, proc.stdout, proc.stderr


def test_topic_lifecycle_through_the_cli(broker):
    topic = unique_topic("cli-topic")
    fjord(broker, "topic", "create", topic, "--partitions", "3", "--config", "retention.ms=86400000")
    _, out, _ = fjord(broker, "topic", "list")
    assert [topic, "3"] in [line.split() for line in out.splitlines()], out
    _, out, _ = fjord(broker, "topic", "describe", topic)
    assert "3 partition(s)" in out and "retention.ms  86400000  topic" in out, out
    fjord(broker, "topic", "alter-config", topic, "--set", "retention.bytes=1000000",
          "--delete", "retention.ms")
    _, out, _ = fjord(broker, "config", "describe", "--topic", topic, "--changed")
    assert "retention.bytes  1000000  topic" in out and "retention.ms" not in out, out
    code, _, err = fjord(broker, "topic", "alter-config", topic, "--set", "retention.ms=soon",
                         check=False)
    assert code == 1 and "INVALID_CONFIG" in err and "Stack backtrace" not in err, err
    code, _, err = fjord(broker, "topic", "create", topic, check=False)
    assert code == 1 and "TOPIC_ALREADY_EXISTS" in err, err
    fjord(broker, "topic", "delete", topic)
    _, out, _ = fjord(broker, "topic", "list")
    assert topic not in out


def test_config_describe_shows_broker_settings_with_sources(broker):
    _, out, _ = fjord(broker, "config", "describe", "--changed")
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:] if line.strip()}
    assert rows.get("listen") == "broker", out  # "static broker": given on the command line
    _, out, _ = fjord(broker, "config", "describe")
    assert "log.retention.ms" in out and "default" in out, out


def test_config_alter_dynamic_broker_settings(broker):
    fjord(broker, "config", "alter", "--broker-defaults", "--set", "log.retention.ms=7200000")
    fjord(broker, "config", "alter", "--broker", "1", "--set", "log.retention.bytes=1000000",
          "--set", "log.roll.ms=600000")
    _, out, _ = fjord(broker, "config", "describe", "--broker", "1", "--changed")
    rows = {r[0]: (r[1], r[2]) for r in (line.split(None, 2) for line in out.splitlines()[1:])
            if len(r) == 3}
    assert rows["log.retention.ms"] == ("7200000", "dynamic default broker"), out
    assert rows["log.retention.bytes"] == ("1000000", "dynamic broker"), out
    _, out, _ = fjord(broker, "config", "describe", "--broker-defaults")
    assert "log.retention.ms" in out and "log.retention.bytes" not in out, out
    # Without --broker: the broker connected to.
    _, out, _ = fjord(broker, "config", "describe", "--changed")
    assert "dynamic broker" in out, out
    fjord(broker, "config", "alter", "--broker", "1", "--delete", "log.roll.ms")
    _, out, _ = fjord(broker, "config", "describe", "--broker", "1", "--changed")
    assert "log.roll.ms" not in out, out
    code, _, err = fjord(broker, "config", "alter", "--broker", "1", "--set", "node.id=2",
                         check=False)
    assert code == 1 and "INVALID_REQUEST" in err and "Cannot update these configs dynamically" \
        in err, err
    code, _, err = fjord(broker, "config", "alter", "--broker-defaults", "--set",
                         "log.retention.ms=soon", check=False)
    assert code == 1 and "INVALID_CONFIG" in err, err
    code, _, err = fjord(broker, "config", "alter", "--set", "log.retention.ms=1", check=False)
    assert code != 0, err  # --broker N or --broker-defaults is required
