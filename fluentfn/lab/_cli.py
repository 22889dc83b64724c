"""``fluentfn lab``: check a recorded history against a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._checkers import CHECKERS
from ._diagram import draw
from ._history import HistoryError, operations, read_jsonl
from ._jepsenlog import parse_jepsen_log
from ._linear import check
from ._models import MODELS, ModelError
from ._nemesis import gather
from ._plots import plot_run
from ._report import plot_counterexample, verdict_json

app = typer.Typer(help="Experiments: histories, checkers (and, to come, faults and message diagrams).")
EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_BAD_HISTORY = 0, 1, 2, 3


@app.command(name="check")
def check_cmd(
    history: Annotated[Path, typer.Argument(help="a history: JSONL events, or a Jepsen text log (.log)")],
    model: Annotated[str, typer.Option("--model", "-m", help=f"one of: {', '.join([*MODELS, *CHECKERS])}")],
    budget_s: Annotated[float, typer.Option("--budget", help="seconds of search before 'unknown'")] = 60.0,
    plot: Annotated[Path | None, typer.Option("--plot", help="draw a counterexample here (PNG or SVG)")] = None,
) -> None:
    """Judge HISTORY: linearizable under MODEL (register, cas-register, kv), or valid for a
    workload's checker (set, broadcast, g-counter, unique-ids). Prints a JSON result;
    exits 0 (valid), 1 (not: with a counterexample), 2 (unknown: the budget ran out, or
    nothing to judge by) or 3 (the history or model could not be read)."""
    chosen = MODELS.get(model)
    checker = CHECKERS.get(model)
    if chosen is None and checker is None:
        typer.echo(f"unknown model {model!r}: one of {', '.join([*MODELS, *CHECKERS])}", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY)
    try:
        events = parse_jepsen_log(history.read_text()) if history.suffix == ".log" else read_jsonl(history)
        if checker is not None:
            result = checker(events)
        else:
            assert chosen is not None
            verdict = check(chosen, operations(events), budget_s=budget_s)
            result = verdict_json(verdict, chosen)
            if verdict.valid is False and plot is not None:
                plot_counterexample(verdict, chosen, plot)
    except (OSError, UnicodeDecodeError, HistoryError, ModelError, ValueError, TypeError) as exc:
        said = str(exc)  # (the reader's own errors, and the OS's, already name the file)
        typer.echo(said if str(history) in said else f"{history}: {said}", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY) from None
    typer.echo(json.dumps(result, default=repr))
    if result["valid"] is True:
        raise typer.Exit(EXIT_VALID)
    raise typer.Exit(EXIT_INVALID if result["valid"] is False else EXIT_UNKNOWN)


@app.command(name="diagram")
def diagram_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a run's folder (its messages-*.jsonl, or messages.jsonl)")],
    limit: Annotated[int, typer.Option(help="draw the first N requests")] = 200,
    seconds: Annotated[bool, typer.Option(help="time down in seconds (default: order of events)")] = False,
) -> None:
    """Draw RUN_DIR's messages as a Lamport diagram (diagram.png and diagram.svg there)
    and, where it has a history, its latency and rate over time (latency-raw.png, rate.png)."""
    if not run_dir.is_dir():
        typer.echo(f"{run_dir}: not a folder", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY)
    if (run_dir / "history.jsonl").exists():
        results = run_dir / "results.json"
        nemesis = json.loads(results.read_text()).get("nemesis", []) if results.exists() else []
        try:
            events = read_jsonl(run_dir / "history.jsonl")
        except HistoryError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(EXIT_BAD_HISTORY) from None
        for path in plot_run(events, nemesis, run_dir):
            typer.echo(str(path))
    messages = gather(run_dir) if any(run_dir.glob("messages-*.jsonl")) else _read(run_dir / "messages.jsonl")
    if not messages:
        typer.echo(f"{run_dir}: no recorded messages (record with fluentfn.lab.record)", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY)
    try:
        drawn = draw(messages, run_dir / "diagram", limit, seconds=seconds)
    except ValueError as e:
        typer.echo(f"{run_dir}: {e}", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY) from None
    for path in drawn:
        typer.echo(str(path))


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


@app.command(name="run")
def run_cmd(
    workload: Annotated[str, typer.Argument(help="unique_ids, g_counter, broadcast, lin_kv, kafka, txn, NAME_broken")],
    nodes: Annotated[int, typer.Option(help="identities of the workload's type")] = 3,
    rate: Annotated[float, typer.Option(help="client operations per second, in all")] = 10.0,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds of operations")] = 10.0,
    concurrency: Annotated[int, typer.Option(help="client processes (threads)")] = 4,
    nemesis: Annotated[str, typer.Option(help="comma-separated: partition, loss, delay, kill, pause")] = "",
    nemesis_interval: Annotated[float, typer.Option("--nemesis-interval", help="seconds per fault, then calm")] = 2.0,
    own_hosts: Annotated[
        bool | None, typer.Option("--own-hosts/--shared-hosts", help="a host per node (default: with kill or pause)")
    ] = None,
    seed: Annotated[int, typer.Option(help="the one seed of every random choice")] = 0,
    latency: Annotated[float, typer.Option(help="ms added to every message between the nodes")] = 0.0,
    topology: Annotated[str, typer.Option(help="broadcast: tree, line or total")] = "tree",
    out: Annotated[Path, typer.Option(help="the run's folder")] = Path("lab-run"),
    address: Annotated[str | None, typer.Option(help="join this cluster (default: an embedded one)")] = None,
    mode: Annotated[
        str, typer.Option(help="stateful; faas: the FaaS baseline; sim: a deterministic simulation of --seed")
    ] = "stateful",
) -> None:
    """Run WORKLOAD at RATE for TIME_LIMIT seconds with the nemesis, record and judge it:
    history.jsonl, messages.jsonl, results.json and a diagram in OUT. Exits like check."""
    import fluentfn as ff

    from ._runner import NEMESES, RunOptions
    from ._runner import run as run_workload
    from ._workloads import WORKLOADS

    make = WORKLOADS.get(workload)
    kinds = tuple(k for k in nemesis.split(",") if k)
    bad = [k for k in kinds if k not in NEMESES]
    if (
        make is None
        or bad
        or nodes < 1
        or rate <= 0
        or time_limit <= 0
        or concurrency < 1
        or latency < 0
        or nemesis_interval <= 0
        or mode not in ("stateful", "faas", "sim")
        or (mode == "sim" and address is not None)
        or (topology not in ("tree", "line", "total"))
    ):
        why = (
            f"unknown workload {workload!r}"
            if make is None
            else f"unknown nemesis {bad}"
            if bad
            else "bad numbers or mode"
        )
        typer.echo(f"{why}: workloads {', '.join(WORKLOADS)}; nemeses {', '.join(NEMESES)}", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY)
    typer.echo(
        f"seed {seed}: {workload} ({mode} mode), {nodes} nodes, {rate:g} ops/s for {time_limit:g} s, "
        f"nemesis {kinds or 'none'}"
    )
    opts = RunOptions(nodes=nodes, rate=rate, time_limit_s=time_limit, concurrency=concurrency, nemesis=kinds,
                      seed=seed, out=out, latency_ms=latency, topology=topology, own_hosts=own_hosts,
                      progress=lambda line: typer.echo(line, err=True),
                      nemesis_interval_s=nemesis_interval)  # fmt: skip
    with ff.init(mode="sim", seed=seed) if mode == "sim" else ff.init(address=address, mode=mode):
        results = run_workload(make(), opts)
    draw(gather(out), out / "diagram", 200)
    shown = {k: results[k] for k in ("valid", "ops", "ok", "fail", "info", "availability", "msgs_per_op")}
    shown["cost_usd_per_1k_ops"] = results["cost"]["usd_per_1k_ops"]
    typer.echo(json.dumps({**shown, "latency_ms": results["latency_ms"],
                           **({"stable_latency_ms": results["stable_latency_ms"]} if "stable_latency_ms" in results
                              else {})}))  # fmt: skip
    if results["valid"] is True:
        raise typer.Exit(EXIT_VALID)
    raise typer.Exit(EXIT_INVALID if results["valid"] is False else EXIT_UNKNOWN)


@app.command(name="sim")
def sim_cmd(
    workload: Annotated[str, typer.Argument(help="unique_ids, g_counter, broadcast, lin_kv, kafka, txn, NAME_broken")],
    seeds: Annotated[int, typer.Option(help="how many seeds to run")] = 100,
    first_seed: Annotated[int, typer.Option("--first-seed", help="the first seed")] = 1,
    replay: Annotated[int | None, typer.Option(help="run this one seed with every artifact, into --out")] = None,
    out: Annotated[Path, typer.Option(help="the replay's folder")] = Path("lab-sim"),
    nodes: Annotated[int, typer.Option(help="identities of the workload's type")] = 5,
    rate: Annotated[float, typer.Option(help="client operations per (virtual) second, in all")] = 20.0,
    time_limit: Annotated[float, typer.Option("--time-limit", help="virtual seconds of operations")] = 10.0,
    concurrency: Annotated[int, typer.Option(help="simulated clients")] = 4,
    nemesis: Annotated[
        str | None, typer.Option(help="partition, loss, delay, kill, pause (default: what the workload survives)")
    ] = None,
    nemesis_interval: Annotated[float, typer.Option("--nemesis-interval", help="virtual seconds per fault")] = 2.0,
    latency: Annotated[float, typer.Option(help="ms added to every message between the nodes")] = 5.0,
) -> None:
    """Run WORKLOAD in sim mode on SEEDS seeds (each a deterministic simulation), judge each
    with its checker, and print the failing seeds with the shortest failing history; exits
    1 when a seed fails. --replay SEED reruns one seed exactly and writes history.jsonl,
    messages.jsonl, results.json, the diagram and the plots to --out."""
    import os
    import sys

    from ._runner import NEMESES, RunOptions
    from ._search import search, sim_once
    from ._workloads import WORKLOADS

    if os.environ.get("PYTHONHASHSEED") != "0":  # set order of str keys too must repeat in a replay
        os.execve(sys.executable, [sys.executable, "-m", "fluentfn.cli", *sys.argv[1:]],
                  {**os.environ, "PYTHONHASHSEED": "0"})  # fmt: skip
    if nemesis is None and workload in WORKLOADS:
        nemesis = ",".join(WORKLOADS[workload]().survives)
    kinds = tuple(k for k in (nemesis or "").split(",") if k)
    bad = [k for k in kinds if k not in NEMESES]
    if workload not in WORKLOADS or bad or seeds < 1 or nodes < 1 or rate <= 0 or time_limit <= 0 or latency < 0:
        why = f"unknown workload {workload!r}" if workload not in WORKLOADS else f"unknown nemesis {bad}" if bad \
            else "bad numbers"  # fmt: skip
        typer.echo(f"{why}: workloads {', '.join(WORKLOADS)}; nemeses {', '.join(NEMESES)}", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY)
    base = RunOptions(nodes=nodes, rate=rate, time_limit_s=time_limit, concurrency=concurrency, nemesis=kinds,
                      nemesis_interval_s=nemesis_interval, latency_ms=latency, out=out)  # fmt: skip
    if replay is not None:
        import dataclasses

        results = sim_once(workload, dataclasses.replace(base, seed=replay))
        draw(gather(out), out / "diagram", 200)
        shown = {k: results[k] for k in ("valid", "ops", "ok", "fail", "info", "msgs_per_op", "seed")}
        typer.echo(json.dumps({**shown, "out": str(out)}))
        raise typer.Exit(EXIT_VALID if results["valid"] is True else EXIT_INVALID)
    summary = search(workload, range(first_seed, first_seed + seeds), base, lambda line: typer.echo(line, err=True))
    typer.echo(json.dumps(summary))
    raise typer.Exit(EXIT_INVALID if summary["failed"] else EXIT_VALID)
