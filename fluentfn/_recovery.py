"""A restarted directory's tables, rebuilt from the live hosts.

Hosts are detached, named actors (``_tables.host_name``): when Ray restarts the directory
after a crash they are still serving, and each reports what it holds
(``ShardHost.recovery_info``). ``recover`` asks them all and turns the pure plan of
``elastic._rebuild`` into the directory's tables: the registry, each group's hosts and the
route of every partition; stale claimants drop their copy, and partitions whose move was
under way are adopted at a new epoch (a ``persist="never"`` hand-over that was in flight
is lost with the old directory's memory).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ._config import HOST_START_S
from ._tables import HOST_NAME_PREFIX, Group, Host, Part, Route
from .elastic._autoscale import AutoscalePolicy
from .elastic._rebuild import HostReport, rebuild, registry
from .placement import ActorOptions
from .transport._control import ControlClient

log = logging.getLogger("fluentfn.directory")
_ASK_S = 10.0  # a host still starting does not answer; it announces itself later (host_ready)

Registration = tuple[str, bytes, ActorOptions, frozenset[str]]


async def _reports(ray_namespace: str) -> list[tuple[HostReport, Any]]:
    import ray

    loop = asyncio.get_running_loop()
    named = await loop.run_in_executor(None, lambda: ray.util.list_named_actors(all_namespaces=True))
    handles = []
    for entry in named:
        if entry.get("namespace") == ray_namespace and str(entry.get("name", "")).startswith(HOST_NAME_PREFIX):
            try:
                handles.append(ray.get_actor(entry["name"], namespace=ray_namespace))
            except ValueError:  # it died meanwhile
                continue
    infos = await asyncio.gather(
        *(asyncio.wait_for(h.recovery_info.remote(), _ASK_S) for h in handles), return_exceptions=True
    )
    out: list[tuple[HostReport, Any]] = []
    for handle, info in zip(handles, infos, strict=True):
        if isinstance(info, BaseException):
            log.warning("a host did not report to the restarted directory: %s: %s", type(info).__name__, info)
            continue
        report = HostReport(
            info["group"], info["host_id"], info["endpoint"], info["node_id"], info["owned"], info["types"]
        )
        out.append((report, handle))
    return out


async def recover(
    ray_namespace: str, control: ControlClient
) -> tuple[dict[str, tuple[bytes, ActorOptions, frozenset[str]]], dict[str, Group]]:
    """(registry, groups) rebuilt from the hosts alive in ``ray_namespace`` (``control``:
    the directory's channels for the hosts' moves)."""
    found = await _reports(ray_namespace)
    reports = [r for r, _ in found]
    handles = {(r.group, r.host_id): h for r, h in found}
    entries: dict[str, Registration] = registry(reports)
    types = {name: (blob, options, methods) for name, (_, blob, options, methods) in entries.items()}
    bases: dict[str, ActorOptions] = {}
    for _, _, options, _ in entries.values():  # a group's own options: those of the type it is named after
        if options.group not in bases or options.name == options.group:
            bases[options.group] = options
    plans = rebuild(reports, {g: o.shards for g, o in bases.items()})
    groups: dict[str, Group] = {}
    for group, plan in plans.items():
        options = bases[group]
        g = Group(options, [Part() for _ in range(options.shards)])
        if options.autoscale is not None:
            g.policy = AutoscalePolicy(options.autoscale, options.min_hosts, options.max_hosts)
        for hid, report in plan.hosts.items():
            host = Host(hid, handles[(group, hid)], report.endpoint, report.node_id)
            host.up.set()
            g.hosts[hid] = host
        g.next_id = 1 + max((int(h[1:]) for h in g.hosts if h[1:].isdigit()), default=-1)
        g.started = bool(g.hosts)
        for p, (hid, epoch) in plan.owner.items():
            part, host = g.parts[p], g.hosts[hid]
            part.host, part.route = hid, Route(host.endpoint, epoch, host.node_id)
            part.ready.set()
        # A lower epoch: its writes are refused; let it drop the copy.
        drops = [control.release(g.hosts[h].endpoint, (group, h), [p], 0.0, _ASK_S) for h, p in plan.stale]
        adoptions = list(plan.adopt.items())
        adopts = [
            control.adopt(g.hosts[h].endpoint, (group, h), {p: {} for p in ps}, HOST_START_S) for h, ps in adoptions
        ]
        dropped, epochs = await asyncio.gather(
            asyncio.gather(*drops, return_exceptions=True), asyncio.gather(*adopts, return_exceptions=True)
        )
        for (hid, p), failed in zip(plan.stale, dropped, strict=True):
            if isinstance(failed, BaseException):
                log.warning("host %s/%s did not drop its stale copy of %s: %s", group, hid, p, failed)
        for (hid, _), got in zip(adoptions, epochs, strict=True):
            if isinstance(got, BaseException):
                log.warning("host %s/%s could not adopt partitions on recovery: %s", group, hid, got)
                continue
            host = g.hosts[hid]
            for p, epoch in got.items():
                part = g.parts[p]
                part.host, part.route = hid, Route(host.endpoint, epoch, host.node_id)
                part.ready.set()
        groups[group] = g
    if groups:
        log.warning("directory restarted: %d types, %d groups and %d hosts recovered from the live hosts",
                    len(types), len(groups), sum(len(g.hosts) for g in groups.values()))  # fmt: skip
    return types, groups
