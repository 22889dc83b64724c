"""Sequential specifications the linearizability checker holds histories against.

A model is pure: ``init()`` is the starting state and ``step(state, op)`` says whether
``op`` (with its observed output, or None when it is unknown) is legal in ``state`` and
what the state is after it. States must be hashable (the search memoises them).

- ``register``: ``read`` (output: the value read; None is "nothing written yet") and
  ``write`` (value: what is written).
- ``cas-register``: the same, and ``cas`` with value ``[from, to]``: an ``ok`` cas found
  ``from`` and wrote ``to``; one that completed ``fail`` did not happen (it is not in the
  history at all), and one whose outcome is unknown changed the register if it matched.
- ``kv``: ``read``/``write``/``cas``/``append`` on keys, value ``[key, arg]`` (a read's
  output ``[key, value]``; ``append`` concatenates strings); checked key by key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._history import Operation


class ModelError(ValueError):
    """An operation the model does not know (a bad ``f`` or ``value``)."""


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    init: Callable[[], Any]
    step: Callable[[Any, Operation], tuple[bool, Any]]
    split: Callable[[list[Operation]], dict[Any, list[Operation]]] | None = None  # per-key sub-histories
    describe: Callable[[Operation], str] = lambda op: f"{op.f}({op.value!r}) -> {op.output!r}"


def freeze(v: Any) -> Any:
    """A value as a hashable one (lists become tuples, dicts sorted tuples)."""
    if isinstance(v, list):
        return tuple(freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, freeze(x)) for k, x in v.items()))
    return v


def _cas(state: Any, pair: Any, status: str, malformed: str) -> tuple[bool, Any]:
    """A compare-and-set of ``pair`` = [from, to]: it changes the state if it matches; an
    acknowledged one must have matched, one of unknown outcome may have either way."""
    try:
        old, new = pair
    except (TypeError, ValueError):
        raise ModelError(malformed) from None
    matches = freeze(old) == state
    return matches or status == "info", freeze(new) if matches else state


def _register_step(state: Any, op: Operation, *, cas: bool) -> tuple[bool, Any]:
    if op.f == "read":
        return (op.status == "info" or freeze(op.output) == state), state
    if op.f == "write":
        return True, freeze(op.value)
    if op.f == "cas" and cas:
        return _cas(state, op.value, op.status, f"a cas value is [from, to], got {op.value!r}")
    raise ModelError(f"the {'cas-register' if cas else 'register'} model has no operation {op.f!r}")


def _describe_register(op: Operation) -> str:
    out = "?" if op.status == "info" else repr(op.output)
    if op.f == "read":
        return f"read() -> {out}"
    return f"{op.f}({op.value!r}){' ?' if op.status == 'info' else ''}"


def _kv_parts(op: Operation) -> tuple[Any, Any]:
    try:
        key, arg = op.value
    except (TypeError, ValueError):
        raise ModelError(f"a kv value is [key, arg], got {op.value!r}") from None
    return freeze(key), arg


def _kv_split(ops: list[Operation]) -> dict[Any, list[Operation]]:
    out: dict[Any, list[Operation]] = {}
    for op in ops:
        out.setdefault(_kv_parts(op)[0], []).append(op)
    return out


def _kv_step(state: Any, op: Operation) -> tuple[bool, Any]:
    _, arg = _kv_parts(op)
    if op.f == "read":
        if op.status == "info":
            return True, state
        try:
            _, seen = op.output
        except (TypeError, ValueError):
            raise ModelError(f"a kv read's output is [key, value], got {op.output!r}") from None
        return freeze(seen) == state, state
    if op.f == "write":
        return True, freeze(arg)
    if op.f == "append":
        if not isinstance(arg, str):
            raise ModelError(f"append takes a string, got {arg!r}")
        return True, (state or "") + arg
    if op.f == "cas":
        return _cas(state, arg, op.status, f"a kv cas value is [key, [from, to]], got {op.value!r}")
    raise ModelError(f"the kv model has no operation {op.f!r}")


MODELS: dict[str, Model] = {
    "register": Model("register", lambda: None, lambda s, op: _register_step(s, op, cas=False),
                      describe=_describe_register),
    "cas-register": Model("cas-register", lambda: None, lambda s, op: _register_step(s, op, cas=True),
                          describe=_describe_register),
    "kv": Model("kv", lambda: None, _kv_step, split=_kv_split),
}  # fmt: skip
