"""Integration tests of the core runtime on the shared embedded cluster."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
import ray

import fluentfn as ff
from fluentfn import _config, _gc
from fluentfn._call import Call
from fluentfn._priority import raise_thread
from fluentfn.testing import host_of, hosts, wait_for
from fluentfn.wire import codec
from fluentfn.wire._gen import actorhost_pb2 as pb
from fluentfn.wire._gen import actorhost_pb2_grpc as pb_grpc

from .apps import (
    Boom,
    Counter,
    Gate,
    Lifecycle,
    OrderDriver,
    OrderLog,
    Pinger,
    Serial,
    call_counter,
    depth,
    explode,
    sleepy,
    square,
    too_big,
)

pytestmark = pytest.mark.timeout(180)


def test_four_call_styles(cluster: ff.Cluster) -> None:
    c = Counter["styles"]
    assert c.add(2) == 2
    f = c.add.future(3)
    assert isinstance(f, ff.Future) and f.result(timeout=30) == 5 and f.done()
    c.add.tell(1)
    wait_for(lambda: c.get() == 6)
    assert asyncio.run(c.add.aio(4)) == 10
    assert ff.ref("TCounter/styles").get() == 10
    assert cluster.mode == "stateful" and cluster.token and ":" in cluster.gateway


def test_many_futures_in_flight_with_the_driver_collector_tuned(cluster: ff.Cluster) -> None:
    """ff.init tuned this process's collector (``_gc``): 5,000 futures in flight all answer,
    in order, with young collections every 20,000 allocations and Ray's objects frozen (the
    suite's mailbox limit is 200: the futures go to 50 identities)."""
    assert gc.get_threshold() == _gc.THRESHOLDS and gc.get_freeze_count() > 0
    counters = [Counter[f"pipelined-{i}"] for i in range(50)]
    futures = [c.add.future(1) for _ in range(100) for c in counters]
    assert [f.result(timeout=120) for f in futures] == [n for n in range(1, 101) for _ in counters]


def test_a_new_types_first_calls_run_in_the_order_they_were_made(cluster: ff.Cluster) -> None:
    """Futures to 20 new identities of a type neither this driver nor its host has seen:
    the calls made while the type and its routes are looked up, and while the host loads
    the type, still run in the order they were made, identity by identity."""
    logs = [OrderLog[f"o{i}"] for i in range(20)]
    futures = [log.add.future(n) for n in range(50) for log in logs]
    assert [f.result(timeout=120) for f in futures] == [n for n in range(1, 51) for _ in logs]
    assert all(log.get() == list(range(50)) for log in logs)


def test_async_and_sync_calls_to_one_identity_run_in_the_order_they_were_made(cluster: ff.Cluster) -> None:
    """An async method's call takes the host's general path (a task), a sync one the
    lane: a sync call that came later no longer overtakes the async one before it."""
    logs = [OrderLog[f"mixed-{i}"] for i in range(10)]
    for log in logs:
        log.get()  # live, and the type known: only the paths differ
    futures = [(log.add_async if n % 2 == 0 else log.add).future(n) for n in range(40) for log in logs]
    assert [f.result(timeout=120) for f in futures] == [n for n in range(1, 41) for _ in logs]
    assert all(log.get() == list(range(40)) for log in logs)


def test_a_turns_tells_futures_and_calls_to_a_co_located_identity_run_in_order(cluster: ff.Cluster) -> None:
    """A blocking call to a live co-located identity runs in the caller's thread; it no
    longer runs before the same turn's earlier tells and futures, still on their way to
    the host's loop (it ran first, every third call, before)."""
    for i in range(5):
        OrderLog[f"near-{i}"].get()
        assert OrderDriver[f"driver-{i}"].drive(f"near-{i}", 60) == list(range(60))


def test_context_inside_actor(cluster: ff.Cluster) -> None:
    info = Counter["ctx"].where()
    assert info["address"] == "TCounter/ctx" and info["key"] == "ctx" and info["type"] == "TCounter"
    assert info["node"] and info["mode"] == "stateful"


def test_thousand_identities_over_the_partitions_of_one_host(cluster: ff.Cluster) -> None:
    futures = [Counter[f"many-{i}"].add.future(i) for i in range(1000)]
    assert [f.result(timeout=60) for f in futures] == list(range(1000))
    mine = [h for h in hosts(cluster) if h["group"] == "TCounter"]  # the default: 64 partitions, one host
    assert len(mine) == 1 and mine[0]["partitions"] == list(range(64)) and mine[0]["live"] >= 1000, mine
    assert Counter["many-7"].get() == 7


def test_concurrent_increments_lose_nothing(cluster: ff.Cluster) -> None:
    c = Counter["hot"]

    def worker() -> None:
        for _ in range(200):
            c.add(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.get() == 1600


def test_one_turn_at_a_time(cluster: ff.Cluster) -> None:
    s = Serial["one"]
    futures = [s.work.future() for _ in range(40)]
    assert max(f.result(timeout=60) for f in futures) == 1


def test_call_chain_comes_back_without_deadlock(cluster: ff.Cluster) -> None:
    a, b = Pinger["chain-a"], Pinger["chain-b"]
    a.set_peer(b)
    b.set_peer(a)
    assert a.ping(5) == 5  # A -> B -> A -> B -> A -> B


def test_refs_as_arguments_and_state(cluster: ff.Cluster) -> None:
    a = Pinger["refs"]
    target = Counter["ref-target"]
    assert a.set_peer(target) == "TCounter/ref-target"
    back = a.get_peer()
    assert isinstance(back, ff.ActorRef) and back == target
    assert back.add(3) == 3


def test_cross_host_and_async_actor_calls(cluster: ff.Cluster) -> None:
    p = Pinger["x"]
    assert p.bump_other(Counter["cross"], 5) == 5
    assert p.aping(Counter["cross"]) == 6


def test_the_messaging_case_rallies_across_hosts_from_sync_and_async_turns(cluster: ff.Cluster) -> None:
    from fluentfn.examples import messaging

    for ping in (messaging.Ping["rally"], messaging.AsyncPing["rally"]):
        samples = ping.pingpong(messaging.Pong["rally"], 5, messaging.PAYLOAD)
        assert len(samples) == 5 and all(s > 0 for s in samples), (ping, samples)
    ends = [host_of(cluster, ref) for ref in (messaging.AsyncPing["rally"], messaging.Pong["rally"])]
    assert ends[0]["pid"] != ends[1]["pid"], ends  # a call over the network, not an inline one


def test_reentrant_async_methods_interleave(cluster: ff.Cluster) -> None:
    g = Gate["g"]
    f1, f2 = g.meet.future("a", "b"), g.meet.future("b", "a")
    assert {f1.result(timeout=30), f2.result(timeout=30)} == {"a", "b"}


def test_user_exception_keeps_type_and_identity_survives(cluster: ff.Cluster) -> None:
    c = Counter["err"]
    c.add(1)
    with pytest.raises(Boom) as info:
        c.fail("nope")
    assert isinstance(info.value, ff.ActorError) and info.value.args == ("nope", 42)
    assert "in fail" in info.value.remote_traceback and "Boom" in info.value.remote_traceback
    assert "_engine.py" not in info.value.remote_traceback
    assert c.add(1) == 2
    with pytest.raises(Boom):
        c.fail.future("again").result(timeout=30)


def test_not_found_and_invalid_request(cluster: ff.Cluster) -> None:
    with pytest.raises(ff.NotFound):
        Counter["nf"].no_such_method()
    with pytest.raises(ff.NotFound):
        ff.ref("NoSuchType/x").add(1)
    with pytest.raises(AttributeError):
        Counter["nf"]._private  # noqa: B018
    with pytest.raises(ff.InvalidRequest):
        Counter["nf"].add(1, 2, 3)
    with pytest.raises(ff.InvalidRequest):
        Counter["nf"].add(object())
    assert Counter["nf"].add(1) == 1


def test_functions(cluster: ff.Cluster) -> None:
    assert square(3) == 9
    assert square.map([1, 2, 3]) == [1, 4, 9]
    assert square.future(4).result(timeout=60) == 16
    assert asyncio.run(square.aio(5)) == 25
    with pytest.raises(Boom):
        explode("x")
    assert call_counter("from-fn", 4) == 4
    with pytest.raises(ff.FunctionTimeout):
        sleepy(5.0)


def test_nested_function_calls_deeper_than_the_cpus_finish(cluster: ff.Cluster) -> None:
    # A function waiting on the function it called lends its Ray task's CPU meanwhile, so a
    # chain deeper than the cluster's two CPUs finishes (it used to wait for ever).
    assert depth.future(5).result(timeout=240) == 5


def test_a_function_no_node_can_run_is_one_clear_error(cluster: ff.Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray would keep such a task pending for ever: refused once no node that fits joined
    # within FLUENTFN_PLACEMENT_WAIT_S (1 s here), as an actor type that cannot be placed is
    monkeypatch.setattr(_config, "PLACEMENT_WAIT_S", 1.0)
    for _ in range(2):
        with pytest.raises(ff.FluentError, match=r"function too_big cannot be placed .*CPU: needs 64"):
            too_big.future().result(timeout=120)
    assert square(2) == 4


def test_passivation_and_hooks(cluster: ff.Cluster) -> None:
    lc = Lifecycle["lc"]
    assert lc.state() == (1, 1)
    wait_for(lambda: Counter["deactivations"].get() >= 1, timeout=20)
    # the next call re-activates it (on_activate runs again; __init__ only once per identity)
    inits, activations = lc.state()
    assert inits == 1 and activations >= 1


def _every_rpc(stub: pb_grpc.ActorHostStub, call: pb.Call, md: tuple[tuple[str, str], ...]) -> list[Any]:
    return [
        lambda: stub.Invoke(call, metadata=md, timeout=10),
        lambda: stub.Tell(call, metadata=md, timeout=10),
        lambda: stub.Status(pb.StatusRequest(), metadata=md, timeout=10),
        lambda: list(stub.InvokeStream(iter([pb.CallBatch(calls=[call])]), metadata=md, timeout=10)),
    ]


def test_token_required_everywhere(cluster: ff.Cluster) -> None:
    endpoints = [cluster.gateway] + [h["endpoint"] for h in hosts(cluster)]
    call = pb.Call(type_name="TCounter", key="auth", method="add", args=codec.encode_args((1,), {}))
    bad_metadata = [(), (("authorization", "Bearer wrong"),), (("authorization", cluster.token),)]
    for endpoint in endpoints:
        stub = pb_grpc.ActorHostStub(grpc.insecure_channel(endpoint))
        for md in bad_metadata:
            attempts = _every_rpc(stub, call, md)
            for attempt in attempts:
                with pytest.raises(grpc.RpcError) as info:
                    attempt()
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(ff.Unauthenticated):
        ff.Client(cluster.gateway, token="wrong").call("TCounter/auth", "add", 1)
    assert Counter["auth"].get() == 0


def test_endpoints_bind_loopback(cluster: ff.Cluster) -> None:
    for endpoint in [cluster.gateway] + [h["endpoint"] for h in hosts(cluster)]:
        assert endpoint.startswith("127.0.0.1:")


def test_bad_payloads_get_clean_errors_and_host_keeps_serving(cluster: ff.Cluster) -> None:
    md = (("authorization", f"Bearer {cluster.token}"),)
    c = Counter["payloads"]
    c.add(1)
    targets = [cluster.gateway] + [h["endpoint"] for h in hosts(cluster) if h["group"] == "TCounter"]
    oversize = b"\x92\x91\xc6" + (20 * 1024 * 1024).to_bytes(4, "big") + b"x" * (20 * 1024 * 1024) + b"\x80"
    cases = {
        b"\xff\x00garbage": grpc.StatusCode.INVALID_ARGUMENT,
        codec.encode(["not", "args", "shape"]): grpc.StatusCode.INVALID_ARGUMENT,
        codec.encode_args(("a", "b", "c"), {}): grpc.StatusCode.INVALID_ARGUMENT,
        b"\x91" * 50_000 + b"\xc0": grpc.StatusCode.INVALID_ARGUMENT,
        oversize: grpc.StatusCode.INVALID_ARGUMENT,
    }
    for endpoint in targets:
        stub = pb_grpc.ActorHostStub(
            grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        )
        for args, code in cases.items():
            call = pb.Call(type_name="TCounter", key="payloads", method="add", args=args)
            with pytest.raises(grpc.RpcError) as info:
                stub.Invoke(call, metadata=md, timeout=30)
            assert info.value.code() in (code, grpc.StatusCode.RESOURCE_EXHAUSTED), (endpoint, info.value)
        bad_key = pb.Call(type_name="TCounter", key="k" * 5000, method="add", args=codec.encode_args((1,), {}))
        with pytest.raises(grpc.RpcError) as info:
            stub.Invoke(bad_key, metadata=md, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert c.add(1) == 2


def test_external_client(cluster: ff.Cluster) -> None:
    client = ff.Client(cluster.gateway, token=cluster.token)
    assert client.call("TCounter/client", "add", 2) == 2
    client.tell("TCounter/client", "add", 3)
    wait_for(lambda: client.call("TCounter/client", "get") == 5)
    with pytest.raises(Boom):
        client.call("TCounter/client", "fail", "x")
    with pytest.raises(ff.NotFound):
        client.tell("TCounter/client", "nope")
    with pytest.raises(ff.NotFound):
        client.call("Nope/client", "get")


def test_idempotency_key_makes_a_client_retry_run_once(cluster: ff.Cluster) -> None:
    client = ff.Client(cluster.gateway, token=cluster.token)
    assert client.call("TCounter/idem", "add", 5, idempotency_key="order-1") == 5
    # the client's own retry (say, its first reply was lost): answered from the record, not run again
    assert client.call("TCounter/idem", "add", 5, idempotency_key="order-1") == 5
    assert client.call("TCounter/idem", "add", 5, idempotency_key="order-2") == 10
    assert client.call("TCounter/idem", "add", 1) == 11 and client.call("TCounter/idem", "add", 1) == 12
    with pytest.raises(ff.InvalidRequest):
        client.call("TCounter/idem", "add", 1, idempotency_key="")


def _foreign_server() -> tuple[grpc.Server, str]:
    """A gRPC server that is not a fluentfn host (it answers every call UNIMPLEMENTED): what
    a stale route finds when another server took a dead host's port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def test_client_calls_the_owning_host_directly_and_falls_back_to_the_gateway(cluster: ff.Cluster) -> None:
    from fluentfn._router import Target
    from fluentfn.testing import host_of

    client = ff.Client(cluster.gateway, token=cluster.token)
    assert client.call("TCounter/direct", "add", 1) == 1  # the placement may not list its host yet
    time.sleep(1.1)  # placement is read again at most once a second
    assert client.call("TCounter/direct", "get") == 1
    table = client._caller.table
    slot = table.slot("TCounter", "direct")
    owner = table.get(slot)
    assert owner is not None and owner.endpoint == host_of(cluster, Counter["direct"])["endpoint"]
    # a stale placement: a host that is gone, a port some other server took, then a host
    # that does not own the key (it answers Redirect): each call still runs exactly once
    foreign, address = _foreign_server()
    others = [h["endpoint"] for h in hosts(cluster) if h["endpoint"] != owner.endpoint][:1]  # when there is one
    wrongs = ["127.0.0.1:9", address, *others]
    try:
        for wrong in wrongs:
            table.routes = dict.fromkeys(table.routes, Target(wrong))
            client.call("TCounter/direct", "add", 1)
    finally:
        foreign.stop(None)
    assert Counter["direct"].get() == 1 + len(wrongs)
    via_gateway = ff.Client(cluster.gateway, token=cluster.token, direct=False)
    assert via_gateway.call("TCounter/direct", "add", 1) == 2 + len(wrongs)
    via_gateway.close()
    client.close()


def test_a_stale_route_to_a_foreign_server_is_resolved_again(cluster: ff.Cluster) -> None:
    """A driver whose cached route now leads to a server that is not a fluentfn host (the
    dead host's port reused) re-resolves and runs the call once, instead of failing."""
    from fluentfn._ref import current_invoker
    from fluentfn._router import Target

    assert Counter["foreign"].add(1) == 1
    runtime: Any = current_invoker()
    slot = runtime._table.slot("TCounter", "foreign")
    foreign, address = _foreign_server()
    try:
        runtime._table.learn(slot, Target(address))
        assert Counter["foreign"].add(1) == 2
        runtime._table.learn(slot, Target(address))
        assert asyncio.run(Counter["foreign"].add.aio(1)) == 3
    finally:
        foreign.stop(None)
    assert Counter["foreign"].get() == 3


def test_a_stream_client_pipelines_through_the_gateway(cluster: ff.Cluster) -> None:
    """Any gRPC client may pipeline on ``InvokeStream`` to the gateway: replies come back
    under the client's own ``seq`` (the gateway's hop to each host numbers calls anew)."""
    md = (("authorization", f"Bearer {cluster.token}"),)
    with grpc.insecure_channel(cluster.gateway) as channel:
        stub = pb_grpc.ActorHostStub(channel)
        calls = [
            pb.Call(
                type_name="TCounter",
                key=f"piped-{i % 5}",
                method="add",
                args=codec.encode_args((1,), {}),
                request_id=f"piped-{i}",
                seq=1000 + i,
            )
            for i in range(50)
        ] + [pb.Call(type_name="TCounter", key="piped-0", method="fail", args=codec.encode_args(("x",), {}), seq=7)]
        replies = [r for batch in stub.InvokeStream(iter([pb.CallBatch(calls=calls)]), metadata=md, timeout=60)
                   for r in batch.replies]  # fmt: skip
    by_seq = {r.seq: r for r in replies}
    assert sorted(by_seq) == [7] + [1000 + i for i in range(50)]
    assert by_seq[7].HasField("error") and "x" in by_seq[7].error.message
    assert sorted(codec.decode(by_seq[1000 + i].value) for i in range(50) if i % 5 == 0) == list(range(1, 11))
    assert [Counter[f"piped-{k}"].get() for k in range(5)] == [10] * 5


def test_async_client(cluster: ff.Cluster) -> None:
    async def main() -> list[Any]:
        async with ff.AsyncClient(cluster.gateway, token=cluster.token) as client:
            concurrent = await asyncio.gather(*(client.call(f"TCounter/aclient-{i}", "add", i) for i in range(20)))
            again = [await client.call("TCounter/aclient-3", "add", 1, idempotency_key="k") for _ in range(3)]
            await client.tell("TCounter/aclient-3", "add", 100)
            with pytest.raises(Boom):
                await client.call("TCounter/aclient-3", "fail", "x")
            with pytest.raises(ff.NotFound):
                await client.call("Nope/x", "get")
            status = await client.status()
            return [concurrent, again, len(status.hosts) > 0]

    concurrent, again, has_status = asyncio.run(main())
    assert concurrent == list(range(20))
    assert again == [4, 4, 4]  # one run, three identical answers
    assert has_status
    wait_for(lambda: Counter["aclient-3"].get() == 104)
    with pytest.raises(ff.Unauthenticated):
        asyncio.run(ff.AsyncClient(cluster.gateway, token="wrong").call("TCounter/x", "get"))


def _joining_process(code: str) -> list[str]:
    """Run ``code`` in a process of its own whose ``address="auto"`` is this test session's
    Ray (not another one); its exit status must be 0. The lines it printed."""
    env = dict(os.environ)
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()


def test_second_process_calls_by_address(cluster: ff.Cluster) -> None:
    Counter["shared"].add(1)
    code = (
        "import fluentfn as ff, ray\n"
        "try:\n    ff.init(address='auto', token='not-the-token')\n"
        "except ff.FluentError as exc:\n    print(exc)\n"
        "print(ray.is_initialized())\n"  # a join that failed leaves this process as it found it
        "with ff.init(address='auto'):\n    print(ff.ref('TCounter/shared').add(10))\n"
        "print(ray.is_initialized())\n"  # ff.init joined Ray, so its shutdown disconnects
    )
    said = ["the running cluster has a different token", "False", "11", "False"]
    assert _joining_process(code)[-4:] == said
    assert Counter["shared"].get() == 11  # the joined cluster goes on


def test_a_join_that_fails_leaves_nothing_in_the_cluster_it_joined(cluster: ff.Cluster) -> None:
    """A FaaS cluster of a new namespace, joined on a running Ray, that cannot listen on its
    bind address: the process is disconnected, and the directory and platform it had just
    made are gone (the next ``ff.init`` of that namespace starts clean)."""
    from fluentfn._tables import DIRECTORY_NAME, ray_namespace
    from fluentfn.runtime._faasplatform import PLATFORM_NAME

    code = (
        "import fluentfn as ff, ray\n"
        "try:\n    ff.init(address='auto', namespace='joinfails', mode='faas', bind='203.0.113.7')\n"
        "except ff.FluentError as exc:\n    print(str(exc).split(':')[0])\n"
        "print(ray.is_initialized())\n"
    )
    assert _joining_process(code)[-2:] == ["cannot listen on 203.0.113.7", "False"]

    def gone(name: str) -> bool:
        try:
            ray.get_actor(name, namespace=ray_namespace("joinfails"))
        except ValueError:
            return True
        return False

    wait_for(lambda: gone(DIRECTORY_NAME) and gone(PLATFORM_NAME), timeout=60)


def test_blocking_call_inside_async_code_is_refused_clearly(cluster: ff.Cluster) -> None:
    async def main() -> int:
        return int(await Counter["aio"].add.aio(1))

    assert asyncio.run(main()) == 1
    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(lambda i: Counter[f"pool-{i}"].add(i), range(8))) == list(range(8))


def test_bulk_calls_one_message_per_partition(cluster: ff.Cluster) -> None:
    before = ff.stats()["direct_messages"]
    results = Counter.bulk("add", {f"bulk-{i}": (i,) for i in range(200)})
    assert results == {f"bulk-{i}": i for i in range(200)}
    assert ff.stats()["direct_messages"] - before <= 64  # one per partition, not one per key
    assert Counter["bulk-7"].get() == 7
    with pytest.raises(ff.InvalidRequest):
        Counter.bulk("add", {"bulk-bad": (1, 2, 3)})


def test_bulk_keys_of_every_kind_are_normalised_and_a_bad_one_refuses_the_whole_call(cluster: ff.Cluster) -> None:
    """A bulk call's keys as ``Type[key]`` takes them (an int written out, non-ASCII text),
    checked on both sides; one bad key or argument list refuses the call before any item runs."""
    results = Counter.bulk("add", {7_770_001: [1], "bulk-é-ключ": (2,), "bulk-plain": [3]})
    assert results == {"7770001": 1, "bulk-é-ключ": 2, "bulk-plain": 3}
    assert Counter[7_770_001].get() == 1 and Counter["bulk-é-ключ"].get() == 2
    for bad in ({"bulk-never": (1,), True: (1,)}, {"bulk-never": (1,), "": (1,)}, {"bulk-never": (1,), "b": "x"}):
        with pytest.raises(ff.InvalidRequest):
            Counter.bulk("add", bad)  # type: ignore[arg-type]
    assert Counter["bulk-never"].get() == 0  # (this call activates it: nothing ran before)


def test_bulk_of_an_async_method_runs_each_item_as_a_turn(cluster: ff.Cluster) -> None:
    """Each item of an async method's batch is a turn of its own (it may call out), and
    each runs once: five items each add 1 to the same counter."""
    from .apps import Pinger

    target = Counter["bulk-async-target"]
    results = Pinger.bulk("aping", {f"bulk-async-{i}": (target,) for i in range(5)})
    assert sorted(results.values()) == [1, 2, 3, 4, 5]
    assert target.get() == 5


def test_bulk_items_run_in_batches_call_out_in_their_own_context(cluster: ff.Cluster) -> None:
    """A memory-only type's items past the phase tally's first ``EXACT`` run in batches of
    turns whose contexts are made only when asked for: each that calls out does so as
    itself, once."""
    from fluentfn._phases import EXACT

    from .apps import Relay

    target = Counter["bulk-relay-target"]
    count = EXACT + 144
    results = Relay.bulk("relay", {f"relay-{i}": (target,) for i in range(count)})
    assert {k: v[0] for k, v in results.items()} == {f"relay-{i}": f"NRelay/relay-{i}" for i in range(count)}
    assert sorted(v[1] for v in results.values()) == list(range(1, count + 1))
    assert target.get() == count


def test_a_tap_sees_every_message_and_a_dropped_one_is_sent_again(cluster: ff.Cluster) -> None:
    """The router's one hook: a tap records what leaves and what comes back, and a message
    it drops is lost as far as the caller's router knows: re-sent, run once."""
    from fluentfn.transport._caller import install_tap

    class Tap:
        def __init__(self) -> None:
            self.sent: list[tuple[str, int]] = []
            self.answers: list[tuple[str, bool]] = []

        def sending(self, call: Call, target: Any) -> bool:
            self.sent.append((call.key, call.attempt))
            return len(self.sent) > 1  # the first message is dropped

        def received(self, call: Call, target: Any, reply: Any, error: Any) -> None:
            self.answers.append((call.key, error is None))

    assert Counter["tapped"].add(1) == 1  # routes known: the tap sees only the call itself
    tap = Tap()
    old = install_tap(tap)
    try:
        assert Counter["tapped"].add(1) == 2
    finally:
        install_tap(old)
    # the re-send is marked as a possible repeat whose host went away with it once (1 + 1 lost):
    # a dropped message is lost as far as the router knows
    assert tap.sent == [("tapped", 0), ("tapped", 2)]
    assert tap.answers == [("tapped", False), ("tapped", True)]
    assert Counter["tapped"].get() == 2


def test_a_tap_that_raises_fails_the_call_clearly(cluster: ff.Cluster) -> None:
    from fluentfn.transport._caller import install_tap

    class Broken:
        def sending(self, call: Call, target: Any) -> bool:
            raise RuntimeError("tap bug")

        def received(self, call: Call, target: Any, reply: Any, error: Any) -> None: ...

    old = install_tap(Broken())
    try:
        with pytest.raises(ff.FluentError, match="tap bug"):
            Counter["tap-broken"].add.with_timeout(30)(1)
    finally:
        install_tap(old)


def test_an_acknowledged_tell_through_the_gateway_stream_gets_its_ack(cluster: ff.Cluster) -> None:
    """A one-way call with a ``seq`` on the gateway's stream is answered (accepted), whether
    or not the gateway has a route cached, and it runs once."""
    assert Counter["acked-tell"].add(0) == 0  # the gateway may now have the route cached
    md = (("authorization", f"Bearer {cluster.token}"),)
    args = codec.encode_args((1,), {})
    tells = [pb.Call(type_name="TCounter", key=k, method="add", args=args, request_id=f"acked-{k}", one_way=True,
                     seq=s) for s, k in ((5, "acked-tell"), (6, "acked-tell-new"))]  # fmt: skip
    with grpc.insecure_channel(cluster.gateway) as channel:
        stub = pb_grpc.ActorHostStub(channel)
        replies = [r for batch in stub.InvokeStream(iter([pb.CallBatch(calls=tells)]), metadata=md, timeout=60)
                   for r in batch.replies]  # fmt: skip
    assert sorted(r.seq for r in replies) == [5, 6]
    assert not any(r.HasField("error") for r in replies)
    wait_for(lambda: Counter["acked-tell"].get() == 1 and Counter["acked-tell-new"].get() == 1, timeout=60)


def test_hosts_run_at_the_callers_priority(cluster: ff.Cluster) -> None:
    """An embedded Ray would start hosts at nice 15 (Ray's default for its workers), so
    any ordinary process on a busy machine would starve them; they run at nice 0."""
    assert Counter["nice"].add(1) == 1
    for info in hosts(cluster):
        assert os.getpriority(os.PRIO_PROCESS, info["pid"]) == os.getpriority(os.PRIO_PROCESS, 0)


@ff.actor(name="TNice", shards=1)
class NiceProbe:
    def level(self) -> int:
        """This turn's thread's nice value (the method calls, so a worker thread runs it)."""
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own priority is Linux's")
def test_a_hosts_loop_ranks_ahead_of_its_turn_threads(cluster: ff.Cluster) -> None:
    """``FLUENTFN_TURN_NICE`` steps between a host's event loop and its turns: the loop
    raised where the system allows it (root, CAP_SYS_NICE), else the turns lowered."""
    turn = NiceProbe["a"].level()
    info = host_of(cluster, NiceProbe["a"])
    process = os.getpriority(os.PRIO_PROCESS, info["pid"])  # its main thread's
    steps = _config.TURN_NICE
    assert steps > 0 and info["priority"] == {"loop": info["priority"]["loop"], "turns": turn}
    raised = (info["priority"]["loop"], turn) == (max(-20, process - steps), process)
    lowered = (info["priority"]["loop"], turn) == (process, min(19, process + steps))
    assert raised or lowered, (process, info["priority"])
    with ThreadPoolExecutor(1) as probe:  # a thread of this process, which may raise itself as the hosts may
        allowed = probe.submit(lambda: raise_thread(threading.get_native_id(), 1)).result(10)
    assert raised == allowed


def test_a_host_gives_the_gil_up_sooner_than_python_does(cluster: ff.Cluster) -> None:
    """``FLUENTFN_SWITCH_INTERVAL_MS``: a host's threads keep the GIL at most that long while
    another waits (Python's own 5 ms would keep a waking loop behind a CPU-bound turn)."""
    NiceProbe["a"].level()  # its host is up
    info = host_of(cluster, NiceProbe["a"])
    assert _config.SWITCH_INTERVAL_MS == 0.5  # the suite runs with the default
    assert info["switch_interval_ms"] == pytest.approx(0.5)
    assert sys.getswitchinterval() == pytest.approx(0.005)  # this process (a driver) keeps Python's
