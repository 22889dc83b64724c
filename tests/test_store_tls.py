"""Redis over TLS with a password (``rediss://``): the store works, and a cluster runs on it;
a wrong password or an unverified certificate is one clear ``Unavailable``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import fluentfn as ff
from fluentfn.state import open_store

from ._redis import free_port, start_redis

pytestmark = pytest.mark.timeout(180)
PASSWORD = "tls-s3cret"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A redis-server that speaks only TLS and wants a password: (url without CA, CA path)."""
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        if os.environ.get("FLUENTFN_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server and openssl are required (FLUENTFN_REQUIRE_REDIS=1)")
        pytest.skip("redis-server or openssl not installed")
    work = tmp_path_factory.mktemp("redis-tls")
    key, cert = work / "key.pem", work / "cert.pem"
    req = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fluentfn"]
    san = ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(["openssl", *req, *san], check=True, capture_output=True)
    port = free_port()
    tls = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    rest = ["--requirepass", PASSWORD, "--appendonly", "yes", "--dir", str(work), "--bind", "127.0.0.1"]
    proc = start_redis(["--port", "0", *tls, *rest], port, timeout=10.0)
    try:
        yield f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", str(cert)
    finally:
        proc.terminate()
        proc.wait(10)


def test_store_over_tls_with_password(tls_redis: tuple[str, str]) -> None:
    url, ca = tls_redis
    store = open_store(f"{url}?ssl_ca_certs={ca}")
    try:
        store.put("k\x00", b"v")
        assert store.get("k\x00") == b"v"
        assert PASSWORD not in store.url and "***" in store.url
    finally:
        store.close()


def test_wrong_password_and_unverified_certificate_are_clear_errors(tls_redis: tuple[str, str]) -> None:
    url, ca = tls_redis
    with pytest.raises(ff.Unavailable) as wrong:
        open_store(f"{url.replace(PASSWORD, 'nope')}?ssl_ca_certs={ca}").get("k")
    assert "password" in str(wrong.value) and "nope" not in str(wrong.value)
    with pytest.raises(ff.Unavailable) as unverified:
        open_store(url).get("k")  # no CA given: the self-signed certificate is refused
    assert "CERTIFICATE_VERIFY_FAILED" in str(unverified.value) and PASSWORD not in str(unverified.value)
    with pytest.raises(ff.Unavailable):
        open_store(url.replace("rediss://", "redis://")).get("k")  # plain text to a TLS port


APP = """
import sys
import fluentfn as ff

@ff.actor(name="TlsCounter", shards=2)
class TlsCounter:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self.n

with ff.init(store=sys.argv[1], namespace="tls-store"):
    print("RESULT", sum(TlsCounter[f"c{i}"].add(i) for i in range(10)), sorted(TlsCounter.keys())[:3])
"""


def test_a_cluster_runs_on_redis_over_tls(tls_redis: tuple[str, str], tmp_path: Path) -> None:
    url, ca = tls_redis
    app = tmp_path / "tls_app.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, str(app), f"{url}?ssl_ca_certs={ca}"], capture_output=True, text=True, timeout=150, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RESULT 45 ['c0', 'c1', 'c2']" in out.stdout
    store = open_store(f"{url}?ssl_ca_certs={ca}")
    try:
        assert sorted(store.keys("TlsCounter")) == sorted(f"c{i}" for i in range(10))
    finally:
        store.close()
