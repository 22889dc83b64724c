"""Python's cyclic collector, tuned for a process that makes many small short-lived objects.

A call allocates a handful of tracked objects (a ``Future`` alone is ten: its condition,
lock, deque, lists and bound methods). With Python's default thresholds (700, 10, 10) a
driver that keeps 20,000 ``.future`` calls in flight runs a young collection every
~25 calls and a full one, walking every object Ray and gRPC made at import (about 300k),
every few thousand: measured, 60% of such a driver's time went to the collector.

``tune`` collects every 20,000 allocations instead (a bound on how long cyclic garbage
waits) and moves what exists now (modules, Ray's and gRPC's objects) out of the
collector's sight. In a process fluentfn owns (a host, a gateway actor) that is for
good; in a user's process (``ff.init``) ``Tuned.restore`` puts the collector back as it
found it when the cluster is shut down. ``FLUENTFN_GC=0`` leaves a user's process alone.
"""

from __future__ import annotations

import gc

from . import _config

THRESHOLDS = (20_000, 20, 10)


class Tuned:
    """What ``tune`` changed, to undo in a user's process."""

    __slots__ = ("_froze", "_thresholds")

    def __init__(self, thresholds: tuple[int, int, int], froze: bool) -> None:
        self._thresholds = thresholds
        self._froze = froze

    def restore(self) -> None:
        """The thresholds as they were, and what ``tune`` froze handed back to the
        collector (nothing that someone else froze before it: then nothing is thawed)."""
        if gc.get_threshold() == THRESHOLDS:  # nobody changed them since
            gc.set_threshold(*self._thresholds)
        if self._froze:
            gc.unfreeze()


def tune(*, user_process: bool) -> Tuned | None:
    """Raise the young generation's threshold and freeze what is alive now. In a user's
    process (``user_process``) only when ``FLUENTFN_GC`` allows it, and only once at a
    time: None when nothing was changed."""
    if user_process and (not _config.gc_tuning_wanted() or gc.get_threshold() == THRESHOLDS):
        return None
    before = gc.get_threshold()
    froze = gc.get_freeze_count() == 0  # someone else's frozen objects are theirs to thaw
    gc.set_threshold(*THRESHOLDS)
    gc.freeze()
    return Tuned(before, froze)
