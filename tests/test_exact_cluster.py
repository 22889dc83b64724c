"""Exactness on a real cluster: tells survive host kills and partition moves, in every
persist mode that can promise it (issue: no tell lost, no effect doubled)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import fluentfn as ff
from fluentfn.testing import kill_host, wait_for

from .test_elastic import _Counter

pytestmark = pytest.mark.timeout(240)


class _Relay:
    def forward(self, address: str, n: int) -> int:
        target = ff.ref(address)
        for _ in range(n):
            target.add.tell(1)
        return n


Sink = ff.actor(name="XSink", shards=1)(_Counter)
Relay = ff.actor(name="XRelay", shards=1)(_Relay)
Moving = ff.actor(name="XMoving", partitions=8, max_hosts=3)(_Counter)
MovingBehind = ff.actor(name="XMovingBehind", partitions=8, max_hosts=3, persist="interval")(_Counter)


def _get(ref: ff.ActorRef) -> int:
    while True:
        try:
            return int(ref.get())
        except ff.Overloaded:  # its mailbox is full of tells still arriving
            time.sleep(0.05)


def _settles_at(ref: ff.ActorRef, expected: int) -> None:
    wait_for(lambda: _get(ref) >= expected, timeout=90)
    time.sleep(0.5)  # a duplicate would land meanwhile
    assert _get(ref) == expected


def test_tells_from_a_driver_reach_a_restarted_host(cluster: ff.Cluster) -> None:
    ref = Sink["driver-tells"]
    assert ref.add(0) == 0  # the driver has a route and a stream to the host
    kill_host(cluster, ref)
    for _ in range(20):
        ref.add.tell(1)  # nothing but tells: no blocking call repairs the route for them
    _settles_at(ref, 20)


def test_tells_between_hosts_reach_a_restarted_host(cluster: ff.Cluster) -> None:
    ref = Sink["relayed-tells"]
    relay = Relay["r"]
    assert relay.forward(ref.address, 1) == 1  # the relay's host has a stream to the sink's
    _settles_at(ref, 1)
    kill_host(cluster, ref)
    assert relay.forward(ref.address, 20) == 20
    _settles_at(ref, 21)


@pytest.mark.parametrize("kind", [Moving, MovingBehind], ids=["call", "interval"])
def test_tells_meeting_partition_moves_arrive_once(cluster: ff.Cluster, kind: ff.ActorType) -> None:
    keys = [f"t-{i}" for i in range(16)]
    stop = threading.Event()
    counts = [dict.fromkeys(keys, 0) for _ in range(3)]  # tells sent, per thread

    def counted(n: int) -> None:
        i = n
        while not stop.is_set():
            key = keys[i % len(keys)]
            kind[key].add.tell(1)
            counts[n][key] += 1
            i += 1
            time.sleep(0.002)

    threads = [threading.Thread(target=counted, args=(n,), daemon=True) for n in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        cluster.scale(kind, 3)
        time.sleep(0.5)
        cluster.scale(kind, 1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    for key in keys:
        _settles_at(kind[key], sum(c[key] for c in counts))


def test_cluster_counters_survive_a_host_kill(cluster: ff.Cluster) -> None:
    ref = Sink["counted"]
    before = ff.stats()["calls"]
    for _ in range(50):
        ref.add(1)
    wait_for(lambda: ff.stats()["calls"] >= before + 50, timeout=30)
    time.sleep(1.5)  # past one poll of the host's counters
    kill_host(cluster, ref)
    assert ref.add(1) == 51  # a new host process, counting from zero
    after = ff.stats()["calls"]
    assert after >= before + 51, (before, after)  # the killed process's calls are still counted


class _Alarm:
    def __init__(self) -> None:
        self.rings = 0

    def arm(self, delay: float) -> str:
        return ff.context().schedule(delay, "ring")

    def ring(self) -> None:
        self.rings += 1


Waker = ff.actor(name="XWaker", partitions=2, min_hosts=0, max_hosts=1)(_Alarm)


def test_a_type_scaled_to_zero_still_fires_its_reminders(cluster: ff.Cluster) -> None:
    from fluentfn.state import open_store
    from fluentfn.state._codec import decode_state

    Waker["w"].arm(3.0)
    cluster.scale(Waker, 0)  # no host left to fire it
    assert cluster.placement(Waker) == {}
    store = open_store(cluster.runtime.config.store)  # type: ignore[attr-defined]
    try:

        def rang() -> bool:
            record = store.load("XWaker/w")
            return record is not None and decode_state(record.state)["rings"] == 1

        wait_for(rang, timeout=60)  # no call to the type meanwhile: the directory woke it
    finally:
        store.close()


Fresh = ff.actor(name="XFresh", shards=1)(_Counter)


def test_no_retries_still_means_one_try(cluster: ff.Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """FLUENTFN_RETRY_ATTEMPTS=0: no retry, but the call is still made once."""
    from fluentfn import _config

    monkeypatch.setattr(_config, "RETRY_ATTEMPTS", 0)
    assert Fresh["first"].add(1) == 1  # a type never called: no route cached, the slow path


Steady = ff.actor(name="XSteady", partitions=4, max_hosts=2)(_Counter)
NeverHosted = ff.actor(name="XNeverHosted", partitions=2)(_Counter)
Later = ff.actor(name="XLater", shards=1)(_Counter)


def _kill_under_traffic(keys: list[str], call: Any, pid: Any) -> tuple[dict[str, int], list[BaseException], float]:
    """16 threads call ``call(n, key)`` over ``keys`` while the process that ``pid()``
    names is SIGKILLed; they stop once Ray has restarted it and calls flow again.
    Returns (acknowledged calls per key, the callers' errors, seconds until restarted)."""
    import os
    import signal

    import ray

    acked = dict.fromkeys(keys, 0)
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def caller(n: int) -> None:
        i = n
        while not stop.is_set():
            key = keys[i % len(keys)]
            i += 1
            try:
                call(n, key)
            except BaseException as exc:
                errors.append(exc)
                continue
            with lock:
                acked[key] += 1

    threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(16)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        old = pid()
        os.kill(old, signal.SIGKILL)
        started = time.monotonic()

        def restarted() -> bool:
            try:
                return bool(pid() != old)
            except ray.exceptions.RayActorError:  # still restarting
                return False

        wait_for(restarted, timeout=120)
        recovered_s = time.monotonic() - started
        with lock:
            before = sum(acked.values())
        wait_for(lambda: sum(acked.values()) > before + 16, timeout=60)  # calls flow again
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    return acked, errors, recovered_s


def test_the_cluster_survives_a_kill_of_its_directory(cluster: ff.Cluster) -> None:
    """SIGKILL the directory while 16 threads call: every acknowledged call is counted
    exactly once, no caller sees an error, and afterwards a type never called before
    works and the cluster can be scaled."""
    import ray

    keys = [f"d-{i}" for i in range(32)]
    for key in keys:
        Steady[key].add(0)
    acked, errors, recovered_s = _kill_under_traffic(
        keys, lambda n, key: Steady[key].add(1), lambda: ray.get(cluster.directory.pid.remote(), timeout=10)
    )
    assert not errors, errors[:3]
    assert {k: Steady[k].get() for k in keys} == acked  # every acknowledged call exactly once
    assert Later["new"].add(2) == 2  # a type never called before the kill
    # the restarted directory knows types no host had loaded (kept in Ray's GCS), for
    # processes that never defined them (a gateway actor, a client through it)
    assert ray.get(cluster.directory.lookup.remote("XNeverHosted")).shards == 2
    placed = cluster.scale(Steady, 2)
    assert len(placed) == 2 and sorted(p for ps in placed.values() for p in ps) == list(range(4))
    assert {k: Steady[k].get() for k in keys} == acked
    print(f"directory back in {recovered_s:.2f} s")


Through = ff.actor(name="XThrough", partitions=4)(_Counter)
NewAfterGateway = ff.actor(name="XNewAfterGateway", shards=1)(_Counter)


def test_a_gateway_killed_mid_traffic_is_waited_for(cluster: ff.Cluster) -> None:
    """SIGKILL one of two restartable gateways while 16 threads call through them: clients
    of that gateway alone wait for its restart, clients of both go on through the other;
    every acknowledged call is counted exactly once and no caller sees an error."""
    import ray

    from fluentfn.runtime._gateway import start_gateways
    from fluentfn.transport._tunnel import VIA

    actors = start_gateways(cluster.runtime.config.namespace, "127.0.0.1", 2, detached=False)
    first, second = ray.get([a.address.remote() for a in actors], timeout=120)
    alone = ff.Client(first, token=cluster.token, direct=False)  # only the gateway that dies
    both = ff.Client(f"{first},{second}", token=cluster.token, direct=False)
    try:
        keys = [f"g-{i}" for i in range(32)]
        for key in keys:
            assert alone.call(f"XThrough/{key}", "add", 0) == 0
        time.sleep(1.1)  # the placement is read again at most once a second: now it lists the hosts
        for key in keys:
            assert both.call(f"XThrough/{key}", "add", 0) == alone.call(f"XThrough/{key}", "add", 0) == 0
        for client in (alone, both):  # each sends through a gateway's tunnel, which dies with it
            assert client._caller.table.routes and all(VIA in t.endpoint for t in client._caller.table.routes.values())
        acked, errors, recovered_s = _kill_under_traffic(
            keys,
            lambda n, key: (alone if n % 2 else both).call(f"XThrough/{key}", "add", 1),
            lambda: ray.get(actors[0].pid.remote(), timeout=10),
        )
        assert not errors, errors[:3]
        assert {k: Through[k].get() for k in keys} == acked  # every acknowledged call exactly once
        assert alone.call("XNewAfterGateway/n", "add", 2) == 2  # a type never called before
        assert ray.get(actors[0].address.remote()) == first, "restarted on the same port"
    finally:
        alone.close()
        both.close()
        for actor in actors:
            ray.kill(actor, no_restart=True)
    print(f"gateway back in {recovered_s:.2f} s")
