"""A run's latency and throughput over time, with the nemesis' intervals shaded (as
Jepsen's ``latency-raw.png`` and ``rate.png``)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ._history import Event

_COLORS = {"ok": "tab:blue", "fail": "tab:red", "info": "tab:orange"}
_SHADES = {"partition": "0.45", "kill": "tab:red", "pause": "tab:purple", "loss": "tab:olive", "delay": "tab:cyan"}


def _completed(events: list[Event]) -> list[tuple[str, str, float, float]]:
    """(type, f, invoked at s, latency ms) of each completed operation."""
    opened: dict[int | str, Event] = {}
    out = []
    for e in events:
        if e.type == "invoke":
            opened[e.process] = e
        elif (inv := opened.pop(e.process, None)) is not None:
            out.append((e.type, inv.f, inv.time / 1e9, (e.time - inv.time) / 1e6))
    return out


def _shade(ax: Any, nemesis: list[dict[str, Any]]) -> None:
    labelled: set[str] = set()
    for n in nemesis:
        kind = str(n.get("kind"))
        end = n.get("end_s", n.get("start_s"))
        label = None if kind in labelled else kind
        labelled.add(kind)
        ax.axvspan(n["start_s"], end, color=_SHADES.get(kind, "0.8"), alpha=0.15, label=label, lw=0)


def _finish(plt: Any, fig: Any, ax: Any, ylabel: str, what: str, path: Path) -> None:
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{what}, by outcome (shaded: nemesis)")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_run(events: list[Event], nemesis: list[dict[str, Any]], folder: str | Path) -> list[Path]:
    """Write ``latency-raw.png`` (each operation at its invocation, by outcome) and
    ``rate.png`` (completions per second, by outcome) in ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    done = _completed(events)
    paths = [folder / "latency-raw.png", folder / "rate.png"]
    fig, ax = plt.subplots(figsize=(10, 4))
    _shade(ax, nemesis)
    for kind in ("ok", "info", "fail"):
        pts = [(t, ms) for k, _, t, ms in done if k == kind]
        if pts:
            ax.scatter([t for t, _ in pts], [max(ms, 0.01) for _, ms in pts], s=6, color=_COLORS[kind], label=kind)
    ax.set_yscale("log")
    _finish(plt, fig, ax, "latency (ms)", "latency of each operation", paths[0])
    fig, ax = plt.subplots(figsize=(10, 4))
    _shade(ax, nemesis)
    buckets: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for kind, _, t, ms in done:
        buckets[kind][int(t + ms / 1000)] += 1
    last = max((s for b in buckets.values() for s in b), default=0)
    for kind in ("ok", "info", "fail"):
        if kind in buckets:
            xs = list(range(last + 1))
            ax.plot(xs, [buckets[kind].get(x, 0) for x in xs], color=_COLORS[kind], label=kind, drawstyle="steps-post")
    _finish(plt, fig, ax, "operations completed per second", "throughput", paths[1])
    return paths
