"""The ``kafka`` checker: a replicated log per key, as Maelstrom's kafka workload.

Operations (``value`` at invocation → output when ``ok``):

- ``send``: ``[key, msg]`` → ``[key, msg, offset]``
- ``poll``: ``[key, from]`` → ``[key, [[offset, msg], ...]]`` (offsets from ``from`` on)
- ``commit``: ``[key, offset]`` → the same
- ``list``: ``[key, null]`` → ``[key, committed offset or null]``

Messages are unique (the generator's). The history is invalid when it shows:

- ``inconsistent_offsets``: one (key, offset) holding two messages (sends or polls);
- ``duplicated``: one message at two offsets;
- ``phantom``: a polled message no send tried;
- ``nonmonotonic_polls``: a poll whose offsets do not rise strictly from ``from``;
- ``lost``: an acknowledged send missing from a poll that began after it and whose
  offsets span its offset (and from the final polls, made once faults healed);
- ``committed_regressed``: a committed offset read lower than one read before it began.
"""

from __future__ import annotations

import itertools
from typing import Any

from ._history import Event, HistoryError, Operation, operations

_LIMIT = 20  # what a list in the result shows at most


def _pair(v: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(v, list | tuple) or len(v) < 2:
        raise HistoryError(f"a kafka {what} value is [key, ...], got {v!r}")
    return v[0], v[1]


def _entries(op: Operation) -> list[tuple[int, Any]]:
    _key, got = _pair(op.output, "poll")
    if not isinstance(got, list | tuple) or not all(isinstance(e, list | tuple) and len(e) == 2 for e in got):
        raise HistoryError(f"a kafka poll's output is [key, [[offset, msg], ...]], got {op.output!r}")
    return [(int(o), m) for o, m in got]


def check_kafka(events: list[Event]) -> dict[str, Any]:
    ops = operations(events)
    sends = [op for op in ops if op.f == "send"]
    tried = {(_pair(op.value, "send")) for op in sends}
    where: dict[tuple[Any, int], set[Any]] = {}  # (key, offset) -> messages seen there
    at: dict[tuple[Any, Any], set[int]] = {}  # (key, msg) -> offsets it was seen at
    acked: list[tuple[Operation, Any, Any, int]] = []
    for op in sends:
        if op.status == "ok":
            key, msg = _pair(op.value, "send")
            offset = int(op.output[2])
            acked.append((op, key, msg, offset))
            where.setdefault((key, offset), set()).add(msg)
            at.setdefault((key, msg), set()).add(offset)
    polls = [op for op in ops if op.f == "poll" and op.status == "ok"]
    phantom: list[Any] = []
    nonmonotonic: list[Any] = []
    for op in polls:
        key, start = _pair(op.value, "poll")
        entries = _entries(op)
        offsets = [o for o, _ in entries]
        if offsets and (offsets[0] < int(start) or any(b <= a for a, b in itertools.pairwise(offsets))):
            nonmonotonic.append({"key": key, "from": start, "offsets": offsets[:_LIMIT]})
        for o, m in entries:
            where.setdefault((key, o), set()).add(m)
            at.setdefault((key, m), set()).add(o)
            if (key, m) not in tried:
                phantom.append([key, o, m])
    inconsistent = [[k, o, sorted(ms, key=repr)] for (k, o), ms in where.items() if len(ms) > 1]
    duplicated = [[k, m, sorted(os)] for (k, m), os in at.items() if len(os) > 1]
    lost: list[Any] = []
    for op in polls:
        key, start = _pair(op.value, "poll")
        entries = _entries(op)
        final = str(op.process).startswith("final")  # made once faults healed, of everything
        if not entries and not final:
            continue
        seen = {m for _, m in entries}
        high = entries[-1][0] if entries else -1
        for send, k, msg, offset in acked:
            spans = int(start) <= offset <= high or (final and offset >= int(start))
            if k == key and spans and send.ret is not None and send.ret < op.call and msg not in seen:
                lost.append({"key": k, "msg": msg, "offset": offset, "poll_process": op.process})
    regressed = _committed_regressions(ops)
    valid = not (inconsistent or duplicated or phantom or nonmonotonic or lost or regressed)
    return {
        "valid": valid,
        "sends_acknowledged": len(acked),
        "polls": len(polls),
        "inconsistent_offsets": inconsistent[:_LIMIT],
        "duplicated": duplicated[:_LIMIT],
        "phantom": phantom[:_LIMIT],
        "nonmonotonic_polls": nonmonotonic[:_LIMIT],
        "lost": lost[:_LIMIT],
        "lost_count": len(lost),
        "committed_regressed": regressed[:_LIMIT],
    }


def _committed_regressions(ops: list[Operation]) -> list[dict[str, Any]]:
    reads = [op for op in ops if op.f == "list" and op.status == "ok" and op.output[1] is not None]
    out = []
    for a in reads:
        for b in reads:
            if a.ret is not None and a.ret < b.call and a.output[0] == b.output[0] and b.output[1] < a.output[1]:
                out.append({"key": a.output[0], "read": a.output[1], "then": b.output[1]})
    return out
