"""Plain (sync) code on the simulation's one thread: each turn of a sync method, and each
simulated client, runs in a greenlet of its own; where it waits (a blocking call, a
``time.sleep``) it hands the thread back to the event loop, and the loop hands it back
when what it waits for is done. Nothing runs in parallel, so a seed fixes the order.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

import greenlet

from ..errors import FluentError

T = TypeVar("T")


_idle: list[greenlet.greenlet] = []  # finished workers, reused (creating a greenlet costs more than a switch)


def _root() -> greenlet.greenlet:
    g = greenlet.getcurrent()
    while g.parent is not None:  # the loop's greenlet: where every wait hands the thread back
        g = g.parent
    return g


def _work(job: tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any], bool]) -> None:
    """A worker greenlet's life: run a job, go idle on the loop, take the next one (only
    workers of turns, which start from empty context variables, are pooled)."""
    me = greenlet.getcurrent()
    while True:
        fn, args, out, pooled = job
        try:
            result = fn(*args)
        except BaseException as exc:  # the outcome of fn, whatever it is, is its caller's
            if not out.done():
                out.set_exception(exc)
        else:
            if not out.done():
                out.set_result(result)
        del fn, args, out
        if not pooled:
            return
        _idle.append(me)
        assert me.parent is not None
        job = me.parent.switch()


def spawn(loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any, fresh: bool = False) -> asyncio.Future[T]:
    """Run ``fn(*args)`` in a greenlet of its own (now when called on the loop, else at its
    next step); its outcome lands in the returned future. ``fresh``: with empty context
    variables (a turn: none of its sender's), else a copy of the caller's."""
    out: asyncio.Future[T] = loop.create_future()
    root = _root()
    if fresh and _idle:  # a pooled worker: its context is empty again (a turn resets what it set)
        g = _idle.pop()
    else:
        g = greenlet.greenlet(_work, parent=root)
        g.gr_context = contextvars.Context() if fresh else contextvars.copy_context()
    job = (fn, args, out, fresh)
    if greenlet.getcurrent() is root:  # on the loop itself: start it now (it hands the thread back to here)
        g.switch(job)
    else:
        loop.call_soon(g.switch, job)
    return out


def in_sim_greenlet() -> bool:
    """Whether the running code is a greenlet ``spawn`` started (it may wait)."""
    return greenlet.getcurrent().parent is not None


def wait(fut: asyncio.Future[T]) -> T:
    """Suspend this greenlet until ``fut`` is done; its result (or exception)."""
    me = greenlet.getcurrent()
    parent = me.parent
    if parent is None:
        raise FluentError("only code the simulation runs (a turn, a client) can wait here")
    if not fut.done():
        fut.add_done_callback(lambda _: me.switch())
        parent.switch()  # back to the loop, until fut is done
    return fut.result()
