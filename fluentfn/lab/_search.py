"""``fluentfn lab sim``: a workload on many seeds of sim mode, judged by its checker; the
failing seeds, the shortest failing history (shrunk by trying fewer faults and less time),
and a replay of one seed with every artifact."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import fluentfn as ff

from ._runner import RunOptions, run
from ._workloads import WORKLOADS


def sim_once(workload: str, opts: RunOptions) -> dict[str, Any]:
    """One seed (``opts.seed``) of ``workload`` in a fresh simulation."""
    from ..sim import Simulation

    sim = ff.init(mode="sim", seed=opts.seed)
    assert isinstance(sim, Simulation)
    try:
        results = run(WORKLOADS[workload](), opts)
        results["sim_turns"] = sim.stats()["turns"]
        results["sim_wall_s"] = round(sim.wall_s, 3)
        return results
    finally:
        sim.shutdown()


def search(workload: str, seeds: Iterable[int], base: RunOptions,
           say: Callable[[str], None] = lambda line: None) -> dict[str, Any]:  # fmt: skip
    """Run every seed; the failing ones, and the shortest failing history found."""
    failed: list[dict[str, Any]] = []
    turns = 0
    wall = 0.0
    count = 0
    with tempfile.TemporaryDirectory(prefix="fluentfn-sim-") as scratch:
        for seed in seeds:
            opts = dataclasses.replace(base, seed=seed, artifacts=False, progress=None, out=Path(scratch) / str(seed))
            r = sim_once(workload, opts)
            count += 1
            turns += int(r["sim_turns"])
            wall += float(r["sim_wall_s"])
            if r["valid"] is not True:
                failed.append({"seed": seed, "valid": r["valid"], "ops": r["ops"]})
                say(f"seed {seed}: {r['valid']} ({r['ops']} ops)")
        shortest = shrink(workload, min(failed, key=lambda f: (f["ops"], f["seed"]))["seed"], base, scratch) \
            if failed else None  # fmt: skip
    return {
        "workload": workload,
        "seeds": count,
        "failed": len(failed),
        "failing_seeds": [f["seed"] for f in failed][:100],
        "shortest": shortest,
        "turns": turns,
        "turns_per_s": round(turns / wall) if wall else 0,
    }


def shrink(workload: str, seed: int, base: RunOptions, scratch: str) -> dict[str, Any]:
    """The smallest failing run of ``seed``: the same seed with one kind of fault at a
    time, none, and a half, a quarter, an eighth of the time; the fewest operations win."""

    def attempt(nemesis: tuple[str, ...], time_limit_s: float) -> dict[str, Any]:
        opts = dataclasses.replace(base, seed=seed, nemesis=nemesis, time_limit_s=time_limit_s, artifacts=False,
                                   progress=None, out=Path(scratch) / f"shrink-{seed}")  # fmt: skip
        return sim_once(workload, opts)

    r = attempt(base.nemesis, base.time_limit_s)
    best = {"seed": seed, "nemesis": list(base.nemesis), "time_limit_s": base.time_limit_s, "ops": r["ops"]}
    kinds: list[tuple[str, ...]] = [(k,) for k in base.nemesis if len(base.nemesis) > 1] + [()]
    for nemesis in [tuple(base.nemesis), *kinds]:
        for fraction in (1.0, 0.5, 0.25, 0.125):
            t = base.time_limit_s * fraction
            if (nemesis, t) == (tuple(base.nemesis), base.time_limit_s):
                continue
            tried = attempt(nemesis, t)
            if tried["valid"] is False and tried["ops"] < best["ops"]:
                best = {"seed": seed, "nemesis": list(nemesis), "time_limit_s": t, "ops": tried["ops"]}
    shown = ",".join(best["nemesis"]) or "''"
    best["replay"] = (f"fluentfn lab sim {workload} --replay {seed} --nemesis {shown} "
                      f"--time-limit {best['time_limit_s']:g} --nodes {base.nodes} --rate {base.rate:g} "
                      f"--concurrency {base.concurrency} --latency {base.latency_ms:g}")  # fmt: skip
    return best
