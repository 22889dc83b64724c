"""The caller-side router's rules, without Ray or sockets: ``Attempt`` fed random answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluentfn._router import (
    Action,
    Attempt,
    Fail,
    Finish,
    Forget,
    Resolve,
    RouteTable,
    Send,
    Target,
    Verdict,
    Wait,
)
from fluentfn.errors import CallTimeout, FluentError, Unavailable

pytestmark = pytest.mark.timeout(120)

HOST_A, HOST_B = Target("a:1"), Target("b:2")
GATEWAY = Target("gw:3", fallback=True)
_ERRORS = {
    Verdict.LOST: Unavailable("stream broke"),
    Verdict.FOREIGN: Unavailable("not a host"),
    Verdict.BROKEN: FluentError("too large"),
}


def _drive(attempt: Attempt, answers: list[Verdict], routes: list[Target | None], first: Target | None,
           budget: float, step: float) -> tuple[list[Action], Action]:  # fmt: skip
    """Carry out ``attempt``'s actions against scripted answers; every action in order, and
    the terminal one. Time advances ``step`` per send and by every ``Wait``."""
    now = 0.0
    log: list[Action] = []
    pending = attempt.begin(first)
    answers, routes = list(answers), list(routes)
    while True:
        assert pending, "the attempt stopped without an outcome"
        action, pending = pending[0], pending[1:]
        log.append(action)
        if isinstance(action, Finish | Fail):
            assert not pending, "actions after the outcome"
            return log, action
        if isinstance(action, Send):
            now += step
            verdict = answers.pop(0) if answers else Verdict.SETTLED
            pending += attempt.answered(verdict, _ERRORS.get(verdict), now)
        elif isinstance(action, Resolve):
            pending += attempt.routed(routes.pop(0) if routes else HOST_B, now)
        elif isinstance(action, Wait):
            assert 0 < action.seconds <= 1.0
            now += action.seconds
            pending += attempt.woke(now)
        else:
            assert isinstance(action, Forget)
        assert now <= budget + 100, "no progress"


verdicts = st.lists(st.sampled_from(list(Verdict)), max_size=20)
route_lists = st.lists(st.sampled_from([HOST_A, HOST_B, None]), max_size=20)


@settings(max_examples=400, deadline=None)
@given(verdicts, route_lists, st.sampled_from([HOST_A, None]), st.integers(0, 6), st.floats(0.01, 30.0),
       st.floats(0.0, 2.0), st.booleans(), st.booleans())  # fmt: skip
def test_an_attempt_ends_once_within_its_budget_and_marks_every_resend(
    answers: list[Verdict],
    routes: list[Target | None],
    first: Target | None,
    retries: int,
    budget: float,
    step: float,
    with_fallback: bool,
    maybe_ran: bool,
) -> None:
    attempt = Attempt(name="T/k.m", deadline=budget, retries=retries, maybe_ran=maybe_ran,
                      fallback=GATEWAY if with_fallback else None)  # fmt: skip
    log, outcome = _drive(attempt, answers, routes, first, budget, step)
    sends = [a for a in log if isinstance(a, Send)]
    host_sends = [s for s in sends if not s.target.fallback]
    assert len(host_sends) <= 1 + retries
    assert len(sends) - len(host_sends) <= 1, "the fallback is tried once, and its answer is final"
    # the first send carries what the caller knew; every later one may be a repeat
    assert all(s.maybe_ran for s in sends[1:])
    if maybe_ran:
        assert all(s.maybe_ran for s in sends)
    # a failed route is forgotten before anything is sent again
    for i, action in enumerate(log):
        if isinstance(action, Send) and i + 1 < len(log) and isinstance(log[i + 1], Forget):
            assert log[i + 1].target == action.target  # type: ignore[union-attr]
    answered = answers[: len(sends)]
    if isinstance(outcome, Finish):
        assert sends, "a reply finishes only a call that was sent"
    else:
        assert isinstance(outcome, Fail) and isinstance(outcome.error, FluentError)
        assert not answered or answered[-1] is not Verdict.SETTLED


def test_a_settled_reply_finishes_at_once() -> None:
    attempt = Attempt(name="T/k.m", deadline=10.0, retries=3)
    assert attempt.begin(HOST_A) == [Send(HOST_A, False)]
    assert attempt.answered(Verdict.SETTLED, None, 0.1) == [Finish()]


def test_a_lost_call_is_resent_after_a_pause_marked_as_a_possible_repeat() -> None:
    attempt = Attempt(name="T/k.m", deadline=10.0, retries=3)
    attempt.begin(HOST_A)
    actions = attempt.answered(Verdict.LOST, Unavailable("gone"), 0.1)
    assert actions[0] == Forget(HOST_A, report=True) and isinstance(actions[1], Wait)
    assert attempt.woke(0.2) == [Resolve()]
    assert attempt.routed(HOST_B, 0.2) == [Send(HOST_B, True)]


def test_a_redirect_resolves_at_once_and_a_foreign_endpoint_is_forgotten() -> None:
    attempt = Attempt(name="T/k.m", deadline=10.0, retries=3)
    attempt.begin(HOST_A)
    assert attempt.answered(Verdict.REDIRECTED, None, 0.1) == [Forget(HOST_A, report=True), Resolve()]
    attempt.routed(HOST_B, 0.1)
    actions = attempt.answered(Verdict.FOREIGN, Unavailable("UNIMPLEMENTED"), 0.2)
    assert actions[0] == Forget(HOST_B, report=True) and isinstance(actions[1], Wait)


def test_a_client_goes_to_its_gateway_and_takes_its_answer_as_final() -> None:
    attempt = Attempt(name="T/k.m", deadline=10.0, retries=3, fallback=GATEWAY)
    attempt.begin(HOST_A)
    assert attempt.answered(Verdict.LOST, Unavailable("gone"), 0.1) == [
        Forget(HOST_A, report=False),
        Send(GATEWAY, True),
    ]
    [outcome] = attempt.answered(Verdict.LOST, Unavailable("gateway down"), 0.2)
    assert isinstance(outcome, Fail) and str(outcome.error) == "gateway down"
    # no route known: straight to the gateway
    fresh = Attempt(name="T/k.m", deadline=10.0, retries=3, fallback=GATEWAY)
    assert fresh.begin(None) == [Resolve()] and fresh.routed(None, 0.0) == [Send(GATEWAY, False)]


def test_a_retry_past_the_deadline_is_a_timeout_and_a_refused_tell_waits() -> None:
    attempt = Attempt(name="T/k.m", deadline=1.0, retries=3)
    attempt.begin(HOST_A)
    [failed] = attempt.answered(Verdict.LOST, Unavailable("gone"), 1.5)
    assert isinstance(failed, Fail) and isinstance(failed.error, CallTimeout)
    tell = Attempt(name="T/k.m", deadline=5.0, retries=3)
    tell.begin(HOST_A)
    [pause] = tell.answered(Verdict.REFUSED, None, 0.1)
    assert isinstance(pause, Wait)
    assert tell.woke(0.2) == [Resolve()]
    assert tell.answered(Verdict.REFUSED, None, 6.0) == [Finish()], "past its deadline: the host's own reply"


def test_the_route_table_forgets_only_the_route_it_was_told_about() -> None:
    table = RouteTable()
    assert table.slot("T", "k") is None
    table.learn_type("T", "g", 8)
    slot = table.slot("T", "k")
    assert slot is not None and slot[0] == "g" and 0 <= slot[1] < 8
    table.learn(slot, HOST_A)
    assert not table.forget(slot, HOST_B) and table.get(slot) == HOST_A
    assert table.forget(slot, HOST_A) and table.get(slot) is None
    table.learn(slot, HOST_A)
    table.forget_group("g")
    assert table.get(slot) is None
