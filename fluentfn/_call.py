"""The vocabulary of a call: one ``Call`` and one ``Outcome``, in both modes, in every
process, with no I/O and no protobuf (``transport/`` converts them at the network's edge).

A call's ``deadline`` is a time on the clock of the process holding it (``time.time()``);
it leaves a process as a budget of seconds and is re-based where it arrives
(``transport/_budget.py``), so no two processes compare clocks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Args", "Call", "ErrorInfo", "Outcome", "new_request_id"]

Args = tuple[tuple[Any, ...], dict[str, Any]]
"""A call's arguments as values: (positional, keyword)."""


_source: Callable[[], str] | None = None  # sim mode's seeded ids; None: random ones


def new_request_id() -> str:
    """A fresh request id (the one place they are minted; retries keep theirs)."""
    return os.urandom(12).hex() if _source is None else _source()


def set_request_id_source(source: Callable[[], str] | None) -> Callable[[], str] | None:
    """Mint request ids with ``source`` from now on (None: random); returns the previous one."""
    global _source
    previous, _source = _source, source
    return previous


class Call:
    """One request to one identity: a call, a tell (``one_way``) or a reserved method
    (``__bulk__``, ``__keys__``, ``__delete__``).

    ``call_chain``: the identities whose turns wait on this call (reentry along it is
    admitted); ``chain_id``: the chain's id; ``seq``: the stream's sequence number of a
    call that wants its outcome back on a stream; ``attempt``: > 0 when it may have run
    before (a retry: its recorded outcome is looked for); ``budget_s``: the seconds left,
    set only while it crosses the network; ``caller``: the identity whose turn made it
    ("" from a driver or a client); ``trace``: the W3C ``traceparent`` of the span that
    made it ("" unless tracing is on); ``arrived``: when it reached this process
    (``time.perf_counter()``, never sent: where a turn's queue time starts; a FaaS
    invocation's is the wall clock it was handed to the platform at).
    """

    __slots__ = (
        "args",
        "arrived",
        "attempt",
        "budget_s",
        "call_chain",
        "caller",
        "chain_id",
        "deadline",
        "key",
        "method",
        "one_way",
        "request_id",
        "seq",
        "trace",
        "type_name",
    )

    def __init__(
        self,
        type_name: str = "",
        key: str = "",
        method: str = "",
        args: bytes = b"",
        request_id: str = "",
        deadline: float = 0.0,
        call_chain: Sequence[str] = (),
        chain_id: str = "",
        seq: int = 0,
        one_way: bool = False,
        attempt: int = 0,
        budget_s: float = 0.0,
        caller: str = "",
        trace: str = "",
    ) -> None:
        self.type_name = type_name
        self.key = key
        self.method = method
        self.args = args
        self.request_id = request_id
        self.deadline = deadline
        self.call_chain = call_chain
        self.chain_id = chain_id
        self.seq = seq
        self.one_way = one_way
        self.attempt = attempt
        self.budget_s = budget_s
        self.caller = caller
        self.trace = trace
        self.arrived = 0.0

    def copy(self) -> Call:
        return Call(
            self.type_name, self.key, self.method, self.args, self.request_id, self.deadline,
            self.call_chain, self.chain_id, self.seq, self.one_way, self.attempt, self.budget_s, self.caller,
            self.trace,
        )  # fmt: skip

    @property
    def address(self) -> str:
        return f"{self.type_name}/{self.key}"

    def __repr__(self) -> str:
        kind = "tell" if self.one_way else "call"
        return f"<{kind} {self.type_name}/{self.key}.{self.method} id={self.request_id} attempt={self.attempt}>"


class ErrorInfo:
    """A failure as it travels: a fluentfn status (``code`` > 0, with a message) or a user
    exception (``code`` 0: its module, type name, encoded args and traceback)."""

    __slots__ = ("code", "exc_args", "exc_module", "exc_type", "message", "traceback")

    def __init__(
        self,
        code: int = 0,
        message: str = "",
        exc_module: str = "",
        exc_type: str = "",
        exc_args: bytes = b"",
        traceback: str = "",
    ) -> None:
        self.code = code
        self.message = message
        self.exc_module = exc_module
        self.exc_type = exc_type
        self.exc_args = exc_args
        self.traceback = traceback

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ErrorInfo) and all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __repr__(self) -> str:
        what = f"{self.exc_module}:{self.exc_type}" if self.exc_type else f"code {self.code}"
        return f"<error {what}: {self.message[:80]!r}>"


class Outcome:
    """What a call came to: an encoded ``value`` or an ``error`` (never both). ``seq``
    names the stream call it answers."""

    __slots__ = ("error", "seq", "value")

    def __init__(self, value: bytes = b"", error: ErrorInfo | None = None, seq: int = 0) -> None:
        self.value = value
        self.error = error
        self.seq = seq

    @property
    def failed(self) -> bool:
        return self.error is not None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Outcome)
            and self.value == other.value
            and self.error == other.error
            and self.seq == other.seq
        )

    def __repr__(self) -> str:
        what = repr(self.error) if self.error is not None else f"{len(self.value)} B"
        return f"<outcome seq={self.seq} {what}>"
