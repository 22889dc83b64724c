"""Leader election with heartbeats, the paper's fourth case study.

Candidates tick on durable reminders; each tick is a round of election: the candidate
asks the ``Lease`` actor to renew its lease (or to hand it over, if it expired). The
lease is durable (``persist="call"``: each renewal is written before it is granted),
like the paper's lease in DynamoDB. Stateful: the lease and the candidates live in
memory and the rounds are direct messages. FaaS: every tick is an invocation and the
lease is read and written through the store.

"Share of time electing", as in the paper: the time a candidate spends in election
rounds divided by the time those rounds keep it covered. Each round extends the lease
by one heartbeat interval (the lease runs for three, so a missed beat or two is
tolerated), so the share is ``round time / interval``, summed over every candidate's
rounds and divided by candidates x wall time. The paper's functions re-elected once per
15-minute lifetime (rounds through DynamoDB: at least 1.9% of all time); the heartbeat
here (``interval``, 2 s in ``fluentfn bench paper``) is far more frequent than that, and
``round_ms`` is reported too, so the share of any other setup is ``round_ms / interval``.

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

    def warm(self) -> None:
        """Open this host's connection to the lease's host (a read: a claim at time 0 changes nothing)."""
        Lease["lease"].claim("observer", 0.0, 0.0)

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


def run(candidates: int = 4, interval: float = 2.0, duration: float = 10.0) -> dict[str, Any]:
    """Heartbeat for ``duration`` seconds; the fraction of time spent electing."""
    names = [f"c{i}" for i in range(candidates)]
    Lease["lease"].claim("warm-up", 0.0, 0.0)  # start the hosts before timing
    for name in names:
        Candidate[name].warm()
    before = {name: Candidate[name].report() for name in names}
    t0 = time.perf_counter()
    for name in names:  # heartbeats spread over the interval, as independent processes' are
        Candidate[name].start(interval)
        time.sleep(interval / candidates)
    time.sleep(max(0.0, duration - interval))
    for name in names:
        Candidate[name].stop()
    elapsed = time.perf_counter() - t0
    reports = [
        {k: v - before[name][k] for k, v in Candidate[name].report().items()} for name in names
    ]  # this run only: the identities are durable
    ticks = sum(r["ticks"] for r in reports)
    electing_s = sum(r["electing_s"] for r in reports)
    leaders = [name for name, r in zip(names, reports, strict=True) if r["led"]]
    return {
        "electing_fraction": round(electing_s / (candidates * elapsed), 6),
        "round_ms": round(electing_s / max(ticks, 1) * 1e3, 3),
        "interval_s": interval,
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
