"""The status <-> exception table and user exceptions over the wire."""

from __future__ import annotations

import grpc
import pytest

import fluentfn as ff
from fluentfn.errors import Redirect, code_value, error_for, status_for
from fluentfn.wire.errors import describe_error, rebuild_error


@pytest.mark.parametrize(
    "exc",
    [
        ff.NotFound,
        ff.InvalidRequest,
        ff.Unauthenticated,
        ff.Unavailable,
        ff.CallTimeout,
        ff.Overloaded,
        ff.FunctionTimeout,
        Redirect,
    ],
)
def test_table_round_trips(exc: type[ff.FluentError]) -> None:
    code = status_for(exc("x"))
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK)
    assert type(error_for(code, "x")) is exc
    assert type(rebuild_error(describe_error(exc("m")))) is exc


def test_user_exception_keeps_type_and_traceback() -> None:
    class Custom(ValueError):
        pass

    globals()["Custom"] = Custom
    Custom.__qualname__ = "Custom"
    try:
        raise Custom("bad", 3)
    except Custom as exc:
        err = describe_error(exc, "T/k.m")
    back = rebuild_error(err)
    assert isinstance(back, ff.ActorError) and isinstance(back, Custom) and isinstance(back, ValueError)
    assert back.args == ("bad", 3)
    assert "raise Custom" in back.remote_traceback and "T/k.m" in back.remote_traceback


def test_builtin_subclass_and_unknown_types() -> None:
    back = rebuild_error(describe_error(FileNotFoundError(2, "nope")))
    assert isinstance(back, FileNotFoundError) and isinstance(back, ff.ActorError) and back.errno == 2
    err = describe_error(ValueError("x"))
    err.exc_module = "not.imported.module"  # never imported on a peer's say-so
    back = rebuild_error(err)
    assert type(back) is ff.ActorError and "ValueError: x" in str(back)


def test_fluent_error_from_user_code_is_not_our_status() -> None:
    err = describe_error(ff.NotFound("inner"), user=True)
    assert err.code == 0
    back = rebuild_error(err)
    assert isinstance(back, ff.ActorError) and isinstance(back, ff.NotFound)


def test_call_timeout_is_a_timeout_error() -> None:
    assert issubclass(ff.CallTimeout, TimeoutError)
    assert code_value(grpc.StatusCode.NOT_FOUND) == 5
