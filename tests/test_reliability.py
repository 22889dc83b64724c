"""Reliability and security: chaos with host kills, fuzzing, overload, authentication."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Callable
from typing import TypeVar

import grpc
import pytest

import fluentfn as ff
from fluentfn.bench import reliability
from fluentfn.testing import hosts
from fluentfn.wire._gen import actorhost_pb2 as pb
from fluentfn.wire._gen import actorhost_pb2_grpc as pb_grpc

STORES = [pytest.param(None, id="sqlite"), pytest.param("redis", id="redis")]
T = TypeVar("T")


@pytest.mark.timeout(400)
@pytest.mark.parametrize("cluster", STORES, indirect=True)
def test_chaos_bank_transfers_keep_their_invariants(cluster: ff.Cluster) -> None:
    result = reliability.chaos(cluster, accounts=8, transfers=300, clients=4, kill_every_s=1.0)
    assert result["kills"] >= 1, result
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["unbalanced"] == 0, result
    assert result["applied_not_acked"] == 0, result  # clients retry until acknowledged
    assert result["total"] == result["expected_total"] and result["acked"] == 300, result


@pytest.mark.timeout(400)
def test_fuzzing_ten_thousand_malformed_calls(cluster: ff.Cluster) -> None:
    result = reliability.fuzz(cluster, n=10_000)
    bad = {"UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED", "CANCELLED", "UNAVAILABLE"}
    assert not bad & set(result["statuses"]), result["statuses"]
    assert result["state_unchanged"] and result["still_serving"], result
    assert result["statuses"].get("INVALID_ARGUMENT", 0) > 1000 and result["statuses"].get("NOT_FOUND", 0) > 500
    assert "OK" not in result["statuses"]  # every case is malformed by construction


@pytest.mark.timeout(300)
def test_overload_is_bounded_and_clear(cluster: ff.Cluster) -> None:
    outcomes = reliability.overload(callers=1_000, nap_s=0.005, timeout_s=3.0)
    assert outcomes.pop("after_ok") == 1
    assert set(outcomes) <= {"ok", "Overloaded", "CallTimeout"}, outcomes
    assert outcomes.get("Overloaded", 0) > 0 and outcomes.get("ok", 0) > 0, outcomes  # mailbox bound is 200


@pytest.mark.timeout(120)
def test_deadline_is_honoured(cluster: ff.Cluster) -> None:
    slow = reliability.Slow["deadline"]
    blocker = slow.nap.future(2.0)
    with pytest.raises(ff.CallTimeout):
        slow.nap.with_timeout(0.5)(0.0)  # waits behind the 2 s turn, past its deadline
    assert blocker.result(timeout=30) == 2.0


@pytest.mark.timeout(60)
def test_pickled_payload_over_the_network_is_refused(cluster: ff.Cluster) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (print, ("unpickled!",))

    stub = pb_grpc.ActorHostStub(grpc.insecure_channel(cluster.gateway))
    md = (("authorization", f"Bearer {cluster.token}"),)
    call = pb.Call(type_name="TCounter", key="pickle", method="add", args=pickle.dumps(([Evil()], {})))
    with pytest.raises(grpc.RpcError) as info:
        stub.Invoke(call, metadata=md, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.timeout(60)
def test_nothing_listens_beyond_loopback(cluster: ff.Cluster) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outward interface
        outward = s.getsockname()[0]
    if outward.startswith("127."):
        pytest.skip("no non-loopback interface on this machine")
    for endpoint in [cluster.gateway] + [h["endpoint"] for h in hosts(cluster)]:
        port = int(endpoint.rsplit(":", 1)[1])
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(2)
            s.connect((outward, port))


_ATTACK = r"""
import sys, threading, grpc
from fluentfn.wire._gen import actorhost_pb2 as pb, actorhost_pb2_grpc as pb_grpc
target, n, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
big = pb.Call(type_name="TCounter", key="k", method="add", args=b"x" * (30 * 1024 * 1024))
opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)]
codes = []
def attack():
    stub = pb_grpc.ActorHostStub(grpc.insecure_channel(target, options=opts))
    for _ in range(n // conns):
        try:
            stub.Invoke(big, timeout=30, metadata=(("authorization", "Bearer wrong"),))
            codes.append("OK")
        except grpc.RpcError as exc:
            codes.append(exc.code().name)
threads = [threading.Thread(target=attack) for _ in range(conns)]
[t.start() for t in threads]
[t.join() for t in threads]
print(sorted(set(codes)), len(codes))
"""


def _peak_rss(pid: int, action: Callable[[], T]) -> tuple[float, float, T]:
    """RSS of ``pid`` before ``action`` and its peak while it runs (MiB), and its result."""
    import threading

    before, peak, done = _rss_mib(pid), [0.0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib(pid))
            done.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = action()
    finally:
        done.set()
        watcher.join()
    return before, peak[0], result


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(180)
def test_unauthenticated_bodies_are_never_buffered(cluster: ff.Cluster) -> None:
    """200 unauthenticated 30 MB calls over 20 connections, at the gateway (this process)
    and at a host: each grows by far less than the 6 GB sent (before: +1.1 GiB for 48)."""
    import os
    import subprocess
    import sys

    from .apps import Counter

    assert Counter["preauth"].add(1) == 1
    host = next(h for h in hosts(cluster) if h["types"])
    for endpoint, pid in ((cluster.gateway, os.getpid()), (host["endpoint"], int(host["pid"]))):
        attack = [sys.executable, "-c", _ATTACK, endpoint, "200", "20"]
        before, peak, out = _peak_rss(pid, lambda cmd=attack: subprocess.run(cmd, capture_output=True, text=True))
        assert out.stdout.strip() == "['UNAUTHENTICATED'] 200", out.stdout + out.stderr[-2000:]
        assert peak - before < 200, (endpoint, before, peak)
    assert Counter["preauth"].add(1) == 2  # and authenticated calls were served throughout


@pytest.mark.timeout(120)
def test_malformed_frames_are_invalid_argument_and_counted(cluster: ff.Cluster) -> None:
    from .apps import Counter

    Counter["frames"].add(1)
    host = next(h for h in hosts(cluster) if h["types"])
    md = (("authorization", f"Bearer {cluster.token}"),)
    garbage = b"\xff\xff\xff\xff not a protobuf message"
    before = cluster.stats().get("malformed_requests", 0)
    for endpoint in (cluster.gateway, host["endpoint"]):
        channel = grpc.insecure_channel(endpoint)
        for method in ("Invoke", "Tell", "Status"):
            raw = channel.unary_unary(f"/fluentfn.v1.ActorHost/{method}")
            with pytest.raises(grpc.RpcError) as info:
                raw(garbage, metadata=md, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (endpoint, method)
        stream = channel.stream_stream("/fluentfn.v1.ActorHost/InvokeStream")
        with pytest.raises(grpc.RpcError) as info:
            list(stream(iter([garbage]), metadata=md, timeout=10))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        channel.close()
    assert cluster.stats()["malformed_requests"] >= before + 4  # the host's four, counted
    assert Counter["frames"].add(1) == 2
