"""What an invocation's nested calls did, across the attempts of its turn (FaaS mode).

A FaaS turn that meets a write conflict runs again from the state it re-reads. Its nested
calls have already had their effects, so the re-run must see their first outcomes
(values and failures alike) instead of sending them again, and the tells of an attempt
that is thrown away must never leave: they are held until the attempt's write commits.
Outcomes are keyed by the nested call's request id, which each attempt derives afresh in
the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Journal:
    """The nested outcomes of one invocation, and the tells of its current attempt."""

    def __init__(self) -> None:
        self._outcomes: dict[str, tuple[bool, Any]] = {}
        self._held: list[Callable[[], object]] = []

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

    def hold(self, send: Callable[[], object]) -> None:
        """A tell of the current attempt: sent by ``commit``, dropped by ``begin``."""
        self._held.append(send)

    def begin(self) -> None:
        """A new attempt: the tells of the one before never leave."""
        self._held.clear()

    def commit(self) -> None:
        """The attempt took effect: its tells leave now, in the order they were made."""
        held, self._held = self._held, []
        for send in held:
            send()
