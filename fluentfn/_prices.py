"""What the same work would cost: FaaS (Lambda + S3 + DynamoDB) against stateful hosts (VMs).

One dated price table, in one place. Override any entry with ``FLUENTFN_PRICES``: a
JSON object, or the path of a file holding one (``{"vm_hour": 0.10}``).

FaaS: requests and GB-seconds of billed invocation time (Lambda bills each invocation
by the millisecond, including the time it waits on the calls it makes), object
requests at S3 prices, record requests at DynamoDB on-demand prices (by request unit).
Stateful: the hosts' VM for the wall-clock time of the work, plus the same storage
prices for what the hosts wrote and read (durable state).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ._config import env_prices
from .errors import FluentError

PRICES_AS_OF = "2024-12, AWS us-east-1, on-demand, as published"
PRICES: dict[str, float] = {
    "lambda_gb_s": 0.0000166667,  # x86, first 6 billion GB-s a month
    "lambda_request": 0.20 / 1e6,
    "lambda_memory_mb": 640.0,  # the paper's training runs used 640 MB functions
    "s3_put": 0.005 / 1000,  # S3 Standard PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1000,  # S3 Standard GET
    "dynamodb_write_unit": 0.625 / 1e6,  # on-demand, per write request unit (1 KB)
    "dynamodb_read_unit": 0.125 / 1e6,  # on-demand, per read request unit (4 KB, strong)
    "vm_hour": 0.096,  # m5.large (2 vCPU, 8 GiB): this machine's size; the paper used m4.large at $0.10
    "vms": 1.0,
    "host_hour": 0.048,  # one host: one vCPU of the m5.large above
    "gpu_hour": 1.006,  # g5.xlarge (one A10G), on-demand
}


def prices() -> dict[str, float]:
    """The price table with ``FLUENTFN_PRICES`` applied."""
    table = dict(PRICES)
    raw = env_prices()
    if not raw:
        return table
    try:
        text = raw if raw.startswith("{") else Path(raw).read_text()
        given: Any = json.loads(text)
    except (OSError, ValueError) as exc:
        raise FluentError(f"FLUENTFN_PRICES is neither a JSON object nor a readable JSON file: {exc}") from None
    if not isinstance(given, dict):
        raise FluentError("FLUENTFN_PRICES must be a JSON object of prices")
    for name, value in given.items():
        if name not in table:
            raise FluentError(f"FLUENTFN_PRICES: unknown price {name!r} (known: {', '.join(sorted(table))})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            raise FluentError(f"FLUENTFN_PRICES: {name} must be a number >= 0, not {value!r}")
        table[name] = float(value)
    return table


def _storage(used: dict[str, int], p: dict[str, float]) -> float:
    return (
        used.get("object_writes", 0) * p["s3_put"]
        + used.get("object_reads", 0) * p["s3_get"]
        + used.get("record_write_units", 0) * p["dynamodb_write_unit"]
        + used.get("record_read_units", 0) * p["dynamodb_read_unit"]
    )


def faas_cost(used: dict[str, int], p: dict[str, float]) -> float:
    """Dollars for the invocations and storage requests counted in ``used`` (a stats delta)."""
    gb_s = used.get("billed_ms", 0) / 1000.0 * p["lambda_memory_mb"] / 1024.0
    return used.get("invocations", 0) * p["lambda_request"] + gb_s * p["lambda_gb_s"] + _storage(used, p)


def paper_training_ratio(faas_s_per_step: float, vm_s_per_step: float, batches: int, p: dict[str, float]) -> float:
    """FaaS over VM cost of one training step, priced as the paper's experiment ran: one
    function (``lambda_memory_mb``) for the step's time, reading ``batches`` batches from
    S3, against one VM for its step time, with no other storage traffic on either side."""
    faas = faas_s_per_step * p["lambda_memory_mb"] / 1024.0 * p["lambda_gb_s"] + batches * p["s3_get"]
    vm = vm_s_per_step / 3600.0 * p["vm_hour"] * p["vms"]
    return faas / max(vm, 1e-15)


def stateful_cost(wall_s: float, used: dict[str, int], p: dict[str, float]) -> float:
    """Dollars for ``vms`` VMs over ``wall_s`` seconds, plus the hosts' storage requests."""
    return wall_s / 3600.0 * p["vm_hour"] * p["vms"] + _storage(used, p)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Counters ``after`` minus ``before``."""
    return {k: v - before.get(k, 0) for k, v in after.items()}


def usage_cost(mode: str, used: dict[str, int], p: dict[str, float]) -> dict[str, Any]:
    """The priced usage in ``used`` (cluster counters): ``usd`` and what it is made of.

    FaaS: requests, GB-seconds billed and storage requests (``faas_cost``). Stateful: the
    host-seconds and GPU-seconds the hosts were up (``host_ms``, ``gpu_ms``) and their
    storage traffic priced as record requests (a write unit per KB written, a read unit
    per 4 KB read, at least one per operation)."""
    if mode == "faas":
        gb_s = used.get("billed_ms", 0) / 1000.0 * p["lambda_memory_mb"] / 1024.0
        items = {
            "requests": used.get("invocations", 0) * p["lambda_request"],
            "compute": gb_s * p["lambda_gb_s"],
            "storage": _storage(used, p),
        }
        what = {"invocations": used.get("invocations", 0), "gb_seconds": round(gb_s, 3),
                "cold_starts": used.get("cold_starts", 0)}  # fmt: skip
    else:
        write_units = max(used.get("storage_writes", 0), math.ceil(used.get("storage_bytes_written", 0) / 1024))
        read_units = max(used.get("storage_reads", 0), math.ceil(used.get("storage_bytes_read", 0) / 4096))
        items = {
            "hosts": used.get("host_ms", 0) / 3.6e6 * p["host_hour"],
            "gpus": used.get("gpu_ms", 0) / 3.6e6 * p["gpu_hour"],
            "storage": write_units * p["dynamodb_write_unit"] + read_units * p["dynamodb_read_unit"],
        }
        what = {"host_seconds": round(used.get("host_ms", 0) / 1000, 3),
                "gpu_seconds": round(used.get("gpu_ms", 0) / 1000, 3)}  # fmt: skip
    storage = {k: used.get(k, 0) for k in ("storage_reads", "storage_writes", "storage_bytes_read",
                                           "storage_bytes_written")}  # fmt: skip
    return {
        "mode": mode,
        "usd": round(sum(items.values()), 8),
        "items_usd": {k: round(v, 8) for k, v in items.items()},
        "used": {**what, **storage, "calls": used.get("calls", 0)},
        "prices_as_of": PRICES_AS_OF,
    }
