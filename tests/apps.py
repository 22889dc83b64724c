"""Actor types and functions shared by the integration tests."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

import fluentfn as ff


class Boom(ValueError):
    """A user exception type that must survive the trip."""


@ff.actor(name="TCounter")
class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.inits = 1

    def add(self, k: int = 1) -> int:
        self.n += k
        return self.n

    def get(self) -> int:
        return self.n

    def fail(self, msg: str) -> None:
        raise Boom(msg, 42)

    def where(self) -> dict[str, Any]:
        ctx = ff.context()
        return {"address": ctx.address, "key": ctx.key, "type": ctx.type_name, "node": ctx.node_id, "mode": ctx.mode}

    def echo(self, x: Any) -> Any:
        return x

    def _private(self) -> None:
        raise AssertionError("private methods are not callable")


@ff.actor(name="TOrder", colocate_with=Counter)
class OrderLog:
    """What it was sent, in the order its turns ran (only ``test_core``'s ordering tests use
    it: the first of them finds the type unknown to the caller and to the host)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def add(self, i: int) -> int:
        self.seen.append(i)
        return len(self.seen)

    async def add_async(self, i: int) -> int:
        self.seen.append(i)
        return len(self.seen)

    def get(self) -> list[int]:
        return self.seen


def drive_order_log(log: ff.ActorRef, n: int) -> list[int]:
    """Tells, futures and blocking calls to ``log`` in turn; what it saw, in order."""
    for i in range(n):
        if i % 3 == 0:
            log.add.tell(i)
        elif i % 3 == 1:
            log.add.future(i)
        else:
            log.add(i)
    return list(log.get())


@ff.actor(name="TOrderDriver", colocate_with=Counter)
class OrderDriver:
    """Sends an ``OrderLog`` on its host tells, futures and blocking calls in turn."""

    def drive(self, key: str, n: int) -> list[int]:
        return drive_order_log(OrderLog[key], n)  # its blocking calls run in this thread: not before the others


@ff.actor(name="TFarOrderDriver")
class FarOrderDriver:
    """``OrderDriver`` on a host of its own: its blocking calls to the log leave on its
    worker thread's own stream (``ThreadStream``), its tells and futures on the loop's."""

    def drive(self, key: str, n: int) -> list[int]:
        return drive_order_log(OrderLog[key], n)


@ff.actor(name="TPinger", shards=2)
class Pinger:
    """A -> B -> A chains and refs kept in state."""

    def __init__(self) -> None:
        self.peer: ff.ActorRef | None = None
        self.pongs = 0

    def set_peer(self, peer: ff.ActorRef) -> str:
        self.peer = peer
        return peer.address

    def get_peer(self) -> ff.ActorRef | None:
        return self.peer

    def ping(self, depth: int) -> int:
        """Bounce between self and peer ``depth`` times (A -> B -> A -> ...)."""
        if depth == 0:
            return 0
        assert self.peer is not None
        me = ff.ref(ff.context().address or "")
        return 1 + self.peer.ping_back.__call__(me, depth - 1)

    def ping_back(self, origin: ff.ActorRef, depth: int) -> int:
        self.pongs += 1
        if depth == 0:
            return 0
        return 1 + origin.ping(depth - 1)

    async def aping(self, other: ff.ActorRef) -> int:
        return int(await other.add.aio(1))

    def bump_other(self, other: ff.ActorRef, k: int) -> int:
        return int(other.add(k))


@ff.actor(name="TReentrant", reentrant=True, shards=1)
class Gate:
    """Two async calls that each wait for the other: only reentrancy lets both finish."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())

    async def meet(self, mine: str, theirs: str) -> str:
        self._event(mine).set()
        await asyncio.wait_for(self._event(theirs).wait(), 10)
        return mine


@ff.actor(name="TSerial", shards=1)
class Serial:
    """Counts overlapping turns: must never exceed one."""

    def __init__(self) -> None:
        self.max_inside = 0
        self._inside = 0
        self._lock = threading.Lock()

    def on_activate(self) -> None:
        self._inside = 0
        self._lock = threading.Lock()

    def work(self) -> int:
        import time

        with self._lock:
            self._inside += 1
            self.max_inside = max(self.max_inside, self._inside)
        time.sleep(0.002)
        with self._lock:
            self._inside -= 1
        return self.max_inside


@ff.actor(name="TLifecycle", idle_timeout_s=0.3, shards=1)
class Lifecycle:
    def __init__(self) -> None:
        self.inits = 0
        self.inits += 1
        self.activations = 0

    def on_activate(self) -> None:
        self.activations += 1

    def on_deactivate(self) -> None:
        ff.ref("TCounter/deactivations").add.tell(1)

    def state(self) -> tuple[int, int]:
        return self.inits, self.activations


@ff.function
def square(x: int) -> int:
    return x * x


@ff.function
def depth(n: int) -> int:
    """Calls itself ``n`` levels deep, each level waiting on the next inside its Ray task."""
    return 0 if n == 0 else int(depth(n - 1)) + 1


@ff.function(num_cpus=64)
def too_big() -> int:
    """Needs more CPUs than any node of the test cluster has."""
    return 1


@ff.function
def explode(msg: str) -> None:
    raise Boom(msg)


@ff.function
def call_counter(key: str, k: int) -> int:
    return int(ff.ref(f"TCounter/{key}").add(k))


@ff.function(max_duration_s=1.0)
def sleepy(s: float) -> float:
    import time

    time.sleep(s)
    return s


@ff.actor(name="DCounter", persist="call")
class DurableCounter:
    def __init__(self) -> None:
        self.n = 0
        self.inits = 1
        self.rings: list[str] = []

    def add(self, k: int = 1) -> int:
        self.n += k
        return self.n

    def get(self) -> int:
        return self.n

    def info(self) -> dict[str, Any]:
        return {"n": self.n, "inits": self.inits, "rings": self.rings}

    def remind(self, delay: float, tag: str) -> str:
        return ff.context().schedule(delay, "ring", tag)

    def cancel(self, rid: str) -> bool:
        return ff.context().cancel(rid)

    def ring(self, tag: str) -> None:
        self.rings.append(tag)


@ff.actor(name="ICounter", persist="interval")
class IntervalCounter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int = 1) -> int:
        self.n += k
        return self.n


@ff.actor(name="NCounter", persist="never")
class MemoryCounter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int = 1) -> int:
        self.n += k
        return self.n


@ff.actor(name="NRelay", persist="never", shards=1)
class Relay:
    """A memory-only type whose bulk items call out: its first turns run in batches."""

    def relay(self, target: ff.ActorRef) -> tuple[str | None, int]:
        return ff.context().address, target.add(1)


@ff.actor(name="IdleCounter", idle_timeout_s=0.3, shards=1)
class IdleCounter:
    def __init__(self) -> None:
        self.n = 0
        self.inits = 1
        self.activations = 0

    def on_activate(self) -> None:
        self.activations += 1

    def add(self, k: int = 1) -> tuple[int, int, int]:
        self.n += k
        return self.n, self.inits, self.activations


class _LabNode:
    """A node of the lab's fault tests: a count, and a call to a peer of its own type
    that says whether it was answered."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def get(self) -> int:
        return self.n

    def slow(self, seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "done"

    def ask(self, peer: str) -> str:
        """Call ``peer`` from this identity's turn: across a partition it never answers."""
        try:
            ff.ref(f"{ff.context().type_name}/{peer}").get.with_timeout(3.0)()  # ample on a busy machine
            return "answered"
        except ff.CallTimeout:
            return "timeout"


LabNode = ff.actor(name="LabNode", shards=4)(_LabNode)
FaasLabNode = ff.actor(name="FaasLabNode")(_LabNode)


@ff.actor(name="BigState")
class BigState:
    """A large state of which a turn usually changes a few bytes (partial writes)."""

    def __init__(self) -> None:
        self.blob = bytes(range(256)) * 4096  # 1 MiB, immutable: written once
        self.table = [0] * 300_000  # mutable, large: written when its bytes change
        self.n = 0
        self.notes: list[str] = []

    def bump(self) -> int:
        self.n += 1
        return self.n

    def poke(self, at: int, value: int) -> None:
        self.table[at] = value

    def swap_blob(self, fill: int) -> None:
        self.blob = bytes([fill]) * len(self.blob)

    def shrink(self) -> None:
        self.table = [1, 2, 3, 4, 5]

    def view(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "blob": hashlib.sha256(self.blob).hexdigest(),
            "table": hashlib.sha256(bytes(self.table)).hexdigest(),
            "tlen": len(self.table),
        }
