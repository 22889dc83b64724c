"""Loading and writing one host's identities, per the type's persist mode.

``call``: a turn that changed the public state writes it, together with a record of its
reply, in one conditional write, before the reply is sent.
A retry carrying a recorded request id gets the recorded reply. ``interval``: changed
identities are written by a periodic flush, on passivation and on shutdown. ``never``:
memory only.

Replies of state-changing calls are kept in the store for ``REPLY_TTL_S`` (an hour by
default; hosts prune older ones). A request marked as a possible repeat (``attempt > 0``:
a caller's retry, or a call made by a turn that is itself a repeat) is looked up there
when the replies kept in memory (``_recent``) do not have it; first
attempts cost no lookup. A retry later than the TTL runs again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from .._actordef import ActorDef
from .._call import Call, Outcome
from .._config import REPLY_TTL_S
from ..errors import Redirect
from ..state._emulated import MeteredStore
from ..state._store import Scheduled, StaleEpoch, Store, WouldBlock, Write
from ._activations import Activation, Handoff
from ._image import change
from ._policy import Why
from ._turn import must_record, record_for, replay_of, request_digest
from ._written import Change

INLINE_MAX = 64 * 1024  # bytes: a larger change is written by a worker, never on the loop


class Persistence:
    """The store side of a host: epochs, loads, conditional writes, counters."""

    def __init__(self, store: Store | None, group: str, shard: int, counters: dict[str, int], owner: str = "") -> None:
        self.owner = owner
        # Every store operation of the host is counted in one place, as in FaaS mode.
        self.store: Store | None = MeteredStore(store, counters) if store is not None else None
        self.group = group
        self.shard = shard
        self.epoch = 0
        self.fenced = False
        # The partition is being handed over: the writes its move waits for (turns still
        # running, the hand-over's) go before the host's other writers (``Store.save``'s
        # ``urgent``).
        self.draining = False
        # What the partition's previous host handed over at a live move (the memory of
        # persist="never" identities, recent replies of all): each taken once, on the
        # identity's first activation here.
        self.handoff: Handoff = {}
        # Interleaved turns of a reentrant identity may finish together: their
        # compare-and-write must not overlap. Striped locks, not one per identity.
        self._locks = [threading.Lock() for _ in range(64)]
        # Reminders a turn wrote: the host's firing loop learns of them (set by the engine).
        self.on_reminders: Callable[[Sequence[Scheduled]], None] = lambda _: None

    def claim(self) -> int:
        """Become the shard's owner (a new, higher epoch)."""
        if self.store is not None:
            self.epoch = self.store.claim_shard(self.group, self.shard, self.owner)
        return self.epoch

    def check_store(self) -> None:
        """StoreLost if the store is gone or was replaced since it was opened."""
        if self.store is not None:
            self.store.check()

    def fence_reason(self) -> tuple[Why, str]:
        """Why this host was fenced: a newer host of this cluster (callers are redirected)
        or another cluster on the same namespace and store (callers are told so)."""
        if self.store is None:
            return Why.REDIRECT, ""
        try:
            epoch, owner = self.store.shard_owner(self.group, self.shard)
        except Exception:  # the reason is a nicety; being fenced is what matters
            return Why.REDIRECT, ""
        if owner and self.owner and owner != self.owner:
            return Why.FOREIGN, (
                f"shard {self.group}/{self.shard} was claimed by another cluster ({owner}, epoch {epoch}) on "
                f"{self.store.url}; this cluster ({self.owner}) is fenced out. Give each cluster its own "
                "namespace (ff.init(namespace=...)) or its own store"
            )
        return Why.REDIRECT, ""

    def still_owner(self) -> bool:
        """False once another host has claimed the shard."""
        if self.store is None or self.fenced:
            return not self.fenced
        if self.store.shard_epoch(self.group, self.shard) > self.epoch:
            self.fenced = True
        return not self.fenced

    def load(self, definition: ActorDef, act: Activation) -> bytes | None:
        """The stored state of ``act`` (encoded), or None."""
        memory = self.handoff.pop(act.address, None) if self.handoff else None
        if memory is not None and memory.replies:
            act.adopt(memory.replies, time.monotonic())
        if definition.options.persist.memory_only:
            return memory.state if memory is not None else None
        if self.store is None:
            return None
        act.snapshot = None  # until the loaded state's image is taken (``_image.baseline``)
        record = self.store.load(act.address)
        if record is None:
            return None
        act.version = record.version
        return record.state

    def after_turn(
        self,
        definition: ActorDef,
        act: Activation,
        call: Call,
        reply: Outcome,
        scheduled: Sequence[Scheduled] = (),
    ) -> None:
        """The durability point of ``call``'s turn (raises Redirect when fenced off): its
        state, the record of its ``reply`` (made only if it is kept) and the reminders it
        scheduled, in one write."""
        request_id = call.request_id
        with self._locks[hash(act.address) % len(self._locks)]:
            snapshot = self.write_due(definition, act, must_record(request_id, scheduled))
            if snapshot is not None:
                self._record(act, snapshot, request_id, record_for(call, reply), scheduled)
                return
            if not definition.options.persist.writes_before_reply:  # memory is the only record
                self.remember(act, request_id, record_for(call, reply))
            if scheduled:
                self.add_reminders(scheduled)

    @staticmethod
    def remember(act: Activation, request_id: str, reply: bytes, *, hold: bool = True) -> None:
        """Keep a turn's reply in the identity's memory: a retry here, or at the next owner
        after a live move, gets it. ``hold``: memory is its only record (modes that write
        none before the reply), kept for a while however many turns follow (``_recent``);
        False only where the store records it too."""
        act.keep(request_id, reply, time.monotonic() if hold else 0.0, hold)

    def write_due(self, definition: ActorDef, act: Activation, record: bool = False) -> Change | None:
        """What a turn's end owes the store, without blocking: the attributes to write before
        the reply if the turn changed any, or if its reply must be recorded anyway
        (``must_record``), under ``persist="call"``; else None (an ``"interval"`` identity
        is marked for the next write-behind). InvalidRequest if the state cannot be encoded."""
        mode = definition.options.persist
        if self.store is None or mode.memory_only:
            return None
        if mode.writes_behind:
            act.dirty = True
            return None
        return change(act.instance, act.address, act.snapshot, force=record)

    def write_turn(
        self,
        act: Activation,
        snapshot: Change,
        request_id: str,
        reply: bytes,
        scheduled: Sequence[Scheduled] = (),
        *,
        nowait: bool = False,
    ) -> None:
        """The durability point of a turn whose change ``write_due`` returned (blocking).
        ``nowait``: WouldBlock, nothing written, unless the store takes it at once (a small
        change with no reminders: what a host's event loop tries before a worker hop)."""
        if nowait and (scheduled or snapshot.size > INLINE_MAX):
            raise WouldBlock("reminders or a large change: written by a worker")
        lock = self._locks[hash(act.address) % len(self._locks)]
        if not lock.acquire(blocking=not nowait):
            raise WouldBlock("the identity's write lock is held")
        try:
            self._record(act, snapshot, request_id, reply, scheduled, nowait=nowait)
        finally:
            lock.release()

    def add_reminders(self, scheduled: Sequence[Scheduled]) -> None:
        """Write the reminders of a turn that writes no state (blocking)."""
        if self.store is not None:
            for item in scheduled:
                self.store.add_reminder(item.group, item.shard, item.row)
        self.on_reminders(scheduled)

    def _record(
        self,
        act: Activation,
        snapshot: Change,
        request_id: str,
        reply: bytes,
        scheduled: Sequence[Scheduled] = (),
        *,
        nowait: bool = False,
    ) -> None:
        # Remembered first (a retry arriving meanwhile is answered, not run again), and
        # forgotten if the write fails: a retry then asks the store, which has the reply
        # exactly when the write happened.
        act.keep(request_id, reply)  # (``remember``, not held: the write records it in the store)
        try:
            self._write(act, snapshot, (request_id, reply), scheduled, nowait=nowait)
        except BaseException:
            act.drop(request_id)
            raise
        if scheduled:
            self.on_reminders(scheduled)

    def flush(self, definition: ActorDef, act: Activation) -> None:
        """Write a changed identity now (interval mode, passivation, shutdown)."""
        if self.store is None or definition.options.persist.memory_only or act.instance is None:
            return
        with self._locks[hash(act.address) % len(self._locks)]:
            due = change(act.instance, act.address, act.snapshot)
            act.dirty = False
            if due is not None:
                self._write(act, due)

    def flush_many(self, items: Sequence[tuple[ActorDef, Activation]], *, nowait: bool = False) -> None:
        """Write the changed identities of ``items`` in one store transaction (a partition's
        hand-over): all of them, or none (the store's error is raised; Redirect if the
        partition moved on). InvalidRequest if one of them cannot be stored. ``nowait``
        (on a host's event loop): WouldBlock, nothing written, unless the store takes it at
        once and it is small (``INLINE_MAX`` in all)."""
        if self.store is None:
            return
        due: list[tuple[Activation, Change]] = []
        for definition, act in items:
            if definition.options.persist.memory_only or act.instance is None:
                continue
            lock = self._locks[hash(act.address) % len(self._locks)]
            if not lock.acquire(blocking=not nowait):
                raise WouldBlock("an identity's write lock is held")
            try:
                found = change(act.instance, act.address, act.snapshot)
            finally:
                lock.release()
            if found is not None:
                due.append((act, found))
        if not due:
            return
        if nowait and sum(c.size for _, c in due) > INLINE_MAX:
            raise WouldBlock("a large hand-over: written by a thread")
        writes = [Write(act.address, act.version, c.inline, c.parts) for act, c in due]
        try:
            versions = self.store.save_many(
                writes, fence=(self.group, self.shard, self.epoch), urgent=True, nowait=nowait
            )
        except StaleEpoch as exc:
            self.fenced = True
            raise Redirect(f"partition {self.group}/{self.shard}: {exc}") from None
        for (act, c), version in zip(due, versions, strict=True):
            act.version, act.snapshot, act.dirty = version, c.image, False

    def _write(
        self,
        act: Activation,
        due: Change,
        reply: tuple[str, bytes] | None = None,
        scheduled: Sequence[Scheduled] = (),
        *,
        nowait: bool = False,
    ) -> None:
        assert self.store is not None
        try:
            act.version = self.store.save(
                act.address,
                expected=act.version,
                state=due.inline,
                fence=(self.group, self.shard, self.epoch),
                reply=reply,
                reminders=scheduled,
                parts=due.parts,
                nowait=nowait,
                urgent=self.draining,
            )
        except StaleEpoch as exc:
            self.fenced = True
            raise Redirect(f"{act.address}: {exc}") from None
        act.snapshot = due.image

    def recorded(self, act: Activation, call: Call, *, replay: bool = False) -> Outcome | None:
        """The reply recorded for ``call``'s request id (a retry of a call that already ran).
        InvalidRequest if its idempotency key was used for another request."""
        found = act.recall(call.request_id)
        if found is None and replay and self.store is not None:
            found = self.store.get_reply(act.address, call.request_id)
        if found is None:
            return None
        return replay_of(found, request_digest(call.request_id, call.method, call.args), call.request_id)

    def prune(self) -> int:
        """Forget reply records older than the TTL, and KV rows past their own."""
        if self.store is None:
            return 0
        now = time.time()
        return self.store.prune_replies(now - REPLY_TTL_S) + self.store.prune_expired(now)
