"""Histories from Jepsen's text logs (``INFO  jepsen.util - 3	:ok	:read	2``), such as the
etcd histories published with Jepsen's analyses, as history events (``cas-register``)."""

from __future__ import annotations

import re
from typing import Any

from ._history import Event, HistoryError

_LINE = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(\w[\w-]*)\s+(.*?)\s*$")
_PAIR = re.compile(r"^\[\s*(-?\d+|nil)\s+(-?\d+|nil)\s*\]$")


def _value(text: str) -> Any:
    if text == "nil" or text.startswith(":"):  # :timed-out and other keywords: no value
        return None
    pair = _PAIR.match(text)
    if pair:
        return [_value(pair.group(1)), _value(pair.group(2))]
    try:
        return int(text)
    except ValueError:
        raise HistoryError(f"a value Jepsen's log format does not have here: {text!r}") from None


def parse_jepsen_log(text: str) -> list[Event]:
    """The events of a Jepsen log; lines that are not operations are skipped. Times are
    the events' order (the logs carry none)."""
    events: list[Event] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        process, type_, f, raw = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        events.append(Event(len(events), len(events), process, type_, f, _value(raw)))
    return events
