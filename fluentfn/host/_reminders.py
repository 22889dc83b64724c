"""Durable reminders: ``ff.context().schedule(...)`` rows in the store, fired by the host.

A reminder is a call to its identity with the request id ``rem:<id>``, so a firing that
is repeated after a crash is deduplicated like any retried call; the row is deleted
once the call has run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import FluentError
from ..state._store import Reminder, Store
from ..wire import codec


class Reminders:
    """The ``Scheduler`` of one host."""

    def __init__(self, store: Store | None, group: str, shard: int, wake: Callable[[], None]) -> None:
        self._store = store
        self._group = group
        self._shard = shard
        self._wake = wake

    def schedule(self, address: str, delay_s: float, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self._store is None:
            raise FluentError("reminders need a store")
        rid = os.urandom(8).hex()
        payload = msgpack.packb([method, codec.encode_args(args, kwargs)])
        self._store.add_reminder(self._group, self._shard, Reminder(address, rid, time.time() + delay_s, payload))
        self._wake()
        return rid

    def cancel(self, address: str, reminder_id: str) -> bool:
        if self._store is None:
            return False
        return self._store.cancel_reminder(address, reminder_id)

    def due(self, limit: int = 100) -> list[tuple[Reminder, str, bytes]]:
        """Due reminders as (row, method, encoded args)."""
        if self._store is None:
            return []
        out = []
        for rem in self._store.due_reminders(self._group, self._shard, time.time(), limit):
            method, args = msgpack.unpackb(rem.payload)
            out.append((rem, method, args))
        return out
