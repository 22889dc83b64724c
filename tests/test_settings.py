"""Every FLUENTFN_* setting is read in one module, documented in the README, and checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fluentfn import _config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(60)


def _names_in(text: str) -> set[str]:
    return set(re.findall(r"FLUENTFN_[A-Z_]+[A-Z]", text))


def test_every_setting_the_code_reads_is_declared_and_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    used: set[str] = set()
    for path in (ROOT / "fluentfn").rglob("*.py"):
        if path.name not in ("_config.py", "testing.py"):  # testing.py sets FLUENTFN_HOME and restores it
            text = path.read_text()
            used |= {n for n in _names_in(text) if f'environ.get("{n}"' in text or f"environ['{n}'" in text}
            assert 'os.environ.get("FLUENTFN_' not in text, f"{path} reads a setting outside _config"
    assert used <= set(_config.SETTINGS)
    for name in _config.SETTINGS:
        assert f"`{name}`" in readme, f"{name} is not in the README's settings table"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FLUENTFN_MAILBOX_LIMIT", "lots", "is not an integer"),
        ("FLUENTFN_CALL_TIMEOUT_S", "nan", "must be finite"),
        ("FLUENTFN_HOST_MAX_LIVE", "-5", "at least 1"),
        ("FLUENTFN_SQLITE_SYNC", "sometimes", "must be NORMAL"),
        ("FLUENTFN_CALL_TIMEOUT_S", "1e10", "at most 86400"),
        ("FLUENTFN_TURN_NICE", "20", "at most 19"),
        ("FLUENTFN_TURN_NICE", "-1", "at least 0"),
        ("FLUENTFN_SWITCH_INTERVAL_MS", "-0.5", "at least 0"),
        ("FLUENTFN_SWITCH_INTERVAL_MS", "inf", "must be finite"),
    ],
)
def test_a_malformed_setting_is_one_clear_error(name: str, value: str, message: str) -> None:
    env = {**os.environ, name: value}
    code = "import fluentfn, fluentfn._config as c; c.sqlite_sync()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=50)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("fluentfn.errors.FluentError") and name in last and message in last, last
