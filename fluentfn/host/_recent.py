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
    ``hold``, for every turn of the last ``REPLY_HOLD_S`` seconds (up to ``HOLD_MAX`` a
    generation).

    An identity (``Activation``) is one, rather than holding one: most identities keep one
    reply or none, and an object of their own would cost each a tracked object for the
    cyclic collector to walk and 64 bytes. ``replies`` is the newer generation: None when
    nothing is kept, a ``(request id, reply)`` pair while it is the first and only reply
    (56 bytes, where a dict of one is 184: what most idle identities keep), else a dict.
    The older generation and when the newer began are set with the first reply kept, and
    read only while ``replies`` is not None.
    """

    __slots__ = ("_older", "_since", "replies")

    def __init__(self, items: Iterable[tuple[str, bytes]] = (), now: float = 0.0) -> None:
        self.replies: dict[str, bytes] | tuple[str, bytes] | None = None
        self.adopt(items, now)

    def adopt(self, items: Iterable[tuple[str, bytes]], now: float) -> None:
        """Keep ``items`` (a previous owner's, handed over at a move) and nothing else."""
        kept = dict(items)
        self.replies = kept or None
        self._older: dict[str, bytes] | None = None  # made at the first swap: most identities never swap
        self._since = now  # when the newer generation began

    def recall(self, request_id: str) -> bytes | None:
        """The reply kept for ``request_id``, if one is."""
        new = self.replies
        if new is None:
            return None
        if isinstance(new, tuple):
            return new[1] if new[0] == request_id else None
        found = new.get(request_id)
        if found is None and self._older is not None:
            return self._older.get(request_id)
        return found

    def keep(self, request_id: str, reply: bytes, now: float = 0.0, hold: bool = False) -> None:
        """Keep ``reply``; ``now``: the monotonic clock, read by the caller when ``hold``.
        The older generation goes when the newer one has more than ``KEEP_LAST`` and is
        ``REPLY_HOLD_S`` old (or ``HOLD_MAX`` long); without ``hold``, at ``KEEP_LAST``."""
        new = self.replies
        if new is None:  # the first: nothing to age out yet
            self.replies, self._older, self._since = (request_id, reply), None, now
            return
        if isinstance(new, tuple):  # the second: a dict from now on
            self.replies = {new[0]: new[1], request_id: reply}
            return
        new[request_id] = reply
        if len(new) > KEEP_LAST and (not hold or now - self._since >= REPLY_HOLD_S or len(new) >= HOLD_MAX):
            self._older, self.replies, self._since = new, {}, now

    def drop(self, request_id: str) -> None:
        """Forget the reply kept for ``request_id`` (its write failed: the store decides)."""
        new = self.replies
        if new is None:
            return
        if isinstance(new, tuple):
            if new[0] == request_id:
                self.replies = None
            return
        new.pop(request_id, None)
        if self._older is not None:
            self._older.pop(request_id, None)

    def forget_replies(self) -> None:
        self.replies = self._older = None

    def kept(self) -> tuple[tuple[str, bytes], ...]:
        """Every kept reply, oldest first (what a live move hands over)."""
        new = self.replies
        if new is None:
            return ()
        if isinstance(new, tuple):
            return (new,)
        return (*(self._older or {}).items(), *new.items())
