"""Host lifecycle and routes: hosts start, announce themselves, claim partitions, stop;
callers resolve a partition's route here (waiting while its host starts or it moves)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from .._clusterconfig import ClusterConfig
from .._config import HOST_START_S, RESOLVE_TIMEOUT_S
from .._fit import wait_for_fit
from .._ioloop import spawn
from .._tables import Group, Host, Part, Route, host_name, host_spec, ray_namespace
from ..elastic._assign import assign
from ..elastic._autoscale import AutoscalePolicy
from ..errors import FluentError, NotFound, Unavailable
from ..placement import ActorOptions, ray_options, resource_demand
from ..transport._control import ControlClient
from ._counters import Counters

log = logging.getLogger("fluentfn.directory")


def creation_error(exc: BaseException) -> str:
    """The cause in Ray's error for an actor whose constructor raised: its last line (the
    exception itself, after the remote traceback), at most 500 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:500]


class Hosts:
    """The groups' hosts and partition routes."""

    def __init__(self, config: ClusterConfig, host_class: type, groups: dict[str, Group], counters: Counters) -> None:
        self._config = config
        self._host_class = host_class  # the ShardHost class (given, so the control plane never imports the runtime)
        self.groups = groups
        self._counters = counters
        self._store: Any = None  # opened on first use (a directory on a store it never needs opens none)
        self.control = ControlClient(config.token, config.tls)  # moves, over the hosts' gRPC servers
        self.recovered = False  # the directory was restarted and found live hosts
        self._tasks: set[asyncio.Task[Any]] = set()  # start watches and replacements

    def group(self, options: ActorOptions) -> tuple[Group, bool]:
        """The group of ``options`` (made, without hosts, if new); True if it is new."""
        g = self.groups.get(options.group)
        if g is not None:
            return g, False
        g = Group(options, [Part() for _ in range(options.shards)])
        if options.autoscale is not None:
            g.policy = AutoscalePolicy(options.autoscale, options.min_hosts, options.max_hosts)
        self.groups[options.group] = g
        return g, True

    def new_host(self, group: str, g: Group, extra: dict[str, Any] | None = None) -> Host:
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
                namespace=ray_namespace(self._config.namespace),
                lifetime="detached",
                **opts,
            )
            .remote(group, hid, self._config.namespace, len(g.parts))
        )
        host = Host(hid, handle)
        g.hosts[hid] = host
        spawn(self._watch_start(group, host), self._tasks)
        return host

    async def _watch_start(self, group: str, host: Host) -> None:
        """Ray does not restart a host whose constructor raised (its store unreachable, say):
        without this, its partitions' callers would wait out their patience and the type
        stay down for good. Its callers get the cause, and another host is tried."""
        try:
            await host.handle.__ray_ready__.remote()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # its constructor raised, or its process died before it served
            if not host.up.is_set():
                self.start_failed(group, host, creation_error(exc))

    def start_failed(self, group: str, host: Host, why: str) -> None:
        """``host`` could not start: it leaves the group (killed, so that a restart of it
        serves nothing), callers waiting on its partitions get ``why``, and those
        partitions go to a new host after a pause that doubles with each failure in a row
        (0.5 s to 30 s), reset when a host of the group starts."""
        import ray

        g = self.groups.get(group)
        if g is None or g.hosts.get(host.hid) is not host:
            return
        del g.hosts[host.hid]
        try:
            ray.kill(host.handle, no_restart=True)
        except Exception as exc:  # (gone already)
            log.debug("host %s/%s not killed: %s", group, host.hid, exc)
        orphans = [p for p, part in enumerate(g.parts) if part.host == host.hid]
        for p in orphans:
            g.parts[p].host = None
        delay = min(30.0, 0.5 * 2**g.failures_in_row)
        host.failed = why
        g.start_failures += 1
        g.failures_in_row = min(g.failures_in_row + 1, 6)
        g.failed_why = f"host {host.hid} of {g.options.name} could not start ({why})"
        log.error("%s; its partitions go to a new host in %g s", g.failed_why, delay)
        if orphans:
            spawn(self._replace(group, g, orphans, delay), self._tasks)

    async def _replace(self, group: str, g: Group, orphans: list[int], delay: float) -> None:
        """After ``delay``, a new host for those of ``orphans`` nobody took meanwhile."""
        await asyncio.sleep(delay)
        if self.groups.get(group) is not g or not g.started:
            return
        left = [p for p in orphans if g.parts[p].host is None]
        if left:
            host = self.new_host(group, g)
            for p in left:
                g.parts[p].host = host.hid

    def start_group(self, group: str, count: int | None = None) -> None:
        """Start a group's hosts with every partition assigned (they claim them as they start)."""
        g = self.groups[group]
        if g.started:
            return
        g.started = True
        n = max(1, g.options.min_hosts) if count is None else count
        hosts = [self.new_host(group, g) for _ in range(n)]
        plan = assign(len(g.parts), {h.hid: "" for h in hosts}, {})
        for p, hid in plan.items():
            g.parts[p].host = hid

    def ready(self, group: str, hid: str, endpoint: str, node_id: str) -> list[int]:
        """A host (re)started and serves ``endpoint``: the partitions it is to take."""
        g = self.groups.get(group)
        host = g.hosts.get(hid) if g is not None else None
        if host is None and g is not None and g.started and self.recovered:
            host = self._adopt_unknown(group, g, hid)  # it did not answer when the directory came back
        if g is None or host is None:
            return []  # a host that was stopped meanwhile
        host.endpoint, host.node_id = endpoint, node_id
        host.up.set()
        g.failed_why, g.failures_in_row = "", 0
        return [p for p, part in enumerate(g.parts) if part.host == hid and not part.moving]

    def _adopt_unknown(self, group: str, g: Group, hid: str) -> Host | None:
        """A host of a recovered group that was still starting when the directory came
        back: it joins the group and takes the partitions nobody holds."""
        import ray

        try:
            handle = ray.get_actor(host_name(group, hid), namespace=ray_namespace(self._config.namespace))
        except ValueError:
            return None
        host = g.hosts[hid] = Host(hid, handle)
        g.next_id = max(g.next_id, 1 + int(hid[1:])) if hid[1:].isdigit() else g.next_id
        for part in g.parts:
            if part.host is None or part.host not in g.hosts:
                part.host, part.route = hid, None
        return host

    def claimed(self, group: str, hid: str, epochs: dict[int, int]) -> None:
        """A host claimed ``epochs`` (partition -> epoch) in the store: route callers to it."""
        g = self.groups.get(group)
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
        g = self.groups.get(group)
        if g is None:
            raise NotFound(f"no group {group!r}")
        if not 0 <= shard < len(g.parts):
            raise NotFound(f"{group} has no partition {shard}")
        part = g.parts[shard]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESOLVE_TIMEOUT_S
        failures = g.start_failures
        while not part.ready.is_set() or part.route is None:
            if part.ready.is_set():  # a stop took the route after a report_down re-armed it: wait
                part.ready.clear()
            if not g.started and not g.lock.locked():  # first call, or scaled to zero
                await self.check_feasible(g)
                self.start_group(group)
            if g.failed_why and (g.start_failures != failures or part.host is None):
                raise Unavailable(f"partition {group}/{shard} has no host: {g.failed_why}")
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

    async def check_feasible(self, g: Group) -> None:
        """Fail clearly (after a bounded wait for nodes to join) if no node fits a host."""
        await wait_for_fit(resource_demand(host_spec(g.options)), f"actor type {g.options.name}")

    async def report_down(self, group: str, shard: int, endpoint: str) -> None:
        """A caller could not reach ``endpoint``: hold callers of its partitions until the
        host answers again (a broken stream), or Ray's restarted host claims them."""
        g = self.groups.get(group)
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

    def endpoints(self) -> list[str]:
        """Every host's endpoint (once it announced one)."""
        return [h.endpoint for g in self.groups.values() for h in g.hosts.values() if h.endpoint]

    def handles(self) -> list[tuple[str, str, Any]]:
        """Every host: (group, host id, actor handle)."""
        return [(name, hid, h.handle) for name, g in self.groups.items() for hid, h in g.hosts.items()]

    async def wait_up(self, g: Group, hosts: list[Host]) -> None:
        """Wait until ``hosts`` have started (Ray placed them); FluentError saying why not."""
        loop = asyncio.get_running_loop()
        end = loop.time() + HOST_START_S
        try:
            while not all(h.up.is_set() for h in hosts):
                failed = next((h for h in hosts if h.failed), None)
                if failed is not None:
                    raise FluentError(f"{g.options.name}: host {failed.hid} could not start ({failed.failed})")
                left = end - loop.time()
                if left <= 0:
                    raise TimeoutError
                try:
                    await asyncio.wait_for(asyncio.gather(*(h.up.wait() for h in hosts)), min(0.5, left))
                except TimeoutError:
                    pass
        except TimeoutError:
            import ray

            demand = resource_demand(host_spec(g.options))
            free = ray.available_resources()  # type: ignore[no-untyped-call]
            raise FluentError(
                f"{g.options.name}: a new host could not be placed within {HOST_START_S:g} s (each host needs "
                f"{demand or 'no resources'}; free now: {free}); the type stays at {len(g.hosts) - len(hosts)} hosts"
            ) from None

    async def stop(self, g: Group, hosts: list[Host]) -> None:
        """Stop hosts that serve no partition any more, keeping their counters."""
        import ray

        for host in hosts:
            g.hosts.pop(host.hid, None)
        if not hosts:
            return
        # Its last replies first (acknowledgements of turns that ran): lost with the process,
        # their callers would send those calls again.
        up = [h for h in hosts if h.up.is_set()]
        await asyncio.gather(*(asyncio.wait_for(h.handle.quiesce.remote(5.0), 30) for h in up), return_exceptions=True)
        await self._counters.retire(g, hosts)
        for host in hosts:
            ray.kill(host.handle, no_restart=True)
            await self.control.forget(host.endpoint)

    async def start_if_reminders(self, group: str, within_s: float = math.inf) -> None:
        """Start a stopped group's hosts if it has a reminder due within ``within_s`` (any,
        at registration; one due soon, for a group scaled to zero: no host fires it)."""
        g = self.groups[group]
        loop = asyncio.get_running_loop()
        try:
            pending = await loop.run_in_executor(None, self._has_reminders, group, len(g.parts), within_s)
            if pending and not g.started:
                await self.check_feasible(g)
                self.start_group(group)
        except Exception as exc:  # the hosts still start on the group's first call
            log.warning("pending reminders of %s not checked: %s: %s", group, type(exc).__name__, exc)

    def _has_reminders(self, group: str, partitions: int, within_s: float = math.inf) -> bool:
        from ..state import has_reminders

        if self._store is None:
            from ..state import open_store

            self._store = open_store(self._config.store)
        return any(has_reminders(self._store, group, p, within_s) for p in range(partitions))
