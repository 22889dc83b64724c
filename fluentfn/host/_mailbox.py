"""The per-identity mailbox: which turns may run now. A pure state machine.

Rules: one turn at a time; a call whose chain already holds this identity (A -> B -> A)
is admitted at once, else it would wait on itself; in a reentrant type, interleavable
turns (async methods) run together, but never beside the turn that activates the
identity. Everything else waits in FIFO order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import Overloaded


@dataclass(slots=True, eq=False)
class Turn:
    """One call's claim on an identity."""

    chain_id: str
    chain: tuple[str, ...] = ()
    interleave: bool = False
    wake: Callable[[], None] | None = field(default=None, repr=False)


class Mailbox:
    """Admits turns for one identity (``address``); at most ``limit`` may wait."""

    __slots__ = ("activating", "address", "limit", "running", "waiting")

    def __init__(self, address: str, limit: int, activating: bool = False) -> None:
        self.address = address
        self.limit = limit
        self.activating = activating  # while True, the first turn runs alone (it activates)
        self.running: list[Turn] = []
        self.waiting: deque[Turn] | None = None  # allocated on first wait: most never wait

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    def _reentrant(self, turn: Turn) -> bool:
        return self.address in turn.chain and any(r.chain_id == turn.chain_id for r in self.running)

    def _admissible(self, turn: Turn) -> bool:
        if not self.running:
            return True
        if self.activating:
            return False
        return turn.interleave and all(r.interleave for r in self.running)

    def activated(self) -> list[Turn]:
        """The identity is active: waiting turns that may interleave now start (returned)."""
        self.activating = False
        return self._start_waiting()

    def _start_waiting(self) -> list[Turn]:
        started: list[Turn] = []
        while self.waiting and self._admissible(self.waiting[0]):
            nxt = self.waiting.popleft()
            self.running.append(nxt)
            started.append(nxt)
        return started

    def offer_now(self, turn: Turn) -> bool:
        """True: ``turn`` runs now. False: it may not start yet (nothing changed)."""
        if not self.running and not self.waiting:  # idle: the common case, nothing to weigh
            self.running.append(turn)
            return True
        if self._reentrant(turn) or (not self.waiting and self._admissible(turn)):
            self.running.append(turn)
            return True
        return False

    def offer(self, turn: Turn) -> bool:
        """True: run now. False: queued, ``turn.wake`` is called when it may run."""
        if self.offer_now(turn):
            return True
        self.enqueue(turn)
        return False

    def enqueue(self, turn: Turn) -> None:
        """Queue a turn that may not start yet (``offer_now`` said so); Overloaded if full."""
        if self.waiting is None:
            self.waiting = deque()
        if len(self.waiting) >= self.limit:
            raise Overloaded(f"{self.address} has {len(self.waiting)} calls waiting")
        self.waiting.append(turn)

    def finish(self, turn: Turn) -> list[Turn]:
        """End ``turn``; return the waiting turns that may run now (already marked running)."""
        self.running.remove(turn)
        return self._start_waiting() if self.waiting else []

    def cancel(self, turn: Turn) -> list[Turn]:
        """Withdraw a waiting turn (its caller gave up); returns turns that may now run."""
        try:
            if self.waiting is None:
                raise ValueError
            self.waiting.remove(turn)
        except ValueError:
            return self.finish(turn) if turn in self.running else []
        return self._start_waiting()  # the withdrawn turn may have been what held the next ones back
