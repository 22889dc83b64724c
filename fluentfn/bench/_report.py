"""Benchmark output: a JSON file, a Markdown table, a plot, and a rich table on the terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._load import MAX_LOAD, background_load, machine_ms


def cli(
    name: str,
    doc: str | None,
    run: Callable[[bool], tuple[list[dict[str, Any]], list[str]]],
    metric: str,
    argv: list[str] | None,
) -> int:
    """The command line every benchmark shares: ``[--quick] [--out DIR] [--load N]``."""
    args = parse(name, doc, argv)
    rows, notes = measure(name, run, args)
    write(name, rows, Path(args.out), notes, metric)
    return 0


def parse(name: str, doc: str | None, argv: list[str] | None, quick: str = "a shorter run") -> argparse.Namespace:
    """``--quick``, ``--out DIR`` and ``--load N``."""
    parser = argparse.ArgumentParser(prog=f"fluentfn bench {name}", description=doc)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", default="bench-out", help=f"where {name}.json, .md and .png go")
    parser.add_argument(
        "--load", type=int, default=0, metavar="N", help=f"N busy background processes while measuring (0-{MAX_LOAD})"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.load <= MAX_LOAD:
        parser.error(f"--load takes 0 to {MAX_LOAD} busy processes, not {args.load}")
    return args


def measure(
    name: str, run: Callable[[bool], tuple[list[dict[str, Any]], list[str]]], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[str]]:
    """``run`` under ``--load``; its rows, and its notes with what it ran on."""
    quiet_ms = machine_ms()
    with running(name), background_load(args.load):
        loaded_ms = machine_ms() if args.load else quiet_ms
        rows, notes = run(args.quick)
    machine = f"machine: sum(range(10**6)) = {quiet_ms:.1f} ms"
    if args.load:
        machine += f"; {loaded_ms:.1f} ms with the {args.load} busy background process(es) of --load {args.load}"
    else:
        machine += "; no background load (--load N adds N busy processes)"
    return rows, [*notes, machine]


@contextlib.contextmanager
def running(name: str) -> Iterator[None]:
    """A progress bar (pulsing, with elapsed time) while a benchmark runs."""
    try:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    except ImportError:
        yield
        return
    columns = (SpinnerColumn(), TextColumn(f"fluentfn bench {name}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        progress.add_task(name, total=None)
        yield


def last_line(cmd: list[str], what: str) -> str:
    """Run ``cmd`` (a fresh Python process of a benchmark's) and return its output's last
    line: RuntimeError naming ``what``, with the end of its stderr, if it failed."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def summarize(system: str, samples_us: list[float], **extra: Any) -> dict[str, Any]:
    """p50/p99/mean of round trips in microseconds, as one row."""
    ordered = sorted(samples_us)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    row: dict[str, Any] = {
        "system": system,
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(p99, 1),
        "mean_us": round(statistics.fmean(ordered), 1),
        "n": len(ordered),
    }
    row.update(extra)
    return row


def write(
    name: str, rows: list[dict[str, Any]], out_dir: Path, notes: list[str], metric: str = "p50_us", plot: bool = True
) -> None:
    """Write DIR/NAME.json, .md and .png, and print the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps({"name": name, "rows": rows, "notes": notes}, indent=2))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    (out_dir / f"{name}.md").write_text("\n".join([f"# {name}", "", *lines, "", *notes, ""]))
    if plot:
        _plot(name, rows, out_dir / f"{name}.png", metric)
    _print(name, rows, columns, notes)


def plot_pairs(path: Path, title: str, cases: list[tuple[str, float, float]], unit: str) -> None:
    """Grouped bars, stateful vs FaaS per case (log scale), each labelled with its ratio."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(cases))
    stateful = [c[1] for c in cases]
    faas = [c[2] for c in cases]
    ax.bar([x - 0.2 for x in xs], stateful, width=0.4, label="stateful (fluentfn)", color="#4c72b0")
    ax.bar([x + 0.2 for x in xs], faas, width=0.4, label="FaaS baseline (same code)", color="#dd8452")
    for x, (_, s, f) in zip(xs, cases, strict=True):
        ax.annotate(f"{f / s:.0f}x", (x + 0.2, f), ha="center", va="bottom", fontsize=10)
    ax.set_xticks(list(xs), [c[0] for c in cases])
    ax.set_yscale("log")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot(name: str, rows: list[dict[str, Any]], path: Path, metric: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labeled = [r for r in rows if isinstance(r.get(metric), int | float)]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(labeled)))
    ax.barh([r["system"] for r in labeled], [r[metric] for r in labeled], color="#4c72b0")
    ax.set_xlabel(metric)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_title(f"fluentfn bench {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _print(name: str, rows: list[dict[str, Any]], columns: list[str], notes: list[str]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(json.dumps(rows, indent=2))
        print("\n".join(notes))
        return
    table = Table(title=f"fluentfn bench {name}")
    for c in columns:
        table.add_column(c, overflow="fold")  # wrapped, never cut
    for r in rows:
        table.add_row(*(str(r.get(c, "")) for c in columns))
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough that little needs wrapping
        console = Console(width=200)
    console.print(table)
    for note in notes:
        console.print(note)
