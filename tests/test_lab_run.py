"""Workloads under the nemesis on the shared cluster: each correct one is judged valid,
each broken twin is caught (its planted bug shows within a few seeded runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fluentfn as ff
from fluentfn import lab
from fluentfn.lab._runner import RunOptions, run
from fluentfn.lab._workloads import WORKLOADS

pytestmark = pytest.mark.timeout(300)


BUSY = {"txn", "txn_broken"}  # transactions must meet to show an anomaly: more clients


def _run(name: str, tmp_path: Path, seed: int, nemesis: tuple[str, ...]) -> dict[str, object]:
    busy = name in BUSY
    opts = RunOptions(nodes=4, rate=50 if busy else 25, time_limit_s=4.0, concurrency=8 if busy else 4,
                      nemesis=nemesis, nemesis_interval_s=1.0, seed=seed, out=tmp_path / f"{name}-{seed}",
                      latency_ms=10.0)  # fmt: skip
    try:
        return run(WORKLOADS[name](), opts)
    finally:
        lab.clear_faults()
        lab.stop_recording()


@pytest.mark.parametrize("name", ["unique_ids", "g_counter", "lin_kv", "broadcast", "kafka", "txn"])
def test_a_correct_workload_is_valid_under_partitions(cluster: ff.Cluster, tmp_path: Path, name: str) -> None:
    results = _run(name, tmp_path, seed=1, nemesis=("partition",))
    assert results["valid"] is True, results
    assert results["ok"] > 0 and results["msgs_per_op"] >= 1.0  # type: ignore[operator]  # any rate: a busy machine
    out = tmp_path / f"{name}-1"
    assert json.loads((out / "results.json").read_text())["valid"] is True
    assert (out / "history.jsonl").stat().st_size > 0 and (out / "messages.jsonl").stat().st_size > 0
    assert all((out / png).stat().st_size > 5000 for png in ("latency-raw.png", "rate.png"))
    cost = results["cost"]
    assert results["mode"] == "stateful" and isinstance(cost, dict) and cost["usd"] > 0  # the hosts' VM time
    if name == "broadcast":
        stable = results["stable_latency_ms"]
        assert isinstance(stable, dict) and stable["max"] > 0


@pytest.mark.parametrize("name", ["g_counter", "lin_kv", "kafka"])
def test_a_correct_workload_is_valid_under_kills_and_pauses(cluster: ff.Cluster, tmp_path: Path, name: str) -> None:
    results = _run(name, tmp_path, seed=1, nemesis=("kill", "pause", "partition"))  # kill, pause, partition
    assert results["valid"] is True, results
    hit = [r for r in results["nemesis"] if r["kind"] in ("kill", "pause")]  # type: ignore[attr-defined]
    assert hit and all("pid" in r or "error" in r for r in hit), results["nemesis"]
    assert len({lab._hosts.host_info(f"{WORKLOADS[name]().type_name}/{n}")["host_id"] for n in results["nodes"]}) == 4


@pytest.mark.parametrize(
    ("name", "nemesis"),
    [
        ("unique_ids_broken", ()),
        ("lin_kv_broken", ()),
        ("g_counter_broken", ("partition",)),
        ("broadcast_broken", ("partition",)),
        ("kafka_broken", ("kill",)),
        ("txn_broken", ("partition",)),
    ],
)
def test_a_broken_workload_is_caught(cluster: ff.Cluster, tmp_path: Path, name: str, nemesis: tuple[str, ...]) -> None:
    verdicts = []
    for seed in range(1, 6):  # a bug that needs a fault may need a few seeds (fewer ops on a busy machine)
        results = _run(name, tmp_path, seed, nemesis)
        verdicts.append(results["valid"])
        if results["valid"] is False:
            return
    raise AssertionError(f"{name}'s planted bug went unnoticed in five runs: {verdicts}")
