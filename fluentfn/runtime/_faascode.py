"""The code a FaaS invocation runs, shipped once per process: an actor type's pickled
class (registered with the directory when this process defines it, else fetched from it)
and a function's pickled body, each put in Ray's object store once and passed by ref."""

from __future__ import annotations

from typing import Any

import cloudpickle

from .._clusterconfig import ClusterConfig
from ..api import known_type
from ..errors import NotFound
from ._raycall import get_ray
from ._registry import pickle_by_value_if_local, registration


class Codebase:
    """This process's shipped code, by type name and by function."""

    def __init__(self, directory: Any, config: ClusterConfig) -> None:
        self._directory = directory
        self._config = config
        self._code: dict[str, tuple[Any, Any]] = {}

    def directory(self) -> Any:
        """The cluster's directory actor (looked up on first use inside invocations)."""
        if self._directory is None:
            import ray

            from .._tables import DIRECTORY_NAME, ray_namespace

            self._directory = ray.get_actor(DIRECTORY_NAME, namespace=ray_namespace(self._config.namespace))
        return self._directory

    def actor(self, type_name: str) -> tuple[Any, Any]:
        """(pickled class ref, options) of a type; registers local types with the directory."""
        import ray

        cached = self._code.get(type_name)
        if cached is not None:
            return cached
        local = known_type(type_name)
        directory = self.directory()
        if local is not None:
            if local.colocate_target is not None:
                self.actor(local.colocate_target.name)
            entry_args = registration(local)
            get_ray(directory.register.remote(*entry_args))
            blob, options = entry_args[1], local.options
        else:
            blob = get_ray(directory.type_blob.remote(type_name))
            if blob is None:
                raise NotFound(f"no actor type {type_name!r} is registered in this cluster")
            _, options = cloudpickle.loads(blob)
        entry = (ray.put(blob), options)
        self._code[type_name] = entry
        return entry

    def function(self, fn: Any) -> Any:
        """A function's pickled body, by ref (put once per function object)."""
        import ray

        cached = self._code.get(f"fn:{id(fn)}")
        if cached is not None and cached[1] is fn:
            return cached[0]
        pickle_by_value_if_local(fn.fn)
        ref = ray.put(cloudpickle.dumps(fn.fn))
        self._code[f"fn:{id(fn)}"] = (ref, fn)
        return ref
