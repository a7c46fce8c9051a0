"""CI hook of the chaos driver (tests/chaos/chaos.py, normally run as scripts/chaos).

A ~20 s run with a fixed seed against one node: kill -9 and restart, SIGSTOP pauses and proxy
faults under idempotent, acks=1 and transactional producers and two consumers, then a drain and
``fjord-chaos-check``.  The test asserts the checker's verdict (no anomalies) and that the run
was not vacuous: faults were injected (kills and pauses) and every producer had acknowledged
writes.  Everything the run produced stays in the test's tmp dir (history.jsonl,
schedule.json, check.json, broker logs) and the failure message names it.

The checker binary: ``$FJORD_CHAOS_CHECK_BIN``, else ``${CARGO_TARGET_DIR:-target}/release/
fjord-chaos-check`` (scripts/test builds it with fjord), else it is built here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, _find_binary

SEED = 7
DURATION_S = 20


def _checker_binary() -> Path:
    env = os.environ.get("FJORD_CHAOS_CHECK_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    binary = target / "release" / "fjord-chaos-check"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "fjord-chaos", "--bin",
                        "fjord-chaos-check"], cwd=REPO_ROOT, check=True)
    return binary


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chaos_single_node(tmp_path):
    out = tmp_path / "chaos"
    cmd = [sys.executable, str(REPO_ROOT / "tests" / "chaos" / "chaos.py"),
           "--duration", str(DURATION_S), "--seed", str(SEED), "--nodes", "1",
           "--faults", "kill,pause,proxy", "--out", str(out),
           "--fjord-bin", str(_find_binary()), "--check-bin", str(_checker_binary())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540)
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
    assert kinds.get("kill", 0) >= 1 and kinds.get("pause", 0) >= 1, f"faults {kinds}\n{report}"

    # acknowledged writes from every producer (process names may carry a generation suffix)
    acked: dict[str, int] = {}
    for process, n in check["stats"]["acked_by_process"].items():
        base = process.split(".")[0]
        acked[base] = acked.get(base, 0) + n
    for producer in ("p0", "p1", "n0", "t0"):
        assert acked.get(producer, 0) > 0, f"no acknowledged writes from {producer}: {acked}\n{report}"
    stats = check["stats"]
    assert stats["records_polled"] > 0 and stats["drained_read_uncommitted"] > 0, report
    assert stats["txns_committed"] > 0 and stats["txns_aborted"] > 0, report
    # the history is on disk, as are the broker's log and data
    assert (out / "history.jsonl").stat().st_size > 0
    assert (out / "nodes" / "1" / "broker.log").exists()
