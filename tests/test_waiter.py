"""``Waiter``: a blocked thread's reply, woken after the loop's current pass."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fluentfn._call import Call, Outcome
from fluentfn._ioloop import IoLoop
from fluentfn.errors import Unavailable
from fluentfn.transport._client import Waiter

pytestmark = pytest.mark.timeout(60)


def _call() -> Call:
    return Call(type_name="T", key="k", method="m", request_id="r", deadline=time.time() + 30)


def test_the_thread_is_woken_after_the_pass_that_settled_it() -> None:
    io = IoLoop()
    try:
        waiter = Waiter()
        seen: list[bool] = []

        async def settle() -> None:
            waiter(Outcome(b"\xc0"), None)
            seen.append(waiter._lock.locked())  # still held: released by the loop's next pass
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            seen.append(waiter._lock.locked())

        io.run(settle())
        assert seen == [True, False]
        reply = waiter.reply_for(_call())
        assert reply is not None and reply.value == b"\xc0"
    finally:
        io.loop.call_soon_threadsafe(io.loop.stop)


def test_a_blocked_thread_gets_the_first_outcome_only() -> None:
    io = IoLoop()
    try:
        waiter = Waiter()
        got: list[object] = []
        thread = threading.Thread(target=lambda: got.append(waiter.reply_for(_call())))
        thread.start()

        def settle_twice() -> None:
            waiter(Outcome(b"\x01"), None)
            waiter(None, Unavailable("too late"))  # the first outcome wins

        io.loop.call_soon_threadsafe(settle_twice)
        thread.join(30)
        assert not thread.is_alive()
        assert len(got) == 1 and isinstance(got[0], Outcome) and got[0].value == b"\x01"
    finally:
        io.loop.call_soon_threadsafe(io.loop.stop)


def test_off_a_loop_the_thread_is_woken_at_once() -> None:
    waiter = Waiter()
    waiter(None, Unavailable("the stream broke"))
    assert not waiter._lock.locked()
    with pytest.raises(Unavailable, match="stream broke"):
        waiter.reply_for(_call())


@pytest.mark.parametrize("uvloop", ["1", "0"])
def test_a_reply_settled_in_a_stopping_loops_last_pass_still_wakes_the_thread(
    monkeypatch: pytest.MonkeyPatch, uvloop: str
) -> None:
    """(asyncio's own loop leaves what a stopping pass scheduled for its next run: the
    IoLoop runs it before its thread ends.)"""
    monkeypatch.setenv("FLUENTFN_UVLOOP", uvloop)
    io = IoLoop()
    waiter = Waiter()

    def settle_and_stop() -> None:
        io.loop.stop()  # the loop ends after this pass
        waiter(Outcome(b"\x02"), None)

    io.loop.call_soon_threadsafe(settle_and_stop)
    reply = waiter.reply_for(_call())
    assert reply is not None and reply.value == b"\x02"
    io.thread.join(30)
