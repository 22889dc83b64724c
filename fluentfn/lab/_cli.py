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
        typer.echo(f"{history}: {exc}", err=True)
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
    """Draw RUN_DIR's messages as a Lamport diagram: diagram.png and diagram.svg there."""
    if not run_dir.is_dir():
        typer.echo(f"{run_dir}: not a folder", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY)
    messages = gather(run_dir) if any(run_dir.glob("messages-*.jsonl")) else _read(run_dir / "messages.jsonl")
    if not messages:
        typer.echo(f"{run_dir}: no recorded messages (record with fluentfn.lab.record)", err=True)
        raise typer.Exit(EXIT_BAD_HISTORY)
    for path in draw(messages, run_dir / "diagram", limit, seconds=seconds):
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
