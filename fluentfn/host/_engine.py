"""The host engine: admits and runs the turns of one shard's identities. Mechanism only.

Who may run when is decided by the admission policy (``_policy``, a pure state
machine): ``_admission`` turns what happens — a call arrived, a turn ended, a deadline
passed, the shard moved, an identity should be passivated — into policy events, and
carries out the instructions that come back (start this turn, refuse that one). Turns
run in ``_runner``; background upkeep (passivation, write-behind, ownership checks,
reminders) lives in ``_upkeep``; this module holds the entry points.

Entry points, by caller:
- ``submit(call, done)``: the peer stream, on the loop. Sync methods of known types go
  straight to a worker thread, and a worker that ends a turn runs the identity's next
  queued sync turn itself (one thread hop for a whole pipeline).
- ``dispatch(call)``: unary calls, the gateway, reminders, async methods, bulk calls.
- ``dispatch_inline(call)``: a co-located sync caller, in its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .. import _config
from .._actordef import ActorDef, MethodInfo
from .._call import Args, Call, Outcome
from .._context import Context
from .._ioloop import spawn
from .._phases import TALLY
from .._ref import BULK_METHOD, DELETE_METHOD, KEYED_PREFIX, check_key, check_keys
from .._stats import new_counters
from .._status import Status
from .._tracing import TurnTimes, turn_times
from .._tracing import enabled as tracing_enabled
from ..errors import FluentError, InvalidRequest, Redirect, Unavailable
from ..placement import shard_for
from ..state._store import Store, StoreLost
from ..wire import codec
from ..wire.errors import describe_error
from ._activations import Activation, ActivationTable, Released
from ._admission import Admission
from ._bulk import bulk
from ._lane import SyncLane
from ._metrics import MethodTally
from ._persistence import Persistence
from ._policy import Why
from ._runner import Hooks, TurnRunner
from ._timers import Timers
from ._turn import Item, Items, Request, may_repeat, record_for
from ._types import KnownTypes, TypeLoader
from ._upkeep import Upkeep
from ._workers import Workers

log = logging.getLogger("fluentfn.host")

"""Fetches an actor type this host has not seen yet (from the directory)."""


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
        cluster_id: str = "",
        shards: int | None = None,
        workers: Workers | None = None,
    ) -> None:
        self.group = group
        self.shard = shard
        self.shards = shards  # the group's shard count: keys of other shards are refused
        self.node_id = node_id
        self.gpu_ids = gpu_ids
        self.loop = loop
        self.loop_thread = loop_thread
        self.known = KnownTypes(group, load_type, lambda: self.upkeep.start())
        self.types = self.known.by_name
        self.admission = Admission(
            group=group,
            shard=shard,
            loop=loop,
            loop_thread=loop_thread,
            mailbox_limit=mailbox_limit,
            inflight_limit=inflight_limit,
            max_live=max_live,
            over_cap=lambda: self.upkeep.reap_soon(),
        )
        self._own_workers = workers is None  # a host's partitions share one pool
        self.workers = workers or Workers(sync_workers, f"fluentfn-{group}-{shard}")
        self.counters: dict[str, int] = new_counters()
        self.persistence = Persistence(store, group, shard, self.counters, cluster_id)
        hooks = Hooks(self.admission.activated, self.admission.deactivated, self.fence)
        self.runner = TurnRunner(self.persistence, self.counters, self.workers, loop, hooks)
        self.upkeep = Upkeep(self, self.persistence.store, max_live)
        self.persistence.on_reminders = self.upkeep.reminders.committed
        self.lane = SyncLane(self)
        self.timers = Timers(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loading: dict[str, list[tuple[Call, Callable[[Outcome | None], None], bool]]] = {}
        """Calls of a type this engine is loading, by type, in arrival order (``submit``)."""
        self._unadmitted: dict[str, int] = {}
        """Calls on the general path (a task each) that have not asked for their turn yet,
        by identity: a later call to one of them takes the same path, behind them."""

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
    def table(self) -> ActivationTable:
        return self.admission.table

    @property
    def live_identities(self) -> int:
        return len(self.admission.table)

    def add_type(self, definition: ActorDef) -> None:
        """Make a type callable here (replaces an older definition for new activations)."""
        self.known.add(definition)

    def start_background(self) -> None:
        """Start passivation, write-behind, ownership checks and reminders."""
        self.upkeep.start()

    # -- admission: events in, instructions carried out -------------------------------------------

    def fence(self) -> FluentError:
        """This host lost its shard: to a newer host of this cluster (callers are
        redirected), or to another cluster on the same namespace and store (every call is
        told so, and nothing is retried). Returns the error callers get from now on."""
        self.persistence.fenced = True
        why, message = self.persistence.fence_reason()
        self.admission.fence(why, message)
        return self.admission.fenced_error()

    def lose_store(self, exc: StoreLost) -> None:
        """The store is gone or was replaced: nothing written now would last, so refuse."""
        self.persistence.fenced = True
        self.admission.fence(Why.STORE_LOST, f"{exc}; calls are refused until the cluster is restarted on a store")

    # -- the stream: callbacks on the loop ----------------------------------------------------------

    def submit(self, call: Call, done: Callable[[Outcome | None], None], *, local: bool = False) -> None:
        """Callback form of ``dispatch``, called on the loop; ``done`` runs on the loop.
        ``local``: the caller is in this process (counted as a local call)."""
        call.arrived = call.arrived or time.perf_counter()
        if self._loading and call.type_name in self._loading:
            self._loading[call.type_name].append((call, done, local))  # behind the calls that came first
        elif self._unadmitted and call.address in self._unadmitted:
            self._general(call, done, local)  # behind a call still on its way to its turn
        elif self.lane.submit(call, done, local=local):
            return
        elif call.type_name not in self.types:
            # A type's first use loads it; calls that arrive meanwhile wait behind this one,
            # so that a later call does not take the lane while earlier ones still wait.
            self._loading[call.type_name] = [(call, done, local)]
            spawn(self._load_then(call.type_name), self._tasks)
        else:
            self._general(call, done, local)

    def _general(self, call: Call, done: Callable[[Outcome | None], None], local: bool) -> None:
        """``dispatch`` in a task of its own (async methods, bulk, delete). Its turn is asked
        for in the task's first step; until then the identity's later calls come this way
        too (tasks start in the order they were made), so none overtakes it on the lane."""
        address = call.address
        self._unadmitted[address] = self._unadmitted.get(address, 0) + 1
        spawn(self._dispatch_then(call, done, local, address), self._tasks)

    async def _load_then(self, name: str) -> None:
        """Load type ``name``, then submit the calls that waited for it, in arrival order."""
        try:
            await self.known.get(name)
        except FluentError:
            pass  # not served here: each waiting call's own dispatch answers why, below
        except asyncio.CancelledError:  # the host is stopping: every waiting call is answered
            stopped = describe_error(Unavailable(f"host {self.group}/{self.shard} stopped during the call"))
            for call, done, _ in self._loading.pop(name, []):
                done(Outcome(seq=call.seq, error=stopped))
            raise
        for call, done, local in self._loading.pop(name, []):
            if name in self.types:
                self.submit(call, done, local=local)
            else:
                spawn(self._dispatch_then(call, done, local), self._tasks)

    async def _dispatch_then(
        self, call: Call, done: Callable[[Outcome | None], None], local: bool, address: str = ""
    ) -> None:
        if address:  # ``_general``: its turn is asked for below, before this task first waits
            left = self._unadmitted.pop(address) - 1
            if left:
                self._unadmitted[address] = left
        done(await self.dispatch(call, local=local))

    # -- unary calls, the gateway, async methods --------------------------------------------------

    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None:
        """Run one call; returns its reply, for one-way calls too (a sender that wants to
        know a tell was refused, by a move say, gets it; the server drops the others).
        Never raises."""
        call.arrived = call.arrived or time.perf_counter()
        self.counters["local_calls" if local else "direct_messages"] += 1
        try:
            reply = await self._run(call)
        except FluentError as exc:
            self.counters["errors"] += 1
            reply = Outcome(error=describe_error(exc))
        except asyncio.CancelledError:  # the host is stopping: the caller still gets an answer
            self.counters["errors"] += 1
            stopped = Unavailable(f"host {self.group}/{self.shard} stopped during the call")
            reply = Outcome(error=describe_error(stopped))
        except BaseException as exc:  # a bug of ours: answer, and say so in the log
            log.error("call %s/%s.%s failed in the host", call.type_name, call.key, call.method, exc_info=exc)
            self.counters["errors"] += 1
            reply = Outcome(error=describe_error(FluentError(f"internal error in host: {type(exc).__name__}")))
        reply.seq = call.seq
        return reply

    def own(self, key: str, checked: bool = False) -> str:
        """``key``, checked, if this shard owns it; else ``Redirect``: the caller's placement
        is wrong or stale, and serving the key here would make a second activation of it."""
        if not checked:
            key = check_key(key)
        if self.shards is not None and self.shards > 1:
            home = shard_for(key, self.shards)
            if home != self.shard:
                raise Redirect(f"{self.group}/{key} belongs to shard {home}, not {self.shard}: call it there")
        return key

    def own_all(self, keys: list[object]) -> list[str]:
        """``own`` for each of ``keys`` (a bulk call's): all checked before any runs."""
        checked = check_keys(keys)
        if self.shards is not None and self.shards > 1:
            for key in checked:
                self.own(key, checked=True)
        return checked

    def prepare(
        self,
        definition: ActorDef,
        call: Call,
        method: MethodInfo | None = None,
        *,
        checked: bool = False,
        values: Args | None = None,
    ) -> Request:
        """Decode and bind ``call`` (to ``method``, its method if already looked up):
        NotFound, InvalidRequest or Redirect if it cannot run here. ``checked``: its key is
        known good (a live identity's: checked when that identity's first call came).
        ``values``: its arguments as they are, not decoded (a co-located caller's plain ones)."""
        if method is None:
            method = definition.method(call.method)
        if call.request_id.startswith(KEYED_PREFIX) and not definition.options.persist.writes_before_reply:
            raise InvalidRequest(
                f"{definition.name} has persist={definition.options.persist!r}, which records no replies: an "
                "idempotency key cannot be honoured (use persist='call', or retry without a key)"
            )
        key = call.key if checked else check_key(call.key)
        args, kwargs = codec.decode_args(call.args) if values is None else values
        method.bind(args, kwargs)  # bad input is refused wherever it lands; then ownership
        return Request(definition, method, call, self.own(key, checked=True), args, kwargs)

    async def _run(self, call: Call) -> Outcome:
        if self.persistence.fenced:
            raise self.admission.fenced_error()
        definition = await self.known.get(call.type_name)
        if call.method == BULK_METHOD:
            return await bulk(self, definition, call)
        if call.method == DELETE_METHOD:
            await self.upkeep.erase(definition.name, self.own(call.key))
            return Outcome(value=codec.encode(None))
        req = self.prepare(definition, call)
        job = await self.admission.turn(req)
        assert job.act is not None
        ctx = self.context_for(job.act, call, req.method)
        if req.method.is_async:
            try:
                return await self.runner.run_async(req, job.act, ctx)
            finally:
                self.admission.done(job)
        work = self.loop.run_in_executor(self.workers, self.runner.run_sync, req, job.act, ctx)
        work.add_done_callback(lambda _: self.admission.done(job))  # when the turn ends, even if this task is cancelled
        return await asyncio.shield(work)

    # -- a caller thread waiting its turn (co-located calls, bulk items) -------------------------------

    def dispatch_inline(self, call: Call, values: Args | None = None) -> Outcome | None:
        """Run a sync method in the calling thread if its identity is live; else None.

        The caller is a thread outside the event loop (a co-located actor's turn) and
        falls back to ``dispatch`` on the loop when this returns None. ``values``: the
        call's arguments as they are (``codec.plain_args``), when ``call`` carries none encoded.
        """
        definition = self.types.get(call.type_name)
        if definition is None or self.persistence.fenced:
            return None
        method = definition.methods.get(call.method)
        if method is None or method.is_async:
            return None
        act = self.admission.table.get(f"{call.type_name}/{call.key}")
        if act is None or act.instance is None:
            return None
        self.counters["local_calls"] += 1
        call.arrived = call.arrived or time.perf_counter()
        try:
            req = self.prepare(definition, call, method, checked=True, values=values)  # a live identity's key
        except FluentError as exc:
            self.counters["errors"] += 1
            reply = Outcome(error=describe_error(exc))
        else:
            reply = self.turn_here(req)
        reply.seq = call.seq
        return reply

    def turn_here(self, req: Request) -> Outcome:
        """A sync turn in the calling thread, once it may run (a co-located caller, a bulk
        batch's worker): its reply; a refused turn's is its error. Never raises."""
        try:
            act, tid = self.admission.wait_turn(req)
        except FluentError as exc:
            self.counters["errors"] += 1
            return Outcome(error=describe_error(exc))
        try:
            return self.runner.run_sync(req, act, self.context_for(act, req.call, req.method))
        finally:
            self.admission.leave(act, tid)

    def turns_here(self, turns: Items, items: list[Item]) -> list[bytes]:
        """``turn_here`` for each of ``items``, in order: the records of their replies
        (``record_for``). First attempts of one sync method of a memory-only type (a bulk
        batch's items), most of them in batches (``TurnRunner.run_batch``); a turn the
        phase tally times, or any while tracing, and an item whose identity is busy, take
        ``turn_here``."""
        out: list[bytes] = []
        what, count = turns.method.what, len(items)
        while len(out) < count:
            start = len(out)
            untimed = 0 if tracing_enabled() else TALLY.untimed(what)
            if untimed:
                chunk = items[start : start + untimed]
                self.runner.run_batch(
                    turns, chunk, self.admission.enter_as, self.admission.leave, self._untimed_context, out
                )
                TALLY.skip(what, len(out) - start)
                if len(out) - start == len(chunk):
                    continue
            req = turns.request(items[len(out)])  # timed, or its identity is busy: it waits its turn
            out.append(record_for(req.call, self.turn_here(req)))
        return out

    def _untimed_context(self, act: Activation, call: Call) -> Context:
        """``context_for`` a turn that is neither timed nor traced."""
        return self._context(act, call, None)

    def context_for(self, act: Activation, call: Call, method: MethodInfo | None = None) -> Context:
        """The context of ``call``'s turn (of ``method``, if looked up), which begins now
        (its queue time ends here)."""
        what = method.what if method is not None else f"{act.type_name}.{call.method}"
        times = turn_times(what, call.arrived, call.trace)
        if times is not None and times.span is not None:
            definition = self.types.get(act.type_name)
            times.describe(
                address=act.address, method=call.method, request_id=call.request_id, mode="stateful",
                persist=str(definition.options.persist) if definition is not None else None,
                host=f"{self.node_id[:12]}:{os.getpid()}", partition=self.shard, attempt=call.attempt,
            )  # fmt: skip
        return self._context(act, call, times)

    def _context(self, act: Activation, call: Call, times: TurnTimes | None) -> Context:
        """The ``ff.context()`` of ``call``'s turn of ``act``, with its ``times``."""
        return Context.of_turn(
            act.address, act.key, act.type_name, self.node_id, self.gpu_ids, "stateful",
            (*call.call_chain, act.address), call.chain_id or call.request_id, call.deadline, call.request_id,
            may_repeat(call), self.upkeep.reminders, self.timers, times,
        )  # fmt: skip

    # -- internal turns: passivation, write-behind --------------------------------------------------

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
            for act in self.admission.table:
                await self.upkeep.passivate(act)
            if not len(self.admission.table) or time.monotonic() > until:
                break
            await asyncio.sleep(0.05)
        if self._own_workers:
            self.workers.shutdown(wait=False)

    async def quiesce(self, until: float) -> float:
        """``release``'s first step: serve until no turn runs (at most ``QUIESCE_S``, and
        not past ``until``, a ``time.monotonic()`` deadline), then stop admitting. Returns
        how long it went on serving (about 0 once it has stopped admitting). The
        background loops (passivation, reminders) end first, while it still serves: on a
        saturated host their end took up to 24 ms, which its callers were held for when it
        came after."""
        asked = time.monotonic()
        await self.upkeep.stop()
        await self.admission.quiesce(max(0.0, min(until - time.monotonic(), _config.QUIESCE_S)))
        return time.monotonic() - asked

    async def release(self, until: float, executor: Executor | None = None) -> Released:
        """Hand this partition over to another host (a live move).

        The partition goes on serving until no turn of it runs (at most ``QUIESCE_S``),
        and at that moment new and queued turns start being refused with a redirect
        (callers retry at the next owner): its callers are held while it is handed over,
        not while its turns end. If no such moment comes, it stops admitting anyway and
        the running turns get until ``until`` (a ``time.monotonic()`` deadline) to end,
        their writes ahead of the host's other writers. Then every identity is
        deactivated (``on_deactivate``, its state written) and the in-memory state of
        ``persist="never"`` identities is returned, for the next owner to start from. The
        hand-over runs here on the loop if it can be done at once (``Upkeep.hand_over``),
        else on ``executor`` (the host's move thread: not queued behind turns on the
        workers; the workers if None). The engine serves nothing afterwards. Returns the
        memory, how long it went on serving, and how long its callers were held.
        """
        served_s = await self.quiesce(until)
        stopped = time.monotonic()  # its callers are held from now on
        self.persistence.draining = True
        while self.admission.running and time.monotonic() < until:
            await asyncio.sleep(0.002)
        await self.upkeep.stop()  # (done already, unless the release did not quiesce first)
        handoff = self.upkeep.hand_over(nowait=True)
        if handoff is None:
            handoff = await self.loop.run_in_executor(executor or self.workers, self.upkeep.hand_over)
        assert handoff is not None  # (a blocking hand-over always gives one)
        self.persistence.fenced = True
        self.admission.fence(Why.REDIRECT)
        return Released(handoff, served_s, time.monotonic() - stopped)

    # -- dispatcher extras ----------------------------------------------------------------------------

    async def accept(self, call: Call) -> None:
        """Validate a one-way call before acknowledging it."""
        definition = await self.known.get(call.type_name)
        self.prepare(definition, call)

    def status(self) -> Status:
        return Status(
            node_id=self.node_id,
            type_names=tuple(self.type_names),
            live_identities=self.live_identities,
            counters=dict(self.counters),
            group=self.group,
            shard=self.shard,
            epoch=self.persistence.epoch,
        )
