"""The directory: a named Ray actor holding the type registry and the placement.

Keys map to a group's partitions (a fixed number), partitions to hosts (a varying set,
between the type's ``min_hosts`` and ``max_hosts``). Each partition's owner holds an
epoch claimed in the store, so a stale host can be told apart from the current one and
can no longer write. The directory decides where partitions go with the pure policies of
``fluentfn.elastic`` and carries out the moves: the old host drains the partition and
writes its state, the new one claims the next epoch, and callers — held while the
partition moves — are sent to the new host.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from typing import Any

from ._config import AUTOSCALE_TICK_S, DRAIN_S, HOST_START_S, PLACEMENT_WAIT_S, RESOLVE_TIMEOUT_S
from ._recovery import recover
from ._stats import Ledger
from ._tables import Group, Host, Part, Route, TypeInfo, host_name, host_spec, ray_namespace
from ._typekeep import Entry, keep, kept
from .elastic._assign import assign, moves
from .elastic._autoscale import AutoscalePolicy, Sample
from .errors import FluentError, NotFound, Unavailable
from .placement import ActorOptions, missing_resources, ray_options, resource_demand

log = logging.getLogger("fluentfn.directory")
_MOVES_AT_ONCE = 2  # partitions moving at the same time within one group
_POLL_COUNTERS_S = 1.0  # how often host counters are read (a killed host loses what came after)
_NODE_CHECK_S = 2.0  # how often Ray's node list is read (to spread hosts onto joining nodes)
_REMINDER_WAKE_S = 1.0  # how often a group scaled to zero is checked for a reminder falling due


class Directory:
    """Registry and placement authority (runs as an async Ray actor)."""

    def __init__(self, config: dict[str, Any], host_class: type) -> None:
        self._config = config
        self._host_class = host_class  # the ShardHost class (given, so placement never imports the runtime)
        self._types: dict[str, tuple[bytes, ActorOptions, frozenset[str]]] = {}
        self._groups: dict[str, Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._store: Any = None  # opened on first use (a directory on a store it never needs opens none)
        self._ledger = Ledger()  # counters of every host process, those stopped or killed included
        self._autoscaler: asyncio.Task[None] | None = None
        self._recovered: asyncio.Future[None] | None = None
        self._recovered_hosts = False  # this directory was restarted and found live hosts

    async def _ready(self) -> None:
        """Once per process, before anything else: the tables of a directory that Ray
        restarted after a crash are rebuilt from the live hosts (none on a fresh cluster)."""
        if self._recovered is None:
            self._recovered = asyncio.get_running_loop().create_future()
            try:
                types, groups = await recover(ray_namespace(self._config["namespace"]))
                self._types.update(types)
                self._groups.update(groups)
                self._recovered_hosts = bool(groups)
                if groups and self._autoscaler is None:
                    self._autoscaler = asyncio.get_running_loop().create_task(self._elastic_loop())
                    self._spawn(self._counters_loop())
            except Exception as exc:  # serve anyway: hosts announce themselves again as they restart
                log.error("directory tables not recovered from the hosts: %s: %s", type(exc).__name__, exc)
            try:  # types no host had loaded (all of them in FaaS mode): from their kept copy
                loop = asyncio.get_running_loop()
                saved = await loop.run_in_executor(None, kept, self._config["cluster_id"])
                for name, entry in sorted(saved.items(), key=lambda e: e[1][1].colocate_with is not None):
                    if name not in self._types:
                        self._add_type(name, entry)
            except Exception as exc:  # callers that know the type register it again
                log.error("kept type registrations not read: %s: %s", type(exc).__name__, exc)
            self._recovered.set_result(None)
        await asyncio.shield(self._recovered)

    async def pid(self) -> int:
        """This process's id (tests kill the directory to check that the cluster survives)."""
        return os.getpid()

    async def config(self) -> dict[str, Any]:
        """Cluster settings every process needs: token, bind address, TLS, store, mode."""
        await self._ready()
        return self._config

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the registry ---------------------------------------------------------------------------

    async def register(self, name: str, blob: bytes, options: ActorOptions, methods: frozenset[str]) -> TypeInfo:
        """Register (or re-register) an actor type; its group's hosts start on first use."""
        await self._ready()
        entry = (blob, options, methods)
        known = self._types.get(name)
        info = self._add_type(name, entry)
        if known != entry:  # kept outside this process, for a directory restarted after a crash
            await asyncio.get_running_loop().run_in_executor(None, keep, self._config["cluster_id"], name, entry)
        return info

    def _add_type(self, name: str, entry: Entry) -> TypeInfo:
        _, options, methods = entry
        group = options.group
        if options.colocate_with is not None and group not in self._groups and self._config.get("mode") != "faas":
            raise NotFound(f"{name} is co-located with {group!r}, which is not registered")
        self._types[name] = entry
        if self._config.get("mode") == "faas":  # invocations are tasks: no hosts
            return TypeInfo(group, options.shards, methods)
        if group not in self._groups:  # hosts start on the group's first resolve
            g = Group(options, [Part() for _ in range(options.shards)])
            if options.autoscale is not None:
                g.policy = AutoscalePolicy(options.autoscale, options.min_hosts, options.max_hosts)
            if self._autoscaler is None:
                self._autoscaler = asyncio.get_running_loop().create_task(self._elastic_loop())
                self._spawn(self._counters_loop())
            self._groups[group] = g
            # ... or now, if the store holds reminders of the group (a cluster restarted
            # with reminders pending: they must fire without waiting for a call)
            self._spawn(self._start_if_reminders(group))
        return TypeInfo(group, len(self._groups[group].parts), methods)

    async def _start_if_reminders(self, group: str, within_s: float = math.inf) -> None:
        """Start a stopped group's hosts if it has a reminder due within ``within_s`` (any,
        at registration; one due soon, for a group scaled to zero: no host fires it)."""
        g = self._groups[group]
        loop = asyncio.get_running_loop()
        try:
            pending = await loop.run_in_executor(None, self._has_reminders, group, len(g.parts), within_s)
            if pending and not g.started:
                await self._check_feasible(g)
                self._start_group(group)
        except Exception as exc:  # the hosts still start on the group's first call
            log.warning("pending reminders of %s not checked: %s: %s", group, type(exc).__name__, exc)

    def _has_reminders(self, group: str, partitions: int, within_s: float = math.inf) -> bool:
        from .state import has_reminders

        if self._store is None:
            from .state import open_store

            self._store = open_store(self._config["store"])
        return any(has_reminders(self._store, group, p, within_s) for p in range(partitions))

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
        entry = self._types.get(name)
        if entry is None:
            raise NotFound(f"no actor type {name!r} is registered in this cluster")
        _, options, methods = entry
        group = self._groups.get(options.group)
        return TypeInfo(options.group, len(group.parts) if group else options.shards, methods)

    async def type_blob(self, name: str) -> bytes | None:
        """The pickled (class, options) of a type, for hosts that must load it."""
        await self._ready()
        entry = self._types.get(name)
        return entry[0] if entry else None

    async def type_routes(self) -> list[dict[str, Any]]:
        """Each registered type of a group with hosts (none in FaaS mode): its partition
        count, host count and bounds, and why it is not at the size asked for, if so."""
        await self._ready()
        out = []
        for name, (_, options, _) in sorted(self._types.items()):
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
        return sorted(self._types)

    def _group_of(self, name: str) -> tuple[str, Group]:
        entry = self._types.get(name)
        if entry is None:
            raise NotFound(f"no actor type {name!r} is registered in this cluster")
        group = entry[1].group
        g = self._groups.get(group)
        if g is None:
            raise FluentError(f"{name} has no hosts to scale: in FaaS mode the platform scales environments itself")
        return group, g

    # -- hosts --------------------------------------------------------------------------------------

    def _new_host(self, group: str, g: Group, extra: dict[str, Any] | None = None) -> Host:
        import ray

        hid = f"h{g.next_id}"
        g.next_id += 1
        opts = ray_options(host_spec(g.options))
        opts.setdefault("scheduling_strategy", "SPREAD")  # a type's hosts spread over the nodes
        for k, v in (extra or {}).items():
            opts[k] = {**opts.get(k, {}), **v} if k == "resources" else v
        handle: Any = (
            ray.remote(self._host_class)
            .options(
                max_restarts=-1,
                max_task_retries=0,
                max_concurrency=16,
                # detached and named: a host outlives a crash of the directory, which finds it again
                name=host_name(group, hid),
                namespace=ray_namespace(self._config["namespace"]),
                lifetime="detached",
                **opts,
            )
            .remote(group, hid, self._config["namespace"], len(g.parts))
        )
        host = Host(hid, handle)
        g.hosts[hid] = host
        return host

    def _start_group(self, group: str, count: int | None = None) -> None:
        """Start a group's hosts with every partition assigned (they claim them as they start)."""
        g = self._groups[group]
        if g.started:
            return
        g.started = True
        n = max(1, g.options.min_hosts) if count is None else count
        hosts = [self._new_host(group, g) for _ in range(n)]
        plan = assign(len(g.parts), {h.hid: "" for h in hosts}, {})
        for p, hid in plan.items():
            g.parts[p].host = hid

    async def host_ready(self, group: str, hid: str, endpoint: str, node_id: str) -> list[int]:
        """A host (re)started and serves ``endpoint``: the partitions it is to take (it
        claims them, then reports ``claimed``)."""
        await self._ready()
        g = self._groups.get(group)
        host = g.hosts.get(hid) if g is not None else None
        if host is None and g is not None and g.started and self._recovered_hosts:
            host = self._adopt_unknown(group, g, hid)  # it did not answer when the directory came back
        if g is None or host is None:
            return []  # a host that was stopped meanwhile
        host.endpoint, host.node_id = endpoint, node_id
        host.up.set()
        return [p for p, part in enumerate(g.parts) if part.host == hid and not part.moving]

    def _adopt_unknown(self, group: str, g: Group, hid: str) -> Host | None:
        """A host of a recovered group that was still starting when the directory came
        back: it joins the group and takes the partitions nobody holds."""
        import ray

        try:
            handle = ray.get_actor(host_name(group, hid), namespace=ray_namespace(self._config["namespace"]))
        except ValueError:
            return None
        host = g.hosts[hid] = Host(hid, handle)
        g.next_id = max(g.next_id, 1 + int(hid[1:])) if hid[1:].isdigit() else g.next_id
        for part in g.parts:
            if part.host is None or part.host not in g.hosts:
                part.host, part.route = hid, None
        return host

    async def claimed(self, group: str, hid: str, epochs: dict[int, int]) -> None:
        """A host claimed ``epochs`` (partition -> epoch) in the store: route callers to it."""
        await self._ready()
        g = self._groups.get(group)
        host = g.hosts.get(hid) if g is not None else None
        if g is None or host is None:
            return
        for p, epoch in epochs.items():
            part = g.parts[p]
            if part.host == hid and not part.moving and (part.route is None or epoch >= part.route.epoch):
                part.route = Route(host.endpoint, epoch, host.node_id)
                part.ready.set()

    async def resolve(self, group: str, shard: int) -> Route:
        """The current route of a partition, waiting (bounded) while its host starts or
        while it moves."""
        await self._ready()
        g = self._groups.get(group)
        if g is None:
            raise NotFound(f"no group {group!r}")
        if not 0 <= shard < len(g.parts):
            raise NotFound(f"{group} has no partition {shard}")
        part = g.parts[shard]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESOLVE_TIMEOUT_S
        while not part.ready.is_set():
            if not g.started and not g.lock.locked():  # first call, or scaled to zero
                await self._check_feasible(g)
                self._start_group(group)
            left = deadline - loop.time()
            if left <= 0:
                demand = resource_demand(host_spec(g.options))
                hint = f" (each host needs {demand}: are other hosts holding them?)" if demand else ""
                raise Unavailable(f"partition {group}/{shard} has no host after {RESOLVE_TIMEOUT_S} s{hint}")
            try:
                await asyncio.wait_for(part.ready.wait(), min(1.0, left))
            except TimeoutError:
                pass
        assert part.route is not None
        return part.route

    async def _check_feasible(self, g: Group) -> None:
        """Fail clearly (after a bounded wait for nodes to join) if no node fits a host."""
        import ray

        demand = resource_demand(host_spec(g.options))
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
        """A caller could not reach ``endpoint``: hold callers of its partitions until the
        host answers again (a broken stream), or Ray's restarted host claims them."""
        await self._ready()
        g = self._groups.get(group)
        if g is None or not 0 <= shard < len(g.parts):
            return
        part = g.parts[shard]
        if part.route is None or part.route.endpoint != endpoint or not part.ready.is_set():
            return
        host = g.hosts.get(part.host or "")
        if host is None:
            return
        held = [q for q in g.parts if q.route is not None and q.route.endpoint == endpoint and q.ready.is_set()]
        routes = {id(q): q.route for q in held}
        for q in held:
            q.ready.clear()
        try:
            info = await asyncio.wait_for(host.handle.info.remote(), RESOLVE_TIMEOUT_S)
        except Exception as exc:  # callers wait until Ray's restarted host claims them
            log.warning("host %s/%s did not answer (%s): waiting for its successor", group, host.hid, exc)
            return
        if info.get("endpoint") == endpoint:
            for q in held:
                if q.route is routes[id(q)]:
                    q.ready.set()

    async def hosts(self) -> list[tuple[str, str, Any]]:
        """Every host: (group, host id, actor handle)."""
        await self._ready()
        return [(name, hid, h.handle) for name, g in self._groups.items() for hid, h in g.hosts.items()]

    async def stats(self) -> dict[str, int]:
        """Counters summed over all hosts, those stopped or killed included (a killed host
        process's counts up to the last poll, at most ``_POLL_COUNTERS_S`` old)."""
        await self._ready()
        await self._poll_counters()
        return self._ledger.totals()

    async def _poll_counters(self) -> None:
        hosts = [(f"{name}/{hid}", h) for name, g in self._groups.items() for hid, h in g.hosts.items()]
        up = [(key, h) for key, h in hosts if h.up.is_set()]
        results = await asyncio.gather(
            *(asyncio.wait_for(h.handle.report.remote(), 10) for _, h in up), return_exceptions=True
        )
        for (key, _), result in zip(up, results, strict=True):
            if not isinstance(result, BaseException):
                self._ledger.seen(key, *result)

    async def _counters_loop(self) -> None:
        while True:
            await asyncio.sleep(_POLL_COUNTERS_S)
            try:
                await self._poll_counters()
            except Exception:
                log.exception("polling host counters failed")

    async def shutdown_hosts(self) -> None:
        """Passivate every identity on every host (runs on_deactivate, flushes state)."""
        await self._ready()
        if self._autoscaler is not None:
            self._autoscaler.cancel()
        handles = [h.handle for g in self._groups.values() for h in g.hosts.values()]
        await asyncio.gather(*(h.shutdown.remote() for h in handles), return_exceptions=True)

    # -- placement: moves, scaling, rebalancing -------------------------------------------------------

    async def placement(self, name: str) -> dict[str, list[int]]:
        """``cluster.placement``: host id -> the partitions it serves ({} with no hosts,
        as in FaaS mode)."""
        await self._ready()
        if self._config.get("mode") == "faas" and name in self._types:
            return {}
        _, g = self._group_of(name)
        return g.placement()

    async def move_pauses(self, name: str) -> list[float]:
        """How long (ms) each partition move of the type held its callers."""
        await self._ready()
        _, g = self._group_of(name)
        return list(g.pauses_ms)

    async def scale(self, name: str, hosts: int) -> dict[str, list[int]]:
        """``cluster.scale``: run ``hosts`` hosts, partitions spread evenly; returns the placement."""
        await self._ready()
        group, g = self._group_of(name)
        if not isinstance(hosts, int) or isinstance(hosts, bool) or not 0 <= hosts <= g.options.max_hosts:
            raise FluentError(f"{name}: hosts must be an int from 0 to max_hosts={g.options.max_hosts}, not {hosts!r}")
        async with g.lock:
            await self._scale(group, g, hosts)
        return await self.placement(name)

    async def rebalance(self) -> dict[str, dict[str, list[int]]]:
        """``cluster.rebalance``: even out every group's hosts over the nodes, and its
        partitions over its hosts."""
        await self._ready()
        out = {}
        for group, g in list(self._groups.items()):
            async with g.lock:
                if g.hosts:
                    await self._spread(group, g)
                    await self._settle(group, g, list(g.hosts))
            out[group] = g.placement()
        return out

    async def _scale(self, group: str, g: Group, n: int) -> None:
        if n == 0:
            await self._stop_all(group, g)
            return
        if not g.started:
            await self._check_feasible(g)
            self._start_group(group, n)
            await self._wait_hosts(g, list(g.hosts.values()))
            await asyncio.wait_for(asyncio.gather(*(q.ready.wait() for q in g.parts)), HOST_START_S)
            return
        current = list(g.hosts)
        if n > len(current):
            new = [self._new_host(group, g) for _ in range(n - len(current))]
            try:
                await self._wait_hosts(g, new)
            except FluentError as exc:
                await self._stop_hosts(g, new)
                g.problem = str(exc)
                raise
            keep = [*current, *(h.hid for h in new)]
        else:
            placed = g.placement()
            by_load = sorted(current, key=lambda hid: (len(placed[hid]), -int(hid[1:])))
            keep = sorted(by_load[len(current) - n :], key=lambda hid: int(hid[1:]))
        await self._settle(group, g, keep)
        await self._stop_hosts(g, [g.hosts[hid] for hid in current if hid not in keep])
        g.problem = ""

    async def _wait_hosts(self, g: Group, hosts: list[Host]) -> None:
        """Wait until ``hosts`` have started (Ray placed them); FluentError saying why not."""
        try:
            await asyncio.wait_for(asyncio.gather(*(h.up.wait() for h in hosts)), HOST_START_S)
        except TimeoutError:
            import ray

            demand = resource_demand(host_spec(g.options))
            free = ray.available_resources()  # type: ignore[no-untyped-call]
            raise FluentError(
                f"{g.options.name}: a new host could not be placed within {HOST_START_S:g} s (each host needs "
                f"{demand or 'no resources'}; free now: {free}); the type stays at {len(g.hosts) - len(hosts)} hosts"
            ) from None

    async def _settle(self, group: str, g: Group, keep: list[str]) -> None:
        """Move partitions so that ``keep`` serve them all, evenly over hosts and nodes."""
        live = {hid: g.hosts[hid].node_id for hid in keep}
        current = {p: q.host for p, q in enumerate(g.parts) if q.host is not None}
        plan = assign(len(g.parts), live, current)
        todo = moves(current, plan, set(g.hosts))
        gate = asyncio.Semaphore(_MOVES_AT_ONCE)

        async def one(p: int, dst: str) -> None:
            async with gate:
                await self._move(group, g, p, g.hosts[dst])

        results = await asyncio.gather(*(one(m.partition, m.dst) for m in todo), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise FluentError(f"{len(failed)} of {len(todo)} partition moves of {group} failed: {failed[0]}")

    async def _move(self, group: str, g: Group, p: int, dst: Host) -> None:
        """Move partition ``p`` to ``dst``: drain and write it on its host, claim it on
        ``dst``; callers are held meanwhile. If ``dst`` cannot take it, it goes back."""
        part = g.parts[p]
        src = g.hosts.get(part.host or "")
        if src is dst:
            return
        started = time.monotonic()
        part.ready.clear()
        part.moving = True
        try:
            await self._hand_over(group, g, p, src, dst)
        finally:
            part.moving = False
        g.pauses_ms.append((time.monotonic() - started) * 1000.0)
        del g.pauses_ms[:-10_000]

    async def _hand_over(self, group: str, g: Group, p: int, src: Host | None, dst: Host) -> None:
        part = g.parts[p]
        handoff: dict[str, bytes] = {}
        if src is not None:
            try:
                released = await asyncio.wait_for(src.handle.release.remote([p], DRAIN_S), DRAIN_S + 60)
                handoff = released.get(p, {})
            except Exception as exc:  # the host died: its state is in the store, as after a crash
                log.warning("partition %s/%s: its host %s did not hand it over (%s)", group, p, src.hid, exc)
        target = dst
        try:
            epochs = await asyncio.wait_for(dst.handle.adopt.remote([p], {p: handoff}), HOST_START_S)
        except Exception as exc:
            if src is None:
                part.host = None
                raise FluentError(f"partition {group}/{p} could not be placed on {dst.hid}: {exc}") from exc
            log.warning("partition %s/%s stays on %s: %s could not take it (%s)", group, p, src.hid, dst.hid, exc)
            target = src
            epochs = await asyncio.wait_for(src.handle.adopt.remote([p], {p: handoff}), HOST_START_S)
        part.host = target.hid
        part.route = Route(target.endpoint, epochs[p], target.node_id)
        part.ready.set()

    async def _stop_hosts(self, g: Group, hosts: list[Host]) -> None:
        """Stop hosts that serve no partition any more, keeping their counters."""
        import ray

        for host in hosts:
            g.hosts.pop(host.hid, None)
        if not hosts:
            return
        started = [h for h in hosts if h.up.is_set()]  # one never placed would never answer
        reports = await asyncio.gather(
            *(asyncio.wait_for(h.handle.report.remote(), 30) for h in started), return_exceptions=True
        )
        for host, report in zip(started, reports, strict=True):
            if not isinstance(report, BaseException):
                self._ledger.seen(f"{g.options.group}/{host.hid}", *report)
        for host in hosts:
            self._ledger.ended(f"{g.options.group}/{host.hid}")
            ray.kill(host.handle, no_restart=True)

    async def _stop_all(self, group: str, g: Group) -> int:
        """Every partition written and unassigned, every host stopped (resources freed); the
        group starts again on its next call."""
        hosts = list(g.hosts.values())
        placed = g.placement()
        for part in g.parts:
            part.ready.clear()

        async def drain(host: Host) -> None:
            mine = placed[host.hid]
            try:
                await asyncio.wait_for(host.handle.release.remote(mine, DRAIN_S), DRAIN_S + 60)
                await asyncio.wait_for(host.handle.shutdown.remote(), 60)
            except Exception as exc:
                log.warning("host %s/%s did not drain before stopping: %s", group, host.hid, exc)

        await asyncio.gather(*(drain(h) for h in hosts))
        await self._stop_hosts(g, hosts)
        for part in g.parts:
            part.host, part.route = None, None
        g.started = False
        return len(hosts)

    async def stop_group(self, group: str) -> int:
        """Passivate and stop a group's hosts, freeing their resources (GPUs); they start
        again on the group's next call. Returns how many hosts were stopped."""
        await self._ready()
        g = self._groups.get(group)
        if g is None:
            raise NotFound(f"no group {group!r}")
        async with g.lock:
            return await self._stop_all(group, g)

    async def move_shard(self, group: str, shard: int, resources: dict[str, float] | None = None) -> Route:
        """Move one partition to a new host of its own (on nodes with ``resources``)."""
        await self._ready()
        g = self._groups[group]
        async with g.lock:
            if not g.started:
                self._start_group(group)
            host = self._new_host(group, g, {"resources": resources} if resources else None)
            await self._wait_hosts(g, [host])
            await self._move(group, g, shard, host)
        return await self.resolve(group, shard)

    async def _spread(self, group: str, g: Group) -> int:
        """Even out the group's hosts over the nodes that fit one (a node joined): a host
        on the fullest node is replaced by a new one on the emptiest, its partitions moved
        live. Returns how many hosts were replaced."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        demand = resource_demand(host_spec(g.options))
        loop = asyncio.get_running_loop()
        nodes = await loop.run_in_executor(None, ray.nodes)
        fit = sorted(
            n["NodeID"] for n in nodes if n.get("Alive") and missing_resources(demand, [n["Resources"]]) is None
        )
        replaced = 0
        for _ in range(len(g.hosts)):
            count = {node: 0 for node in fit}
            for h in g.hosts.values():
                if h.node_id in count:
                    count[h.node_id] += 1
            if len(count) < 2:
                break
            full = max(count, key=lambda n: (count[n], n))
            empty = min(count, key=lambda n: (count[n], n))
            if count[full] - count[empty] <= 1:
                break
            placed = g.placement()
            old = min((h for h in g.hosts.values() if h.node_id == full), key=lambda h: len(placed[h.hid]))
            new = self._new_host(group, g, {"scheduling_strategy": NodeAffinitySchedulingStrategy(empty, soft=False)})
            try:
                await self._wait_hosts(g, [new])
            except FluentError as exc:
                await self._stop_hosts(g, [new])
                g.problem = str(exc)
                break
            for p in placed[old.hid]:
                await self._move(group, g, p, new)
            await self._stop_hosts(g, [old])
            replaced += 1
        return replaced

    # -- autoscaling and joining nodes ------------------------------------------------------------------

    async def _elastic_loop(self) -> None:
        import ray

        loop = asyncio.get_running_loop()
        known: set[str] | None = None
        next_nodes = next_wake = 0.0
        while True:
            await asyncio.sleep(AUTOSCALE_TICK_S)
            joined = False
            if loop.time() >= next_nodes:
                next_nodes = loop.time() + _NODE_CHECK_S
                try:
                    nodes = await loop.run_in_executor(None, ray.nodes)
                except Exception as exc:
                    log.warning("could not list Ray's nodes: %s: %s", type(exc).__name__, exc)
                    nodes = None
                if nodes is not None:
                    alive = {n["NodeID"] for n in nodes if n.get("Alive")}
                    joined = known is not None and bool(alive - known)
                    known = alive
            wake = loop.time() >= next_wake
            if wake:
                next_wake = loop.time() + _REMINDER_WAKE_S
            for group, g in list(self._groups.items()):
                if g.lock.locked():
                    continue
                try:
                    if wake and not g.started and g.hosts == {}:
                        await self._start_if_reminders(group, within_s=2 * _REMINDER_WAKE_S)
                    if joined and len(g.hosts) > 1:
                        async with g.lock:
                            if await self._spread(group, g):
                                await self._settle(group, g, list(g.hosts))
                    if g.policy is not None:
                        await self._autoscale_once(group, g)
                except Exception as exc:
                    g.problem = f"autoscaling failed: {exc}"
                    log.warning("autoscaling %s: %s: %s", group, type(exc).__name__, exc)

    async def _autoscale_once(self, group: str, g: Group) -> None:
        assert g.policy is not None
        hosts = list(g.hosts.values())
        loads = await asyncio.gather(
            *(asyncio.wait_for(h.handle.load.remote(), 5) for h in hosts if h.up.is_set()), return_exceptions=True
        )
        load = float(sum(x for x in loads if isinstance(x, int)))
        want = g.policy.handle(Sample(time.monotonic(), len(hosts), load))
        if want is None or want == len(hosts):
            return
        if want > len(hosts) and not g.started:
            return  # a stopped group starts on its next call
        async with g.lock:
            log.info("autoscaling %s: %d -> %d hosts (load %.1f)", group, len(g.hosts), want, load)
            try:
                await self._scale(group, g, want)
            except FluentError as exc:
                g.problem = str(exc)
