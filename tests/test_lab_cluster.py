"""The nemesis on a real cluster: faults set from the driver reach every host, so a call
between two identities across a partition ends in CallTimeout, and heals; a driver's
duplicated calls run once (request-id records); and with no faults set the routers have
no tap at all."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fluentfn as ff
from fluentfn import lab
from fluentfn.transport import _caller

from .apps import LabNode

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def clean_faults(cluster: ff.Cluster) -> Iterator[ff.Cluster]:
    yield cluster
    lab.clear_faults()


def test_a_partition_between_identities_times_calls_out_until_healed(clean_faults: ff.Cluster) -> None:
    assert LabNode["a"].ask("b") == "answered"
    lab.partition(["LabNode/a"], ["LabNode/b"])
    assert LabNode["a"].ask("b") == "timeout"  # a's host applies it to a's message
    assert LabNode["c"].ask("b") == "answered"  # c is in no group
    assert LabNode["a"].get() == 0  # the driver ("client") is in no group either
    lab.heal()
    assert LabNode["a"].ask("b") == "answered"


def test_duplicated_calls_from_the_driver_run_once(clean_faults: ff.Cluster) -> None:
    lab.seed_faults(11)
    lab.duplicate(1.0, between=("client", "LabNode"))
    for _ in range(5):
        LabNode["dup"].add(1)
    for _ in range(5):
        LabNode["dup"].add.tell(1)
    lab.clear_faults()
    assert LabNode["dup"].add(0) == 10  # every message arrived twice; each ran once


def test_a_partition_from_the_driver_ends_its_calls_with_call_timeout(clean_faults: ff.Cluster) -> None:
    lab.partition(["client"], ["LabNode/far"])
    with pytest.raises(ff.CallTimeout):
        LabNode["far"].get.with_timeout(0.5)()
    lab.heal()
    assert LabNode["far"].get() == 0


def test_a_tell_no_host_took_by_its_deadline_is_counted(clean_faults: ff.Cluster) -> None:
    """Its sender returned at once, so there is no one to raise to: it is logged and
    counted in ``ff.stats()``, never dropped in silence."""
    before = ff.stats()["tells_undelivered"]
    lab.partition(["client"], ["LabNode/unreached"])
    LabNode["unreached"].add.with_timeout(0.5).tell(1)
    until = time.monotonic() + 60
    while ff.stats()["tells_undelivered"] == before and time.monotonic() < until:
        time.sleep(0.1)
    assert ff.stats()["tells_undelivered"] == before + 1
    lab.heal()
    assert LabNode["unreached"].get() == 0  # it never ran


def test_no_faults_no_tap(clean_faults: ff.Cluster) -> None:
    lab.loss(0.0)
    assert _caller._tap is not None
    lab.clear_faults()
    assert _caller._tap is None and not lab.faults().active


def test_recorded_messages_name_sender_receiver_and_fault_and_draw(clean_faults: ff.Cluster, tmp_path: Path) -> None:
    run = tmp_path / "run"
    lab.record(run)
    assert LabNode["r1"].ask("r2") == "answered"
    lab.partition(["LabNode/r1"], ["LabNode/r2"])
    assert LabNode["r1"].ask("r2") == "timeout"
    lab.heal()
    LabNode["r2"].add.tell(1)
    assert LabNode["r2"].get() == 1  # the tell has left (and run) before recording stops
    lab.stop_recording()
    msgs = lab.messages(run)
    assert (run / "messages.jsonl").exists() and len(list(run.glob("messages-*.jsonl"))) >= 2  # driver and host
    pairs = [(m["kind"], m["from"], m["to"], m["method"], m["fault"]) for m in msgs]
    assert ("call", "client", "LabNode/r1", "ask", None) in pairs
    assert ("call", "LabNode/r1", "LabNode/r2", "get", None) in pairs  # recorded by r1's host
    assert ("call", "LabNode/r1", "LabNode/r2", "get", "lost") in pairs
    assert ("tell", "client", "LabNode/r2", "add", None) in pairs
    assert any(m["kind"] == "reply" and m["from"] == "LabNode/r2" and m["to"] == "LabNode/r1" for m in msgs)
    assert [m["time"] for m in msgs] == sorted(m["time"] for m in msgs)
    done = subprocess.run([sys.executable, "-m", "fluentfn.cli", "lab", "diagram", str(run)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (run / "diagram.png").stat().st_size > 1000 and (run / "diagram.svg").stat().st_size > 1000


def test_own_hosts_kill_and_pause_hit_one_node_only(clean_faults: ff.Cluster) -> None:
    a, b = lab.own_hosts("LabNode", 2, prefix="own-")
    assert lab._hosts.host_info(f"LabNode/{a}")["pid"] != lab._hosts.host_info(f"LabNode/{b}")["pid"]
    assert LabNode[a].add(5) == 5 and LabNode[b].add(7) == 7  # persist="call": both durable
    paused = lab.pause(f"LabNode/{a}", 60.0)
    try:
        with pytest.raises(ff.CallTimeout):
            LabNode[a].get.with_timeout(0.5)()
        assert LabNode[b].get() == 7  # b's host runs on
    finally:
        assert lab.resume() == [paused]
    assert LabNode[a].get.with_timeout(30.0)() == 5  # and a answers again, with its state
    killed = lab.kill(f"LabNode/{b}")
    assert LabNode[b].get.with_timeout(60.0)() == 7  # restarted by Ray, its state from the store
    assert lab._hosts.host_info(f"LabNode/{b}")["pid"] != killed
    assert lab._hosts.host_info(f"LabNode/{a}")["pid"] == paused  # a was not touched
    with pytest.raises(ff.FluentError):
        lab.pause(f"LabNode/{a}", -1)
    with pytest.raises(ff.NotFound):
        lab.kill("no-such-host")
