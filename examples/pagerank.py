"""PageRank over a sharded graph: rank partitions co-located with graph partitions.

``Graph[p]`` holds the edges of partition ``p``; ``Ranks[p]`` (co-located: same host)
reads them in-process and sends every partition's ``Inbox`` its contributions directly;
``apply`` drains the co-located inbox. The driver only says "scatter" and "apply" (a
barrier). Inboxes are identities of their own, so two partitions scattering to each
other never wait on each other's turn (which would deadlock).

    python examples/pagerank.py
"""

from __future__ import annotations

import random
import time
from typing import Any

import fluentfn as ff

DAMPING = 0.85


class _Graph:
    def __init__(self) -> None:
        self.out: dict[int, list[int]] = {}

    def load(self, out: dict[int, list[int]]) -> int:
        self.out = {int(k): v for k, v in out.items()}
        return len(self.out)

    def edges(self) -> dict[int, list[int]]:
        return self.out


Graph = ff.actor(name="PRGraph", shards=2)(_Graph)


class _Inbox:
    def __init__(self) -> None:
        self.sums: dict[int, float] = {}

    def accumulate(self, contributions: dict[int, float]) -> None:
        for v, c in contributions.items():
            self.sums[int(v)] = self.sums.get(int(v), 0.0) + c

    def drain(self) -> dict[int, float]:
        sums, self.sums = self.sums, {}
        return sums


Inbox = ff.actor(name="PRInbox", colocate_with=Graph)(_Inbox)


class _Ranks:
    def __init__(self) -> None:
        self.rank: dict[int, float] = {}

    def init(self, vertices: list[int], total: int) -> None:
        self.rank = {v: 1.0 / total for v in vertices}
        Inbox[ff.context().key or ""].drain()

    def scatter(self, parts: list[str]) -> int:
        """Send each partition the rank flowing into its vertices (one message each)."""
        out = Graph[ff.context().key or ""].edges()  # co-located: an in-process call
        per_part: dict[str, dict[int, float]] = {p: {} for p in parts}
        for v, targets in out.items():
            if targets:
                share = self.rank[v] / len(targets)
                for t in targets:
                    bucket = per_part[parts[t % len(parts)]]
                    bucket[t] = bucket.get(t, 0.0) + share
        for p, contributions in per_part.items():
            Inbox[p].accumulate(contributions)
        return len(out)

    def apply(self, total: int) -> None:
        inbox = {int(v): c for v, c in Inbox[ff.context().key or ""].drain().items()}  # in-process
        self.rank = {v: (1 - DAMPING) / total + DAMPING * inbox.get(v, 0.0) for v in self.rank}

    def top(self, n: int) -> list[list[Any]]:
        return [[v, r] for v, r in sorted(self.rank.items(), key=lambda kv: -kv[1])[:n]]


Ranks = ff.actor(name="PRRanks", colocate_with=Graph)(_Ranks)


def parts_on_shards() -> list[str]:
    from fluentfn.placement import shard_for

    found: dict[int, str] = {}
    i = 0
    while len(found) < Graph.options.shards:
        found.setdefault(shard_for(f"part-{i}", Graph.options.shards), f"part-{i}")
        i += 1
    return [found[s] for s in sorted(found)]


def run(vertices: int = 2_000, edges: int = 10_000, iterations: int = 10) -> dict[str, Any]:
    rng = random.Random(3)
    parts = parts_on_shards()
    out: dict[int, list[int]] = {v: [] for v in range(vertices)}
    for _ in range(edges):
        out[rng.randrange(vertices)].append(rng.randrange(vertices))
    Graph.bulk("load", {p: ({v: t for v, t in out.items() if v % len(parts) == i},) for i, p in enumerate(parts)})
    Ranks.bulk("init", {p: ([v for v in out if v % len(parts) == i], vertices) for i, p in enumerate(parts)})
    t0 = time.perf_counter()
    for _ in range(iterations):
        Ranks.bulk("scatter", {p: (parts,) for p in parts})
        Ranks.bulk("apply", {p: (vertices,) for p in parts})
    elapsed = time.perf_counter() - t0
    top = sorted((tuple(x) for p in parts for x in Ranks[p].top(5)), key=lambda x: -x[1])[:5]
    return {"s_per_iteration": round(elapsed / iterations, 4), "top": [[v, round(r, 6)] for v, r in top]}


def main() -> None:
    for mode in ("stateful", "faas"):
        with ff.init(mode=mode, namespace=f"pagerank-{mode}"):
            print(f"{mode}: running the pagerank case study ...", flush=True)
            print(mode, run(iterations=3))  # the same iterations in both modes: the same ranks


if __name__ == "__main__":
    main()
