"""A partition's hand-over memory on the wire (HostControl's Release and Adopt): the
state encoding's bytes and recorded replies, as protobuf — nothing to unpickle."""

from __future__ import annotations

from ..wire._gen import actorhost_pb2 as pb
from ._activations import Handoff, Memory


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
        m.address: Memory(
            m.state if m.HasField("state") else None,
            tuple((r.request_id, r.reply) for r in m.replies),
        )
        for m in message.identities
    }
