"""Where a sync turn runs (``host/_where.py``): a pure policy, driven with random turns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluentfn.host._where import LOOP_TURN_BUDGET_S, Turn, WhereTurnsRun

pytestmark = pytest.mark.timeout(60)

turns = st.builds(
    Turn,
    method=st.sampled_from([("A", "get"), ("A", "put"), ("B", "get")]),
    call_free=st.booleans(),
    live=st.booleans(),
    first_attempt=st.booleans(),
    reentrant=st.booleans(),
    from_loop=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(turns, st.floats(0.0, 0.01)), max_size=40), st.booleans())
def test_only_safe_turns_of_methods_not_demoted_run_on_the_loop(
    history: list[tuple[Turn, float]], enabled: bool
) -> None:
    where = WhereTurnsRun(enabled=enabled)
    demoted: set[tuple[str, str]] = set()
    for turn, took in history:
        on_loop = where.on_loop(turn)
        safe = turn.call_free and turn.live and turn.first_attempt and not turn.reentrant and turn.from_loop
        assert on_loop == (enabled and safe and turn.method not in demoted)
        if on_loop:
            newly = where.ran_on_loop(turn.method, took)
            assert newly == (took > LOOP_TURN_BUDGET_S and turn.method not in demoted)
            if took > LOOP_TURN_BUDGET_S:
                demoted.add(turn.method)
    assert where.demoted == demoted
