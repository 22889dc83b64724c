"""Virtual time: an asyncio event loop whose clock moves only when nothing is ready to run
(then straight to the next timer), and the ``time`` functions actor code sees while the
simulation runs.

The loop does no I/O: where a real loop would wait in ``select`` for ``timeout`` seconds,
this one moves its clock ``timeout`` ahead and returns at once; with nothing ready and no
timer left it raises ``SimIdle`` (the simulation would wait forever). While it runs,
``time.time``, ``time.monotonic``, ``time.perf_counter`` (and their ``_ns`` forms) and
``time.sleep`` are the virtual clock's: code that imported them by name before (``from
time import time``) keeps the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

EPOCH = 1_750_000_000.0  # what time.time() says at virtual time 0 (a fixed date: runs repeat)


class SimIdle(RuntimeError):
    """Nothing is ready to run and no timer is set: what was awaited will never come."""


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0  # seconds since the simulation began

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self.now += seconds


class _NoIO:
    """The selector of a loop without I/O: waiting is moving the clock, to the next of the
    loop's own timers or of the simulation's events (``SimLoop.schedule``), whichever
    comes first; the events due then run here."""

    def __init__(self, clock: VirtualClock, events: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]]):
        self._clock = clock
        self._events = events

    def select(self, timeout: float | None) -> list[Any]:
        events, clock = self._events, self._clock
        if events and (timeout is None or events[0][0] <= clock.now + timeout):
            when = events[0][0]
            clock.advance(when - clock.now)
            while events and events[0][0] <= when:  # everything due at that instant, in order
                _, _, fn, args = heapq.heappop(events)
                fn(*args)
            return []
        if timeout is None:
            raise SimIdle("the simulation has nothing left to run and nothing scheduled")
        clock.advance(timeout)
        return []

    def close(self) -> None:
        return None


class SimLoop(asyncio.BaseEventLoop):
    """An event loop on a ``VirtualClock`` (one thread, no sockets, no self-pipe)."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock
        self.events: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.driving = False  # inside step()
        self._selector = _NoIO(clock, self.events)  # what BaseEventLoop._run_once waits on

    def schedule(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``when`` (the simulation's events: cheaper than
        a timer handle, and not cancellable; ties run in the order they were scheduled)."""
        self._seq += 1
        heapq.heappush(self.events, (when, self._seq, fn, args))

    def time(self) -> float:
        return self.clock.now

    def _process_events(self, event_list: list[Any]) -> None:
        return None

    def _write_to_self(self) -> None:
        return None  # no other thread wakes this loop

    def next_event(self) -> float | None:
        """When the next thing happens: now when something is ready, else the soonest
        timer's time; None when nothing is left."""
        if self._ready:  # type: ignore[attr-defined]
            return self.clock.now
        timers = self._scheduled  # type: ignore[attr-defined]
        while timers and timers[0].cancelled():
            handle = heapq.heappop(timers)
            handle._scheduled = False
            self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
        soonest = [float(timers[0].when())] if timers else []
        if self.events:
            soonest.append(self.events[0][0])
        return min(soonest) if soonest else None

    def step(self) -> None:
        """One round of the loop (what ``run_forever`` repeats): run what is ready, or move
        the clock to the next timer or event and run what is due then. The simulation's
        own events, when they come first and nothing is ready, run without the loop's
        round (the common case: a message arriving)."""
        if not self.driving:
            with self.stepping():
                self.step()
            return
        timers = self._scheduled  # type: ignore[attr-defined]
        if not self._ready and self.events and (not timers or self.events[0][0] <= timers[0].when()):  # type: ignore[attr-defined]
            self._selector.select(None)
        else:
            self._run_once()  # type: ignore[attr-defined]

    def stepping(self) -> contextlib.AbstractContextManager[None]:
        """This loop is the thread's running loop while ``step`` is called in here."""
        return self._as(self, driving=True)

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """Driver code between steps (a ``run_until`` predicate): it may block again."""
        return self._as(None, driving=False)

    @contextlib.contextmanager
    def _as(self, running: asyncio.AbstractEventLoop | None, *, driving: bool) -> Iterator[None]:
        was_running, was_driving = asyncio.events._get_running_loop(), self.driving
        asyncio.events._set_running_loop(running)
        self.driving = driving
        try:
            yield
        finally:
            self.driving = was_driving
            asyncio.events._set_running_loop(was_running)

    def busy(self) -> bool:
        """Whether code is running on this loop now (a blocking wait here would stall it)."""
        return self.driving or self.is_running()


_REAL: dict[str, Callable[..., Any]] = {
    name: getattr(time, name)
    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "sleep")
}


def _virtual(clock: VirtualClock, sleep: Callable[[float], None], owner: int) -> dict[str, Callable[..., Any]]:
    """The virtual clock's functions for the thread ``owner``; other threads keep the real
    ones (a real cluster's threads, a library's own) and are not slowed."""
    get_ident = threading.get_ident
    r = _REAL

    def of(virtual: Callable[..., Any], real: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *a: virtual(*a) if get_ident() == owner else real(*a)

    return {
        "time": of(lambda: EPOCH + clock.now, r["time"]),
        "time_ns": of(lambda: int((EPOCH + clock.now) * 1e9), r["time_ns"]),
        "monotonic": of(lambda: clock.now, r["monotonic"]),
        "monotonic_ns": of(lambda: int(clock.now * 1e9), r["monotonic_ns"]),
        "perf_counter": of(lambda: clock.now, r["perf_counter"]),
        "perf_counter_ns": of(lambda: int(clock.now * 1e9), r["perf_counter_ns"]),
        "sleep": of(sleep, r["sleep"]),
    }


@contextlib.contextmanager
def virtual_time(clock: VirtualClock, sleep: Callable[[float], None]) -> Iterator[None]:
    """The ``time`` module's clocks are ``clock``'s (and ``sleep`` is ``sleep``) inside, for
    this thread (the simulation's)."""
    previous = {name: getattr(time, name) for name in _REAL}
    for name, fn in _virtual(clock, sleep, threading.get_ident()).items():
        setattr(time, name, fn)
    try:
        yield
    finally:
        for name, fn in previous.items():
            setattr(time, name, fn)


def real_monotonic() -> float:
    """The machine's own monotonic clock (for wall-clock figures about a simulation)."""
    return float(_REAL["monotonic"]())
