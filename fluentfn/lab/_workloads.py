"""The lab's workloads: each a plain fluentfn program (actor types on the public API) and
a generator of client operations, with the checker that judges its history.

- ``unique_ids``: ``IdNode`` identities hand out ids; no id twice (``unique-ids``).
- ``g_counter``: a grow-only counter as one ``GCounter`` identity per node, each counting
  the adds it took; a read sums every node's count (``g-counter``).
- ``broadcast``: ``BNode`` identities gossip every value to their neighbors (a topology:
  tree, line or total), in batches, sending again what was not acknowledged; every
  node's final read holds every acknowledged broadcast (``broadcast``).
- ``lin_kv``: a key-value store with one ``LinKV`` identity per key (a key per node):
  read, write, cas (``kv``, linearizability).

Node names carry the run's tag, so runs on a durable store never see each other's state.

A broken variant of each, ``NAME_broken``, has a planted bug its checker must catch.
"""

from __future__ import annotations

import asyncio
import random
import time
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


class _GCounterBroken(_GCounter):
    """Broken: a read that cannot reach another node counts it as zero instead of failing."""

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


FLUSH_S = 0.05  # a node batches what it learned for this long before gossiping it
RESEND_S = 0.8  # a value a neighbor has not acknowledged is sent again this much later


def _peer(key: str) -> Any:
    """Another identity of the running identity's own type (a twin talks to its twins)."""
    return ff.ref(f"{ff.context().type_name}/{key}")


class _BNode:
    """A broadcast node: learns values, gossips them to its neighbors in batches, and
    sends again whatever a neighbor has not acknowledged (partitions heal). In memory
    (``persist="never"``), as Maelstrom's nodes are."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}  # value -> when it arrived here (wall clock)
        self.neighbors: list[str] = []
        self.pending: dict[str, dict[int, float]] = {}  # neighbor -> value -> last sent (0: never)
        self.next_flush = float("inf")  # when the soonest flush timer fires

    def topology(self, neighbors: list[str]) -> None:
        self.neighbors = list(neighbors)
        self.pending = {n: self.pending.get(n, {}) for n in neighbors}

    def broadcast(self, v: int) -> None:
        self._learn([v], "")

    def gossip(self, values: list[int], sender: str) -> None:
        self._learn(values, sender)
        _peer(sender).ack.tell(values, ff.context().key)

    def ack(self, values: list[int], sender: str) -> None:
        waiting = self.pending.get(sender, {})
        for v in values:
            waiting.pop(v, None)

    def read(self) -> list[int]:
        return sorted(self.seen)

    def arrivals(self) -> dict[int, float]:
        return dict(self.seen)

    def flush(self) -> None:
        """Gossip what each neighbor lacks (new values, and old ones unacknowledged too long)."""
        now = time.time()
        if now < self.next_flush - 0.005:  # a later timer than the one now due: nothing new
            return
        self.next_flush = float("inf")
        me = ff.context().key or ""
        for n, waiting in self.pending.items():
            due = [v for v, sent in waiting.items() if now - sent >= RESEND_S]
            if due:
                for v in due:
                    waiting[v] = now
                _peer(n).gossip.tell(due, me)
        if any(self.pending.values()):
            self._flush_soon(RESEND_S)

    def _learn(self, values: list[int], sender: str) -> None:
        new = [v for v in values if v not in self.seen]
        if not new:
            return
        now = time.time()
        for v in new:
            self.seen[v] = now
        for n in self.neighbors:
            if n != sender:
                waiting = self.pending.setdefault(n, {})
                for v in new:
                    waiting.setdefault(v, 0.0)
        self._flush_soon(FLUSH_S)

    def _flush_soon(self, delay: float) -> None:
        """A flush ``delay`` from now, unless one is due sooner (timers cannot be taken back:
        a later one finds nothing due and returns)."""
        due = time.time() + delay
        if due < self.next_flush:
            self.next_flush = due
            ff.context().after(delay, "flush")


class _BNodeBroken(_BNode):
    """Broken: gossips each value once and never sends it again (a partition loses it)."""

    def flush(self) -> None:
        self.next_flush = float("inf")
        me = ff.context().key or ""
        for n, waiting in self.pending.items():
            if waiting:
                _peer(n).gossip.tell(sorted(waiting), me)
                waiting.clear()


IdNode = ff.actor(name="IdNode", persist="call")(_IdNode)
IdNodeBroken = ff.actor(name="IdNodeBroken", persist="never")(_IdNodeBroken)
GCounter = ff.actor(name="GCounter", persist="call", reentrant=True)(_GCounter)
GCounterBroken = ff.actor(name="GCounterBroken", persist="call", reentrant=True)(_GCounterBroken)
LinKV = ff.actor(name="LinKV", persist="call")(_LinKV)
LinKVBroken = ff.actor(name="LinKVBroken", persist="call")(_LinKVBroken)
BNode = ff.actor(name="BNode", persist="never")(_BNode)
BNodeBroken = ff.actor(name="BNodeBroken", persist="never")(_BNodeBroken)
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
    # (process, f, value) of the reads run once the faults are healed
    finals: Callable[[list[str]], list[tuple[str, str, Any]]] = lambda nodes: []
    setup: Callable[[list[str], str], None] = lambda nodes, topology: None
    settle_s: float = 1.0  # the quiet moment after the faults heal, before the final reads
    # more results, from the nodes and the history (wall clock of its time 0)
    report: Callable[[list[str], list[Any], float], dict[str, Any]] = lambda nodes, events, t0: {}


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
        finals=lambda nodes: [("final", "read", None)],
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


def _tree(nodes: list[str], fanout: int = 4) -> dict[str, list[str]]:
    """Each node's neighbors in a tree of the nodes (Maelstrom's ``tree4``)."""
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for i, n in enumerate(nodes[1:], 1):
        parent = nodes[(i - 1) // fanout]
        out[n].append(parent)
        out[parent].append(n)
    return out


def topology_of(nodes: list[str], kind: str) -> dict[str, list[str]]:
    if kind == "tree":
        return _tree(nodes)
    if kind == "line":
        return {n: [m for m in (nodes[i - 1] if i else None, nodes[i + 1] if i + 1 < len(nodes) else None) if m]
                for i, n in enumerate(nodes)}  # fmt: skip
    if kind == "total":
        return {n: [m for m in nodes if m != n] for n in nodes}
    raise ValueError(f"a topology is tree, line or total, not {kind!r}")


def _broadcast(actor: Any, name: str) -> Workload:
    def next_op(rng: random.Random, nodes: list[str]) -> Op:
        if rng.random() < 0.85:
            return "broadcast", rng.randrange(1 << 40)
        return "read", rng.choice(nodes)

    def run(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        if f == "broadcast":
            actor[rng.choice(nodes)].broadcast.with_timeout(2.0)(v)
            return v
        return actor[v].read.with_timeout(2.0)()

    def setup(nodes: list[str], topology: str) -> None:
        for node, neighbors in topology_of(nodes, topology).items():
            actor[node].topology(neighbors)

    def report(nodes: list[str], events: list[Any], wall_t0: float) -> dict[str, Any]:
        """Stable latency: from a broadcast's acknowledgement until every node had it."""
        arrivals = [actor[n].arrivals() for n in nodes]
        spans: list[float] = []
        for e in events:
            if e.type == "ok" and e.f == "broadcast":
                seen = [a.get(e.value) for a in arrivals]
                if all(t is not None for t in seen):
                    spans.append(max(0.0, (max(seen) - (wall_t0 + e.time / 1e9)) * 1000))
        spans.sort()
        if not spans:
            return {"stable_latency_ms": {"p50": 0.0, "p99": 0.0, "max": 0.0}}
        pick = spans[min(len(spans) - 1, int(len(spans) * 0.99))]
        return {"stable_latency_ms": {"p50": round(spans[len(spans) // 2], 1), "p99": round(pick, 1),
                                      "max": round(spans[-1], 1)}}  # fmt: skip

    return Workload(
        name=name, checker="broadcast", type_name=actor.name, next_op=next_op, run=run,
        finals=lambda nodes: [(f"final:{n}", "read", n) for n in nodes], setup=setup, report=report,
        settle_s=3 * RESEND_S + 1.0,
    )  # fmt: skip


class DidNotHappen(Exception):
    """An operation that definitely took no effect (a cas whose compare failed): ``fail``."""


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "unique_ids": lambda: _ids(IdNode, "unique_ids"),
    "unique_ids_broken": lambda: _ids(IdNodeBroken, "unique_ids_broken"),
    "g_counter": lambda: _counter(GCounter, "g_counter"),
    "g_counter_broken": lambda: _counter(GCounterBroken, "g_counter_broken"),
    "lin_kv": lambda: _kv(LinKV, "lin_kv"),
    "broadcast": lambda: _broadcast(BNode, "broadcast"),
    "broadcast_broken": lambda: _broadcast(BNodeBroken, "broadcast_broken"),
    "lin_kv_broken": lambda: _kv(LinKVBroken, "lin_kv_broken"),
}
