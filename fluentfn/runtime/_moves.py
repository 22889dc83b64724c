"""A host's side of live moves (HostControl over its gRPC server): release drains and
hands partitions over on the host's loop; adopt claims their next epochs on a thread of
its own, so a move never queues behind the turns on the host's workers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..errors import InvalidRequest, WrongPeer
from ..host._activations import Handoff
from ..host._handover import memory_from_pb, memory_to_pb
from ..host._partitions import PartitionSet
from ..wire._gen import actorhost_pb2 as pb

_MAX_GRACE_S = 3600.0
Adopt = Callable[[list[int], dict[int, Handoff]], dict[int, int]]


class MoveService:
    """HostControl's Release and Adopt for one host (see ``transport._control``)."""

    def __init__(self, parts: PartitionSet, adopt: Adopt) -> None:
        self._parts = parts
        self._adopt = adopt  # claims in the store (blocking), then serves
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"fluentfn-moves-{parts.group}")
        # Set (on the loop) once the host has taken the partitions it started with: a move
        # that reached its server earlier would race that start (a release before the
        # start's claim would let the start fence off the partition's next owner).
        self._started = asyncio.Event()

    def started(self) -> None:
        """The host has started (called on its loop): moves are served from now on."""
        self._started.set()

    def _check(self, group: str, host_id: str, partitions: list[int]) -> None:
        if (group, host_id) != (self._parts.group, self._parts.host_id):
            raise WrongPeer(f"this is host {self._parts.group}/{self._parts.host_id}, not {group}/{host_id}")
        bad = [p for p in partitions if p >= self._parts.partitions]
        if bad:
            raise InvalidRequest(f"group {self._parts.group} has {self._parts.partitions} partitions, not {bad[0] + 1}")
        if len(set(partitions)) != len(partitions):
            raise InvalidRequest(f"a partition is named twice: {partitions}")

    async def release(self, request: pb.ReleaseRequest) -> pb.ReleaseReply:
        partitions = list(request.partitions)
        self._check(request.group, request.host_id, partitions)
        grace = request.grace_s
        if not (math.isfinite(grace) and 0.0 <= grace <= _MAX_GRACE_S):
            raise InvalidRequest(f"grace_s must be between 0 and {_MAX_GRACE_S:g} seconds, not {grace}")
        await self._started.wait()
        out = await asyncio.gather(*(self._parts.release(p, grace) for p in partitions))
        return pb.ReleaseReply(partitions=[memory_to_pb(p, h) for p, h in zip(partitions, out, strict=True)])

    async def adopt(self, request: pb.AdoptRequest) -> pb.AdoptReply:
        handoffs = {m.partition: memory_from_pb(m) for m in request.partitions}
        partitions = [m.partition for m in request.partitions]
        self._check(request.group, request.host_id, partitions)
        await self._started.wait()
        loop = asyncio.get_running_loop()
        epochs = await loop.run_in_executor(self._thread, self._adopt, partitions, handoffs)
        return pb.AdoptReply(epochs=epochs)

    def close(self) -> None:
        self._thread.shutdown(wait=False)
