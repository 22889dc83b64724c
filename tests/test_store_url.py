"""A store URL that names no store, or a store that cannot be opened, is one clear error
from ``ff.init`` before Ray starts (not hosts that never come up, and callers that wait)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fluentfn.errors import FluentError
from fluentfn.state import check_opens, check_url

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("url", ["garbage://x", "sqlite:///", "sqlite://relative.db", "redis://", "", 5, None])
def test_a_url_that_names_no_store_is_refused(url: object) -> None:
    with pytest.raises(FluentError, match="unknown store"):
        check_url(url)


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(FluentError) as caught:
        check_url("redsi://:hunter2@127.0.0.1:6379/0")  # a typo in the scheme
    assert "hunter2" not in str(caught.value) and "unknown store" in str(caught.value)


def test_a_store_that_cannot_be_opened_says_why(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(FluentError, match="cannot be opened"):
        check_opens(f"sqlite:///{blocker}/state.db")  # its directory would be a file
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        with pytest.raises(FluentError, match="cannot be opened") as caught:
            check_opens(f"redis://:hunter2@127.0.0.1:{closed.getsockname()[1]}/0")
    assert "hunter2" not in str(caught.value)
    check_opens(f"sqlite:///{tmp_path}/fine/state.db")  # made, opened, closed
    assert (tmp_path / "fine" / "state.db").exists()


_INIT = """
import json, sys, fluentfn as ff, ray
out = {}
for url in sys.argv[1:]:
    try:
        ff.init(store=url)
        out[url] = "started"
        ff.shutdown()
    except ff.FluentError as exc:
        out[url] = str(exc)
out["ray"] = ray.is_initialized()
print(json.dumps(out))
"""


def test_init_refuses_such_a_store_before_ray_starts(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    urls = ["garbage://x", f"sqlite:///{blocker}/state.db"]
    done = subprocess.run(
        [sys.executable, "-c", _INIT, *urls], capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "unknown store 'garbage://x'" in out[urls[0]]
    assert "cannot be opened" in out[urls[1]] and "a-file" in out[urls[1]]
    assert out["ray"] is False, "Ray was started for a cluster that could not have run"
