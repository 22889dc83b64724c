"""What a restarted directory learns from the live hosts, as a pure function.

The directory keeps its tables in memory. When Ray restarts it after a crash, the hosts
are still running (they are detached actors) and each reports what it holds: its group,
endpoint, node, the partitions it owns with their epochs, and the type registrations it
has loaded. ``rebuild`` turns those reports into the directory's tables:

- a partition is owned by the host that claimed it at the highest epoch (the store
  refuses writes from any lower one, so another claimant is stale and must drop it);
- a partition no host owns (its move was under way when the directory died) goes to
  the group's hosts by ``assign``, to be adopted at a new epoch;
- the registry is the union of the hosts' registrations.

No Ray, no clocks: ``tests/test_rebuild.py`` checks it without either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._assign import assign


@dataclass(frozen=True, slots=True)
class HostReport:
    """One live host, as it describes itself (``ShardHost.recovery_info``)."""

    group: str
    host_id: str
    endpoint: str
    node_id: str
    owned: dict[int, int]  # partition -> epoch it claimed
    types: Sequence[tuple[str, bytes, Any, frozenset[str]]] = ()  # registrations it holds


@dataclass(slots=True)
class GroupPlan:
    """A group's rebuilt placement."""

    hosts: dict[str, HostReport] = field(default_factory=dict)
    owner: dict[int, tuple[str, int]] = field(default_factory=dict)  # partition -> (host id, epoch)
    stale: list[tuple[str, int]] = field(default_factory=list)  # (host id, partition) to drop
    adopt: dict[str, list[int]] = field(default_factory=dict)  # host id -> unowned partitions to take


def rebuild(reports: Sequence[HostReport], partitions: dict[str, int]) -> dict[str, GroupPlan]:
    """Per group (``partitions``: group -> its partition count; groups of unknown size
    are left out), who owns what, what is stale, and who adopts the unowned."""
    plans: dict[str, GroupPlan] = {}
    for report in sorted(reports, key=lambda r: (r.group, r.host_id)):
        if report.group not in partitions:
            continue
        plan = plans.setdefault(report.group, GroupPlan())
        plan.hosts[report.host_id] = report
        for p, epoch in sorted(report.owned.items()):
            if not 0 <= p < partitions[report.group]:
                continue
            held = plan.owner.get(p)
            if held is None or epoch > held[1]:
                if held is not None:
                    plan.stale.append((held[0], p))
                plan.owner[p] = (report.host_id, epoch)
            else:
                plan.stale.append((report.host_id, p))
    for group, plan in plans.items():
        unowned = [p for p in range(partitions[group]) if p not in plan.owner]
        if not unowned or not plan.hosts:
            continue
        current = {p: hid for p, (hid, _) in plan.owner.items()}
        placed = assign(partitions[group], {h: r.node_id for h, r in plan.hosts.items()}, current)
        for p in unowned:
            plan.adopt.setdefault(placed[p], []).append(p)
    return plans


def registry(reports: Sequence[HostReport]) -> dict[str, tuple[str, bytes, Any, frozenset[str]]]:
    """Type name -> registration, from every host's (any copy of a type will do)."""
    out: dict[str, tuple[str, bytes, Any, frozenset[str]]] = {}
    for report in reports:
        for entry in report.types:
            out.setdefault(entry[0], entry)
    return out
