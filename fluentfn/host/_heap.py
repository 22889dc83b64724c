"""When a host hides its long-lived objects from Python's cyclic collector.

A host keeps up to millions of small objects per partition set (identities, their
mailboxes and state). Every full collection walks all of them, and while identities
are being activated full collections come often: at 1M identities they took a third of
a host's time. ``HeapPolicy`` decides (pure: counts and times in, a decision out) when
to ``gc.freeze()`` — move every object alive now out of the collector's sight — and when
to ``gc.unfreeze()`` them again, so that reference cycles among objects that died since
(identities passivated meanwhile) are collected after all: a bounded delay, not a leak.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from enum import Enum


class Heap(Enum):
    KEEP = "keep"
    FREEZE = "freeze"
    THAW = "thaw"


@dataclass(slots=True)
class HeapPolicy:
    """``tick(live, now)`` -> what to do with the collector's view of the heap."""

    grow_by: int = 20_000  # freeze once this many more identities are live than at the last freeze
    thaw_every_s: float = 300.0  # frozen objects are handed back to the collector this often
    _frozen_at_live: int = 0
    _frozen_since: float | None = None

    def tick(self, live: int, now: float) -> Heap:
        if self._frozen_since is not None and now - self._frozen_since >= self.thaw_every_s:
            self._frozen_since, self._frozen_at_live = None, 0
            return Heap.THAW
        if live - self._frozen_at_live >= self.grow_by:
            self._frozen_at_live = live
            if self._frozen_since is None:
                self._frozen_since = now
            return Heap.FREEZE
        self._frozen_at_live = min(self._frozen_at_live, live)  # passivations: grow from here
        return Heap.KEEP


def apply(decision: Heap) -> None:
    """Carry out a ``HeapPolicy`` decision on this process's collector."""
    if decision is Heap.FREEZE:
        gc.freeze()
    elif decision is Heap.THAW:
        gc.unfreeze()
