"""The FaaS platform's environment policy as a pure state machine: events in, instructions out.

What a FaaS platform decides for every invocation, with no clocks, processes or Ray:
reuse a warm execution environment of the same function, start a cold one, queue the
invocation, or throttle it. The platform actor (``_faasplatform``) feeds it what
happened and carries out what it says; ``tests/test_envpool.py`` checks its invariants
over random interleavings with hypothesis.

Rules (AWS Lambda's, as documented):
- An environment runs one invocation at a time and serves one function only.
- A warm (idle) environment is reused before a new one is started; the most recently
  used first, so surplus environments age out. An invocation waiting for its cold start
  takes the first environment of its function that frees up (a queued one first), and
  its start, which nobody waits for any more, is called off (``Stop``): on a busy
  machine starts are slow, and starts that went on for nobody piled up (160 and more
  environments for 16 callers in ``fluentfn bench elastic``, most of them still
  starting), each a worker process that slowed the invocations further.
- An idle environment is stopped ``keep_alive_s`` after its last use.
- At most ``max_concurrency`` environments of a function are busy or starting; beyond
  that a synchronous invocation is throttled (``Throttle``) and an asynchronous one (a
  ``tell``) waits in the platform's queue for the next free environment.
- ``always_cold``: every invocation gets a fresh environment, stopped after its use (the
  worst case a FaaS platform can show; the old baseline).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """Invocation ``rid`` of function ``fn`` wants an environment; ``queue``: may wait (a tell)."""

    rid: int
    fn: str
    now: float
    queue: bool = False


@dataclass(frozen=True, slots=True)
class Started:
    """Environment ``env`` (asked for by a ``Start``) is up."""

    env: int
    now: float


@dataclass(frozen=True, slots=True)
class StartFailed:
    """Environment ``env`` could not be started."""

    env: int
    why: str


@dataclass(frozen=True, slots=True)
class Done:
    """The invocation running in ``env`` ended; the environment is reusable."""

    env: int
    now: float


@dataclass(frozen=True, slots=True)
class Lost:
    """Environment ``env`` died or was killed (a crash, or a lifetime cap)."""

    env: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: idle environments past their keep-alive are stopped."""

    now: float


Event = Request | Started | StartFailed | Done | Lost | Tick

# -- instructions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Use:
    """Run invocation ``rid`` in environment ``env`` (``cold``: the invocation waited for
    the environment to start)."""

    rid: int
    env: int
    cold: bool


@dataclass(frozen=True, slots=True)
class Start:
    """Start environment ``env`` for function ``fn`` (a cold start)."""

    env: int
    fn: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop environment ``env``: idle past its keep-alive, used once when always cold, or
    still starting for an invocation that took another environment (call the start off)."""

    env: int


@dataclass(frozen=True, slots=True)
class Throttle:
    """Refuse invocation ``rid``: the function is at its concurrency limit."""

    rid: int


@dataclass(frozen=True, slots=True)
class Fail:
    """Invocation ``rid`` gets no environment: one could not be started."""

    rid: int
    why: str


Instruction = Use | Start | Stop | Throttle | Fail


@dataclass(slots=True)
class _Function:
    idle: dict[int, float] = field(default_factory=dict)  # env -> last use (insertion = age)
    busy: set[int] = field(default_factory=set)
    starting: dict[int, int] = field(default_factory=dict)  # env -> the invocation that waits for it
    queued: deque[int] = field(default_factory=deque)


class EnvPool:
    """Environments of every function: who is idle, busy, starting, and what waits."""

    def __init__(self, *, keep_alive_s: float, max_concurrency: int, always_cold: bool = False) -> None:
        self.keep_alive_s = keep_alive_s
        self.max_concurrency = max_concurrency
        self.always_cold = always_cold
        self._fns: dict[str, _Function] = {}
        self._fn_of: dict[int, str] = {}  # env -> function
        self._next_env = 0

    # -- views (tests and status) ------------------------------------------------------------

    def busy(self, fn: str) -> int:
        f = self._fns.get(fn)
        return 0 if f is None else len(f.busy) + len(f.starting)

    def idle(self, fn: str) -> int:
        f = self._fns.get(fn)
        return 0 if f is None else len(f.idle)

    def queued(self, fn: str) -> int:
        f = self._fns.get(fn)
        return 0 if f is None else len(f.queued)

    def environments(self) -> int:
        return len(self._fn_of)

    def function_of(self, env: int) -> str:
        """The function environment ``env`` serves ("" for none)."""
        return self._fn_of.get(env, "")

    def next_expiry(self) -> float | None:
        """When the oldest idle environment's keep-alive ends (None: none idle)."""
        oldest = [min(f.idle.values()) for f in self._fns.values() if f.idle]
        return min(oldest) + self.keep_alive_s if oldest else None

    # -- the transition function -------------------------------------------------------------

    def handle(self, event: Event) -> list[Instruction]:
        if isinstance(event, Request):
            return self._request(event)
        if isinstance(event, Started):
            return self._started(event)
        if isinstance(event, StartFailed):
            return self._start_failed(event)
        if isinstance(event, Done):
            return self._done(event)
        if isinstance(event, Lost):
            return self._lost(event)
        return self._tick(event)

    def _request(self, ev: Request) -> list[Instruction]:
        f = self._fns.setdefault(ev.fn, _Function())
        if f.idle and not self.always_cold:
            env = next(reversed(f.idle))  # the most recently used
            del f.idle[env]
            f.busy.add(env)
            return [Use(ev.rid, env, cold=False)]
        if len(f.busy) + len(f.starting) < self.max_concurrency:
            return [self._start(ev.fn, f, ev.rid)]
        if ev.queue:
            f.queued.append(ev.rid)
            return []
        return [Throttle(ev.rid)]

    def _start(self, fn: str, f: _Function, rid: int) -> Start:
        env = self._next_env
        self._next_env += 1
        f.starting[env] = rid
        self._fn_of[env] = fn
        return Start(env, fn)

    def _started(self, ev: Started) -> list[Instruction]:
        fn = self._fn_of.get(ev.env)
        if fn is None:
            return []
        f = self._fns[fn]
        if ev.env not in f.starting:
            return []
        rid = f.starting.pop(ev.env)
        f.busy.add(ev.env)
        return [Use(rid, ev.env, cold=True)]

    def _waiter(self, f: _Function) -> tuple[int | None, list[Instruction]]:
        """The invocation a freed environment serves next: the oldest queued one, else the
        oldest one waiting for its own start, whose start is called off (``Stop``)."""
        if f.queued:
            return f.queued.popleft(), []
        if not f.starting:
            return None, []
        env, rid = next(iter(f.starting.items()))
        del f.starting[env], self._fn_of[env]
        return rid, [Stop(env)]

    def _start_failed(self, ev: StartFailed) -> list[Instruction]:
        fn = self._fn_of.pop(ev.env, None)
        if fn is None:
            return []
        f = self._fns[fn]
        rid = f.starting.pop(ev.env, None)
        out: list[Instruction] = [] if rid is None else [Fail(rid, ev.why)]
        # Queued invocations wait for the same thing that just failed: they fail too.
        while f.queued and not f.busy and not f.starting:
            out.append(Fail(f.queued.popleft(), ev.why))
        return out

    def _done(self, ev: Done) -> list[Instruction]:
        fn = self._fn_of.get(ev.env)
        if fn is None:
            return []
        f = self._fns[fn]
        if ev.env not in f.busy:
            return []
        f.busy.discard(ev.env)
        if self.always_cold:
            del self._fn_of[ev.env]
            out: list[Instruction] = [Stop(ev.env)]
            if f.queued:
                out.append(self._start(fn, f, f.queued.popleft()))
            return out
        rid, called_off = self._waiter(f)
        if rid is not None:
            f.busy.add(ev.env)
            return [Use(rid, ev.env, cold=False), *called_off]
        f.idle[ev.env] = ev.now
        return []

    def _lost(self, ev: Lost) -> list[Instruction]:
        fn = self._fn_of.pop(ev.env, None)
        if fn is None:
            return []
        f = self._fns[fn]
        f.busy.discard(ev.env)
        f.idle.pop(ev.env, None)
        rid = f.starting.pop(ev.env, None)
        out: list[Instruction] = [] if rid is None else [Fail(rid, "the environment died while starting")]
        if f.queued and len(f.busy) + len(f.starting) < self.max_concurrency:
            out.append(self._start(fn, f, f.queued.popleft()))
        return out

    def _tick(self, ev: Tick) -> list[Instruction]:
        out: list[Instruction] = []
        for f in self._fns.values():
            for env, last in list(f.idle.items()):
                if ev.now - last >= self.keep_alive_s:
                    del f.idle[env]
                    del self._fn_of[env]
                    out.append(Stop(env))
        return out
