"""``ff.context()``: who and where the running actor or function is."""

from __future__ import annotations

import contextvars
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, final

from ._call import new_request_id
from .errors import FluentError, InvalidRequest

if TYPE_CHECKING:
    from ._tracing import TurnTimes
    from .state._store import Scheduled

MAX_DELAY_S = 10 * 365 * 86_400.0
"""Longest delay or period a reminder may have (ten years)."""


class Timers(Protocol):
    """In-memory timers of a host's identities."""

    def arm(self, address: str, delay_s: float, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Tell ``address`` ``method(*args, **kwargs)`` after ``delay_s``, if it is still
        the same activation then. InvalidRequest if the call could never run."""
        ...


class Scheduler(Protocol):
    """Durable reminders for one identity (provided by the host)."""

    def prepare(
        self,
        address: str,
        rid: str,
        delay_s: float,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        period_s: float = 0.0,
    ) -> Scheduled:
        """A checked reminder row, written later at the turn's durability point."""
        ...

    def cancel(self, address: str, reminder_id: str) -> bool: ...

    def pending(self, address: str, unwritten: Sequence[Scheduled] = ()) -> list[dict[str, Any]]:
        """``address``'s pending reminders, with those its running turn scheduled."""
        ...


@dataclass(slots=True)
class Context:
    """Where the current turn runs. Outside any actor or function, ``address`` is None."""

    address: str | None = None
    key: str | None = None
    type_name: str | None = None
    node_id: str = ""
    gpu_ids: tuple[int, ...] = ()
    mode: str = "stateful"
    chain: tuple[str, ...] = ()
    chain_id: str = ""
    deadline: float = 0.0
    request_id: str = ""
    replay: bool = False  # this turn may have run before: its calls may have too
    _calls: int = field(default=0, init=False, repr=False, compare=False)  # calls made so far
    _scheduler: Scheduler | None = field(default=None, repr=False, compare=False)
    # In-memory timers (``after``): armed by the host, gone with the activation.
    _timers: Timers | None = field(default=None, repr=False, compare=False)
    # Reminders this turn scheduled: written at its durability point, dropped if it is rolled back.
    _scheduled: list[Scheduled] = field(default_factory=list, init=False, repr=False, compare=False)
    # The turn's phase timings and, while tracing, its span.
    _times: TurnTimes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of_turn(
        cls,
        address: str,
        key: str,
        type_name: str,
        node_id: str,
        gpu_ids: tuple[int, ...],
        mode: str,
        chain: tuple[str, ...],
        chain_id: str,
        deadline: float,
        request_id: str,
        replay: bool,
        scheduler: Scheduler | None,
        timers: Timers | None,
        times: TurnTimes | None,
        /,
    ) -> Context:
        """``Context(...)`` with every field given, for a host's turn (once per turn): about
        a quarter of the dataclass's ``__init__``, which matches keywords and fills
        defaults. ``tests/test_context.py`` holds the two to the same fields."""
        ctx: Context = object.__new__(cls)
        ctx.address = address
        ctx.key = key
        ctx.type_name = type_name
        ctx.node_id = node_id
        ctx.gpu_ids = gpu_ids
        ctx.mode = mode
        ctx.chain = chain
        ctx.chain_id = chain_id
        ctx.deadline = deadline
        ctx.request_id = request_id
        ctx.replay = replay
        ctx._calls = 0
        ctx._scheduler = scheduler
        ctx._timers = timers
        ctx._scheduled = []
        ctx._times = times
        return ctx

    @property
    def trace_id(self) -> str:
        """The id of this turn's trace (32 hex digits) while tracing is on; "" otherwise."""
        span = self._times.span if self._times is not None else None
        return f"{span.get_span_context().trace_id:032x}" if span is not None else ""

    def take_scheduled(self) -> list[Scheduled]:
        """The reminders this turn scheduled, for its durability point (once)."""
        out, self._scheduled = self._scheduled, []
        return out

    def _reminder_id(self) -> str:
        """The id of the next reminder this turn schedules: derived from the turn's request
        id, so a turn run again (a retry, a move) schedules the same reminder, once."""
        if not self.request_id:
            return os.urandom(8).hex()
        seed = f"{self.request_id}#r{len(self._scheduled)}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(seed, digest_size=8).hexdigest()

    def _add(self, delay_s: float, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], period_s: float) -> str:
        assert self._scheduler is not None and self.address is not None
        rid = self._reminder_id()
        self._scheduled.append(self._scheduler.prepare(self.address, rid, delay_s, method, args, kwargs, period_s))
        return rid

    def next_request_id(self) -> str | None:
        """A request id for the next call this turn makes: derived from the turn's own,
        so a retried turn re-sends its calls with the same ids (and they are deduplicated).

        A hash of the parent id and the call's index: 24 characters however long the
        chain of turns that led here (a tell ring of a million hops included)."""
        if not self.request_id:
            return None
        n = self._calls
        self._calls = n + 1
        seed = f"{self.request_id}.{n}".encode("utf-8", "surrogatepass")
        return "d" + hashlib.blake2b(seed, digest_size=12).hexdigest()

    def schedule(self, delay_s: float, method: str, *args: Any, **kwargs: Any) -> str:
        """Call ``method(*args, **kwargs)`` on this identity after ``delay_s``; durable. Returns an id."""
        if self._scheduler is None or self.address is None:
            raise FluentError("reminders can be scheduled only from inside an actor")
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or not 0 <= delay_s < MAX_DELAY_S:
            raise InvalidRequest(f"delay_s must be a number of seconds in [0, {MAX_DELAY_S:g})")
        return self._add(float(delay_s), method, args, kwargs, 0.0)

    def after(self, delay_s: float, method: str, *args: Any, **kwargs: Any) -> None:
        """Call ``method(*args, **kwargs)`` on this identity after ``delay_s`` (as a tell),
        in memory only: nothing is written, and the timer is gone if the identity is
        passivated, moves or its host dies (for heartbeats and anti-entropy; use
        ``schedule`` for what must happen). Stateful mode only: a FaaS function keeps
        nothing in memory between invocations."""
        if self.address is None:
            raise FluentError("timers can be set only from inside an actor")
        if self._timers is None:
            raise FluentError("in-memory timers need a live identity: use schedule() in FaaS mode")
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or not 0 <= delay_s < MAX_DELAY_S:
            raise InvalidRequest(f"delay_s must be a number of seconds in [0, {MAX_DELAY_S:g})")
        self._timers.arm(self.address, float(delay_s), method, args, kwargs)

    def every(self, period_s: float, method: str, *args: Any, **kwargs: Any) -> str:
        """Call ``method(*args, **kwargs)`` on this identity every ``period_s`` seconds, the
        first time one period from now; durable (it survives restarts) until cancelled.
        Returns an id for ``cancel``. A firing that is late is not repeated to catch up."""
        if self._scheduler is None or self.address is None:
            raise FluentError("reminders can be scheduled only from inside an actor")
        if isinstance(period_s, bool) or not isinstance(period_s, int | float) or not 0.01 <= period_s < MAX_DELAY_S:
            raise InvalidRequest(f"period_s must be a number of seconds in [0.01, {MAX_DELAY_S:g})")
        return self._add(float(period_s), method, args, kwargs, float(period_s))

    def reminders(self) -> list[dict[str, Any]]:
        """This identity's pending reminders: ``{"id", "method", "due", "period_s"}``,
        soonest first (``due`` in epoch seconds; ``period_s`` 0 for one-shot ones)."""
        if self._scheduler is None or self.address is None:
            raise FluentError("reminders can be listed only from inside an actor")
        return self._scheduler.pending(self.address, self._scheduled)

    def cancel(self, reminder_id: str) -> bool:
        """Cancel a reminder of this identity; True if it was still pending."""
        if self._scheduler is None or self.address is None:
            raise FluentError("reminders can be cancelled only from inside an actor")
        for item in self._scheduled:
            if item.row.rid == reminder_id:  # scheduled by this very turn: never written
                self._scheduled.remove(item)
                return True
        return self._scheduler.cancel(self.address, reminder_id)


@final
class LazyContext:
    """A turn's context, made on first use (``ff.context()``, a call the turn makes) by
    ``make(subject, call)``, once: most turns of a bulk batch never ask, and never pay for
    one. One per turn, so work the turn hands on (contextvars copied into a thread or a
    task) keeps this turn's context, whenever it asks. Its turns are untimed: what it makes
    carries no phase timings."""

    __slots__ = ("_call", "_make", "_subject", "made")

    def __init__(self, make: Callable[[Any, Any], Context], subject: Any, call: Any) -> None:
        self._make = make
        self._subject = subject  # the turn's identity (the host's ``Activation``)
        self._call = call  # and what its call is made from
        self.made: Context | None = None  # its context, once asked for

    def context(self) -> Context:
        """The turn's context (made now if it was not yet: once, even if a thread the turn
        started asks at the same moment, so that the turn's calls count from one context)."""
        made = self.made
        if made is None:
            with _MAKING:
                made = self.made
                if made is None:
                    made = self.made = self._make(self._subject, self._call)
        return made


_MAKING = threading.Lock()  # a lazy context is made once (held only while one is made)


CURRENT: contextvars.ContextVar[Context | LazyContext | None] = contextvars.ContextVar("fluentfn_context", default=None)
"""The running turn's context, or what makes it on demand: read through ``current``."""


def current() -> Context | None:
    """The context of the turn running in this thread or task (None outside any)."""
    ctx = CURRENT.get()
    return ctx.context() if type(ctx) is LazyContext else ctx


def request_id_here() -> str:
    """The request id of a call made now: derived from the running turn's (the same in
    every attempt of it, so its repeats are deduplicated), or a fresh one outside turns."""
    ctx = current()
    return (ctx.next_request_id() if ctx is not None else None) or new_request_id()


_outside = Context()


def context() -> Context:
    """The context of the running actor turn or function (an empty one outside)."""
    return current() or _outside
