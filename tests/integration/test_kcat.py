"""kcat (librdkafka 2.0.x CLI) against Fjord."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import create_topic, unique_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed (scripts/test installs it)")


def _kcat(broker, *args, input=None, timeout=60):
    r = subprocess.run([KCAT, "-b", broker.bootstrap, *args], input=input, capture_output=True,
                       timeout=timeout)
    assert r.returncode == 0, f"kcat {' '.join(args)} exited {r.returncode}: {r.stderr.decode()}"
    return r.stdout.decode(), r.stderr.decode()


def test_kcat_metadata_produce_consume(broker):
    t = unique_topic("kcat")
    create_topic(broker, t, partitions=2)

    out, _ = _kcat(broker, "-L", "-t", t)
    assert "1 brokers:" in out and f"broker 1 at 127.0.0.1:{broker.port}" in out, out
    assert f'topic "{t}" with 2 partitions:' in out, out
    assert "partition 0, leader 1, replicas: 1, isrs: 1" in out, out
    assert "partition 1, leader 1, replicas: 1, isrs: 1" in out, out

    lines = [f"key{i}:value number {i}" for i in range(50)] + ["emptyval:", "k:v:with:colons"]
    _kcat(broker, "-P", "-t", t, "-p", "1", "-K:", "-z", "gzip",
          input=("\n".join(lines) + "\n").encode())

    out, _ = _kcat(broker, "-C", "-t", t, "-p", "1", "-o", "beginning", "-e", "-q",
                   "-f", "%o|%k|%s\n")
    expected = []
    for i, line in enumerate(lines):
        k, v = line.split(":", 1)
        expected.append(f"{i}|{k}|{v}")
    assert out.splitlines() == expected

    # partition 0 stays empty
    out, _ = _kcat(broker, "-C", "-t", t, "-p", "0", "-o", "beginning", "-e", "-q")
    assert out == ""

    # list-all metadata includes the topic
    out, _ = _kcat(broker, "-L")
    assert f'topic "{t}" with 2 partitions:' in out


def test_kcat_produce_auto_created_topic(broker):
    t = unique_topic("kcatauto")
    _kcat(broker, "-P", "-t", t, "-p", "0", input=b"a\nb\nc\n")
    out, _ = _kcat(broker, "-C", "-t", t, "-p", "0", "-o", "beginning", "-e", "-q")
    assert out.splitlines() == ["a", "b", "c"]
