"""Calling Ray from the runtime: Ray's exceptions never reach the user."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._ioloop import IoLoop
from ..errors import FluentError, Unavailable

log = logging.getLogger("fluentfn")

_NOT_CONNECTED = "not connected to the cluster (it was shut down in this process)"


def unwrap(exc: BaseException) -> BaseException:
    """The fluentfn error inside a Ray exception, or Unavailable for Ray's own failures."""
    import ray.exceptions

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        if isinstance(cause, FluentError):
            return type(cause)(*cause.args)
        return Unavailable(f"cluster error: {cause!r}")
    if isinstance(exc, ray.exceptions.RayError):
        return Unavailable(f"cluster error: {type(exc).__name__}: {exc}")
    if not isinstance(exc, FluentError) and not ray.is_initialized():
        # Ray left this process under the call (``ff.shutdown`` in another thread): Ray
        # then fails in its own ways (an AttributeError from a handle), not with its errors.
        return Unavailable(f"{_NOT_CONNECTED}: {exc!r}")
    return exc


async def await_ray(ref: Awaitable[Any]) -> Any:
    """Await an ObjectRef, translating Ray's exceptions."""
    try:
        return await ref
    except Exception as exc:
        raise unwrap(exc) from None


def get_ray(ref: Any, timeout: float | None = None) -> Any:
    """``ray.get`` with Ray's exceptions translated."""
    import ray

    try:
        return ray.get(ref, timeout=timeout)
    except Exception as exc:
        raise unwrap(exc) from None


def forbid_auto_start() -> None:
    """Once fluentfn has started or joined Ray in this process, a Ray call made while not
    connected fails (``Unavailable``) instead of starting a new, empty local Ray.

    Ray starts one, on first use, from whatever thread calls it. A call fluentfn's loop
    thread made after ``ff.shutdown`` (a route waiting out a directory restart) did that,
    and more than a stray cluster came of it: the thread that starts Ray gets the driver's
    task id and keeps it for the life of the process, so once the main thread started the
    next cluster the two threads made the same task ids, and Ray's driver failed a check
    ("Tried to create an owned object that already exists") and exited the process.
    Turning Ray's start-on-first-use off instead (``enable_auto_connect``) is not enough:
    the call then goes on into the core worker Ray is shutting down, and Ray exits the
    process for that too. So the hook that would start Ray raises; ``ff.init`` and
    ``ray.init`` connect as before."""
    import importlib

    names = ("ray._private.auto_init_hook", "ray._private.client_mode_hook", "ray.util.placement_group")
    try:
        modules = [importlib.import_module(name) for name in names]
    except ImportError as exc:  # a Ray that moved its hook: it may start itself, as before
        log.warning("Ray's start-on-first-use hook was not found (%s): Ray may start itself after ff.shutdown", exc)
        return
    holders = [module for module in modules if hasattr(module, "auto_init_ray")]
    if modules[0] not in holders:
        log.warning("Ray's start-on-first-use hook was not found: Ray may start itself after ff.shutdown")
        return
    if modules[0].auto_init_ray is _connected:
        return
    for module in holders:
        setattr(module, "auto_init_ray", _connected)  # noqa: B010 (Ray's own hook, by its name)


def leave_ray(io: IoLoop) -> None:
    """``ray.shutdown()``, run on fluentfn's loop thread when it is alive: no coroutine of
    fluentfn's touches Ray while Ray shuts down (the loop is busy with the shutdown), and
    afterwards each finds Ray gone (``forbid_auto_start``). A coroutine that resumed in the
    middle of the shutdown, as a directory call's failed reply came in, released its
    ObjectRef into the core worker Ray had just destroyed, and Ray exits the process for that."""
    import ray

    if not io.thread.is_alive() or io.in_loop():
        ray.shutdown()
        return

    async def on_loop() -> None:
        ray.shutdown()

    io.run(on_loop())


def _connected() -> None:
    """Unavailable once this process has left Ray; also the hook Ray calls before it would
    start itself (``forbid_auto_start``), so no call starts a new, empty local Ray."""
    import ray

    if not ray.is_initialized():
        raise Unavailable(f"{_NOT_CONNECTED}: ff.init() or ray.init() connects again")


def _restarting(exc: BaseException) -> bool:
    """Ray says the actor is dead or restarting (the directory comes back after a crash)."""
    import ray.exceptions

    return isinstance(exc, ray.exceptions.RayActorError)


async def await_directory(call: Callable[[], Awaitable[Any]], patience_s: float) -> Any:
    """``call()`` on the directory, waiting out a restart of it for ``patience_s``: callers
    see a pause, not an error, while the control plane comes back."""
    until = time.monotonic() + patience_s
    delay = 0.05
    while True:
        _connected()  # again after each wait: the cluster may have been shut down meanwhile
        try:
            ref = call()
            return await ref
        except Exception as exc:
            if not _restarting(exc) or time.monotonic() + delay > until:
                raise unwrap(exc) from None
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


def get_directory(call: Callable[[], Any], patience_s: float, timeout: float | None = None) -> Any:
    """``ray.get(call())`` on the directory, waiting out a restart of it (blocking)."""
    import ray

    until = time.monotonic() + patience_s
    delay = 0.05
    while True:
        _connected()  # again after each wait: the cluster may have been shut down meanwhile
        try:
            ref = call()
            return ray.get(ref, timeout=timeout)
        except Exception as exc:
            if not _restarting(exc) or time.monotonic() + delay > until:
                raise unwrap(exc) from None
        time.sleep(delay)
        delay = min(1.0, delay * 2)
