"""Starting an embedded Ray: a start that fails says what it left behind (the GCS's
state and logs), so a failure on a busy machine can be read afterwards."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import ray

from fluentfn.errors import FluentError
from fluentfn.runtime import _raystart
from fluentfn.runtime._raystart import start_local_ray, startup_diagnosis

pytestmark = pytest.mark.timeout(60)


def _session(root: Path, name: str, logs: dict[str, str], mtime: float) -> None:
    (root / name / "logs").mkdir(parents=True)
    for file, text in logs.items():
        (root / name / "logs" / file).write_text(text)
    os.utime(root / name, (mtime, mtime))


def test_the_diagnosis_names_the_newest_session_and_the_tail_of_its_gcs_logs(tmp_path: Path) -> None:
    _session(tmp_path, "session_2026-01-01_00-00-00_1", {"gcs_server.err": "old trouble"}, 1_000)
    _session(tmp_path, "session_2026-01-02_00-00-00_2", {"gcs_server.err": "x" * 500 + "\nbind failed"}, 2_000)
    said = startup_diagnosis(tmp_path)
    assert "newest session session_2026-01-02_00-00-00_2" in said
    assert "gcs_server.err: " in said and said.endswith("gcs_server.out: none")
    assert "bind failed" in said and "old trouble" not in said
    assert "x" * 301 not in said  # a tail, not the whole log
    assert "Ray daemons: " in said


def test_the_diagnosis_of_a_machine_that_never_ran_ray(tmp_path: Path) -> None:
    said = startup_diagnosis(tmp_path / "nothing-here")
    assert "newest session no session" in said
    assert "gcs_server.err: none" in said


def test_a_start_that_keeps_failing_reports_each_try_and_what_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _session(tmp_path / "ray", "session_2026-01-02_00-00-00_2", {"gcs_server.out": "started, then stuck"}, 2_000)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    tries: list[dict[str, Any]] = []

    def init(**kwargs: Any) -> None:
        tries.append(kwargs)
        raise RuntimeError("Timed out waiting for file /tmp/ray/x/gcs_server_port_1")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)  # the suite's shared Ray session stays up
    monkeypatch.setattr(_raystart.time, "sleep", lambda s: None)
    with caplog.at_level(logging.WARNING, logger="fluentfn"), pytest.raises(FluentError) as failed:
        start_local_ray(num_cpus=1, num_gpus=0, namespace="ns", level=logging.ERROR)
    assert len(tries) == 3 and all(t["address"] == "local" for t in tries)
    assert "could not start a local Ray: Timed out waiting for file" in str(failed.value)
    assert "started, then stuck" in str(failed.value)
    warned = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
    assert len(warned) == 2 and "try 1 of 3" in warned[0] and "started, then stuck" in warned[1]


def test_a_failure_that_is_not_slowness_is_not_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    tries: list[int] = []

    def init(**kwargs: Any) -> None:
        tries.append(1)
        raise ValueError("num_cpus must be a number")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(FluentError, match="num_cpus must be a number; Ray daemons"):
        start_local_ray(num_cpus=1, num_gpus=0, namespace="ns", level=logging.ERROR)
    assert tries == [1]
