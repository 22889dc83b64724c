"""After a full cluster restart, due reminders fire without anything calling their type."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

APP = """
import sys, time
from pathlib import Path
import fluentfn as ff

@ff.actor(name="Alarm", shards=2)
class Alarm:
    def arm(self, delay, path):
        return ff.context().schedule(delay, "ring", path)

    def ring(self, path):
        with open(path, "a") as f:
            f.write(ff.context().key + "\\n")

phase, mode, store, path, delay = sys.argv[1:6]
with ff.init(mode=mode, store=None if store == "-" else store, namespace="restart"):
    if phase == "arm":
        for key in ("a", "b", "c"):
            Alarm[f"{key}{delay}"].arm(float(delay), path)  # due after this cluster is gone
    else:
        deadline = time.time() + 30  # nothing calls Alarm here: the restarted cluster must
        while time.time() < deadline:
            if Path(path).exists() and len(Path(path).read_text().split()) >= 3:
                break
            time.sleep(0.2)
print("DONE")
"""


@pytest.mark.timeout(480)  # two arming runs on a busy machine, the wait, the run after
@pytest.mark.parametrize("kind", ["sqlite", "redis", "faas"])
def test_due_reminders_fire_after_a_full_restart(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    app = tmp_path / "alarm_app.py"
    app.write_text(APP)
    store = request.getfixturevalue("redis_url").replace("/0", "/3") if kind == "redis" else "-"
    mode = "faas" if kind == "faas" else "stateful"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["FLUENTFN_HOME"] = str(tmp_path / "home")

    def phase(name: str, rang: Path, delay: int) -> None:
        out = subprocess.run(
            [sys.executable, str(app), name, mode, store, str(rang), str(delay)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert out.returncode == 0 and "DONE" in out.stdout, out.stderr[-3000:]

    for delay in (15, 45):  # seconds: the second try is for a machine too busy to stop a cluster in 15
        rang = tmp_path / f"rang-{delay}.txt"
        armed = time.monotonic()
        phase("arm", rang, delay)  # schedules three reminders, then the whole cluster (Ray included) stops
        if not rang.exists():
            break  # none came due before the cluster was gone: the premise holds
    else:
        pytest.fail("the reminders came due before the arming cluster had stopped, even 45 s later")
    time.sleep(max(0.0, armed + delay + 0.5 - time.monotonic()))  # they are due while no cluster runs
    phase("wait", rang, delay)
    assert sorted(rang.read_text().split()) == [f"a{delay}", f"b{delay}", f"c{delay}"]
