"""Where a call's time goes, measured cheaply in every process and summed cluster-wide.

A turn is timed in phases: ``queue`` (arrived until its turn began: mailbox, admission,
in FaaS mode the platform's dispatch and the environment's start), ``load`` (activation:
the state read and ``__init__``/restore; in FaaS mode every invocation's load), ``run``
(the method), ``write`` (the durability point; in FaaS mode the result's write too),
``init`` (FaaS only: reading the request and loading the code, a cold start's work).
The FaaS platform times its environments' cold starts (``start``, under
``faas.environment``). The caller times the whole round trip (``call``); ``network`` is what the caller waited
beyond the turn's own phases, as a mean (the mean of a difference is the difference of
the means, over the same calls).

Each process keeps one ``PhaseTally`` of log-spaced histograms. A method's first
``EXACT`` turns in a process are all timed, then one in ``EVERY`` (counted ``EVERY``
times): a hot method pays a dict lookup per turn, and its figures stay unbiased. It travels inside the
counters every process already reports (keys starting with ``~``), so the cluster's
ledger sums it over hosts, FaaS invocations and drivers, and keeps what stopped hosts
counted; ``breakdown`` turns those keys back into p50/p99/mean per type and method.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PHASES", "TALLY", "PhaseTally", "breakdown", "split_counters"]

PHASES = ("queue", "init", "load", "run", "write", "call", "start")
"""The phases kept; ``network`` is derived (see the module's docstring)."""

_MIN_S = 1e-6  # bucket 0 holds everything up to a microsecond
_RATIO = 1.2  # each bucket is 20% wider than the last: a quantile is known to within 10%
_LOG_RATIO = math.log(_RATIO)
_BUCKETS = 120  # up to about 3 hours
EXACT = 256  # the turns (and calls) of each method a process times, every one, before it samples
EVERY = 16  # then one in EVERY, counted EVERY times
PREFIX = "~"
SUM_US = "s"  # a histogram's sum, in microseconds
COUNT = "n"


_INV_LOG_RATIO = 1.0 / _LOG_RATIO
_TOP = _BUCKETS - 1


def bucket_of(seconds: float) -> int:
    if seconds <= _MIN_S:
        return 0
    return min(_TOP, 1 + int(math.log(seconds / _MIN_S) * _INV_LOG_RATIO))


def bucket_upper(index: int) -> float:
    """The upper bound of bucket ``index``, in seconds."""
    return float(_MIN_S * _RATIO**index)


class PhaseTally:
    """Per (type, method, phase) histograms of one process; safe from any thread. One
    lock acquisition per turn; no strings made per observation."""

    __slots__ = ("_by_what", "_calls", "_lock", "_turns")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_what: dict[str, dict[str, list[int]]] = {}  # "Type.method" -> phase -> [n, sum_us, buckets...]
        self._turns: dict[str, int] = {}  # turns of each "Type.method" seen (for sampling)
        self._calls: dict[str, int] = {}  # calls made of each

    @staticmethod
    def _weight(seen: dict[str, int], what: str) -> int:
        n = seen.get(what, 0) + 1
        seen[what] = n  # a lost increment under a race only moves the sample by one
        if n <= EXACT:
            return 1
        return EVERY if n % EVERY == 0 else 0

    def turn_weight(self, what: str) -> int:
        """How much the next turn of ``what`` counts for: 1 for its first ``EXACT`` turns in
        this process, then ``EVERY`` for one turn in ``EVERY`` and 0 (not timed) for the rest,
        so a hot method costs a dict lookup per turn while its histogram stays unbiased."""
        return self._weight(self._turns, what)

    def untimed(self, what: str) -> int:
        """How many of ``what``'s next turns ``turn_weight`` would give 0 (0: the next one
        is timed). A batch runs that many without asking, then ``skip``s them."""
        n = self._turns.get(what, 0) + 1  # the next turn's number
        return 0 if n <= EXACT else -n % EVERY

    def skip(self, what: str, count: int) -> None:
        """Count ``count`` turns of ``what`` that ran untimed (``untimed`` said they would)."""
        self._turns[what] = self._turns.get(what, 0) + count

    def call_weight(self, what: str) -> int:
        """``turn_weight`` for the calls this process makes of ``what``."""
        return self._weight(self._calls, what)

    def observe(self, what: str, phases: Iterable[tuple[str, float]], weight: int = 1) -> None:
        """Record one turn's (or call's) ``phases`` (name, seconds) of ``what`` ("Type.method")."""
        self.observe_spans(what, [(p, 0.0, s) for p, s in phases], weight)

    def observe_spans(self, what: str, spans: Iterable[tuple[str, float, float]], weight: int = 1) -> None:
        """Record ``spans`` (name, start, end: perf_counter seconds) of one turn of ``what``,
        counted ``weight`` times (see ``turn_weight``)."""
        table = self._by_what.get(what)
        if table is None:
            with self._lock:
                table = self._by_what.setdefault(what, {})
        log, inv, top = math.log, _INV_LOG_RATIO, _TOP
        with self._lock:
            for phase, t0, t1 in spans:
                h = table.get(phase)
                if h is None:
                    h = table[phase] = [0] * (2 + _BUCKETS)
                us = (t1 - t0) * 1e6
                h[0] += weight
                h[1] += int(us * weight)
                if us <= 1.0:
                    h[2] += weight
                else:
                    b = 1 + int(log(us) * inv)
                    h[2 + (b if b < top else top)] += weight

    def counters(self) -> dict[str, int]:
        """The tally as counters (only non-empty buckets): ``~Type.method~phase~n``,
        ``~...~s`` (sum in µs) and ``~...~<bucket>``."""
        out: dict[str, int] = {}
        with self._lock:
            for what, table in self._by_what.items():
                for phase, h in table.items():
                    key = f"{PREFIX}{what}{PREFIX}{phase}"
                    out[f"{key}{PREFIX}{COUNT}"] = h[0]
                    out[f"{key}{PREFIX}{SUM_US}"] = h[1]
                    for i, c in enumerate(h[2:]):
                        if c:
                            out[f"{key}{PREFIX}{i}"] = c
        return out

    def drain(self) -> dict[str, int]:
        """``counters()``, and start again from zero (a FaaS invocation reports its own)."""
        with self._lock:
            taken = PhaseTally()
            taken._by_what, self._by_what = self._by_what, {}
        return taken.counters()


TALLY = PhaseTally()
"""This process's tally."""


def split_counters(counters: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(plain counters, phase counters)."""
    plain: dict[str, int] = {}
    phases: dict[str, int] = {}
    for k, v in counters.items():
        (phases if k.startswith(PREFIX) else plain)[k] = v
    return plain, phases


def quantile_ms(buckets: dict[int, int], count: int, q: float, digits: int = 4) -> float:
    """The ``q`` quantile, in ms: the upper bound of its bucket (pessimistic by < 20%)."""
    rank = max(1, math.ceil(q * count))
    seen = 0
    for i in sorted(buckets):
        seen += buckets[i]
        if seen >= rank:
            return round(bucket_upper(i) * 1000, digits)
    return round(bucket_upper(max(buckets, default=0)) * 1000, digits)


def breakdown(counters: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Per "Type.method": ``calls`` (turns timed), and per phase ``{p50, p99, mean}`` in ms,
    ``network_ms`` (the caller's mean wait beyond the turn's phases, where both were seen)."""
    raw: dict[str, dict[str, dict[str, Any]]] = {}
    for k, v in counters.items():
        if not k.startswith(PREFIX):
            continue
        parts = k[1:].split(PREFIX)
        if len(parts) != 3:
            continue
        what, phase, field = parts
        h = raw.setdefault(what, {}).setdefault(phase, {"n": 0, "s": 0, "b": {}})
        if field == COUNT:
            h["n"] += v
        elif field == SUM_US:
            h["s"] += v
        elif field.isdigit():
            h["b"][int(field)] = h["b"].get(int(field), 0) + v
    out: dict[str, dict[str, Any]] = {}
    for what in sorted(raw):
        phases = raw[what]
        entry: dict[str, Any] = {"calls": phases.get("run", phases.get("call", {"n": 0}))["n"]}
        for phase in PHASES:
            got = phases.get(phase)
            if got is None or not got["n"]:
                continue
            entry[f"{phase}_ms"] = {
                "p50": quantile_ms(got["b"], got["n"], 0.5),
                "p99": quantile_ms(got["b"], got["n"], 0.99),
                "mean": round(got["s"] / got["n"] / 1000, 4),
                "count": got["n"],
            }
        turns = phases.get("run", {"n": 0})["n"]
        if "call_ms" in entry and turns:  # each phase's time per turn (load and write are not on every turn)
            per_turn = (
                sum(phases[p]["s"] for p in ("queue", "init", "load", "run", "write") if p in phases) / turns / 1000
            )
            entry["network_ms"] = {"mean": round(max(0.0, entry["call_ms"]["mean"] - per_turn), 4)}
        out[what] = entry
    return out
