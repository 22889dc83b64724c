"""The process's I/O event loop, on a daemon thread: gRPC servers, streams, host turns."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from ._config import uvloop_wanted

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (lower wake-up latency), else the stock loop."""
    if uvloop_wanted():
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


class IoLoop:
    """An asyncio loop running forever on its own thread."""

    def __init__(self) -> None:
        self.loop = _new_loop()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, name="fluentfn-io", daemon=True)
        self.thread.start()
        self._started.wait()
        self._ident = self.thread.ident  # ``in_loop`` compares it, on every blocking call
        self.native_id: int = self.thread.native_id or 0  # the kernel's id (set once started)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        # Stopped (a private loop: tests): what its last pass scheduled still runs, such as
        # the wake-up of a thread whose reply came in that pass (``Waiter``).
        self.loop.run_until_complete(asyncio.sleep(0))

    def in_loop(self) -> bool:
        """True when called from the loop's own thread."""
        return threading.get_ident() == self._ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it (never call this from the loop)."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("IoLoop.run called from the I/O loop itself")
        return self.submit(coro).result(timeout)


_shared: IoLoop | None = None
_lock = threading.Lock()


def io_loop() -> IoLoop:
    """The process-wide I/O loop, started on first use."""
    global _shared
    with _lock:
        if _shared is None or not _shared.thread.is_alive():
            _shared = IoLoop()
        return _shared


def spawn(coro: Coroutine[Any, Any, T], bag: set[asyncio.Task[Any]]) -> asyncio.Task[T]:
    """Start a task on the running loop and keep a reference in ``bag`` until it ends."""
    task = asyncio.get_running_loop().create_task(coro)
    bag.add(task)
    task.add_done_callback(bag.discard)
    return task
