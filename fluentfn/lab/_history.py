"""Histories in Jepsen's model: each client operation an ``invoke`` event, then one of
``ok``, ``fail`` (it definitely did not happen) or ``info`` (indeterminate: it may or may
not have happened). Events carry ``index`` (their order), ``time`` (monotonic, in ns),
``process``, ``type``, ``f`` and ``value``; a history file is JSONL, one event a line, in
real-time order."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TYPES = ("invoke", "ok", "fail", "info")


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history."""

    index: int
    time: int
    process: int | str
    type: str
    f: str
    value: Any

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "time": self.time, "process": self.process, "type": self.type, "f": self.f,
                "value": self.value}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion: what the checkers work on. ``output``
    is the completion's value (None for an ``info`` op: unknown); ``ret`` is None for an
    op that never completed definitely (``info``, or no completion at all)."""

    id: int
    process: int | str
    f: str
    value: Any
    output: Any
    status: str  # "ok" or "info" ("fail" ops are left out: they did not happen)
    call: int
    ret: int | None


class HistoryError(ValueError):
    """A history that does not follow the model (a completion with no invocation, ...)."""


class Recorder:
    """Records client operations as they happen (thread-safe); ``write`` saves them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._open: dict[int | str, str] = {}
        self._t0 = time.monotonic_ns()
        self.wall_t0 = time.time()  # the wall clock when times are 0 (to compare with identities' clocks)

    def _add(self, process: int | str, type_: str, f: str, value: Any) -> Event:
        with self._lock:
            event = Event(len(self._events), time.monotonic_ns() - self._t0, process, type_, f, value)
            self._events.append(event)
            return event

    def seconds(self) -> float:
        """Seconds since this history's time 0 (its events' clock)."""
        return (time.monotonic_ns() - self._t0) / 1e9

    def invoke(self, process: int | str, f: str, value: Any = None) -> None:
        """``process`` starts an operation (one at a time per process)."""
        with self._lock:
            if process in self._open:
                raise HistoryError(f"process {process!r} invoked {f} while its {self._open[process]} is open")
            self._open[process] = f
        self._add(process, "invoke", f, value)

    def complete(self, process: int | str, type_: str, value: Any = None) -> None:
        """The open operation of ``process`` ended: ``ok``, ``fail`` or ``info``."""
        if type_ not in ("ok", "fail", "info"):
            raise HistoryError(f"a completion is ok, fail or info, not {type_!r}")
        with self._lock:
            f = self._open.pop(process, None)
        if f is None:
            raise HistoryError(f"process {process!r} completed an operation it never invoked")
        self._add(process, type_, f, value)

    def ok(self, process: int | str, value: Any = None) -> None:
        self.complete(process, "ok", value)

    def fail(self, process: int | str, value: Any = None) -> None:
        self.complete(process, "fail", value)

    def info(self, process: int | str, value: Any = None) -> None:
        self.complete(process, "info", value)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def write(self, path: str | Path) -> None:
        write_jsonl(self.events, path)


def write_jsonl(events: Iterable[Event], path: str | Path) -> None:
    with open(path, "w") as out:
        for e in events:
            out.write(json.dumps(e.as_json(), separators=(",", ":")) + "\n")


def read_jsonl(path: str | Path) -> list[Event]:
    """The events of a history file; HistoryError names the first bad line."""
    out: list[Event] = []
    with open(path) as lines:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise TypeError(f"an event is a JSON object, not {type(d).__name__}")
                event = Event(int(d.get("index", len(out))), int(d.get("time", len(out))), d["process"], d["type"],
                              str(d["f"]), d.get("value"))  # fmt: skip
            except (ValueError, KeyError, TypeError) as exc:
                raise HistoryError(f"{path}:{n}: not a history event ({type(exc).__name__}: {exc})") from None
            if event.type not in TYPES:
                raise HistoryError(f"{path}:{n}: type is one of {', '.join(TYPES)}, not {event.type!r}")
            out.append(event)
    return out


def operations(events: Iterable[Event]) -> list[Operation]:
    """Pair each invocation with its process's next completion. ``fail`` ops are dropped
    (they did not happen); an invocation never completed counts as ``info``."""
    pending: dict[int | str, tuple[int, Event]] = {}
    ops: list[Operation] = []
    for pos, e in enumerate(events):
        if e.type == "invoke":
            if e.process in pending:
                raise HistoryError(f"event {e.index}: process {e.process!r} invoked twice without a completion")
            pending[e.process] = (pos, e)
            continue
        opened = pending.pop(e.process, None)
        if opened is None:
            raise HistoryError(f"event {e.index}: a completion of process {e.process!r} with no invocation")
        start, inv = opened
        if e.type == "fail":
            continue
        if e.type == "ok":
            ops.append(Operation(len(ops), e.process, inv.f, inv.value, e.value, "ok", start, pos))
        else:
            ops.append(Operation(len(ops), e.process, inv.f, inv.value, None, "info", start, None))
    for start, inv in pending.values():
        ops.append(Operation(len(ops), inv.process, inv.f, inv.value, None, "info", start, None))
    return ops


def by_process(events: Iterable[Event]) -> Iterator[tuple[int | str, list[Event]]]:
    groups: dict[int | str, list[Event]] = {}
    for e in events:
        groups.setdefault(e.process, []).append(e)
    yield from groups.items()
