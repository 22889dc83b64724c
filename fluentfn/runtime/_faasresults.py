"""Waiting for FaaS invocations: a caller waits for the platform's "done", then takes
the result the invocation wrote to the store (the only way data comes back, as on the
paper's platforms); a caller that gives up removes what the invocation leaves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._ioloop import IoLoop
from .._ref import Future
from ..errors import CallTimeout, FluentError, Unavailable
from ..state import Store
from ..transport._client import REPLY_GRACE_S
from ..wire.errors import reply_value
from ..wire.records import read_record
from ._faasplatform import START_LIMIT_S
from ._raycall import await_ray, unwrap

log = logging.getLogger("fluentfn.faas")
# A caller waits this long beyond an invocation's cap (and a cold start) before it says the
# platform itself is not answering.
_PLATFORM_GRACE_S = 30.0


@dataclass(frozen=True, slots=True)
class Started:
    """An invocation handed to the platform: what its caller waits on. ``objref`` None: the
    lab lost the request (nothing runs; the caller waits out its deadline). ``kept``, when
    the lab's faults are in force: asked once the result is in, False when the reply is
    lost (the caller waits out its deadline then, as for a lost reply in stateful mode)."""

    rid: str
    objref: Any
    cap: float
    deadline: float = 0.0
    kept: Callable[[], bool] | None = None


class Results:
    """Results of this process's invocations, taken from ``store``."""

    def __init__(self, store: Store, io: IoLoop | None) -> None:
        self.store = store
        self._io = io  # None inside an invocation: plain threads wait

    def _take(self, rid: str) -> Any:
        data = self.store.get(f"res:{rid}")
        if data is None:
            raise Unavailable(f"invocation {rid} left no result in the store")
        self.store.delete(f"res:{rid}")
        _, reply = read_record(data)
        return reply_value(reply)

    @staticmethod
    def _patience(cap: float, deadline: float) -> tuple[float, bool]:
        """(seconds to wait for an invocation, whether its caller's deadline ends the wait
        before the platform's own limit)."""
        platform = cap + START_LIMIT_S + _PLATFORM_GRACE_S
        if not deadline:
            return platform, False
        caller = max(0.0, deadline - time.time()) + REPLY_GRACE_S
        return min(platform, caller), caller < platform

    def _gave_up(self, rid: str, by_deadline: bool) -> FluentError:
        self.discard(rid)
        if by_deadline:
            return CallTimeout(f"invocation {rid} gave no result by its deadline (it may still run)")
        return Unavailable(f"the FaaS platform did not answer for invocation {rid}")

    def wait(self, started: Started) -> Any:
        import ray
        import ray.exceptions

        rid = started.rid
        patience, by_deadline = self._patience(started.cap, started.deadline)
        until = time.monotonic() + patience
        if started.objref is None:  # lost on its way: nothing will answer
            time.sleep(patience)
            raise self._gave_up(rid, by_deadline)
        try:
            ray.get(started.objref, timeout=patience)
        except ray.exceptions.GetTimeoutError:
            raise self._gave_up(rid, by_deadline) from None
        except Exception as exc:
            self.discard(rid)
            raise unwrap(exc) from None
        value = self._take(rid)
        if started.kept is not None and not started.kept():  # the reply was lost on its way back
            time.sleep(max(0.0, until - time.monotonic()))
            raise self._gave_up(rid, by_deadline)
        return value

    def discard(self, rid: str) -> None:
        """Remove what a killed, crashed or refused invocation left in the store (its messages)."""
        for name in (f"msg:{rid}", f"res:{rid}"):
            try:
                self.store.delete(name)
            except Exception as exc:  # the caller's error says more than this one
                log.warning("invocation %s: could not delete %s: %s", rid, name, exc)

    async def wait_async(self, started: Started) -> Any:
        loop = asyncio.get_running_loop()
        rid = started.rid
        patience, by_deadline = self._patience(started.cap, started.deadline)
        until = time.monotonic() + patience
        if started.objref is None:  # lost on its way: nothing will answer
            await asyncio.sleep(patience)
            raise await loop.run_in_executor(None, self._gave_up, rid, by_deadline)
        try:
            await asyncio.wait_for(await_ray(started.objref), patience)
        except TimeoutError:
            raise await loop.run_in_executor(None, self._gave_up, rid, by_deadline) from None
        except BaseException:
            await loop.run_in_executor(None, self.discard, rid)
            raise
        value = await loop.run_in_executor(None, self._take, rid)
        if started.kept is not None and not started.kept():  # the reply was lost on its way back
            await asyncio.sleep(max(0.0, until - time.monotonic()))
            raise await loop.run_in_executor(None, self._gave_up, rid, by_deadline)
        return value

    def future(self, started: Started) -> Future[Any]:
        out: Future[Any] = Future()
        if self._io is None:  # inside an invocation: a plain thread waits
            import threading

            def wait() -> None:
                try:
                    out.set_result(self.wait(started))
                except BaseException as exc:
                    out.set_exception(exc)

            threading.Thread(target=wait, daemon=True).start()
            return out
        inner = self._io.submit(self.wait_async(started))

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(f.result())

        inner.add_done_callback(done)
        return out
