"""The sync-turn thread pool: bounded, and never starved by stuck turns."""

from __future__ import annotations

import sys
import threading

import pytest

from fluentfn._priority import process_level, thread_level
from fluentfn.host._workers import Workers

pytestmark = pytest.mark.timeout(60)


def test_runs_work_and_returns_results() -> None:
    pool = Workers(4, "t")
    assert [f.result(5) for f in [pool.submit(pow, 2, i) for i in range(20)]] == [2**i for i in range(20)]
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)
    pool.shutdown()


def test_limit_bounds_concurrency_until_a_turn_is_reported_stuck() -> None:
    pool = Workers(2, "t")
    release = threading.Event()
    running = threading.Semaphore(0)

    def block() -> None:
        running.release()
        release.wait(10)

    stuck = [pool.submit(block) for _ in range(2)]
    assert running.acquire(timeout=5) and running.acquire(timeout=5)
    queued = pool.submit(lambda: "ran")
    assert not running.acquire(timeout=0.2) and not queued.done()  # both threads are taken
    pool.stuck()  # one of the running turns is overdue: a third thread may run
    assert queued.result(5) == "ran"
    release.set()
    for f in stuck:
        f.result(5)
    pool.unstuck()
    assert pool.submit(lambda: 7).result(5) == 7
    pool.shutdown()


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own priority is Linux's")
def test_worker_threads_run_their_steps_below_the_process_and_no_further() -> None:
    base = process_level()
    pool = Workers(4, "t", nice=5)
    inner: list[int] = []

    def outer() -> int:
        # Submitted from a worker whose thread is busy: a new thread starts, made by this
        # lowered one (it inherits this level): it must not end up lowered twice.
        inner.append(pool.submit(thread_level).result(5))
        return thread_level()

    assert pool.submit(outer).result(5) == min(19, base + 5)
    assert inner == [min(19, base + 5)]
    assert thread_level() == base  # the calling thread is left as it was
    level = Workers(2, "t", nice=0)
    assert level.submit(thread_level).result(5) == base
    pool.shutdown()
    level.shutdown()
