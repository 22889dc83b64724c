"""The one periodic driver of a host's engines: whatever number of partitions a host
serves, one timer looks for overdue turns and one loop, once a second, starts the
write-behind of every engine, checks (in one thread hop) that the store is the same and
which engines another host has fenced off, and prunes old reply records once a minute.

Two loops, so that a stalled store (or a full worker pool) never stops the overdue-turn
watch that frees stuck workers. Hosts run it over their ``PartitionSet``; tests of
engines run the same driver over the engines they make.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from ..state._store import Store, StoreLost
from ._engine import HostEngine
from ._heap import HeapPolicy
from ._heap import apply as apply_heap

log = logging.getLogger("fluentfn.host")
TICK_S = 0.25  # how often overdue turns are looked for
STORE_ROUND_S = 1.0  # write-behind and ownership checks
_PRUNE_EVERY = 60  # store rounds between prunes of old recorded replies


class Driver:
    """Drives the periodic jobs of ``engines()`` (the live ones, asked each round)."""

    def __init__(
        self, engines: Callable[[], Sequence[HostEngine]], label: str, *, heap: HeapPolicy | None = None
    ) -> None:
        self._engines = engines
        self._label = label
        self._heap = heap  # the process's heap tuning, from the same timer (hosts only)

    async def run(self, store: Store | None) -> None:
        await asyncio.gather(self._watch_loop(), self._store_loop(store))

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                engines = self._engines()
                for engine in engines:
                    engine.upkeep.watch_overdue()
                if self._heap is not None:
                    apply_heap(self._heap.tick(sum(e.live_identities for e in engines), time.monotonic()))
            except Exception:
                log.exception("host %s: overdue-turn watch failed", self._label)

    async def _store_loop(self, store: Store | None) -> None:
        loop = asyncio.get_running_loop()
        rounds = 0
        while True:
            await asyncio.sleep(STORE_ROUND_S)
            rounds += 1
            engines = [e for e in self._engines() if not e.persistence.fenced]
            try:
                for engine in engines:
                    await engine.upkeep.flush_dirty(wait=False)  # each identity's write on its own
                if store is None or not engines:
                    continue
                # Not on the engines' worker pool: stuck turns may fill it.
                stale = await loop.run_in_executor(None, _stale_engines, store, engines)
                for engine in stale:
                    engine.fence()
                if rounds % _PRUNE_EVERY == 0:
                    await loop.run_in_executor(None, engines[0].persistence.prune)
            except StoreLost as exc:
                log.error("host %s: %s", self._label, exc)
                for engine in engines:
                    engine.lose_store(exc)
            except Exception:
                log.exception("host %s: background job failed", self._label)


def _stale_engines(store: Store, engines: list[HostEngine]) -> list[HostEngine]:
    """In a worker thread: StoreLost if the store was replaced; else the engines whose
    partition another host has claimed since."""
    store.check()
    return [e for e in engines if not e.persistence.still_owner()]
