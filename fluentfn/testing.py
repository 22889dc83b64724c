"""Helpers for testing fluentfn applications (and fluentfn itself)."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._ref import ActorRef
from .runtime._cluster import Cluster, init


@contextlib.contextmanager
def local_cluster(*, home: str | None = None, **init_kwargs: Any) -> Iterator[Cluster]:
    """An embedded cluster with its own FLUENTFN_HOME (a temporary one by default)."""
    with contextlib.ExitStack() as stack:
        if home is None:
            home = stack.enter_context(tempfile.TemporaryDirectory(prefix="fluentfn-test-"))
        old = os.environ.get("FLUENTFN_HOME")
        os.environ["FLUENTFN_HOME"] = home
        try:
            cluster = init(**init_kwargs)
            try:
                yield cluster
            finally:
                cluster.shutdown()
        finally:
            if old is None:
                os.environ.pop("FLUENTFN_HOME", None)
            else:
                os.environ["FLUENTFN_HOME"] = old


@contextlib.contextmanager
def sim(seed: int = 0, **options: Any) -> Iterator[Any]:
    """A simulated cluster for a test (sim mode: every identity in this process, virtual
    time, every choice from ``seed``), shut down afterwards. As a pytest fixture::

        @pytest.fixture
        def cluster():
            with fluentfn.testing.sim(seed=1) as s:
                yield s

    (the ``ff_sim`` fixture of fluentfn's pytest plugin is exactly that, with seed 0 or
    ``@pytest.mark.ff_seed(N)``)."""
    from .sim import start

    simulation = start(seed, stack=True, **options)  # beside a real cluster of this process, if one is open
    try:
        yield simulation
    finally:
        simulation.shutdown()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def _host_info(handle: Any, timeout: float = 60.0) -> dict[str, Any]:
    """A host's info; waits while Ray restarts the host (it is briefly unavailable)."""
    import ray
    import ray.exceptions

    deadline = time.monotonic() + timeout
    while True:
        try:
            return dict(ray.get(handle.info.remote(), timeout=max(0.1, deadline - time.monotonic())))
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def hosts(cluster: Cluster) -> list[dict[str, Any]]:
    """Info on every host of the cluster: endpoint, pid, node, GPUs, live identities."""
    import ray

    entries = ray.get(cluster.directory.hosts.remote())
    return [_host_info(h) for _, _, h in entries]


def host_of(cluster: Cluster, ref: ActorRef) -> dict[str, Any]:
    """Info on the host that owns ``ref``'s shard now (waiting out a restart)."""
    import ray

    from .placement import shard_for

    info = ray.get(cluster.directory.lookup.remote(ref.type_name))
    partition = shard_for(ref.key, info.shards)
    placed = ray.get(cluster.directory.placement.remote(ref.type_name))
    for group, hid, handle in ray.get(cluster.directory.hosts.remote()):
        if group == info.group and partition in placed.get(hid, ()):
            return _host_info(handle)
    raise LookupError(f"no host for {ref.address}")


def kill_host(cluster: Cluster, ref: ActorRef) -> int:
    """SIGKILL the process hosting ``ref`` (Ray restarts it); returns the killed pid."""
    pid = int(host_of(cluster, ref)["pid"])
    os.kill(pid, signal.SIGKILL)
    return pid
