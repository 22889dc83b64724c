"""A host's side of live moves (HostControl over its gRPC server): release drains
partitions on the host's loop and writes their hand-over, adopt claims their next epochs,
each on the loop where the store takes it at once, else on a thread of its own, so a
move never queues behind the turns on the host's workers."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ..errors import InvalidRequest, WrongPeer
from ..host._activations import Handoff, Released
from ..host._partitions import PartitionSet
from ..state._store import WouldBlock
from ..transport._control import Who

_MAX_GRACE_S = 3600.0


class Adopt(Protocol):
    """Claims ``partitions`` in the store (blocking; ``nowait``: WouldBlock, nothing
    claimed, unless the store takes it at once), then serves them; returns the epochs."""

    def __call__(
        self, partitions: list[int], handoffs: dict[int, Handoff], *, nowait: bool = False
    ) -> dict[int, int]: ...


class MoveService:
    """HostControl's Release and Adopt for one host (see ``transport._control``)."""

    def __init__(self, parts: PartitionSet, adopt: Adopt) -> None:
        self._parts = parts
        self._adopt = adopt  # claims in the store (blocking), then serves
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"fluentfn-adopt-{parts.group}")
        self._handovers = ThreadPoolExecutor(1, thread_name_prefix=f"fluentfn-handover-{parts.group}")
        # Set (on the loop) once the host has taken the partitions it started with: a move
        # that reached its server earlier would race that start (a release before the
        # start's claim would let the start fence off the partition's next owner).
        self._started = asyncio.Event()

    def started(self) -> None:
        """The host has started (called on its loop): moves are served from now on."""
        self._started.set()

    def _check(self, who: Who, partitions: list[int]) -> None:
        if who != (self._parts.group, self._parts.host_id):
            raise WrongPeer(f"this is host {self._parts.group}/{self._parts.host_id}, not {who[0]}/{who[1]}")
        bad = [p for p in partitions if p >= self._parts.partitions]
        if bad:
            raise InvalidRequest(f"group {self._parts.group} has {self._parts.partitions} partitions, not {bad[0] + 1}")
        if len(set(partitions)) != len(partitions):
            raise InvalidRequest(f"a partition is named twice: {partitions}")

    async def release(self, who: Who, partitions: list[int], grace_s: float) -> dict[int, Released]:
        self._check(who, partitions)
        if not (math.isfinite(grace_s) and 0.0 <= grace_s <= _MAX_GRACE_S):
            raise InvalidRequest(f"grace_s must be between 0 and {_MAX_GRACE_S:g} seconds, not {grace_s}")
        await self._started.wait()
        out = await asyncio.gather(*(self._parts.release(p, grace_s, self._handovers) for p in partitions))
        return dict(zip(partitions, out, strict=True))

    async def adopt(self, who: Who, handoffs: dict[int, Handoff]) -> dict[int, int]:
        partitions = list(handoffs)
        self._check(who, partitions)
        await self._started.wait()
        if len(partitions) == 1:  # (most moves) here on the loop if the store takes the claim at once
            try:
                return self._adopt(partitions, handoffs, nowait=True)
            except WouldBlock:
                pass  # nothing claimed: the thread claims it, waiting for the store
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._adopt, partitions, handoffs)

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        self._handovers.shutdown(wait=False)
