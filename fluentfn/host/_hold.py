"""A host's hold on new turns while a partition moves out of it or into it.

A move's pause is the drain of the moving partition's running turns, its hand-over (every
identity deactivated, its state written) and the next owner's claim. On a busy host those
threads compete for the GIL with every turn the host starts meanwhile: a turn of 1 ms waits
tens of milliseconds for the GIL while 16 callers keep the host's workers full. While a
move holds the host, the host starts no turn for a call that no turn waits on (a driver's
or a client's call, a tell): such calls wait, in their order of arrival, and go on when
the move's part on this host ends or after ``limit_s``, whichever comes first, so a long
turn of the moving partition never stalls the host's other partitions for longer than
that. A call that a turn waits on (its ``call_chain`` names one) is never held: a running
turn of the moving partition may be waiting on it.

Used from the host's event loop only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .._call import Call

log = logging.getLogger("fluentfn.host")


class MoveHold:
    """Counts the moves holding the host and keeps the calls they hold."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._moves = 0
        self._waiting: list[Callable[[], None]] = []
        self.held = 0  # calls held so far (a counter)

    @property
    def holding(self) -> bool:
        """Whether a move holds the host now."""
        return self._moves > 0

    def holds(self, call: Call) -> bool:
        """Whether ``call`` must wait (then ``defer`` what starts it)."""
        return self._moves > 0 and not call.call_chain

    def defer(self, go: Callable[[], None]) -> None:
        """Run ``go`` when no move holds the host any more."""
        self.held += 1
        self._waiting.append(go)

    async def wait(self) -> None:
        """Return when no move holds the host any more."""
        free: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def go() -> None:
            if not free.done():  # its waiter may have been cancelled
                free.set_result(None)

        self.defer(go)
        await free

    def begin(self) -> Callable[[], None]:
        """A move starts holding the host; call what this returns when its part here ends
        (more than once is harmless). The hold ends by itself after ``limit_s``."""
        if self.limit_s <= 0:
            return lambda: None
        self._moves += 1
        ended = False

        def end() -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            timer.cancel()
            self._moves -= 1
            if self._moves == 0:
                self._release()

        timer = asyncio.get_running_loop().call_later(self.limit_s, end)
        return end

    def _release(self) -> None:
        waiting, self._waiting = self._waiting, []
        for go in waiting:  # in arrival order; one that a new move holds again waits again
            try:
                go()
            except Exception:  # each ``go`` answers its own caller; this is a bug in one
                log.exception("a call held during a move failed to start")
