"""``ff.Client`` and ``ff.AsyncClient``: call actors over gRPC from any process, without Ray."""

from __future__ import annotations

import hashlib
import os
import time
from types import TracebackType
from typing import Any

import grpc
from grpc import aio

from . import _config
from .errors import FluentError, InvalidRequest
from .transport._auth import metadata
from .transport._client import open_channel, rpc_error
from .transport._server import channel_options
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
    return "k" + digest, 1  # "k": never equal to a generated (hex) or derived ("d...") id


def build_call(
    address: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float, key: str | None
) -> pb.Call:
    """The wire message of one client call."""
    if not isinstance(address, str) or "/" not in address:
        raise FluentError(f"an address is 'Type/key', got {address!r}")
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


class Client:
    """A synchronous gRPC client of a fluentfn gateway (``cluster.gateway``).

    ``Client(target, token=...).call("Counter/alice", "add", 2)``. Pass
    ``idempotency_key="..."`` to make a call safe to retry: the same key on the same
    identity returns the first call's recorded reply (for ``FLUENTFN_REPLY_TTL_S``)
    instead of running again. (``idempotency_key`` is therefore not passed on to the method.)
    """

    def __init__(
        self, target: str, *, token: str, tls: TlsConfig | None = None, timeout_s: float | None = None
    ) -> None:
        self.target = target
        self._metadata = metadata(token)
        self._timeout = _config.DEFAULT_CALL_TIMEOUT_S if timeout_s is None else timeout_s
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=channel_options())
        else:
            self._channel = grpc.secure_channel(target, tls.channel_credentials(), options=channel_options())
        self._stub = pb_grpc.ActorHostStub(self._channel)

    def call(self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Any:
        """Call ``method`` on the identity at ``address`` and return its result."""
        message = build_call(address, method, args, kwargs, self._timeout, idempotency_key)
        try:
            reply = self._stub.Invoke(message, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None
        return reply_value(reply)

    def tell(self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any) -> None:
        """Send a one-way message (returns once the cluster accepted it)."""
        message = build_call(address, method, args, kwargs, self._timeout, idempotency_key)
        try:
            self._stub.Tell(message, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None

    def status(self) -> pb.StatusReply:
        """The endpoint's status message."""
        try:
            return self._stub.Status(pb.StatusRequest(), metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of ``Client`` (grpc.aio): ``await client.call("Counter/a", "add", 2)``.

    Many calls may be in flight at once on its one channel. ``idempotency_key`` works as
    in ``Client``: retrying with the same key never runs a state change twice.
    """

    def __init__(
        self, target: str, *, token: str, tls: TlsConfig | None = None, timeout_s: float | None = None
    ) -> None:
        self.target = target
        self._metadata = metadata(token)
        self._timeout = _config.DEFAULT_CALL_TIMEOUT_S if timeout_s is None else timeout_s
        self._channel: aio.Channel | None = None
        self._tls = tls
        self._stub: Any = None

    def _connected(self) -> Any:
        if self._stub is None:  # made on first use, inside the caller's event loop
            self._channel = open_channel(self.target, self._tls)
            self._stub = pb_grpc.ActorHostStub(self._channel)
        return self._stub

    async def call(
        self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any
    ) -> Any:
        """Call ``method`` on the identity at ``address`` and return its result."""
        message = build_call(address, method, args, kwargs, self._timeout, idempotency_key)
        try:
            reply = await self._connected().Invoke(message, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None
        return reply_value(reply)

    async def tell(
        self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any
    ) -> None:
        """Send a one-way message (returns once the cluster accepted it)."""
        message = build_call(address, method, args, kwargs, self._timeout, idempotency_key)
        try:
            await self._connected().Tell(message, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None

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
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = self._stub = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
