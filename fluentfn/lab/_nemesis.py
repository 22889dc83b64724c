"""Faults carried out: a ``Tap`` on this process's router that gives each message the fate
its ``Faults`` say (and records it, when the run records messages), and the calls that
put a set of faults in force in every process of the cluster (the driver's, and each
host's through the directory)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from .._call import Call, Outcome
from .._router import Target
from ..errors import FluentError
from ..transport._caller import Intercept, install_tap
from ._faults import CLIENT, DELIVERED, Faults

_current = Faults()


class MessageLog:
    """This process's record of the messages it sends and the replies it gets: one JSON
    line each, in ``messages-<pid>.jsonl`` under the run's folder (sender's clock, ns)."""

    def __init__(self, folder: str) -> None:
        self.path = Path(folder) / f"messages-{os.getpid()}.jsonl"
        self._lock = threading.Lock()
        self._out = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed by close()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"), default=str)
        with self._lock:
            self._out.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._out.close()


class FaultTap:
    """Gives each request and each reply the fate ``faults`` decide (a lost request or
    reply leaves its caller waiting until the call's deadline), and records both when
    the run records messages."""

    def __init__(self, faults: Faults, log: MessageLog | None = None) -> None:
        self.faults = faults
        self.log = log

    def sending(self, call: Call, target: Target) -> bool | Intercept:
        fate = self.faults.request(call.caller, f"{call.type_name}/{call.key}", call.request_id, call.attempt)
        if self.log is not None:
            fault = "lost" if fate.lost else "duplicated" if fate.copies > 1 else "delayed" if fate.delay_s else None
            self.log.write({
                "kind": "tell" if call.one_way else "call", "from": call.caller or CLIENT,
                "to": f"{call.type_name}/{call.key}", "method": call.method, "request_id": call.request_id,
                "attempt": call.attempt, "time": time.time_ns(), "fault": fault,
                "delay_ms": round(fate.delay_s * 1000, 3),
            })  # fmt: skip
        if fate is DELIVERED:
            return True
        return Intercept(silent=fate.lost, delay_s=fate.delay_s, copies=fate.copies)

    def received(self, call: Call, target: Target, reply: Outcome | None, error: FluentError | None) -> bool | None:
        if error is not None:  # the transport's own failure, not a message
            return None
        kept = self.faults.reply(call.caller, f"{call.type_name}/{call.key}", call.request_id, call.attempt)
        if self.log is not None:
            self.log.write({
                "kind": "reply", "from": f"{call.type_name}/{call.key}", "to": call.caller or CLIENT,
                "method": call.method, "request_id": call.request_id, "attempt": call.attempt,
                "time": time.time_ns(), "fault": None if kept else "lost",
                "error": reply.error.code if reply is not None and reply.error is not None else None,
            })  # fmt: skip
        return kept


_log: MessageLog | None = None


def install(faults: Faults) -> None:
    """Put ``faults`` in force in this process (no tap at all when there are none and no
    recording: the router's fast path is untouched)."""
    global _current, _log
    _current = faults
    if _log is not None and str(_log.path.parent) != faults.record_dir:
        _log.close()
        _log = None
    if faults.record_dir and _log is None:
        _log = MessageLog(faults.record_dir)
    install_tap(FaultTap(faults, _log) if faults.active else None)


def current() -> Faults:
    return _current


def apply(faults: Faults) -> Faults:
    """Put ``faults`` in force here and in every host of the cluster (hosts started later
    get them from the directory); returns them."""
    from .._ref import current_invoker

    global _current
    invoker: Any = current_invoker()
    push = getattr(invoker, "set_faults", None)
    if push is None:
        raise FluentError(f"faults need a cluster; this process's runtime is {invoker.mode!r}")
    push(faults)
    if getattr(invoker, "mode", "") == "sim":  # the simulation applies and records them itself
        _current = faults
    else:
        install(faults)
    return faults


def gather(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every process's recorded messages under ``run_dir``, in time order; also written
    to ``run_dir/messages.jsonl``."""
    folder = Path(run_dir)
    entries: list[dict[str, Any]] = []
    for part in sorted(folder.glob("messages-*.jsonl")):
        with open(part) as lines:
            for line in lines:
                if line.strip():
                    try:
                        entries.append(json.loads(line))
                    except ValueError:  # a line cut short by a killed process
                        continue
    entries.sort(key=lambda e: e.get("time", 0))
    with open(folder / "messages.jsonl", "w") as out:
        for e in entries:
            out.write(json.dumps(e, separators=(",", ":")) + "\n")
    return entries
