"""The FaaS platform's environment policy, without Ray: unit cases and a model-based test."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fluentfn.runtime._envpool import (
    Done,
    EnvPool,
    Fail,
    Instruction,
    Lost,
    Request,
    Start,
    Started,
    StartFailed,
    Stop,
    Throttle,
    Tick,
    Use,
)

pytestmark = pytest.mark.timeout(120)


def test_a_warm_environment_is_reused_and_expires_after_keep_alive() -> None:
    pool = EnvPool(keep_alive_s=10.0, max_concurrency=4)
    [start] = pool.handle(Request(1, "f", now=0.0))
    assert isinstance(start, Start)
    assert pool.handle(Started(start.env, now=0.5)) == [Use(1, start.env, cold=True)]
    assert pool.handle(Done(start.env, now=1.0)) == []
    assert pool.handle(Request(2, "f", now=2.0)) == [Use(2, start.env, cold=False)]
    pool.handle(Done(start.env, now=3.0))
    assert pool.handle(Tick(now=12.9)) == []
    assert pool.next_expiry() == 13.0
    assert pool.handle(Tick(now=13.0)) == [Stop(start.env)]
    [again] = pool.handle(Request(3, "f", now=14.0))
    assert isinstance(again, Start) and again.env != start.env


def test_environments_serve_one_function_and_the_newest_idle_one_first() -> None:
    pool = EnvPool(keep_alive_s=60.0, max_concurrency=4)
    envs = []
    for rid in (1, 2):
        [s] = pool.handle(Request(rid, "f", now=0.0))
        assert isinstance(s, Start)
        pool.handle(Started(s.env, now=0.0))
        envs.append(s.env)
    pool.handle(Done(envs[0], now=1.0))
    pool.handle(Done(envs[1], now=2.0))
    [other] = pool.handle(Request(3, "g", now=3.0))
    assert isinstance(other, Start)  # g never gets f's environments
    assert pool.handle(Request(4, "f", now=3.0)) == [Use(4, envs[1], cold=False)]


def test_concurrency_limit_throttles_calls_and_queues_tells() -> None:
    pool = EnvPool(keep_alive_s=60.0, max_concurrency=1)
    [s] = pool.handle(Request(1, "f", now=0.0))
    assert isinstance(s, Start)
    assert pool.handle(Request(2, "f", now=0.0)) == [Throttle(2)]
    assert pool.handle(Request(3, "f", now=0.0, queue=True)) == []
    assert pool.queued("f") == 1
    pool.handle(Started(s.env, now=0.1))
    assert pool.handle(Done(s.env, now=0.2)) == [Use(3, s.env, cold=False)]


def test_an_invocation_waiting_for_a_start_takes_the_first_environment_that_frees() -> None:
    """A burst of cold starts on a busy machine does not keep a later invocation waiting
    behind every start; the start nobody waits for any more is called off (``Stop``), so
    starts do not pile up for nobody."""
    pool = EnvPool(keep_alive_s=60.0, max_concurrency=4)
    [s1] = pool.handle(Request(1, "f", now=0.0))
    [s2] = pool.handle(Request(2, "f", now=0.0))
    assert isinstance(s1, Start) and isinstance(s2, Start)
    assert pool.handle(Started(s1.env, now=1.0)) == [Use(1, s1.env, cold=True)]
    assert pool.handle(Done(s1.env, now=2.0)) == [Use(2, s1.env, cold=False), Stop(s2.env)]
    assert pool.busy("f") == 1 and pool.environments() == 1
    assert pool.handle(Started(s2.env, now=3.0)) == []  # called off: it came up anyway, nobody uses it
    assert pool.handle(StartFailed(s2.env, "killed")) == []
    assert pool.idle("f") == 0 and pool.busy("f") == 1
    assert pool.handle(Done(s1.env, now=4.0)) == []
    assert pool.handle(Request(3, "f", now=4.0)) == [Use(3, s1.env, cold=False)]
    assert pool.handle(StartFailed(99, "never asked for")) == []


def test_a_queued_tell_takes_a_freed_environment_before_a_start_is_called_off() -> None:
    pool = EnvPool(keep_alive_s=60.0, max_concurrency=2)
    [s1] = pool.handle(Request(1, "f", now=0.0))
    [s2] = pool.handle(Request(2, "f", now=0.0))
    assert isinstance(s1, Start) and isinstance(s2, Start)
    assert pool.handle(Request(3, "f", now=0.0, queue=True)) == []  # at the limit: the tell waits
    pool.handle(Started(s1.env, now=1.0))
    assert pool.handle(Done(s1.env, now=2.0)) == [Use(3, s1.env, cold=False)]  # s2 still starts for 2
    assert pool.handle(Started(s2.env, now=3.0)) == [Use(2, s2.env, cold=True)]


def test_always_cold_never_reuses() -> None:
    pool = EnvPool(keep_alive_s=60.0, max_concurrency=2, always_cold=True)
    [s] = pool.handle(Request(1, "f", now=0.0))
    assert isinstance(s, Start)
    pool.handle(Started(s.env, now=0.0))
    assert pool.handle(Done(s.env, now=1.0)) == [Stop(s.env)]
    [s2] = pool.handle(Request(2, "f", now=1.0))
    assert isinstance(s2, Start) and s2.env != s.env


def test_a_failed_start_fails_its_invocation_and_what_waits_on_it() -> None:
    pool = EnvPool(keep_alive_s=60.0, max_concurrency=1)
    [s] = pool.handle(Request(1, "f", now=0.0))
    assert isinstance(s, Start)
    pool.handle(Request(2, "f", now=0.0, queue=True))
    assert pool.handle(StartFailed(s.env, "no GPU")) == [Fail(1, "no GPU"), Fail(2, "no GPU")]
    assert pool.busy("f") == 0 and pool.queued("f") == 0


class PoolModel(RuleBasedStateMachine):
    """Random requests, starts, failures, completions, crashes and time, against the rules."""

    def __init__(self) -> None:
        super().__init__()
        self.keep_alive = 5.0
        self.limit = 2
        self.cold = False
        self.pool: EnvPool | None = None
        self.now = 0.0
        self.rid = 0
        self.outcome: dict[int, Instruction] = {}  # rid -> Use/Throttle/Fail
        self.queue_ok: dict[int, bool] = {}
        self.fn_of_rid: dict[int, str] = {}
        self.starting: dict[int, str] = {}  # env -> fn
        self.running: dict[int, int] = {}  # env -> rid
        self.idle_since: dict[int, float] = {}
        self.fn_of_env: dict[int, str] = {}
        self.used_envs: set[int] = set()
        self.stopped: set[int] = set()
        self.called_off: set[int] = set()  # starts the pool called off (they may still end)

    @rule(keep_alive=st.sampled_from([0.0, 1.0, 5.0]), limit=st.integers(1, 3), cold=st.booleans())
    @precondition(lambda self: self.pool is None)
    def create(self, keep_alive: float, limit: int, cold: bool) -> None:
        self.keep_alive, self.limit, self.cold = keep_alive, limit, cold
        self.pool = EnvPool(keep_alive_s=keep_alive, max_concurrency=limit, always_cold=cold)

    def _apply(self, out: list[Instruction]) -> None:
        for ins in out:
            if isinstance(ins, Use | Throttle | Fail):
                assert ins.rid not in self.outcome, f"{ins.rid} got two outcomes"
                self.outcome[ins.rid] = ins
            if isinstance(ins, Throttle):
                assert not self.queue_ok[ins.rid], "a tell was throttled instead of queued"
            if isinstance(ins, Use):
                assert ins.env not in self.running, "an environment ran two invocations at once"
                assert self.fn_of_env[ins.env] == self.fn_of_rid[ins.rid], "an environment served another function"
                assert ins.env not in self.stopped
                if self.cold:
                    assert ins.env not in self.used_envs, "always-cold reused an environment"
                assert ins.cold == (ins.env not in self.used_envs)
                self.used_envs.add(ins.env)
                self.idle_since.pop(ins.env, None)
                self.running[ins.env] = ins.rid
            elif isinstance(ins, Start):
                self.starting[ins.env] = ins.fn
                self.fn_of_env[ins.env] = ins.fn
            elif isinstance(ins, Stop) and ins.env in self.starting:  # its invocation took another one
                assert any(isinstance(u, Use) for u in out), "a start called off while its invocation waits"
                del self.starting[ins.env]
                self.called_off.add(ins.env)
                self.stopped.add(ins.env)
            elif isinstance(ins, Stop):
                assert ins.env not in self.running
                if not self.cold:
                    assert self.now - self.idle_since[ins.env] >= self.keep_alive, "stopped before keep-alive"
                self.idle_since.pop(ins.env, None)
                self.stopped.add(ins.env)

    @rule(fn=st.sampled_from(["f", "g"]), tell=st.booleans())
    @precondition(lambda self: self.pool is not None)
    def request(self, fn: str, tell: bool) -> None:
        assert self.pool is not None
        self.rid += 1
        self.queue_ok[self.rid] = tell
        self.fn_of_rid[self.rid] = fn
        self._apply(self.pool.handle(Request(self.rid, fn, self.now, queue=tell)))

    @rule(data=st.data(), ok=st.booleans())
    @precondition(lambda self: self.pool is not None and self.starting)
    def start_ends(self, data: st.DataObject, ok: bool) -> None:
        assert self.pool is not None
        env = data.draw(st.sampled_from(sorted(self.starting)))
        del self.starting[env]
        self._apply(self.pool.handle(Started(env, self.now) if ok else StartFailed(env, "no room")))
        if not ok:
            self.stopped.add(env)
        else:  # every start the pool still counts is for an invocation that waits for it
            assert env in self.running, "a start that nobody waited for ended (it was not called off)"

    @rule(data=st.data(), ok=st.booleans())
    @precondition(lambda self: self.pool is not None and self.called_off)
    def called_off_start_ends(self, data: st.DataObject, ok: bool) -> None:
        """A start called off may still end (the platform killed it, or it was up already):
        the pool does nothing with it."""
        assert self.pool is not None
        env = data.draw(st.sampled_from(sorted(self.called_off)))
        self.called_off.discard(env)
        assert self.pool.handle(Started(env, self.now) if ok else StartFailed(env, "killed")) == []

    @rule(data=st.data(), crash=st.booleans())
    @precondition(lambda self: self.pool is not None and self.running)
    def invocation_ends(self, data: st.DataObject, crash: bool) -> None:
        assert self.pool is not None
        env = data.draw(st.sampled_from(sorted(self.running)))
        del self.running[env]
        if crash:
            self.stopped.add(env)
            self._apply(self.pool.handle(Lost(env)))
        else:
            self.idle_since[env] = self.now
            self._apply(self.pool.handle(Done(env, self.now)))

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 6.0]))
    @precondition(lambda self: self.pool is not None)
    def time_passes(self, dt: float) -> None:
        assert self.pool is not None
        self.now += dt
        self._apply(self.pool.handle(Tick(self.now)))

    @invariant()
    def within_limits(self) -> None:
        if self.pool is None:
            return
        for fn in ("f", "g"):
            assert self.pool.busy(fn) <= self.limit
            running = sum(1 for e in self.running if self.fn_of_env[e] == fn)
            starting = sum(1 for f in self.starting.values() if f == fn)
            assert self.pool.busy(fn) == running + starting
            idle = [e for e in self.idle_since if self.fn_of_env[e] == fn]
            assert self.pool.idle(fn) == len(idle)
            if self.pool.queued(fn):  # something waits only while the function is at its limit
                assert self.pool.busy(fn) == self.limit or self.starting or self.running
            waiting = [r for r, f in self.fn_of_rid.items() if f == fn and r not in self.outcome]
            if self.pool.idle(fn):  # nothing waits (queued, or for a start) while an environment is idle
                assert not waiting, f"{waiting} wait while {fn} has an idle environment"
        for since in self.idle_since.values():  # the last Tick stopped whatever had expired
            assert self.now - since < self.keep_alive or self.cold or since == self.now

    def teardown(self) -> None:
        """Finish everything: every request ends with exactly one outcome."""
        if self.pool is None:
            return
        for _ in range(200):
            if self.starting:
                env = min(self.starting)
                del self.starting[env]
                self._apply(self.pool.handle(Started(env, self.now)))
            elif self.running:
                env = min(self.running)
                del self.running[env]
                self.idle_since[env] = self.now
                self._apply(self.pool.handle(Done(env, self.now)))
            else:
                break
        assert set(self.outcome) == set(range(1, self.rid + 1)), "an invocation never got an outcome"


PoolModel.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestPoolModel = PoolModel.TestCase


def test_a_process_that_exited_is_seen_gone_and_a_live_one_is_not() -> None:
    """``process_alive``: what the platform asks at an invocation's cap, to tell an
    environment that died (Ray not having said so yet) from one that ran too long."""
    import os
    import subprocess
    import sys
    import time

    from fluentfn.runtime._faasplatform import process_alive

    assert process_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)  # reaped: no such process
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while True:  # exited, not yet reaped: a zombie is gone too
        with open(f"/proc/{zombie.pid}/stat") as f:
            if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                break
        time.sleep(0.01)
    assert not process_alive(zombie.pid)
    zombie.wait()


def test_a_start_fails_only_when_its_kind_stalls_or_at_the_limit() -> None:
    """``start_deadline``: starts that queue behind others of their kind are slow, not failed."""
    from fluentfn.runtime._faasplatform import START_LIMIT_S, START_STALL_S, start_deadline, start_failure

    assert start_deadline(100.0, 0.0) == 100.0 + START_STALL_S  # nothing of its kind started yet
    assert start_deadline(100.0, 150.0) == 150.0 + START_STALL_S  # one started meanwhile: more time
    assert start_deadline(100.0, 100.0 + START_LIMIT_S) == 100.0 + START_LIMIT_S  # never past the limit
    stalled = start_failure((1.0, "A100"), START_STALL_S)
    assert "could not place" in stalled and "1 GPU (A100)" in stalled
    assert f"{START_LIMIT_S:g} s" in start_failure((0.0, None), START_LIMIT_S)


def test_the_platform_waits_for_a_start_while_others_of_its_kind_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """``FaasPlatform._ready`` with a fake handle (no Ray): a start behind a queue of others
    outlives the stall limit while they finish; a kind that never starts fails at it."""
    import asyncio
    import time
    from types import SimpleNamespace

    from fluentfn.runtime import _faasplatform as fp

    monkeypatch.setattr(fp, "START_STALL_S", 2.0)  # far above a busy machine's scheduling delays
    monkeypatch.setattr(fp, "START_LIMIT_S", 30.0)

    def handle(ready: asyncio.Future[tuple[int, str]]) -> SimpleNamespace:
        return SimpleNamespace(ready=SimpleNamespace(remote=lambda: ready))

    async def scenario() -> tuple[float, str]:
        platform = fp.FaasPlatform.__new__(fp.FaasPlatform)
        platform._progress = {}
        loop = asyncio.get_running_loop()
        slow: asyncio.Future[tuple[int, str]] = loop.create_future()
        waiter = asyncio.ensure_future(platform._ready(handle(slow), (0.0, None)))
        began = time.monotonic()
        for _ in range(10):  # others of its kind start every 0.25 s: progress
            other: asyncio.Future[tuple[int, str]] = loop.create_future()
            loop.call_later(0.25, other.set_result, (1, "n"))
            await platform._ready(handle(other), (0.0, None))
        assert not waiter.done()  # 2.5 s > the 2 s stall limit, and it still waits
        slow.set_result((7, "node"))
        assert await waiter == (7, "node")
        waited = time.monotonic() - began
        gpu: asyncio.Future[tuple[int, str]] = loop.create_future()
        try:
            await platform._ready(handle(gpu), (1.0, None))  # no GPU ever starts
        except TimeoutError as exc:
            assert gpu.cancelled()
            return waited, str(exc)
        raise AssertionError("a start that never progressed did not fail")

    waited, why = asyncio.run(scenario())
    assert waited >= 2.5
    assert "could not place" in why and "1 GPU" in why


def test_the_platform_calls_off_a_start_nobody_waits_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """``FaasPlatform`` with fake environments (no Ray): two invocations start two new
    processes; the first ends before the second's process is up, so the second invocation
    runs in the first environment and the second start is killed at once (Ray would have
    gone on starting it, for nobody), quietly, leaving one environment."""
    import asyncio
    import logging
    from types import SimpleNamespace

    import ray

    from fluentfn._faasprofile import FaasProfile
    from fluentfn.runtime import _faasplatform as fp

    killed: list[int] = []
    counters = {"cold_starts": 0, "warm_starts": 0, "invocations": 0}

    class _Env:
        def __init__(self, n: int, loop: asyncio.AbstractEventLoop) -> None:
            self.n = n
            self.up: asyncio.Future[tuple[int, str]] = loop.create_future()
            self.runs: list[asyncio.Future[dict[str, int]]] = []
            self.ready = SimpleNamespace(remote=lambda: self.up)
            self.invoke = SimpleNamespace(remote=self._invoke)

        def _invoke(self, *args: object) -> asyncio.Future[dict[str, int]]:
            self.runs.append(asyncio.get_running_loop().create_future())
            return self.runs[-1]

    def kill(handle: _Env) -> None:
        killed.append(handle.n)
        if not handle.up.done():
            handle.up.set_exception(ray.exceptions.RayActorError())

    monkeypatch.setattr(ray, "kill", kill)

    async def until(check: object) -> None:
        for _ in range(1000):
            if callable(check) and check():
                return
            await asyncio.sleep(0.001)
        raise AssertionError("the platform did not get there")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        profile = FaasProfile(prestarted=0, cold_start_overhead_ms=0, invocation_overhead_ms=0)
        platform = fp.FaasPlatform(SimpleNamespace(faas=profile), body=None)  # type: ignore[arg-type]
        envs: list[_Env] = []

        def new_environment(num_gpus: float = 0.0, accelerator: str | None = None) -> _Env:
            envs.append(_Env(len(envs), loop))
            return envs[-1]

        platform._new_environment = new_environment  # type: ignore[method-assign]
        call = SimpleNamespace(one_way=False, type_name="T")
        args = ((0.0, None), "actor", b"code", call, "", 60.0)
        first = asyncio.ensure_future(platform.invoke("actor:T", *args))  # type: ignore[arg-type]
        second = asyncio.ensure_future(platform.invoke("actor:T", *args))  # type: ignore[arg-type]
        await until(lambda: len(envs) == 2)
        envs[0].up.set_result((1, "node"))
        await until(lambda: len(envs[0].runs) == 1)
        envs[0].runs[0].set_result(dict(counters))
        await first
        await until(lambda: len(envs[0].runs) == 2)  # the second invocation took the first environment
        assert killed == [1]  # ... and its own start was called off
        assert platform.environments() == {"actor:T": {"busy": 1, "idle": 0, "queued": 0}}
        envs[0].runs[1].set_result(dict(counters))
        await second
        assert platform.environments() == {"actor:T": {"busy": 0, "idle": 1, "queued": 0}}
        assert platform._starts == set() and platform._pending == {} and platform._called_off == set()

    logs: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logs.append  # type: ignore[method-assign]
    logging.getLogger("fluentfn.faas").addHandler(handler)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 60))
    finally:  # what the scenario left (on a failure) is cancelled, never waited for
        logging.getLogger("fluentfn.faas").removeHandler(handler)
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
    assert [r.getMessage() for r in logs if r.levelno >= logging.WARNING] == []  # called off: no "did not start"
