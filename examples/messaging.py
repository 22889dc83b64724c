"""The paper's Table 1: a 1 KB message between two functions, round trip.

Stateful: ``Ping`` calls ``Pong`` directly (gRPC between hosts). FaaS: the same code,
where each call is an invocation whose request and reply travel through the store.
Paper: 290 us over ZeroMQ between EC2 servers vs about 108 ms through S3.

    python examples/messaging.py            # both modes, local store
"""

from __future__ import annotations

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


Pong = ff.actor(name="PaperPong", shards=1)(_Pong)
Ping = ff.actor(name="PaperPing", shards=1)(_Ping)


def run(n: int = 200) -> dict[str, Any]:
    """Ping-pong ``n`` 1 KB messages on the current cluster; p50 round trip."""
    samples = Ping["a"].pingpong(Pong["b"], n, PAYLOAD)
    return {"p50_us": round(statistics.median(samples), 1), "n": len(samples)}


def main() -> None:
    for mode, n in (("stateful", 500), ("faas", 10)):
        with ff.init(mode=mode):
            print(mode, run(n))


if __name__ == "__main__":
    main()
