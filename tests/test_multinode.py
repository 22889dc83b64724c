"""A real two-node Ray cluster (two `ray start` processes on this machine)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def test_two_nodes_tls_and_node_loss(redis_url: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["FLUENTFN_HOME"] = str(tmp_path / "home")
    command = [sys.executable, "-m", "tests.multinode_app", str(port), redis_url.replace("/0", "/2"), str(tmp_path)]
    cwd = Path(__file__).resolve().parents[1]
    out = subprocess.run(command, capture_output=True, text=True, timeout=200, env=env, cwd=cwd)
    first = out
    if out.returncode != 0:
        # One more try, two Ray clusters share this small machine: on a fresh port, a fresh
        # Redis database and a fresh home, so nothing the first try did counts twice.
        command[3], command[4] = str(port + 7), redis_url.replace("/0", "/3")
        env["FLUENTFN_HOME"] = str(tmp_path / "home-again")
        out = subprocess.run(command, capture_output=True, text=True, timeout=200, env=env, cwd=cwd)
    errors = [line for line in out.stderr.splitlines() if not line.startswith(("[", "I1", "\x1b"))]
    earlier = [line for line in first.stderr.splitlines() if not line.startswith(("[", "I1", "\x1b"))]
    assert out.returncode == 0, "\n".join([*earlier[-30:], "--- the second try:", *errors[-30:]])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["host_nodes"] == 2, result  # a type's shards spread over both nodes
    assert result["colocated_same_node"] and result["cross_node_call"], result
    assert result["endpoints"] == ["127.0.0.1"]
    assert result["plaintext_refused"] and result["tls_client"] >= 1
    assert result["moved"] >= 1 and result["state_back"] and result["now_on_head"], result
    assert result["joined_nodes"] == 2 and result["state_after_join"], result  # a joining node gets hosts
