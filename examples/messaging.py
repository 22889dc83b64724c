"""The paper's Table 1: a 1 KB message between two functions; and section 3.1's bandwidth.

Stateful: ``Ping`` calls ``Pong`` directly (gRPC between hosts). FaaS: the same code,
where each call is an invocation whose request and reply travel through the store.
Paper: 290 us over ZeroMQ between EC2 servers vs about 108 ms through S3 (a write and a
read). A round trip carries two messages, so one message is half a round trip (as
ping-pong benchmarks report one-way latency).

``bandwidth`` times an invocation that reads a 16 MB state against one that reads a
512 KB state (both above DynamoDB's item limit, so both are objects: the difference is
transfer time alone). The paper measured 538 Mbit/s per Lambda function. Stateful hosts
keep the state in memory, so there is nothing to transfer.

    python examples/messaging.py            # both modes, local store
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import fluentfn as ff

PAYLOAD = b"m" * 1024
PAPER = {"direct_us": 290.0, "via_s3_us": 108_000.0}


class _Pong:
    def pong(self, payload: bytes) -> bytes:
        return payload


class _Ping:
    def pingpong(self, peer: ff.ActorRef, n: int, payload: bytes) -> list[float]:
        """Round trips to ``peer``, timed here (inside the caller), in microseconds."""
        peer.pong(payload)  # warm the path (and, in FaaS mode, nothing: it stays cold)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            peer.pong(payload)
            out.append((time.perf_counter() - t0) * 1e6)
        return out


class _AsyncPing:
    async def pingpong(self, peer: ff.ActorRef, n: int, payload: bytes) -> list[float]:
        """``_Ping.pingpong`` written as async code: each round trip awaited on the host's
        event loop (no worker thread waits), in microseconds."""
        await peer.pong.aio(payload)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await peer.pong.aio(payload)
            out.append((time.perf_counter() - t0) * 1e6)
        return out


class _Blob:
    def __init__(self) -> None:
        self.data = b""

    def fill(self, nbytes: int) -> int:
        self.data = os.urandom(nbytes)
        return len(self.data)

    @ff.readonly
    def size(self) -> int:
        return len(self.data)


Pong = ff.actor(name="PaperPong", shards=1)(_Pong)
Ping = ff.actor(name="PaperPing", shards=1)(_Ping)
AsyncPing = ff.actor(name="PaperAsyncPing", shards=1)(_AsyncPing)
Blob = ff.actor(name="PaperBlob", shards=1)(_Blob)


def run(n: int = 200) -> dict[str, Any]:
    """Ping-pong ``n`` 1 KB messages on the current cluster; p50 round trip and one way."""
    samples = Ping["a"].pingpong(Pong["b"], n, PAYLOAD)
    p50 = statistics.median(samples)
    return {"p50_us": round(p50, 1), "one_way_us": round(p50 / 2, 1), "n": len(samples)}


def bandwidth(mb: int = 16, n: int = 3) -> dict[str, Any]:
    """Mbit/s of reading a ``mb`` MB state into an invocation (differential timing)."""
    big, small = mb << 20, 512 << 10
    Blob["big"].fill(big)
    Blob["small"].fill(small)

    def timed(ref: ff.ActorRef) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            ref.size()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    extra = timed(Blob["big"]) - timed(Blob["small"])
    mbps = (big - small) * 8 / extra / 1e6 if extra > 0 else float("inf")
    return {"mbps": round(mbps, 1), "mb": mb}


def main() -> None:
    for mode, n in (("stateful", 500), ("faas", 50)):
        with ff.init(mode=mode):
            print(f"{mode}: running the messaging case study ...", flush=True)
            print(mode, "messaging:", run(n), flush=True)


if __name__ == "__main__":
    main()
