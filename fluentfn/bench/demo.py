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

SETTINGS: dict[str, tuple[str, ff.FaasProfile | None]] = {
    "stateful": ("stateful", None),
    "faas": ("faas", ff.FaasProfile()),  # warm environments reused, as on Lambda
    "faas-cold": ("faas", ff.FaasProfile(cold_start=True)),  # a fresh environment per invocation
}


def run(out: Path, quick: bool = True, print_table: bool = True) -> list[dict[str, Any]]:
    messaging = _cases.load("messaging")
    training = _cases.load("training")
    results: dict[str, dict[str, Any]] = {}
    sizes = {"stateful": (300, 5 if quick else 10), "faas": (20, 5 if quick else 10), "faas-cold": (4, 2)}
    with tempfile.TemporaryDirectory(prefix="fluentfn-demo-") as home:
        for setting, (mode, profile) in SETTINGS.items():
            import os

            print(f"  {setting}: messaging and training ...", flush=True)
            os.environ["FLUENTFN_HOME"] = home  # a fresh store: the demo starts from nothing
            with ff.init(mode=mode, faas=profile, namespace=f"demo-{setting}"):
                msgs, steps = sizes[setting]
                msg = messaging.run(msgs)
                train = training.run(steps=steps)
                stats = ff.stats()
            results[setting] = {"msg": msg, "train": train, "stats": stats}
    s, f, c = results["stateful"], results["faas"], results["faas-cold"]
    rows = [
        {
            "system": "1 KB message, one way (us)",
            "stateful": s["msg"]["one_way_us"],
            "faas": f["msg"]["one_way_us"],
            "faas-cold": c["msg"]["one_way_us"],
            "faas/stateful": round(f["msg"]["one_way_us"] / s["msg"]["one_way_us"], 1),
            "faas-cold/stateful": round(c["msg"]["one_way_us"] / s["msg"]["one_way_us"], 1),
            "paper": "290 us direct vs ~108 ms via S3 (372x)",
        },
        {
            "system": "training step (us)",
            "stateful": round(s["train"]["s_per_step"] * 1e6),
            "faas": round(f["train"]["s_per_step"] * 1e6),
            "faas-cold": round(c["train"]["s_per_step"] * 1e6),
            "faas/stateful": round(f["train"]["s_per_step"] / s["train"]["s_per_step"], 1),
            "faas-cold/stateful": round(c["train"]["s_per_step"] / s["train"]["s_per_step"], 1),
            "paper": "Lambda 21x slower than a server",
        },
        {
            "system": "training accuracy (same code)",
            "stateful": s["train"]["accuracy"],
            "faas": f["train"]["accuracy"],
            "faas-cold": c["train"]["accuracy"],
            "faas/stateful": "same" if s["train"]["accuracy"] == f["train"]["accuracy"] else "differs",
            "faas-cold/stateful": "",
            "paper": "",
        },
        {
            "system": "storage bytes moved",
            "stateful": s["stats"]["storage_bytes_read"] + s["stats"]["storage_bytes_written"],
            "faas": f["stats"]["storage_bytes_read"] + f["stats"]["storage_bytes_written"],
            "faas-cold": c["stats"]["storage_bytes_read"] + c["stats"]["storage_bytes_written"],
            "faas/stateful": "",
            "faas-cold/stateful": "",
            "paper": "FaaS ships data to code",
        },
        {
            "system": "cold / warm starts",
            "stateful": "-",
            "faas": f"{f['stats']['cold_starts']} / {f['stats']['warm_starts']}",
            "faas-cold": f"{c['stats']['cold_starts']} / {c['stats']['warm_starts']}",
            "faas/stateful": "",
            "faas-cold/stateful": "",
            "paper": "Lambda reuses warm environments",
        },
    ]
    cases = [
        ("1 KB message\none way", s["msg"]["one_way_us"], f["msg"]["one_way_us"]),
        ("training step", s["train"]["s_per_step"] * 1e6, f["train"]["s_per_step"] * 1e6),
    ]
    out.mkdir(parents=True, exist_ok=True)
    _report.plot_pairs(out / "demo.png", "Same code: stateful vs warm FaaS", cases, "microseconds (log scale)")
    if print_table:
        show(rows, out)
    return rows


def show(rows: list[dict[str, Any]], out: Path) -> None:
    """Write demo.json / demo.md and print the table (the plot is already written)."""
    notes = [
        f"plot: {out / 'demo.png'}",
        "faas = warm environments reused (as on Lambda); faas-cold = a fresh environment per invocation",
        "one way = half a ping-pong round trip; the last rows are accuracy, bytes and start counts",
    ]
    _report.write("demo", rows, out, notes, metric="faas/stateful", plot=False)
