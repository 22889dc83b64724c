"""The FaaS platform's timer service: due reminders fire as invocations, and the tells of
committed turns that their invocation did not live to send leave from the outbox.

A tell made in a FaaS turn is held until the turn's write commits, and its outbox row
is written with that write, due once the invocation's cap (and a grace) has passed.
The invocation sends the tell and removes the row; if it died in between, the row is
still there when due, and the tell leaves from here with its own request id (a tell
that did leave before the death is deduplicated by it)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgpack

from .._context import CURRENT, Context
from .._faasprofile import FaasProfile
from .._ioloop import spawn
from .._ref import ActorRef
from ..errors import FluentError
from ..host._reminders import BOOKKEEPING_PREFIX, Due, InFlight, Reminders
from ..state import Store
from ..state._emulated import MeteredStore
from ..state._store import Reminder, Scheduled
from ..wire import codec
from ._faasresults import Results, Started
from ._faasretry import run_async_invocation

log = logging.getLogger("fluentfn.faas")
REMINDER_GROUP = "__faas__"
OUTBOX_GROUP = "__faas_outbox__"
OUTBOX_GRACE_S = 5.0  # after an invocation's cap, before its unsent tells leave from the outbox
_TICK_S = 0.25
_OUTBOX_TICKS = 4  # the outbox is read every this many ticks (its rows are due seconds after a cap)


def outbox_row(sender: str, rid: str, target: str, method: str, payload: bytes, cap_s: float) -> Scheduled:
    """The outbox row of tell ``rid`` (``target.method(payload)``) made by ``sender``'s turn
    now: due once the invocation making it has surely ended."""
    body = msgpack.packb([method, payload, 0.0, target])
    row = Reminder(sender, BOOKKEEPING_PREFIX + rid, time.time() + cap_s + OUTBOX_GRACE_S, body)
    return Scheduled(OUTBOX_GROUP, 0, row)


Resend = Callable[[str, str, str, str, bytes], object]
"""Sends a turn's tell: ``(sender, rid, address, method, payload)``, the arguments
encoded (blocking)."""

Start = Callable[[ActorRef, str, tuple[Any, ...], dict[str, Any]], Started]
"""Starts an actor invocation (blocking): what ``Results`` waits on."""


async def run_reminders(
    store: Store,
    start: Start,
    results: Results,
    tasks: set[asyncio.Task[Any]],
    profile: FaasProfile,
    totals: dict[str, int],
    resend: Resend,
) -> None:
    """Fire due reminders as invocations, forever (what a FaaS platform's scheduler does),
    and send the tells left in the outbox (``resend``). The firings it starts join
    ``tasks`` (their owner cancels them at close). A firing that fails in the platform
    runs again as any asynchronous invocation does (``_faasretry``; ``totals`` counts its
    retries): the reminder stays due until its firing ends."""
    loop = asyncio.get_running_loop()
    raw = store.inner if isinstance(store, MeteredStore) else store
    reminders = Reminders(raw, REMINDER_GROUP, 0, lambda: None)
    outbox = Reminders(raw, OUTBOX_GROUP, 0, lambda: None)
    firing = InFlight()
    tick = 0
    while True:
        await asyncio.sleep(_TICK_S)
        tick += 1
        firing.reading()
        try:
            due = await loop.run_in_executor(None, reminders.due)
            if tick % _OUTBOX_TICKS == 0:
                await loop.run_in_executor(None, _send_left, outbox, resend, totals)
        except Exception as exc:
            log.warning("FaaS reminders not read: %s: %s", type(exc).__name__, exc)
            continue
        for item in due:
            if firing.start(item.row.rid):
                spawn(_fire(item, reminders, firing, start, results, profile, totals), tasks)


async def _fire(
    due: Due,
    reminders: Reminders,
    firing: InFlight,
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
        firing.end(due.row.rid)


def _send_left(outbox: Reminders, resend: Resend, totals: dict[str, int]) -> None:
    """Send the tells whose invocation died between its write and their sending."""
    for item in outbox.due(lookahead_s=0.0):
        target = msgpack.unpackb(item.row.payload)[3]
        rid = item.row.rid[len(BOOKKEEPING_PREFIX) :]
        log.info("tell %s of %s to %s leaves from the outbox", rid, item.row.address, target)
        try:
            resend(item.row.address, rid, target, item.method, item.args)
        except FluentError as exc:  # (a lab's tap dropped it): the row stays for the next tick
            log.warning(
                "tell %s of %s not sent from the outbox: %s: %s", rid, item.row.address, type(exc).__name__, exc
            )
            continue
        totals["outbox_sends"] = totals.get("outbox_sends", 0) + 1
        outbox.fired(item)
