"""The activation table: which identities are live in a host, in least-recently-used order.

Pure bookkeeping (no I/O, no clocks of its own): the host asks it which identities to
passivate, then does the passivating. Whether an identity is in use is the admission
policy's to say, so the queries take it as a predicate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._recent import RecentReplies
from ._written import Image


class Memory(NamedTuple):
    """What a partition's previous owner hands the next one of an identity at a live move:
    its in-memory state (``persist="never"``; None otherwise) and its recent request ids
    with their recorded replies, so a re-sent turn that ran before the move is answered,
    not run again, in every persist mode."""

    state: bytes | None
    replies: tuple[tuple[str, bytes], ...]


Handoff = dict[str, Memory]  # by address


@dataclass(frozen=True, slots=True)
class Released:
    """What a host's release of a partition gives its next owner (``memory``), how long
    the partition went on serving first (``served_s``: it waited for a moment no turn of
    it ran; its callers were held only after that), how long its callers were then held
    on this host (``held_s``: the drain of late turns and the hand-over), and how long the
    host took over the whole request (``took_s``, set where the request is answered)."""

    memory: Handoff
    served_s: float = 0.0
    held_s: float = 0.0
    took_s: float = 0.0


class Activation(RecentReplies):
    """A live (or activating) identity: its instance, its recent replies (``RecentReplies``)
    and bookkeeping."""

    __slots__ = (
        "address",
        "dirty",
        "instance",
        "key",
        "last_used",
        "moved",
        "ready",
        "snapshot",
        "type_name",
        "version",
    )

    def __init__(self, type_name: str, key: str, address: str = "", last_used: float = 0.0) -> None:
        self.address = address or f"{type_name}/{key}"
        self.type_name = type_name
        self.key = key
        self.instance: Any = None
        self.last_used = last_used
        self.ready = False  # instance built and on_activate done
        self.version = 0  # store version of the state last loaded or written
        self.snapshot: Image | None = None  # the state as last persisted
        self.replies = None  # ``RecentReplies``: none kept yet (its other fields are set with the first)
        self.dirty = False  # changed since the last write (persist="interval")
        # Its memory was handed to the partition's next owner while a turn still ran (the
        # turn outlived the drain): that turn's outcome is indeterminate, never a success.
        self.moved = False

    def forget(self, *, erased: bool = False) -> None:
        """Drop the instance: the next turn activates the identity again. ``erased``: its
        stored record is gone too, so forget what is known of it (version, replies)."""
        self.instance = None
        self.ready = False
        if erased:
            self.version = 0
            self.snapshot = None
            self.forget_replies()
            self.dirty = False


class ActivationTable:
    """Live identities by address, oldest use first.

    A plain dict in use order (a use re-inserts, which moves to the end), not an
    ``OrderedDict``: its inserts and lookups cost a third more, its moves ten times as
    much, and it holds a node more per identity. The newest entry is remembered, so that
    using it again (a new identity's first turn, calls in a row to one identity) moves
    nothing."""

    def __init__(self) -> None:
        self._items: dict[str, Activation] = {}
        self._newest: Activation | None = None  # the last entry in use order, when known

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Activation]:
        return iter(list(self._items.values()))

    def get(self, address: str) -> Activation | None:
        return self._items.get(address)

    def new(self, type_name: str, key: str, address: str, now: float) -> Activation:
        """A new identity at ``address`` (which the table has not: the caller looked, under
        the same lock), used ``now``: the newest entry."""
        act = self._items[address] = self._newest = Activation(type_name, key, address, now)
        return act

    def touch(self, act: Activation, now: float) -> None:
        """Record a use: ``act`` becomes the most recently used."""
        act.last_used = now
        if act is self._newest:
            return
        items = self._items
        found = items.pop(act.address, None)
        if found is not None:
            items[act.address] = found
            self._newest = found

    def remove(self, act: Activation) -> None:
        if self._items.get(act.address) is act:
            del self._items[act.address]
            if act is self._newest:
                self._newest = None

    def idle(
        self, now: float, timeout_of: Callable[[str], float], min_timeout: float, in_use: Callable[[str], bool]
    ) -> list[Activation]:
        """Identities not in use and unused for longer than their type's timeout."""
        out: list[Activation] = []
        for act in self._items.values():
            age = now - act.last_used
            if age < min_timeout:
                break  # everything after this one was used more recently
            if age >= timeout_of(act.type_name) and not in_use(act.address):
                out.append(act)
        return out

    def over_cap(self, cap: int, in_use: Callable[[str], bool]) -> list[Activation]:
        """The least recently used identities not in use, beyond ``cap`` live ones."""
        excess = len(self._items) - cap
        out: list[Activation] = []
        if excess <= 0:
            return out
        for act in self._items.values():
            if len(out) >= excess:
                break
            if not in_use(act.address):
                out.append(act)
        return out
