"""What an invocation's nested calls did, across the attempts of its turn (FaaS mode).

A FaaS turn that meets a write conflict runs again from the state it re-reads. Its nested
calls have already had their effects, so the re-run must see their first outcomes
(values and failures alike) instead of sending them again, and the tells of an attempt
that is thrown away must never leave: they are held until the attempt's write commits.
Outcomes are keyed by the nested call's request id, which each attempt derives afresh in
the same order. A held tell carries its outbox row: written with the attempt's state, so
a tell of a committed turn leaves even if the invocation dies before sending it
(``_faastimer`` sends what is still there once the invocation's cap has passed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ..state._store import Scheduled

log = logging.getLogger("fluentfn.faas")

T = TypeVar("T")


class Journal:
    """The nested outcomes of one invocation, and the tells of its current attempt."""

    def __init__(self) -> None:
        self._outcomes: dict[str, tuple[bool, Any]] = {}
        self._held: list[tuple[Callable[[], object], Scheduled | None]] = []

    def run(self, request_id: str, call: Callable[[], T]) -> T:
        """``call()``'s outcome, or the outcome it had in an earlier attempt."""
        found = self._outcomes.get(request_id)
        if found is None:
            try:
                value = call()
            except BaseException as exc:
                self._outcomes[request_id] = (True, exc)
                raise
            self._outcomes[request_id] = (False, value)
            return value
        failed, outcome = found
        if failed:
            raise outcome
        return outcome  # type: ignore[no-any-return]

    def recorded(self, request_id: str) -> tuple[bool, Any] | None:
        """(failed, value or exception) of an earlier attempt's call, if it made one."""
        return self._outcomes.get(request_id)

    def record(self, request_id: str, failed: bool, outcome: Any) -> None:
        self._outcomes.setdefault(request_id, (failed, outcome))

    def hold(self, send: Callable[[], object], outbox: Scheduled | None = None) -> None:
        """A tell of the current attempt: sent by ``commit``, dropped by ``begin``;
        ``outbox``: its row, written with the attempt's state (``outbox``)."""
        self._held.append((send, outbox))

    def outbox(self) -> list[Scheduled]:
        """The outbox rows of the current attempt's tells."""
        return [row for _, row in self._held if row is not None]

    def begin(self) -> None:
        """A new attempt: the tells of the one before never leave."""
        self._held.clear()

    def commit(self, outboxed: bool = False) -> list[Scheduled]:
        """The attempt took effect: its tells leave now, in the order they were made.
        Returns the outbox rows of those that left. ``outboxed``: their rows were written
        with the attempt's state, so a tell whose send fails (the store or the platform
        failed, a lab's tap dropped it) does not fail the turn, which has taken effect:
        it keeps its row and leaves from the outbox later. Otherwise the failure is
        raised (nothing of the turn was written)."""
        held, self._held = self._held, []
        sent = []
        for send, row in held:
            try:
                send()
            except Exception as exc:  # the store or the platform failed, or a lab's tap dropped it
                if not outboxed or row is None:
                    raise
                why = f"{type(exc).__name__}: {exc}"
                log.warning("tell %s not sent now (%s): it leaves from the outbox", row.row.rid, why)
                continue
            if row is not None:
                sent.append(row)
        return sent
