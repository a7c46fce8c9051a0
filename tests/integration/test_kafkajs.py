"""Runs the kafkajs node:test suite (js/test.js) against a fixture broker and
verifies the kafkajs-produced records with confluent-kafka."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from helpers import read_partition, watermarks

JS_DIR = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
BASE_TS = 1700000300000


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_kafkajs(broker_factory):
    # The consumer group test needs no initial rebalance delay to stay quick.
    broker = broker_factory(settings={"group.initial.rebalance.delay.ms": 0})
    if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail(f"kafkajs not installed: run `npm ci` in {JS_DIR} (scripts/test does this)")
    prefix = f"kjs-{uuid.uuid4().hex[:10]}"
    env = dict(os.environ, FJORD_BOOTSTRAP=broker.bootstrap, FJORD_JS_PREFIX=prefix)
    r = subprocess.run([NODE, "--test", "--test-reporter=spec", "test.js"], cwd=JS_DIR, env=env,
                       capture_output=True, timeout=150)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, f"kafkajs tests failed (exit {r.returncode}):\n{out}"
    assert "# fail 0" in out or "ℹ fail 0" in out, out
    assert "skipped" not in out.lower() or "ℹ skipped 0" in out, f"kafkajs tests were skipped:\n{out}"

    topic = f"{prefix}-data"
    assert watermarks(broker, topic) == (0, 25)
    got = read_partition(broker, topic, 0, 25)
    assert [m.offset() for m in got] == list(range(25))
    assert [m.key() for m in got] == [f"key-{i}".encode() for i in range(25)]
    assert [m.value() for m in got] == [f"kafkajs-value-{i}".encode() for i in range(25)]
    assert [m.headers() for m in got] == [[("idx", str(i).encode()), ("src", b"kafkajs")] for i in range(25)]
    assert [m.timestamp() for m in got] == [(TIMESTAMP_CREATE_TIME, BASE_TS + i * 10) for i in range(25)]
