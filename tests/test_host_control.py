"""Live moves over the hosts' own gRPC servers (HostControl), without Ray: a real gRPC
server per host, a real SQLite store; Release drains and hands over, Adopt claims; a
wrong token, garbage and bad requests are refused and move nothing."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from fluentfn._actordef import ActorDef
from fluentfn._ioloop import IoLoop
from fluentfn._tables import Group, Host, Part, Route
from fluentfn.control._mover import Mover
from fluentfn.errors import FluentError, InvalidRequest, Unauthenticated, Unavailable
from fluentfn.host._activations import Handoff
from fluentfn.runtime._moves import MoveService
from fluentfn.state._store import Store
from fluentfn.testing import wait_for
from fluentfn.transport._auth import metadata
from fluentfn.transport._control import CONTROL_SERVICE, ControlClient, register_control
from fluentfn.transport._server import start_server
from fluentfn.wire._gen import actorhost_pb2 as pb

from .test_partitions import call, definition, host, key_in

pytestmark = pytest.mark.timeout(120)
TOKEN = "control-test-token"


class Served:
    """A PartitionSet behind a real gRPC server with HostControl."""

    def __init__(self, io: IoLoop, store: Store, d: ActorDef, name: str, *, started: bool = True) -> None:
        self.parts = host(io, store, d, name)

        self.adopted: list[tuple[bool, bool]] = []  # each adopt: (nowait, on the loop's thread)

        def adopt(partitions: list[int], handoffs: dict[int, Handoff], *, nowait: bool = False) -> dict[int, int]:
            self.adopted.append((nowait, threading.get_ident() == io.thread.ident))
            epochs = {}
            for p in partitions:
                epochs[p] = store.claim_shard(d.options.group, p, nowait=nowait)
                self.parts.adopt(p, epochs[p], handoffs.get(p))
            return epochs

        self.moves = MoveService(self.parts, adopt)
        register = functools.partial(register_control, host=self.moves)
        self.server, port = io.run(start_server(self.parts, TOKEN, "127.0.0.1", more=[register]))
        self.endpoint = f"127.0.0.1:{port}"
        self.who = (d.options.group, name)
        if started:
            io.loop.call_soon_threadsafe(self.moves.started)


@pytest.fixture
def control(io: IoLoop) -> Iterator[ControlClient]:
    client = ControlClient(TOKEN, None)
    yield client
    io.run(client.close())


def start(io: IoLoop, store: Store, d: ActorDef, *names: str) -> list[Served]:
    served = [Served(io, store, d, n) for n in names]
    for p in range(4):
        served[0].parts.adopt(p, store.claim_shard(d.options.group, p))
    return served


@pytest.mark.parametrize("persist", ["call", "never"])
def test_a_partition_moves_over_grpc_with_its_state_and_replies(
    io: IoLoop, store: Store, control: ControlClient, persist: str
) -> None:
    d = definition(persist)
    a, b = start(io, store, d, "a", "b")
    p = 1
    key = key_in(p)
    assert call(io, a.parts, d, key, "add", 5) == 5
    released = io.run(control.release(a.endpoint, a.who, [p], 5.0, 30.0))
    assert list(released) == [p]
    # the timing travels: the callers' hold is part of the host's time over the request
    assert 0 < released[p].held_s <= released[p].took_s
    assert released[p].served_s <= released[p].took_s
    memory = released[p].memory
    if persist == "never":  # the memory itself travels (the state encoding's bytes)
        assert list(memory) == [f"{d.name}/{key}"]
        assert memory[f"{d.name}/{key}"].state
    epochs = io.run(control.adopt(b.endpoint, b.who, {p: memory}, 30.0))
    assert epochs == {p: store.shard_epoch(d.options.group, p)}
    assert b.adopted == [(True, True)]  # claimed on the host's loop: the store took it at once
    assert call(io, b.parts, d, key, "add", 1) == 1006  # on_deactivate ran once, on the move
    with pytest.raises(FluentError):
        call(io, a.parts, d, key, "add", 1)  # the old host serves it no more
    io.run(a.server.stop(None))
    io.run(b.server.stop(None))


def test_an_adopt_whose_claim_would_wait_is_claimed_once_by_a_thread(
    io: IoLoop, store: Store, control: ControlClient, tmp_path: Any
) -> None:
    """Another writer holds SQLite's lock: the loop's claim gives way at once (nothing
    claimed) and the adopt thread waits for the lock; the epoch goes up by one."""
    import sqlite3

    d = definition("call")
    a, b = start(io, store, d, "a", "b")
    released = io.run(control.release(a.endpoint, a.who, [3], 5.0, 30.0))
    before = store.shard_epoch(d.options.group, 3)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    pending = io.submit(control.adopt(b.endpoint, b.who, {3: released[3].memory}, 30.0))
    wait_for(lambda: len(b.adopted) == 2, timeout=30)
    assert b.adopted == [(True, True), (False, False)] and not pending.done()  # the thread waits
    other.execute("ROLLBACK")
    assert pending.result(30) == {3: before + 1} == {3: store.shard_epoch(d.options.group, 3)}
    assert call(io, b.parts, d, key_in(3), "add", 2) == 2
    other.close()
    io.run(a.server.stop(None))
    io.run(b.server.stop(None))


def test_moves_wait_until_the_host_has_started(io: IoLoop, store: Store, control: ControlClient) -> None:
    d = definition("call")
    late = Served(io, store, d, "late", started=False)
    pending = io.submit(control.adopt(late.endpoint, late.who, {2: {}}, 30.0))
    io.run(asyncio.sleep(0.3))
    assert not pending.done() and 2 not in late.parts.owned  # held: the start's own claims go first
    io.loop.call_soon_threadsafe(late.moves.started)
    assert pending.result(30) == {2: store.shard_epoch(d.options.group, 2)}
    assert 2 in late.parts.owned
    io.run(late.server.stop(None))


def test_bad_moves_are_refused_and_move_nothing(io: IoLoop, store: Store, control: ControlClient) -> None:
    d = definition("call")
    (a,) = start(io, store, d, "a")
    before = dict(a.parts.owned)
    epoch = store.shard_epoch(d.options.group, 0)
    with pytest.raises(InvalidRequest, match="partitions"):
        io.run(control.release(a.endpoint, a.who, [99], 1.0, 30.0))
    with pytest.raises(InvalidRequest, match="grace_s"):
        io.run(control.release(a.endpoint, a.who, [0], float("nan"), 30.0))
    with pytest.raises(InvalidRequest, match="twice"):
        io.run(control.release(a.endpoint, a.who, [0, 0], 1.0, 30.0))
    with pytest.raises(Unauthenticated):
        io.run(ControlClient("not-the-token", None).release(a.endpoint, a.who, [0], 1.0, 30.0))
    # Another host now listens where the one meant was (a port handed out again): refused.
    with pytest.raises(Unavailable, match="not"):
        io.run(control.release(a.endpoint, (a.who[0], "h-gone"), [0], 1.0, 30.0))
    with pytest.raises(Unavailable, match="not"):
        io.run(control.adopt(a.endpoint, ("OtherGroup", a.who[1]), {0: {}}, 30.0))

    async def raw(body: bytes) -> tuple[grpc.StatusCode, str]:
        async with grpc.aio.insecure_channel(a.endpoint) as channel:
            send = channel.unary_unary(f"/{CONTROL_SERVICE}/Adopt")
            try:
                await send(body, metadata=metadata(TOKEN), timeout=30)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""

    assert io.run(raw(b"\xff\x00garbage"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    twice = pb.AdoptRequest(partitions=[pb.PartitionMemory(partition=0)] * 2, group=a.who[0], host_id=a.who[1])
    code, details = io.run(raw(twice.SerializeToString()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "twice" in details
    assert a.parts.owned == before and store.shard_epoch(d.options.group, 0) == epoch
    io.run(a.server.stop(None))


class _Hosts:
    """What the mover needs of the directory's hosts: the HostControl client."""

    def __init__(self, control: ControlClient) -> None:
        self.control = control


@pytest.mark.parametrize("persist", ["call", "never"])
def test_a_partition_whose_move_fails_at_both_hosts_is_served_again(
    io: IoLoop, store: Store, control: ControlClient, persist: str
) -> None:
    """The old host released it, then neither host could claim it (the store refused,
    say): the move fails and says so, its callers are held, and the directory adopts it
    again on its host once a claim succeeds, with the memory that was handed over — no
    partition is left without a host, no acknowledged change is lost."""
    d = definition(persist)
    a, b = start(io, store, d, "a", "b")
    p = 2
    key = key_in(p)
    assert call(io, a.parts, d, key, "add", 5) == 5
    refused = [0]  # claims refused so far (one adopt at a time: moves hold the group's lock)
    accepting = threading.Event()  # every claim fails, at either host, until the test sets it
    for served in (a, b):
        claim = served.moves._adopt

        def flaky(
            partitions: list[int], handoffs: dict[int, Handoff], claim: Any = claim, *, nowait: bool = False
        ) -> dict[int, int]:
            if not accepting.is_set():
                refused[0] += 1
                raise Unavailable("the store refused the claim")
            result: dict[int, int] = claim(partitions, handoffs, nowait=nowait)
            return result

        served.moves._adopt = flaky
    g = Group(options=d.options, parts=[Part() for _ in range(4)], started=True)
    g.hosts = {"a": Host("a", None, a.endpoint, "n"), "b": Host("b", None, b.endpoint, "n")}
    for q, part in enumerate(g.parts):
        part.host, part.route = "a", Route(a.endpoint, store.shard_epoch(d.options.group, q), "n")
        part.ready.set()
    mover = Mover(_Hosts(control))  # type: ignore[arg-type]

    async def move() -> None:
        async with g.lock:
            await mover.move(d.options.group, g, p, g.hosts["b"])

    with pytest.raises(FluentError, match="refused"):
        io.run(move())
    assert refused[0] >= 2  # both hosts were asked
    assert not g.parts[p].ready.is_set()  # its callers are held, not refused
    wait_for(lambda: refused[0] >= 3, timeout=60)  # the directory keeps asking
    assert not g.parts[p].ready.is_set()
    accepting.set()  # the store takes claims again
    wait_for(g.parts[p].ready.is_set, timeout=60)
    route = g.parts[p].route
    assert g.parts[p].host == "a"
    assert route is not None and route.endpoint == a.endpoint and route.epoch == store.shard_epoch(d.options.group, p)
    assert call(io, a.parts, d, key, "add", 1) == 1006  # its state: written, or handed over ("never")
    io.run(a.server.stop(None))
    io.run(b.server.stop(None))
