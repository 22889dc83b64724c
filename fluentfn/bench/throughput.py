"""``fluentfn bench throughput``: calls per second, fluentfn vs pipelined Ray actor calls.

Systems: ``fluentfn-pipelined`` (many ``.future`` calls in flight to one identity),
``fluentfn-tell`` (one-way messages, then one call to wait for them), ``fluentfn-clients``
(8 threads of blocking calls to 8 identities), ``fluentfn-spread`` (futures over 64
identities on all hosts), ``ray-pipelined`` (``ray.get([a.echo.remote(x) ...])``) and
``ray-clients`` (8 threads of blocking Ray calls). Messages between actors:
``fluentfn-ring-100`` (a token passed by ``tell`` around 100 identities, 10,000 hops)
against ``ray-ring-4-actors`` (the same ring over 4 Ray actors, each playing 25
identities: a Ray actor is a process each), and ``fluentfn-pingpong`` (an actor's
blocking 1 KB calls to an actor on another host, the paper's messaging case) against
``ray-pingpong`` (``ray.get`` inside one Ray actor on another's method).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import fluentfn as ff

from . import _cases, _report
from ._peers import RayEcho

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

RING_SIZE = 100


class _RingNode:
    """One identity of a token ring: passes the token on with a ``tell``."""

    def __init__(self) -> None:
        self.passes = 0

    def pass_token(self, hops_left: int, end: ff.ActorRef) -> None:
        self.passes += 1
        if hops_left <= 0:
            end.finish.tell()
            return
        me = int(ff.context().key or 0)
        RingNode[str((me + 1) % RING_SIZE)].pass_token.tell(hops_left - 1, end)


class _RingEnd:
    def __init__(self) -> None:
        self.finished_at = 0.0

    def finish(self) -> None:
        self.finished_at = time.time()

    def when(self) -> float:
        return self.finished_at


RingNode = ff.actor(name="BenchRingNode", persist="never")(_RingNode)
RingEnd = ff.actor(name="BenchRingEnd", persist="never", colocate_with=RingNode)(_RingEnd)


def _ring(hops: int) -> float:
    """Seconds for ``hops`` tells around a ring of RING_SIZE identities."""
    for i in range(RING_SIZE):  # every identity live: the ring measures messaging, not activation
        RingNode[str(i)].pass_token.tell(-1, RingEnd["warm"])
    while RingEnd["warm"].when() == 0.0:
        time.sleep(0.01)
    end = RingEnd[f"run-{time.time_ns()}"]
    end.when()
    t0 = time.time()
    RingNode["0"].pass_token.tell(hops - 1, end)
    while (finished := float(end.when())) == 0.0:
        time.sleep(0.005)
    return finished - t0


def _ray_ring(hops: int, actors: int = 4) -> float:
    """The same ring over Ray actors (each plays RING_SIZE / actors identities: a Ray
    actor is a process, and 100 of them would not fit this machine)."""
    import ray

    @ray.remote(num_cpus=0)
    class RayRingNode:
        def __init__(self) -> None:
            self.next: Any = None
            self.finished_at = 0.0

        def link(self, nxt: Any) -> None:
            self.next = nxt

        def pass_token(self, hops_left: int, end: Any) -> None:
            if hops_left <= 0:
                end.finish.remote()
                return
            self.next.pass_token.remote(hops_left - 1, end)

        def finish(self) -> None:
            self.finished_at = time.time()

        def when(self) -> float:
            return self.finished_at

    nodes = [RayRingNode.remote() for _ in range(actors)]  # type: ignore[attr-defined]
    ray.get([n.link.remote(nodes[(i + 1) % actors]) for i, n in enumerate(nodes)])
    end = RayRingNode.remote()  # type: ignore[attr-defined]
    ray.get(end.when.remote())
    nodes[0].pass_token.remote(min(hops, 200), end)  # warm the paths
    while ray.get(end.when.remote()) == 0.0:
        time.sleep(0.005)
    end2 = RayRingNode.remote()  # type: ignore[attr-defined]
    ray.get(end2.when.remote())
    t0 = time.time()
    nodes[0].pass_token.remote(hops - 1, end2)
    while (finished := ray.get(end2.when.remote())) == 0.0:
        time.sleep(0.005)
    for a in [*nodes, end, end2]:
        ray.kill(a)
    return float(finished - t0)


def _ray_pingpong(n: int, payload: bytes) -> float:
    """Seconds for ``n`` blocking round trips from one Ray actor to another."""
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

    ping, pong = RayPing.remote(), RayPong.remote()  # type: ignore[attr-defined]
    seconds = float(ray.get(ping.rally.remote(pong, n, payload)))
    ray.kill(ping)
    ray.kill(pong)
    return seconds


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
        rows.append(_rate(f"fluentfn-ring-{RING_SIZE}", hops, _ring(hops)))
        messaging = _cases.load("messaging")
        rallies = 2_000 if quick else 10_000
        samples = messaging.Ping["a"].pingpong(messaging.Pong["b"], rallies, messaging.PAYLOAD)
        rows.append(_rate("fluentfn-pingpong", rallies, sum(samples) / 1e6))

        ray_echo = RayEcho()
        ray_echo.pipelined(PAYLOAD, 500)
        rows.append(_rate("ray-pipelined", n, ray_echo.pipelined(PAYLOAD, n)))
        rows.append(_rate("ray-clients", 8 * per, _threads(8, per, lambda i: ray_echo.call(PAYLOAD))))
        ray_echo.close()
        rows.append(_rate("ray-ring-4-actors", hops, _ray_ring(hops)))
        rows.append(_rate("ray-pingpong", rallies, _ray_pingpong(rallies, messaging.PAYLOAD)))
    by = {r["system"]: r for r in rows}
    ray_rate = by["ray-pipelined"]["ops_per_s"]
    for r in rows:
        r["vs_ray_pipelined"] = round(r["ops_per_s"] / ray_rate, 2)
    notes = [
        f"fluentfn-pipelined / ray-pipelined = {by['fluentfn-pipelined']['ops_per_s'] / ray_rate:.2f}x (target >= 3x)",
        f"fluentfn-clients / ray-clients = {by['fluentfn-clients']['ops_per_s'] / by['ray-clients']['ops_per_s']:.2f}x",
        f"ring of {RING_SIZE} identities, tells: fluentfn / ray = "
        f"{by[f'fluentfn-ring-{RING_SIZE}']['ops_per_s'] / by['ray-ring-4-actors']['ops_per_s']:.2f}x (target >= 3x)",
        "actor->actor blocking ping-pong (1 KB): fluentfn / ray = "
        f"{by['fluentfn-pingpong']['ops_per_s'] / by['ray-pingpong']['ops_per_s']:.2f}x (target >= 2x)",
    ]
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    return _report.cli("throughput", __doc__, run, "ops_per_s", argv)
