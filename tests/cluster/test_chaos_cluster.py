"""CI hook of the chaos driver on a cluster (tests/chaos/chaos.py, normally run as
scripts/chaos --nodes 3).

A ~60 s run with a fixed seed against three combined nodes (RF=3, ``min.insync.replicas=2``),
every node-to-node link through the proxy mesh: kill -9 and restart, SIGSTOP pauses,
node-to-node partitions (a node isolated, or two nodes cut apart) and wall-clock jumps, under
idempotent acks=all, acks=1 and transactional producers and two consumers; then a heal, a
drain of every partition and ``fjord-chaos-check``.  The test asserts the checker's verdict
(VALID: no anomalies) and that the run was not vacuous: every fault kind the schedule promises
was executed and every producer had acknowledged writes.  The run's output (history.jsonl,
schedule.json, check.json, node logs) stays in the test's tmp dir, named in the failure.

The checker binary: ``$FJORD_CHAOS_CHECK_BIN``, else next to the ``fjord`` binary (scripts/test
builds both), else ``${CARGO_TARGET_DIR:-target}/release/fjord-chaos-check``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fjordcluster import REPO_ROOT, find_binary  # noqa: E402

pytestmark = pytest.mark.chaos

SEED = 11
DURATION_S = 60
FAULTS = ("kill", "pause", "partition", "clock")


def _checker_binary() -> Path:
    env = os.environ.get("FJORD_CHAOS_CHECK_BIN")
    if env:
        return Path(env)
    beside = find_binary().parent / "fjord-chaos-check"
    if beside.exists():
        return beside
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    return target / "release" / "fjord-chaos-check"


@pytest.mark.timeout(300)
def test_chaos_three_nodes_with_partitions_and_clock_jumps(tmp_path):
    checker = _checker_binary()
    if not checker.exists():
        pytest.skip(f"{checker} not built (cargo build --release -p fjord-chaos --bin fjord-chaos-check)")
    out = tmp_path / "chaos"
    cmd = [sys.executable, str(REPO_ROOT / "tests" / "chaos" / "chaos.py"),
           "--duration", str(DURATION_S), "--seed", str(SEED), "--nodes", "3",
           "--faults", ",".join(FAULTS), "--out", str(out),
           "--fjord-bin", str(find_binary()), "--check-bin", str(checker)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
    report = f"chaos run (output in {out}):\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{report}"

    check = json.loads((out / "check.json").read_text())
    assert check["valid"], report
    anomalies = {k: v["count"] for k, v in check["anomalies"].items()}
    assert sum(anomalies.values()) == 0, f"{anomalies}\n{report}"

    schedule = json.loads((out / "schedule.json").read_text())
    assert schedule["seed"] == SEED
    kinds: dict[str, int] = {}
    for ev in schedule["executed"]:
        kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
    for kind in FAULTS:
        assert kinds.get(kind, 0) >= 1, f"no {kind} fault executed: {kinds}\n{report}"
    assert any(ev["kind"] == "clock" and ev["offset_ms"] != 0 for ev in schedule["executed"])

    acked: dict[str, int] = {}
    for process, n in check["stats"]["acked_by_process"].items():
        base = process.split(".")[0]
        acked[base] = acked.get(base, 0) + n
    for producer in ("p0", "p1", "n0"):
        assert acked.get(producer, 0) > 0, f"no acknowledged writes from {producer}: {acked}\n{report}"
    stats = check["stats"]
    assert stats["records_polled"] > 0 and stats["drained_read_uncommitted"] > 0, report
    # Every node's log shows it ran with the mesh and the clock hook.
    for n in (1, 2, 3):
        log = (out / "nodes" / str(n) / "broker.log").read_text(errors="replace")
        assert "TEST HOOK: dialing this peer through an override address" in log
        assert "TEST HOOK: the wall clock follows the offset in this file" in log
