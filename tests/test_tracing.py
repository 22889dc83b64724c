"""Traces across identities (OpenTelemetry, OTLP/gRPC) and the per-call time breakdown."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fluentfn as ff
from fluentfn import _phases, _tracing
from fluentfn._otlp import OtlpReceiver

CHAIN = textwrap.dedent(
    """
    import json, sys
    import fluentfn as ff

    @ff.actor
    class Hop:
        def chain(self, path: list) -> list:
            me = ff.context().key
            if not path:
                assert len(ff.context().trace_id) == 32  # the turn knows its trace
                return [me]
            return [me] + Hop[path[0]].chain(path[1:])

    url = sys.argv[1]
    for mode in ("stateful", "faas"):
        extra = {"faas": ff.FaasProfile(cold_start=False, max_duration_s=60)} if mode == "faas" else {}
        with ff.init(mode=mode, tracing=url, namespace="traced-" + mode, **extra):
            path = Hop["a"].chain(["b", "a"])
            print(json.dumps({"mode": mode, "path": path, "breakdown": ff.stats(breakdown=True)["breakdown"]}))
    """
)


# -- the phase tally, without a cluster -----------------------------------------------------------


def test_the_tally_sums_through_counters_and_gives_quantiles() -> None:
    a, b = _phases.PhaseTally(), _phases.PhaseTally()
    a.observe("T.m", [("queue", 0.001), ("run", 0.010)])
    for _ in range(99):
        b.observe("T.m", [("queue", 0.001), ("run", 0.002), ("write", 0.001)])
    b.observe("T.m", [("call", 0.02)])
    summed: dict[str, int] = {}
    for counters in (a.counters(), b.counters(), {"calls": 7}):
        for k, v in counters.items():
            summed[k] = summed.get(k, 0) + v
    plain, phases = _phases.split_counters(summed)
    assert plain == {"calls": 7}
    got = _phases.breakdown(phases)["T.m"]
    assert got["calls"] == 100
    assert got["run_ms"]["count"] == 100
    assert 2.0 <= got["run_ms"]["p50"] <= 2.4  # within a bucket (20%) above the true value
    assert 2.0 <= got["run_ms"]["p99"] <= 2.4  # the 99th of 100 is a 2 ms one
    assert 10.0 <= _phases.breakdown(a.counters())["T.m"]["run_ms"]["p99"] <= 12.0
    assert got["run_ms"]["mean"] == pytest.approx((0.010 + 99 * 0.002) * 1000 / 100, rel=0.01)
    assert got["write_ms"]["count"] == 99
    # the caller's mean wait (20 ms, one call) less the turns' phases per turn
    assert got["network_ms"]["mean"] == pytest.approx(20 - (0.001 * 100 + 0.208 + 0.099) * 1000 / 100, abs=0.05)
    assert b.drain() and not b.counters()  # a FaaS invocation reports its own and starts again


def test_bucket_bounds_cover_the_value() -> None:
    for seconds in (1e-7, 3e-6, 0.0123, 1.5, 600.0):
        i = _phases.bucket_of(seconds)
        assert seconds <= _phases.bucket_upper(i) * 1.0000001
        assert i == 0 or seconds > _phases.bucket_upper(i - 1)


def test_with_tracing_off_nothing_of_opentelemetry_is_paid() -> None:
    times = _tracing.TurnTimes("T.m", 1.0, 1.5, trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert times.span is None and _tracing.parent_for(times) == ""
    code = "import fluentfn, sys; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    for bad in ("", "garbage", "00-zz-11-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"):
        assert _tracing._parent(bad) is None


def test_tracing_takes_an_endpoint_url() -> None:
    with pytest.raises(ff.FluentError, match="OTLP/gRPC endpoint"):
        ff.init(tracing="localhost:4317")


# -- the breakdown on the shared cluster ------------------------------------------------------------


@ff.actor
class Timed:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


def test_stats_break_down_where_calls_spend_their_time(cluster: ff.Cluster) -> None:
    for _ in range(20):
        Timed["t"].bump()
    plain = ff.stats()
    assert "breakdown" not in plain and all(isinstance(v, int) for v in plain.values())
    got = ff.stats(breakdown=True)["breakdown"]["Timed.bump"]
    assert got["calls"] >= 20 and got["call_ms"]["count"] >= 20
    for phase in ("queue_ms", "load_ms", "run_ms", "write_ms", "network_ms"):
        assert phase in got, got
    assert got["run_ms"]["p50"] <= got["call_ms"]["p50"]
    assert got["write_ms"]["count"] >= 20  # persist="call": every turn that changed state wrote


# -- one trace per call chain, in both modes ---------------------------------------------------------


@pytest.mark.timeout(420)
def test_a_chain_of_calls_is_one_trace_in_both_modes(tmp_path: Path) -> None:
    script = tmp_path / "chain.py"
    script.write_text(CHAIN)
    env = dict(os.environ, FLUENTFN_HOME=str(tmp_path / "home"), OTEL_SERVICE_NAME="")
    env.pop("OTEL_SERVICE_NAME")
    with OtlpReceiver() as receiver:
        run = subprocess.run(
            [sys.executable, str(script), receiver.endpoint], env=env, capture_output=True, text=True, timeout=400
        )
        assert run.returncode == 0, run.stderr[-4000:]
        results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        assert [r["mode"] for r in results] == ["stateful", "faas"]
        for r in results:
            assert r["path"] == ["a", "b", "a"]
            assert {"queue_ms", "run_ms", "call_ms"} <= set(r["breakdown"]["Hop.chain"])
        assert "init_ms" in results[1]["breakdown"]["Hop.chain"]  # FaaS: the request's read and the code's load

        def chains(spans: list[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
            by_mode: dict[str, list[dict[str, object]]] = {}
            for s in spans:
                if s["name"] == "fluentfn.turn":
                    by_mode.setdefault(str(s["attributes"]["fluentfn.mode"]), []).append(s)
            return by_mode

        spans = receiver.wait_for(lambda s: all(len(chains(s).get(m, [])) >= 3 for m in ("stateful", "faas")), 120)
    for mode, turns in chains(spans).items():
        assert len({t["trace_id"] for t in turns}) == 1, f"{mode}: one call chain, one trace"
        by_id = {t["span_id"]: t for t in turns}
        roots = [t for t in turns if not t["parent_id"]]
        assert len(roots) == 1 and roots[0]["attributes"]["fluentfn.address"] == "Hop/a"
        order = [roots[0]]
        while len(order) < 3:
            children = [t for t in turns if t["parent_id"] == order[-1]["span_id"]]
            assert len(children) == 1, f"{mode}: each turn's call is a child of it"
            order.append(children[0])
        assert [t["attributes"]["fluentfn.address"] for t in order] == ["Hop/a", "Hop/b", "Hop/a"]
        assert all(t["attributes"]["fluentfn.mode"] == mode for t in order)
        assert all(t["parent_id"] in by_id or t is roots[0] for t in order)
        phases = {e["name"] for t in order for e in t["events"] if "duration_ms" in e["attributes"]}
        assert {"fluentfn.queue", "fluentfn.run"} <= phases, phases
        assert [e["name"] for e in order[0]["events"]].count("fluentfn.call") == 1  # Hop/a called Hop/b
        if mode == "stateful":
            assert {"fluentfn.load", "fluentfn.write"} <= phases
            assert roots[0]["attributes"]["fluentfn.persist"] == "call"
        else:
            assert {"fluentfn.init", "fluentfn.load", "fluentfn.write"} <= phases


def test_log_records_inside_a_turn_carry_its_ids() -> None:
    from fluentfn._context import CURRENT, Context
    from fluentfn._turnlogs import install_log_context

    install_log_context()
    factory = logging.getLogRecordFactory()
    outside = factory("x", logging.INFO, __file__, 1, "m", (), None)
    assert outside.request_id == "" and outside.trace_id == ""  # type: ignore[attr-defined]
    token = CURRENT.set(Context(address="T/k", request_id="r1"))
    try:
        inside = factory("x", logging.INFO, __file__, 1, "m", (), None)
    finally:
        CURRENT.reset(token)
    assert inside.request_id == "r1"  # type: ignore[attr-defined]


# -- cost and compare ---------------------------------------------------------------------------------


def test_cost_prices_the_hosts_time_and_storage(cluster: ff.Cluster) -> None:
    Timed["c"].bump()
    first = ff.cost()
    assert first["mode"] == "stateful" and first["used"]["host_seconds"] > 0
    assert first["usd"] == pytest.approx(sum(first["items_usd"].values()), abs=1e-7)
    Timed["c"].bump()
    later = cluster.cost()
    assert later["used"]["host_seconds"] >= first["used"]["host_seconds"]
    assert later["used"]["storage_writes"] > first["used"]["storage_writes"]
    assert later["usd"] >= first["usd"] > 0


def test_the_price_of_faas_usage_is_requests_compute_and_storage() -> None:
    from fluentfn import _prices

    p = _prices.prices()
    used = {"invocations": 1000, "billed_ms": 100_000, "object_writes": 10, "calls": 1000}
    got = _prices.usage_cost("faas", used, p)
    gb_s = 100 * p["lambda_memory_mb"] / 1024
    assert got["items_usd"]["compute"] == pytest.approx(gb_s * p["lambda_gb_s"], abs=1e-8)
    assert got["items_usd"]["requests"] == pytest.approx(1000 * p["lambda_request"], abs=1e-8)
    assert got["used"]["gb_seconds"] == pytest.approx(gb_s, rel=1e-3)


ONE_MODE = textwrap.dedent(
    """
    import fluentfn as ff

    @ff.actor
    class Tally:
        def __init__(self):
            self.n = 0
        def add(self, k: int) -> int:
            self.n += k
            return self.n

    with ff.init(namespace="compare-me"):
        for i in range(30):
            Tally["t"].add(1)
        assert Tally["t"].add(0) == 30
    """
)


@pytest.mark.timeout(420)
def test_compare_runs_a_one_mode_program_in_both_modes(tmp_path: Path) -> None:
    script = tmp_path / "one_mode.py"
    script.write_text(ONE_MODE)
    table = tmp_path / "table.json"
    env = dict(os.environ, FLUENTFN_HOME=str(tmp_path / "home"))
    run = subprocess.run(
        [sys.executable, "-m", "fluentfn.cli", "compare", str(script), "--out", str(table)],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    rows = {r["mode"]: r for r in json.loads(table.read_text())}
    assert set(rows) == {"stateful", "faas"}
    for r in rows.values():
        assert r["calls"] >= 31 and r["call_p50_ms"] > 0 and r["usd"] > 0
    assert rows["faas"]["storage_ops"] > rows["stateful"]["storage_ops"]  # state and messages through storage
    assert "stateful" in run.stdout and "faas" in run.stdout


def test_compare_refuses_a_missing_program(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "fluentfn.cli", "compare", str(tmp_path / "nope.py")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2 and "no such program" in run.stderr


def test_the_paper_benchmark_breaks_a_call_down_by_phase(tmp_path: Path) -> None:
    from fluentfn.bench import paper

    by_method = {
        "A.m": {"run_ms": {"mean": 2.0, "count": 10}, "queue_ms": {"mean": 1.0, "count": 10},
                "load_ms": {"mean": 5.0, "count": 2}, "call_ms": {"mean": 6.0, "count": 10},
                "network_ms": {"mean": 2.0}},
        "B.n": {"run_ms": {"mean": 4.0, "count": 10}, "write_ms": {"mean": 1.0, "count": 10}},
    }  # fmt: skip
    got = paper.per_call(by_method)
    assert got["run"] == pytest.approx(3.0) and got["queue"] == pytest.approx(0.5)
    assert got["load"] == pytest.approx(0.5) and got["write"] == pytest.approx(0.5)
    assert got["network"] == pytest.approx(2.0) and got["init"] == 0.0
    paper.BREAKDOWN.update({"stateful": got, "faas": {**got, "queue": 50.0}})
    try:
        paper.plot_breakdown(tmp_path / "b.png")
    finally:
        paper.BREAKDOWN.clear()
    assert (tmp_path / "b.png").stat().st_size > 10_000


@pytest.mark.parametrize("bad", [-1, 65, 1.5, True])
def test_prestarted_is_a_small_count(bad: object) -> None:
    with pytest.raises(ff.FluentError, match="prestarted"):
        ff.FaasProfile(prestarted=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 101, 1.5, True, "2"])
def test_async_retries_is_a_small_count(bad: object) -> None:
    with pytest.raises(ff.FluentError, match="async_retries"):
        ff.FaasProfile(async_retries=bad)  # type: ignore[arg-type]
    with pytest.raises(ff.FluentError, match="async_retry_delay_s"):
        ff.FaasProfile(async_retry_delay_s=-0.5)


def test_the_paper_preset_has_lambdas_cold_start_overhead() -> None:
    assert ff.FaasProfile.paper().cold_start_overhead_ms > 0
    assert ff.FaasProfile().cold_start_overhead_ms == 0  # emulation off by default
    with pytest.raises(ff.FluentError):
        ff.FaasProfile(cold_start_overhead_ms=-1)


def test_a_hot_method_is_sampled_and_its_counts_stay_unbiased() -> None:
    tally = _phases.PhaseTally()
    n = _phases.EXACT + 80 * _phases.EVERY
    timed = 0
    for _ in range(n):
        weight = tally.turn_weight("H.m")
        if weight:
            timed += 1
            tally.observe("H.m", [("run", 0.001)], weight)
    assert timed == _phases.EXACT + 80  # the first EXACT all, then one in EVERY
    got = _phases.breakdown(tally.counters())["H.m"]
    assert got["calls"] == n and got["run_ms"]["count"] == n
    assert got["run_ms"]["mean"] == pytest.approx(1.0, rel=0.01)
    assert tally.call_weight("H.m") == 1  # callers' calls are counted on their own
