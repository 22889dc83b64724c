"""The elastic loop: hosts follow load (``fluentfn.elastic._autoscale`` decides), spread
onto nodes that join, and a group scaled to zero wakes for a reminder falling due."""

from __future__ import annotations

import asyncio
import logging
import time

from .._config import AUTOSCALE_TICK_S
from .._tables import Group
from ..elastic._autoscale import Sample
from ..errors import FluentError
from ._hosts import Hosts
from ._mover import Mover

log = logging.getLogger("fluentfn.directory")
_NODE_CHECK_S = 2.0  # how often Ray's node list is read (to spread hosts onto joining nodes)
_REMINDER_WAKE_S = 1.0  # how often a group scaled to zero is checked for a reminder falling due
LOAD_SAMPLE_S = 5.0  # how long a host's load sample is waited for


class Autoscaler:
    """Drives the groups' autoscaling policies and node spreading, one tick at a time."""

    def __init__(self, groups: dict[str, Group], hosts: Hosts, mover: Mover) -> None:
        self._groups = groups
        self._hosts = hosts
        self._mover = mover
        self._unsampled: set[str] = set()  # groups whose last tick had no load sample (said once)

    async def loop(self) -> None:
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
                    await self._tick(group, g, wake=wake, joined=joined)
                except Exception as exc:
                    g.problem = f"autoscaling failed: {exc}"
                    log.warning("autoscaling %s: %s: %s", group, type(exc).__name__, exc)

    async def _tick(self, group: str, g: Group, *, wake: bool, joined: bool) -> None:
        if wake and not g.started and g.hosts == {}:
            await self._hosts.start_if_reminders(group, within_s=2 * _REMINDER_WAKE_S)
        if joined and len(g.hosts) > 1:
            async with g.lock:
                if await self._mover.spread(group, g):
                    await self._mover.settle(group, g, list(g.hosts))
        if g.policy is not None:
            await self._autoscale_once(group, g)

    async def _autoscale_once(self, group: str, g: Group) -> None:
        assert g.policy is not None
        hosts = list(g.hosts.values())
        up = [h for h in hosts if h.up.is_set()]
        loads = await asyncio.gather(
            *(asyncio.wait_for(h.handle.load.remote(), LOAD_SAMPLE_S) for h in up), return_exceptions=True
        )
        counts = [x for x in loads if isinstance(x, int)]
        unknown = [(h.hid, x) for h, x in zip(up, loads, strict=True) if not isinstance(x, int)]
        if unknown:
            # A host that did not say its load is not idle (a saturated one answers late): the
            # policy counts it as full and shrinks nothing meanwhile (``Sample.silent``). Said
            # once, until every host answers again.
            if group not in self._unsampled:
                self._unsampled.add(group)
                hid, why = unknown[0]
                log.warning(
                    "autoscaling %s: host %s (%d of %d) did not say its load, counted as full until it does: %s",
                    group,
                    hid,
                    len(unknown),
                    len(up),
                    f"{type(why).__name__}: {why}" if isinstance(why, BaseException) else repr(why),
                )
        elif group in self._unsampled:
            self._unsampled.discard(group)
            log.info("autoscaling %s: every host says its load again", group)
        load = float(sum(counts))
        sample = Sample(time.monotonic(), len(hosts), load, starting=len(hosts) - len(up), silent=len(unknown))
        want = g.policy.handle(sample)
        if want is None or want == len(hosts):
            return
        if want > len(hosts) and not g.started:
            return  # a stopped group starts on its next call
        async with g.lock:
            log.info("autoscaling %s: %d -> %d hosts (load %.1f)", group, len(g.hosts), want, load)
            try:
                await self._mover.scale(group, g, want)
            except FluentError as exc:
                g.problem = str(exc)
