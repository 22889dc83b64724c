"""A thread's own stream to a host (``ThreadStream``): real gRPC servers, well and badly
behaved, and the one outcome each gives its caller."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from grpc import aio

import fluentfn as ff
from fluentfn._call import Call, Outcome
from fluentfn._ioloop import IoLoop
from fluentfn._status import Status
from fluentfn.errors import CallTimeout, FluentError, NotDelivered, Unauthenticated, Unavailable
from fluentfn.testing import wait_for
from fluentfn.transport import _threadstream
from fluentfn.transport._server import ACCEPTED, start_server
from fluentfn.transport._threadstream import ThreadStreams
from fluentfn.wire._gen import actorhost_pb2 as pb
from fluentfn.wire._gen import actorhost_pb2_grpc as pb_grpc

from .apps import Counter, FarOrderDriver, OrderLog, drive_order_log

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not _threadstream.available(), reason="this grpcio lacks the single-threaded call API"),
]


class Echo:
    """A dispatcher that answers every call with its own arguments; ``hold`` keeps the
    answers of calls whose args are b"hang" (never sent)."""

    def __init__(self) -> None:
        self.held: list[Callable[[Outcome | None], None]] = []

    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None:
        return Outcome(seq=call.seq, value=call.args)

    def submit(self, call: Call, done: Callable[[Outcome | None], None]) -> None:
        if call.args == b"hang":
            self.held.append(done)
            return
        done(Outcome(seq=call.seq, value=call.args))

    async def accept(self, call: Call) -> None:
        return None

    def status(self) -> Status:
        return Status()


def _call(args: bytes, budget_s: float = 10.0) -> Call:
    return Call(type_name="T", key="k", method="m", args=args, request_id="r", deadline=time.time() + budget_s)


def test_calls_from_many_threads_each_get_their_own_reply(io: IoLoop) -> None:
    server, port = io.run(start_server(Echo(), "token"))
    streams = ThreadStreams("token", None)
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(50):
            body = f"{n}-{i}".encode()
            reply, error = streams.invoke(f"127.0.0.1:{port}", _call(body))
            if error is not None or reply is None or reply.value != body:
                errors.append(f"{body!r}: {reply!r} {error!r}")

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
    finally:
        streams.close()
        io.run(server.stop(0))


def test_a_call_past_its_deadline_ends_with_call_timeout_and_the_next_call_goes_through(io: IoLoop) -> None:
    echo = Echo()
    server, port = io.run(start_server(echo, "token"))
    streams = ThreadStreams("token", None)
    endpoint = f"127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        reply, error = streams.invoke(endpoint, _call(b"hang", budget_s=0.3))
        assert reply is None and isinstance(error, CallTimeout)
        assert time.monotonic() - t0 < 20  # the watchdog ended it; the host never answers it
        reply, error = streams.invoke(endpoint, _call(b"after"))
        assert error is None and reply is not None and reply.value == b"after"
    finally:
        streams.close()
        io.run(server.stop(0))


def test_nothing_listening_is_not_delivered() -> None:
    streams = ThreadStreams("token", None)
    try:
        with_port = grpc_free_port()
        reply, error = streams.invoke(f"127.0.0.1:{with_port}", _call(b"x"))
        assert reply is None and isinstance(error, NotDelivered)
    finally:
        streams.close()


def test_a_wrong_token_is_refused_as_unauthenticated(io: IoLoop) -> None:
    server, port = io.run(start_server(Echo(), "token"))
    streams = ThreadStreams("not-the-token", None)
    try:
        reply, error = streams.invoke(f"127.0.0.1:{port}", _call(b"x"))
        assert reply is None and isinstance(error, Unauthenticated)
    finally:
        streams.close()
        io.run(server.stop(0))


class _Bad(pb_grpc.ActorHostServicer):
    """A peer that misbehaves on ``InvokeStream`` in the way its name says."""

    def __init__(self, how: str) -> None:
        self.how = how

    async def InvokeStream(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.ReplyBatch]:
        if self.how == "refuse":  # before taking the stream
            await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
        await context.send_initial_metadata((ACCEPTED,))
        async for batch in request_iterator:
            if self.how == "abort":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "died after taking it")
            if self.how == "end":
                return
            if self.how == "wrong-seq":
                yield pb.ReplyBatch(replies=[pb.Reply(seq=c.seq + 100, value=c.args) for c in batch.calls])


def _serve_bad(io: IoLoop, how: str) -> tuple[aio.Server, int]:
    async def start() -> tuple[aio.Server, int]:
        server = aio.server()
        pb_grpc.add_ActorHostServicer_to_server(_Bad(how), server)  # type: ignore[abstract]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    return io.run(start())


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("refuse", NotDelivered),  # never took the stream: the call reached no host
        ("abort", Unavailable),  # took it, then went: the call may have run
        ("end", Unavailable),
        ("wrong-seq", FluentError),
    ],
)
def test_a_misbehaving_peer_gives_one_clear_error_and_the_stream_is_dropped(
    io: IoLoop, how: str, expected: type[FluentError]
) -> None:
    server, port = _serve_bad(io, how)
    streams = ThreadStreams("token", None)
    endpoint = f"127.0.0.1:{port}"
    try:
        first = streams.stream(endpoint)
        reply, error = streams.invoke(endpoint, _call(b"x"))
        assert reply is None and isinstance(error, expected), error
        if expected is Unavailable:
            assert not isinstance(error, NotDelivered)
        assert first.broken and streams.stream(endpoint) is not first  # the next call opens a new one
    finally:
        streams.close()
        io.run(server.stop(0))


def test_a_threads_streams_are_closed_when_the_thread_ends(io: IoLoop) -> None:
    server, port = io.run(start_server(Echo(), "token"))
    streams = ThreadStreams("token", None)
    try:

        def one_call() -> None:
            reply, error = streams.invoke(f"127.0.0.1:{port}", _call(b"x"))
            assert error is None and reply is not None

        for _ in range(20):
            t = threading.Thread(target=one_call)
            t.start()
            t.join(30)
        gc.collect()
        # each closed (and its call freed) with its thread; the watchdog may hold the last
        # ones for the length of one look at the streams
        wait_for(lambda: len(streams._all) == 0, timeout=30)
    finally:
        streams.close()
        io.run(server.stop(0))


def test_a_closed_pool_refuses_new_calls_clearly() -> None:
    streams = ThreadStreams("token", None)
    streams.close()
    reply, error = streams.invoke("127.0.0.1:1", _call(b"x"))
    assert reply is None and isinstance(error, Unavailable)


def grpc_free_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_drivers_tells_futures_and_calls_run_in_the_order_they_were_made(cluster: ff.Cluster) -> None:
    """A blocking call leaves on the driver thread's own stream only once the thread's
    earlier tells and futures are settled: it never overtakes them."""
    for i in range(3):
        log = OrderLog[f"driver-order-{i}"]
        log.get()  # live, and the route known
        assert drive_order_log(log, 60) == list(range(60))


def test_a_worker_threads_calls_to_another_host_keep_the_order_of_its_tells_and_futures(cluster: ff.Cluster) -> None:
    for i in range(3):
        OrderLog[f"far-{i}"].get()
        assert FarOrderDriver[f"far-driver-{i}"].drive(f"far-{i}", 60) == list(range(60))


def test_threads_beyond_the_cap_send_by_the_loop_and_every_call_is_answered(
    cluster: ff.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host serves 256 streams a connection at most, and a thread's stream lives as long
    as its thread: past ``PER_ENDPOINT`` a process's threads call through the loop."""
    monkeypatch.setattr(_threadstream, "PER_ENDPOINT", 2)
    counter = Counter["cap"]
    counter.get()  # the route known
    start = threading.Barrier(8)
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait(30)
        for _ in range(25):
            value = counter.add(1)
            with lock:
                results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(1, 201))  # every call ran once, and answered


def test_a_thread_past_the_cap_gets_no_stream_and_nothing_is_sent(io: IoLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threadstream, "PER_ENDPOINT", 1)
    echo = Echo()
    server, port = io.run(start_server(echo, "token"))
    streams = ThreadStreams("token", None)
    endpoint = f"127.0.0.1:{port}"
    try:
        reply, error = streams.invoke(endpoint, _call(b"mine")) or (None, None)
        assert error is None and reply is not None and reply.value == b"mine"
        other: list[Any] = []
        t = threading.Thread(target=lambda: other.append(streams.invoke(endpoint, _call(b"other"))))
        t.start()
        t.join(30)
        assert other == [None]  # no stream of its own: the caller sends it by the loop instead
    finally:
        streams.close()
        io.run(server.stop(0))


@pytest.mark.parametrize("given", [None, "epoll1"])
def test_import_picks_grpcs_poll_engine_for_this_process_only(given: str | None) -> None:
    """``import fluentfn`` has gRPC poll with ``poll`` (each thread polls only its own
    calls' connections) and then drops the variable, so processes started later (Ray's
    daemons) keep gRPC's default; a value of the user's own stays as it is."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GRPC_POLL_STRATEGY", "GRPC_EXPERIMENTS")}
    if given is not None:
        env["GRPC_POLL_STRATEGY"] = given
    out = subprocess.run(
        [sys.executable, "-c", "import os, fluentfn; print(os.environ.get('GRPC_POLL_STRATEGY'))"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == str(given)


def test_a_grpcio_whose_internal_api_differs_sends_by_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread stream rests on gRPC's internal single-threaded call API: where a
    grpcio's differs, the first call says so once and every call goes by the loop."""

    class Changed:
        def segregated_call(self, *args: Any) -> None:
            raise TypeError("segregated_call() takes 8 positional arguments")

    class Channel:
        _channel = Changed()

        def close(self) -> None:
            pass

    streams = ThreadStreams("token", None)
    monkeypatch.setattr(streams, "_dial", lambda endpoint: Channel())
    try:
        assert streams.invoke("127.0.0.1:1", _call(b"x")) is None
        assert streams.invoke("127.0.0.1:1", _call(b"y")) is None  # not tried again
    finally:
        streams.close()
