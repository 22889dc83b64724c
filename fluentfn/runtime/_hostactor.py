"""ShardHost: the long-lived Ray actor that hosts one shard of a group.

It wires a host engine, a gRPC server and an outgoing runtime together in its process.
Ray restarts it when it dies; the new instance announces itself to the directory and
gets a higher epoch.
"""

from __future__ import annotations

import os
from typing import Any

import cloudpickle

from .. import _config
from .._actordef import ActorDef
from .._ioloop import IoLoop, io_loop
from .._logs import quiet_logs
from .._ref import set_invoker
from ..directory import DIRECTORY_NAME, ray_namespace
from ..host._engine import HostEngine, TypeLoader
from ..host._metrics import serve_metrics
from ..state import open_store
from ..transport._server import start_server
from ..transport._tls import TlsConfig
from ._raycall import await_ray, get_ray
from ._stateful import StatefulRuntime


def _type_loader(directory: Any) -> TypeLoader:
    # A closure, not a method: an async method would make Ray treat the host as an async actor.
    async def load(name: str) -> ActorDef | None:
        blob = await await_ray(directory.type_blob.remote(name))
        if blob is None:
            return None
        cls, options = cloudpickle.loads(blob)  # from the directory, inside the trust boundary
        return ActorDef(cls, options)

    return load


def rss_bytes() -> int:
    """Resident memory of this process (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ShardHost:
    """Hosts the identities of shard ``shard`` of co-location group ``group``."""

    def __init__(self, group: str, shard: int, namespace: str, shards: int | None = None) -> None:
        import ray

        quiet_logs()
        self._directory = ray.get_actor(DIRECTORY_NAME, namespace=ray_namespace(namespace))
        config: dict[str, Any] = get_ray(self._directory.config.remote())
        ctx = ray.get_runtime_context()
        node_id = ctx.get_node_id()
        self._io: IoLoop = io_loop()
        store = open_store(config["store"])
        self.engine: HostEngine = HostEngine(
            group=group,
            shard=shard,
            loop=self._io.loop,
            loop_thread=self._io.thread.ident or 0,
            load_type=_type_loader(self._directory),
            node_id=node_id,
            gpu_ids=tuple(int(g) for g in ray.get_gpu_ids()),
            store=store,
            max_live=_config.HOST_MAX_LIVE,
            cluster_id=config.get("cluster_id", ""),
            shards=shards,
        )
        epoch = self.engine.persistence.claim()
        tls = TlsConfig(**config["tls"]) if config.get("tls") else None
        bind = config["bind"]
        self._server, port = self._io.run(start_server(self.engine, config["token"], bind, tls))
        host = ray.util.get_node_ip_address() if bind in ("0.0.0.0", "::", "") else bind
        self.endpoint: str = f"{host}:{port}"
        metrics_port = serve_metrics(self.engine, bind, config["token"])
        self.metrics: str = f"http://{host}:{metrics_port}/metrics"
        self.runtime = StatefulRuntime(directory=self._directory, config=config, io=self._io, engine=self.engine)
        set_invoker(self.runtime, worker=True)
        if not get_ray(self._directory.host_ready.remote(group, shard, self.endpoint, node_id, epoch)):
            self.engine.fence()
        self.engine.start_background()

    def info(self) -> dict[str, Any]:
        """Endpoint, pid, node and GPUs of this host."""
        return {
            "endpoint": self.endpoint,
            "pid": os.getpid(),
            "node_id": self.engine.node_id,
            "gpu_ids": list(self.engine.gpu_ids),
            "group": self.engine.group,
            "shard": self.engine.shard,
            "epoch": self.engine.epoch,
            "live": self.engine.live_identities,
            "types": self.engine.type_names,
            "rss_bytes": rss_bytes(),
            "metrics": self.metrics,
        }

    def fence(self) -> None:
        """The shard moved to another host: stop serving it."""
        self._io.loop.call_soon_threadsafe(self.engine.fence)

    def stats(self) -> dict[str, int]:
        return dict(self.engine.counters)

    def shutdown(self) -> None:
        """Passivate every identity (on_deactivate runs, state is flushed)."""
        self._io.run(self.engine.close(), timeout=60)
