"""Deadlines across machines: sent as a budget, re-based on the receiver's clock.

Inside a process a call's ``deadline`` is a time on that process's clock. A sender
stamps the seconds left (``budget_s``) when the call leaves; the receiver turns them
back into a deadline on its own clock. A host whose clock is ahead of or behind its
callers' therefore neither runs turns its caller gave up on nor drops live ones (Orleans
sends a time-to-live for the same reason). Only the network's transit time is charged to
nobody; it is small next to any deadline worth setting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..wire._gen import actorhost_pb2 as pb

Clock = Callable[[], float]


def stamp(call: pb.Call, clock: Clock = time.time) -> None:
    """On the way out: the seconds left of ``call``'s deadline (none if it has none)."""
    if call.deadline:
        call.budget_s = max(1e-6, call.deadline - clock())


def rebase(call: pb.Call, clock: Clock = time.time) -> None:
    """On the way in: ``call``'s deadline on this process's clock, from its budget (a
    sender that gave none keeps its absolute deadline)."""
    if call.budget_s > 0:
        call.deadline = clock() + call.budget_s
        call.budget_s = 0.0
