"""Benchmark output: a JSON file, a Markdown table, a plot, and a rich table on the terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def cli(
    name: str,
    doc: str | None,
    run: Callable[[bool], tuple[list[dict[str, Any]], list[str]]],
    metric: str,
    argv: list[str] | None,
) -> int:
    """The command line every benchmark shares: ``[--quick] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog=f"fluentfn bench {name}", description=doc)
    parser.add_argument("--quick", action="store_true", help="a shorter run (a few minutes on 2 cores)")
    parser.add_argument("--out", default="bench-out", help="where NAME.json, NAME.md and NAME.png go")
    args = parser.parse_args(argv)
    with running(name):
        rows, notes = run(args.quick)
    write(name, rows, Path(args.out), notes, metric)
    return 0


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
