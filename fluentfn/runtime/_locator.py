"""The stateful runtime's ``Locator`` (Orleans' grain locator): the directory is where a
caller's router finds a partition's route and a type's partitioning. Concurrent callers
share one lookup; a directory that restarted and lost a type no host had loaded is told
it again by whoever knows it."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import _config
from .._call import Call
from .._router import RouteTable, Slot, Target
from .._tables import Route, TypeInfo
from ..api import ActorType, known_type, known_types
from ..errors import NotFound
from ..host._partitions import PartitionSet
from ..placement import shard_for
from ._raycall import await_directory
from ._registry import registration

_PATIENCE_S = _config.RESOLVE_TIMEOUT_S  # how long a caller waits for the directory to come back


class DirectoryLocator:
    """Routes and type information from the directory, learned into ``table``."""

    def __init__(self, directory: Any, table: RouteTable, local: PartitionSet | None, endpoint: str) -> None:
        self._directory = directory
        self._table = table
        self._local = local  # a host's own partitions (routes to them are marked local)
        self._endpoint = endpoint
        self.types: dict[str, TypeInfo] = {}
        self._registering: dict[str, asyncio.Future[TypeInfo]] = {}
        self._resolving: dict[tuple[str, int], asyncio.Future[Target]] = {}

    async def locate(self, call: Call) -> Target | None:
        info = self.types.get(call.type_name) or await self.type_info(call.type_name)
        shard = shard_for(call.key, info.shards)
        return self._table.get((info.group, shard)) or await self._resolve(info.group, shard)

    async def lost(self, slot: Slot, target: Target) -> None:
        group, shard = slot
        await await_directory(lambda: self._directory.report_down.remote(group, shard, target.endpoint), 5.0)

    async def _resolve(self, group: str, shard: int) -> Target:
        """The shard's route from the directory; concurrent callers share one lookup."""
        pending = self._resolving.get((group, shard))
        if pending is None:
            pending = asyncio.ensure_future(self._lookup_route(group, shard))
            self._resolving[(group, shard)] = pending
            pending.add_done_callback(lambda _: self._resolving.pop((group, shard), None))
        return await asyncio.shield(pending)

    async def _lookup_route(self, group: str, shard: int) -> Target:
        try:
            route: Route = await await_directory(lambda: self._directory.resolve.remote(group, shard), _PATIENCE_S)
        except NotFound:  # a directory that restarted may not know a type no host had loaded
            known = next((at for at in known_types() if at.options.group == group), None)
            if known is None:
                raise
            await self._register(known)
            route = await await_directory(lambda: self._directory.resolve.remote(group, shard), _PATIENCE_S)
        local = self._local is not None and self._local.group == group and route.endpoint == self._endpoint
        target = Target(route.endpoint, local=local)
        self._table.learn((group, shard), target)
        return target

    async def type_info(self, name: str) -> TypeInfo:
        """A type's group, partitions and methods (registered first if this process defines it)."""
        pending = self._registering.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[TypeInfo] = asyncio.get_running_loop().create_future()
        self._registering[name] = fut
        try:
            local = known_type(name)
            if local is not None:
                info = await self._register(local)
            else:
                info = await await_directory(lambda: self._directory.lookup.remote(name), _PATIENCE_S)
            self._learn(name, info)
            fut.set_result(info)
            return info
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: concurrent waiters get it from await
            raise
        finally:
            del self._registering[name]

    async def _register(self, at: ActorType) -> TypeInfo:
        if at.colocate_target is not None and at.colocate_target.name not in self.types:
            self._learn(at.colocate_target.name, await self._register(at.colocate_target))
        entry = registration(at)
        info: TypeInfo = await await_directory(lambda: self._directory.register.remote(*entry), _PATIENCE_S)
        return info

    def _learn(self, name: str, info: TypeInfo) -> None:
        self.types[name] = info
        self._table.learn_type(name, info.group, info.shards)
