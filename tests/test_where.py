"""Where a sync turn runs (``host/_where.py``): a pure policy, driven with random turns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluentfn.host._where import LOOP_TURN_BUDGET_S, STRIKE_SHARE, STRIKES, Turn, WhereTurnsRun

pytestmark = pytest.mark.timeout(60)

turns = st.builds(
    Turn,
    method=st.sampled_from(["A.get", "A.put", "B.get"]),
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
    demoted: set[str] = set()
    loop_turns: dict[str, int] = {}
    overruns: dict[str, int] = {}
    for turn, took in history:
        on_loop = where.on_loop(turn)
        safe = turn.call_free and turn.live and turn.first_attempt and not turn.reentrant and turn.from_loop
        assert on_loop == (enabled and safe and turn.method not in demoted)
        if on_loop:
            m = turn.method
            loop_turns[m] = loop_turns.get(m, 0) + 1
            over = took > LOOP_TURN_BUDGET_S
            overruns[m] = overruns.get(m, 0) + over
            due = over and overruns[m] >= STRIKES and overruns[m] * STRIKE_SHARE >= loop_turns[m]
            assert where.ran_on_loop(m, took) == due
            if due:
                demoted.add(m)
    assert where.demoted == demoted


def test_a_method_slow_every_time_is_demoted_at_its_third_turn() -> None:
    where = WhereTurnsRun()
    slow = "A.crunch"
    assert [where.ran_on_loop(slow, 0.05) for _ in range(STRIKES)] == [False] * (STRIKES - 1) + [True]
    assert slow in where.demoted


def test_preempted_turns_of_a_cheap_method_do_not_demote_it() -> None:
    """A busy machine preempts the loop now and then: a few overruns among many cheap turns."""
    where = WhereTurnsRun()
    cheap = "A.get"
    for i in range(10_000):
        took = 0.008 if i % 500 == 499 else 0.00002  # a quantum-long turn one in 500
        assert not where.ran_on_loop(cheap, took)
    assert cheap not in where.demoted


def test_a_method_slow_one_turn_in_four_is_demoted_soon() -> None:
    where = WhereTurnsRun()
    method = "A.sometimes"
    demoted_at = next(i for i in range(100) if where.ran_on_loop(method, 0.05 if i % 4 == 3 else 0.0001))
    assert demoted_at == 4 * STRIKES - 1  # its third slow turn
