"""Calls handed from callers' threads to the loop: every one sent once, in each thread's
order, with one wake-up for many; a closed loop fails them, never leaves one waiting."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fluentfn._ioloop import IoLoop
from fluentfn.runtime._stateful import StatefulRuntime

pytestmark = pytest.mark.timeout(60)


def _runtime(loop: Any) -> StatefulRuntime:
    rt = StatefulRuntime.__new__(StatefulRuntime)  # only the hand-off's own parts
    rt._outbox, rt._outbox_lock = [], threading.Lock()
    rt._io = loop
    return rt


def test_posted_calls_are_sent_once_each_in_order() -> None:
    io = IoLoop()
    rt = _runtime(io)
    sent: list[tuple[int, int]] = []
    wakeups = 0
    drain = rt._drain_outbox

    def counted() -> None:
        nonlocal wakeups
        wakeups += 1
        drain()

    rt._drain_outbox = counted  # type: ignore[method-assign]

    def send(call: Any, done: Any) -> None:
        assert threading.get_ident() == io.thread.ident  # on the loop
        sent.append(call)
        done(None, None)

    def poster(t: int) -> None:
        for i in range(2000):
            rt._post(send, (t, i), lambda r, e: None)  # type: ignore[arg-type]

    threads = [threading.Thread(target=poster, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    io.run(asyncio.sleep(0.1))
    assert sorted(sent) == [(t, i) for t in range(4) for i in range(2000)]
    for t in range(4):
        assert [i for (u, i) in sent if u == t] == list(range(2000))
    assert wakeups < len(sent)  # batched


def test_a_send_that_raises_fails_its_caller_and_not_the_others() -> None:
    io = IoLoop()
    rt = _runtime(io)
    outcomes: dict[int, Any] = {}

    def send(call: Any, done: Any) -> None:
        if call == 1:
            raise RuntimeError("broken")
        done("ok", None)

    for n in range(3):
        rt._post(send, n, lambda r, e, n=n: outcomes.__setitem__(n, e or r))  # type: ignore[arg-type,misc]
    io.run(asyncio.sleep(0.1))
    assert outcomes[0] == "ok" and outcomes[2] == "ok"
    assert isinstance(outcomes[1], RuntimeError)


def test_a_closed_loop_raises_to_the_poster_and_keeps_nothing() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    rt = _runtime(type("Io", (), {"loop": loop})())
    for _ in range(2):  # the second is refused too: nothing left behind waits for a wake-up
        with pytest.raises(RuntimeError):
            rt._post(lambda c, d: None, object(), lambda r, e: None)  # type: ignore[arg-type]
    assert rt._outbox == []
