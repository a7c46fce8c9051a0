"""`fjord partition ...` and `fjord cluster status|describe-quorum|unregister` against the real
binary on a single node (a one-voter metadata quorum): plain Kafka requests (Metadata,
ElectLeaders, AlterPartitionReassignments, ListPartitionReassignments, DescribeQuorum,
UnregisterBroker), text and `--output json`, Kafka's errors in one line on stderr."""

import json
import subprocess

from helpers import create_topic, unique_topic


def fjord(broker, *args, check=True):
    proc = subprocess.run([str(broker.binary), *args, "--bootstrap", broker.bootstrap],
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"fjord {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.returncode, proc.stdout, proc.stderr


def fjord_json(broker, *args, check=True):
    code, out, err = fjord(broker, *args, "--output", "json", check=check)
    return code, json.loads(out) if out.strip() else None, err


def one_error_line(stderr):
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "panicked" not in stderr, stderr
    return lines[0]


def write_plan(tmp_path, partitions):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"version": 1, "partitions": partitions}))
    return str(path)


def test_cluster_status_shows_brokers_quorum_and_partition_health(broker):
    create_topic(broker, unique_topic("status"), partitions=2)
    _, status, _ = fjord_json(broker, "cluster", "status")
    assert [(b["node_id"], b["fenced"], b["rack"]) for b in status["brokers"]] == [(1, False, None)]
    quorum = status["quorum"]
    assert quorum["leader_id"] == 1 and quorum["leader_epoch"] >= 1, status
    assert quorum["high_watermark"] >= 1
    assert [(v["node_id"], v["lag"]) for v in quorum["voters"]] == [(1, 0)], status
    assert status["under_replicated_partitions"] == 0 and status["offline_partitions"] == 0
    assert status["partitions"] >= 2

    _, out, _ = fjord(broker, "cluster", "status")
    assert "unfenced" in out and "Under-replicated: 0" in out and "Offline:" in out, out
    assert any(line.split()[:3] == ["1", "leader", str(quorum["high_watermark"])]
               or line.split()[:2] == ["1", "leader"] for line in out.splitlines()), out


def test_describe_quorum_lists_the_single_voter(broker):
    _, quorum, _ = fjord_json(broker, "cluster", "describe-quorum")
    assert quorum["leader_id"] == 1 and quorum["observers"] == [], quorum
    [voter] = quorum["voters"]
    assert voter["node_id"] == 1 and voter["lag"] == 0
    assert voter["log_end_offset"] >= quorum["high_watermark"] >= 1
    assert voter["last_fetch_ms_ago"] is not None and voter["last_fetch_ms_ago"] >= 0
    _, out, _ = fjord(broker, "cluster", "describe-quorum")
    rows = [line.split() for line in out.splitlines()]
    assert ["Leader:", "1"] in rows, out
    assert any(r[:2] == ["1", "leader"] for r in rows), out


def test_partition_describe_shows_leaders_replicas_and_isr(broker):
    topic = unique_topic("pdescribe")
    create_topic(broker, topic, partitions=3)
    _, described, _ = fjord_json(broker, "partition", "describe", topic)
    assert described["partitions"] == [
        {"topic": topic, "partition": p, "leader": 1, "leader_epoch": 0, "replicas": [1],
         "isr": [1], "offline_replicas": [], "under_replicated": False}
        for p in range(3)], described
    _, out, _ = fjord(broker, "partition", "describe", topic)
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE"]
    assert [topic, "2", "1", "0", "1", "1", "-"] in lines, out
    _, under, _ = fjord_json(broker, "partition", "describe", topic, "--under-replicated")
    assert under["partitions"] == []
    code, _, err = fjord(broker, "partition", "describe", "no-such-topic-xyz", check=False)
    assert code == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in one_error_line(err)


def test_preferred_election_on_a_single_node_is_not_needed(broker):
    topic = unique_topic("elect")
    create_topic(broker, topic, partitions=2)
    _, result, _ = fjord_json(broker, "partition", "elect", "--type", "preferred",
                              "--topic", topic, "--partition", "1")
    assert result == {"type": "preferred", "results": [
        {"topic": topic, "partition": 1, "result": "not needed", "error": None}]}, result
    _, result, _ = fjord_json(broker, "partition", "elect", "--type", "preferred", "--topic", topic)
    assert [r["partition"] for r in result["results"]] == [0, 1]
    # Every partition: Kafka leaves ELECTION_NOT_NEEDED out.
    _, result, _ = fjord_json(broker, "partition", "elect", "--type", "unclean", "--all")
    assert result["results"] == [], result
    _, out, _ = fjord(broker, "partition", "elect", "--type", "preferred", "--all")
    assert "No partition needed an election." in out, out
    code, _, err = fjord(broker, "partition", "elect", "--type", "preferred",
                         "--topic", topic, "--partition", "9", check=False)
    assert code == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in err, err
    # --topic or --all is required.
    code, _, err = fjord(broker, "partition", "elect", "--type", "preferred", check=False)
    assert code == 2 and "--topic" in err, err


def test_reassignment_plan_execute_verify_cancel(broker, tmp_path):
    topic = unique_topic("reassign")
    create_topic(broker, topic, partitions=2)

    _, generated, _ = fjord_json(broker, "partition", "reassign", "--generate",
                                 "--topics", topic, "--brokers", "1")
    current = {"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": [1]} for p in range(2)]}
    assert generated == {"current": current, "proposed": current}, generated

    # To an unknown broker: refused as Kafka refuses it, nothing moves.
    plan = write_plan(tmp_path, [{"topic": topic, "partition": 0, "replicas": [1, 7]},
                                 {"topic": topic, "partition": 1, "replicas": [1],
                                  "log_dirs": ["any"]}])
    code, executed, err = fjord_json(broker, "partition", "reassign", "--plan", plan, "--execute",
                                     check=False)
    assert code == 1 and "1 partition(s) failed" in one_error_line(err)
    by_partition = {r["partition"]: r["error"] for r in executed["results"]}
    assert by_partition[1] is None
    assert by_partition[0].startswith("INVALID_REPLICA_ASSIGNMENT (39): The manual partition "
                                      "assignment includes broker 7, but no such broker is "
                                      "registered."), by_partition
    assert executed["current"] == current

    _, verified, _ = fjord_json(broker, "partition", "reassign", "--plan", plan, "--verify")
    states = {p["partition"]: p["state"] for p in verified["partitions"]}
    assert states == {0: "different", 1: "complete"} and verified["complete"] is False, verified

    # Nothing is in progress to cancel: Kafka's NO_REASSIGNMENT_IN_PROGRESS.
    code, cancelled, err = fjord_json(broker, "partition", "reassign", "--plan", plan, "--cancel",
                                      check=False)
    assert code == 1
    assert all("NO_REASSIGNMENT_IN_PROGRESS" in r["error"] for r in cancelled["results"]), cancelled

    bad = tmp_path / "bad.json"
    bad.write_text('{"version":1,"partitions":[{"topic":"x","partition":0,"replicas":[1,1]}]}')
    code, _, err = fjord(broker, "partition", "reassign", "--plan", str(bad), "--execute",
                         check=False)
    assert code == 1 and "names a broker twice" in one_error_line(err), err
    code, _, err = fjord(broker, "partition", "reassign", "--execute", check=False)
    assert code == 2, err


def test_rebalance_on_one_broker_has_nothing_to_move(broker):
    create_topic(broker, unique_topic("rebalance"), partitions=3)
    _, result, _ = fjord_json(broker, "partition", "rebalance")
    assert result["brokers"] == [1] and result["executed"] is False
    assert result["plan"]["partitions"] == [], result
    _, out, _ = fjord(broker, "partition", "rebalance", "--dry-run")
    assert "already balanced" in out, out


def test_unregister_of_an_unknown_broker_fails_like_kafka(broker):
    code, _, err = fjord(broker, "cluster", "unregister", "--broker", "42", check=False)
    line = one_error_line(err)
    assert code == 1 and "BROKER_ID_NOT_REGISTERED (102)" in line, line
    assert "Broker ID 42 is not currently registered" in line, line
    _, status, _ = fjord_json(broker, "cluster", "status")
    assert [b["node_id"] for b in status["brokers"]] == [1]
