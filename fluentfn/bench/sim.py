"""``fluentfn bench sim``: how fast sim mode runs.

- Turns per wall-clock second: a token passed by ``tell`` around a ring of 100
  identities (persist="never" and "call"), in one simulation, on this process's one core.
  Goal: >= 50,000 turns/s.
- Virtual over real time: ``examples/leader.py``'s heartbeats (4 candidates, a 2 s
  interval) for an hour of virtual time.
- The same-run floor: a plain Python loop doing a turn's least work (look the identity
  up, call its method, encode the arguments and the new state), so the ratio holds on a
  slower machine.
"""

from __future__ import annotations

import time
from typing import Any

import fluentfn as ff

from ..sim._clock import real_monotonic
from ..wire import codec
from . import _report
from .turns import RING, RingNodes


def _ring(mode: str, hops: int) -> float:
    """Turns per real second of a ``hops``-hop tell ring in a fresh simulation."""
    with ff.init(mode="sim", seed=1) as sim:
        RingNodes[mode]["r-0"].hop.tell(hops, "sim")
        started = real_monotonic()
        sim.run_for(1e6)
        wall = real_monotonic() - started
        return float(sim.stats()["turns"]) / wall


def _leader(hours: float) -> dict[str, float]:
    from ..examples import leader

    with ff.init(mode="sim", seed=1) as sim:
        started = real_monotonic()
        leader.run(candidates=4, interval=2.0, duration=3600.0 * hours)
        wall = real_monotonic() - started
        return {"virtual_s": round(sim.now, 1), "wall_s": round(wall, 3), "speedup": round(sim.now / wall)}


def _floor(n: int) -> float:
    """Plain-Python 'turns' per second: a dict lookup, a method call, two encodes."""

    class Node:
        def __init__(self) -> None:
            self.hops = 0

        def hop(self, remaining: int) -> None:
            self.hops += 1

    nodes = {f"r-{i}": Node() for i in range(RING)}
    started = time.perf_counter()
    for i in range(n):
        node = nodes[f"r-{i % RING}"]
        codec.encode_args((n - i, "sim"), {})
        node.hop(n - i)
        codec.encode(vars(node))
    return n / (time.perf_counter() - started)


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    hops = 20_000 if quick else 100_000
    rows: list[dict[str, Any]] = []
    rates = {mode: _ring(mode, hops) for mode in ("never", "call")}
    floor = _floor(hops)
    for mode, rate in rates.items():
        rows.append({"system": f"sim tell ring persist={mode}", "turns_per_s": round(rate),
                     "of_floor": round(rate / floor, 3)})  # fmt: skip
    rows.append({"system": "python floor (lookup, call, 2 encodes)", "turns_per_s": round(floor), "of_floor": 1.0})
    leader = _leader(0.25 if quick else 1.0)
    rows.append({"system": "examples/leader.py heartbeats", **leader, "turns_per_s": None, "of_floor": None})
    notes = [
        f"sim mode, one core: {rates['never']:,.0f} turns/s (persist=never), {rates['call']:,.0f} (persist=call); "
        "goal >= 50,000",
        f"the same run's floor loop: {floor:,.0f}/s; sim reaches {rates['call'] / floor:.2f} of it with persist=call",
        f"examples/leader.py: {leader['virtual_s']:.0f} virtual s in {leader['wall_s']} s, "
        f"{leader['speedup']:,}x real time",
    ]
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    return _report.cli("sim", __doc__, run, "turns_per_s", argv)
