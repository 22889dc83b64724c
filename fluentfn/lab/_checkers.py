"""Checkers for the workloads that are not about one register (Maelstrom's and Jepsen's
models), each a pure function of a history's events returning a JSON-ready result with
``valid`` true or false and what made it so.

- ``set``: ``add`` (value v) and ``read`` (output: the values). Every acknowledged add is
  in the final read; a value no add tried is unexpected. Adds of unknown outcome may or
  may not be there (counted as recovered when they are).
- ``broadcast``: the same per node: ``read`` ops carry the node as their process, and
  every node's final read holds every acknowledged broadcast.
- ``g-counter``: ``add`` (delta) and ``read`` (output: the count). Each read lies between
  the adds acknowledged before it began and every add begun before it ended.
- ``unique-ids``: ``generate`` (output: an id). No id is handed out twice.
- ``kafka`` (``_kafka``) and ``read-committed`` (``_txn``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ._history import Event, HistoryError, Operation, operations
from ._kafka import check_kafka
from ._models import freeze
from ._txn import check_read_committed


def _ops(events: list[Event]) -> list[Operation]:
    return operations(events)


def _values(output: Any, where: str) -> set[Any]:
    if not isinstance(output, list | tuple):
        raise HistoryError(f"a {where} read's output is a list of values, got {output!r}")
    return {freeze(v) for v in output}


def check_set(events: list[Event], *, per_process: bool = False) -> dict[str, Any]:
    ops = _ops(events)
    acked = {freeze(op.value) for op in ops if op.f in ("add", "broadcast") and op.status == "ok"}
    maybe = {freeze(op.value) for op in ops if op.f in ("add", "broadcast") and op.status == "info"}
    attempted = acked | maybe | {freeze(e.value) for e in events if e.f in ("add", "broadcast")}
    reads = [op for op in ops if op.f == "read" and op.status == "ok"]
    marked = [op for op in reads if str(op.process).startswith("final")]
    if per_process and marked:  # reads made for judging, once faults healed: the only ones that count
        reads = marked
    if not reads:
        return {"valid": "unknown", "why": "no successful read to judge by", "acknowledged": len(acked)}
    finals: dict[Any, Operation] = {}
    for op in sorted(reads, key=lambda o: o.call):
        finals[op.process if per_process else None] = op
    lost: dict[str, list[Any]] = {}
    unexpected: set[Any] = set()
    recovered: set[Any] = set()
    for who, op in finals.items():
        seen = _values(op.output, "set")
        missing = sorted(acked - seen, key=repr)
        if missing:
            lost[str(who)] = missing
        unexpected |= seen - attempted
        recovered |= seen & maybe
    return {
        "valid": not lost and not unexpected,
        "acknowledged": len(acked),
        "unknown_outcome": len(maybe),
        "final_reads": len(finals),
        "lost": lost,
        "unexpected": sorted(unexpected, key=repr),
        "recovered": len(recovered),
    }


def check_broadcast(events: list[Event]) -> dict[str, Any]:
    return check_set(events, per_process=True)


def check_g_counter(events: list[Event]) -> dict[str, Any]:
    """Every successful read lies between the adds acknowledged before it began and every
    add (acknowledged or of unknown outcome) begun before it ended (Jepsen's counter
    check); the last read is reported."""
    ops = _ops(events)
    adds = [op for op in ops if op.f == "add"]
    reads = sorted((op for op in ops if op.f == "read" and op.status == "ok"), key=lambda o: o.call)
    low_all = sum(int(op.value) for op in adds if op.status == "ok")
    if not reads:
        return {"valid": "unknown", "why": "no successful read to judge by", "acknowledged_sum": low_all}
    wrong: list[dict[str, Any]] = []
    for r in reads:
        if not isinstance(r.output, int):
            raise HistoryError(f"a g-counter read's output is an int, got {r.output!r}")
        assert r.ret is not None
        low = sum(int(a.value) for a in adds if a.status == "ok" and a.ret is not None and a.ret < r.call)
        high = sum(int(a.value) for a in adds if a.call < r.ret)
        if not low <= r.output <= high:
            wrong.append({"process": r.process, "read": r.output, "lower_bound": low, "upper_bound": high})
    final = reads[-1]
    high_all = low_all + sum(int(op.value) for op in adds if op.status == "info")
    return {"valid": not wrong, "final_read": final.output, "lower_bound": low_all, "upper_bound": high_all,
            "reads": len(reads), "reads_out_of_bounds": wrong[:20]}  # fmt: skip


def check_unique_ids(events: list[Event]) -> dict[str, Any]:
    ids = [freeze(op.output) for op in _ops(events) if op.f == "generate" and op.status == "ok"]
    dupes = {k: n for k, n in Counter(ids).items() if n > 1}
    return {"valid": not dupes, "generated": len(ids), "duplicated": sorted(map(repr, dupes))[:20]}


CHECKERS: dict[str, Callable[[list[Event]], dict[str, Any]]] = {
    "kafka": check_kafka,
    "read-committed": check_read_committed,
    "set": check_set,
    "broadcast": check_broadcast,
    "g-counter": check_g_counter,
    "unique-ids": check_unique_ids,
}
