"""Turns of call-free methods run on the host's event loop (no thread hop); everything
else — and anything that needs the store or turns out slow — on worker threads.

The engine is driven through ``submit``, the peer stream's entry point, on the loop: a
turn that ran on the loop has answered before ``submit`` returns.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import fluentfn as ff
from fluentfn._actordef import ActorDef, makes_no_calls
from fluentfn._call import Call, Outcome
from fluentfn._ioloop import IoLoop
from fluentfn.host._engine import HostEngine
from fluentfn.host._where import STRIKES
from fluentfn.state._codec import decode_state
from fluentfn.state._store import Store
from fluentfn.wire import codec
from fluentfn.wire.errors import rebuild_error

from .conftest import OPEN, drive
from .test_engine import FlakyStore

pytestmark = pytest.mark.timeout(60)


class Box:
    def __init__(self) -> None:
        self.n = 0
        self.base = 3

    def add(self, k: int) -> int:  # call-free
        self.n += k
        return self.n

    def read(self) -> int:  # call-free, changes nothing
        return self.n

    def size(self) -> int:  # calls len(): a worker's turn
        return len(str(self.n))

    def power(self, e: int) -> int:  # call-free, but slow for a big ``e``
        self.big = self.base**e
        return self.n

    async def hold(self, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return self.n


class Reentrant(Box):
    pass


def test_which_methods_are_call_free() -> None:
    class A:
        def echo(self, x: Any) -> Any:
            return x

        def index(self, d: dict[str, int], k: str) -> int:
            self.last = d[k] * 2
            return self.last

        def length(self, x: list[int]) -> int:
            return len(x)

        def loop(self, xs: list[int]) -> None:
            for _ in xs:
                pass

        def comprehension(self, xs: list[int]) -> list[int]:
            return [x for x in xs]

        def with_lock(self) -> None:
            with self._lock:  # type: ignore[attr-defined]
                pass

        def imports(self) -> None:
            import os  # noqa: F401

        def gen(self) -> Iterator[int]:
            yield 1

        async def coro(self) -> int:
            return 1

    assert makes_no_calls(A.echo) and makes_no_calls(A.index)
    for name in ("length", "loop", "comprehension", "with_lock", "imports", "gen", "coro"):
        assert not makes_no_calls(getattr(A, name)), name
    assert not makes_no_calls(len)  # a builtin: no bytecode to vouch for


def make_engine(io: IoLoop, store: Store | None, persist: str = "call", cls: type = Box, **opts: Any) -> HostEngine:
    async def load(name: str) -> ActorDef | None:
        return None

    at = ff.actor(name=cls.__name__, persist=persist, shards=1, **opts)(cls)
    eng = HostEngine(
        group=at.options.group,
        shard=0,
        loop=io.loop,
        loop_thread=io.thread.ident or 0,
        load_type=load,
        store=store,
        mailbox_limit=10_000,
    )
    eng.add_type(ActorDef(cls, at.options))
    eng.persistence.claim()
    OPEN.append(eng)
    drive(io, eng)  # closed first: the driver stops before the engine
    return eng


_ids = iter(range(10**9))


def new_call(method: str, *args: Any, type_name: str = "Box", key: str = "k") -> Call:
    return Call(
        type_name=type_name, key=key, method=method, args=codec.encode_args(args, {}), request_id=f"r{next(_ids)}"
    )


def submit(io: IoLoop, eng: HostEngine, call: Call) -> tuple[bool, Any]:
    """(answered within ``submit`` itself, the value); raises the call's error."""

    async def go() -> tuple[bool, Outcome]:
        got: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        eng.submit(call, lambda r: got.set_result(r) if r is not None else None)
        at_once = got.done()
        return at_once, await asyncio.wait_for(got, 10)

    at_once, reply = io.run(go())
    if reply.error is not None:
        raise rebuild_error(reply.error)
    return at_once, codec.decode(reply.value)


def test_call_free_turns_of_live_identities_answer_on_the_loop(io: IoLoop, store: Store) -> None:
    eng = make_engine(io, store)
    assert submit(io, eng, new_call("add", 1)) == (False, 1)  # the first turn activates (store read): a worker
    assert submit(io, eng, new_call("read")) == (True, 1)
    assert submit(io, eng, new_call("size")) == (False, 1)  # calls len(): a worker
    writes = eng.counters["storage_writes"]
    # State changed: written before the reply, on the loop (SQLite took it at once).
    assert submit(io, eng, new_call("add", 2)) == (True, 3)
    assert eng.counters["storage_writes"] == writes + 1
    assert decode_state(store.load("Box/k").state)["n"] == 3  # type: ignore[union-attr]
    assert submit(io, eng, new_call("add", 0)) == (True, 3)  # unchanged: nothing to write
    assert eng.counters["storage_writes"] == writes + 1
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)  # type: ignore[attr-defined]
    other.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's lock: the loop must not wait for it
    try:
        waiting = threading.Timer(0.5, other.execute, ("ROLLBACK",))
        waiting.start()
        assert submit(io, eng, new_call("add", 1)) == (False, 4)  # written by a worker, once the lock is free
        waiting.join()
    finally:
        other.close()
    assert eng.counters["storage_writes"] == writes + 2  # the refused attempt is not counted
    assert decode_state(store.load("Box/k").state)["n"] == 4  # type: ignore[union-attr]


def test_without_durable_writes_every_call_free_turn_stays_on_the_loop(io: IoLoop, store: Store) -> None:
    for persist in ("never", "interval"):
        eng = make_engine(io, store, persist=persist)
        submit(io, eng, new_call("add", 1, key=persist))
        assert submit(io, eng, new_call("add", 1, key=persist)) == (True, 2)


def test_loop_turn_state_is_durable_and_a_failed_write_rolls_back(io: IoLoop, store: Store) -> None:
    flaky = FlakyStore(store)
    eng = make_engine(io, flaky)  # type: ignore[arg-type]
    submit(io, eng, new_call("add", 5))
    flaky.down = True
    with pytest.raises(ff.Unavailable, match="did not take effect"):
        submit(io, eng, new_call("add", 1))
    flaky.down = False
    assert submit(io, eng, new_call("read"))[1] == 5  # the failed turn never happened
    assert submit(io, eng, new_call("add", 1))[1] == 6
    again = make_engine(io, store)  # a new host reads what was written
    assert submit(io, again, new_call("read"))[1] == 6


def test_a_retry_is_answered_from_its_record_not_rerun(io: IoLoop, store: Store) -> None:
    eng = make_engine(io, store)
    submit(io, eng, new_call("add", 1))
    first = new_call("add", 10)
    assert submit(io, eng, first)[1] == 11
    assert submit(io, eng, first)[1] == 11  # the same request id: the recorded reply
    retry = first.copy()
    retry.attempt = 1
    assert submit(io, eng, retry) == (False, 11)  # a possible repeat may need the store: a worker
    assert submit(io, eng, new_call("read"))[1] == 11


def test_a_slow_call_free_method_is_sent_back_to_worker_threads(io: IoLoop, store: Store) -> None:
    eng = make_engine(io, store, persist="never")
    submit(io, eng, new_call("read"))
    assert submit(io, eng, new_call("power", 2)) == (True, 0)
    for _ in range(STRIKES):  # runs long on the loop, each time: not a preemption
        assert submit(io, eng, new_call("power", 3_000_000)) == (True, 0)
    assert submit(io, eng, new_call("power", 2)) == (False, 0)  # from now on: a worker
    assert submit(io, eng, new_call("read")) == (True, 0)  # other methods keep the loop


def test_reentrant_types_and_the_setting_keep_turns_on_workers(
    io: IoLoop, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = make_engine(io, store, persist="never", cls=Reentrant, reentrant=True)
    submit(io, eng, new_call("read", type_name="Reentrant"))
    assert submit(io, eng, new_call("read", type_name="Reentrant")) == (False, 0)
    monkeypatch.setenv("FLUENTFN_LOOP_TURNS", "0")
    off = make_engine(io, store, persist="never")
    submit(io, off, new_call("read"))
    assert submit(io, off, new_call("read")) == (False, 0)


def test_a_long_queue_behind_an_async_turn_drains_without_recursion(io: IoLoop) -> None:
    eng = make_engine(io, None, persist="never")
    submit(io, eng, new_call("read"))
    n = 3000

    async def go() -> list[Outcome]:
        loop = asyncio.get_running_loop()
        holding = asyncio.ensure_future(eng.dispatch(new_call("hold", 0.2)))
        await asyncio.sleep(0.05)  # the async turn holds the identity; the rest queue behind it
        futs: list[asyncio.Future[Outcome]] = []
        for _ in range(n):
            fut: asyncio.Future[Outcome] = loop.create_future()
            eng.submit(new_call("add", 1), lambda r, fut=fut: fut.set_result(r) if r is not None else None)
            futs.append(fut)
        await holding
        return list(await asyncio.wait_for(asyncio.gather(*futs), 30))

    replies = io.run(go())
    assert [r.error.message for r in replies if r.error is not None] == []
    assert [codec.decode(r.value) for r in replies] == list(range(1, n + 1))  # in order, each once
    assert threading.active_count() < 100
