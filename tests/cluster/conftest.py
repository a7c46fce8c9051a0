"""Fixtures for Fjord's multi-node (cluster) tests: real ``fjord serve`` processes on loopback.

``cluster``          a healthy 3-node cluster (``fjordcluster.Cluster``): every node runs, is
                     ready and sees all three brokers when the test starts.  The processes are
                     shared by the tests of a module (starting three nodes costs seconds); a test
                     may kill, stop or pause nodes, the next one restarts what is down.
``mesh_cluster``     like ``cluster``, with a fault-injecting proxy on every node-to-node link
                     (``partition``, ``isolate``, ``split``, ``heal``) and clock-offset files
                     (``set_clock_offset``); links healed and clocks reset before every test.
``cluster_factory``  ``cluster_factory(size=3, settings=None, start=True, brokers=0, mesh=False,
                     clock_offsets=False)``: a cluster of the test's own (stopped at teardown),
                     e.g. a second cluster, other settings, or ``brokers`` broker-only nodes
                     beside the voters.

Each node gets ``--broker-rack rack-N``, ``broker.session.timeout.ms=3000`` and
``broker.heartbeat.interval.ms=500`` (fencing within seconds), ``shutdown.timeout.ms=5000``; logs stay under the pytest
basetemp (``.../node-N/node.log``) and their tails are attached to every failing test's report.
The binary is ``$FJORD_BIN`` or ``${CARGO_TARGET_DIR:-target}/release/fjord``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fjordcluster import Cluster  # noqa: E402


def _register(request, cluster: Cluster) -> None:
    clusters = getattr(request.node, "fjord_clusters", None)
    if clusters is None:
        clusters = []
        request.node.fjord_clusters = clusters
    if cluster not in clusters:
        clusters.append(cluster)


def _started_module_cluster(tmp_path_factory, **options):
    c = Cluster(tmp_path_factory.mktemp("cluster"), **options)
    try:
        c.start_all()
    except BaseException:
        c.kill_all()
        c.close()
        raise
    yield c
    problems = c.shutdown()
    c.kill_all()
    c.close()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def _module_cluster(tmp_path_factory):
    yield from _started_module_cluster(tmp_path_factory)


@pytest.fixture(scope="module")
def _module_mesh_cluster(tmp_path_factory):
    yield from _started_module_cluster(tmp_path_factory, mesh=True, clock_offsets=True)


@pytest.fixture
def cluster(_module_cluster, request) -> Cluster:
    _register(request, _module_cluster)
    _module_cluster.ensure_healthy()
    return _module_cluster


@pytest.fixture
def mesh_cluster(_module_mesh_cluster, request) -> Cluster:
    _register(request, _module_mesh_cluster)
    _module_mesh_cluster.ensure_healthy()
    return _module_mesh_cluster


@pytest.fixture
def cluster_factory(tmp_path_factory, request):
    created: list[Cluster] = []

    def make(size: int = 3, settings: dict | None = None, start: bool = True,
             brokers: int = 0, mesh: bool = False, clock_offsets: bool = False) -> Cluster:
        c = Cluster(tmp_path_factory.mktemp("cluster"), size=size, settings=settings,
                    brokers=brokers, mesh=mesh, clock_offsets=clock_offsets)
        created.append(c)
        _register(request, c)
        if start:
            c.start_all()
        return c

    yield make
    for c in created:
        c.shutdown()
        c.kill_all()
        c.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for i, c in enumerate(getattr(item, "fjord_clusters", [])):
            for title, tail in c.logs_report():
                rep.sections.append((f"cluster {i} {title}", tail))
