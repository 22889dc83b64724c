"""State codec: msgpack for plain data and numpy arrays, cloudpickle for anything else.

The store is inside the trust boundary (only cluster processes write it), so state may
hold arbitrary objects. The network codec never accepts the pickle extension.
"""

from __future__ import annotations

from typing import Any

import cloudpickle
import msgpack

from ..wire import codec as wire

EXT_PICKLE = 100


def _default(obj: Any) -> Any:
    try:
        return wire._default(obj)
    except TypeError:
        return msgpack.ExtType(EXT_PICKLE, cloudpickle.dumps(obj))


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_PICKLE:
        return cloudpickle.loads(data)
    if code in (wire.EXT_TUPLE, wire.EXT_SET, wire.EXT_FROZENSET):
        items = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        return {wire.EXT_TUPLE: tuple, wire.EXT_SET: set, wire.EXT_FROZENSET: frozenset}[code](items)
    return wire._ext_hook(code, data)


def _state_default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return msgpack.ExtType(wire.EXT_TUPLE, _pack(list(obj)))
    if isinstance(obj, frozenset):
        return msgpack.ExtType(wire.EXT_FROZENSET, _pack(list(obj)))
    if isinstance(obj, set):
        return msgpack.ExtType(wire.EXT_SET, _pack(list(obj)))
    return _default(obj)


# Containers must route their items through _default too, so they are packed here.
_pack = wire.Packers(default=_state_default, use_bin_type=True, strict_types=True).pack


def encode_state(state: dict[str, Any]) -> bytes:
    """Encode an actor's public state."""
    return _pack(state)


def encode_value(value: Any) -> bytes:
    """Encode one attribute's value: ``encode_state`` of a map is its header followed by
    each name's and value's encoding (``_layout`` relies on it)."""
    return _pack(value)


def decode_state(data: bytes) -> dict[str, Any]:
    """Decode state written by ``encode_state``."""
    value = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    if not isinstance(value, dict):
        raise ValueError("stored state is not a mapping")
    return value
