"""The hold a move puts on a host's new turns (host/_hold.py), on a bare event loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fluentfn._call import Call
from fluentfn.host._hold import MoveHold

pytestmark = pytest.mark.timeout(30)


def test_held_calls_go_on_in_order_when_the_last_move_ends() -> None:
    async def main() -> None:
        hold = MoveHold(60.0)
        ran: list[int] = []
        assert not hold.holds(Call(key="k"))
        end_one, end_two = hold.begin(), hold.begin()
        assert hold.holds(Call(key="k")) and not hold.holds(Call(key="k", call_chain=("T/x",)))
        for i in range(3):
            hold.defer(lambda i=i: ran.append(i))
        end_one()
        end_one()  # a second end of the same move changes nothing
        assert ran == [] and hold.holding
        end_two()
        assert ran == [0, 1, 2] and not hold.holding and hold.held == 3
        assert not hold.holds(Call(key="k"))

    asyncio.run(main())


def test_a_hold_ends_by_itself_after_its_limit() -> None:
    async def main() -> None:
        hold = MoveHold(0.05)
        end = hold.begin()
        waiter = asyncio.ensure_future(hold.wait())
        await asyncio.wait_for(waiter, 30)
        assert not hold.holding
        end()  # ending it after the limit is harmless
        assert not hold.holding

    asyncio.run(main())


def test_a_cancelled_waiter_and_a_failing_call_leave_the_others_to_go_on(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        hold = MoveHold(60.0)
        end = hold.begin()
        gone = asyncio.ensure_future(hold.wait())
        kept = asyncio.ensure_future(hold.wait())
        await asyncio.sleep(0)
        gone.cancel()

        def broken() -> None:
            raise RuntimeError("a bug in one held call")

        hold.defer(broken)
        ran: list[str] = []
        hold.defer(lambda: ran.append("after"))
        end()
        await asyncio.wait_for(kept, 30)
        assert ran == ["after"] and gone.cancelled()

    with caplog.at_level(logging.ERROR, logger="fluentfn.host"):
        asyncio.run(main())
    assert "a call held during a move failed to start" in caplog.text


def test_a_limit_of_zero_holds_nothing() -> None:
    async def main() -> None:
        hold = MoveHold(0.0)
        hold.begin()
        assert not hold.holding and not hold.holds(Call(key="k"))

    asyncio.run(main())
