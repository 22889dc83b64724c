"""The threads that run synchronous turns.

``size`` turns run at once. A turn reported overdue (past its deadline, still running:
a method that never returns, say) stops counting against ``size`` until it ends, so a
handful of stuck methods cannot starve the other identities of the host.
"""

from __future__ import annotations

import concurrent.futures
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Workers(concurrent.futures.Executor):
    """A thread pool whose limit grows by one for each turn reported stuck."""

    def __init__(self, size: int, name: str) -> None:
        self._name = name
        self._limit = size
        self._threads = 0
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None]
        self._queue = queue.SimpleQueue()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._closed:
            raise RuntimeError("workers are shut down")
        self._queue.put((fut, functools.partial(fn, *args, **kwargs)))
        self._start_if_needed()
        return fut

    def _start_if_needed(self) -> None:
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if self._threads >= self._limit:
                return
            self._threads += 1
            n = self._threads
        threading.Thread(target=self._run, name=f"{self._name}-{n}", daemon=True).start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.put(None)  # wake the next thread too
                return
            fut, fn = item
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:
                    fut.set_exception(exc)
            del item, fut, fn
            with self._lock:
                if self._threads > self._limit:  # a stuck turn ended: give its extra thread back
                    self._threads -= 1
                    return
            self._idle.release()

    def stuck(self) -> None:
        """A running turn is overdue: let one more thread run beside it."""
        with self._lock:
            self._limit += 1
        if not self._queue.empty():
            self._start_if_needed()

    def unstuck(self) -> None:
        """An overdue turn ended."""
        with self._lock:
            self._limit -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        self._queue.put(None)
