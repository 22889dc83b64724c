"""``fluentfn lab run``: a workload against the cluster at a fixed rate, with a nemesis,
recorded and judged.

Client processes (threads) take operations from the workload's generator at ``rate``
per second in all, and record each as Jepsen does: ``invoke``, then ``ok``, ``fail``
(it definitely did not happen: refused, or the workload says so) or ``info``
(``CallTimeout`` / ``Unavailable``: it may have run). The nemesis alternates faults and
calm every few seconds, from one seeded random source. At the end: faults healed, a
quiet moment, the workload's final reads, then ``history.jsonl``, ``messages.jsonl``,
``results.json``, ``latency-raw.png`` and ``rate.png`` in the run's folder.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import fluentfn as ff

from .. import _prices
from ..errors import FluentError
from . import _api, _hosts
from ._checkers import CHECKERS
from ._history import Recorder, operations
from ._linear import check
from ._models import MODELS
from ._nemesis import apply, current, gather
from ._plots import plot_run
from ._workloads import DidNotHappen, Workload

NEMESES = ("partition", "loss", "delay", "kill", "pause")
MAX_SETTLE_S = 60.0  # how long the final reads wait for a workload to say it has settled
HOST_FAULTS = ("kill", "pause")  # with these, each node gets a host of its own
_DEFINITE = (ff.InvalidRequest, ff.NotFound, ff.Overloaded, ff.ActorError)  # refused or raised: did not happen


@dataclass
class RunOptions:
    nodes: int = 3
    rate: float = 10.0
    time_limit_s: float = 10.0
    concurrency: int = 4
    nemesis: tuple[str, ...] = ()
    nemesis_interval_s: float = 2.0
    latency_ms: float = 0.0  # every message between the workload's identities
    topology: str = "tree"
    seed: int = 0
    progress: Callable[[str], None] | None = None  # given a short status line about once a second
    own_hosts: bool | None = None  # each node on a host of its own (None: when the nemesis kills or pauses)
    artifacts: bool = True  # history, messages and plots in ``out`` (a seed search keeps only its verdicts)
    out: Path = field(default_factory=lambda: Path("lab-run"))


class _Pacer:
    """Hands out start times ``1/rate`` apart to whichever client asks."""

    def __init__(self, rate: float, until: float) -> None:
        self._gap = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._until = until
        self._lock = threading.Lock()

    def wait(self) -> bool:
        with self._lock:
            start = self._next
            self._next = max(self._next + self._gap, time.monotonic())
        if start >= self._until:
            return False
        time.sleep(max(0.0, start - time.monotonic()))
        return True


def _client(process: int, w: Workload, nodes: list[str], rec: Recorder, pacer: _Pacer, seed: int,
            latencies: list[float]) -> None:  # fmt: skip
    rng = random.Random(f"{seed}:client:{process}")
    while pacer.wait():
        f, value = w.next_op(rng, nodes)
        _one(process, w, f, value, nodes, rng, rec, latencies)


def _one(process: int | str, w: Workload, f: str, value: Any, nodes: list[str], rng: random.Random,
         rec: Recorder, latencies: list[float]) -> None:  # fmt: skip
    rec.invoke(process, f, value)
    t0 = time.perf_counter()
    try:
        out = w.run(f, value, nodes, rng)
    except (ff.CallTimeout, ff.Unavailable):
        rec.info(process)
    except (*_DEFINITE, DidNotHappen):
        rec.fail(process, value)
    except Exception:  # anything else: it may have run
        rec.info(process)
    else:
        rec.ok(process, out)
        latencies.append((time.perf_counter() - t0) * 1000)


class _Stop(Protocol):
    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class _SimStop:
    """A stop flag for simulated clients: waiting is sleeping on the virtual clock."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        time.sleep(timeout or 0.0)
        return self._set


def _nemesis(kinds: tuple[str, ...], members: list[str], stop: _Stop, seed: int, every_s: float,
             log: list[dict[str, Any]], clock: Callable[[], float]) -> None:  # fmt: skip
    """Faults on, calm, faults on...: each round one of ``kinds`` for ``every_s``; a
    partition cuts a random half of ``members`` (addresses) off the rest and the clients."""
    rng = random.Random(f"{seed}:nemesis")
    calm = current()  # the run's own settings (latency, recording): restored after each round
    while not stop.wait(every_s):
        kind = rng.choice(kinds)
        shuffled = rng.sample(members, len(members))
        cut = max(1, len(members) // 2)
        half, rest = shuffled[:cut], [*shuffled[cut:], "client"]
        start = clock()  # the history's clock: the plots shade these seconds
        entry: dict[str, Any] = {"kind": kind, "start_s": round(start, 3)}
        log.append(entry)  # its end is filled in when the round ends
        if kind == "partition":
            _api.partition(half, rest)
            entry["groups"] = [half, rest]
        elif kind == "loss":
            _api.loss(0.3)
        elif kind == "delay":
            _api.delay(50, 40)
        elif kind in HOST_FAULTS:
            entry["target"] = half[0]
            try:
                entry["pid"] = _hosts.kill(half[0]) if kind == "kill" else _hosts.pause(half[0], every_s)
            except FluentError as e:  # no host to hit this round (one still restarting): said in the results
                entry["error"] = str(e)
        ended = stop.wait(every_s)
        apply(calm)
        _hosts.resume_all()
        entry["end_s"] = round(clock(), 3)
        if ended:
            return


def _progress(say: Callable[[str], None], rec: Recorder, log: list[dict[str, Any]], t0: float,
              stop: threading.Event) -> None:  # fmt: skip
    while not stop.wait(1.0):
        done = [e.type for e in list(rec.events) if e.type != "invoke"]
        fault = log[-1]["kind"] if log and "end_s" not in log[-1] else "calm"
        say(f"{time.monotonic() - t0:5.1f} s  ops {len(done)}  ok {done.count('ok')}  fail {done.count('fail')}  "
            f"info {done.count('info')}  nemesis {fault}")  # fmt: skip


@dataclass
class _Run:
    """One run's moving parts and what it gathered."""

    w: Workload
    opts: RunOptions
    nodes: list[str]
    rec: Recorder = field(default_factory=Recorder)
    latencies: list[float] = field(default_factory=list)
    nemesis_log: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _drive(r: _Run, start: Callable[..., Any], join: Callable[[Any], None], stop: _Stop) -> None:
    """Set up, run the clients and the nemesis, heal, settle, make the final reads and
    report: with ``start``/``join`` on threads, or on a simulation's clients."""
    w, opts, nodes = r.w, r.opts, r.nodes
    _api.seed_faults(opts.seed)
    if opts.latency_ms:
        _api.delay(opts.latency_ms, 0.0, between=(w.type_name, w.type_name))
    if opts.artifacts:
        _api.record(opts.out)
    w.setup(nodes, opts.topology)
    started = time.monotonic()
    pacer = _Pacer(opts.rate, started + opts.time_limit_s)
    members = [f"{w.type_name}/{n}" for n in nodes]
    try:
        chaos = None
        if opts.nemesis:
            args = (opts.nemesis, members, stop, opts.seed, opts.nemesis_interval_s, r.nemesis_log, r.rec.seconds)
            chaos = start(_nemesis, *args)
        clients = [start(_client, p, w, nodes, r.rec, pacer, opts.seed, r.latencies) for p in range(opts.concurrency)]
        for c in clients:
            join(c)
        stop.set()
        if chaos is not None:
            join(chaos)
        _api.heal()
        time.sleep(w.settle_s)  # a quiet moment: retries, restarts and late writes settle
        quiet_by = time.monotonic() + MAX_SETTLE_S
        while w.settled is not None and not w.settled(nodes) and time.monotonic() < quiet_by:
            time.sleep(1.0)  # (a slow system, the FaaS baseline: its gossip takes longer to quiesce)
        rng = random.Random(f"{opts.seed}:final")
        for process, f, value in w.finals(nodes):
            _one(process, w, f, value, nodes, rng, r.rec, [])
    finally:  # whatever happened: no host left stopped, no fault left in force
        stop.set()
        _hosts.resume_all()
        _api.clear_faults()
        _api.stop_recording()
        r.seconds = time.monotonic() - started
    r.report = w.report(nodes, r.rec.events, r.rec.wall_t0)  # its reads are not the run's messages


def _on_threads(r: _Run) -> None:
    stop = threading.Event()

    def start(fn: Callable[..., None], *args: Any) -> threading.Thread:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        return t

    if r.opts.progress is not None:
        start(_progress, r.opts.progress, r.rec, r.nemesis_log, time.monotonic(), stop)
    _drive(r, start, lambda t: t.join(), stop)


def _on_simulation(r: _Run, world: Any) -> None:
    from ..sim._green import wait
    from ..sim._simulation import block, run_client

    def start(fn: Callable[..., None], *args: Any) -> Any:
        return run_client(world, fn, *args)

    def body() -> None:
        r.rec = Recorder()  # on the virtual clock: its times repeat with the seed
        _drive(r, start, wait, _SimStop())

    block(world, run_client(world, body))


def run(w: Workload, opts: RunOptions) -> dict[str, Any]:
    """Run ``w`` per ``opts`` on the current cluster; returns the results (also written)."""
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("messages-*.jsonl"):
        stale.unlink()
    world = _hosts.sim_world()
    # this run's identities: none left from an earlier run (a simulation starts empty, and repeats)
    tag = f"{opts.seed}" if world is not None else f"{opts.seed}-{os.urandom(3).hex()}"
    own = opts.own_hosts if opts.own_hosts is not None else any(k in HOST_FAULTS for k in opts.nemesis)
    own = own and _hosts.stateful()  # FaaS mode has no hosts to place on
    nodes = _hosts.own_hosts(w.type_name, opts.nodes, f"n{tag}-") if own else [f"n{i}-{tag}" for i in range(opts.nodes)]
    used_before = ff.stats()
    r = _Run(w, opts, nodes)
    if world is None:
        _on_threads(r)
    else:
        _on_simulation(r, world)
    mode = "sim" if world is not None else "stateful" if _hosts.stateful() else "faas"
    cost = _cost(_prices.delta(ff.stats(), used_before), r.seconds, len(nodes) if own else 1)
    rec = r.rec
    events = rec.events
    messages = 0
    if opts.artifacts:
        rec.write(out / "history.jsonl")
        plot_run(events, r.nemesis_log, out)
        messages = sum(m.get("kind") in ("call", "tell") for m in gather(out))
    if w.checker in CHECKERS:
        verdict = CHECKERS[w.checker](events)
        valid = verdict["valid"]
    else:
        result = check(MODELS[w.checker], operations(events), budget_s=60)
        valid, verdict = result.valid, {"valid": result.valid, "transitions": result.transitions}
    ops = [e for e in events if e.type != "invoke"]
    results = {
        "workload": w.name,
        "valid": valid,
        "checker": verdict,
        "ops": len(ops),
        "ok": sum(e.type == "ok" for e in ops),
        "fail": sum(e.type == "fail" for e in ops),
        "info": sum(e.type == "info" for e in ops),
        "availability": round(sum(e.type == "ok" for e in ops) / max(1, len(ops)), 3),
        "msgs_per_op": round(messages / max(1, len(ops)), 2) if opts.artifacts else None,
        "latency_ms": _percentiles(r.latencies),
        **r.report,
        "nemesis": r.nemesis_log,
        "seed": opts.seed,
        "nodes": nodes,
        "mode": mode,
        "cost": {**cost, "usd_per_1k_ops": round(cost["usd"] * 1000 / max(1, len(ops)), 8)},
        "seconds": round(r.seconds, 2),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=repr))
    return results


def _cost(used: dict[str, int], seconds: float, hosts: int) -> dict[str, Any]:
    """The run's priced usage (the price table of ``fluentfn bench paper``): FaaS,
    invocations, GB-seconds and storage requests; stateful, a VM per host for the run's
    time (one VM when the nodes share hosts) and the same storage requests."""
    table = _prices.prices()
    if _hosts.stateful():
        usd = _prices.stateful_cost(seconds, used, {**table, "vms": float(hosts)})
    else:
        usd = _prices.faas_cost(used, table)
    keep = ("invocations", "billed_ms", "cold_starts", "object_writes", "object_reads", "record_write_units",
            "record_read_units", "messages_via_storage")  # fmt: skip
    return {"usd": round(usd, 8), "prices_as_of": _prices.PRICES_AS_OF, "used": {k: used.get(k, 0) for k in keep}}


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max": round(ordered[-1], 2),
    }
