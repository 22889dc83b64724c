"""Prediction serving with batching, the paper's third case study.

Stateful: a ``Model`` actor keeps the network's weights in memory (numpy MLP; torch on
a GPU when one is present and the type asks for it) and answers a batch per call. FaaS:
the same code, where each batch is an invocation that loads the weights from storage
and whose request and result travel through the store. Paper, per batch of 10:
467 ms (Lambda + SQS) vs 13 ms (server + SQS) vs 2.8 ms (server + ZeroMQ).

    python examples/serving.py
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

import fluentfn as ff

PAPER = {"lambda_sqs_ms": 467.0, "server_sqs_ms": 13.0, "server_zmq_ms": 2.8}


class _Model:
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.w1 = rng.normal(size=(64, 256)).astype(np.float32)
        self.w2 = rng.normal(size=(256, 10)).astype(np.float32)

    def predict(self, batch: Any) -> list[int]:
        hidden = np.maximum(batch @ self.w1, 0.0)
        return [int(i) for i in np.argmax(hidden @ self.w2, axis=1)]


Model = ff.actor(name="ServeModel", shards=1)(_Model)


def run(batches: int = 50, size: int = 10) -> dict[str, Any]:
    """``batches`` prediction calls of ``size`` requests; p50 per batch in microseconds."""
    rng = np.random.default_rng(1)
    model = Model["m"]
    model.predict(rng.normal(size=(size, 64)).astype(np.float32))  # load the model once
    samples, answers = [], []
    for _ in range(batches):
        batch = rng.normal(size=(size, 64)).astype(np.float32)
        t0 = time.perf_counter()
        answers.append(model.predict(batch))
        samples.append((time.perf_counter() - t0) * 1e6)
    return {"p50_us": round(statistics.median(samples), 1), "batches": batches, "checksum": sum(map(sum, answers))}


def main() -> None:
    for mode, n in (("stateful", 200), ("faas", 10)):
        with ff.init(mode=mode, namespace=f"serving-{mode}"):
            print(f"{mode}: running the serving case study ...", flush=True)
            print(mode, run(n))


if __name__ == "__main__":
    main()
