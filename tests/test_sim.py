"""Sim mode: the real modes' semantics (one turn at a time, reentry along a chain,
deadlines, rollback, request-id de-duplication, persist modes across a crash, reminders
and timers) on virtual time, in one process, and the same seed giving the same run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fluentfn as ff
from fluentfn import lab
from fluentfn.lab._runner import RunOptions, run
from fluentfn.lab._workloads import WORKLOADS
from fluentfn.sim import Simulation
from fluentfn.sim._clock import real_monotonic
from fluentfn.testing import sim as sim_cluster

pytestmark = pytest.mark.timeout(120)


@ff.actor(name="SimBox")
class SimBox:
    def __init__(self) -> None:
        self.n = 0
        self.log: list[str] = []
        self.activations = 0

    def on_activate(self) -> None:
        self.activations += 1

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def get(self) -> int:
        return self.n

    def slow(self, tag: str, seconds: float) -> list[str]:
        self.log.append(f"start {tag}")
        time.sleep(seconds)  # the virtual clock: other turns of other identities run meanwhile
        self.log.append(f"end {tag}")
        return self.log

    def boom(self) -> None:
        self.n = 999
        raise ValueError("no")

    def ping_back(self, other: str) -> int:
        return SimBox[other].call_back(ff.context().key or "") + 1

    def call_back(self, origin: str) -> int:
        return SimBox[origin].get()  # reentry: origin waits on this very chain

    def tick(self) -> int:
        self.n += 1
        return self.n

    def heartbeat(self, period: float) -> None:
        ff.context().every(period, "tick")

    def soon(self) -> None:
        ff.context().after(5.0, "tick")

    def clock(self) -> float:
        return time.time()

    async def gather(self, others: list[str]) -> int:
        values = await asyncio.gather(*(SimBox[o].get.aio() for o in others))
        await asyncio.sleep(10)
        return sum(values)


@ff.actor(name="SimNever", persist="never")
class SimNever(SimBox.cls):  # type: ignore[misc, name-defined]
    pass


@ff.actor(name="SimInterval", persist="interval")
class SimInterval(SimBox.cls):  # type: ignore[misc, name-defined]
    pass


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with sim_cluster(seed=7) as s:
        yield s


def test_calls_tells_and_futures_run_on_virtual_time(sim: Simulation) -> None:
    assert SimBox["a"].add(2) == 2 and SimBox["a"].get() == 2
    SimBox["a"].add.tell(3)
    sim.run_for(1.0)
    assert SimBox["a"].get() == 5
    assert SimBox["a"].add.future(1).result() == 6
    t0 = sim.now
    assert SimBox["g"].gather(["a", "b"]) == 6  # async turn: gather, then asyncio.sleep(10) virtual
    assert 10.0 <= sim.now - t0 < 11.0
    assert abs(SimBox["a"].clock() - time.time()) < 0.1 and time.time() > 1.7e9  # the actor's clock is the sim's


def test_one_turn_at_a_time_per_identity_and_reentry_along_a_chain(sim: Simulation) -> None:
    futures = [SimBox["s"].slow.future(t, 1.0) for t in ("x", "y", "z")]
    log = max((f.result() for f in futures), key=len)
    pairs = [(log[i], log[i + 1]) for i in range(0, len(log), 2)]
    assert len(log) == 6 and all(
        a == f"start {b.split()[1]}" and b.startswith("end") for a, b in pairs
    )  # never interleaved
    assert {a.split()[1] for a, _ in pairs} == {"x", "y", "z"}
    assert SimBox["p"].ping_back("q") == 1  # p -> q -> p: admitted, not deadlocked


def test_a_deadline_ends_the_wait_and_a_queued_turn_past_it_never_runs(sim: Simulation) -> None:
    busy = SimBox["d"].slow.future("long", 5.0)
    sim.run_for(0.5)  # it runs now
    with pytest.raises(ff.CallTimeout):
        SimBox["d"].slow.with_timeout(1.0)("late", 0.0)  # queued behind 5 s of work: withdrawn
    assert busy.result() == ["start long", "end long"]
    sim.run_for(10)
    assert SimBox["d"].slow("after", 0.0) == ["start long", "end long", "start after", "end after"]


def test_a_turn_that_raises_is_rolled_back(sim: Simulation) -> None:
    SimBox["r"].add(1)
    with pytest.raises(ValueError, match="no"):
        SimBox["r"].boom()
    assert SimBox["r"].get() == 1


def test_duplicated_messages_run_once(sim: Simulation) -> None:
    lab.seed_faults(3)
    lab.duplicate(1.0)
    assert [SimBox["dup"].add(1) for _ in range(5)] == [1, 2, 3, 4, 5]
    lab.clear_faults()
    sim.run_for(1)
    assert SimBox["dup"].get() == 5


def test_a_partition_times_calls_out_until_healed(sim: Simulation) -> None:
    SimBox["pa"].add(1)
    lab.partition(["client"], ["SimBox/pa"])
    with pytest.raises(ff.CallTimeout):
        SimBox["pa"].get.with_timeout(2.0)()
    lab.heal()
    assert SimBox["pa"].get() == 1


def test_a_crash_keeps_what_each_persist_mode_promises(sim: Simulation) -> None:
    SimBox["c"].add(5)
    SimNever["c"].add(5)
    SimInterval["c"].add(5)
    sim.run_for(2.0)  # the interval identity's write is flushed
    SimInterval["c"].add(1)  # ... this one is not yet
    for t in ("SimBox/c", "SimNever/c", "SimInterval/c"):
        assert sim.crash(t) >= 1
    assert SimBox["c"].get() == 5  # persist="call": every acknowledged turn
    assert SimNever["c"].get() == 0  # persist="never": memory only
    assert SimInterval["c"].get() == 5  # persist="interval": up to the last flush
    waiting = SimBox["w"].slow.future("mid", 30.0)
    sim.run_for(1.0)
    sim.crash("SimBox/w")
    with pytest.raises(ff.Unavailable, match="crashed"):
        waiting.result()


def test_reminders_and_timers_an_hour_in_well_under_a_minute(sim: Simulation) -> None:
    SimBox["hb"].heartbeat(60.0)
    started = real_monotonic()
    sim.run_for(3600.0)
    assert SimBox["hb"].get() == 60
    assert real_monotonic() - started < 30  # virtual time: no waiting
    SimBox["t"].soon()
    sim.run_until(lambda: SimBox["t"].get.with_timeout(1.0)() == 1, timeout_s=10)
    with pytest.raises(ff.CallTimeout):
        sim.run_until(lambda: False, timeout_s=5)


def test_passivation_writes_and_reactivates(sim: Simulation) -> None:
    SimBox["pv"].add(4)
    sim.passivate(SimBox["pv"])
    assert SimBox["pv"].get() == 4
    assert sim.stats()["live_identities"] >= 1


def test_bad_input_gets_a_clear_error(sim: Simulation) -> None:
    with pytest.raises(ff.InvalidRequest):
        SimBox["x"].add(1, 2, 3)
    with pytest.raises(ff.NotFound):
        ff.ref("NoSuchType/x").get()
    with pytest.raises(ff.NotFound, match="no method 'nope'"):
        SimBox["x"].nope.tell()  # a tell is checked where it is made: no reply would carry it
    with pytest.raises(ff.InvalidRequest):
        SimBox["x"].add.tell(1, 2, 3)
    with pytest.raises(ff.FluentError):
        sim.run_for(-1)
    with pytest.raises(ff.FluentError, match="already initialised"):
        ff.init(mode="sim", seed=1)


def _lab_run(name: str, seed: int, out: Path, nemesis: tuple[str, ...] = ("partition", "kill")) -> dict[str, object]:
    with sim_cluster(seed=seed):
        opts = RunOptions(nodes=4, rate=20, time_limit_s=8.0, concurrency=4, nemesis=nemesis,
                          nemesis_interval_s=1.0, seed=seed, out=out, latency_ms=5.0)  # fmt: skip
        return run(WORKLOADS[name](), opts)


def test_the_same_seed_gives_the_same_history_and_messages_byte_for_byte(tmp_path: Path) -> None:
    a = _lab_run("g_counter", 11, tmp_path / "a")
    b = _lab_run("g_counter", 11, tmp_path / "b")
    _lab_run("g_counter", 12, tmp_path / "c")
    assert a["valid"] is True and a["mode"] == "sim" and a["ops"] == b["ops"]
    for name in ("history.jsonl", "messages.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "messages.jsonl").read_bytes() != (tmp_path / "c" / "messages.jsonl").read_bytes()


@pytest.mark.parametrize("name", ["unique_ids", "g_counter", "lin_kv", "kafka", "txn"])
def test_each_correct_workload_passes_and_agrees_with_its_verdict_in_stateful_mode(name: str, tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        results = _lab_run(name, seed, tmp_path / str(seed))
        assert results["valid"] is True, (seed, results["checker"])


def test_broadcast_passes_under_partitions(tmp_path: Path) -> None:
    results = _lab_run("broadcast", 1, tmp_path, nemesis=("partition",))
    assert results["valid"] is True and results["msgs_per_op"] is not None


@pytest.mark.parametrize(
    ("name", "nemesis"),
    [("unique_ids_broken", ()), ("lin_kv_broken", ()), ("g_counter_broken", ("partition",)),
     ("broadcast_broken", ("partition",)), ("kafka_broken", ("kill",)), ("txn_broken", ("partition",))],
)  # fmt: skip
def test_each_broken_twin_is_caught_and_its_seed_replays(name: str, nemesis: tuple[str, ...], tmp_path: Path) -> None:
    for seed in range(1, 21):
        results = _lab_run(name, seed, tmp_path / f"{seed}", nemesis)
        if results["valid"] is False:
            again = _lab_run(name, seed, tmp_path / f"{seed}-again", nemesis)
            assert again["valid"] is False and again["checker"] == results["checker"]
            first = (tmp_path / f"{seed}" / "history.jsonl").read_bytes()
            assert first == (tmp_path / f"{seed}-again" / "history.jsonl").read_bytes()
            return
    raise AssertionError(f"{name}'s planted bug went unnoticed in 20 seeds")


def _sim_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluentfn.cli", "lab", "sim", *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_the_lab_sim_command_finds_a_broken_seed_shrinks_it_and_replays_it(tmp_path: Path) -> None:
    found = _sim_cli("lin_kv_broken", "--seeds", "3", "--time-limit", "4", "--nemesis", "partition")
    assert found.returncode == 1, found.stderr
    summary = json.loads(found.stdout.splitlines()[-1])
    assert summary["failed"] >= 1 and summary["shortest"]["ops"] > 0 and summary["turns_per_s"] > 0
    seed = str(summary["shortest"]["seed"])
    for out in ("a", "b"):
        again = _sim_cli("lin_kv_broken", "--replay", seed, "--time-limit", "4", "--nemesis", "partition",
                         "--out", str(tmp_path / out))  # fmt: skip
        assert again.returncode == 1 and json.loads(again.stdout.splitlines()[-1])["valid"] is False
    for name in ("history.jsonl", "messages.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "diagram.png").exists() and (tmp_path / "a" / "latency-raw.png").exists()
    assert _sim_cli("lin_kv", "--seeds", "3", "--time-limit", "4").returncode == 0
    bad = _sim_cli("no_such_workload", "--seeds", "3")
    assert bad.returncode == 3 and "unknown workload" in bad.stderr


@pytest.mark.ff_seed(5)
def test_the_pytest_plugin_gives_a_seeded_simulation(ff_sim: Simulation) -> None:
    assert ff_sim.seed == 5 and SimBox["plug"].add(1) == 1
    SimBox["plug"].heartbeat(10.0)
    ff_sim.run_for(100.0)
    assert SimBox["plug"].get() == 11


def test_a_thread_started_inside_a_simulation_is_reported(sim: Simulation) -> None:
    import threading

    from fluentfn.sim import LeftTheSimulation

    with pytest.warns(LeftTheSimulation, match="thread"):
        t = threading.Thread(target=lambda: None)
        t.start()
    t.join()
