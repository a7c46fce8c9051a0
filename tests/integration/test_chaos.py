"""CI hook of the chaos driver (tests/chaos/chaos.py, normally run as scripts/chaos).

A ~20 s run with a fixed seed against one node: kill -9 and restart, SIGSTOP pauses and proxy
faults under idempotent, acks=1 and transactional producers and two consumers, then a drain and
``fjord-chaos-check``.  The test asserts the checker's verdict (no anomalies) and that the run
was not vacuous: faults were injected (kills and pauses) and every producer had acknowledged
writes.  Everything the run produced stays in the test's tmp dir (history.jsonl,
schedule.json, check.json, broker logs) and the failure message names it.

The checker binary: ``$FJORD_CHAOS_CHECK_BIN``, else next to the ``fjord`` binary (scripts/test
builds both), else ``${CARGO_TARGET_DIR:-target}/release/fjord-chaos-check``, built here if
missing.
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
    beside = _find_binary().parent / "fjord-chaos-check"
    if beside.exists():
        return beside
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


# ------------------------------------------------------------ driver parts, no broker
sys.path.insert(0, str(REPO_ROOT / "tests" / "chaos"))


def test_schedule_is_fixed_by_the_seed_and_covers_every_fault():
    from chaos import make_schedule

    a = make_schedule(5, 20.0, ["kill", "pause", "proxy"], [1])
    assert a == make_schedule(5, 20.0, ["kill", "pause", "proxy"], [1])
    assert a != make_schedule(6, 20.0, ["kill", "pause", "proxy"], [1])
    assert {ev["kind"] for ev in a[:3]} == {"kill", "pause", "proxy"}
    assert all(ev["at_s"] < 20.0 for ev in a)
    three = make_schedule(5, 60.0, ["kill", "partition"], [1, 2, 3])
    assert {ev["kind"] for ev in three} == {"kill", "partition"}
    assert all(ev["a"] != ev["b"] for ev in three if ev["kind"] == "partition")


class _FrameEcho:
    """Answers every Kafka-framed request with a frame carrying its correlation id."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn):
        from faultproxy import _read_frame
        while True:
            frame = _read_frame(conn)
            if frame is None:
                return
            body = frame[8:12] + b"pong"
            conn.sendall(len(body).to_bytes(4, "big") + body)


def _request(address: str, corr: int, timeout: float = 5.0):
    """One request on a new connection: the echoed body, b"" if the connection was closed, or
    None if nothing came back within ``timeout``."""
    import socket
    import struct
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        body = struct.pack(">hhi", 18, 0, corr) + b"ping"
        try:
            s.sendall(len(body).to_bytes(4, "big") + body)
            head = s.recv(4)
            if not head:
                return b""
            return s.recv(int.from_bytes(head, "big"))
        except socket.timeout:
            return None
        except ConnectionError:
            return b""


def test_mesh_cuts_and_heals_links():
    from mesh import CLIENT, CONTROLLER, KAFKA, ProxyMesh

    echo = _FrameEcho()
    mesh = ProxyMesh(seed=1)
    try:
        mesh.add_node(1, echo.port, controller_port=echo.port)
        mesh.add_node(2, echo.port, controller_port=echo.port)
        client_1 = mesh.client_address(1)
        assert _request(client_1, 7) == (7).to_bytes(4, "big") + b"pong"
        assert mesh.peer_overrides(1) == (f"2@{mesh.address(1, 2)},"
                                          f"controller:2@{mesh.address(1, 2, CONTROLLER)}")
        assert mesh.address(1, 2, CONTROLLER) != mesh.address(1, 2, KAFKA)

        assert mesh.partition(CLIENT, 1, "drop") == [(CLIENT, 1, KAFKA)]
        assert _request(client_1, 8) == b""            # refused / closed
        assert _request(mesh.address(1, 2), 9) == (9).to_bytes(4, "big") + b"pong"
        mesh.heal()
        assert _request(client_1, 10) == (10).to_bytes(4, "big") + b"pong"

        cut = mesh.isolate(1, "hold")
        # clients never listen: no (1, CLIENT); both listeners of each node-to-node link
        assert set(cut) == {(CLIENT, 1, KAFKA), (1, 2, KAFKA), (1, 2, CONTROLLER),
                            (2, 1, KAFKA), (2, 1, CONTROLLER)}
        assert _request(client_1, 11, timeout=0.5) is None   # held: nothing relayed
        assert _request(mesh.address(2, 1), 12, timeout=0.5) is None
        assert _request(mesh.address(1, 2, CONTROLLER), 13, timeout=0.5) is None
        mesh.heal()
        assert _request(mesh.address(2, 1), 14) == (14).to_bytes(4, "big") + b"pong"

        # Node-to-node only: clients still reach node 1.
        cut = mesh.isolate(1, "drop", clients=False)
        assert all(CLIENT not in link[:2] for link in cut)
        assert _request(client_1, 15) == (15).to_bytes(4, "big") + b"pong"
        assert _request(mesh.address(2, 1, CONTROLLER), 16) == b""
        mesh.heal()
        assert _request(mesh.address(2, 1, CONTROLLER), 17) == (17).to_bytes(4, "big") + b"pong"
    finally:
        mesh.close()
        echo.sock.close()
