"""Durable reminders: ``ff.context().schedule(...)`` rows in the store, fired by the host.

A reminder is a call to its identity with the request id ``rem:<id>``, so a firing that
is repeated after a crash is deduplicated like any retried call; the row is deleted
once the call has run. A reminder's id is derived from the request id of the turn that
scheduled it, and its row is written at that turn's durability point: a turn rolled back
schedules nothing, a turn run again schedules the same reminder once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .._actordef import ActorDef
from .._router import MAX_LOST
from ..errors import FluentError, InvalidRequest, NotFound
from ..state._store import Reminder, Scheduled, Store
from ..wire import codec
from ._underway import UnderWay

MAX_FIRINGS = MAX_LOST
"""Firings of one occurrence of a reminder that may start: one that was under way when its
host went away this many times is not fired again (it is most likely what ends the host,
and each firing would take the host, and every identity on it, down again, for ever)."""
FIRING_PREFIX = "firing:"
"""KV rows counting the firings of a reminder's occurrence under way (``Reminders.begin``)."""

BOOKKEEPING_PREFIX = "out:"
"""Rows whose id starts so are the platform's own (FaaS mode's outbox), not reminders of
the identity: they share the table, and ``pending`` does not list them."""


@dataclass(frozen=True, slots=True)
class Due:
    """A reminder to fire now: its row, the call it makes, and its period (0: once)."""

    row: Reminder
    method: str
    args: bytes
    period_s: float

    @property
    def request_id(self) -> str:
        """The firing's request id: a repeat of the same firing is deduplicated, and each
        occurrence of a periodic reminder is a call of its own."""
        if not self.period_s:
            return f"rem:{self.row.rid}"
        return f"rem:{self.row.rid}:{round(self.row.due * 1000)}"

    @property
    def firing_key(self) -> str:
        """The KV row counting this occurrence's firings under way (``Reminders.begin``)."""
        return f"{FIRING_PREFIX}{self.row.address}:{self.request_id}"


def _decode(payload: bytes) -> tuple[str, bytes, float]:
    fields = msgpack.unpackb(payload)
    method, args = fields[0], fields[1]
    return method, args, float(fields[2]) if len(fields) > 2 else 0.0


def describe(rem: Reminder) -> dict[str, Any]:
    """A reminder as ``ff.context().reminders()`` lists it."""
    method, _, period = _decode(rem.payload)
    return {"id": rem.rid, "method": method, "due": rem.due, "period_s": period}


class InFlight:
    """Which reminders a firing loop may start: none it is firing, and none whose firing
    ended while its latest read of the store ran. That read may have listed a row that the
    firing deleted (or moved on, if periodic) after the read saw it: fired from the stale
    list, the reminder would fire twice. The loop calls ``reading`` before each read."""

    __slots__ = ("_ended", "_firing")

    def __init__(self) -> None:
        self._firing: set[str] = set()
        self._ended: set[str] = set()  # firings that ended since the latest read began

    def reading(self) -> None:
        """A read of the due rows begins: what ended before now, it sees as it is."""
        self._ended.clear()

    def start(self, rid: str) -> bool:
        """Whether a due row ``rid`` from the latest read may fire now (then it is firing)."""
        if rid in self._firing or rid in self._ended:
            return False
        self._firing.add(rid)
        return True

    def end(self, rid: str) -> None:
        """The firing of ``rid`` ended (its row deleted, moved on, or left due to try again)."""
        self._firing.discard(rid)
        self._ended.add(rid)


class Reminders:
    """The ``Scheduler`` of one host (and of FaaS mode's timer service).

    A reminder scheduled in a turn is part of that turn: ``prepare`` checks it and makes
    its row, and the row is written at the turn's durability point (with the state when
    the turn writes it, ``Persistence.add_reminders`` otherwise) or not at all if the turn
    is rolled back."""

    def __init__(
        self,
        store: Store | None,
        group: str,
        shard: int,
        wake: Callable[[], None],
        definition_of: Callable[[str], ActorDef | None] = lambda _: None,
    ) -> None:
        self._store = store
        self._under_way = UnderWay(store)
        self._group = group
        self._shard = shard
        self._wake = wake
        self._definition_of = definition_of
        # The earliest due time scheduled here and not yet seen due: a hint that lets the
        # host poll the store rarely while nothing is pending (a host serves many partitions).
        self.soonest = math.inf

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
        """The row of a new reminder, not yet written. InvalidRequest unless ``method`` is
        a public method of the identity's type and the arguments bind to it (a firing that
        could never run is refused now, not logged forever)."""
        if self._store is None:
            raise FluentError("reminders need a store")
        type_name = address.split("/", 1)[0]
        definition = self._definition_of(type_name)
        if definition is not None:
            if not isinstance(method, str):
                raise InvalidRequest(f"a reminder's method is a method name, got {type(method).__name__}")
            try:
                info = definition.method(method)
            except NotFound:
                raise InvalidRequest(
                    f"{type_name} has no public method {method!r} to remind (known: {definition.method_names})"
                ) from None
            info.bind(args, kwargs)
        try:
            payload = msgpack.packb([method, codec.encode_args(args, kwargs), period_s])
        except FluentError as exc:
            raise InvalidRequest(f"the arguments of reminder {method!r} cannot be stored: {exc}") from None
        return Scheduled(self._group, self._shard, Reminder(address, rid, time.time() + delay_s, payload))

    def committed(self, rows: Sequence[Scheduled]) -> None:
        """Reminders were written: the firing loop learns of the soonest."""
        if rows:
            self.soonest = min(self.soonest, *(item.row.due for item in rows))
            self._wake()

    def cancel(self, address: str, reminder_id: str) -> bool:
        if self._store is None:
            return False
        return self._store.cancel_reminder(address, reminder_id)

    def pending(self, address: str, unwritten: Sequence[Scheduled] = ()) -> list[dict[str, Any]]:
        rows = self._store.reminders_of(address) if self._store is not None else []
        rows = [row for row in rows if not row.rid.startswith(BOOKKEEPING_PREFIX)]
        rows += [item.row for item in unwritten]
        return [describe(rem) for rem in sorted(rows, key=lambda r: r.due)]

    def due(self, limit: int = 100, lookahead_s: float = 2.0) -> list[Due]:
        """Reminders due now; ``soonest`` becomes the first due within ``lookahead_s``
        after them, as the store says (one query: a heartbeat's next beat, scheduled while
        this one fired, is found here rather than at the next idle poll)."""
        if self._store is None:
            return []
        out = []
        now = time.time()
        soonest = math.inf
        for rem in self._store.due_reminders(self._group, self._shard, now + lookahead_s, limit):
            if rem.due > now:
                soonest = min(soonest, rem.due)
                continue
            method, args, period = _decode(rem.payload)
            out.append(Due(rem, method, args, period))
        self.soonest = soonest  # one scheduled meanwhile also wakes the loop, which asks again
        return out

    def begin(self, due: Due) -> int:
        """A firing of ``due`` starts: counted in the store, since the count must outlive a
        host that dies during it; how many have started, this one included."""
        return self._under_way.begin(due.firing_key)

    def ended(self, due: Due, fired: bool) -> None:
        """A firing of ``due`` ended with its host alive: its count goes (a crash between
        the two fires it again, answered from its record), then, if ``fired``, ``fired``."""
        self._under_way.ended(due.firing_key)
        if fired:
            self.fired(due)

    def fired(self, due: Due) -> None:
        """``due`` ran: a one-shot reminder is removed, a periodic one moves to its next time
        (unless it was cancelled meanwhile)."""
        if self._store is None:
            return
        rem = due.row
        if not due.period_s:
            self._store.cancel_reminder(rem.address, rem.rid)
            return
        next_due = max(rem.due + due.period_s, time.time())
        self.soonest = min(self.soonest, next_due)
        self._store.reschedule_reminder(self._group, self._shard, rem.address, rem.rid, next_due)
