"""The parts of a turn that hosts and FaaS invocations share.

A turn is: restore the stored state or run ``__init__``, then ``on_activate`` (on the
identity's first turn in a host, on every invocation in FaaS mode); answer a repeated
request from its recorded reply; run the method; encode the result; encode the state
for the durability point. Each step here either succeeds or raises one clear error:

- ``UserFailure``: user code (``__init__``, ``on_activate``) raised; it travels as an
  ``ActorError`` of the original type.
- ``InvalidRequest``: the result or the state cannot be encoded. The turn must not take
  effect: the caller rolls the identity back to its pre-turn state and does not retry.
- ``FluentError``: a stored record that cannot be decoded (names identity and store).

Hosts and FaaS differ only in where the state lives between turns and how the write
is made (hosts: fenced by epoch; FaaS: by version), never in what a turn means.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._actordef import ActorDef, MethodInfo, public_state
from .._call import Call, Outcome
from .._ref import IDEMPOTENCY_REUSED, KEYED_PREFIX
from ..errors import FluentError, InvalidRequest
from ..state._codec import decode_state, encode_state
from ..wire import codec
from ..wire.errors import describe_error
from ..wire.records import DIGEST_BYTES, read_record, record_of
from ._image import unstorable


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 1.4 us more to make, once per turn
class Request:
    """A call decoded and bound to its method: what a turn runs (never changed once made)."""

    definition: ActorDef
    method: MethodInfo
    call: Call
    key: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def address(self) -> str:
        return f"{self.definition.name}/{self.key}"


Item = tuple[str, str, Sequence[Any]]
"""A bulk item as its turn runs it: (key, request id, positional args); bulk items take
no keyword arguments."""


class Items(NamedTuple):
    """What the items of one bulk batch share: one method of one type, the batch's call
    (its type and deadline) and attempt. An item's ``Call`` and ``Request`` are made only
    where one is needed (most turns of a batch need neither, ``TurnRunner.run_batch``)."""

    definition: ActorDef
    method: MethodInfo
    bulk: Call
    attempt: int

    def call(self, key: str, request_id: str) -> Call:
        """The call of the item of ``key``: its own chain, the batch's deadline."""
        c = self.bulk  # positional (keywords cost a third of the item's bookkeeping)
        return Call(
            c.type_name, key, self.method.name, b"", request_id, c.deadline, (), request_id, 0, False, self.attempt
        )

    def request(self, item: Item) -> Request:
        """``item``'s turn, as the general path runs it."""
        key, request_id, args = item
        return Request(self.definition, self.method, self.call(key, request_id), key, tuple(args), {})


class UserFailure(Exception):
    """An exception escaped user code outside the method (``__init__``, ``on_activate``)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


def instantiate(
    definition: ActorDef,
    stored: bytes | None,
    address: str,
    store_url: str = "",
    loaded: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """The identity's instance: restored from ``stored`` (no ``__init__``) or new, then
    ``on_activate``. ``on_activate`` must be a plain method, in both modes. ``loaded``
    sees the decoded state first (the objects the instance gets)."""
    state: dict[str, Any] | None = None
    if stored is not None:
        try:
            state = decode_state(stored)
        except Exception as exc:
            where = f" in {store_url}" if store_url else ""
            raise FluentError(
                f"{address}: its stored state{where} cannot be decoded ({type(exc).__name__}: {exc}); "
                "delete or repair the record"
            ) from None
        if loaded is not None:
            loaded(state)
    try:
        instance = definition.new_instance() if state is None else definition.restore(state)
        if definition.on_activate is not None:
            result = definition.on_activate(instance)
            if asyncio.iscoroutine(result):
                result.close()
                raise FluentError(f"{definition.name}.on_activate must be a plain (sync) method, not async")
    except BaseException as exc:
        raise UserFailure(exc) from None
    return instance


def run_sync(method: MethodInfo, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, bool]:
    """Run a sync method: (result, False) or (the exception it raised, True).

    Everything user code raises is its outcome, ``SystemExit`` and ``KeyboardInterrupt``
    included: it never takes a host or an invocation down."""
    try:
        return method.fn(instance, *args, **kwargs), False
    except BaseException as exc:
        return exc, True


async def run_async(
    method: MethodInfo, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], deadline: float
) -> tuple[Any, bool, bool]:
    """Run an async method on the running loop, cancelled at ``deadline`` (a ``time.time()``):
    (outcome, failed, expired). A ``CancelledError`` of the host stopping is raised; one
    user code raised itself is its outcome."""
    loop = asyncio.get_running_loop()
    when = loop.time() + max(0.0, deadline - time.time()) if deadline else None
    timer = asyncio.timeout_at(when)
    try:
        async with timer:
            return await method.fn(instance, *args, **kwargs), False, False
    except TimeoutError as exc:
        if timer.expired():
            return None, False, True
        return exc, True, False
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the host is stopping
        return exc, True, False
    except BaseException as exc:
        return exc, True, False


NONE_VALUE = codec.encode(None)
"""A reply of None, encoded."""


def reply_for(outcome: Any, failed: bool, where: str) -> Outcome:
    """The reply for a method's outcome. InvalidRequest if the result cannot be sent
    (the turn must then be rolled back)."""
    if failed:
        return Outcome(error=describe_error(outcome, where, user=True))
    if outcome is None:
        return Outcome(NONE_VALUE)
    try:
        return Outcome(codec.encode(outcome))
    except FluentError as exc:
        raise InvalidRequest(
            f"the result of {where} ({type(outcome).__name__}) cannot be sent: {exc}; the call was rolled back"
        ) from None


def snapshot(instance: Any, address: str) -> bytes:
    """The encoded public state. InvalidRequest naming the attribute that cannot be stored."""
    state = public_state(instance)
    try:
        return encode_state(state)
    except Exception as exc:
        raise unstorable(state, address, exc) from None


# -- reply records: what a retry is answered from ----------------------------------------------
#
def request_digest(request_id: str, method: str, args: bytes) -> bytes:
    """What a keyed request (an idempotency key's id) is bound to: its method and its
    arguments; b"" for other requests (their ids are never reused for another request)."""
    if not request_id.startswith(KEYED_PREFIX):
        return b""
    return hashlib.blake2b(method.encode("utf-8", "surrogatepass") + b"\0" + args, digest_size=DIGEST_BYTES).digest()


def must_record(request_id: str, scheduled: Sequence[object]) -> bool:
    """Whether a turn's reply is recorded even if its state did not change: it scheduled
    reminders (a retry must not schedule them again), or it is keyed (its idempotency key
    is bound to this request from now on)."""
    return bool(scheduled) or request_id.startswith(KEYED_PREFIX)


def may_repeat(call: Call) -> bool:
    """Whether ``call`` may have run before, so its recorded reply must be looked for: a
    retry (``attempt > 0``), or a keyed request (an idempotency key is meant for repeats)."""
    return call.attempt > 0 or call.request_id.startswith(KEYED_PREFIX)


def replay_of(record: bytes, digest: bytes, request_id: str) -> Outcome:
    """The outcome a retry gets from ``record``. InvalidRequest if the record was made for
    another request under the same idempotency key (a key reused for a different call)."""
    bound, outcome = read_record(record)
    if digest and bound and bound != digest:
        raise InvalidRequest(
            f"{IDEMPOTENCY_REUSED} (request {request_id}): it was first used with another method or "
            "other arguments; use a new key for a new request"
        )
    return outcome


def record_for(call: Call, reply: Outcome) -> bytes:
    """The record of ``call``'s reply, kept for its retries."""
    return record_of(reply, request_digest(call.request_id, call.method, call.args))


NONE_RECORD = record_of(Outcome(NONE_VALUE))
"""``record_for`` a reply of None to a request that is not keyed (most bulk items' reply)."""
