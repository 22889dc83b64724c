"""Turns under way, counted in the store: a count that outlives a host that dies during one.

A call or a reminder whose turn ends its host's process each time it runs (a poison
message: ``os._exit``, a segfault in native code, memory) would be run again after each
restart, and take the host, and every identity on it, down again. A host counts each
start of such a turn in the store's KV area and removes the count when the turn ends with
the host alive; a count that reaches ``MAX_LOST`` says the turn was under way at each of
the host's last deaths, and it is not run again. Only turns that may repeat are counted
(a call re-sent after its host went away, a reminder's firing): three store operations
each, none for a first attempt.

A call's count row expires a while after the call's deadline (``call_ttl_s``), by which
time no copy of it is sent again: rows of calls whose host died and that nobody sent
again do not pile up. A reminder's firing count is kept until the firing ends: the
reminder fires again (and finds its count) however long its host stays down.
"""

from __future__ import annotations

import logging

from .._call import Call
from .._config import MAX_CALL_TIMEOUT_S
from ..state._store import Store

log = logging.getLogger("fluentfn.host")

STARTED_PREFIX = "started:"
"""KV rows counting the turns under way of a call re-sent after a loss (``call_key``)."""


def call_key(address: str, request_id: str) -> str:
    """The KV row counting the turns under way of the call ``request_id`` to ``address``."""
    return f"{STARTED_PREFIX}{address}:{request_id}"


EXPIRY_GRACE_S = 600.0
"""How long a call's count outlives its deadline: hosts' clocks may disagree by less."""


def call_ttl_s(call: Call, now: float) -> float:
    """How long the count of ``call``'s turns under way is kept: until its deadline (after
    which no copy of it is sent again), and ``EXPIRY_GRACE_S`` more."""
    remaining = call.deadline - now if call.deadline > 0 else MAX_CALL_TIMEOUT_S
    return max(0.0, remaining) + EXPIRY_GRACE_S


class UnderWay:
    """Counts, in the store, turns that started and have not ended (none without a store)."""

    __slots__ = ("_store",)

    def __init__(self, store: Store | None) -> None:
        self._store = store

    def begin(self, key: str, ttl_s: float | None = None) -> int:
        """A turn counted under ``key`` starts (blocking): how many have started and not
        ended, this one included (1 without a store). ``ttl_s``: the count is forgotten
        that long after this start, if no turn ends it first."""
        if self._store is None:
            return 1
        tries = 1 + int(self._store.get(key) or b"0")
        self._store.put(key, str(tries).encode(), ttl_s)
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
