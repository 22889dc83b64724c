"""The HostControl gRPC service: the directory moves partitions between hosts over the
hosts' own gRPC servers (the cluster token, as every RPC), not through Ray actor calls —
one hop onto the host's loop instead of Ray's executor thread and a hand-off to the loop.
What travels is protobuf and the state encoding's bytes; nothing is unpickled."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Protocol

import grpc
from grpc import aio

from ..errors import FluentError, InvalidRequest, status_for
from ..host._activations import Handoff, Memory, Released
from ..wire._gen import actorhost_pb2 as pb
from ..wire._gen import actorhost_pb2_grpc as pb_grpc
from ._auth import metadata
from ._client import open_channel, rpc_error
from ._server import MALFORMED, lenient
from ._tls import TlsConfig

CONTROL_SERVICE = "fluentfn.v1.HostControl"
log = logging.getLogger("fluentfn.transport")


Who = tuple[str, str]
"""A host, as a move names it: (group, host id)."""


class Controlled(Protocol):
    """What a host does for the directory's moves."""

    async def release(self, who: Who, partitions: list[int], grace_s: float) -> dict[int, Released]: ...

    async def adopt(self, who: Who, handoffs: dict[int, Handoff]) -> dict[int, int]: ...


def memory_to_pb(partition: int, handoff: Handoff) -> pb.PartitionMemory:
    """``handoff`` (by address) of ``partition`` as its wire message."""
    return pb.PartitionMemory(
        partition=partition,
        identities=[
            pb.IdentityMemory(
                address=address,
                state=memory.state,
                replies=[pb.RecordedReply(request_id=r, reply=b) for r, b in memory.replies],
            )
            for address, memory in handoff.items()
        ],
    )


def memory_from_pb(message: pb.PartitionMemory) -> Handoff:
    """The hand-over memory a PartitionMemory carries."""
    return {
        m.address: Memory(m.state if m.HasField("state") else None, tuple((r.request_id, r.reply) for r in m.replies))
        for m in message.identities
    }


async def _release(host: Controlled, request: pb.ReleaseRequest) -> pb.ReleaseReply:
    arrived = time.monotonic()
    partitions = list(request.partitions)
    out = await host.release((request.group, request.host_id), partitions, request.grace_s)
    none = Released({})
    return pb.ReleaseReply(
        partitions=[memory_to_pb(p, out.get(p, none).memory) for p in partitions],
        served_s={p: out[p].served_s for p in partitions if p in out},
        held_s={p: out[p].held_s for p in partitions if p in out},
        took_s=time.monotonic() - arrived,
    )


async def _adopt(host: Controlled, request: pb.AdoptRequest) -> pb.AdoptReply:
    handoffs: dict[int, Handoff] = {}
    for m in request.partitions:
        if m.partition in handoffs:
            raise InvalidRequest(f"partition {m.partition} is named twice")
        handoffs[m.partition] = memory_from_pb(m)
    return pb.AdoptReply(epochs=await host.adopt((request.group, request.host_id), handoffs))


async def _answer(run: Any, request: Any, context: aio.ServicerContext[Any, Any], name: str) -> Any:
    if request is MALFORMED:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request: not a valid protobuf message")
    try:
        return await run(request)
    except FluentError as exc:
        await context.abort(status_for(exc), f"{name}: {exc}")
    except Exception as exc:  # the host's own failure: the directory is told, and logs it
        log.exception("%s failed", name)
        await context.abort(grpc.StatusCode.INTERNAL, f"{name}: {type(exc).__name__}: {exc}")


def register_control(server: aio.Server, host: Controlled) -> None:
    """Serve HostControl on ``server`` for ``host`` (hosts only; the gateway has none)."""

    async def release(request: pb.ReleaseRequest, context: aio.ServicerContext[Any, Any]) -> pb.ReleaseReply:
        result: pb.ReleaseReply = await _answer(functools.partial(_release, host), request, context, "Release")
        return result

    async def adopt(request: pb.AdoptRequest, context: aio.ServicerContext[Any, Any]) -> pb.AdoptReply:
        result: pb.AdoptReply = await _answer(functools.partial(_adopt, host), request, context, "Adopt")
        return result

    handlers = {
        "Release": grpc.unary_unary_rpc_method_handler(
            release, lenient(pb.ReleaseRequest.FromString), pb.ReleaseReply.SerializeToString
        ),
        "Adopt": grpc.unary_unary_rpc_method_handler(
            adopt, lenient(pb.AdoptRequest.FromString), pb.AdoptReply.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(CONTROL_SERVICE, handlers),))


class ControlClient:
    """The directory's channels to its hosts' HostControl services (one per endpoint,
    opened on first use, in the loop that uses them)."""

    def __init__(self, token: str, tls: TlsConfig | None) -> None:
        self._token = token
        self._tls = tls
        self._stubs: dict[str, tuple[aio.Channel, pb_grpc.HostControlAsyncStub]] = {}

    def _stub(self, endpoint: str) -> pb_grpc.HostControlAsyncStub:
        if not endpoint:
            raise InvalidRequest("the host has no endpoint yet")
        found = self._stubs.get(endpoint)
        if found is None:
            channel = open_channel(endpoint, self._tls)
            found = self._stubs[endpoint] = (channel, pb_grpc.HostControlStub(channel))
        return found[1]

    async def release(
        self, endpoint: str, who: Who, partitions: list[int], grace_s: float, timeout_s: float
    ) -> dict[int, Released]:
        """Host ``who`` at ``endpoint`` drains ``partitions``, writes them, and returns what
        their next owner needs (by partition), with how long each went on serving first,
        how long its callers were held there, and how long the host took over the request."""
        group, host_id = who
        request = pb.ReleaseRequest(partitions=partitions, grace_s=grace_s, group=group, host_id=host_id)
        try:
            reply: pb.ReleaseReply = await self._stub(endpoint).Release(
                request, timeout=timeout_s, metadata=metadata(self._token)
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, endpoint) from None
        served, held, took = reply.served_s, reply.held_s, reply.took_s
        return {
            m.partition: Released(memory_from_pb(m), served.get(m.partition, 0.0), held.get(m.partition, 0.0), took)
            for m in reply.partitions
        }

    async def adopt(self, endpoint: str, who: Who, handoffs: dict[int, Handoff], timeout_s: float) -> dict[int, int]:
        """Host ``who`` at ``endpoint`` claims and serves the partitions of ``handoffs``
        (each starting from its hand-over memory); returns their epochs."""
        group, host_id = who
        partitions = [memory_to_pb(p, h) for p, h in handoffs.items()]
        request = pb.AdoptRequest(partitions=partitions, group=group, host_id=host_id)
        try:
            reply: pb.AdoptReply = await self._stub(endpoint).Adopt(
                request, timeout=timeout_s, metadata=metadata(self._token)
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, endpoint) from None
        return dict(reply.epochs)

    async def forget(self, endpoint: str) -> None:
        """Close the channel to a stopped host."""
        found = self._stubs.pop(endpoint, None)
        if found is not None:
            await found[0].close(None)

    async def close(self) -> None:
        for endpoint in list(self._stubs):
            await self.forget(endpoint)
