"""The elastic loop's sampling (``control._autoscaler``), with hosts that answer or do not.

The policy itself is tested in ``test_elastic_policy``; here: a host that does not say its
load is never counted as idle (it would shrink a saturated group)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from fluentfn._tables import Group, Host
from fluentfn.control._autoscaler import Autoscaler
from fluentfn.elastic._autoscale import Autoscale, AutoscalePolicy
from fluentfn.errors import FluentError

pytestmark = pytest.mark.timeout(30)


class _Load:
    def __init__(self, answer: int | BaseException) -> None:
        self.answer = answer

    async def _reply(self) -> int:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def remote(self) -> Any:
        return self._reply()


class _Handle:
    def __init__(self, answer: int | BaseException) -> None:
        self.load = _Load(answer)


class _Mover:
    def __init__(self) -> None:
        self.scaled: list[int] = []

    async def scale(self, group: str, g: Group, want: int) -> None:
        self.scaled.append(want)


def _group(answers: list[int | BaseException]) -> Group:
    settings = Autoscale(target_inflight=4, up_after_s=0.0, down_after_s=0.0)
    g = Group(options=None, parts=[], started=True, policy=AutoscalePolicy(settings, min_hosts=1, max_hosts=4))  # type: ignore[arg-type]
    for i, answer in enumerate(answers):
        host = Host(hid=f"h{i}", handle=_Handle(answer))
        host.up.set()
        g.hosts[host.hid] = host
    return g


def _tick(g: Group, mover: _Mover, ticks: int = 1) -> None:
    scaler = Autoscaler({"T": g}, hosts=None, mover=mover)  # type: ignore[arg-type]

    async def run() -> None:
        for _ in range(ticks):
            await scaler._autoscale_once("T", g)

    asyncio.run(run())


def test_a_host_that_does_not_answer_is_not_counted_idle(caplog: pytest.LogCaptureFixture) -> None:
    # Two saturated hosts answer 0 + (no answer): counted as 0 the group would shrink to one.
    g = _group([0, TimeoutError("no answer in 5 s")])
    mover = _Mover()
    with caplog.at_level(logging.WARNING, logger="fluentfn.directory"):
        _tick(g, mover, ticks=3)
    assert mover.scaled == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # said once, not every tick
    assert "host h1 (1 of 2) did not say its load, counted as full until it does: TimeoutError" in warnings[0]


def test_a_host_whose_actor_died_gives_no_sample_either() -> None:
    g = _group([FluentError("host actor died"), 3])
    mover = _Mover()
    _tick(g, mover, ticks=2)
    assert mover.scaled == []


def test_samples_that_all_answer_drive_the_policy() -> None:
    grow = _group([9, 9])  # 18 turns over 2 hosts, 4 per host wanted: 4 hosts (the maximum)
    mover = _Mover()
    _tick(grow, mover)
    assert mover.scaled == [4]
    shrink = _group([0, 1])  # 1 turn: one host is enough
    mover = _Mover()
    _tick(shrink, mover)
    assert mover.scaled == [1]


def test_a_silent_host_counts_as_full_so_its_group_still_grows() -> None:
    # Before: one host that never answered froze the group's autoscaling (no sample at all)
    # while the others were saturated. Now it counts as full (4 turns): 9 + 9 + 4 over a
    # target of 4 a host wants 6 hosts, capped at 4.
    g = _group([9, 9, TimeoutError("no answer in 5 s")])
    mover = _Mover()
    _tick(g, mover)
    assert mover.scaled == [4]


def test_warning_is_said_again_after_every_host_answered(caplog: pytest.LogCaptureFixture) -> None:
    host = _group([0, TimeoutError("late")])
    mover = _Mover()
    scaler = Autoscaler({"T": host}, hosts=None, mover=mover)  # type: ignore[arg-type]
    silent = host.hosts["h1"].handle.load

    async def run() -> None:
        await scaler._autoscale_once("T", host)
        silent.answer = 0
        await scaler._autoscale_once("T", host)
        silent.answer = TimeoutError("late again")
        await scaler._autoscale_once("T", host)

    with caplog.at_level(logging.INFO, logger="fluentfn.directory"):
        asyncio.run(run())
    said = [r.getMessage() for r in caplog.records]
    assert [m.split(": ", 1)[1][:24] for m in said if "say" in m] == [
        "host h1 (1 of 2) did not",
        "every host says its load",
        "host h1 (1 of 2) did not",
    ]
