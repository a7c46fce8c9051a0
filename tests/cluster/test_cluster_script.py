"""Smoke test of ``scripts/cluster up|status|kill|start|down`` (the local 3-node cluster for humans).

The script's default ports (clients 1909N, controllers 1919N, metrics 1929N) belong to humans:
the test moves them with ``up --port-base`` to a range that is free now (the other commands find
it in the cluster dir), so it never fights another cluster on this machine.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fjordcluster import REPO_ROOT, find_binary, raw_metadata, read_meta_properties  # noqa: E402

SCRIPT = REPO_ROOT / "scripts" / "cluster"
NODES = (1, 2, 3)
DEFAULT_PORT_BASE = 19090


def _port_taken(port: int) -> bool:
    # SO_REUSEADDR as the broker binds: connections in TIME_WAIT from an earlier run do not
    # count, only a socket bound to the port now.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _pid(directory: Path, n: int) -> int | None:
    try:
        pid = int((directory / f"{n}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _wait_gone(directory: Path, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _pid(directory, n) is not None:
        assert time.monotonic() < deadline, f"node {n} still runs {timeout}s after scripts/cluster kill"
        time.sleep(0.05)


def _free_port_base() -> int:
    """A base P whose ports P+N, P+100+N and P+200+N are free, never the default."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        if not any(_port_taken(base + off + n) for off in (0, 100, 200) for n in NODES):
            return base
    pytest.skip("no free port range for scripts/cluster")


def test_scripts_cluster_up_status_kill_start_down(tmp_path):
    base = _free_port_base()
    assert base != DEFAULT_PORT_BASE
    directory = tmp_path / "fjord-cluster"
    env = dict(os.environ, FJORD_BIN=str(find_binary()), NO_COLOR="1")

    def run(*args, check=True, timeout=120):
        # --dir before the arguments: everything after `--` goes to fjord serve
        result = subprocess.run(["bash", str(SCRIPT), args[0], "--dir", str(directory), *args[1:]],
                                capture_output=True, text=True, env=env, timeout=timeout)
        out = result.stdout + result.stderr
        logs = "\n".join(f"--- {n}.log ---\n{(directory / f'{n}.log').read_text()[-3000:]}"
                         for n in NODES if (directory / f"{n}.log").exists())
        assert not check or result.returncode == 0, (
            f"scripts/cluster {' '.join(args)} exited {result.returncode}:\n{out}\n{logs}")
        return out

    try:
        # shutdown.timeout.ms bounds `down`: the node stopping last has no controller quorum
        # left to finish its controlled shutdown with, and waits that long.
        out = run("up", "--port-base", str(base), "--", "--set", "broker.session.timeout.ms=3000",
                  "--set", "broker.heartbeat.interval.ms=500", "--set", "shutdown.timeout.ms=5000")
        assert "cluster ready" in out, out
        for n in NODES:
            assert _pid(directory, n) is not None, f"node {n} does not run after up"
            assert (directory / str(n) / "meta.properties").exists()
        cluster_id = read_meta_properties(directory / "1")["cluster.id"]

        out = run("status")
        for n in NODES:
            assert f"node {n}: running" in out, out
        assert cluster_id in out, out
        md = raw_metadata(base + 1)
        assert set(md.brokers) == set(NODES)
        assert md.cluster_id == cluster_id

        run("kill", "2")
        # `kill` sends SIGKILL and returns; the process is gone (reaped) a moment later.
        _wait_gone(directory, 2)
        out = run("status")
        assert "node 2: down" in out and "node 1: running" in out and "node 3: running" in out, out

        run("start", "2")      # waits for /health/ready
        assert _pid(directory, 2) is not None
        md = raw_metadata(base + 2)
        assert set(md.brokers) == set(NODES), md.brokers
        out = run("status")
        for n in NODES:
            assert f"node {n}: running" in out, out

        pids = {n: _pid(directory, n) for n in NODES}
        out = run("down")
        assert "cluster stopped" in out, out
        for n in NODES:
            assert _pid(directory, n) is None, f"node {n} (pid {pids[n]}) still runs after down"
            assert not (directory / f"{n}.pid").exists()
            assert "controlled shutdown" in (directory / f"{n}.log").read_text()
        out = run("status")
        for n in NODES:
            assert f"node {n}: down" in out, out
    finally:
        for n in NODES:
            pid = _pid(directory, n)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
