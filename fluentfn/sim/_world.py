"""The simulated cluster: every identity of every type in this process; calls, tells,
replies, reminders and timers are events on one virtual-time loop; every choice (message
delays, the lab's faults) comes from one seed.

The semantics are the hosts': one turn at a time per identity, reentry along a call chain
and interleaving async turns of reentrant types (the hosts' own ``Mailbox``), deadlines
(a queued turn past its deadline never runs), rollback of a turn that raised, replies
recorded with the state so a repeated request id is answered and not run again, and the
persist modes (``call``: durable at each turn; ``interval``: written every interval, lost
at a crash if not yet; ``never``: memory only).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from .. import _config
from .._actordef import ActorDef
from .._call import Call, Outcome
from .._context import CURRENT, Context, current, request_id_here
from .._ref import ActorRef
from ..api import check_tell
from ..errors import CallTimeout, FluentError, InvalidRequest, NotFound, Unavailable
from ..host._mailbox import Mailbox, Turn
from ..host._turn import UserFailure, instantiate, replay_of, reply_for, request_digest, run_async, run_sync, snapshot
from ..placement import shard_for
from ..wire import codec
from ..wire.errors import describe_error, reply_value
from ..wire.records import record_of
from ._clock import EPOCH, SimLoop, VirtualClock
from ._drive import SimFuture, block
from ._green import spawn
from ._parts import REPLIES_KEPT, Pending, SimReminders, SimStore, _trim

MAILBOX_LIMIT = 100_000
FLUSH_INTERVAL_S = 1.0  # persist="interval": unflushed writes are made this often (virtual)


class _Identity:
    __slots__ = ("address", "definition", "generation", "host", "instance", "key", "mailbox", "outs", "replies",
                 "state")  # fmt: skip

    def __init__(self, address: str, key: str, definition: ActorDef, host: str) -> None:
        self.address = address
        self.key = key
        self.definition = definition
        self.host = host
        self.instance: Any = None
        self.state: bytes | None = None  # as of its last turn (what a rollback returns to)
        self.replies: dict[str, bytes] = {}  # request id -> recorded reply (memory)
        self.mailbox = Mailbox(address, MAILBOX_LIMIT)
        self.generation = 0  # a crash or passivation ends it: late turns of the old one are void
        self.outs: set[asyncio.Future[Any]] = set()  # the callers of its arrived, unanswered calls


class World:
    """The runtime of sim mode (an ``Invoker``): see the module docstring."""

    mode = "sim"

    def __init__(self, seed: int, *, latency_ms: float = 1.0, jitter_ms: float = 1.0, hosts_per_type: int = 1) -> None:
        self.seed = seed
        self.clock = VirtualClock()
        self.loop = SimLoop(self.clock)
        self.rng = random.Random(f"{seed}:network")
        self.ids = random.Random(f"{seed}:ids")
        self.latency_s = latency_ms / 1000.0
        self.jitter_s = jitter_ms / 1000.0
        self.hosts_per_type = hosts_per_type
        self.store = SimStore()
        self.reminders = SimReminders(self.definition, lambda: self.clock.now, EPOCH)
        self.identities: dict[str, _Identity] = {}
        self.placement: dict[str, str] = {}  # address -> host, where an experiment chose one
        self.paused: dict[str, list[Callable[[], None]]] = {}  # host -> deliveries held until it resumes
        self.faults: Any = None  # the lab's Faults (None: none)
        self.log: Any = None  # the lab's MessageLog, when recording
        self.counters: Counter[str] = Counter()
        self.wall_s = 0.0  # real seconds spent running the loop (for turns per second)
        self.internal_errors: list[BaseException] = []  # the simulator's own failures (a run stops on one)
        self._definitions: dict[str, ActorDef] = {}
        self._reminder_timers: dict[str, asyncio.TimerHandle] = {}
        self._flusher: asyncio.TimerHandle | None = None

    # -- types and placement ---------------------------------------------------------------

    def definition(self, type_name: str) -> ActorDef:
        found = self._definitions.get(type_name)
        if found is None:
            from ..api import known_type

            t = known_type(type_name)
            if t is None:
                raise NotFound(f"no actor type {type_name!r} is defined in this process")
            found = self._definitions[type_name] = t.definition
        return found

    def host_of(self, address: str) -> str:
        chosen = self.placement.get(address)
        if chosen is not None:
            return chosen
        type_name, key = address.split("/", 1)
        partitions = self.definition(type_name).options.partitions
        return f"{type_name}#{shard_for(key, partitions) % self.hosts_per_type}"

    # -- the Invoker ---------------------------------------------------------------------------

    def call(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
             timeout_s: float | None = None) -> Any:  # fmt: skip
        return block(self, self._ask(ref, method, args, kwargs, timeout_s))

    def submit(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
               timeout_s: float | None = None) -> Any:  # fmt: skip
        return SimFuture(self, self._ask(ref, method, args, kwargs, timeout_s))

    async def call_async(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                         timeout_s: float | None = None) -> Any:  # fmt: skip
        return await self._ask(ref, method, args, kwargs, timeout_s)

    def tell(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
             timeout_s: float | None = None) -> None:  # fmt: skip
        check_tell(ref.type_name, method, args, kwargs)
        self.send(ref, method, args, kwargs, timeout_s, one_way=True)

    def run_function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise FluentError("sim mode runs actors; call a plain function directly, or make it an actor method")

    def keys(self, type_name: str, prefix: str, limit: int | None) -> list[str]:
        live = {i.key for a, i in self.identities.items() if a.startswith(f"{type_name}/") and i.key.startswith(prefix)}
        out = sorted(live | set(self.store.keys(type_name, prefix)))
        return out if limit is None else out[:limit]

    def delete(self, ref: ActorRef) -> None:
        ident = self.identities.pop(ref.address, None)
        if ident is not None:
            ident.generation += 1
        self.store.delete(ref.address)

    def set_faults(self, faults: Any) -> None:
        """The lab's faults and recording, from now on (``lab.partition`` and the rest)."""
        from ..lab._nemesis import MessageLog

        self.faults = faults if faults.active else None
        folder = faults.record_dir
        if self.log is not None and str(self.log.path.parent) != folder:
            self.log.close()
            self.log = None
        if folder and self.log is None:
            self.log = MessageLog(folder)

    # -- sending -------------------------------------------------------------------------------

    def _ask(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout_s: float | None) -> asyncio.Future[Any]:  # fmt: skip
        out = self.send(ref, method, args, kwargs, timeout_s)
        assert out is not None  # a call (not a tell) always has its future
        return out

    def send(self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float | None,
             *, one_way: bool = False, caller: str | None = None) -> asyncio.Future[Any] | None:  # fmt: skip
        """Send a call (the future of its value, or its error) or a tell (None)."""
        self.definition(ref.type_name).method(method).bind(args, kwargs)  # refused here, as a host's stub would
        ctx = current()
        rid = request_id_here()
        deadline = EPOCH + self.clock.now + (timeout_s or _config.DEFAULT_CALL_TIMEOUT_S)
        joins = ctx is not None and not one_way
        if joins and ctx is not None and ctx.deadline:
            deadline = min(deadline, ctx.deadline)
        call = Call(
            type_name=ref.type_name, key=ref.key, method=method, args=codec.encode_args(args, kwargs), request_id=rid,
            deadline=deadline, call_chain=ctx.chain if joins and ctx is not None else (),
            chain_id=ctx.chain_id if joins and ctx is not None and ctx.chain_id else rid, one_way=one_way,
            caller=caller if caller is not None else (ctx.address or "") if ctx is not None else "",
        )  # fmt: skip
        if one_way:
            self._transmit(call, None)
            return None
        out: asyncio.Future[Any] = self.loop.create_future()
        self.loop.call_at(deadline - EPOCH, _expire, out, call)
        self._transmit(call, out)
        return out

    def _delay(self) -> float:
        return self.latency_s + self.rng.random() * self.jitter_s

    def _transmit(self, call: Call, out: asyncio.Future[Any] | None) -> None:
        """The network: a seeded delay, and the lab's faults, on the way to the identity."""
        to = f"{call.type_name}/{call.key}"
        self.counters["messages"] += 1
        lost, extra, copies = False, 0.0, 1
        if self.faults is not None:
            fate = self.faults.request(call.caller, to, call.request_id, call.attempt)
            lost, extra, copies = fate.lost, fate.delay_s, fate.copies
        if self.log is not None:
            fault = "lost" if lost else "duplicated" if copies > 1 else "delayed" if extra else None
            self.log.write({"kind": "tell" if call.one_way else "call", "from": call.caller or "client", "to": to,
                            "method": call.method, "request_id": call.request_id, "attempt": call.attempt,
                            "time": int((EPOCH + self.clock.now) * 1e9), "fault": fault,
                            "delay_ms": round(extra * 1000, 3)})  # fmt: skip
        if lost:
            return  # the caller hears nothing: its deadline ends its wait
        now = self.clock.now
        for _ in range(copies):
            self.loop.schedule(now + self._delay() + extra, self._arrive, call, out)

    def _answer(self, call: Call, out: asyncio.Future[Any] | None, reply: Outcome) -> None:
        """A reply's way back (its own delay, and the lab's faults)."""
        if out is None or call.one_way:
            return
        ident = self.identities.get(f"{call.type_name}/{call.key}")
        if ident is not None:
            ident.outs.discard(out)
        to = f"{call.type_name}/{call.key}"
        kept = self.faults is None or self.faults.reply(call.caller, to, call.request_id, call.attempt)
        if self.log is not None:
            self.log.write({"kind": "reply", "from": to, "to": call.caller or "client", "method": call.method,
                            "request_id": call.request_id, "attempt": call.attempt,
                            "time": int((EPOCH + self.clock.now) * 1e9), "fault": None if kept else "lost",
                            "error": reply.error.code if reply.error is not None else None})  # fmt: skip
        if kept:
            self.loop.schedule(self.clock.now + self._delay(), _settle, out, reply)

    # -- arriving and running ------------------------------------------------------------------

    def _arrive(self, call: Call, out: asyncio.Future[Any] | None) -> None:
        address = f"{call.type_name}/{call.key}"
        if self.paused:
            held = self.paused.get(self.host_of(address))
            if held is not None:
                held.append(lambda: self._arrive(call, out))
                return
        if call.deadline and EPOCH + self.clock.now >= call.deadline:
            return  # past its deadline: never runs (its caller has its CallTimeout)
        ident = self.identities.get(address)
        if ident is None:
            definition = self.definition(call.type_name)
            ident = self.identities[address] = _Identity(address, call.key, definition, self.host_of(address))
        method = ident.definition.method(call.method)
        turn = Turn(call.chain_id, tuple(call.call_chain),
                    interleave=ident.definition.options.reentrant and method.is_async)  # fmt: skip
        generation = ident.generation
        turn.wake = lambda: self._begin(ident, generation, turn, call, out)
        if out is not None:
            ident.outs.add(out)
        if ident.mailbox.offer(turn):
            self._begin(ident, generation, turn, call, out)

    def _begin(
        self, ident: _Identity, generation: int, turn: Turn, call: Call, out: asyncio.Future[Any] | None
    ) -> None:
        if generation != ident.generation:
            return
        if call.deadline and EPOCH + self.clock.now >= call.deadline:  # waited past it: withdrawn
            self._finish(ident, turn)
            return
        if ident.instance is None:  # (re)activating: its state and replies from the store
            self._load(ident)
        recorded = ident.replies.get(call.request_id)
        if recorded is not None:  # a repeat: answered from the record, not run again
            try:
                reply = replay_of(recorded, request_digest(call.request_id, call.method, call.args), call.request_id)
            except InvalidRequest as exc:
                reply = Outcome(error=describe_error(exc))
            self._finish(ident, turn)
            self._answer(call, out, reply)
            return
        self.counters["turns"] += 1
        ctx = Context(address=ident.address, key=ident.key, type_name=ident.definition.name, mode="sim",
                      chain=(*call.call_chain, ident.address), chain_id=call.chain_id, deadline=call.deadline,
                      request_id=call.request_id, _scheduler=self.reminders, _timers=self)  # fmt: skip
        method = ident.definition.method(call.method)
        if method.is_async:
            self.loop.create_task(self._run_async(ident, generation, turn, call, out, ctx), context=_fresh())
        elif method.call_free and ident.instance is not None:  # it cannot wait: no greenlet needed
            self._run_sync(ident, generation, turn, call, out, ctx)
        else:
            spawn(self.loop, self._run_sync, ident, generation, turn, call, out, ctx, fresh=True)

    def _load(self, ident: _Identity) -> None:
        if ident.definition.options.persist.value != "never":
            ident.state, ident.replies = self.store.load(ident.address)

    def _activate(self, ident: _Identity) -> Any:
        if ident.instance is None:
            ident.instance = instantiate(ident.definition, ident.state, ident.address)
        return ident.instance

    def _run_sync(self, ident: _Identity, generation: int, turn: Turn, call: Call, out: Any, ctx: Context) -> None:
        token = CURRENT.set(ctx)
        instance = None
        try:
            instance = self._activate(ident)
            args, kwargs = codec.decode_args(call.args)
            outcome, failed = run_sync(ident.definition.method(call.method), instance, args, kwargs)
        except UserFailure as failure:
            outcome, failed = failure.exc, True
        finally:
            CURRENT.reset(token)
        self._ended(ident, generation, turn, call, out, ctx, instance, outcome, failed)

    async def _run_async(self, ident: _Identity, generation: int, turn: Turn, call: Call, out: Any,
                         ctx: Context) -> None:  # fmt: skip
        CURRENT.set(ctx)
        instance = None
        try:
            instance = self._activate(ident)
            args, kwargs = codec.decode_args(call.args)
            outcome, failed, expired = await run_async(ident.definition.method(call.method), instance, args, kwargs,
                                                       call.deadline)  # fmt: skip
            if expired:
                outcome, failed = CallTimeout(f"{ident.address}.{call.method} ran past its deadline"), True
        except UserFailure as failure:
            outcome, failed = failure.exc, True
        self._ended(ident, generation, turn, call, out, ctx, instance, outcome, failed)

    def _ended(self, ident: _Identity, generation: int, turn: Turn, call: Call, out: Any, ctx: Context,
               instance: Any, outcome: Any, failed: bool) -> None:  # fmt: skip
        try:
            self._end(ident, generation, turn, call, out, ctx, instance, outcome, failed)
        except Exception as exc:  # the simulator's own fault: its caller hears it, and the run stops
            self.internal_errors.append(exc)
            if out is not None and not out.done():
                out.set_exception(Unavailable(f"the simulator failed on {ident.address}.{call.method}: {exc!r}"))

    def _end(self, ident: _Identity, generation: int, turn: Turn, call: Call, out: Any, ctx: Context,
             instance: Any, outcome: Any, failed: bool) -> None:  # fmt: skip
        if generation != ident.generation:
            return  # its identity crashed or was passivated meanwhile: nothing of it counts
        where = f"{ident.address}.{call.method}"
        scheduled = ctx.take_scheduled()
        try:
            reply = reply_for(outcome, failed, where)
            state = None if failed or instance is None else snapshot(instance, ident.address)
        except InvalidRequest as exc:
            reply, state, failed = Outcome(error=describe_error(exc)), None, True
        if failed:  # rolled back: the next turn starts from the last state, its reminders dropped
            if len(ident.mailbox.running) <= 1:  # (interleaved turns of a reentrant type share one instance)
                ident.instance = None
            for item in scheduled:
                self.reminders.staged.pop(item.row.rid, None)
        else:
            record = record_of(reply, request_digest(call.request_id, call.method, call.args))
            ident.state = state
            ident.replies[call.request_id] = record
            if len(ident.replies) > REPLIES_KEPT:
                _trim(ident.replies)
            persist = ident.definition.options.persist.value
            if persist != "never":
                self.store.write(ident.address, state, call.request_id, record, durable=persist == "call")
                if persist == "interval":
                    self._flush_later()
            for item in scheduled:
                self._arm_reminder(self.reminders.staged.pop(item.row.rid))
        self._finish(ident, turn)
        self._answer(call, out, reply)

    def _finish(self, ident: _Identity, turn: Turn) -> None:
        for nxt in ident.mailbox.finish(turn) if turn in ident.mailbox.running else ident.mailbox.cancel(turn):
            if nxt.wake is not None:
                self.loop.call_soon(nxt.wake)

    def _flush_later(self) -> None:
        if self._flusher is None:
            self._flusher = self.loop.call_later(FLUSH_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        self._flusher = None
        self.store.flush()

    # -- reminders and timers ------------------------------------------------------------------

    def _arm_reminder(self, r: Pending) -> None:
        self.reminders.written[r.rid] = r
        self._reminder_timers[r.rid] = self.loop.call_at(max(r.due, self.clock.now), self._fire, r.rid)

    def _fire(self, rid: str) -> None:
        r = self.reminders.written.get(rid)
        self._reminder_timers.pop(rid, None)
        if r is None:
            return  # cancelled
        r.fired += 1
        if r.period_s:
            r.due = self.clock.now + r.period_s
            self._arm_reminder(r)
        else:
            del self.reminders.written[rid]
        type_name, key = r.address.split("/", 1)
        token = CURRENT.set(Context(request_id=f"{rid}#{r.fired}"))  # the firing's calls derive from it
        try:
            self.send(ActorRef(type_name, key), r.method, r.args, r.kwargs, None, one_way=True, caller=r.address)
        finally:
            CURRENT.reset(token)

    def arm(self, address: str, delay_s: float, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """``ff.context().after``: a tell to ``address`` after ``delay_s`` from this activation."""
        ident = self.identities.get(address)
        if ident is None:
            raise InvalidRequest(f"{address} is not active")
        ident.definition.method(method).bind(args, kwargs)
        generation = ident.generation

        def fire() -> None:
            if self.identities.get(address) is ident and ident.generation == generation:
                type_name, key = address.split("/", 1)
                self.send(ActorRef(type_name, key), method, args, kwargs, None, one_way=True, caller=address)

        self.loop.schedule(self.clock.now + delay_s, fire)

    # -- faults on hosts -----------------------------------------------------------------------

    def crash(self, target: str) -> int:
        """Every identity on ``target``'s host (an address or a host) loses its memory; the
        writes not yet flushed are lost; callers waiting on its turns hear Unavailable."""
        host = self.host_of(target) if "/" in target else target
        hit = {a for a, i in self.identities.items() if i.host == host}
        if not hit and host not in {self.host_of(a) for a in self.store.states}:
            raise NotFound(f"no simulated host {host!r}")
        self.store.lose_unflushed(hit)
        for a in sorted(hit):
            ident = self.identities.pop(a)
            ident.generation += 1
            for out in ident.outs:  # its turns, running or waiting, end with it
                if not out.done():
                    out.set_exception(Unavailable(f"{a}: its host {host} crashed; the call may have run"))
        self.paused.pop(host, None)
        self.counters["crashes"] += 1
        return len(hit)

    def pause(self, target: str, seconds: float) -> None:
        host = self.host_of(target) if "/" in target else target
        if host in self.paused:
            raise FluentError(f"simulated host {host} is paused already")
        self.paused[host] = []
        self.loop.call_later(seconds, self.resume, host)

    def resume(self, host: str) -> None:
        for deliver in self.paused.pop(host, []):
            deliver()


def _expire(out: asyncio.Future[Any], call: Call) -> None:
    if not out.done():
        out.set_exception(CallTimeout(f"{call.type_name}/{call.key}.{call.method}: no reply by its deadline"))


def _settle(out: asyncio.Future[Any], reply: Outcome) -> None:
    if out.done():
        return
    try:
        out.set_result(reply_value(reply))
    except FluentError as exc:
        out.set_exception(exc)
    except Exception as exc:  # a user exception rebuilt from the reply: the caller's to handle
        out.set_exception(exc)


def _fresh() -> Any:
    import contextvars

    return contextvars.Context()


__all__ = ["Unavailable", "World"]
