"""How actor types and functions are shipped to the cluster: by name, with their code."""

from __future__ import annotations

import sys

import cloudpickle

from ..api import ActorType
from ..placement import ActorOptions


def pickle_by_value_if_local(cls: type) -> None:
    """Ship user code by value unless it is installed (workers may not import it)."""

    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None) or ""
    if module is not None and cls.__module__ != "__main__" and "site-packages" not in path:
        root = cls.__module__.split(".")[0]
        target = sys.modules.get(root) or module
        if root != "fluentfn" and target.__name__ not in cloudpickle.list_registry_pickle_by_value():
            cloudpickle.register_pickle_by_value(target)


def registration(at: ActorType) -> tuple[str, bytes, ActorOptions, frozenset[str]]:
    """What the directory stores for a type: name, pickled (class, options), options, methods."""
    pickle_by_value_if_local(at.cls)
    blob = cloudpickle.dumps((at.cls, at.options))
    return at.name, blob, at.options, frozenset(at.definition.method_names)
