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

from .._call import Call, Outcome
from .._config import loop_turns_wanted
from ..errors import FluentError
from ..wire.errors import describe_error
from ._admission import Job
from ._policy import Why
from ._ports import LanePort
from ._turn import Request, may_repeat
from ._where import Turn, WhereTurnsRun

log = logging.getLogger("fluentfn.host")


class SyncLane:
    """Sync turns from the stream, run from callbacks."""

    def __init__(self, engine: LanePort) -> None:
        self._e = engine
        self._lock = threading.Lock()
        self._thread_state = threading.local()
        self._completed: list[Callable[[], None]] = []
        self._drain_scheduled = False
        self._where = WhereTurnsRun(enabled=loop_turns_wanted())
        self._on_loop_now = False  # a loop turn is running (its end may start the next)

    def submit(self, call: Call, done: Callable[[Outcome | None], None], *, local: bool = False) -> bool:
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

        job = Job(start, reject)
        if self._e.admission.start_now(req, job):
            start(job)
        else:
            self._e.admission.admit_call(req, job)
        return True

    def _answer(self, call: Call, done: Callable[[Outcome | None], None], exc: FluentError) -> None:
        self._e.counters["errors"] += 1
        done(Outcome(seq=call.seq, error=describe_error(exc)))  # one-way too: the edge decides

    def _sync_job(self, job: Job, req: Request, done: Callable[[Outcome | None], None]) -> None:
        assert job.act is not None
        call = req.call
        try:
            reply = self._e.runner.run_sync(req, job.act, self._e.context_for(job.act, call, req.method))
        finally:
            self._e.admission.done(job)
        self._complete(lambda: self._reply(call, reply, done))

    def _on_loop(self, req: Request, job: Job) -> bool:
        """Whether this turn may run right here on the event loop (``_where.py`` decides)."""
        act = job.act
        turn = Turn(
            req.method.what, req.method.call_free, act is not None and act.instance is not None,
            not may_repeat(req.call), req.definition.options.reentrant,
            threading.get_ident() == self._e.loop_thread,
        )  # fmt: skip
        return self._where.on_loop(turn)

    def _loop_job(self, job: Job, req: Request, done: Callable[[Outcome | None], None]) -> None:
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

    def _run_loop_job(self, job: Job, req: Request, done: Callable[[Outcome | None], None]) -> None:
        assert job.act is not None
        call = req.call
        t0 = time.perf_counter()
        reply, write = self._e.runner.run_on_loop(req, job.act, self._e.context_for(job.act, call, req.method))
        took = time.perf_counter() - t0
        if self._where.ran_on_loop(req.method.what, took):
            log.warning(
                "%s.%s took %.1f ms on the host's event loop; its turns run on worker threads from now on",
                req.definition.name,
                req.method.name,
                took * 1e3,
            )
        if write is not None:
            # A small write the store takes at once is done here: a worker hop (two thread
            # hand-offs, each a scheduler quantum on a busy machine) costs more than it.
            written = write(nowait=True)
            if written is None:
                self._e.counters["writes_deferred"] += 1  # to a worker: the store did not take it at once
                self._run_job(functools.partial(self._durable_job, job, call, write, done))
                return
            reply = written
        self._e.admission.done(job)
        self._reply(call, reply, done)

    def _durable_job(
        self, job: Job, call: Call, write: Callable[[], Outcome | None], done: Callable[[Outcome | None], None]
    ) -> None:
        """A turn's write in a worker, then its reply on the loop."""
        try:
            written = write()
        finally:
            self._e.admission.done(job)
        assert written is not None  # a blocking write always gives what to send
        self._complete(lambda: self._reply(call, written, done))

    @staticmethod
    def _reply(call: Call, reply: Outcome, done: Callable[[Outcome | None], None]) -> None:
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
