"""The lab's faults on the FaaS baseline: the same partition, duplication and recording as
in stateful mode, on the invocations the platform runs (between identities and from the
driver), and a kill that ends a busy execution environment mid-invocation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fluentfn as ff
from fluentfn import lab
from fluentfn.lab._runner import RunOptions, run
from fluentfn.lab._workloads import WORKLOADS

from .apps import FaasLabNode

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.parametrize("cluster", [pytest.param("faas", id="faas")], indirect=True),
]


@pytest.fixture
def clean_faults(cluster: ff.Cluster) -> Iterator[ff.Cluster]:
    yield cluster
    lab.clear_faults()
    lab.stop_recording()


def test_a_partition_between_invocations_times_calls_out_until_healed(clean_faults: ff.Cluster, tmp_path: Path) -> None:
    assert FaasLabNode["a"].ask("b") == "answered"
    lab.record(tmp_path)
    lab.partition(["FaasLabNode/a"], ["FaasLabNode/b"])
    assert FaasLabNode["a"].ask("b") == "timeout"  # the environment running a's turn took the faults
    assert FaasLabNode["c"].ask("b") == "answered"
    with pytest.raises(ff.CallTimeout):  # the driver in a group of its own: its call is lost
        lab.partition(["client"], ["FaasLabNode/a"])
        FaasLabNode["a"].get.with_timeout(0.5)()
    lab.heal()
    assert FaasLabNode["a"].ask("b") == "answered"
    lab.stop_recording()
    pairs = {(m["kind"], m["from"], m["to"], m["fault"]) for m in lab.messages(tmp_path)}
    assert ("call", "FaasLabNode/a", "FaasLabNode/b", "lost") in pairs
    assert ("call", "client", "FaasLabNode/a", None) in pairs


def test_duplicated_invocations_run_once(clean_faults: ff.Cluster) -> None:
    lab.seed_faults(5)
    lab.duplicate(1.0)
    assert [FaasLabNode["dup"].add(1) for _ in range(5)] == [1, 2, 3, 4, 5]  # each delivered twice, run once
    lab.clear_faults()
    assert FaasLabNode["dup"].get() == 5


def test_kill_ends_a_busy_environment_mid_invocation(clean_faults: ff.Cluster) -> None:
    assert FaasLabNode["k"].slow(0.0) == "done"
    running = FaasLabNode["k"].slow.future(15.0)  # under the fixture's 20 s cap
    deadline = time.monotonic() + 60
    while not any(e["running"] == "FaasLabNode/k" for e in lab._hosts._faas().processes()):
        assert time.monotonic() < deadline, "the platform never ran it"
        time.sleep(0.05)
    pid = lab.kill("FaasLabNode/k")  # the environment running it, not the idle one that ran slow(0)
    with pytest.raises(ff.Unavailable, match="environment died"):
        running.result(timeout=120)
    assert pid > 0 and FaasLabNode["k"].slow(0.0) == "done"  # a new environment serves it
    with pytest.raises(ff.FluentError, match="FaaS mode has no hosts"):
        lab.kill("some-host-id")


def test_a_workload_on_the_faas_baseline_is_valid_under_partitions_and_kills(clean_faults: ff.Cluster,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    opts = RunOptions(nodes=3, rate=15, time_limit_s=4.0, concurrency=3, nemesis=("partition", "kill"),
                      nemesis_interval_s=1.0, seed=3, out=tmp_path)  # fmt: skip
    results = run(WORKLOADS["kafka"](), opts)
    assert results["valid"] is True, results
    kinds = [n["kind"] for n in results["nemesis"]]  # type: ignore[attr-defined]
    assert results["ok"] > 0 and kinds[:2] == ["partition", "kill"], kinds  # seed 3's first two rounds
    cost = results["cost"]
    assert results["mode"] == "faas" and isinstance(cost, dict)
    assert cost["used"]["invocations"] >= results["ok"] and cost["usd"] > 0  # type: ignore[operator]
