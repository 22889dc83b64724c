"""Linearizability checking: is there one order of the operations, each taking effect
at an instant between its invocation and its completion, that the model accepts?

The search is Wing & Gong's, with Lowe's memoisation (as in Porcupine): walk the
invocations in real-time order, linearize the next operation whose invocation has come
and that the model accepts, and back up when a completion arrives whose operation has
not taken effect yet; a (linearized set, state) pair seen before is not searched again.
Operations of unknown outcome (``info``) have no completion: they may take effect at any
point after their invocation, or never (which is the same as last). A model with a
``split`` (kv) is checked key by key. Past the time budget the answer is "unknown",
never a guess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ._history import Operation
from ._models import Model

Valid = bool | str  # True, False or "unknown"


@dataclass
class Verdict:
    """The outcome of a check; on ``False`` a counterexample: the operations linearized
    on the deepest path the search found, the one whose completion no order could meet,
    and the operations open at that point."""

    valid: Valid
    model: str
    ops: int
    transitions: int = 0
    seconds: float = 0.0
    key: Any = None
    prefix: list[Operation] = field(default_factory=list)
    stuck: Operation | None = None
    open_ops: list[Operation] = field(default_factory=list)
    state: Any = None


class _Entry:
    __slots__ = ("is_call", "match", "next", "op", "prev", "time")

    def __init__(self, op: Operation | None, is_call: bool, t: float) -> None:
        self.op = op
        self.is_call = is_call
        self.time = t
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _entries(ops: list[Operation]) -> _Entry:
    """A doubly linked list of call and return entries in real-time order (a call before
    a return at the same instant), headed by a sentinel."""
    items: list[tuple[float, int, _Entry]] = []
    for op in ops:
        call = _Entry(op, True, op.call)
        ret = _Entry(op, False, float("inf") if op.ret is None else op.ret)
        call.match = ret
        items.append((call.time, 0, call))
        items.append((ret.time, 1, ret))
    items.sort(key=lambda x: (x[0], x[1]))
    head = _Entry(None, False, float("-inf"))
    prev = head
    for _, _, e in items:
        prev.next = e
        e.prev = prev
        prev = e
    return head


def _lift(e: _Entry) -> None:
    """Take a call entry and its return out of the list."""
    assert e.prev is not None and e.match is not None
    e.prev.next = e.next
    if e.next is not None:
        e.next.prev = e.prev
    m = e.match
    assert m.prev is not None
    m.prev.next = m.next
    if m.next is not None:
        m.next.prev = m.prev


def _unlift(e: _Entry) -> None:
    """Put them back (in the reverse order of ``_lift``)."""
    m = e.match
    assert m is not None and m.prev is not None and e.prev is not None
    m.prev.next = m
    if m.next is not None:
        m.next.prev = m
    e.prev.next = e
    if e.next is not None:
        e.next.prev = e


def _search(model: Model, ops: list[Operation], deadline: float) -> tuple[Valid, int, dict[str, Any]]:
    head = _entries(ops)
    state: Any = model.init()
    linearized = 0
    cache: set[tuple[int, Any]] = set()
    calls: list[tuple[_Entry, Any]] = []
    transitions = 0
    best: dict[str, Any] = {"depth": -1}
    entry = head.next
    while head.next is not None:
        if entry is None:  # nothing left to try at this depth (cannot happen with returns present)
            break
        if entry.is_call:
            op = entry.op
            assert op is not None
            transitions += 1
            if transitions & 0x3FF == 0 and time.monotonic() > deadline:
                return "unknown", transitions, best
            ok, new_state = model.step(state, op)
            if ok:
                bits = linearized | (1 << op.id)
                key = (bits, new_state)
                if key not in cache:
                    cache.add(key)
                    calls.append((entry, state))
                    state, linearized = new_state, bits
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        # A completion whose operation has not taken effect: this path is a dead end.
        if len(calls) > best["depth"]:
            best = {"depth": len(calls), "prefix": [c.op for c, _ in calls], "stuck": entry.op, "state": state,
                    "open": _open_at(head, entry)}  # fmt: skip
        if not calls:
            return False, transitions, best
        top, state = calls.pop()
        assert top.op is not None
        linearized &= ~(1 << top.op.id)
        _unlift(top)
        entry = top.next
    return True, transitions, best


def _open_at(head: _Entry, stop: _Entry) -> list[Operation]:
    """The operations invoked before ``stop`` and not yet linearized."""
    out: list[Operation] = []
    e = head.next
    while e is not None and e is not stop:
        if e.is_call and e.op is not None:
            out.append(e.op)
        e = e.next
    return out


def check(model: Model, ops: list[Operation], budget_s: float = 60.0) -> Verdict:
    """Whether ``ops`` are linearizable under ``model`` (see the module's docstring)."""
    started = time.monotonic()
    deadline = started + budget_s
    parts: dict[Any, list[Operation]] = model.split(ops) if model.split is not None else {None: ops}
    transitions = 0
    unknown = False
    for key, sub in parts.items():
        renumbered = [_renumber(op, i) for i, op in enumerate(sub)]
        valid, n, best = _search(model, renumbered, deadline)
        transitions += n
        if valid is False:
            return Verdict(
                False, model.name, len(ops), transitions, time.monotonic() - started, key,
                prefix=best.get("prefix", []), stuck=best.get("stuck"), open_ops=best.get("open", []),
                state=best.get("state"),
            )  # fmt: skip
        if valid == "unknown":
            unknown = True
    return Verdict("unknown" if unknown else True, model.name, len(ops), transitions, time.monotonic() - started)


def _renumber(op: Operation, i: int) -> Operation:
    """Ids dense per sub-history (they are bit positions in the search)."""
    if op.id == i:
        return op
    return Operation(i, op.process, op.f, op.value, op.output, op.status, op.call, op.ret)
