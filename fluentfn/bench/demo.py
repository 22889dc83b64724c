"""``fluentfn demo``: the paper's messaging and training case studies, stateful vs FaaS.

Runs on the embedded default (local Ray + SQLite), in about a minute on 2 cores, and
prints a comparison table and where the plot is.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import fluentfn as ff

from . import _cases, _report


def run(out: Path, quick: bool = True, print_table: bool = True) -> list[dict[str, Any]]:
    messaging = _cases.load("messaging")
    training = _cases.load("training")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fluentfn-demo-") as home:
        for mode in ("stateful", "faas"):
            import os

            os.environ["FLUENTFN_HOME"] = home  # a fresh store: the demo starts from nothing
            with ff.init(mode=mode, namespace=f"demo-{mode}"):
                msg = messaging.run(300 if mode == "stateful" else 8)
                train = training.run(steps=5 if quick else 10)
                stats = ff.stats()
            results[mode] = {"msg": msg, "train": train, "stats": stats}
    s, f = results["stateful"], results["faas"]
    rows = [
        {
            "system": "messaging 1KB round trip",
            "stateful_us": s["msg"]["p50_us"],
            "faas_us": f["msg"]["p50_us"],
            "faas/stateful": round(f["msg"]["p50_us"] / s["msg"]["p50_us"], 1),
            "paper": "290 us direct vs ~108 ms via S3 (372x)",
        },
        {
            "system": "training s/step",
            "stateful_us": round(s["train"]["s_per_step"] * 1e6),
            "faas_us": round(f["train"]["s_per_step"] * 1e6),
            "faas/stateful": round(f["train"]["s_per_step"] / s["train"]["s_per_step"], 1),
            "paper": "Lambda 21x slower than a server",
        },
        {
            "system": "training accuracy (same code)",
            "stateful_us": s["train"]["accuracy"],
            "faas_us": f["train"]["accuracy"],
            "faas/stateful": "same" if s["train"]["accuracy"] == f["train"]["accuracy"] else "differs",
            "paper": "",
        },
        {
            "system": "storage bytes moved",
            "stateful_us": s["stats"]["storage_bytes_read"] + s["stats"]["storage_bytes_written"],
            "faas_us": f["stats"]["storage_bytes_read"] + f["stats"]["storage_bytes_written"],
            "faas/stateful": "",
            "paper": "FaaS ships data to code",
        },
    ]
    cases = [
        ("1 KB message\nround trip", s["msg"]["p50_us"], f["msg"]["p50_us"]),
        ("training step", s["train"]["s_per_step"] * 1e6, f["train"]["s_per_step"] * 1e6),
    ]
    out.mkdir(parents=True, exist_ok=True)
    _report.plot_pairs(out / "demo.png", "Same code, two ways to run it", cases, "microseconds (log scale)")
    if print_table:
        show(rows, out)
    return rows


def show(rows: list[dict[str, Any]], out: Path) -> None:
    """Write demo.json / demo.md and print the table (the plot is already written)."""
    notes = [f"plot: {out / 'demo.png'}", "columns *_us are microseconds except the last two rows (accuracy, bytes)"]
    _report.write("demo", rows, out, notes, metric="faas/stateful", plot=False)
