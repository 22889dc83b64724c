"""The host's heap policy: when long-lived objects leave the cyclic collector's sight, and
that they always come back (no cycle among dead identities stays uncollected for good)."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluentfn.host._heap import Heap, HeapPolicy, apply

pytestmark = pytest.mark.timeout(60)


def test_freezes_as_identities_grow_and_thaws_on_time() -> None:
    p = HeapPolicy(grow_by=100, thaw_every_s=10.0)
    assert p.tick(50, 0.0) is Heap.KEEP
    assert p.tick(100, 1.0) is Heap.FREEZE
    assert p.tick(150, 2.0) is Heap.KEEP  # 50 more: not yet
    assert p.tick(200, 3.0) is Heap.FREEZE
    assert p.tick(400, 10.9) is Heap.FREEZE  # still within 10 s of the first freeze
    assert p.tick(400, 11.0) is Heap.THAW  # 10 s after the first freeze: everything back
    assert p.tick(400, 11.1) is Heap.FREEZE  # the same heap may be frozen again, for 10 s more
    assert p.tick(40, 12.0) is Heap.KEEP  # passivations: growth counts from the lower level
    assert p.tick(140, 13.0) is Heap.FREEZE


@given(st.lists(st.tuples(st.integers(0, 10_000), st.floats(0.0, 5.0)), max_size=200))
def test_nothing_stays_frozen_past_the_thaw_period(steps: list[tuple[int, float]]) -> None:
    p = HeapPolicy(grow_by=500, thaw_every_s=20.0)
    now, frozen_since = 0.0, None
    for live, dt in steps:
        now += dt
        decision = p.tick(live, now)
        if frozen_since is not None:
            assert now - frozen_since < 20.0 + 5.0 or decision is Heap.THAW  # thawed at the first tick past it
        if decision is Heap.THAW:
            frozen_since = None
        elif decision is Heap.FREEZE:
            assert live >= 500  # only after real growth
            frozen_since = now if frozen_since is None else frozen_since


def test_apply_freezes_and_thaws_this_process() -> None:
    before = gc.get_freeze_count()
    try:
        apply(Heap.FREEZE)
        assert gc.get_freeze_count() > before
        apply(Heap.THAW)
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
