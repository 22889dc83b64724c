"""Where a sync turn runs: on the host's event loop (no thread hop) or a worker thread.

A pure decision, fed what is known of the turn and what its method's earlier loop turns
took; the sync lane (``_lane.py``) carries it out. A turn may run on the loop only if
its method makes no calls (``makes_no_calls``: it cannot block on another identity), its
identity is live (no store read), it is a first attempt (a retry may need the store to
find its recorded reply), the identity is not reentrant, the caller is the loop itself,
and the method was not demoted: a loop turn that took longer than the budget (big data,
a slow operator) sends its method's later turns to worker threads for good, where they
cannot hold up the host's other calls.
"""

from __future__ import annotations

from dataclasses import dataclass

LOOP_TURN_BUDGET_S = 0.002


@dataclass(frozen=True, slots=True)
class Turn:
    """What is known of a sync turn when it starts."""

    method: tuple[str, str]  # (type, method)
    call_free: bool
    live: bool
    first_attempt: bool
    reentrant: bool
    from_loop: bool


class WhereTurnsRun:
    """The loop-or-worker policy of one host engine."""

    __slots__ = ("_budget_s", "_enabled", "demoted")

    def __init__(self, *, enabled: bool = True, budget_s: float = LOOP_TURN_BUDGET_S) -> None:
        self._enabled = enabled  # FLUENTFN_LOOP_TURNS=0 turns loop turns off
        self._budget_s = budget_s
        self.demoted: set[tuple[str, str]] = set()

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

    def ran_on_loop(self, method: tuple[str, str], took_s: float) -> bool:
        """A loop turn of ``method`` took ``took_s``: True if that demotes the method now."""
        if took_s <= self._budget_s or method in self.demoted:
            return False
        self.demoted.add(method)
        return True
