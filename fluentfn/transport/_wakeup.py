"""``Wakeup``: an auto-reset ``asyncio.Event`` for one waiting task, at a fraction of the cost.

A stream's writer sleeps until a message is queued, and is woken once per message (or
per burst): ``asyncio.Event`` makes a future, a deque entry and a loop lookup for each
wait and scans its waiters on each set. Loop thread only, like the event.
"""

from __future__ import annotations

import asyncio


class Wakeup:
    """``set()`` wakes the one task in ``wait()``, or the next one to call it; each
    ``wait()`` consumes the wake-up (as ``Event.wait()`` then ``clear()``)."""

    __slots__ = ("_fut", "_pending")

    def __init__(self) -> None:
        self._fut: asyncio.Future[None] | None = None
        self._pending = False

    def set(self) -> None:
        fut = self._fut
        if fut is None:
            self._pending = True
            return
        self._fut = None
        if not fut.done():
            fut.set_result(None)

    async def wait(self) -> None:
        if self._pending:
            self._pending = False
            return
        fut = self._fut = asyncio.get_running_loop().create_future()
        try:
            await fut
        finally:
            if self._fut is fut:  # cancelled: no wake-up owed to it
                self._fut = None
