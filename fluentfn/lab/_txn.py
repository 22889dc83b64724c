"""The ``read-committed`` checker: transactions over read/write registers (Maelstrom's
txn-rw-register), judged for Adya's G0, G1a, G1b and G1c, which read committed forbids.

A ``txn`` op's value is a list of micro-ops ``["r", key, null]`` / ``["w", key, value]``;
when ``ok`` its output is the same list with each read's value filled in. Written values
are unique per key (the generator's), so a read names the one transaction that wrote it.

- G1a (aborted read): a read of a value whose transaction failed (did not happen).
- G1b (intermediate read): a read of a value its writer overwrote in the same
  transaction (another transaction saw a write that was not the writer's last to that key).
- G0 (write cycle) and G1c (circular information flow): cycles of dependencies between
  committed transactions. A ``wr`` edge runs from a writer to a reader of its value; a
  ``ww`` edge from T1 to T2 when T2 read T1's value of a key and then wrote that key (the
  only version order a register history shows). G0: a cycle of ``ww`` edges alone; G1c:
  a cycle of ``ww`` and ``wr`` edges.
"""

from __future__ import annotations

from typing import Any

from ._history import Event, HistoryError, operations
from ._models import freeze

_LIMIT = 20


def _micro(value: Any) -> list[tuple[str, Any, Any]]:
    if not isinstance(value, list | tuple):
        raise HistoryError(f"a txn value is a list of [f, key, value] micro-ops, got {value!r}")
    out = []
    for m in value:
        if not isinstance(m, list | tuple) or len(m) != 3 or m[0] not in ("r", "w"):
            raise HistoryError(f"a txn micro-op is ['r' | 'w', key, value], got {m!r}")
        out.append((str(m[0]), freeze(m[1]), freeze(m[2])))
    return out


def _failed(events: list[Event]) -> list[Any]:
    """The values of the txns that failed (definitely did not happen)."""
    pending: dict[int | str, Event] = {}
    out = []
    for e in events:
        if e.type == "invoke":
            pending[e.process] = e
        elif (inv := pending.pop(e.process, None)) is not None and e.type == "fail" and inv.f == "txn":
            out.append(inv.value)
    return out


def check_read_committed(events: list[Event]) -> dict[str, Any]:
    ops = [op for op in operations(events) if op.f == "txn"]
    writer: dict[tuple[Any, Any], int] = {}  # (key, value) -> the op that wrote it (ok or info)
    last_write: dict[tuple[int, Any], Any] = {}  # (op, key) -> its final value of key
    for op in ops:
        for f, k, v in _micro(op.value):
            if f == "w":
                writer[(k, v)] = op.id
                last_write[(op.id, k)] = v
    aborted = {(k, v) for value in _failed(events) for f, k, v in _micro(value) if f == "w"}
    g1a: list[Any] = []
    g1b: list[Any] = []
    edges: dict[int, set[tuple[int, str]]] = {}
    for op in ops:
        if op.status != "ok":
            continue
        written_here: set[Any] = set()
        for f, k, v in _micro(op.output):
            if f == "w":
                written_here.add(k)
                continue
            if v is None or k in written_here:
                continue
            if (k, v) in aborted:
                g1a.append({"reader": op.id, "key": k, "value": v})
            w = writer.get((k, v))
            if w is None:
                continue
            if w != op.id and last_write.get((w, k)) != v:
                g1b.append({"reader": op.id, "writer": w, "key": k, "value": v})
            if w != op.id:
                edges.setdefault(w, set()).add((op.id, "wr"))
                if (op.id, k) in last_write:  # read w's version, then wrote the key: w's write came first
                    edges.setdefault(w, set()).add((op.id, "ww"))
    g0 = _cycle(edges, {"ww"})
    g1c = _cycle(edges, {"ww", "wr"})
    return {
        "valid": not (g1a or g1b or g0 or g1c),
        "txns": len(ops),
        "G0": g0,
        "G1a": g1a[:_LIMIT],
        "G1b": g1b[:_LIMIT],
        "G1c": g1c,
    }


def _cycle(edges: dict[int, set[tuple[int, str]]], kinds: set[str]) -> list[int]:
    """One cycle of the graph's ``kinds`` edges (its ops, in order), or []."""
    graph = {a: sorted({b for b, kind in out if kind in kinds}) for a, out in edges.items()}
    colour: dict[int, int] = {}  # 1: on the path, 2: done
    for root in sorted(graph):
        if root in colour:
            continue
        path: list[int] = [root]
        stack = [iter(graph.get(root, []))]
        colour[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in colour:
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph.get(nxt, [])))
    return []
