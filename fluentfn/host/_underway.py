"""Turns under way, counted in the store: a count that outlives a host that dies during one.

A call or a reminder whose turn ends its host's process each time it runs (a poison
message: ``os._exit``, a segfault in native code, memory) would be run again after each
restart, and take the host, and every identity on it, down again. A host counts each
start of such a turn in the store's KV area and removes the count when the turn ends with
the host alive; a count that reaches ``MAX_LOST`` says the turn was under way at each of
the host's last deaths, and it is not run again. Only turns that may repeat are counted
(a call re-sent after its host went away, a reminder's firing): three store operations
each, none for a first attempt.

Rows of turns whose host died and that nobody sent again stay (one small row each).
"""

from __future__ import annotations

import logging

from ..state._store import Store

log = logging.getLogger("fluentfn.host")

STARTED_PREFIX = "started:"
"""KV rows counting the turns under way of a call re-sent after a loss (``call_key``)."""


def call_key(address: str, request_id: str) -> str:
    """The KV row counting the turns under way of the call ``request_id`` to ``address``."""
    return f"{STARTED_PREFIX}{address}:{request_id}"


class UnderWay:
    """Counts, in the store, turns that started and have not ended (none without a store)."""

    __slots__ = ("_store",)

    def __init__(self, store: Store | None) -> None:
        self._store = store

    def begin(self, key: str) -> int:
        """A turn counted under ``key`` starts (blocking): how many have started and not
        ended, this one included (1 without a store)."""
        if self._store is None:
            return 1
        tries = 1 + int(self._store.get(key) or b"0")
        self._store.put(key, str(tries).encode())
        return tries

    def ended(self, key: str) -> None:
        """The turn counted under ``key`` ended with its host alive (blocking): its count
        goes. A store that fails here leaves the count, which is logged: three such
        failures for one call would refuse it as if it had ended its host."""
        if self._store is None:
            return
        try:
            self._store.delete(key)
        except Exception as exc:
            log.warning("the count of turns under way %s was not removed: %s: %s", key, type(exc).__name__, exc)
