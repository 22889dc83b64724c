"""The FaaS baseline runtime: the same application code, run the way a FaaS platform runs it.

Every actor method call and function call is an invocation, run by the platform
(``_faasplatform``) in an execution environment of its type: a warm one when one is
idle, a cold one otherwise. The caller writes the request message to the store; the
invocation reads it, loads the identity's state from the store, runs the method,
writes the state back with a version check (a conflict re-runs the invocation, so
concurrent calls lose no update) and writes its result to the store, where the caller
reads it. The platform only says "done"; no data passes between functions directly.
An invocation past ``max_duration_s`` is killed.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
import time
from typing import Any

from .._call import Call, Outcome
from .._clusterconfig import ClusterConfig
from .._context import current, request_id_here
from .._ioloop import IoLoop
from .._phases import TALLY
from .._ref import DELETE_METHOD, KEYED_PREFIX, ActorRef, Future
from .._router import Target
from .._stats import COUNTERS
from .._tracing import enabled as tracing_on
from .._tracing import parent_for
from ..api import check_tell
from ..errors import FluentError, Unavailable, no_method
from ..state import Store, open_store
from ..state._emulated import MeteredStore
from ..transport._caller import DELIVER, Intercept, Tap, current_tap, name_of
from ..wire import codec
from ..wire.errors import describe_error
from ._faascode import Codebase
from ._faasplatform import PLATFORM_NAME
from ._faasresults import Results, Started
from ._faastimer import outbox_row, run_reminders
from ._journal import Journal
from ._raycall import await_ray, get_ray

PLATFORM = Target("faas-platform")  # where the lab's tap sees FaaS invocations go
log = logging.getLogger("fluentfn.faas")
_platforms: dict[str, Any] = {}  # namespace -> this process's handle on its platform actor


def _metered(config: ClusterConfig, counters: dict[str, int]) -> MeteredStore:
    profile = config.faas
    return MeteredStore(
        open_store(config.store),
        counters,
        profile.storage_latency_ms,
        profile.bandwidth_mbps,
        profile.record_latency_ms,
    )


def platform_handle(config: ClusterConfig) -> Any:
    """This process's handle on the cluster's platform actor."""
    handle = _platforms.get(config.namespace)
    if handle is None:
        import ray

        from .._tables import ray_namespace

        handle = _platforms[config.namespace] = ray.get_actor(PLATFORM_NAME, namespace=ray_namespace(config.namespace))
    return handle


class FaasRuntime:
    """The ``Invoker`` of FaaS mode (in the driver and inside invocations)."""

    mode = "faas"

    def __init__(
        self,
        *,
        directory: Any,
        config: ClusterConfig,
        io: IoLoop | None,
        counters: dict[str, int] | None = None,
        store: Store | None = None,
    ) -> None:
        self._codebase = Codebase(directory, config)
        self.config = config
        self.token: str = config.token
        self.profile = config.faas
        self._io = io
        self.counters = counters if counters is not None else dict.fromkeys(COUNTERS, 0)
        self.store = store if store is not None else _metered(config, self.counters)
        self.results = Results(self.store, io)
        self._remotes: dict[tuple[float | None, float], Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._platform_ref: Any = None
        # Inside an actor invocation: its nested outcomes across attempts, its held tells.
        self.journal: Journal | None = None
        self.invocation = ""  # inside an invocation: its request id (its nested calls' parent)

    # -- the platform ---------------------------------------------------------------------

    def _platform(self) -> Any:
        if self._platform_ref is None:
            self._platform_ref = platform_handle(self.config)
        return self._platform_ref

    def _check_gpus(self, what: str, num_gpus: float, accelerator: str | None) -> None:
        if (num_gpus or accelerator) and not self.profile.allow_gpus:
            raise FluentError(
                f"{what} asks for GPUs, but FaaS mode has none (the paper's FaaS platforms offered no "
                "GPUs); pass ff.FaasProfile(allow_gpus=True) to allow them"
            )

    def _start(
        self,
        kind: str,
        target: Any,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        one_way: bool = False,
        request_id: str = "",
        timeout_s: float | None = None,
        caller: str | None = None,
        payload: bytes | None = None,
    ) -> Started:
        """Write the request to the store and hand the invocation to the platform (as the
        lab's faults say, when any are in force: lost, delayed or sent twice).
        ``request_id``: the call's id when the caller chose it (derived from its turn, or
        a client's keyed id: a repeat is answered from its recorded reply); ``timeout_s``:
        ``with_timeout``'s, or what a client's deadline leaves (the caller stops waiting
        then, as in stateful mode); ``payload``: the arguments, already encoded."""
        ctx = current()
        rid = request_id or request_id_here()
        cap = self.profile.max_duration_s
        if kind == "actor":
            assert isinstance(target, ActorRef)
            code, options = self._codebase.actor(target.type_name)
            spec = options.spec
            self._check_gpus(f"actor type {target.type_name}", spec.num_gpus, spec.accelerator_type)
            name, key = target.type_name, target.key
        else:
            spec = target.spec
            self._check_gpus(f"function {target.name}", spec.num_gpus, spec.accelerator_type)
            code = self._codebase.function(target)
            name, key = target.name, ""
            if target.max_duration_s:
                cap = min(cap, target.max_duration_s)
        payload = codec.encode_args(args, kwargs) if payload is None else payload
        parent = ctx if ctx is not None and not one_way else None
        deadline = parent.deadline if parent and parent.deadline else 0.0
        if timeout_s is not None and not one_way:
            deadline = min(deadline or math.inf, time.time() + timeout_s)
        self.store.put(f"msg:{rid}", payload)
        self.counters["messages_via_storage"] += 1
        call = Call(  # its arguments travel through the store, as the paper's platforms had them
            type_name=name,
            key=key,
            method=method,
            request_id=rid,
            # a tell starts a chain of its own, with its own deadline (its sender does not wait)
            call_chain=tuple(parent.chain) if parent else (),
            chain_id=parent.chain_id if parent and parent.chain_id else rid,
            deadline=deadline,  # the cluster's clock: invocations run on its nodes
            one_way=one_way,
            caller=caller if caller is not None else (ctx.address or "") if ctx is not None else "",
            trace=parent_for(ctx._times if ctx is not None else None) if tracing_on() else "",
        )
        if ctx is not None and ctx._times is not None and ctx._times.span is not None:
            ctx._times.called(f"{name}/{key}" if key else name, method)
        call.arrived = time.time()  # FaaS: the wall clock it was handed over at (its queue time starts)
        # the invocation waiting for this one's result: if it is gone (killed at its cap),
        # nobody will take the result, and it is not left in the store
        waiting = self.invocation if not one_way else ""
        gpus = (spec.num_gpus, spec.accelerator_type) if self.profile.allow_gpus else (0.0, None)
        args_ = (f"{kind}:{name}", gpus, kind, code, call, waiting, cap)
        tap = current_tap()
        if tap is None:  # the lab's faults are off: nothing more on the way
            return Started(rid, self._platform().invoke.remote(*args_), cap, deadline)
        return self._tapped(tap, call, args_, payload, cap, deadline)

    def _tapped(
        self, tap: Tap, call: Call, args: tuple[Any, ...], payload: bytes, cap: float, deadline: float
    ) -> Started:
        """Send ``call`` as the lab's tap says: lost, delayed (a tell leaves later while its
        sender goes on; a call's caller waits that long first) or delivered twice."""
        verdict = tap.sending(call, PLATFORM)
        if verdict is False:
            self.results.discard(call.request_id)
            raise Unavailable(f"{name_of(call)}: message dropped by a tap")
        how = verdict if isinstance(verdict, Intercept) else DELIVER
        if how.silent:
            return Started(call.request_id, None, cap, deadline)

        def received() -> bool:
            return tap.received(call, PLATFORM, None, None) is not False

        def send() -> Any:
            for copy in range(1, how.copies):  # a second delivery: its own message row, the same request id
                row = f"{call.request_id}~{copy}"
                self.store.put(f"msg:{row}", payload)
                self._platform().invoke.remote(*args, row)
            return self._platform().invoke.remote(*args)

        if how.delay_s and call.one_way:
            timer = threading.Timer(how.delay_s, send)
            timer.daemon = True
            timer.start()
            return Started(call.request_id, None, cap, deadline)
        if how.delay_s:
            time.sleep(how.delay_s)
        return Started(call.request_id, send(), cap, deadline, kept=received)

    # -- Invoker ---------------------------------------------------------------------------

    def call(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Any:
        rid = request_id_here()

        def run() -> Any:
            t0 = time.perf_counter()
            try:
                return self.results.wait(
                    self._start("actor", ref, method, args, kwargs, request_id=rid, timeout_s=timeout_s)
                )
            finally:
                TALLY.observe(f"{ref.type_name}.{method}", (("call", time.perf_counter() - t0),))

        return run() if self.journal is None else self.journal.run(rid, run)

    def submit(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Future[Any]:
        return self._journaled_future("actor", ref, method, args, kwargs, timeout_s)

    def _journaled_future(
        self,
        kind: str,
        target: Any,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout_s: float | None = None,
    ) -> Future[Any]:
        rid = request_id_here()
        journal = self.journal
        found = journal.recorded(rid) if journal is not None else None
        if found is not None:  # an earlier attempt's outcome
            out: Future[Any] = Future()
            if found[0]:
                out.set_exception(found[1])
            else:
                out.set_result(found[1])
            return out
        fut = self.results.future(self._start(kind, target, method, args, kwargs, request_id=rid, timeout_s=timeout_s))
        if journal is not None:
            fut.add_done_callback(lambda f: journal.record(rid, f.exception() is not None, f.exception() or f.result()))
        return fut

    async def call_async(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        rid = request_id_here()  # here: the executor thread does not see the turn's context
        found = self.journal.recorded(rid) if self.journal is not None else None
        if found is not None:
            if found[0]:
                raise found[1]
            return found[1]
        try:
            context = contextvars.copy_context()  # the running turn's (its chain and deadline)
            started = await loop.run_in_executor(
                None,
                context.run,
                lambda: self._start("actor", ref, method, args, kwargs, request_id=rid, timeout_s=timeout_s),
            )
            value = await self.results.wait_async(started)
        except BaseException as exc:
            if self.journal is not None:
                self.journal.record(rid, True, exc)
            raise
        if self.journal is not None:
            self.journal.record(rid, False, value)
        return value

    def keys(self, type_name: str, prefix: str, limit: int | None) -> list[str]:
        return self.store.keys(type_name, prefix, limit)

    def delete(self, ref: ActorRef) -> None:
        """Nothing lives in memory between invocations: removing the rows is all."""
        self.store.delete_identity(ref.address)

    def tell(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> None:
        check_tell(ref.type_name, method, args, kwargs)
        rid = request_id_here()
        ctx = current()
        if self.journal is None or ctx is None or ctx.address is None:
            self._start("actor", ref, method, args, kwargs, one_way=True, request_id=rid)
            return
        payload = codec.encode_args(args, kwargs)  # refused now, inside the turn, as on a host
        sender = ctx.address

        # sent once this attempt's write commits; its outbox row is written with that write
        self.journal.hold(
            lambda: self._tell_from(sender, rid, ref.address, method, payload),
            outbox_row(sender, rid, ref.address, method, payload, self.profile.max_duration_s),
        )

    def _tell_from(self, sender: str, rid: str, address: str, method: str, payload: bytes) -> Started:
        """Send a turn's tell ``rid`` (its arguments encoded) to the identity at ``address``."""
        ref = ActorRef(*address.split("/", 1))
        return self._start("actor", ref, method, (), {}, one_way=True, request_id=rid, caller=sender, payload=payload)

    def run_function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        return self._journaled_future("fn", fn, "", args, kwargs)

    async def reminder_loop(self) -> None:
        """Fire due reminders as invocations (what a FaaS platform's scheduler does)."""
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)  # close() stops it with the firings it started

        def start(ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Started:
            # a reminder is the identity's message to itself (as a host's timer is): no
            # partition between the identity and a client cuts it off
            return self._start("actor", ref, method, args, kwargs, caller=ref.address)

        await run_reminders(self.store, start, self.results, self._tasks, self.profile, self.counters, self._tell_from)

    async def forward(self, call: Call) -> Outcome | None:
        """Run a call that arrived at the gateway (errors become replies)."""
        loop = asyncio.get_running_loop()
        try:
            args, kwargs = codec.decode_args(call.args)
            ref = ActorRef(call.type_name, call.key)
            keyed = call.request_id if call.request_id.startswith(KEYED_PREFIX) else ""
            if call.method == DELETE_METHOD:
                await loop.run_in_executor(None, self.delete, ref)
                return None if call.one_way else Outcome(seq=call.seq, value=codec.encode(None))
            remaining = max(0.001, call.deadline - time.time()) if call.deadline else None

            def start() -> Started:  # the client's deadline bounds its wait here too
                return self._start(
                    "actor", ref, call.method, args, kwargs, one_way=call.one_way, request_id=keyed, timeout_s=remaining
                )

            started = await loop.run_in_executor(None, start)
            if call.one_way:
                return None
            value = await self.results.wait_async(started)
            return Outcome(seq=call.seq, value=codec.encode(value))
        except FluentError as exc:
            return Outcome(seq=call.seq, error=describe_error(exc))

    async def check_call(self, call: Call) -> None:
        """NotFound unless the call names a registered type and one of its methods."""

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._codebase.actor, call.type_name)
        info = await await_ray(self._codebase.directory().lookup.remote(call.type_name))
        if call.method not in info.methods:
            raise no_method(call.type_name, call.method)

    def set_faults(self, faults: Any) -> None:
        """Put the lab's ``faults`` in force in every environment (each takes them with its
        next invocation, from the platform)."""
        get_ray(self._platform().set_faults.remote(faults))

    def processes(self) -> list[dict[str, Any]]:
        """The platform's live environments (function, pid, node, what each runs now)."""
        out: list[dict[str, Any]] = get_ray(self._platform().processes.remote())
        return out

    def forget_routes(self, group: str) -> None:
        """FaaS mode has no hosts, so no routes."""

    def local_stats(self) -> dict[str, int]:
        """This process's own traffic plus every ended invocation's (the platform's totals)."""
        totals = dict(self.counters)
        totals.update(TALLY.counters())  # the time this process's own calls took
        for name, value in get_ray(self._platform().stats.remote()).items():
            totals[name] = totals.get(name, 0) + value
        return totals

    def close_quietly(self) -> None:
        try:
            self.store.close()
        except Exception as exc:  # closing: nothing is lost, but say so
            log.warning("store did not close cleanly: %s: %s", type(exc).__name__, exc)

    async def close(self) -> None:
        """Stop the reminder scheduler and its firings (before Ray goes), then the store."""
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self.close_quietly()
