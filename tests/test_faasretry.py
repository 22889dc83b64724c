"""How the FaaS platform runs an asynchronous invocation again (no Ray: the policy alone)."""

from __future__ import annotations

import asyncio

import pytest

import fluentfn as ff
from fluentfn.runtime._faasretry import run_async_invocation
from fluentfn.wire.errors import describe_error, rebuild_error

pytestmark = pytest.mark.timeout(60)


def _run(failures: list[BaseException | None], retries: int = 2) -> tuple[BaseException | None, int, dict[str, int]]:
    """Run an invocation that fails as ``failures`` says, one entry per run (None: it ran)."""
    runs = 0
    totals: dict[str, int] = {}

    async def invoke() -> None:
        nonlocal runs
        runs += 1
        failure = failures[runs - 1]
        if failure is not None:
            raise failure

    profile = ff.FaasProfile(async_retries=retries, async_retry_delay_s=0.001)
    got = asyncio.run(run_async_invocation(invoke, profile, "T", totals))
    return got, runs, totals


@pytest.mark.parametrize("failure", [ff.Unavailable("env died"), ff.FunctionTimeout("cap"), ff.Overloaded("busy")])
def test_a_platform_failure_runs_again_until_it_runs(failure: BaseException) -> None:
    got, runs, totals = _run([failure, failure, None])
    assert got is None and runs == 3 and totals == {"async_retries": 2}


def test_the_last_failure_is_returned_when_the_retries_are_used_up() -> None:
    last = ff.FunctionTimeout("third")
    got, runs, totals = _run([ff.Unavailable("first"), ff.Unavailable("second"), last, None])
    assert got is last and runs == 3 and totals == {"async_retries": 2}


def test_no_retries_runs_once() -> None:
    first = ff.Unavailable("first")
    assert _run([first, None], retries=0) == (first, 1, {})


@pytest.mark.parametrize("raised", [ff.InvalidRequest("bad input"), ff.Unavailable("its own call failed")])
def test_an_error_the_method_raised_is_not_run_again(raised: Exception) -> None:
    own = rebuild_error(describe_error(raised, "T/k.m", user=True))  # as the caller gets it
    assert isinstance(own, ff.ActorError)
    got, runs, totals = _run([own, None])
    assert got is own and runs == 1 and totals == {}


def test_an_error_the_platform_refuses_with_is_not_run_again() -> None:
    refused = ff.InvalidRequest("request message is not in the store")
    assert _run([refused, None]) == (refused, 1, {})


def test_a_crash_that_is_not_a_fluent_error_is_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError):
        _run([ZeroDivisionError("bug")])


def test_the_delays_double() -> None:
    slept: list[float] = []

    async def main() -> None:
        real = asyncio.sleep

        async def sleep(s: float) -> None:
            slept.append(s)
            await real(0)

        asyncio.sleep = sleep  # type: ignore[assignment]
        try:

            async def invoke() -> None:
                raise ff.Unavailable("down")

            await run_async_invocation(invoke, ff.FaasProfile(async_retries=3, async_retry_delay_s=0.5), "T", {})
        finally:
            asyncio.sleep = real  # type: ignore[assignment]

    asyncio.run(main())
    assert slept == [0.5, 1.0, 2.0]
