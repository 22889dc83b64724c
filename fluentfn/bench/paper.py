"""``fluentfn bench paper``: the paper's case studies, stateful vs FaaS, beside its figures.

Each case study is an ``examples/`` program, run unchanged in three settings: stateful,
``faas`` (local store, no emulation) and ``faas-paper`` (``FaasProfile.paper()``: the
paper's storage latency and bandwidth).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import fluentfn as ff

from . import _cases, _report

SETTINGS: dict[str, tuple[str, ff.FaasProfile | None]] = {
    "stateful": ("stateful", None),
    "faas": ("faas", ff.FaasProfile()),
    "faas-paper": ("faas", ff.FaasProfile.paper()),
}


def _measure(setting: str, quick: bool) -> dict[str, float]:
    mode, profile = SETTINGS[setting]
    fast = setting == "stateful"
    messaging, training, serving, leader = (_cases.load(n) for n in ("messaging", "training", "serving", "leader"))
    with ff.init(mode=mode, faas=profile, namespace=f"paper-{setting}"):
        msg = messaging.run(300 if fast else (4 if quick else 10))
        train = training.run(steps=10 if fast else (2 if quick else 5))
        serve = serving.run(batches=100 if fast else (4 if quick else 10))
        elect = leader.run(candidates=4, interval=0.25, duration=3.0 if quick else 6.0)
    return {
        "msg_us": msg["p50_us"],
        "train_s_per_step": train["s_per_step"],
        "serve_us": serve["p50_us"],
        "electing_pct": round(elect["electing_fraction"] * 100, 2),
        "leaders": elect["leaders_seen"],
    }


CASES = [  # row label, what the paper measured, figure, decimals of the ratios
    ("messaging 1KB round trip (us)", "290 us direct vs ~108,000 us via S3 (372x)", "msg_us", 0),
    ("training (s per step)", "Lambda 21x slower than a server", "train_s_per_step", 1),
    ("serving batch of 10 (us)", "467 ms Lambda+SQS vs 2.8 ms server+ZeroMQ (167x)", "serve_us", 0),
    ("leader election: % of time electing", ">= 1.9% via DynamoDB", "electing_pct", 1),
]


def _row(label: str, paper: str, key: str, digits: int, *settings: dict[str, float]) -> dict[str, Any]:
    s, f, p = settings
    base = max(s[key], 1e-3)

    def ratio(x: float) -> float:
        return round(x / base, digits) if digits else round(x / base)

    return {
        "system": label,
        "paper": paper,
        "stateful": s[key],
        "faas": f[key],
        "faas-paper": p[key],
        "faas/stateful": ratio(f[key]),
        "faas-paper/stateful": ratio(p[key]),
    }


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fluentfn-paper-") as home:
        os.environ["FLUENTFN_HOME"] = home
        for setting in SETTINGS:
            results[setting] = _measure(setting, quick)
    s, f, p = results["stateful"], results["faas"], results["faas-paper"]
    rows = [_row(label, paper, key, digits, s, f, p) for label, paper, key, digits in CASES]
    rows[-1]["leaders seen (s/f/fp)"] = f"{s['leaders']}/{f['leaders']}/{p['leaders']}"
    notes = ["targets: stateful vs FaaS >= 100x on messaging, >= 10x on training, >= 50x on serving"]
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    return _report.cli("paper", __doc__, run, "faas/stateful", argv)
