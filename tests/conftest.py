"""Shared fixtures: one embedded cluster for all integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("FLUENTFN_CALL_TIMEOUT_S", "60")

import fluentfn as ff
from fluentfn.testing import local_cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[ff.Cluster]:
    """The shared embedded cluster (local Ray + SQLite under a temporary FLUENTFN_HOME)."""
    with local_cluster(num_cpus=2) as c:
        yield c
