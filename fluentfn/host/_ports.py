"""What the host's helpers may use of their engine: one Protocol each.

The sync lane, upkeep and bulk calls are objects the engine makes and drives; they see
the engine only through these ports (``HostEngine`` satisfies all three), so the engine
is the one module that knows them all and nothing imports it back.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from .._actordef import ActorDef, MethodInfo
from .._call import Call, Outcome
from .._context import Context
from ..errors import FluentError
from ..state._store import StoreLost
from ._activations import Activation
from ._admission import Admission
from ._persistence import Persistence
from ._runner import TurnRunner
from ._turn import Item, Items, Request
from ._workers import Workers


class Shard(Protocol):
    """Which partition of which group, where."""

    @property
    def group(self) -> str: ...

    @property
    def shard(self) -> int: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def loop_thread(self) -> int: ...

    @property
    def types(self) -> dict[str, ActorDef]: ...

    @property
    def admission(self) -> Admission: ...

    @property
    def counters(self) -> dict[str, int]: ...

    @property
    def workers(self) -> Workers: ...

    @property
    def runner(self) -> TurnRunner: ...


class LanePort(Shard, Protocol):
    """The sync lane: turns of sync methods, on the loop or a worker thread."""

    def prepare(self, definition: ActorDef, call: Call) -> Request: ...

    def context_for(self, act: Activation, call: Call, method: MethodInfo | None = None) -> Context: ...


class BulkPort(LanePort, Protocol):
    """Bulk calls: many items of one method, as turns of their identities."""

    def own_all(self, keys: list[object]) -> list[str]: ...

    def turn_here(self, req: Request) -> Outcome: ...

    def turns_here(self, turns: Items, items: list[Item]) -> list[bytes]: ...

    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None: ...


class UpkeepPort(Shard, Protocol):
    """The background jobs: passivation, write-behind, ownership checks, reminders."""

    @property
    def node_id(self) -> str: ...

    @property
    def persistence(self) -> Persistence: ...

    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None: ...

    def fence(self) -> FluentError: ...

    def lose_store(self, exc: StoreLost) -> None: ...
