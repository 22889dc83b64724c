"""The directory: a named Ray actor holding the type registry and shard -> host map.

Each (group, shard) has one host actor and an epoch that grows every time a host
(re)announces itself, so a stale host can be told apart from the current one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from ._config import PLACEMENT_WAIT_S, RESOLVE_TIMEOUT_S
from .errors import FluentError, NotFound, Unavailable
from .placement import ActorOptions, missing_resources, ray_options, resource_demand

log = logging.getLogger("fluentfn.directory")
_FOREVER = 1e18  # "due by then": every pending reminder

DIRECTORY_NAME = "fluentfn-directory"


def ray_namespace(namespace: str) -> str:
    """The Ray namespace that holds a fluentfn namespace's actors."""
    return f"fluentfn-{namespace}"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a shard lives now."""

    endpoint: str
    epoch: int
    node_id: str


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What a caller needs to place a call: the type's group and shard count."""

    group: str
    shards: int
    methods: frozenset[str] = frozenset()


@dataclass
class _Shard:
    handle: Any = None
    route: Route | None = None
    epoch: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Group:
    options: ActorOptions
    shards: list[_Shard]
    started: bool = False


class Directory:
    """Registry and placement authority (runs as an async Ray actor)."""

    def __init__(self, config: dict[str, Any], host_class: type) -> None:
        self._config = config
        self._host_class = host_class  # the ShardHost class (given, so placement never imports the runtime)
        self._types: dict[str, tuple[bytes, ActorOptions, frozenset[str]]] = {}
        self._groups: dict[str, _Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def config(self) -> dict[str, Any]:
        """Cluster settings every process needs: token, bind address, TLS, store, mode."""
        return self._config

    async def register(self, name: str, blob: bytes, options: ActorOptions, methods: frozenset[str]) -> TypeInfo:
        """Register (or re-register) an actor type; starts its group's hosts if new."""
        group = options.group
        if options.colocate_with is not None and group not in self._groups and self._config.get("mode") != "faas":
            raise NotFound(f"{name} is co-located with {group!r}, which is not registered")
        self._types[name] = (blob, options, methods)
        if self._config.get("mode") == "faas":  # invocations are tasks: no hosts
            return TypeInfo(group, options.shards, methods)
        if group not in self._groups:  # hosts start on the group's first resolve
            self._groups[group] = _Group(options, [_Shard() for _ in range(options.shards)])
            # ... or now, if the store holds reminders of the group (a cluster restarted
            # with reminders pending: they must fire without waiting for a call)
            task = asyncio.get_running_loop().create_task(self._start_if_reminders(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return TypeInfo(group, len(self._groups[group].shards), methods)

    async def _start_if_reminders(self, group: str) -> None:
        g = self._groups[group]
        loop = asyncio.get_running_loop()
        try:
            pending = await loop.run_in_executor(None, self._has_reminders, group, len(g.shards))
            if pending and not g.started:
                await self._check_feasible(g)
                self._start_hosts(group)
        except Exception as exc:  # the hosts still start on the group's first call
            log.warning("pending reminders of %s not checked: %s: %s", group, type(exc).__name__, exc)

    def _has_reminders(self, group: str, shards: int) -> bool:
        from .state import open_store

        store = open_store(self._config["store"])
        try:
            return any(store.due_reminders(group, shard, _FOREVER, limit=1) for shard in range(shards))
        finally:
            store.close()

    async def register_many(self, entries: list[tuple[str, bytes, ActorOptions, frozenset[str]]]) -> None:
        """Register several types (co-location targets first); unknown targets are skipped."""
        for name, blob, options, methods in sorted(entries, key=lambda e: e[2].colocate_with is not None):
            try:
                await self.register(name, blob, options, methods)
            except NotFound as exc:
                log.warning("type %s not registered: %s", name, exc)

    def _start_hosts(self, group: str) -> None:
        import ray

        g = self._groups[group]
        if g.started:
            return
        g.started = True
        cls: Any = ray.remote(self._host_class)
        for shard, slot in enumerate(g.shards):
            slot.handle = cls.options(
                max_restarts=-1,
                max_task_retries=0,
                max_concurrency=16,
                scheduling_strategy="SPREAD",  # a type's shards spread over the nodes
                **ray_options(g.options.spec),
            ).remote(group, shard, self._config["namespace"], len(g.shards))

    async def lookup(self, name: str) -> TypeInfo:
        """Placement of a registered type; NotFound otherwise."""
        entry = self._types.get(name)
        if entry is None:
            raise NotFound(f"no actor type {name!r} is registered in this cluster")
        _, options, methods = entry
        group = self._groups.get(options.group)
        return TypeInfo(options.group, len(group.shards) if group else options.shards, methods)

    async def type_blob(self, name: str) -> bytes | None:
        """The pickled (class, options) of a type, for hosts that must load it."""
        entry = self._types.get(name)
        return entry[0] if entry else None

    async def type_routes(self) -> list[tuple[str, str, int]]:
        """(type, group, shards) of every registered type of a group with hosts (none in
        FaaS mode): what a client needs to call the owning host directly."""
        return [
            (name, options.group, len(self._groups[options.group].shards))
            for name, (_, options, _) in sorted(self._types.items())
            if options.group in self._groups
        ]

    async def type_names(self) -> list[str]:
        return sorted(self._types)

    async def host_ready(self, group: str, shard: int, endpoint: str, node_id: str, epoch: int) -> bool:
        """A host (re)started, owns the shard at ``epoch`` (claimed in the store), serves ``endpoint``.

        Returns False (and ignores it) if a newer owner has already announced itself.
        """
        slot = self._groups[group].shards[shard]
        if epoch < slot.epoch:
            return False
        slot.epoch = epoch
        slot.route = Route(endpoint, epoch, node_id)
        slot.ready.set()
        return True

    async def resolve(self, group: str, shard: int) -> Route:
        """The current route of a shard, waiting (bounded) while its host starts."""
        g = self._groups.get(group)
        if g is None:
            raise NotFound(f"no group {group!r}")
        if not g.started:
            await self._check_feasible(g)
        self._start_hosts(group)
        slot = g.shards[shard]
        try:
            await asyncio.wait_for(slot.ready.wait(), RESOLVE_TIMEOUT_S)
        except TimeoutError:
            demand = resource_demand(g.options.spec)
            hint = f" (each host needs {demand}: are other hosts holding them?)" if demand else ""
            raise Unavailable(f"host {group}/{shard} did not start within {RESOLVE_TIMEOUT_S} s{hint}") from None
        assert slot.route is not None
        return slot.route

    async def _check_feasible(self, g: _Group) -> None:
        """Fail clearly (after a bounded wait for nodes to join) if no node fits a host."""
        import ray

        demand = resource_demand(g.options.spec)
        if not demand:
            return
        deadline = asyncio.get_running_loop().time() + PLACEMENT_WAIT_S
        while True:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
            why = missing_resources(demand, nodes)
            if why is None:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise FluentError(
                    f"actor type {g.options.name} cannot be placed on this cluster ({why}); "
                    f"waited {PLACEMENT_WAIT_S:g} s for a node that fits"
                )
            await asyncio.sleep(0.5)

    async def report_down(self, group: str, shard: int, endpoint: str) -> None:
        """A caller could not reach ``endpoint``: hold callers until the host answers again.

        Either the host is alive (a broken stream) and is re-confirmed, or Ray restarts it
        and the new process announces itself with a new endpoint.
        """
        slot = self._groups[group].shards[shard]
        if slot.route is None or slot.route.endpoint != endpoint or not slot.ready.is_set():
            return
        slot.ready.clear()
        route = slot.route
        try:
            info = await asyncio.wait_for(slot.handle.info.remote(), RESOLVE_TIMEOUT_S)
        except Exception as exc:  # callers wait until Ray's restarted host announces itself
            log.warning("host %s/%s did not answer (%s): waiting for its successor", group, shard, type(exc).__name__)
            return
        if slot.route is route and info.get("endpoint") == endpoint:
            slot.ready.set()

    async def hosts(self) -> list[tuple[str, int, Any]]:
        """Every host: (group, shard, actor handle)."""
        return [
            (name, i, s.handle)
            for name, g in self._groups.items()
            for i, s in enumerate(g.shards)
            if s.handle is not None
        ]

    async def stats(self) -> dict[str, int]:
        """Counters summed over all hosts."""
        totals: dict[str, int] = {}
        handles = [s.handle for g in self._groups.values() for s in g.shards if s.handle is not None]
        results = await asyncio.gather(*(h.stats.remote() for h in handles), return_exceptions=True)
        for counters in results:
            if isinstance(counters, BaseException):
                continue
            for k, v in counters.items():
                totals[k] = totals.get(k, 0) + v
        return totals

    async def shutdown_hosts(self) -> None:
        """Passivate every identity on every host (runs on_deactivate, flushes state)."""
        handles = [s.handle for g in self._groups.values() for s in g.shards if s.handle is not None]
        await asyncio.gather(*(h.shutdown.remote() for h in handles), return_exceptions=True)

    async def move_shard(self, group: str, shard: int, resources: dict[str, float] | None = None) -> Route:
        """Start a new host for a shard (on nodes with ``resources``) and route to it.

        The new host claims a higher epoch, so the old one can no longer write; the old
        host is told to fence itself, and refuses calls even if the message is lost
        (its next write, or its periodic ownership check, finds the newer epoch).
        """
        import ray

        g = self._groups[group]
        slot = g.shards[shard]
        old = slot.handle
        opts = ray_options(g.options.spec)
        if resources:
            opts["resources"] = {**opts.get("resources", {}), **resources}
        slot.ready.clear()
        slot.handle = (
            ray.remote(self._host_class)
            .options(max_restarts=-1, max_task_retries=0, max_concurrency=16, **opts)
            .remote(group, shard, self._config["namespace"], len(g.shards))
        )
        route = await self.resolve(group, shard)
        if old is not None:
            old.fence.remote()
        return route

    async def stop_group(self, group: str) -> int:
        """Passivate and stop a group's hosts, freeing their resources (GPUs); they start
        again on the group's next call. Returns how many hosts were stopped."""
        import ray

        g = self._groups.get(group)
        if g is None:
            raise NotFound(f"no group {group!r}")
        handles = [s.handle for s in g.shards if s.handle is not None]
        await asyncio.gather(*(h.shutdown.remote() for h in handles), return_exceptions=True)
        for h in handles:
            ray.kill(h, no_restart=True)
        g.shards = [_Shard() for _ in g.shards]
        g.started = False
        return len(handles)
