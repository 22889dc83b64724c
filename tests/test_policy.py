"""Model-based tests of the host's admission policy (no Ray, no sockets, no clocks).

Hypothesis drives random interleavings of sync and async calls on a few identities,
along the same and different chains, tells, deadlines, withdrawals, fences and
passivation. After every step it checks:

- at most one running turn per identity, except turns admitted by reentry along a
  chain the identity is waiting on, or interleaving async turns of a reentrant type;
- every turn gets exactly one outcome: it runs (once) and finishes, or it is rejected;
  nothing is both, nothing twice;
- after time passes, no queued turn is past its deadline; a withdrawn or rejected turn
  never runs;
- no identity has turns queued while none of its turns runs (nothing waits forever);
- after a fence, nothing new runs;
- a passivation runs only on an idle identity, and alone.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fluentfn.host._policy import (
    Activated,
    Arrive,
    Deactivated,
    Fence,
    Finish,
    Forget,
    HostPolicy,
    Passivate,
    Quiesce,
    Quiet,
    Reject,
    Run,
    Tick,
    Why,
    Withdraw,
    _Entry,
)

pytestmark = pytest.mark.timeout(300)
ADDRESSES = ["T/a", "T/b", "T/c"]


class PolicyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.policy = HostPolicy(mailbox_limit=4, inflight_limit=12)
        self.now = 1000.0
        self.next_tid = 0
        self.info: dict[int, dict[str, Any]] = {}  # tid -> address, chain_id, deadline, passivation, reentry
        self.running: set[int] = set()
        self.ran: set[int] = set()
        self.outcomes: dict[int, str] = {}  # tid -> "finished" | "rejected:<why>"
        self.fenced_at_run = False
        self.quiet_owed = 0  # ``Quiesce`` events whose ``Quiet`` has not come yet
        self.fence_rule = False  # the instructions being applied answer a ``Fence``

    # -- applying instructions ------------------------------------------------------------

    def apply(self, instructions: list[Any]) -> None:
        for ins in instructions:
            if isinstance(ins, Run):
                assert ins.tid not in self.ran, "a turn ran twice"
                assert ins.tid not in self.outcomes, "a rejected or finished turn ran"
                info = self.info[ins.tid]
                if info["deadline"]:  # time moves only in ticks, which expire queued turns first
                    assert info["deadline"] > self.now, "started past its deadline"
                if info["passivation"]:
                    others = [t for t in self.running if self.info[t]["address"] == info["address"]]
                    assert not others, "passivation beside a running turn"
                self.ran.add(ins.tid)
                self.running.add(ins.tid)
            elif isinstance(ins, Reject):
                assert ins.tid not in self.outcomes, "two outcomes"
                assert ins.tid not in self.ran, "rejected after it ran"
                self.outcomes[ins.tid] = f"rejected:{ins.why.value}"
            elif isinstance(ins, Quiet):
                assert self.quiet_owed > 0, "a Quiet nobody asked for"
                assert self.policy.fenced, "quiet but not fenced"
                if not self.fence_rule:  # a quiesce ends when no turn runs (or a fence ends it)
                    assert not self.running, "quiet while a turn runs"
                self.quiet_owed = 0
                self.fenced_at_run = True
            else:
                assert isinstance(ins, Forget)
                assert not any(self.info[t]["address"] == ins.address for t in self.running)

    # -- rules ---------------------------------------------------------------------------------

    @rule(
        address=st.sampled_from(ADDRESSES),
        chain=st.sampled_from(["c1", "c2", "c3", "new"]),
        reenter=st.booleans(),
        interleave=st.booleans(),
        deadline=st.sampled_from([0.0, 0.5, 2.0, 10.0]),
        fast=st.booleans(),
    )
    def arrive(self, address: str, chain: str, reenter: bool, interleave: bool, deadline: float, fast: bool) -> None:
        tid = self.next_tid
        self.next_tid += 1
        chain_id = f"{chain}-{tid}" if chain == "new" else chain
        # a call along a chain that passed through ``address`` carries it in its call chain
        path = (address,) if reenter else ()
        reentry = reenter and any(
            self.info[t]["address"] == address and self.info[t]["chain_id"] == chain_id for t in self.running
        )
        self.info[tid] = {
            "address": address,
            "chain_id": chain_id,
            "deadline": self.now + deadline if deadline else 0.0,
            "passivation": False,
            "reentry": reentry,
            "interleave": interleave,
        }
        before = self.fenced_at_run
        event = Arrive(
            tid=tid,
            address=address,
            chain_id=chain_id,
            now=self.now,
            deadline=self.info[tid]["deadline"],
            chain=path,
            interleave=interleave,
        )
        if fast:  # the engines' shortcut first: it must be the event's exact effect, or no effect
            self.apply(self.start_now_or_arrive(event))
        else:
            self.apply(self.policy.handle(event))
        if before:
            assert tid not in self.ran, "ran after the fence"

    def start_now_or_arrive(self, ev: Arrive) -> list[Any]:
        """``start_now``, then the event if it said no; checked against a copy of the
        policy that got only the event."""
        shadow = copy.deepcopy(self.policy)
        expected = shadow.handle(ev)
        before = _state(self.policy)
        if self.policy.start_now(ev.tid, ev.address, ev.chain_id, ev.now, ev.deadline, ev.chain, ev.interleave):
            assert expected == [Run(ev.tid)], expected
            assert _state(self.policy) == _state(shadow)
            return [Run(ev.tid)]
        assert _state(self.policy) == before, "start_now said no but changed the policy"
        got = self.policy.handle(ev)
        assert got == expected and _state(self.policy) == _state(shadow)
        return got

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        tid = data.draw(st.sampled_from(sorted(self.running)))
        self.running.discard(tid)
        self.outcomes[tid] = "finished"
        self.apply(self.policy.handle(Finish(tid)))

    @precondition(lambda self: bool(self.info))
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        tid = data.draw(st.sampled_from(sorted(self.info)))
        queued = tid not in self.ran and tid not in self.outcomes
        self.apply(self.policy.handle(Withdraw(tid)))
        if queued:
            self.outcomes[tid] = "withdrawn"
            assert tid not in self.policy._entries

    @rule(address=st.sampled_from(ADDRESSES))
    def activated(self, address: str) -> None:
        self.apply(self.policy.handle(Activated(address)))

    @rule(dt=st.sampled_from([0.1, 0.6, 3.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.apply(self.policy.handle(Tick(self.now)))
        for tid in self.policy.queued_all():
            deadline = self.info[tid]["deadline"]
            assert not deadline or deadline > self.now, "a queued turn outlived its deadline"

    @rule()
    def fence(self) -> None:
        self.fence_rule = True
        self.apply(self.policy.handle(Fence()))
        self.fence_rule = False
        self.fenced_at_run = True
        assert not self.policy.queued_all()

    @rule()
    def quiesce(self) -> None:
        self.quiet_owed += 1
        self.fence_rule = self.policy.fenced  # already fenced: quiet at once (the release drains)
        self.apply(self.policy.handle(Quiesce()))
        self.fence_rule = False
        if self.quiet_owed:  # still waiting: turns run, and the host still admits
            assert self.running and not self.policy.fenced

    @rule(address=st.sampled_from(ADDRESSES))
    def passivate(self, address: str) -> None:
        tid = self.next_tid
        self.next_tid += 1
        self.info[tid] = {
            "address": address,
            "chain_id": f"p{tid}",
            "deadline": 0.0,
            "passivation": True,
            "reentry": False,
            "interleave": False,
        }
        self.apply(self.policy.handle(Passivate(tid, address)))
        if tid in self.outcomes:
            assert self.outcomes[tid] == f"rejected:{Why.BUSY.value}"

    @rule(address=st.sampled_from(ADDRESSES))
    def deactivated(self, address: str) -> None:
        self.apply(self.policy.handle(Deactivated(address)))

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def one_turn_per_identity_unless_reentry_or_interleave(self) -> None:
        for address in ADDRESSES:
            here = [t for t in self.running if self.info[t]["address"] == address]
            if len(here) <= 1:
                continue
            plain = [t for t in here if not self.info[t]["reentry"]]
            interleaving = all(self.info[t]["interleave"] for t in plain)
            assert len(plain) <= 1 or interleaving, (address, [self.info[t] for t in here])
            assert not any(self.info[t]["passivation"] for t in here)

    @invariant()
    def a_quiesce_waits_only_while_turns_run(self) -> None:
        assert self.policy.quiescing == bool(self.quiet_owed)
        if self.policy.quiescing:
            assert self.running and not self.policy.fenced

    @invariant()
    def policy_agrees_with_the_model(self) -> None:
        assert set(self.policy.running_all()) == self.running
        assert self.policy.inflight <= 12
        for tid in self.policy.queued_all():
            assert tid not in self.outcomes and tid not in self.ran

    @invariant()
    def the_timer_is_asked_for_the_earliest_queued_deadline(self) -> None:
        """What the engine arms its timer for: a tick that fired early (the loop's clock
        is not the wall clock) must not strand a queued turn past its deadline."""
        deadlines = [self.info[t]["deadline"] for t in self.policy.queued_all() if self.info[t]["deadline"]]
        assert self.policy.next_deadline() == (min(deadlines) if deadlines else None)

    @invariant()
    def nothing_waits_on_an_idle_identity(self) -> None:
        for address in ADDRESSES:
            if self.policy.queued(address):
                assert self.policy.running(address), f"{address} has queued turns and none running"

    @invariant()
    def an_idle_identity_holds_no_mailbox(self) -> None:
        """Most identities are idle: they cost the policy nothing, unless their activation
        let interleaving turns in (a reentrant type's ``Activated``)."""
        for address in ADDRESSES:
            if not self.policy.running(address) and not self.policy.queued(address):
                box = self.policy._boxes.get(address)
                assert box is None or not (box.activating or isinstance(box, _Entry)), (address, box)

    def teardown(self) -> None:
        # Drain: finish everything running; every turn ends with exactly one outcome.
        for _ in range(1000):
            if not self.running:
                break
            tid = min(self.running)
            self.running.discard(tid)
            self.outcomes[tid] = "finished"
            self.apply(self.policy.handle(Finish(tid)))
        assert not self.running and not self.policy.queued_all()
        assert not self.quiet_owed, "a quiesce still waits with no turn running"
        for tid, info in self.info.items():
            assert tid in self.outcomes, (tid, info)


def _state(policy: HostPolicy) -> tuple[Any, ...]:
    """Everything the policy decides by, comparable: a turn running alone as the fresh
    mailbox it stands for, an idle fresh mailbox as none (the same state, kept either way)."""
    boxes = {}
    for address, box in policy._boxes.items():
        if isinstance(box, _Entry):
            running, waiting, activating = [box], None, True
        else:
            running, waiting, activating = box.running, box.waiting, box.activating
        if running or waiting or not activating:
            boxes[address] = (
                [(t.chain_id, t.chain, t.interleave, t.wake) for t in running],
                [(t.chain_id, t.chain, t.interleave, t.wake) for t in waiting or ()],
                activating,
            )
    entries = {tid: (e.address, e.deadline, e.running, e.passivation) for tid, e in policy._entries.items()}
    return policy._now, policy.fenced, policy.fenced_why, boxes, entries, sorted(policy._deadlines)


TestPolicy = PolicyMachine.TestCase
TestPolicy.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


def test_a_turn_that_arrives_past_its_deadline_never_runs() -> None:
    policy = HostPolicy()
    assert policy.handle(Arrive(1, "T/a", "c", now=10.0, deadline=9.0)) == [Reject(1, Why.EXPIRED)]


def test_fenced_host_redirects_queued_and_new_turns() -> None:
    policy = HostPolicy()
    assert policy.handle(Arrive(1, "T/a", "c1", now=0.0)) == [Run(1)]
    assert policy.handle(Arrive(2, "T/a", "c2", now=0.0)) == []
    assert policy.handle(Fence()) == [Reject(2, Why.REDIRECT)]
    assert policy.handle(Arrive(3, "T/b", "c3", now=0.0)) == [Reject(3, Why.REDIRECT)]
    assert policy.handle(Finish(1)) == []


def test_a_quiesced_host_fences_at_the_first_moment_no_turn_runs() -> None:
    policy = HostPolicy()
    assert policy.handle(Arrive(1, "T/a", "c1", now=0.0)) == [Run(1)]
    assert policy.handle(Arrive(2, "T/a", "c2", now=0.0)) == []
    assert policy.handle(Arrive(3, "T/b", "c3", now=0.0)) == [Run(3)]
    assert policy.handle(Quiesce()) == []  # turns run: it goes on serving
    assert policy.handle(Finish(1)) == [Run(2)]  # the queued turn starts as before
    assert policy.handle(Arrive(4, "T/c", "c4", now=0.0)) == [Run(4)]  # and new ones too
    assert policy.handle(Finish(3)) == []
    assert policy.handle(Finish(4)) == []
    assert policy.handle(Arrive(5, "T/a", "c5", now=0.0)) == []  # waits behind turn 2
    assert policy.handle(Finish(2)) == [Run(5)]  # not idle yet: what waits goes on
    assert not policy.fenced and policy.quiescing
    # The last running turn ends with none waiting: fenced in the same step.
    assert policy.handle(Finish(5)) == [Quiet()]
    assert policy.fenced and not policy.quiescing
    assert policy.handle(Arrive(6, "T/b", "c6", now=0.0)) == [Reject(6, Why.REDIRECT)]


def test_a_quiesce_of_an_idle_host_fences_at_once_and_a_fence_ends_a_wait() -> None:
    idle = HostPolicy()
    assert idle.handle(Quiesce()) == [Quiet()] and idle.fenced
    busy = HostPolicy()
    assert busy.handle(Arrive(1, "T/a", "c1", now=0.0)) == [Run(1)]
    assert busy.handle(Quiesce()) == []
    assert busy.handle(Fence()) == [Quiet()]  # the wait timed out: fenced with the turn running
    assert busy.handle(Finish(1)) == [] and not busy.quiescing


def test_a_tell_on_a_new_chain_waits_for_the_running_turn() -> None:
    policy = HostPolicy()
    assert policy.handle(Arrive(1, "T/a", "c1", now=0.0)) == [Run(1)]
    # A -> tell B -> tell A: a new chain, so it waits even though A's address is "on the way"
    assert policy.handle(Arrive(2, "T/a", "tell-2", now=0.0, chain=())) == []
    # A -> B -> A (blocking, same chain): admitted
    assert policy.handle(Arrive(3, "T/a", "c1", now=0.0, chain=("T/a", "T/b"))) == [Run(3)]
    assert policy.handle(Finish(3)) == []
    assert policy.handle(Finish(1)) == [Run(2)]


def test_turns_expiring_together_never_start_past_their_deadline() -> None:
    """Regression (found by the model test): when the first of several queued turns
    expired, the mailbox let the next one start though its deadline had passed as well."""
    policy = HostPolicy()
    assert policy.handle(Arrive(0, "T/a", "c1", now=0.0, interleave=True)) == [Run(0)]
    policy.handle(Activated("T/a"))
    assert policy.handle(Arrive(1, "T/a", "c1", now=0.0, deadline=0.5)) == []
    assert policy.handle(Arrive(2, "T/a", "c1", now=0.0, deadline=0.5, interleave=True)) == []
    assert policy.handle(Arrive(3, "T/a", "c1", now=0.0)) == []
    out = policy.handle(Tick(0.6))
    assert Reject(1, Why.TIMEOUT) in out and Reject(2, Why.TIMEOUT) in out
    assert not [i for i in out if isinstance(i, Run) and i.tid in (1, 2)]
    assert policy.handle(Finish(0)) == [Run(3)]  # the one without a deadline still gets its turn
    assert policy.handle(Finish(3)) == []
