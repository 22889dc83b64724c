"""A store wrapper that counts traffic and can emulate a remote store's latency and bandwidth."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._store import Record, Reminder, Scheduled, Store, WouldBlock, Write

# DynamoDB's item limit and request units: larger records live in the object store.
ITEM_LIMIT = 400 * 1024
WRITE_UNIT = 1024
READ_UNIT = 4096
_NAMES = {
    op: (f"storage_{op}s", f"storage_bytes_{'read' if op == 'read' else 'written'}", f"record_{op}s",
         f"record_{op}_units", READ_UNIT if op == "read" else WRITE_UNIT, f"object_{op}s")
    for op in ("read", "write")
}  # fmt: skip
"""Each operation's counters, named once (a persist="call" turn counts one write:
``MeteredStore.save`` names the write's counters itself)."""


def _extra(parts: Mapping[str, bytes | None] | None, reminders: Sequence[Scheduled]) -> int:
    """Bytes a save writes beyond its record and reply: its parts and its reminders."""
    nbytes = sum(len(v) for v in parts.values() if v is not None) if parts else 0
    return nbytes + sum(len(r.row.payload) for r in reminders)


class MeteredStore:
    """Counts reads, writes and bytes, and can emulate a remote store (off by default).

    Messages and results (``put``/``get``) are objects, as in S3: ``latency_ms`` per
    operation. State records, recorded replies and reminders are items, as in DynamoDB:
    ``record_latency_ms`` per operation (None: ``latency_ms``), with their request units
    counted; a record over 400 KB is an object. Every transfer also takes its time at
    ``bandwidth_mbps``.
    """

    def __init__(
        self,
        inner: Store,
        counters: dict[str, int],
        latency_ms: float = 0.0,
        bandwidth_mbps: float | None = None,
        record_latency_ms: float | None = None,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.counters = counters
        self._latency = latency_ms / 1000.0
        self._record_latency = self._latency if record_latency_ms is None else record_latency_ms / 1000.0
        self._bytes_per_s = bandwidth_mbps * 1e6 / 8 if bandwidth_mbps else None
        self._emulated = self._latency > 0 or self._record_latency > 0 or bool(self._bytes_per_s)

    def _delay(self, latency: float, nbytes: int) -> None:
        delay = latency
        if self._bytes_per_s:
            delay += nbytes / self._bytes_per_s
        if delay > 0:
            time.sleep(delay)

    def _count(self, op: str, nbytes: int, record: bool) -> None:
        """One operation (``op``: "read" or "write") of ``nbytes``: counted, and delayed as the
        emulated store would be. A record over the item limit is an object."""
        c = self.counters
        total, moved, records, units, unit, objects = _NAMES[op]
        c[total] += 1
        c[moved] += nbytes
        if record and nbytes <= ITEM_LIMIT:
            c[records] += 1
            c[units] += -(-nbytes // unit) or 1
            latency = self._record_latency
        else:
            c[objects] += 1
            latency = self._latency
        if self._emulated:
            self._delay(latency, nbytes)

    def _read(self, nbytes: int, record: bool = True) -> None:
        self._count("read", nbytes, record)

    def _wrote(self, nbytes: int, record: bool = True) -> None:
        if record:
            self._record_written(nbytes)
        else:
            self._count("write", nbytes, False)

    def load(self, address: str) -> Record | None:
        record = self.inner.load(address)
        self._read(0 if record is None else len(record.state))
        return record

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
        if nowait and self._emulated:
            raise WouldBlock("the emulated store delays every write")
        nbytes = len(state) + (len(reply[1]) if reply else 0)
        if parts or reminders:
            nbytes += _extra(parts, reminders)
        if not nowait:
            self._record_written(nbytes)  # the emulated delay comes before the write
        version = self.inner.save(
            address, expected=expected, state=state, fence=fence, reply=reply,
            reminders=reminders, parts=parts, nowait=nowait, urgent=urgent,
        )  # fmt: skip
        if nowait:
            self._record_written(nbytes)  # counted once it happened (a WouldBlock is tried again)
        return version

    def _record_written(self, nbytes: int) -> None:
        """A record's write, counted (and delayed, if emulated): ``_count("write", nbytes,
        True)`` in fewer steps, as a turn's write is one. ``_wrote`` and ``save`` count
        every record's write here."""
        c = self.counters
        c["storage_writes"] += 1
        c["storage_bytes_written"] += nbytes
        if nbytes <= ITEM_LIMIT:
            c["record_writes"] += 1
            c["record_write_units"] += -(-nbytes // WRITE_UNIT) or 1
            latency = self._record_latency
        else:
            c["object_writes"] += 1
            latency = self._latency
        if self._emulated:
            self._delay(latency, nbytes)

    def save_many(
        self,
        writes: Sequence[Write],
        *,
        fence: tuple[str, int, int] | None,
        urgent: bool = False,
        nowait: bool = False,
    ) -> list[int]:
        if nowait and self._emulated:
            raise WouldBlock("the emulated store delays every write")
        sizes = [len(w.state) + _extra(w.parts, ()) for w in writes]
        if not nowait:
            for nbytes in sizes:  # each record is a write, counted (and priced) as one
                self._wrote(nbytes)
        versions = self.inner.save_many(writes, fence=fence, urgent=urgent, nowait=nowait)
        if nowait:
            for nbytes in sizes:  # counted once they happened (a WouldBlock is tried again)
                self._wrote(nbytes)
        return versions

    def get_reply(self, address: str, request_id: str) -> bytes | None:
        value = self.inner.get_reply(address, request_id)
        self._read(len(value or b""))
        return value

    def prune_replies(self, older_than: float) -> int:
        return self.inner.prune_replies(older_than)

    def prune_expired(self, now: float) -> int:
        return self.inner.prune_expired(now)

    def put(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._wrote(len(value), record=False)
        self.inner.put(key, value, ttl_s)

    def get(self, key: str) -> bytes | None:
        value = self.inner.get(key)
        self._read(0 if value is None else len(value), record=False)
        return value

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def claim_shard(self, group: str, shard: int, owner: str = "", *, nowait: bool = False) -> int:
        return self.inner.claim_shard(group, shard, owner, nowait=nowait)

    def shard_owner(self, group: str, shard: int) -> tuple[int, str]:
        return self.inner.shard_owner(group, shard)

    def check(self) -> None:
        self.inner.check()

    def keys(self, type_name: str, prefix: str = "", limit: int | None = None) -> list[str]:
        found = self.inner.keys(type_name, prefix, limit)
        self._read(sum(len(k) for k in found))
        return found

    def delete_identity(self, address: str) -> None:
        self._wrote(0)
        self.inner.delete_identity(address)

    def shard_epoch(self, group: str, shard: int) -> int:
        return self.inner.shard_epoch(group, shard)

    def add_reminder(self, group: str, shard: int, reminder: Reminder) -> None:
        self._wrote(len(reminder.payload))
        self.inner.add_reminder(group, shard, reminder)

    def cancel_reminder(self, address: str, rid: str) -> bool:
        return self.inner.cancel_reminder(address, rid)

    def due_reminders(self, group: str, shard: int, now: float, limit: int = 100) -> list[Reminder]:
        return self.inner.due_reminders(group, shard, now, limit)

    def reschedule_reminder(self, group: str, shard: int, address: str, rid: str, due: float) -> bool:
        self._wrote(0)
        return self.inner.reschedule_reminder(group, shard, address, rid, due)

    def reminders_of(self, address: str) -> list[Reminder]:
        self._read(0)
        return self.inner.reminders_of(address)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
