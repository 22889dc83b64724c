"""Shared fixtures: one embedded cluster for the integration tests, per store.

Tests use the ``cluster`` fixture (SQLite). Durability tests parametrise it indirectly
with ``"redis"`` as well; pytest runs each store's tests together, so there is one Ray
session at a time. Redis is a real ``redis-server`` started here on a free port.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("FLUENTFN_CALL_TIMEOUT_S", "60")
os.environ.setdefault("FLUENTFN_PLACEMENT_WAIT_S", "2")
os.environ.setdefault("FLUENTFN_MAILBOX_LIMIT", "200")
os.environ.setdefault("FLUENTFN_RESOLVE_TIMEOUT_S", "60")
os.environ.setdefault("FLUENTFN_HOST_START_S", "15")

import fluentfn as ff
from fluentfn._ioloop import IoLoop
from fluentfn.state import open_store
from fluentfn.state._store import Store
from fluentfn.testing import local_cluster

from ._redis import free_port, start_redis

# A property test's examples have no time limit and its data no speed check: on a loaded
# machine one example or one draw may take seconds, which says nothing about the property.
settings.register_profile("fluentfn", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fluentfn")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server (append-only file on) for this test session."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("FLUENTFN_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is required (FLUENTFN_REQUIRE_REDIS=1) but not installed")
        pytest.skip("redis-server not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fluentfn-redis-") as tmp:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--appendonly", "yes", "--save", ""]
        proc = start_redis(args, port)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


FAAS_CAP_S = 20.0
"""The FaaS fixture's lifetime cap: long enough that a busy machine (environments start
slowly, nested calls wait for theirs) never hits it by accident; tests of the cap outlast it."""


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[ff.Cluster]:
    """The shared embedded cluster: stateful on SQLite (default), on Redis (param
    ``"redis"``), or the FaaS baseline (param ``"faas"``, warm workers, a ``FAAS_CAP_S`` cap)."""
    kind = getattr(request, "param", None)
    store = request.getfixturevalue("redis_url") if kind == "redis" else None
    mode = "faas" if kind == "faas" else "stateful"
    faas = ff.FaasProfile(cold_start=False, max_duration_s=FAAS_CAP_S) if kind == "faas" else None
    # Two logical GPUs let the placement tests schedule GPUs here; a machine with real
    # GPUs keeps its own count (so CUDA ids are real ones).
    num_gpus = None if shutil.which("nvidia-smi") else 2
    with local_cluster(num_cpus=2, num_gpus=num_gpus, store=store, mode=mode, faas=faas) as c:
        yield c


@pytest.hookimpl(trylast=True)  # after pytest's own grouping of tests by their session fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start Ray nodes of their own (``own_ray``) run first, before the shared
    cluster starts. Beside it and two busy processes, ``test_multinode``'s two nodes took
    262 s to come up and serve where they took 53 s without it (one run each), and in loaded
    CI runs Ray's node start (its raylet waits about 15 s for its Python agent, a wait no
    setting changes) failed on all three tries: the test skipped. Its subject is fluentfn on
    two nodes, not Ray's start."""
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is None)  # stable: the rest keep their order


OPEN: list[Any] = []
"""Engines and partition sets a test made on its ``io`` loop: closed there afterwards."""


class _Driving:
    """The periodic driver of a test's engines, stopped (with ``OPEN``) after the test."""

    def __init__(self, running: Any) -> None:
        self._running = running

    async def close(self) -> None:
        self._running.cancel()


def drive(io: IoLoop, engine: Any) -> None:
    """Run the periodic jobs of ``engine`` with the driver hosts use (``host/_driver.py``):
    write-behind, ownership checks, overdue-turn reports, reply pruning."""
    from fluentfn.host._driver import Driver

    OPEN.append(_Driving(io.submit(Driver(lambda: [engine], "test").run(engine.persistence.store))))


@pytest.fixture
def io() -> Iterator[IoLoop]:
    """A private event loop, for tests of hosts without Ray."""
    loop = IoLoop()
    yield loop
    while OPEN:
        loop.run(OPEN.pop().close())
    loop.loop.call_soon_threadsafe(loop.loop.stop)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A fresh SQLite store file."""
    return open_store(f"sqlite:///{tmp_path}/state.db")
