"""The router's I/O side: carries out an ``Attempt``'s actions over peer streams.

One ``Caller`` per process and caller kind (a runtime, a client). It owns nothing but
the carrying out: routes live in the ``RouteTable``, decisions in ``Attempt``
(``fluentfn/_router.py``), finding a route in the caller's ``Locator`` (the directory for
a runtime, the gateway's placement for a client). A call whose route is cached is sent
from the loop without a task; only a lookup or a pause spawns one.

Every message that leaves a process this way passes ``Tap.sending`` first and every
answer ``Tap.received``: one place to record messages or inject faults (``install_tap``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import grpc

from .._call import Call, Outcome
from .._ioloop import spawn
from .._router import (
    Action,
    Attempt,
    Fail,
    Finish,
    Forget,
    Resolve,
    RouteTable,
    Send,
    Slot,
    Target,
    Verdict,
    Wait,
    lost_attempt,
)
from ..errors import (
    REROUTE_CODES,
    CallTimeout,
    FluentError,
    NotDelivered,
    Redirect,
    Unauthenticated,
    Unavailable,
    WrongPeer,
    code_value,
)
from ._client import Done, PeerPool, ReplyCallback, Waiter, settle_future
from ._threadstream import ThreadStreams

log = logging.getLogger("fluentfn")

_OVERLOADED = code_value(grpc.StatusCode.RESOURCE_EXHAUSTED)
# A tell whose sender no longer waits (it returned once the router took it) is sent again,
# with growing pauses, until its deadline: giving up after a few lost streams would drop
# a tell its sender counts as sent (seen under heavy load while partitions moved).
_TELL_TRIES = 1_000_000


class Locator(Protocol):
    """How a caller finds routes (Orleans' grain locator)."""

    async def locate(self, call: Call) -> Target | None:
        """The call's route (learned into the table), or None when there is none to use."""
        ...

    async def lost(self, slot: Slot, target: Target) -> None:
        """``target`` did not answer for ``slot``: the locator may want to know."""
        ...


class LocalPort(Protocol):
    """This process's own partitions (a host's), reached without the network."""

    def submit(self, call: Call, done: Callable[[Outcome | None], None], *, local: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class Intercept:
    """What a tap does to a message about to leave: ``silent``: it is lost without a
    trace (no answer comes; the call ends at its deadline, as across a network
    partition); ``delay_s``: it leaves that much later; ``copies``: it is delivered that
    many times (the extra copies' answers are dropped: the host's request-id records are
    what keep a duplicate from running twice)."""

    silent: bool = False
    delay_s: float = 0.0
    copies: int = 1


DELIVER = Intercept()


class Tap(Protocol):
    """Sees every message a ``Caller`` sends and every answer it gets."""

    def sending(self, call: Call, target: Target) -> bool | Intercept:
        """Called before ``call`` leaves for ``target``: True (or ``DELIVER``) sends it,
        False loses it as a broken connection would (the router may send it again), an
        ``Intercept`` loses, delays or duplicates it."""
        ...

    def received(self, call: Call, target: Target, reply: Outcome | None, error: FluentError | None) -> bool | None:
        """Called with each answer; False loses it (the call ends at its deadline)."""
        ...


_tap: Tap | None = None


def current_tap() -> Tap | None:
    """The tap in force in this process (None: messages go their fast way)."""
    return _tap


def install_tap(tap: Tap | None) -> Tap | None:
    """Make ``tap`` see the messages of every ``Caller`` in this process; returns the old one."""
    global _tap
    old, _tap = _tap, tap
    return old


def classify(call: Call, reply: Outcome | None, error: FluentError | None) -> Verdict:
    """What an answer means for the call's router (see ``Verdict``)."""
    if error is not None:
        if isinstance(error, WrongPeer | Unauthenticated):  # a port some other server took over
            return Verdict.FOREIGN
        if isinstance(error, Redirect):  # a unary tell refused by a host that lost the partition
            return Verdict.REDIRECTED
        if isinstance(error, NotDelivered):
            return Verdict.UNREACHED
        if isinstance(error, Unavailable) or type(error) is FluentError:
            return Verdict.LOST  # a stream that broke, with any status no table entry names (INTERNAL, ...)
        return Verdict.BROKEN  # a call the transport refused (too large, ...): retrying cannot help
    if reply is None or reply.error is None:
        return Verdict.SETTLED
    code = reply.error.code
    if code in REROUTE_CODES:
        return Verdict.REDIRECTED
    if code == _OVERLOADED and call.one_way:
        return Verdict.REFUSED
    return Verdict.SETTLED


def _settles(reply: Outcome | None, error: FluentError | None) -> bool:
    """Whether a first send's answer settles its call at once: a reply that is no error
    (an error reply may be a redirect, which ``classify`` reads with the call's ``Attempt``)."""
    return error is None and (reply is None or reply.error is None)


def name_of(call: Call) -> str:
    return f"{call.type_name}/{call.key}.{call.method}"


def _closed(call: Call) -> Unavailable:
    """What a call gets once this process's caller is closed (or its loop is going away)."""
    return Unavailable(f"{name_of(call)}: this process closed its connection to the cluster")


class _Run:
    """One call in flight through the router."""

    __slots__ = ("attempt", "call", "done", "reply", "slot")

    def __init__(self, call: Call, slot: Slot | None, attempt: Attempt, done: Done) -> None:
        self.call = call
        self.slot = slot
        self.attempt = attempt
        self.done = done
        self.reply: Outcome | None = None


class Caller:
    """Sends calls where the table says, and follows their ``Attempt`` to one outcome."""

    def __init__(
        self,
        *,
        table: RouteTable,
        locator: Locator,
        pool: PeerPool,
        retries: int,
        local: LocalPort | None = None,
        fallbacks: tuple[Target, ...] = (),
        unary_tells: bool = False,
        threads: ThreadStreams | None = None,
    ) -> None:
        self.table = table
        self._threads = threads  # blocked callers' own streams (None: every call goes by the loop)
        self._locator = locator
        self._pool = pool
        self._retries = retries
        self._local = local
        self._fallbacks = fallbacks
        self._unary_tells = unary_tells  # a client's tell returns once a host accepted it
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._queued: dict[Slot | str, list[_Run]] = {}
        """Calls waiting for a route, by slot (or by type, while the type is unknown), in
        the order they were made: the first one's lookup answers for all of them, and a
        call made meanwhile queues behind them even if the route is learnt before they
        go on (calls from one caller to one identity leave in the order they were made)."""

    def close(self) -> None:
        """No more sends: calls still under way (a tell being re-sent, a retry waiting)
        end with Unavailable at their next step, and none reaches the locator."""
        self._closed = True

    def send(self, call: Call, done: Done, *, direct: bool = True) -> None:
        """Route ``call`` (on the loop); ``done(reply, error)`` runs once, on the loop.
        ``direct=False``: through the fallbacks (a client's gateways) only."""
        if self._closed:
            done(None, _closed(call))
            return
        slot = self.table.slot(call.type_name, call.key)
        target = self._target_for(slot, direct)
        queued = self._queue_of(call.type_name, slot) if self._queued else None
        if target is not None and _tap is None and queued is None:
            self._send_first(call, slot, target, done, direct)
            return
        run = self._run(call, slot, done, direct)
        # a route learnt while calls still queue for it: this one queues too (``Resolve``)
        self._act(run, run.attempt.begin(None if queued is not None else target))

    def _target_for(self, slot: Slot | None, direct: bool) -> Target | None:
        """Where a call to ``slot`` goes first: its cached route, or (``direct=False``,
        a client with gateways) the first gateway."""
        return self.table.get(slot) if direct or not self._fallbacks else self._fallbacks[0]

    def _queue_of(self, type_name: str, slot: Slot | None) -> list[_Run] | None:
        """The queue a call to ``slot`` joins: its type's while the first lookup of the type
        is under way (the type may be learnt before the route), else its slot's, if any."""
        by_type = self._queued.get(type_name)
        return by_type if by_type is not None or slot is None else self._queued.get(slot)

    def _run(self, call: Call, slot: Slot | None, done: Done, direct: bool) -> _Run:
        attempt = Attempt(
            name=name_of(call),
            deadline=time.monotonic() + (call.deadline - time.time()),
            retries=_TELL_TRIES if call.one_way and not self._unary_tells else self._retries,
            maybe_ran=call.attempt > 0,
            fallbacks=self._fallbacks,
            direct=direct,
        )
        return _Run(call, slot, attempt, done)

    def _send_first(self, call: Call, slot: Slot | None, target: Target, done: Done, direct: bool) -> None:
        """The common case, a route in the table: send at once, and make the ``Attempt``
        only if the answer is not one that settles the call (which ``Attempt`` would
        finish on, whatever came before)."""
        self._dispatch(
            call, target, lambda reply, error: self._first_answered(call, slot, target, done, direct, reply, error)
        )

    def _first_answered(
        self,
        call: Call,
        slot: Slot | None,
        target: Target,
        done: Done,
        direct: bool,
        reply: Outcome | None,
        error: FluentError | None,
    ) -> None:
        """The answer to a call's first send, to ``target``: it settles the call, or the
        call's ``Attempt`` starts from it (on the loop)."""
        if _settles(reply, error):
            done(reply, None)
            return
        run = self._run(call, slot, done, direct)
        run.attempt.begin(target)  # what was sent: the first send, to ``target``
        self._answered(run, target, reply, error)

    def call_blocking(
        self, call: Call, loop: asyncio.AbstractEventLoop, *, direct: bool = True, own_stream: bool = True
    ) -> Outcome | None:
        """``send`` for a thread that blocks until the outcome (not the loop's thread): its
        reply, or raise its error.

        A call whose route is in the table, with no tap and nothing queued, goes out on
        the thread's own stream (``ThreadStream``: no hand-off to the loop and back); an
        answer that does not settle it is handed to the loop, where its ``Attempt`` starts
        from that first send, as ``_send_first``'s does. The caller keeps its own order:
        ``own_stream`` False (its earlier sends are not all settled: its own stream could
        overtake them) sends by the loop."""
        threads = self._threads
        if (
            own_stream
            and threads is not None
            and _tap is None
            and not self._closed
            and not self._queued
            and not call.one_way
        ):
            slot = self.table.slot(call.type_name, call.key)
            target = self._target_for(slot, direct)
            answer = None if target is None or target.local else threads.invoke(target.endpoint, call)
            if answer is not None:
                assert target is not None
                reply, error = answer
                if _settles(reply, error):
                    return reply
                if isinstance(error, CallTimeout):  # past its deadline: nothing left to try
                    raise error
                waiter = Waiter()
                loop.call_soon_threadsafe(self._first_answered, call, slot, target, waiter, direct, reply, error)
                return waiter.reply_for(call)
        waiter = Waiter()
        loop.call_soon_threadsafe(partial(self.send, direct=direct), call, waiter)
        return waiter.reply_for(call)

    async def invoke(self, call: Call) -> Outcome | None:
        """``send``, awaited (on the loop)."""
        fut: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self.send(call, settle_future(fut))
        return await fut

    def _act(self, run: _Run, actions: list[Action]) -> None:
        if self._closed and not isinstance(actions[-1], Finish | Fail):
            run.done(None, _closed(run.call))
            return
        for action in actions:
            kind = type(action)
            if kind is Send:
                assert isinstance(action, Send)
                self._transmit(run, action)
            elif kind is Resolve:
                if run.slot is None:  # the type may be known by now
                    run.slot = self.table.slot(run.call.type_name, run.call.key)
                key = run.call.type_name if run.slot is None else run.slot
                queued = self._queue_of(run.call.type_name, run.slot)
                cached = self.table.get(run.slot)
                if queued is not None:
                    queued.append(run)
                elif cached is not None:
                    self._act(run, run.attempt.routed(cached, time.monotonic()))
                else:
                    self._queued[key] = []
                    spawn(self._locate(run, key), self._tasks)
            elif kind is Forget:
                assert isinstance(action, Forget)
                if self.table.forget(run.slot, action.target) and action.report and run.slot is not None:
                    spawn(self._report(run.slot, action.target), self._tasks)
            elif kind is Wait:
                assert isinstance(action, Wait)
                loop = asyncio.get_running_loop()
                loop.call_later(action.seconds, lambda: self._act(run, run.attempt.woke(time.monotonic())))
            elif kind is Finish:
                run.done(run.reply, None)
            else:
                assert isinstance(action, Fail)
                run.done(None, action.error)

    async def _locate(self, run: _Run, key: Slot | str) -> None:
        """``run``'s route from the locator; then the calls that queued behind it go on,
        in order (each finds the route in the table, or looks up its own slot's)."""
        try:
            target = await self._locator.locate(run.call)
        except FluentError as exc:
            self._resume(key, exc)
            run.done(None, exc)
            return
        except Exception as exc:  # a bug in a locator: the caller still gets one outcome
            log.error("locating %s failed", name_of(run.call), exc_info=exc)
            error = FluentError(f"internal error while routing {name_of(run.call)}: {exc!r}")
            self._resume(key, error)
            run.done(None, error)
            return
        except asyncio.CancelledError:  # the loop is going away: every waiting call is answered
            for queued in self._queued.pop(key, []):
                queued.done(None, _closed(queued.call))
            run.done(None, _closed(run.call))
            raise
        run.slot = self.table.slot(run.call.type_name, run.call.key)
        self._act(run, run.attempt.routed(target, time.monotonic()))
        self._resume(key, None)

    def _resume(self, key: Slot | str, error: FluentError | None) -> None:
        """The calls queued behind ``key``'s lookup, in order. A failed lookup fails those
        that asked the same question (the same slot, or a type still unknown); the others
        of a type that is known now go on to their own slot's route."""
        queued = self._queued.pop(key, [])
        if error is not None and (isinstance(key, tuple) or self.table.types.get(key) is None):
            for run in queued:
                run.done(None, error)
            return
        for run in queued:
            self._act(run, [Resolve()])

    async def _report(self, slot: Slot, target: Target) -> None:
        try:
            await self._locator.lost(slot, target)
        except Exception as exc:  # the retry re-resolves the route either way
            log.warning("could not report %s/%s down: %s: %s", slot[0], slot[1], type(exc).__name__, exc)

    def _transmit(self, run: _Run, send: Send) -> None:
        call, target = run.call, send.target
        if send.maybe_ran:  # it may have run: the host answers from its records
            marked = lost_attempt(send.lost)  # (and counts the turn, if a host went away with it)
            if call.attempt < marked:
                call.attempt = marked
        tap = _tap
        if tap is not None:
            try:
                verdict = tap.sending(call, target)
            except Exception as exc:  # researcher code: the call fails with it, clearly
                run.done(None, FluentError(f"the message tap failed on {name_of(call)}: {exc!r}"))
                return
            if verdict is False:
                self._answered(run, target, None, Unavailable(f"{target.endpoint}: message dropped by a tap"))
                return
            if isinstance(verdict, Intercept) and verdict != DELIVER:
                self._intercepted(run, target, verdict)
                return
        self._dispatch(call, target, lambda reply, error: self._answered(run, target, reply, error))

    def _intercepted(self, run: _Run, target: Target, how: Intercept) -> None:
        """Carry out a tap's fault on a message (only ever with a tap installed)."""
        if how.silent:
            self._unanswered(run, target)
            return
        call = run.call

        def deliver() -> None:
            if self._closed:
                run.done(None, _closed(call))
                return
            self._dispatch(call, target, lambda reply, error: self._answered(run, target, reply, error))
            for _ in range(how.copies - 1):  # the same message again: same request id
                self._dispatch(call.copy(), target, lambda reply, error: None)

        if how.delay_s > 0:
            asyncio.get_running_loop().call_later(how.delay_s, deliver)
        else:
            deliver()

    def _unanswered(self, run: _Run, target: Target) -> None:
        """A message or its answer was lost without a trace: the call learns nothing until
        its deadline, when it ends as any unanswered call does."""
        wait = max(0.0, run.call.deadline - time.time()) if run.call.deadline else 0.0
        lost = CallTimeout(f"{name_of(run.call)}: no answer by its deadline (the message or its reply was lost)")
        asyncio.get_running_loop().call_later(wait, lambda: self._answered(run, target, None, lost, tapped=False))

    def _dispatch(self, call: Call, target: Target, answered: ReplyCallback) -> None:
        """Carry ``call`` to ``target``: this process's own partitions, a unary tell (a
        client that wants tells acknowledged on acceptance), or the target's stream."""
        if target.local:
            assert self._local is not None, "a local route in a process without partitions"
            self._local.submit(call, lambda reply: answered(reply, None), local=True)
        elif call.one_way and self._unary_tells:
            self._pool.tell(target.endpoint, call, answered)
        else:
            self._pool.stream(target.endpoint).send(call, answered)

    def _answered(
        self, run: _Run, target: Target, reply: Outcome | None, error: FluentError | None, *, tapped: bool = True
    ) -> None:
        tap = _tap
        if tap is not None and tapped:
            try:
                kept = tap.received(run.call, target, reply, error)
            except Exception as exc:
                run.done(None, FluentError(f"the message tap failed on {name_of(run.call)}: {exc!r}"))
                return
            if kept is False:
                self._unanswered(run, target)
                return
        run.reply = reply
        self._act(run, run.attempt.answered(classify(run.call, reply, error), error, time.monotonic()))
