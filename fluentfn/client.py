"""``ff.Client`` and ``ff.AsyncClient``: call actors over gRPC from any process, without Ray.

Both learn the cluster's placement from the gateway's ``Status`` (each type's group and
shard count, each shard's host) and send a call straight to the host that owns its key,
as Orleans clients and Ray's direct actor calls do; a host that is gone or no longer
owns the shard sends the call back through the gateway (marked as a possible repeat, so
the host answers from its records if it did run) and the placement is read again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from types import TracebackType
from typing import Any

import grpc
from grpc import aio

from . import _config
from ._ioloop import io_loop
from ._ref import IDEMPOTENCY_REUSED, KEYED_PREFIX, KEYS_METHOD, check_timeout
from .errors import REROUTE_CODES, FluentError, InvalidRequest, Unavailable
from .placement import shard_for
from .transport._auth import metadata
from .transport._budget import stamp
from .transport._client import PeerPool, Waiter, open_channel, rpc_error
from .transport._server import dial_options
from .transport._tls import TlsConfig
from .wire import codec
from .wire._gen import actorhost_pb2 as pb
from .wire._gen import actorhost_pb2_grpc as pb_grpc
from .wire.errors import reply_value


def request_id_for(idempotency_key: str | None) -> tuple[str, int]:
    """(request id, attempt) of a call: a fresh id, or one derived from the caller's
    idempotency key and marked as a possible repeat, so the host answers a retry with the
    recorded reply instead of running it again."""
    if idempotency_key is None:
        return os.urandom(12).hex(), 0
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key.encode("utf-8", "surrogatepass")) <= 1024:
        raise InvalidRequest("an idempotency_key is a string of 1 to 1024 bytes")
    digest = hashlib.blake2b(idempotency_key.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return KEYED_PREFIX + digest, 1


def build_call(
    address: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float, key: str | None
) -> pb.Call:
    """The wire message of one client call."""
    if not isinstance(address, str) or "/" not in address:
        raise InvalidRequest(f"an address is 'Type/key', got {address!r}")
    type_name, ident = address.split("/", 1)
    request_id, attempt = request_id_for(key)
    return pb.Call(
        type_name=type_name,
        key=ident,
        method=method,
        args=codec.encode_args(args, kwargs),
        request_id=request_id,
        chain_id=request_id,
        deadline=time.time() + timeout_s,
        attempt=attempt,
    )


def _value(reply: pb.Reply, idempotency_key: str | None) -> Any:
    """A reply's value or error; a reused idempotency key is named (the host knows only its hash)."""
    try:
        return reply_value(reply)
    except InvalidRequest as exc:
        if idempotency_key is not None and IDEMPOTENCY_REUSED in str(exc):
            raise InvalidRequest(f"idempotency_key {idempotency_key!r}: {exc}") from None
        raise


_REFRESH_S = 1.0  # read the placement at most this often


class Routes:
    """What a client knows of the placement: type -> (group, partitions), partition -> endpoint."""

    def __init__(self, status: pb.StatusReply | None = None) -> None:
        self.read_at = time.monotonic()
        self.types: dict[str, tuple[str, int]] = {}
        self.hosts: dict[tuple[str, int], str] = {}
        if status is not None:
            self.types = {t.type_name: (t.group, t.shards) for t in status.types if t.shards}
            self.hosts = {(h.group, p): h.endpoint for h in status.hosts for p in (h.partitions or [h.shard])}

    def endpoint(self, call: pb.Call) -> str | None:
        """The host to call directly, or None (unknown type or host, or a request only the
        gateway answers: use the gateway)."""
        if call.method == KEYS_METHOD:
            return None
        known = self.types.get(call.type_name)
        if known is None:
            return None
        group, shards = known
        return self.hosts.get((group, shard_for(call.key, shards)))

    def fresh(self) -> bool:
        return time.monotonic() - self.read_at < _REFRESH_S


def _rerouted(reply: pb.Reply) -> bool:
    return reply.HasField("error") and reply.error.code in REROUTE_CODES


def _via_gateway(call: pb.Call) -> pb.Call:
    """The call to resend through the gateway: it may have run at the host."""
    call.attempt = max(call.attempt, 1)
    return call


class _Settings:
    """What both clients hold: where to call, with which token, TLS and timeout."""

    def __init__(
        self,
        target: str,
        *,
        token: str,
        tls: TlsConfig | None = None,
        timeout_s: float | None = None,
        direct: bool = True,
    ) -> None:
        if not isinstance(target, str) or not target:
            raise FluentError(f"target must be 'host:port' of a gateway, not {target!r}")
        if not isinstance(token, str) or not token:
            raise FluentError("token must be the cluster's token (cluster.token, FLUENTFN_TOKEN), a non-empty string")
        self.target = target
        self._metadata = metadata(token)
        self._timeout = _config.DEFAULT_CALL_TIMEOUT_S if timeout_s is None else check_timeout(timeout_s)
        self._tls = tls
        self._direct = direct
        self._routes: Routes | None = None

    def _forget_stale_routes(self) -> None:
        if self._routes is not None and not self._routes.fresh():
            self._routes = None


class Client(_Settings):
    """A synchronous gRPC client of a fluentfn gateway (``cluster.gateway``).

    ``Client(target, token=...).call("Counter/alice", "add", 2)``. Pass
    ``idempotency_key="..."`` to make a call safe to retry: the same key on the same
    identity returns the first call's recorded reply (for ``FLUENTFN_REPLY_TTL_S``)
    instead of running again. (``idempotency_key`` is therefore not passed on to the method.)
    ``direct=False`` sends every call through the gateway.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str,
        tls: TlsConfig | None = None,
        timeout_s: float | None = None,
        direct: bool = True,
    ) -> None:
        super().__init__(target, token=token, tls=tls, timeout_s=timeout_s, direct=direct)
        self._channels: dict[str, grpc.Channel] = {}
        self._stub = self._stub_for(target)
        # Calls travel on one long-lived stream per endpoint, on the process's I/O loop
        # (as a driver's do): a unary RPC per call costs a new HTTP/2 stream each time.
        self._io = io_loop()
        self._pool = PeerPool(token, tls)

    def _stub_for(self, endpoint: str) -> Any:
        channel = self._channels.get(endpoint)
        if channel is None:
            if self._tls is None:
                channel = grpc.insecure_channel(endpoint, options=dial_options())
            else:
                options = dial_options() + self._tls.channel_options()
                channel = grpc.secure_channel(endpoint, self._tls.channel_credentials(), options=options)
            self._channels[endpoint] = channel
        return pb_grpc.ActorHostStub(channel)

    def _host(self, call: pb.Call) -> str | None:
        if not self._direct:
            return None
        endpoint = None if self._routes is None else self._routes.endpoint(call)
        if endpoint is None and (self._routes is None or not self._routes.fresh()):
            try:  # unknown here: read the placement again (at most once a second)
                self._routes = Routes(self.status())
            except FluentError:
                self._routes = Routes()  # the gateway will do; try again later
            endpoint = self._routes.endpoint(call)
        return endpoint

    def _tell(self, call: pb.Call) -> None:
        """A unary ``Tell`` (it returns once the call is accepted): to the host, else the gateway."""
        host = self._host(call)
        if host is not None:
            try:
                stamp(call)
                self._stub_for(host).Tell(call, metadata=self._metadata, timeout=self._timeout)
                return
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
                    raise rpc_error(exc, host) from None
            self._forget_stale_routes()
            call = _via_gateway(call)
        try:
            stamp(call)
            self._stub.Tell(call, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None

    def call(self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Any:
        """Call ``method`` on the identity at ``address`` and return its result."""
        message = build_call(address, method, args, kwargs, self._timeout, idempotency_key)
        host = self._host(message)
        if host is not None:
            try:
                reply = self._invoke(host, message)
                if not _rerouted(reply):
                    return _value(reply, idempotency_key)
            except Unavailable:  # the host is gone: the gateway knows where the key lives now
                pass
            self._forget_stale_routes()
            message = _via_gateway(message)
        return _value(self._invoke(self.target, message), idempotency_key)

    def _invoke(self, endpoint: str, call: pb.Call) -> pb.Reply:
        """``call`` on ``endpoint``'s stream; its reply, or the error that ended the stream."""
        if self._io.in_loop():
            raise FluentError("ff.Client blocks: from async code on fluentfn's own loop, use ff.AsyncClient")
        waiter = Waiter()
        self._io.loop.call_soon_threadsafe(lambda: self._pool.stream(endpoint).send(call, waiter))
        reply = waiter.reply_for(call)
        assert reply is not None
        return reply

    def tell(self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any) -> None:
        """Send a one-way message (returns once the cluster accepted it)."""
        self._tell(build_call(address, method, args, kwargs, self._timeout, idempotency_key))

    def status(self) -> pb.StatusReply:
        """The endpoint's status message."""
        try:
            reply: pb.StatusReply = self._stub.Status(
                pb.StatusRequest(), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None
        return reply

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        if not self._io.in_loop():
            self._io.run(self._pool.close(), timeout=10)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Settings):
    """The asyncio twin of ``Client`` (grpc.aio): ``await client.call("Counter/a", "add", 2)``.

    Many calls may be in flight at once. ``idempotency_key`` and ``direct`` work as in
    ``Client``: retrying with the same key never runs a state change twice.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str,
        tls: TlsConfig | None = None,
        timeout_s: float | None = None,
        direct: bool = True,
    ) -> None:
        super().__init__(target, token=token, tls=tls, timeout_s=timeout_s, direct=direct)
        self._channels: dict[str, aio.Channel] = {}  # made on first use, in the caller's loop
        self._reading: asyncio.Task[Routes] | None = None

    def _connected(self, endpoint: str | None = None) -> Any:
        endpoint = endpoint or self.target
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = open_channel(endpoint, self._tls)
        return pb_grpc.ActorHostStub(channel)

    async def _read_routes(self) -> Routes:
        try:
            return Routes(await self.status())
        except FluentError:
            return Routes()  # the gateway will do; try again later

    async def _host(self, call: pb.Call) -> str | None:
        if not self._direct:
            return None
        routes = self._routes
        endpoint = None if routes is None else routes.endpoint(call)
        if endpoint is None and (routes is None or not routes.fresh()):
            if self._reading is None or self._reading.done():  # concurrent callers share one read
                self._reading = asyncio.ensure_future(self._read_routes())
            routes = self._routes = await asyncio.shield(self._reading)
            endpoint = routes.endpoint(call)
        return endpoint

    async def _send(self, rpc: str, call: pb.Call) -> Any:
        host = await self._host(call)
        if host is not None:
            try:
                stamp(call)
                reply = await getattr(self._connected(host), rpc)(call, metadata=self._metadata, timeout=self._timeout)
                if rpc == "Tell" or not _rerouted(reply):
                    return reply
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
                    raise rpc_error(exc, host) from None
            self._forget_stale_routes()
            call = _via_gateway(call)
        try:
            stamp(call)
            return await getattr(self._connected(), rpc)(call, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None

    async def call(
        self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any
    ) -> Any:
        """Call ``method`` on the identity at ``address`` and return its result."""
        message = build_call(address, method, args, kwargs, self._timeout, idempotency_key)
        return _value(await self._send("Invoke", message), idempotency_key)

    async def tell(
        self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any
    ) -> None:
        """Send a one-way message (returns once the cluster accepted it)."""
        await self._send("Tell", build_call(address, method, args, kwargs, self._timeout, idempotency_key))

    async def status(self) -> pb.StatusReply:
        """The endpoint's status message."""
        try:
            reply: pb.StatusReply = await self._connected().Status(
                pb.StatusRequest(), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None
        return reply

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
