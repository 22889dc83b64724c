"""The `fluentfn` command: serve in the background, then call and status against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]


def _fluentfn(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluentfn.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def test_serve_call_status(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["FLUENTFN_HOME"] = str(tmp_path)
    serve = subprocess.Popen(
        [sys.executable, "-m", "fluentfn.cli", "serve", "examples/bank.py", "--namespace", "clitest"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    conn = tmp_path / "clitest" / "serve.json"
    try:
        deadline = time.monotonic() + 120
        while not conn.exists():
            assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        assert oct(conn.stat().st_mode & 0o777) == "0o600"  # the token is for this user only
        assert "token" in json.loads(conn.read_text())
        ok = _fluentfn("call", "BankAccount/alice", "open", "125", "--namespace", "clitest", env=env)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout) == 125
        stmt = _fluentfn("call", "BankAccount/alice", "statement", "--namespace", "clitest", env=env)
        assert json.loads(stmt.stdout)["balance"] == 125
        assert _fluentfn("call", "BankAccount/alice", "nope", "--namespace", "clitest", env=env).returncode == 3
        assert _fluentfn("call", "BankAccount/alice", "open", "{bad", "--namespace", "clitest", env=env).returncode == 2
        assert _fluentfn("call", "BankAccount/alice", "apply", "1", "--namespace", "clitest", env=env).returncode == 2
        assert _fluentfn("call", "BankAccount/alice", "open", '"x"', "--namespace", "clitest", env=env).returncode == 0
        status = _fluentfn("status", "--namespace", "clitest", env=env)
        assert status.returncode == 0 and "BankAccount" in status.stdout, status.stderr[-2000:]
        as_json = _fluentfn("status", "--json", "--namespace", "clitest", env=env)
        data = json.loads(as_json.stdout)
        assert "BankAccount" in data["type_names"] and data["hosts"] and data["counters"]["calls"] >= 1
        assert not any(k.startswith("~") for k in data["counters"])  # phase timings are in the breakdown
        opened = data["breakdown"]["BankAccount.open"]
        assert opened["calls"] >= 2 and {"queue_ms", "run_ms", "write_ms"} <= set(opened)
        top = _fluentfn("top", "--once", "--namespace", "clitest", env=env)
        assert top.returncode == 0 and "BankAccount" in top.stdout and "calls/s" in top.stdout, top.stderr[-2000:]
        frame = json.loads(_fluentfn("top", "--once", "--json", "--interval", "0.2", "--namespace", "clitest",
                                     env=env).stdout)  # fmt: skip
        (bank,) = [t for t in frame["types"] if t["type"] == "BankAccount"]
        assert bank["hosts"] >= 1 and bank["calls"] >= 2 and bank["p99_ms"] > 0 and frame["hosts"]
        listed = _fluentfn("ls", "BankAccount", "--namespace", "clitest", env=env)
        assert listed.returncode == 0 and "alice" in listed.stdout.split(), listed.stderr[-2000:]
        assert _fluentfn("rm", "BankAccount", "--namespace", "clitest", env=env).returncode == 2  # no key: bad input
        assert _fluentfn("rm", "BankAccount/alice", "--namespace", "clitest", env=env).returncode == 0
        assert "alice" not in _fluentfn("ls", "BankAccount", "--namespace", "clitest", env=env).stdout.split()
        assert _fluentfn("--help", env=env).returncode == 0
    finally:
        serve.terminate()
        serve.wait(60)
    assert not conn.exists()


@pytest.mark.parametrize("content", ["{not json", "[]", '{"gateway": 5}'])
def test_a_corrupt_serve_record_is_one_clear_error(tmp_path: Path, content: str) -> None:
    env = {**os.environ, "FLUENTFN_HOME": str(tmp_path)}
    record = tmp_path / "broken" / "serve.json"
    record.parent.mkdir()
    record.write_text(content)
    out = _fluentfn("status", "--namespace", "broken", env=env, timeout=60)
    assert out.returncode == 4, out.stderr
    assert "not a readable `fluentfn serve` record" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("app", "says"),
    [
        ("no/such/app.py", "no such file: no/such/app.py"),
        ("no_such_fluentfn_app", "no module named 'no_such_fluentfn_app'"),
        ("json.no_such_part", "no module named 'json.no_such_part'"),
        (".relative", "is not a module name or a .py file"),
    ],
)
def test_serve_an_app_that_is_not_there_is_one_clear_error(tmp_path: Path, app: str, says: str) -> None:
    # refused before anything starts (no Ray, no gateway, no serve record), exit 2
    env = {**os.environ, "FLUENTFN_HOME": str(tmp_path)}
    out = _fluentfn("serve", app, "--namespace", "absent", env=env, timeout=60)
    assert out.returncode == 2, out.stderr
    text = " ".join(out.stderr.replace("\u2502", " ").split())  # (the message may wrap inside rich's box)
    assert says in text and "Traceback" not in out.stderr
    assert not (tmp_path / "absent" / "serve.json").exists()


def test_serve_an_app_whose_own_import_fails_shows_that_error(tmp_path: Path) -> None:
    # a dependency the app lacks is the app's error, with its traceback, not "no such APP"
    app = tmp_path / "needs_missing.py"
    app.write_text("import no_such_dependency_of_the_app\n")
    env = {**os.environ, "FLUENTFN_HOME": str(tmp_path)}
    out = _fluentfn("serve", str(app), "--namespace", "absent", env=env, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "no_such_dependency_of_the_app" in out.stderr and "Invalid value for APP" not in out.stderr
