"""One turn's timing and, when tracing is on, its OpenTelemetry span.

Tracing is off unless ``ff.init(tracing="http://host:4317")`` or ``FLUENTFN_OTEL_ENDPOINT``
names an OTLP/gRPC collector; then every process of the cluster (drivers, hosts, FaaS
environments, the gateway) exports a ``fluentfn.turn`` span per turn, with an event per
phase (queue, init, load, run, write: its start, and ``duration_ms``) and per call it
made. A turn's span context travels in the ``Call`` (``trace``, a W3C ``traceparent``) to
the calls it makes, so one call chain is one trace.
With tracing off nothing of OpenTelemetry is imported and a turn pays for its phase
timings only (``_phases``). The standard ``OTEL_*`` variables (service name, batch delay,
headers) are honoured; the driver's are handed to every process of the cluster.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from ._phases import TALLY

__all__ = ["TurnTimes", "configure", "enabled", "flush", "parent_for", "shutdown", "turn_times"]

log = logging.getLogger("fluentfn.tracing")

_OFFSET_NS = time.time_ns() - time.perf_counter_ns()  # perf_counter -> epoch ns
_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: Any = None
_endpoint = ""
_lock = threading.Lock()


def enabled() -> bool:
    return _tracer is not None


def endpoint() -> str:
    return _endpoint


def otel_env() -> dict[str, str]:
    """This process's ``OTEL_*`` variables: what the cluster's other processes are given."""
    return {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}


def configure(url: str, env: Mapping[str, str] | None = None, service: str = "fluentfn") -> None:
    """Export this process's spans to ``url`` (OTLP/gRPC); "" turns tracing off. ``env``:
    ``OTEL_*`` variables to use where this process has none. Idempotent for one url."""
    global _tracer, _provider, _endpoint
    with _lock:
        if url == _endpoint:
            return
        _shutdown_locked()
        if not url:
            return
        for k, v in (env or {}).items():
            os.environ.setdefault(k, v)
        os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "1000")
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise ImportError(f"tracing needs OpenTelemetry: pip install 'fluentfn[otel]' ({exc})") from None
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
        provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=True)
        exporter = OTLPSpanExporter(endpoint=url, insecure=url.startswith("http://"))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _provider, _endpoint = provider, url
        _tracer = provider.get_tracer("fluentfn")


def flush(timeout_s: float = 5.0) -> None:
    """Send the spans buffered so far (a FaaS invocation's, before its environment may be
    frozen or stopped: what Lambda's telemetry extensions do at the end of an invocation)."""
    provider = _provider
    if provider is not None and not provider.force_flush(int(timeout_s * 1000)):
        log.warning("spans were not all sent to %s within %.0f s", _endpoint, timeout_s)


def shutdown() -> None:
    """Flush and stop exporting (spans still buffered are sent)."""
    with _lock:
        _shutdown_locked()


def _shutdown_locked() -> None:
    global _tracer, _provider, _endpoint
    if _provider is not None:
        try:
            _provider.shutdown()
        except Exception:
            log.exception("flushing spans to %s failed", _endpoint)
    _tracer = _provider = None
    _endpoint = ""


def _ns(t: float) -> int:
    return int(t * 1e9) + _OFFSET_NS


def _parent(traceparent: str) -> Any:
    """The OpenTelemetry context whose parent is ``traceparent`` (None: a new trace)."""
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    try:
        ctx = SpanContext(
            int(parts[1], 16), int(parts[2], 16), is_remote=True, trace_flags=TraceFlags(int(parts[3], 16))
        )
    except ValueError:
        return None
    return trace.set_span_in_context(NonRecordingSpan(ctx)) if ctx.is_valid else None


def _traceparent(span: Any) -> str:
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"


def parent_for(times: TurnTimes | None) -> str:
    """The ``trace`` of a call made now: the current turn's span, else (a driver) the
    user's own current OpenTelemetry span; "" when tracing is off or there is none."""
    if _tracer is None:
        return ""
    if times is not None and times.span is not None:
        return _traceparent(times.span)
    from opentelemetry import trace

    span = trace.get_current_span()
    return _traceparent(span) if span.get_span_context().is_valid else ""


def turn_times(what: str, arrived: float, trace: str) -> TurnTimes | None:
    """The timings of a turn of ``what`` beginning now: None when it is neither traced nor
    sampled for the tally (``PhaseTally.turn_weight``)."""
    weight = TALLY.turn_weight(what)
    if not weight and _tracer is None:
        return None
    now = time.perf_counter()
    return TurnTimes(what, arrived or now, now, trace, weight)


class TurnTimes:
    """One turn's phases (perf_counter times), tallied at its end; its span while tracing."""

    __slots__ = ("arrived", "marks", "span", "weight", "what")

    def __init__(self, what: str, arrived: float, started: float, trace: str = "", weight: int = 1) -> None:
        self.what = what  # "Type.method"
        self.weight = weight  # how much its phases count for in the tally (0: not at all)
        self.arrived = arrived
        self.marks: list[tuple[str, float, float]] = [("queue", arrived, started)]
        self.span: Any = None
        if _tracer is not None:
            parent = _parent(trace) if trace else None
            self.span = _tracer.start_span("fluentfn.turn", context=parent, start_time=_ns(arrived))

    def describe(self, **attributes: Any) -> None:
        """Attributes of the turn's span (call only when ``span`` is set)."""
        self.span.set_attributes({f"fluentfn.{k}": v for k, v in attributes.items() if v is not None})

    def mark(self, phase: str, t0: float, t1: float) -> None:
        self.marks.append((phase, t0, t1))

    def called(self, address: str, method: str) -> None:
        """An outgoing call of the turn (an event on its span)."""
        if self.span is not None:
            self.span.add_event("fluentfn.call", {"address": address, "method": method})

    def end(self, outcome: str) -> None:
        """The turn is over (``outcome``: ok, error, replayed, ...): tally its phases, end its span."""
        marks = self.marks
        if outcome != "replayed" and self.weight:
            TALLY.observe_spans(self.what, marks, self.weight)
        span = self.span
        if span is None:
            return
        for phase, t0, t1 in marks:  # events, not child spans: a fifth of the cost, the same story
            span.add_event(f"fluentfn.{phase}", {"duration_ms": round((t1 - t0) * 1000, 4)}, timestamp=_ns(t0))
        span.set_attribute("fluentfn.outcome", outcome)
        if outcome not in ("ok", "replayed"):
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end(end_time=_ns(time.perf_counter()))
