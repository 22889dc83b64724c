"""The replies an identity keeps in memory for re-sent requests (``host/_recent.py``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fluentfn._config import REPLY_HOLD_S
from fluentfn.host._recent import HOLD_MAX, KEEP_LAST, RecentReplies

# steps between turns, in seconds: bursts (many turns in one instant) and pauses
GAPS = st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.05, 1.0, REPLY_HOLD_S / 3, 2 * REPLY_HOLD_S]), max_size=600)


@settings(max_examples=60, deadline=None)
@given(GAPS, st.booleans())
def test_the_last_turns_and_the_young_ones_are_answered(gaps: list[float], hold: bool) -> None:
    kept = RecentReplies((), 0.0)
    now, added = 0.0, []
    for i, gap in enumerate(gaps):
        now += gap
        kept.keep(f"r{i}", f"reply {i}".encode(), now, hold)
        added.append((f"r{i}", now))
    for n, (rid, at) in enumerate(added):
        last = n >= len(added) - KEEP_LAST
        young = hold and now - at < REPLY_HOLD_S
        if last or young:
            assert kept.recall(rid) == f"reply {n}".encode(), (n, rid, at, now)
    assert kept.kept_count() <= 2 * (HOLD_MAX if hold else KEEP_LAST + 1)
    assert [rid for rid, _ in kept.kept()] == [
        rid for rid, _ in added[len(added) - kept.kept_count() :]
    ]  # oldest first


def test_a_busy_identity_keeps_ten_seconds_of_replies_not_sixty_four() -> None:
    """The loss this guards against: 1,000 turns in a second, then a re-send of the first."""
    kept = RecentReplies((), 100.0)
    for i in range(1000):
        kept.keep(f"r{i}", b"x", 100.0 + i / 1000, hold=True)
    assert kept.recall("r0") == b"x"
    kept.keep("late", b"y", 100.0 + REPLY_HOLD_S + 1, hold=True)  # the generation is old: a swap
    assert kept.recall("r0") == b"x"  # still held, in the older generation
    for i in range(KEEP_LAST + 1):  # more turns, past another hold
        kept.keep(f"later{i}", b"z", 100.0 + 2 * REPLY_HOLD_S + 2, hold=True)
    assert kept.recall("r0") is None and kept.recall("later0") == b"z"  # gone only after its hold
    unheld = RecentReplies()
    for i in range(1000):
        unheld.keep(f"r{i}", b"x")
    assert unheld.recall("r0") is None and unheld.recall("r999") == b"x"  # persist="call": the store has it


def test_a_handed_over_window_and_a_failed_write() -> None:
    moved = RecentReplies([("a", b"1"), ("b", b"2")], 5.0)
    assert moved.recall("a") == b"1" and moved.kept_count() == 2
    moved.drop("a")  # its write failed: a retry asks the store
    moved.drop("absent")
    assert moved.recall("a") is None and moved.kept() == (("b", b"2"),)
