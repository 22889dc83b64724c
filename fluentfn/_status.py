"""What a host or a gateway says of itself (``ff.Client.status()``, ``fluentfn status``):
plain values, converted to and from protobuf only in ``transport/``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HostInfo:
    """One host of the cluster."""

    group: str = ""
    shard: int = 0
    endpoint: str = ""
    node_id: str = ""
    live_identities: int = 0
    epoch: int = 0
    gpu_ids: tuple[int, ...] = ()
    type_names: tuple[str, ...] = ()
    metrics_url: str = ""
    pid: int = 0
    host_id: str = ""
    partitions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TypeRoute:
    """One registered type: its group, partitions and host bounds."""

    type_name: str = ""
    group: str = ""
    shards: int = 0
    hosts: int = 0
    min_hosts: int = 0
    max_hosts: int = 0
    placement_problem: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    """A host's own status, or (from a gateway) the cluster's: every host and type."""

    host_id: str = ""
    node_id: str = ""
    type_names: tuple[str, ...] = ()
    live_identities: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    group: str = ""
    shard: int = 0
    epoch: int = 0
    hosts: tuple[HostInfo, ...] = ()
    types: tuple[TypeRoute, ...] = ()
    partitions: tuple[int, ...] = ()
    tunnel_port: int = 0
