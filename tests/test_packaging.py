"""The main job works from a built wheel, run from an empty folder: the package ships
its case studies (``fluentfn.examples``) and never reaches into the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[1]
CASES = ("messaging", "training", "serving", "leader", "bank")


def test_demo_runs_from_a_wheel(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(".venv", ".git", ".whl", "bench-out", "fluentfn-demo")
    )
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    site = tmp_path / "site"
    with zipfile.ZipFile(next(wheels.glob("fluentfn-*.whl"))) as whl:
        whl.extractall(site)
    for case in CASES:
        assert (site / "fluentfn" / "examples" / f"{case}.py").is_file(), case
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(site), FLUENTFN_HOME=str(tmp_path / "home"))
    where = subprocess.run(
        [sys.executable, "-c", "import fluentfn; print(fluentfn.__file__)"], cwd=empty, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr  # the wheel, not the checkout
    out = tmp_path / "demo-out"
    demo = subprocess.run(
        [sys.executable, "-m", "fluentfn.cli", "demo", "--out", str(out)], cwd=empty, env=env,
        capture_output=True, text=True, timeout=800,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    assert (out / "demo.png").is_file() and (out / "demo.json").is_file()
