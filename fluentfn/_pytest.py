"""fluentfn's pytest plugin: the ``ff_sim`` fixture, a simulated cluster per test (sim
mode: virtual time, every identity in this process). ``@pytest.mark.ff_seed(N)`` picks
its seed (0 otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ff_seed(n): the seed of the ff_sim fixture's simulation")


@pytest.fixture
def ff_sim(request: pytest.FixtureRequest) -> Iterator[Any]:
    marker = request.node.get_closest_marker("ff_seed")
    seed = int(marker.args[0]) if marker is not None and marker.args else 0
    from .testing import sim  # here: a session that never asks for it imports nothing of fluentfn's runtime

    with sim(seed=seed) as simulation:
        yield simulation
