"""Data-parallel SGD (logistic regression, numpy), the paper's training case study.

Stateful: data shards are actors whose partitions stay in memory; a ``Trainer`` of each
shard is co-located with it (in-process calls), and a parameter server averages their
gradients. FaaS: the same code, where every gradient invocation loads its shard's data
from storage each iteration. Paper: Lambda 21x slower (and 7.3x costlier) than a server.

    python examples/training.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

import fluentfn as ff

PAPER = {"slowdown": 21.0, "cost_ratio": 7.3}


class _DataShard:
    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None

    def load(self, x: Any, y: Any) -> int:
        """Bulk-load this shard's partition (one message per shard)."""
        self.x, self.y = x, y
        return len(y)

    def batch(self, i: int, size: int) -> tuple[Any, Any]:
        n = len(self.y)
        start = (i * size) % n
        return self.x[start : start + size], self.y[start : start + size]


DataShard = ff.actor(name="TrainData", shards=2)(_DataShard)


class _Trainer:
    def gradient(self, w: Any, i: int, size: int) -> Any:
        """Gradient of the logistic loss on this shard's i-th batch (data fetched in-process)."""
        key = ff.context().key
        x, y = DataShard[key].batch(i, size)
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        return x.T @ (p - y) / len(y)


Trainer = ff.actor(name="TrainWorker", colocate_with=DataShard)(_Trainer)


class _ParamServer:
    def __init__(self) -> None:
        self.w: Any = None

    async def train(self, shards: list[str], dim: int, steps: int, size: int, lr: float) -> list[float]:
        self.w = np.zeros(dim)
        for i in range(steps):
            grads = await asyncio.gather(*(Trainer[k].gradient.aio(self.w, i, size) for k in shards))
            self.w = self.w - lr * np.mean(grads, axis=0)
        return [float(v) for v in self.w]


ParamServer = ff.actor(name="TrainPS", shards=1)(_ParamServer)


def make_data(n: int, dim: int, seed: int = 7) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=dim)
    x = rng.normal(size=(n, dim))
    y = (x @ true_w + rng.normal(scale=0.5, size=n) > 0).astype(np.float64)
    return x, y


def shard_keys(count: int) -> list[str]:
    """One key per shard of TrainData (so each shard's partition sits on its own host)."""
    from fluentfn.placement import shard_for

    keys: dict[int, str] = {}
    i = 0
    while len(keys) < count:
        keys.setdefault(shard_for(f"part-{i}", DataShard.options.shards), f"part-{i}")
        i += 1
    return [keys[s] for s in sorted(keys)]


def run(n: int = 20_000, dim: int = 20, steps: int = 10, size: int = 2_000) -> dict[str, Any]:
    """Train on the current cluster; returns seconds per step and the model's accuracy."""
    x, y = make_data(n, dim)
    keys = shard_keys(DataShard.options.shards)
    parts = np.array_split(np.arange(n), len(keys))
    for key, idx in zip(keys, parts, strict=True):
        DataShard[key].load(x[idx], y[idx])
    t0 = time.perf_counter()
    w = np.array(ParamServer["ps"].train(keys, dim, steps, size, 0.5))
    elapsed = time.perf_counter() - t0
    accuracy = float(((x @ w > 0) == (y > 0.5)).mean())
    return {"s_per_step": round(elapsed / steps, 4), "accuracy": round(accuracy, 4), "steps": steps}


def main() -> None:
    for mode in ("stateful", "faas"):
        with ff.init(mode=mode):
            print(f"{mode}: running the training case study ...", flush=True)
            print(mode, run())


if __name__ == "__main__":
    main()
