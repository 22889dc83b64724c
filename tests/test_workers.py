"""The sync-turn thread pool: bounded, and never starved by stuck turns."""

from __future__ import annotations

import threading

import pytest

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
