"""Prometheus metrics of a host: a collector over the engine's counters (no cost per call
beyond the per-method tallies the engine keeps anyway), served over HTTP."""

from __future__ import annotations

import functools
import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..transport._tls import TlsConfig

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_bucket = functools.partial(bisect_left, BUCKETS)  # a duration's bucket


@dataclass(slots=True)
class MethodStats:
    """Calls, errors and a latency histogram of one (type, method)."""

    calls: int = 0
    errors: int = 0
    total_s: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))


class MethodTally:
    """Per-method stats of one host, safe to update from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stats: dict[tuple[str, str], MethodStats] = {}
        self._by_what: dict[str, MethodStats] = {}  # the same entries by "Type.method" (no key tuple per turn)

    def observe(self, what: str, type_name: str, method: str, seconds: float, failed: bool) -> None:
        """One turn of ``what`` ("``type_name``.``method``") ended after ``seconds``."""
        entry = self._by_what.get(what) or self._add(what, type_name, method)
        with self._lock:  # one turn's outcome, counted in place (once per turn)
            entry.calls += 1
            entry.errors += failed
            entry.total_s += seconds
            entry.buckets[bisect_left(BUCKETS, seconds)] += 1

    def observe_many(self, what: str, type_name: str, method: str, seconds: list[float], errors: int) -> None:
        """Turns of ``what`` that ended after ``seconds`` each, ``errors`` of them failed:
        as ``observe`` for each, under one lock (a batch's turns)."""
        entry = self._by_what.get(what) or self._add(what, type_name, method)
        buckets = entry.buckets
        landed = Counter(map(_bucket, seconds))  # each turn's bucket, in C: no bytecode per turn
        with self._lock:
            entry.calls += len(seconds)
            entry.errors += errors
            entry.total_s += sum(seconds)
            for i, n in landed.items():
                buckets[i] += n

    def _add(self, what: str, type_name: str, method: str) -> MethodStats:
        """The entry of a method's first turn here (another thread's, if it made one first)."""
        with self._lock:
            entry = self.stats.setdefault((type_name, method), MethodStats())
            self._by_what[what] = entry
        return entry

    def snapshot(self) -> dict[tuple[str, str], MethodStats]:
        with self._lock:
            return {k: MethodStats(v.calls, v.errors, v.total_s, list(v.buckets)) for k, v in self.stats.items()}


class Measured(Protocol):
    """What a host's metrics are read from (a ``PartitionSet``)."""

    group: str
    host_id: str

    @property
    def live_identities(self) -> int: ...

    @property
    def methods(self) -> Tallied: ...

    def totals(self) -> dict[str, int]: ...


class Tallied(Protocol):
    def snapshot(self) -> dict[tuple[str, str], MethodStats]: ...


class HostCollector:
    """Exposes a host's figures (a ``PartitionSet``: summed over its partitions) as
    Prometheus metric families."""

    def __init__(self, engine: Measured) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        e = self._engine
        counters = e.totals()
        labels = ["group", "host"]
        where = [e.group, e.host_id]
        live = GaugeMetricFamily("fluentfn_live_identities", "Identities active in this host", labels=labels)
        live.add_metric(where, e.live_identities)
        yield live
        for name in (
            "activations",
            "passivations",
            "direct_messages",
            "local_calls",
            "overdue_turns",
            "malformed_requests",
        ):
            family = CounterMetricFamily(f"fluentfn_{name}", f"{name.replace('_', ' ')} in this host", labels=labels)
            family.add_metric(where, counters[name])
            yield family
        ops = CounterMetricFamily("fluentfn_store_operations", "State store operations", labels=[*labels, "op"])
        nbytes = CounterMetricFamily("fluentfn_store_bytes", "State store bytes moved", labels=[*labels, "op"])
        ops.add_metric([*where, "read"], counters["storage_reads"])
        ops.add_metric([*where, "write"], counters["storage_writes"])
        nbytes.add_metric([*where, "read"], counters["storage_bytes_read"])
        nbytes.add_metric([*where, "write"], counters["storage_bytes_written"])
        yield ops
        yield nbytes
        calls = CounterMetricFamily("fluentfn_calls", "Method calls run", labels=["type", "method"])
        errors = CounterMetricFamily("fluentfn_call_errors", "Method calls that raised", labels=["type", "method"])
        latency = HistogramMetricFamily("fluentfn_call_seconds", "Method run time", labels=["type", "method"])
        for (type_name, method), s in sorted(e.methods.snapshot().items()):
            calls.add_metric([type_name, method], s.calls)
            errors.add_metric([type_name, method], s.errors)
            cumulative, running = [], 0
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], s.buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([type_name, method], cumulative, s.total_s)
        yield calls
        yield errors
        yield latency
        yield phase_family()


def phase_family() -> Any:
    """This process's turn phases (``_phases``) as one histogram per type, method and phase."""
    from prometheus_client.core import HistogramMetricFamily

    from .._phases import PREFIX, TALLY, bucket_upper

    family = HistogramMetricFamily(
        "fluentfn_call_phase_seconds",
        "Where calls spend their time: queue, load, run, write (turns) and call (callers' round trips)",
        labels=["type", "method", "phase"],
    )
    hists: dict[tuple[str, str], dict[str, int]] = {}
    for k, v in TALLY.counters().items():
        what, phase, field = k[1:].split(PREFIX)
        hists.setdefault((what, phase), {})[field] = v
    for (what, phase), h in sorted(hists.items()):
        type_name, _, method = what.partition(".")
        counts = [0] * (len(BUCKETS) + 1)
        for field, c in h.items():
            if field.isdigit():
                counts[bisect_left(BUCKETS, bucket_upper(int(field)) * 0.999)] += c
        cumulative, running = [], 0
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
            running += count
            cumulative.append((bound, running))
        family.add_metric([type_name, method, phase], cumulative, h.get("s", 0) / 1e6)
    return family


def serve_metrics(engine: Measured, bind: str, token: str, tls: TlsConfig | None = None) -> int:
    """Serve ``engine``'s metrics on ``bind`` (an ephemeral port); returns the port.

    Scrapes must carry the cluster token (``Authorization: Bearer <token>``), whatever
    address the host binds: type and method names are not for anyone who can connect.
    In a TLS cluster the endpoint is HTTPS with the cluster's certificate (and asks for a
    client certificate when the cluster does): the token never crosses the network in clear.
    """
    import hmac
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app

    registry = CollectorRegistry()
    registry.register(HostCollector(engine))
    metrics_app = make_wsgi_app(registry)
    expected = f"Bearer {token}".encode()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        presented = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if not hmac.compare_digest(presented, expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"missing or invalid cluster token\n"]
        return metrics_app(environ, start_response)

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
            pass

    server = make_server(bind, 0, app, server_class=_Server, handler_class=_Quiet)
    if tls is not None:
        server.socket = tls.ssl_server_context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="fluentfn-metrics", daemon=True).start()
    return int(server.server_port)
