"""Leader election with heartbeats, the paper's fourth case study.

Candidates tick on durable reminders; each tick renews (or takes over) a lease held by
a ``Lease`` actor. Stateful: the lease and the candidates live in memory and the ticks
are direct messages. FaaS: every tick is an invocation and the lease is read and
written through the store. Paper: at least 1.9% of all time spent electing via DynamoDB.

    python examples/leader.py
"""

from __future__ import annotations

import time
from typing import Any

import fluentfn as ff

PAPER = {"electing_fraction": 0.019}


class _Lease:
    def __init__(self) -> None:
        self.leader: str | None = None
        self.term = 0
        self.expires = 0.0

    def claim(self, who: str, now: float, ttl: float) -> list[Any]:
        """Renew ``who``'s lease, or hand it over if it expired; returns [leader, term]."""
        if self.leader == who or now >= self.expires:
            if self.leader != who:
                self.term += 1
                self.leader = who
            self.expires = now + ttl
        return [self.leader, self.term]


Lease = ff.actor(name="ElectionLease", shards=1)(_Lease)


class _Candidate:
    generation = 0  # a class-level default: identities stored before this field existed get it

    def __init__(self) -> None:
        self.running = False
        self.generation = 0  # a restart leaves old reminders behind: they carry an old number
        self.ticks = 0
        self.electing_s = 0.0
        self.led = 0

    def start(self, interval: float) -> None:
        self.running = True
        self.generation += 1
        ff.context().schedule(0.0, "tick", interval, self.generation)

    def stop(self) -> None:
        self.running = False

    def tick(self, interval: float, generation: int) -> None:
        if not self.running or generation != self.generation:
            return
        me = ff.context().key or ""
        t0 = time.perf_counter()
        leader, _ = Lease["lease"].claim(me, time.time(), 3 * interval)
        self.electing_s += time.perf_counter() - t0
        self.ticks += 1
        self.led += leader == me
        ff.context().schedule(interval, "tick", interval, generation)

    def report(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "electing_s": self.electing_s, "led": self.led}


Candidate = ff.actor(name="ElectionCandidate", shards=2)(_Candidate)


def run(candidates: int = 4, interval: float = 0.25, duration: float = 4.0) -> dict[str, Any]:
    """Heartbeat for ``duration`` seconds; the fraction of wall time spent electing."""
    names = [f"c{i}" for i in range(candidates)]
    Lease["lease"].claim("warm-up", 0.0, 0.0)  # start the hosts before timing
    before = {name: Candidate[name].report() for name in names}
    t0 = time.perf_counter()
    for name in names:
        Candidate[name].start(interval)
    time.sleep(duration)
    for name in names:
        Candidate[name].stop()
    elapsed = time.perf_counter() - t0
    reports = [
        {k: v - before[name][k] for k, v in Candidate[name].report().items()} for name in names
    ]  # this run only: the identities are durable
    ticks = sum(r["ticks"] for r in reports)
    leaders = [name for name, r in zip(names, reports, strict=True) if r["led"]]
    return {
        "electing_fraction": round(sum(r["electing_s"] for r in reports) / (candidates * elapsed), 5),
        "ticks": ticks,
        "leaders_seen": len(leaders),
        "term": Lease["lease"].claim("observer", 0.0, 0.0)[1],
    }


def main() -> None:
    for mode in ("stateful", "faas"):
        with ff.init(mode=mode, namespace=f"leader-{mode}"):
            print(f"{mode}: running the leader case study ...", flush=True)
            print(mode, run())


if __name__ == "__main__":
    main()
