"""What an identity last wrote, and what a turn's end owes the store: only the attributes
that changed.

Small attributes are re-encoded every turn and written together when any changed (a few
bytes to kilobytes: cheaper to write than to track). A large attribute (``PART_MIN``
encoded bytes or more) is its own part in the store, written only when it changed:

- an immutable value (``bytes``, ``str``, numbers, a read-only numpy array) that is the
  same object as last written is unchanged without being encoded again;
- any other value is encoded and compared with its last written bytes (kept in memory).

So a turn that changes one small field of a 100 MB state whose large fields are immutable
writes (and encodes) only the small fields; a mutable large field costs an encoding and a
comparison, and is written only if its bytes differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._actordef import public_state
from ..errors import InvalidRequest
from ..state._codec import encode_state, encode_value
from ..state._layout import PART_MIN, compose, entries
from ._written import Change, Image, Part

_ATOMIC = (bytes, str, int, float, bool, complex, type(None))
_EMPTY = encode_state({})


def immutable(value: Any) -> bool:
    """Whether ``value`` cannot change in place (so the same object means the same bytes)."""
    if type(value) in _ATOMIC:
        return True
    flags = getattr(value, "flags", None)
    if flags is None or type(value).__module__ != "numpy" or getattr(flags, "writeable", True):
        return False
    base = value.base
    return base is None or type(base) is bytes or immutable(base)


def change(instance: Any, address: str, last: Image | None, *, force: bool = False) -> Change | None:
    """What the turn that just ran owes the store (None: nothing changed and ``force`` is
    off). InvalidRequest naming an attribute that cannot be stored."""
    state = public_state(instance)
    if not state and not force and last is not None and not last.parts and last.inline == _EMPTY:
        return None  # no state before, none now (a stateless actor): nothing to encode
    if last is None or not last.parts:
        # No large attribute last time: one encoding of the whole state (the common case),
        # split only if it turns out large.
        whole = _encode_all(state, address)
        if len(whole) < PART_MIN:
            if not force and last is not None and whole == last.inline:
                return None
            return Change(whole, {}, Image(whole, {}))
        return _classify(entries(whole), state, {}, last, force)
    return _classify(_each(state, last.parts, address), state, last.parts, last, force)


def _each(state: dict[str, Any], before: dict[str, Part], address: str) -> list[tuple[str, bytes | Part]]:
    """Each attribute's encoding, or its last ``Part`` if it is the same immutable object."""
    out: list[tuple[str, bytes | Part]] = []
    for name, value in state.items():
        old = before.get(name)
        if old is not None and old.encoded is None and old.value is value:
            out.append((name, old))  # unchanged, not encoded again
        else:
            out.append((name, _encode(name, value, address)))
    return out


def _classify(
    items: Sequence[tuple[str, bytes | Part]],
    state: dict[str, Any],
    before: dict[str, Part],
    last: Image | None,
    force: bool,
) -> Change | None:
    small: list[tuple[str, bytes]] = []
    parts: dict[str, Part] = {}
    changed: dict[str, bytes | None] = {}
    for name, encoded in items:
        if isinstance(encoded, Part):
            parts[name] = encoded
            continue
        if len(encoded) < PART_MIN:
            small.append((name, encoded))
            continue
        value = state[name]
        parts[name] = Part(value, None if immutable(value) else encoded)
        old = before.get(name)
        if old is None or old.encoded is None or old.encoded != encoded:
            changed[name] = encoded
    for name in before:
        if name not in parts:
            changed[name] = None  # deleted, or small now
    inline = compose(small)
    if not force and not changed and last is not None and inline == last.inline:
        return None
    return Change(inline, changed, Image(inline, parts))


def baseline(stored: bytes, state: dict[str, Any]) -> Image:
    """The image of what was just loaded: ``stored`` (the whole encoded state) split, with
    the decoded ``state``'s objects for the identity check of immutable large values."""
    small: list[tuple[str, bytes]] = []
    parts: dict[str, Part] = {}
    for name, encoded in _entries(stored):
        if len(encoded) < PART_MIN:
            small.append((name, encoded))
        else:
            value = state.get(name)
            parts[name] = Part(value, None if immutable(value) else encoded)
    return Image(compose(small), parts)


def _entries(stored: bytes) -> list[tuple[str, bytes]]:
    try:
        return entries(stored)
    except ValueError:
        return []  # not a map the image can split: the first write rewrites it whole


def _encode_all(state: dict[str, Any], address: str) -> bytes:
    try:
        return encode_state(state)
    except Exception as exc:
        raise unstorable(state, address, exc) from None


def _encode(name: str, value: Any, address: str) -> bytes:
    try:
        return encode_value(value)
    except Exception as exc:
        raise unstorable({name: value}, address, exc) from None


def unstorable(state: dict[str, Any], address: str, failure: Exception) -> InvalidRequest:
    """The error for state that did not encode: it names the first attribute that does not."""
    for name, value in state.items():
        try:
            encode_value(value)
        except Exception as exc:
            return InvalidRequest(
                f"{address}: attribute {name!r} ({type(value).__name__}) cannot be stored ({exc}); "
                "make it private (_name) or storable; the call was rolled back"
            )
    return InvalidRequest(f"{address}: its state cannot be stored ({failure}); the call was rolled back")
