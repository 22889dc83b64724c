"""``Context.of_turn`` (a host's fast way to make a turn's context) against the dataclass's
own ``__init__``: the same value in every field, so a field added to one and not the other
fails here."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from fluentfn._context import Context, LazyContext


class _Marker:
    """A distinct object per slot (scheduler, timers, times): a mix-up shows."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def test_of_turn_fills_every_field_as_the_constructor_does() -> None:
    scheduler, timers, times = _Marker("scheduler"), _Marker("timers"), _Marker("times")
    fast = Context.of_turn(
        "T/k", "k", "T", "node", (0, 1), "stateful", ("A/1", "T/k"), "chain", 12.5, "req", True,
        scheduler, timers, times,  # type: ignore[arg-type]
    )  # fmt: skip
    slow = Context(
        address="T/k", key="k", type_name="T", node_id="node", gpu_ids=(0, 1), mode="stateful",
        chain=("A/1", "T/k"), chain_id="chain", deadline=12.5, request_id="req", replay=True,
        _scheduler=scheduler, _timers=timers, _times=times,  # type: ignore[arg-type]
    )  # fmt: skip
    names = [f.name for f in dataclasses.fields(Context)]
    assert {n: getattr(fast, n) for n in names} == {n: getattr(slow, n) for n in names}
    assert fast._scheduled is not slow._scheduled  # a list of its own per turn
    assert fast.next_request_id() == slow.next_request_id()  # the derived ids agree too


def test_every_slot_of_a_fast_context_is_set() -> None:
    fast = Context.of_turn("T/k", "k", "T", "", (), "stateful", (), "", 0.0, "", False, None, None, None)
    for name in Context.__slots__:
        getattr(fast, name)  # AttributeError if of_turn left one unset


def test_a_lazy_context_is_made_once_when_two_threads_ask_at_once() -> None:
    """A turn and a thread it started ask for the turn's context together: both get the
    one context (one count of the turn's calls, so no request id is derived twice)."""
    made: list[Context] = []
    inside, go = threading.Event(), threading.Event()

    def make(subject: Any, call: Any) -> Context:
        made.append(Context(address=subject, request_id=call))
        if len(made) == 1:  # the first maker is held inside until the second has asked
            inside.set()
            go.wait(30)
        return made[-1]

    lazy = LazyContext(make, "T/a", "r1")
    got: list[Context] = []
    first = threading.Thread(target=lambda: got.append(lazy.context()))
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=lambda: got.append(lazy.context()))
    second.start()
    time.sleep(0.1)  # the second asks while the first is still making
    go.set()
    first.join(30)
    second.join(30)
    assert len(made) == 1 and len(got) == 2 and got[0] is got[1] is made[0]
    assert (got[0].address, got[0].request_id) == ("T/a", "r1")
