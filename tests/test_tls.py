"""Mutual TLS on a real gRPC server: a peer without a client certificate is refused."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

import fluentfn as ff
from fluentfn._call import Call, Outcome
from fluentfn._ioloop import IoLoop
from fluentfn._status import Status
from fluentfn.transport._server import start_server
from fluentfn.wire._gen import actorhost_pb2 as pb
from fluentfn.wire._gen import actorhost_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)


class _Echo:
    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None:
        return Outcome(value=b"ok")

    def submit(self, call: Call, done: Any) -> None:
        done(Outcome(seq=call.seq, value=b"ok"))

    async def accept(self, call: Call) -> None:
        return None

    def status(self) -> Status:
        return Status(node_id="tls-test")


def _certs(workdir: Path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, cert = str(workdir / "key.pem"), str(workdir / "cert.pem")
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fluentfn"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]
    subprocess.run(["openssl", *args], check=True, capture_output=True)
    return cert, key


def test_mutual_tls_refuses_peers_without_a_client_certificate(tmp_path: Path) -> None:
    cert, key = _certs(tmp_path)
    mutual = ff.TlsConfig(cert, key, cert, require_client_cert=True)
    io = IoLoop()
    try:
        server, port = io.run(start_server(_Echo(), "tok", "127.0.0.1", mutual))  # type: ignore[arg-type]
        target = f"127.0.0.1:{port}"
        md = (("authorization", "Bearer tok"),)
        with grpc.secure_channel(target, mutual.channel_credentials()) as ch:
            assert pb_grpc.ActorHostStub(ch).Status(pb.StatusRequest(), metadata=md, timeout=10).node_id == "tls-test"
        server_only = grpc.ssl_channel_credentials(root_certificates=Path(cert).read_bytes())
        with grpc.secure_channel(target, server_only) as ch, pytest.raises(grpc.RpcError) as info:
            pb_grpc.ActorHostStub(ch).Status(pb.StatusRequest(), metadata=md, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(target) as ch, pytest.raises(grpc.RpcError):
            pb_grpc.ActorHostStub(ch).Status(pb.StatusRequest(), metadata=md, timeout=10)
        io.run(server.stop(0))
    finally:
        io.loop.call_soon_threadsafe(io.loop.stop)


def test_a_tunnel_carries_mutual_tls_end_to_end(tmp_path: Path) -> None:
    """Through a gateway's tunnel the client's TLS session is with the host itself: the
    host's certificate is checked, the client's presented, the tunnel sees only ciphertext."""
    from fluentfn.transport._client import PeerPool
    from fluentfn.transport._tunnel import TunnelServer, through

    cert, key = _certs(tmp_path)
    mutual = ff.TlsConfig(cert, key, cert, require_client_cert=True)
    io = IoLoop()
    tunnel = None
    try:
        server, port = io.run(start_server(_Echo(), "tok", "127.0.0.1", mutual))  # type: ignore[arg-type]
        target = f"127.0.0.1:{port}"
        tunnel = TunnelServer("tok", {target}.__contains__, "127.0.0.1")
        pool = PeerPool("tok", mutual)
        assert io.run(pool.status(through(target, f"127.0.0.1:{tunnel.port}"), 10)).node_id == "tls-test"
        assert tunnel.counters["tunnels_opened"] == 1
        io.run(pool.close())
        io.run(server.stop(0))
    finally:
        if tunnel is not None:
            tunnel.close()
        io.loop.call_soon_threadsafe(io.loop.stop)


def test_server_name_checks_the_certificate_name_instead_of_the_address(tmp_path: Path) -> None:
    """A certificate naming "fluentfn" (no address): dialling 127.0.0.1 works only when the
    configuration says which name to check, as pods with unforeseeable addresses need."""
    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fluentfn"]
    subprocess.run(
        ["openssl", *args, "-addext", "subjectAltName=DNS:fluentfn", "-keyout", key, "-out", cert], check=True
    )
    named = ff.TlsConfig(cert, key, cert, require_client_cert=True, server_name="fluentfn")
    io = IoLoop()
    try:
        server, port = io.run(start_server(_Echo(), "tok", "127.0.0.1", named))  # type: ignore[arg-type]
        client = ff.Client(f"127.0.0.1:{port}", token="tok", tls=named, timeout_s=10)
        assert client.status().node_id == "tls-test"
        client.close()
        unnamed = ff.Client(
            f"127.0.0.1:{port}", token="tok", tls=dataclasses.replace(named, server_name=None), timeout_s=10
        )
        with pytest.raises(ff.Unavailable):
            unnamed.status()
        unnamed.close()
        io.run(server.stop(0))
    finally:
        io.loop.call_soon_threadsafe(io.loop.stop)


def test_tls_from_the_environment_must_be_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    from fluentfn import _config

    assert _config.env_tls() is None
    monkeypatch.setenv("FLUENTFN_TLS_CERT", "/c.pem")
    with pytest.raises(ff.FluentError, match="must be set together"):
        _config.env_tls()
    monkeypatch.setenv("FLUENTFN_TLS_KEY", "/k.pem")
    monkeypatch.setenv("FLUENTFN_TLS_CA", "/ca.pem")
    monkeypatch.setenv("FLUENTFN_TLS_SERVER_NAME", "fluentfn")
    assert _config.env_tls() == ("/c.pem", "/k.pem", "/ca.pem", "fluentfn")


class _NoHost:
    """Stands in for a host's partitions: what the metrics collector reads."""

    group = "tls"
    host_id = "h0"
    live_identities = 0

    def __init__(self) -> None:
        from fluentfn._stats import new_counters
        from fluentfn.host._metrics import MethodTally

        self.methods = MethodTally()
        self._counters = new_counters()

    def totals(self) -> dict[str, int]:
        return self._counters


def test_metrics_are_https_in_a_tls_cluster(tmp_path: Path) -> None:
    """The scrape carries the cluster token: in a TLS cluster it must not travel in clear."""
    import ssl
    import urllib.request

    from fluentfn.host._metrics import serve_metrics

    cert, key = _certs(tmp_path)
    port = serve_metrics(_NoHost(), "127.0.0.1", "tok", ff.TlsConfig(cert, key, cert))
    request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer tok"})
    context = ssl.create_default_context(cafile=cert)
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.status == 200
    with pytest.raises(OSError):  # plain HTTP gets no answer it can read
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # still serving
        assert b"fluentfn_live_identities" in response.read()
