"""The first-attempt turn (``TurnRunner._run_first``: most turns of every persist mode)
against the general path it shortcuts: the same operations, run on two engines, one of
them made to take the general path, give the same replies, state (in memory and, where
one is written, in the store), reply records and counters."""

from __future__ import annotations

import tempfile
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluentfn as ff
from fluentfn._actordef import ActorDef
from fluentfn._call import Call, Outcome
from fluentfn._context import Context
from fluentfn._ioloop import IoLoop
from fluentfn.host._activations import Activation
from fluentfn.host._bulk import _bulk_sync
from fluentfn.host._engine import HostEngine
from fluentfn.host._runner import _ended
from fluentfn.host._turn import Request
from fluentfn.state import open_store
from fluentfn.state._codec import decode_state
from fluentfn.wire import codec
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
    return eng


OP = st.tuples(
    st.sampled_from(["a", "b", "c", "broken-1"]),
    st.sampled_from(["add", "fail", "unsendable", "peek", "nothing"]),
    st.integers(-5, 5),
    st.integers(0, 6),  # request id: a few, so the same id comes again
    st.sampled_from([0, 0, 0, 1]),  # attempt: a retry takes the general path on both
)


def run_op(eng: HostEngine, op: tuple[str, str, int, int, int]) -> tuple[Any, ...]:
    definition = eng.types["Lean"]
    key, method, k, rid, attempt = op
    args: tuple[Any, ...] = (k,) if method == "add" else ()
    call = Call(
        type_name="Lean",
        key=key,
        method=method,
        args=codec.encode_args(args, {}),
        request_id=f"r{rid}",
        deadline=time.time() + 60,
        attempt=attempt,
    )
    (reply,) = _bulk_sync(eng, definition, definition.method(method), [(call, args, {})])
    assert reply is not None
    if reply.error is not None:
        return ("error", reply.error.code, reply.error.exc_type, reply.error.message)
    return ("ok", codec.decode(reply.value))


def observed(eng: HostEngine) -> dict[str, Any]:
    acts = {a.address: a for a in eng.admission.table}
    return {
        "state": {a: (x.instance.n, list(x.instance.log)) for a, x in acts.items() if x.instance is not None},
        "replies": {
            a: {rid: _outcome(r) for rid, r in (x.replies or {}).items()} for a, x in acts.items() if x.replies
        },
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
    not run again."""
    eng = make_engine(shared_io, False)
    taken: list[str] = []
    lean = eng.runner._run_first

    def spy(req: Request, act: Activation, ctx: Context) -> Outcome:
        taken.append(req.call.request_id)
        return lean(req, act, ctx)

    eng.runner._run_first = spy  # type: ignore[method-assign]
    assert run_op(eng, ("a", "add", 2, 1, 0)) == ("ok", 2)
    assert run_op(eng, ("a", "add", 2, 1, 0)) == ("ok", 2)  # same id: the recorded reply
    assert run_op(eng, ("a", "add", 3, 2, 1)) == ("ok", 5)  # a retry: the general path
    assert taken == ["r1", "r1"]
    assert observed(eng)["state"] == {"Lean/a": (5, [2, 3])}
    assert eng.counters["calls"] == 2
    shared_io.run(eng.close(grace_s=0.0))
