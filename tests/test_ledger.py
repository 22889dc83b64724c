"""The directory's counter ledger: what host processes counted outlives them (no Ray)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluentfn._stats import Ledger

pytestmark = pytest.mark.timeout(60)

# An event: (host, what) with what = ("count", n) | ("report",) | ("restart",) | ("stop",)
events = st.lists(
    st.tuples(
        st.sampled_from(["g/h0", "g/h1", "g/h2"]),
        st.one_of(
            st.tuples(st.just("count"), st.integers(1, 50)),
            st.just(("report",)),
            st.just(("restart",)),
            st.just(("stop",)),
        ),
    ),
    max_size=60,
)


@given(events)
def test_totals_are_everything_reported_by_every_incarnation(history: list[tuple[str, tuple[object, ...]]]) -> None:
    ledger = Ledger()
    live: dict[str, tuple[int, int]] = {}  # host -> (incarnation, its count so far)
    reported: dict[tuple[str, int], int] = {}  # (host, incarnation) -> its last reported count
    next_incarnation = 0
    for host, what in history:
        incarnation, count = live.get(host, (-1, 0))
        if incarnation < 0:
            next_incarnation += 1
            incarnation = next_incarnation
        if what[0] == "count":
            live[host] = (incarnation, count + int(what[1]))  # type: ignore[call-overload]
        elif what[0] == "report":
            live[host] = (incarnation, count)
            ledger.seen(host, str(incarnation), {"calls": count})
            reported[(host, incarnation)] = count
        elif what[0] == "restart":  # a kill: what was not reported is gone with the process
            next_incarnation += 1
            live[host] = (next_incarnation, 0)
        else:
            live.pop(host, None)
            ledger.ended(host)
        assert ledger.totals().get("calls", 0) == sum(reported.values())
