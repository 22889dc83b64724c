"""Where a sync turn runs: on the host's event loop (no thread hop) or a worker thread.

A pure decision, fed what is known of the turn and what its method's earlier loop turns
took; the sync lane (``_lane.py``) carries it out. A turn may run on the loop only if
its method makes no calls (``makes_no_calls``: it cannot block on another identity), its
identity is live (no store read), it is a first attempt (a retry may need the store to
find its recorded reply), the identity is not reentrant, the caller is the loop itself,
and the method was not demoted: a method whose loop turns take longer than the budget
(big data, a slow operator) has its later turns sent to worker threads for good, where
they cannot hold up the host's other calls.

One overrun is not enough: on a busy machine the loop thread is preempted now and then,
and a turn it was preempted in looks a scheduler quantum long however cheap the method.
Demoting on that would cost every later call of the method two thread hand-offs. So a
method is demoted once ``STRIKES`` of its loop turns overran and they are at least one in
``STRIKE_SHARE`` of its loop turns: a method that is slow every time goes after its third
turn, one slow every few turns soon after, and a cheap one that was preempted stays.
"""

from __future__ import annotations

from dataclasses import dataclass

LOOP_TURN_BUDGET_S = 0.002
STRIKES = 3  # overruns before a method may be demoted
STRIKE_SHARE = 16  # ... and at least one in this many of its loop turns overran


@dataclass(slots=True)  # not frozen: one is made per turn, and a frozen one costs several times as much
class Turn:
    """What is known of a sync turn when it starts (never changed once made)."""

    method: str  # "Type.method"
    call_free: bool
    live: bool
    first_attempt: bool
    reentrant: bool
    from_loop: bool


class WhereTurnsRun:
    """The loop-or-worker policy of one host engine."""

    __slots__ = ("_budget_s", "_enabled", "_record", "demoted")

    def __init__(self, *, enabled: bool = True, budget_s: float = LOOP_TURN_BUDGET_S) -> None:
        self._enabled = enabled  # FLUENTFN_LOOP_TURNS=0 turns loop turns off
        self._budget_s = budget_s
        self.demoted: set[str] = set()
        self._record: dict[str, list[int]] = {}  # method -> [loop turns, overruns]

    def on_loop(self, turn: Turn) -> bool:
        """Run ``turn`` on the loop (True) or on a worker thread (False)."""
        return (
            self._enabled
            and turn.call_free
            and turn.from_loop
            and turn.live
            and turn.first_attempt
            and not turn.reentrant
            and turn.method not in self.demoted
        )

    def ran_on_loop(self, method: str, took_s: float) -> bool:
        """A loop turn of ``method`` took ``took_s``: True if that demotes the method now."""
        if method in self.demoted:
            return False
        record = self._record.get(method)
        if record is None:
            record = self._record[method] = [0, 0]
        record[0] += 1
        if took_s <= self._budget_s:
            return False
        record[1] += 1
        if record[1] < STRIKES or record[1] * STRIKE_SHARE < record[0]:
            return False  # isolated: a preemption, not the method
        self.demoted.add(method)
        del self._record[method]
        return True
