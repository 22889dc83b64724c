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
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import _config
from .._actordef import ActorDef, MethodInfo
from .._context import CURRENT, Context, Scheduler
from .._ref import check_key
from ..errors import CallTimeout, FluentError, NotFound, Overloaded
from ..wire import codec
from ..wire._gen import actorhost_pb2 as pb
from ..wire.errors import error_to_pb
from ._activations import Activation, ActivationTable
from ._mailbox import Turn

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
)


class UserFailure(Exception):
    """Wraps an exception that escaped user code, so it is never taken for our own."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


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
        scheduler: Scheduler | None = None,
        mailbox_limit: int = _config.MAILBOX_LIMIT,
        inflight_limit: int = _config.HOST_INFLIGHT_LIMIT,
        sync_workers: int = _config.SYNC_WORKERS,
        max_live: int | None = None,
    ) -> None:
        self.group = group
        self.shard = shard
        self.epoch = 0
        self.node_id = node_id
        self.gpu_ids = gpu_ids
        self.loop = loop
        self._loop_thread = loop_thread
        self._load_type = load_type
        self._scheduler = scheduler
        self._mailbox_limit = mailbox_limit
        self._inflight_limit = inflight_limit
        self._max_live = max_live
        self._types: dict[str, ActorDef] = {}
        self._table = ActivationTable()
        self._lock = threading.Lock()
        self._inflight = 0
        self._executor = ThreadPoolExecutor(sync_workers, thread_name_prefix=f"fluentfn-{group}-{shard}")
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # -- types ---------------------------------------------------------------------

    def add_type(self, definition: ActorDef) -> None:
        """Make a type callable here (replaces an older definition for new activations)."""
        self._types[definition.name] = definition
        if self._reaper is None and not self._closed:
            self._reaper = self.loop.create_task(self._reap_idle())

    @property
    def type_names(self) -> list[str]:
        return sorted(self._types)

    @property
    def live_identities(self) -> int:
        return len(self._table)

    async def _definition(self, name: str) -> ActorDef:
        definition = self._types.get(name)
        if definition is None:
            loaded = await self._load_type(name)
            if loaded is None or loaded.options.group != self.group:
                raise NotFound(f"no actor type {name!r} in group {self.group!r}")
            self.add_type(loaded)
            definition = loaded
        return definition

    # -- the network / cross-task entry point -----------------------------------------

    async def dispatch(self, call: pb.Call, *, local: bool = False) -> pb.Reply | None:
        """Run one call; returns its reply (None for one-way calls). Never raises."""
        self.counters["local_calls" if local else "direct_messages"] += 1
        try:
            value = await self._run(call)
        except UserFailure as failure:
            self.counters["errors"] += 1
            error = error_to_pb(failure.exc, f"{call.type_name}/{call.key}.{call.method}", user=True)
            return None if call.one_way else pb.Reply(seq=call.seq, error=error)
        except FluentError as exc:
            self.counters["errors"] += 1
            return None if call.one_way else pb.Reply(seq=call.seq, error=error_to_pb(exc))
        return None if call.one_way else pb.Reply(seq=call.seq, value=value)

    async def _run(self, call: pb.Call) -> bytes:
        if call.deadline and time.time() > call.deadline:
            raise CallTimeout(f"deadline passed before {call.type_name}/{call.key}.{call.method} started")
        definition = await self._definition(call.type_name)
        method = definition.method(call.method)
        key = check_key(call.key)
        args, kwargs = codec.decode_args(call.args)
        method.bind(args, kwargs)
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
                    result = await self._run_async(definition, act, method, ctx, args, kwargs)
                else:
                    result = await self.loop.run_in_executor(
                        self._executor, self._run_sync, definition, act, method, ctx, args, kwargs
                    )
            finally:
                self._release(act, turn)
        finally:
            self._inflight -= 1
        try:
            return codec.encode(result)
        except FluentError as exc:
            raise FluentError(f"the result of {call.method} cannot be sent: {exc}") from None

    # -- in-process fast path ----------------------------------------------------------

    def dispatch_inline(self, call: pb.Call) -> pb.Reply | None:
        """Run a sync method in the calling thread if its identity is live; else None.

        The caller is a thread outside the event loop (a co-located actor's turn) and
        falls back to ``dispatch`` on the loop when this returns None.
        """
        definition = self._types.get(call.type_name)
        if definition is None:
            return None
        try:
            method = definition.method(call.method)
        except NotFound:
            return None
        if method.is_async:
            return None
        address = f"{call.type_name}/{call.key}"
        done = threading.Event()
        turn = Turn(chain_id=call.chain_id or call.request_id, chain=tuple(call.call_chain), wake=done.set)
        with self._lock:
            act = self._table.get(address)
            if act is None or act.instance is None:
                return None
            admitted = act.mailbox.offer(turn)
        self.counters["local_calls"] += 1
        try:
            if not admitted:
                timeout = max(0.0, call.deadline - time.time()) if call.deadline else None
                if not done.wait(timeout):
                    with self._lock:
                        self._wake(act.mailbox.cancel(turn))
                    raise CallTimeout(f"{address} stayed busy past the deadline")
            if self._table.get(address) is not act:
                self._release(act, turn)
                return self._fallback(call)
            try:
                args, kwargs = codec.decode_args(call.args)
                method.bind(args, kwargs)
                result = self._run_sync(definition, act, method, self._context(act, call), args, kwargs)
            finally:
                self._release(act, turn)
            return pb.Reply(seq=call.seq, value=codec.encode(result))
        except UserFailure as failure:
            self.counters["errors"] += 1
            return pb.Reply(seq=call.seq, error=error_to_pb(failure.exc, address + "." + call.method, user=True))
        except FluentError as exc:
            self.counters["errors"] += 1
            return pb.Reply(seq=call.seq, error=error_to_pb(exc))

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
            with self._lock:
                if fut.done():  # admitted just as we gave up: hand the turn on
                    self._wake(act.mailbox.finish(turn))
                else:
                    self._wake(act.mailbox.cancel(turn))
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
            _scheduler=self._scheduler,
        )

    def _ensure_instance(self, definition: ActorDef, act: Activation) -> None:
        """Activate ``act`` (runs in its first turn; caller holds the turn)."""
        if act.instance is not None:
            return
        try:
            instance = definition.new_instance()
            if definition.on_activate is not None:
                result = definition.on_activate(instance)
                if asyncio.iscoroutine(result):
                    result.close()
                    raise FluentError("on_activate must be a plain (sync) method")
        except BaseException as exc:
            with self._lock:
                self._table.remove(act)
            raise UserFailure(exc) from None
        act.instance = instance
        act.ready = True
        self.counters["activations"] += 1

    def _run_sync(
        self,
        definition: ActorDef,
        act: Activation,
        method: MethodInfo,
        ctx: Context,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        token = CURRENT.set(ctx)
        try:
            self._ensure_instance(definition, act)
            self.counters["calls"] += 1
            try:
                result = method.fn(act.instance, *args, **kwargs)
            except BaseException as exc:
                raise UserFailure(exc) from None
            self.persist_turn(definition, act)
            return result
        finally:
            CURRENT.reset(token)

    async def _run_async(
        self,
        definition: ActorDef,
        act: Activation,
        method: MethodInfo,
        ctx: Context,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if act.instance is None:
            await self.loop.run_in_executor(self._executor, self._activate_with_context, definition, act, ctx)
        token = CURRENT.set(ctx)
        try:
            self.counters["calls"] += 1
            try:
                result = await method.fn(act.instance, *args, **kwargs)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise UserFailure(exc) from None
            self.persist_turn(definition, act)
            return result
        finally:
            CURRENT.reset(token)

    def _activate_with_context(self, definition: ActorDef, act: Activation, ctx: Context) -> None:
        token = CURRENT.set(ctx)
        try:
            self._ensure_instance(definition, act)
        finally:
            CURRENT.reset(token)

    def persist_turn(self, definition: ActorDef, act: Activation) -> None:
        """The point where a turn's state change becomes durable (persist="call").

        State lives in memory only until a store is attached; this is where it plugs in.
        """

    # -- passivation -------------------------------------------------------------------

    async def passivate(self, act: Activation) -> None:
        """Deactivate one identity: a turn of its own, so it never overlaps a call."""
        turn = Turn(chain_id=f"passivate:{act.address}")
        await self._acquire(act, turn, 0.0)
        try:
            if self._table.get(act.address) is not act or act.instance is None:
                return
            definition = self._types.get(act.type_name)
            if definition is not None and definition.on_deactivate is not None:
                ctx = Context(address=act.address, key=act.key, type_name=act.type_name, node_id=self.node_id)
                await self.loop.run_in_executor(self._executor, self._deactivate, definition, act, ctx)
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
            assert definition.on_deactivate is not None
            definition.on_deactivate(act.instance)
        except Exception:
            pass  # a failing hook must not keep an identity alive forever
        finally:
            CURRENT.reset(token)
        self.persist_turn(definition, act)

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

    async def _reap_idle(self) -> None:
        while not self._closed:
            timeouts = [d.options.idle_timeout_s for d in self._types.values()] or [1.0]
            await asyncio.sleep(min(1.0, max(0.05, min(timeouts) / 4)))
            try:
                await self.reap_once()
            except Exception:  # keep reaping; a failure here must not stop the host
                pass

    async def close(self) -> None:
        """Passivate everything (running on_deactivate) and stop."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
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
            epoch=self.epoch,
        )
