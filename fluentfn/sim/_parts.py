"""The simulated durable store, and the reminders and in-memory timers of simulated
identities. Plain data, no clock of their own: the world arms their firings on its loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..state._store import Reminder, Scheduled

REPLIES_KEPT = 256  # per identity: the newest request ids whose replies a repeat is answered from


def _trim(replies: dict[str, bytes]) -> None:
    while len(replies) > REPLIES_KEPT:
        del replies[next(iter(replies))]  # the oldest (dicts keep insertion order)


class SimStore:
    """Durable rows per identity (its state and recorded replies: what survives a
    simulated crash) and the writes of ``persist="interval"`` identities not flushed yet
    (what a crash loses)."""

    def __init__(self) -> None:
        self.states: dict[str, bytes | None] = {}
        self.replies: dict[str, dict[str, bytes]] = {}
        self.unflushed: dict[str, tuple[bytes | None, dict[str, bytes]]] = {}  # state, replies since
        self.writes = 0

    def load(self, address: str) -> tuple[bytes | None, dict[str, bytes]]:
        """(state, replies) as a new activation reads them."""
        replies = dict(self.replies.get(address, ()))
        pending = self.unflushed.get(address)
        if pending is not None:
            replies.update(pending[1])
            return pending[0], replies
        return self.states.get(address), replies

    def write(self, address: str, state: bytes | None, rid: str, record: bytes, *, durable: bool) -> None:
        """One turn's write: at once (``durable``), or at the next ``flush``."""
        if durable:
            self.states[address] = state
            replies = self.replies.setdefault(address, {})
            replies[rid] = record
            if len(replies) > REPLIES_KEPT:
                _trim(replies)
            self.writes += 1
        else:
            new = self.unflushed.get(address, (None, {}))[1]
            new[rid] = record
            self.unflushed[address] = (state, new)

    def flush(self) -> int:
        """Write every unflushed identity (an interval's write-behind); returns how many."""
        n = len(self.unflushed)
        for address, (state, new) in self.unflushed.items():
            self.states[address] = state
            replies = self.replies.setdefault(address, {})
            replies.update(new)
            _trim(replies)
        self.writes += n
        self.unflushed.clear()
        return n

    def lose_unflushed(self, addresses: set[str]) -> None:
        for a in addresses:
            self.unflushed.pop(a, None)

    def delete(self, address: str) -> None:
        self.states.pop(address, None)
        self.replies.pop(address, None)
        self.unflushed.pop(address, None)

    def keys(self, type_name: str, prefix: str) -> list[str]:
        head = f"{type_name}/{prefix}"
        return sorted(a.split("/", 1)[1] for a in {*self.states, *self.unflushed} if a.startswith(head))


@dataclass
class Pending:
    """A reminder written with its turn: fired at ``due`` (virtual seconds), again every
    ``period_s`` if periodic."""

    address: str
    rid: str
    due: float
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    period_s: float
    fired: int = 0


class SimReminders:
    """Durable reminders (``ff.context().schedule`` / ``every``): the ``Scheduler`` of
    simulated turns. ``prepare`` checks one; the world writes it with its turn."""

    def __init__(self, definition_of: Any, now: Any, epoch: float) -> None:
        self._definition_of = definition_of
        self._now = now
        self._epoch = epoch
        self.staged: dict[str, Pending] = {}  # prepared, not yet written (rid -> reminder)
        self.written: dict[str, Pending] = {}  # rid -> reminder

    def prepare(self, address: str, rid: str, delay_s: float, method: str, args: tuple[Any, ...],
                kwargs: dict[str, Any], period_s: float = 0.0) -> Scheduled:  # fmt: skip
        definition = self._definition_of(address.split("/", 1)[0])
        try:
            definition.method(method).bind(args, kwargs)
        except NotFound:
            raise InvalidRequest(f"{definition.name} has no public method {method!r} to remind") from None
        due = self._now() + delay_s
        self.staged[rid] = Pending(address, rid, due, method, tuple(args), dict(kwargs), period_s)
        return Scheduled("sim", 0, Reminder(address, rid, self._epoch + due, b""))

    def cancel(self, address: str, reminder_id: str) -> bool:
        found = self.written.get(reminder_id)
        if found is None or found.address != address:
            return False
        del self.written[reminder_id]
        return True

    def pending(self, address: str, unwritten: Any = ()) -> list[dict[str, Any]]:
        rids = [s.row.rid for s in unwritten]
        rows = [r for r in self.written.values() if r.address == address]
        rows += [self.staged[rid] for rid in rids if rid in self.staged]
        return [{"id": r.rid, "method": r.method, "due": self._epoch + r.due, "period_s": r.period_s}
                for r in sorted(rows, key=lambda r: (r.due, r.rid))]  # fmt: skip
