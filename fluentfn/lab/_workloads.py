"""The lab's workloads: each a plain fluentfn program (actor types on the public API) and
a generator of client operations, with the checker that judges its history.

- ``unique_ids``: ``IdNode`` identities hand out ids; no id twice (``unique-ids``).
- ``g_counter``: a grow-only counter as one ``GCounter`` identity per node, each counting
  the adds it took; a read sums every node's count (``g-counter``).
- ``lin_kv``: a key-value store with one ``LinKV`` identity per key (a key per node):
  read, write, cas (``kv``, linearizability).

Node names carry the run's tag, so runs on a durable store never see each other's state.

A broken variant of each, ``NAME_broken``, has a planted bug its checker must catch.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fluentfn as ff


class _IdNode:
    def __init__(self) -> None:
        self.n = 0

    def generate(self) -> str:
        self.n += 1
        return f"{ff.context().key}-{self.n}"


class _IdNodeBroken:
    """Broken: counts in memory only, and restarts its count at each activation."""

    def __init__(self) -> None:
        self.n = 0

    def generate(self) -> str:
        self.n += 1
        return f"id-{self.n}"  # and without its node's name: two nodes collide


class _GCounter:
    """Reads interleave (async, reentrant): two nodes reading each other at once must not
    wait on each other."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, delta: int) -> int:
        self.n += delta
        return self.n

    async def local(self) -> int:
        return self.n

    async def read(self, nodes: list[str]) -> int:
        """The sum of every node's count (a call to each; one that does not answer fails the read)."""
        me = ff.context().key
        counts = await asyncio.gather(*(GCounter[o].local.with_timeout(2.0).aio() for o in nodes if o != me))
        return self.n + sum(int(c) for c in counts)


class _GCounterBroken:
    """Broken: a read that cannot reach another node counts it as zero instead of failing."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, delta: int) -> int:
        self.n += delta
        return self.n

    async def local(self) -> int:
        return self.n

    async def read(self, nodes: list[str]) -> int:
        me = ff.context().key
        calls = [GCounterBroken[o].local.with_timeout(0.5).aio() for o in nodes if o != me]
        counts = await asyncio.gather(*calls, return_exceptions=True)
        return self.n + sum(c for c in counts if isinstance(c, int))  # the planted bug: lost nodes count 0


class _LinKV:
    def __init__(self) -> None:
        self.value: Any = None

    def read(self) -> Any:
        return self.value

    def write(self, v: Any) -> None:
        self.value = v

    def cas(self, old: Any, new: Any) -> bool:
        if self.value != old:
            return False
        self.value = new
        return True


class _LinKVBroken:
    """Broken: reads are served from a cache on another identity, refreshed only now and then."""

    def __init__(self) -> None:
        self.value: Any = None
        self.writes = 0

    def read(self) -> Any:
        return LinKVCache[ff.context().key or ""].get()

    def write(self, v: Any) -> None:
        self.value = v
        self.writes += 1
        if self.writes % 3 == 0:  # the planted bug: the cache misses two writes in three
            LinKVCache[ff.context().key or ""].put(v)

    def cas(self, old: Any, new: Any) -> bool:
        if self.value != old:
            return False
        self.value = new
        return True


class _LinKVCache:
    def __init__(self) -> None:
        self.value: Any = None

    def get(self) -> Any:
        return self.value

    def put(self, v: Any) -> None:
        self.value = v


IdNode = ff.actor(name="IdNode", persist="call")(_IdNode)
IdNodeBroken = ff.actor(name="IdNodeBroken", persist="never")(_IdNodeBroken)
GCounter = ff.actor(name="GCounter", persist="call", reentrant=True)(_GCounter)
GCounterBroken = ff.actor(name="GCounterBroken", persist="call", reentrant=True)(_GCounterBroken)
LinKV = ff.actor(name="LinKV", persist="call")(_LinKV)
LinKVBroken = ff.actor(name="LinKVBroken", persist="call")(_LinKVBroken)
LinKVCache = ff.actor(name="LinKVCache", persist="call")(_LinKVCache)


Op = tuple[str, Any]  # (f, value)


@dataclass(frozen=True)
class Workload:
    """A workload: its checker, its next client operation, how an operation runs (its
    output, or an exception), and the final reads that the checker judges by."""

    name: str
    checker: str
    type_name: str  # the identities the nemesis picks from
    next_op: Callable[[random.Random, list[str]], Op]
    run: Callable[[str, Any, list[str], random.Random], Any]
    finals: Callable[[list[str]], list[tuple[str, Any]]] = lambda nodes: []


def _ids(actor: Any, name: str) -> Workload:
    return Workload(
        name=name,
        checker="unique-ids",
        type_name=actor.name,
        next_op=lambda rng, nodes: ("generate", None),
        run=lambda f, v, nodes, rng: actor[rng.choice(nodes)].generate.with_timeout(2.0)(),
    )


def _counter(actor: Any, name: str) -> Workload:
    def run(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        node = rng.choice(nodes)
        if f == "add":
            actor[node].add.with_timeout(2.0)(v)
            return v
        return actor[node].read.with_timeout(5.0)(nodes)

    return Workload(
        name=name,
        checker="g-counter",
        type_name=actor.name,
        next_op=lambda rng, nodes: ("add", rng.randint(1, 5)) if rng.random() < 0.8 else ("read", None),
        run=run,
        finals=lambda nodes: [("read", None)],
    )


def _kv(actor: Any, name: str) -> Workload:
    def next_op(rng: random.Random, nodes: list[str]) -> Op:
        key, r = rng.choice(nodes), rng.random()  # a key per node
        if r < 0.5:
            return "read", [key, None]
        if r < 0.8:
            return "write", [key, rng.randint(0, 4)]
        return "cas", [key, [rng.randint(0, 4), rng.randint(0, 4)]]

    def run(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        key, arg = v
        ref = actor[key]
        if f == "read":
            return [key, ref.read.with_timeout(2.0)()]
        if f == "write":
            ref.write.with_timeout(2.0)(arg)
            return v
        if not ref.cas.with_timeout(2.0)(arg[0], arg[1]):
            raise DidNotHappen(f"cas {arg} found another value")
        return v

    return Workload(name=name, checker="kv", type_name=actor.name, next_op=next_op, run=run)


class DidNotHappen(Exception):
    """An operation that definitely took no effect (a cas whose compare failed): ``fail``."""


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "unique_ids": lambda: _ids(IdNode, "unique_ids"),
    "unique_ids_broken": lambda: _ids(IdNodeBroken, "unique_ids_broken"),
    "g_counter": lambda: _counter(GCounter, "g_counter"),
    "g_counter_broken": lambda: _counter(GCounterBroken, "g_counter_broken"),
    "lin_kv": lambda: _kv(LinKV, "lin_kv"),
    "lin_kv_broken": lambda: _kv(LinKVBroken, "lin_kv_broken"),
}
