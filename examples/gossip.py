"""Gossip averaging: nodes pair up at random and average their values until all agree.

Each exchange is one actor calling another (push-pull). Both modes give the same
numbers; FaaS pays a storage round trip for each.

    python examples/gossip.py
"""

from __future__ import annotations

import random
import time
from typing import Any

import fluentfn as ff


class _Node:
    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def swap(self, theirs: float) -> float:
        """Take the average of ours and theirs; return what we had."""
        mine = self.value
        self.value = (mine + theirs) / 2
        return mine

    def gossip(self, peer: ff.ActorRef) -> float:
        theirs = float(peer.swap(self.value))
        self.value = (self.value + theirs) / 2
        return self.value

    def get(self) -> float:
        return self.value


Node = ff.actor(name="GossipNode", shards=2)(_Node)


def run(nodes: int = 16, rounds: int = 6) -> dict[str, Any]:
    rng = random.Random(5)
    names = [f"n{i}" for i in range(nodes)]
    Node.bulk("set", {name: (float(i),) for i, name in enumerate(names)})
    mean = (nodes - 1) / 2
    t0 = time.perf_counter()
    for _ in range(rounds):
        order = names[:]
        rng.shuffle(order)
        for a, b in zip(order[::2], order[1::2], strict=True):
            Node[a].gossip(Node[b])
    elapsed = time.perf_counter() - t0
    values = Node.bulk("get", {name: () for name in names})
    return {
        "exchanges": rounds * nodes // 2,
        "us_per_exchange": round(elapsed / (rounds * nodes // 2) * 1e6, 1),
        "max_deviation": round(max(abs(v - mean) for v in values.values()), 6),
        "sum_kept": abs(sum(values.values()) - mean * nodes) < 1e-9,
    }


def main() -> None:
    for mode in ("stateful", "faas"):
        with ff.init(mode=mode, namespace=f"gossip-{mode}"):
            print(f"{mode}: running the gossip case study ...", flush=True)
            print(mode, run())


if __name__ == "__main__":
    main()
