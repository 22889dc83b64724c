"""Bulk calls: one message per shard runs a method on many identities of the host."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from .._actordef import ActorDef, MethodInfo
from .._call import Call, Outcome
from ..errors import FluentError, InvalidRequest
from ..wire import codec
from ..wire.errors import describe_error
from ..wire.records import record_of
from ._ports import BulkPort
from ._turn import Request

Item = tuple[Call, tuple[Any, ...], dict[str, Any]]


def item_request_id(batch: str, key: str) -> str:
    """A bulk item's request id: the same for the item in every re-sent copy of its batch
    (whatever the other items), so an item that ran is answered from its record."""
    seed = f"{batch}/{key}".encode("utf-8", "surrogatepass")
    return "b" + hashlib.blake2b(seed, digest_size=12).hexdigest()


async def bulk(engine: BulkPort, definition: ActorDef, call: Call) -> Outcome:
    """Run ``method`` on many identities of this shard (``ActorType.bulk``). One worker
    decodes the batch and, for a sync method, runs and encodes it too: the event loop
    stays free for other calls however large the batch. An async method's items are
    then dispatched on the loop, as turns of their own."""
    ran = await engine.loop.run_in_executor(engine.workers, _in_worker, engine, definition, call)
    if isinstance(ran, Outcome):
        return ran
    replies = await asyncio.gather(*(engine.dispatch(sub, local=True) for sub in ran))
    return _outcome(replies)


def _in_worker(engine: BulkPort, definition: ActorDef, call: Call) -> Outcome | list[Call]:
    """A sync method's batch, run: its reply. An async method's: its items, to dispatch."""
    method, items = _items(engine, definition, call)
    if not method.is_async:
        return _outcome(_bulk_sync(engine, definition, method, items))
    for sub, a, kw in items:
        sub.args = codec.encode_args(a, kw)
    return [sub for sub, _, _ in items]


def _items(engine: BulkPort, definition: ActorDef, call: Call) -> tuple[MethodInfo, list[Item]]:
    """The items of a bulk call, each a call of its own (InvalidRequest if malformed)."""
    args, _ = codec.decode_args(call.args)
    if not (
        2 <= len(args) <= 4
        and isinstance(args[0], str)
        and isinstance(args[1], list)
        and all(isinstance(a, str) for a in args[2:3])
        and all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in args[3:4])
    ):
        raise InvalidRequest("a bulk call carries [method, [[key, args, kwargs], ...], batch id?, attempt?]")
    method = definition.method(args[0])
    batch = args[2] if len(args) > 2 else call.request_id
    attempt = max(call.attempt, args[3] if len(args) > 3 else 0)
    items: list[Item] = []
    for entry in args[1]:
        if not (
            isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], list) and isinstance(entry[2], dict)
        ):
            raise InvalidRequest("a bulk entry is [key, args, kwargs]")
        key = engine.own(entry[0])
        sub_id = item_request_id(batch, key)
        # Positional (keywords cost a third of the item's bookkeeping). ``attempt``: a re-sent
        # batch's items may have run, and their recorded replies answer.
        sub = Call(call.type_name, key, method.name, b"", sub_id, call.deadline, (), sub_id, 0, False, attempt)
        items.append((sub, tuple(entry[1]), entry[2]))
    return method, items


def _outcome(replies: list[Outcome | None]) -> Outcome:
    """The bulk call's reply: the record of each item's outcome, in order."""
    return Outcome(value=codec.encode([record_of(r) if r is not None else b"" for r in replies]))


def _bulk_sync(engine: BulkPort, definition: ActorDef, method: MethodInfo, items: list[Item]) -> list[Outcome | None]:
    """Sync bulk items in this worker thread: no hop per identity."""
    out: list[Outcome | None] = []
    engine.counters["local_calls"] += len(items)
    for sub, args, kwargs in items:
        try:
            method.bind(args, kwargs)
        except FluentError as exc:
            engine.counters["errors"] += 1
            out.append(Outcome(error=describe_error(exc)))
            continue
        out.append(engine.turn_here(Request(definition, method, sub, sub.key, args, kwargs)))
    return out
