"""The threads that run synchronous turns.

``size`` turns run at once. A turn reported overdue (past its deadline, still running:
a method that never returns, say) stops counting against ``size`` until it ends, so a
handful of stuck methods cannot starve the other identities of the host.

Each thread sets its own priority when it starts (``_priority.lower_this_thread``):
``nice`` steps behind its process's main thread, or level with it for ``nice=0`` (a
thread started by a host's raised event loop would otherwise inherit the loop's rank).
"""

from __future__ import annotations

import concurrent.futures
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .._priority import lower_this_thread

T = TypeVar("T")
_Item = tuple[concurrent.futures.Future[Any], Callable[[], Any]]


class Workers(concurrent.futures.Executor):
    """A thread pool whose limit grows by one for each turn reported stuck.

    Threads start on demand: when more work is queued than threads wait for it, and the
    limit allows. The counts are exact (kept under one lock), so a queued item never
    waits while the pool could start a thread for it.
    """

    def __init__(self, size: int, name: str, nice: int = 0) -> None:
        self._name = name
        self._nice = nice
        self._limit = size
        self._threads = 0
        self._idle = 0  # threads waiting for work
        self._queued = 0  # items not yet taken by a thread
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        if self._closed:
            raise RuntimeError("workers are shut down")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            self._queued += 1
            self._queue.put((fut, functools.partial(fn, *args, **kwargs)))
            start = self._wanted()
        if start:
            self._start()
        return fut

    def _wanted(self) -> bool:
        """Under the lock: start a thread (and count it) if queued work has no taker."""
        if self._queued > self._idle and self._threads < self._limit:
            self._threads += 1
            return True
        return False

    def _start(self) -> None:
        threading.Thread(target=self._run, name=f"{self._name}-{self._threads}", daemon=True).start()

    def _run(self) -> None:
        lower_this_thread(self._nice)
        while True:
            with self._lock:
                if self._threads > self._limit:  # a stuck turn ended: give the extra thread back
                    self._threads -= 1
                    return
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
                if item is None:
                    self._threads -= 1
                    self._queue.put(None)  # wake the next thread too
                    return
                self._queued -= 1
            fut, fn = item
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:
                    fut.set_exception(exc)
            del item, fut, fn

    def stuck(self) -> None:
        """A running turn is overdue: let one more thread run beside it."""
        with self._lock:
            self._limit += 1
            start = self._wanted()
        if start:
            self._start()

    def unstuck(self) -> None:
        """An overdue turn ended."""
        with self._lock:
            self._limit -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        self._queue.put(None)
