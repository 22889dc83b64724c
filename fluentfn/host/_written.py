"""What an identity last wrote and what a turn owes the store, as plain data (computed by
``_image``; kept on the ``Activation``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Part:
    """A large attribute as last written: its value (for the identity check of an
    immutable one) and, for a mutable one, its encoding (for the comparison)."""

    value: Any
    encoded: bytes | None


@dataclass(slots=True)  # not frozen (nor Change): a frozen one costs over a microsecond more to make, per write
class Image:
    """An identity's state as last written: the inline map and the large parts."""

    inline: bytes
    parts: dict[str, Part]


@dataclass(slots=True)
class Change:
    """A write a turn owes: the inline map (whole), the parts that changed (``None``: the
    attribute is gone or became small), and the image once written."""

    inline: bytes
    parts: dict[str, bytes | None]
    image: Image

    @property
    def size(self) -> int:
        """Bytes to write."""
        if not self.parts:  # the common case: no large attribute changed
            return len(self.inline)
        return len(self.inline) + sum(len(v) for v in self.parts.values() if v is not None)
