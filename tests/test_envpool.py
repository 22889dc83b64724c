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
            elif isinstance(ins, Stop):
                assert ins.env not in self.running and ins.env not in self.starting
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
