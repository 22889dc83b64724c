"""The FaaS platform's timer service: due reminders fire as invocations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .._context import CURRENT, Context
from .._faasprofile import FaasProfile
from .._ioloop import spawn
from .._ref import ActorRef
from ..host._reminders import Due, Reminders
from ..state import Store
from ..state._emulated import MeteredStore
from ..wire import codec
from ._faasresults import Results, Started
from ._faasretry import run_async_invocation

log = logging.getLogger("fluentfn.faas")
REMINDER_GROUP = "__faas__"
_TICK_S = 0.25

Start = Callable[[ActorRef, str, tuple[Any, ...], dict[str, Any]], Started]
"""Starts an actor invocation (blocking): what ``Results`` waits on."""


async def run_reminders(
    store: Store,
    start: Start,
    results: Results,
    tasks: set[asyncio.Task[Any]],
    profile: FaasProfile,
    totals: dict[str, int],
) -> None:
    """Fire due reminders as invocations, forever (what a FaaS platform's scheduler does).
    The firings it starts join ``tasks`` (their owner cancels them at close). A firing
    that fails in the platform runs again as any asynchronous invocation does
    (``_faasretry``; ``totals`` counts its retries): the reminder stays due until its
    firing ends."""
    loop = asyncio.get_running_loop()
    reminders = Reminders(store.inner if isinstance(store, MeteredStore) else store, REMINDER_GROUP, 0, lambda: None)
    firing: set[str] = set()
    while True:
        await asyncio.sleep(_TICK_S)
        try:
            due = await loop.run_in_executor(None, reminders.due)
        except Exception as exc:
            log.warning("FaaS reminders not read: %s: %s", type(exc).__name__, exc)
            continue
        for item in due:
            if item.row.rid in firing:
                continue
            firing.add(item.row.rid)
            spawn(_fire(item, reminders, firing, start, results, profile, totals), tasks)


async def _fire(
    due: Due,
    reminders: Reminders,
    firing: set[str],
    start: Start,
    results: Results,
    profile: FaasProfile,
    totals: dict[str, int],
) -> None:
    loop = asyncio.get_running_loop()
    type_name, key = due.row.address.split("/", 1)

    async def invoke() -> None:
        ctx = Context(request_id=due.request_id)  # every run derives the same request id
        token = CURRENT.set(ctx)
        try:
            decoded, kwargs = codec.decode_args(due.args)
            started = await loop.run_in_executor(
                None, lambda: start(ActorRef(type_name, key), due.method, decoded, kwargs)
            )
        finally:
            CURRENT.reset(token)
        await results.wait_async(started)

    try:
        failure = await run_async_invocation(invoke, profile, due.row.address, totals)
        if failure is not None:  # the platform's scheduler logs and moves on, as Lambda's does
            log.warning(
                "reminder %s on %s failed: %s: %s", due.row.rid, due.row.address, type(failure).__name__, failure
            )
        await loop.run_in_executor(None, reminders.fired, due)
    finally:
        firing.discard(due.row.rid)
