"""The same programs in sim mode and on the real stateful cluster reach the same final
states: the bank's audit, PageRank's ranking and gossip's conserved sum (sim mode runs in
a child process: one process holds one cluster)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fluentfn as ff

pytestmark = pytest.mark.timeout(300)

PROGRAM = """
import json, sys
sys.path.insert(0, sys.argv[2])
import fluentfn as ff
from test_sim_differential import _final_states
with ff.init(mode="sim", seed=int(sys.argv[1])):
    print(json.dumps(_final_states()))
"""


def _final_states() -> dict[str, Any]:
    from fluentfn.examples import bank, gossip, pagerank

    names = bank.open_accounts(10)
    rng = random.Random(1)
    acked = {f"t{i}" for i in range(60) if bank.random_transfer(names, rng, f"t{i}")}
    return {"bank": bank.audit(names, acked), "pagerank": pagerank.run(300, 1500, 5)["top"],
            "gossip_sum_kept": gossip.run(8, 3)["sum_kept"]}  # fmt: skip


def _in_sim(seed: int) -> dict[str, Any]:
    here = str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(seed), here], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return out


def test_the_examples_reach_the_same_final_states_in_sim_and_stateful_mode(cluster: ff.Cluster) -> None:
    real = _final_states()
    for seed in (1, 2):
        simulated = _in_sim(seed)
        assert simulated == real, (seed, simulated, real)
    assert real["bank"]["lost"] == 0 and real["bank"]["total"] == real["bank"]["expected_total"]
