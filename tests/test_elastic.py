"""Elasticity on a real cluster: live partition moves, scaling, autoscaling, scale to zero."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import ray

import fluentfn as ff
from fluentfn.testing import host_of, kill_host, wait_for

pytestmark = pytest.mark.timeout(240)


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int = 1) -> int:
        self.n += k
        return self.n

    def get(self) -> int:
        return self.n

    def nap(self, seconds: float) -> int:
        time.sleep(seconds)
        self.n += 1
        return self.n


Elastic = ff.actor(name="EElastic", partitions=16, max_hosts=4)(_Counter)
Remembered = ff.actor(name="ERemembered", partitions=8, max_hosts=3, persist="never")(_Counter)
Behind = ff.actor(name="EBehind", partitions=8, max_hosts=3, persist="interval")(_Counter)
Loaded = ff.actor(
    name="ELoaded",
    partitions=12,
    min_hosts=1,
    max_hosts=3,
    num_cpus=0.1,
    autoscale=ff.Autoscale(target_inflight=4, up_after_s=0.5, down_after_s=2.0),
)(_Counter)
Gpu = ff.actor(
    name="EGpu",
    partitions=2,
    min_hosts=0,
    max_hosts=1,
    num_gpus=2,
    autoscale=ff.Autoscale(target_inflight=1, up_after_s=0.0, down_after_s=1.0),
)(_Counter)
OtherGpu = ff.actor(name="EOtherGpu", shards=1, num_gpus=2)(_Counter)


class Load:
    """``threads`` callers adding 1 to ``keys`` in turn until stopped; counts acknowledged
    calls per key and keeps every error."""

    def __init__(self, call: Any, keys: list[str], threads: int) -> None:
        self.acked: dict[str, int] = dict.fromkeys(keys, 0)
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call = call
        self._keys = keys
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, start: int) -> None:
        i = start * 7
        while not self._stop.is_set():
            key = self._keys[i % len(self._keys)]
            i += 1
            try:
                self._call(key)
            except BaseException as exc:
                with self._lock:
                    self.errors.append(exc)
                continue
            with self._lock:
                self.acked[key] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.acked.values())


def wait_calls(load: Load, more: int) -> None:
    target = load.total + more
    wait_for(lambda: load.total >= target, timeout=60)


def covers(placement: dict[str, list[int]], partitions: int) -> bool:
    owned = sorted(p for ps in placement.values() for p in ps)
    return owned == list(range(partitions))


def test_scale_out_and_back_while_four_threads_call(cluster: ff.Cluster) -> None:
    keys = [f"id-{i}" for i in range(48)]
    with Load(lambda k: Elastic[k].add(1), keys, threads=4) as load:
        wait_calls(load, 200)
        placed = cluster.scale(Elastic, 3)
        assert len(placed) == 3 and covers(placed, 16)
        assert sorted(len(ps) for ps in placed.values()) == [5, 5, 6]
        assert cluster.placement(Elastic) == placed
        wait_calls(load, 200)
        placed = cluster.scale(Elastic, 1)
        assert len(placed) == 1 and covers(placed, 16)
        wait_calls(load, 200)
    assert not load.errors, load.errors[:3]
    assert {k: Elastic[k].get() for k in keys} == load.acked  # every acknowledged call exactly once
    pauses = ray.get(cluster.directory.move_pauses.remote("EElastic"))
    assert len(pauses) >= 16  # every moved partition was timed
    holds = ray.get(cluster.directory.move_holds.remote("EElastic"))
    parts = ray.get(cluster.directory.move_phases.remote("EElastic"))
    assert len(parts) == len(holds) == len(pauses)
    for whole, part in zip(holds, parts, strict=True):  # each part within its move
        assert min(part.values()) >= 0 and sum(part.values()) <= whole + 0.001, (whole, part)


@pytest.mark.parametrize("kind", [Remembered, Behind], ids=["never", "interval"])
def test_memory_and_write_behind_state_move_with_the_partition(cluster: ff.Cluster, kind: ff.ActorType) -> None:
    keys = [f"m-{i}" for i in range(20)]
    assert [kind[k].add(3) for k in keys] == [3] * 20
    cluster.scale(kind, 3)
    assert [kind[k].add(1) for k in keys] == [4] * 20  # handed over, or written and read back
    cluster.scale(kind, 1)
    assert [kind[k].get() for k in keys] == [4] * 20


def test_status_shows_partitions_per_host(cluster: ff.Cluster) -> None:
    Elastic["status"].add(1)
    cluster.scale(Elastic, 2)
    with ff.Client(cluster.gateway, token=cluster.token) as client:
        reply = client.status()
    mine = [h for h in reply.hosts if h.group == "EElastic"]
    assert sorted(len(h.partitions) for h in mine) == [8, 8]
    assert sorted(p for h in mine for p in h.partitions) == list(range(16))
    route = next(t for t in reply.types if t.type_name == "EElastic")
    assert (route.shards, route.hosts, route.min_hosts, route.max_hosts) == (16, 2, 1, 4)
    cluster.scale(Elastic, 1)


def test_a_move_during_a_host_kill_loses_no_acknowledged_call(cluster: ff.Cluster) -> None:
    keys = [f"kill-{i}" for i in range(24)]
    cluster.scale(Elastic, 2)
    with Load(lambda k: Elastic[k].add(1), keys, threads=3) as load:
        wait_calls(load, 100)
        victim = host_of(cluster, Elastic[keys[0]])
        mover = threading.Thread(target=cluster.scale, args=(Elastic, 3))
        mover.start()
        kill_host(cluster, Elastic[keys[0]])
        mover.join(120)
        wait_calls(load, 100)
        assert host_of(cluster, Elastic[keys[0]])["pid"] != victim["pid"]
    final = {k: Elastic[k].get() for k in keys}
    # Acknowledged calls are durable and ran once; a call that failed may have run.
    for k in keys:
        assert load.acked[k] <= final[k] <= load.acked[k] + len(load.errors), (k, load.acked[k], final[k])
    assert all(isinstance(e, ff.FluentError) for e in load.errors), load.errors[:3]
    cluster.scale(Elastic, 1)


@pytest.mark.timeout(420)
def test_autoscaling_follows_load_and_comes_back(cluster: ff.Cluster) -> None:
    """Waits are generous: on a busy machine a new host takes long to start."""
    assert Loaded["warm"].add(1) == 1
    assert len(cluster.placement(Loaded)) == 1
    keys = [f"busy-{i}" for i in range(32)]
    with Load(lambda k: Loaded[k].nap(0.02), keys, threads=16) as load:
        wait_for(lambda: len(cluster.placement(Loaded)) >= 2, timeout=180)
        wait_calls(load, 50)
    assert not load.errors, load.errors[:3]
    wait_for(lambda: len(cluster.placement(Loaded)) == 1, timeout=180)  # back to min_hosts when idle
    assert covers(cluster.placement(Loaded), 12)
    assert {k: Loaded[k].get() for k in keys} == load.acked


def test_an_idle_gpu_type_scales_to_zero_and_frees_its_gpus(cluster: ff.Cluster) -> None:
    wait_for(lambda: ray.available_resources().get("GPU", 0) >= 2, timeout=30)
    assert Gpu["g"].add(5) == 5
    assert ray.available_resources().get("GPU", 0) < 2  # held by its host
    wait_for(lambda: cluster.placement(Gpu) == {}, timeout=60)
    wait_for(lambda: ray.available_resources().get("GPU", 0) >= 2, timeout=30)
    assert OtherGpu["o"].add(1) == 1  # another type can take the GPUs now
    cluster.stop_hosts(OtherGpu)
    assert Gpu["g"].add(1) == 6  # a cold start, state from the store
    wait_for(lambda: cluster.placement(Gpu) == {}, timeout=60)


def test_bad_elastic_options_and_scale_requests(cluster: ff.Cluster) -> None:
    class Plain:
        pass

    for options in (
        {"min_hosts": 3, "max_hosts": 2},
        {"partitions": 4, "max_hosts": 8},
        {"partitions": 0},
        {"min_hosts": -1},
        {"shards": 2, "min_hosts": 1},
        {"autoscale": "fast"},
    ):
        with pytest.raises(ff.FluentError):
            ff.actor(name="EBad", **options)(Plain)
    with pytest.raises(ff.FluentError):
        ff.Autoscale(target_inflight=0)
    with pytest.raises(ff.FluentError):
        ff.Autoscale(up_after_s=-1)
    with pytest.raises(ff.FluentError, match="max_hosts"):
        cluster.scale(Elastic, 5)
    with pytest.raises(ff.FluentError):
        cluster.scale(Elastic, -1)
    with pytest.raises(ff.NotFound):
        cluster.scale("NoSuchType", 2)
    with pytest.raises(ff.NotFound):
        cluster.placement("NoSuchType")
    assert covers(cluster.placement(Elastic), 16)  # nothing moved


Scarce = ff.actor(name="EScarce", partitions=4, max_hosts=3, num_gpus=1)(_Counter)


def test_a_host_that_cannot_be_placed_leaves_the_type_as_it_was(cluster: ff.Cluster) -> None:
    wait_for(lambda: ray.available_resources().get("GPU", 0) >= 2, timeout=30)
    assert Scarce["s"].add(2) == 2
    before = cluster.placement(Scarce)
    with pytest.raises(ff.FluentError, match="could not be placed"):
        cluster.scale(Scarce, 3)  # three hosts of one GPU each; the cluster has two
    assert cluster.placement(Scarce) == before  # nothing moved, nothing lost
    with ff.Client(cluster.gateway, token=cluster.token) as client:
        route = next(t for t in client.status().types if t.type_name == "EScarce")
    assert "could not be placed" in route.placement_problem and route.hosts == 1
    assert Scarce["s"].add(1) == 3
    cluster.stop_hosts(Scarce)
    wait_for(lambda: ray.available_resources().get("GPU", 0) >= 2, timeout=30)
