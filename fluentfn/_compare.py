"""``fluentfn compare SCRIPT``: a user's program in both modes, side by side.

Every cluster a program starts while ``FLUENTFN_REPORT`` names a folder writes a record
there when it shuts down (``write_record``): its mode, how long it was up, its counters,
its calls' time breakdown and its cost. ``compare`` runs the program (again with the
other mode forced, ``FLUENTFN_FORCE_MODE``, when it started only one) and prints the
records as one table (``rows``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._phases import PREFIX, quantile_ms, split_counters

__all__ = ["ENV_FORCE_MODE", "ENV_REPORT", "overall", "rows", "write_record"]

ENV_REPORT = "FLUENTFN_REPORT"
ENV_FORCE_MODE = "FLUENTFN_FORCE_MODE"


def overall(phases: dict[str, int], phase: str) -> dict[str, float]:
    """One phase over every type and method: count, p50, p99, mean (ms)."""
    buckets: dict[int, int] = {}
    count = total_us = 0
    for k, v in phases.items():
        parts = k[1:].split(PREFIX) if k.startswith(PREFIX) else []
        if len(parts) != 3 or parts[1] != phase:
            continue
        if parts[2] == "n":
            count += v
        elif parts[2] == "s":
            total_us += v
        elif parts[2].isdigit():
            buckets[int(parts[2])] = buckets.get(int(parts[2]), 0) + v

    return {
        "count": count,
        "p50": quantile_ms(buckets, count, 0.5, 3) if count else 0.0,
        "p99": quantile_ms(buckets, count, 0.99, 3) if count else 0.0,
        "mean": round(total_us / count / 1000, 3) if count else 0.0,
    }


def write_record(folder: str, mode: str, seconds: float, raw: dict[str, int], cost: dict[str, Any]) -> Path:
    """Write one cluster's record into ``folder``; returns its path."""
    plain, phases = split_counters(raw)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{os.getpid()}-{len(list(out.glob('*.json')))}.json"
    record = {"mode": mode, "seconds": round(seconds, 3), "counters": plain, "call": overall(phases, "call"),
              "run": overall(phases, "run"), "cost": cost}  # fmt: skip
    path.write_text(json.dumps(record))
    return path


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per mode (records of the same mode summed): latency, throughput, cost."""
    by_mode: dict[str, dict[str, Any]] = {}
    for r in records:
        fresh = {"mode": r["mode"], "seconds": 0.0, "calls": 0, "usd": 0.0, "p50": [], "p99": [], "storage_ops": 0,
                 "cold_starts": 0}  # fmt: skip
        m = by_mode.setdefault(r["mode"], fresh)
        c = r["counters"]
        m["seconds"] += r["seconds"]
        m["calls"] += c.get("calls", 0)
        m["usd"] += r["cost"]["usd"]
        m["storage_ops"] += c.get("storage_reads", 0) + c.get("storage_writes", 0)
        m["cold_starts"] += c.get("cold_starts", 0)
        if r["call"]["count"]:
            m["p50"].append(r["call"]["p50"])
            m["p99"].append(r["call"]["p99"])
    out = []
    for mode in sorted(by_mode, key=lambda x: (x != "stateful", x)):
        m = by_mode[mode]
        out.append({
            "mode": mode,
            "calls": m["calls"],
            "seconds": round(m["seconds"], 2),
            "calls_per_s": round(m["calls"] / m["seconds"], 1) if m["seconds"] else 0.0,
            "call_p50_ms": max(m["p50"], default=0.0),
            "call_p99_ms": max(m["p99"], default=0.0),
            "storage_ops": m["storage_ops"],
            "cold_starts": m["cold_starts"],
            "usd": round(m["usd"], 8),
            "usd_per_1k_calls": round(m["usd"] / m["calls"] * 1000, 8) if m["calls"] else 0.0,
        })  # fmt: skip
    return out
