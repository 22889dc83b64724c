"""The actor types a host engine serves: added by the host, or loaded on a call's first
use of one (from the directory); a name that is not served here is remembered for two
seconds, so a burst of misrouted calls does not ask the directory once each."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from .. import _config
from .._actordef import ActorDef
from ..errors import FluentError, InvalidRequest, NotFound, Redirect

TypeLoader = Callable[[str], Awaitable[ActorDef | None]]
_MISS_S = 2.0
_MISSES_KEPT = 4096


class KnownTypes:
    """One engine's types, by name (``by_name`` is shared with the engine's parts)."""

    def __init__(self, group: str, load: TypeLoader, on_added: Callable[[], None]) -> None:
        self._group = group
        self._load = load
        self._on_added = on_added
        self.by_name: dict[str, ActorDef] = {}
        self._unknown: dict[str, tuple[float, type[FluentError]]] = {}  # name -> (until when, why) not here

    def add(self, definition: ActorDef) -> None:
        """Serve a type (replaces an older definition for new activations)."""
        self.by_name[definition.name] = definition
        self._on_added()

    async def get(self, name: str) -> ActorDef:
        """The definition of ``name``: NotFound if no such type exists, Redirect if it
        belongs to another group (a misrouted call: its router resolves it again)."""
        definition = self.by_name.get(name)
        if definition is not None:
            return definition
        if not name or len(name) > _config.MAX_NAME_BYTES:
            raise InvalidRequest(f"invalid actor type name of {len(name)} characters")
        missing = self._unknown.get(name)
        if missing is not None and missing[0] > time.monotonic():
            raise missing[1](self._not_here(name, missing[1]))
        loaded = await self._load(name)
        if loaded is None or loaded.options.group != self._group:
            # A type of another group is a misrouted call (a stale route, a port that a
            # host of another group took over): the caller's router resolves it again.
            kind: type[FluentError] = NotFound if loaded is None else Redirect
            if len(self._unknown) > _MISSES_KEPT:
                self._unknown.clear()
            self._unknown[name] = (time.monotonic() + _MISS_S, kind)
            raise kind(self._not_here(name, kind))
        self.add(loaded)
        return loaded

    def _not_here(self, name: str, kind: type[FluentError]) -> str:
        if kind is NotFound:
            return f"no actor type {name!r} in group {self._group!r}"
        return f"{name!r} is not served by group {self._group!r}"
