"""Cluster-token authentication: every RPC carries ``authorization: Bearer <token>``."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

METADATA_KEY = "authorization"


def new_token() -> str:
    """A fresh cluster token (256 random bits)."""
    return secrets.token_urlsafe(32)


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token``."""
    return ((METADATA_KEY, f"Bearer {token}"),)


def token_matches(presented: str | bytes | None, token: str) -> bool:
    """Constant-time check of an ``authorization`` header value."""
    if presented is None:
        return False
    if isinstance(presented, bytes):
        presented = presented.decode("latin-1")
    return hmac.compare_digest(presented.encode("utf-8", "replace"), f"Bearer {token}".encode())


async def _deny(request_iterator: Any, context: aio.ServicerContext[Any, Any]) -> Any:
    """Refuse without reading the request: a streaming handler never pulls the message,
    so an unauthenticated body stays in the transport's flow-control window (64 KiB)
    instead of being received whole and buffered in memory."""
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid cluster token")


class TokenInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses every RPC whose metadata lacks the cluster token, on the headers alone."""

    def __init__(self, token: str) -> None:
        self._token = token
        # One handler for every method, unary ones included: the server reads a request
        # only when its handler asks, and this one never asks.
        self._deny = grpc.stream_unary_rpc_method_handler(_deny)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        presented = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == METADATA_KEY:
                presented = value
                break
        if token_matches(presented, self._token):
            return await continuation(handler_call_details)
        return self._deny
