"""FaaS mode's outbox: a committed turn's tells leave even if its invocation dies right
after its write (real SQLite file; no Ray: the invocation's steps are called directly)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluentfn._actordef import ActorDef
from fluentfn._call import Call
from fluentfn._context import Context
from fluentfn.errors import Unavailable
from fluentfn.host._reminders import Reminders
from fluentfn.placement import ActorOptions
from fluentfn.runtime import _faastimer
from fluentfn.runtime._faasinvoke import _run_actor
from fluentfn.runtime._faastimer import OUTBOX_GROUP, REMINDER_GROUP, _send_left, outbox_row
from fluentfn.runtime._journal import Journal
from fluentfn.state import Store, open_store
from fluentfn.wire import codec

pytestmark = pytest.mark.timeout(60)


class Died(BaseException):
    """The invocation's process died (here: while it sent its held tells)."""


JOURNAL = Journal()
SENT: list[str] = []


class Sender:
    """Each turn counts and tells ``Log/k`` the count (its tell is held by the journal)."""

    def __init__(self) -> None:
        self.n = 0

    def go(self, die: bool, cap_s: float, refused: bool = False) -> int:
        self.n += 1
        rid = f"d-tell-{self.n}"
        payload = codec.encode_args((self.n,), {})

        def send() -> None:
            if die:
                raise Died
            if refused:
                raise Unavailable("message dropped by a tap")
            SENT.append(rid)

        JOURNAL.hold(send, outbox_row("Sender/a", rid, "Log/k", "append", payload, cap_s))
        return self.n


def _turn(store: Any, rid: str, *, die: bool, cap_s: float = 0.0, refused: bool = False) -> Any:
    definition = ActorDef(Sender, ActorOptions(name="Sender", shards=1))
    args = codec.encode_args((die, cap_s, refused), {})
    call = Call(type_name="Sender", key="a", method="go", args=args, request_id=rid)
    ctx = Context(address="Sender/a", key="a", type_name="Sender", mode="faas", request_id=rid,
                  _scheduler=Reminders(store, REMINDER_GROUP, 0, lambda: None))  # fmt: skip
    counters: dict[str, int] = {"activations": 0, "calls": 0}
    return _run_actor(store, definition, call, (die, cap_s, refused), {}, ctx, counters, args, JOURNAL)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr(_faastimer, "OUTBOX_GRACE_S", 0.0)  # a row is due once the cap (cap_s) has passed
    SENT.clear()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + f"/{abs(hash(request.node.name)) % 15 + 1}"
    opened = open_store(url)
    opened.delete_identity("Sender/a")  # a Redis database may hold an earlier test's rows
    for rid in _outbox(opened):
        opened.cancel_reminder("Sender/a", rid)
    yield opened
    opened.close()


def _outbox(store: Store) -> list[str]:
    return [row.rid for row in store.due_reminders(OUTBOX_GROUP, 0, time.time() + 3600)]


def test_a_sent_tell_leaves_no_outbox_row(store: Store) -> None:
    assert codec.decode(_turn(store, "r1", die=False).value) == 1
    assert SENT == ["d-tell-1"] and _outbox(store) == []


def test_a_tell_not_sent_before_the_invocation_died_leaves_from_the_outbox(store: Store) -> None:
    with pytest.raises(Died):  # after the write, before the tell left
        _turn(store, "r1", die=True)
    assert SENT == []
    assert store.load("Sender/a") is not None  # the turn took effect ...
    assert _outbox(store) == ["out:d-tell-1"]  # ... and so did its tell's row
    assert Reminders(store, REMINDER_GROUP, 0, lambda: None).pending("Sender/a") == []  # not a reminder of it
    # the caller's retry (same request id) is answered from the record: the turn does not run again
    assert codec.decode(_turn(store, "r1", die=False).value) == 1
    assert _outbox(store) == ["out:d-tell-1"]
    resent: list[tuple[Any, ...]] = []
    totals: dict[str, int] = {}
    _send_left(Reminders(store, OUTBOX_GROUP, 0, lambda: None), lambda *a: resent.append(a), totals)
    assert resent == [("Sender/a", "d-tell-1", "Log/k", "append", codec.encode_args((1,), {}))]
    assert totals == {"outbox_sends": 1} and _outbox(store) == []  # once


def test_a_row_is_not_sent_before_the_invocation_could_have_ended(store: Store) -> None:
    with pytest.raises(Died):
        _turn(store, "r1", die=True, cap_s=600.0)
    resent: list[tuple[Any, ...]] = []
    _send_left(Reminders(store, OUTBOX_GROUP, 0, lambda: None), lambda *a: resent.append(a), {})
    assert resent == [] and _outbox(store) == ["out:d-tell-1"]  # it may still be sending


def test_a_row_whose_send_fails_stays_for_the_next_tick(store: Store) -> None:
    with pytest.raises(Died):
        _turn(store, "r1", die=True)

    def refused(*_: Any) -> None:
        raise Unavailable("message dropped by a tap")

    outbox = Reminders(store, OUTBOX_GROUP, 0, lambda: None)
    _send_left(outbox, refused, {})
    assert _outbox(store) == ["out:d-tell-1"]
    resent: list[tuple[Any, ...]] = []
    _send_left(outbox, lambda *a: resent.append(a), {})
    assert len(resent) == 1 and _outbox(store) == []


def test_a_tell_refused_after_the_write_does_not_fail_the_turn_and_leaves_later(store: Store) -> None:
    """The turn took effect: its caller gets its reply, and the tell keeps its row."""
    assert codec.decode(_turn(store, "r1", die=False, refused=True).value) == 1
    assert SENT == [] and _outbox(store) == ["out:d-tell-1"]
    assert codec.decode(_turn(store, "r2", die=False).value) == 2  # the next one leaves at once
    assert SENT == ["d-tell-2"] and _outbox(store) == ["out:d-tell-1"]


class _NoCancel:
    """The store, except that removing a row fails (as a store that just went away)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def cancel_reminder(self, address: str, rid: str) -> bool:
        raise ConnectionError("the store went away")


def test_a_row_that_cannot_be_removed_leaves_the_turns_reply_standing(store: Store) -> None:
    assert codec.decode(_turn(_NoCancel(store), "r1", die=False).value) == 1  # not an error: it took effect
    assert SENT == ["d-tell-1"] and _outbox(store) == ["out:d-tell-1"]  # may leave again, deduplicated
