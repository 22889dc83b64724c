"""The ActorHost gRPC service, over any dispatcher (a host engine or the gateway router)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
from grpc import aio

from .. import _config
from .._call import Call, ErrorInfo, Outcome
from .._ioloop import spawn
from .._status import Status
from ..errors import REROUTE_CODES, FluentError, code_value, status_for
from ..wire._gen import actorhost_pb2 as pb
from ..wire._gen import actorhost_pb2_grpc as pb_grpc
from ._auth import TokenInterceptor
from ._convert import Clock, call_from_pb, outcome_to_pb, status_to_pb, wire_problem
from ._tls import TlsConfig
from ._wakeup import Wakeup

# Room for the protobuf envelope around a payload of the maximum size.
_ENVELOPE = 64 * 1024
log = logging.getLogger("fluentfn.transport")
_CODES = {code_value(c): c for c in grpc.StatusCode}
SERVICE = "fluentfn.v1.ActorHost"


class Dispatcher(Protocol):
    """What serves calls: the host engine, or the gateway that forwards them."""

    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None: ...

    def submit(self, call: Call, done: Callable[[Outcome | None], None], *, local: bool = False) -> None:
        """Start ``call`` (on the loop); ``done`` gets its reply on the loop. Never raises.
        ``local``: the caller is in this process."""

    async def accept(self, call: Call) -> None:
        """Raise (NotFound, InvalidRequest, ...) if a one-way call cannot be taken."""

    def status(self) -> Status | Awaitable[Status]: ...


def channel_options() -> list[tuple[str, Any]]:
    """gRPC options shared by servers and channels."""
    limit = 2 * _config.MAX_MESSAGE_BYTES + _ENVELOPE
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]


def dial_options() -> list[tuple[str, Any]]:
    """Options of the channels fluentfn opens: ``channel_options`` and a subchannel pool of
    their own. gRPC otherwise shares connections between channels to the same address,
    process-wide, so a channel opened after a host died would inherit the dead one's
    reconnect backoff — and fail at once, for seconds, even when a new host now listens on
    that port (stopped hosts free their ports, and the OS hands them out again)."""
    return [*channel_options(), ("grpc.use_local_subchannel_pool", 1)]


def wants_outcome(call: Call) -> bool:
    """Whether the sender of ``call`` on a stream is owed a reply: every call, and a tell
    sent with a ``seq`` (an acknowledged one-way message)."""
    return not call.one_way or call.seq != 0


class _Malformed:
    """What a request that is not a valid protobuf message decodes to."""


MALFORMED = _Malformed()


def lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A deserializer that never raises: garbage becomes ``MALFORMED``, which the handler
    answers with INVALID_ARGUMENT (instead of grpc logging a traceback per frame)."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            return MALFORMED

    return deserialize


class ActorHostServicer(pb_grpc.ActorHostServicer):
    """Maps the four RPCs onto a dispatcher."""

    def __init__(self, dispatcher: Dispatcher, clock: Clock = time.time) -> None:
        self._d = dispatcher
        self._clock = clock  # what a call's budget is re-based on (a test gives a skewed one)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.malformed = 0
        self.unsent = 0  # replies produced on streams and not yet handed to gRPC

    async def _refuse_malformed(self, context: aio.ServicerContext[Any, Any]) -> None:
        self.malformed += 1
        counters: dict[str, int] | None = getattr(self._d, "counters", None)
        if counters is not None:
            counters["malformed_requests"] = counters.get("malformed_requests", 0) + 1
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request: not a valid protobuf message")

    def register(self, server: aio.Server) -> None:
        """Serve the four RPCs with lenient deserializers (see ``lenient``)."""
        handlers = {
            "Invoke": grpc.unary_unary_rpc_method_handler(
                self.Invoke, lenient(pb.Call.FromString), pb.Reply.SerializeToString
            ),
            "Tell": grpc.unary_unary_rpc_method_handler(
                self.Tell, lenient(pb.Call.FromString), pb.Ack.SerializeToString
            ),
            "InvokeStream": grpc.stream_stream_rpc_method_handler(
                self.InvokeStream, lenient(pb.CallBatch.FromString), pb.ReplyBatch.SerializeToString
            ),
            "Status": grpc.unary_unary_rpc_method_handler(
                self.Status, lenient(pb.StatusRequest.FromString), pb.StatusReply.SerializeToString
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        return spawn(coro, self._tasks)

    async def Invoke(self, request: pb.Call, context: aio.ServicerContext[pb.Call, pb.Reply]) -> pb.Reply:
        if isinstance(request, _Malformed):
            await self._refuse_malformed(context)
        if (why := wire_problem(request)) is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)
        call = call_from_pb(request, self._clock)
        call.one_way = False
        answered: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()

        def done(reply: Outcome | None) -> None:
            if not answered.done():
                answered.set_result(reply)

        try:  # the stream's path: a turn that may run on the loop answers without a task or thread hop
            self._d.submit(call, done)
        except Exception:
            log.exception("dispatch failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        reply = await answered
        assert reply is not None
        if reply.error is not None and reply.error.code != 0:
            await context.abort(_CODES.get(reply.error.code, grpc.StatusCode.INTERNAL), reply.error.message)
        return outcome_to_pb(reply)

    async def Tell(self, request: pb.Call, context: aio.ServicerContext[pb.Call, pb.Ack]) -> pb.Ack:
        if isinstance(request, _Malformed):
            await self._refuse_malformed(context)
        if (why := wire_problem(request)) is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)
        call = call_from_pb(request, self._clock)
        call.one_way = True
        try:
            await self._d.accept(call)
        except FluentError as exc:
            await context.abort(status_for(exc), str(exc))
        self._spawn(self._deliver(call))
        return pb.Ack()

    async def _deliver(self, call: Call) -> None:
        """Run an accepted unary tell. Its sender was told it is accepted and cannot be told
        more: if the partition moved away meanwhile, the dispatcher sends it on to the new
        owner (``reroute``), never drops it."""
        reply = await self._d.dispatch(call)
        if reply is None or reply.error is None or reply.error.code not in REROUTE_CODES:
            return
        reroute: Callable[[Call], None] | None = getattr(self._d, "reroute", None)
        if reroute is None:
            log.warning("tell %s/%s.%s refused after it was accepted: %s", call.type_name, call.key, call.method,
                        reply.error.message)  # fmt: skip
            return
        call.seq = 0
        reroute(call)

    async def InvokeStream(
        self, request_iterator: AsyncIterator[pb.CallBatch], context: aio.ServicerContext[pb.CallBatch, pb.ReplyBatch]
    ) -> AsyncIterator[pb.ReplyBatch]:
        await context.send_initial_metadata((ACCEPTED,))
        outbox: list[pb.Reply] = []
        ready = Wakeup()
        pending = 0
        reading = True

        def done(reply: Outcome | None) -> None:
            nonlocal pending
            pending -= 1
            if reply is not None:
                outbox.append(outcome_to_pb(reply))
                self.unsent += 1
            ready.set()

        def done_quietly(reply: Outcome | None) -> None:
            done(None)

        def start(call: Call) -> None:
            nonlocal pending
            pending += 1
            # A one-way call with a seq wants its outcome (its sender re-sends it if it was
            # refused or lost with a host); one without is fire-and-forget.
            answer = done if wants_outcome(call) else done_quietly
            try:
                self._d.submit(call, answer)
            except Exception as exc:  # a bug, not a user error: the caller must not hang
                log.exception("dispatch failed")
                error = ErrorInfo(code=code_value(grpc.StatusCode.INTERNAL), message=repr(exc))
                answer(Outcome(seq=call.seq, error=error))

        def refuse(call: Call, why: str) -> None:
            nonlocal pending
            pending += 1
            error = ErrorInfo(code=code_value(grpc.StatusCode.INVALID_ARGUMENT), message=why)
            (done if wants_outcome(call) else done_quietly)(Outcome(seq=call.seq, error=error))

        malformed = False

        async def read() -> None:
            nonlocal reading, malformed
            try:
                async for batch in request_iterator:
                    if isinstance(batch, _Malformed):  # its calls cannot be answered one by one
                        malformed = True
                        break
                    clock = self._clock
                    for m in batch.calls:
                        if (why := wire_problem(m)) is None:
                            start(call_from_pb(m, clock))
                        else:
                            refuse(call_from_pb(m, clock), why)
            finally:
                reading = False
                ready.set()

        reader = self._spawn(read())
        try:
            while reading or pending or outbox:
                await ready.wait()
                if outbox:
                    replies, outbox[:] = list(outbox), []
                    yield pb.ReplyBatch(replies=replies)
                    self.unsent -= len(replies)
            if malformed:
                await self._refuse_malformed(context)
        finally:
            reader.cancel()

    async def Status(
        self, request: pb.StatusRequest, context: aio.ServicerContext[pb.StatusRequest, pb.StatusReply]
    ) -> pb.StatusReply:
        if isinstance(request, _Malformed):
            await self._refuse_malformed(context)
        reply = self._d.status()
        if inspect.isawaitable(reply):
            reply = await reply
        return status_to_pb(reply)


def server_options() -> list[tuple[str, Any]]:
    """Channel options, plus bounds on what an unauthenticated peer can make us buffer.

    Refused calls are never read (see ``_auth``), so what a peer can push at us is what
    HTTP/2 flow control lets through: with bandwidth probing off, 1 MiB per stream
    (measured: 1,000 unauthenticated 30 MB calls over 50 connections, +49 MiB RSS,
    against +1.1 GiB for 48 of them when every body was read; a 16 MB authenticated call
    takes 19 ms instead of 18 ms), and at most ``MAX_STREAMS`` streams per connection.
    """
    return [
        *channel_options(),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 1 << 20),
        ("grpc.max_concurrent_streams", MAX_STREAMS),
    ]


MAX_STREAMS = 256
ACCEPTED = ("fluentfn-stream", "accepted")
"""Initial metadata a host sends as it takes a stream, before it reads a call: a caller
whose stream breaks after this knows its calls may have reached the host (and may be what
ended it); one that breaks before it reached nobody."""
_servicers: weakref.WeakKeyDictionary[aio.Server, ActorHostServicer] = weakref.WeakKeyDictionary()


async def quiesce(server: aio.Server, timeout_s: float, grace_s: float = 1.0) -> None:
    """Stop ``server`` without losing what it already answered: wait (up to ``timeout_s``)
    until every reply produced on its streams was handed to gRPC, then stop it gracefully.
    A host about to be killed does this first: a reply lost with its process (an
    acknowledgement of a turn that ran) would make its caller send the call again."""
    servicer = _servicers.get(server)
    until = time.monotonic() + timeout_s
    while servicer is not None and servicer.unsent > 0 and time.monotonic() < until:
        await asyncio.sleep(0.01)
    await server.stop(grace_s)


async def start_server(
    dispatcher: Dispatcher,
    token: str,
    bind: str = "127.0.0.1",
    tls: TlsConfig | None = None,
    port: int = 0,
    clock: Clock = time.time,
    more: Sequence[Callable[[aio.Server], None]] = (),
) -> tuple[aio.Server, int]:
    """Serve ``dispatcher`` on ``bind`` (``port``, or an ephemeral one); returns the server
    and port. ``clock``: this process's clock, that calls' deadlines are re-based on.
    ``more``: each registers another service on the server (behind the same token)."""
    server = aio.server(interceptors=[TokenInterceptor(token)], options=server_options())
    servicer = ActorHostServicer(dispatcher, clock)
    servicer.register(server)
    for register in more:
        register(server)
    _servicers[server] = servicer
    address = f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.server_credentials())
    except RuntimeError as exc:  # grpcio's "Failed to bind to address ..."
        raise FluentError(f"cannot listen on {address}: {exc}") from None
    if not port:
        raise FluentError(f"cannot listen on {address}")
    await server.start()
    return server, port
