"""Calling Ray from the runtime: Ray's exceptions never reach the user."""

from __future__ import annotations

from collections.abc import Awaitable
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
