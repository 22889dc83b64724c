"""A host's event loop ranks ahead of its turn threads: raised where allowed, else the
turns lowered (``fluentfn/_priority.py``), each thread on its own (Linux)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from fluentfn import _priority
from fluentfn._ioloop import IoLoop
from fluentfn._priority import lower_this_thread, process_level, raise_thread, thread_level
from fluentfn.host._workers import Workers

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform != "linux", reason="a thread's own priority is Linux's"),
]


def _in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` on a fresh thread (so a changed priority dies with it)."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(10)
    return out[0]


def _raise_me(steps: int) -> bool:
    return raise_thread(threading.get_native_id(), steps)


def _refuse_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unprivileged process: it may lower a thread, never raise one."""
    real = os.setpriority

    def setpriority(which: int, who: int, prio: int) -> None:
        if prio < os.getpriority(which, who):
            raise PermissionError(13, "Permission denied")
        real(which, who, prio)

    monkeypatch.setattr(_priority.os, "setpriority", setpriority)


def test_an_unprivileged_raise_changes_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_raising(monkeypatch)
    base = process_level()
    assert _in_thread(lambda: (_raise_me(5), thread_level())) == (False, base)
    assert _in_thread(lambda: (_raise_me(0), thread_level())) == (False, base)


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a thread needs root (or CAP_SYS_NICE)")
def test_a_raised_thread_is_ahead_and_a_worker_it_starts_is_level_again() -> None:
    base = process_level()

    def raised() -> tuple[bool, int, int, int]:
        ok = _raise_me(5)
        pool = Workers(2, "t", nice=0)  # its threads start from this raised one
        try:
            return ok, thread_level(), _in_thread(thread_level), pool.submit(thread_level).result(5)
        finally:
            pool.shutdown()

    ok, mine, child, worker = _in_thread(raised)
    assert ok and mine == max(-20, base - 5)
    assert child == mine  # a plain thread started by it inherits the rank (gRPC's threads do)
    assert worker == base  # a turn thread is put back level with the process
    assert thread_level() == base


def test_a_host_loop_is_raised_where_allowed_else_its_turns_are_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``ShardHost`` does, either way: the gap between loop and turns is the setting's."""
    base = process_level()
    io = IoLoop()
    try:
        if os.geteuid() != 0:
            assert not raise_thread(io.native_id, 5)
        elif raise_thread(io.native_id, 5):  # set from this thread: the loop's own is not needed
            assert thread_level(io.native_id) == max(-20, base - 5)
        _refuse_raising(monkeypatch)
        unprivileged = IoLoop()
        try:
            assert not raise_thread(unprivileged.native_id, 5) and thread_level(unprivileged.native_id) == base
            pool = Workers(2, "t", nice=5)
            assert pool.submit(thread_level).result(5) == min(19, base + 5)
            pool.shutdown()
        finally:
            unprivileged.loop.call_soon_threadsafe(unprivileged.loop.stop)
    finally:
        io.loop.call_soon_threadsafe(io.loop.stop)


def test_a_refused_lowering_is_logged_once_and_turns_still_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(which: int, who: int, prio: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(_priority.os, "setpriority", refuse)
    monkeypatch.setattr(_priority, "_refused", False)
    base = process_level()
    pool = Workers(3, "t", nice=5)
    gate = threading.Barrier(3, timeout=5)

    def three_threads() -> int:
        gate.wait()  # three at once: three threads, each refused
        return thread_level()

    with caplog.at_level(logging.WARNING, logger="fluentfn"):
        assert [f.result(5) for f in [pool.submit(three_threads) for _ in range(3)]] == [base] * 3
        lower_this_thread(5)  # and once more, from here: still said once
    assert len([r for r in caplog.records if "setpriority refused" in r.getMessage()]) == 1
    pool.shutdown()
