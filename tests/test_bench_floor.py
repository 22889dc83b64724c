"""The activation benchmark's floor loop: run in a fresh interpreter, apart from fluentfn."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from fluentfn.bench import _floorloop, activation

pytestmark = pytest.mark.timeout(120)


def test_the_floor_loop_imports_only_the_standard_library() -> None:
    """Run as a script in a fresh interpreter, it must not load Ray, gRPC or fluentfn: their
    objects would slow its collector, which is what the fresh interpreter avoids."""
    tree = ast.parse(Path(_floorloop.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported, "the parse found no imports at all"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_the_floor_runs_in_a_fresh_interpreter_and_gives_a_rate() -> None:
    assert activation.fresh_floor(2_000, rounds=1) > 0
    assert _floorloop.floor(2_000) > 0  # the same loop in this process (the cost probe's floor)


def test_a_floor_run_that_fails_says_so() -> None:
    with pytest.raises(RuntimeError, match="the floor loop failed"):
        activation.fresh_floor(-1, rounds=0)  # statistics.median of nothing: the script exits 1


def test_the_benchmarks_cell_is_the_floor_loops_class() -> None:
    assert activation.Cell.cls is _floorloop.Cell  # the same work on both sides of the ratio
