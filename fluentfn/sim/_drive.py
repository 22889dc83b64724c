"""How plain code waits in a simulation: a turn's or a client's greenlet suspends; a
driver steps the loop until what it waits for is done (``block``); ``.future()``'s
result does the same (``SimFuture``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

from .._ref import Future
from ..errors import CallTimeout, FluentError
from ._clock import SimLoop, real_monotonic
from ._green import in_sim_greenlet, wait

T = TypeVar("T")


class Driven(Protocol):
    """What driving needs of a simulated world."""

    loop: SimLoop
    internal_errors: list[BaseException]
    wall_s: float


class SimFuture(Future[Any]):
    """``.future()`` in sim mode: ``result()`` runs the simulation until it is done."""

    def __init__(self, world: Driven, inner: asyncio.Future[Any]) -> None:
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


def block(world: Driven, fut: asyncio.Future[T]) -> T:
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
            raise_internal(world)
    return fut.result()


def raise_internal(world: Driven) -> None:
    if world.internal_errors:
        first = world.internal_errors[0]
        raise FluentError(f"the simulator failed ({len(world.internal_errors)} times): {first!r}") from first


@contextlib.contextmanager
def running(world: Driven) -> Iterator[None]:
    """The simulation's loop is this thread's while it runs (its real time is counted)."""
    started = real_monotonic()
    asyncio.set_event_loop(world.loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        world.wall_s += real_monotonic() - started
