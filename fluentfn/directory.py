"""The directory: a named Ray actor, the control plane's one door.

Keys map to a group's partitions (a fixed number), partitions to hosts (a varying set,
between the type's ``min_hosts`` and ``max_hosts``). Each partition's owner holds an
epoch claimed in the store, so a stale host can be told apart from the current one and
can no longer write. The rooms behind this door (``fluentfn/control/``): the type
registry, host lifecycle and routes, partition moves, the autoscaler loop, counters.

Ray restarts a directory that dies; its first method call rebuilds the tables from the
live hosts (``_recovery``) and the registrations kept in Ray's GCS (``_typekeep``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from ._clusterconfig import ClusterConfig
from ._recovery import recover
from ._tables import Group, Route, TypeInfo, ray_namespace
from ._typekeep import Entry, drop, keep, kept
from .control._autoscaler import Autoscaler
from .control._counters import Counters
from .control._hosts import Hosts
from .control._mover import Mover
from .control._registry import Registry
from .errors import FluentError, NotFound
from .placement import ActorOptions

log = logging.getLogger("fluentfn.directory")


class Directory:
    """Registry and placement authority (runs as an async Ray actor)."""

    def __init__(self, config: ClusterConfig, host_class: type) -> None:
        self._config = config
        self._registry = Registry()
        self._groups: dict[str, Group] = {}
        self._counters = Counters(self._groups)
        self._hosts = Hosts(config, host_class, self._groups, self._counters)
        self._mover = Mover(self._hosts)
        self._autoscaler = Autoscaler(self._groups, self._hosts, self._mover)
        self._loops: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._recovered: asyncio.Future[None] | None = None
        self._faults: Any = None  # the lab's faults (fluentfn.lab), pushed to hosts

    async def _ready(self) -> None:
        """Once per process, before anything else: the tables of a directory that Ray
        restarted after a crash are rebuilt from the live hosts and the kept types."""
        if self._recovered is None:
            self._recovered = asyncio.get_running_loop().create_future()
            try:
                types, groups = await recover(ray_namespace(self._config.namespace), self._hosts.control)
                self._registry.types.update(types)
                self._groups.update(groups)
                self._hosts.recovered = bool(groups)
                if groups:
                    self._start_loops()
            except Exception as exc:  # serve anyway: hosts announce themselves again as they restart
                log.error("directory tables not recovered from the hosts: %s: %s", type(exc).__name__, exc)
            try:  # types no host had loaded (all of them in FaaS mode): from their kept copy
                loop = asyncio.get_running_loop()
                saved = await loop.run_in_executor(None, kept, self._config.cluster_id)
                for name, entry in sorted(saved.items(), key=lambda e: e[1][1].colocate_with is not None):
                    if name not in self._registry.types:
                        self._add_type(name, entry)
            except Exception as exc:  # callers that know the type register it again
                log.error("kept type registrations not read: %s: %s", type(exc).__name__, exc)
            self._recovered.set_result(None)
        await asyncio.shield(self._recovered)

    def _start_loops(self) -> None:
        if not self._loops:
            loop = asyncio.get_running_loop()
            self._loops = [loop.create_task(self._autoscaler.loop()), loop.create_task(self._counters.loop())]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def pid(self) -> int:
        """This process's id (tests kill the directory to check that the cluster survives)."""
        return os.getpid()

    async def config(self) -> ClusterConfig:
        """Cluster settings every process needs: token, bind address, TLS, store, mode."""
        await self._ready()
        return self._config

    # -- the registry ---------------------------------------------------------------------------

    async def register(self, name: str, blob: bytes, options: ActorOptions, methods: frozenset[str]) -> TypeInfo:
        """Register (or re-register) an actor type; its group's hosts start on first use."""
        await self._ready()
        entry = (blob, options, methods)
        known = self._registry.types.get(name)
        info = self._add_type(name, entry)
        if known != entry:  # kept outside this process, for a directory restarted after a crash
            await asyncio.get_running_loop().run_in_executor(None, keep, self._config.cluster_id, name, entry)
        return info

    def _add_type(self, name: str, entry: Entry) -> TypeInfo:
        _, options, _ = entry
        faas = not self._config.mode.has_hosts
        if options.colocate_with is not None and options.group not in self._groups and not faas:
            raise NotFound(f"{name} is co-located with {options.group!r}, which is not registered")
        self._registry.types[name] = entry
        if faas:  # invocations are tasks: no hosts
            return self._registry.info(name, None)
        g, new = self._hosts.group(options)
        if new:  # hosts start on the group's first resolve, or now if it has reminders pending
            self._start_loops()
            self._spawn(self._hosts.start_if_reminders(options.group))
        return self._registry.info(name, len(g.parts))

    async def register_many(self, entries: list[tuple[str, bytes, ActorOptions, frozenset[str]]]) -> None:
        """Register several types (co-location targets first); unknown targets are skipped."""
        await self._ready()
        for name, blob, options, methods in sorted(entries, key=lambda e: e[2].colocate_with is not None):
            try:
                await self.register(name, blob, options, methods)
            except NotFound as exc:
                log.warning("type %s not registered: %s", name, exc)

    async def lookup(self, name: str) -> TypeInfo:
        """Placement of a registered type; NotFound otherwise."""
        await self._ready()
        g = self._groups.get(self._registry.entry(name)[1].group)
        return self._registry.info(name, len(g.parts) if g else None)

    async def type_blob(self, name: str) -> bytes | None:
        """The pickled (class, options) of a type, for hosts that must load it."""
        await self._ready()
        return self._registry.blob(name)

    async def type_routes(self) -> list[dict[str, Any]]:
        """Each registered type of a group with hosts (none in FaaS mode): its partition
        count, host count and bounds, and why it is not at the size asked for, if so."""
        await self._ready()
        out = []
        for name, (_, options, _) in sorted(self._registry.types.items()):
            g = self._groups.get(options.group)
            if g is None:
                continue
            out.append(
                {
                    "type_name": name,
                    "group": options.group,
                    "shards": len(g.parts),
                    "hosts": len(g.hosts),
                    "min_hosts": g.options.min_hosts,
                    "max_hosts": g.options.max_hosts,
                    "placement_problem": g.problem,
                }
            )
        return out

    async def type_names(self) -> list[str]:
        await self._ready()
        return self._registry.names()

    def _group_of(self, name: str) -> tuple[str, Group]:
        group = self._registry.entry(name)[1].group
        g = self._groups.get(group)
        if g is None:
            raise FluentError(f"{name} has no hosts to scale: in FaaS mode the platform scales environments itself")
        return group, g

    # -- hosts and routes -----------------------------------------------------------------------

    async def host_ready(self, group: str, hid: str, endpoint: str, node_id: str) -> list[int]:
        """A host (re)started and serves ``endpoint``: the partitions it is to take (it
        claims them, then reports ``claimed``)."""
        await self._ready()
        return self._hosts.ready(group, hid, endpoint, node_id)

    async def claimed(self, group: str, hid: str, epochs: dict[int, int]) -> None:
        """A host claimed ``epochs`` (partition -> epoch) in the store: route callers to it."""
        await self._ready()
        self._hosts.claimed(group, hid, epochs)

    async def resolve(self, group: str, shard: int) -> Route:
        """The current route of a partition, waiting (bounded) while its host starts or moves."""
        await self._ready()
        return await self._hosts.resolve(group, shard)

    async def report_down(self, group: str, shard: int, endpoint: str) -> None:
        """A caller could not reach ``endpoint``: hold callers until it answers or is replaced."""
        await self._ready()
        await self._hosts.report_down(group, shard, endpoint)

    async def hosts(self) -> list[tuple[str, str, Any]]:
        """Every host: (group, host id, actor handle)."""
        await self._ready()
        return self._hosts.handles()

    async def endpoints(self) -> list[str]:
        """Every host's gRPC endpoint (where a gateway's tunnel may go)."""
        await self._ready()
        return self._hosts.endpoints()

    async def set_faults(self, faults: Any) -> int:
        """The lab's faults in force from now on: kept for hosts that start later, and
        handed to every live host (awaited). Returns how many hosts took them."""
        await self._ready()
        self._faults = faults
        handles = [h for _, _, h in self._hosts.handles()]
        done = await asyncio.gather(*(h.set_faults.remote(faults) for h in handles), return_exceptions=True)
        for failed in (d for d in done if isinstance(d, BaseException)):  # a host that died takes none
            log.warning("a host did not take the faults: %s: %s", type(failed).__name__, failed)
        return sum(1 for d in done if not isinstance(d, BaseException))

    async def faults(self) -> Any:
        """The faults in force (None when none was ever set)."""
        return self._faults

    async def stats(self) -> dict[str, int]:
        """Counters summed over all hosts, those stopped or killed included (a killed host
        process's counts up to the last poll, at most a second old)."""
        await self._ready()
        await self._counters.poll()
        return self._counters.totals()

    async def shutdown_hosts(self) -> None:
        """Passivate every identity on every host (runs on_deactivate, flushes state)."""
        await self._ready()
        for task in self._loops:
            task.cancel()
        handles = [h.handle for g in self._groups.values() for h in g.hosts.values()]
        await asyncio.gather(*(h.shutdown.remote() for h in handles), return_exceptions=True)
        try:
            await asyncio.get_running_loop().run_in_executor(None, drop, self._config.cluster_id)
        except Exception as exc:  # Ray is going away with the cluster anyway
            log.warning("kept type registrations not dropped: %s: %s", type(exc).__name__, exc)

    # -- placement: moves, scaling, rebalancing -------------------------------------------------------

    async def placement(self, name: str) -> dict[str, list[int]]:
        """``cluster.placement``: host id -> the partitions it serves ({} with no hosts,
        as in FaaS mode)."""
        await self._ready()
        if not self._config.mode.has_hosts and name in self._registry.types:
            return {}
        _, g = self._group_of(name)
        return g.placement()

    async def move_pauses(self, name: str) -> list[float]:
        """How long (ms) each partition move of the type held its callers: from when its
        old host stopped admitting (it went on serving until no turn ran) until it was
        served again."""
        await self._ready()
        _, g = self._group_of(name)
        return list(g.pauses_ms)

    async def move_holds(self, name: str) -> list[float]:
        """How long (ms) each partition move of the type held lookups of its route: the
        whole move, its quiet wait included (callers that had the route were served)."""
        await self._ready()
        _, g = self._group_of(name)
        return list(g.holds_ms)

    async def move_phases(self, name: str) -> list[dict[str, float]]:
        """Each partition move's pause of the type in parts (ms): ``transit``, the release
        request's way to the old host and its reply's way back (a busy host's loop takes
        it late); ``held``, its callers' hold on the old host (late turns, the hand-over);
        ``adopt``, the new host's claim (its request's way included)."""
        await self._ready()
        _, g = self._group_of(name)
        return [{"transit": t, "held": h, "adopt": a} for t, h, a in g.phases_ms]

    async def scale(self, name: str, hosts: int) -> dict[str, list[int]]:
        """``cluster.scale``: run ``hosts`` hosts, partitions spread evenly; returns the placement."""
        await self._ready()
        group, g = self._group_of(name)
        if not isinstance(hosts, int) or isinstance(hosts, bool) or not 0 <= hosts <= g.options.max_hosts:
            raise FluentError(f"{name}: hosts must be an int from 0 to max_hosts={g.options.max_hosts}, not {hosts!r}")
        async with g.lock:
            await self._mover.scale(group, g, hosts)
        return await self.placement(name)

    async def rebalance(self) -> dict[str, dict[str, list[int]]]:
        """``cluster.rebalance``: even out every group's hosts over the nodes, and its
        partitions over its hosts."""
        await self._ready()
        out = {}
        for group, g in list(self._groups.items()):
            async with g.lock:
                if g.hosts:
                    await self._mover.spread(group, g)
                    await self._mover.settle(group, g, list(g.hosts))
            out[group] = g.placement()
        return out

    async def stop_group(self, group: str) -> int:
        """Passivate and stop a group's hosts, freeing their resources (GPUs); they start
        again on the group's next call. Returns how many hosts were stopped."""
        await self._ready()
        g = self._groups.get(group)
        if g is None:
            raise NotFound(f"no group {group!r}")
        async with g.lock:
            return await self._mover.stop_all(group, g)

    async def move_shard(self, group: str, shard: int, resources: dict[str, float] | None = None) -> Route:
        """Move one partition to a new host of its own (on nodes with ``resources``)."""
        await self._ready()
        g = self._groups[group]
        async with g.lock:
            await self._mover.to_new_host(group, g, shard, resources)
        return await self.resolve(group, shard)
