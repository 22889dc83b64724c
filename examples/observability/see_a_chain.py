"""See one call chain: its trace across identities, its time breakdown, and `fluentfn top`.

    python examples/observability/see_a_chain.py [--out DIR]

Starts a small OTLP receiver (``fluentfn._otlp.OtlpReceiver``; point ``tracing=`` at a
real collector such as Jaeger's ``http://127.0.0.1:4317`` instead), runs the chain
``driver -> Hop/a -> Hop/b -> Hop/a`` in both modes, and writes ``trace-stateful.png``,
``trace-faas.png`` (waterfalls of the spans that arrived) and ``top.png`` (one frame of
``fluentfn top``), and prints each mode's ``ff.stats(breakdown=True)`` and ``ff.cost()``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import fluentfn as ff
from fluentfn._otlp import OtlpReceiver


@ff.actor
class Hop:
    def __init__(self) -> None:
        self.seen = 0

    def chain(self, path: list[str]) -> list[str]:
        self.seen += 1
        me = ff.context().key
        return [me] if not path else [me, *Hop[path[0]].chain(path[1:])]


def waterfall(spans: list[dict[str, Any]], title: str, path: Path) -> None:
    """The spans of one trace as a waterfall: a bar per span, children under parents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    turns = [s for s in spans if s["name"] == "fluentfn.turn"]
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for s in turns:
        by_parent.setdefault(s["parent_id"], []).append(s)
    ids = {s["span_id"] for s in turns}
    rows: list[tuple[int, str, float, float]] = []  # depth, label, start ms, width ms
    t0 = min(s["start_ns"] for s in turns)

    def walk(span: dict[str, Any], depth: int) -> None:
        a = span["attributes"]
        start, width = (span["start_ns"] - t0) / 1e6, (span["end_ns"] - span["start_ns"]) / 1e6
        rows.append((depth, f"turn {a.get('fluentfn.address')}.{a.get('fluentfn.method')}", start, width))
        for e in span["events"]:  # the turn's phases: an event each, with its duration
            if "duration_ms" in e["attributes"]:
                rows.append((depth + 1, e["name"], (e["time_ns"] - t0) / 1e6, float(e["attributes"]["duration_ms"])))
        for child in sorted(by_parent.get(span["span_id"], []), key=lambda c: c["start_ns"]):
            walk(child, depth + 1)

    for root in sorted((s for s in turns if s["parent_id"] not in ids), key=lambda s: s["start_ns"]):
        walk(root, 0)
    colors = {"fluentfn.queue": "tab:gray", "fluentfn.init": "tab:orange", "fluentfn.load": "tab:green",
              "fluentfn.run": "tab:red", "fluentfn.write": "tab:purple"}  # fmt: skip
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.2))
    for row, (depth, label, start, width) in enumerate(rows):
        ax.barh(row, max(width, 0.01), left=start, color=colors.get(label, "tab:blue"), height=0.7)
        ax.text(start + width, row, f"  {'  ' * depth}{label.removeprefix('fluentfn.')} {width:.2f} ms",
                va="center", fontsize=7)  # fmt: skip
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the chain began")
    ax.set_title(title)
    right = max(start + width for _, _, start, width in rows)
    ax.set_xlim(0, right * 1.45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def top_png(cluster: ff.Cluster, path: Path) -> None:
    """One frame of ``fluentfn top`` for this cluster, drawn as text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rich.console import Console

    from fluentfn._top import frame

    with ff.Client(cluster.gateway, token=cluster.token) as client:
        before, t0 = client.status(), time.monotonic()
        for _ in range(200):
            Hop["a"].chain([])
        after, t1 = client.status(), time.monotonic()
    console = Console(record=True, width=100, file=open("/dev/null", "w"))  # noqa: SIM115 (recorded, not shown)
    console.print(frame(before, after, t1 - t0, "fluentfn top"))
    text = console.export_text()
    lines = text.splitlines()
    fig = plt.figure(figsize=(10, 0.19 * len(lines) + 0.4))
    fig.text(0.01, 0.98, text, family="monospace", fontsize=8, va="top")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("fluentfn-observability"))
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    with OtlpReceiver() as receiver:
        for mode in ("stateful", "faas"):
            with ff.init(mode=mode, tracing=receiver.endpoint, namespace=f"see-{mode}") as cluster:
                Hop["a"].chain([])  # the identities are active: the chain below shows warm turns
                path = Hop["a"].chain(["b", "a"])
                print(mode, "path:", path)
                print(json.dumps(ff.stats(breakdown=True)["breakdown"], indent=1))
                print(mode, "cost:", json.dumps(ff.cost()))
                if mode == "stateful":
                    top_png(cluster, out / "top.png")

            def chain_of(spans: list[dict[str, Any]], mode: str = mode) -> list[dict[str, Any]]:
                """The spans of the longest chain of ``mode``'s turns (the three-hop one)."""
                turns = [s for s in spans if s["name"] == "fluentfn.turn"]
                turns = [t for t in turns if t["attributes"].get("fluentfn.mode") == mode]
                per_trace: dict[str, int] = {}
                for t in turns:
                    per_trace[t["trace_id"]] = per_trace.get(t["trace_id"], 0) + 1
                trace = max(per_trace, key=lambda k: per_trace[k], default="")
                return [s for s in spans if s["trace_id"] == trace]

            spans = receiver.wait_for(lambda s: len([x for x in chain_of(s) if x["name"] == "fluentfn.turn"]) >= 3)
            waterfall(chain_of(spans), f"one trace: driver -> Hop/a -> Hop/b -> Hop/a ({mode})",
                      out / f"trace-{mode}.png")  # fmt: skip
    print(f"wrote {out}/trace-stateful.png, trace-faas.png, top.png")


if __name__ == "__main__":
    main()
