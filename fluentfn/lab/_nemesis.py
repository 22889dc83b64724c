"""Faults carried out: a ``Tap`` on this process's router that gives each message the fate
its ``Faults`` say, and the calls that put a set of faults in force in every process of
the cluster (the driver's, and each host's through the directory)."""

from __future__ import annotations

from typing import Any

from .._call import Call, Outcome
from .._router import Target
from ..errors import FluentError
from ..transport._caller import Intercept, install_tap
from ._faults import DELIVERED, Faults

_current = Faults()


class FaultTap:
    """Gives each request and each reply the fate ``faults`` decide (a lost request or
    reply leaves its caller waiting until the call's deadline)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def sending(self, call: Call, target: Target) -> bool | Intercept:
        fate = self.faults.request(call.caller, f"{call.type_name}/{call.key}", call.request_id, call.attempt)
        if fate is DELIVERED:
            return True
        return Intercept(silent=fate.lost, delay_s=fate.delay_s, copies=fate.copies)

    def received(self, call: Call, target: Target, reply: Outcome | None, error: FluentError | None) -> bool | None:
        if error is not None:  # the transport's own failure, not a message
            return None
        return self.faults.reply(call.caller, f"{call.type_name}/{call.key}", call.request_id, call.attempt)


def install(faults: Faults) -> None:
    """Put ``faults`` in force in this process (no tap at all when there are none: the
    router's fast path is untouched)."""
    global _current
    _current = faults
    install_tap(FaultTap(faults) if faults.active else None)


def current() -> Faults:
    return _current


def apply(faults: Faults) -> Faults:
    """Put ``faults`` in force here and in every host of the cluster (hosts started later
    get them from the directory); returns them."""
    from .._ref import current_invoker

    invoker: Any = current_invoker()
    push = getattr(invoker, "set_faults", None)
    if push is None:
        raise FluentError(f"faults need a stateful cluster; this process's runtime is {invoker.mode!r}")
    push(faults)
    install(faults)
    return faults
