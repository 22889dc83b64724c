"""``fluentfn bench elastic``: hosts following a load ramp, against a fixed host and FaaS.

A ramp of concurrent callers (1 → 4 → 16 → 4 → 1; each a closed loop of blocking calls
of a method that computes for 1 ms, over 64 identities, with every fourth message a
tell) runs against four systems, one after the other (a host is one process, so one host
computes on one core at a time):

- ``stateful-autoscale``: ``@ff.actor(min_hosts=1, max_hosts=4, autoscale=...)`` — the
  directory adds hosts and moves partitions to them live, and merges them back;
- ``stateful-autoscale-interval``: the same with ``persist="interval"`` (write-behind
  state handed over on each move);
- ``stateful-fixed``: the same type on one host;
- ``faas``: the same code in FaaS mode (the platform scales environments itself).

Every 0.5 s it records the host count, throughput and p50/p99 latency; at the end it
compares each identity's stored count with the calls its callers saw acknowledged
(``lost``: acknowledged but not stored; ``duplicated``: stored more often than called —
both must be 0; a tell counts once accepted) and reads the migration pause of every moved
partition (how long its callers were held, from when the old host stopped admitting; each
move's, in elastic.json's ``pauses_ms``) and how long lookups of its route were held (the
whole move, its wait for a moment no turn ran included; ``holds_ms``), and each pause in
parts (``pause_parts_ms``; the directory's ``move_phases``): the release request's way to
the old host and back (a saturated host's loop takes it late), its callers' hold there
(late turns, the hand-over), and the adopt on the new host.
Writes elastic.json, elastic.md and a time-series elastic.png.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import fluentfn as ff

from . import _report

IDENTITIES = 64
TICK_S = 0.5


class _Service:
    def __init__(self) -> None:
        self.n = 0

    def work(self) -> int:
        until = time.perf_counter() + 0.001  # 1 ms of computing: a host is one process (one GIL)
        while time.perf_counter() < until:
            pass
        self.n += 1
        return self.n

    def count(self) -> int:
        return self.n


def _types(name: str) -> dict[str, ff.ActorType]:
    auto = ff.Autoscale(target_inflight=4, up_after_s=1.0, down_after_s=3.0)
    return {
        "stateful-autoscale": ff.actor(name=f"{name}Auto", min_hosts=1, max_hosts=4, autoscale=auto)(_Service),
        "stateful-autoscale-interval": ff.actor(
            name=f"{name}AutoBehind", min_hosts=1, max_hosts=4, autoscale=auto, persist="interval"
        )(_Service),
        "stateful-fixed": ff.actor(name=f"{name}Fixed", shards=1)(_Service),
        "faas": ff.actor(name=f"{name}Faas", shards=1)(_Service),
    }


class _Ramp:
    """Closed-loop callers whose number follows the ramp; latencies and acks recorded."""

    def __init__(self, kind: ff.ActorType) -> None:
        self.kind = kind
        self.run_id = os.urandom(4).hex()  # fresh identities: a store may hold earlier runs
        self.acked = [0] * IDENTITIES
        self.errors: list[str] = []
        self.samples: list[tuple[float, float]] = []  # (end time, latency s)
        self._lock = threading.Lock()
        self._active = 0
        self._stop = threading.Event()

    def caller(self, index: int) -> None:
        i = index * 5
        while not self._stop.is_set() and index < self._active:
            key = i % IDENTITIES
            i += 1
            t0 = time.perf_counter()
            try:
                if i % 4 == 0:  # a tell: acknowledged once accepted
                    self.kind[f"{self.run_id}-{key}"].work.tell()
                    with self._lock:
                        self.acked[key] += 1
                    continue
                self.kind[f"{self.run_id}-{key}"].work()
            except ff.FluentError as exc:
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            end = time.perf_counter()
            with self._lock:
                self.acked[key] += 1
                self.samples.append((end, end - t0))

    def run(self, steps: list[tuple[int, float]], watch: Any) -> list[dict[str, Any]]:
        threads: list[threading.Thread] = []
        series: list[dict[str, Any]] = []
        start = time.perf_counter()
        for callers, seconds in steps:
            self._active = callers
            while len(threads) < callers:
                threads.append(threading.Thread(target=self.caller, args=(len(threads),), daemon=True))
                threads[-1].start()
            threads = [t for i, t in enumerate(threads) if i < callers or t.is_alive()]
            until = time.perf_counter() + seconds
            while time.perf_counter() < until:
                tick = time.perf_counter()
                time.sleep(TICK_S)
                with self._lock:
                    recent = [lat for end, lat in self.samples if end >= tick]
                series.append(_point(tick + TICK_S - start, callers, watch(), recent))
        self._active = 0
        self._stop.set()
        for t in threads:
            t.join(60)
        return series


def _point(t: float, callers: int, hosts: int, latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "t_s": round(t, 2),
        "callers": callers,
        "hosts": hosts,
        "calls_per_s": round(len(ordered) / TICK_S),
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
        "p99_ms": round(_p99(ordered) * 1000, 2) if ordered else None,
    }


def _one(system: str, kind: ff.ActorType, steps: list[tuple[int, float]]) -> tuple[dict[str, Any], list[Any]]:
    from ..runtime._cluster import current
    from ..runtime._raycall import get_ray

    cluster = current()
    kind["warm"].work()

    def hosts() -> int:
        if cluster.mode == "faas":
            return _environments(cluster)
        return len(cluster.placement(kind))

    ramp = _Ramp(kind)
    series = ramp.run(steps, hosts)

    def stored_now() -> list[int]:
        return [kind[f"{ramp.run_id}-{i}"].count() for i in range(IDENTITIES)]

    stored = stored_now()
    settle = time.monotonic() + 30  # tells accepted last may still be on their way
    while stored != ramp.acked and time.monotonic() < settle:
        time.sleep(0.2)
        stored = stored_now()
    lost = sum(max(0, a - s) for a, s in zip(ramp.acked, stored, strict=True))
    duplicated = sum(max(0, s - a) for a, s in zip(ramp.acked, stored, strict=True))
    pauses: list[float] = []
    holds: list[float] = []
    phases: list[dict[str, float]] = []
    if cluster.mode == "stateful":
        pauses = sorted(get_ray(cluster.directory.move_pauses.remote(kind.name)))
        holds = sorted(get_ray(cluster.directory.move_holds.remote(kind.name)))
        phases = get_ray(cluster.directory.move_phases.remote(kind.name))
    lat = sorted(lat for _, lat in ramp.samples)
    peak = max(c for c, _ in steps)
    at_peak = [p["calls_per_s"] for p in series if p["callers"] == peak]
    row = {
        "system": system,
        "calls": len(lat),
        "calls_per_s": round(len(lat) / sum(s for _, s in steps)),
        f"calls_per_s_at_{peak}": round(statistics.fmean(at_peak)) if at_peak else None,
        "p50_ms": round(statistics.median(lat) * 1000, 2),
        "p99_ms": round(_p99(lat) * 1000, 2),
        "max_hosts": max(p["hosts"] for p in series),
        "hosts_at_end": series[-1]["hosts"],
        "errors": len(ramp.errors),
        "lost": lost,
        "duplicated": duplicated,
        "moves": len(pauses),
        "pause_p50_ms": round(statistics.median(pauses), 1) if pauses else None,
        "pause_p99_ms": round(_p99(pauses), 1) if pauses else None,
        "hold_p99_ms": round(_p99(holds), 1) if holds else None,
    }
    _PAUSES[system] = [round(p, 2) for p in pauses]
    _HOLDS[system] = [round(h, 2) for h in holds]
    _PHASES[system] = [{k: round(v, 2) for k, v in m.items()} for m in phases]
    if ramp.errors:
        row["first_error"] = ramp.errors[0][:200]
    return row, series


def _environments(cluster: Any) -> int:
    """FaaS: execution environments alive now, busy or idle (the platform's own scaling)."""
    from ..runtime._faas import platform_handle
    from ..runtime._raycall import get_ray

    envs = get_ray(platform_handle(cluster.runtime.config).environments.remote())
    return sum(e["busy"] + e["idle"] for e in envs.values())


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    hold = 4.0 if quick else 10.0
    steps = [(1, hold), (4, hold), (16, 2 * hold), (4, hold), (1, 2 * hold)]
    types = _types("BenchElastic")
    rows: list[dict[str, Any]] = []
    all_series: dict[str, list[Any]] = {}
    for system in ("stateful-autoscale", "stateful-autoscale-interval", "stateful-fixed", "faas"):
        print(f"  {system} ...", flush=True)
        mode = "faas" if system == "faas" else "stateful"
        with ff.init(mode=mode, namespace=f"bench-elastic-{system}"):
            row, series = _one(system, types[system], steps)
        rows.append(row)
        all_series[system] = series
    _SERIES.clear()
    _SERIES.update(all_series)
    auto = rows[0]
    notes = [
        f"Ramp: callers {' -> '.join(str(c) for c, _ in steps)} (each step {hold:g}-{2 * hold:g} s), "
        f"{IDENTITIES} identities, 1 ms of computing per call.",
        f"Autoscaled: up to {auto['max_hosts']} hosts, {auto['hosts_at_end']} at the end; {auto['moves']} partition "
        f"moves, pause p50 {auto['pause_p50_ms']} ms, p99 {auto['pause_p99_ms']} ms (callers with the route, from "
        f"when the old host stopped admitting; a lookup of the route, held the whole move: p99 "
        f"{auto['hold_p99_ms']} ms); "
        f"lost {sum(r['lost'] for r in rows)}, duplicated {sum(r['duplicated'] for r in rows)} over all systems.",
        "FaaS 'hosts' are the platform's execution environments alive at each sample.",
    ]
    notes += [f"{system}: {_parts(moves)}" for system, moves in _PHASES.items() if moves]
    return rows, notes


def _p99(ordered: list[float]) -> float:
    """The 99th percentile of a sorted, non-empty list (its nearest rank)."""
    return ordered[int(len(ordered) * 0.99)]


def _parts(moves: list[dict[str, float]]) -> str:
    """A system's move pauses in parts (at least one move): p50 / p99 of each (ms)."""
    out = []
    for part, what in (
        ("transit", "release request's way to the old host and back"),
        ("held", "hold on the old host"),
        ("adopt", "adopt on the new one"),
    ):
        values = sorted(m[part] for m in moves)
        out.append(f"{what} {statistics.median(values):.1f} / {_p99(values):.1f}")
    return "pause parts, p50 / p99 ms: " + "; ".join(out)


_SERIES: dict[str, list[Any]] = {}
_PAUSES: dict[str, list[float]] = {}  # every move's pause (ms), sorted, by system
_HOLDS: dict[str, list[float]] = {}  # every move's hold of its route's lookups (ms), sorted, by system
_PHASES: dict[str, list[dict[str, float]]] = {}  # every move's pause in parts (ms), by system


def plot(path: Path) -> None:
    """Host count, throughput and p99 latency over time for each system."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for system, series in _SERIES.items():
        ts = [p["t_s"] for p in series]
        axes[0].step(ts, [p["hosts"] for p in series], where="post", label=system)
        axes[1].plot(ts, [p["calls_per_s"] for p in series], label=system)
        axes[2].plot(ts, [p["p99_ms"] for p in series], label=system)
    first = next(iter(_SERIES.values()), [])
    ax_callers = axes[0].twinx()
    ax_callers.step([p["t_s"] for p in first], [p["callers"] for p in first], where="post", color="grey", ls=":")
    ax_callers.set_ylabel("callers (dotted)")
    axes[0].set_ylabel("hosts / environments")
    axes[1].set_ylabel("calls/s")
    axes[2].set_ylabel("p99 latency (ms)")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("time (s)")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[0].set_title("fluentfn bench elastic: a load ramp")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = _report.parse("elastic", __doc__, argv, quick="a shorter ramp (about 2 minutes)")
    out = Path(args.out)
    rows, notes = _report.measure("elastic", run, args)
    _report.write("elastic", rows, out, notes, "p99_ms", plot=False)
    import json

    data = json.loads((out / "elastic.json").read_text())
    data["series"] = _SERIES
    data["pauses_ms"] = _PAUSES
    data["holds_ms"] = _HOLDS
    data["pause_parts_ms"] = _PHASES
    (out / "elastic.json").write_text(json.dumps(data, indent=2))
    plot(out / "elastic.png")
    return 0
