"""The exception hierarchy, and the one table between gRPC status codes and exceptions."""

from __future__ import annotations

import grpc


class FluentError(Exception):
    """Base class of every error fluentfn raises."""


class ActorError(FluentError):
    """An exception raised by user code in an actor or function.

    Where the original exception type allows it, the caller's exception is also an
    instance of that type. ``remote_traceback`` holds the traceback from where it ran.
    """

    remote_type: str = ""
    remote_traceback: str = ""


class NotFound(FluentError):
    """Unknown actor type, function or method."""


_PROXY_NAMES = frozenset({"with_timeout", "future", "aio", "tell"})


def no_method(type_name: str, method: str) -> NotFound:
    """The error for a call of a method ``type_name`` does not have (with a hint when the
    name is one of a method proxy's own: ``ref.with_timeout(...)`` for ``ref.m.with_timeout``)."""
    hint = ""
    if method in _PROXY_NAMES:
        hint = f" ({method} belongs to a method: ref.METHOD.{method}(...))"
    return NotFound(f"{type_name} has no method {method!r}{hint}")


class InvalidRequest(FluentError):
    """A payload that cannot be decoded, is too large, or does not bind to the method."""


class Unauthenticated(FluentError):
    """Missing or wrong cluster token."""


class Unavailable(FluentError):
    """The target cannot be reached (host down, cluster gone) after the allowed retries."""


class CallTimeout(FluentError, TimeoutError):
    """The call's deadline passed before a reply arrived (also a ``TimeoutError``)."""


class Overloaded(FluentError):
    """The target's queue is full; retry later."""


class FunctionTimeout(FluentError):
    """A FaaS-mode invocation ran past its lifetime cap and was killed."""


class Redirect(FluentError):
    """Internal: the host no longer owns the shard; the caller re-resolves and retries."""


class WrongPeer(Unavailable):
    """Internal: the endpoint is not a host of this cluster (it answered UNIMPLEMENTED: a
    port reused by another server); the call did not run there."""


class NotDelivered(Unavailable):
    """Internal: the call never reached a host: its stream was not accepted (nothing
    listens at the endpoint, or the host was not up yet), or had broken before the call
    was written."""


# The one table. ActorError travels inside a Reply with an OK status, so it is absent.
_BY_CODE: dict[grpc.StatusCode, type[FluentError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: CallTimeout,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.ABORTED: FunctionTimeout,
    grpc.StatusCode.FAILED_PRECONDITION: Redirect,
    grpc.StatusCode.UNIMPLEMENTED: WrongPeer,
}
_BY_TYPE: dict[type[FluentError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    CallTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    FunctionTimeout: grpc.StatusCode.ABORTED,
    Redirect: grpc.StatusCode.FAILED_PRECONDITION,
}
_BY_VALUE: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def status_for(exc: FluentError) -> grpc.StatusCode:
    """The gRPC status a fluentfn error travels as (INTERNAL for anything unmapped)."""
    for cls in type(exc).__mro__:
        for known, code in _BY_TYPE.items():
            if cls is known:
                return code
    return grpc.StatusCode.INTERNAL


def error_for(code: grpc.StatusCode | int, message: str) -> FluentError:
    """The fluentfn exception for a gRPC status (a plain FluentError when unmapped)."""
    if isinstance(code, int):
        code = _BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    cls = _BY_CODE.get(code, FluentError)
    if cls is FluentError:
        return FluentError(f"{code.name}: {message}")
    return cls(message)


def code_value(code: grpc.StatusCode) -> int:
    """The integer value of a status code (as carried in ``Error.code``)."""
    return int(code.value[0])


REROUTE_CODES = frozenset({code_value(grpc.StatusCode.FAILED_PRECONDITION)})
"""Replies a caller retries elsewhere (re-resolving the route): the host did not own the
shard, so the call did not run there. Any other reply settles the call."""

TRANSIENT_CODES = frozenset(
    code_value(c)
    for c in (
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
)
"""Replies after which a durable reminder fires again later (its call is deduplicated by
request id, so a repeat never runs twice)."""
