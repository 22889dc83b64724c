"""The host engine: admits and runs the turns of one shard's identities. Mechanism only.

Who may run when is decided by the admission policy (``_policy``, a pure state
machine): the engine turns what happens — a call arrived, a turn ended, a deadline
passed, the shard moved, an identity should be passivated — into policy events, and
executes the instructions that come back (start this turn, refuse that one). Turns run
in ``_runner``; background upkeep (passivation, write-behind, ownership checks,
reminders) lives in ``_upkeep``.

Entry points, by caller:
- ``submit(call, done)``: the peer stream, on the loop. Sync methods of known types go
  straight to a worker thread, and a worker that ends a turn runs the identity's next
  queued sync turn itself (one thread hop for a whole pipeline).
- ``dispatch(call)``: unary calls, the gateway, reminders, async methods, bulk calls.
- ``dispatch_inline(call)``: a co-located sync caller, in its own thread.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .. import _config
from .._actordef import ActorDef, MethodInfo
from .._context import Context
from .._ioloop import spawn
from .._ref import check_key
from .._stats import new_counters
from ..errors import CallTimeout, FluentError, InvalidRequest, NotFound, Overloaded, Redirect, Unavailable
from ..state._store import Store
from ..wire import codec
from ..wire._gen import actorhost_pb2 as pb
from ..wire.errors import error_to_pb
from ._activations import Activation, ActivationTable
from ._bulk import bulk
from ._metrics import MethodTally
from ._persistence import Persistence
from ._policy import (
    Activated,
    Arrive,
    Deactivated,
    Event,
    Fence,
    Finish,
    Forget,
    HostPolicy,
    Instruction,
    Passivate,
    Reject,
    Run,
    Tick,
    Why,
    Withdraw,
)
from ._runner import Hooks, TurnRunner
from ._upkeep import Upkeep
from ._workers import Workers

log = logging.getLogger("fluentfn.host")

TypeLoader = Callable[[str], Awaitable[ActorDef | None]]
"""Fetches an actor type this host has not seen yet (from the directory)."""

BULK_METHOD = "__bulk__"


@dataclass(slots=True, eq=False)
class _Job:
    """A turn the policy knows by ``tid``: how to start it, and how to refuse it."""

    start: Callable[[_Job], None]
    reject: Callable[[_Job, Why], None]
    tid: int = 0
    act: Activation | None = None


class HostEngine:
    """Admission and turn execution for one shard of one co-location group."""

    def __init__(
        self,
        *,
        group: str,
        shard: int,
        loop: asyncio.AbstractEventLoop,
        loop_thread: int,
        load_type: TypeLoader,
        node_id: str = "",
        gpu_ids: tuple[int, ...] = (),
        store: Store | None = None,
        mailbox_limit: int = _config.MAILBOX_LIMIT,
        inflight_limit: int = _config.HOST_INFLIGHT_LIMIT,
        sync_workers: int = _config.SYNC_WORKERS,
        max_live: int | None = None,
    ) -> None:
        self.group = group
        self.shard = shard
        self.node_id = node_id
        self.gpu_ids = gpu_ids
        self.loop = loop
        self.loop_thread = loop_thread
        self._load_type = load_type
        self.types: dict[str, ActorDef] = {}
        self._unknown: dict[str, float] = {}  # type name -> until when it is known to be missing
        self.table = ActivationTable()
        self._lock = threading.Lock()  # guards the policy, the job table and the activation table
        self._policy = HostPolicy(mailbox_limit=mailbox_limit, inflight_limit=inflight_limit)
        self._jobs: dict[int, _Job] = {}
        self._tids = itertools.count(1)
        self._thread_state = threading.local()
        self._completed: list[Callable[[], None]] = []
        self._drain_scheduled = False
        self.workers = Workers(sync_workers, f"fluentfn-{group}-{shard}")
        self.counters: dict[str, int] = new_counters()
        self.persistence = Persistence(store, group, shard, self.counters)
        hooks = Hooks(self._activated, self._deactivated, self.fence)
        self.runner = TurnRunner(self.persistence, self.counters, self.workers, loop, hooks)
        self.upkeep = Upkeep(self, store, max_live)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what the rest of the process sees ------------------------------------------------------

    @property
    def epoch(self) -> int:
        """This host's ownership epoch of its shard (from the store)."""
        return self.persistence.epoch

    @property
    def methods(self) -> MethodTally:
        return self.runner.methods

    @property
    def type_names(self) -> list[str]:
        return sorted(self.types)

    @property
    def live_identities(self) -> int:
        return len(self.table)

    def add_type(self, definition: ActorDef) -> None:
        """Make a type callable here (replaces an older definition for new activations)."""
        self.types[definition.name] = definition
        self.upkeep.start()

    def in_use(self, address: str) -> bool:
        """A turn of ``address`` is running or queued (call with the lock held)."""
        return not self._policy.idle(address)

    def start_background(self) -> None:
        """Start passivation, write-behind, ownership checks and reminders."""
        self.upkeep.start()

    async def _definition(self, name: str) -> ActorDef:
        definition = self.types.get(name)
        if definition is None:
            if not name or len(name) > _config.MAX_NAME_BYTES:
                raise InvalidRequest(f"invalid actor type name of {len(name)} characters")
            missing_until = self._unknown.get(name)
            if missing_until is not None and missing_until > time.monotonic():
                raise NotFound(f"no actor type {name!r} in group {self.group!r}")
            loaded = await self._load_type(name)
            if loaded is None or loaded.options.group != self.group:
                if len(self._unknown) > 4096:
                    self._unknown.clear()
                self._unknown[name] = time.monotonic() + 2.0  # spare the directory repeated misses
                raise NotFound(f"no actor type {name!r} in group {self.group!r}")
            self.add_type(loaded)
            definition = loaded
        return definition

    # -- admission: events in, instructions carried out -------------------------------------------

    def admit(self, address: str, type_name: str, key: str, job: _Job, event: Callable[[int], Event]) -> None:
        """Register ``job`` (for the identity ``address``) and feed the policy ``event(tid)``."""
        job.tid = next(self._tids)
        with self._lock:
            act = self.table.get(address)
            if act is None:
                act = Activation(type_name, key)
                self.table.add(act, time.monotonic())
            job.act = act
            self._jobs[job.tid] = job
            ev = event(job.tid)
            actions = self._resolve(self._policy.handle(ev))
            queued = job.tid in self._jobs
        if queued and isinstance(ev, Arrive) and ev.deadline:
            self._tick_at(ev.deadline)
        for action in actions:
            action()

    def admit_call(self, definition: ActorDef, method: MethodInfo, call: pb.Call, key: str, job: _Job) -> None:
        """Ask for a turn for ``call`` (chain, reentry and deadline from the call)."""
        address = f"{definition.name}/{key}"
        chain_id = call.chain_id or call.request_id
        chain = tuple(call.call_chain)
        interleave = definition.options.reentrant and method.is_async
        self.admit(
            address,
            definition.name,
            key,
            job,
            lambda tid: Arrive(tid, address, chain_id, time.time(), call.deadline, chain, interleave),
        )

    def apply(self, event: Event) -> None:
        """Feed the policy one event and carry out what it says."""
        with self._lock:
            actions = self._resolve(self._policy.handle(event))
        for action in actions:
            action()

    def _resolve(self, instructions: list[Instruction]) -> list[Callable[[], None]]:
        """Under the lock: the jobs the instructions name, as actions to run outside it."""
        actions: list[Callable[[], None]] = []
        for ins in instructions:
            if isinstance(ins, Run):
                job = self._jobs.pop(ins.tid)
                actions.append(functools.partial(job.start, job))
            elif isinstance(ins, Reject):
                job = self._jobs.pop(ins.tid)
                actions.append(functools.partial(job.reject, job, ins.why))
            else:
                assert isinstance(ins, Forget)
                act = self.table.get(ins.address)
                if act is not None and act.instance is None:
                    self.table.remove(act)
        return actions

    def done(self, job: _Job) -> None:
        """``job``'s turn ended."""
        with self._lock:
            if job.act is not None:
                self.table.touch(job.act, time.monotonic())
            actions = self._resolve(self._policy.handle(Finish(job.tid)))
        for action in actions:
            action()

    def withdraw(self, job: _Job) -> None:
        """The waiter of ``job`` went away: withdraw it if queued, else end its turn."""
        with self._lock:
            queued = self._jobs.pop(job.tid, None) is not None
            actions = self._resolve(self._policy.handle(Withdraw(job.tid))) if queued else []
        if not queued:
            self.done(job)
        for action in actions:
            action()

    def _tick_at(self, deadline: float) -> None:
        def arm() -> None:
            self.loop.call_later(max(0.0, deadline - time.time()), self._tick)

        if threading.get_ident() == self.loop_thread:
            arm()
        else:
            self.loop.call_soon_threadsafe(arm)

    def _tick(self) -> None:
        self.apply(Tick(time.time()))

    def _activated(self, act: Activation) -> None:
        self.apply(Activated(act.address))

    def _deactivated(self, act: Activation) -> None:
        self.apply(Deactivated(act.address))

    def fence(self) -> None:
        """This host lost its shard: refuse queued and new calls (callers are redirected)."""
        self.persistence.fenced = True
        self.apply(Fence())
        with self._lock:
            for act in self.table:
                if self._policy.idle(act.address):
                    act.instance = None
                    act.ready = False
                    self.table.remove(act)

    def refusal(self, why: Why, address: str) -> FluentError:
        """The error a refused turn's caller gets."""
        if why is Why.TIMEOUT:
            return CallTimeout(f"{address} stayed busy past the deadline")
        if why is Why.REDIRECT:
            return Redirect(f"host {self.group}/{self.shard} no longer owns its shard")
        if why is Why.OVERLOADED:
            return Overloaded(f"{address}: too many calls waiting in host {self.group}/{self.shard}")
        return FluentError(f"{address} is busy")

    # -- the stream: callbacks on the loop ----------------------------------------------------------

    def submit(self, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> None:
        """Callback form of ``dispatch``, called on the loop; ``done`` runs on the loop."""
        if not self._submit_sync(call, done):
            spawn(self._dispatch_then(call, done), self._tasks)

    async def _dispatch_then(self, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> None:
        done(await self.dispatch(call))

    def _submit_sync(self, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> bool:
        """The common case — a sync method of a known type — without an asyncio task."""
        definition = self.types.get(call.type_name)
        if definition is None or call.method == BULK_METHOD:
            return False
        try:
            method, key, args, kwargs = self._prepare(definition, call)
        except FluentError as exc:
            self._answer(call, done, exc)
            return True
        if method.is_async:
            return False
        self.counters["direct_messages"] += 1

        def start(job: _Job) -> None:
            self._run_job(functools.partial(self._sync_job, job, definition, method, call, args, kwargs, done))

        def reject(job: _Job, why: Why) -> None:
            error = self.refusal(why, f"{definition.name}/{key}")
            self._complete(functools.partial(self._answer, call, done, error))

        self.admit_call(definition, method, call, key, _Job(start, reject))
        return True

    def _answer(self, call: pb.Call, done: Callable[[pb.Reply | None], None], exc: FluentError) -> None:
        self.counters["errors"] += 1
        done(None if call.one_way else pb.Reply(seq=call.seq, error=error_to_pb(exc)))

    def _sync_job(
        self,
        job: _Job,
        definition: ActorDef,
        method: MethodInfo,
        call: pb.Call,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        done: Callable[[pb.Reply | None], None],
    ) -> None:
        assert job.act is not None
        try:
            reply = self.runner.run_sync(
                definition, job.act, method, self.context_for(job.act, call), call, args, kwargs
            )
        finally:
            self.done(job)
        reply.seq = call.seq
        result = None if call.one_way else reply
        self._complete(lambda: done(result))

    def _run_job(self, job: Callable[[], None]) -> None:
        """Start a sync turn: in this worker thread after its current turn, else in the pool."""
        chain: list[Callable[[], None]] | None = getattr(self._thread_state, "chain", None)
        if chain is not None:
            chain.append(job)
        else:
            self.workers.submit(self._worker, job)

    def _worker(self, job: Callable[[], None]) -> None:
        chain: list[Callable[[], None]] = [job]
        self._thread_state.chain = chain
        try:
            while chain:
                chain.pop(0)()
        finally:
            self._thread_state.chain = None

    def _complete(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop; completions from worker threads share one wake-up."""
        if threading.get_ident() == self.loop_thread:
            fn()
            return
        with self._lock:
            self._completed.append(fn)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._completed = self._completed, []
            self._drain_scheduled = False
        for fn in items:
            fn()

    # -- unary calls, the gateway, async methods --------------------------------------------------

    async def dispatch(self, call: pb.Call, *, local: bool = False) -> pb.Reply | None:
        """Run one call; returns its reply (None for one-way calls). Never raises."""
        self.counters["local_calls" if local else "direct_messages"] += 1
        try:
            reply = await self._run(call)
        except FluentError as exc:
            self.counters["errors"] += 1
            reply = pb.Reply(error=error_to_pb(exc))
        except asyncio.CancelledError:  # the host is stopping: the caller still gets an answer
            self.counters["errors"] += 1
            reply = pb.Reply(error=error_to_pb(Unavailable(f"host {self.group}/{self.shard} stopped during the call")))
        except BaseException as exc:  # a bug of ours: answer, and say so in the log
            log.error("call %s/%s.%s failed in the host", call.type_name, call.key, call.method, exc_info=exc)
            self.counters["errors"] += 1
            reply = pb.Reply(error=error_to_pb(FluentError(f"internal error in host: {type(exc).__name__}")))
        if call.one_way:
            return None
        reply.seq = call.seq
        return reply

    def _prepare(self, definition: ActorDef, call: pb.Call) -> tuple[MethodInfo, str, tuple[Any, ...], dict[str, Any]]:
        method = definition.method(call.method)
        key = check_key(call.key)
        args, kwargs = codec.decode_args(call.args)
        method.bind(args, kwargs)
        return method, key, args, kwargs

    async def _run(self, call: pb.Call) -> pb.Reply:
        if self.persistence.fenced:
            raise Redirect(f"host {self.group}/{self.shard} no longer owns its shard")
        definition = await self._definition(call.type_name)
        if call.method == BULK_METHOD:
            return await bulk(self, definition, call)
        method, key, args, kwargs = self._prepare(definition, call)
        job = await self.turn(definition, method, call, key)
        assert job.act is not None
        ctx = self.context_for(job.act, call)
        if method.is_async:
            try:
                return await self.runner.run_async(definition, job.act, method, ctx, call, args, kwargs)
            finally:
                self.done(job)
        work = self.loop.run_in_executor(
            self.workers, self.runner.run_sync, definition, job.act, method, ctx, call, args, kwargs
        )
        work.add_done_callback(lambda _: self.done(job))  # when the turn ends, even if this task is cancelled
        return await asyncio.shield(work)

    async def turn(self, definition: ActorDef, method: MethodInfo, call: pb.Call, key: str) -> _Job:
        """Wait (on the loop) until ``call`` may run; the caller must ``done`` the job."""
        fut: asyncio.Future[None] = self.loop.create_future()
        job = _Job(
            lambda _: self._settle(fut, None),
            lambda j, why: self._settle(fut, self.refusal(why, j.act.address if j.act else key)),
        )
        self.admit_call(definition, method, call, key, job)
        try:
            await fut
        except asyncio.CancelledError:
            self.withdraw(job)
            raise
        return job

    def _settle(self, fut: asyncio.Future[None], error: BaseException | None) -> None:
        def settle() -> None:
            if fut.done():
                return
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

        if threading.get_ident() == self.loop_thread:
            settle()
        else:
            self.loop.call_soon_threadsafe(settle)

    # -- a caller thread waiting its turn (co-located calls, bulk items) -------------------------------

    def dispatch_inline(self, call: pb.Call) -> pb.Reply | None:
        """Run a sync method in the calling thread if its identity is live; else None.

        The caller is a thread outside the event loop (a co-located actor's turn) and
        falls back to ``dispatch`` on the loop when this returns None.
        """
        definition = self.types.get(call.type_name)
        if definition is None or self.persistence.fenced:
            return None
        try:
            method = definition.method(call.method)
        except NotFound:
            return None
        act = self.table.get(f"{call.type_name}/{call.key}")
        if method.is_async or act is None or act.instance is None:
            return None
        self.counters["local_calls"] += 1
        try:
            _, key, args, kwargs = self._prepare(definition, call)
            job = self.wait_turn(definition, method, call, key)
        except FluentError as exc:
            self.counters["errors"] += 1
            reply = pb.Reply(error=error_to_pb(exc))
        else:
            assert job.act is not None
            try:
                reply = self.runner.run_sync(
                    definition, job.act, method, self.context_for(job.act, call), call, args, kwargs
                )
            finally:
                self.done(job)
        reply.seq = call.seq
        return reply

    def wait_turn(self, definition: ActorDef, method: MethodInfo, call: pb.Call, key: str) -> _Job:
        """Block this thread (never the loop) until ``call`` may run; raises if refused."""
        ready = threading.Event()
        refused: list[FluentError] = []

        def reject(job: _Job, why: Why) -> None:
            refused.append(self.refusal(why, f"{definition.name}/{key}"))
            ready.set()

        job = _Job(lambda _: ready.set(), reject)
        self.admit_call(definition, method, call, key, job)
        ready.wait()  # bounded: a deadline makes the policy refuse the turn in time
        if refused:
            raise refused[0]
        return job

    def context_for(self, act: Activation, call: pb.Call) -> Context:
        return Context(
            address=act.address,
            key=act.key,
            type_name=act.type_name,
            node_id=self.node_id,
            gpu_ids=self.gpu_ids,
            mode="stateful",
            chain=(*call.call_chain, act.address),
            chain_id=call.chain_id or call.request_id,
            deadline=call.deadline,
            request_id=call.request_id,
            replay=call.attempt > 0,
            _scheduler=self.upkeep.reminders,
        )

    # -- internal turns: passivation, write-behind --------------------------------------------------

    async def internal_turn(self, act: Activation, event: Callable[[int], Event]) -> _Job | None:
        """A turn of the host's own on ``act`` (passivation, flush); None if refused."""
        fut: asyncio.Future[None] = self.loop.create_future()
        job = _Job(lambda _: self._settle(fut, None), lambda _, why: self._settle(fut, self.refusal(why, act.address)))
        self.admit(act.address, act.type_name, act.key, job, event)
        try:
            await fut
        except FluentError:
            return None
        return job

    async def passivate(self, act: Activation) -> bool:
        """Deactivate one identity if it is idle: ``on_deactivate``, then its state is written."""
        job = await self.internal_turn(act, lambda tid: Passivate(tid, act.address))
        if job is None:
            return False
        try:
            definition = self.types.get(act.type_name)
            if act.instance is not None and definition is not None:
                try:
                    await self.loop.run_in_executor(self.workers, self.upkeep.deactivate, definition, act)
                except Exception as exc:  # the flush failed (store down, fenced): memory is dropped anyway
                    log.warning("%s: state not written on passivation: %s: %s", act.address, type(exc).__name__, exc)
                self.counters["passivations"] += 1
            act.instance = None
            act.ready = False
        finally:
            self.done(job)
        return True

    async def flush(self, act: Activation) -> None:
        """Write a write-behind identity now, as a turn of its own."""
        definition = self.types.get(act.type_name)
        if definition is None:
            return
        address = act.address
        job = await self.internal_turn(act, lambda tid: Arrive(tid, address, f"flush:{tid}", time.time()))
        if job is None:
            return
        try:
            if act.instance is not None:
                await self.loop.run_in_executor(self.workers, self.persistence.flush, definition, act)
        finally:
            self.done(job)

    async def flush_dirty(self) -> int:
        """Write identities changed since their last write (persist="interval")."""
        return await self.upkeep.flush_dirty()

    async def reap_once(self) -> int:
        """Passivate idle identities and those beyond the live cap; returns how many."""
        return await self.upkeep.reap_once()

    async def close(self, grace_s: float = 10.0) -> None:
        """Passivate everything (on_deactivate runs, state is flushed) and stop; identities
        still in use are given ``grace_s`` to finish."""
        await self.upkeep.stop()
        until = time.monotonic() + grace_s
        while True:
            for act in self.table:
                await self.passivate(act)
            if not len(self.table) or time.monotonic() > until:
                break
            await asyncio.sleep(0.05)
        self.workers.shutdown(wait=False)

    # -- dispatcher extras ----------------------------------------------------------------------------

    async def accept(self, call: pb.Call) -> None:
        """Validate a one-way call before acknowledging it."""
        definition = await self._definition(call.type_name)
        self._prepare(definition, call)

    def status(self) -> pb.StatusReply:
        return pb.StatusReply(
            node_id=self.node_id,
            type_names=self.type_names,
            live_identities=self.live_identities,
            counters=self.counters,
            group=self.group,
            shard=self.shard,
            epoch=self.persistence.epoch,
        )
