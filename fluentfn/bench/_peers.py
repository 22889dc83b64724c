"""Peer systems and floors measured beside fluentfn: a plain Ray actor, raw grpcio echo
servers and a relay, and a raw SQLite commit."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..transport._raw import (
    RawStub,
    serve_echo,
    serve_stream_echo,
    serve_stream_relay,
    stream_pingpong,
    stream_round_trips,
)


def _serve(target: Callable[..., None], *args: Any) -> tuple[Any, int]:
    """Start ``target`` (a server that puts its port on the queue it is given first) in
    a process of its own; the process and the port."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(q, *args), daemon=True)
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


class GrpcRelay:
    """The floor of a gateway hop: a grpc.aio stream echo and a grpc.aio relay in front
    of it, each in a process of its own. ``direct`` and ``relayed`` give per-call round
    trips (microseconds) on one stream, straight to the echo and through the relay."""

    def __init__(self) -> None:
        self._echo, echo_port = _serve(serve_stream_echo)
        self._relay, relay_port = _serve(serve_stream_relay, f"127.0.0.1:{echo_port}")
        self._endpoints = {"direct": f"127.0.0.1:{echo_port}", "relayed": f"127.0.0.1:{relay_port}"}

    def round_trips(self, how: str, payload: bytes, n: int) -> list[float]:
        return [t * 1e6 for t in stream_round_trips(self._endpoints[how], payload, n)]

    def close(self) -> None:
        self._relay.kill()
        self._echo.kill()


class SqliteCommit:
    """The floor of a ``persist="call"`` turn's write: what it commits, in raw ``sqlite3``
    (a WAL file, ``synchronous=NORMAL``): ``BEGIN IMMEDIATE``, an ``UPDATE`` of a state
    row, an ``INSERT`` of a reply record, ``COMMIT``."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fluentfn-bench-sqlite-")
        self._conn = sqlite3.connect(Path(self._dir.name) / "floor.db", isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE state (address TEXT PRIMARY KEY, version INTEGER, state BLOB)")
        self._conn.execute(
            "CREATE TABLE replies (address TEXT, rid TEXT, reply BLOB, ts REAL, PRIMARY KEY (address, rid)) "
            "WITHOUT ROWID"
        )
        self._conn.execute("INSERT INTO state VALUES ('floor/w', 0, x'')")
        self._n = 0

    def commit(self, state: bytes, reply: bytes) -> None:
        self._n += 1
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE state SET version = ?, state = ? WHERE address = 'floor/w'", (self._n, state))
        conn.execute("INSERT OR REPLACE INTO replies VALUES ('floor/w', ?, ?, ?)", (f"r{self._n}", reply, time.time()))
        conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()
        self._dir.cleanup()


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


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]], n: int, rounds: int = 10, warmup: int = 50
) -> dict[str, list[float]]:
    """``time_calls`` of each of ``fns``, ``n`` calls each, taken in ``rounds`` alternating
    blocks: figures compared with one another (a mode and its floor) meet the same
    moments of the machine, not one quiet stretch and one busy one."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    block = max(1, n // rounds)
    while any(len(v) < n for v in out.values()):
        for name, fn in fns.items():
            out[name] += time_calls(fn, min(block, n - len(out[name])), warmup=0)
    return out
