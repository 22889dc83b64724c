"""Loading the paper's case studies: ``examples/`` of the repository, shipped in the
package as ``fluentfn.examples`` (a link to the same files), so the demo and the
benchmarks work from an installed wheel as well as from a checkout."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import FluentError


def load(name: str) -> ModuleType:
    """The case study ``examples/<name>.py`` (the benchmarks run the examples themselves)."""
    try:
        return importlib.import_module(f"fluentfn.examples.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"fluentfn.examples.{name}" and exc.name != "fluentfn.examples":
            raise
        raise FluentError(f"no case study {name!r} in fluentfn.examples") from None
