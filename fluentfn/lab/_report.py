"""A checker's verdict as JSON, and its counterexample as a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._history import Operation
from ._linear import Verdict
from ._models import Model

_TAIL = 8  # linearized operations shown before the point where no order works


def _op(model: Model, op: Operation) -> dict[str, Any]:
    return {"process": op.process, "op": model.describe(op), "status": op.status}


def verdict_json(verdict: Verdict, model: Model) -> dict[str, Any]:
    """What ``fluentfn lab check`` prints."""
    out: dict[str, Any] = {
        "valid": verdict.valid,
        "model": verdict.model,
        "ops": verdict.ops,
        "transitions": verdict.transitions,
        "seconds": round(verdict.seconds, 3),
    }
    if verdict.valid is False:
        out["counterexample"] = {
            "key": verdict.key,
            "state_before": verdict.state,
            "linearized_tail": [_op(model, op) for op in verdict.prefix[-_TAIL:]],
            "cannot_complete": _op(model, verdict.stuck) if verdict.stuck is not None else None,
            "open_then": [_op(model, op) for op in verdict.open_ops],
        }
    return out


def plot_counterexample(verdict: Verdict, model: Model, path: str | Path) -> None:
    """One row per process: each operation of the counterexample as a bar from its
    invocation to its completion (an open end for unknown outcomes); the operation no
    order could complete in red, the linearized ones in grey, open ones in blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [*verdict.prefix[-_TAIL:], *verdict.open_ops]
    if verdict.stuck is not None and verdict.stuck not in shown:
        shown.append(verdict.stuck)
    processes = sorted({str(op.process) for op in shown})
    row = {p: i for i, p in enumerate(processes)}
    end = max([op.ret for op in shown if op.ret is not None] or [0]) + 2
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(processes) + 1.5))
    for op in shown:
        stop = op.ret if op.ret is not None else end
        color = "tab:red" if op is verdict.stuck else ("0.6" if op in verdict.prefix else "tab:blue")
        y = row[str(op.process)]
        ax.barh(y, stop - op.call, left=op.call, height=0.5, color=color, alpha=0.8)
        ax.text(op.call, y + 0.3, model.describe(op), fontsize=7)
    ax.set_yticks(range(len(processes)), [f"process {p}" for p in processes])
    ax.set_xlabel("history position (events in real-time order)")
    where = f" (key {verdict.key!r})" if verdict.key is not None else ""
    ax.set_title(f"{model.name}: no linearization completes the red operation{where}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
