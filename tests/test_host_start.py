"""A host whose process cannot start (its store unreachable): callers get the cause at
once, not a bare timeout, and the type comes back by itself once the store does.

Ray does not restart an actor whose constructor raised: before, the directory waited for
that host for ever, every call to the type waited out its patience
(``FLUENTFN_RESOLVE_TIMEOUT_S``) and then failed with "no host after 60 s", and the type
stayed down after the store came back. A cluster of its own (a subprocess: its store is a
private redis-server that the app stops and starts again)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ._redis import free_port

pytestmark = pytest.mark.timeout(240)

APP = """
import json, subprocess, sys, time
import fluentfn as ff
from tests._redis import start_redis

@ff.actor(name="StartBox", shards=1)
class StartBox:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self.n

port = int(sys.argv[1])
args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
redis = start_redis(args, port)
out = {}
try:
    with ff.init(store=f"redis://127.0.0.1:{port}/0", namespace="hoststart"):
        redis.kill()
        redis.wait()
        try:
            StartBox["a"].add(1)
            out["down"] = ["no error"]
        except Exception as exc:
            out["down"] = [type(exc).__name__, str(exc)]
        redis = start_redis(args, port)
        deadline, errors = time.monotonic() + 120, []
        while True:
            try:
                out["back"] = StartBox["a"].add(1)
                break
            except ff.Unavailable as exc:  # the pause before the next host, or that host still starting
                errors.append(str(exc))
                if time.monotonic() > deadline:
                    out["back"] = errors[-3:]
                    break
                time.sleep(0.2)
finally:
    redis.kill()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_a_host_that_cannot_start_gives_its_callers_the_cause_and_the_type_comes_back(tmp_path: Path) -> None:
    app = tmp_path / "start_app.py"
    app.write_text(APP)
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    env["FLUENTFN_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, str(app), str(free_port())], capture_output=True, text=True, env=env, timeout=220
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT ") :])
    kind, message = out["down"]
    assert kind == "Unavailable", out
    assert "host h0 of StartBox could not start" in message, out  # not "no host after 60 s"
    assert "redis store" in message and "Connection refused" in message, out  # the host's own error
    assert out["back"] == 1, out  # a new host started once the store was back; the failed call never ran
