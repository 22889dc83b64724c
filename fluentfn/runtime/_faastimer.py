"""The FaaS platform's timer service: due reminders fire as invocations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .._context import CURRENT, Context
from .._ioloop import spawn
from .._ref import ActorRef
from ..errors import FluentError
from ..host._reminders import Due, Reminders
from ..state import Store
from ..state._emulated import MeteredStore
from ..wire import codec
from ._faasresults import Results, Started

log = logging.getLogger("fluentfn.faas")
REMINDER_GROUP = "__faas__"
_TICK_S = 0.25

Start = Callable[[ActorRef, str, tuple[Any, ...], dict[str, Any]], Started]
"""Starts an actor invocation (blocking): what ``Results`` waits on."""


async def run_reminders(store: Store, start: Start, results: Results, tasks: set[asyncio.Task[Any]]) -> None:
    """Fire due reminders as invocations, forever (what a FaaS platform's scheduler does).
    The firings it starts join ``tasks`` (their owner cancels them at close)."""
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
            spawn(_fire(item, reminders, firing, start, results), tasks)


async def _fire(due: Due, reminders: Reminders, firing: set[str], start: Start, results: Results) -> None:
    loop = asyncio.get_running_loop()
    try:
        type_name, key = due.row.address.split("/", 1)
        ctx = Context(request_id=due.request_id)
        token = CURRENT.set(ctx)
        try:
            decoded, kwargs = codec.decode_args(due.args)
            started = await loop.run_in_executor(
                None, lambda: start(ActorRef(type_name, key), due.method, decoded, kwargs)
            )
        finally:
            CURRENT.reset(token)
        try:
            await results.wait_async(started)
        except FluentError as exc:  # the platform's scheduler logs and moves on, as Lambda's does
            log.warning("reminder %s on %s failed: %s: %s", due.row.rid, due.row.address, type(exc).__name__, exc)
        await loop.run_in_executor(None, reminders.fired, due)
    finally:
        firing.discard(due.row.rid)
