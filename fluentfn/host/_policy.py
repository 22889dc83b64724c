"""The host's admission policy as a pure state machine: events in, instructions out.

No clocks, threads, sockets or Ray: the engine feeds it what happened (a call arrived,
a turn finished, time passed, the shard was fenced, an identity should be passivated)
and executes what it says (run this turn, reject that one and why). dask/distributed's
``worker_state_machine`` is the model; ``tests/test_policy.py`` checks its invariants
over random interleavings with hypothesis.

Rules:
- One turn at a time per identity (``Mailbox``); reentry only along a chain on which
  the identity is waiting (A -> B -> A), or interleaving async turns of a reentrant type.
- A queued turn whose deadline has passed is withdrawn (``Reject(TIMEOUT)``) and never
  runs; one that arrives past its deadline is refused at once.
- At most ``inflight_limit`` turns per host are running or queued, and at most
  ``mailbox_limit`` wait per identity (``Reject(OVERLOADED)``).
- Once fenced (the shard moved), queued and new turns are refused (``Reject(REDIRECT)``);
  running ones finish.
- A partition about to move is quiesced first (``Quiesce``): it goes on serving, and is
  fenced at the first moment no turn of it runs (``Quiet``), so that its callers are held
  only while it is handed over, not while its running turns end.
- Passivation is a turn of its own, admitted only when the identity is idle.

An identity's mailbox exists only while it is needed: a turn that runs alone on an
identity that is not (or no longer) known to be activated is kept as its own entry, and
an idle identity has nothing here unless its activation let interleaving turns in (a
reentrant type's ``Activated``). Most identities are idle, and most turns run alone.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from enum import Enum

from ..errors import Overloaded
from ._mailbox import Mailbox, Turn


class Why(Enum):
    """Why a turn was refused (the engine maps each to its error)."""

    TIMEOUT = "timeout"  # still waiting for its turn at its deadline
    EXPIRED = "expired"  # its deadline had passed when it arrived
    OVERLOADED = "overloaded"
    REDIRECT = "redirect"
    BUSY = "busy"  # passivation of an identity that is in use: try later
    FOREIGN = "foreign"  # another cluster on the same namespace and store took the shard
    STORE_LOST = "store-lost"  # the store vanished or was replaced under the host


# -- events ---------------------------------------------------------------------------------
#
# Events and instructions are never changed once made. They are not frozen dataclasses:
# one of those costs about six times as much to make, and a turn makes several.


@dataclass(slots=True)
class Arrive:
    """A call (or a tell) for ``address`` wants a turn."""

    tid: int
    address: str
    chain_id: str
    now: float
    deadline: float = 0.0  # epoch seconds; 0: none
    chain: tuple[str, ...] = ()
    interleave: bool = False


@dataclass(slots=True)
class Finish:
    """A running turn ended (its reply is the engine's business)."""

    tid: int


@dataclass(slots=True)
class Withdraw:
    """The caller gave up on a turn (its own timer fired): drop it if still queued."""

    tid: int


@dataclass(slots=True)
class Activated:
    """``address`` finished activating: interleavable waiters may join now."""

    address: str


@dataclass(slots=True)
class Deactivated:
    """``address`` lost its instance (rolled back, fenced): its next turn activates it alone."""

    address: str


@dataclass(slots=True)
class Tick:
    """Time passed: expire queued turns whose deadline is ``now`` or earlier."""

    now: float


@dataclass(slots=True)
class Fence:
    """The host may serve no more: its shard moved (``REDIRECT``), another cluster took
    it (``FOREIGN``), or its store is gone (``STORE_LOST``)."""

    why: Why = Why.REDIRECT


@dataclass(slots=True)
class Quiesce:
    """The shard is about to move: fence it at the first moment no turn runs (``Quiet``)."""


@dataclass(slots=True)
class Passivate:
    """Deactivate ``address`` if it is idle (a turn of its own, ``tid``)."""

    tid: int
    address: str


Event = Arrive | Finish | Withdraw | Activated | Deactivated | Tick | Fence | Quiesce | Passivate


# -- instructions ---------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """Start turn ``tid`` now."""

    tid: int


@dataclass(slots=True)
class Reject:
    """Answer turn ``tid`` with the error for ``why``; it never runs."""

    tid: int
    why: Why


@dataclass(slots=True)
class Forget:
    """``address`` was passivated and is idle: drop its mailbox."""

    address: str


@dataclass(slots=True)
class Quiet:
    """The quiesced shard is fenced and no turn of it runs: its hand-over may start (or a
    fence for another reason ended the wait)."""


Instruction = Run | Reject | Forget | Quiet


@dataclass(slots=True, eq=False)
class _Entry(Turn):
    """A turn as the policy tracks it: the mailbox's claim and the policy's bookkeeping in
    one object (one allocation per turn; the mailbox hands it back from ``finish``)."""

    tid: int = 0
    address: str = ""
    deadline: float = 0.0
    running: bool = False
    passivation: bool = False


@dataclass(slots=True)
class HostPolicy:
    """Admission for every identity of one host."""

    mailbox_limit: int = 10_000
    inflight_limit: int = 100_000
    fenced: bool = False
    fenced_why: Why = Why.REDIRECT
    quiescing: bool = False  # a ``Quiesce`` waits for the first moment no turn runs
    # An identity's turns: a ``Mailbox``; or the one ``_Entry`` that runs alone, none
    # waiting, the box it would be in still activating (a fresh box's state); or nothing,
    # when idle and no box would say more than a fresh one.
    _boxes: dict[str, Mailbox | _Entry] = field(default_factory=dict)
    _entries: dict[int, _Entry] = field(default_factory=dict)
    _deadlines: list[tuple[float, int]] = field(default_factory=list)
    _now: float = 0.0  # the latest time an event told (arrivals and ticks carry one)

    @property
    def inflight(self) -> int:
        """Turns running or queued."""
        return len(self._entries)

    def idle(self, address: str) -> bool:
        """No turn of ``address`` is running or queued."""
        box = self._boxes.get(address)
        return box is None or (type(box) is Mailbox and box.idle)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a turn still queued (None: none), for the timer that
        ticks the policy; turns that ran or left meanwhile are dropped from the heap."""
        while self._deadlines:
            entry = self._entries.get(self._deadlines[0][1])
            if entry is not None and not entry.running:
                return self._deadlines[0][0]
            heapq.heappop(self._deadlines)
        return None

    def running_all(self) -> list[int]:
        return [tid for tid, e in self._entries.items() if e.running]

    def queued_all(self) -> list[int]:
        return [tid for tid, e in self._entries.items() if not e.running]

    def running(self, address: str) -> list[int]:
        """Ids of the turns of ``address`` running now."""
        return [tid for tid, e in self._entries.items() if e.address == address and e.running]

    def queued(self, address: str) -> list[int]:
        return [tid for tid, e in self._entries.items() if e.address == address and not e.running]

    def handle(self, event: Event) -> list[Instruction]:
        """Apply one event; the instructions say what the engine must do now, in order."""
        if isinstance(event, Arrive):
            return self._arrive(event)
        if isinstance(event, Finish):
            return self.finish(event.tid)
        if isinstance(event, Withdraw):
            return self._withdraw(event.tid, None)
        if isinstance(event, Activated):
            return self._started(self._mailbox(event.address).activated()) if event.address in self._boxes else []
        if isinstance(event, Deactivated):
            box = self._boxes.get(event.address)
            if type(box) is Mailbox:
                box.activating = True
                if box.idle:  # now what a fresh box would be
                    del self._boxes[event.address]
            return []
        if isinstance(event, Tick):
            return self._tick(event.now)
        if isinstance(event, Fence):
            return self._fence(event.why)
        if isinstance(event, Quiesce):
            return self._quiesce()
        return self._passivate(event)

    # -- handlers --------------------------------------------------------------------------

    def _mailbox(self, address: str) -> Mailbox:
        """``address``'s mailbox, made if it has none (a fresh one: its first turn runs
        alone, it activates), or from the one turn it runs alone."""
        box = self._boxes.get(address)
        if isinstance(box, Mailbox):
            return box
        made = self._boxes[address] = Mailbox(address, self.mailbox_limit, True)
        if box is not None:
            made.running.append(box)
        return made

    def start_now(
        self,
        tid: int,
        address: str,
        chain_id: str,
        now: float,
        deadline: float = 0.0,
        chain: tuple[str, ...] = (),
        interleave: bool = False,
    ) -> bool:
        """``handle(Arrive(...))`` for a turn that may start at once, without the event or
        the instruction list (a call to a live, idle identity: the common case). True: the
        turn runs now, as if ``[Run(tid)]`` had come back. False: nothing changed — feed
        the ``Arrive`` event (the turn must wait, or be refused)."""
        if self.fenced or (deadline and deadline <= now) or len(self._entries) >= self.inflight_limit:
            return False
        entry = _Entry(chain_id, chain, interleave, None, tid, address, deadline, True)
        box = self._boxes.get(address)
        if box is None:  # an idle identity (or a new one): the turn runs alone, no mailbox needed
            self._boxes[address] = entry
        elif not (box if type(box) is Mailbox else self._mailbox(address)).offer_now(entry):
            return False  # (a turn running alone is now in a mailbox: the same state)
        if now > self._now:
            self._now = now
        self._entries[tid] = entry
        return True

    def _arrive(self, ev: Arrive) -> list[Instruction]:
        if self.start_now(ev.tid, ev.address, ev.chain_id, ev.now, ev.deadline, ev.chain, ev.interleave):
            return [Run(ev.tid)]
        self._now = max(self._now, ev.now)
        if self.fenced:
            return [Reject(ev.tid, self.fenced_why)]
        if ev.deadline and ev.deadline <= ev.now:
            return [Reject(ev.tid, Why.EXPIRED)]
        if len(self._entries) >= self.inflight_limit:
            return [Reject(ev.tid, Why.OVERLOADED)]
        entry = _Entry(ev.chain_id, ev.chain, ev.interleave, None, ev.tid, ev.address, ev.deadline, False)
        try:
            self._mailbox(ev.address).enqueue(entry)  # start_now found it busy: it may not start yet
        except Overloaded:
            return [Reject(ev.tid, Why.OVERLOADED)]
        self._entries[ev.tid] = entry
        if ev.deadline:
            heapq.heappush(self._deadlines, (ev.deadline, ev.tid))
        return []

    def _started(self, turns: list[Turn]) -> list[Instruction]:
        """Run the turns a mailbox let go; one whose deadline has passed meanwhile is
        refused instead (``TIMEOUT``) and gives its place to the next."""
        out: list[Instruction] = []
        for entry in turns:
            assert isinstance(entry, _Entry)
            tid = entry.tid
            if entry.deadline and entry.deadline <= self._now:
                del self._entries[tid]
                out.append(Reject(tid, Why.TIMEOUT))
                out += self._started(self._mailbox(entry.address).finish(entry))
                continue
            entry.running = True
            out.append(Run(tid))
        return out

    def finish(self, tid: int) -> list[Instruction]:
        """``handle(Finish(tid))``, without the event (every turn's end)."""
        entry = self._entries.pop(tid, None)
        if entry is None or not entry.running:
            if entry is not None:  # finishing a turn that never ran is a bug of the caller
                self._entries[tid] = entry
                raise ValueError(f"turn {tid} finished without running")
            return []
        address = entry.address
        box = self._boxes[address]
        if box is entry:  # it ran alone: the identity is idle, and needs no mailbox
            del self._boxes[address]
            out: list[Instruction] = [Forget(address)] if entry.passivation else []
            return self._quiet_now(out) if self.quiescing else out
        assert type(box) is Mailbox
        if entry.passivation:  # turns that arrived meanwhile: the first activates the identity again
            box.activating = True
        started = box.finish(entry)
        out = self._started(started) if started else []
        if box.activating and box.idle and self._boxes.get(address) is box:  # what a fresh box would be
            del self._boxes[address]
            if entry.passivation:
                out.append(Forget(address))
        return self._quiet_now(out) if self.quiescing else out

    def _withdraw(self, tid: int, why: Why | None) -> list[Instruction]:
        entry = self._entries.get(tid)
        if entry is None or entry.running:
            return []  # unknown, done, or already running: it will finish on its own
        del self._entries[tid]
        box = self._mailbox(entry.address)  # (a queued turn's identity has one)
        out: list[Instruction] = [Reject(tid, why)] if why is not None else []
        return out + self._started(box.cancel(entry))

    def _tick(self, now: float) -> list[Instruction]:
        self._now = max(self._now, now)
        out: list[Instruction] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, tid = heapq.heappop(self._deadlines)
            out += self._withdraw(tid, Why.TIMEOUT)
        return out

    def _fence(self, why: Why) -> list[Instruction]:
        if not self.fenced or why is not Why.REDIRECT:  # a clearer reason replaces "moved"
            self.fenced_why = why
        self.fenced = True
        out: list[Instruction] = []
        for tid in [t for t, e in self._entries.items() if not e.running]:
            out += self._withdraw(tid, self.fenced_why)
        if self.quiescing:  # the wait is over: whoever waits hands over what is left
            self.quiescing = False
            out.append(Quiet())
        return out

    def _quiesce(self) -> list[Instruction]:
        if self.fenced:
            return [Quiet()]
        self.quiescing = True
        return self._quiet_now([])

    def _quiet_now(self, out: list[Instruction]) -> list[Instruction]:
        """Quiescing: fence now if no turn runs (after ``out``, which may start some)."""
        if any(e.running for e in self._entries.values()):  # (``out``'s runs among them)
            return out
        return out + self._fence(Why.REDIRECT)

    def _passivate(self, ev: Passivate) -> list[Instruction]:
        if not self.idle(ev.address):
            return [Reject(ev.tid, Why.BUSY)]
        # Idle (or never run here, refused at the door): the passivation runs alone; its
        # end forgets the identity (``Forget``), and its next turn activates it again.
        entry = _Entry(f"passivate:{ev.tid}", tid=ev.tid, address=ev.address, running=True, passivation=True)
        box = self._boxes.get(ev.address)
        if box is None:
            self._boxes[ev.address] = entry
        else:
            assert type(box) is Mailbox
            box.offer(entry)
        self._entries[ev.tid] = entry
        return [Run(ev.tid)]
