"""Bare gRPC, beside fluentfn's own callers: a unary echo server, a grpc.aio stream
ping-pong and a stream relay (the transport floors the benchmarks compare against), and a blocking stub
that sends one ``Call`` exactly as given (for fuzzing hosts and gateways with malformed
requests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent import futures
from typing import Any

import grpc

from .._call import Call, Outcome
from ..wire._gen import actorhost_pb2 as pb
from ..wire._gen import actorhost_pb2_grpc as pb_grpc
from ._convert import call_to_pb, outcome_from_pb


class _Echo(pb_grpc.ActorHostServicer):
    def Invoke(self, request: pb.Call, context: Any) -> pb.Reply:
        return pb.Reply(value=request.args)

    async def InvokeStream(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.ReplyBatch]:
        async for batch in request_iterator:
            yield pb.ReplyBatch(replies=[pb.Reply(value=c.args) for c in batch.calls])


async def serve_stream_echo_on(bind: str) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio stream echo on this loop, on a free port of ``bind``: (server, port)."""
    server = grpc.aio.server()
    pb_grpc.add_ActorHostServicer_to_server(_Echo(), server)  # type: ignore[abstract]
    port = server.add_insecure_port(f"{bind}:0")
    await server.start()
    return server, port


async def stream_echo_client(endpoint: str, payload: bytes) -> Callable[[], Coroutine[Any, Any, None]]:
    """A grpc.aio stream to the echo at ``endpoint``, opened on this loop: a coroutine
    function that makes one round trip of ``payload`` on it (and checks the echo)."""
    channel = grpc.aio.insecure_channel(endpoint)
    stream: Any = pb_grpc.ActorHostStub(channel).InvokeStream()  # type: ignore[call-arg]  # aio: write() feeds it
    one = pb.CallBatch(calls=[pb.Call(args=payload)])

    async def round_trip() -> None:
        await stream.write(one)
        got = await stream.read()
        if [r.value for r in got.replies] != [payload]:
            raise RuntimeError(f"the stream echo at {endpoint} answered {got!r}")

    return round_trip


def serve_stream_echo(port_queue: Any) -> None:
    """Serve a grpc.aio stream echo on a free loopback port (put on ``port_queue``) until killed."""

    async def main() -> None:
        server, port = await serve_stream_echo_on("127.0.0.1")
        port_queue.put(port)
        await server.wait_for_termination()

    asyncio.run(main())


def stream_pingpong(endpoint: str, payload: bytes, n: int) -> float:
    """Seconds for ``n`` round trips of ``payload`` on one grpc.aio stream, one at a time."""
    return sum(stream_round_trips(endpoint, payload, n))


def stream_round_trips(endpoint: str, payload: bytes, n: int) -> list[float]:
    """Each of ``n`` round trips of ``payload`` on one grpc.aio stream, one at a time
    (seconds), after a warm-up that checks the echo."""

    async def main() -> list[float]:
        async with grpc.aio.insecure_channel(endpoint) as channel:
            stream: Any = pb_grpc.ActorHostStub(channel).InvokeStream()  # type: ignore[call-arg]  # aio: write() feeds it
            one = pb.CallBatch(calls=[pb.Call(args=payload)])
            for _ in range(20):  # warm, and check it echoes
                await stream.write(one)
                got = await stream.read()
                if [r.value for r in got.replies] != [payload]:
                    raise RuntimeError(f"the stream echo at {endpoint} answered {got!r}")
            clock = time.perf_counter
            trips = []
            for _ in range(n):
                t0 = clock()
                await stream.write(one)
                await stream.read()
                trips.append(clock() - t0)
            await stream.done_writing()
            return trips

    return asyncio.run(main())


class _Relay(pb_grpc.ActorHostServicer):
    """Passes each batch of a stream on to ``upstream`` on a stream of its own, and its
    answer back: what a gateway does, without routing."""

    def __init__(self, upstream: str) -> None:
        self._channel = grpc.aio.insecure_channel(upstream)

    async def InvokeStream(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.ReplyBatch]:
        out: Any = pb_grpc.ActorHostStub(self._channel).InvokeStream()  # type: ignore[call-arg]
        async for batch in request_iterator:
            await out.write(batch)
            yield await out.read()
        await out.done_writing()


def serve_stream_relay(port_queue: Any, upstream: str) -> None:
    """Serve a grpc.aio stream relay to ``upstream`` on a free loopback port (put on
    ``port_queue``) until killed: the floor of a gateway hop."""

    async def main() -> None:
        server = grpc.aio.server()
        pb_grpc.add_ActorHostServicer_to_server(_Relay(upstream), server)  # type: ignore[abstract]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        await server.wait_for_termination()

    asyncio.run(main())


def serve_echo(port_queue: Any) -> None:
    """Serve the echo on a free loopback port (put on ``port_queue``) until killed."""
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_ActorHostServicer_to_server(_Echo(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_queue.put(port)
    server.wait_for_termination()


class RawStub:
    """A blocking unary stub to one endpoint (plaintext); errors stay ``grpc.RpcError``."""

    def __init__(self, endpoint: str, token: str = "", options: Sequence[tuple[str, Any]] = ()) -> None:
        self._channel = grpc.insecure_channel(endpoint, options=list(options))
        self._stub = pb_grpc.ActorHostStub(self._channel)
        self._md = (("authorization", f"Bearer {token}"),) if token else ()

    def invoke(self, call: Call, timeout: float) -> Outcome:
        reply: pb.Reply = self._stub.Invoke(call_to_pb(call), metadata=self._md, timeout=timeout)
        return outcome_from_pb(reply)

    def echo(self, payload: bytes) -> bytes:
        reply: pb.Reply = self._stub.Invoke(pb.Call(args=payload), metadata=self._md)
        return reply.value

    def close(self) -> None:
        self._channel.close()
