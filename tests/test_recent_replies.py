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
    assert len(kept.kept()) <= 2 * (HOLD_MAX if hold else KEEP_LAST + 1)
    assert [rid for rid, _ in kept.kept()] == [rid for rid, _ in added[len(added) - len(kept.kept()) :]]  # oldest first


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
    assert moved.recall("a") == b"1" and len(moved.kept()) == 2
    moved.drop("a")  # its write failed: a retry asks the store
    moved.drop("absent")
    assert moved.recall("a") is None and moved.kept() == (("b", b"2"),)


class _DictReplies:
    """The model: two generations of dicts from the first reply on (what ``RecentReplies``
    was before its first reply became a pair); the pair must change nothing it answers."""

    def __init__(self) -> None:
        self.new: dict[str, bytes] | None = None
        self.older: dict[str, bytes] | None = None
        self.since = 0.0

    def adopt(self, items: list[tuple[str, bytes]], now: float) -> None:
        self.new, self.older, self.since = dict(items) or None, None, now

    def recall(self, rid: str) -> bytes | None:
        if self.new is None:
            return None
        found = self.new.get(rid)
        return self.older.get(rid) if found is None and self.older is not None else found

    def keep(self, rid: str, reply: bytes, now: float, hold: bool) -> None:
        if self.new is None:
            self.new, self.older, self.since = {rid: reply}, None, now
            return
        self.new[rid] = reply
        if len(self.new) > KEEP_LAST and (not hold or now - self.since >= REPLY_HOLD_S or len(self.new) >= HOLD_MAX):
            self.older, self.new, self.since = self.new, {}, now

    def drop(self, rid: str) -> None:
        if self.new is not None:
            self.new.pop(rid, None)
            if self.older is not None:
                self.older.pop(rid, None)

    def forget(self) -> None:
        self.new = self.older = None

    def kept(self) -> tuple[tuple[str, bytes], ...]:
        return () if self.new is None else (*(self.older or {}).items(), *self.new.items())


RIDS = [f"r{i}" for i in range(80)]  # few enough that ids repeat, enough to pass KEEP_LAST
GAP = st.sampled_from([0.0, 0.5, REPLY_HOLD_S])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("keep"), st.sampled_from(RIDS), st.binary(max_size=3), GAP, st.booleans()),
        st.tuples(st.just("drop"), st.sampled_from(RIDS)),
        st.tuples(st.just("forget")),
        st.tuples(st.just("adopt"), st.lists(st.tuples(st.sampled_from(RIDS), st.binary(max_size=3)), max_size=3)),
    ),
    max_size=300,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_the_first_reply_kept_as_a_pair_answers_as_the_dicts_did(steps: list[tuple[object, ...]]) -> None:
    kept, model, now = RecentReplies(), _DictReplies(), 0.0
    for step in steps:
        if step[0] == "keep":
            _, rid, reply, gap, hold = step
            now += gap  # type: ignore[operator]
            kept.keep(rid, reply, now, hold)  # type: ignore[arg-type]
            model.keep(rid, reply, now, hold)  # type: ignore[arg-type]
        elif step[0] == "drop":
            kept.drop(step[1])  # type: ignore[arg-type]
            model.drop(step[1])  # type: ignore[arg-type]
        elif step[0] == "forget":
            kept.forget_replies()
            model.forget()
        else:
            kept.adopt(step[1], now)  # type: ignore[arg-type]
            model.adopt(step[1], now)  # type: ignore[arg-type]
        assert [kept.recall(rid) for rid in RIDS] == [model.recall(rid) for rid in RIDS], step
        assert kept.kept() == model.kept()


def test_one_reply_is_a_pair_and_two_a_dict() -> None:
    kept = RecentReplies()
    kept.keep("a", b"1")
    assert kept.replies == ("a", b"1") and kept.recall("a") == b"1" and kept.recall("b") is None
    kept.keep("a", b"2")  # the same id again: one reply, the newer
    assert kept.kept() == (("a", b"2"),)
    kept.keep("b", b"3")
    assert isinstance(kept.replies, dict) and kept.kept() == (("a", b"2"), ("b", b"3"))
    single = RecentReplies()
    single.keep("x", b"9")
    single.drop("other")
    assert single.recall("x") == b"9"
    single.drop("x")
    assert single.replies is None and single.kept() == ()
