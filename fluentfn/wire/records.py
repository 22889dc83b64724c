"""Outcomes at rest: the records of replies kept for retries (hosts, FaaS results) and the
outcomes of bulk items.

A record is ``0x02`` + MessagePack ``[digest, value, error]``: the request digest (b""
unless keyed), the encoded value or None, and None or the error's fields
``[code, message, exc_module, exc_type, exc_args, traceback]``. It owes nothing to the
wire format, so a change to ``proto/`` is not a change to stored data. Records written
before (protobuf ``Reply`` bytes, or ``0x01`` + digest + those bytes) still read.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .._call import ErrorInfo, Outcome
from ..errors import InvalidRequest
from ._gen import actorhost_pb2 as pb
from .codec import Packers

_BOUND = b"\x01"  # an older record bound to its request (a protobuf message never starts with 0x01)
_RECORD = b"\x02"  # the current format (nor with 0x02)
DIGEST_BYTES = 16
_pack = Packers(use_bin_type=True).pack


_SMALL_VALUE = 8  # records of values this short (None, a bool, a small int) are shared
_SMALL_KEPT = 4096
_small: dict[bytes, bytes] = {}  # value -> its record, unbound (no digest)


def record_of(outcome: Outcome, digest: bytes = b"") -> bytes:
    """The stored form of ``outcome`` (bound to its request's digest when it is keyed).
    The record of a short value, unbound, is made once and shared: every identity whose
    last turn returned None keeps the same bytes."""
    e = outcome.error
    if e is not None:
        fields: list[Any] = [digest, None, [e.code, e.message, e.exc_module, e.exc_type, e.exc_args, e.traceback]]
        return _RECORD + _pack(fields)
    value = outcome.value
    if digest or type(value) is not bytes or len(value) > _SMALL_VALUE:
        return _RECORD + _pack([digest, value, None])
    record = _small.get(value)
    if record is None:
        record = _RECORD + _pack([b"", value, None])
        if len(_small) < _SMALL_KEPT:
            _small[bytes(value)] = record
    return record


def read_record(record: bytes) -> tuple[bytes, Outcome]:
    """(digest, outcome) of a record of any format; InvalidRequest if it is none."""
    try:
        if record[:1] == _RECORD:
            digest, value, error = msgpack.unpackb(record[1:], raw=False)
            if error is None:
                return bytes(digest), Outcome(bytes(value))
            code, message, exc_module, exc_type, exc_args, traceback = error
            return bytes(digest), Outcome(error=ErrorInfo(code, message, exc_module, exc_type, exc_args, traceback))
        if record[:1] == _BOUND:
            return record[1 : 1 + DIGEST_BYTES], _legacy(record[1 + DIGEST_BYTES :])
        return b"", _legacy(record)
    except InvalidRequest:
        raise
    except Exception as exc:
        raise InvalidRequest(f"not a stored outcome: {type(exc).__name__}: {exc}") from None


def _legacy(data: bytes) -> Outcome:
    """A record written as protobuf ``Reply`` bytes (before the record format)."""
    reply = pb.Reply.FromString(data)
    if not reply.HasField("error"):
        return Outcome(reply.value)
    e = reply.error
    return Outcome(error=ErrorInfo(e.code, e.message, e.exc_module, e.exc_type, e.exc_args, e.traceback))
