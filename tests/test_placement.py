"""Key -> shard mapping: stable across processes, uniform, and consistent on growth."""

from __future__ import annotations

import collections
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluentfn.errors import FluentError
from fluentfn.placement import ActorOptions, ResourceSpec, jump_hash, ray_options, shard_for


def test_stable_across_processes() -> None:
    keys = [f"user-{i}" for i in range(50)]
    here = [shard_for(k, 7) for k in keys]
    code = "from fluentfn.placement import shard_for; print([shard_for(f'user-{i}', 7) for i in range(50)])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}
    )
    assert out.stdout.strip() == str(here)


def test_uniform() -> None:
    counts = collections.Counter(shard_for(f"k{i}", 8) for i in range(80_000))
    assert set(counts) == set(range(8))
    assert max(counts.values()) / min(counts.values()) < 1.1


def test_growth_moves_few_keys() -> None:
    keys = [f"k{i}" for i in range(10_000)]
    moved = sum(shard_for(k, 8) != shard_for(k, 9) for k in keys)
    assert moved < 10_000 * 0.2  # ideal is 1/9


@given(st.text(max_size=50), st.integers(min_value=1, max_value=1000))
def test_in_range(key: str, n: int) -> None:
    assert 0 <= shard_for(key, n) < n


def test_jump_hash_rejects_zero_buckets() -> None:
    with pytest.raises(ValueError):
        jump_hash(1, 0)


def test_options_validation() -> None:
    with pytest.raises(FluentError):
        ActorOptions(name="a/b").validate()
    with pytest.raises(FluentError):
        ActorOptions(name="A", persist="sometimes").validate()
    with pytest.raises(FluentError):
        ActorOptions(name="A", shards=0).validate()
    with pytest.raises(FluentError):
        ResourceSpec(num_gpus=1.5).validate()


def test_ray_options() -> None:
    assert ray_options(ResourceSpec()) == {"num_cpus": 0}
    opts = ray_options(ResourceSpec(num_cpus=1, num_gpus=0.5, resources={"disk": 1}, accelerator_type="H100"))
    assert opts == {"num_cpus": 1, "num_gpus": 0.5, "resources": {"disk": 1}, "accelerator_type": "H100"}


def test_node_local_sqlite_is_refused_on_several_nodes() -> None:
    import pytest

    from fluentfn.errors import FluentError
    from fluentfn.runtime._raystart import check_store_fits

    default = "sqlite:////home/u/.fluentfn/default/state.db"
    check_store_fits(None, default, 1)  # one node: the embedded default is right
    with pytest.raises(FluentError, match="2 nodes"):
        check_store_fits(None, default, 2)
    check_store_fits(default, default, 3)  # said explicitly: the operator's choice
    check_store_fits(None, "redis://r:6379/0", 3)
