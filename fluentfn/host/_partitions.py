"""The partitions one host process serves: an engine each, and a router in front.

A host owns a varying set of its group's partitions (the directory assigns them). Each
owned partition has its own engine — admission, turns, persistence under the
partition's epoch, reminders — made on the partition's first call (or at once when it
has pending reminders), so an idle partition costs nothing. A call for a partition this
host does not own gets a redirect: the caller resolves the partition again and retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor

from .._call import Args, Call, Outcome
from .._phases import TALLY
from .._stats import new_counters
from .._status import Status
from ..errors import Redirect
from ..placement import shard_for
from ..state._store import Store
from ..wire.errors import describe_error
from ._activations import Handoff, Released
from ._driver import Driver
from ._engine import HostEngine
from ._heap import HeapPolicy
from ._metrics import MethodStats

EngineFactory = Callable[[int, int], HostEngine]
"""Makes the engine of (partition, epoch)."""

log = logging.getLogger("fluentfn.host")


class PartitionSet:
    """Routes each call to the engine of its key's partition (a gRPC dispatcher)."""

    def __init__(self, *, group: str, host_id: str, partitions: int, node_id: str, make: EngineFactory) -> None:
        self.group = group
        self.host_id = host_id
        self.partitions = partitions
        self.node_id = node_id
        self._make = make
        self._lock = threading.Lock()
        self.owned: dict[int, int] = {}  # partition -> epoch
        self.engines: dict[int, HostEngine] = {}
        self._handoffs: dict[int, Handoff] = {}
        # Host-level counters (malformed frames, say) and those of engines whose partition
        # moved away; ``totals()`` adds the live engines'.
        self.counters: dict[str, int] = new_counters()
        self._retired_methods: dict[tuple[str, str], MethodStats] = {}

    # -- ownership ------------------------------------------------------------------------------

    def adopt(self, partition: int, epoch: int, handoff: Handoff | None = None, *, start: bool = False) -> None:
        """Serve ``partition`` from now on, at ``epoch`` (already claimed in the store);
        ``handoff``: the previous owner's in-memory state of ``persist="never"`` identities."""
        with self._lock:
            self.owned[partition] = epoch
            if handoff:
                self._handoffs[partition] = dict(handoff)
            stale = self.engines.get(partition)
            if stale is not None and stale.epoch != epoch:
                # This host lost the partition without handing it over (another claimed it
                # meanwhile) and now gets it back: the old engine's memory is stale; the
                # store, at the new epoch, is what the partition starts from.
                del self.engines[partition]
            else:
                stale = None
        if stale is not None:
            stale.fence()
            self._retire(stale)
            stale.loop.call_soon_threadsafe(lambda: stale.loop.create_task(stale.upkeep.stop()))
        if start:
            self.engine(partition)

    async def release(self, partition: int, grace_s: float, executor: Executor | None = None) -> Released:
        """Stop serving ``partition``: its engine drains and writes everything (see
        ``HostEngine.release``, whose hand-over runs on ``executor``); returns the memory
        to hand to the next owner, and how long the partition went on serving first: it is
        routed to its engine until that engine stops admitting (``HostEngine.quiesce``)."""
        until = time.monotonic() + grace_s  # (the one deadline of the whole release)
        serving = self.engines.get(partition)
        served_s = await serving.quiesce(until) if serving is not None else 0.0
        with self._lock:
            self.owned.pop(partition, None)
            engine = self.engines.pop(partition, None)
            handoff = self._handoffs.pop(partition, {})
        if engine is None:
            return Released(handoff, served_s)
        released = await engine.release(until, executor)  # (an engine made meanwhile quiesces now)
        handoff.update(released.memory)
        self._retire(engine)
        return Released(handoff, served_s + released.served_s, released.held_s)

    def _retire(self, engine: HostEngine) -> None:
        """Keep a departed engine's counters: the host's totals never go down."""
        for k, v in engine.counters.items():
            self.counters[k] = self.counters.get(k, 0) + v
        for key, s in engine.methods.snapshot().items():
            mine = self._retired_methods.setdefault(key, MethodStats())
            _add(mine, s)

    def engine(self, partition: int) -> HostEngine | None:
        """The engine of an owned partition (made now if it is the first call); None if
        this host does not own it."""
        found = self.engines.get(partition)
        if found is not None:
            return found
        with self._lock:
            epoch = self.owned.get(partition)
            if epoch is None:
                return None
            found = self.engines.get(partition)
            if found is None:
                found = self._make(partition, epoch)
                found.persistence.handoff = self._handoffs.pop(partition, {})
                self.engines[partition] = found
        found.start_background()
        return found

    def _snapshot(self) -> list[HostEngine]:
        """The engines now (other threads add and remove them)."""
        with self._lock:
            return list(self.engines.values())

    def owned_partitions(self) -> list[int]:
        with self._lock:
            return sorted(self.owned)

    def engine_of(self, key: str) -> HostEngine | None:
        return self.engine(shard_for(key, self.partitions))

    def _redirect(self, key: str) -> Redirect:
        p = shard_for(key, self.partitions)
        return Redirect(f"{self.group} partition {p} is not served by host {self.host_id}: resolve it again")

    reroute: Callable[[Call], None] | None = None
    """Sends a one-way call on to its partition's owner (the host's router): for tells that
    were accepted here before their partition moved away."""

    def _redirect_reply(self, call: Call) -> Outcome:
        """Also for a one-way call: its sender re-sends it to the partition's owner."""
        return Outcome(seq=call.seq, error=describe_error(self._redirect(call.key)))

    # -- the dispatcher ---------------------------------------------------------------------------

    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None:
        engine = self.engine_of(call.key)
        if engine is None:
            return self._redirect_reply(call)
        return await engine.dispatch(call, local=local)

    def submit(self, call: Call, done: Callable[[Outcome | None], None], *, local: bool = False) -> None:
        engine = self.engine_of(call.key)
        if engine is None:
            done(self._redirect_reply(call))
            return
        engine.submit(call, done, local=local)

    async def accept(self, call: Call) -> None:
        engine = self.engine_of(call.key)
        if engine is None:
            raise self._redirect(call.key)
        await engine.accept(call)

    def dispatch_inline(self, call: Call, shard: int, values: Args | None = None) -> Outcome | None:
        """A co-located caller's sync call in its own thread, to ``shard`` (the key's, as
        the caller's router placed it), with its arguments as they are if ``values``;
        None: take the loop's path."""
        engine = self.engines.get(shard)
        return None if engine is None else engine.dispatch_inline(call, values)

    # -- periodic jobs of every engine, from one loop -----------------------------------------------

    async def upkeep(self, store: Store | None) -> None:
        """The periodic jobs of all the host's engines (``Driver``), and the heap's tuning."""
        await Driver(self._snapshot, f"{self.group}/{self.host_id}", heap=HeapPolicy()).run(store)

    # -- what the host reports --------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The highest epoch among the owned partitions."""
        with self._lock:
            return max(self.owned.values(), default=0)

    @property
    def live_identities(self) -> int:
        return sum(e.live_identities for e in self._snapshot())

    @property
    def load(self) -> int:
        """Turns running or queued on this host."""
        return sum(e.admission.inflight for e in self._snapshot())

    @property
    def type_names(self) -> list[str]:
        return sorted({n for e in self._snapshot() for n in e.type_names})

    def totals(self) -> dict[str, int]:
        """This host's counters: its own, every engine's it had, and its phase timings."""
        totals = dict(self.counters)
        totals.update(TALLY.counters())
        for e in self._snapshot():
            for k, v in e.counters.items():
                totals[k] = totals.get(k, 0) + v
        return totals

    @property
    def methods(self) -> _Tallies:
        return _Tallies(self)

    def status(self) -> Status:
        return Status(
            host_id=self.host_id,
            node_id=self.node_id,
            type_names=tuple(self.type_names),
            live_identities=self.live_identities,
            counters=self.totals(),
            group=self.group,
            shard=min(self.owned_partitions(), default=0),
            epoch=self.epoch,
            partitions=tuple(self.owned_partitions()),
        )

    async def close(self) -> None:
        """Passivate every identity of every partition (state written) and stop."""
        for engine in self._snapshot():
            await engine.close()


class _Tallies:
    """Per-method stats summed over a host's engines (for the metrics endpoint)."""

    def __init__(self, owner: PartitionSet) -> None:
        self._owner = owner

    def snapshot(self) -> dict[tuple[str, str], MethodStats]:
        out: dict[tuple[str, str], MethodStats] = {}
        for key, s in list(self._owner._retired_methods.items()):
            _add(out.setdefault(key, MethodStats()), s)
        for e in list(self._owner.engines.values()):
            for key, s in e.methods.snapshot().items():
                _add(out.setdefault(key, MethodStats()), s)
        return out


def _add(into: MethodStats, s: MethodStats) -> None:
    into.calls += s.calls
    into.errors += s.errors
    into.total_s += s.total_s
    into.buckets = [a + b for a, b in zip(into.buckets, s.buckets, strict=True)]
