"""CLI conventions against the real binary: `--output json` of every client subcommand,
`--bootstrap`/`--bootstrap-server`, one-line errors against a closed port, shell completions,
`fjord serve --print-config` sources, and start-up refusing bad configs without touching
anything."""

import json
import os
import subprocess
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import _find_binary, free_port
from helpers import create_topic, produce_all, producer, unique_topic

CLI_TIMEOUT_S = 60


def clean_env(**extra):
    """The test's environment without FJORD_* variables (they would change what is tested)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FJORD_")}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def run(*args, env=None):
    """Runs the fjord binary; returns the CompletedProcess."""
    return subprocess.run([str(_find_binary()), *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, env=env or clean_env())


def fjord_json(broker, *args, flag="--bootstrap", check=True):
    """`fjord ARGS --output json` against `broker`; returns (exit code, parsed stdout, stderr)."""
    proc = run(*args, flag, broker.bootstrap, "--output", "json")
    if check and proc.returncode != 0:
        raise AssertionError(f"fjord {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def one_error_line(stderr):
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "panicked" not in stderr and "backtrace" not in stderr.lower(), stderr
    return lines[0]


# ------------------------------------------------------------------------------ --output json

def test_topic_and_config_commands_print_json(broker):
    topic = unique_topic("json-topic")
    _, created, _ = fjord_json(broker, "topic", "create", topic, "--partitions", "2",
                               "--config", "retention.ms=86400000")
    assert created == {"created": topic, "partitions": 2, "replication_factor": 1}
    produce_all(producer(broker), topic, [{"value": f"m{i}".encode()} for i in range(5)], partition=0)

    _, listed, _ = fjord_json(broker, "topic", "list", flag="--bootstrap-server")
    assert {"topic": topic, "partitions": 2, "internal": False} in listed["topics"], listed

    _, described, _ = fjord_json(broker, "topic", "describe", topic)
    assert described["topic"] == topic and described["internal"] is False
    assert isinstance(described["topic_id"], str) and len(described["topic_id"]) > 10
    assert described["partitions"] == [
        {"partition": 0, "leader": 1, "log_start_offset": 0, "log_end_offset": 5},
        {"partition": 1, "leader": 1, "log_start_offset": 0, "log_end_offset": 0},
    ], described
    assert {"name": "retention.ms", "value": "86400000", "source": "DYNAMIC_TOPIC_CONFIG",
            "sensitive": False} in described["configs"], described

    _, altered, _ = fjord_json(broker, "topic", "alter-config", topic,
                               "--set", "retention.bytes=1000000", "--delete", "retention.ms")
    assert altered == {"resource": "topic", "name": topic, "set": {"retention.bytes": "1000000"},
                       "deleted": ["retention.ms"]}
    _, configs, _ = fjord_json(broker, "config", "describe", "--topic", topic, "--changed")
    assert configs["resource"] == "topic" and configs["name"] == topic
    assert [(c["name"], c["value"]) for c in configs["configs"]] == [
        ("retention.bytes", "1000000")], configs

    _, deleted, _ = fjord_json(broker, "topic", "delete", topic, "no-such-topic-xyz", check=False)
    assert {"topic": topic, "error": None} in deleted["results"], deleted
    failed = [r for r in deleted["results"] if r["topic"] == "no-such-topic-xyz"]
    assert len(failed) == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in failed[0]["error"], deleted


def test_broker_config_commands_print_json(broker):
    _, described, _ = fjord_json(broker, "config", "describe")
    assert described["resource"] == "broker" and described["name"] == "1"
    by_name = {c["name"]: c for c in described["configs"]}
    assert by_name["listen"]["value"] == broker.bootstrap
    assert by_name["listen"]["source"] == "STATIC_BROKER_CONFIG"
    assert by_name["num.partitions"] == {"name": "num.partitions", "value": "1",
                                         "source": "DEFAULT_CONFIG", "sensitive": False}

    _, altered, _ = fjord_json(broker, "config", "alter", "--broker-defaults",
                               "--set", "log.retention.ms=7200000")
    assert altered == {"resource": "broker_defaults", "name": None,
                       "set": {"log.retention.ms": "7200000"}, "deleted": []}
    _, altered, _ = fjord_json(broker, "config", "alter", "--broker", "1",
                               "--set", "log.retention.bytes=1000000")
    assert altered["resource"] == "broker" and altered["name"] == "1"
    _, defaults, _ = fjord_json(broker, "config", "describe", "--broker-defaults")
    assert defaults["resource"] == "broker_defaults" and defaults["name"] is None
    assert [(c["name"], c["value"], c["source"]) for c in defaults["configs"]] == [
        ("log.retention.ms", "7200000", "DYNAMIC_DEFAULT_BROKER_CONFIG")], defaults
    _, changed, _ = fjord_json(broker, "config", "describe", "--broker", "1", "--changed")
    sources = {c["name"]: c["source"] for c in changed["configs"]}
    assert sources["log.retention.bytes"] == "DYNAMIC_BROKER_CONFIG", changed
    assert sources["log.retention.ms"] == "DYNAMIC_DEFAULT_BROKER_CONFIG", changed


def test_group_commands_print_json(broker):
    topic = unique_topic("json-group")
    group = unique_topic("json-group-id")
    create_topic(broker, topic, partitions=1)
    produce_all(producer(broker), topic, [{"value": f"m{i}".encode()} for i in range(5)], partition=0)
    committer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                          "enable.auto.commit": False})
    try:
        committer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    finally:
        committer.close()

    _, listed, _ = fjord_json(broker, "group", "list")
    mine = [g for g in listed["groups"] if g["group"] == group]
    # Only committed offsets, never joined: a "simple" group without a protocol type.
    assert mine == [{"group": group, "state": "Empty", "protocol_type": None}], listed

    _, described, _ = fjord_json(broker, "group", "describe", group)
    [report] = described["groups"]
    assert report["group"] == group and report["state"] == "Empty" and report["members"] == 0
    assert report["partitions"] == [{
        "topic": topic, "partition": 0, "current_offset": 3, "log_end_offset": 5, "lag": 2,
        "consumer_id": None, "host": None, "client_id": None}], described

    _, plan, _ = fjord_json(broker, "group", "reset-offsets", "--group", group, "--topic", topic,
                            "--to-earliest")
    assert plan == {"group": group, "executed": False, "partitions": [
        {"topic": topic, "partition": 0, "current_offset": 3, "new_offset": 0}]}
    _, done, _ = fjord_json(broker, "group", "reset-offsets", "--group", group, "--topic", topic,
                            "--shift-by", "-1", "--execute")
    assert done["executed"] is True and done["partitions"][0]["new_offset"] == 2, done
    _, described, _ = fjord_json(broker, "group", "describe", group)
    assert described["groups"][0]["partitions"][0]["current_offset"] == 2, described

    _, deleted, _ = fjord_json(broker, "group", "delete", group)
    assert deleted == {"results": [{"group": group, "error": None}]}


def wait_for_listed_state(broker, transactional_id, state, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    entry = None
    while time.monotonic() < deadline:
        _, listed, _ = fjord_json(broker, "txn", "list")
        found = [t for t in listed["transactions"] if t["transactional_id"] == transactional_id]
        entry = found[0] if found else None
        if entry is not None and entry["state"] == state:
            return entry
        time.sleep(0.2)
    raise AssertionError(f"{transactional_id} never listed as {state}; last: {entry}")


def test_txn_commands_print_json(broker):
    topic = unique_topic("json-txn")
    transactional_id = unique_topic("json-txn-id")
    create_topic(broker, topic, partitions=2)
    p = producer(broker, **{"transactional.id": transactional_id, "enable.idempotence": True,
                            "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    p.begin_transaction()
    for partition in range(2):
        p.produce(topic, value=b"in-txn", partition=partition)
    assert p.flush(20) == 0

    listed = wait_for_listed_state(broker, transactional_id, "Ongoing")
    assert listed["coordinator"] == 1 and isinstance(listed["producer_id"], int), listed
    _, described, _ = fjord_json(broker, "txn", "describe", "--transactional-id",
                                 transactional_id)
    assert described["errors"] == []
    [txn] = described["transactions"]
    assert txn["transactional_id"] == transactional_id and txn["state"] == "Ongoing"
    assert txn["producer_id"] == listed["producer_id"] and txn["timeout_ms"] == 60000
    assert isinstance(txn["start_time_ms"], int) and isinstance(txn["duration_ms"], int)
    assert txn["topic_partitions"] == [{"topic": topic, "partition": 0},
                                       {"topic": topic, "partition": 1}], txn
    _, producers, _ = fjord_json(broker, "txn", "producers", "--topic", topic)
    assert producers["topic"] == topic and producers["errors"] == []
    assert sorted(pr["partition"] for pr in producers["producers"]) == [0, 1], producers
    for pr in producers["producers"]:
        assert pr["producer_id"] == listed["producer_id"]
        assert pr["current_transaction_start_offset"] == 0, producers

    p.commit_transaction(30)
    wait_for_listed_state(broker, transactional_id, "CompleteCommit")
    _, described, _ = fjord_json(broker, "txn", "describe", "--transactional-id",
                                 transactional_id)
    assert described["transactions"][0]["duration_ms"] is None, described
    _, producers, _ = fjord_json(broker, "txn", "producers", "--topic", topic)
    assert all(pr["current_transaction_start_offset"] is None
               for pr in producers["producers"]), producers

    code, missing, _ = fjord_json(broker, "txn", "describe", "--transactional-id",
                                  "no-such-txn-id", check=False)
    assert code != 0 and missing["transactions"] == [], missing
    assert missing["errors"][0]["transactional_id"] == "no-such-txn-id", missing


# -------------------------------------------------------------------------- errors, completions

CLIENT_COMMANDS = [
    ["group", "list"],
    ["group", "describe", "g"],
    ["group", "delete", "g"],
    ["group", "reset-offsets", "--group", "g", "--topic", "t", "--to-earliest"],
    ["topic", "list"],
    ["topic", "create", "t"],
    ["topic", "describe", "t"],
    ["topic", "alter-config", "t", "--set", "retention.ms=1"],
    ["topic", "delete", "t"],
    ["config", "describe"],
    ["config", "alter", "--broker-defaults", "--set", "log.retention.ms=1"],
    ["txn", "list"],
    ["txn", "describe", "--transactional-id", "x"],
    ["txn", "producers", "--topic", "t"],
]


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_client_commands_against_a_closed_port_fail_in_one_line(command, output):
    port = free_port()  # nothing listens there
    proc = run(*command, "--bootstrap", f"127.0.0.1:{port}", "--output", output,
               env=clean_env(RUST_BACKTRACE="1"))
    assert proc.returncode != 0
    assert proc.stdout == ""
    line = one_error_line(proc.stderr)
    assert f"127.0.0.1:{port}" in line, line


def test_bash_completion_script_parses(tmp_path):
    proc = run("completions", "bash")
    assert proc.returncode == 0 and "fjord" in proc.stdout
    script = tmp_path / "fjord.bash"
    script.write_text(proc.stdout)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    for shell in ["zsh", "fish", "elvish", "powershell"]:
        assert run("completions", shell).stdout.strip(), shell


# ------------------------------------------------------------------------------ --print-config

def print_config(*args, env=None):
    proc = run("serve", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_print_config_names_every_source(tmp_path):
    data_dir = tmp_path / "data"
    config = tmp_path / "fjord.toml"
    config.write_text('"num.partitions" = 3\n"log.segment.bytes" = 2000000\n')
    args = ["--config", str(config), "--set", "message.max.bytes=2000",
            "--set", "log.segment.bytes=3000000", "--listen", "127.0.0.1:19092",
            "--data-dir", str(data_dir)]
    env = clean_env(FJORD_LOG_RETENTION_MS="1000")
    text = print_config(*args, "--print-config", env=env)
    lines = text.splitlines()
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"], text
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in lines[1:]}
    assert rows["node.id"] == ["1", "default"]
    assert rows["num.partitions"] == ["3", f"config file {config}"]
    assert rows["log.retention.ms"] == ["1000", "env FJORD_LOG_RETENTION_MS"]
    assert rows["message.max.bytes"] == ["2000", "flag --set"]
    assert rows["log.segment.bytes"] == ["3000000", "flag --set"]  # --set beats the file
    assert rows["listen"] == ["127.0.0.1:19092", "flag --listen"]
    assert rows["data.dir"] == [str(data_dir), "flag --data-dir"]
    assert not data_dir.exists(), "--print-config created the data directory"

    # FJORD_LISTEN is the setting's variable: below the flag, above the file.
    as_json = json.loads(print_config("--data-dir", str(data_dir), "--print-config=json",
                                      env=clean_env(FJORD_LISTEN="127.0.0.1:19093")))
    by_key = {s["key"]: s for s in as_json["settings"]}
    assert by_key["listen"] == {"key": "listen", "value": "127.0.0.1:19093",
                                "source": "env FJORD_LISTEN", "default": "127.0.0.1:9092",
                                "dynamic": False}
    assert by_key["max.connections"]["dynamic"] is True
    assert not data_dir.exists()


def test_print_config_shows_dynamic_broker_configs(broker):
    code, _, _ = fjord_json(broker, "config", "alter", "--broker", "1",
                            "--set", "log.retention.bytes=1000000")
    fjord_json(broker, "config", "alter", "--broker-defaults", "--set", "log.roll.ms=600000")
    # While the broker runs and holds the data directory's lock.
    out = print_config("--data-dir", str(broker.data_dir), "--print-config=json")
    by_key = {s["key"]: s for s in json.loads(out)["settings"]}
    assert by_key["log.retention.bytes"]["value"] == "1000000"
    assert by_key["log.retention.bytes"]["source"] == "dynamic broker config"
    assert by_key["log.roll.ms"]["value"] == "600000"
    assert by_key["log.roll.ms"]["source"] == "dynamic default broker config"
    broker.assert_alive()


# --------------------------------------------------------------------------- bad configurations

BAD_CONFIGS = {
    "unknown-file-key": (["--config", "{config}"], {}, "`num.partiton`", "config file"),
    "unknown-set-key": (["--set", "num.partiton=3"], {}, "`num.partiton`", "flag --set"),
    "misspelled-env": ([], {"FJORD_NUM_PARTITON": "3"}, "FJORD_NUM_PARTITON", "FJORD_NUM_PARTITIONS"),
    "bad-number": (["--set", "num.partitions=abc"], {}, "`num.partitions`", '"abc"'),
    "bad-listen": (["--listen", "nope"], {}, "`listen`", '"nope"'),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("print_only", [False, True], ids=["start", "print-config"])
def test_bad_configs_fail_start_in_one_line_without_touching_anything(tmp_path, case,
                                                                      print_only):
    args, env, named, where = BAD_CONFIGS[case]
    config = tmp_path / "fjord.toml"
    config.write_text('"num.partiton" = 3\n')
    data_dir = tmp_path / "data"
    port = free_port()
    argv = ["serve", "--data-dir", str(data_dir)]
    if "--listen" not in args:
        argv += ["--listen", f"127.0.0.1:{port}"]
    argv += [a.format(config=config) for a in args]
    if print_only:
        argv.append("--print-config")
    proc = run(*argv, env=clean_env(RUST_BACKTRACE="1", **env))
    assert proc.returncode != 0
    line = one_error_line(proc.stderr)
    assert named in line and where in line, line
    if case.startswith("unknown"):
        assert "did you mean `num.partitions`?" in line, line
    assert not data_dir.exists(), "a refused start created the data directory"


# ------------------------------------------------------------------------------------- logs
def test_logs_written_to_a_file_have_no_colour_codes(tmp_path):
    """Operators redirect stderr to files and journald: no ANSI escapes there (colours only on
    a terminal). NO_COLOR is removed so the default, not the opt-out, is checked."""
    env = clean_env()
    del env["NO_COLOR"]
    log_path = tmp_path / "broker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(_find_binary()), "serve", "--data-dir", str(tmp_path / "data"),
             "--listen", f"127.0.0.1:{free_port()}",
             "--metrics-listen", f"127.0.0.1:{free_port()}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + 30
            while b"fjord broker ready" not in log_path.read_bytes():
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, log_path.read_text()
    text = log_path.read_bytes()
    assert b"INFO" in text and b"fjord broker ready" in text, text
    assert b"\x1b[" not in text, text[:500]


def test_bootstrap_takes_a_comma_separated_list(broker):
    # As Kafka clients: the first reachable address of the list is used.
    dead = f"127.0.0.1:{free_port()}"
    proc = run("cluster", "info", "--bootstrap", f"{dead},{broker.bootstrap}",
               "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["brokers"]
    proc = run("cluster", "info", "--bootstrap", f"{dead}, {dead}")
    assert proc.returncode != 0
    assert "cannot connect" in proc.stderr
