"""Every option and setting is checked where it is given: one ff.FluentError naming it,
never a raw TypeError or OverflowError, and never NaN accepted (no Ray needed)."""

from __future__ import annotations

import math
from typing import Any

import pytest

import fluentfn as ff
from fluentfn import api
from fluentfn._prices import prices

pytestmark = pytest.mark.timeout(60)


class Plain:
    def get(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("idle_timeout_s", "5"),
        ("idle_timeout_s", math.nan),
        ("idle_timeout_s", 0),
        ("num_cpus", "1"),
        ("num_cpus", math.nan),
        ("num_cpus", math.inf),
        ("num_gpus", math.inf),
        ("num_gpus", math.nan),
        ("num_gpus", "1"),
        ("resources", {"x": math.nan}),
        ("resources", {"x": "1"}),
        ("resources", "x"),
        ("resources", {"": 1}),
        ("name", 123),
        ("reentrant", "no"),
        ("accelerator_type", 7),
        ("persist", "sometimes"),
    ],
)
def test_a_bad_actor_option_is_one_clear_error_naming_it(option: str, value: Any) -> None:
    with pytest.raises(ff.FluentError) as info:
        ff.actor(**{option: value})(Plain)
    shown = {"name": "actor type name", "persist": "persist"}.get(option, option)
    assert shown in str(info.value)


def test_an_infinite_idle_timeout_means_never_passivated(monkeypatch: pytest.MonkeyPatch) -> None:
    at = ff.actor(name="NeverIdle", idle_timeout_s=math.inf)(Plain)
    monkeypatch.delitem(api._KNOWN_TYPES, "NeverIdle")  # never shipped to the shared cluster
    assert at.options.idle_timeout_s == math.inf


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, 0, "5"])
def test_a_bad_function_limit_is_refused(value: Any) -> None:
    with pytest.raises(ff.FluentError, match="max_duration_s"):
        ff.function(max_duration_s=value)(lambda: 1)


@pytest.mark.parametrize("price", ["NaN", "Infinity", "-1"])
def test_prices_must_be_finite_numbers(monkeypatch: pytest.MonkeyPatch, price: str) -> None:
    monkeypatch.setenv("FLUENTFN_PRICES", '{"s3_put": ' + price + "}")
    with pytest.raises(ff.FluentError, match="s3_put"):
        prices()


@pytest.mark.parametrize("timeout", [math.nan, -1, 0, 1e10, math.inf, "5", True])
def test_a_client_timeout_is_checked_before_anything_is_sent(timeout: Any) -> None:
    for cls in (ff.Client, ff.AsyncClient):
        with pytest.raises(ff.FluentError, match="timeout"):
            cls("127.0.0.1:1", token="t", timeout_s=timeout)


@pytest.mark.parametrize("token", [None, "", 5])
def test_a_client_needs_a_token(token: Any) -> None:
    for cls in (ff.Client, ff.AsyncClient):
        with pytest.raises(ff.FluentError, match="token"):
            cls("127.0.0.1:1", token=token)
