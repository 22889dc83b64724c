"""A FaaS invocation's journal: nested outcomes replayed across attempts, tells held
until the attempt commits (no Ray)."""

from __future__ import annotations

import pytest

from fluentfn.runtime._journal import Journal
from fluentfn.state._store import Reminder, Scheduled

pytestmark = pytest.mark.timeout(30)


def test_a_re_run_sees_the_first_outcome_of_each_nested_call() -> None:
    journal = Journal()
    sent: list[str] = []

    def call(value: int) -> int:
        sent.append(f"call {value}")
        return value

    def fail() -> int:
        sent.append("fail")
        raise KeyError("nope")

    assert journal.run("d1", lambda: call(1)) == 1
    with pytest.raises(KeyError):
        journal.run("d2", fail)
    # the attempt is thrown away (a write conflict): the re-run derives the same ids
    assert journal.run("d1", lambda: call(99)) == 1  # the first outcome, not a second call
    with pytest.raises(KeyError):
        journal.run("d2", fail)
    assert sent == ["call 1", "fail"]


def test_tells_leave_only_with_the_attempt_that_commits() -> None:
    journal = Journal()
    sent: list[int] = []
    journal.begin()
    journal.hold(lambda: sent.append(92))
    journal.begin()  # conflict: the first attempt's tell never leaves
    journal.hold(lambda: sent.append(94))
    assert sent == []
    journal.commit()
    assert sent == [94]
    journal.commit()
    assert sent == [94]  # once


def test_a_failed_send_keeps_its_outbox_row_only_when_the_rows_were_written() -> None:
    def row(rid: str) -> Scheduled:
        return Scheduled("g", 0, Reminder("A/a", f"out:{rid}", 0.0, b""))

    def refused() -> None:
        raise ConnectionError("the platform is gone")

    sent: list[str] = []
    journal = Journal()
    journal.hold(refused, row("d1"))
    journal.hold(lambda: sent.append("d2"), row("d2"))
    assert journal.commit(outboxed=True) == [row("d2")]  # d1 leaves from the outbox later
    assert sent == ["d2"]
    journal.hold(refused, row("d3"))
    with pytest.raises(ConnectionError):  # nothing was written: the turn fails
        journal.commit()
