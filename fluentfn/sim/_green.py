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


def spawn(loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any, fresh: bool = False) -> asyncio.Future[T]:
    """Start ``fn(*args)`` in a new greenlet (at the loop's next step); its outcome lands in
    the returned future. ``fresh``: with empty context variables (a turn: none of its
    sender's), else a copy of the caller's."""
    out: asyncio.Future[T] = loop.create_future()

    def body() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # the outcome of fn, whatever it is, is its caller's
            if not out.done():
                out.set_exception(exc)
        else:
            if not out.done():
                out.set_result(result)

    root = greenlet.getcurrent()
    while root.parent is not None:  # the loop's greenlet: where every wait hands the thread back
        root = root.parent
    g = greenlet.greenlet(body, parent=root)
    g.gr_context = contextvars.Context() if fresh else contextvars.copy_context()
    loop.call_soon(g.switch)
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
