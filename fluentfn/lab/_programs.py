"""The lab workloads' programs: plain fluentfn actor types, and a broken twin of each with
one planted bug (see ``_workloads``)."""

from __future__ import annotations

import asyncio
import time
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
            ctx = ff.context()
            if ctx.mode == "faas":  # no memory between invocations: a durable reminder, as Lambda's scheduler
                ctx.schedule(delay, "flush")
            else:
                ctx.after(delay, "flush")


class _BNodeBroken(_BNode):
    """Broken: gossips each value once and never sends it again (a partition loses it)."""

    def flush(self) -> None:
        self.next_flush = float("inf")
        me = ff.context().key or ""
        for n, waiting in self.pending.items():
            if waiting:
                _peer(n).gossip.tell(sorted(waiting), me)
                waiting.clear()


IdNode = ff.actor(name="IdNode", max_hosts=32, persist="call")(_IdNode)
IdNodeBroken = ff.actor(name="IdNodeBroken", max_hosts=32, persist="never")(_IdNodeBroken)
GCounter = ff.actor(name="GCounter", max_hosts=32, persist="call", reentrant=True)(_GCounter)
GCounterBroken = ff.actor(name="GCounterBroken", max_hosts=32, persist="call", reentrant=True)(_GCounterBroken)
LinKV = ff.actor(name="LinKV", max_hosts=32, persist="call")(_LinKV)
LinKVBroken = ff.actor(name="LinKVBroken", max_hosts=32, persist="call")(_LinKVBroken)
BNode = ff.actor(name="BNode", max_hosts=32, persist="never")(_BNode)
BNodeBroken = ff.actor(name="BNodeBroken", max_hosts=32, persist="never")(_BNodeBroken)
LinKVCache = ff.actor(name="LinKVCache", max_hosts=32, persist="call")(_LinKVCache)
