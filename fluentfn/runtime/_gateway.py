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
from collections.abc import Callable
from typing import Any

from .. import _config, _gc, _ref
from .._call import Call, Outcome
from .._clusterconfig import ClusterConfig
from .._ioloop import io_loop, spawn
from .._logs import quiet_logs
from .._status import HostInfo, Status, TypeRoute
from .._tables import DIRECTORY_NAME, ray_namespace
from ..errors import FluentError
from ..transport._server import start_server
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
        return Status(
            host_id="gateway",
            type_names=tuple(await await_ray(directory.type_names.remote())),
            live_identities=sum(h.live_identities for h in hosts),
            counters=totals,
            hosts=hosts,
            types=tuple(TypeRoute(**r) for r in routes),
        )


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
        tls = config.tls
        self._server, port = self._io.run(
            start_server(Gateway(self.runtime, directory), config.token, config.bind, tls, port=port)
        )
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
