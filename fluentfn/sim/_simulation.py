"""``ff.init(mode="sim", seed=N)``: the handle on a simulated cluster, and how plain code
waits in it (a driver's blocking call runs the loop until its answer; a turn's or a
client's suspends its greenlet)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .. import _call, _ref
from .._ref import ActorRef
from ..errors import CallTimeout, FluentError
from ..runtime import _cluster
from ._clock import EPOCH, virtual_time
from ._drive import block, raise_internal, running
from ._green import in_sim_greenlet, spawn, wait
from ._world import World

T = TypeVar("T")


class Simulation(_cluster.Cluster):
    """A simulated cluster (``ff.init(mode="sim", seed=N)``): every identity in this
    process on virtual time. A driver's calls run the simulation until they are answered;
    ``run_for``, ``run_until`` and ``fire_due_reminders`` move it on otherwise."""

    def __init__(
        self, seed: int = 0, *, latency_ms: float = 1.0, jitter_ms: float = 1.0, hosts_per_type: int = 1
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise FluentError(f"a simulation's seed is an int, not {seed!r}")
        self.world = World(seed, latency_ms=latency_ms, jitter_ms=jitter_ms, hosts_per_type=hosts_per_type)
        self.seed = seed
        self.mode = "sim"
        self.gateway = ""
        self.token = ""
        self.directory = None
        self.runtime: Any = self.world
        self.closed = False
        self._owns_ray = False
        self._server = None
        self._patches = contextlib.ExitStack()  # virtual time, while it is open
        self._previous_ids: Callable[[], str] | None = None
        self._restore: tuple[Any, Any] = (None, None)  # (the cluster open before, its invoker)

    def __enter__(self) -> Simulation:
        return self

    def __repr__(self) -> str:
        return f"<fluentfn Simulation seed={self.seed} t={self.now:.3f}s>"

    @property
    def now(self) -> float:
        """Virtual seconds since the simulation began."""
        return self.world.clock.now

    # -- moving time -------------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        """Run everything due in the next ``seconds`` of virtual time."""
        if seconds < 0:
            raise FluentError(f"run_for takes seconds >= 0, not {seconds!r}")
        self._run(None, self.now + seconds)

    def run_until(self, predicate: Callable[[], Any], timeout_s: float = 3600.0) -> Any:
        """Run until ``predicate()`` is truthy (checked after each step; returned), or
        ``CallTimeout`` after ``timeout_s`` of virtual time."""
        value = self._run(predicate, self.now + timeout_s)
        if not value:
            raise CallTimeout(f"run_until: not true within {timeout_s} virtual seconds")
        return value

    def _run(self, predicate: Callable[[], Any] | None, limit: float) -> Any:
        """Step the loop until ``predicate()`` is truthy (returned) or nothing is due by
        ``limit`` (the clock then stands at ``limit``; None)."""
        world, loop = self.world, self.world.loop
        with running(world), loop.stepping():
            while True:
                if predicate is not None:
                    with loop.paused():  # driver code: it may make blocking calls
                        value = predicate()
                    if value:
                        return value
                nxt = loop.next_event()
                if nxt is None or nxt > limit:  # idle, or the next event is past the limit
                    world.clock.now = max(world.clock.now, limit)
                    return None
                loop.step()
                if world.internal_errors:
                    raise_internal(world)

    def fire_due_reminders(self) -> None:
        """Run every reminder and timer due by now (and what they start at this instant)."""
        self.run_for(0.0)

    # -- faults and lifecycle ----------------------------------------------------------------

    def crash(self, target: str) -> int:
        """A simulated host crash: the identities on ``target``'s host (an address or a host
        name) lose their memory and unflushed writes. Returns how many identities it held."""
        return self.world.crash(target)

    def passivate(self, ref: ActorRef) -> None:
        """Take ``ref``'s identity out of memory (its state written first, as a host does
        when it passivates an idle identity); its next call activates it again."""
        world = self.world
        ident = world.identities.get(ref.address)
        if ident is None:
            return
        if ident.mailbox.running:
            raise FluentError(f"{ref.address} is running a turn: passivate it when idle")
        if ident.definition.options.persist.value == "interval":
            world.store.flush()
        ident.generation += 1
        del world.identities[ref.address]

    def stats(self, *, breakdown: bool = False) -> dict[str, Any]:
        """The simulation's counters (no time breakdown: its clock is virtual)."""
        c = self.world.counters
        return {"calls": c["turns"], "turns": c["turns"], "messages": c["messages"], "crashes": c["crashes"],
                "store_writes": self.world.store.writes, "live_identities": len(self.world.identities)}  # fmt: skip

    def cost(self) -> dict[str, Any]:
        """Refused: a simulation's clock is virtual and it uses no hosts, so nothing is priced."""
        raise FluentError("sim mode has no real hosts or clock to price: use ff.cost() on a stateful or FaaS cluster")

    @property
    def wall_s(self) -> float:
        """Real seconds spent running the simulation's loop so far."""
        return self.world.wall_s

    def turns_per_second(self) -> float:
        """Turns per real second spent running the simulation so far."""
        return self.world.counters["turns"] / self.wall_s if self.wall_s else 0.0

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.world.log is not None:
            self.world.log.close()
            self.world.log = None
        previous, invoker = self._restore
        _ref.set_invoker(invoker if previous is not None else None)
        self._patches.close()
        _call.set_request_id_source(self._previous_ids)
        with _cluster._lock:
            if _cluster._current is self:
                _cluster._current = previous
        self.world.loop.close()

    def scale(self, actor_type: Any, hosts: int) -> dict[str, list[int]]:
        raise FluentError("a simulation has no hosts to scale (its identities are all in this process)")

    def placement(self, actor_type: Any) -> dict[str, list[int]]:
        return {}


def _sleep(sim: Simulation) -> Callable[[float], None]:
    """``time.sleep`` while a simulation is open: a turn or a client waits on the virtual
    clock; the driver runs the simulation for that long (the world goes on meanwhile)."""
    world = sim.world

    def sleep(seconds: float) -> None:
        if in_sim_greenlet():
            wait(asyncio.ensure_future(asyncio.sleep(seconds), loop=world.loop))
        elif world.loop.busy():
            raise FluentError("time.sleep in async code on the simulation's loop: await asyncio.sleep instead")
        else:
            sim.run_for(seconds)

    return sleep


class LeftTheSimulation(RuntimeWarning):
    """Code started a thread or opened a socket while a simulation ran: what it does is not
    on the virtual clock, nor chosen by the seed, so a replay may differ."""


@contextlib.contextmanager
def _watch_escapes(owner: int) -> Iterator[None]:
    """Warn (once per kind) when the simulation's thread starts a thread or connects a
    socket meanwhile."""
    import socket
    import threading
    import warnings

    said: set[str] = set()
    thread_start, connect = threading.Thread.start, socket.socket.connect

    def warn(kind: str) -> None:
        if kind not in said and threading.get_ident() == owner:
            said.add(kind)
            warnings.warn(f"{kind} during a simulation: it runs outside virtual time and the seed, so a replay "
                          "may differ", LeftTheSimulation, stacklevel=3)  # fmt: skip

    def start(self: threading.Thread) -> None:
        warn("a thread was started")
        thread_start(self)

    def connecting(self: socket.socket, address: Any) -> None:
        warn("a socket was connected")
        connect(self, address)

    threading.Thread.start = start  # type: ignore[method-assign]
    socket.socket.connect = connecting  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        threading.Thread.start = thread_start  # type: ignore[method-assign]
        socket.socket.connect = connect  # type: ignore[method-assign]


def start(seed: int = 0, *, stack: bool = False, **options: Any) -> Simulation:
    """Start a simulated cluster in this process (``ff.init(mode="sim")``): until its
    ``shutdown``, this thread's ``time`` is the virtual clock and its request ids are
    seeded. ``stack``: allowed while another cluster is open here (``testing.sim``), which
    is this process's again after the simulation's shutdown."""
    sim = Simulation(seed, **options)
    with _cluster._lock:
        previous = _cluster._current if _cluster._current is not None and not _cluster._current.closed else None
        if previous is not None and not stack:
            raise FluentError("fluentfn is already initialised in this process: call ff.shutdown() first")
        sim._restore = (previous, _ref._invoker)
        _cluster._current = sim
    _ref.set_invoker(sim.world)
    world = sim.world
    owner = threading.get_ident()

    def ids() -> str:
        return f"{world.ids.getrandbits(96):024x}" if threading.get_ident() == owner else os.urandom(12).hex()

    sim._previous_ids = _call.set_request_id_source(ids)
    sim._patches.enter_context(virtual_time(world.clock, _sleep(sim)))
    sim._patches.enter_context(_watch_escapes(owner))
    return sim


def run_client(world: World, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Start ``fn(*args)`` as a simulated client: plain code whose blocking calls suspend it."""
    return spawn(world.loop, fn, *args)


__all__ = ["EPOCH", "LeftTheSimulation", "Simulation", "block", "run_client", "running", "start"]
