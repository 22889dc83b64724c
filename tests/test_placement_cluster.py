"""Placement on the shared cluster (2 CPUs, 2 logical GPUs): co-location, GPUs, resources."""

from __future__ import annotations

import pytest

import fluentfn as ff
from fluentfn.placement import missing_resources
from fluentfn.testing import hosts

pytestmark = pytest.mark.timeout(180)


class _Partition:
    def __init__(self) -> None:
        self.rows: list[int] = []

    def load(self, rows: list[int]) -> int:
        self.rows = rows
        return len(rows)

    def total(self) -> int:
        return sum(self.rows)


Partition = ff.actor(name="PPartition", shards=2)(_Partition)


class _Cache:
    def summed(self) -> tuple[int, str]:
        key = ff.context().key
        return Partition[key].total(), ff.context().node_id


Cache = ff.actor(name="PCache", colocate_with=Partition)(_Cache)


class _Target:
    def __init__(self) -> None:
        self.kept: list[int] = []

    def kinds(self, *args: object, **kwargs: object) -> list[list[str]]:
        """Each argument's type and repr, as this turn got it."""
        return [[type(a).__name__, repr(a)] for a in (*args, *kwargs.values())]

    def keep(self, rows: list[int]) -> int:
        rows.append(99)  # changes the argument it got: never the caller's list
        self.kept = rows
        return len(rows)


Target = ff.actor(name="PArgTarget", colocate_with=Partition, persist="never")(_Target)


class _Sender:
    def send(self, key: str) -> dict[str, object]:
        target = Target[key]
        target.kinds()  # activates it: the calls below find it live and run in this thread
        seen = target.kinds(b"b", "s", 7, 1.5, True, None, low=-(1 << 63), word="w")
        rows = [1, 2]
        kept = target.keep(rows)
        try:
            target.kinds(1 << 64)  # too big for the wire: refused in-process too
            refused = ""
        except ff.InvalidRequest as exc:
            refused = str(exc)
        return {"seen": seen, "rows": rows, "kept": kept, "refused": refused}


Sender = ff.actor(name="PArgSender", colocate_with=Partition, persist="never")(_Sender)


class _Gpu:
    def ids(self) -> list[int]:
        return list(ff.context().gpu_ids)


WholeGpu = ff.actor(name="PWholeGpu", shards=2, num_gpus=1)(_Gpu)
HalfGpu = ff.actor(name="PHalfGpu", shards=4, num_gpus=0.5)(_Gpu)
TooBig = ff.actor(name="PTooBig", shards=1, num_gpus=4)(_Gpu)
Exotic = ff.actor(name="PExotic", shards=1, resources={"tpu_pod": 1})(_Gpu)


def _keys(n_shards: int) -> list[str]:
    from fluentfn.placement import shard_for

    found: dict[int, str] = {}
    i = 0
    while len(found) < n_shards:
        found.setdefault(shard_for(f"k{i}", n_shards), f"k{i}")
        i += 1
    return [found[s] for s in range(n_shards)]


def test_colocated_types_call_in_process(cluster: ff.Cluster) -> None:
    keys = _keys(2)
    loaded = Partition.bulk("load", {k: ([1, 2, 3, int(k[1:])],) for k in keys})
    assert loaded == {k: 4 for k in keys}
    before = ff.stats()
    results = [Cache[k].summed() for k in keys]
    after = ff.stats()
    assert [r[0] for r in results] == [6 + int(k[1:]) for k in keys]
    assert after["local_calls"] - before["local_calls"] >= 2  # Cache -> Partition stayed in-process
    assert after["direct_messages"] - before["direct_messages"] == 2  # only driver -> Cache crossed the network
    groups = {h["group"]: set(h["types"]) for h in hosts(cluster)}
    assert {"PPartition", "PCache"} <= groups["PPartition"] and "PCache" not in groups


def test_a_co_located_call_gets_its_arguments_as_a_call_across_the_network_would(cluster: ff.Cluster) -> None:
    before = ff.stats()
    got = Sender["a1"].send("a1")  # one key: the same partition, on the same host
    assert got["seen"] == [
        ["bytes", "b'b'"], ["str", "'s'"], ["int", "7"], ["float", "1.5"], ["bool", "True"], ["NoneType", "None"],
        ["int", str(-(1 << 63))], ["str", "'w'"],
    ]  # fmt: skip
    assert got["rows"] == [1, 2] and got["kept"] == 3  # the callee changed its own copy
    assert got["refused"] == "Integer value out of range", got  # the codec's refusal, as from a driver
    assert ff.stats()["local_calls"] - before["local_calls"] >= 3  # the live callee ran in the caller's thread
    assert Target["a1"].kinds(b"b", 7) == [["bytes", "b'b'"], ["int", "7"]]  # from the driver: the same


def _two_gpus() -> None:
    import ray

    if ray.cluster_resources().get("GPU") != 2:
        pytest.skip("these checks assume the test cluster's two logical GPUs")


def test_whole_gpus_are_exclusive(cluster: ff.Cluster) -> None:
    _two_gpus()
    ids = [WholeGpu[k].ids() for k in _keys(2)]
    assert all(len(i) == 1 for i in ids) and ids[0] != ids[1]
    assert cluster.stop_hosts(WholeGpu) == 2  # give the GPUs back for the next test


def test_half_gpus_are_shared(cluster: ff.Cluster) -> None:
    _two_gpus()
    ids = [tuple(HalfGpu[k].ids()) for k in _keys(4)]
    assert all(len(i) == 1 for i in ids)
    assert sorted(set(ids)) == [(0,), (1,)]  # four shards on two GPUs, two each
    assert cluster.stop_hosts(HalfGpu) == 4


def test_unsatisfiable_resources_fail_clearly(cluster: ff.Cluster) -> None:
    with pytest.raises(ff.FluentError, match=r"actor type .*TooBig.* cannot be placed .*GPU: needs 4"):
        TooBig["x"].ids()
    with pytest.raises(ff.FluentError, match="tpu_pod"):
        Exotic["x"].ids()


def test_missing_resources_is_pure() -> None:
    nodes = [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0}]
    assert missing_resources({"CPU": 4}, nodes) is None
    assert missing_resources({"CPU": 4, "GPU": 1}, nodes) == "no single node has all of CPU=4, GPU=1"
    assert "GPU: needs 2" in (missing_resources({"GPU": 2}, nodes) or "")
