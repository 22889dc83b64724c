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
