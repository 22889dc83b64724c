"""The host engine: runs turns of the identities of one shard.

Runs on the process's I/O event loop. Asynchronous methods run on the loop; synchronous
ones in a thread pool, so that a blocking nested call inside them does not stall the
loop. A synchronous caller in the same process (a co-located actor) may run a turn in
its own thread (``dispatch_inline``): no thread hop, arguments still copied by value.

Activation is the first part of an identity's first turn, and passivation is a turn
of its own, so the mailbox alone orders everything that touches an instance.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .. import _config
from .._actordef import ActorDef, MethodInfo
from .._context import CURRENT, Context
from .._ioloop import spawn
from .._ref import check_key
from ..errors import (
    CallTimeout,
    FluentError,
    InvalidRequest,
    NotFound,
    Overloaded,
    Redirect,
    Unavailable,
    code_value,
    status_for,
)
from ..state._store import Store
from ..wire import codec
from ..wire._gen import actorhost_pb2 as pb
from ..wire.errors import error_to_pb
from ._activations import Activation, ActivationTable
from ._mailbox import Turn
from ._metrics import MethodTally
from ._persistence import Persistence
from ._reminders import Reminders
from ._turn import UserFailure, instantiate, reply_for, run_sync
from ._workers import Workers

log = logging.getLogger("fluentfn.host")

TypeLoader = Callable[[str], Awaitable[ActorDef | None]]
"""Fetches an actor type this host has not seen yet (from the directory)."""

COUNTERS = (
    "calls",
    "direct_messages",
    "local_calls",
    "activations",
    "passivations",
    "errors",
    "messages_via_storage",
    "storage_reads",
    "storage_writes",
    "storage_bytes_read",
    "storage_bytes_written",
    "cold_starts",
    "overdue_turns",
)


BULK_METHOD = "__bulk__"
_RETRYABLE = frozenset(code_value(status_for(e(""))) for e in (Redirect, Unavailable, Overloaded, CallTimeout))


@dataclass(slots=True, eq=False)
class _Running:
    """A sync turn running in a worker thread (watched for overrunning its deadline)."""

    address: str
    method: str
    deadline: float
    overdue: bool = False


class HostEngine:
    """Activation table, mailboxes and turn execution for one shard of one group."""

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
        self._loop_thread = loop_thread
        self._load_type = load_type
        self._mailbox_limit = mailbox_limit
        self._inflight_limit = inflight_limit
        self._max_live = max_live
        self._types: dict[str, ActorDef] = {}
        self._unknown: dict[str, float] = {}  # type name -> until when it is known to be missing
        self._table = ActivationTable()
        self._lock = threading.Lock()
        self._inflight = 0
        self._thread_state = threading.local()
        self._completed: list[Callable[[], None]] = []
        self._drain_scheduled = False
        self._executor = Workers(sync_workers, f"fluentfn-{group}-{shard}")
        self._running: set[_Running] = set()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.persistence = Persistence(store, group, shard, self.counters)
        self.methods = MethodTally()
        self._reminder_wakeup = asyncio.Event()
        self._reminders = Reminders(store, group, shard, self._wake_reminders)
        self._background: list[asyncio.Task[None]] = []
        self._firing: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def epoch(self) -> int:
        """This host's ownership epoch of its shard (from the store)."""
        return self.persistence.epoch

    # -- types ---------------------------------------------------------------------

    def add_type(self, definition: ActorDef) -> None:
        """Make a type callable here (replaces an older definition for new activations)."""
        self._types[definition.name] = definition
        if not self._background and not self._closed:
            self.start_background()

    @property
    def type_names(self) -> list[str]:
        return sorted(self._types)

    @property
    def live_identities(self) -> int:
        return len(self._table)

    async def _definition(self, name: str) -> ActorDef:
        definition = self._types.get(name)
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

    # -- the network / cross-task entry point -----------------------------------------

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
            log.exception("call %s/%s.%s failed inside the host", call.type_name, call.key, call.method)
            self.counters["errors"] += 1
            reply = pb.Reply(error=error_to_pb(FluentError(f"internal error in host: {type(exc).__name__}")))
        if call.one_way:
            return None
        reply.seq = call.seq
        return reply

    def submit(self, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> None:
        """Callback form of ``dispatch``, called on the loop; ``done`` runs on the loop.

        The common case — a sync method of a known type — goes straight to a worker
        thread without an asyncio task, and a worker that finishes a turn runs the
        identity's next queued sync turn itself (one thread hop for a whole pipeline).
        """
        if not self._submit_sync(call, done):
            spawn(self._dispatch_then(call, done), self._tasks)

    async def _dispatch_then(self, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> None:
        done(await self.dispatch(call))

    def _submit_sync(self, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> bool:
        definition = self._types.get(call.type_name)
        if definition is None or self.persistence.fenced or call.method == BULK_METHOD:
            return False
        try:
            method = definition.method(call.method)
            if method.is_async or (call.deadline and time.time() > call.deadline):
                return False
            _, key, args, kwargs = self._prepare(definition, call)
            if self._inflight >= self._inflight_limit:
                raise Overloaded(f"host {self.group}/{self.shard} has {self._inflight} calls in flight")
            act = self._activation_for(definition, key)
            turn = Turn(chain_id=call.chain_id or call.request_id, chain=tuple(call.call_chain))
            job = functools.partial(self._sync_job, definition, act, method, turn, call, args, kwargs, done)
            turn.wake = functools.partial(self._run_job, job)
            with self._lock:
                admitted = act.mailbox.offer(turn)
        except FluentError as exc:
            self.counters["errors"] += 1
            done(None if call.one_way else pb.Reply(seq=call.seq, error=error_to_pb(exc)))
            return True
        self.counters["direct_messages"] += 1
        self._inflight += 1
        if admitted:
            self._executor.submit(self._worker, job)
        elif call.deadline:
            self.loop.call_later(max(0.0, call.deadline - time.time()), self._expire, act, turn, call, done)
        return True

    def _expire(self, act: Activation, turn: Turn, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> None:
        """A queued turn's deadline passed: withdraw it and answer CallTimeout."""
        with self._lock:
            if act.mailbox.waiting is None or turn not in act.mailbox.waiting:
                return  # it started (or finished) in time
            self._wake(act.mailbox.cancel(turn))
        self._inflight -= 1
        self.counters["errors"] += 1
        error = error_to_pb(CallTimeout(f"{act.address} stayed busy past the deadline"))
        done(None if call.one_way else pb.Reply(seq=call.seq, error=error))

    def _run_job(self, job: Callable[[], None]) -> None:
        """Start a queued turn: in this worker thread after its current turn, else in the pool."""
        chain: list[Callable[[], None]] | None = getattr(self._thread_state, "chain", None)
        if chain is not None:
            chain.append(job)
        else:
            self._executor.submit(self._worker, job)

    def _worker(self, job: Callable[[], None]) -> None:
        chain: list[Callable[[], None]] = [job]
        self._thread_state.chain = chain
        try:
            while chain:
                chain.pop(0)()
        finally:
            self._thread_state.chain = None

    def _sync_job(
        self,
        definition: ActorDef,
        act: Activation,
        method: MethodInfo,
        turn: Turn,
        call: pb.Call,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        done: Callable[[pb.Reply | None], None],
    ) -> None:
        if act.instance is None and self._table.get(act.address) is not act:
            # passivated while this turn waited: hand back to the general path on the loop
            self._release(act, turn)
            self._complete(functools.partial(self.submit, call, done))
            return
        try:
            reply = self._turn_sync(definition, act, method, self._context(act, call), call, args, kwargs)
        except FluentError as exc:
            self.counters["errors"] += 1
            reply = pb.Reply(error=error_to_pb(exc))
        except BaseException as exc:  # a bug here must still answer the caller
            log.exception("call %s.%s failed inside the host", act.address, call.method)
            self.counters["errors"] += 1
            reply = pb.Reply(error=error_to_pb(FluentError(f"internal error in host: {type(exc).__name__}")))
        finally:
            self._release(act, turn)
        reply.seq = call.seq
        result = None if call.one_way else reply
        self._complete(lambda: done(result))

    def _complete(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop; completions from worker threads share one wake-up."""
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
        self._inflight -= len(items)
        for fn in items:
            fn()

    def _prepare(self, definition: ActorDef, call: pb.Call) -> tuple[MethodInfo, str, tuple[Any, ...], dict[str, Any]]:
        method = definition.method(call.method)
        key = check_key(call.key)
        args, kwargs = codec.decode_args(call.args)
        method.bind(args, kwargs)
        return method, key, args, kwargs

    async def _run(self, call: pb.Call) -> pb.Reply:
        if self.persistence.fenced:
            raise Redirect(f"host {self.group}/{self.shard} no longer owns its shard")
        if call.deadline and time.time() > call.deadline:
            raise CallTimeout(f"deadline passed before {call.type_name}/{call.key}.{call.method} started")
        definition = await self._definition(call.type_name)
        if call.method == BULK_METHOD:
            return await self._bulk(definition, call)
        method, key, args, kwargs = self._prepare(definition, call)
        if self._inflight >= self._inflight_limit:
            raise Overloaded(f"host {self.group}/{self.shard} has {self._inflight} calls in flight")
        self._inflight += 1
        try:
            turn = Turn(
                chain_id=call.chain_id or call.request_id,
                chain=tuple(call.call_chain),
                interleave=definition.options.reentrant and method.is_async,
            )
            while True:
                act = self._activation_for(definition, key)
                await self._acquire(act, turn, call.deadline)
                if act.instance is not None or self._table.get(act.address) is act:
                    break
                self._release(act, turn)  # passivated or failed while we waited: start over
            try:
                ctx = self._context(act, call)
                if method.is_async:
                    return await self._turn_async(definition, act, method, ctx, call, args, kwargs)
                return await self.loop.run_in_executor(
                    self._executor, self._turn_sync, definition, act, method, ctx, call, args, kwargs
                )
            finally:
                self._release(act, turn)
        finally:
            self._inflight -= 1

    # -- bulk calls: one message per shard ----------------------------------------------

    async def _bulk(self, definition: ActorDef, call: pb.Call) -> pb.Reply:
        """Run ``method`` on many identities of this shard (``ActorType.bulk``)."""
        args, _ = codec.decode_args(call.args)
        if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], list):
            raise InvalidRequest("a bulk call carries [method, [[key, args, kwargs], ...]]")
        method = definition.method(args[0])
        items: list[tuple[pb.Call, tuple[Any, ...], dict[str, Any]]] = []
        for i, entry in enumerate(args[1]):
            if not (
                isinstance(entry, list)
                and len(entry) == 3
                and isinstance(entry[1], list)
                and isinstance(entry[2], dict)
            ):
                raise InvalidRequest("a bulk entry is [key, args, kwargs]")
            sub_id = f"{call.request_id}.{i}"
            sub = pb.Call(
                type_name=call.type_name,
                key=check_key(entry[0]),
                method=method.name,
                request_id=sub_id,
                chain_id=sub_id,
                deadline=call.deadline,
            )
            items.append((sub, tuple(entry[1]), entry[2]))
        if method.is_async:
            for sub, a, kw in items:
                sub.args = codec.encode_args(a, kw)
            replies = await asyncio.gather(*(self.dispatch(sub, local=True) for sub, _, _ in items))
        else:
            replies = await self.loop.run_in_executor(self._executor, self._bulk_sync, definition, method, items)
        out = [r.SerializeToString() if r is not None else b"" for r in replies]
        return pb.Reply(value=codec.encode(out))

    def _bulk_sync(
        self, definition: ActorDef, method: MethodInfo, items: list[tuple[pb.Call, tuple[Any, ...], dict[str, Any]]]
    ) -> list[pb.Reply | None]:
        """Sync bulk items in this worker thread: no hop per identity."""
        out: list[pb.Reply | None] = []
        self.counters["local_calls"] += len(items)
        for sub, args, kwargs in items:
            try:
                method.bind(args, kwargs)
                act = self._activation_for(definition, sub.key)
                turn = Turn(chain_id=sub.chain_id)
                self._wait_turn(act, turn, sub.deadline)
                try:
                    if act.instance is None and self._table.get(act.address) is not act:
                        sub.args = codec.encode_args(args, kwargs)
                        out.append(self._fallback(sub))
                        continue
                    out.append(self._turn_sync(definition, act, method, self._context(act, sub), sub, args, kwargs))
                finally:
                    self._release(act, turn)
            except FluentError as exc:
                out.append(pb.Reply(error=error_to_pb(exc)))
        return out

    # -- in-process fast path ----------------------------------------------------------

    def dispatch_inline(self, call: pb.Call) -> pb.Reply | None:
        """Run a sync method in the calling thread if its identity is live; else None.

        The caller is a thread outside the event loop (a co-located actor's turn) and
        falls back to ``dispatch`` on the loop when this returns None.
        """
        definition = self._types.get(call.type_name)
        if definition is None or self.persistence.fenced:
            return None
        try:
            method = definition.method(call.method)
        except NotFound:
            return None
        if method.is_async:
            return None
        address = f"{call.type_name}/{call.key}"
        act = self._table.get(address)
        if act is None or act.instance is None:
            return None
        turn = Turn(chain_id=call.chain_id or call.request_id, chain=tuple(call.call_chain))
        self.counters["local_calls"] += 1
        try:
            self._wait_turn(act, turn, call.deadline)
            if self._table.get(address) is not act:
                self._release(act, turn)
                return self._fallback(call)
            try:
                _, _, args, kwargs = self._prepare(definition, call)
                reply = self._turn_sync(definition, act, method, self._context(act, call), call, args, kwargs)
            finally:
                self._release(act, turn)
        except FluentError as exc:
            self.counters["errors"] += 1
            reply = pb.Reply(error=error_to_pb(exc))
        reply.seq = call.seq
        return reply

    def _wait_turn(self, act: Activation, turn: Turn, deadline: float) -> None:
        """Block this worker thread (never the loop) until ``turn`` may run.

        CallTimeout past ``deadline``; the event is made only when the turn has to wait.
        """
        done: threading.Event | None = None
        with self._lock:
            if not act.mailbox.offer(turn):  # wake is set before any release can see it
                done = threading.Event()
                turn.wake = done.set
        if done is None:
            return
        if not done.wait(max(0.0, deadline - time.time()) if deadline else None):
            with self._lock:
                started = act.mailbox.cancel(turn)  # or, if admitted just now, hands it on
            self._wake(started)
            raise CallTimeout(f"{act.address} stayed busy past the deadline")

    def _fallback(self, call: pb.Call) -> pb.Reply | None:
        return asyncio.run_coroutine_threadsafe(self.dispatch(call, local=True), self.loop).result()

    # -- turns -------------------------------------------------------------------------

    def _activation_for(self, definition: ActorDef, key: str) -> Activation:
        address = f"{definition.name}/{key}"
        with self._lock:
            act = self._table.get(address)
            if act is None:
                act = Activation(definition.name, key, self._mailbox_limit)
                self._table.add(act, time.monotonic())
            return act

    async def _acquire(self, act: Activation, turn: Turn, deadline: float) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()
        turn.wake = lambda: self._resolve_soon(fut)
        with self._lock:
            if act.mailbox.offer(turn):
                return
        try:
            if deadline:
                await asyncio.wait_for(fut, max(0.0, deadline - time.time()))
            else:
                await fut
        except (TimeoutError, asyncio.CancelledError) as exc:
            # wait_for cancels ``fut`` on timeout, so ``fut`` says nothing about admission:
            # the mailbox does (withdrawn if still waiting; handed on if admitted just now).
            with self._lock:
                started = act.mailbox.cancel(turn)
            self._wake(started)
            if isinstance(exc, TimeoutError):
                raise CallTimeout(f"{act.address} stayed busy past the deadline") from None
            raise

    def _resolve_soon(self, fut: asyncio.Future[None]) -> None:
        def resolve() -> None:
            if not fut.done():
                fut.set_result(None)

        if threading.get_ident() == self._loop_thread:
            resolve()
        else:
            self.loop.call_soon_threadsafe(resolve)

    @staticmethod
    def _wake(turns: list[Turn]) -> None:
        for t in turns:
            if t.wake is not None:
                t.wake()

    def _release(self, act: Activation, turn: Turn) -> None:
        with self._lock:
            started = act.mailbox.finish(turn)
            self._table.touch(act, time.monotonic())
        self._wake(started)

    def _drop(self, act: Activation) -> None:
        """Forget an identity whose memory may differ from the store (a failed write)."""
        with self._lock:
            self._table.remove(act)
        act.instance = None
        act.ready = False

    def _context(self, act: Activation, call: pb.Call) -> Context:
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
            _scheduler=self._reminders,
        )

    def _ensure_instance(self, definition: ActorDef, act: Activation) -> None:
        """Activate ``act``: load its state, or run ``__init__``; then ``on_activate``.

        Runs inside the identity's first turn, with the turn's context set.
        """
        if act.instance is not None:
            return
        try:
            try:
                stored = self.persistence.load(definition, act)
            except FluentError:
                raise
            except Exception as exc:
                raise Unavailable(f"{act.address}: state store failed: {type(exc).__name__}: {exc}") from None
            url = self.persistence.store.url if self.persistence.store is not None else ""
            instance = instantiate(definition, stored, act.address, url)
        except BaseException:
            self._drop(act)
            raise
        act.instance = instance
        act.ready = True
        self.counters["activations"] += 1
        with self._lock:
            started = act.mailbox.activated()
        self._wake(started)

    def _begin(self, definition: ActorDef, act: Activation, call: pb.Call) -> pb.Reply | None:
        """Activation and dedupe at the start of a turn: a reply ends the turn early."""
        try:
            self._ensure_instance(definition, act)
        except UserFailure as failure:
            return pb.Reply(error=error_to_pb(failure.exc, f"{act.address} activation", user=True))
        recorded = self.persistence.recorded(act, call.request_id, replay=call.attempt > 0)
        if recorded is not None:
            return pb.Reply.FromString(recorded)
        self.counters["calls"] += 1
        return None

    def _finish(
        self, definition: ActorDef, act: Activation, call: pb.Call, method: MethodInfo, outcome: Any, failed: bool
    ) -> pb.Reply:
        """Encode the outcome, and make the turn durable before the reply leaves.

        If the result cannot be sent or the state cannot be stored, the turn never
        happened: the identity is rolled back to its last durable state and the caller
        gets one clear, non-retryable error.
        """
        try:
            reply = reply_for(outcome, failed, f"{act.address}.{call.method}")
            if not method.readonly:
                self.persistence.after_turn(definition, act, call.request_id, reply.SerializeToString())
        except FluentError:
            self._rollback(definition, act)
            raise
        except Exception as exc:  # the store failed: memory is ahead of it
            self._rollback(definition, act)
            raise Unavailable(
                f"{act.address}.{call.method}: state store failed ({type(exc).__name__}: {exc}); "
                "the call did not take effect"
            ) from None
        return reply

    def _rollback(self, definition: ActorDef, act: Activation) -> None:
        """Undo a turn that cannot take effect: forget memory, so the identity comes back
        from its last durable state. Memory-only identities (``persist="never"``) and
        write-behind ones (``"interval"``) have no pre-turn copy and keep their memory."""
        if definition.options.persist == "call" and self.persistence.store is not None:
            self._drop(act)

    def _turn_sync(
        self,
        definition: ActorDef,
        act: Activation,
        method: MethodInfo,
        ctx: Context,
        call: pb.Call,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> pb.Reply:
        token = CURRENT.set(ctx)
        running = _Running(act.address, method.name, call.deadline)
        self._running.add(running)
        try:
            early = self._begin(definition, act, call)
            if early is not None:
                return early
            t0 = time.perf_counter()
            outcome, failed = run_sync(method, act.instance, args, kwargs)
            self.methods.observe(act.type_name, method.name, time.perf_counter() - t0, failed)
            return self._finish(definition, act, call, method, outcome, failed)
        finally:
            self._running.discard(running)
            if running.overdue:
                self._executor.unstuck()
                log.warning(
                    "%s.%s finished %.1f s past its deadline", act.address, method.name, time.time() - running.deadline
                )
            CURRENT.reset(token)

    async def _turn_async(
        self,
        definition: ActorDef,
        act: Activation,
        method: MethodInfo,
        ctx: Context,
        call: pb.Call,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> pb.Reply:
        if act.instance is None:  # activation may load from the store or block: not on the loop
            early = await self.loop.run_in_executor(
                self._executor, self._begin_with_context, definition, act, call, ctx
            )
        else:
            early = self._begin(definition, act, call)
        if early is not None:
            return early
        token = CURRENT.set(ctx)
        try:
            t0 = time.perf_counter()
            outcome, failed, expired = await self._run_async(method, act.instance, args, kwargs, call.deadline)
            self.methods.observe(act.type_name, method.name, time.perf_counter() - t0, failed)
        finally:
            CURRENT.reset(token)
        if expired:
            self._rollback(definition, act)
            raise CallTimeout(
                f"{act.address}.{method.name} ran past its deadline and was cancelled; it was rolled back"
            )
        if definition.options.persist == "call" and self.persistence.store is not None and not method.readonly:
            return await self.loop.run_in_executor(
                self._executor, self._finish, definition, act, call, method, outcome, failed
            )
        return self._finish(definition, act, call, method, outcome, failed)

    async def _run_async(
        self, method: MethodInfo, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], deadline: float
    ) -> tuple[Any, bool, bool]:
        """(outcome, failed, expired): the method, cancelled at the call's deadline."""
        when = self.loop.time() + max(0.0, deadline - time.time()) if deadline else None
        timer = asyncio.timeout_at(when)
        try:
            async with timer:
                return await method.fn(instance, *args, **kwargs), False, False
        except TimeoutError as exc:
            if timer.expired():
                return None, False, True
            return exc, True, False
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the host is stopping: dispatch answers for it
            return exc, True, False  # user code raised CancelledError itself
        except BaseException as exc:
            return exc, True, False

    def _begin_with_context(
        self, definition: ActorDef, act: Activation, call: pb.Call, ctx: Context
    ) -> pb.Reply | None:
        token = CURRENT.set(ctx)
        try:
            return self._begin(definition, act, call)
        finally:
            CURRENT.reset(token)

    # -- passivation -------------------------------------------------------------------

    async def passivate(self, act: Activation) -> None:
        """Deactivate one identity: a turn of its own, so it never overlaps a call."""
        turn = Turn(chain_id=f"passivate:{act.address}")
        await self._acquire(act, turn, 0.0)
        try:
            if self._table.get(act.address) is not act or act.instance is None:
                return
            definition = self._types.get(act.type_name)
            if definition is not None:
                ctx = Context(address=act.address, key=act.key, type_name=act.type_name, node_id=self.node_id)
                try:
                    await self.loop.run_in_executor(self._executor, self._deactivate, definition, act, ctx)
                except Exception as exc:  # the flush failed (store down, fenced): memory is dropped anyway
                    log.warning("%s: state not written on passivation: %s: %s", act.address, type(exc).__name__, exc)
            with self._lock:
                self._table.remove(act)
            act.instance = None
            act.ready = False
            self.counters["passivations"] += 1
        finally:
            self._release(act, turn)

    def _deactivate(self, definition: ActorDef, act: Activation, ctx: Context) -> None:
        token = CURRENT.set(ctx)
        try:
            if definition.on_deactivate is not None:
                definition.on_deactivate(act.instance)
        except Exception:  # a failing hook must not keep an identity alive forever
            log.exception("%s.on_deactivate failed", act.address)
        finally:
            CURRENT.reset(token)
        self.persistence.flush(definition, act)

    def _idle_timeout(self, type_name: str) -> float:
        definition = self._types.get(type_name)
        return definition.options.idle_timeout_s if definition else float("inf")

    async def reap_once(self) -> int:
        """Passivate idle identities and those beyond the live cap; returns how many."""
        if not self._types:
            return 0
        now = time.monotonic()
        min_timeout = min(d.options.idle_timeout_s for d in self._types.values())
        with self._lock:
            victims = self._table.idle(now, self._idle_timeout, min_timeout)
            if self._max_live is not None:
                seen = {id(v) for v in victims}
                victims += [a for a in self._table.over_cap(self._max_live) if id(a) not in seen]
        for act in victims:
            await self.passivate(act)
        return len(victims)

    def start_background(self) -> None:
        """Start the passivation, write-behind, reminder and ownership loops (on the loop)."""

        def start() -> None:
            if self._background or self._closed:
                return
            self._background = [
                self.loop.create_task(self._every(self._reap_period, self.reap_once)),
                self.loop.create_task(self._every(lambda: 1.0, self.flush_dirty)),
                self.loop.create_task(self._every(lambda: 1.0, self._check_owner)),
                self.loop.create_task(self._every(lambda: 60.0, self._prune_replies)),
                self.loop.create_task(self._every(lambda: 0.25, self._watch_overdue)),
                self.loop.create_task(self._reminder_loop()),
            ]

        if threading.get_ident() == self._loop_thread:
            start()
        else:
            self.loop.call_soon_threadsafe(start)

    def _reap_period(self) -> float:
        timeouts = [d.options.idle_timeout_s for d in self._types.values()] or [1.0]
        return min(1.0, max(0.05, min(timeouts) / 4))

    async def _every(self, period: Callable[[], float], job: Callable[[], Awaitable[Any]]) -> None:
        while not self._closed:
            await asyncio.sleep(period())
            try:
                await job()
            except Exception:  # keep going; one failed round must not stop the host
                log.exception("host %s/%s: background job %s failed", self.group, self.shard, job)

    async def flush_dirty(self) -> int:
        """Write identities changed since their last write (persist="interval")."""
        dirty = [a for a in self._table if a.dirty]
        for act in dirty:
            definition = self._types.get(act.type_name)
            if definition is None:
                continue
            turn = Turn(chain_id=f"flush:{act.address}")
            await self._acquire(act, turn, 0.0)
            try:
                if act.instance is not None:
                    await self.loop.run_in_executor(self._executor, self.persistence.flush, definition, act)
            finally:
                self._release(act, turn)
        return len(dirty)

    async def _watch_overdue(self) -> None:
        """Report sync turns still running past their deadline, and stop counting them
        against the worker threads (they cannot be interrupted; others must not starve)."""
        now = time.time()
        for running in list(self._running):
            if running.deadline and not running.overdue and now > running.deadline:
                running.overdue = True
                self.counters["overdue_turns"] += 1
                self._executor.stuck()
                log.warning(
                    "%s.%s is still running %.1f s past its deadline (the caller got CallTimeout)",
                    running.address,
                    running.method,
                    now - running.deadline,
                )

    async def _prune_replies(self) -> None:
        if self.persistence.store is not None and not self.persistence.fenced:
            await self.loop.run_in_executor(self._executor, self.persistence.prune)

    async def _check_owner(self) -> None:
        if self.persistence.store is None or self.persistence.fenced:
            return
        owner = await self.loop.run_in_executor(self._executor, self.persistence.still_owner)
        if not owner:
            self.fence()

    def fence(self) -> None:
        """This host lost its shard: refuse calls (callers are redirected) and drop memory."""
        self.persistence.fenced = True
        for act in self._table:
            if act.mailbox.idle:
                self._drop(act)

    def _wake_reminders(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._reminder_wakeup.set()
        else:
            self.loop.call_soon_threadsafe(self._reminder_wakeup.set)

    async def _reminder_loop(self) -> None:
        while not self._closed:
            try:
                await asyncio.wait_for(self._reminder_wakeup.wait(), 0.25)
            except TimeoutError:
                pass
            self._reminder_wakeup.clear()
            if self.persistence.fenced or self.persistence.store is None:
                continue
            try:
                due = await self.loop.run_in_executor(self._executor, self._reminders.due)
            except Exception as exc:
                log.warning("host %s/%s: reminders not read: %s: %s", self.group, self.shard, type(exc).__name__, exc)
                continue
            for rem, method, args in due:
                if rem.rid not in self._firing:
                    self._firing.add(rem.rid)
                    spawn(self._fire(rem.address, rem.rid, method, args), self._tasks)

    async def _fire(self, address: str, rid: str, method: str, args: bytes) -> None:
        type_name, key = address.split("/", 1)
        request_id = f"rem:{rid}"
        call = pb.Call(  # attempt=1: a reminder may have fired before a crash
            type_name=type_name,
            key=key,
            method=method,
            args=args,
            request_id=request_id,
            chain_id=request_id,
            attempt=1,
        )
        try:
            reply = await self.dispatch(call, local=True)
            retry = reply is not None and reply.HasField("error") and reply.error.code in _RETRYABLE
            if not retry:
                await self.loop.run_in_executor(self._executor, self._reminders.cancel, address, rid)
        finally:
            self._firing.discard(rid)

    async def close(self) -> None:
        """Passivate everything (on_deactivate runs, state is flushed) and stop."""
        self._closed = True
        for task in self._background:
            task.cancel()
        for act in self._table:
            await self.passivate(act)
        self._executor.shutdown(wait=False)

    # -- dispatcher extras ---------------------------------------------------------------

    async def accept(self, call: pb.Call) -> None:
        """Validate a one-way call before acknowledging it."""
        definition = await self._definition(call.type_name)
        method = definition.method(call.method)
        check_key(call.key)
        args, kwargs = codec.decode_args(call.args)
        method.bind(args, kwargs)

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
