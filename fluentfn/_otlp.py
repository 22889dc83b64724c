"""A small OTLP/gRPC trace receiver (OpenTelemetry's own ``TraceService``): what a test, or
a researcher without a collector, points ``ff.init(tracing=...)`` at to see the spans."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

__all__ = ["OtlpReceiver"]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else str(v)


class OtlpReceiver:
    """Receives spans on 127.0.0.1 (an ephemeral port): ``endpoint`` to export to,
    ``spans`` (dicts: trace_id, span_id, parent_id, name, service, attributes, events,
    start_ns, end_ns). Use as a context manager."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self._lock = threading.Lock()
        self._spans: list[dict[str, Any]] = []
        receiver = self

        class _Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                receiver._take(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(), self._server)  # type: ignore[no-untyped-call]
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def _take(self, request: Any) -> None:
        got = []
        for rs in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    got.append({
                        "trace_id": sp.trace_id.hex(), "span_id": sp.span_id.hex(),
                        "parent_id": sp.parent_span_id.hex(), "name": sp.name,
                        "service": resource.get("service.name", ""),
                        "attributes": {kv.key: _value(kv.value) for kv in sp.attributes},
                        "events": [{"name": e.name, "time_ns": e.time_unix_nano,
                                    "attributes": {kv.key: _value(kv.value) for kv in e.attributes}}
                                   for e in sp.events],
                        "start_ns": sp.start_time_unix_nano, "end_ns": sp.end_time_unix_nano,
                        "error": sp.status.code == 2,
                    })  # fmt: skip
        with self._lock:
            self._spans.extend(got)

    @property
    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, predicate: Any, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """The spans, once ``predicate(spans)`` holds (TimeoutError after ``timeout_s``)."""
        end = time.monotonic() + timeout_s
        while True:
            spans = self.spans
            if predicate(spans):
                return spans
            if time.monotonic() > end:
                raise TimeoutError(f"spans did not arrive in {timeout_s:g} s ({len(spans)} so far)")
            time.sleep(0.1)

    def close(self) -> None:
        self._server.stop(0.5)

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
