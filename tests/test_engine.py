"""The host engine with a real SQLite store, without Ray or sockets."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import fluentfn as ff
from fluentfn._actordef import ActorDef
from fluentfn._call import Call, Outcome
from fluentfn._ioloop import IoLoop
from fluentfn.errors import Redirect, status_for
from fluentfn.host._engine import HostEngine
from fluentfn.placement import ActorOptions
from fluentfn.state import StaleEpoch, VersionConflict, open_store
from fluentfn.state._codec import decode_state, encode_state
from fluentfn.state._store import Store, StoreLost, WouldBlock
from fluentfn.testing import wait_for
from fluentfn.wire import codec
from fluentfn.wire.errors import rebuild_error

from .conftest import OPEN, drive

pytestmark = pytest.mark.timeout(60)


class Acc:
    def __init__(self) -> None:
        self.total = 0
        self.blob: Any = None
        self._cache = "transient"

    def add(self, k: int) -> int:
        self.total += k
        return self.total

    def read(self) -> int:
        return self.total

    def keep(self, x: Any) -> None:
        self.blob = x

    def cache(self) -> str:
        return getattr(self, "_cache", "missing")


def make_def(persist: str = "call", name: str = "Acc") -> ActorDef:
    at = ff.actor(name=name, persist=persist, shards=1)(Acc)
    return ActorDef(Acc, at.options)


def engine(
    io: IoLoop, store: Store | None, *defs: ActorDef, max_live: int | None = None, cluster_id: str = ""
) -> HostEngine:
    async def load(name: str) -> ActorDef | None:
        return None

    eng = HostEngine(
        group=defs[0].options.group,
        shard=0,
        loop=io.loop,
        loop_thread=io.thread.ident or 0,
        load_type=load,
        store=store,
        max_live=max_live,
        cluster_id=cluster_id,
    )
    for d in defs:
        eng.add_type(d)
    eng.persistence.claim()
    OPEN.append(eng)
    drive(io, eng)  # closed first: the driver stops before the engine
    return eng


def call(io: IoLoop, eng: HostEngine, key: str, method: str, *args: Any, rid: str = "", attempt: int = 0) -> Any:
    c = Call(
        type_name="Acc",
        key=key,
        method=method,
        args=codec.encode_args(args, {}),
        request_id=rid or f"r{id(args)}{method}{key}{threading.get_ident()}{args}",
        attempt=attempt,
    )
    reply = io.run(eng.dispatch(c))
    assert reply is not None
    if reply.error is not None:
        raise rebuild_error(reply.error)
    return codec.decode(reply.value)


def test_state_survives_a_new_engine(io: IoLoop, store: Store) -> None:
    d = make_def()
    e1 = engine(io, store, d)
    assert call(io, e1, "a", "add", 5, rid="1") == 5
    call(io, e1, "a", "keep", {"t": (1, 2), "s": {3}}, rid="2")
    e2 = engine(io, store, d)  # a restarted host: claims a newer epoch, loads from the store
    assert call(io, e2, "a", "add", 1, rid="3") == 6
    assert call(io, e2, "a", "cache") == "missing"  # transient attributes are not stored


def test_retry_with_same_request_id_runs_once(io: IoLoop, store: Store) -> None:
    d = make_def()
    e1 = engine(io, store, d)
    assert call(io, e1, "a", "add", 5, rid="same") == 5
    assert call(io, e1, "a", "add", 5, rid="same") == 5
    e2 = engine(io, store, d)  # the retry lands on a restarted host: found in the store's records
    assert call(io, e2, "a", "add", 5, rid="same", attempt=1) == 5
    assert call(io, e2, "a", "read") == 5
    for i in range(200):  # far more calls than the in-memory window holds
        call(io, e2, "a", "add", 1, rid=f"later-{i}")
    assert call(io, e2, "a", "add", 5, rid="same", attempt=3) == 5  # a late retry still runs once
    assert call(io, e2, "a", "read") == 205


@pytest.mark.parametrize("persist", ["interval", "never"])
def test_a_late_resend_runs_once_where_memory_is_the_only_record(io: IoLoop, store: Store, persist: str) -> None:
    """A busy identity that keeps its replies in memory only: a request re-sent after
    many later turns (a partition move under load) is answered, not run again."""
    e = engine(io, store, make_def(persist))
    assert call(io, e, "a", "add", 5, rid="first") == 5
    for i in range(500):  # far more turns than the last 64 the store-backed modes keep in memory
        call(io, e, "a", "add", 1, rid=f"later-{i}")
    assert call(io, e, "a", "add", 5, rid="first", attempt=1) == 5  # the recorded reply
    assert call(io, e, "a", "read") == 505


def test_unchanged_state_is_not_rewritten(io: IoLoop, store: Store) -> None:
    e = engine(io, store, make_def())
    call(io, e, "a", "add", 1)
    writes = e.counters["storage_writes"]
    for _ in range(5):
        call(io, e, "a", "read")
    assert e.counters["storage_writes"] == writes


def test_stale_host_is_fenced(io: IoLoop, store: Store) -> None:
    d = make_def()
    old = engine(io, store, d)
    call(io, old, "a", "add", 1, rid="1")
    new = engine(io, store, d)  # the shard moved: new epoch
    with pytest.raises(Redirect):
        call(io, old, "a", "add", 1, rid="2")
    with pytest.raises(Redirect):  # and it keeps refusing, even reads
        call(io, old, "a", "read")
    assert call(io, new, "a", "add", 1, rid="3") == 2


def test_store_refuses_old_epochs_and_stale_versions(store: Store) -> None:
    e1 = store.claim_shard("G", 0)
    e2 = store.claim_shard("G", 0)
    assert e2 > e1
    v = store.save("G/a", expected=0, state=b"1", fence=("G", 0, e2))
    with pytest.raises(StaleEpoch):
        store.save("G/a", expected=v, state=b"2", fence=("G", 0, e1))
    with pytest.raises(StaleEpoch):  # a first write too; nothing of it is kept, its reply neither
        store.save("G/b", expected=0, state=b"1", fence=("G", 0, e1), reply=("r1", b"x"))
    assert store.load("G/b") is None and store.get_reply("G/b", "r1") is None
    with pytest.raises(VersionConflict):  # a conflict under a current fence is a conflict
        store.save("G/a", expected=v + 1, state=b"2", fence=("G", 0, e2))
    with pytest.raises(VersionConflict):
        store.save("G/a", expected=v - 1, state=b"2", fence=None)
    assert store.load("G/a").state == b"1"  # type: ignore[union-attr]


def test_interval_mode_writes_behind(io: IoLoop, store: Store) -> None:
    d = make_def("interval")
    e = engine(io, store, d)
    call(io, e, "a", "add", 3)
    assert store.load("Acc/a") is None
    io.run(e.flush_dirty())
    assert engine(io, store, d) and call(io, engine(io, store, d), "a", "read") == 3


def test_never_mode_keeps_memory_only(io: IoLoop, store: Store) -> None:
    e = engine(io, store, make_def("never"))
    call(io, e, "a", "add", 3)
    io.run(e.close())
    assert store.load("Acc/a") is None and e.counters["storage_writes"] == 0


def test_live_cap_passivates_least_recently_used(io: IoLoop, store: Store) -> None:
    d = make_def()
    e = engine(io, store, d, max_live=3)
    for k in "abcde":
        call(io, e, k, "add", 1)
    call(io, e, "a", "add", 1)  # a is now recent
    io.run(e.reap_once())  # the reaper also runs by itself as soon as the cap is reached
    assert e.live_identities == 3 and e.counters["passivations"] >= 2
    assert e.table.get("Acc/a") is not None  # the most recently used one stays
    assert call(io, e, "b", "add", 1) == 2  # b comes back from the store


def test_user_errors_and_bad_calls(io: IoLoop, store: Store) -> None:
    e = engine(io, store, make_def())
    for bad, exc in [("nope", ff.NotFound), ("_cache", ff.NotFound)]:
        with pytest.raises(exc):
            call(io, e, "a", bad)
    with pytest.raises(ff.InvalidRequest):
        call(io, e, "a", "add", 1, 2)
    with pytest.raises(TypeError) as info:  # a TypeError inside add is the user's, not a bad request
        call(io, e, "a", "add", "x", rid="typed")
    assert isinstance(info.value, ff.ActorError)
    assert status_for(ff.NotFound("")).name == "NOT_FOUND"


def test_many_identities_are_cheap(io: IoLoop) -> None:
    e = engine(io, None, make_def("never"))

    async def burst() -> None:
        await asyncio.gather(
            *(e.dispatch(Call(type_name="Acc", key=f"k{i}", method="read", request_id=str(i))) for i in range(2000))
        )

    io.run(burst())
    assert e.live_identities == 2000 and e.counters["activations"] == 2000


class Napper:
    def __init__(self) -> None:
        self.steps = 0

    async def nap(self, s: float) -> int:
        await asyncio.sleep(s)
        self.steps += 1
        return self.steps


def test_queued_async_call_past_its_deadline_leaves_the_identity_usable(io: IoLoop, store: Store) -> None:
    at = ff.actor(name="ENapper", shards=1)(Napper)
    e = engine(io, store, ActorDef(Napper, at.options))

    def nap(s: float, rid: str, deadline: float = 0.0) -> Call:
        args = codec.encode_args((s,), {})
        return Call(type_name="ENapper", key="k", method="nap", args=args, request_id=rid, deadline=deadline)

    async def scenario() -> list[Outcome | None]:
        busy = asyncio.ensure_future(e.dispatch(nap(0.5, "busy")))
        await asyncio.sleep(0.05)
        late = await e.dispatch(nap(0.0, "late", deadline=time.time() + 0.1))  # queued, then withdrawn
        return [late, await busy, await asyncio.wait_for(e.dispatch(nap(0.0, "after")), 5)]

    late, busy, after = io.run(scenario())
    assert late is not None and late.error is not None
    with pytest.raises(ff.CallTimeout):
        raise rebuild_error(late.error)
    assert busy is not None and codec.decode(busy.value) == 1
    assert after is not None and codec.decode(after.value) == 2  # the withdrawn turn never ran


class FlakyStore:
    """A real SQLite store whose writes fail while ``down`` (an outage, for the engine's logic)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = False

    def save(self, *args: Any, **kwargs: Any) -> int:
        if self.down:
            raise ConnectionError("store unreachable")
        return self.inner.save(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_turn_whose_write_fails_is_rolled_back_and_answered_once(io: IoLoop, store: Store) -> None:
    flaky = FlakyStore(store)
    e = engine(io, flaky, make_def())  # type: ignore[arg-type]
    assert call(io, e, "a", "add", 5) == 5
    flaky.down = True
    with pytest.raises(ff.Unavailable, match="did not take effect"):
        call(io, e, "a", "add", 1, rid="during-outage")
    flaky.down = False
    assert call(io, e, "a", "read") == 5  # the failed turn never happened
    # Its retry runs it (the store has no record of it), not answered from memory as if it had.
    assert call(io, e, "a", "add", 1, rid="during-outage", attempt=1) == 6
    assert call(io, e, "a", "read") == 6
    assert call(io, e, "a", "add", 1, rid="during-outage", attempt=2) == 6  # and now it is recorded
    assert call(io, e, "a", "add", 1, rid="after") == 7


def test_a_write_that_would_wait_is_refused_at_once_and_writes_nothing(store: Store) -> None:
    import sqlite3

    store.save("T/w", expected=0, state=encode_state({"n": 1}), fence=None)
    other = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(WouldBlock):
            store.save("T/w", expected=1, state=encode_state({"n": 2}), fence=None, nowait=True)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert decode_state(store.load("T/w").state) == {"n": 1}  # type: ignore[union-attr]
    assert store.save("T/w", expected=1, state=encode_state({"n": 2}), fence=None, nowait=True) == 2


def test_a_loop_turn_whose_write_would_wait_is_written_by_a_worker_and_counted(io: IoLoop, store: Store) -> None:
    """A live identity's turn runs on the loop; its write, refused at once while another
    connection holds SQLite's lock, goes to a worker (``writes_deferred``), which waits for
    the lock: the reply comes once the write is durable."""
    import sqlite3

    eng = engine(io, store, make_def("call"))

    def submitted(k: int) -> Any:  # as a host's stream submits a call (``SyncLane.submit``)
        async def go() -> Outcome:
            got: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            c = Call(type_name="Acc", key="d", method="add", args=codec.encode_args((k,), {}), request_id=f"s{k}")
            eng.submit(c, lambda reply: got.set_result(reply) if reply is not None else None)
            return await got

        reply = io.run(go())
        assert reply.error is None, reply.error
        return codec.decode(reply.value)

    assert submitted(1) == 1  # activates: the identity is live from now on
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)  # type: ignore[attr-defined]
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    released = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
    released.start()
    try:
        assert submitted(2) == 3
    finally:
        released.join()
        other.close()
    assert eng.counters["writes_deferred"] == 1
    assert decode_state(store.load("Acc/d").state)["total"] == 3  # type: ignore[union-attr]
    assert submitted(3) == 6  # the lock is free: written on the loop again
    assert eng.counters["writes_deferred"] == 1


class Unstorable:
    def __init__(self) -> None:
        self.n = 0

    def lock_up(self) -> int:
        self.n += 1
        self.lock = threading.Lock()
        return self.n

    def get(self) -> int:
        return self.n


def test_unstorable_state_names_the_attribute_and_rolls_back(io: IoLoop, store: Store) -> None:
    at = ff.actor(name="EUnstorable", shards=1)(Unstorable)
    e = engine(io, store, ActorDef(Unstorable, at.options))
    c = Call(type_name="EUnstorable", key="k", method="lock_up", args=codec.encode_args((), {}), request_id="x")
    reply = io.run(e.dispatch(c))
    assert reply is not None and reply.error is not None
    with pytest.raises(ff.InvalidRequest, match="'lock'"):
        raise rebuild_error(reply.error)
    g = Call(type_name="EUnstorable", key="k", method="get", args=codec.encode_args((), {}), request_id="y")
    got = io.run(e.dispatch(g))
    assert got is not None and codec.decode(got.value) == 0


def test_a_cluster_fenced_out_by_another_says_so_on_every_call(io: IoLoop, store: Store) -> None:
    d = make_def()
    first = engine(io, store, d, cluster_id="default@first")
    assert call(io, first, "a", "add", 1) == 1
    second = engine(io, store, d, cluster_id="default@second")  # another cluster, same namespace and store
    assert call(io, second, "a", "add", 1) == 2
    for attempt in range(3):  # the write that finds the newer epoch, then every later call
        with pytest.raises(ff.FluentError, match="another cluster") as info:
            call(io, first, "a", "add", 1, rid=f"late-{attempt}")
        assert not isinstance(info.value, Redirect | ff.Unavailable)
        assert "default@second" in str(info.value) and "namespace" in str(info.value)
    assert call(io, second, "a", "read") == 2


def test_a_deleted_store_is_noticed_and_calls_are_refused(io: IoLoop, tmp_path: Path) -> None:
    path = tmp_path / "lost.db"
    store = open_store(f"sqlite:///{path}")
    e = engine(io, store, make_def())
    assert call(io, e, "a", "add", 1) == 1
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    wait_for(lambda: e.persistence.fenced, 60)  # the host's driver checks the store every second
    for _ in range(2):
        with pytest.raises(ff.Unavailable, match="deleted"):
            call(io, e, "a", "add", 1)


def test_a_replaced_store_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "swap.db"
    store = open_store(f"sqlite:///{path}")
    store.check()
    path.rename(tmp_path / "old.db")
    open_store(f"sqlite:///{path}").close()  # a fresh file where the store was
    with pytest.raises(StoreLost, match="replaced"):
        store.check()


def test_live_cap_holds_during_a_burst(io: IoLoop, store: Store) -> None:
    e = engine(io, None, make_def("never"), max_live=50)
    peak = 0

    async def one(i: int) -> Outcome | None:
        nonlocal peak
        reply = await e.dispatch(Call(type_name="Acc", key=f"b{i}", method="read", request_id=f"b{i}"))
        peak = max(peak, e.live_identities)
        return reply

    async def burst() -> list[Outcome | None]:
        return await asyncio.gather(*(one(i) for i in range(3000)))

    replies = io.run(burst())
    refused = [r for r in replies if r is not None and r.error is not None]
    assert all(rebuild_error(r.error).__class__ is ff.Overloaded for r in refused)
    assert peak <= 50 + 16  # the cap plus the documented margin, never the whole burst
    assert len(refused) < len(replies)


_GATE = threading.Event()


class Stall:
    def stall(self) -> str:
        _GATE.wait(30)  # a turn still under way when its host "dies" (the engine is abandoned)
        return "done"

    def ping(self) -> str:
        return "pong"


def test_a_call_under_way_at_max_lost_host_deaths_is_refused_and_its_neighbours_are_not(
    io: IoLoop, store: Store
) -> None:
    """A call re-sent after its host went away with it (attempt > 1) is counted in the store
    while its turn is under way; one that was under way at each of MAX_LOST host deaths
    (the first send's, then counted ones, as here: engines abandoned mid-turn) is refused,
    while a call that waited beside it, never started, runs (and a plain possible repeat,
    attempt 1, writes no count at all)."""
    from fluentfn._router import MAX_LOST
    from fluentfn.host._underway import call_key

    d = ActorDef(Stall, ActorOptions(name="Stall", shards=1))  # (not registered with any cluster up in this process)
    key = call_key("Stall/p", "poison")

    def stall(eng: HostEngine, attempt: int) -> Any:
        c = Call(type_name="Stall", key="p", method="stall", args=codec.encode_args((), {}),
                 request_id="poison", attempt=attempt)  # fmt: skip
        return io.submit(eng.dispatch(c))

    _GATE.clear()
    hanging = []
    try:
        for attempt in range(2, MAX_LOST + 1):  # sends 2..MAX_LOST: each host "dies" with the turn under way
            eng = engine(io, store, d)
            hanging.append(stall(eng, attempt))
            wait_for(lambda a=attempt: store.get(key) == str(a - 1).encode(), timeout=10)
        last = engine(io, store, d)
        reply = io.run(last.dispatch(Call(type_name="Stall", key="p", method="stall", args=codec.encode_args((), {}),
                                          request_id="poison", attempt=MAX_LOST + 1)))  # fmt: skip
        assert reply is not None and reply.error is not None
        refused = rebuild_error(reply.error)
        assert isinstance(refused, ff.Unavailable)
        assert f"under way when its host went away {MAX_LOST} times" in str(refused)
        assert "may have run" in str(refused)
        assert store.get(key) is None, "the refusal is the call's final answer: its count goes (no row left)"
        # a call that waited beside the poison (re-sent as often, never started) runs, and leaves no count
        bystander = Call(type_name="Stall", key="q", method="ping", args=codec.encode_args((), {}),
                         request_id="bystander", attempt=MAX_LOST + 1)  # fmt: skip
        ok = io.run(last.dispatch(bystander))
        assert ok is not None and ok.error is None and codec.decode(ok.value) == "pong"
        assert store.get(call_key("Stall/q", "bystander")) is None
        # a plain possible repeat (a redirect, an unreached stream) is not counted
        before = dict(last.counters)
        plain = Call(type_name="Stall", key="q", method="ping", args=codec.encode_args((), {}),
                     request_id="plain", attempt=1)  # fmt: skip
        ok = io.run(last.dispatch(plain))
        assert ok is not None and ok.error is None
        assert last.counters["storage_writes"] == before["storage_writes"], "no count written"
    finally:
        _GATE.set()
    for fut in hanging:
        assert fut.result(30) is not None
    wait_for(lambda: store.get(key) is None, timeout=10)  # the turns that ended took their counts


def test_a_calls_count_of_turns_under_way_expires_after_its_deadline(io: IoLoop, store: Store) -> None:
    """The count row of a re-sent call whose host died and that nobody sends again does not
    stay for good: it is kept until the call's deadline and ``EXPIRY_GRACE_S`` more, then
    the store's pruning removes it."""
    from fluentfn.host._underway import EXPIRY_GRACE_S, call_key

    d = ActorDef(Stall, ActorOptions(name="Stall", shards=1))
    key = call_key("Stall/e", "orphan")
    deadline = time.time() + 120.0
    _GATE.clear()
    try:
        eng = engine(io, store, d)
        c = Call(type_name="Stall", key="e", method="stall", args=codec.encode_args((), {}),
                 request_id="orphan", attempt=2, deadline=deadline)  # fmt: skip
        hanging = io.submit(eng.dispatch(c))
        wait_for(lambda: store.get(key) == b"1", timeout=10)  # under way: counted
        assert store.prune_expired(deadline + EXPIRY_GRACE_S - 1.0) == 0 and store.get(key) == b"1"
        assert store.prune_expired(deadline + EXPIRY_GRACE_S + 1.0) == 1 and store.get(key) is None
    finally:
        _GATE.set()
    assert hanging.result(30) is not None
