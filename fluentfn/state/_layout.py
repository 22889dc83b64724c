"""How an identity's state lies in the store: small attributes together in one encoded map
(the record's ``state``), each large attribute (``PART_MIN`` bytes encoded or more) as a
part of its own, so a turn that changes one small field of a large state writes only that.

Both are the state codec's bytes: a map's encoding is its header followed by each key's
and value's encoding, so the whole state is rebuilt by concatenation (``merge``) and split
again without decoding any value (``entries``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping

import msgpack

PART_MIN = 64 * 1024


def _header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def _name(name: str) -> bytes:
    return msgpack.packb(name, use_bin_type=True)  # type: ignore[no-any-return]


def compose(items: Iterable[tuple[str, bytes]]) -> bytes:
    """The encoded map of ``(name, encoded value)`` items."""
    body = [_name(name) + value for name, value in items]
    return _header(len(body)) + b"".join(body)


def merge(inline: bytes, parts: Mapping[str, bytes]) -> bytes:
    """The whole state: the inline map with the parts added (a part wins over an inline
    attribute of the same name, which a writer never leaves)."""
    if not parts:
        return inline
    items = [(k, v) for k, v in entries(inline) if k not in parts] if inline else []
    return compose([*items, *parts.items()])


def entries(whole: bytes) -> list[tuple[str, bytes]]:
    """``(name, encoded value)`` of an encoded state map, values undecoded. ValueError if
    ``whole`` is not a map with text keys."""
    unpacker = msgpack.Unpacker(io.BytesIO(whole), raw=False, max_buffer_size=max(len(whole), 1 << 20))
    try:
        n = unpacker.read_map_header()
        out: list[tuple[str, bytes]] = []
        view = memoryview(whole)
        for _ in range(n):
            name = unpacker.unpack()
            if not isinstance(name, str):
                raise ValueError(f"a state attribute's name is {type(name).__name__}, not text")
            start = unpacker.tell()
            unpacker.skip()
            out.append((name, bytes(view[start : unpacker.tell()])))
        return out
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"not an encoded state map: {exc}") from None
