"""``fluentfn bench throughput``: calls per second, fluentfn vs pipelined Ray actor calls.

Systems: ``fluentfn-pipelined`` (many ``.future`` calls in flight to one identity),
``fluentfn-tell`` (one-way messages, then one call to wait for them), ``fluentfn-clients``
(8 threads of blocking calls to 8 identities), ``fluentfn-spread`` (futures over 64
identities on all hosts), ``ray-pipelined`` (``ray.get([a.echo.remote(x) ...])``) and
``ray-clients`` (8 threads of blocking Ray calls). Messages between actors:
``fluentfn-ring-100`` (``bench turns``' ring: a token passed by ``tell`` around 100
identities, persist="never", 10,000 hops; a type with the default placement, so its
identities share one host) and ``fluentfn-ring-100-2-hosts`` (every other hop crosses to
another host) against ``ray-ring-8-actors`` (the same ring over 8 Ray actors: a Ray
actor is a process here), and ``fluentfn-pingpong`` (an actor's
blocking 1 KB calls to an actor on another host, the paper's messaging case) against
``ray-pingpong`` (``ray.get`` inside one Ray actor on another's method), and the floor
``grpc-aio-stream-pingpong`` (the same 1 KB round trips on one raw grpc.aio stream).
``fluentfn-pingpong-async`` and ``ray-pingpong-async``: the same rallies written as async
methods (``await peer.pong.aio(...)``; ``await peer.pong.remote(...)`` in a Ray async
actor), where a turn's waits are the host's event loop's and no thread waits.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import fluentfn as ff

from . import _cases, _report, turns
from ._peers import GrpcStreamEcho, RayEcho

PAYLOAD = b"x" * 100


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    def echo(self, x: Any) -> Any:
        return x

    def hit(self, x: Any) -> None:
        self.count += 1

    def total(self) -> int:
        return self.count


Sink = ff.actor(name="BenchSink", shards=2, persist="never")(_Sink)


_BURST = """
import sys, time
import fluentfn as ff
from fluentfn.bench.throughput import Sink, PAYLOAD
n = int(sys.argv[1])
with ff.init(address="auto", namespace=sys.argv[2]):
    out = []
    for key in ("cold-burst", "warm-burst"):  # the first finds no route cached in this process
        t0 = time.perf_counter()
        for _ in range(n):
            Sink[key].hit.tell(PAYLOAD)
        while Sink[key].total() < n:
            time.sleep(0.001)
        out.append(time.perf_counter() - t0)
    print(*out)
"""


def _cold_route_burst(n: int, namespace: str = "default") -> tuple[float, float]:
    """Seconds for ``n`` tells from a new driver process whose runtime has no route
    cached for the (running) hosts, then for ``n`` more once it has."""
    import os
    import subprocess
    import sys

    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    code = [sys.executable, "-c", _BURST, str(n), namespace]
    out = subprocess.run(code, capture_output=True, text=True, timeout=300, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the burst driver failed: {out.stderr[-2000:]}")
    cold, warm = (float(x) for x in out.stdout.split()[-2:])
    return cold, warm


def _ray_pingpong(n: int, payload: bytes) -> tuple[float, float]:
    """Seconds for ``n`` round trips from one Ray actor to another: blocking (``ray.get``
    in a sync actor), then awaited (in an async actor)."""
    import ray

    @ray.remote(num_cpus=0)
    class RayPong:
        def pong(self, payload: bytes) -> bytes:
            return payload

    @ray.remote(num_cpus=0)
    class RayPing:
        def rally(self, peer: Any, n: int, payload: bytes) -> float:
            ray.get(peer.pong.remote(payload))
            t0 = time.perf_counter()
            for _ in range(n):
                ray.get(peer.pong.remote(payload))
            return time.perf_counter() - t0

    @ray.remote(num_cpus=0)
    class RayAsyncPing:
        async def rally(self, peer: Any, n: int, payload: bytes) -> float:
            await peer.pong.remote(payload)
            t0 = time.perf_counter()
            for _ in range(n):
                await peer.pong.remote(payload)
            return time.perf_counter() - t0

    pong = RayPong.remote()  # type: ignore[attr-defined]
    seconds = []
    for ping in (RayPing.remote(), RayAsyncPing.remote()):  # type: ignore[attr-defined]
        seconds.append(float(ray.get(ping.rally.remote(pong, n, payload))))
        ray.kill(ping)
    ray.kill(pong)
    return seconds[0], seconds[1]


def _rate(system: str, calls: int, seconds: float) -> dict[str, Any]:
    return {
        "system": system,
        "ops_per_s": round(calls / seconds),
        "us_per_op": round(seconds / calls * 1e6, 1),
        "n": calls,
    }


def _threads(n_threads: int, per_thread: int, fn: Any) -> float:
    threads = [threading.Thread(target=lambda i=i: [fn(i) for _ in range(per_thread)]) for i in range(n_threads)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    n = 5_000 if quick else 30_000
    rows: list[dict[str, Any]] = []
    with ff.init():
        sink = Sink["one"]
        sink.echo(PAYLOAD)
        for f in [sink.echo.future(PAYLOAD) for _ in range(500)]:
            f.result()
        t0 = time.perf_counter()
        futures = [sink.echo.future(PAYLOAD) for _ in range(n)]
        for f in futures:
            f.result()
        rows.append(_rate("fluentfn-pipelined", n, time.perf_counter() - t0))

        counter = Sink["tells"]
        counter.total()
        t0 = time.perf_counter()
        for _ in range(n):
            counter.hit.tell(PAYLOAD)
        seen, last_change = 0, time.perf_counter()
        while seen < n and time.perf_counter() - last_change < 2.0:  # tells beyond the mailbox bound are shed
            now_seen = counter.total()
            if now_seen != seen:
                seen, last_change = now_seen, time.perf_counter()
            time.sleep(0.001)
        elapsed = (last_change if seen < n else time.perf_counter()) - t0
        rows.append({**_rate("fluentfn-tell", seen, elapsed), "shed": n - seen})

        cold, warm = _cold_route_burst(n)
        rows.append(_rate("fluentfn-tell-cold-route", n, cold))
        rows.append(_rate("fluentfn-tell-warm-route", n, warm))

        refs = [Sink[f"spread-{i}"] for i in range(64)]
        for target in refs:
            target.echo(PAYLOAD)
        t0 = time.perf_counter()
        futures = [refs[i % 64].echo.future(PAYLOAD) for i in range(n)]
        for f in futures:
            f.result()
        rows.append(_rate("fluentfn-spread", n, time.perf_counter() - t0))

        per = max(100, n // 40)
        clients = [Sink[f"client-{i}"] for i in range(8)]
        rows.append(_rate("fluentfn-clients", 8 * per, _threads(8, per, lambda i: clients[i].echo(PAYLOAD))))

        hops = 10_000
        run_id = time.time_ns()  # RingDone is durable: each run reports under a name of its own
        for ring, name in (
            ("default", f"fluentfn-ring-{turns.RING}"),
            ("never", f"fluentfn-ring-{turns.RING}-2-hosts"),
        ):
            turns.ring_per_hop(ring, 2 * turns.RING, f"throughput-warm-{ring}-{run_id}")  # activate, resolve routes
            rows.append(_rate(name, hops, hops * turns.ring_per_hop(ring, hops, f"throughput-{ring}-{run_id}")))
        messaging = _cases.load("messaging")
        rallies = 2_000 if quick else 10_000
        samples = messaging.Ping["a"].pingpong(messaging.Pong["b"], rallies, messaging.PAYLOAD)
        rows.append(_rate("fluentfn-pingpong", rallies, sum(samples) / 1e6))
        samples = messaging.AsyncPing["a"].pingpong(messaging.Pong["b"], rallies, messaging.PAYLOAD)
        rows.append(_rate("fluentfn-pingpong-async", rallies, sum(samples) / 1e6))

        ray_echo = RayEcho()
        ray_echo.pipelined(PAYLOAD, 500)
        rows.append(_rate("ray-pipelined", n, ray_echo.pipelined(PAYLOAD, n)))
        rows.append(_rate("ray-clients", 8 * per, _threads(8, per, lambda i: ray_echo.call(PAYLOAD))))
        ray_echo.close()
        rows.append(_rate(f"ray-ring-{turns.RAY_RING}-actors", hops, hops * turns.ray_ring_per_hop(hops)))
        blocking, awaited = _ray_pingpong(rallies, messaging.PAYLOAD)
        rows.append(_rate("ray-pingpong", rallies, blocking))
        rows.append(_rate("ray-pingpong-async", rallies, awaited))
        floor = GrpcStreamEcho()
        rows.append(_rate("grpc-aio-stream-pingpong", rallies, floor.pingpong(messaging.PAYLOAD, rallies)))
        floor.close()
    by = {r["system"]: r for r in rows}
    ray_rate = by["ray-pipelined"]["ops_per_s"]
    for r in rows:
        r["vs_ray_pipelined"] = round(r["ops_per_s"] / ray_rate, 2)
    ray_best = max(by["ray-pingpong"]["ops_per_s"], by["ray-pingpong-async"]["ops_per_s"])
    notes = [
        f"fluentfn-pipelined / ray-pipelined = {by['fluentfn-pipelined']['ops_per_s'] / ray_rate:.2f}x (target >= 6x)",
        f"fluentfn-clients / ray-clients = {by['fluentfn-clients']['ops_per_s'] / by['ray-clients']['ops_per_s']:.2f}x",
        f"ring of {turns.RING} identities, tells: fluentfn / ray = "
        f"{by[f'fluentfn-ring-{turns.RING}']['ops_per_s'] / by[f'ray-ring-{turns.RAY_RING}-actors']['ops_per_s']:.2f}x"
        " (target >= 3x)",
        "a burst of tells from a new driver, no route cached / cached: "
        f"{by['fluentfn-tell-warm-route']['ops_per_s'] / by['fluentfn-tell-cold-route']['ops_per_s']:.2f}x "
        "(target <= 2x)",
        "actor->actor blocking ping-pong (1 KB): fluentfn / ray = "
        f"{by['fluentfn-pingpong']['ops_per_s'] / by['ray-pingpong']['ops_per_s']:.2f}x (target >= 2.5x); "
        "/ a raw grpc.aio stream ping-pong (the floor) = "
        f"{by['fluentfn-pingpong']['ops_per_s'] / by['grpc-aio-stream-pingpong']['ops_per_s']:.2f}",
        "the same ping-pong as async methods: fluentfn / ray (async actors) = "
        f"{by['fluentfn-pingpong-async']['ops_per_s'] / by['ray-pingpong-async']['ops_per_s']:.2f}x; "
        "/ ray's faster shape = "
        f"{by['fluentfn-pingpong-async']['ops_per_s'] / ray_best:.2f}x; "
        "/ the floor = "
        f"{by['fluentfn-pingpong-async']['ops_per_s'] / by['grpc-aio-stream-pingpong']['ops_per_s']:.2f}",
    ]
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    return _report.cli("throughput", __doc__, run, "ops_per_s", argv)
