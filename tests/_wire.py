"""Raw gRPC probes of a host, for tests that check what it answers."""

from __future__ import annotations

import grpc

from fluentfn.wire._gen import actorhost_pb2 as pb
from fluentfn.wire._gen import actorhost_pb2_grpc as pb_grpc


def redirects(endpoint: str, token: str, call: pb.Call, timeout_s: float = 30.0) -> bool:
    """Whether the host at ``endpoint`` answers ``call`` with a redirect (it does not own,
    or no longer admits turns of, the call's partition); any other answer is False."""
    with grpc.insecure_channel(endpoint) as channel:
        try:
            pb_grpc.ActorHostStub(channel).Invoke(
                call, metadata=(("authorization", f"Bearer {token}"),), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    return False
