"""Running an admitted turn in a host: activation, recorded replies, the method, the
durability point, rollback. Every entry point returns a reply and never raises.

Admission (who may run when) is the policy's business (``_policy``); this module only
runs what it is handed, and reports back through three callbacks: the identity became
active, it lost its instance, the shard was found to belong to another host.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .._actordef import ActorDef, MethodInfo
from .._call import Call, Outcome
from .._context import CURRENT, Context, LazyContext
from .._ref import KEYED_PREFIX
from .._router import MAX_LOST, went_away
from .._tracing import TurnTimes
from ..errors import CallTimeout, FluentError, Redirect, Unavailable
from ..state._store import Scheduled, WouldBlock
from ..wire.errors import describe_error
from ._activations import Activation
from ._image import baseline
from ._metrics import MethodTally
from ._persistence import Persistence
from ._turn import (
    NONE_RECORD,
    NONE_VALUE,
    Item,
    Items,
    Request,
    UserFailure,
    instantiate,
    must_record,
    record_for,
    reply_for,
    run_async,
    run_sync,
)
from ._underway import UnderWay, call_key, call_ttl_s
from ._workers import Workers
from ._written import Change

log = logging.getLogger("fluentfn.host")
T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Running:
    """A sync turn running in a worker thread (watched for overrunning its deadline)."""

    address: str
    method: str
    deadline: float
    overdue: bool = False


@dataclass(frozen=True, slots=True)
class Hooks:
    """How the runner tells the engine what happened to an identity or the shard."""

    activated: Callable[[Activation], None]
    deactivated: Callable[[Activation], None]
    fenced: Callable[[], FluentError]


class TurnRunner:
    """Runs turns of one host's identities."""

    def __init__(
        self,
        persistence: Persistence,
        counters: dict[str, int],
        workers: Workers,
        loop: asyncio.AbstractEventLoop,
        hooks: Hooks,
    ) -> None:
        self.persistence = persistence
        self.counters = counters
        self.methods = MethodTally()
        # Turns of calls re-sent after their host went away with them (``_counted``).
        self._under_way = UnderWay(persistence.store)
        self.running: set[Running] = set()
        self._workers = workers
        self._loop = loop
        self._hooks = hooks

    # -- entry points: a reply, always ------------------------------------------------------

    def run_sync(self, req: Request, act: Activation, ctx: Context) -> Outcome:
        """A sync turn, in the calling (worker) thread."""
        if not ctx.replay:
            return self._run_first(req, act, ctx)
        reply = self._run_sync(req, act, ctx)
        if act.moved:  # ``_unless_moved`` and ``_ended``, inline: once per turn
            reply = self._unless_moved(act, req.call, reply)
        return reply if ctx._times is None else _ended(ctx._times, reply)

    def _unless_moved(self, act: Activation, call: Call, reply: Outcome) -> Outcome:
        """A turn whose identity was handed over while it ran has no known outcome."""
        if not act.moved:
            return reply
        self.counters["errors"] += 1
        return Outcome(
            error=describe_error(
                CallTimeout(
                    f"{act.address}.{call.method}: its partition moved while the call ran past the drain; "
                    "it may or may not have taken effect"
                )
            )
        )

    def _run_sync(self, req: Request, act: Activation, ctx: Context) -> Outcome:
        definition, method, call = req.definition, req.method, req.call
        token = CURRENT.set(ctx)
        running = Running(act.address, method.name, call.deadline)
        self.running.add(running)
        try:
            early = self._begin(definition, act, call, ctx.replay)
            if early is not None:
                return early
            outcome, failed = self._method(req, act, ctx._times)
            scheduled = ctx.take_scheduled() if ctx._scheduled else ()
            return self._finish(definition, act, call, method, outcome, failed, scheduled, ctx._times)
        except BaseException as exc:
            return self._error_reply(act, call, exc)
        finally:
            if went_away(call.attempt):  # ``_counted``: the turn ended with its host alive
                self._under_way.ended(call_key(act.address, call.request_id))
            self._unwatch(running)
            CURRENT.reset(token)

    def _run_first(self, req: Request, act: Activation, ctx: Context) -> Outcome:
        """``run_sync`` for a turn's first attempt, in fewer steps (most turns: a
        co-located call, a bulk item, a stream's call in a worker). A first attempt's
        repeated id is answered from memory, never from the store, so the turn is:
        activate (from the store, a handoff, or ``__init__``), the reply recorded in memory
        if one is, the method, then its durability point: the general ``_finish`` where
        the store is written (``persist="call"``/``"interval"``, or reminders), else the
        reply recorded in memory (``persist="never"``). ``tests/test_lean_turn.py`` holds
        it to the general path's outcomes, state, records and counters in every mode."""
        method, call, times = req.method, req.call, ctx._times
        token = CURRENT.set(ctx)
        running = Running(act.address, method.name, call.deadline)
        self.running.add(running)
        try:
            reply = self._first_turn(req, act, ctx)
        except BaseException as exc:
            reply = self._error_reply(act, call, exc)
        finally:
            self._unwatch(running)
            CURRENT.reset(token)
        if act.moved:
            reply = self._unless_moved(act, call, reply)
        return reply if times is None else _ended(times, reply)

    def _first_turn(self, req: Request, act: Activation, ctx: Context) -> Outcome:
        definition, method, call = req.definition, req.method, req.call
        if act.instance is None:
            try:
                self._activate(definition, act)
            except UserFailure as failure:
                return Outcome(error=describe_error(failure.exc, f"{act.address} activation", user=True))
        if act.replies is not None:
            recorded = self.persistence.recorded(act, call)
            if recorded is not None:  # the same id again, on its first attempt: answered, not run
                return recorded
        self.counters["calls"] += 1
        times = ctx._times
        outcome, failed = self._method(req, act, times)
        scheduled = ctx.take_scheduled() if ctx._scheduled else ()
        if scheduled or not definition.options.persist.memory_only:  # the store is written
            return self._finish(definition, act, call, method, outcome, failed, scheduled, times)
        reply = reply_for(outcome, failed, f"{act.address}.{call.method}")
        if not method.readonly:
            self.persistence.remember(act, call.request_id, record_for(call, reply))
        return reply

    def run_batch(
        self,
        turns: Items,
        items: Sequence[Item],
        enter: Callable[[str, str, str, str, float], tuple[Activation, int] | None],
        leave: Callable[[Activation | None, int], None],
        context: Callable[[Activation, Call], Context],
        out: list[bytes],
    ) -> None:
        """First attempts of untimed sync turns of one method of a memory-only type, one
        after another in this thread (a bulk batch's ``items``, ``_bulk.py``); the records
        of their replies (``record_for``) are appended to ``out``. Each is ``_run_first``'s
        turn, with what that does per turn done once for the batch: one overdue watch, one
        tally, one record made for both memory and the reply. What a turn does not need is
        not made: its ``Context`` (``context``) only if it asks for one (``LazyContext``),
        its ``Call`` only if its reply is not None, it was answered before, or it failed.
        ``enter`` (``Admission.enter_as``) gives each its turn if it may start now; at the
        first it refuses, the batch stops there (the caller has that item wait its turn in
        the general way, then goes on: the items run in order). ``tests/test_lean_turn.py``
        holds it to the general path's outcomes, state, records and counters."""
        definition, method = turns.definition, turns.method
        type_name, deadline, make_call = definition.name, turns.bulk.deadline, turns.call
        fn, readonly, counters = method.fn, method.readonly, self.counters
        recorded, monotonic = self.persistence.recorded, time.monotonic
        seconds: list[float] = []  # each turn's run, for the method's tally (and its count of calls)
        failures = 0
        clock = time.perf_counter
        running = Running(type_name, method.name, deadline)
        self.running.add(running)

        def made(act: Activation, request_id: str) -> Context:
            return context(act, make_call(act.key, request_id))

        try:
            for key, rid, args in items:
                entered = enter(type_name, key, f"{type_name}/{key}", rid, deadline)
                if entered is None:
                    return
                act, tid = entered
                running.address = act.address
                lazy = LazyContext(made, act, rid)
                token = CURRENT.set(lazy)
                call: Call | None = None
                try:
                    if act.instance is None:
                        self._activate(definition, act)
                    reply = None
                    if act.replies is not None:  # (a repeated id, on its first attempt, is answered from memory)
                        reply = recorded(act, call := make_call(key, rid))
                    if reply is None:
                        t0 = clock()
                        try:
                            outcome, failed = fn(act.instance, *args), False
                        except BaseException as exc:  # user code: its outcome (``run_sync``)
                            outcome, failed = exc, True
                            failures += 1
                        seconds.append(clock() - t0)
                        ctx = lazy.made
                        if ctx is not None and ctx._scheduled:  # reminders: written at the general durability point
                            call = call or make_call(key, rid)
                            reply = self._finish(definition, act, call, method, outcome, failed, ctx.take_scheduled())
                        else:
                            if outcome is None and not failed and not rid.startswith(KEYED_PREFIX):
                                record = NONE_RECORD  # its ``record_for``, made once (its reply only if moved)
                            else:
                                reply = reply_for(outcome, failed, f"{act.address}.{method.name}")
                                record = record_for(call := call or make_call(key, rid), reply)
                            if not readonly:  # the record kept is the one sent: made once (``remember``, inline)
                                act.keep(rid, record, monotonic(), True)
                            if not act.moved:
                                out.append(record)
                                continue
                            if reply is None:
                                reply = Outcome(NONE_VALUE)
                except UserFailure as failure:
                    reply = Outcome(error=describe_error(failure.exc, f"{act.address} activation", user=True))
                except BaseException as exc:
                    reply = self._error_reply(act, call := call or make_call(key, rid), exc)
                finally:
                    CURRENT.reset(token)
                    leave(act, tid)
                call = call or make_call(key, rid)
                out.append(record_for(call, self._unless_moved(act, call, reply) if act.moved else reply))
        finally:
            self._unwatch(running)
            if seconds:
                counters["calls"] += len(seconds)
                self.methods.observe_many(method.what, definition.name, method.name, seconds, failures)

    def _method(self, req: Request, act: Activation, times: TurnTimes | None) -> tuple[Any, bool]:
        """Run a sync turn's method, timed: the method's tally and the turn's "run" phase."""
        method = req.method
        t0 = time.perf_counter()
        outcome, failed = run_sync(method, act.instance, req.args, req.kwargs)
        t1 = time.perf_counter()
        self.methods.observe(method.what, act.type_name, method.name, t1 - t0, failed)
        if times is not None:
            times.mark("run", t0, t1)
        return outcome, failed

    def _unwatch(self, running: Running) -> None:
        """A sync turn ended: off the overdue watch (and its worker back, if it overran)."""
        self.running.discard(running)
        if running.overdue:
            self._workers.unstuck()
            late = time.time() - running.deadline
            log.warning("%s.%s finished %.1f s past its deadline", running.address, running.method, late)

    def run_on_loop(
        self, req: Request, act: Activation, ctx: Context
    ) -> tuple[Outcome, Callable[..., Outcome | None] | None]:
        """A turn of a call-free sync method of a live identity, on the event loop.

        Returns (reply, None) when the turn is complete, or (reply, write) when it changed
        the state under ``persist="call"``: ``write()`` blocks (run it in a worker), makes
        the turn durable and returns what to send — the reply, or the error if the write
        failed (the turn then never happened: the identity is rolled back).
        ``write(nowait=True)`` writes only if the store takes it at once, else returns None.
        """
        definition, method, call, times = req.definition, req.method, req.call, ctx._times
        token = CURRENT.set(ctx)
        try:
            recorded = self.persistence.recorded(act, call)  # in memory only: a first attempt
            if recorded is not None:
                return _ended(times, recorded, "replayed"), None
            self.counters["calls"] += 1
            outcome, failed = self._method(req, act, times)
            scheduled = ctx.take_scheduled()
            if method.readonly and not scheduled:
                return _ended(times, self._encoded(definition, act, call, outcome, failed)), None
            record = must_record(call.request_id, scheduled)
            due = self._durably(definition, act, call, times, self.persistence.write_due, definition, act, record)
            reply = self._encoded(definition, act, call, outcome, failed)
            if due is not None or scheduled:
                write = functools.partial(self._write_turn, definition, act, call, reply, due, scheduled, times)
                return reply, write
            if not definition.options.persist.writes_before_reply:
                self.persistence.remember(act, call.request_id, record_for(call, reply))
            return _ended(times, reply), None
        except BaseException as exc:
            return _ended(times, self._error_reply(act, call, exc)), None
        finally:
            CURRENT.reset(token)

    def _write_turn(
        self,
        definition: ActorDef,
        act: Activation,
        call: Call,
        reply: Outcome,
        snapshot: Change | None,
        scheduled: Sequence[Scheduled] = (),
        times: TurnTimes | None = None,
        *,
        nowait: bool = False,
    ) -> Outcome | None:
        """The durability point of a turn that ran on the loop (in a worker thread; or, with
        ``nowait``, on the loop if the store takes the write at once: None if it did not,
        nothing written)."""
        if snapshot is None:
            if nowait:
                return None

            def write() -> None:
                if not definition.options.persist.writes_before_reply:
                    self.persistence.remember(act, call.request_id, record_for(call, reply))
                self.persistence.add_reminders(scheduled)

            try:
                self._durably(definition, act, call, times, write)
            except BaseException as exc:
                return _ended(times, self._error_reply(act, call, exc))
            return _ended(times, reply)
        t0 = time.perf_counter()  # (``_durably``, written out: most turns that write come here)
        try:
            self.persistence.write_turn(
                act, snapshot, call.request_id, record_for(call, reply), scheduled, nowait=nowait
            )
        except WouldBlock:
            return None  # nothing was written: the caller writes again, blocking
        except BaseException as exc:
            return _ended(times, self._error_reply(act, call, self._undone(definition, act, call, exc)))
        if times is not None:
            times.mark("write", t0, time.perf_counter())
        return _ended(times, reply)

    async def run_async(self, req: Request, act: Activation, ctx: Context) -> Outcome:
        """An async turn, on the loop: cancelled at the call's deadline and rolled back."""
        reply = await self._run_async(req, act, ctx)
        call = req.call
        if went_away(call.attempt):  # ``_counted``: the turn ended with its host alive
            key = call_key(act.address, call.request_id)
            try:
                await self._loop.run_in_executor(self._workers, self._under_way.ended, key)
            except RuntimeError as exc:  # the host is stopping (no workers): the count stays, as at a death
                log.warning("the count of turns under way %s was not removed: %s", key, exc)
        return _ended(ctx._times, self._unless_moved(act, call, reply))

    async def _run_async(self, req: Request, act: Activation, ctx: Context) -> Outcome:
        definition, method, call, args, kwargs = req.definition, req.method, req.call, req.args, req.kwargs
        try:
            if act.instance is None or went_away(call.attempt):  # a load or a count in the store: not on the loop
                early = await self._loop.run_in_executor(self._workers, self._begin_in, definition, act, call, ctx)
            else:
                early = self._begin(definition, act, call, ctx.replay)
            if early is not None:
                return early
            token = CURRENT.set(ctx)
            try:
                t0 = time.perf_counter()
                outcome, failed, expired = await run_async(method, act.instance, args, kwargs, call.deadline)
                t1 = time.perf_counter()
                self.methods.observe(method.what, act.type_name, method.name, t1 - t0, failed)
                if ctx._times is not None:
                    ctx._times.mark("run", t0, t1)
            finally:
                CURRENT.reset(token)
            scheduled = ctx.take_scheduled()  # a turn rolled back schedules nothing
            if expired:
                self.rollback(definition, act)
                raise CallTimeout(f"{act.address}.{method.name} ran past its deadline and was cancelled; rolled back")
            blocking = definition.options.persist.writes_before_reply and self.persistence.store is not None
            if (blocking and not method.readonly) or scheduled:
                return await self._loop.run_in_executor(
                    self._workers, self._finish, definition, act, call, method, outcome, failed, scheduled, ctx._times
                )
            return self._finish(definition, act, call, method, outcome, failed, (), ctx._times)
        except asyncio.CancelledError:  # the host is stopping
            return self._error_reply(act, call, Unavailable(f"{act.address}: host stopped during the call"))
        except BaseException as exc:
            return self._error_reply(act, call, exc)

    def _error_reply(self, act: Activation, call: Call, exc: BaseException) -> Outcome:
        self.counters["errors"] += 1
        if isinstance(exc, Redirect):  # our write found a newer epoch: the engine says what callers get
            exc = self._hooks.fenced()
        if isinstance(exc, FluentError):
            return Outcome(error=describe_error(exc))
        log.error("%s.%s failed inside the host", act.address, call.method, exc_info=exc)
        return Outcome(error=describe_error(FluentError(f"internal error in host: {type(exc).__name__}")))

    # -- steps --------------------------------------------------------------------------------

    def _begin_in(self, definition: ActorDef, act: Activation, call: Call, ctx: Context) -> Outcome | None:
        token = CURRENT.set(ctx)
        try:
            return self._begin(definition, act, call, ctx.replay)
        finally:
            CURRENT.reset(token)

    def _begin(self, definition: ActorDef, act: Activation, call: Call, replay: bool) -> Outcome | None:
        """Activation and dedupe at the start of a turn: a reply ends the turn early.
        ``replay``: the call may have run before (``may_repeat``), so its record is looked up.
        A call re-sent after its host went away with it is counted first (``_counted``)."""
        if went_away(call.attempt):
            refused = self._counted(act, call)
            if refused is not None:
                return refused
        try:
            self._activate(definition, act)
        except UserFailure as failure:
            return Outcome(error=describe_error(failure.exc, f"{act.address} activation", user=True))
        recorded = self.persistence.recorded(act, call, replay=replay)
        if recorded is not None:
            return recorded
        self.counters["calls"] += 1
        return None

    def _counted(self, act: Activation, call: Call) -> Outcome | None:
        """Count the turn of a call re-sent after its host went away with it
        (``_router.went_away``) as under way, in the store (the turn's end removes the
        count); None, or the refusal of one that was under way at ``MAX_LOST`` host deaths
        (the first send's, which its re-sending says, and the counted ones since). Calls
        that waited beside it when the host died are not counted: they keep their sends."""
        tries = self._under_way.begin(call_key(act.address, call.request_id), call_ttl_s(call, time.time()))
        if tries < MAX_LOST:
            return None
        self.counters["errors"] += 1
        log.error(
            "%s.%s (request %s) was under way when its host went away %d times: not run again (it may be what "
            "ends the host)", act.address, call.method, call.request_id, tries,
        )  # fmt: skip
        refusal = Unavailable(
            f"{act.address}.{call.method}: its turn was under way when its host went away {tries} times; not run "
            "again, since the call itself may be what ends the host (see the host's log; it may have run)"
        )
        return Outcome(error=describe_error(refusal))

    def _stored(self, definition: ActorDef, act: Activation) -> bytes | None:
        """``act``'s stored (or handed-over) state; Unavailable if the store failed."""
        try:
            return self.persistence.load(definition, act)
        except FluentError:
            raise
        except Exception as exc:
            raise Unavailable(f"{act.address}: state store failed: {type(exc).__name__}: {exc}") from None

    def _activate(self, definition: ActorDef, act: Activation) -> None:
        """Load the identity's state, or run ``__init__``; then ``on_activate``."""
        if act.instance is not None:
            return
        t0 = time.perf_counter()
        try:
            # Memory only, and nothing handed over at a move: nothing to load.
            if self.persistence.handoff or not definition.options.persist.memory_only:
                stored = self._stored(definition, act)
            else:
                stored = None
            if stored is None:
                instance = instantiate(definition, None, act.address)
            else:
                instance = self._restored(definition, act, stored)
        except BaseException:
            self.drop(act)
            raise
        act.instance = instance
        act.ready = True
        self.counters["activations"] += 1
        ctx = CURRENT.get()  # a lazy context's turns are untimed: no need to make it
        if type(ctx) is Context and ctx._times is not None:
            ctx._times.mark("load", t0, time.perf_counter())
        if definition.options.reentrant:  # only interleaving turns wait for this; others wait for the turn's end
            self._hooks.activated(act)

    def _restored(self, definition: ActorDef, act: Activation, stored: bytes) -> Any:
        """``act``'s instance from its ``stored`` state, whose image a type that writes keeps
        (``act.snapshot``). Apart from ``_activate``, whose every call would otherwise make
        the cells this closure needs, a new identity's too."""
        store = self.persistence.store
        track = not definition.options.persist.memory_only

        def loaded(state: dict[str, Any]) -> None:  # what is stored, before on_activate can change it
            if track:
                act.snapshot = baseline(stored, state)

        return instantiate(definition, stored, act.address, store.url if store else "", loaded=loaded)

    def _finish(
        self,
        definition: ActorDef,
        act: Activation,
        call: Call,
        method: MethodInfo,
        outcome: Any,
        failed: bool,
        scheduled: Sequence[Scheduled] = (),
        times: TurnTimes | None = None,
    ) -> Outcome:
        """Encode the outcome, and make the turn durable before the reply leaves.

        If the result cannot be sent or the state cannot be stored, the turn never
        happened: the identity is rolled back to its last durable state and the caller
        gets one clear, non-retryable error.
        """
        reply = self._encoded(definition, act, call, outcome, failed)
        if not method.readonly or scheduled:
            after = self.persistence.after_turn
            self._durably(definition, act, call, times, after, definition, act, call, reply, scheduled)
        return reply

    def _encoded(self, definition: ActorDef, act: Activation, call: Call, outcome: Any, failed: bool) -> Outcome:
        """The reply for an outcome; a result that cannot be sent rolls the turn back."""
        try:
            return reply_for(outcome, failed, f"{act.address}.{call.method}")
        except FluentError:
            self.rollback(definition, act)
            raise

    def _durably(
        self,
        definition: ActorDef,
        act: Activation,
        call: Call,
        times: TurnTimes | None,
        write: Callable[..., T],
        *args: Any,
    ) -> T:
        """Run (part of) a turn's durability point, ``write(*args)``; if it fails, roll the
        turn back and raise one clear error."""
        t0 = time.perf_counter()
        try:
            out = write(*args)
            if times is not None:
                times.mark("write", t0, time.perf_counter())
            return out
        except WouldBlock:
            raise  # nothing was written: the caller writes again, blocking
        except Exception as exc:
            raise self._undone(definition, act, call, exc) from None

    def _undone(self, definition: ActorDef, act: Activation, call: Call, exc: BaseException) -> BaseException:
        """A turn's write failed with ``exc``: the turn is rolled back, and this is the one
        clear error its caller gets (the store's failure as Unavailable; a BaseException
        that is not an Exception, as it is, with nothing rolled back)."""
        if not isinstance(exc, Exception):
            return exc
        self.rollback(definition, act)
        if isinstance(exc, FluentError):
            return exc
        return Unavailable(
            f"{act.address}.{call.method}: state store failed ({type(exc).__name__}: {exc}); "
            "the call did not take effect"
        )

    def rollback(self, definition: ActorDef, act: Activation) -> None:
        """Undo a turn that cannot take effect: forget memory, so the identity comes back
        from its last durable state. Memory-only identities (``persist="never"``) and
        write-behind ones (``"interval"``) have no pre-turn copy and keep their memory."""
        if definition.options.persist.writes_before_reply and self.persistence.store is not None:
            self.drop(act)

    def drop(self, act: Activation) -> None:
        """Forget an identity's memory; its next turn activates it from the store."""
        act.forget()
        self._hooks.deactivated(act)


def _ended(times: TurnTimes | None, reply: Outcome, outcome: str = "") -> Outcome:
    """``reply``, once the turn's timings are tallied (and its span ended)."""
    if times is not None:
        times.end(outcome or ("error" if reply.error is not None else "ok"))
    return reply
