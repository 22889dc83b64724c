"""A bulk call's results, as the caller reads them from each item's record: a short
record decoded once per batch must still give every item its own value, and never share
a mutable one, nor hide an error. The hosts are stood in for by an invoker that answers
with real records (the logic under test is the caller's)."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluentfn as ff
from fluentfn import _ref
from fluentfn._call import Outcome
from fluentfn.errors import ActorError
from fluentfn.wire import codec
from fluentfn.wire.errors import describe_error
from fluentfn.wire.records import record_of

pytestmark = pytest.mark.timeout(60)


class _Items:
    def put(self, value: Any) -> Any:
        return value


Items = ff.actor(name="BulkResultItems", shards=1)(_Items)


class Answering:
    """An invoker whose hosts answer each item with ``answer(value)``'s record."""

    mode = "stateful"

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.batches = 0

    def submit(self, ref: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.batches += 1
        _, _keys, arguments, _, _ = args
        fut: concurrent.futures.Future[list[bytes]] = concurrent.futures.Future()
        fut.set_result([self.answer(item_args[0]) for item_args in arguments])
        return fut


def _ok(value: Any) -> bytes:
    return record_of(Outcome(codec.encode(value)))


@pytest.fixture
def invoker(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(answer: Any) -> Answering:
        inv = Answering(answer)
        monkeypatch.setattr(_ref, "_invoker", inv)
        return inv

    return use


def test_repeated_short_results_are_each_items_own(invoker: Any) -> None:
    values = [None, None, True, 7, 7, -1, 1.5, "ok", "ok", None, 2**40]
    inv = invoker(_ok)
    got = Items.bulk("put", {f"k{i}": (v,) for i, v in enumerate(values)})
    assert got == {f"k{i}": v for i, v in enumerate(values)}
    assert [type(got[f"k{i}"]) for i in range(len(values))] == [type(v) for v in values]
    assert inv.batches == 1


def test_a_short_mutable_result_is_never_shared(invoker: Any) -> None:
    invoker(_ok)
    got = Items.bulk("put", {f"k{i}": ([],) for i in range(5)})
    assert all(v == [] for v in got.values())
    assert len({id(v) for v in got.values()}) == 5  # five lists, not one
    got["k0"].append(1)
    assert got["k1"] == []


def test_an_error_record_is_raised_however_short(invoker: Any) -> None:
    def answer(value: Any) -> bytes:
        if value == "bad":
            return record_of(Outcome(error=describe_error(ValueError("no"), "BulkResultItems.put", user=True)))
        return _ok(value)

    invoker(answer)
    with pytest.raises(ActorError):
        Items.bulk("put", {"a": (None,), "b": ("bad",), "c": (None,), "d": ("bad",)})


SMALL = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, "ok", "", 2**40]))
ANY_VALUE = st.one_of(SMALL, st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2), st.text(min_size=30, max_size=40))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(SMALL, ANY_VALUE), min_size=1, max_size=40))
def test_a_batchs_results_are_each_items_value_read_in_c_or_one_by_one(values: list[Any]) -> None:
    """Whether a batch's replies are handed out by C loops (few distinct short immutable
    values) or read one by one, each item gets its own value, of its own type, and no
    mutable value is shared between items."""
    inv = Answering(_ok)
    previous = _ref._invoker
    _ref._invoker = inv
    try:
        got = Items.bulk("put", {f"k{i}": (v,) for i, v in enumerate(values)})
    finally:
        _ref._invoker = previous
    assert got == {f"k{i}": v for i, v in enumerate(values)}
    assert [type(got[f"k{i}"]) for i in range(len(values))] == [type(v) for v in values]
    mutable = [id(v) for v in got.values() if isinstance(v, list)]
    assert len(mutable) == len(set(mutable))
