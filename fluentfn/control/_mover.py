"""Partition moves: scaling a group, settling partitions on hosts, spreading hosts over
nodes. The old host drains a partition and writes (or hands over) its state, the new one
claims the next epoch, and callers, held meanwhile, are sent to the new host."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from .._config import DRAIN_S, HOST_START_S
from .._ioloop import spawn
from .._tables import Group, Host, Route, host_spec
from ..elastic._assign import assign, moves
from ..errors import FluentError, Unavailable
from ..host._activations import Handoff
from ..placement import missing_resources, resource_demand
from ._hosts import Hosts

log = logging.getLogger("fluentfn.directory")
_MOVES_AT_ONCE = 1  # partitions moving at the same time within one group
_REPAIR_FIRST_S = 0.5  # a partition that no host took: the first retry, then doubling
_REPAIR_MAX_S = 10.0


@dataclass(slots=True)
class _Moved:
    """One move's timing (s): how long the old host went on serving, and the parts of its
    callers' pause (``Group.phases_ms``)."""

    served_s: float = 0.0
    transit_s: float = 0.0
    held_s: float = 0.0
    adopt_s: float = 0.0


class Mover:
    """Carries out placement changes (callers hold ``g.lock``)."""

    def __init__(self, hosts: Hosts) -> None:
        self._hosts = hosts
        self._repairs: set[asyncio.Task[None]] = set()

    async def scale(self, group: str, g: Group, n: int) -> None:
        if n == 0:
            await self.stop_all(group, g)
            return
        if not g.started:
            await self._hosts.check_feasible(g)
            self._hosts.start_group(group, n)
            await self._hosts.wait_up(g, list(g.hosts.values()))
            await asyncio.wait_for(asyncio.gather(*(q.ready.wait() for q in g.parts)), HOST_START_S)
            return
        current = list(g.hosts)
        if n > len(current):
            new = [self._hosts.new_host(group, g) for _ in range(n - len(current))]
            try:
                await self._hosts.wait_up(g, new)
            except FluentError as exc:
                await self._hosts.stop(g, new)
                g.problem = str(exc)
                raise
            keep = [*current, *(h.hid for h in new)]
        else:
            placed = g.placement()
            by_load = sorted(current, key=lambda hid: (len(placed[hid]), -int(hid[1:])))
            keep = sorted(by_load[len(current) - n :], key=lambda hid: int(hid[1:]))
        await self.settle(group, g, keep)
        await self._hosts.stop(g, [g.hosts[hid] for hid in current if hid not in keep])
        g.problem = ""

    async def settle(self, group: str, g: Group, keep: list[str]) -> None:
        """Move partitions so that ``keep`` serve them all, evenly over hosts and nodes."""
        live = {hid: g.hosts[hid].node_id for hid in keep}
        current = {p: q.host for p, q in enumerate(g.parts) if q.host is not None}
        plan = assign(len(g.parts), live, current)
        todo = moves(current, plan, set(g.hosts))
        gate = asyncio.Semaphore(_MOVES_AT_ONCE)

        async def one(p: int, dst: str) -> None:
            async with gate:
                await self.move(group, g, p, g.hosts[dst])

        results = await asyncio.gather(*(one(m.partition, m.dst) for m in todo), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise FluentError(f"{len(failed)} of {len(todo)} partition moves of {group} failed: {failed[0]}")

    async def move(self, group: str, g: Group, p: int, dst: Host) -> None:
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
            moved = await self._hand_over(group, g, p, src, dst)
        finally:
            part.moving = False
        # Callers with the route went on being served while the old host waited for a
        # moment no turn ran: their pause began when it stopped admitting, measured here
        # from the request's sending (its way to the host counts, conservatively). A
        # lookup of the route waited from ``started``: the longer hold, kept beside it.
        held_s = time.monotonic() - started
        g.pauses_ms.append((held_s - moved.served_s) * 1000.0)
        g.holds_ms.append(held_s * 1000.0)
        g.phases_ms.append((moved.transit_s * 1000.0, moved.held_s * 1000.0, moved.adopt_s * 1000.0))
        del g.pauses_ms[:-10_000], g.holds_ms[:-10_000], g.phases_ms[:-10_000]

    async def _hand_over(self, group: str, g: Group, p: int, src: Host | None, dst: Host) -> _Moved:
        """Returns how long ``src`` went on serving the partition before it stopped
        admitting, and how long the parts of its callers' pause took."""
        part = g.parts[p]
        control = self._hosts.control
        memory: Handoff = {}
        moved = _Moved()
        if src is not None:
            asked = time.monotonic()
            try:
                released = (await control.release(src.endpoint, (group, src.hid), [p], DRAIN_S, DRAIN_S + 60)).get(p)
                if released is not None:
                    memory, moved.served_s, moved.held_s = released.memory, released.served_s, released.held_s
                    moved.transit_s = max(0.0, time.monotonic() - asked - released.took_s)
            except FluentError as exc:  # the host died: its state is in the store, as after a crash
                log.warning("partition %s/%s: its host %s did not hand it over (%s)", group, p, src.hid, exc)
        target = dst
        adopting = time.monotonic()
        try:
            epochs = await self._adopt(group, dst, p, memory)
        except FluentError as exc:
            if src is None:
                part.host = None
                raise FluentError(f"partition {group}/{p} could not be placed on {dst.hid}: {exc}") from exc
            log.warning("partition %s/%s stays on %s: %s could not take it (%s)", group, p, src.hid, dst.hid, exc)
            target = src
            try:
                epochs = await self._adopt(group, src, p, memory)
            except FluentError:
                spawn(self._repair(group, g, p, memory), self._repairs)
                raise
        part.host = target.hid
        part.route = Route(target.endpoint, epochs[p], target.node_id)
        part.ready.set()
        moved.adopt_s = time.monotonic() - adopting
        return moved

    async def _repair(self, group: str, g: Group, p: int, memory: Handoff) -> None:
        """A partition that neither host of its failed move took (both adopts failed, the
        store down, a host restarting): adopt it, with the memory its old host handed
        over, where the directory places it, after a pause that doubles, until it is
        served — or moved, claimed by a restarted host, unassigned, or its group stopped.
        Until then its callers are held, not refused."""
        delay = _REPAIR_FIRST_S
        while True:
            await asyncio.sleep(delay)
            delay = min(2 * delay, _REPAIR_MAX_S)
            async with g.lock:
                part = g.parts[p]
                host = g.hosts.get(part.host or "")
                if part.ready.is_set() or part.moving or host is None or not g.started:
                    return
                try:
                    epochs = await self._adopt(group, host, p, memory)
                except FluentError as exc:
                    log.warning("partition %s/%s: %s did not take it yet (%s)", group, p, host.hid, exc)
                    continue
                if part.route is None or epochs[p] >= part.route.epoch:  # the newest claim is this one
                    part.route = Route(host.endpoint, epochs[p], host.node_id)
                part.ready.set()
                log.info("partition %s/%s: served by %s again after its move failed", group, p, host.hid)
                return

    async def _adopt(self, group: str, host: Host, p: int, memory: Handoff) -> dict[int, int]:
        """``host`` claims and serves a partition; at its new endpoint if Ray restarted it
        meanwhile (a restarted host listens on a new port and announces it)."""
        endpoint = host.endpoint
        try:
            return await self._hosts.control.adopt(endpoint, (group, host.hid), {p: memory}, HOST_START_S)
        except Unavailable:
            if host.endpoint == endpoint:
                raise
            return await self._hosts.control.adopt(host.endpoint, (group, host.hid), {p: memory}, HOST_START_S)

    async def stop_all(self, group: str, g: Group) -> int:
        """Every partition written and unassigned, every host stopped (resources freed); the
        group starts again on its next call."""
        hosts = list(g.hosts.values())
        placed = g.placement()
        for part in g.parts:
            part.ready.clear()

        async def drain(host: Host) -> None:
            mine = placed[host.hid]
            try:
                await self._hosts.control.release(host.endpoint, (group, host.hid), mine, DRAIN_S, DRAIN_S + 60)
                await asyncio.wait_for(host.handle.shutdown.remote(), 60)
            except Exception as exc:  # gRPC's or Ray's: the host is stopped all the same
                log.warning("host %s/%s did not drain before stopping: %s", group, host.hid, exc)

        await asyncio.gather(*(drain(h) for h in hosts))
        await self._hosts.stop(g, hosts)
        for part in g.parts:
            part.host, part.route = None, None
            part.ready.clear()  # a report_down that ended meanwhile may have re-armed it
        g.started = False
        return len(hosts)

    async def to_new_host(self, group: str, g: Group, shard: int, resources: dict[str, float] | None) -> None:
        """Move one partition to a new host of its own (on nodes with ``resources``)."""
        if not g.started:
            self._hosts.start_group(group)
        host = self._hosts.new_host(group, g, {"resources": resources} if resources else None)
        await self._hosts.wait_up(g, [host])
        await self.move(group, g, shard, host)

    async def spread(self, group: str, g: Group) -> int:
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
            affinity = NodeAffinitySchedulingStrategy(empty, soft=False)
            new = self._hosts.new_host(group, g, {"scheduling_strategy": affinity})
            try:
                await self._hosts.wait_up(g, [new])
            except FluentError as exc:
                await self._hosts.stop(g, [new])
                g.problem = str(exc)
                break
            for p in placed[old.hid]:
                await self.move(group, g, p, new)
            await self._hosts.stop(g, [old])
            replaced += 1
        return replaced
