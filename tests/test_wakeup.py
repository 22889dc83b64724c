"""``transport/_wakeup.Wakeup``: an auto-reset event for one waiter (a stream's writer)."""

from __future__ import annotations

import asyncio

import pytest

from fluentfn.transport._wakeup import Wakeup

pytestmark = pytest.mark.timeout(60)


def test_a_set_before_the_wait_is_kept_once() -> None:
    async def main() -> None:
        w = Wakeup()
        w.set()
        w.set()  # two sets before a wait: one wake-up, as with an Event
        await asyncio.wait_for(w.wait(), 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(w.wait(), 0.05)

    asyncio.run(main())


def test_a_set_wakes_the_waiting_task_and_is_consumed() -> None:
    async def main() -> None:
        w = Wakeup()
        woken: list[int] = []

        async def waiter() -> None:
            for i in range(3):
                await w.wait()
                woken.append(i)

        task = asyncio.ensure_future(waiter())
        for n in range(1, 4):
            await asyncio.sleep(0.01)
            assert len(woken) == n - 1  # it sleeps until set
            w.set()
            await asyncio.sleep(0.01)
            assert len(woken) == n
        await asyncio.wait_for(task, 1)

    asyncio.run(main())


def test_a_cancelled_wait_leaves_no_stale_waiter() -> None:
    async def main() -> None:
        w = Wakeup()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(w.wait(), 0.02)  # cancelled inside
        w.set()  # kept for the next wait, not spent on the cancelled one
        await asyncio.wait_for(w.wait(), 1)

    asyncio.run(main())
