"""Shared fixtures for Fjord's black-box integration tests.

Every test talks to a real ``fjord`` process over TCP.  The binary is taken
from ``$FJORD_BIN`` (``scripts/test`` sets it) or, failing that, from
``${CARGO_TARGET_DIR:-target}/release/fjord``.

Fixtures
--------
``broker``          a running broker with default settings (function scope)
``broker_factory``  ``broker_factory(settings={"message.max.bytes": 100000}, ...)``
                    starts additional brokers with Kafka-named ``--set`` settings
``proxied_broker``  ``(broker, proxy)``: a broker behind a ``faultproxy.FaultProxy`` that it
                    advertises (clients bootstrap at ``proxy.address``)

The broker object exposes ``.bootstrap``, ``.port``, ``.metrics_port``, ``.metrics_url``
(the ``--metrics-listen`` HTTP listener: ``/metrics``, ``/health/live``, ``/health/ready``),
``.data_dir``,
``.stop()`` (SIGTERM, waits, asserts exit code 0), ``.kill9()``,
``.restart()`` (same data dir and port), ``.start()`` and ``.stderr_tail()``.
The broker's stdout+stderr go to ``<tmp>/broker.log``; its tail is attached to
the report of every failing test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faultproxy import FaultProxy  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def _find_binary() -> Path:
    env = os.environ.get("FJORD_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO_ROOT / "target")
    return Path(target) / "release" / "fjord"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """One ``fjord serve`` process bound to a fixed port and data dir."""

    def __init__(self, binary: Path, workdir: Path, settings: dict | None = None,
                 extra_args: list[str] | None = None, env: dict | None = None,
                 port: int | None = None):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "broker.log"
        self.port = port or free_port()
        # Every broker gets its own metrics port so tests never collide on the default 9644.
        self.metrics_port = free_port()
        self.settings = dict(settings or {})
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.starts = 0

    # ------------------------------------------------------------------ info
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, max_bytes: int = 8000) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return "<no broker log>"
        return data[-max_bytes:].decode("utf-8", "replace")

    def command(self) -> list[str]:
        cmd = [
            str(self.binary), "serve",
            "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            # settings={"advertised.listener": "127.0.0.1:<proxy port>"} puts a proxy
            # (faultproxy.py) in front: flags beat --set, so it must go in the flag.
            "--advertised-listener", str(self.settings.get("advertised.listener",
                                                           f"127.0.0.1:{self.port}")),
            "--node-id", "1",
        ]
        for key, value in self.settings.items():
            if key == "advertised.listener":
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            cmd += ["--set", f"{key}={value}"]
        return cmd + self.extra_args

    # ------------------------------------------------------------- lifecycle
    def start(self, wait: bool = True) -> "BrokerProcess":
        """Starts the process; with ``wait`` (the default) returns once the Kafka port accepts."""
        assert not self.is_running(), "broker already running"
        if not self.binary.exists():
            pytest.fail(f"fjord binary not found at {self.binary} (set FJORD_BIN or run "
                        f"`cargo build --release --bin fjord`)")
        self.starts += 1
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        env.update(self.env)
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, cwd=str(self.workdir))
        if wait:
            self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"fjord exited with code {self.proc.returncode} during startup.\n"
                            f"--- broker log tail ---\n{self.stderr_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError as e:  # not listening yet
                last_err = e
                time.sleep(0.05)
        self.kill9()
        pytest.fail(f"fjord did not accept connections on port {self.port} within "
                    f"{READY_TIMEOUT_S}s (last error: {last_err}).\n"
                    f"--- broker log tail ---\n{self.stderr_tail()}")

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self, timeout: float = STOP_TIMEOUT_S, check: bool = True) -> int:
        """Graceful shutdown: SIGTERM, wait, assert exit code 0."""
        assert self.proc is not None, "broker was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                pytest.fail(f"fjord did not exit within {timeout}s of SIGTERM.\n"
                            f"--- broker log tail ---\n{self.stderr_tail()}")
        rc = self.proc.returncode
        self._close_log()
        if check:
            assert rc == 0, (f"fjord exited with code {rc} after SIGTERM (expected 0).\n"
                             f"--- broker log tail ---\n{self.stderr_tail()}")
        return rc

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def restart(self) -> "BrokerProcess":
        """Graceful stop (if running) and start again on the same port and data dir."""
        if self.is_running():
            self.stop()
        return self.start()

    def assert_alive(self) -> None:
        assert self.is_running(), (f"fjord process died (exit code {self.proc.returncode}).\n"
                                   f"--- broker log tail ---\n{self.stderr_tail()}")


@pytest.fixture
def broker_factory(tmp_path_factory, request):
    """Factory: ``broker_factory(settings=None, extra_args=None, env=None)``."""
    created: list[BrokerProcess] = []
    request.node.fjord_brokers = created
    binary = _find_binary()

    def make(settings: dict | None = None, extra_args: list[str] | None = None,
             env: dict | None = None, start: bool = True) -> BrokerProcess:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:40]
        workdir = tmp_path_factory.mktemp(f"fjord-{safe}")
        b = BrokerProcess(binary, workdir, settings=settings, extra_args=extra_args, env=env)
        created.append(b)
        if start:
            b.start()
        return b

    yield make

    # Attach logs of failing tests; always shut brokers down.
    rep = getattr(request.node, "rep_call", None)
    failed = rep is not None and rep.failed
    problems = []
    for b in created:
        if b.proc is None:
            continue
        if b.proc.poll() is None:
            rc = b.stop(check=False)
            if rc != 0:
                problems.append(f"broker on port {b.port} exited with {rc} after SIGTERM at "
                                f"teardown.\n{b.stderr_tail(3000)}")
        elif b.proc.returncode not in (0, -signal.SIGKILL) and not failed:
            problems.append(f"broker on port {b.port} had died with code {b.proc.returncode}.\n"
                            f"{b.stderr_tail(3000)}")
        b._close_log()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def broker(broker_factory) -> BrokerProcess:
    return broker_factory()


@pytest.fixture
def proxied_broker(broker_factory):
    """(broker, proxy): the broker advertises the proxy, so clients bootstrapped at the proxy
    never talk to the broker directly.  Tests that need the truth read at ``broker.bootstrap``."""
    proxy = FaultProxy(seed=1)
    b = broker_factory(settings={"advertised.listener": proxy.address}, start=False)
    proxy.upstream_port = b.port
    b.start()
    proxy.start()
    yield b, proxy
    proxy.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for b in getattr(item, "fjord_brokers", []):
            rep.sections.append((f"fjord log tail ({b.log_path})", b.stderr_tail()))
