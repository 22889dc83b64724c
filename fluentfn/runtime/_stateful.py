"""The stateful runtime: makes calls and hands them to the process's router.

Placement: key -> shard (stable hash) -> route (the directory is this runtime's
``Locator``; routes are cached in the router's one ``RouteTable``). A sync call to a
shard this very thread's process hosts runs inline; everything else goes through the
``Caller`` (``transport/_caller.py``), whose ``Attempt`` decides retries and redirects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _config
from .._call import Call, Outcome, new_request_id
from .._clusterconfig import ClusterConfig
from .._context import CURRENT, LazyContext
from .._ioloop import IoLoop
from .._phases import TALLY
from .._ref import DELETE_METHOD, ActorRef, Future
from .._router import RouteTable, Target
from .._tracing import enabled as tracing_on
from .._tracing import parent_for
from ..api import check_tell
from ..errors import REROUTE_CODES, FluentError, InvalidRequest, no_method
from ..host._partitions import PartitionSet
from ..state import Store, open_store
from ..transport._caller import Caller
from ..transport._client import PeerPool, no_reply, settle_future, until_deadline
from ..transport._threadstream import thread_streams
from ..transport._tls import TlsConfig
from ..wire import codec
from ..wire.errors import describe_error, reply_value
from ._functions import FunctionRunner
from ._locator import DirectoryLocator
from ._raycall import get_directory

_PATIENCE_S = _config.RESOLVE_TIMEOUT_S  # how long a caller waits for the directory to come back
CALL_PHASE = "call"  # the caller's round trip (``_phases``)
log = logging.getLogger("fluentfn")


ReplyDone = Callable[[Outcome | None, BaseException | None], None]


def _misrouted(reply: Outcome | None) -> bool:
    """An inline call whose partition moved off this process: the router takes it."""
    return reply is not None and reply.error is not None and reply.error.code in REROUTE_CODES


class _Sends:
    """A thread's sends handed to the loop (written by that thread), taken up there and
    settled (both written by the loop): while ``landed`` trails, some are still on their
    way to the loop; while ``settled`` trails, some may not have reached a host yet."""

    __slots__ = ("handed", "landed", "settled")

    def __init__(self) -> None:
        self.handed = 0
        self.landed = 0
        self.settled = 0


def _land(sends: _Sends, send: Callable[[Call, ReplyDone], None], call: Call, done: ReplyDone | None) -> None:
    sends.landed += 1

    def settled(reply: Outcome | None, error: BaseException | None) -> None:
        sends.settled += 1
        if done is not None:
            done(reply, error)

    send(call, settled)


class StatefulRuntime:
    """The ``Invoker`` of a process in a stateful cluster (driver, host or task)."""

    mode = "stateful"

    def __init__(
        self,
        *,
        directory: Any,
        config: ClusterConfig,
        io: IoLoop,
        local: PartitionSet | None = None,
        endpoint: str = "",
    ) -> None:
        self._directory = directory
        self.config = config
        self.token: str = config.token
        self._tls: TlsConfig | None = config.tls
        self._io = io
        self._local = local  # a host's own partitions, and where it listens
        self._endpoint = endpoint
        self._pool = PeerPool(self.token, self._tls)
        self._table = RouteTable()  # the process's one route cache
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locator = DirectoryLocator(directory, self._table, local, endpoint)
        self._threads = thread_streams(self.token, self._tls)
        self._caller = Caller(
            table=self._table,
            locator=self._locator,
            pool=self._pool,
            retries=_config.RETRY_ATTEMPTS,
            local=local,
            threads=self._threads,
        )
        self.functions = FunctionRunner(mode="stateful", io=io)
        self._store: Store | None = None
        self.undelivered = 0  # tells no host took by their deadline
        self._transit = threading.local()  # a thread's ``_Sends`` (``_hand``)

    # -- Invoker -----------------------------------------------------------------------

    def call(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Any:
        if self._io.in_loop():
            raise FluentError(
                f"blocking call to {ref.address}.{method} from async code: use `await ref.{method}.aio(...)`"
            )
        local = self._local
        if local is None:  # a driver: every callee is elsewhere
            call = self._make_call(ref, method, args, kwargs, timeout_s)
            reply = None
        else:
            call = self._make_call(ref, method, args, kwargs, timeout_s, encode=False)
            sends: _Sends | None = getattr(self._transit, "sends", None)
            if sends is not None and sends.handed != sends.landed:
                # this thread's earlier tells or futures are still on their way to the loop:
                # behind them (an inline call would run first), through the router
                call.args = codec.encode_args(args, kwargs)
                reply = None
            else:
                reply = self._inline(local, call, args, kwargs)
        if reply is None or _misrouted(reply):  # not here (any more): the router
            # timed when it crosses threads or the network (an in-process turn is its own phases)
            what = f"{ref.type_name}.{method}"
            weight = TALLY.call_weight(what)
            t0 = time.perf_counter()
            sends = getattr(self._transit, "sends", None)
            settled = sends is None or sends.settled == sends.handed
            reply = self._caller.call_blocking(call, self._io.loop, own_stream=settled)
            if weight:
                TALLY.observe_spans(what, ((CALL_PHASE, t0, time.perf_counter()),), weight)
        return self._result(reply)

    def submit(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Future[Any]:
        call = self._make_call(ref, method, args, kwargs, timeout_s)
        out: Future[Any] = Future()

        def done(reply: Outcome | None, error: BaseException | None) -> None:
            try:
                if error is not None:
                    raise error
                out.set_result(self._result(reply))
            except BaseException as exc:
                out.set_exception(exc)

        self._hand(self._send_timed, call, done)
        return out

    async def call_async(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Any:
        call = self._make_call(ref, method, args, kwargs, timeout_s)
        what = f"{ref.type_name}.{method}"
        weight = TALLY.call_weight(what)
        t0 = time.perf_counter()
        if self._io.in_loop():
            fut: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
            self._send_timed(call, settle_future(fut))
            reply = await fut
        else:
            waiter: concurrent.futures.Future[Outcome | None] = concurrent.futures.Future()
            self._hand(self._send_timed, call, settle_future(waiter))
            reply = await asyncio.wrap_future(waiter)
        if weight:
            TALLY.observe_spans(what, ((CALL_PHASE, t0, time.perf_counter()),), weight)
        return self._result(reply)

    def tell(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> None:
        check_tell(ref.type_name, method, args, kwargs)
        call = self._make_call(ref, method, args, kwargs, timeout_s, one_way=True)
        if self._io.in_loop():
            self._send_tell(call)
        else:
            self._hand(self._send_tell, call)

    def _hand(self, send: Callable[[Call, ReplyDone], None], call: Call, done: ReplyDone | None = None) -> None:
        """Hand a send to the loop from another thread, counted per thread, so that a later
        call of the same thread does not overtake it: run inline before it lands (in a
        host), or go out on the thread's own stream before it is settled (calls from one
        caller to one identity run in the order they were made)."""
        sends: _Sends | None = getattr(self._transit, "sends", None)
        if sends is None:
            sends = self._transit.sends = _Sends()
        sends.handed += 1
        self._io.loop.call_soon_threadsafe(_land, sends, send, call, done)

    def run_function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        return self.functions.submit(fn, args, kwargs)

    def keys(self, type_name: str, prefix: str, limit: int | None) -> list[str]:
        return self._open_store().keys(type_name, prefix, limit)

    def delete(self, ref: ActorRef) -> None:
        """A turn of its own on the identity's host: memory dropped, rows removed."""
        self.call(ref, DELETE_METHOD, (), {})

    def _open_store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.config.store)
        return self._store

    # -- calls -------------------------------------------------------------------------

    def _make_call(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout_s: float | None = None,
        *,
        one_way: bool = False,
        encode: bool = True,
    ) -> Call:
        """The wire call for ``ref.method(*args, **kwargs)`` made from here, now (its
        arguments left unencoded unless ``encode``: the caller passes them another way).

        A call from inside a turn joins the turn's chain (reentry along it is admitted)
        and inherits its deadline; a tell starts a chain of its own, with its own
        deadline, since its sender does not wait for it.
        """
        if not isinstance(ref, ActorRef):
            raise InvalidRequest(f"not an actor reference: {ref!r}")
        args_data = codec.encode_args(args, kwargs) if encode else b""
        deadline = time.time() + (timeout_s or _config.DEFAULT_CALL_TIMEOUT_S)
        trace = tracing_on()
        ctx = CURRENT.get()
        if type(ctx) is LazyContext:  # (``current``, inline: once a call)
            ctx = ctx.context()
        if ctx is None:  # from outside any turn: a chain of its own
            request_id = new_request_id()
            return Call(  # positional (seq 0, attempt 0, budget 0): keywords cost 0.6 us a call
                ref.type_name, ref.key, method, args_data, request_id, deadline, (), request_id, 0, one_way, 0, 0.0,
                "", parent_for(None) if trace else "",
            )  # fmt: skip
        request_id = ctx.next_request_id() or new_request_id()
        times = ctx._times
        if times is not None and times.span is not None:
            times.called(ref.address, method)
        joins = not one_way
        if joins and ctx.deadline and ctx.deadline < deadline:
            deadline = ctx.deadline
        return Call(  # positional, as above
            ref.type_name, ref.key, method, args_data, request_id, deadline, ctx.chain if joins else (),
            ctx.chain_id if joins and ctx.chain_id else request_id, 0, one_way, 1 if ctx.replay else 0, 0.0,
            ctx.address or "", parent_for(times) if trace else "",
        )  # fmt: skip

    @staticmethod
    def _result(reply: Outcome | None) -> Any:
        if reply is None:
            return None
        return reply_value(reply)

    def _inline(self, local: PartitionSet, call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome | None:
        """A co-located sync -> sync call, run in the calling thread if its identity is live
        here: its reply; else None (and ``call`` carries its encoded arguments, as it does
        for the router whatever this returns, unless the callee took them as they are).
        Plain arguments (``codec.plain_args``) reach the callee without an encode and a decode."""
        slot = self._table.slot(call.type_name, call.key)
        target = self._table.get(slot)
        if target is None or not target.local:
            call.args = codec.encode_args(args, kwargs)
            return None
        assert slot is not None
        if not codec.plain_args(args, kwargs):
            call.args = codec.encode_args(args, kwargs)
            return local.dispatch_inline(call, slot[1])
        reply = local.dispatch_inline(call, slot[1], (args, kwargs))
        if reply is None or _misrouted(reply):  # the router takes it: encoded, as it travels
            call.args = codec.encode_args(args, kwargs)
        return reply

    def _send_timed(self, call: Call, done: ReplyDone) -> None:
        """Route ``call`` with a timer: the caller gets CallTimeout at the deadline at the
        latest, even if no reply ever comes (the first outcome wins, the other is dropped)."""
        settled = False

        def once(reply: Outcome | None, error: BaseException | None) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            timer.cancel()
            done(reply, error)

        timer = self._io.loop.call_later(until_deadline(call), lambda: once(None, no_reply(call)))
        self._caller.send(call, once)

    def _send_tell(self, call: Call, done: ReplyDone | None = None) -> None:
        """A tell is done once handed to the router, which re-sends it if a host refuses
        it for now, loses it, or no longer owns its partition; ``done`` hears when a host
        took it (or none did by its deadline)."""
        if done is None:
            self._caller.send(call, self._tell_settled)
            return

        def settled(reply: Outcome | None, error: BaseException | None) -> None:
            self._tell_settled(reply, error)
            done(reply, error)

        self._caller.send(call, settled)

    def _tell_settled(self, reply: Outcome | None, error: BaseException | None) -> None:
        """Outcome of a tell: no one to report to (the host counts its errors); one that no
        host took by its deadline is logged and counted (``tells_undelivered`` in
        ``ff.stats()``), never dropped in silence."""
        if error is not None:
            self.undelivered += 1
            log.error("a tell was not delivered: %s", error)

    def forward_soon(self, call: Call, done: Callable[[Outcome | None], None]) -> None:
        """Route a call that arrived at the gateway (or a tell a host must pass on), on the
        loop: ``done`` gets the reply, once (an error reply if the call could not be
        delivered; an empty one, at once, for a one-way call: accepted here)."""
        if not call.deadline:  # a client that set none: the default, as for calls made here
            call.deadline = time.time() + _config.DEFAULT_CALL_TIMEOUT_S
        if call.one_way:  # accepted here: this router delivers it (re-sending it if need be)
            done(Outcome())  # the acknowledgement a sender that gave it a ``seq`` waits for
            self._send_tell(call)
            return

        def settled(reply: Outcome | None, error: BaseException | None) -> None:
            if error is None:
                done(reply)
                return
            if not isinstance(error, FluentError):
                log.error("forwarding %s/%s.%s failed", call.type_name, call.key, call.method, exc_info=error)
                error = FluentError(f"internal error in the gateway: {type(error).__name__}")
            done(Outcome(error=describe_error(error)))

        self._send_timed(call, settled)

    async def forward(self, call: Call) -> Outcome | None:
        """Route a call that arrived at the gateway (errors become replies)."""
        try:
            return await self._caller.invoke(call)
        except FluentError as exc:
            return Outcome(seq=call.seq, error=describe_error(exc))

    def set_faults(self, faults: Any) -> None:
        """Put the lab's ``faults`` in force in every host (through the directory)."""
        if self._io.in_loop():
            raise FluentError("faults are set from a driver's thread, not from async code on the I/O loop")
        get_directory(lambda: self._directory.set_faults.remote(faults), _config.RESOLVE_TIMEOUT_S)

    def forget_routes(self, group: str) -> None:
        """Drop cached routes of a group (its hosts were replaced)."""
        self._io.loop.call_soon_threadsafe(self._table.forget_group, group)

    def local_stats(self) -> dict[str, int]:
        """Counters kept by this process itself (hosts keep the rest): the time its calls
        took, and the tells it sent that no host took by their deadline."""
        out = TALLY.counters()
        out["tells_undelivered"] = self.undelivered
        return out

    def route_to(self, type_name: str, group: str, partitions: int, endpoint: str | None = None) -> None:
        """Send ``type_name``'s calls to ``endpoint`` (None: this process's own partitions)
        without asking the directory: a cluster in one process, as ``fluentfn bench cost``
        builds one. A route that stops answering is looked up in the directory as usual."""
        self._table.learn_type(type_name, group, partitions)
        target = Target(self._endpoint, local=True) if endpoint is None else Target(endpoint)
        for partition in range(partitions):
            self._table.learn((group, partition), target)

    async def close(self) -> None:
        self._caller.close()
        if self._threads is not None:
            self._threads.close()
        await self._pool.close()
        if self._store is not None:
            self._store.close()

    async def check_call(self, call: Call) -> None:
        """NotFound unless the call names a registered type and one of its methods."""
        info = self._locator.types.get(call.type_name) or await self._locator.type_info(call.type_name)
        if call.method not in info.methods:
            raise no_method(call.type_name, call.method)
