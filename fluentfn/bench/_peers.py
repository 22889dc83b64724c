"""Peer systems measured beside fluentfn: a plain Ray actor and a raw grpcio echo server."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any

from ..transport._raw import RawStub, serve_echo, serve_stream_echo, stream_pingpong


def _serve(target: Callable[[Any], None]) -> tuple[Any, int]:
    """Start ``target`` (a server that puts its port on the queue it is given) in a
    process of its own; the process and the port."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(q,), daemon=True)
    proc.start()
    return proc, int(q.get(timeout=60))


class GrpcEcho:
    """A raw grpcio unary echo server in its own process: the transport floor."""

    def __init__(self) -> None:
        self._proc, self.port = _serve(serve_echo)
        self._stub = RawStub(f"127.0.0.1:{self.port}")

    def call(self, payload: bytes) -> bytes:
        return self._stub.echo(payload)

    def close(self) -> None:
        self._stub.close()
        self._proc.kill()


class GrpcStreamEcho:
    """A raw grpc.aio stream echo server in its own process: the messaging floor (one
    round trip at a time on one stream, as a blocking actor->actor call is)."""

    def __init__(self) -> None:
        self._proc, self.port = _serve(serve_stream_echo)

    def pingpong(self, payload: bytes, n: int) -> float:
        """Seconds for ``n`` round trips."""
        return stream_pingpong(f"127.0.0.1:{self.port}", payload, n)

    def close(self) -> None:
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
