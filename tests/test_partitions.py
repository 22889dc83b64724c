"""Partition hand-over without Ray: a host's PartitionSet routes by partition, and an
engine that releases its partition drains, writes and hands ``never`` memory over."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any, NamedTuple

import pytest

import fluentfn as ff
from fluentfn._actordef import ActorDef
from fluentfn._call import Call
from fluentfn._ioloop import IoLoop
from fluentfn.errors import Redirect
from fluentfn.host._activations import Released
from fluentfn.host._engine import HostEngine
from fluentfn.host._partitions import PartitionSet
from fluentfn.placement import shard_for
from fluentfn.state._store import Store
from fluentfn.testing import wait_for
from fluentfn.wire import codec
from fluentfn.wire.errors import rebuild_error

from .conftest import OPEN

pytestmark = pytest.mark.timeout(60)
PARTS = 4
HELD = [False]  # the held turn may end


class Plain:
    """A type with no ``on_deactivate``: its hand-over may run on the host's loop."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


class Tally(Plain):
    def slow(self, seconds: float) -> int:
        time.sleep(seconds)
        self.n += 1
        return self.n

    def held(self) -> int:
        """A turn that lasts until the test lets it end (a list, not an Event: the class
        may be shipped to a cluster, and a lock cannot be pickled)."""
        until = time.monotonic() + 60
        while not HELD[0] and time.monotonic() < until:
            time.sleep(0.002)
        self.n += 1
        return self.n

    def on_deactivate(self) -> None:
        self.n += 1000  # runs before the state is written on a move


def definition(persist: str) -> ActorDef:
    at = ff.actor(name=f"PT{persist}", persist=persist, partitions=PARTS, max_hosts=2)(Tally)
    return ActorDef(Tally, at.options)


def host(io: IoLoop, store: Store, d: ActorDef, host_id: str) -> PartitionSet:
    def make(partition: int, epoch: int) -> HostEngine:
        async def load(name: str) -> ActorDef | None:
            return None

        eng = HostEngine(
            group=d.options.group,
            shard=partition,
            loop=io.loop,
            loop_thread=io.thread.ident or 0,
            load_type=load,
            store=store,
            shards=PARTS,
        )
        eng.add_type(d)
        eng.persistence.epoch = epoch
        return eng

    made = PartitionSet(group=d.options.group, host_id=host_id, partitions=PARTS, node_id="n", make=make)
    OPEN.append(made)
    return made


def call(io: IoLoop, h: PartitionSet, d: ActorDef, key: str, method: str, *args: Any) -> Any:
    c = Call(
        type_name=d.name,
        key=key,
        method=method,
        args=codec.encode_args(args, {}),
        request_id=f"{key}{method}{args}{time.monotonic_ns()}{threading.get_ident()}",
    )
    reply = io.run(h.dispatch(c))
    assert reply is not None
    if reply.error is not None:
        raise rebuild_error(reply.error)
    return codec.decode(reply.value)


def key_in(partition: int) -> str:
    return next(f"k{i}" for i in range(10_000) if shard_for(f"k{i}", PARTS) == partition)


def move(io: IoLoop, store: Store, d: ActorDef, src: PartitionSet, dst: PartitionSet, p: int) -> None:
    handoff = io.run(src.release(p, grace_s=5.0)).memory
    dst.adopt(p, store.claim_shard(d.options.group, p), handoff)


@pytest.mark.parametrize("persist", ["call", "interval", "never"])
def test_state_moves_with_its_partition(io: IoLoop, store: Store, persist: str) -> None:
    d = definition(persist)
    a, b = host(io, store, d, "a"), host(io, store, d, "b")
    for p in range(PARTS):
        a.adopt(p, store.claim_shard(d.options.group, p))
    key = key_in(1)
    assert call(io, a, d, key, "add", 5) == 5
    move(io, store, d, a, b, 1)
    with pytest.raises(Redirect):  # the old host refuses, the new one serves
        call(io, a, d, key, "add", 1)
    assert call(io, b, d, key, "add", 1) == 1006  # on_deactivate ran once, on the move
    assert 1 not in a.owned and b.owned[1] > 0
    assert call(io, a, d, key_in(0), "add", 1) == 1  # other partitions stay where they were


def test_a_running_turn_finishes_before_the_state_moves(io: IoLoop, store: Store) -> None:
    d = definition("call")
    a, b = host(io, store, d, "a"), host(io, store, d, "b")
    a.adopt(2, store.claim_shard(d.options.group, 2))
    key = key_in(2)
    slow = threading.Thread(target=call, args=(io, a, d, key, "slow", 0.3))
    slow.start()
    time.sleep(0.1)
    move(io, store, d, a, b, 2)  # waits for the slow turn: its write lands before the hand-over
    slow.join()
    assert call(io, b, d, key, "add", 0) == 1001


def keys_in(partition: int, n: int) -> list[str]:
    return [f"k{i}" for i in range(10_000) if shard_for(f"k{i}", PARTS) == partition][:n]


class Releasing(NamedTuple):
    engine: HostEngine
    release: Future[Released]
    runner: threading.Thread  # the held turn's caller; its reply lands in ``held``
    held: list[Any]
    busy: str  # the key whose turn is held
    other: str  # another key of the partition


def release_during_a_held_turn(io: IoLoop, a: PartitionSet, d: ActorDef, p: int) -> Releasing:
    """Partition ``p`` of ``a`` runs a held turn (``HELD``: the caller lets it end) when
    its release starts."""
    busy, other = keys_in(p, 2)
    HELD[0] = False
    held: list[Any] = []
    runner = threading.Thread(target=lambda: held.append(call(io, a, d, busy, "held")))
    runner.start()
    wait_for(lambda: p in a.engines and a.engines[p].admission.running, timeout=30)
    return Releasing(a.engines[p], io.submit(a.release(p, grace_s=30.0)), runner, held, busy, other)


def test_a_moving_partition_serves_until_no_turn_runs_then_stops_at_once(
    io: IoLoop, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quiet wait: while a turn of the partition runs, other calls of it are still
    served (not redirected); the turn's end fences it in the same step and the hand-over
    starts, with nothing left to drain. The release says how long it went on serving."""
    from fluentfn import _config

    monkeypatch.setattr(_config, "QUIESCE_S", 60.0)  # no timing in the test: only the turn's end
    d = definition("call")
    a, b = host(io, store, d, "a"), host(io, store, d, "b")
    a.adopt(2, store.claim_shard(d.options.group, 2))
    try:
        r = release_during_a_held_turn(io, a, d, 2)
        busy, other = r.busy, r.other
        wait_for(lambda: r.engine.admission._policy.quiescing, timeout=30)
        assert call(io, a, d, other, "add", 7) == 7  # served by the old owner meanwhile
        assert not r.release.done() and not r.engine.persistence.draining
    finally:
        HELD[0] = True
    r.runner.join(30)
    released = r.release.result(30)
    assert r.held == [1] and released.served_s > 0
    with pytest.raises(Redirect):
        call(io, a, d, other, "add", 1)
    b.adopt(2, store.claim_shard(d.options.group, 2), released.memory)
    assert call(io, b, d, other, "add", 0) == 1007  # on_deactivate ran once, on the move
    assert call(io, b, d, busy, "add", 0) == 1001


def test_a_partition_that_never_goes_quiet_stops_admitting_after_the_wait(
    io: IoLoop, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fluentfn import _config

    monkeypatch.setattr(_config, "QUIESCE_S", 0.05)
    d = definition("call")
    a, b = host(io, store, d, "a"), host(io, store, d, "b")
    a.adopt(3, store.claim_shard(d.options.group, 3))
    try:
        r = release_during_a_held_turn(io, a, d, 3)
        wait_for(lambda: r.engine.persistence.draining, timeout=30)  # the wait ended: it drains
        drained = time.monotonic()
        with pytest.raises(Redirect):  # no longer admitting, while the held turn still runs
            call(io, a, d, r.other, "add", 1)
        assert not r.release.done()
        time.sleep(0.1)
    finally:
        HELD[0] = True
    held_at_least = time.monotonic() - drained
    r.runner.join(30)
    released = r.release.result(30)
    assert r.held == [1] and released.served_s > 0.03  # the wait (the loop's timer: ms-grained)
    assert released.held_s >= held_at_least  # its callers were held while the late turn ran
    b.adopt(3, store.claim_shard(d.options.group, 3), released.memory)
    assert call(io, b, d, r.busy, "add", 0) == 1001  # the held turn's write landed before the hand-over


def test_the_old_owner_cannot_write_after_the_move(io: IoLoop, store: Store) -> None:
    d = definition("call")
    a, b = host(io, store, d, "a"), host(io, store, d, "b")
    a.adopt(3, store.claim_shard(d.options.group, 3))
    engine = a.engine(3)
    assert engine is not None
    key = key_in(3)
    call(io, a, d, key, "add", 1)
    b.adopt(3, store.claim_shard(d.options.group, 3))  # a newer owner without a hand-over (a crash)
    assert call(io, b, d, key, "add", 1) == 2
    with pytest.raises(Redirect):  # the stale engine's write is refused by epoch
        call(io, a, d, key, "add", 1)
    assert call(io, b, d, key, "add", 0) == 2


def test_counters_survive_a_move(io: IoLoop, store: Store) -> None:
    d = definition("call")
    a, b = host(io, store, d, "a"), host(io, store, d, "b")
    a.adopt(0, store.claim_shard(d.options.group, 0))
    for i in range(3):
        call(io, a, d, key_in(0), "add", i)
    before = a.totals()["activations"]
    move(io, store, d, a, b, 0)
    assert a.totals()["activations"] == before >= 1
    assert a.live_identities == 0 and not a.engines


def test_the_host_upkeep_fences_stale_partitions_and_writes_behind(io: IoLoop, store: Store) -> None:
    d, behind = definition("call"), definition("interval")
    a = host(io, store, d, "a")
    a_behind = host(io, store, behind, "a2")
    for h, kind in ((a, d), (a_behind, behind)):
        h.adopt(0, store.claim_shard(kind.options.group, 0))
    ticking = [io.submit(a.upkeep(store)), io.submit(a_behind.upkeep(store))]
    try:
        key = key_in(0)
        call(io, a, d, key, "add", 1)
        call(io, a_behind, behind, key, "add", 7)
        store.claim_shard(d.options.group, 0)  # another host took partition 0 of the first type
        engine = a.engines[0]
        wait_for(lambda: engine.persistence.fenced, timeout=5)  # noticed within about a second
        with pytest.raises(Redirect):
            call(io, a, d, key, "add", 1)
        wait_for(lambda: store.load(f"{behind.name}/{key}") is not None, timeout=5)  # written behind
    finally:
        for t in ticking:
            t.cancel()


@pytest.mark.parametrize("persist", ["interval", "never"])
def test_a_turn_that_outlives_the_drain_loses_no_acknowledged_change(io: IoLoop, store: Store, persist: str) -> None:
    """Acknowledged, unwritten changes of a write-behind or memory-only identity move with
    it even when a turn of it is still running after the drain; that late turn's caller
    is told its outcome is unknown (CallTimeout), never a success the next owner lacks."""
    d = definition(persist)
    a, b = host(io, store, d, "a"), host(io, store, d, "b")
    a.adopt(1, store.claim_shard(d.options.group, 1))
    key = key_in(1)
    assert call(io, a, d, key, "add", 5) == 5  # acknowledged, not written yet
    HELD[0] = False
    outcome: list[Any] = []

    def late() -> None:
        try:
            outcome.append(call(io, a, d, key, "held"))
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=late)
    runner.start()
    try:
        wait_for(lambda: a.engines[1].admission.running, timeout=30)
        handoff = io.run(a.release(1, grace_s=0.05)).memory
        b.adopt(1, store.claim_shard(d.options.group, 1), handoff)
    finally:
        HELD[0] = True
    runner.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], ff.CallTimeout), outcome
    assert call(io, b, d, key, "add", 0) in (5, 6)  # the late turn's own effect is indeterminate


def plain(persist: str) -> ActorDef:
    at = ff.actor(name=f"PP{persist}", persist=persist, partitions=PARTS, max_hosts=2)(Plain)
    return ActorDef(Plain, at.options)


class Polled:
    """A store that counts the reminders' polls that ended: a poll under way when the
    partition moves (a worker's read, its connection new) may hold SQLite's lock for a
    moment, and a hand-over on the loop then goes to a thread, as it should."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.polls = 0

    def due_reminders(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.inner.due_reminders(*args, **kwargs)
        finally:
            self.polls += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def spy_hand_overs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bool, bool]]:
    """Each hand-over tried: (with ``nowait``, on the loop's thread, whether it was done)."""
    from fluentfn.host._upkeep import Upkeep

    seen: list[tuple[bool, bool, bool]] = []
    real = Upkeep.hand_over

    def hand_over(self: Upkeep, *, nowait: bool = False) -> Any:
        out = real(self, nowait=nowait)
        seen.append((nowait, threading.get_ident() == self._engine.loop_thread, out is not None))
        return out

    monkeypatch.setattr(Upkeep, "hand_over", hand_over)
    return seen


@pytest.mark.parametrize("persist", ["call", "interval", "never"])
def test_a_hand_over_that_can_be_done_at_once_is_done_on_the_loop(
    io: IoLoop, store: Store, persist: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hook, no turn running, a store that takes the write at once: no thread hop (each
    is a wait for a core and the GIL on a saturated host), and the state moves as before."""
    seen = spy_hand_overs(monkeypatch)
    d = plain(persist)
    polled = Polled(store)
    a, b = host(io, polled, d, "a"), host(io, store, d, "b")  # type: ignore[arg-type]
    for p in range(PARTS):
        a.adopt(p, store.claim_shard(d.options.group, p))
    key = key_in(2)
    assert call(io, a, d, key, "add", 5) == 5
    wait_for(lambda: polled.polls >= 1, timeout=30)  # (the next one is 2 s away)
    move(io, store, d, a, b, 2)
    assert seen == [(True, True, True)]  # tried on the loop, done there: no thread
    assert call(io, b, d, key, "add", 1) == 6
    if persist != "never":
        record = store.load(f"{d.name}/{key}")
        assert record is not None and record.version >= 1


def test_a_hand_over_goes_to_a_thread_for_a_hook_or_a_store_that_would_wait(
    io: IoLoop, store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """An ``on_deactivate`` hook (user code) and a store that cannot take the write at once
    (another process holds SQLite's write lock) send it to a thread, which waits for the
    store: nothing done twice, nothing lost."""
    import sqlite3

    seen = spy_hand_overs(monkeypatch)
    hooked = definition("interval")  # Tally has on_deactivate
    a, b = host(io, store, hooked, "a"), host(io, store, hooked, "b")
    for p in range(PARTS):
        a.adopt(p, store.claim_shard(hooked.options.group, p))
    key = key_in(1)
    assert call(io, a, hooked, key, "add", 5) == 5
    move(io, store, hooked, a, b, 1)
    assert seen == [(True, True, False), (False, False, True)]  # declined on the loop, done by a thread
    assert call(io, b, hooked, key, "add", 1) == 1006  # the hook ran once

    seen.clear()
    d = plain("interval")
    polled = Polled(store)
    c, e = host(io, polled, d, "c"), host(io, store, d, "e")  # type: ignore[arg-type]
    for p in range(PARTS):
        c.adopt(p, store.claim_shard(d.options.group, p))
    key = key_in(3)
    assert call(io, c, d, key, "add", 7) == 7
    wait_for(lambda: polled.polls >= 1, timeout=30)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    releasing = io.submit(c.release(3, grace_s=30.0))
    wait_for(lambda: len(seen) == 1, timeout=10)
    assert seen == [(True, True, False)] and not releasing.done()  # the thread waits for the lock
    other.execute("ROLLBACK")
    handoff = releasing.result(timeout=30).memory
    e.adopt(3, store.claim_shard(d.options.group, 3), handoff)
    assert seen == [(True, True, False), (False, False, True)]
    record = store.load(f"{d.name}/{key}")
    assert record is not None and record.version == 1  # written once, by the thread
    assert call(io, e, d, key, "add", 1) == 8
    other.close()
