"""The directory's tables: routes, type info, hosts, partitions and groups (no I/O).

Shared by the directory actor and its recovery (``_recovery``), which rebuilds them from
the live hosts after the directory restarts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ._config import AUTOSCALE_HOST_CPUS
from .elastic._autoscale import AutoscalePolicy
from .placement import ActorOptions, ResourceSpec

DIRECTORY_NAME = "fluentfn-directory"
HOST_NAME_PREFIX = "fluentfn-host:"
"""Hosts are named detached actors ``fluentfn-host:<group>:<host id>``: they outlive a
crash of the directory, which finds them again by name."""


def ray_namespace(namespace: str) -> str:
    """The Ray namespace that holds a fluentfn namespace's actors."""
    return f"fluentfn-{namespace}"


def host_name(group: str, hid: str) -> str:
    """The Ray actor name of a host."""
    return f"{HOST_NAME_PREFIX}{group}:{hid}"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a partition lives now."""

    endpoint: str
    epoch: int
    node_id: str


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What a caller needs to place a call: the type's group and partition count."""

    group: str
    shards: int
    methods: frozenset[str] = frozenset()


@dataclass
class Host:
    hid: str
    handle: Any
    endpoint: str = ""
    node_id: str = ""
    up: asyncio.Event = field(default_factory=asyncio.Event)
    failed: str = ""  # why its process could not start ("" while it starts, or once up)


@dataclass
class Part:
    host: str | None = None  # the host id it is assigned to
    route: Route | None = None
    moving: bool = False  # a move is under way: only the move sets the route
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Group:
    options: ActorOptions
    parts: list[Part]
    hosts: dict[str, Host] = field(default_factory=dict)
    started: bool = False
    next_id: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    problem: str = ""  # why the group is not at the size asked for ("" when it is)
    policy: AutoscalePolicy | None = None
    pauses_ms: list[float] = field(default_factory=list)  # how long each moved partition's callers were held
    holds_ms: list[float] = field(default_factory=list)  # ... and its route's lookups (the whole move)
    # ... and each pause in parts (ms): the release request's way to the old host and
    # back, the callers' hold there (late turns, hand-over), the adopt on the new host
    phases_ms: list[tuple[float, float, float]] = field(default_factory=list)
    start_failures: int = 0  # hosts of the group whose process could not start
    failed_why: str = ""  # the last one's cause, until a host of the group starts
    failures_in_row: int = 0  # since a host of the group last started (the retry pause doubles)

    def placement(self) -> dict[str, list[int]]:
        """Host id -> the partitions assigned to it (every host, even one with none)."""
        out: dict[str, list[int]] = {hid: [] for hid in self.hosts}
        for p, part in enumerate(self.parts):
            if part.host in out:
                out[part.host].append(p)
        return out


def host_spec(options: ActorOptions) -> ResourceSpec:
    """What each host of a type asks Ray for: its own needs, and for an autoscaled type
    without ``num_cpus`` a share of a CPU, so that Ray's autoscaler sees the demand."""
    spec = options.spec
    if options.autoscale is not None and spec.num_cpus is None:
        return ResourceSpec(AUTOSCALE_HOST_CPUS, spec.num_gpus, dict(spec.resources), spec.accelerator_type)
    return spec
