"""Pipelined calls to peers: one long-lived bidirectional stream per endpoint.

Calls queued while a write is in flight go out together in one ``CallBatch``; replies
come back by ``seq`` in any order. A broken stream fails its pending calls with
``Unavailable`` and the next call opens a new one.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import itertools
import time
from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Callable
from typing import Any

import grpc
from grpc import aio

from .. import _config
from .._call import Call, Outcome
from .._ioloop import spawn
from .._status import Status
from ..errors import CallTimeout, FluentError, NotDelivered, Unavailable, error_for
from ..wire._gen import actorhost_pb2 as pb
from ..wire._gen import actorhost_pb2_grpc as pb_grpc
from ._auth import metadata
from ._convert import call_to_pb, outcome_from_pb, status_from_pb
from ._server import ACCEPTED, dial_options
from ._tls import TlsConfig
from ._tunnel import dial
from ._wakeup import Wakeup


def rpc_error(exc: aio.AioRpcError | grpc.RpcError, endpoint: str) -> FluentError:
    """The fluentfn exception for a failed RPC."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNAVAILABLE
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.INTERNAL and str(details).startswith(_CORE_FAILURE):
        code = grpc.StatusCode.UNAVAILABLE  # gRPC's own transport failed (seen reconnecting on a busy machine)
    return error_for(code, f"{endpoint}: {details}")


_CORE_FAILURE = "Internal error from Core"  # gRPC's text for a call its C core failed, not the peer's reply


def channel_args(endpoint: str, tls: TlsConfig | None, token: str = "") -> tuple[str, list[tuple[str, Any]]]:
    """The target and options of a channel to ``endpoint`` (a route): fluentfn's limits,
    TLS's, and a gateway's tunnel where the route goes through one (``_tunnel.through``)."""
    target, tunnel = dial(endpoint, token)
    return target, dial_options() + (tls.channel_options() if tls is not None else []) + tunnel


def open_channel(endpoint: str, tls: TlsConfig | None, token: str = "") -> aio.Channel:
    """An aio channel to ``endpoint`` (``channel_args``)."""
    target, options = channel_args(endpoint, tls, token)
    if tls is None:
        return aio.insecure_channel(target, options=options)
    return aio.secure_channel(target, tls.channel_credentials(), options=options)


ReplyCallback = Callable[[Outcome | None, FluentError | None], None]
Done = Callable[[Outcome | None, BaseException | None], None]
"""What a caller of the router is told: the reply, or the error, once."""


def settle_future(fut: concurrent.futures.Future[Any] | asyncio.Future[Any]) -> Done:
    """A reply callback that completes ``fut`` (the first outcome wins)."""

    def done(reply: Outcome | None, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(reply)

    return done


class Waiter:
    """A blocked thread's reply callback: the first outcome wins and wakes the thread (a
    bare lock, released once: the cheapest cross-thread wake-up Python has).

    The thread is woken at the end of the loop's current pass, not at once: woken at
    once, it wakes wanting the GIL while the loop thread still holds it (reading the
    stream's next message), and blocks again on the GIL. That was two more hand-offs a
    call (8.3 a driver call against 6.2 for a raw grpc.aio stream; 6.3 with this), each
    a scheduler quantum on a busy machine."""

    __slots__ = ("_lock", "_settled", "error", "reply")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._settled = False
        self.reply: Outcome | None = None
        self.error: BaseException | None = None

    def __call__(self, reply: Outcome | None, error: BaseException | None) -> None:
        """On the loop only (so the check and the set need no lock)."""
        if self._settled:
            return
        self._settled = True
        self.reply, self.error = reply, error
        loop = _running_loop()
        if loop is None:  # (not on a loop after all: at once)
            self._lock.release()
        else:
            loop.call_soon(self._lock.release)

    def reply_for(self, call: Call) -> Outcome | None:
        """Block until ``call``'s outcome: its reply (None for one-way calls), or raise its
        error; ``CallTimeout`` once its deadline (and a grace) passed, whatever the host does."""
        if not self._lock.acquire(True, until_deadline(call)):
            raise no_reply(call)
        if self.error is not None:
            raise self.error
        return self.reply


REPLY_GRACE_S = 0.05  # past the deadline, room for the host's own CallTimeout (it says more) to arrive first


def until_deadline(call: Call) -> float:
    """Seconds a caller waits for ``call``'s reply: to its deadline, and a grace."""
    return max(0.0, call.deadline - time.time()) + REPLY_GRACE_S


def no_reply(call: Call) -> CallTimeout:
    """The error of a caller whose call got no reply by its deadline."""
    return CallTimeout(f"no reply from {call.type_name}/{call.key}.{call.method} by its deadline")


def _undelivered(error: FluentError) -> FluentError:
    """``error`` for a call that never reached a host: ``NotDelivered`` where it would
    have read as a lost stream (an unauthenticated or foreign endpoint's stays as it is)."""
    return NotDelivered(str(error)) if type(error) in (Unavailable, FluentError) else error


class PeerStream:
    """One endpoint's stream; ``invoke`` may be called concurrently from the loop."""

    def __init__(self, endpoint: str, token: str, tls: TlsConfig | None) -> None:
        self.endpoint = endpoint
        self._token = token
        self._channel = open_channel(endpoint, tls, token)
        self._stub = pb_grpc.ActorHostStub(self._channel)
        self._seq = itertools.count(1)
        self._pending: dict[int, ReplyCallback] = {}
        self._outbox: list[Call] = []
        self._wakeup = Wakeup()
        self._call: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.broken: FluentError | None = None
        self.accepted = False  # the host took the stream (``ACCEPTED``): calls on it may have reached it

    def _start(self) -> None:
        self._call = self._stub.InvokeStream(metadata=metadata(self._token))  # type: ignore[call-arg]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write()), loop.create_task(self._read())]

    def send(self, call: Call, callback: ReplyCallback | None) -> None:
        """Queue ``call`` (on the loop); ``callback(reply, error)`` runs on the loop once.

        A one-way call with a callback is acknowledged (the host sends its outcome); one
        with ``callback=None`` is fire-and-forget, lost if the stream breaks.
        """
        if self.broken is not None:
            if callback is not None:
                callback(None, _undelivered(self.broken))
            return
        if self._call is None:
            self._start()
        if callback is not None:
            call.seq = next(self._seq)
            self._pending[call.seq] = callback
        self._outbox.append(call)
        self._wakeup.set()

    async def invoke(self, call: Call) -> Outcome | None:
        """Send ``call``; its reply. A one-way call is acknowledged too (its reply says
        whether it was refused, by a partition that moved, say), so nothing is lost
        silently with a broken stream."""
        fut: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self.send(call, settle_future(fut))
        try:
            return await fut
        finally:
            self._pending.pop(call.seq, None)

    async def tell(self, call: Call, callback: ReplyCallback) -> None:
        """A unary ``Tell`` on this endpoint's channel; ``callback`` once, with its outcome."""
        message = call_to_pb(call)
        try:
            await self._stub.Tell(message, metadata=metadata(self._token), timeout=message.budget_s + REPLY_GRACE_S)
        except aio.AioRpcError as exc:
            callback(None, rpc_error(exc, self.endpoint))
            return
        except asyncio.CancelledError:
            callback(None, Unavailable(f"{self.endpoint}: closed"))
            raise
        except Exception as exc:  # a closed channel
            callback(None, Unavailable(f"{self.endpoint}: {exc}"))
            return
        callback(None, None)

    async def status(self, timeout_s: float) -> Status:
        """This endpoint's ``Status`` (errors mapped)."""
        try:
            reply: pb.StatusReply = await self._stub.Status(
                pb.StatusRequest(), metadata=metadata(self._token), timeout=timeout_s
            )
        except aio.AioRpcError as exc:
            raise rpc_error(exc, self.endpoint) from None
        return status_from_pb(reply)

    async def _write(self) -> None:
        limit = _config.MAX_MESSAGE_BYTES
        try:
            while True:
                await self._wakeup.wait()
                while self._outbox:
                    calls, self._outbox = self._outbox, []
                    batch: list[pb.Call] = []
                    size = 0
                    for each in calls:
                        call = call_to_pb(each)  # its deadline leaves as seconds left, re-based by the receiver
                        n = call.ByteSize()
                        if batch and size + n > limit:
                            await self._call.write(pb.CallBatch(calls=batch))
                            batch, size = [], 0
                        batch.append(call)
                        size += n
                    await self._call.write(pb.CallBatch(calls=batch))
        except asyncio.CancelledError:
            raise
        except aio.AioRpcError as exc:
            self._fail(rpc_error(exc, self.endpoint))
        except Exception as exc:  # the stream is gone (closed channel, ...)
            self._fail(Unavailable(f"{self.endpoint}: {exc}"))

    async def _read(self) -> None:
        try:
            taken = await self._call.initial_metadata()
            self.accepted = taken.get(ACCEPTED[0]) == ACCEPTED[1]
            async for batch in self._call:
                for reply in batch.replies:
                    callback = self._pending.pop(reply.seq, None)
                    if callback is not None:
                        callback(outcome_from_pb(reply), None)
            self._fail(Unavailable(f"{self.endpoint}: stream closed by peer"))
        except asyncio.CancelledError:
            raise
        except aio.AioRpcError as exc:
            self._fail(rpc_error(exc, self.endpoint))
        except Exception as exc:
            self._fail(Unavailable(f"{self.endpoint}: {exc}"))

    def _fail(self, error: FluentError) -> None:
        """The stream is gone: its pending calls get ``error`` (``NotDelivered`` if the
        host never took the stream, so none of them reached it)."""
        if self.broken is None:
            self.broken = error
        pending, self._pending = self._pending, {}
        if not self.accepted:
            error = _undelivered(error)
        for callback in pending.values():
            callback(None, error)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def close(self) -> None:
        self._fail(Unavailable(f"{self.endpoint}: closed"))
        await self._channel.close(None)


class PeerPool:
    """Streams by endpoint, reopened after a failure."""

    def __init__(self, token: str, tls: TlsConfig | None = None) -> None:
        self._token = token
        self._tls = tls
        self._streams: dict[str, PeerStream] = {}
        self._closing: set[asyncio.Task[Any]] = set()
        self._telling: set[asyncio.Task[Any]] = set()

    def stream(self, endpoint: str) -> PeerStream:
        """The live stream to ``endpoint`` (a new one after a failure)."""
        stream = self._streams.get(endpoint)
        if stream is None or stream.broken is not None:
            if stream is not None:
                spawn(stream.close(), self._closing)
            stream = self._streams[endpoint] = PeerStream(endpoint, self._token, self._tls)
        return stream

    async def invoke(self, endpoint: str, call: Call) -> Outcome | None:
        return await self.stream(endpoint).invoke(call)

    def tell(self, endpoint: str, call: Call, callback: ReplyCallback) -> None:
        """A unary ``Tell`` (on the loop): ``callback(None, None)`` once the host accepted
        it, or ``callback(None, error)``."""
        spawn(self.stream(endpoint).tell(call, callback), self._telling)

    async def status(self, endpoint: str, timeout_s: float) -> Status:
        """``endpoint``'s ``Status``."""
        return await self.stream(endpoint).status(timeout_s)

    async def close(self) -> None:
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            await stream.close()
