"""The ``kafka`` and ``txn`` workloads' programs: plain fluentfn actor types, and a broken
twin of each with one planted bug (see ``_workloads``).

- ``KLog``: one identity per log (a key): ``send`` appends and returns the offset,
  ``poll`` reads from an offset, ``commit``/``committed`` keep a consumer offset. Each
  turn's change is durable before it is acknowledged (``persist="call"``), so a killed
  host loses nothing. ``KLogBroken`` acknowledges from memory only (``persist="never"``):
  a kill loses acknowledged sends.
- ``TxnNode``: registers spread over the nodes (a key lives on one node); any node runs
  a transaction: reads as it goes, writes buffered and installed at commit with a
  timestamp above everything it read (a register keeps the newest timestamp's value), so
  no reader sees an aborted or intermediate write and versions follow one order.
  ``TxnNodeBroken`` installs each write as the transaction runs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fluentfn as ff

POLL_LIMIT = 20


class _KLog:
    def __init__(self) -> None:
        self.msgs: list[Any] = []
        self.committed: int | None = None

    def send(self, msg: Any) -> int:
        self.msgs.append(msg)
        return len(self.msgs) - 1

    def poll(self, start: int, limit: int = POLL_LIMIT) -> list[list[Any]]:
        start = max(0, int(start))
        return [[o, self.msgs[o]] for o in range(start, min(len(self.msgs), start + int(limit)))]

    def commit(self, offset: int) -> None:
        if self.committed is None or offset > self.committed:
            self.committed = offset

    def committed_offset(self) -> int | None:
        return self.committed


class _KLogBroken(_KLog):
    """Broken: acknowledged from memory (the type is ``persist="never"``): a kill loses sends."""


class _TxnNode:
    """One node: the registers whose keys it owns (key -> (value, timestamp))."""

    def __init__(self) -> None:
        self.regs: dict[str, tuple[Any, int]] = {}

    async def get(self, key: str) -> tuple[Any, int]:
        return self.regs.get(key, (None, 0))

    async def put(self, key: str, value: Any, ts: int) -> None:
        if ts > self.regs.get(key, (None, 0))[1]:
            self.regs[key] = (value, ts)

    async def _read(self, key: str, nodes: list[str]) -> tuple[Any, int]:
        owner = _owner(key, nodes)
        if owner == ff.context().key:
            return await self.get(key)
        value, ts = await _peer(owner).get.with_timeout(1.0).aio(key)
        return value, int(ts)

    async def txn(self, ops: list[list[Any]], nodes: list[str]) -> dict[str, Any]:
        """Run ``ops``; ``{"ops": ...}`` when committed, ``{"unknown": why}`` when some
        writes may have been installed; raises (nothing written) when it aborted."""
        done: list[list[Any]] = []
        writes: dict[str, Any] = {}
        seen_ts = 0
        for f, key, value in ops:  # an error here aborts the txn: nothing was written
            if f == "w":
                writes[key] = value
                done.append([f, key, value])
            elif key in writes:
                done.append([f, key, writes[key]])
            else:
                try:
                    got, ts = await self._read(key, nodes)
                except ff.FluentError as e:
                    raise TxnAborted(f"aborted before any write: {type(e).__name__}: {e}") from None
                seen_ts = max(seen_ts, ts)
                done.append([f, key, got])
        ts = max(time.time_ns(), seen_ts + 1)
        try:
            await asyncio.gather(*(self._write(k, v, ts, nodes) for k, v in writes.items()))
        except ff.FluentError as e:
            return {"unknown": f"{type(e).__name__}: {e}"}
        return {"ops": done}

    async def _write(self, key: str, value: Any, ts: int, nodes: list[str]) -> None:
        owner = _owner(key, nodes)
        if owner == ff.context().key:
            await self.put(key, value, ts)
        else:
            await _peer(owner).put.with_timeout(1.0).aio(key, value, ts)


class _TxnNodeBroken(_TxnNode):
    """Broken: each write is installed as the transaction reaches it, and an error
    aborts the rest (earlier writes stay, the client hears it failed)."""

    async def txn(self, ops: list[list[Any]], nodes: list[str]) -> dict[str, Any]:
        done: list[list[Any]] = []
        try:
            for f, key, value in ops:
                if f == "w":  # a message to the key's owner, even when that is this node
                    await _peer(_owner(key, nodes)).put.with_timeout(1.0).aio(key, value, time.time_ns())
                    done.append([f, key, value])
                else:
                    got, _ = await self._read(key, nodes)
                    done.append([f, key, got])
        except ff.FluentError as e:  # the planted bug: "aborted", though earlier writes stay
            raise TxnAborted(f"aborted: {type(e).__name__}: {e}") from None
        return {"ops": done}


class TxnAborted(Exception):
    """A transaction that aborted with nothing written (the client records ``fail``)."""


def _owner(key: str, nodes: list[str]) -> str:
    return nodes[sum(key.encode()) % len(nodes)]


def _peer(key: str) -> Any:
    return ff.ref(f"{ff.context().type_name}/{key}")


KLog = ff.actor(name="KLog", max_hosts=32, persist="call")(_KLog)
KLogBroken = ff.actor(name="KLogBroken", max_hosts=32, persist="never")(_KLogBroken)
TxnNode = ff.actor(name="TxnNode", max_hosts=32, persist="call", reentrant=True)(_TxnNode)
TxnNodeBroken = ff.actor(name="TxnNodeBroken", max_hosts=32, persist="call", reentrant=True)(_TxnNodeBroken)
