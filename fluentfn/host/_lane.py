"""The stream's fast lane: sync methods of known types, without an asyncio task.

A call from a peer stream is admitted with a callback job; when the policy starts it, it
runs on the loop itself if its method makes no calls (``makes_no_calls``: it cannot
block) and its identity is live — no thread hop at all, the reply leaves in the same
loop pass — and otherwise goes straight to a worker thread, where a worker that ends a
turn runs the identity's next queued sync turn itself (one thread hop for a whole
pipeline). Replies from workers go back to the loop in batches (one wake-up for many
completions).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from .._config import loop_turns_wanted
from ..errors import FluentError
from ..wire._gen import actorhost_pb2 as pb
from ..wire.errors import error_to_pb
from ._admission import Job
from ._policy import Why
from ._ports import LanePort
from ._turn import Request, may_repeat

log = logging.getLogger("fluentfn.host")
_LOOP_TURN_BUDGET_S = 0.002  # a turn on the loop that takes longer sends its method to worker threads


class SyncLane:
    """Sync turns from the stream, run from callbacks."""

    def __init__(self, engine: LanePort) -> None:
        self._e = engine
        self._lock = threading.Lock()
        self._thread_state = threading.local()
        self._completed: list[Callable[[], None]] = []
        self._drain_scheduled = False
        self._loop_turns = loop_turns_wanted()
        self._slow: set[tuple[str, str]] = set()  # (type, method) demoted to worker threads
        self._on_loop_now = False  # a loop turn is running (its end may start the next)

    def submit(self, call: pb.Call, done: Callable[[pb.Reply | None], None], *, local: bool = False) -> bool:
        """The common case — a sync method of a known type — without an asyncio task."""
        definition = self._e.types.get(call.type_name)
        if definition is None or call.method.startswith("__"):  # bulk and delete take the general path
            return False
        try:
            req = self._e.prepare(definition, call)
        except FluentError as exc:
            self._answer(call, done, exc)
            return True
        if req.method.is_async:
            return False
        self._e.counters["local_calls" if local else "direct_messages"] += 1

        def start(job: Job) -> None:
            if self._on_loop(req, job):
                self._loop_job(job, req, done)
            else:
                self._run_job(functools.partial(self._sync_job, job, req, done))

        def reject(job: Job, why: Why) -> None:
            error = self._e.admission.refusal(why, req.address)
            self._complete(functools.partial(self._answer, call, done, error))

        self._e.admission.admit_call(req, Job(start, reject))
        return True

    def _answer(self, call: pb.Call, done: Callable[[pb.Reply | None], None], exc: FluentError) -> None:
        self._e.counters["errors"] += 1
        done(pb.Reply(seq=call.seq, error=error_to_pb(exc)))  # one-way too: the edge decides

    def _sync_job(self, job: Job, req: Request, done: Callable[[pb.Reply | None], None]) -> None:
        assert job.act is not None
        call = req.call
        try:
            reply = self._e.runner.run_sync(req, job.act, self._e.context_for(job.act, call))
        finally:
            self._e.admission.done(job)
        self._complete(lambda: self._reply(call, reply, done))

    def _on_loop(self, req: Request, job: Job) -> bool:
        """Whether this turn may run right here on the event loop (see ``makes_no_calls``):
        a call-free method of a live, non-reentrant identity, on a first attempt (a retry
        may need the store to find its recorded reply), not demoted for being slow."""
        return (
            req.method.call_free
            and self._loop_turns
            and threading.get_ident() == self._e.loop_thread
            and job.act is not None
            and job.act.instance is not None
            and not may_repeat(req.call)
            and not req.definition.options.reentrant
            and (req.definition.name, req.method.name) not in self._slow
        )

    def _loop_job(self, job: Job, req: Request, done: Callable[[pb.Reply | None], None]) -> None:
        """A turn on the loop; a state change to write goes to a worker before the reply.

        Ending a turn may start the identity's next queued one: that one runs in a later
        loop callback, not nested here (a long queue would otherwise recurse)."""
        if self._on_loop_now:
            self._e.loop.call_soon(self._loop_job, job, req, done)
            return
        self._on_loop_now = True
        try:
            self._run_loop_job(job, req, done)
        finally:
            self._on_loop_now = False

    def _run_loop_job(self, job: Job, req: Request, done: Callable[[pb.Reply | None], None]) -> None:
        assert job.act is not None
        call = req.call
        t0 = time.perf_counter()
        reply, write = self._e.runner.run_on_loop(req, job.act, self._e.context_for(job.act, call))
        took = time.perf_counter() - t0
        if took > _LOOP_TURN_BUDGET_S:
            self._demote(req, took)
        if write is None:
            self._e.admission.done(job)
            self._reply(call, reply, done)
            return

        def durable() -> None:
            try:
                written = write()
            finally:
                self._e.admission.done(job)
            self._complete(lambda: self._reply(call, written, done))

        self._run_job(durable)

    def _demote(self, req: Request, took: float) -> None:
        """A call-free method that still took long (big data, a slow operator): its turns
        go back to worker threads, where they cannot hold up the host's other calls."""
        self._slow.add((req.definition.name, req.method.name))
        log.warning(
            "%s.%s took %.1f ms on the host's event loop; its turns run on worker threads from now on",
            req.definition.name,
            req.method.name,
            took * 1e3,
        )

    @staticmethod
    def _reply(call: pb.Call, reply: pb.Reply, done: Callable[[pb.Reply | None], None]) -> None:
        reply.seq = call.seq
        done(reply)  # one-way too: the edge decides whether the sender wants it

    def _run_job(self, job: Callable[[], None]) -> None:
        """Start a sync turn: in this worker thread after its current turn, else in the pool."""
        chain: list[Callable[[], None]] | None = getattr(self._thread_state, "chain", None)
        if chain is not None:
            chain.append(job)
        else:
            self._e.workers.submit(self._worker, job)

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
        if threading.get_ident() == self._e.loop_thread:
            fn()
            return
        with self._lock:
            self._completed.append(fn)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._e.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._completed = self._completed, []
            self._drain_scheduled = False
        for fn in items:
            fn()
