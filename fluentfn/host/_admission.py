"""Admission: the engine's side of the policy. Keeps the turns the policy knows by id
(``Job``), feeds it events, and carries out its instructions: start a job, refuse it,
forget an identity. The one lock here guards the policy, the jobs and the table of
live identities; instructions are carried out outside it.

Three ways to wait for a turn: a callback (``admit_call`` with a job that starts work
itself: the stream's sync fast path), a coroutine (``turn``, on the loop) and a blocked
thread (``wait_turn``: co-located callers, bulk items). Deadlines are the policy's: a
timer on the loop ticks it at each queued turn's deadline.
"""

from __future__ import annotations

import _thread
import asyncio
import functools
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CallTimeout, FluentError, Overloaded, Redirect, Unavailable
from ._activations import Activation, ActivationTable
from ._policy import (
    Activated,
    Arrive,
    Deactivated,
    Event,
    Fence,
    Forget,
    HostPolicy,
    Instruction,
    Quiesce,
    Quiet,
    Reject,
    Run,
    Tick,
    Why,
    Withdraw,
)
from ._turn import Request

_TICK_SLACK_S = 0.002  # timers fire this much after a deadline: its turn is surely past it


@dataclass(slots=True, eq=False)
class Job:
    """A turn the policy knows by ``tid``: how to start it, and how to refuse it."""

    start: Callable[[Job], None]
    reject: Callable[[Job, Why], None]
    tid: int = 0
    act: Activation | None = None


def _started_at_once(job: Job) -> None:
    """The ``start`` of a job given its turn by ``start_now``: never called."""
    raise AssertionError(f"turn {job.tid} started at once, and again by an instruction")


def _refused_at_once(job: Job, why: Why) -> None:
    raise AssertionError(f"turn {job.tid} started at once, then refused ({why})")


def _claim(req: Request) -> tuple[str, tuple[str, ...], bool]:
    """What the policy admits ``req``'s turn by: its chain's id, the chain, and whether it
    may interleave (an async method of a reentrant type)."""
    call = req.call
    return (
        call.chain_id or call.request_id,
        tuple(call.call_chain),
        req.definition.options.reentrant and req.method.is_async,
    )


class Admission:
    """Carries out the admission policy of one host."""

    def __init__(
        self,
        *,
        group: str,
        shard: int,
        loop: asyncio.AbstractEventLoop,
        loop_thread: int,
        mailbox_limit: int,
        inflight_limit: int,
        max_live: int | None = None,
        over_cap: Callable[[], None] = lambda: None,
    ) -> None:
        self.group = group
        self.shard = shard
        self.loop = loop
        self.loop_thread = loop_thread
        self.table = ActivationTable()
        self.lock = threading.Lock()
        self._policy = HostPolicy(mailbox_limit=mailbox_limit, inflight_limit=inflight_limit)
        self._jobs: dict[int, Job] = {}
        self._armed_for: float | None = None  # the deadline the policy's timer is set for (loop thread only)
        self._tids = itertools.count(1)
        self._fence_message = ""
        self._quiet: list[asyncio.Future[None]] = []  # ``quiesce``'s waiters (loop thread only)
        # Live identities may exceed ``max_live`` by a margin while the reaper catches
        # up; past it, new activations are refused (Overloaded) rather than let memory run.
        self._hard_cap = None if max_live is None else max_live + max(16, max_live // 10)
        self._max_live = max_live
        self._over_cap = over_cap

    def fenced_error(self) -> FluentError:
        """What a call to a fenced host gets."""
        return self.refusal(self._policy.fenced_why, "")

    def in_use(self, address: str) -> bool:
        """A turn of ``address`` is running or queued (call with the lock held)."""
        return not self._policy.idle(address)

    def activated(self, act: Activation) -> None:
        self.apply(Activated(act.address))

    def deactivated(self, act: Activation) -> None:
        self.apply(Deactivated(act.address))

    @property
    def running(self) -> int:
        """Turns running now (passivations included)."""
        with self.lock:
            return len(self._policy.running_all())

    @property
    def inflight(self) -> int:
        """Turns running or queued: the host's load."""
        return self._policy.inflight

    def stop_admitting(self) -> None:
        """Refuse queued and new turns with a redirect, keeping every identity in memory
        (the partition is being handed over: its state is written next)."""
        self.apply(Fence(Why.REDIRECT))

    async def quiesce(self, within_s: float) -> None:
        """Go on serving until no turn runs, then refuse queued and new turns with a
        redirect (as ``stop_admitting``) in the same step. If no such moment comes within
        ``within_s``, stop admitting anyway (the caller lets the running turns end). Loop
        thread only."""
        quiet = self.loop.create_future()
        self._quiet.append(quiet)
        self.apply(Quiesce())
        try:
            await asyncio.wait_for(quiet, within_s)
        except TimeoutError:
            self.stop_admitting()  # (ends the wait in the policy: its ``Quiet`` finds no waiter)
        finally:
            if quiet in self._quiet:
                self._quiet.remove(quiet)

    def _quieted(self) -> None:
        """The policy's ``Quiet``: wake ``quiesce`` (from a worker, via the loop)."""

        def wake() -> None:
            for waiter in self._quiet:
                if not waiter.done():
                    waiter.set_result(None)

        if threading.get_ident() == self.loop_thread:
            wake()
        else:
            self.loop.call_soon_threadsafe(wake)

    def fence(self, why: Why = Why.REDIRECT, message: str = "") -> None:
        """Refuse queued and new turns for ``why``; forget idle identities."""
        if message:
            self._fence_message = message
        self.apply(Fence(why))
        with self.lock:
            for act in self.table:
                if self._policy.idle(act.address):
                    act.forget()
                    self.table.remove(act)

    def admit(self, address: str, type_name: str, key: str, job: Job, event: Callable[[int], Event]) -> None:
        """Register ``job`` (for the identity ``address``) and feed the policy ``event(tid)``."""
        job.tid = next(self._tids)
        with self.lock:
            act = self.table.get(address)
            if act is None:
                live = len(self.table)
                if self._max_live is not None and live >= self._max_live:
                    self._over_cap()  # wake the reaper now, not at its next round
                if self._hard_cap is not None and live >= self._hard_cap:
                    act = None  # no room for another identity until passivation catches up
                else:
                    act = self.table.new(type_name, key, address, time.monotonic())
            if act is not None:
                job.act = act
                self._jobs[job.tid] = job
                ev = event(job.tid)
                actions = self._resolve(self._policy.handle(ev))
                queued = job.tid in self._jobs
        if act is None:
            job.reject(job, Why.OVERLOADED)  # refused at the door: nothing to undo
            return
        if queued and isinstance(ev, Arrive) and ev.deadline:
            self._tick_at(ev.deadline)
        for action in actions:
            action()

    def admit_call(self, req: Request, job: Job) -> None:
        """Ask for a turn for ``req`` (chain, reentry and deadline from its call)."""
        self.admit(req.address, req.definition.name, req.key, job, self._arrival(req))

    def start_now(self, req: Request, job: Job) -> bool:
        """Give ``req`` its turn at once if the policy lets it start now
        (``HostPolicy.start_now``): True, and ``job`` holds the running turn (``done``
        ends it; its ``start`` and ``reject`` are never called). False: the turn is not
        started — ask with ``admit_call`` or ``wait_turn`` (a new identity may have been
        added to the table, as those would have)."""
        entered = self.enter(req)
        if entered is None:
            return False
        job.act, job.tid = entered
        return True

    def enter(self, req: Request) -> tuple[Activation, int] | None:
        """``start_now`` without a job: the identity and the turn's id if it runs now
        (``leave`` ends it), else None. The common cases (a live, idle identity; a new one
        under the cap) without an event, an instruction list or a wake-up. (``enter_as``
        from a ``Request``, its body inline: this is every co-located call's way in.)"""
        address, call = req.address, req.call
        chain_id = call.chain_id or call.request_id  # ``_claim``, inline: once per turn
        interleave = req.definition.options.reentrant and req.method.is_async
        with self.lock:
            act = self.table.get(address)
            if act is None:
                if self._max_live is not None and len(self.table) >= self._max_live:
                    return None  # at the cap: the general path wakes the reaper, or refuses
                act = self.table.new(req.definition.name, req.key, address, time.monotonic())  # whatever policy says
            tid = next(self._tids)
            if not self._policy.start_now(
                tid, address, chain_id, time.time(), call.deadline, tuple(call.call_chain), interleave
            ):
                return None
        return act, tid

    def enter_as(
        self,
        type_name: str,
        key: str,
        address: str,
        chain_id: str,
        deadline: float,
        chain: tuple[str, ...] = (),
        interleave: bool = False,
    ) -> tuple[Activation, int] | None:
        """``enter`` from the turn's parts: a bulk item's, without a ``Request``."""
        with self.lock:
            act = self.table.get(address)
            if act is None:
                if self._max_live is not None and len(self.table) >= self._max_live:
                    return None  # at the cap: the general path wakes the reaper, or refuses
                act = self.table.new(type_name, key, address, time.monotonic())  # whatever the policy says
            tid = next(self._tids)
            if not self._policy.start_now(tid, address, chain_id, time.time(), deadline, chain, interleave):
                return None
        return act, tid

    @staticmethod
    def _arrival(req: Request) -> Callable[[int], Event]:
        deadline, address = req.call.deadline, req.address
        chain_id, chain, interleave = _claim(req)
        return lambda tid: Arrive(tid, address, chain_id, time.time(), deadline, chain, interleave)

    def _at_once(self, req: Request) -> Job | None:
        """``req``'s turn if ``start_now`` gives it (a job nothing starts or refuses); else None."""
        job = Job(_started_at_once, _refused_at_once)
        return job if self.start_now(req, job) else None

    def apply(self, event: Event) -> None:
        """Feed the policy one event and carry out what it says."""
        with self.lock:
            actions = self._resolve(self._policy.handle(event))
        for action in actions:
            action()

    def _resolve(self, instructions: list[Instruction]) -> list[Callable[[], None]]:
        """Under the lock: the jobs the instructions name, as actions to run outside it."""
        actions: list[Callable[[], None]] = []
        for ins in instructions:
            if type(ins) is Run:
                job = self._jobs.pop(ins.tid)
                actions.append(functools.partial(job.start, job))
            elif type(ins) is Reject:
                job = self._jobs.pop(ins.tid)
                actions.append(functools.partial(job.reject, job, ins.why))
            elif type(ins) is Quiet:
                actions.append(self._quieted)
            else:
                assert isinstance(ins, Forget)
                act = self.table.get(ins.address)
                if act is not None and act.instance is None:
                    self.table.remove(act)
        return actions

    def done(self, job: Job) -> None:
        """``job``'s turn ended."""
        self.leave(job.act, job.tid)

    def leave(self, act: Activation | None, tid: int) -> None:
        """Turn ``tid`` (of ``act``) ended."""
        with self.lock:
            if act is not None:
                self.table.touch(act, time.monotonic())
            instructions = self._policy.finish(tid)
            if not instructions:  # nothing was waiting for this turn: the common case
                return
            actions = self._resolve(instructions)
        for action in actions:
            action()

    def withdraw(self, job: Job) -> None:
        """The waiter of ``job`` went away: withdraw it if queued, else end its turn."""
        with self.lock:
            queued = self._jobs.pop(job.tid, None) is not None
            actions = self._resolve(self._policy.handle(Withdraw(job.tid))) if queued else []
        if not queued:
            self.done(job)
        for action in actions:
            action()

    def _tick_at(self, deadline: float) -> None:
        def arm() -> None:
            if self._armed_for is not None and self._armed_for <= deadline:
                return  # an earlier tick comes first, and re-arms for what is left
            self._armed_for = deadline
            # The loop's clock is not the wall clock a deadline is on: a little late, never early.
            self.loop.call_later(max(0.0, deadline - time.time()) + _TICK_SLACK_S, self._tick)

        if threading.get_ident() == self.loop_thread:
            arm()
        else:
            self.loop.call_soon_threadsafe(arm)

    def _tick(self) -> None:
        """Expire what is due; then the timer is armed again for the earliest deadline
        left (one that fired early, by the two clocks' drift, does not strand a turn)."""
        self._armed_for = None
        self.apply(Tick(time.time()))
        with self.lock:
            following = self._policy.next_deadline()
        if following is not None:
            self._tick_at(following)

    def refusal(self, why: Why, address: str) -> FluentError:
        """The error a refused turn's caller gets."""
        if why is Why.TIMEOUT:
            return CallTimeout(f"{address} stayed busy past the deadline")
        if why is Why.EXPIRED:
            return CallTimeout(f"{address}: the call's deadline had passed when it arrived; it did not run")
        if why is Why.REDIRECT:
            return Redirect(f"host {self.group}/{self.shard} no longer owns its shard")
        if why is Why.OVERLOADED:
            return Overloaded(
                f"{address}: host {self.group}/{self.shard} is at capacity (calls waiting or identities live); "
                "retry later"
            )
        if why is Why.FOREIGN:
            return FluentError(
                self._fence_message or f"host {self.group}/{self.shard} was fenced out by another cluster"
            )
        if why is Why.STORE_LOST:
            return Unavailable(self._fence_message or f"host {self.group}/{self.shard} lost its state store")
        return FluentError(f"{address} is busy")

    async def turn(self, req: Request) -> Job:
        """Wait (on the loop) until ``req`` may run; the caller must ``done`` the job."""
        job = self._at_once(req)
        if job is not None:
            return job
        return await self.await_turn(req.address, req.definition.name, req.key, self._arrival(req))

    async def await_turn(self, address: str, type_name: str, key: str, event: Callable[[int], Event]) -> Job:
        """Feed ``event`` for ``address`` and wait (on the loop) until the turn may run;
        raises the refusal if it may not. The caller must ``done`` the job."""
        fut: asyncio.Future[None] = self.loop.create_future()
        job = Job(lambda _: self._settle(fut, None), lambda _, why: self._settle(fut, self.refusal(why, address)))
        self.admit(address, type_name, key, job, event)
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

    def wait_turn(self, req: Request) -> tuple[Activation, int]:
        """Block this thread (never the loop) until ``req`` may run: the identity and the
        turn's id (``leave`` ends it); raises if refused."""
        entered = self.enter(req)
        if entered is not None:
            return entered
        ready = _thread.allocate_lock()  # released once, when the turn may start or is refused
        ready.acquire()
        refused: list[FluentError] = []

        def reject(job: Job, why: Why) -> None:
            refused.append(self.refusal(why, req.address))
            ready.release()

        job = Job(lambda _: ready.release(), reject)
        self.admit_call(req, job)
        ready.acquire()  # bounded: a deadline makes the policy refuse the turn in time
        if refused:
            raise refused[0]
        assert job.act is not None
        return job.act, job.tid
