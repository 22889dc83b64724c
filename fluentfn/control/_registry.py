"""The type registry: name -> (pickled class and options, options, methods)."""

from __future__ import annotations

from .._tables import TypeInfo
from .._typekeep import Entry
from ..errors import NotFound


class Registry:
    """Registered actor types (no I/O: the directory keeps a copy in Ray's GCS)."""

    def __init__(self) -> None:
        self.types: dict[str, Entry] = {}

    def entry(self, name: str) -> Entry:
        found = self.types.get(name)
        if found is None:
            raise NotFound(f"no actor type {name!r} is registered in this cluster")
        return found

    def info(self, name: str, partitions: int | None) -> TypeInfo:
        """What callers need to place ``name``'s calls; ``partitions``: its group's count, if it has hosts."""
        _, options, methods = self.entry(name)
        return TypeInfo(options.group, options.shards if partitions is None else partitions, methods)

    def blob(self, name: str) -> bytes | None:
        found = self.types.get(name)
        return found[0] if found else None

    def names(self) -> list[str]:
        return sorted(self.types)
