"""``@ff.function`` runs: each call is a Ray task; errors and results use the wire codec."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from .._call import Outcome
from .._context import CURRENT, Context
from .._fit import wait_for_fit
from .._ioloop import IoLoop
from .._ref import Future
from ..errors import FluentError, FunctionTimeout, InvalidRequest, NotFound
from ..wire import codec
from ..wire.errors import describe_error, rebuild_error
from ..wire.records import read_record, record_of
from ._raycall import await_ray
from ._registry import pickle_by_value_if_local


def run_in_task(fn: Any, args_blob: bytes, mode: str) -> tuple[bool, bytes]:
    """The body of a function's Ray task: (True, result) or (False, wire Error)."""
    import ray

    ctx = ray.get_runtime_context()
    context = Context(
        node_id=ctx.get_node_id(),
        gpu_ids=tuple(int(g) for g in ray.get_gpu_ids()),
        mode=mode,
        chain_id=ctx.get_task_id() or "",
    )
    token = CURRENT.set(context)
    try:
        args, kwargs = codec.decode_args(args_blob)
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except BaseException as exc:
        return False, record_of(Outcome(error=describe_error(exc, getattr(fn, "__qualname__", "function"), user=True)))
    finally:
        CURRENT.reset(token)
    where = getattr(fn, "__qualname__", "function")
    try:
        return True, codec.encode(result)
    except FluentError as exc:
        error = InvalidRequest(f"the result of {where} ({type(result).__name__}) cannot be sent: {exc}")
        return False, record_of(Outcome(error=describe_error(error)))


class _TaskFuture(Future[Any]):
    """A function call's future. Waited on inside a Ray task (a function that calls a
    function), it waits in ``ray.get``, so Ray lends the task's CPU to others meanwhile:
    otherwise nested calls as deep as the cluster has CPUs wait for ever for a CPU that
    their own callers hold."""

    def __init__(self, objref: Any) -> None:
        super().__init__()
        self._objref = objref

    def result(self, timeout: float | None = None) -> Any:
        if not self.done() and _in_task():
            import ray

            start = time.monotonic()
            try:
                ray.get(self._objref, timeout=timeout)  # the outcome itself arrives through the loop (``_collect``)
            except ray.exceptions.RayError:
                pass  # a failed or unfinished task: ``_collect`` sets what the caller gets, read below
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - start))
        return super().result(timeout)


def _in_task() -> bool:
    """Whether this thread runs a Ray task (not the driver, not an actor, which keeps its CPUs)."""
    import ray

    if not ray.is_initialized():
        return False
    ctx = ray.get_runtime_context()
    return ctx.get_task_id() is not None and ctx.get_actor_id() is None


def _failure(data: bytes) -> BaseException:
    """The exception a function's failure record describes."""
    error = read_record(data)[1].error
    return rebuild_error(error) if error is not None else InvalidRequest("a function failure record without an error")


async def _await(aw: Any) -> Any:
    return await aw


def _make_task(fn: Any, mode: str) -> Any:
    def fluentfn_task(args_blob: bytes) -> tuple[bool, bytes]:
        from fluentfn.runtime._functions import run_in_task

        return run_in_task(fn, args_blob, mode)

    fluentfn_task.__qualname__ = f"fluentfn:{getattr(fn, '__qualname__', 'function')}"
    return fluentfn_task


class FunctionRunner:
    """Submits function calls as Ray tasks and turns their outcomes into ``ff.Future``s."""

    def __init__(
        self, *, mode: str, io: IoLoop, allow_gpus: bool = True, ray_extra: dict[str, Any] | None = None
    ) -> None:
        self._mode = mode
        self._io = io
        self._allow_gpus = allow_gpus
        self._ray_extra = ray_extra or {}
        self._remotes: dict[int, tuple[Any, Any]] = {}
        self._fits: set[int] = set()  # functions a node of the cluster was seen to fit

    def _remote(self, fn: Any) -> Any:
        import ray

        from ..placement import ray_options

        cached = self._remotes.get(id(fn))
        if cached is not None and cached[0] is fn:
            return cached[1]
        if getattr(fn, "spec", None) is None:
            raise NotFound(f"{fn!r} is not an @ff.function")
        pickle_by_value_if_local(fn.fn)
        opts = ray_options(fn.spec)
        opts["num_cpus"] = 1 if fn.spec.num_cpus is None else fn.spec.num_cpus
        remote = ray.remote(_make_task(fn.fn, self._mode)).options(max_retries=0, **opts, **self._ray_extra)
        self._remotes[id(fn)] = (fn, remote)
        return remote

    def submit(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        blob = codec.encode_args(args, kwargs)
        objref = self._remote(fn).remote(blob)
        out: Future[Any] = _TaskFuture(objref)
        self._io.submit(self._collect(objref, fn, out))
        return out

    async def _unplaceable(self, fn: Any) -> FluentError | None:
        """Why no node of the cluster can ever run ``fn``, or None (see ``wait_for_fit``)."""
        from ..placement import resource_demand

        demand = resource_demand(fn.spec)
        demand["CPU"] = 1 if fn.spec.num_cpus is None else fn.spec.num_cpus
        try:
            await wait_for_fit(demand, f"function {fn.name}")
        except FluentError as exc:
            return exc
        self._fits.add(id(fn))
        return None

    async def _collect(self, objref: Any, fn: Any, out: Future[Any]) -> None:
        import ray

        if id(fn) not in self._fits:
            why = await self._unplaceable(fn)
            if why is not None:
                ray.cancel(objref, force=True)
                out.set_exception(why)
                return
        try:
            if fn.max_duration_s:
                ok, data = await asyncio.wait_for(await_ray(objref), fn.max_duration_s)
            else:
                ok, data = await await_ray(objref)
        except TimeoutError:
            ray.cancel(objref, force=True)
            out.set_exception(FunctionTimeout(f"{fn.name} ran past its {fn.max_duration_s} s limit and was killed"))
            return
        except BaseException as exc:
            out.set_exception(exc)
            return
        try:
            if ok:
                out.set_result(codec.decode(data))
            else:
                out.set_exception(_failure(data))
        except BaseException as exc:
            out.set_exception(exc)
