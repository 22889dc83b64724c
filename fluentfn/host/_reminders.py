"""Durable reminders: ``ff.context().schedule(...)`` rows in the store, fired by the host.

A reminder is a call to its identity with the request id ``rem:<id>``, so a firing that
is repeated after a crash is deduplicated like any retried call; the row is deleted
once the call has run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import FluentError
from ..state._store import Reminder, Store
from ..wire import codec


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


def _decode(payload: bytes) -> tuple[str, bytes, float]:
    fields = msgpack.unpackb(payload)
    method, args = fields[0], fields[1]
    return method, args, float(fields[2]) if len(fields) > 2 else 0.0


class Reminders:
    """The ``Scheduler`` of one host (and of FaaS mode's timer service)."""

    def __init__(self, store: Store | None, group: str, shard: int, wake: Callable[[], None]) -> None:
        self._store = store
        self._group = group
        self._shard = shard
        self._wake = wake
        # The earliest due time scheduled here and not yet seen due: a hint that lets the
        # host poll the store rarely while nothing is pending (a host serves many partitions).
        self.soonest = math.inf

    def schedule(
        self,
        address: str,
        delay_s: float,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        period_s: float = 0.0,
    ) -> str:
        if self._store is None:
            raise FluentError("reminders need a store")
        rid = os.urandom(8).hex()
        payload = msgpack.packb([method, codec.encode_args(args, kwargs), period_s])
        due = time.time() + delay_s
        self._store.add_reminder(self._group, self._shard, Reminder(address, rid, due, payload))
        self.soonest = min(self.soonest, due)
        self._wake()
        return rid

    def cancel(self, address: str, reminder_id: str) -> bool:
        if self._store is None:
            return False
        return self._store.cancel_reminder(address, reminder_id)

    def pending(self, address: str) -> list[dict[str, Any]]:
        if self._store is None:
            return []
        out = []
        for rem in self._store.reminders_of(address):
            method, _, period = _decode(rem.payload)
            out.append({"id": rem.rid, "method": method, "due": rem.due, "period_s": period})
        return out

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
