"""Loading the paper's case studies from the repository's ``examples/`` directory."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..errors import FluentError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the benchmarks run the examples themselves)."""
    module_name = f"fluentfn_examples.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = EXAMPLES / f"{name}.py"
    if not path.exists():
        raise FluentError(f"{path} not found: run from a checkout of fluentfn (pip install -e .)")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
