"""A FaaS invocation: what runs inside the platform's execution environment (a Ray task).

It reads the request from the store, loads the identity's state, runs the method (the
same turn as a host's, ``host/_turn.py``), writes the state back with a version check (a
conflict re-runs it), and writes its result to the store for the caller. Nested calls
and tells made during it are journaled (``_journal``), so a re-run repeats none of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import random
import time
from typing import Any

import cloudpickle

from .._actordef import ActorDef
from .._call import Call, Outcome
from .._clusterconfig import ClusterConfig
from .._context import CURRENT, Context
from .._phases import TALLY
from .._ref import set_invoker
from .._stats import COUNTERS
from .._tracing import TurnTimes
from .._tracing import configure as configure_tracing
from .._tracing import flush as flush_spans
from .._turnlogs import install_log_context
from ..errors import FluentError, InvalidRequest, Unavailable
from ..host._reminders import Reminders
from ..host._turn import (
    UserFailure,
    instantiate,
    must_record,
    replay_of,
    reply_for,
    request_digest,
    run_sync,
    snapshot,
)
from ..state import Store, VersionConflict
from ..state._emulated import MeteredStore
from ..wire import codec
from ..wire.errors import describe_error
from ..wire.records import record_of
from ._faas import FaasRuntime, _metered, _platforms
from ._faasplatform import PLATFORM_NAME
from ._faastimer import REMINDER_GROUP
from ._journal import Journal

log = logging.getLogger("fluentfn.faas")
_CONFLICT_RETRIES = 500  # an invocation re-run after a version conflict, at most


def _run_actor(
    store: Store,
    definition: ActorDef,
    call: Call,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ctx: Context,
    counters: dict[str, int],
    encoded_args: bytes = b"",
    journal: Journal | None = None,
) -> Outcome:
    """One turn, the FaaS way: load, run, write back with a version check; re-run on a conflict.

    The steps are the hosts' own (``host._turn``), so the same code gives the same
    results and errors in both modes. State always goes through the store here, whatever
    ``persist`` says: nothing of an identity survives in memory between invocations.
    A turn whose result or state cannot be encoded is not written (it never happened).
    A re-run sees its nested calls' first outcomes and only the committed attempt's tells
    are sent (``journal``); their outbox rows are written with the state, so they are
    sent even if this invocation dies right after its write (``_faastimer``).
    """
    journal = journal or Journal()

    def took_effect(reply: Outcome, written: bool = False) -> Outcome:
        """``reply``, once the attempt's tells left; ``written``: their outbox rows were
        written with the state, and those of the tells that left are removed now."""
        sent = journal.commit(outboxed=written)
        for item in sent if written else ():
            try:
                store.cancel_reminder(item.row.address, item.row.rid)
            except Exception as exc:  # the turn took effect: its reply stands
                log.warning(
                    "outbox row %s not removed (%s: %s): its tell may leave again, deduplicated by its request id",
                    item.row.rid, type(exc).__name__, exc,
                )  # fmt: skip
        return reply

    method = definition.method(call.method)
    method.bind(args, kwargs)
    address = f"{definition.name}/{call.key}"
    where = f"{address}.{call.method}"
    digest = request_digest(call.request_id, call.method, encoded_args)
    times = ctx._times
    for _ in range(_CONFLICT_RETRIES):
        t0 = time.perf_counter()
        record = store.load(address)
        # Replies are recorded in the store with the state, as in stateful mode, so a
        # repeated request (a re-run invocation's nested call) is answered, not re-run.
        recorded = store.get_reply(address, call.request_id)
        if recorded is not None:
            return replay_of(recorded, digest, call.request_id)
        counters["activations"] += 1
        counters["calls"] += 1
        journal.begin()
        attempt = dataclasses.replace(ctx)  # each attempt re-derives the same nested and reminder ids
        token = CURRENT.set(attempt)
        try:
            try:
                instance = instantiate(definition, record.state if record else None, address, store.url)
            except UserFailure as failure:
                return Outcome(error=describe_error(failure.exc, f"{address} activation", user=True))
            t1 = time.perf_counter()
            outcome, failed = run_sync(method, instance, args, kwargs)
            if method.is_async and not failed:  # the call made the coroutine: run it to its end
                outcome, failed = _run_coroutine(outcome)
            if times is not None:
                times.mark("load", t0, t1)
                times.mark("run", t1, time.perf_counter())
        finally:
            CURRENT.reset(token)
        scheduled = attempt.take_scheduled()  # written with the state, or not at all
        try:
            reply = reply_for(outcome, failed, where)
            if method.readonly and not scheduled:
                return took_effect(reply)
            state = snapshot(instance, address)
        except InvalidRequest as exc:  # rolled back: nothing is written
            return Outcome(error=describe_error(exc))
        if record is not None and state == record.state and not must_record(call.request_id, scheduled):
            return took_effect(reply)
        try:
            t2 = time.perf_counter()
            outbox = journal.outbox()  # the tells' rows, with the state: they leave even if we die now
            store.save(
                address,
                expected=record.version if record else 0,
                state=state,
                fence=None,
                reply=(call.request_id, record_of(reply, digest)),
                reminders=[*scheduled, *outbox],
            )
            if times is not None:
                times.mark("write", t2, time.perf_counter())
            return took_effect(reply, written=True)
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


def faas_invoke(
    kind: str, code: bytes, call: Call, waiting: str, config: ClusterConfig, row: str = ""
) -> dict[str, int]:
    """One stateless invocation, in an execution environment. Returns its traffic counters.
    ``waiting``: the invocation that waits for this one's result (none for a tell);
    ``row``: a second delivery's own message row (it writes no result: the first
    delivery's caller takes that one; the request id makes the two run once).
    A tell whose turn could not be written raises ``Unavailable``: nobody waits for its
    result, so the platform runs it again (its request message stays in the store)."""
    import ray

    started = time.perf_counter()
    queued = max(0.0, time.time() - call.arrived) if call.arrived else 0.0  # read with ``started``
    configure_tracing(config.tracing, dict(config.otel_env), service="fluentfn-faas")
    install_log_context()
    cold = not _loaded
    what = f"{call.type_name}.{call.method}" if kind == "actor" else call.type_name
    times = TurnTimes(what, started - queued, started, call.trace)
    if times.span is not None:
        times.describe(address=call.address if kind == "actor" else call.type_name, method=call.method,
                       request_id=call.request_id, mode="faas", cold_start=cold, host=f"pid:{os.getpid()}")  # fmt: skip
    counters = dict.fromkeys(COUNTERS, 0)
    store = _metered(config, counters)
    runtime = FaasRuntime(directory=None, config=config, io=None, counters=counters, store=store)
    set_invoker(runtime, worker=True)
    rid = call.request_id
    runtime.invocation = rid
    row = row or rid
    message = store.get(f"msg:{row}")
    retry: Unavailable | None = None
    try:
        if message is None:
            raise InvalidRequest(f"request message {rid} is not in the store")
        args, kwargs = codec.decode_args(message)
        definitions: dict[str, ActorDef] = {}  # what reminders scheduled here are checked against
        ctx = Context(
            address=call.address if kind == "actor" else None,
            key=call.key,
            type_name=call.type_name,
            node_id=ray.get_runtime_context().get_node_id(),
            gpu_ids=tuple(int(g) for g in ray.get_gpu_ids()),
            mode="faas",
            chain=tuple(call.call_chain),
            chain_id=call.chain_id,
            deadline=call.deadline,
            request_id=rid,
            _scheduler=Reminders(store, REMINDER_GROUP, 0, lambda: None, definitions.get),
            _times=times,
        )
        if kind == "actor":
            cls, options = _load_code(code)
            times.mark("init", started, time.perf_counter())  # the request's read, the code's load
            definition = definitions.setdefault(options.name, ActorDef(cls, options))
            runtime.journal = Journal()
            reply = _run_actor(store, definition, call, args, kwargs, ctx, counters, message, runtime.journal)
        else:
            counters["calls"] += 1
            token = CURRENT.set(ctx)
            try:
                t0 = time.perf_counter()
                fn = _load_code(code)
                t1 = time.perf_counter()
                outcome, failed = _run_coroutine(_call(fn, args, kwargs))
                times.mark("load", t0, t1)
                times.mark("run", t1, time.perf_counter())
            finally:
                CURRENT.reset(token)
            reply = reply_for(outcome, failed, call.type_name)
    except Unavailable as exc:  # too many concurrent writers: the turn was not written
        retry, reply = exc, Outcome(error=describe_error(exc))
    except FluentError as exc:
        reply = Outcome(error=describe_error(exc))
    except Exception as exc:  # the store failed: the turn was not written
        retry = Unavailable(f"state store failed ({type(exc).__name__}: {exc}); the call did not take effect")
        reply = Outcome(error=describe_error(retry))
    again = retry if call.one_way else None  # nobody waits for a tell: the platform runs it again
    if not call.one_way and row == rid:
        t0 = time.perf_counter()
        store.put(f"res:{rid}", record_of(reply))
        times.mark("write", t0, time.perf_counter())  # the result, through the store
        counters["messages_via_storage"] += 1
        _unless_awaited(store, rid, waiting)
    if again is None:  # a tell run again keeps its request message
        store.delete(f"msg:{row}")
    runtime.close_quietly()
    times.end("error" if reply.error is not None else "ok")
    if times.span is not None:
        flush_spans()  # the environment may be stopped before the next batch would go
    counters.update(TALLY.drain())  # this invocation's phase timings (and its own calls' round trips)
    counters["billed_ms"] += math.ceil((time.perf_counter() - started) * 1000)  # Lambda bills by the ms
    if again is not None:
        raise again
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


def start_platform(config: ClusterConfig, body: Any, *, detached: bool) -> Any:
    """Create the cluster's platform actor (or get the running one), on the head node;
    ``body`` is what an invocation runs (``faas_invoke``)."""
    import ray

    from .._tables import ray_namespace
    from ._faasplatform import FaasPlatform

    handle = _platforms[config.namespace] = (
        ray.remote(FaasPlatform)
        .options(
            name=PLATFORM_NAME,
            namespace=ray_namespace(config.namespace),
            get_if_exists=True,
            lifetime="detached" if detached else None,
            max_restarts=0,
            num_cpus=0,
            max_concurrency=100_000,
            resources={"node:__internal_head__": 0.001},
        )
        .remote(config, body)
    )
    return handle
