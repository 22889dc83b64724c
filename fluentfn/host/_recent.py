"""The replies an identity keeps in memory, so a re-sent request is answered, not run again.

Under ``persist="call"`` the store has every reply and memory only spares a lookup: the
last ``KEEP_LAST`` are kept. Under ``"interval"`` and ``"never"`` memory is the only
record, and a request may be re-sent (a partition moved, a stream broke) long after
many later turns of a busy identity ran: every reply younger than ``REPLY_HOLD_S`` is
kept too, up to ``HOLD_MAX`` per generation. Two generations, swapped when the newer
is full, so a turn costs a dict insert and no scan.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._config import REPLY_HOLD_S

KEEP_LAST = 64  # replies every identity keeps, whatever their age
HOLD_MAX = 8192  # replies one generation holds at most, however young (memory stays bounded)


class RecentReplies:
    """Request id -> recorded reply, for the last ``KEEP_LAST`` turns at least and, with
    ``hold``, for every turn of the last ``REPLY_HOLD_S`` seconds (up to ``HOLD_MAX`` a generation)."""

    __slots__ = ("_new", "_old", "_since")

    def __init__(self, items: Iterable[tuple[str, bytes]] = (), now: float = 0.0) -> None:
        self._new: dict[str, bytes] = dict(items)
        self._old: dict[str, bytes] | None = None  # made at the first swap: most identities never swap
        self._since = now  # when the newer generation began

    def get(self, request_id: str) -> bytes | None:
        found = self._new.get(request_id)
        if found is None and self._old is not None:
            return self._old.get(request_id)
        return found

    def add(self, request_id: str, reply: bytes, now: float = 0.0, hold: bool = False) -> None:
        """Keep ``reply``; ``now``: the monotonic clock, read by the caller when ``hold``.
        The older generation goes when the newer one has more than ``KEEP_LAST`` and is
        ``REPLY_HOLD_S`` old (or ``HOLD_MAX`` long); without ``hold``, at ``KEEP_LAST``."""
        new = self._new
        new[request_id] = reply
        if len(new) > KEEP_LAST and (not hold or now - self._since >= REPLY_HOLD_S or len(new) >= HOLD_MAX):
            self._old, self._new, self._since = new, {}, now

    def pop(self, request_id: str) -> None:
        self._new.pop(request_id, None)
        if self._old is not None:
            self._old.pop(request_id, None)

    def items(self) -> tuple[tuple[str, bytes], ...]:
        """Every kept reply, oldest first (what a live move hands over)."""
        return (*(self._old or {}).items(), *self._new.items())

    def __len__(self) -> int:
        return len(self._new) + (len(self._old) if self._old is not None else 0)
