"""Durable state, crash recovery, exactly-once effects, single activation, reminders.

Every test runs on SQLite and on a real Redis server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest
import ray

import fluentfn as ff
from fluentfn.placement import shard_for
from fluentfn.testing import host_of, kill_host, wait_for
from fluentfn.wire import codec
from fluentfn.wire._gen import actorhost_pb2 as pb
from fluentfn.wire._gen import actorhost_pb2_grpc as pb_grpc

from .apps import DurableCounter, IdleCounter, IntervalCounter, MemoryCounter

STORES = [pytest.param(None, id="sqlite"), pytest.param("redis", id="redis")]
pytestmark = [pytest.mark.parametrize("cluster", STORES, indirect=True), pytest.mark.timeout(300)]


def test_host_killed_mid_stream_loses_and_duplicates_nothing(cluster: ff.Cluster) -> None:
    keys = [f"kill-{i}" for i in range(4)]
    n = 120
    acked: dict[str, list[int]] = {k: [] for k in keys}
    errors: list[BaseException] = []

    def worker(key: str) -> None:
        ref = DurableCounter[key]
        for _ in range(n):
            try:
                acked[key].append(ref.add(1))
            except ff.FluentError as exc:  # not acknowledged: allowed, but recorded
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    time.sleep(0.3)
    killed = {kill_host(cluster, DurableCounter[keys[0]])}
    time.sleep(1.0)
    other = next(k for k in keys if host_of(cluster, DurableCounter[k])["pid"] not in killed)
    killed.add(kill_host(cluster, DurableCounter[other]))
    for t in threads:
        t.join(240)
    assert not errors, errors[:3]
    for key in keys:
        # Each acknowledged add saw exactly the value before it plus one: none lost, none twice.
        assert acked[key] == list(range(1, n + 1)), key
        assert DurableCounter[key].get() == n
    assert len(killed) == 2


def test_persist_modes_across_a_host_death(cluster: ff.Cluster) -> None:
    DurableCounter["modes"].add(5)
    IntervalCounter["modes"].add(5)
    MemoryCounter["modes"].add(5)
    time.sleep(1.6)  # the write-behind flush runs every second
    for ref in (DurableCounter["modes"], IntervalCounter["modes"], MemoryCounter["modes"]):
        kill_host(cluster, ref)
    assert DurableCounter["modes"].add(1) == 6
    assert IntervalCounter["modes"].add(1) == 6
    assert MemoryCounter["modes"].add(1) == 1  # persist="never": memory only


def test_same_request_id_is_applied_once(cluster: ff.Cluster) -> None:
    stub = pb_grpc.ActorHostStub(grpc.insecure_channel(cluster.gateway))
    md = (("authorization", f"Bearer {cluster.token}"),)
    call = pb.Call(
        type_name="DCounter", key="dedupe", method="add", args=codec.encode_args((7,), {}), request_id="fixed-id-1"
    )
    first = stub.Invoke(call, metadata=md, timeout=30)
    kill_host(cluster, DurableCounter["dedupe"])  # the retry even lands on a new process
    call.attempt = 1  # a retry says so: the host then consults its recorded replies
    second = stub.Invoke(call, metadata=md, timeout=60)
    assert codec.decode(first.value) == codec.decode(second.value) == 7
    assert DurableCounter["dedupe"].get() == 7


def test_single_activation_when_a_shard_moves(cluster: ff.Cluster) -> None:
    ref = DurableCounter["moving"]
    ref.add(3)
    old = host_of(cluster, ref)
    info = ray.get(cluster.directory.lookup.remote("DCounter"))
    shard = shard_for(ref.key, info.shards)
    new_route = ray.get(cluster.directory.move_shard.remote(info.group, shard))
    assert new_route.endpoint != old["endpoint"] and new_route.epoch > old["epoch"]
    # The old host process is still alive, but it may no longer serve the shard.
    stub = pb_grpc.ActorHostStub(grpc.insecure_channel(old["endpoint"]))
    md = (("authorization", f"Bearer {cluster.token}"),)
    call = pb.Call(
        type_name="DCounter", key="moving", method="add", args=codec.encode_args((1,), {}), request_id="stale-1"
    )

    def refused() -> bool:
        try:
            stub.Invoke(call, metadata=md, timeout=10)
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        return False

    wait_for(refused, timeout=10)
    assert ref.add(1) == 4  # the caller is redirected to the new owner, state intact
    os.kill(int(old["pid"]), 0)  # and the old process really is still alive


def test_idle_passivation_restores_state_without_rerunning_init(cluster: ff.Cluster) -> None:
    ref = IdleCounter["idle"]
    assert ref.add(1) == (1, 1, 1)
    time.sleep(1.2)
    n, inits, activations = ref.add(1)
    assert (n, inits) == (2, 1) and activations == 2


def test_reminders_fire_after_a_restart_and_can_be_cancelled(cluster: ff.Cluster) -> None:
    ref = DurableCounter["reminders"]
    ref.remind(1.0, "late")
    rid = ref.remind(1.5, "cancelled")
    assert ref.cancel(rid) is True
    assert ref.cancel(rid) is False
    kill_host(cluster, ref)  # the reminder is in the store, not in the dead process
    wait_for(lambda: ref.info()["rings"] == ["late"], timeout=30)
    time.sleep(1.0)
    assert ref.info()["rings"] == ["late"]


def test_whole_cluster_restart_sees_state(cluster: ff.Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    param = request.node.callspec.params["cluster"]
    url = request.getfixturevalue("redis_url").replace("/0", "/1") if param == "redis" else f"sqlite:///{tmp_path}/r.db"
    script = textwrap.dedent(
        f"""
        import sys
        import fluentfn as ff

        @ff.actor(name="Restarted")
        class Restarted:
            def __init__(self):
                self.n = 0
            def add(self, k):
                self.n += k
                return self.n

        with ff.init(store={url!r}, namespace="restart-test", num_cpus=1):
            print(Restarted["x"].add(int(sys.argv[1])))
        """
    )
    path = tmp_path / "restart.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["FLUENTFN_HOME"] = str(tmp_path / "home")
    outs = []
    for k in ("5", "1"):
        out = subprocess.run([sys.executable, str(path), k], capture_output=True, text=True, timeout=180, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        outs.append(out.stdout.strip().splitlines()[-1])
    assert outs == ["5", "6"]
