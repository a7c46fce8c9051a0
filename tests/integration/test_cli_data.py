"""`fjord produce`, `fjord consume` and `fjord cluster info` against the real broker, checked
against kcat and confluent-kafka in both directions."""

import json
import os
import signal
import subprocess
import time

import pytest
from confluent_kafka import TopicPartition

from conftest import free_port
from helpers import admin, consumer, consume_n, create_topic, producer, unique_topic

CLI_TIMEOUT_S = 60


def fjord(broker, *args, input=None, check=True, bootstrap=None):
    """Runs `fjord ARGS --bootstrap ...`; returns the CompletedProcess (text mode)."""
    proc = subprocess.run(
        [str(broker.binary), *args, "--bootstrap", bootstrap or broker.bootstrap],
        input=input, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fjord {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def kcat(*args, input=None):
    proc = subprocess.run(["kcat", *args], input=input, capture_output=True,
                          timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def json_lines(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def read_all(broker, topic, n, partitions):
    c = consumer(broker)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    try:
        return consume_n(c, n)
    finally:
        c.close()


def test_produce_keys_and_headers_are_read_by_kcat_and_confluent(broker):
    topic, twin = unique_topic("cli-p"), unique_topic("cli-twin")
    create_topic(broker, topic, partitions=3)
    create_topic(broker, twin, partitions=3)
    keys = [f"key-{i}" for i in range(30)]
    lines = "".join(f"{k}:value:{i}\n" for i, k in enumerate(keys))
    proc = fjord(broker, "produce", topic, "--key-separator", ":", "--header", "h=v",
                 "--header", "origin=fjord", "--output", "json", input=lines)
    summary = json.loads(proc.stdout)
    assert summary["records"] == 30 and summary["topic"] == topic
    assert sum(p["last_offset"] - p["first_offset"] + 1
               for p in summary["partitions"].values()) == 30
    assert "produced 30 records" in proc.stderr

    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-e", "-q", "-f", "%k|%s|%h\n")
    got = sorted(out.decode().splitlines())
    assert got == sorted(f"{k}|value:{i}|h=v,origin=fjord" for i, k in enumerate(keys))

    # The same keys through librdkafka's Java-compatible partitioner land on the same
    # partitions.
    p = producer(broker, partitioner="murmur2_random")
    for k in keys:
        p.produce(twin, key=k.encode(), value=b"x")
    assert p.flush(20) == 0
    expected = {m.key(): m.partition() for m in read_all(broker, twin, 30, 3)}
    messages = read_all(broker, topic, 30, 3)
    assert {m.key(): m.partition() for m in messages} == expected
    assert all(m.headers() == [("h", b"v"), ("origin", b"fjord")] for m in messages)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_fjord_codec_is_readable_by_confluent(broker, codec):
    topic = unique_topic(f"cli-{codec}")
    create_topic(broker, topic, partitions=2)
    lines = "".join(json.dumps({"key": f"k{i}", "value": f"v{i}" * 50,
                                "headers": [["n", str(i)]]}) + "\n" for i in range(200))
    fjord(broker, "produce", topic, "--format", "json", "--compression", codec, input=lines)
    got = {m.key().decode(): (m.value().decode(), m.headers())
           for m in read_all(broker, topic, 200, 2)}
    assert got == {f"k{i}": (f"v{i}" * 50, [("n", str(i).encode())]) for i in range(200)}


def test_kcat_and_confluent_records_come_out_of_fjord_consume_intact(broker):
    topic = unique_topic("cli-c")
    create_topic(broker, topic, partitions=2)
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-K:", "-H", "h=v", "-p", "0",
         input=b"".join(b"kc%d:kcat value %d\n" % (i, i) for i in range(10)))
    expected = {f"kc{i}": (f"kcat value {i}", [["h", "v"]]) for i in range(10)}
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        p = producer(broker, **{"compression.codec": codec})
        for i in range(10):
            p.produce(topic, key=f"{codec}{i}".encode(), value=f"{codec} {i}".encode(),
                      headers=[("codec", codec.encode()), ("null", None)], partition=i % 2)
        assert p.flush(20) == 0
        expected.update({f"{codec}{i}": (f"{codec} {i}", [["codec", codec], ["null", None]])
                         for i in range(10)})
    # A binary value comes back as base64.
    p = producer(broker)
    p.produce(topic, key=b"bin", value=b"\xff\x00\xfe", partition=1)
    assert p.flush(20) == 0
    proc = fjord(broker, "consume", topic, "--from-beginning", "--count", str(len(expected) + 1),
                 "--output", "json")
    records = json_lines(proc.stdout)
    assert len(records) == len(expected) + 1
    binary = [r for r in records if r["key"] == "bin"]
    assert binary[0]["value"] is None and binary[0]["value_base64"] == "/wD+"
    got = {r["key"]: (r["value"], r["headers"]) for r in records if r["key"] != "bin"}
    assert got == expected
    assert all(r["topic"] == topic and r["timestamp_type"] == "CreateTime" for r in records)
    assert len({(r["partition"], r["offset"]) for r in records}) == len(records)


def test_start_positions_partitions_and_no_follow(broker):
    topic = unique_topic("cli-pos")
    create_topic(broker, topic, partitions=2)
    base_ms = 1_700_000_000_000
    p = producer(broker)
    for i in range(10):
        p.produce(topic, value=f"a{i}".encode(), partition=0, timestamp=base_ms + i * 1000)
        p.produce(topic, value=f"b{i}".encode(), partition=1, timestamp=base_ms + i * 1000)
    assert p.flush(20) == 0

    def values(*args):
        return fjord(broker, "consume", topic, "--no-follow", *args).stdout.splitlines()

    assert values("--partition", "0", "--from-beginning") == [f"a{i}" for i in range(10)]
    assert values("--partition", "1", "--offset", "7") == ["b7", "b8", "b9"]
    assert values("--partition", "0", "--offset", "-2") == ["a8", "a9"]
    assert values("--partition", "1", "--timestamp", str(base_ms + 6000)) == ["b6", "b7", "b8", "b9"]
    assert values("--partition", "0", "--timestamp", "2023-11-14T22:13:28Z") == ["a8", "a9"]
    assert sorted(values("--from-beginning")) == sorted(
        [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)])
    assert values() == []  # latest: nothing new before the end
    assert len(fjord(broker, "consume", topic, "--from-beginning", "--count", "3").stdout
               .splitlines()) == 3
    out = values("--partition", "1", "--offset", "8", "--format", "%t/%p/%o/%T %s\\n")
    assert out == [f"{topic}/1/8/{base_ms + 8000} b8", f"{topic}/1/9/{base_ms + 9000} b9"]


def test_group_runs_continue_where_the_last_stopped_and_ctrl_c_leaves(broker):
    topic, group = unique_topic("cli-g"), unique_topic("grp")
    create_topic(broker, topic, partitions=2)
    fjord(broker, "produce", topic, input="".join(f"m{i}\n" for i in range(10)))

    first = fjord(broker, "consume", topic, "--group", group, "--from-beginning",
                  "--count", "4").stdout.splitlines()
    second = fjord(broker, "consume", topic, "--group", group, "--from-beginning",
                   "--count", "6").stdout.splitlines()
    assert len(first) == 4 and len(second) == 6
    assert sorted(first + second) == sorted(f"m{i}" for i in range(10))

    c = consumer(broker, **{"group.id": group})
    try:
        committed = c.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
        ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(2)]
    finally:
        c.close()
    assert [tp.offset for tp in committed] == ends

    # Follow mode: a record produced after the start shows up, then SIGINT ends it cleanly.
    follower = subprocess.Popen(
        [str(broker.binary), "consume", topic, "--group", group, "--bootstrap", broker.bootstrap],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        line = ""
        while not line and time.monotonic() < deadline:
            fjord(broker, "produce", topic, "--partition", "0", "--quiet", input="live\n")
            # readline blocks until the follower prints; one record is enough.
            line = follower.stdout.readline().strip()
        assert line == "live"
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0, follower.stderr.read()
        assert "panicked" not in follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
    a = admin(broker)  # kept referenced until the answer is in
    described = a.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=15)
    assert len(described.members) == 0


def test_produce_file_shows_progress_and_a_summary(broker, tmp_path):
    topic = unique_topic("cli-file")
    path = tmp_path / "records.txt"
    path.write_text("".join(f"line {i}\n" for i in range(5000)))
    proc = fjord(broker, "produce", topic, "--file", str(path), "--progress")
    size = os.path.getsize(path)
    assert f"/{size} bytes (100%)" in proc.stderr
    assert "records/s" in proc.stderr
    assert f"produced 5000 records" in proc.stderr and f"to {topic} in " in proc.stderr
    quiet = fjord(broker, "produce", topic, "--file", str(path), "--quiet")
    assert quiet.stderr == ""
    assert len(read_all(broker, topic, 10000, 1)) == 10000


def test_cluster_info_names_the_broker(broker):
    info = json.loads(fjord(broker, "cluster", "info", "--output", "json").stdout)
    assert [(b["host"], b["port"]) for b in info["brokers"]] == [("127.0.0.1", broker.port)]
    assert info["controller_id"] == info["brokers"][0]["node_id"]
    assert info["cluster_id"]
    apis = {a["api"]: a for a in info["api_versions"]}
    assert apis["Produce"]["api_key"] == 0 and apis["Fetch"]["max_version"] >= 12
    text = fjord(broker, "cluster", "info").stdout
    assert info["cluster_id"] in text and f"127.0.0.1:{broker.port}" in text
    assert "ApiVersions" in text


def test_a_stopped_broker_is_one_line_and_exit_1(broker, tmp_path):
    closed = f"127.0.0.1:{free_port()}"
    for args, stdin in [(["produce", "t"], "x\n"), (["consume", "t"], None),
                        (["cluster", "info"], None)]:
        started = time.monotonic()
        proc = fjord(broker, *args, input=stdin, check=False, bootstrap=closed)
        assert proc.returncode == 1, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("Error: ") and "panicked" not in proc.stderr
        assert time.monotonic() - started < 10


def test_broker_errors_are_named(broker):
    topic = unique_topic("cli-err")
    create_topic(broker, topic, config={"max.message.bytes": "1000"})
    proc = fjord(broker, "produce", topic, input="x" * 5000 + "\n", check=False)
    assert proc.returncode == 1
    assert "MESSAGE_TOO_LARGE" in proc.stderr or "RECORD_LIST_TOO_LARGE" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    missing = fjord(broker, "consume", unique_topic("missing"), "--no-follow", check=False)
    assert missing.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr
    bad = fjord(broker, "produce", topic, "--key-separator", ":", input="k:v\nnokey\n",
                check=False)
    assert bad.returncode == 1 and "line 2" in bad.stderr
