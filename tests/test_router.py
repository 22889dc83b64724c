"""The caller-side router's rules, without Ray or sockets: ``Attempt`` fed random answers."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluentfn._call import Call, Outcome
from fluentfn._router import (
    LOST_BACKSTOP,
    MAX_LOST,
    PAUSE_PAST_S,
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
    lost_attempt,
    went_away,
)
from fluentfn.errors import CallTimeout, FluentError, Unauthenticated, Unavailable

pytestmark = pytest.mark.timeout(120)

HOST_A, HOST_B = Target("a:1"), Target("b:2")
GATEWAY, GATEWAY_2 = Target("gw:3", fallback=True), Target("gw:4", fallback=True)
_ERRORS = {
    Verdict.LOST: Unavailable("stream broke"),
    Verdict.UNREACHED: Unavailable("connection refused"),
    Verdict.FOREIGN: Unavailable("not a host"),
    Verdict.BROKEN: FluentError("too large"),
}


def _drive(attempt: Attempt, answers: list[Verdict], routes: list[Target | None], first: Target | None,
           budget: float, step: float) -> tuple[list[Action], Action, list[float]]:  # fmt: skip
    """Carry out ``attempt``'s actions against scripted answers; every action in order, the
    terminal one, and the time of each. Time advances ``step`` per send and by every ``Wait``."""
    now = 0.0
    log: list[Action] = []
    times: list[float] = []
    pending = attempt.begin(first)
    answers, routes = list(answers), list(routes)
    while True:
        assert pending, "the attempt stopped without an outcome"
        action, pending = pending[0], pending[1:]
        log.append(action)
        times.append(now)
        if isinstance(action, Finish | Fail):
            assert not pending, "actions after the outcome"
            return log, action, times
        if isinstance(action, Send):
            now += step
            verdict = answers.pop(0) if answers else Verdict.SETTLED
            pending += attempt.answered(verdict, _ERRORS.get(verdict), now)
        elif isinstance(action, Resolve):
            pending += attempt.routed(routes.pop(0) if routes else HOST_B, now)
        elif isinstance(action, Wait):
            assert 0 < action.seconds <= 1.0
            assert now + action.seconds <= budget + PAUSE_PAST_S + 1e-9, "a pause runs past the deadline"
            now += action.seconds
            pending += attempt.woke(now)
        else:
            assert isinstance(action, Forget)
        assert now <= budget + 100, "no progress"


verdicts = st.lists(st.sampled_from(list(Verdict)), max_size=20)
_NO_HOST = (Verdict.LOST, Verdict.UNREACHED, Verdict.FOREIGN)
route_lists = st.lists(st.sampled_from([HOST_A, HOST_B, None]), max_size=20)


@settings(max_examples=500, deadline=None)
@given(verdicts, route_lists, st.sampled_from([HOST_A, None]), st.integers(0, 6), st.floats(0.01, 30.0),
       st.floats(0.0, 2.0), st.integers(0, 2), st.booleans(), st.booleans())  # fmt: skip
def test_an_attempt_ends_once_within_its_budget_and_marks_every_resend(
    answers: list[Verdict],
    routes: list[Target | None],
    first: Target | None,
    retries: int,
    budget: float,
    step: float,
    gateways: int,
    direct: bool,
    maybe_ran: bool,
) -> None:
    fallbacks = (GATEWAY, GATEWAY_2)[:gateways]
    attempt = Attempt(name="T/k.m", deadline=budget, retries=retries, maybe_ran=maybe_ran,
                      fallbacks=fallbacks, direct=direct)  # fmt: skip
    log, outcome, times = _drive(attempt, answers, routes, first, budget, step)
    sends = [(a, t) for a, t in zip(log, times, strict=True) if isinstance(a, Send)]
    host_sends = [a for a, _ in sends if not a.target.fallback]
    answered = answers[: len(sends)]
    lost = [v for s, v in zip(sends, answered, strict=False) if not s[0].target.fallback and v in _NO_HOST]
    assert len(lost) <= 1 + retries, "sends that found no host are bounded"
    with_host = [v for s, v in zip(sends, answered, strict=False) if not s[0].target.fallback and v is Verdict.LOST]
    assert len(with_host) <= LOST_BACKSTOP, "a call is not sent again and again to hosts it may be what kills"
    # every send after a host went away with the call says how often, so the host counts its turn
    seen = 0
    for (send, _), verdict in zip(sends, answered, strict=False):
        assert send.lost == seen and (not seen or send.maybe_ran)
        assert lost_attempt(send.lost) == (1 + seen if seen else 1)
        assert went_away(lost_attempt(send.lost)) == (seen > 0), "the host counts exactly the calls lost before"
        seen += not send.target.fallback and verdict is Verdict.LOST
    # only the first redirect is re-sent at once: anything else re-sent to a host waits first
    immediate, waited = 0, True
    for action in log:
        if isinstance(action, Wait):
            waited = True
        elif isinstance(action, Send) and not action.target.fallback:
            immediate += not waited
            waited = False
    assert immediate <= 1, "only the first redirect is re-sent without a pause"
    if fallbacks and not direct:
        assert not host_sends, "direct=False: gateways only"
    # nothing is sent again past the deadline
    assert all(t < budget for _, t in sends[1:])
    # a gateway that could not be reached is sent to again only after a pause
    for i, action in enumerate(log[:-1]):
        if isinstance(action, Send) and action.target.fallback and isinstance(log[i + 1], Send):
            raise AssertionError("a gateway re-sent without a pause")
    # the first send carries what the caller knew; every later one may be a repeat
    assert all(a.maybe_ran for a, _ in sends[1:])
    if maybe_ran:
        assert all(a.maybe_ran for a, _ in sends)
    # a failed route is forgotten before anything is sent again
    for i, action in enumerate(log):
        if isinstance(action, Send) and i + 1 < len(log) and isinstance(log[i + 1], Forget):
            assert log[i + 1].target == action.target  # type: ignore[union-attr]
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
    assert attempt.routed(HOST_B, 0.2) == [Send(HOST_B, True, lost=1)]
    assert lost_attempt(1) == 2, "sent as attempt 2: the host counts its turn as under way"


def test_a_call_its_hosts_went_away_with_lost_backstop_times_is_not_sent_again() -> None:
    """Many retries allowed, yet a call whose host dies each time it is sent stops after
    LOST_BACKSTOP host deaths even where no host counted its turns (hosts refuse a poison
    message after MAX_LOST), saying so; sends that found no host, or were redirected, do
    not count, nor do gateways that could not be reached."""
    assert LOST_BACKSTOP > MAX_LOST, "a call that waited beside a poison message outlasts it"
    attempt = Attempt(name="T/k.m", deadline=100.0, retries=1_000_000)
    attempt.begin(HOST_A)
    now = 0.0
    for lost in range(LOST_BACKSTOP - 1):
        actions = attempt.answered(Verdict.FOREIGN, Unavailable("UNIMPLEMENTED"), now)  # not a host: did not run
        assert isinstance(actions[-1], Wait)
        now += 1.0
        resent = [Send(HOST_A, True, lost=lost)]
        assert attempt.woke(now) == [Resolve()] and attempt.routed(HOST_A, now) == resent
        actions = attempt.answered(Verdict.LOST, Unavailable("Socket closed"), now)
        assert isinstance(actions[-1], Wait), "a host death during the call is survived"
        now += 1.0
        resent = [Send(HOST_B, True, lost=lost + 1)]
        assert attempt.woke(now) == [Resolve()] and attempt.routed(HOST_B, now) == resent
    [failed] = attempt.answered(Verdict.LOST, Unavailable("Socket closed"), now)
    assert isinstance(failed, Fail) and isinstance(failed.error, Unavailable)
    assert f"went away {LOST_BACKSTOP} times while the call was on it" in str(failed.error)
    assert "Socket closed" in str(failed.error) and "may have run" in str(failed.error)
    # through a client's gateway: its losses are waited out (a gateway restarts), not counted
    client = Attempt(name="T/k.m", deadline=100.0, retries=3, fallbacks=(GATEWAY,), direct=False)
    client.begin(None)
    for i in range(2 * MAX_LOST):
        [pause] = client.answered(Verdict.LOST, Unavailable("gateway down"), float(i))
        assert isinstance(pause, Wait)
        assert client.woke(i + 0.5) == [Resolve()] and client.routed(None, i + 0.5) == [Send(GATEWAY, True)]


def test_a_redirect_resolves_at_once_and_a_foreign_endpoint_is_forgotten() -> None:
    attempt = Attempt(name="T/k.m", deadline=10.0, retries=3)
    attempt.begin(HOST_A)
    assert attempt.answered(Verdict.REDIRECTED, None, 0.1) == [Forget(HOST_A, report=True), Resolve()]
    attempt.routed(HOST_B, 0.1)
    actions = attempt.answered(Verdict.FOREIGN, Unavailable("UNIMPLEMENTED"), 0.2)
    assert actions[0] == Forget(HOST_B, report=True) and isinstance(actions[1], Wait)


def test_a_client_goes_to_its_gateways_and_waits_for_one_that_is_down() -> None:
    attempt = Attempt(name="T/k.m", deadline=10.0, retries=3, fallbacks=(GATEWAY, GATEWAY_2))
    attempt.begin(HOST_A)
    assert attempt.answered(Verdict.LOST, Unavailable("gone"), 0.1) == [
        Forget(HOST_A, report=False),
        Send(GATEWAY, True, lost=1),  # the host went away with it: the gateway's send says so too
    ]
    [pause] = attempt.answered(Verdict.LOST, Unavailable("gateway down"), 0.2)
    assert isinstance(pause, Wait)
    assert attempt.woke(0.3) == [Resolve()]
    assert attempt.routed(None, 0.3) == [Send(GATEWAY_2, True, lost=1)], "the next gateway"
    [refused] = attempt.answered(Verdict.FOREIGN, Unauthenticated("bad token"), 0.4)
    assert isinstance(refused, Fail) and str(refused.error) == "bad token", "a gateway's own answer is final"
    # past the deadline: a timeout that says what went wrong last
    late = Attempt(name="T/k.m", deadline=1.0, retries=3, fallbacks=(GATEWAY,), direct=False)
    assert late.begin(HOST_A) == [Send(GATEWAY, False)]
    [failed] = late.answered(Verdict.LOST, Unavailable("gateway down"), 1.5)
    assert isinstance(failed, Fail) and isinstance(failed.error, CallTimeout) and "gateway down" in str(failed.error)
    # no route known: straight to the gateway
    fresh = Attempt(name="T/k.m", deadline=10.0, retries=3, fallbacks=(GATEWAY,))
    assert fresh.begin(None) == [Resolve()] and fresh.routed(None, 0.0) == [Send(GATEWAY, False)]


def test_a_pause_ends_at_the_deadline_with_a_timeout_that_names_the_last_error() -> None:
    # the caller's own wait ends just past the deadline: the router's timeout, which says
    # why (a gateway that refused connections), must come first
    attempt = Attempt(name="T/k.m", deadline=2.0, retries=3, fallbacks=(GATEWAY,), direct=False)
    attempt.begin(None)
    for _ in range(6):  # backoffs that double would reach past the deadline
        [pause] = attempt.answered(Verdict.LOST, Unavailable("gw:3: connection refused"), 1.9)
        assert isinstance(pause, Wait) and 1.9 + pause.seconds <= 2.0 + PAUSE_PAST_S
        assert attempt.woke(1.95) == [Resolve()]
        assert attempt.routed(None, 1.95) == [Send(GATEWAY, True)]
    [pause] = attempt.answered(Verdict.LOST, Unavailable("gw:3: connection refused"), 1.99)
    assert isinstance(pause, Wait) and pause.seconds == pytest.approx(0.01 + PAUSE_PAST_S)
    [failed] = attempt.woke(1.99 + pause.seconds)
    assert isinstance(failed, Fail) and isinstance(failed.error, CallTimeout)
    assert "connection refused" in str(failed.error)


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


class _Locator:
    """A locator that always answers ``target``; ``asked`` keeps the method of each call
    it was asked about, and "lost" for each host reported gone."""

    def __init__(self, target: Target | None) -> None:
        self.target = target
        self.asked: list[str] = []

    async def locate(self, call: Call) -> Target | None:
        self.asked.append(call.method)
        return self.target

    async def lost(self, slot: object, target: Target) -> None:
        self.asked.append("lost")


def test_a_closed_caller_ends_every_call_with_one_clear_error() -> None:
    """After ``close`` (the cluster shut down in this process) a call, and a retry still
    waiting, end with Unavailable: nothing reaches the locator (which would be a Ray call
    that starts a new, empty local Ray)."""
    import asyncio

    from fluentfn.transport._caller import Caller
    from fluentfn.transport._client import PeerPool

    locator = _Locator(None)

    async def main() -> list[BaseException | None]:
        table = RouteTable()
        caller = Caller(table=table, locator=locator, pool=PeerPool("token"), retries=3)
        outcomes: list[BaseException | None] = []
        caller.close()
        call = Call(type_name="T", key="k", method="m", request_id="r", deadline=time.time() + 5)
        caller.send(call, lambda reply, error: outcomes.append(error))
        await asyncio.sleep(0.05)
        return outcomes

    [error] = asyncio.run(main())
    assert isinstance(error, Unavailable) and "closed" in str(error)
    assert locator.asked == []


def test_a_tell_is_sent_again_past_the_retries_of_a_call() -> None:
    """A tell's sender returned once the router took it, so the router does not give up
    on it after ``retries`` lost sends, as it does for a call whose caller waits: it
    keeps sending, with pauses, until the tell's deadline (a tell dropped after a few
    broken streams was lost under heavy load while partitions moved)."""
    import asyncio
    import socket

    from fluentfn.testing import wait_for
    from fluentfn.transport._caller import Caller
    from fluentfn.transport._client import PeerPool

    with socket.socket() as s:  # a port nothing listens on: every send is lost
        s.bind(("127.0.0.1", 0))
        locator = _Locator(Target(f"127.0.0.1:{s.getsockname()[1]}"))

    async def main() -> tuple[list[BaseException | None], list[BaseException | None]]:
        caller = Caller(table=RouteTable(), locator=locator, pool=PeerPool("token"), retries=1)
        called: list[BaseException | None] = []
        told: list[BaseException | None] = []
        deadline = time.time() + 300
        caller.send(Call("T", "k", "call", request_id="c", deadline=deadline), lambda r, e: called.append(e))
        caller.send(
            Call("T", "k", "tell", request_id="t", deadline=deadline, one_way=True), lambda r, e: told.append(e)
        )
        loop = asyncio.get_running_loop()

        def resent() -> bool:
            return bool(called) and locator.asked.count("tell") >= 4

        await loop.run_in_executor(None, lambda: wait_for(resent, timeout=60))
        still = list(told)
        caller.close()
        await loop.run_in_executor(None, lambda: wait_for(lambda: told, timeout=60))
        return called, still + told

    called, told = asyncio.run(main())
    assert len(called) == 1 and isinstance(called[0], Unavailable)  # the call: 1 + retries sends, then its error
    assert len(told) == 1 and isinstance(told[0], Unavailable) and "closed" in str(told[0])  # sent until closed


def test_a_call_on_a_stream_no_host_took_is_not_delivered() -> None:
    """Nothing listens at the endpoint: the stream is never taken (no ``ACCEPTED``
    metadata), so its calls reached no host (``UNREACHED``), and do not count towards
    ``LOST_BACKSTOP`` as a host's death would."""
    import asyncio
    import socket

    from fluentfn.errors import NotDelivered
    from fluentfn.transport._caller import classify
    from fluentfn.transport._client import PeerPool

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{s.getsockname()[1]}"

    async def main() -> BaseException | None:
        pool = PeerPool("token")
        call = Call("T", "k", "m", request_id="r", deadline=time.time() + 30)
        try:
            await pool.invoke(endpoint, call)
        except BaseException as exc:
            return exc
        finally:
            await pool.close()
        return None

    error = asyncio.run(main())
    assert isinstance(error, NotDelivered), error
    call = Call("T", "k", "m", request_id="r")
    assert classify(call, None, error) is Verdict.UNREACHED
    assert classify(call, None, Unavailable("Socket closed")) is Verdict.LOST


def test_calls_made_while_a_route_is_looked_up_leave_in_the_order_they_were_made() -> None:
    """The first call of a type waits for its lookup; calls made meanwhile queue behind it,
    also once the type (and then the route) is in the table before the lookup's waiter
    goes on, as the directory's locator does: the host sees one caller's calls to one
    identity in the order they were made (they were reordered before, 4,999 of 5,000
    pipelined futures to 50 new identities)."""
    import asyncio

    from fluentfn.transport._caller import Caller
    from fluentfn.transport._client import PeerPool

    here = Target("in-process", local=True)
    seen: list[str] = []

    class _Local:
        def submit(self, call: Call, done: Any, *, local: bool = False) -> None:
            seen.append(call.request_id)
            done(Outcome(value=b"ok", seq=call.seq))

    async def main() -> list[str]:
        table = RouteTable()
        release = asyncio.Event()

        class _Slow:
            asked = 0

            async def locate(self, call: Call) -> Target | None:
                self.asked += 1
                table.learn_type("T", "g", 4)  # the type is known first, the route later
                await release.wait()
                slot = table.slot(call.type_name, call.key)
                assert slot is not None
                table.learn(slot, here)
                await asyncio.sleep(0)  # the route is in the table before this lookup's caller goes on
                return here

            async def lost(self, slot: object, target: Target) -> None:
                raise AssertionError("nothing is lost here")

        locator = _Slow()
        caller = Caller(table=table, locator=locator, pool=PeerPool("token"), retries=3, local=_Local())  # type: ignore[arg-type]
        answers: list[str] = []
        deadline = time.time() + 60

        def send(i: int) -> None:
            call = Call("T", "k", "m", request_id=f"r{i}", deadline=deadline)
            caller.send(call, lambda reply, error: answers.append("ok" if error is None else repr(error)))

        send(0)
        await asyncio.sleep(0)
        for i in range(1, 4):  # the type is known now, its route not yet
            send(i)
        release.set()
        await asyncio.sleep(0)  # the route is learnt; its first caller has not gone on yet
        for i in range(4, 8):
            send(i)
        for _ in range(100):
            if len(answers) == 8:
                break
            await asyncio.sleep(0.01)
        assert answers == ["ok"] * 8
        assert locator.asked <= 2  # the queued calls did not each look the route up
        return seen

    assert asyncio.run(main()) == [f"r{i}" for i in range(8)]
