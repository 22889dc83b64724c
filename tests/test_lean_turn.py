"""The shortcuts a turn takes against the general path: the first-attempt turn
(``TurnRunner._run_first``: most turns of every persist mode) and the batch of turns a
memory-only type's bulk items run in (``TurnRunner.run_batch``). The same operations,
run on two engines, one of them made to take the general path, give the same replies,
state (in memory and, where one is written, in the store), reply records and counters."""

from __future__ import annotations

import contextvars
import gc
import tempfile
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluentfn as ff
from fluentfn._actordef import ActorDef
from fluentfn._call import Call, Outcome
from fluentfn._context import CURRENT, Context
from fluentfn._ioloop import IoLoop
from fluentfn._phases import EVERY, EXACT, TALLY
from fluentfn._ref import bulk_message
from fluentfn.errors import InvalidRequest
from fluentfn.host import _engine
from fluentfn.host._activations import Activation
from fluentfn.host._bulk import Batch, _bulk_sync, item_request_id
from fluentfn.host._engine import HostEngine
from fluentfn.host._runner import _ended
from fluentfn.host._turn import Item, Items, Request, record_for
from fluentfn.state import open_store
from fluentfn.state._codec import decode_state
from fluentfn.wire import codec
from fluentfn.wire.errors import rebuild_error
from fluentfn.wire.records import read_record

pytestmark = pytest.mark.timeout(300)


class Lean:
    def __init__(self) -> None:
        if (ff.context().key or "").startswith("broken"):
            raise ValueError("this identity cannot start")
        self.n = 0
        self.log: list[int] = []

    def add(self, k: int) -> int:
        self.n += k
        self.log.append(k)
        return self.n

    def fail(self) -> None:
        self.n += 100  # memory only: nothing to roll back to, the change stays
        raise RuntimeError("failed on purpose")

    def unsendable(self) -> Any:
        self.n += 1000
        return lambda: None  # cannot be encoded: InvalidRequest

    @ff.readonly
    def peek(self) -> tuple[int, str | None]:
        return self.n, ff.context().request_id

    @ff.readonly
    def capture(self) -> None:
        """Keep this turn's contextvars, as work handed to another thread or task does."""
        self.captured = contextvars.copy_context()

    @ff.readonly
    def keep_context(self) -> bool:
        """Keep this turn's context (as a user may, for later); asked twice, it is one object."""
        self.kept = ff.context()
        return self.kept is ff.context()

    def nothing(self) -> None:
        return None


MODES = ("never", "call", "interval")
DEFS = {mode: ActorDef(Lean, ff.actor(name="Lean", persist=mode, shards=1)(Lean).options) for mode in MODES}
DEF = DEFS["never"]


def make_engine(io: IoLoop, general: bool, mode: str = "never") -> HostEngine:
    async def load(name: str) -> ActorDef | None:
        return None

    definition = DEFS[mode]
    store = None if mode == "never" else open_store(f"sqlite:///{tempfile.mkdtemp()}/lean.db")
    eng = HostEngine(
        group=definition.options.group,
        shard=0,
        loop=io.loop,
        loop_thread=io.thread.ident or 0,
        load_type=load,
        store=store,
    )
    eng.add_type(definition)
    eng.persistence.claim()
    if general:  # the general path, as run_sync takes it for a retry
        runner = eng.runner

        def general_path(req: Request, act: Activation, ctx: Context) -> Outcome:
            return _ended(ctx._times, runner._unless_moved(act, req.call, runner._run_sync(req, act, ctx)))

        runner._run_first = general_path  # type: ignore[method-assign]

        def one_by_one(turns: Items, items: list[Item]) -> list[bytes]:
            return [record_for(r.call, eng.turn_here(r)) for r in map(turns.request, items)]

        eng.turns_here = one_by_one  # type: ignore[method-assign]
    return eng


OP = st.tuples(
    st.sampled_from(["a", "b", "c", "broken-1"]),
    st.sampled_from(["add", "fail", "unsendable", "peek", "nothing"]),
    st.integers(-5, 5),
    st.integers(0, 6),  # request id: a few, so the same id comes again
    st.sampled_from([0, 0, 0, 1]),  # attempt: a retry takes the general path on both
)


def run_batch(
    eng: HostEngine, method: str, items: list[tuple[str, list[Any]]], batch: str, attempt: int
) -> list[tuple[Any, ...]]:
    """One bulk batch of ``method`` on ``items`` (key, args), run as a worker runs it."""
    bulk = Call(
        type_name="Lean",
        key=items[0][0],
        method="__bulk__",
        args=codec.encode_args(bulk_message(method, [k for k, _ in items], [a for _, a in items], batch, attempt), {}),
        request_id=f"bulk-{batch}",
        deadline=time.time() + 60,
    )
    return [_shown(raw) for raw in _bulk_sync(eng, Batch.of(eng, eng.types["Lean"], bulk))]


def _shown(raw: bytes) -> tuple[Any, ...]:
    _, reply = read_record(raw)
    if reply.error is not None:
        return ("error", reply.error.code, reply.error.exc_type, reply.error.message)
    return ("ok", codec.decode(reply.value))


def run_op(eng: HostEngine, op: tuple[str, str, int, int, int]) -> tuple[Any, ...]:
    """One operation: a batch of one item (its request id the same for the same ``rid``)."""
    key, method, k, rid, attempt = op
    (out,) = run_batch(eng, method, [(key, [k] if method == "add" else [])], f"r{rid}", attempt)
    return out


def observed(eng: HostEngine) -> dict[str, Any]:
    acts = {a.address: a for a in eng.admission.table}
    return {
        "state": {a: (x.instance.n, list(x.instance.log)) for a, x in acts.items() if x.instance is not None},
        "replies": {a: {rid: _outcome(r) for rid, r in x.kept()} for a, x in acts.items() if x.kept()},
        "counters": {k: eng.counters.get(k, 0) for k in ("calls", "activations", "errors")},
        "methods": {k: (v.calls, v.errors) for k, v in eng.runner.methods.snapshot().items()},
        "running": len(eng.runner.running),
        "stored": stored(eng),
    }


def stored(eng: HostEngine) -> dict[str, Any]:
    """What the store holds of each identity (None where nothing is written)."""
    store = eng.persistence.store
    if store is None:
        return {}
    out: dict[str, Any] = {}
    for key in ("a", "b", "c", "broken-1"):
        record = store.load(f"Lean/{key}")
        out[key] = None if record is None else decode_state(record.state)
    return out


def _outcome(record: bytes) -> tuple[Any, ...]:
    _, out = read_record(record)
    return (out.value, out.error.code if out.error else None)


@pytest.fixture(scope="module")
def shared_io() -> Any:
    loop = IoLoop()
    yield loop
    loop.loop.call_soon_threadsafe(loop.loop.stop)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(OP, min_size=1, max_size=25))
def test_first_attempts_equal_the_general_path(
    shared_io: IoLoop, mode: str, ops: list[tuple[str, str, int, int, int]]
) -> None:
    lean, general = make_engine(shared_io, False, mode), make_engine(shared_io, True, mode)
    try:
        for op in ops:
            assert run_op(lean, op) == run_op(general, op), op
        assert observed(lean) == observed(general)
    finally:
        for eng in (lean, general):
            shared_io.run(eng.close(grace_s=0.0))


def test_lean_turn_is_taken_and_replays_a_repeated_id(shared_io: IoLoop) -> None:
    """The shortcut runs (a first attempt), and an id seen before is answered from memory,
    not run again (``persist="call"``: bulk items are turns of their own)."""
    eng = make_engine(shared_io, False, "call")
    taken: list[str] = []
    lean = eng.runner._run_first

    def spy(req: Request, act: Activation, ctx: Context) -> Outcome:
        taken.append(req.call.request_id)
        return lean(req, act, ctx)

    eng.runner._run_first = spy  # type: ignore[method-assign]
    assert run_op(eng, ("a", "add", 2, 1, 0)) == ("ok", 2)
    assert run_op(eng, ("a", "add", 2, 1, 0)) == ("ok", 2)  # same id: the recorded reply
    assert run_op(eng, ("a", "add", 3, 2, 1)) == ("ok", 5)  # a retry: the general path
    assert taken == [item_request_id("r1", "a")] * 2
    assert observed(eng)["state"] == {"Lean/a": (5, [2, 3])}
    assert eng.counters["calls"] == 2
    shared_io.run(eng.close(grace_s=0.0))


# -- the batch of turns (``run_batch``) ------------------------------------------------------

ITEM = st.tuples(
    st.sampled_from(["a", "b", "c", "broken-1"]),  # the same key may come again in a batch
    st.sampled_from(["add", "fail", "unsendable", "peek", "nothing"]),
    st.integers(-5, 5),
)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.tuples(st.lists(ITEM, min_size=1, max_size=12), st.integers(0, 3), st.sampled_from([0, 0, 1])),
        min_size=1,
        max_size=6,
    ),
    untimed=st.integers(0, 5),
)
def test_batches_of_turns_equal_the_general_path(
    shared_io: IoLoop, batches: list[tuple[list[tuple[str, str, int]], int, int]], untimed: int
) -> None:
    """Whole bulk batches (one method each; repeated keys; a batch sent again, as a
    retry or not), with the phase tally timing none, some or every turn (``untimed``:
    the batch runs that many turns between two timed ones)."""
    lean, general = make_engine(shared_io, False), make_engine(shared_io, True)
    try:
        with _untimed(untimed):
            for items, batch_id, attempt in batches:
                method = items[0][1]
                args = [(key, [k] if method == "add" else []) for key, _, k in items]
                batch = f"B{batch_id}"
                assert run_batch(lean, method, args, batch, attempt) == run_batch(
                    general, method, args, batch, attempt
                ), items
        assert observed(lean) == observed(general)
    finally:
        for eng in (lean, general):
            shared_io.run(eng.close(grace_s=0.0))


class _untimed:
    """While in use, batches take the phase tally to time no turn but one in ``every + 1``
    (every one, with 0): the turns they do not run go through the general path's own
    sampling."""

    def __init__(self, every: int) -> None:
        self.every = every

    def untimed(self, what: str) -> int:
        return self.every

    def skip(self, what: str, count: int) -> None:
        TALLY.skip(what, count)

    def __enter__(self) -> None:
        _engine.TALLY = self  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        _engine.TALLY = TALLY


def test_a_memory_only_batch_runs_as_batches_of_turns_in_order(shared_io: IoLoop) -> None:
    """The items run in ``run_batch``, not one turn each, in order; the same key again in
    a batch is the same request (its id is the batch's and the key's): answered from its
    record, not run again; each identity's ``ff.context()`` is its own."""
    eng = make_engine(shared_io, False)
    batches: list[int] = []
    real = eng.runner.run_batch

    def spy(turns: Items, items: Any, *rest: Any) -> None:
        batches.append(len(items))
        real(turns, items, *rest)

    eng.runner.run_batch = spy  # type: ignore[method-assign]
    with _untimed(1000):
        out = run_batch(eng, "add", [("a", [1]), ("b", [2]), ("a", [3]), ("broken-1", [4])], "B", 0)
        peeks = run_batch(eng, "peek", [("a", []), ("b", [])], "P", 0)
    assert out[:3] == [("ok", 1), ("ok", 2), ("ok", 1)]
    assert (out[3][0], out[3][2]) == ("error", "ValueError")  # its __init__ raised
    assert batches == [4, 2]
    assert peeks == [("ok", (1, item_request_id("P", "a"))), ("ok", (2, item_request_id("P", "b")))]
    assert observed(eng)["state"] == {"Lean/a": (1, [1]), "Lean/b": (2, [2])}
    assert eng.counters["calls"] == 4 and eng.counters["activations"] == 2
    shared_io.run(eng.close(grace_s=0.0))


def test_a_batch_waits_for_a_busy_identity_and_keeps_the_order(shared_io: IoLoop) -> None:
    """An item whose identity another caller holds waits its turn there; the items after
    it wait too (a batch runs in order), and all run once it is free."""
    eng = make_engine(shared_io, False)
    definition = eng.types["Lean"]
    held = Request(definition, definition.method("add"), Call("Lean", "a", "add", request_id="x"), "a", (0,), {})
    entered = eng.admission.enter(held)
    assert entered is not None
    out: list[Any] = []
    with _untimed(1000):
        runner = threading.Thread(
            target=lambda: out.extend(run_batch(eng, "add", [("b", [1]), ("a", [2]), ("c", [3])], "B", 0))
        )
        runner.start()
        deadline = time.monotonic() + 60
        while "Lean/b" not in observed(eng)["state"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert observed(eng)["state"] == {"Lean/b": (1, [1])}  # b ran; a is held; c waits behind a
        eng.admission.leave(*entered)
        runner.join(60)
    assert out == [("ok", 1), ("ok", 2), ("ok", 3)]
    assert observed(eng)["state"] == {"Lean/a": (2, [2]), "Lean/b": (1, [1]), "Lean/c": (3, [3])}
    shared_io.run(eng.close(grace_s=0.0))


def test_a_batch_makes_a_turns_context_only_when_asked_and_each_its_own(shared_io: IoLoop) -> None:
    """A batch's turn's context is made lazily (``LazyContext``): a turn that never asks
    for it makes none; one that asks gets its own, the same object each time it asks, and
    a context it keeps is not changed by the turns after it. None is left in the thread."""
    eng = make_engine(shared_io, False)
    made: list[str] = []
    real = eng._untimed_context

    def counted(act: Activation, call: Call) -> Context:
        made.append(act.address)
        return real(act, call)

    eng._untimed_context = counted  # type: ignore[method-assign]
    with _untimed(1000):
        assert run_batch(eng, "nothing", [("a", []), ("b", [])], "A", 0) == [("ok", None), ("ok", None)]
        assert made == ["Lean/a", "Lean/b"]  # ``__init__`` asked (``Lean``)
        made.clear()
        assert run_batch(eng, "nothing", [("a", []), ("b", [])], "N", 0) == [("ok", None), ("ok", None)]
        assert made == []  # live identities, and neither turn asked
        out = run_batch(eng, "keep_context", [("a", []), ("b", []), ("c", [])], "K", 0)
    assert out == [("ok", True)] * 3
    assert made == ["Lean/a", "Lean/b", "Lean/c"]  # one a turn, however often asked (c: by __init__ too)
    kept = {address: act.instance.kept for address, act in eng.admission.table._items.items()}
    assert {a: (c.address, c.key, c.request_id) for a, c in kept.items()} == {
        f"Lean/{k}": (f"Lean/{k}", k, item_request_id("K", k)) for k in "abc"
    }
    assert len({id(c) for c in kept.values()}) == 3
    assert CURRENT.get() is None and ff.context().address is None
    shared_io.run(eng.close(grace_s=0.0))


def test_work_a_batchs_turn_hands_on_keeps_that_turns_context(shared_io: IoLoop) -> None:
    """Contextvars copied in a batch's turn (a thread or task it starts) give that turn's
    own context, whenever they are used: not the context of a later turn of the batch."""
    eng = make_engine(shared_io, False)
    with _untimed(1000):
        assert run_batch(eng, "capture", [("a", []), ("b", []), ("c", [])], "C", 0) == [("ok", None)] * 3
    for k in "abc":
        captured = eng.admission.table.get(f"Lean/{k}").instance.captured
        seen = captured.run(ff.context)
        assert (seen.address, seen.request_id) == (f"Lean/{k}", item_request_id("C", k))
    shared_io.run(eng.close(grace_s=0.0))


def test_a_batch_still_times_one_turn_in_every(shared_io: IoLoop) -> None:
    """The phase tally's sample is the same whether the turns ran in batches or not: past
    the first ``EXACT``, one turn in ``EVERY`` is timed, counted ``EVERY`` times."""
    eng = make_engine(shared_io, False)
    what = "Lean.nothing"
    TALLY._turns[what] = EXACT  # past the turns every method has timed (a multiple of EVERY)
    before = TALLY.counters().get(f"~{what}~run~n", 0)
    run_batch(eng, "nothing", [(f"k{i}", []) for i in range(2 * EVERY)], "T", 0)
    assert TALLY.counters()[f"~{what}~run~n"] - before == 2 * EVERY
    assert TALLY._turns[what] == EXACT + 2 * EVERY
    shared_io.run(eng.close(grace_s=0.0))


ANY_TEXT = st.characters(exclude_categories=())  # lone surrogates too


@given(batch=st.text(ANY_TEXT, max_size=40), key=st.text(ANY_TEXT, min_size=1, max_size=40))
def test_a_bulk_items_id_is_the_hash_of_its_batch_and_key(batch: str, key: str) -> None:
    """An item's request id, made from its batch's seed (once a batch), is the blake2b of
    ``batch/key`` that earlier versions wrote into reply records, whatever the text (lone
    surrogates included), and differs from key to key."""
    import hashlib

    seed = f"{batch}/{key}".encode("utf-8", "surrogatepass")
    assert item_request_id(batch, key) == "b" + hashlib.blake2b(seed, digest_size=12).hexdigest()
    assert item_request_id(batch, key) != item_request_id(batch, key + "x")


GARBAGE_BULK: list[tuple[Any, ...]] = [
    ("add", [["a", [1], {}]], "B", 0),  # the earlier shape: [[key, args, kwargs], ...]
    ("add", ["a", "b"], [[1]], "B", 0),  # fewer arguments than keys
    ("add", ["a"], [[1], [2]], "B", 0),  # more
    ("add", ["a", "b"], [[1], 2], "B", 0),  # an item's arguments not a list
    ("add", ["a", "b"], [[1], {"k": 1}], "B", 0),
    ("add", ["a", None], [[1], [2]], "B", 0),  # a key that is no key
    ("add", ["a", ""], [[1], [2]], "B", 0),
    ("add", ["a", "x" * 5000], [[1], [2]], "B", 0),
    ("add", "ab", [[1], [2]], "B", 0),
    ("add", ["a"], [[1]], 7, 0),  # a batch id that is not a str
    ("add", ["a"], [[1]], "B", True),  # an attempt that is not a count
    ("add", ["a"], [[1]], "B", -1),
    ("add", ["a"], [[1]], "B", 0, "extra"),
    (3, ["a"], [[1]], "B", 0),
    ("add",),
]


@pytest.mark.parametrize("message", GARBAGE_BULK, ids=range(len(GARBAGE_BULK)))
def test_a_malformed_bulk_call_is_refused_whole_and_runs_nothing(shared_io: IoLoop, message: tuple[Any, ...]) -> None:
    """A bulk message that is not [method, keys, arguments (one list a key), batch?,
    attempt?] gets one clear InvalidRequest, and none of its items runs."""
    eng = make_engine(shared_io, general=False)
    bulk = Call(
        type_name="Lean",
        key="a",
        method="__bulk__",
        args=codec.encode_args(message, {}),
        request_id="garbage",
        deadline=time.time() + 60,
    )
    try:
        reply = shared_io.run(eng.dispatch(bulk))
        assert reply is not None and reply.error is not None, reply
        assert isinstance(rebuild_error(reply.error), InvalidRequest), reply.error
        assert len(eng.admission.table) == 0 and not eng.counters.get("calls")
    finally:
        shared_io.run(eng.close(grace_s=0.0))


def test_an_idle_identity_is_two_objects_for_the_collector(shared_io: IoLoop) -> None:
    """Activated by a bulk call and idle, an identity leaves only its instance (``Lean``
    and its list) and its ``Activation`` for the cyclic collector to walk: its recent
    replies, its mailbox and the batch's items are not tracked, or gone. At a million
    identities, every full collection walks each (six each before, three now)."""
    eng = make_engine(shared_io, general=False)
    try:
        run_batch(eng, "nothing", [("warm", [])], "warm", 0)
        gc.collect()
        before = len(gc.get_objects())
        run_batch(eng, "nothing", [(f"k{i}", []) for i in range(2000)], "many", 0)
        gc.collect()
        assert len(eng.admission.table) == 2001
        assert len(gc.get_objects()) - before <= 3 * 2000 + 50
    finally:
        shared_io.run(eng.close(grace_s=0.0))
