"""The lab's workloads: each a plain fluentfn program (``_programs``: actor types on the public API) and
a generator of client operations, with the checker that judges its history.

- ``unique_ids``: ``IdNode`` identities hand out ids; no id twice (``unique-ids``).
- ``g_counter``: a grow-only counter as one ``GCounter`` identity per node, each counting
  the adds it took; a read sums every node's count (``g-counter``).
- ``broadcast``: ``BNode`` identities gossip every value to their neighbors (a topology:
  tree, line or total), in batches, sending again what was not acknowledged; every
  node's final read holds every acknowledged broadcast (``broadcast``).
- ``lin_kv``: a key-value store with one ``LinKV`` identity per key (a key per node):
  read, write, cas (``kv``, linearizability).
- ``kafka``: a log per node (``KLog``): send, poll, commit and list committed offsets
  (``kafka``); ``_logtxn``.
- ``txn``: read/write transactions over registers spread across ``TxnNode`` identities
  (``read-committed``: no G0, G1a, G1b, G1c); ``_logtxn``.

Node names carry the run's tag, so runs on a durable store never see each other's state.

A broken variant of each, ``NAME_broken``, has a planted bug its checker must catch.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fluentfn as ff

from ._logtxn import POLL_LIMIT, KLog, KLogBroken, TxnNode, TxnNodeBroken
from ._programs import RESEND_S, BNode, BNodeBroken, GCounter, GCounterBroken, IdNode, IdNodeBroken, LinKV, LinKVBroken

Op = tuple[str, Any]  # (f, value)


@dataclass(frozen=True)
class Workload:
    """A workload: its checker, its next client operation, how an operation runs (its
    output, or an exception), and the final reads that the checker judges by."""

    name: str
    checker: str
    type_name: str  # the identities the nemesis picks from
    next_op: Callable[[random.Random, list[str]], Op]
    run: Callable[[str, Any, list[str], random.Random], Any]
    # (process, f, value) of the reads run once the faults are healed
    finals: Callable[[list[str]], list[tuple[str, str, Any]]] = lambda nodes: []
    setup: Callable[[list[str], str], None] = lambda nodes, topology: None
    settle_s: float = 1.0  # the quiet moment after the faults heal, before the final reads
    survives: tuple[str, ...] = ("partition", "kill")  # the faults it is built to pass (lab sim's default nemesis)
    # after ``settle_s``: polled until true (at most a minute more) before the final reads
    settled: Callable[[list[str]], bool] | None = None
    # more results, from the nodes and the history (wall clock of its time 0)
    report: Callable[[list[str], list[Any], float], dict[str, Any]] = lambda nodes, events, t0: {}


def _ids(actor: Any, name: str) -> Workload:
    return Workload(
        name=name,
        checker="unique-ids",
        type_name=actor.name,
        next_op=lambda rng, nodes: ("generate", None),
        run=lambda f, v, nodes, rng: actor[rng.choice(nodes)].generate.with_timeout(2.0)(),
    )


def _counter(actor: Any, name: str) -> Workload:
    def run(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        node = rng.choice(nodes)
        if f == "add":
            actor[node].add.with_timeout(2.0)(v)
            return v
        return actor[node].read.with_timeout(5.0)(nodes)

    return Workload(
        name=name,
        checker="g-counter",
        type_name=actor.name,
        next_op=lambda rng, nodes: ("add", rng.randint(1, 5)) if rng.random() < 0.8 else ("read", None),
        run=run,
        finals=lambda nodes: [("final", "read", None)],
    )


def _kv(actor: Any, name: str) -> Workload:
    def next_op(rng: random.Random, nodes: list[str]) -> Op:
        key, r = rng.choice(nodes), rng.random()  # a key per node
        if r < 0.5:
            return "read", [key, None]
        if r < 0.8:
            return "write", [key, rng.randint(0, 4)]
        return "cas", [key, [rng.randint(0, 4), rng.randint(0, 4)]]

    def run(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        key, arg = v
        ref = actor[key]
        if f == "read":
            return [key, ref.read.with_timeout(2.0)()]
        if f == "write":
            ref.write.with_timeout(2.0)(arg)
            return v
        if not ref.cas.with_timeout(2.0)(arg[0], arg[1]):
            raise DidNotHappen(f"cas {arg} found another value")
        return v

    return Workload(name=name, checker="kv", type_name=actor.name, next_op=next_op, run=run)


def _tree(nodes: list[str], fanout: int = 4) -> dict[str, list[str]]:
    """Each node's neighbors in a tree of the nodes (Maelstrom's ``tree4``)."""
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for i, n in enumerate(nodes[1:], 1):
        parent = nodes[(i - 1) // fanout]
        out[n].append(parent)
        out[parent].append(n)
    return out


def topology_of(nodes: list[str], kind: str) -> dict[str, list[str]]:
    if kind == "tree":
        return _tree(nodes)
    if kind == "line":
        return {n: [m for m in (nodes[i - 1] if i else None, nodes[i + 1] if i + 1 < len(nodes) else None) if m]
                for i, n in enumerate(nodes)}  # fmt: skip
    if kind == "total":
        return {n: [m for m in nodes if m != n] for n in nodes}
    raise ValueError(f"a topology is tree, line or total, not {kind!r}")


def _broadcast(actor: Any, name: str) -> Workload:
    def next_op(rng: random.Random, nodes: list[str]) -> Op:
        if rng.random() < 0.85:
            return "broadcast", rng.randrange(1 << 40)
        return "read", rng.choice(nodes)

    def run(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        if f == "broadcast":
            actor[rng.choice(nodes)].broadcast.with_timeout(2.0)(v)
            return v
        return actor[v].read.with_timeout(2.0)()

    def setup(nodes: list[str], topology: str) -> None:
        for node, neighbors in topology_of(nodes, topology).items():
            actor[node].topology(neighbors)

    def report(nodes: list[str], events: list[Any], wall_t0: float) -> dict[str, Any]:
        """Stable latency: from a broadcast's acknowledgement until every node had it."""
        arrivals = [actor[n].arrivals() for n in nodes]
        spans: list[float] = []
        for e in events:
            if e.type == "ok" and e.f == "broadcast":
                seen = [a.get(e.value) for a in arrivals]
                if all(t is not None for t in seen):
                    spans.append(max(0.0, (max(seen) - (wall_t0 + e.time / 1e9)) * 1000))
        spans.sort()
        if not spans:
            return {"stable_latency_ms": {"p50": 0.0, "p99": 0.0, "max": 0.0}}
        pick = spans[min(len(spans) - 1, int(len(spans) * 0.99))]
        return {"stable_latency_ms": {"p50": round(spans[len(spans) // 2], 1), "p99": round(pick, 1),
                                      "max": round(spans[-1], 1)}}  # fmt: skip

    return Workload(
        name=name, checker="broadcast", type_name=actor.name, next_op=next_op, run=run,
        finals=lambda nodes: [(f"final:{n}", "read", n) for n in nodes], setup=setup, report=report,
        settle_s=3 * RESEND_S + 1.0, survives=("partition",),  # in memory, as Maelstrom's nodes: a kill loses it
        settled=_Quiesced(actor),
    )  # fmt: skip


class _Quiesced:
    """Whether gossip has quiesced: every node holds the same values, or no node's values
    changed over the last three polls (a lost value is never coming: judge now)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.seen: list[Any] = []

    def __call__(self, nodes: list[str]) -> bool:
        try:
            now = [tuple(self.actor[n].read.with_timeout(5.0)()) for n in nodes]
        except (ff.CallTimeout, ff.Unavailable):
            return False  # a node that does not answer: not yet
        self.seen = [*self.seen[-2:], now]
        return len(set(now)) == 1 or (len(self.seen) == 3 and all(s == now for s in self.seen))


def _kafka(actor: Any, name: str) -> Workload:
    def next_op(rng: random.Random, nodes: list[str]) -> Op:
        key, r = rng.choice(nodes), rng.random()
        if r < 0.65:
            return "send", [key, rng.randrange(1 << 40)]
        if r < 0.85:
            return "poll", [key, rng.randrange(0, 40)]
        if r < 0.95:
            return "commit", [key, rng.randrange(0, 40)]
        return "list", [key, None]

    def run(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        key, arg = v
        log = actor[key]
        if f == "send":
            return [key, arg, log.send.with_timeout(2.0)(arg)]
        if f == "poll":
            return [key, log.poll.with_timeout(2.0)(arg, POLL_LIMIT if isinstance(arg, int) else 1 << 30)]
        if f == "commit":
            log.commit.with_timeout(2.0)(arg)
            return v
        return [key, log.committed_offset.with_timeout(2.0)()]

    def finals(nodes: list[str]) -> list[tuple[str, str, Any]]:
        return [(f"final:{n}", "poll", [n, 0]) for n in nodes]

    def run_final(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        if f == "poll" and v[1] == 0:  # a final poll: everything
            return [v[0], actor[v[0]].poll.with_timeout(10.0)(0, 1 << 30)]
        return run(f, v, nodes, rng)

    return Workload(name=name, checker="kafka", type_name=actor.name, next_op=next_op, run=run_final, finals=finals,
                    settle_s=2.0)  # fmt: skip


def _txn(actor: Any, name: str) -> Workload:
    counter = iter(range(1, 1 << 62))  # written values: unique per run (the checker names writers by them)

    def next_op(rng: random.Random, nodes: list[str]) -> Op:
        keys = ["x0", "x1", "x2"]  # few keys: transactions meet
        ops = []
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(keys)
            ops.append(["r", key, None] if rng.random() < 0.5 else ["w", key, next(counter)])
        return "txn", ops

    def run(f: str, v: Any, nodes: list[str], rng: random.Random) -> Any:
        out = actor[rng.choice(nodes)].txn.with_timeout(3.0)(v, nodes)
        if "unknown" in out:
            raise Indeterminate(out["unknown"])
        return out["ops"]

    return Workload(name=name, checker="read-committed", type_name=actor.name, next_op=next_op, run=run)


class DidNotHappen(Exception):
    """An operation that definitely took no effect (a cas whose compare failed): ``fail``."""


class Indeterminate(Exception):
    """An operation that may or may not have taken effect (some of a txn's writes): ``info``."""


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "unique_ids": lambda: _ids(IdNode, "unique_ids"),
    "unique_ids_broken": lambda: _ids(IdNodeBroken, "unique_ids_broken"),
    "g_counter": lambda: _counter(GCounter, "g_counter"),
    "g_counter_broken": lambda: _counter(GCounterBroken, "g_counter_broken"),
    "lin_kv": lambda: _kv(LinKV, "lin_kv"),
    "broadcast": lambda: _broadcast(BNode, "broadcast"),
    "broadcast_broken": lambda: _broadcast(BNodeBroken, "broadcast_broken"),
    "lin_kv_broken": lambda: _kv(LinKVBroken, "lin_kv_broken"),
    "kafka": lambda: _kafka(KLog, "kafka"),
    "kafka_broken": lambda: _kafka(KLogBroken, "kafka_broken"),
    "txn": lambda: _txn(TxnNode, "txn"),
    "txn_broken": lambda: _txn(TxnNodeBroken, "txn_broken"),
}
