"""``ff.init(mode="sim", seed=N)``: the handle on a simulated cluster, and how plain code
waits in it (a driver's blocking call runs the loop until its answer; a turn's or a
client's suspends its greenlet)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .. import _call, _ref
from .._ref import ActorRef, Future
from ..errors import CallTimeout, FluentError
from ..runtime import _cluster
from ._clock import EPOCH, real_monotonic, virtual_time
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
        self.wall_s = 0.0  # real seconds spent running the loop (for turns per second)
        self._patches = contextlib.ExitStack()  # virtual time, while it is open
        self._previous_ids: Callable[[], str] | None = None

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
                    _raise_internal(world)

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

    def stats(self) -> dict[str, int]:
        c = self.world.counters
        return {"calls": c["turns"], "turns": c["turns"], "messages": c["messages"], "crashes": c["crashes"],
                "store_writes": self.world.store.writes, "live_identities": len(self.world.identities)}  # fmt: skip

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
        _ref.set_invoker(None)
        self._patches.close()
        _call.set_request_id_source(self._previous_ids)
        with _cluster._lock:
            if _cluster._current is self:
                _cluster._current = None
        self.world.loop.close()

    def scale(self, actor_type: Any, hosts: int) -> dict[str, list[int]]:
        raise FluentError("a simulation has no hosts to scale (its identities are all in this process)")

    def placement(self, actor_type: Any) -> dict[str, list[int]]:
        return {}


class SimFuture(Future[Any]):
    """``.future()`` in sim mode: ``result()`` runs the simulation until it is done."""

    def __init__(self, world: World, inner: asyncio.Future[Any]) -> None:
        super().__init__()
        self._world = world
        self._inner = inner
        inner.add_done_callback(self._copy)

    def _copy(self, inner: asyncio.Future[Any]) -> None:
        exc = inner.exception()
        if exc is not None:
            self.set_exception(exc)
        else:
            self.set_result(inner.result())

    def result(self, timeout: float | None = None) -> Any:
        if not self._inner.done():
            if timeout is None:
                block(self._world, self._inner)
            else:
                limit = asyncio.ensure_future(
                    asyncio.wait_for(asyncio.shield(self._inner), timeout), loop=self._world.loop
                )
                try:
                    block(self._world, limit)
                except TimeoutError:
                    raise CallTimeout(f"no reply within {timeout} s") from None
        return self._inner.result()  # (its copy into this future is a callback that may not have run yet)

    def __await__(self) -> Any:
        return self._inner.__await__()


def block(world: World, fut: asyncio.Future[T]) -> T:
    """Wait for ``fut`` the way the running code can: a turn or a client suspends, a
    driver runs the simulation until ``fut`` is done."""
    if in_sim_greenlet():
        return wait(fut)
    loop = world.loop
    if loop.busy():
        raise FluentError("a blocking call from async code in sim mode: await .aio() instead")
    with running(world), loop.stepping():
        while not fut.done():
            if loop.next_event() is None:
                raise FluentError("the simulation stopped with nothing left to run and no answer to wait for")
            loop.step()
            _raise_internal(world)
    return fut.result()


def _raise_internal(world: World) -> None:
    if world.internal_errors:
        first = world.internal_errors[0]
        raise FluentError(f"the simulator failed ({len(world.internal_errors)} times): {first!r}") from first


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


@contextlib.contextmanager
def running(world: World) -> Iterator[None]:
    """The simulation's loop is this thread's while it runs (its real time is counted)."""
    started = real_monotonic()
    asyncio.set_event_loop(world.loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        sim = _cluster._current
        if isinstance(sim, Simulation) and sim.world is world:
            sim.wall_s += real_monotonic() - started


class LeftTheSimulation(RuntimeWarning):
    """Code started a thread or opened a socket while a simulation ran: what it does is not
    on the virtual clock, nor chosen by the seed, so a replay may differ."""


@contextlib.contextmanager
def _watch_escapes() -> Iterator[None]:
    """Warn (once per kind) when code starts a thread or connects a socket meanwhile."""
    import socket
    import threading
    import warnings

    said: set[str] = set()
    thread_start, connect = threading.Thread.start, socket.socket.connect

    def warn(kind: str) -> None:
        if kind not in said:
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


def start(seed: int = 0, **options: Any) -> Simulation:
    """Start a simulated cluster in this process (``ff.init(mode="sim")``): until its
    ``shutdown``, this process's ``time`` is the virtual clock and request ids are seeded."""
    sim = Simulation(seed, **options)
    with _cluster._lock:
        if _cluster._current is not None and not _cluster._current.closed:
            raise FluentError("fluentfn is already initialised in this process: call ff.shutdown() first")
        _cluster._current = sim
    _ref.set_invoker(sim.world)
    world = sim.world
    sim._previous_ids = _call.set_request_id_source(lambda: f"{world.ids.getrandbits(96):024x}")
    sim._patches.enter_context(virtual_time(world.clock, _sleep(sim)))
    sim._patches.enter_context(_watch_escapes())
    return sim


def run_client(world: World, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Start ``fn(*args)`` as a simulated client: plain code whose blocking calls suspend it."""
    return spawn(world.loop, fn, *args)


__all__ = ["EPOCH", "LeftTheSimulation", "SimFuture", "Simulation", "block", "run_client", "running", "start"]
