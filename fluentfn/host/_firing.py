"""A host engine's reminders: the loop that fires due ones as turns of their identities.

A firing is a call with ``attempt=1`` (a reminder may have fired before a crash: its turn
is answered from its record then) and the default deadline, so a hung reminder turn is
reported overdue like any other. A transient failure leaves it due (tried again); any
other outcome marks it fired. A firing that was under way when its host went away
``MAX_FIRINGS`` times is not fired again (``Reminders.begin`` counts them in the store).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from .._call import Call
from .._config import DEFAULT_CALL_TIMEOUT_S
from .._ioloop import spawn
from ..errors import TRANSIENT_CODES
from ..state._store import Store
from ._ports import UpkeepPort
from ._reminders import MAX_FIRINGS, Due, InFlight, Reminders

log = logging.getLogger("fluentfn.host")
_IDLE_POLL_S = 2.0  # with no reminder known to be due soon: how often the store is asked anyway


class Firing:
    """Fires one engine's due reminders (``run`` is its loop, on the engine's loop)."""

    def __init__(self, engine: UpkeepPort, store: Store | None, tasks: set[asyncio.Task[Any]]) -> None:
        self._engine = engine
        self._wakeup = asyncio.Event()
        self._firing = InFlight()
        self._tasks = tasks
        self.closed = False
        self.reminders = Reminders(store, engine.group, engine.shard, self.wake, engine.types.get)

    def wake(self) -> None:
        """Look at the store again now (a turn wrote a reminder; callable from any thread)."""
        e = self._engine
        if threading.get_ident() == e.loop_thread:
            self._wakeup.set()
        else:
            e.loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        e = self._engine
        delay = 0.0  # poll at once on start: reminders may be pending from a previous owner
        while not self.closed:
            if delay:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), delay)
                except TimeoutError:
                    pass
            self._wakeup.clear()
            delay = _IDLE_POLL_S
            if e.persistence.fenced or e.persistence.store is None:
                continue
            self._firing.reading()
            try:
                due = await e.loop.run_in_executor(e.workers, self.reminders.due)
            except Exception as exc:
                log.warning("host %s/%s: reminders not read: %s: %s", e.group, e.shard, type(exc).__name__, exc)
                continue
            for item in due:
                if self._firing.start(item.row.rid):
                    spawn(self._fire(item), self._tasks)
            # Due ones come back until fired (each fired one wakes this loop: the next may be
            # due soon, a heartbeat's say); otherwise sleep until the soonest one known.
            delay = 0.25 if due else max(0.01, min(_IDLE_POLL_S, self.reminders.soonest - time.time()))

    async def _fire(self, due: Due) -> None:
        e = self._engine
        type_name, key = due.row.address.split("/", 1)
        call = Call(  # attempt=1: a reminder may have fired before a crash
            type_name=type_name,
            key=key,
            method=due.method,
            args=due.args,
            request_id=due.request_id,
            chain_id=due.request_id,
            attempt=1,
            deadline=time.time() + DEFAULT_CALL_TIMEOUT_S,  # a hung reminder turn is reported overdue
        )
        try:
            tries = await e.loop.run_in_executor(e.workers, self.reminders.begin, due)
            if tries > MAX_FIRINGS:
                e.counters["reminder_failures"] += 1
                log.error(
                    "reminder %s of %s (%s) was under way when its host went away %d times: not fired again "
                    "(it may be what ends the host); %s",
                    due.row.rid, due.row.address, due.method, tries - 1,
                    "its next occurrence is due as scheduled" if due.period_s else "it is dropped",
                )  # fmt: skip
                await e.loop.run_in_executor(e.workers, self.reminders.ended, due, True)
                return
            try:
                reply = await e.dispatch(call, local=True)
            except Exception:  # (a bug: logged by the task) not a death of the host
                await e.loop.run_in_executor(e.workers, self.reminders.ended, due, False)
                raise
            retry = reply is not None and reply.error is not None and reply.error.code in TRANSIENT_CODES
            if reply is not None and reply.error is not None:
                e.counters["reminder_failures"] += 1
                log.warning(
                    "reminder %s of %s (%s) failed%s: %s",
                    due.row.rid,
                    due.row.address,
                    due.method,
                    "; it is tried again" if retry else "",
                    reply.error.message,
                )
            await e.loop.run_in_executor(e.workers, self.reminders.ended, due, not retry)
        finally:
            self._firing.end(due.row.rid)
            self._wakeup.set()
