"""Exceptions <-> ``ErrorInfo``, the form a failure travels in.

A user exception travels as its module, type name, args and traceback. The receiver
rebuilds an exception that is both ``ff.ActorError`` and the original type, looking the
type up only among modules it has already imported (a peer never makes us import code).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from .._call import ErrorInfo, Outcome
from ..errors import ActorError, FluentError, InvalidRequest, code_value, error_for, status_for
from . import codec

_MAX_TRACEBACK = 32 * 1024
_PKG_DIR = str(Path(__file__).resolve().parents[1])
_HYBRIDS: dict[type[BaseException], type[ActorError]] = {}


def _origin(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, ActorError) and exc.remote_type:
        module, _, qualname = exc.remote_type.rpartition(":")
        return module, qualname
    cls = type(exc)
    return cls.__module__, cls.__qualname__


def describe_error(exc: BaseException, where: str = "", *, user: bool = False) -> ErrorInfo:
    """Describe an exception for the wire.

    fluentfn's own errors keep their status code, unless ``user`` says the exception
    escaped user code (a nested call's ``NotFound``, say): then it travels as a user
    exception, so the caller neither retries nor mistakes it for its own call's status.
    """
    message = _text(exc)
    if not user and isinstance(exc, FluentError) and not isinstance(exc, ActorError):
        return ErrorInfo(code=code_value(status_for(exc)), message=message)
    module, qualname = _origin(exc)
    try:
        args = codec.encode(list(exc.args), limit=64 * 1024)
    except Exception:  # args that cannot travel: the message stands in for them
        args = codec.encode([message])
    local_tb = _format(exc)
    if isinstance(exc, ActorError) and exc.remote_traceback:
        local_tb = exc.remote_traceback + "\nre-raised by\n" + local_tb
    header = f"in {where}:\n" if where else ""
    return ErrorInfo(
        code=0,
        message=message,
        exc_module=module,
        exc_type=qualname,
        exc_args=args,
        traceback=(header + local_tb)[-_MAX_TRACEBACK:],
    )


def _text(exc: BaseException) -> str:
    """``str(exc)``, even for an exception whose ``__str__`` fails."""
    try:
        return str(exc)
    except Exception as failure:
        return f"<{type(exc).__name__}: str() failed with {type(failure).__name__}>"


def _format(exc: BaseException) -> str:
    """The traceback, without fluentfn's own frames around the user's."""
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not f.filename.startswith(_PKG_DIR)])
    return "".join(te.format())


def _lookup(module: str, qualname: str) -> type[BaseException] | None:
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if obj is None or part.startswith("<"):
            return None
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, Exception):
        return obj
    return None


def _hybrid(orig: type[BaseException] | None) -> type[ActorError]:
    if orig is None or issubclass(orig, ActorError):
        return ActorError
    cls = _HYBRIDS.get(orig)
    if cls is None:
        try:
            cls = type(orig.__name__, (ActorError, orig), {"__module__": "fluentfn.remote"})
        except TypeError:  # incompatible layouts (OSError and friends)
            cls = ActorError
        _HYBRIDS[orig] = cls
    return cls


def _instantiate(cls: type[ActorError], args: tuple[Any, ...]) -> ActorError | None:
    """Build the exception as its own constructor would, else bare with ``args``, else
    None (the caller then raises a plain ActorError carrying the message)."""
    try:
        exc = cls(*args)
        str(exc)
        return exc
    except Exception:  # its constructor wants other arguments than it was given: build it bare
        exc = None
    try:
        exc = cls.__new__(cls)
        exc.args = args
        str(exc)
        return exc
    except Exception:
        return None


def rebuild_error(err: ErrorInfo) -> FluentError:
    """The exception a caller raises for an ``ErrorInfo``."""
    if err.code != 0:
        return error_for(err.code, err.message)
    try:
        args = codec.decode(err.exc_args) if err.exc_args else [err.message]
    except InvalidRequest:
        args = [err.message]
    if not isinstance(args, list):
        args = [err.message]
    cls = _hybrid(_lookup(err.exc_module, err.exc_type))
    exc = _instantiate(cls, tuple(args)) or ActorError(err.message)
    if cls is ActorError:
        exc.args = (f"{err.exc_type}: {err.message}" if err.exc_type else err.message,)
    exc.remote_type = f"{err.exc_module}:{err.exc_type}"
    exc.remote_traceback = err.traceback
    exc.add_note(f"remote traceback:\n{err.traceback}")
    return exc


def reply_value(reply: Outcome) -> Any:
    """The one place an outcome becomes a value, or the exception it carries."""
    if reply.error is not None:
        raise rebuild_error(reply.error)
    return codec.decode(reply.value)
