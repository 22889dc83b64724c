"""The store interface: versioned state records, shard epochs, reminders, and a KV area.

Every write of a record is conditional: on the record's version (optimistic concurrency,
used by the FaaS mode) and on the writer's shard epoch (single activation: a host whose
shard has moved can no longer write).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import FluentError

"""How long a state-changing call's reply is kept for retries (an hour by default)."""


class StaleEpoch(FluentError):
    """The writer's shard epoch is older than the store's: another host owns the shard."""


class StoreLost(FluentError):
    """The store a process opened is gone or was replaced (file deleted, Redis flushed)."""


class VersionConflict(FluentError):
    """The record changed since it was read."""


class WouldBlock(Exception):
    """A ``save(nowait=True)`` that would have had to wait (another writer holds the lock,
    a network round trip, an emulated delay): nothing was written; write again, blocking."""


@dataclass(frozen=True, slots=True)
class Record:
    """A stored identity: its state and the state's version."""

    version: int
    state: bytes


@dataclass(frozen=True, slots=True)
class Reminder:
    address: str
    rid: str
    due: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A reminder row to add, with the (group, partition) whose host fires it."""

    group: str
    shard: int
    row: Reminder


@dataclass(frozen=True, slots=True)
class Write:
    """One identity's state in a ``save_many`` (``state`` and ``parts`` as in ``save``)."""

    address: str
    expected: int
    state: bytes
    parts: Mapping[str, bytes | None] | None = None


class Store(Protocol):
    """What hosts and FaaS invocations need from durable storage. Thread-safe."""

    url: str

    def claim_shard(self, group: str, shard: int, owner: str = "", *, nowait: bool = False) -> int:
        """Take ownership of a shard for cluster ``owner``: returns a new epoch, higher
        than any before. ``nowait``: WouldBlock, nothing claimed, unless the store takes
        the claim at once (a host's event loop tries it so before a thread hop)."""
        ...

    def shard_epoch(self, group: str, shard: int) -> int: ...

    def shard_owner(self, group: str, shard: int) -> tuple[int, str]:
        """The shard's current epoch and the cluster that claimed it."""
        ...

    def check(self) -> None:
        """Raise StoreLost unless this is still the store that was opened."""
        ...

    def keys(self, type_name: str, prefix: str = "", limit: int | None = None) -> list[str]:
        """Keys of ``type_name`` with stored state that start with ``prefix``, sorted."""
        ...

    def delete_identity(self, address: str) -> None:
        """Remove an identity's state, recorded replies and reminders."""
        ...

    def load(self, address: str) -> Record | None: ...

    def save(
        self,
        address: str,
        *,
        expected: int,
        state: bytes,
        fence: tuple[str, int, int] | None,
        reply: tuple[str, bytes] | None = None,
        reminders: Sequence[Scheduled] = (),
        parts: Mapping[str, bytes | None] | None = None,
        nowait: bool = False,
        urgent: bool = False,
    ) -> int:
        """Write if the version is ``expected`` and ``fence`` (group, shard, epoch) is current.

        ``nowait``: raise WouldBlock, having written nothing, rather than wait for anything
        (what a host's event loop may try before it hands the write to a worker).
        ``urgent``: a write that a partition's move waits for (a turn still running on a
        draining partition, the hand-over): it goes before the process's other writers
        where the store queues them (SQLite); a store that queues nothing ignores it.

        ``parts`` None: ``state`` is the whole state (any large parts of an earlier write are
        dropped). Else ``state`` is the map of small attributes and ``parts`` the large ones
        that changed (encoded value, or None: gone), the others kept (``_layout``); ``load``
        gives the whole state back.

        ``reply`` (request id, reply) is recorded in the same atomic write and kept for
        ``REPLY_TTL_S``; ``reminders`` scheduled by the turn are added in it too (a turn's
        reminders exist exactly when its state does). Returns the new version; raises
        VersionConflict or StaleEpoch.
        """
        ...

    def save_many(
        self,
        writes: Sequence[Write],
        *,
        fence: tuple[str, int, int] | None,
        urgent: bool = False,
        nowait: bool = False,
    ) -> list[int]:
        """Write every record of ``writes`` as ``save`` would (no replies, no reminders)
        in one atomic step: all of them, or none (VersionConflict or StaleEpoch, nothing
        written). A partition's hand-over writes its identities so (``urgent`` and
        ``nowait``, as in ``save``). Returns the new versions, in order."""
        ...

    def get_reply(self, address: str, request_id: str) -> bytes | None:
        """The reply recorded for a request to ``address`` (a retry's answer), if any."""
        ...

    def prune_replies(self, older_than: float) -> int:
        """Forget replies recorded before ``older_than`` (epoch seconds); returns how many."""
        ...

    def add_reminder(self, group: str, shard: int, reminder: Reminder) -> None: ...

    def cancel_reminder(self, address: str, rid: str) -> bool: ...

    def due_reminders(self, group: str, shard: int, now: float, limit: int = 100) -> list[Reminder]: ...

    def reschedule_reminder(self, group: str, shard: int, address: str, rid: str, due: float) -> bool:
        """Move a pending reminder to ``due``; False if it was cancelled meanwhile."""
        ...

    def reminders_of(self, address: str) -> list[Reminder]:
        """An identity's pending reminders, soonest first."""
        ...

    def put(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """KV area (FaaS results and messages, counts of turns under way). A row with
        ``ttl_s`` is gone that many seconds later: ``get`` no longer sees it, and
        ``prune_expired`` (or the store itself) removes it."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def prune_expired(self, now: float) -> int:
        """Remove the KV rows whose ``ttl_s`` ran out before ``now`` (epoch seconds); how many."""
        ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...


def has_reminders(store: Store, group: str, partition: int, within_s: float = math.inf) -> bool:
    """Whether a partition has a pending reminder due within ``within_s`` (any, by
    default): its host must be running to fire it."""
    until = 1e18 if math.isinf(within_s) else time.time() + within_s
    return bool(store.due_reminders(group, partition, until, limit=1))
