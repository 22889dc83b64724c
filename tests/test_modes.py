"""The same application code in stateful and FaaS mode: same results, different costs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import fluentfn as ff

from . import scenario
from .apps import Counter, DurableCounter, sleepy

MODES = [pytest.param(None, id="stateful"), pytest.param("faas", id="faas")]


@ff.actor(name="GpuModel", num_gpus=1, shards=1)
class GpuModel:
    def predict(self, x: int) -> int:
        return x


@ff.actor(name="Slow", shards=1)
class Slow:
    def nap(self, s: float) -> float:
        time.sleep(s)
        return s


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cluster", MODES, indirect=True)
@pytest.mark.parametrize("name", sorted(scenario.EXPECTED))
def test_same_results_in_both_modes(cluster: ff.Cluster, name: str) -> None:
    tag = f"{name}-{cluster.mode}"
    assert getattr(scenario, name)(tag) == scenario.EXPECTED[name]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cluster", [pytest.param("faas", id="faas")], indirect=True)
class TestFaas:
    def test_concurrent_increments_lose_nothing(self, cluster: ff.Cluster) -> None:
        ref = DurableCounter["faas-hot"]
        errors: list[BaseException] = []

        def worker() -> None:
            for _ in range(30):
                try:
                    ref.add(1)
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and ref.get() == 180

    def test_lifetime_cap(self, cluster: ff.Cluster) -> None:
        with pytest.raises(ff.FunctionTimeout):
            Slow["s"].nap(8.0)  # the fixture's profile caps invocations at 5 s
        with pytest.raises(ff.FunctionTimeout):
            sleepy(3.0)  # the function's own cap (1 s) is lower still
        assert Slow["s"].nap(0.01) == 0.01
        # killed invocations leave no request or result rows behind in the store
        url = cluster.runtime.config["store"]  # type: ignore[attr-defined]
        assert url.startswith("sqlite:///")
        with sqlite3.connect(url[len("sqlite:///") :]) as db:
            left = db.execute("SELECT key FROM kv WHERE key LIKE 'msg:%' OR key LIKE 'res:%'").fetchall()
        assert left == []

    def test_gpu_types_are_refused(self, cluster: ff.Cluster) -> None:
        with pytest.raises(ff.FluentError, match="GPU"):
            GpuModel["m"].predict(1)

    def test_state_and_messages_travel_through_storage(self, cluster: ff.Cluster) -> None:
        before = ff.stats()
        Counter["faas-stats"].add(1)
        after = ff.stats()
        assert after["messages_via_storage"] - before["messages_via_storage"] >= 2  # request and result
        assert after["storage_reads"] > before["storage_reads"]
        assert after["storage_writes"] > before["storage_writes"]
        assert after["direct_messages"] == before["direct_messages"] == 0

    def test_context_says_faas(self, cluster: ff.Cluster) -> None:
        assert Counter["faas-ctx"].where()["mode"] == "faas"


@pytest.mark.timeout(120)
def test_warm_stateful_calls_touch_no_storage(cluster: ff.Cluster) -> None:
    ref = Counter["warm"]
    ref.add(1)
    before = ff.stats()
    for _ in range(10):
        ref.get()
    after = ff.stats()
    assert after["storage_reads"] == before["storage_reads"]
    assert after["storage_writes"] == before["storage_writes"]
    assert after["messages_via_storage"] == before["messages_via_storage"]
    assert after["direct_messages"] - before["direct_messages"] >= 10


@pytest.mark.timeout(180)
def test_cold_start_gives_every_invocation_a_fresh_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os
        import fluentfn as ff

        @ff.actor(name="Pid")
        class Pid:
            def pid(self):
                return os.getpid()

        with ff.init(mode="faas", num_cpus=1):
            pids = [Pid["x"].pid() for _ in range(4)]
            print(len(set(pids)), ff.stats()["cold_starts"])
        """
    )
    path = tmp_path / "cold.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["FLUENTFN_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=150, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["4", "4"]


@pytest.mark.timeout(180)
def test_store_and_token_come_from_the_environment(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import fluentfn as ff

        @ff.actor(name="EnvCounter")
        class EnvCounter:
            def __init__(self):
                self.n = 0
            def add(self):
                self.n += 1
                return self.n

        with ff.init(num_cpus=1) as cluster:
            print(cluster.token, cluster.runtime.config["store"], EnvCounter["x"].add())
        """
    )
    path = tmp_path / "env.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(FLUENTFN_HOME=str(tmp_path / "home"), FLUENTFN_TOKEN="from-env-token")
    env["FLUENTFN_STORE"] = f"sqlite:///{tmp_path}/env-store.db"
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=150, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["from-env-token", f"sqlite:///{tmp_path}/env-store.db", "1"]
    assert (tmp_path / "env-store.db").exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cluster", MODES, indirect=True)
def test_keys_and_delete(cluster: ff.Cluster) -> None:
    tag = f"kd-{cluster.mode}-"
    for k in ("a", "b", "c"):
        DurableCounter[tag + k].add(5)
    assert DurableCounter.keys(prefix=tag) == [tag + "a", tag + "b", tag + "c"]
    assert DurableCounter.keys(prefix=tag, limit=2) == [tag + "a", tag + "b"]
    DurableCounter.delete(tag + "b")
    assert DurableCounter.keys(prefix=tag) == [tag + "a", tag + "c"]
    assert DurableCounter[tag + "b"].add(1) == 1  # starts afresh: __init__ runs again
    assert DurableCounter[tag + "a"].add(1) == 6
    with pytest.raises(ff.InvalidRequest):
        DurableCounter.keys(limit=-1)


@ff.actor(name="Ticker", shards=1)
class Ticker:
    def __init__(self) -> None:
        self.ticks = 0

    def start(self, period_s: float) -> str:
        return ff.context().every(period_s, "tick", 1)

    def tick(self, k: int) -> None:
        self.ticks += k

    def pending(self) -> list[dict[str, object]]:
        return ff.context().reminders()

    def stop(self, rid: str) -> bool:
        return ff.context().cancel(rid)

    def count(self) -> int:
        return self.ticks


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cluster", MODES, indirect=True)
def test_periodic_reminders_fire_until_cancelled(cluster: ff.Cluster) -> None:
    from fluentfn.testing import wait_for

    ref = Ticker[f"t-{cluster.mode}"]
    rid = ref.start(0.3)
    pending = ref.pending()
    assert [(p["id"], p["method"], p["period_s"]) for p in pending] == [(rid, "tick", 0.3)]
    wait_for(lambda: ref.count() >= 3, timeout=60)
    assert ref.stop(rid) is True and ref.pending() == []
    time.sleep(1.0)  # a firing already under way may still land
    settled = ref.count()
    time.sleep(1.2)
    assert ref.count() == settled  # cancelled: no more ticks
    with pytest.raises(ff.InvalidRequest):
        Ticker[f"t-{cluster.mode}"].start(0.0)
