"""Calling Ray from the runtime: Ray's exceptions never reach the user."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import FluentError, Unavailable


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


_SUBMITTING = threading.Lock()
"""Held while a call to the directory is submitted: this process's threads (a driver's
main thread scaling a type, its loop resolving a route) submit to the one directory
handle one at a time. A driver crashed in Ray's reference counter ("Tried to create an
owned object that already exists") submitting from its loop while its main thread scaled
a type; submitting one at a time is the suspected cure, not a proven one. The submission
itself does not block: its result is waited for outside the lock."""


def _connected() -> None:
    """Unavailable once this process has left Ray: a Ray call then would start a new,
    empty local Ray (Ray connects on first use), not reach the cluster."""
    import ray

    if not ray.is_initialized():
        raise Unavailable("not connected to the cluster (it was shut down in this process)")


def _restarting(exc: BaseException) -> bool:
    """Ray says the actor is dead or restarting (the directory comes back after a crash)."""
    import ray.exceptions

    return isinstance(exc, ray.exceptions.RayActorError)


async def await_directory(call: Callable[[], Awaitable[Any]], patience_s: float) -> Any:
    """``call()`` on the directory, waiting out a restart of it for ``patience_s``: callers
    see a pause, not an error, while the control plane comes back."""
    _connected()
    until = time.monotonic() + patience_s
    delay = 0.05
    while True:
        try:
            with _SUBMITTING:
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

    _connected()
    until = time.monotonic() + patience_s
    delay = 0.05
    while True:
        try:
            with _SUBMITTING:
                ref = call()
            return ray.get(ref, timeout=timeout)
        except Exception as exc:
            if not _restarting(exc) or time.monotonic() + delay > until:
                raise unwrap(exc) from None
        time.sleep(delay)
        delay = min(1.0, delay * 2)
