"""``ff.Client``: call actors over gRPC from any process, without Ray."""

from __future__ import annotations

import os
import time
from types import TracebackType
from typing import Any

import grpc

from . import _config
from .errors import FluentError
from .transport._auth import metadata
from .transport._client import rpc_error
from .transport._server import channel_options
from .transport._tls import TlsConfig
from .wire import codec
from .wire._gen import actorhost_pb2 as pb
from .wire._gen import actorhost_pb2_grpc as pb_grpc
from .wire.errors import reply_value


class Client:
    """A synchronous gRPC client of a fluentfn gateway (``cluster.gateway``).

    ``Client(target, token=...).call("Counter/alice", "add", 2)``.
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

    def _call(self, address: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> pb.Call:
        if "/" not in address:
            raise FluentError(f"an address is 'Type/key', got {address!r}")
        type_name, key = address.split("/", 1)
        request_id = os.urandom(12).hex()
        return pb.Call(
            type_name=type_name,
            key=key,
            method=method,
            args=codec.encode_args(args, kwargs),
            request_id=request_id,
            chain_id=request_id,
            deadline=time.time() + self._timeout,
        )

    def call(self, address: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the identity at ``address`` and return its result."""
        try:
            reply = self._stub.Invoke(
                self._call(address, method, args, kwargs), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target) from None
        return reply_value(reply)

    def tell(self, address: str, method: str, *args: Any, **kwargs: Any) -> None:
        """Send a one-way message (returns once the cluster accepted it)."""
        try:
            self._stub.Tell(self._call(address, method, args, kwargs), metadata=self._metadata, timeout=self._timeout)
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
