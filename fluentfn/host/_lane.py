"""The stream's fast lane: sync methods of known types, without an asyncio task.

A call from a peer stream is admitted with a callback job; when the policy starts it, it
goes straight to a worker thread, and a worker that ends a turn runs the identity's
next queued sync turn itself (one thread hop for a whole pipeline). Replies go back to
the loop in batches (one wake-up for many completions).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import FluentError
from ..wire._gen import actorhost_pb2 as pb
from ..wire.errors import error_to_pb
from ._admission import Job
from ._policy import Why
from ._turn import Request

if TYPE_CHECKING:
    from ._engine import HostEngine


class SyncLane:
    """Sync turns from the stream, run from callbacks."""

    def __init__(self, engine: HostEngine) -> None:
        self._e = engine
        self._lock = threading.Lock()
        self._thread_state = threading.local()
        self._completed: list[Callable[[], None]] = []
        self._drain_scheduled = False

    def submit(self, call: pb.Call, done: Callable[[pb.Reply | None], None]) -> bool:
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
        self._e.counters["direct_messages"] += 1

        def start(job: Job) -> None:
            self._run_job(functools.partial(self._sync_job, job, req, done))

        def reject(job: Job, why: Why) -> None:
            error = self._e.admission.refusal(why, req.address)
            self._complete(functools.partial(self._answer, call, done, error))

        self._e.admission.admit_call(req, Job(start, reject))
        return True

    def _answer(self, call: pb.Call, done: Callable[[pb.Reply | None], None], exc: FluentError) -> None:
        self._e.counters["errors"] += 1
        done(None if call.one_way else pb.Reply(seq=call.seq, error=error_to_pb(exc)))

    def _sync_job(self, job: Job, req: Request, done: Callable[[pb.Reply | None], None]) -> None:
        assert job.act is not None
        call = req.call
        try:
            reply = self._e.runner.run_sync(req, job.act, self._e.context_for(job.act, call))
        finally:
            self._e.admission.done(job)
        reply.seq = call.seq
        result = None if call.one_way else reply
        self._complete(lambda: done(result))

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
