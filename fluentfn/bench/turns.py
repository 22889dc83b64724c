"""``fluentfn bench turns``: the cost of a turn where chains are long and state is big.

- A token passed by ``tell`` around a ring of 100 identities, 1,000 and 10,000 hops
  (persist="never" and "call"), next to a ring of Ray actors doing the same with
  fire-and-forget ``.remote()`` calls (8 actors: each is a process here). The per-hop
  cost over 10,000 hops should be within 10% of the cost over 1,000: tells start new
  chains, so nothing grows with the hop count.
- A read of 100 MB of state vs 4 KB: an ``@ff.readonly`` method skips change detection,
  so the two should cost about the same (target <= 2x); a plain method re-encodes the
  state to see whether it changed (shown for contrast).
"""

from __future__ import annotations

import time
from typing import Any

import fluentfn as ff

from . import _report

RING = 100
RAY_RING = 8


class _RingNode:
    def __init__(self) -> None:
        self.hops = 0

    def hop(self, remaining: int, run: str) -> None:
        self.hops += 1
        if remaining == 0:
            RingDone[run].done.tell(time.time())
            return
        ctx = ff.context()
        index = int((ctx.key or "0").rsplit("-", 1)[1])
        prefix = (ctx.key or "").rsplit("-", 1)[0]
        ff.ref(f"{ctx.type_name}/{prefix}-{(index + 1) % RING}").hop.tell(remaining - 1, run)


class _RingDone:
    def __init__(self) -> None:
        self.at = 0.0

    def done(self, at: float) -> None:
        self.at = at

    @ff.readonly
    def finished(self) -> float:
        return self.at


RingDone = ff.actor(name="BenchRingDone", shards=1)(_RingDone)
RingNodes = {
    mode: ff.actor(name=f"BenchRing{mode.title()}", shards=2, persist=mode)(_RingNode) for mode in ("never", "call")
}
# ``bench throughput``'s ring: a type with the default placement (its partitions on one host).
RingNodes["default"] = ff.actor(name="BenchRingDefault", persist="never")(_RingNode)


class _BigState:
    def __init__(self) -> None:
        self.blob = b""

    def fill(self, n: int) -> int:
        self.blob = b"x" * n
        return len(self.blob)

    @ff.readonly
    def size(self) -> int:
        return len(self.blob)

    def size_plain(self) -> int:
        return len(self.blob)


BigState = ff.actor(name="BenchBigState", shards=1)(_BigState)


def ring_per_hop(mode: str, hops: int, run: str) -> float:
    """Seconds per hop of a token passed ``hops`` times around the ring."""
    node = RingNodes[mode]["ring-0"]
    t0 = time.time()
    node.hop.tell(hops - 1, run)
    deadline = time.monotonic() + 600
    while True:
        at = float(RingDone[run].finished())
        if at:
            return (at - t0) / hops
        if time.monotonic() > deadline:
            raise RuntimeError(f"ring {run} did not finish")
        time.sleep(0.01)


def ray_ring_per_hop(hops: int) -> float:
    """Seconds per hop of the same ring built from Ray actors."""
    import ray

    @ray.remote(num_cpus=0)
    class Node:
        def __init__(self) -> None:
            self.next: Any = None
            self.done_at = 0.0

        def link(self, nxt: Any) -> None:
            self.next = nxt

        def hop(self, remaining: int) -> None:
            if remaining == 0:
                self.done_at = time.time()
                return
            self.next.hop.remote(remaining - 1)

        def finished(self) -> float:
            at, self.done_at = self.done_at, 0.0
            return at

    nodes = [Node.remote() for _ in range(RAY_RING)]  # type: ignore[attr-defined]
    ray.get([n.link.remote(nodes[(i + 1) % RAY_RING]) for i, n in enumerate(nodes)])
    nodes[0].hop.remote(2 * RAY_RING)  # warm-up lap
    while not ray.get(nodes[(2 * RAY_RING) % RAY_RING].finished.remote()):
        time.sleep(0.01)
    last = nodes[(hops - 1) % RAY_RING]
    t0 = time.time()
    nodes[0].hop.remote(hops - 1)
    while True:
        at = ray.get(last.finished.remote())
        if at:
            break
        time.sleep(0.01)
    for n in nodes:
        ray.kill(n)
    return float(at - t0) / hops


def _reads(size: int, n: int, readonly: bool) -> list[float]:
    ref = BigState[f"s{size}"]
    method = ref.size if readonly else ref.size_plain
    method()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        method()
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    per_hop: dict[str, float] = {}
    lengths = (1_000, 10_000)
    with ff.init(namespace="bench-turns"):
        for mode in ("never", "call"):
            ring_per_hop(mode, 2 * RING, f"warm-{mode}")  # activate the ring's identities, resolve routes
            for hops in lengths:
                cost = ring_per_hop(mode, hops, f"{mode}{hops}-{time.time_ns()}")
                per_hop[f"{mode}/{hops}"] = cost
                rows.append(
                    {"system": f"fluentfn tell ring persist={mode}", "hops": hops, "us_per_hop": round(cost * 1e6, 1)}
                )
        for hops in lengths:
            cost = ray_ring_per_hop(hops)
            per_hop[f"ray/{hops}"] = cost
            rows.append(
                {"system": f"ray actors ring ({RAY_RING} actors)", "hops": hops, "us_per_hop": round(cost * 1e6, 1)}
            )
        small, big = 4 * 1024, 100 * 1024 * 1024
        for size in (small, big):
            BigState[f"s{size}"].fill(size)
        n = 50 if quick else 200
        reads = {
            "4KB readonly": _reads(small, n, True),
            "100MB readonly": _reads(big, n, True),
            "4KB plain": _reads(small, n, False),
            "100MB plain": _reads(big, 3 if quick else 10, False),
        }
        for name, samples in reads.items():
            row = _report.summarize(f"read {name}", samples)
            row["us_per_hop"] = row["p50_us"]
            rows.append(row)
    by = {r["system"]: r for r in rows if r["system"].startswith("read ")}
    ratio_ro = by["read 100MB readonly"]["p50_us"] / by["read 4KB readonly"]["p50_us"]
    notes = [
        "tell ring per-hop cost, 10,000 / 1,000 hops: "
        + ", ".join(f"{m} {per_hop[f'{m}/10000'] / per_hop[f'{m}/1000']:.2f}" for m in ("never", "call", "ray"))
        + " (target: within 1.10)",
        f"tell ring persist=never / ray actors, per hop at 10,000 hops: "
        f"{per_hop['never/10000'] / per_hop['ray/10000']:.2f}",
        f"read of 100 MB / 4 KB state, @ff.readonly p50: {ratio_ro:.2f} (target <= 2)",
        f"read of 100 MB state without @ff.readonly p50: {by['read 100MB plain']['p50_us'] / 1000:.1f} ms",
    ]
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    return _report.cli("turns", __doc__, run, "us_per_hop", argv)
