"""The cost model of ``fluentfn bench paper``: prices in one dated table, overridable, checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fluentfn as ff
from fluentfn import _prices

pytestmark = pytest.mark.timeout(30)


def test_faas_cost_counts_requests_gb_seconds_and_storage() -> None:
    p = dict(_prices.PRICES, lambda_memory_mb=1024.0)
    used = {"invocations": 1_000_000, "billed_ms": 1_000_000, "object_writes": 1000, "object_reads": 1000}
    used |= {"record_write_units": 1_000_000, "record_read_units": 1_000_000}
    expected = 0.20 + 1000 * p["lambda_gb_s"] + 0.005 + 0.0004 + 0.625 + 0.125
    assert _prices.faas_cost(used, p) == pytest.approx(expected)


def test_stateful_cost_is_vm_time_plus_storage() -> None:
    p = dict(_prices.PRICES, vm_hour=0.10, vms=2.0)
    assert _prices.stateful_cost(3600.0, {"object_writes": 1000}, p) == pytest.approx(0.2 + 0.005)


def test_paper_training_ratio_matches_the_papers_arithmetic() -> None:
    """The paper: 465 min on a 640 MB Lambda ($0.29) against 22 min on an m4.large ($0.04)."""
    p = dict(_prices.PRICES, vm_hour=0.10)
    ratio = _prices.paper_training_ratio(465 * 60, 22 * 60, 0, p)
    assert ratio == pytest.approx(0.29 / 0.0367, rel=0.1)


def test_overrides_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLUENTFN_PRICES", '{"vm_hour": 0.5}')
    assert _prices.prices()["vm_hour"] == 0.5
    file = tmp_path / "prices.json"
    file.write_text(json.dumps({"s3_get": 0.0}))
    monkeypatch.setenv("FLUENTFN_PRICES", str(file))
    assert _prices.prices()["s3_get"] == 0.0
    for bad in ('{"vm_hours": 1}', '{"vm_hour": -1}', "[1]", str(tmp_path / "missing.json")):
        monkeypatch.setenv("FLUENTFN_PRICES", bad)
        with pytest.raises(ff.FluentError, match="FLUENTFN_PRICES"):
            _prices.prices()


def test_the_emulated_store_counts_objects_items_and_request_units(tmp_path: Path) -> None:
    """Messages are objects (S3); records are items (DynamoDB units: 1 KB writes, 4 KB
    reads), except over 400 KB; each kind pays its own latency."""
    from fluentfn._stats import new_counters
    from fluentfn.state import open_store
    from fluentfn.state._emulated import MeteredStore

    counters = new_counters()
    store = MeteredStore(
        open_store(f"sqlite:///{tmp_path / 'state.db'}"), counters, latency_ms=0.0, record_latency_ms=0.0
    )
    store.put("msg:1", b"x" * 1500)
    store.get("msg:1")
    store.save("T/a", expected=0, state=b"s" * 2500, fence=None)
    store.load("T/a")
    store.save("T/big", expected=0, state=b"b" * (500 * 1024), fence=None)
    assert (counters["object_writes"], counters["object_reads"]) == (2, 1)  # the message, and the big record
    assert (counters["record_writes"], counters["record_write_units"]) == (1, 3)  # 2,500 B: 3 write units
    assert (counters["record_reads"], counters["record_read_units"]) == (1, 1)  # one 4 KB read unit
    assert counters["storage_writes"] == 3 and counters["storage_reads"] == 2


def test_a_stores_writes_are_counted_alike_on_every_path(tmp_path: Path) -> None:
    """A turn's write on a host's loop (``nowait``) is counted once written, as a blocking
    one is before; parts and the reply count as bytes written; an emulated store refuses
    ``nowait`` (its delay would block the loop) and counts nothing for it."""
    from fluentfn._stats import new_counters
    from fluentfn.state import open_store
    from fluentfn.state._emulated import MeteredStore
    from fluentfn.state._store import VersionConflict, WouldBlock

    counters = new_counters()
    inner = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    store = MeteredStore(inner, counters)
    inner.claim_shard("g", 0)
    store.save("T/a", expected=0, state=b"s" * 100, fence=("g", 0, 1), parts={})
    store.save("T/a", expected=1, state=b"s" * 1000, fence=("g", 0, 1), reply=("r1", b"x" * 100), parts={}, nowait=True)
    record = inner.load("T/a")
    assert record is not None and (record.version, record.state) == (2, b"s" * 1000)
    store.save("T/p", expected=0, state=b"", fence=("g", 0, 1), parts={"big": b"p" * 3000}, nowait=True)
    assert counters["storage_writes"] == 3 and counters["record_writes"] == 3
    assert counters["storage_bytes_written"] == 100 + 1100 + 3000
    assert counters["record_write_units"] == 1 + 2 + 3  # 100 B, 1,100 B, 3,000 B
    with pytest.raises(VersionConflict):  # a refused write is not counted
        store.save("T/a", expected=1, state=b"old", fence=("g", 0, 1), reply=("r2", b""), parts={}, nowait=True)
    assert counters["storage_writes"] == 3

    emulated = MeteredStore(inner, counters, latency_ms=1.0)
    with pytest.raises(WouldBlock):
        emulated.save("T/a", expected=2, state=b"e", fence=("g", 0, 1), parts={}, nowait=True)
    record = inner.load("T/a")
    assert counters["storage_writes"] == 3 and record is not None and record.version == 2
    emulated.save("T/a", expected=2, state=b"e", fence=("g", 0, 1), parts={})
    assert counters["storage_writes"] == 4 and counters["record_write_units"] == 7
    inner.close()
