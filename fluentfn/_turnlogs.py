"""Log records that join traces: each carries the ``trace_id`` and ``request_id`` of the
turn that made it ("" outside a turn), for formats (``%(trace_id)s``) and handlers."""

from __future__ import annotations

import logging
from typing import Any

from ._context import current

__all__ = ["install_log_context", "log_context"]


def log_context() -> tuple[str, str]:
    """(trace id, request id) of the turn running in this thread, or ("", "")."""
    ctx = current()
    if ctx is None or not ctx.request_id:
        return "", ""
    times = ctx._times
    trace_id = f"{times.span.get_span_context().trace_id:032x}" if times is not None and times.span is not None else ""
    return trace_id, ctx.request_id


_factory_installed = False


def install_log_context() -> None:
    """Every log record of this process carries ``trace_id`` and ``request_id`` (of the
    turn that made it; "" elsewhere), for formats and handlers that join logs to traces."""
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.trace_id, record.request_id = log_context()
        return record

    logging.setLogRecordFactory(factory)
