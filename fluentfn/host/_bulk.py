"""Bulk calls: one message per shard runs a method on many identities of the host."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, NamedTuple

from .._actordef import ActorDef, MethodInfo
from .._call import Call, Outcome
from ..errors import FluentError, InvalidRequest
from ..wire import codec
from ..wire.errors import describe_error
from ..wire.records import record_of
from ._ports import BulkPort
from ._turn import Item, Items


def item_request_id(batch: str, key: str) -> str:
    """A bulk item's request id: the same for the item in every re-sent copy of its batch
    (whatever the other items), so an item that ran is answered from its record."""
    return item_id(batch_seed(batch), key)


def batch_seed(batch: str) -> hashlib.blake2b:
    """The hash of ``batch``'s part of its items' ids, made once a batch (``item_id``)."""
    return hashlib.blake2b(f"{batch}/".encode("utf-8", "surrogatepass"), digest_size=12)


def item_id(seed: hashlib.blake2b, key: str) -> str:
    """``item_request_id`` from its batch's ``batch_seed``: the hash goes on from a copy of
    the batch's (half the time of hashing both parts for each item)."""
    h = seed.copy()
    h.update(key.encode("utf-8", "surrogatepass"))
    return "b" + h.hexdigest()


async def bulk(engine: BulkPort, definition: ActorDef, call: Call) -> Outcome:
    """Run ``method`` on many identities of this shard (``ActorType.bulk``). One worker
    decodes the batch and, for a sync method, runs and encodes it too: the event loop
    stays free for other calls however large the batch. An async method's items are
    then dispatched on the loop, as turns of their own."""
    ran = await engine.loop.run_in_executor(engine.workers, _in_worker, engine, definition, call)
    if isinstance(ran, Outcome):
        return ran
    replies = await asyncio.gather(*(engine.dispatch(sub, local=True) for sub in ran))
    return Outcome(value=codec.encode([record_of(r) if r is not None else b"" for r in replies]))


def _in_worker(engine: BulkPort, definition: ActorDef, call: Call) -> Outcome | list[Call]:
    """A sync method's batch, run: its reply (each item's record, in order). An async
    method's: its items, to dispatch."""
    batch = Batch.of(engine, definition, call)
    if not batch.method.is_async:
        return Outcome(value=codec.encode(_bulk_sync(engine, batch)))
    subs: list[Call] = []
    turns = batch.turns()
    for key, args in zip(batch.keys, batch.arguments, strict=True):
        sub = turns.call(key, item_id(batch.seed, key))  # its id the same in every re-sent copy
        sub.args = codec.encode_args(tuple(args), {})
        subs.append(sub)
    return subs


class Batch(NamedTuple):
    """A bulk call's items, checked (``_ref.bulk_message``): ``keys``, each owned here, and
    the positional ``arguments`` of each, in the same order."""

    definition: ActorDef
    method: MethodInfo
    call: Call
    keys: list[str]
    arguments: list[list[Any]]
    batch: str
    attempt: int
    seed: hashlib.blake2b  # ``batch_seed(batch)``

    @classmethod
    def of(cls, engine: BulkPort, definition: ActorDef, call: Call) -> Batch:
        """The items of a bulk call (InvalidRequest if malformed, Redirect if a key is
        not this shard's): all checked before any runs."""
        args, _ = codec.decode_args(call.args)
        if not (
            3 <= len(args) <= 5
            and isinstance(args[0], str)
            and type(args[1]) is list
            and type(args[2]) is list
            and len(args[1]) == len(args[2])
            and all(isinstance(a, str) for a in args[3:4])
            and all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in args[4:5])
        ):
            raise InvalidRequest(
                "a bulk call carries [method, [key, ...], [[arg, ...] for each key], batch id?, attempt?]"
            )
        method = definition.method(args[0])
        arguments: list[list[Any]] = args[2]
        if set(map(type, arguments)) - {list}:  # (the types, gathered in C: no step per item)
            raise InvalidRequest("a bulk item's arguments are a list of them")
        keys = engine.own_all(args[1])
        # ``attempt``: a re-sent batch's items may have run, and their recorded replies answer.
        attempt = max(call.attempt, args[4] if len(args) > 4 else 0)
        batch = args[3] if len(args) > 3 else call.request_id
        return cls(definition, method, call, keys, arguments, batch, attempt, batch_seed(batch))

    def turns(self) -> Items:
        """What the batch's items share, as their turns see it."""
        return Items(self.definition, self.method, self.call, self.attempt)


_CHUNK = 64
"""Items made into calls at a time: a batch's per-item objects live for a chunk, not for
the whole batch (fewer objects for the cyclic collector to walk, however large the batch)."""


def _bulk_sync(engine: BulkPort, batch: Batch) -> list[bytes]:
    """Sync bulk items in this worker thread, no hop per identity: the record of each
    item's outcome, in order. A memory-only type's first attempts run in batches of turns
    (``turns_here``); the rest one by one (``turn_here``)."""
    method, keys, arguments, seed, turns = batch.method, batch.keys, batch.arguments, batch.seed, batch.turns()
    engine.counters["local_calls"] += len(keys)
    batched = batch.definition.options.persist.memory_only and batch.attempt == 0  # item ids are never keyed
    records: list[bytes] = []
    low, high = method.positional  # the counts ``bind`` lets through at once: a call of it only for others
    for start in range(0, len(keys), _CHUNK):
        out: list[bytes | None] = []
        items: list[Item] = []
        for key, args in zip(keys[start : start + _CHUNK], arguments[start : start + _CHUNK], strict=True):
            if not low <= len(args) <= high:
                try:
                    method.bind(tuple(args), {})
                except FluentError as exc:
                    engine.counters["errors"] += 1
                    out.append(record_of(Outcome(error=describe_error(exc))))
                    continue
            item = (key, item_id(seed, key), args)
            if batched:
                out.append(None)  # its reply, once its batch of turns ran
                items.append(item)
            else:
                out.append(record_of(engine.turn_here(turns.request(item))))
        replies = iter(engine.turns_here(turns, items) if items else ())
        records += [next(replies) if r is None else r for r in out]
        arguments[start : start + len(out)] = _SPENT[: len(out)]  # the decoded arguments go with the chunk
    return records


_SPENT: list[list[Any]] = [[]] * _CHUNK  # one empty list, in each place an item was
