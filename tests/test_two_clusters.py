"""Two real clusters (two Ray instances) on one namespace and store: the first is fenced out
and told so on every call, by name; no acknowledged update is lost; Redirect never leaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

APP = """
import json, sys, time
from pathlib import Path
import fluentfn as ff

@ff.actor(name="Twin", shards=2)
class Twin:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self.n

role, store, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
out = {"acked": 0, "errors": []}
with ff.init(store=store, namespace="twins"):
    for i in range(20):
        Twin[f"k{i % 4}"].add(1)
        out["acked"] += 1
    if role == "first":
        (work / "first-ready").touch()
        deadline = time.time() + 120
        while not (work / "second-done").exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(2.5)  # the ownership check runs every second
        for i in range(4):
            try:
                Twin[f"k{i}"].add(1)
                out["acked"] += 1
            except Exception as exc:
                out["errors"].append([type(exc).__name__, [c.__name__ for c in type(exc).__mro__], str(exc)])
    else:
        (work / "second-done").touch()
print("RESULT " + json.dumps(out))
"""


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    stdout, stderr = proc.communicate(timeout=200)
    assert proc.returncode == 0, stderr[-3000:]
    line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1]
    parsed: dict[str, object] = json.loads(line[len("RESULT ") :])
    return parsed


def test_a_second_cluster_fences_the_first_which_is_told_why(tmp_path: Path) -> None:
    app = tmp_path / "twin_app.py"
    app.write_text(APP)
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}

    def start(role: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, str(app), role, store, str(tmp_path)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    first = start("first")
    deadline = time.monotonic() + 150
    while not (tmp_path / "first-ready").exists():
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    second = _result(start("second"))
    one = _result(first)
    assert second["acked"] == 20
    errors = one["errors"]
    assert isinstance(errors, list) and len(errors) == 4  # every later call of the first cluster fails
    for name, mro, message in errors:
        assert "FluentError" in mro and name != "Redirect"
        assert "another cluster" in message and "twins@" in message  # names the newer owner
    import sqlite3

    from fluentfn.state._codec import decode_state

    with sqlite3.connect(tmp_path / "shared.db") as db:
        rows = db.execute("SELECT address, state FROM state WHERE address LIKE 'Twin/%'").fetchall()
    total = sum(decode_state(state)["n"] for _, state in rows)
    assert total == int(one["acked"]) + int(second["acked"])  # 40 acknowledged, 40 stored
