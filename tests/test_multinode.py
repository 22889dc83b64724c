"""A real two-node Ray cluster (two `ray start` processes on this machine)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

RAY_DID_NOT_START = 3  # multinode_app's exit status when Ray itself could not start the cluster

pytestmark = [pytest.mark.slow, pytest.mark.own_ray, pytest.mark.timeout(1300)]  # up to three tries of 420 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_nodes_tls_and_node_loss(redis_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cwd = Path(__file__).resolve().parents[1]
    tries: list[subprocess.CompletedProcess[str]] = []
    # Up to three tries: two Ray clusters on this small machine may fail to start. Each on
    # a fresh free port, a fresh Redis database and a fresh home, so nothing an earlier try
    # did counts twice.
    for n, db in enumerate((2, 3, 4)):
        env["FLUENTFN_HOME"] = str(tmp_path / f"home-{n}")
        command = [sys.executable, "-m", "tests.multinode_app", str(_free_port()), redis_url.replace("/0", f"/{db}"),
                   str(tmp_path / f"try-{n}")]  # fmt: skip
        (tmp_path / f"try-{n}").mkdir()
        out = subprocess.run(command, capture_output=True, text=True, timeout=420, env=env, cwd=cwd)
        tries.append(out)
        if out.returncode == 0:
            break
    if all(t.returncode == RAY_DID_NOT_START for t in tries):
        # Ray's own node start (the raylet waits about 15 s for its Python dashboard agent's
        # port file, and no setting changes that) cannot finish on this machine now; nothing
        # of fluentfn ran. Any other failure of any try fails the test.
        pytest.skip("Ray could not start the test's cluster on this overloaded machine: " + tries[-1].stderr[-1500:])
    report = [
        f"--- try {i}: exit {t.returncode}\n" + "\n".join(t.stderr.splitlines()[-100:]) for i, t in enumerate(tries)
    ]
    assert out.returncode == 0, "\n".join(report)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["host_nodes"] == 2, result  # a type's shards spread over both nodes
    assert result["colocated_same_node"] and result["cross_node_call"], result
    assert result["endpoints"] == ["127.0.0.1"]
    assert result["plaintext_refused"] and result["tls_client"] >= 1
    assert result["moved"] >= 1 and result["state_back"] and result["now_on_head"], result
    assert result["joined_nodes"] == 2 and result["state_after_join"], result  # a joining node gets hosts
