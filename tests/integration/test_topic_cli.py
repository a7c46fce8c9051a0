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
    assert code == 1 and "InvalidConfig" in err and "Stack backtrace" not in err, err
    code, _, err = fjord(broker, "topic", "create", topic, check=False)
    assert code == 1 and "TopicAlreadyExists" in err, err
    fjord(broker, "topic", "delete", topic)
    _, out, _ = fjord(broker, "topic", "list")
    assert topic not in out


def test_config_describe_shows_broker_settings_with_sources(broker):
    _, out, _ = fjord(broker, "config", "describe", "--changed")
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:] if line.strip()}
    assert rows.get("listen") == "broker", out  # "static broker": given on the command line
    _, out, _ = fjord(broker, "config", "describe")
    assert "log.retention.ms" in out and "default" in out, out
