"""MessagePack codec for arguments and results: plain data, ActorRefs, numpy arrays.

Anything that arrives from a network peer is decoded here, so nothing in this module
executes code: no pickle, no imports by name. Tuples, sets and frozensets keep their
type (extension types), as do ActorRefs and numpy arrays of plain dtypes.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .. import _config
from .._ref import ActorRef
from ..errors import InvalidRequest

EXT_REF = 1
EXT_NDARRAY = 2
EXT_TUPLE = 3
EXT_SET = 4
EXT_FROZENSET = 5

# numpy dtype kinds an array may carry over the wire (no objects, no structured voids).
_ARRAY_KINDS = frozenset("biufcSUmM")


def _default(obj: Any) -> Any:
    if isinstance(obj, ActorRef):
        return msgpack.ExtType(EXT_REF, msgpack.packb([obj.type_name, obj.key], use_bin_type=True))
    if isinstance(obj, tuple):
        return msgpack.ExtType(EXT_TUPLE, _packb(list(obj)))
    if isinstance(obj, frozenset):
        return msgpack.ExtType(EXT_FROZENSET, _packb(list(obj)))
    if isinstance(obj, set):
        return msgpack.ExtType(EXT_SET, _packb(list(obj)))
    # Subclasses of the plain types (OrderedDict, IntEnum, str enums, ...) travel as the base.
    for base in (bool, int, float, str, bytes, dict, list):
        if isinstance(obj, base):
            return base(obj)  # type: ignore[arg-type]
    if type(obj).__module__ == "numpy":
        return _pack_numpy(obj)
    raise TypeError(f"cannot send a {type(obj).__qualname__}: use plain data, ActorRefs or numpy arrays")


def _pack_numpy(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray) and obj.dtype.kind in _ARRAY_KINDS:
        arr = np.ascontiguousarray(obj)
        payload = [arr.dtype.str, list(arr.shape), arr.tobytes()]
        return msgpack.ExtType(EXT_NDARRAY, msgpack.packb(payload, use_bin_type=True))
    raise TypeError(f"cannot send a numpy {type(obj).__name__} of dtype {getattr(obj, 'dtype', '?')}")


_KEEP_BELOW = 1 << 16  # a Packer whose output reached this is dropped: its buffer stays grown
_FREE_MAX = 64  # Packers kept for reuse (about one per thread packing at once)


class Packers:
    """``msgpack.packb`` with reusable ``Packer``s: ``packb`` makes a Packer per call, which
    costs about three times the packing of a small value. A pack takes a Packer off a free
    list (``list.pop`` and ``append`` are atomic: no thread-local lookup) and puts it back
    after; a pack nested in another (a ``default`` that packs a tuple's items), or one
    that finds the list empty, makes its own. A Packer whose pack raised or produced
    ``_KEEP_BELOW`` bytes or more is not kept."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._free: list[msgpack.Packer] = []

    def pack(self, obj: Any) -> bytes:
        free = self._free
        try:
            packer = free.pop()
        except IndexError:
            packer = msgpack.Packer(**self._options)
        data: bytes = packer.pack(obj)
        if len(data) < _KEEP_BELOW and len(free) < _FREE_MAX:
            free.append(packer)
        return data


_packb = Packers(default=_default, use_bin_type=True, strict_types=True).pack


def _unpack_numpy(data: bytes) -> Any:
    import numpy as np

    dtype_str, shape, raw = msgpack.unpackb(data, raw=False)
    dtype = np.dtype(dtype_str)
    if dtype.kind not in _ARRAY_KINDS or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError("bad array header")
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != len(raw):
        raise ValueError("array size does not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_REF:
        parts = msgpack.unpackb(data, raw=False)
        if not (isinstance(parts, list) and len(parts) == 2 and all(isinstance(p, str) for p in parts)):
            raise ValueError("bad ActorRef")
        return ActorRef(parts[0], parts[1])
    if code == EXT_TUPLE:
        return tuple(_unpackb(data))
    if code == EXT_SET:
        return set(_unpackb(data))
    if code == EXT_FROZENSET:
        return frozenset(_unpackb(data))
    if code == EXT_NDARRAY:
        return _unpack_numpy(data)
    raise ValueError(f"unknown extension type {code}")


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)


def encode(obj: Any, *, limit: int | None = None) -> bytes:
    """Encode a value; InvalidRequest when it cannot travel or exceeds the size limit."""
    try:
        data = _packb(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequest(str(exc)) from None
    cap = _config.MAX_MESSAGE_BYTES if limit is None else limit
    if len(data) > cap:
        raise InvalidRequest(f"payload of {len(data)} bytes exceeds the {cap}-byte limit")
    return data


def decode(data: bytes, *, limit: int | None = None) -> Any:
    """Decode a value from an untrusted peer; InvalidRequest on anything malformed."""
    cap = _config.MAX_MESSAGE_BYTES if limit is None else limit
    if len(data) > cap:
        raise InvalidRequest(f"payload of {len(data)} bytes exceeds the {cap}-byte limit")
    try:
        return _unpackb(data)
    except InvalidRequest:
        raise
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise InvalidRequest(f"undecodable payload: {type(exc).__name__}: {exc}") from None


PLAIN_ARGS_MAX = 8  # arguments a call may pass as is (``plain_args``); more are encoded
_PLAIN_TEXT_MAX = 1 << 16  # longest str or bytes passed as is
_PLAIN_ROOM = 2 * PLAIN_ARGS_MAX * (_PLAIN_TEXT_MAX + 16)  # the most plain arguments (and their names) encode to
_INT_MIN, _INT_END = -(1 << 63), 1 << 64  # the ints msgpack can carry


def plain_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a call's arguments may reach a turn in this process as they are, without
    the encode and decode a call across the network makes: each an immutable value that
    the codec gives back equal and of the same type (bytes, an ASCII str, an int msgpack
    can carry, a float, a bool, None), all small enough that their encoding could not
    exceed the message limit. Only mutable values need the copy an encoding makes (the
    callee must not share a list or dict with its caller); anything else is encoded, and
    is refused, or arrives, exactly as it would across the network."""
    if len(args) + len(kwargs) > PLAIN_ARGS_MAX or _config.MAX_MESSAGE_BYTES <= _PLAIN_ROOM:
        return False
    for value in (*args, *kwargs, *kwargs.values()) if kwargs else args:
        t = type(value)
        if t is bytes:
            if len(value) > _PLAIN_TEXT_MAX:
                return False
        elif t is str:
            if len(value) > _PLAIN_TEXT_MAX or not value.isascii():
                return False
        elif t is int:
            if not _INT_MIN <= value < _INT_END:
                return False
        elif not (t is float or t is bool or value is None):
            return False
    return True


def encode_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Encode a call's arguments as ``[args, kwargs]``."""
    return encode([list(args), kwargs])


def decode_args(data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Decode ``[args, kwargs]``; InvalidRequest unless it has exactly that shape."""
    if not data:
        return (), {}
    value = decode(data)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], list)
        or not isinstance(value[1], dict)
        or (value[1] and not all(isinstance(k, str) for k in value[1]))
    ):
        raise InvalidRequest("arguments must be a msgpack array [args, kwargs]")
    return tuple(value[0]), value[1]
