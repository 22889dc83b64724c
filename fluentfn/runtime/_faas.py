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
import dataclasses
import logging
import math
import os
import random
import time
from typing import Any

import cloudpickle

from .._actordef import ActorDef
from .._context import CURRENT, Context
from .._faasprofile import FaasProfile
from .._ioloop import IoLoop, spawn
from .._ref import CALL_TIMEOUT, DELETE_METHOD, KEYED_PREFIX, ActorRef, Future, set_invoker
from .._stats import COUNTERS
from ..api import known_type
from ..errors import CallTimeout, FluentError, InvalidRequest, Unavailable
from ..host._reminders import Due, Reminders
from ..host._turn import (
    UserFailure,
    instantiate,
    must_record,
    record_of,
    replay_of,
    reply_for,
    request_digest,
    run_sync,
    snapshot,
)
from ..state import Store, VersionConflict, open_store
from ..state._emulated import MeteredStore
from ..transport._client import REPLY_GRACE_S
from ..wire import codec
from ..wire._gen import actorhost_pb2 as pb
from ..wire.errors import error_to_pb, reply_value
from ._faasplatform import PLATFORM_NAME, START_TIMEOUT_S
from ._journal import Journal
from ._raycall import await_ray, get_ray, unwrap
from ._registry import pickle_by_value_if_local, registration

REMINDER_GROUP = "__faas__"
_CONFLICT_RETRIES = 500
# A caller waits this long beyond an invocation's cap (and a cold start) before it says the
# platform itself is not answering.
_PLATFORM_GRACE_S = 30.0
log = logging.getLogger("fluentfn.faas")
_platforms: dict[str, Any] = {}  # namespace -> this process's handle on its platform actor


def _metered(config: dict[str, Any], counters: dict[str, int]) -> MeteredStore:
    profile = FaasProfile(**config["faas"])
    return MeteredStore(
        open_store(config["store"]),
        counters,
        profile.storage_latency_ms,
        profile.bandwidth_mbps,
        profile.record_latency_ms,
    )


def start_platform(config: dict[str, Any], *, detached: bool) -> Any:
    """Create the cluster's platform actor (or get the running one), on the head node."""
    import ray

    from .._tables import ray_namespace
    from ._faasplatform import FaasPlatform

    handle = _platforms[config["namespace"]] = (
        ray.remote(FaasPlatform)
        .options(
            name=PLATFORM_NAME,
            namespace=ray_namespace(config["namespace"]),
            get_if_exists=True,
            lifetime="detached" if detached else None,
            max_restarts=0,
            num_cpus=0,
            max_concurrency=100_000,
            resources={"node:__internal_head__": 0.001},
        )
        .remote(config, faas_invoke)
    )
    return handle


def platform_handle(config: dict[str, Any]) -> Any:
    """This process's handle on the cluster's platform actor."""
    handle = _platforms.get(config["namespace"])
    if handle is None:
        import ray

        from .._tables import ray_namespace

        handle = _platforms[config["namespace"]] = ray.get_actor(
            PLATFORM_NAME, namespace=ray_namespace(config["namespace"])
        )
    return handle


def _run_actor(
    store: Store,
    definition: ActorDef,
    request: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ctx: Context,
    counters: dict[str, int],
    encoded_args: bytes = b"",
    journal: Journal | None = None,
) -> pb.Reply:
    """One turn, the FaaS way: load, run, write back with a version check; re-run on a conflict.

    The steps are the hosts' own (``host._turn``), so the same code gives the same
    results and errors in both modes. State always goes through the store here, whatever
    ``persist`` says: nothing of an identity survives in memory between invocations.
    A turn whose result or state cannot be encoded is not written (it never happened).
    A re-run sees its nested calls' first outcomes and only the committed attempt's tells
    are sent (``journal``).
    """
    journal = journal or Journal()

    def took_effect(reply: pb.Reply) -> pb.Reply:
        journal.commit()
        return reply

    method = definition.method(request["method"])
    method.bind(args, kwargs)
    address = f"{definition.name}/{request['key']}"
    where = f"{address}.{request['method']}"
    digest = request_digest(request["request_id"], request["method"], encoded_args)
    for _ in range(_CONFLICT_RETRIES):
        record = store.load(address)
        # Replies are recorded in the store with the state, as in stateful mode, so a
        # repeated request (a re-run invocation's nested call) is answered, not re-run.
        recorded = store.get_reply(address, request["request_id"])
        if recorded is not None:
            return replay_of(recorded, digest, request["request_id"])
        counters["activations"] += 1
        counters["calls"] += 1
        journal.begin()
        attempt = dataclasses.replace(ctx)  # each attempt re-derives the same nested and reminder ids
        token = CURRENT.set(attempt)
        try:
            try:
                instance = instantiate(definition, record.state if record else None, address, store.url)
            except UserFailure as failure:
                return pb.Reply(error=error_to_pb(failure.exc, f"{address} activation", user=True))
            outcome, failed = run_sync(method, instance, args, kwargs)
            if method.is_async and not failed:  # the call made the coroutine: run it to its end
                outcome, failed = _run_coroutine(outcome)
        finally:
            CURRENT.reset(token)
        scheduled = attempt.take_scheduled()  # written with the state, or not at all
        try:
            reply = reply_for(outcome, failed, where)
            if method.readonly and not scheduled:
                return took_effect(reply)
            state = snapshot(instance, address)
        except InvalidRequest as exc:  # rolled back: nothing is written
            return pb.Reply(error=error_to_pb(exc))
        if record is not None and state == record.state and not must_record(request["request_id"], scheduled):
            return took_effect(reply)
        try:
            store.save(
                address,
                expected=record.version if record else 0,
                state=state,
                fence=None,
                reply=(request["request_id"], record_of(reply, digest)),
                reminders=scheduled,
            )
            return took_effect(reply)
        except VersionConflict:
            time.sleep(random.uniform(0.0005, 0.005))
    raise Unavailable(f"{address}: too many concurrent writers")


async def _call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A function's result, awaited if it is awaitable."""
    result = fn(*args, **kwargs)
    if asyncio.iscoroutine(result):
        result = await result
    return result


def _run_coroutine(coro: Any) -> tuple[Any, bool]:
    try:
        return asyncio.run(coro), False
    except BaseException as exc:
        return exc, True


_loaded: dict[bytes, Any] = {}  # this environment's code, loaded once (Lambda's init phase)


def _load_code(code: bytes) -> Any:
    """The function or class of ``code``, unpickled once per environment, so module-level
    state of user code lives as long as the environment (as on Lambda), and no longer."""
    loaded = _loaded.get(code)
    if loaded is None:
        loaded = _loaded[code] = cloudpickle.loads(code)
    return loaded


def faas_invoke(kind: str, code: bytes, request: dict[str, Any], config: dict[str, Any]) -> dict[str, int]:
    """One stateless invocation, in an execution environment. Returns its traffic counters."""
    import ray

    started = time.perf_counter()
    counters = dict.fromkeys(COUNTERS, 0)
    store = _metered(config, counters)
    runtime = FaasRuntime(directory=None, config=config, io=None, counters=counters, store=store)
    set_invoker(runtime, worker=True)
    rid = request["request_id"]
    runtime.invocation = rid
    message = store.get(f"msg:{rid}")
    try:
        if message is None:
            raise InvalidRequest(f"request message {rid} is not in the store")
        args, kwargs = codec.decode_args(message)
        definitions: dict[str, ActorDef] = {}  # what reminders scheduled here are checked against
        ctx = Context(
            address=f"{request['type_name']}/{request['key']}" if kind == "actor" else None,
            key=request.get("key"),
            type_name=request.get("type_name"),
            node_id=ray.get_runtime_context().get_node_id(),
            gpu_ids=tuple(int(g) for g in ray.get_gpu_ids()),
            mode="faas",
            chain=tuple(request["chain"]),
            chain_id=request["chain_id"],
            deadline=request["deadline"],
            request_id=rid,
            _scheduler=Reminders(store, REMINDER_GROUP, 0, lambda: None, definitions.get),
        )
        if kind == "actor":
            cls, options = _load_code(code)
            definition = definitions.setdefault(options.name, ActorDef(cls, options))
            runtime.journal = Journal()
            reply = _run_actor(store, definition, request, args, kwargs, ctx, counters, message, runtime.journal)
        else:
            counters["calls"] += 1
            token = CURRENT.set(ctx)
            try:
                outcome, failed = _run_coroutine(_call(_load_code(code), args, kwargs))
            finally:
                CURRENT.reset(token)
            reply = reply_for(outcome, failed, request["type_name"])
    except FluentError as exc:
        reply = pb.Reply(error=error_to_pb(exc))
    except Exception as exc:  # the store failed: the turn was not written
        reply = pb.Reply(
            error=error_to_pb(
                Unavailable(f"state store failed ({type(exc).__name__}: {exc}); the call did not take effect")
            )
        )
    if not request.get("one_way"):
        store.put(f"res:{rid}", reply.SerializeToString())
        counters["messages_via_storage"] += 1
        _unless_awaited(store, rid, request.get("parent", ""))
    store.delete(f"msg:{rid}")
    runtime.close_quietly()
    counters["billed_ms"] += math.ceil((time.perf_counter() - started) * 1000)  # Lambda bills by the ms
    return counters


def _unless_awaited(store: Store, rid: str, parent: str) -> None:
    """Remove the result just written if nobody will take it: its caller gave up (and
    removed the request), or the invocation that called it is gone (killed at its cap:
    its own request was removed). Checked after the write, so a caller that gives up at
    any moment leaves nothing behind (it removes both rows itself). Platform
    bookkeeping: not counted as the application's storage traffic."""
    raw = store.inner if isinstance(store, MeteredStore) else store
    waiting = [f"msg:{rid}"] + ([f"msg:{parent}"] if parent else [])
    if any(raw.get(name) is None for name in waiting):
        raw.delete(f"res:{rid}")


class FaasRuntime:
    """The ``Invoker`` of FaaS mode (in the driver and inside invocations)."""

    mode = "faas"

    def __init__(
        self,
        *,
        directory: Any,
        config: dict[str, Any],
        io: IoLoop | None,
        counters: dict[str, int] | None = None,
        store: Store | None = None,
    ) -> None:
        self._directory = directory
        self.config = config
        self.token: str = config["token"]
        self.profile = FaasProfile(**config["faas"])
        self._io = io
        self.counters = counters if counters is not None else dict.fromkeys(COUNTERS, 0)
        self.store = store if store is not None else _metered(config, self.counters)
        self._code: dict[str, tuple[Any, Any]] = {}
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

    def _actor_code(self, type_name: str) -> tuple[Any, Any]:
        """(pickled class ref, options) of a type; registers local types with the directory."""
        import ray

        cached = self._code.get(type_name)
        if cached is not None:
            return cached
        local = known_type(type_name)
        directory = self._directory_handle()
        if local is not None:
            if local.colocate_target is not None:
                self._actor_code(local.colocate_target.name)
            entry_args = registration(local)
            get_ray(directory.register.remote(*entry_args))
            blob, options = entry_args[1], local.options
        else:
            blob = get_ray(directory.type_blob.remote(type_name))
            if blob is None:
                from ..errors import NotFound

                raise NotFound(f"no actor type {type_name!r} is registered in this cluster")
            _, options = cloudpickle.loads(blob)
        entry = (ray.put(blob), options)
        self._code[type_name] = entry
        return entry

    def _directory_handle(self) -> Any:
        if self._directory is None:
            import ray

            from .._tables import DIRECTORY_NAME, ray_namespace

            self._directory = ray.get_actor(DIRECTORY_NAME, namespace=ray_namespace(self.config["namespace"]))
        return self._directory

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
    ) -> tuple[str, Any, float, float]:
        """Write the request to the store and hand the invocation to the platform.
        ``request_id``: the call's id when the caller chose it (derived from its turn, or
        a client's keyed id: a repeat is answered from its recorded reply)."""
        ctx = CURRENT.get()
        rid = request_id or (ctx.next_request_id() if ctx is not None else None) or os.urandom(12).hex()
        cap = self.profile.max_duration_s
        if kind == "actor":
            assert isinstance(target, ActorRef)
            code, options = self._actor_code(target.type_name)
            spec = options.spec
            self._check_gpus(f"actor type {target.type_name}", spec.num_gpus, spec.accelerator_type)
            name, key = target.type_name, target.key
        else:
            spec = target.spec
            self._check_gpus(f"function {target.name}", spec.num_gpus, spec.accelerator_type)
            code = self._function_code(target)
            name, key = target.name, ""
            if target.max_duration_s:
                cap = min(cap, target.max_duration_s)
        payload = codec.encode_args(args, kwargs)
        parent = ctx if ctx is not None and not one_way else None
        deadline = parent.deadline if parent and parent.deadline else 0.0
        timeout = CALL_TIMEOUT.get()  # ``with_timeout``: the caller stops waiting then, as in stateful mode
        if timeout is not None and not one_way:
            deadline = min(deadline or math.inf, time.time() + timeout)
        self.store.put(f"msg:{rid}", payload)
        self.counters["messages_via_storage"] += 1
        request = {
            "type_name": name,
            "key": key,
            "method": method,
            "request_id": rid,
            # a tell starts a chain of its own, with its own deadline (its sender does not wait)
            "chain": [*(parent.chain if parent else ())],
            "chain_id": (parent.chain_id if parent and parent.chain_id else rid),
            "deadline": deadline,
            "one_way": one_way,
            # the invocation waiting for this one's result: if it is gone (killed at its
            # cap), nobody will take the result, and it is not left in the store
            "parent": self.invocation if not one_way else "",
        }
        gpus = (spec.num_gpus, spec.accelerator_type) if self.profile.allow_gpus else (0.0, None)
        objref = self._platform().invoke.remote(f"{kind}:{name}", gpus, kind, code, request, cap)
        return rid, objref, cap, deadline

    def _function_code(self, fn: Any) -> Any:
        import ray

        cached = self._code.get(f"fn:{id(fn)}")
        if cached is not None and cached[1] is fn:
            return cached[0]
        pickle_by_value_if_local(fn.fn)
        ref = ray.put(cloudpickle.dumps(fn.fn))
        self._code[f"fn:{id(fn)}"] = (ref, fn)
        return ref

    def _take_result(self, rid: str) -> Any:
        data = self.store.get(f"res:{rid}")
        if data is None:
            raise Unavailable(f"invocation {rid} left no result in the store")
        self.store.delete(f"res:{rid}")
        reply = pb.Reply.FromString(data)
        return reply_value(reply)

    @staticmethod
    def _patience(cap: float, deadline: float) -> tuple[float, bool]:
        """(seconds to wait for an invocation, whether its caller's deadline ends the wait
        before the platform's own limit)."""
        platform = cap + START_TIMEOUT_S + _PLATFORM_GRACE_S
        if not deadline:
            return platform, False
        caller = max(0.0, deadline - time.time()) + REPLY_GRACE_S
        return min(platform, caller), caller < platform

    def _gave_up(self, rid: str, by_deadline: bool) -> FluentError:
        self._discard(rid)
        if by_deadline:
            return CallTimeout(f"invocation {rid} gave no result by its deadline (it may still run)")
        return Unavailable(f"the FaaS platform did not answer for invocation {rid}")

    def _wait(self, rid: str, objref: Any, cap: float, deadline: float = 0.0) -> Any:
        import ray
        import ray.exceptions

        patience, by_deadline = self._patience(cap, deadline)
        try:
            ray.get(objref, timeout=patience)
        except ray.exceptions.GetTimeoutError:
            raise self._gave_up(rid, by_deadline) from None
        except Exception as exc:
            self._discard(rid)
            raise unwrap(exc) from None
        return self._take_result(rid)

    def _discard(self, rid: str) -> None:
        """Remove what a killed, crashed or refused invocation left in the store (its messages)."""
        for name in (f"msg:{rid}", f"res:{rid}"):
            try:
                self.store.delete(name)
            except Exception as exc:  # the caller's error says more than this one
                log.warning("invocation %s: could not delete %s: %s", rid, name, exc)

    async def _await(self, rid: str, objref: Any, cap: float, deadline: float = 0.0) -> Any:
        loop = asyncio.get_running_loop()
        patience, by_deadline = self._patience(cap, deadline)
        try:
            await asyncio.wait_for(await_ray(objref), patience)
        except TimeoutError:
            raise await loop.run_in_executor(None, self._gave_up, rid, by_deadline) from None
        except BaseException:
            await loop.run_in_executor(None, self._discard, rid)
            raise
        return await loop.run_in_executor(None, self._take_result, rid)

    def _future(self, started: tuple[str, Any, float, float]) -> Future[Any]:
        out: Future[Any] = Future()
        if self._io is None:  # inside an invocation: a plain thread waits
            import threading

            def wait() -> None:
                try:
                    out.set_result(self._wait(*started))
                except BaseException as exc:
                    out.set_exception(exc)

            threading.Thread(target=wait, daemon=True).start()
            return out
        inner = self._io.submit(self._await(*started))

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(f.result())

        inner.add_done_callback(done)
        return out

    # -- Invoker ---------------------------------------------------------------------------

    @staticmethod
    def _nested_id() -> str:
        """The request id of the next call made from here: derived from the running turn's
        (the same in every attempt of it), or a fresh one."""
        ctx = CURRENT.get()
        return (ctx.next_request_id() if ctx is not None else None) or os.urandom(12).hex()

    def call(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        rid = self._nested_id()

        def run() -> Any:
            return self._wait(*self._start("actor", ref, method, args, kwargs, request_id=rid))

        return run() if self.journal is None else self.journal.run(rid, run)

    def submit(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        return self._journaled_future("actor", ref, method, args, kwargs)

    def _journaled_future(
        self, kind: str, target: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        rid = self._nested_id()
        journal = self.journal
        found = journal.recorded(rid) if journal is not None else None
        if found is not None:  # an earlier attempt's outcome
            out: Future[Any] = Future()
            if found[0]:
                out.set_exception(found[1])
            else:
                out.set_result(found[1])
            return out
        fut = self._future(self._start(kind, target, method, args, kwargs, request_id=rid))
        if journal is not None:
            fut.add_done_callback(lambda f: journal.record(rid, f.exception() is not None, f.exception() or f.result()))
        return fut

    async def call_async(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        rid = self._nested_id()  # here: the executor thread does not see the turn's context
        found = self.journal.recorded(rid) if self.journal is not None else None
        if found is not None:
            if found[0]:
                raise found[1]
            return found[1]
        try:
            context = contextvars.copy_context()  # the timeout set by with_timeout travels in it
            started = await loop.run_in_executor(
                None, context.run, lambda: self._start("actor", ref, method, args, kwargs, request_id=rid)
            )
            value = await self._await(*started)
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

    def tell(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        rid = self._nested_id()

        def send() -> object:
            return self._start("actor", ref, method, args, kwargs, one_way=True, request_id=rid)

        if self.journal is None:
            send()
        else:
            self.journal.hold(send)  # sent once this attempt's write commits

    def run_function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        return self._journaled_future("fn", fn, "", args, kwargs)

    # -- reminders (the platform's timer service) ----------------------------------------

    async def reminder_loop(self) -> None:
        """Fire due reminders as invocations (what a FaaS platform's scheduler does)."""
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)  # close() stops it with the firings it started
        reminders = Reminders(
            self.store.inner if isinstance(self.store, MeteredStore) else self.store, REMINDER_GROUP, 0, lambda: None
        )
        firing: set[str] = set()
        while True:
            await asyncio.sleep(0.25)
            try:
                due = await loop.run_in_executor(None, reminders.due)
            except Exception as exc:
                log.warning("FaaS reminders not read: %s: %s", type(exc).__name__, exc)
                continue
            for item in due:
                if item.row.rid in firing:
                    continue
                firing.add(item.row.rid)
                spawn(self._fire(item, reminders, firing), self._tasks)

    async def _fire(self, due: Due, reminders: Reminders, firing: set[str]) -> None:
        loop = asyncio.get_running_loop()
        try:
            type_name, key = due.row.address.split("/", 1)
            ctx = Context(request_id=due.request_id)
            token = CURRENT.set(ctx)
            try:
                decoded, kwargs = codec.decode_args(due.args)
                started = await loop.run_in_executor(
                    None, lambda: self._start("actor", ActorRef(type_name, key), due.method, decoded, kwargs)
                )
            finally:
                CURRENT.reset(token)
            try:
                await self._await(*started)
            except FluentError as exc:  # the platform's scheduler logs and moves on, as Lambda's does
                log.warning("reminder %s on %s failed: %s: %s", due.row.rid, due.row.address, type(exc).__name__, exc)
            await loop.run_in_executor(None, reminders.fired, due)
        finally:
            firing.discard(due.row.rid)

    async def forward(self, call: pb.Call) -> pb.Reply | None:
        """Run a call that arrived at the gateway (errors become replies)."""
        loop = asyncio.get_running_loop()
        try:
            args, kwargs = codec.decode_args(call.args)
            ref = ActorRef(call.type_name, call.key)
            keyed = call.request_id if call.request_id.startswith(KEYED_PREFIX) else ""
            if call.method == DELETE_METHOD:
                await loop.run_in_executor(None, self.delete, ref)
                return None if call.one_way else pb.Reply(seq=call.seq, value=codec.encode(None))
            remaining = max(0.001, call.deadline - time.time()) if call.deadline else None

            def start() -> tuple[str, Any, float, float]:
                token = CALL_TIMEOUT.set(remaining)  # the client's deadline bounds its wait here too
                try:
                    return self._start("actor", ref, call.method, args, kwargs, one_way=call.one_way, request_id=keyed)
                finally:
                    CALL_TIMEOUT.reset(token)

            started = await loop.run_in_executor(None, start)
            if call.one_way:
                return None
            value = await self._await(*started)
            return pb.Reply(seq=call.seq, value=codec.encode(value))
        except FluentError as exc:
            return pb.Reply(seq=call.seq, error=error_to_pb(exc))

    async def check_call(self, call: pb.Call) -> None:
        """NotFound unless the call names a registered type and one of its methods."""
        from ..errors import NotFound

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._actor_code, call.type_name)
        info = await await_ray(self._directory_handle().lookup.remote(call.type_name))
        if call.method not in info.methods:
            raise NotFound(f"{call.type_name} has no method {call.method!r}")

    def forget_routes(self, group: str) -> None:
        """FaaS mode has no hosts, so no routes."""

    def local_stats(self) -> dict[str, int]:
        """This process's own traffic plus every ended invocation's (the platform's totals)."""
        totals = dict(self.counters)
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
