"""Pure placement logic: key -> shard, co-location groups, Ray options from resource specs."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ._numbers import check_number
from .elastic._autoscale import Autoscale
from .errors import FluentError


class Persist(enum.StrEnum):
    """When an identity's state is written, and so what its turns promise (README:
    "Exactness: the one rule"). A ``str`` too: ``Persist.CALL == "call"``."""

    CALL = "call"  # written before the reply; a turn that cannot be stored is rolled back
    INTERVAL = "interval"  # written behind, within FLUENTFN_FLUSH_S; memory handed over at a move
    NEVER = "never"  # memory only: handed over at a move, lost with a crash

    # What each mode promises, as plain attributes (read on every turn; set below).
    writes_before_reply: bool  # the durability point precedes the reply (so an idempotency key can be honoured)
    writes_behind: bool  # written behind, by the host's flush
    memory_only: bool  # never written


for _mode in Persist:
    _mode.writes_before_reply = _mode is Persist.CALL
    _mode.writes_behind = _mode is Persist.INTERVAL
    _mode.memory_only = _mode is Persist.NEVER
del _mode


PERSIST_MODES = tuple(m.value for m in Persist)


def persist_mode(value: object) -> Persist:
    """``value`` as a ``Persist``; FluentError naming the choices otherwise."""
    if isinstance(value, str) and value in PERSIST_MODES:
        return Persist(value)
    raise FluentError(f"persist must be one of {PERSIST_MODES}, not {value!r}")


def key_hash(key: str) -> int:
    """A 64-bit hash of a key that is the same in every process and Python version."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def jump_hash(h: int, buckets: int) -> int:
    """Lamping & Veach's jump consistent hash: growing ``buckets`` moves few keys."""
    if buckets <= 0:
        raise ValueError("buckets must be positive")
    b, j = -1, 0
    h &= 0xFFFFFFFFFFFFFFFF
    while j < buckets:
        b = j
        h = (h * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((h >> 33) + 1)))
    return b


_HOMES: dict[tuple[str, int], int] = {}
_HOMES_MAX = 1 << 16


def shard_for(key: str, shards: int) -> int:
    """The shard that owns ``key`` among ``shards``: stable and uniform. The last keys'
    answers are kept: a call asks it up to three times (router, host, turn)."""
    if shards == 1:
        return 0  # what jump_hash gives for one bucket, without hashing the key
    home = _HOMES.get((key, shards))
    if home is None:
        if len(_HOMES) >= _HOMES_MAX:
            _HOMES.clear()  # a new generation: simpler and cheaper than an LRU per call
        home = _HOMES[(key, shards)] = jump_hash(key_hash(key), shards)
    return home


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """What each host of a type asks Ray for."""

    num_cpus: float | None = None
    num_gpus: float = 0
    resources: dict[str, float] = field(default_factory=dict)
    accelerator_type: str | None = None

    def validate(self) -> None:
        """One FluentError naming the first option that is not a finite number >= 0 of its kind."""
        if self.num_cpus is not None:
            check_number("num_cpus", self.num_cpus, positive=False, finite=True)
        gpus = check_number("num_gpus", self.num_gpus, positive=False, finite=True)
        if gpus > 1 and gpus != int(gpus):
            raise FluentError(f"num_gpus must be a whole number when above 1, not {self.num_gpus!r}")
        if not isinstance(self.resources, dict):
            raise FluentError(f"resources must be a dict of name -> amount, not {type(self.resources).__name__}")
        for name, amount in self.resources.items():
            if not isinstance(name, str) or not name:
                raise FluentError(f"resources: a resource name is a non-empty string, not {name!r}")
            check_number(f"resources[{name!r}]", amount, positive=False, finite=True)
        if self.accelerator_type is not None and not isinstance(self.accelerator_type, str):
            raise FluentError(f"accelerator_type must be a string, not {self.accelerator_type!r}")


def ray_options(spec: ResourceSpec) -> dict[str, Any]:
    """The Ray actor options for a host with ``spec`` (hosts reserve no CPU by default)."""
    opts: dict[str, Any] = {"num_cpus": 0 if spec.num_cpus is None else spec.num_cpus}
    if spec.num_gpus:
        opts["num_gpus"] = spec.num_gpus
    if spec.resources:
        opts["resources"] = dict(spec.resources)
    if spec.accelerator_type:
        opts["accelerator_type"] = spec.accelerator_type
    return opts


def resource_demand(spec: ResourceSpec) -> dict[str, float]:
    """The Ray resources one host of ``spec`` needs, by Ray's resource names."""
    demand = dict(spec.resources)
    if spec.num_cpus:
        demand["CPU"] = spec.num_cpus
    if spec.num_gpus:
        demand["GPU"] = spec.num_gpus
    if spec.accelerator_type:
        demand[f"accelerator_type:{spec.accelerator_type}"] = 0.001
    return demand


def missing_resources(demand: dict[str, float], nodes: list[dict[str, float]]) -> str | None:
    """Why no node can hold a host with ``demand`` (None if one can). Pure."""
    if any(all(node.get(k, 0.0) >= v for k, v in demand.items()) for node in nodes):
        return None
    parts = []
    for k, v in sorted(demand.items()):
        best = max((node.get(k, 0.0) for node in nodes), default=0.0)
        if best < v:
            parts.append(f"{k}: needs {v:g}, largest node has {best:g}")
    return "; ".join(parts) or "no single node has all of " + ", ".join(f"{k}={v:g}" for k, v in demand.items())


@dataclass(frozen=True, slots=True)
class ActorOptions:
    """The options of an actor type, as given to ``@ff.actor``.

    ``shards`` is the number of *partitions*: keys map to partitions by a stable hash,
    partitions to a varying set of between ``min_hosts`` and ``max_hosts`` hosts.
    """

    name: str
    shards: int = 64
    persist: Persist = Persist.CALL
    idle_timeout_s: float = 900.0
    spec: ResourceSpec = field(default_factory=ResourceSpec)
    colocate_with: str | None = None
    reentrant: bool = False
    min_hosts: int = 1
    max_hosts: int = 8
    autoscale: Autoscale | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.persist, Persist) and self.persist in PERSIST_MODES:
            object.__setattr__(self, "persist", Persist(self.persist))  # given as a string

    @property
    def partitions(self) -> int:
        return self.shards

    def validate(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise FluentError(f"invalid actor type name {self.name!r} (non-empty, no '/')")
        if not isinstance(self.shards, int) or isinstance(self.shards, bool) or not 1 <= self.shards <= 4096:
            raise FluentError("partitions (or shards) must be an int from 1 to 4096")
        for label, n in (("min_hosts", self.min_hosts), ("max_hosts", self.max_hosts)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise FluentError(f"{label} must be an int >= 0, not {n!r}")
        if self.max_hosts < 1:
            raise FluentError("max_hosts must be at least 1")
        if self.min_hosts > self.max_hosts:
            raise FluentError(f"min_hosts ({self.min_hosts}) must not exceed max_hosts ({self.max_hosts})")
        if self.shards < self.max_hosts:
            raise FluentError(
                f"partitions ({self.shards}) must be at least max_hosts ({self.max_hosts}): a host serves "
                "whole partitions"
            )
        if self.autoscale is not None and not isinstance(self.autoscale, Autoscale):
            raise FluentError(f"autoscale takes an ff.Autoscale, not {type(self.autoscale).__name__}")
        persist_mode(self.persist)
        check_number("idle_timeout_s", self.idle_timeout_s, positive=True)  # inf: never passivated
        if not isinstance(self.reentrant, bool):
            raise FluentError(f"reentrant must be True or False, not {self.reentrant!r}")
        self.spec.validate()

    @property
    def group(self) -> str:
        """The co-location group: types in one group share shard mapping and hosts."""
        return self.colocate_with or self.name
