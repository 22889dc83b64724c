"""How the FaaS platform runs an asynchronous invocation (a tell, a reminder's firing).

As Lambda does: one that fails in the platform — killed at its cap, its environment
died, no environment, throttled, its state not written — runs again, up to
``FaasProfile.async_retries`` times, the first ``async_retry_delay_s`` later and each
next one twice as late. An error the method itself raised is the turn's outcome, not
the platform's failure, and is not run again. The invocation's request id makes the
runs of an actor's turn take effect once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .._faasprofile import FaasProfile
from ..errors import ActorError, FluentError, FunctionTimeout, Overloaded, Unavailable

log = logging.getLogger("fluentfn.faas")
PLATFORM_FAILURES = (Unavailable, Overloaded, FunctionTimeout)


async def run_async_invocation(
    run: Callable[[], Awaitable[object]], profile: FaasProfile, what: str, totals: dict[str, int]
) -> FluentError | None:
    """Run ``run()`` until it ends or its platform failures use up the retries: None if
    it ran, else its last error. ``totals`` counts ``async_retries``."""
    for attempt in range(profile.async_retries + 1):
        try:
            await run()
            return None
        except FluentError as exc:
            # the method's own error (``ActorError``, whatever else it is) is its outcome
            mine = isinstance(exc, PLATFORM_FAILURES) and not isinstance(exc, ActorError)
            if not mine or attempt == profile.async_retries:
                return exc
            log.info("asynchronous invocation of %s failed (%s: %s); it runs again", what, type(exc).__name__, exc)
            totals["async_retries"] = totals.get("async_retries", 0) + 1
            await asyncio.sleep(profile.async_retry_delay_s * 2**attempt)
    raise AssertionError("unreachable: the last attempt returns")
