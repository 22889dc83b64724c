"""Peer systems measured beside fluentfn: a plain Ray actor and a raw grpcio echo server."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from ..wire._gen import actorhost_pb2 as pb
from ..wire._gen import actorhost_pb2_grpc as pb_grpc


class _Echo(pb_grpc.ActorHostServicer):
    def Invoke(self, request: pb.Call, context: Any) -> pb.Reply:
        return pb.Reply(value=request.args)


def _serve_echo(port_queue: Any) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_ActorHostServicer_to_server(_Echo(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_queue.put(port)
    server.wait_for_termination()


class GrpcEcho:
    """A raw grpcio unary echo server in its own process: the transport floor."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        self._proc = ctx.Process(target=_serve_echo, args=(q,), daemon=True)
        self._proc.start()
        self.port = q.get(timeout=60)
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self._stub = pb_grpc.ActorHostStub(self._channel)

    def call(self, payload: bytes) -> bytes:
        return self._stub.Invoke(pb.Call(args=payload)).value

    def close(self) -> None:
        self._channel.close()
        self._proc.kill()


class RayEcho:
    """A plain Ray actor with an echo method."""

    def __init__(self) -> None:
        import ray

        @ray.remote(num_cpus=0)
        class Echo:
            def echo(self, x: Any) -> Any:
                return x

        self._ray = ray
        self.actor = Echo.remote()  # type: ignore[attr-defined]
        ray.get(self.actor.echo.remote(b""))

    def call(self, payload: bytes) -> Any:
        return self._ray.get(self.actor.echo.remote(payload))

    def pipelined(self, payload: bytes, n: int) -> float:
        t0 = time.perf_counter()
        self._ray.get([self.actor.echo.remote(payload) for _ in range(n)])
        return time.perf_counter() - t0

    def close(self) -> None:
        self._ray.kill(self.actor)


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 50) -> list[float]:
    """Per-call round trips in microseconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    return out
