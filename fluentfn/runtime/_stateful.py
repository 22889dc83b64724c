"""The stateful runtime: places calls on hosts and sends them over peer streams.

Placement: key -> shard (stable hash) -> route (from the directory, cached). A call to
a shard this very process hosts is dispatched in-process. A host that cannot be reached
is reported to the directory and the call is retried, with the same request id, once
the host is back (bounded attempts).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from .. import _config
from .._context import CURRENT
from .._ioloop import IoLoop, spawn
from .._ref import CALL_TIMEOUT, DELETE_METHOD, ActorRef, Future
from .._tables import Route, TypeInfo
from ..api import ActorType, known_type, known_types
from ..errors import REROUTE_CODES, FluentError, InvalidRequest, NotFound, Unavailable, code_value
from ..host._partitions import PartitionSet
from ..placement import shard_for
from ..state import Store, open_store
from ..transport._client import PeerPool, Waiter, no_reply, until_deadline
from ..transport._tls import TlsConfig
from ..wire import codec
from ..wire._gen import actorhost_pb2 as pb
from ..wire.errors import error_to_pb, reply_value
from ._functions import FunctionRunner
from ._raycall import await_directory
from ._registry import registration

_PATIENCE_S = _config.RESOLVE_TIMEOUT_S  # how long a caller waits for the directory to come back
log = logging.getLogger("fluentfn")


@dataclass(frozen=True, slots=True)
class _Target:
    route: Route
    local: bool


ReplyDone = Callable[[pb.Reply | None, BaseException | None], None]


def _settle(fut: concurrent.futures.Future[Any] | asyncio.Future[Any]) -> ReplyDone:
    """A ReplyDone that completes ``fut``."""

    def done(reply: pb.Reply | None, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(reply)

    return done


_OVERLOADED = code_value(grpc.StatusCode.RESOURCE_EXHAUSTED)


def _refused_tell(call: pb.Call, reply: pb.Reply | None) -> bool:
    """A tell the host refused for now (its mailbox was full): it did not run, and its
    sender is not waiting to be told, so the router sends it again after a pause."""
    return call.one_way and reply is not None and reply.HasField("error") and reply.error.code == _OVERLOADED


def _misrouted(reply: pb.Reply | None) -> bool:
    """The host does not own the call's shard (it moved): resolve again and retry.

    Only a redirect is retried from a reply: a host that answers anything else (its
    store failing, say) has settled the call, and re-running it could run it twice.
    Transport failures (no reply at all) are retried with ``attempt`` set, so the new
    host answers from its records if the first run got as far as its durability point.
    """
    return reply is not None and reply.HasField("error") and reply.error.code in REROUTE_CODES


def _ignore(reply: pb.Reply | None, error: BaseException | None) -> None:
    """Outcome of a tell: no one to report to (the host counts its errors)."""


class StatefulRuntime:
    """The ``Invoker`` of a process in a stateful cluster (driver, host or task)."""

    mode = "stateful"

    def __init__(
        self,
        *,
        directory: Any,
        config: dict[str, Any],
        io: IoLoop,
        local: PartitionSet | None = None,
        endpoint: str = "",
    ) -> None:
        self._directory = directory
        self.config = config
        self.token: str = config["token"]
        tls = config.get("tls")
        self._tls: TlsConfig | None = TlsConfig(**tls) if tls else None
        self._io = io
        self._local = local  # a host's own partitions, and where it listens
        self._endpoint = endpoint
        self._pool = PeerPool(self.token, self._tls)
        self._types: dict[str, TypeInfo] = {}
        self._targets: dict[tuple[str, int], _Target] = {}
        self._registering: dict[str, asyncio.Future[TypeInfo]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolving: dict[tuple[str, int], asyncio.Future[_Target]] = {}
        self.functions = FunctionRunner(mode="stateful", io=io)
        self._store: Store | None = None

    # -- Invoker -----------------------------------------------------------------------

    def call(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._io.in_loop():
            raise FluentError(
                f"blocking call to {ref.address}.{method} from async code: use `await ref.{method}.aio(...)`"
            )
        call = self._make_call(ref, method, args, kwargs)
        reply = self._try_inline(call)
        if reply is None or _misrouted(reply):  # not here (any more): the general path
            waiter = Waiter()
            self._io.loop.call_soon_threadsafe(self._send_fast, call, waiter)
            reply = waiter.reply_for(call)
        return self._result(reply)

    def submit(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        call = self._make_call(ref, method, args, kwargs)
        out: Future[Any] = Future()

        def done(reply: pb.Reply | None, error: BaseException | None) -> None:
            try:
                if error is not None:
                    raise error
                out.set_result(self._result(reply))
            except BaseException as exc:
                out.set_exception(exc)

        self._io.loop.call_soon_threadsafe(self._send_timed, call, done)
        return out

    async def call_async(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = self._make_call(ref, method, args, kwargs)
        if self._io.in_loop():
            fut: asyncio.Future[pb.Reply | None] = asyncio.get_running_loop().create_future()
            self._send_timed(call, _settle(fut))
            reply = await fut
        else:
            waiter: concurrent.futures.Future[pb.Reply | None] = concurrent.futures.Future()
            self._io.loop.call_soon_threadsafe(self._send_timed, call, _settle(waiter))
            reply = await asyncio.wrap_future(waiter)
        return self._result(reply)

    def tell(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        call = self._make_call(ref, method, args, kwargs, one_way=True)
        if self._io.in_loop():
            self._send_fast(call, _ignore)
        else:
            self._io.loop.call_soon_threadsafe(self._send_fast, call, _ignore)

    def run_function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        return self.functions.submit(fn, args, kwargs)

    def keys(self, type_name: str, prefix: str, limit: int | None) -> list[str]:
        return self._open_store().keys(type_name, prefix, limit)

    def delete(self, ref: ActorRef) -> None:
        """A turn of its own on the identity's host: memory dropped, rows removed."""
        self.call(ref, DELETE_METHOD, (), {})

    def _open_store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.config["store"])
        return self._store

    # -- calls -------------------------------------------------------------------------

    def _make_call(
        self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, one_way: bool = False
    ) -> pb.Call:
        """The wire call for ``ref.method(*args, **kwargs)`` made from here, now.

        A call from inside a turn joins the turn's chain (reentry along it is admitted)
        and inherits its deadline; a tell starts a chain of its own, with its own
        deadline, since its sender does not wait for it.
        """
        if not isinstance(ref, ActorRef):
            raise InvalidRequest(f"not an actor reference: {ref!r}")
        ctx = CURRENT.get()
        request_id = (ctx.next_request_id() if ctx is not None else None) or os.urandom(12).hex()
        deadline = time.time() + (CALL_TIMEOUT.get() or _config.DEFAULT_CALL_TIMEOUT_S)
        joins = ctx is not None and not one_way
        if joins and ctx is not None and ctx.deadline:
            deadline = min(deadline, ctx.deadline)
        return pb.Call(
            type_name=ref.type_name,
            key=ref.key,
            method=method,
            args=codec.encode_args(args, kwargs),
            request_id=request_id,
            deadline=deadline,
            call_chain=ctx.chain if joins and ctx is not None else (),
            chain_id=ctx.chain_id if joins and ctx is not None and ctx.chain_id else request_id,
            attempt=1 if ctx is not None and ctx.replay else 0,
            one_way=one_way,
        )

    @staticmethod
    def _result(reply: pb.Reply | None) -> Any:
        if reply is None:
            return None
        return reply_value(reply)

    def _try_inline(self, call: pb.Call) -> pb.Reply | None:
        """Co-located sync -> sync calls run in the calling thread."""
        if self._local is None:
            return None
        info = self._types.get(call.type_name)
        if info is None:
            return None
        target = self._targets.get((info.group, shard_for(call.key, info.shards)))
        if target is None or not target.local:
            return None
        return self._local.dispatch_inline(call)

    def _send_timed(self, call: pb.Call, done: ReplyDone) -> None:
        """``_send_fast`` with a timer: the caller gets CallTimeout at the deadline at the
        latest, even if no reply ever comes (the first outcome wins, the other is dropped)."""
        settled = False

        def once(reply: pb.Reply | None, error: BaseException | None) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            timer.cancel()
            done(reply, error)

        timer = self._io.loop.call_later(until_deadline(call), lambda: once(None, no_reply(call)))
        self._send_fast(call, once)

    def _send_fast(self, call: pb.Call, done: ReplyDone) -> None:
        """Send from the loop without a task when the route is cached (the common case);
        anything unusual (no route yet, a local target, a failure) takes ``_send``."""
        info = self._types.get(call.type_name)
        slot = (info.group, shard_for(call.key, info.shards)) if info is not None else None
        target = self._targets.get(slot) if slot is not None else None
        if target is None:
            spawn(self._send_then(call, done), self._tasks)
            return

        if call.one_way:  # a tell is done once sent; its outcome still tells whether to re-send it
            done(None, None)
            done = _ignore

        def on_reply(reply: pb.Reply | None, error: FluentError | None) -> None:
            failed = error is not None or _misrouted(reply) or _refused_tell(call, reply)
            if not failed:
                done(reply, None)
                return
            if slot is not None and self._targets.get(slot) is target:
                del self._targets[slot]
            # It may have run (a stream that broke after delivering it): the host checks its
            # records. A tell refused by a moving partition or lost with a host is re-sent too.
            call.attempt = max(call.attempt, 1)
            spawn(self._send_then(call, done), self._tasks)  # re-resolves and retries

        if target.local:  # this process's own partition: the stream's lane, without the network
            assert self._local is not None
            self._local.submit(call, lambda reply: on_reply(reply, None), local=True)
            return
        self._pool.stream(target.route.endpoint).send(call, on_reply)

    async def _send_then(self, call: pb.Call, done: ReplyDone) -> None:
        try:
            reply = await self._send(call)
        except BaseException as exc:
            done(None, exc)
            return
        done(reply, None)

    def forward_soon(self, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> None:
        """``forward`` in callback form, on the loop: ``done`` gets the reply (an error
        reply if the call could not be delivered; None for a one-way call), once."""
        one_way = call.one_way
        if not call.deadline:  # a client that set none: the default, as for calls made here
            call.deadline = time.time() + _config.DEFAULT_CALL_TIMEOUT_S

        def settled(reply: pb.Reply | None, error: BaseException | None) -> None:
            if error is None:
                done(reply)  # None for a tell: accepted here, and this router re-sends it if need be
                return
            if not isinstance(error, FluentError):
                log.error("forwarding %s/%s.%s failed", call.type_name, call.key, call.method, exc_info=error)
                error = FluentError(f"internal error in the gateway: {type(error).__name__}")
            done(None if one_way else pb.Reply(error=error_to_pb(error)))

        self._send_timed(call, settled)

    async def forward(self, call: pb.Call) -> pb.Reply | None:
        """Route a call that arrived at the gateway (errors become replies)."""
        try:
            return await self._send(call)
        except FluentError as exc:
            return pb.Reply(seq=call.seq, error=error_to_pb(exc))

    async def _send(self, call: pb.Call) -> pb.Reply | None:
        info = self._types.get(call.type_name) or await self._type_info(call.type_name)
        shard = shard_for(call.key, info.shards)
        last: FluentError = Unavailable(f"no host for {call.type_name}/{call.key}")
        for attempt in range(1 + _config.RETRY_ATTEMPTS):  # the first try, then the retries
            if attempt:
                call.attempt = max(call.attempt, attempt)  # it may have run: the host checks its records
            target = self._targets.get((info.group, shard)) or await self._resolve(info.group, shard)
            try:
                if target.local:
                    assert self._local is not None
                    reply = await self._local.dispatch(call, local=True)
                else:
                    reply = await self._pool.invoke(target.route.endpoint, call)
            except Unavailable as exc:
                last = exc
                await self._forget(info.group, shard, target, report=True)
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            if _refused_tell(call, reply) and time.time() < call.deadline:
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))  # a full mailbox: not run, send it again
                continue
            if reply is not None and _misrouted(reply):
                last = Unavailable(
                    f"{call.type_name}/{call.key}: its shard kept moving ({reply.error.message}); "
                    f"gave up after {attempt + 1} attempts"
                )  # the internal Redirect never reaches users
                await self._forget(info.group, shard, target, report=True)  # a fenced host: wait for its successor
                continue
            return reply
        raise last

    async def _forget(self, group: str, shard: int, target: _Target, *, report: bool) -> None:
        if self._targets.get((group, shard)) is not target:
            return  # another call noticed first (and told the directory)
        del self._targets[(group, shard)]
        if report:
            try:
                await await_directory(
                    lambda: self._directory.report_down.remote(group, shard, target.route.endpoint), 5.0
                )
            except FluentError as exc:  # the retry re-resolves the route either way
                log.warning("could not report %s/%s down to the directory: %s", group, shard, exc)

    async def _resolve(self, group: str, shard: int) -> _Target:
        """The shard's route from the directory; concurrent callers share one lookup."""
        pending = self._resolving.get((group, shard))
        if pending is None:
            pending = asyncio.ensure_future(self._lookup_route(group, shard))
            self._resolving[(group, shard)] = pending
            pending.add_done_callback(lambda _: self._resolving.pop((group, shard), None))
        return await asyncio.shield(pending)

    async def _lookup_route(self, group: str, shard: int) -> _Target:
        try:
            route: Route = await await_directory(lambda: self._directory.resolve.remote(group, shard), _PATIENCE_S)
        except NotFound:  # a directory that restarted may not know a type no host had loaded
            known = next((at for at in known_types() if at.options.group == group), None)
            if known is None:
                raise
            await self._register(known)
            route = await await_directory(lambda: self._directory.resolve.remote(group, shard), _PATIENCE_S)
        local = self._local is not None and self._local.group == group and route.endpoint == self._endpoint
        target = _Target(route, local)
        self._targets[(group, shard)] = target
        return target

    async def _type_info(self, name: str) -> TypeInfo:
        pending = self._registering.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[TypeInfo] = asyncio.get_running_loop().create_future()
        self._registering[name] = fut
        try:
            local = known_type(name)
            if local is not None:
                info = await self._register(local)
            else:
                info = await await_directory(lambda: self._directory.lookup.remote(name), _PATIENCE_S)
            self._types[name] = info
            fut.set_result(info)
            return info
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: concurrent waiters get it from await
            raise
        finally:
            del self._registering[name]

    async def _register(self, at: ActorType) -> TypeInfo:
        if at.colocate_target is not None and at.colocate_target.name not in self._types:
            self._types[at.colocate_target.name] = await self._register(at.colocate_target)
        entry = registration(at)
        info: TypeInfo = await await_directory(lambda: self._directory.register.remote(*entry), _PATIENCE_S)
        return info

    def forget_routes(self, group: str) -> None:
        """Drop cached routes of a group (its hosts were replaced)."""
        self._io.loop.call_soon_threadsafe(
            lambda: [self._targets.pop(k) for k in [k for k in self._targets if k[0] == group]]
        )

    def local_stats(self) -> dict[str, int]:
        """Counters kept by this process itself (hosts keep the rest)."""
        return {}

    async def close(self) -> None:
        await self._pool.close()
        if self._store is not None:
            self._store.close()

    async def check_call(self, call: pb.Call) -> None:
        """NotFound unless the call names a registered type and one of its methods."""
        info = self._types.get(call.type_name) or await self._type_info(call.type_name)
        if call.method not in info.methods:
            raise NotFound(f"{call.type_name} has no method {call.method!r}")
