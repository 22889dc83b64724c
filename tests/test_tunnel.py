"""The gateway's tunnel (``transport/_tunnel.py``): what it refuses, raw and through gRPC,
and that calls through it run exactly once when it is cut mid-traffic."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

import fluentfn as ff
from fluentfn._router import Target
from fluentfn.testing import host_of, wait_for
from fluentfn.transport._tunnel import USER, VIA, TunnelServer, dial, proof, through

from .apps import Counter

pytestmark = pytest.mark.timeout(180)
TOKEN = "tunnel-test-token"


@pytest.fixture
def echo() -> Iterator[str]:
    """A real gRPC server answering ``/t.E/E`` with its request."""
    server = grpc.server(futures.ThreadPoolExecutor(4))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.E", {"E": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def _tunnel(allowed: Any, limit: int = 8) -> TunnelServer:
    return TunnelServer(TOKEN, allowed, "127.0.0.1", limit=limit)


def _ask(port: int, head: bytes) -> tuple[bytes, socket.socket]:
    """Send ``head`` to the tunnel; its status line and the socket (open if it said 200)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0], sock


def _connect(target: str, password: str = "") -> bytes:
    auth = base64.b64encode(f"{USER}:{password or proof(TOKEN)}".encode()).decode()
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode()


def test_a_grpc_call_goes_through_and_the_proof_is_not_the_token(echo: str) -> None:
    tunnel = _tunnel({echo}.__contains__)
    try:
        target, options = dial(through(echo, f"127.0.0.1:{tunnel.port}"), TOKEN)
        assert target == echo and TOKEN not in str(options)
        assert dial(echo, TOKEN) == (echo, [])
        with grpc.insecure_channel(target, options=options) as channel:
            assert channel.unary_unary("/t.E/E")(b"ping" * 100, timeout=30) == b"ping" * 100
        assert tunnel.counters["tunnels_opened"] == 1
        wait_for(lambda: tunnel.counters["tunnels_open"] == 0, 30)  # the channel closed: so did its tunnel
        # the same call with another cluster's token does not get through
        _, wrong = dial(through(echo, f"127.0.0.1:{tunnel.port}"), "another-token")
        with grpc.insecure_channel(target, options=wrong) as channel, pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/t.E/E")(b"x", timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert tunnel.counters["tunnels_refused"] >= 1 and tunnel.counters["tunnels_opened"] == 1
    finally:
        tunnel.close()


def test_what_the_tunnel_refuses(echo: str) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    nobody = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening
    tunnel = _tunnel({echo, nobody}.__contains__)
    try:
        asks = {
            b"HTTP/1.1 407": [
                f"CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n".encode(),  # no proof
                _connect(echo, password="0" * 64),  # a wrong one
                _connect(echo).replace(b"Basic ", b"Bearer "),
                _connect(echo).replace(b"Basic ", b"Basic !!!"),
            ],
            b"HTTP/1.1 400": [
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"CONNECT nonsense HTTP/1.1\r\n\r\n",
                b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n",
                b"\x00\xff garbage \r\n\r\n",
                b"CONNECT " + b"a" * 9000 + b":1 HTTP/1.1\r\n\r\n",  # a head past the limit
            ],
            b"HTTP/1.1 403": [_connect("127.0.0.1:22"), _connect(f"localhost:{echo.rsplit(':', 1)[1]}")],
            b"HTTP/1.1 502": [_connect(nobody)],
        }
        for status, heads in asks.items():
            for head in heads:
                line, sock = _ask(tunnel.port, head)
                sock.close()
                assert line.startswith(status), (head[:60], line)
        assert tunnel.counters["tunnels_opened"] == 0 and tunnel.counters["tunnels_open"] == 0
        # a connection that closes without a word is not answered and not counted
        refused = tunnel.counters["tunnels_refused"]
        socket.create_connection(("127.0.0.1", tunnel.port)).close()
        line, sock = _ask(tunnel.port, _connect(echo))  # the tunnel still serves
        assert line == b"HTTP/1.1 200 Connection established"
        sock.close()
        assert tunnel.counters["tunnels_refused"] == refused
    finally:
        tunnel.close()
        closed.close()


def test_a_full_tunnel_says_so_and_close_ends_every_tunnel(echo: str) -> None:
    def broken(endpoint: str) -> bool:
        raise RuntimeError("the directory is away")

    tunnel = _tunnel({echo}.__contains__, limit=1)
    try:
        line, first = _ask(tunnel.port, _connect(echo))
        assert line == b"HTTP/1.1 200 Connection established"
        line, second = _ask(tunnel.port, _connect(echo))
        assert line == b"HTTP/1.1 503 Service Unavailable"
        second.close()
        first.close()
        wait_for(lambda: tunnel.counters["tunnels_open"] == 0, 30)
        line, third = _ask(tunnel.port, _connect(echo))
        assert line == b"HTTP/1.1 200 Connection established"
        tunnel.close()
        third.settimeout(30)
        while third.recv(4096):  # whatever the host sent first (gRPC's settings), then the end
            pass
        third.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", tunnel.port), timeout=5).close()
    finally:
        tunnel.close()
    failing = _tunnel(broken)
    try:
        line, sock = _ask(failing.port, _connect(echo))
        sock.close()
        assert line == b"HTTP/1.1 503 Service Unavailable"
    finally:
        failing.close()


def test_a_client_through_the_gateway_uses_its_tunnel(cluster: ff.Cluster) -> None:
    assert Counter["tunnel"].add(1) == 1
    endpoint = host_of(cluster, Counter["tunnel"])["endpoint"]
    tunnelled = ff.Client(cluster.gateway, token=cluster.token, direct=False)
    forwarded = ff.Client(cluster.gateway, token=cluster.token, direct=False, tunnel=False)
    try:
        status = tunnelled.status()
        assert status.tunnel_port > 0
        opened = status.counters["tunnels_opened"]
        assert tunnelled.call("TCounter/tunnel", "add", 1) == 2
        time.sleep(1.1)  # the placement is read again at most once a second
        assert tunnelled.call("TCounter/tunnel", "add", 1) == 3
        route = tunnelled._caller.table.get(tunnelled._caller.table.slot("TCounter", "tunnel"))
        assert route is not None and route.endpoint == through(endpoint, f"127.0.0.1:{status.tunnel_port}")
        assert tunnelled.status().counters["tunnels_opened"] > opened
        assert forwarded.call("TCounter/tunnel", "add", 1) == 4
        time.sleep(1.1)
        assert forwarded.call("TCounter/tunnel", "add", 1) == 5
        assert not any(VIA in t.endpoint for t in forwarded._caller.table.routes.values())
        # the gateway's tunnel goes to the cluster's hosts only
        line, sock = _ask(status.tunnel_port, _connect(cluster.gateway, password=proof(cluster.token)))
        sock.close()
        assert line == b"HTTP/1.1 403 Forbidden"
    finally:
        tunnelled.close()
        forwarded.close()
    assert Counter["tunnel"].get() == 5


def test_calls_through_a_tunnel_cut_mid_traffic_run_exactly_once(cluster: ff.Cluster) -> None:
    """Eight threads call through a tunnel that is closed under them: every call is
    answered (through the gateway, once the tunnel is gone) and counted exactly once."""
    keys = [f"cut-{i}" for i in range(8)]
    for key in keys:
        assert Counter[key].add(0) == 0
    endpoints = {host_of(cluster, Counter[key])["endpoint"] for key in keys}
    tunnel = TunnelServer(cluster.token, endpoints.__contains__, "127.0.0.1")
    client = ff.Client(cluster.gateway, token=cluster.token)
    table = client._caller.table
    acked = dict.fromkeys(keys, 0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def caller(key: str) -> None:
        while not stop.is_set():
            try:
                client.call(f"TCounter/{key}", "add", 1)
            except BaseException as exc:
                errors.append(exc)
                return
            acked[key] += 1

    try:
        assert client.call(f"TCounter/{keys[0]}", "get") == 0
        time.sleep(1.1)
        client.call(f"TCounter/{keys[0]}", "get")  # the placement is read: every route is known
        via = f"127.0.0.1:{tunnel.port}"
        table.routes = {slot: Target(through(t.endpoint, via)) for slot, t in table.routes.items()}
        threads = [threading.Thread(target=caller, args=(key,), daemon=True) for key in keys]
        for t in threads:
            t.start()
        wait_for(lambda: sum(acked.values()) >= 200, 120)
        tunnel.close()
        before = sum(acked.values())
        wait_for(lambda: sum(acked.values()) >= before + 200 or bool(errors), 120)
        stop.set()
        for t in threads:
            t.join(120)
        assert tunnel.counters["tunnels_opened"] >= 1
    finally:
        stop.set()
        tunnel.close()
        client.close()
    assert not errors, errors[:3]
    assert {key: Counter[key].get() for key in keys} == acked


def test_a_tunnel_port_that_does_not_answer_is_not_used(cluster: ff.Cluster) -> None:
    """A client behind a firewall that lets only the gateway's gRPC port through: the
    gateway forwards its calls, and the tunnel is tried again only later."""
    client = ff.Client(cluster.gateway, token=cluster.token, direct=False)
    placement: Any = client._caller._locator
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        port = closed.getsockname()[1]
        assert client._io.run(placement._tunnel_of(cluster.gateway, port), timeout=30) is None
        assert client._io.run(placement._tunnel_of(cluster.gateway, 0), timeout=30) is None
        real = client.status().tunnel_port
        assert client._io.run(placement._tunnel_of(cluster.gateway, real), timeout=30) == f"127.0.0.1:{real}"
        placement._tunnels = {f"127.0.0.1:{real}": time.monotonic() + 3600}  # as if it had just not answered
        assert client.call("TCounter/untunnelled", "add", 1) == 1
        time.sleep(1.1)
        assert client.call("TCounter/untunnelled", "add", 1) == 2
        assert client._caller.table.routes == {}, "no tunnel: every call goes to the gateway"
    finally:
        closed.close()
        client.close()


def test_a_flood_of_silent_connections_does_not_block_the_tunnel(echo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections that send nothing hold a thread each until their head times out; past
    ``HANDSHAKES`` of them more are closed at once, and a real request gets through once
    they are gone."""
    from fluentfn.transport import _tunnel as module

    monkeypatch.setattr(module, "HANDSHAKES", 4)
    tunnel = _tunnel({echo}.__contains__)
    silent = [socket.create_connection(("127.0.0.1", tunnel.port), timeout=30) for _ in range(4)]
    try:
        wait_for(lambda: tunnel._handshakes == 4, 30)
        extra = socket.create_connection(("127.0.0.1", tunnel.port), timeout=30)
        assert extra.recv(10) == b"", "closed at once: no thread for it"
        extra.close()
        assert tunnel.counters["tunnels_refused"] == 1
        for sock in silent:
            sock.close()
        wait_for(lambda: tunnel._handshakes == 0, 30)
        line, sock = _ask(tunnel.port, _connect(echo))
        sock.close()
        assert line == b"HTTP/1.1 200 Connection established"
    finally:
        for sock in silent:
            sock.close()
        tunnel.close()
