"""The nemesis: fault rules as pure decisions (seeded, replayable), and a router that
carries them out — a lost message ends its call at the deadline with CallTimeout, a
duplicate reaches the host twice under one request id, a delayed one arrives later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import fluentfn as ff
from fluentfn._call import Call, Outcome
from fluentfn._router import RouteTable, Slot, Target
from fluentfn.lab import _faults
from fluentfn.lab._faults import DELIVERED, Faults
from fluentfn.lab._nemesis import FaultTap
from fluentfn.transport._caller import Caller, Intercept, install_tap
from fluentfn.transport._client import PeerPool

pytestmark = pytest.mark.timeout(60)


def test_a_partition_loses_messages_between_its_groups_both_ways_and_no_others() -> None:
    f = Faults().with_rule(_faults.partition(["Node/n1", "Node/n2"], ["Node/n3", "client"]))
    assert f.request("Node/n1", "Node/n3", "r", 0).lost and f.request("Node/n3", "Node/n1", "r", 0).lost
    assert f.request("", "Node/n2", "r", 0).lost  # a driver is "client"
    assert f.request("Node/n1", "Node/n2", "r", 0) is DELIVERED  # same side
    assert f.request("Node/n1", "Node/n9", "r", 0) is DELIVERED  # n9 is in no group
    assert not f.reply("Node/n3", "Node/n1", "r", 0)
    assert f.healed().request("Node/n1", "Node/n3", "r", 0) is DELIVERED
    by_type = Faults().with_rule(_faults.partition("Node", "Store"))
    assert by_type.request("Node/a", "Store/b", "r", 0).lost and not by_type.request("Node/a", "Node/b", "r", 0).lost


def test_random_faults_are_fixed_by_the_seed_and_the_message() -> None:
    rules = Faults(seed=7).with_rule(_faults.loss(0.5)).with_rule(_faults.duplicate(0.5))
    fates = [rules.request("A/a", "B/b", f"r{i}", 0) for i in range(400)]
    again = [Faults(rules.rules, 7).request("A/a", "B/b", f"r{i}", 0) for i in range(400)]
    other = [Faults(rules.rules, 8).request("A/a", "B/b", f"r{i}", 0) for i in range(400)]
    assert fates == again and fates != other
    lost = sum(f.lost for f in fates)
    assert 140 < lost < 260  # about half (binomial, 400 draws: far outside 5 sigma otherwise)
    assert any(f.copies == 2 for f in fates)
    assert rules.request("A/a", "B/b", "r0", 1) is not None  # a retry (attempt 1) draws again


def test_delay_jitter_and_between() -> None:
    d = Faults().with_rule(_faults.delay(100, 50, between=("A", "B")))
    delays = [d.request("A/x", "B/y", f"r{i}", 0).delay_s for i in range(200)]
    assert all(0.05 <= s <= 0.15 for s in delays) and len(set(delays)) > 100
    assert d.request("B/y", "A/x", "r", 0).delay_s > 0  # between is both ways
    assert d.request("A/x", "C/z", "r", 0) is DELIVERED
    assert Faults().with_rule(_faults.loss(1.0)).request("A/x", "B/y", "r", 0).lost
    assert Faults().with_rule(_faults.loss(0.0)).request("A/x", "B/y", "r", 0) is DELIVERED


@pytest.mark.parametrize(
    "make",
    [lambda: _faults.loss(1.5), lambda: _faults.duplicate(-0.1), lambda: _faults.delay(-1),
     lambda: _faults.partition(["A"]), lambda: _faults.partition(["A", ""], ["B"])],
)  # fmt: skip
def test_bad_fault_settings_are_refused(make: Callable[[], Any]) -> None:
    with pytest.raises(ValueError):
        make()


class _Local:
    """A process's own partition that answers each call with its request id (or not)."""

    def __init__(self, answer: bool = True) -> None:
        self.seen: list[tuple[float, str]] = []
        self.answer = answer

    def submit(self, call: Call, done: Callable[[Outcome | None], None], *, local: bool = False) -> None:
        self.seen.append((time.monotonic(), call.request_id))
        if self.answer:
            done(Outcome(call.request_id.encode(), seq=call.seq))


class _Locator:
    async def locate(self, call: Call) -> Target | None:
        return Target("here", local=True)

    async def lost(self, slot: Slot, target: Target) -> None:
        return None


def _run_one(tap: Any, local: _Local, timeout_s: float = 0.4) -> tuple[Any, BaseException | None, float]:
    async def main() -> tuple[Any, BaseException | None, float]:
        caller = Caller(table=RouteTable(), locator=_Locator(), pool=PeerPool("token"), retries=3, local=local)
        fut: asyncio.Future[tuple[Any, BaseException | None]] = asyncio.get_running_loop().create_future()
        call = Call(type_name="T", key="k", method="m", request_id="r1", deadline=time.time() + timeout_s)
        started = time.monotonic()
        caller.send(call, lambda reply, error: fut.done() or fut.set_result((reply, error)))
        reply, error = await asyncio.wait_for(fut, 30)
        await asyncio.sleep(0.3)  # let delayed copies land
        return reply, error, time.monotonic() - started

    old = install_tap(tap)
    try:
        return asyncio.run(main())
    finally:
        install_tap(old)


class _Fixed:
    def __init__(self, sending: Any, received: Any = None) -> None:
        self._sending, self._received = sending, received

    def sending(self, call: Call, target: Target) -> Any:
        return self._sending

    def received(self, call: Call, target: Target, reply: Any, error: Any) -> Any:
        return self._received


def test_a_silently_lost_message_ends_its_call_at_the_deadline_with_call_timeout() -> None:
    local = _Local()
    _, error, took = _run_one(_Fixed(Intercept(silent=True)), local)
    assert isinstance(error, ff.CallTimeout) and local.seen == [] and took >= 0.35


def test_a_lost_reply_ends_its_call_at_the_deadline_though_the_turn_ran() -> None:
    local = _Local()
    _, error, _ = _run_one(_Fixed(True, received=False), local)
    assert isinstance(error, ff.CallTimeout) and [rid for _, rid in local.seen] == ["r1"]


def test_a_duplicate_reaches_the_host_twice_with_one_request_id_and_one_answer() -> None:
    local = _Local()
    reply, error, _ = _run_one(_Fixed(Intercept(copies=2)), local)
    assert error is None and reply.value == b"r1"
    assert [rid for _, rid in local.seen] == ["r1", "r1"]


def test_a_delayed_message_arrives_later() -> None:
    local = _Local()
    t0 = time.monotonic()
    _, error, took = _run_one(_Fixed(Intercept(delay_s=0.2)), local, timeout_s=5)
    assert error is None and took >= 0.2 and local.seen[0][0] - t0 >= 0.19


def test_the_fault_tap_names_the_sender_and_the_receiver() -> None:
    f = Faults().with_rule(_faults.partition(["client"], ["T"]))
    local = _Local()
    _, error, _ = _run_one(FaultTap(f), local)  # a driver's call (caller "") to T/k
    assert isinstance(error, ff.CallTimeout) and local.seen == []
    _, error, _ = _run_one(FaultTap(f.healed()), _Local())
    assert error is None
