"""``ff.Client`` and ``ff.AsyncClient``: call actors over gRPC from any process, without Ray.

Both route through the same router as drivers and actors (``transport/_caller.py``):
they learn the cluster's placement from the gateway's ``Status`` and send a call straight
to the host that owns its key, as Orleans clients and Ray's direct actor calls do; a host
that is gone or no longer owns the partition sends the call back through the gateway
(marked as a possible repeat, so the host answers from its records if it did run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from . import _config
from ._call import Call, Outcome, new_request_id
from ._ioloop import io_loop
from ._ref import IDEMPOTENCY_REUSED, KEYED_PREFIX, KEYS_METHOD, check_timeout
from ._router import RouteTable, Slot, Target
from ._status import Status
from .errors import FluentError, InvalidRequest
from .transport._caller import Caller
from .transport._client import Done, PeerPool, no_reply, settle_future, until_deadline
from .transport._threadstream import thread_streams
from .transport._tls import TlsConfig
from .transport._tunnel import through
from .wire import codec
from .wire.errors import reply_value

T = TypeVar("T")


def request_id_for(idempotency_key: str | None) -> tuple[str, int]:
    """(request id, attempt) of a call: a fresh id, or one derived from the caller's
    idempotency key and marked as a possible repeat, so the host answers a retry with the
    recorded reply instead of running it again."""
    if idempotency_key is None:
        return new_request_id(), 0
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key.encode("utf-8", "surrogatepass")) <= 1024:
        raise InvalidRequest("an idempotency_key is a string of 1 to 1024 bytes")
    digest = hashlib.blake2b(idempotency_key.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return KEYED_PREFIX + digest, 1


def build_call(
    address: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float, key: str | None
) -> Call:
    """The wire message of one client call."""
    if not isinstance(address, str) or "/" not in address:
        raise InvalidRequest(f"an address is 'Type/key', got {address!r}")
    type_name, ident = address.split("/", 1)
    request_id, attempt = request_id_for(key)
    return Call(
        type_name=type_name,
        key=ident,
        method=method,
        args=codec.encode_args(args, kwargs),
        request_id=request_id,
        chain_id=request_id,
        deadline=time.time() + timeout_s,
        attempt=attempt,
    )


def _value(reply: Outcome, idempotency_key: str | None) -> Any:
    """A reply's value or error; a reused idempotency key is named (the host knows only its hash)."""
    try:
        return reply_value(reply)
    except InvalidRequest as exc:
        if idempotency_key is not None and IDEMPOTENCY_REUSED in str(exc):
            raise InvalidRequest(f"idempotency_key {idempotency_key!r}: {exc}") from None
        raise


_REFRESH_S = 1.0  # read the placement at most this often
_STATUS_TIMEOUT_S = 5.0  # a gateway that does not answer a placement read by then: try the next
_TUNNEL_PROBE_S = 1.0  # a gateway's tunnel port that does not take a connection by then is not used
_TUNNEL_RETRY_S = 30.0  # ... until this much later


def gateways_of(target: object) -> list[str]:
    """The gateways named by a client's ``target``: ``"host:port"``, or several, comma-separated."""
    if not isinstance(target, str) or not target.strip():
        raise FluentError(f"target must be 'host:port' of a gateway (or several, comma-separated), not {target!r}")
    found = [t.strip() for t in target.split(",") if t.strip()]
    for one in found:
        if ":" not in one:
            raise FluentError(f"target must be 'host:port' of a gateway (or several, comma-separated), not {one!r}")
    return found


class _Placement:
    """A client's ``Locator``: the gateway's ``Status`` (each type's group and partition
    count, each partition's host), read at most once a second, concurrent readers sharing
    one read. No route means: through the gateway.

    ``tunnel``: the client reaches only the gateways, so each route to a host goes through
    the tunnel of the gateway that answered (none where that gateway has no tunnel, or its
    tunnel's port does not answer: then every call goes through the gateway)."""

    def __init__(self, table: RouteTable, pool: PeerPool, gateways: list[str], timeout_s: float, *,
                 tunnel: bool = False) -> None:  # fmt: skip
        self._table = table
        self._pool = pool
        self._gateways = gateways
        self._timeout = timeout_s
        self._tunnel = tunnel
        self._read_at = -_REFRESH_S
        self._reading: asyncio.Task[None] | None = None
        self._tunnels: dict[str, float] = {}  # tunnel address -> when it last failed to answer (0: it answered)

    async def locate(self, call: Call) -> Target | None:
        slot = self._table.slot(call.type_name, call.key)
        known = self._table.get(slot)
        if known is not None or time.monotonic() - self._read_at < _REFRESH_S:
            return known
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        await asyncio.shield(self._reading)
        return self._table.get(self._table.slot(call.type_name, call.key))

    async def lost(self, slot: Slot, target: Target) -> None:
        """Nothing to tell: the gateway's router finds out for itself."""

    async def _read(self) -> None:
        self._read_at = time.monotonic()
        for gateway in self._gateways:
            try:
                status = await self._pool.status(gateway, min(self._timeout, _STATUS_TIMEOUT_S))
                break
            except FluentError:
                continue
        else:
            return  # no gateway answered: calls go through them (and wait for them); read again later
        types = {t.type_name: (t.group, t.shards) for t in status.types if t.shards}
        via = await self._tunnel_of(gateway, status.tunnel_port) if self._tunnel else None
        routes = {
            (h.group, p): Target(h.endpoint if via is None else through(h.endpoint, via))
            for h in status.hosts
            for p in (h.partitions or [h.shard])
        }
        self._table.replace(types, {} if self._tunnel and via is None else routes)

    async def _tunnel_of(self, gateway: str, port: int) -> str | None:
        """The address of ``gateway``'s tunnel, if it has one that answers (tried again
        ``_TUNNEL_RETRY_S`` after it did not)."""
        if not port:
            return None
        host = gateway.rpartition(":")[0]
        via = f"{host}:{port}"
        failed = self._tunnels.get(via)
        if failed == 0.0:
            return via
        if failed is not None and time.monotonic() - failed < _TUNNEL_RETRY_S:
            return None
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), port), _TUNNEL_PROBE_S)
        except (OSError, TimeoutError):
            self._tunnels[via] = time.monotonic()
            return None
        writer.close()
        self._tunnels[via] = 0.0
        return via


class _Base:
    """What both clients are: a router on fluentfn's I/O loop, with the gateway as its
    fallback, and streams to the gateway and the hosts."""

    def __init__(
        self,
        target: str,
        *,
        token: str,
        tls: TlsConfig | None = None,
        timeout_s: float | None = None,
        direct: bool = True,
        tunnel: bool = True,
    ) -> None:
        gateways = gateways_of(target)
        if not isinstance(token, str) or not token:
            raise FluentError("token must be the cluster's token (cluster.token, FLUENTFN_TOKEN), a non-empty string")
        self.target = target
        self._gateways = gateways
        self._timeout = _config.DEFAULT_CALL_TIMEOUT_S if timeout_s is None else check_timeout(timeout_s)
        self._direct = direct
        self._tunnel = tunnel and not direct
        self._io = io_loop()
        self._pool = PeerPool(token, tls)
        self._threads = thread_streams(token, tls)
        table = RouteTable()
        self._caller = Caller(
            table=table,
            locator=_Placement(table, self._pool, gateways, self._timeout, tunnel=self._tunnel),
            pool=self._pool,
            retries=_config.RETRY_ATTEMPTS,
            fallbacks=tuple(Target(g, fallback=True) for g in gateways),
            unary_tells=True,  # a client's tell returns once a host (or the gateway) accepted it
            threads=self._threads,
        )

    def _route(self, call: Call, done: Done) -> None:
        """On the loop: the gateway answers what only it can (and everything, ``direct=False``)."""
        self._caller.send(call, done, direct=self._direct_for(call))

    def _direct_for(self, call: Call) -> bool:
        return (self._direct or self._tunnel) and call.method != KEYS_METHOD

    async def _shutdown(self) -> None:
        self._caller.close()
        if self._threads is not None:
            self._threads.close()
        await self._pool.close()

    async def _status(self) -> Status:
        """The first gateway's status that answers (the last one's error if none does)."""
        for gateway in self._gateways[:-1]:
            try:
                return await self._pool.status(gateway, self._timeout)
            except FluentError:
                continue
        return await self._pool.status(self._gateways[-1], self._timeout)

    def _message(self, address: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 key: str | None, *, one_way: bool = False) -> Call:  # fmt: skip
        call = build_call(address, method, args, kwargs, self._timeout, key)
        call.one_way = one_way
        return call


class Client(_Base):
    """A synchronous gRPC client of a fluentfn gateway (``cluster.gateway``).

    ``Client(target, token=...).call("Counter/alice", "add", 2)``. ``target`` is a
    gateway's "host:port", or several comma-separated (``fluentfn serve --gateways N``):
    a gateway that cannot be reached is waited for, or the next one used, up to the
    call's deadline. Pass
    ``idempotency_key="..."`` to make a call safe to retry: the same key on the same
    identity returns the first call's recorded reply (for ``FLUENTFN_REPLY_TTL_S``)
    instead of running again. (``idempotency_key`` is therefore not passed on to the method.)
    ``direct=False`` is for a client that can reach only the gateway: each call goes to
    its host through the gateway's tunnel (bytes relayed, the route the client's own), or,
    with ``tunnel=False`` or where the gateway has no tunnel, the gateway forwards it.
    Calls travel on one long-lived stream per endpoint, as a driver's do.
    """

    def _wait(self, call: Call) -> Outcome | None:
        if self._io.in_loop():
            raise FluentError("ff.Client blocks: from async code on fluentfn's own loop, use ff.AsyncClient")
        return self._caller.call_blocking(call, self._io.loop, direct=self._direct_for(call))

    def call(self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Any:
        """Call ``method`` on the identity at ``address`` and return its result."""
        reply = self._wait(self._message(address, method, args, kwargs, idempotency_key))
        assert reply is not None
        return _value(reply, idempotency_key)

    def tell(self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any) -> None:
        """Send a one-way message (returns once the cluster accepted it)."""
        self._wait(self._message(address, method, args, kwargs, idempotency_key, one_way=True))

    def status(self) -> Status:
        """The endpoint's status message."""
        if self._io.in_loop():
            raise FluentError("ff.Client blocks: from async code on fluentfn's own loop, use ff.AsyncClient")
        return self._io.run(self._status(), timeout=self._timeout + 1.0)

    def close(self) -> None:
        if not self._io.in_loop():
            self._io.run(self._shutdown(), timeout=10)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio twin of ``Client``: ``await client.call("Counter/a", "add", 2)``.

    Many calls may be in flight at once, pipelined on the same streams as ``Client``'s.
    ``idempotency_key``, ``direct`` and ``tunnel`` work as in ``Client``: retrying with the same key
    never runs a state change twice.
    """

    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._io.in_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._io.loop))

    async def _send(self, call: Call) -> Outcome | None:
        if self._io.in_loop():
            fut: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
            self._route(call, settle_future(fut))
            return await fut
        waiter: concurrent.futures.Future[Outcome | None] = concurrent.futures.Future()
        self._io.loop.call_soon_threadsafe(self._route, call, settle_future(waiter))
        return await asyncio.wait_for(asyncio.wrap_future(waiter), until_deadline(call))

    async def call(
        self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any
    ) -> Any:
        """Call ``method`` on the identity at ``address`` and return its result."""
        call = self._message(address, method, args, kwargs, idempotency_key)
        try:
            reply = await self._send(call)
        except TimeoutError:
            raise no_reply(call) from None
        assert reply is not None
        return _value(reply, idempotency_key)

    async def tell(
        self, address: str, method: str, *args: Any, idempotency_key: str | None = None, **kwargs: Any
    ) -> None:
        """Send a one-way message (returns once the cluster accepted it)."""
        call = self._message(address, method, args, kwargs, idempotency_key, one_way=True)
        try:
            await self._send(call)
        except TimeoutError:
            raise no_reply(call) from None

    async def status(self) -> Status:
        """The endpoint's status message."""
        return await self._on_loop(self._status())

    async def close(self) -> None:
        await self._on_loop(self._shutdown())

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
