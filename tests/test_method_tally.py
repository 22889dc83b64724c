"""A host's per-method tally: a batch's turns counted at once (``observe_many``) land as
the same turns counted one by one (``observe``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fluentfn.host._metrics import BUCKETS, MethodTally

DURATIONS = st.lists(st.one_of(st.sampled_from(BUCKETS), st.floats(0.0, 10.0, allow_nan=False)), max_size=60)


@given(seconds=DURATIONS, failed=st.lists(st.booleans(), max_size=60))
def test_a_batch_is_tallied_as_its_turns_one_by_one(seconds: list[float], failed: list[bool]) -> None:
    errors = sum(failed[: len(seconds)])
    one_by_one, at_once = MethodTally(), MethodTally()
    for i, s in enumerate(seconds):
        one_by_one.observe("T.m", "T", "m", s, i < len(failed) and failed[i])
    at_once.observe_many("T.m", "T", "m", seconds, errors)
    a, b = one_by_one.snapshot(), at_once.snapshot()
    if not seconds:
        assert a == {} and b[("T", "m")].calls == 0
        return
    ea, eb = a[("T", "m")], b[("T", "m")]
    assert (ea.calls, ea.errors, ea.buckets) == (eb.calls, eb.errors, eb.buckets)
    assert abs(ea.total_s - eb.total_s) <= 1e-9 * max(1.0, ea.total_s)
    assert sum(eb.buckets) == len(seconds)
