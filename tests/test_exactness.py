"""Exactness of what a turn does besides its state: reminders it schedules, idempotency
keys, write-behind. Host engines on a real SQLite store, without Ray or sockets."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import fluentfn as ff
from fluentfn import api
from fluentfn._actordef import ActorDef
from fluentfn._call import Call, Outcome
from fluentfn._ioloop import IoLoop
from fluentfn._ref import bulk_message
from fluentfn._status import Status
from fluentfn.errors import Redirect
from fluentfn.placement import ActorOptions
from fluentfn.state._codec import decode_state
from fluentfn.state._store import Store
from fluentfn.testing import wait_for
from fluentfn.wire import codec
from fluentfn.wire._gen import actorhost_pb2 as pb
from fluentfn.wire.errors import describe_error, rebuild_error
from fluentfn.wire.records import read_record, record_of

from .test_engine import engine

pytestmark = pytest.mark.timeout(60)


class Timer:
    def __init__(self) -> None:
        self.n = 0
        self.rings = 0

    def arm(self, delay: float) -> str:
        self.n += 1
        return ff.context().schedule(delay, "ring")

    def arm_quietly(self, delay: float) -> str:
        """Schedules without changing state."""
        return ff.context().schedule(delay, "ring")

    def arm_then_fail(self, delay: float) -> Any:
        ff.context().schedule(delay, "ring")
        self.n += 1
        return object()  # cannot be sent: the turn is rolled back

    def arm_bad(self, what: str) -> str:
        if what == "unknown":
            return ff.context().schedule(1, "nope")
        if what == "private":
            return ff.context().schedule(1, "_secret")
        if what == "args":
            return ff.context().schedule(1, "ring", 1, 2, 3)
        return ff.context().every(1, "ring", unknown=1)

    def arm_and_cancel(self) -> list[str]:
        rid = ff.context().schedule(5, "ring")
        listed = [r["id"] for r in ff.context().reminders()]
        ff.context().cancel(rid)
        return [rid, *listed]

    def ring(self) -> None:
        self.rings += 1

    def _secret(self) -> None:
        pass


def local_def(cls: type, persist: str = "call") -> ActorDef:
    """A definition named "Timer" (what ``send`` calls) that is not registered with
    ``ff.actor``: the shared cluster of later tests never ships these classes."""
    options = ActorOptions(name="Timer", shards=1, persist=persist, min_hosts=1, max_hosts=1)
    options.validate()
    return ActorDef(cls, options)


def timer_def(persist: str = "call") -> ActorDef:
    return local_def(Timer, persist)


def send(io: IoLoop, eng: Any, key: str, method: str, *args: Any, rid: str, attempt: int = 0) -> Any:
    c = Call(
        type_name="Timer",
        key=key,
        method=method,
        args=codec.encode_args(args, {}),
        request_id=rid,
        attempt=attempt,
        deadline=time.time() + 30,
    )
    reply = io.run(eng.dispatch(c))
    assert reply is not None
    if reply.error is not None:
        raise rebuild_error(reply.error)
    return codec.decode(reply.value)


@pytest.mark.parametrize("persist", ["call", "interval", "never"])
def test_a_reminder_scheduled_by_a_rolled_back_turn_does_not_exist(io: IoLoop, store: Store, persist: str) -> None:
    eng = engine(io, store, timer_def(persist))
    with pytest.raises(ff.InvalidRequest):
        send(io, eng, "a", "arm_then_fail", 60.0, rid="r1")
    assert store.reminders_of("Timer/a") == []


@pytest.mark.parametrize("method", ["arm", "arm_quietly"])
def test_a_retried_turn_schedules_its_reminder_once(io: IoLoop, store: Store, method: str) -> None:
    eng = engine(io, store, timer_def("call"))
    first = send(io, eng, "a", method, 60.0, rid="r1")
    again = send(io, eng, "a", method, 60.0, rid="r1", attempt=1)
    assert again == first
    assert [r.rid for r in store.reminders_of("Timer/a")] == [first]


def test_a_turn_run_again_on_the_next_owner_schedules_the_same_reminder(io: IoLoop, store: Store) -> None:
    """The first owner ran the turn but its write was fenced off (the partition moved):
    nothing of it exists; the retry at the next owner schedules one reminder, whose id
    is the one the first attempt would have made."""
    old = engine(io, store, timer_def("call"))
    send(io, old, "warm", "arm", 60.0, rid="w")  # activate the partition's first owner
    new = engine(io, store, timer_def("call"))  # claims a newer epoch
    with pytest.raises(ff.FluentError):
        send(io, old, "a", "arm", 60.0, rid="r1")
    assert store.reminders_of("Timer/a") == []
    rid = send(io, new, "a", "arm", 60.0, rid="r1", attempt=1)
    again = send(io, new, "a", "arm", 60.0, rid="r1", attempt=1)
    assert rid == again
    assert [r.rid for r in store.reminders_of("Timer/a")] == [rid]


@pytest.mark.parametrize("what", ["unknown", "private", "args", "kwargs"])
def test_a_reminder_that_could_never_fire_is_refused_when_scheduled(io: IoLoop, store: Store, what: str) -> None:
    eng = engine(io, store, timer_def("call"))
    with pytest.raises(ff.ActorError) as info:
        send(io, eng, "a", "arm_bad", what, rid=f"bad-{what}")
    assert isinstance(info.value, ff.InvalidRequest)
    assert store.reminders_of("Timer/a") == []


def test_a_turn_sees_and_cancels_its_own_unwritten_reminder(io: IoLoop, store: Store) -> None:
    eng = engine(io, store, timer_def("call"))
    rid, *listed = send(io, eng, "a", "arm_and_cancel", rid="c1")
    assert listed == [rid]
    assert store.reminders_of("Timer/a") == []


def test_a_reminder_fires_once(io: IoLoop, store: Store) -> None:
    eng = engine(io, store, timer_def("call"))
    send(io, eng, "a", "arm", 0.0, rid="f1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and store.reminders_of("Timer/a"):
        time.sleep(0.02)
    assert store.reminders_of("Timer/a") == []
    record = store.load("Timer/a")
    assert record is not None
    assert decode_state(record.state)["rings"] == 1
    assert eng.counters["reminder_failures"] == 0


RANG_OUTSIDE: list[str] = []


class Bell:
    """A reminder whose firing changes no state and acts outside it: nothing records it, so
    only the firing loop keeps it from ringing twice."""

    def __init__(self) -> None:
        self.armed = 0

    def arm(self, delay: float) -> str:
        self.armed += 1
        return ff.context().schedule(delay, "ring")

    def ring(self) -> None:
        time.sleep(0.4)  # longer than the loop waits before it reads the store again
        RANG_OUTSIDE.append(ff.context().key or "")


class _SlowDueReads:
    """A store whose read of the due reminders returns late: a firing started from an
    earlier read ends (and deletes its row) while this read is still on its way."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def due_reminders(self, *args: Any, **kwargs: Any) -> Any:
        rows = self._inner.due_reminders(*args, **kwargs)
        time.sleep(0.3)
        return rows


def test_in_flight_keeps_a_stale_read_from_firing_again() -> None:
    from fluentfn.host._reminders import InFlight

    firing = InFlight()
    firing.reading()
    assert firing.start("r") and not firing.start("r")  # once at a time
    firing.reading()  # a read begins while "r" fires ...
    firing.end("r")  # ... and "r" ends (its row deleted) before the read comes back
    assert not firing.start("r")  # the read's stale row does not fire it again
    firing.reading()  # a read that began after the end sees the store as it is
    assert firing.start("r")  # (a row still there is due again: a retry, a periodic one)


def test_a_reminder_read_while_its_firing_ends_fires_once(io: IoLoop, store: Store) -> None:
    eng = engine(io, _SlowDueReads(store), local_def(Bell))  # type: ignore[arg-type]
    RANG_OUTSIDE.clear()
    send(io, eng, "a", "arm", 0.0, rid="bell1")
    wait_for(lambda: not store.reminders_of("Timer/a"), timeout=30)
    time.sleep(1.5)  # reads that began before the row went have all come back
    assert RANG_OUTSIDE == ["a"]


class Wallet:
    def __init__(self) -> None:
        self.balance = 0

    def deposit(self, k: int) -> int:
        self.balance += k
        return self.balance

    def withdraw(self, k: int) -> int:
        self.balance -= k
        return self.balance

    def peek(self, k: int) -> int:
        return self.balance + k


def wallet(io: IoLoop, store: Store, persist: str = "call") -> Any:
    return engine(io, store, local_def(Wallet, persist))


KEY = "key:" + "1" * 24  # a keyed request id, as ff.Client derives it from an idempotency key


def test_an_idempotency_key_answers_its_retry_and_refuses_another_request(io: IoLoop, store: Store) -> None:
    eng = wallet(io, store)
    assert send(io, eng, "w", "deposit", 100, rid=KEY, attempt=1) == 100
    assert send(io, eng, "w", "deposit", 100, rid=KEY, attempt=1) == 100  # the recorded reply
    for method, arg in [("withdraw", 100), ("deposit", 30)]:
        with pytest.raises(ff.InvalidRequest, match="idempotency key reused"):
            send(io, eng, "w", method, arg, rid=KEY, attempt=1)
    assert send(io, eng, "w", "deposit", 1, rid="fresh") == 101


def test_a_key_is_bound_even_when_its_call_changed_nothing(io: IoLoop, store: Store) -> None:
    eng = wallet(io, store)
    assert send(io, eng, "w", "peek", 5, rid=KEY, attempt=1) == 5
    with pytest.raises(ff.InvalidRequest, match="idempotency key reused"):
        send(io, eng, "w", "deposit", 5, rid=KEY, attempt=1)
    assert send(io, eng, "w", "peek", 0, rid="fresh") == 0


def test_a_key_survives_a_restart_of_the_host(io: IoLoop, store: Store) -> None:
    first = wallet(io, store)
    assert send(io, first, "w", "deposit", 7, rid=KEY, attempt=1) == 7
    second = wallet(io, store)  # the next owner: nothing in memory
    assert send(io, second, "w", "deposit", 7, rid=KEY, attempt=1) == 7
    with pytest.raises(ff.InvalidRequest, match="idempotency key reused"):
        send(io, second, "w", "withdraw", 7, rid=KEY, attempt=1)


@pytest.mark.parametrize("persist", ["interval", "never"])
def test_a_mode_that_records_no_replies_refuses_an_idempotency_key(io: IoLoop, store: Store, persist: str) -> None:
    eng = wallet(io, store, persist)
    with pytest.raises(ff.InvalidRequest, match="idempotency key cannot be honoured"):
        send(io, eng, "w", "deposit", 1, rid=KEY, attempt=1)
    assert send(io, eng, "w", "deposit", 1, rid="plain") == 1  # nothing ran for the refused call


def test_records_written_before_keys_were_bound_are_still_read(io: IoLoop, store: Store) -> None:
    """A reply record of the older format (plain ``Outcome`` bytes) still answers a retry."""
    eng = wallet(io, store)
    reply = pb.Reply(value=codec.encode(42))
    store.save("Timer/old", expected=0, state=b"\x80", fence=None, reply=("r-old", reply.SerializeToString()))
    assert send(io, eng, "old", "deposit", 1, rid="r-old", attempt=1) == 42


# -- bulk ---------------------------------------------------------------------------------------


def bulk_call(io: IoLoop, eng: Any, items: dict[str, int], batch: str, attempt: int) -> dict[str, Any]:
    c = Call(
        type_name="Timer",
        key=next(iter(items)),
        method="__bulk__",
        args=codec.encode_args(bulk_message("deposit", list(items), [[v] for v in items.values()], batch, attempt), {}),
        request_id=f"bulk-{batch}-{attempt}-{time.monotonic_ns()}",  # each send is a call of its own
        deadline=time.time() + 30,
    )
    reply = io.run(eng.dispatch(c))
    assert reply is not None and reply.error is None, reply
    out = {}
    for key, raw in zip(items, codec.decode(reply.value), strict=True):
        item = read_record(raw)[1]
        out[key] = rebuild_error(item.error) if item.error is not None else codec.decode(item.value)
    return out


def test_a_bulk_batch_sent_again_after_a_restart_applies_each_item_once(io: IoLoop, store: Store) -> None:
    first = wallet(io, store)
    items = {f"w{i}": i + 1 for i in range(20)}
    assert bulk_call(io, first, items, "B1", 0) == items
    second = wallet(io, store)  # the host restarted: nothing in memory, the batch is sent again
    assert bulk_call(io, second, items, "B1", 1) == items
    # a subset sent again (what a move leaves to re-send) is answered from the records too
    subset = dict(list(items.items())[5:9])
    assert bulk_call(io, second, subset, "B1", 1) == subset
    assert bulk_call(io, second, {"w0": 5}, "B2", 0) == {"w0": 6}  # a new batch runs


class _Invoker:
    """Stands in for the runtime: the first send of a batch is refused for half its items,
    as a partition that moves mid-batch refuses what it has not run."""

    mode = "stateful"

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, list[str]]] = []
        self.applied: dict[str, int] = {}

    def submit(self, ref: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], **_: Any) -> Any:
        from concurrent.futures import Future

        _name, keys, arguments, batch, attempt = args
        self.sent.append((batch, attempt, list(keys)))
        out = []
        for i, (key, a) in enumerate(zip(keys, arguments, strict=True)):
            if attempt == 0 and i % 2:
                moved = describe_error(Redirect("partition moved"))
                out.append(record_of(Outcome(error=moved)))
            else:
                self.applied[key] = self.applied.get(key, 0) + 1
                out.append(record_of(Outcome(codec.encode(a[0] * 10))))
        fut: Future[Any] = Future()
        fut.set_result(out)
        return fut


def test_bulk_items_refused_by_a_moving_partition_are_sent_again_not_raised(monkeypatch: Any) -> None:
    from fluentfn import _ref

    @ff.actor(name="BulkTarget", shards=1)
    class BulkTarget:
        def put(self, v: int) -> int:
            return v

    fake = _Invoker()
    monkeypatch.setattr(_ref, "current_invoker", lambda: fake)
    monkeypatch.delitem(api._KNOWN_TYPES, "BulkTarget")  # never shipped to a cluster
    items = {f"k{i}": (i,) for i in range(10)}
    assert BulkTarget.bulk("put", items) == {k: v[0] * 10 for k, v in items.items()}
    assert all(n == 1 for n in fake.applied.values()) and len(fake.applied) == 10
    (b1, a1, keys1), (b2, a2, keys2) = fake.sent
    assert b1 == b2 and (a1, a2) == (0, 1)  # the same batch, marked as a possible repeat
    assert keys2 == keys1[1::2]


# -- write-behind ---------------------------------------------------------------------------------


_RELEASE = threading.Event()


class Behind:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def slow(self) -> int:
        _RELEASE.wait(60)  # held until the test lets it end: no timing assumption
        return self.n


def test_a_long_turn_delays_only_its_own_write_behind(io: IoLoop, store: Store) -> None:
    eng = engine(io, store, local_def(Behind, "interval"))
    _RELEASE.clear()
    send(io, eng, "a", "add", 1, rid="a1")
    slow = Call(type_name="Timer", key="a", method="slow", args=codec.encode_args((), {}), request_id="a2")
    stuck = io.submit(eng.dispatch(slow))
    try:
        wait_for(lambda: any(r.address == "Timer/a" for r in eng.runner.running), 30)
        for i in range(50):
            send(io, eng, "b", "add", 1, rid=f"b{i}")
        io.run(eng.upkeep.flush_dirty(wait=False))

        def b_written() -> bool:
            record = store.load("Timer/b")
            return record is not None and decode_state(record.state)["n"] == 50

        wait_for(b_written, 30)  # while "a" is still in its turn
        assert not stuck.done()
    finally:
        _RELEASE.set()
    stuck.result(30)
    io.run(eng.flush_dirty())
    record = store.load("Timer/a")
    assert record is not None and decode_state(record.state)["n"] == 1


# -- deadlines across clocks --------------------------------------------------------------------


def test_a_skewed_callers_deadline_is_re_based_on_the_hosts_clock(io: IoLoop, store: Store) -> None:
    """Callers whose clocks are 5 s behind or ahead of the host's: the budget they send
    (seconds left) is what counts, so a live call runs and an expired one does not."""
    import grpc

    from fluentfn.transport._server import start_server
    from fluentfn.wire._gen import actorhost_pb2_grpc as pb_grpc

    eng = engine(io, store, local_def(Behind, "call"))
    server, port = io.run(start_server(eng, "tok", "127.0.0.1"))  # type: ignore[arg-type]
    md = (("authorization", "Bearer tok"),)
    _RELEASE.clear()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ActorHostStub(channel)

            def invoke(method: str, deadline: float, budget: float, rid: str, *args: Any) -> pb.Reply:
                c = pb.Call(type_name="Timer", key="s", method=method, args=codec.encode_args(args, {}),
                            request_id=rid, deadline=deadline, budget_s=budget)  # fmt: skip
                return stub.Invoke(c, metadata=md, timeout=30)

            # 5 s behind: its absolute deadline is already past here, its budget is not
            assert codec.decode(invoke("add", time.time() - 5 + 4, 4.0, "behind", 1).value) == 1
            held = io.submit(eng.dispatch(Call(type_name="Timer", key="s", method="slow", request_id="hold")))
            wait_for(lambda: eng.runner.running, 30)
            # 5 s ahead: its absolute deadline is far off here, its budget of 0.2 s is not
            with pytest.raises(grpc.RpcError) as info:
                invoke("add", time.time() + 5 + 0.2, 0.2, "ahead", 100)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "past the deadline" in (info.value.details() or "")  # the host withdrew it, not gRPC
            _RELEASE.set()
            held.result(30)
            assert codec.decode(invoke("add", 0.0, 10.0, "after", 0).value) == 1  # the expired one never ran
    finally:
        _RELEASE.set()
        io.run(server.stop(0))


def test_an_accepted_unary_tell_refused_by_a_move_is_sent_on(io: IoLoop) -> None:
    """ff.Client.tell returns once a host accepted the tell; if the partition moves away
    before it runs, the host's router sends it on instead of dropping it."""
    import grpc

    from fluentfn.transport._server import start_server
    from fluentfn.wire._gen import actorhost_pb2_grpc as pb_grpc

    rerouted: list[Call] = []

    class Moved:
        """Accepts the tell, then finds its partition gone (it moved meanwhile)."""

        async def accept(self, call: Call) -> None:
            return None

        async def dispatch(self, call: Call, *, local: bool = False) -> Outcome:
            return Outcome(error=describe_error(Redirect("moved")))

        def submit(self, call: Call, done: Any, *, local: bool = False) -> None:
            done(Outcome(error=describe_error(Redirect("moved"))))

        def status(self) -> Status:
            return Status()

        def reroute(self, call: Call) -> None:
            rerouted.append(call)

    server, port = io.run(start_server(Moved(), "tok", "127.0.0.1"))  # type: ignore[arg-type]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = pb.Call(type_name="T", key="k", method="m", request_id="t1", args=codec.encode_args((), {}))
            pb_grpc.ActorHostStub(channel).Tell(call, metadata=(("authorization", "Bearer tok"),), timeout=30)
        wait_for(lambda: rerouted, 30)
        assert [c.request_id for c in rerouted] == ["t1"]
    finally:
        io.run(server.stop(0))


# -- a reminder's turn has a deadline like any other --------------------------------------------

_HUNG = threading.Event()


class Hanger:
    """A reminder whose turn blocks until the test lets it go."""

    def __init__(self) -> None:
        self.n = 0

    def arm(self) -> str:
        return ff.context().schedule(0.0, "hang")

    def hang(self) -> None:
        _HUNG.wait(60)
        self.n += 1

    def get(self) -> int:
        return self.n


def test_a_hung_reminder_turn_is_reported_overdue(io: IoLoop, store: Store, monkeypatch: Any) -> None:
    """A firing is a call with the default deadline (shortened here): a reminder turn that
    hangs past it is counted and logged overdue by the host's driver, and its worker
    thread stops counting against the pool, as for any other call."""
    from fluentfn.host import _firing

    monkeypatch.setattr(_firing, "DEFAULT_CALL_TIMEOUT_S", 0.3)
    _HUNG.clear()
    eng = engine(io, store, local_def(Hanger, "call"))
    try:
        send(io, eng, "a", "arm", rid="arm-1")
        wait_for(lambda: eng.counters["overdue_turns"] >= 1, 60)
    finally:
        _HUNG.set()
    wait_for(lambda: send(io, eng, "a", "get", rid=f"get-{time.monotonic_ns()}") == 1, 60)
    wait_for(lambda: store.reminders_of("Timer/a") == [], 60)  # fired once, not again
