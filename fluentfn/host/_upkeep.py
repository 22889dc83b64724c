"""A host engine's background work: passivation (its own loop, woken early when the
live-identity cap is passed), write-behind, hand-over at a move and overdue-turn reports
(run each round by the host's one periodic driver, ``_driver.py``) and reminders
(``_firing.py``). A failed round is logged and the work goes on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from .._actordef import ActorDef
from .._context import CURRENT, Context
from .._ioloop import spawn
from ..errors import FluentError
from ..state._store import Store, WouldBlock
from ._activations import Activation, Handoff, Memory
from ._firing import Firing
from ._policy import Arrive, Passivate
from ._ports import UpkeepPort
from ._turn import snapshot as encode_snapshot

log = logging.getLogger("fluentfn.host")

LOOP_HAND_OVER_MAX = 256
"""Live identities a hand-over may have to run on the host's event loop (more: a thread)."""


class Upkeep:
    """The background loops of one host engine."""

    def __init__(self, engine: UpkeepPort, store: Store | None, max_live: int | None) -> None:
        self._engine = engine
        self._max_live = max_live
        self._reap_wakeup = asyncio.Event()
        self._reap_requested = False
        self._reaping = asyncio.Lock()  # one passivation round at a time (reap_once)
        self._loops: list[asyncio.Task[None]] = []
        self._flushing: dict[str, asyncio.Task[None]] = {}  # identities whose write-behind is under way
        self._tasks: set[asyncio.Task[Any]] = set()
        self.firing = Firing(engine, store, self._tasks)
        self.reminders = self.firing.reminders
        self._closed = False

    def start(self) -> None:
        """Start the loops (once; callable from any thread)."""
        e = self._engine

        def start() -> None:
            if self._loops or self._closed:
                return
            self._loops = [e.loop.create_task(self._reap_loop()), e.loop.create_task(self.firing.run())]

        if threading.get_ident() == e.loop_thread:
            start()
        else:
            e.loop.call_soon_threadsafe(start)

    async def stop(self) -> None:
        self._closed = self.firing.closed = True
        live = [task for task in self._loops if not task.done()]
        for task in live:
            task.cancel()
        if live:  # (a second stop, at a release that quiesced first, has nothing to wait for)
            await asyncio.gather(*live, return_exceptions=True)

    # -- passivation ------------------------------------------------------------------------------

    def _timeout_of(self, type_name: str) -> float:
        definition = self._engine.types.get(type_name)
        return definition.options.idle_timeout_s if definition else float("inf")

    def _reap_period(self) -> float:
        timeouts = [d.options.idle_timeout_s for d in self._engine.types.values()] or [1.0]
        return min(1.0, max(0.05, min(timeouts) / 4))

    def reap_soon(self) -> None:
        """Live identities passed the cap: run the reaper now (callable from any thread)."""
        if self._reap_requested:
            return
        self._reap_requested = True
        e = self._engine
        if threading.get_ident() == e.loop_thread:
            self._reap_wakeup.set()
        else:
            e.loop.call_soon_threadsafe(self._reap_wakeup.set)

    async def _reap_loop(self) -> None:
        while not self._closed:
            try:
                await asyncio.wait_for(self._reap_wakeup.wait(), self._reap_period())
            except TimeoutError:
                pass
            self._reap_wakeup.clear()
            self._reap_requested = False
            try:
                await self.reap_once()
            except Exception:
                log.exception("host %s/%s: passivation round failed", self._engine.group, self._engine.shard)

    async def reap_once(self) -> int:
        """Passivate idle identities and those beyond the live cap; returns how many.

        One round at a time: identities being passivated count as live but are in use, so
        a round chosen while another ran would pick extra victims and undershoot the cap."""
        async with self._reaping:
            return await self._reap_round()

    async def _reap_round(self) -> int:
        e = self._engine
        if not e.types:
            return 0
        now = time.monotonic()
        min_timeout = min(d.options.idle_timeout_s for d in e.types.values())
        with e.admission.lock:
            victims = e.admission.table.idle(now, self._timeout_of, min_timeout, e.admission.in_use)
            if self._max_live is not None:
                seen = {id(v) for v in victims}
                victims += [
                    a for a in e.admission.table.over_cap(self._max_live, e.admission.in_use) if id(a) not in seen
                ]
        count = 0
        for start in range(0, len(victims), 256):  # in batches: each is a turn of its own
            done = await asyncio.gather(*(self.passivate(act, now) for act in victims[start : start + 256]))
            count += sum(done)
        return count

    async def passivate(self, act: Activation, chosen_at: float | None = None) -> bool:
        """Deactivate one identity if it is idle: ``on_deactivate``, then its state is written.
        ``chosen_at``: when a reaper picked it; one used since then is no longer a victim."""
        e = self._engine
        try:
            job = await e.admission.await_turn(act.address, act.type_name, act.key, lambda t: Passivate(t, act.address))
        except FluentError:  # in use (or the host is fenced): not now
            return False
        try:
            if chosen_at is not None and act.last_used > chosen_at:
                return False  # a turn ran while this passivation waited: it is recent again
            definition = e.types.get(act.type_name)
            if act.instance is not None and definition is not None and not act.moved:  # moved: handed over
                try:
                    await e.loop.run_in_executor(e.workers, self.deactivate, definition, act)
                except Exception as exc:  # the flush failed (store down, fenced): memory is dropped anyway
                    log.warning("%s: state not written on passivation: %s: %s", act.address, type(exc).__name__, exc)
                e.counters["passivations"] += 1
            act.forget()
        finally:
            e.admission.done(job)
        return True

    async def erase(self, type_name: str, key: str) -> None:
        """Deactivate an identity without writing its memory, and remove its rows: a turn
        of its own, so no call of the identity runs meanwhile (``ActorType.delete``)."""
        e = self._engine
        address = f"{type_name}/{key}"
        job = await e.admission.await_turn(
            address, type_name, key, lambda tid: Arrive(tid, address, f"erase:{tid}", time.time())
        )
        assert job.act is not None
        act = job.act
        try:
            act.forget(erased=True)
            if e.persistence.store is not None:
                await e.loop.run_in_executor(e.workers, e.persistence.store.delete_identity, address)
            e.admission.deactivated(act)
        finally:
            e.admission.done(job)

    async def flush(self, act: Activation) -> None:
        """Write a write-behind identity now, as a turn of its own."""
        e = self._engine
        definition = e.types.get(act.type_name)
        if definition is None:
            return
        address = act.address
        try:
            job = await e.admission.await_turn(
                address, act.type_name, act.key, lambda tid: Arrive(tid, address, f"flush:{tid}", time.time())
            )
        except FluentError:  # the host is fenced or full: the next round tries again
            return
        try:
            if act.instance is not None:
                await e.loop.run_in_executor(e.workers, e.persistence.flush, definition, act)
        finally:
            e.admission.done(job)

    def deactivate(self, definition: ActorDef, act: Activation) -> None:
        """``on_deactivate``, then write the state (in a worker thread, inside the passivation turn)."""
        self._on_deactivate(definition, act)
        self._engine.persistence.flush(definition, act)

    def _on_deactivate(self, definition: ActorDef, act: Activation) -> None:
        e = self._engine
        ctx = Context(address=act.address, key=act.key, type_name=act.type_name, node_id=e.node_id)
        token = CURRENT.set(ctx)
        try:
            if definition.on_deactivate is not None:
                definition.on_deactivate(act.instance)
        except Exception:  # a failing hook must not keep an identity alive forever
            log.exception("%s.on_deactivate failed", act.address)
        finally:
            CURRENT.reset(token)

    def hand_over(self, *, nowait: bool = False) -> Handoff | None:
        """Deactivate every identity (admission closed): state written — the identities
        that were idle in one store transaction — and what the next owner needs of each
        returned by address (the memory of ``persist="never"`` ones, the recent replies of
        all). In a thread of its own; or, with ``nowait``, on the host's event loop, where
        it does nothing and returns None unless it can be done at once: no type of the
        partition has an ``on_deactivate`` hook (user code runs in a thread), it has at
        most ``LOOP_HAND_OVER_MAX`` live identities, none in a turn, and the store takes
        the write at once (``flush_many``). A thread hop and the hop back cost two waits
        for a core and the GIL on a saturated host, up to 12 ms each, where the hand-over
        itself took 1-5 ms.

        An identity whose turn outlived the drain: under ``persist="call"`` it is left
        alone (its write is fenced off, its caller retries at the next owner with the same
        request id). Under ``"interval"`` and ``"never"`` its memory, with every change
        acknowledged before that turn, is written or handed over now, and the late turn
        ends with an indeterminate ``CallTimeout``, never a success that the next owner
        would not know of."""
        e = self._engine
        if nowait and (
            len(e.admission.table) > LOOP_HAND_OVER_MAX or any(d.on_deactivate is not None for d in e.types.values())
        ):
            return None
        handoff: Handoff = {}
        idle: list[tuple[ActorDef, Activation]] = []
        gone: list[Activation] = []
        for act in list(e.admission.table):
            with e.admission.lock:
                busy = e.admission.in_use(act.address)
            if busy and nowait:
                return None  # (nothing done yet: what is above changes no identity)
            definition = e.types.get(act.type_name)
            if busy and (definition is None or definition.options.persist.writes_before_reply):
                continue
            if not busy:
                gone.append(act)
            if act.instance is None or definition is None:
                continue
            try:
                if busy:  # no on_deactivate: the instance is still in its turn
                    act.moved = True
                    e.persistence.flush(definition, act)
                else:
                    self._on_deactivate(definition, act)
                    idle.append((definition, act))
                persist = definition.options.persist
                state = encode_snapshot(act.instance, act.address) if persist.memory_only else None
                # Under "call" the store holds the records; the others keep them in memory only.
                replies = act.kept() if not persist.writes_before_reply else ()
                if state is not None or replies:
                    handoff[act.address] = Memory(state, replies)
            except Exception as exc:  # the store failed: this identity's unwritten change is lost
                if nowait:
                    return None  # (its state did not encode: the thread's hand-over says so)
                _not_written(act, exc)
        if not nowait:
            self._write_all(idle)
        else:
            try:
                e.persistence.flush_many(idle, nowait=True)
            except WouldBlock:
                return None
            except Exception as exc:  # the thread's hand-over writes each identity alone, and says why
                log.debug("hand-over's write on the loop failed (%s: %s): to a thread", type(exc).__name__, exc)
                return None
        for act in gone:
            act.forget()
            e.admission.table.remove(act)
        return handoff

    def _write_all(self, items: list[tuple[ActorDef, Activation]]) -> None:
        """The hand-over's writes in one store transaction; if that fails (one identity
        cannot be stored, a version conflict), each is written alone, so one identity's
        failure loses no other's change."""
        persistence = self._engine.persistence
        try:
            persistence.flush_many(items)
            return
        except Exception as exc:
            if persistence.fenced:  # the partition moved on: no write of this owner counts
                log.error("%d identities' state not written when their partition moved: %s", len(items), exc)
                return
            log.warning("the hand-over's one write failed (%s: %s): writing each identity alone",
                        type(exc).__name__, exc)  # fmt: skip
        for definition, act in items:
            try:
                persistence.flush(definition, act)
            except Exception as exc:  # the store failed: this identity's unwritten change is lost
                _not_written(act, exc)

    # -- write-behind, ownership, records -----------------------------------------------------------

    async def flush_dirty(self, wait: bool = True) -> int:
        """Write identities changed since their last write (persist="interval"), each
        as a task of its own: an identity in a long or stuck turn delays only its own
        write. ``wait``: return once the writes started now are done (the periodic loops
        do not wait). Returns how many were started."""
        if not any(d.options.persist.writes_behind for d in self._engine.types.values()):
            return 0  # nothing here writes behind: no need to look at every live identity
        dirty = [a for a in self._engine.admission.table if a.dirty and a.address not in self._flushing]
        for act in dirty:
            self._flushing[act.address] = spawn(self._flush_one(act), self._tasks)
        if wait and self._flushing:  # those started now and those under way (their write may be in a worker)
            await asyncio.gather(*self._flushing.values())
        return len(dirty)

    async def _flush_one(self, act: Activation) -> None:
        try:
            await self.flush(act)
        except Exception as exc:  # the store failed: the identity stays dirty, the next round tries again
            act.dirty = True
            log.warning("%s: write-behind failed: %s: %s", act.address, type(exc).__name__, exc)
        finally:
            self._flushing.pop(act.address, None)

    def watch_overdue(self) -> None:
        """Report sync turns still running past their deadline, and stop counting them
        against the worker threads (they cannot be interrupted; others must not starve)."""
        e = self._engine
        now = time.time()
        for running in list(e.runner.running):
            if running.deadline and not running.overdue and now > running.deadline:
                running.overdue = True
                e.counters["overdue_turns"] += 1
                e.workers.stuck()
                log.warning(
                    "%s.%s is still running %.1f s past its deadline (its caller got CallTimeout)",
                    running.address,
                    running.method,
                    now - running.deadline,
                )


def _not_written(act: Activation, exc: Exception) -> None:
    log.error("%s: state not written when its partition moved: %s: %s", act.address, type(exc).__name__, exc)
