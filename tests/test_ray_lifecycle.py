"""A call fluentfn's loop makes after ``ff.shutdown`` never starts a Ray of its own.

Ray starts a new local Ray from whatever thread first calls it while not connected, and
that thread keeps the driver's task id for the life of the process. When the loop thread
did that after a shutdown, the next cluster's main thread and loop thread made the same
task ids, and Ray's driver exited the whole process (exit 1, a failed check in its
reference counter). The script below does what a stale loop coroutine did, then runs a
second cluster with submissions from both threads; it runs in its own process, since it
starts and stops Ray itself.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import threading

    import ray
    import fluentfn as ff
    from fluentfn._ioloop import io_loop
    from fluentfn.runtime._raycall import await_directory, unwrap

    @ff.actor(name="LifeT", shards=1)
    class T:
        def add(self, k: int) -> int:
            return k

    try:  # an address not of this machine: refused after the embedded Ray started
        ff.init(num_cpus=1, namespace="lifecycle", bind="203.0.113.7")
    except ff.FluentError as exc:
        print("failed init:", str(exc).split(":")[0], ray.is_initialized())

    with ff.init(num_cpus=1, namespace="lifecycle") as cluster:
        assert ff.ref("LifeT/a").add(1) == 1
        directory = cluster.directory
        kept = directory.pid.remote()  # an ObjectRef that outlives the cluster

    async def stale_submit() -> str:
        try:
            directory.pid.remote()
        except Exception as exc:
            return type(unwrap(exc)).__name__
        return "submitted"

    async def stale_route() -> str:
        try:
            await await_directory(lambda: directory.pid.remote(), patience_s=1.0)
        except ff.FluentError as exc:
            return type(exc).__name__
        return "answered"

    def from_a_thread(out: list) -> None:
        try:
            ray.get_runtime_context().get_node_id()
            out.append("answered")
        except Exception as exc:
            out.append(type(exc).__name__)

    got: list = []
    worker = threading.Thread(target=from_a_thread, args=(got,))
    worker.start()
    worker.join(60)
    print("stale thread:", got[0], ray.is_initialized())
    del kept  # released after the shutdown: Ray ignores it (no exit of the process)

    io = io_loop()
    print("stale submit:", io.run(stale_submit(), timeout=60), ray.is_initialized())
    print("stale route:", io.run(stale_route(), timeout=60), ray.is_initialized())

    with ff.init(num_cpus=1, namespace="lifecycle2") as cluster:
        directory = cluster.directory

        async def from_loop() -> int:
            return len({(await directory.pid.remote()) for _ in range(200)})

        pending = [directory.pid.remote() for _ in range(200)]
        assert io.run(from_loop(), timeout=120) == 1
        assert len(set(ray.get(pending))) == 1
        assert ff.ref("LifeT/b").add(2) == 2
    print("second cluster: ok")
    """
)


@pytest.mark.timeout(300)
def test_a_call_after_shutdown_starts_no_ray_and_the_next_cluster_runs() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=280)
    out = done.stdout
    assert done.returncode == 0, f"rc {done.returncode}\n{out}\n{done.stderr[-3000:]}"
    assert "failed init: cannot listen on 203.0.113.7 False" in out, out  # it stopped its Ray
    assert "stale thread: Unavailable False" in out, out
    assert "stale submit: Unavailable False" in out, out
    assert "stale route: Unavailable False" in out, out
    assert "second cluster: ok" in out, out


def test_a_ray_without_the_hook_is_warned_of_and_still_starts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A future Ray 2.x that moved its start-on-first-use hook: ``ff.init`` warns and goes
    on (Ray may then start itself after a shutdown), it does not fail."""
    import importlib
    import logging
    import types

    from fluentfn.runtime._raycall import forbid_auto_start

    real = importlib.import_module
    monkeypatch.setattr(
        importlib, "import_module", lambda name: types.ModuleType(name) if name.startswith("ray.") else real(name)
    )
    with caplog.at_level(logging.WARNING, logger="fluentfn"):
        forbid_auto_start()
    assert "start-on-first-use hook was not found" in caplog.text
