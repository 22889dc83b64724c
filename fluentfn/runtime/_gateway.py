"""The gateway: a gRPC endpoint that routes each call to its host, for clients without Ray.

A gateway is a ``Gateway`` dispatcher behind ``start_server``, with the process's
runtime (and so its router) forwarding calls. ``ff.init`` runs one in its own process;
``fluentfn serve --gateways N`` runs N more as ``GatewayActor``s: Ray actors restarted
when they die, on the same port, so a client (which may name several gateways,
comma-separated) waits out a restart instead of failing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from grpc import aio

from .. import _config, _gc, _ref
from .._call import Call, Outcome
from .._clusterconfig import ClusterConfig
from .._ioloop import io_loop, spawn
from .._logs import quiet_logs
from .._status import HostInfo, Status, TypeRoute
from .._tables import DIRECTORY_NAME, ray_namespace
from ..errors import FluentError
from ..transport._server import start_server
from ..transport._tunnel import TunnelServer
from ..wire import codec
from ..wire.errors import describe_error
from ._faas import FaasRuntime
from ._raycall import await_ray, get_directory
from ._stateful import StatefulRuntime

Runtime = StatefulRuntime | FaasRuntime
GATEWAY_NAME_PREFIX = "fluentfn-gateway:"


class Gateway:
    """Dispatcher of the driver's gRPC endpoint: forwards each call to its host."""

    def __init__(self, runtime: Runtime, directory: Any) -> None:
        self._runtime = runtime
        self._directory = directory
        self._tasks: set[asyncio.Task[Any]] = set()
        self.tunnel: TunnelServer | None = None  # set by ``serve_gateway`` where it runs one

    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None:
        if call.method == _ref.KEYS_METHOD:
            return await self._keys(call)
        return await self._runtime.forward(call)

    def submit(self, call: Call, done: Callable[[Outcome | None], None], *, local: bool = False) -> None:
        """Forward ``call``; its reply carries the caller's ``seq`` (the hop to the host
        numbers calls on its own stream)."""
        seq = call.seq

        def answer(reply: Outcome | None) -> None:
            if reply is not None:
                reply.seq = seq
            done(reply)

        if call.method != _ref.KEYS_METHOD and isinstance(self._runtime, StatefulRuntime):
            self._runtime.forward_soon(call, answer)  # no task when the route is cached
        else:
            spawn(self._forward(call, answer), self._tasks)

    async def _forward(self, call: Call, done: Callable[[Outcome | None], None]) -> None:
        done(await self.dispatch(call))

    async def _keys(self, call: Call) -> Outcome:
        """``fluentfn ls``: a type's stored keys, answered here (no host is involved)."""
        try:
            args, _ = codec.decode_args(call.args)
            prefix, limit = _ref.check_listing(args[0] if args else "", args[1] if len(args) > 1 else None)
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(None, self._runtime.keys, call.type_name, prefix, limit)
            return Outcome(seq=call.seq, value=codec.encode(found))
        except FluentError as exc:
            return Outcome(seq=call.seq, error=describe_error(exc))

    async def accept(self, call: Call) -> None:
        await self._runtime.check_call(call)

    async def status(self) -> Status:
        """Cluster-wide: every host, and counters summed over them."""
        directory = self._directory
        entries = await await_ray(directory.hosts.remote())
        infos = await asyncio.gather(*(await_ray(h.info.remote()) for _, _, h in entries), return_exceptions=True)
        totals = await await_ray(directory.stats.remote())
        hosts = tuple(
            HostInfo(
                group=i["group"], shard=i["shard"], endpoint=i["endpoint"], node_id=i["node_id"],
                live_identities=i["live"], epoch=i["epoch"], gpu_ids=tuple(i["gpu_ids"]), type_names=tuple(i["types"]),
                metrics_url=i["metrics"], pid=i["pid"], host_id=i["host_id"], partitions=tuple(i["partitions"]),
            )
            for i in infos
            if isinstance(i, dict)
        )  # fmt: skip
        routes = await await_ray(directory.type_routes.remote())
        tunnel = self.tunnel
        counters = totals if tunnel is None else {**totals, **tunnel.counters}
        return Status(
            host_id="gateway",
            type_names=tuple(await await_ray(directory.type_names.remote())),
            live_identities=sum(h.live_identities for h in hosts),
            counters=counters,
            hosts=hosts,
            types=tuple(TypeRoute(**r) for r in routes),
            tunnel_port=0 if tunnel is None else tunnel.port,
        )


_REREAD_S = 0.2  # a tunnel to an endpoint not known as a host: read the hosts again, at most this often
_READ_TIMEOUT_S = 5.0  # a directory that does not list them by then: the tunnel is refused (503), the call forwarded


class _HostEndpoints:
    """Where a gateway's tunnel may go: the cluster's hosts' endpoints, read from the
    directory again (at most every ``_REREAD_S``) when a tunnel asks for one not known."""

    def __init__(self, directory: Any) -> None:
        self._directory = directory
        self._known: frozenset[str] = frozenset()
        self._read_at = -_REREAD_S
        self._lock = threading.Lock()

    def __call__(self, endpoint: str) -> bool:
        if endpoint in self._known:
            return True
        import ray

        with self._lock:
            if time.monotonic() - self._read_at >= _REREAD_S:
                self._known = frozenset(ray.get(self._directory.endpoints.remote(), timeout=_READ_TIMEOUT_S))
                self._read_at = time.monotonic()
        return endpoint in self._known


class GatewayServer:
    """A gateway's listeners: its gRPC server and, unless turned off, its tunnel."""

    def __init__(self, server: aio.Server, port: int, tunnel: TunnelServer | None) -> None:
        self.server = server
        self.port = port
        self.tunnel = tunnel

    async def stop(self, grace_s: float) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
        await self.server.stop(grace_s)


async def serve_gateway(runtime: Runtime, directory: Any, config: ClusterConfig, port: int = 0) -> GatewayServer:
    """A gateway for ``runtime`` on ``config.bind``: its gRPC server (on ``port``, or an
    ephemeral one) and its tunnel (``FLUENTFN_GATEWAY_TUNNEL``; hosts only)."""
    gateway = Gateway(runtime, directory)
    server, port = await start_server(gateway, config.token, config.bind, config.tls, port=port)
    if config.mode.has_hosts and _config.gateway_tunnel_wanted():
        try:
            gateway.tunnel = TunnelServer(config.token, _HostEndpoints(directory), config.bind)
        except OSError as exc:
            await server.stop(0)
            raise FluentError(f"the gateway's tunnel cannot listen on {config.bind}: {exc}") from None
    return GatewayServer(server, port, gateway.tunnel)


def runtime_for(directory: Any, config: ClusterConfig) -> Runtime:
    """The runtime a process of the cluster routes calls with."""
    if not config.mode.has_hosts:
        return FaasRuntime(directory=directory, config=config, io=io_loop())
    return StatefulRuntime(directory=directory, config=config, io=io_loop())


class GatewayActor:
    """A gateway in a Ray actor of its own: restarted by Ray on the same port."""

    def __init__(self, namespace: str, port: int) -> None:
        import ray

        quiet_logs()
        _gc.tune(user_process=False)
        directory = ray.get_actor(DIRECTORY_NAME, namespace=ray_namespace(namespace))
        config: ClusterConfig = get_directory(lambda: directory.config.remote(), _config.RESOLVE_TIMEOUT_S)
        self._io = io_loop()
        self.runtime = runtime_for(directory, config)
        _ref.set_invoker(self.runtime, worker=True)
        self._server = self._io.run(serve_gateway(self.runtime, directory, config, port))
        port = self._server.port
        host = "127.0.0.1" if config.bind in ("0.0.0.0", "::", "") else config.bind
        self.endpoint = f"{host}:{port}"

    def address(self) -> str:
        return self.endpoint

    def pid(self) -> int:
        return os.getpid()


def free_port(bind: str) -> int:
    """A port free on ``bind`` now (a gateway actor keeps it across restarts)."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((bind if bind not in ("0.0.0.0", "::", "") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateways(namespace: str, bind: str, count: int, *, detached: bool) -> list[Any]:
    """``count`` restartable gateway actors of ``namespace``'s cluster (started with
    ``ff.init``); their handles (``.address.remote()`` gives each one's "host:port")."""
    import ray

    actor_cls: Any = ray.remote(GatewayActor)
    handles = []
    for _ in range(count):
        port = free_port(bind)
        handles.append(
            actor_cls.options(
                name=f"{GATEWAY_NAME_PREFIX}{port}",
                namespace=ray_namespace(namespace),
                lifetime="detached" if detached else None,
                max_restarts=-1,  # a gateway that dies comes back, on the same port
                max_task_retries=0,
                num_cpus=0,
            ).remote(namespace, port)
        )
    return handles
