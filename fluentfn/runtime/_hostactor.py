"""ShardHost: a long-lived Ray actor that serves some partitions of a group.

It wires the partitions' engines, a gRPC server and an outgoing runtime together in its
process. Ray restarts it when it dies; the new instance announces itself to the
directory, takes back its partitions and claims their next epochs.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import time
from typing import Any

import cloudpickle

from .. import _config, _gc
from .._actordef import ActorDef
from .._clusterconfig import ClusterConfig
from .._ioloop import IoLoop, io_loop
from .._logs import quiet_logs
from .._priority import process_level, raise_thread, switch_interval, thread_level
from .._ref import set_invoker
from .._tables import DIRECTORY_NAME, ray_namespace
from .._tracing import configure as configure_tracing
from .._tracing import shutdown as flush_spans
from .._turnlogs import install_log_context
from ..host._activations import Handoff
from ..host._engine import HostEngine
from ..host._metrics import serve_metrics
from ..host._partitions import PartitionSet
from ..host._types import TypeLoader
from ..host._workers import Workers
from ..lab._nemesis import install as install_faults
from ..state import Store, has_reminders, open_store
from ..transport._control import register_control
from ..transport._server import quiesce, start_server
from ._moves import MoveService
from ._raycall import await_directory, get_directory
from ._stateful import StatefulRuntime


def _type_loader(directory: Any, blobs: dict[str, bytes]) -> TypeLoader:
    """Loads types from the directory, keeping each one's registration blob in ``blobs``
    (a restarted directory rebuilds its registry from what the live hosts hold)."""

    # A closure, not a method: an async method would make Ray treat the host as an async actor.
    async def load(name: str) -> ActorDef | None:
        blob = await await_directory(lambda: directory.type_blob.remote(name), _config.RESOLVE_TIMEOUT_S)
        if blob is None:
            return None
        cls, options = cloudpickle.loads(blob)  # from the directory, inside the trust boundary
        blobs[name] = blob
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
    """One host of co-location group ``group``: serves the partitions the directory gives it."""

    def __init__(self, group: str, host_id: str, namespace: str, partitions: int) -> None:
        import ray

        quiet_logs()
        _gc.tune(user_process=False)  # with default thresholds, activations spend a third of the time collecting
        self._directory = ray.get_actor(DIRECTORY_NAME, namespace=ray_namespace(namespace))
        config: ClusterConfig = get_directory(lambda: self._directory.config.remote(), _config.RESOLVE_TIMEOUT_S)
        configure_tracing(config.tracing, dict(config.otel_env), service=f"fluentfn-host-{group}")
        install_log_context()
        ctx = ray.get_runtime_context()
        node_id = ctx.get_node_id()
        self._io: IoLoop = io_loop()
        # The loop ahead of the turns (``_priority``): raised if allowed, else turns lowered.
        raised = raise_thread(self._io.native_id, _config.TURN_NICE)
        turn_nice = 0 if raised else _config.TURN_NICE
        loop_level = thread_level(self._io.native_id)
        self._priority = {"loop": loop_level, "turns": min(19, process_level() + turn_nice)}  # nice values
        self._switch_ms = switch_interval(_config.SWITCH_INTERVAL_MS)  # a waking loop waits less for the GIL
        self._group: str = group
        self._incarnation: str = os.urandom(8).hex()  # this process: a restarted host is a new one
        self._started = time.monotonic()
        self._cluster_id: str = config.cluster_id
        self._store: Store = open_store(config.store)
        workers = Workers(_config.SYNC_WORKERS, f"fluentfn-{group}-{host_id}", turn_nice)
        self._blobs: dict[str, bytes] = {}
        load_type = _type_loader(self._directory, self._blobs)
        gpu_ids = tuple(int(g) for g in ray.get_gpu_ids())
        self._gpu_ids: tuple[int, ...] = gpu_ids

        def make(partition: int, epoch: int) -> HostEngine:
            engine = HostEngine(
                group=group,
                shard=partition,
                loop=self._io.loop,
                loop_thread=self._io.thread.ident or 0,
                load_type=load_type,
                node_id=node_id,
                gpu_ids=gpu_ids,
                store=self._store,
                max_live=-(-_config.HOST_MAX_LIVE // partitions),  # the host's cap, shared by its partitions
                cluster_id=self._cluster_id,
                shards=partitions,
                workers=workers,
            )
            engine.persistence.epoch = epoch
            return engine

        self.parts: PartitionSet = PartitionSet(
            group=group, host_id=host_id, partitions=partitions, node_id=node_id, make=make
        )
        tls = config.tls
        bind = config.bind
        self._moves = MoveService(self.parts, self.adopt)
        register = functools.partial(register_control, host=self._moves)
        self._server, port = self._io.run(start_server(self.parts, config.token, bind, tls, more=[register]))
        host = ray.util.get_node_ip_address() if bind in ("0.0.0.0", "::", "") else bind  # type: ignore[no-untyped-call]
        self.endpoint: str = f"{host}:{port}"
        metrics_port = serve_metrics(self.parts, bind, config.token, tls)
        self.metrics: str = f"{'https' if tls else 'http'}://{host}:{metrics_port}/metrics"
        self._upkeep: concurrent.futures.Future[None] = self._io.submit(self.parts.upkeep(self._store))
        self.runtime = StatefulRuntime(
            directory=self._directory, config=config, io=self._io, local=self.parts, endpoint=self.endpoint
        )
        set_invoker(self.runtime, worker=True)
        self.parts.reroute = self._reroute
        # A restarted host takes back the partitions it had; a new one gets some by moves.
        patience = _config.RESOLVE_TIMEOUT_S  # the directory may be restarting: wait for it
        mine: list[int] = get_directory(
            lambda: self._directory.host_ready.remote(group, host_id, self.endpoint, node_id), patience
        )
        faults = get_directory(lambda: self._directory.faults.remote(), patience)
        if faults is not None:  # an experiment is running: this host's messages get its faults too
            install_faults(faults)
        epochs = self.adopt(mine, {})
        self._io.loop.call_soon_threadsafe(self._moves.started)
        get_directory(lambda: self._directory.claimed.remote(group, host_id, epochs), patience)

    def _reroute(self, call: Any) -> None:
        """A tell accepted here whose partition moved away: this host's router sends it on."""
        self._io.loop.call_soon_threadsafe(self.runtime.forward_soon, call, lambda _: None)

    def adopt(self, partitions: list[int], handoffs: dict[int, Handoff], *, nowait: bool = False) -> dict[int, int]:
        """Serve ``partitions``: claim each one's next epoch in the store (the previous
        owner can no longer write) and start serving. Returns the epochs. (At the start;
        the directory's moves come over gRPC: ``_moves.MoveService``.) ``nowait`` (a
        move's one partition, on the host's event loop): WouldBlock, nothing claimed,
        unless the store takes the claim at once; the partition's engine then starts at
        once (a moved partition's callers are waiting for it), which also fires its
        reminders, rather than after a read of whether it has any."""
        epochs: dict[int, int] = {}
        for p in partitions:
            epoch = self._store.claim_shard(self._group, p, self._cluster_id, nowait=nowait)
            pending = nowait or has_reminders(self._store, self._group, p)
            self.parts.adopt(p, epoch, handoffs.get(p), start=pending)
            epochs[p] = epoch
        return epochs

    def set_faults(self, faults: Any) -> None:
        """The lab's faults, from now on, on the messages this host's turns send."""
        install_faults(faults)

    def load(self) -> int:
        """Turns running or queued here (the autoscaler's sample)."""
        return self.parts.load

    def info(self) -> dict[str, Any]:
        """Endpoint, pid, node, GPUs and partitions of this host."""
        return {
            "endpoint": self.endpoint,
            "pid": os.getpid(),
            "node_id": self.parts.node_id,
            "gpu_ids": list(self._gpu_ids),
            "group": self._group,
            "host_id": self.parts.host_id,
            "shard": min(self.parts.owned_partitions(), default=0),
            "partitions": self.parts.owned_partitions(),
            "epoch": self.parts.epoch,
            "live": self.parts.live_identities,
            "types": self.parts.type_names,
            "rss_bytes": rss_bytes(),
            "metrics": self.metrics,
            "load": self.parts.load,
            "priority": dict(self._priority),  # nice values of its event loop and its turn threads
            "switch_interval_ms": self._switch_ms,  # how long a thread may keep the GIL while another waits
        }

    def stats(self) -> dict[str, int]:
        return self._totals()

    def _totals(self) -> dict[str, int]:
        """This process's counters: its partitions' and its router's."""
        totals = self.parts.totals()
        totals["tells_undelivered"] = totals.get("tells_undelivered", 0) + self.runtime.undelivered
        return totals

    def recovery_info(self) -> dict[str, Any]:
        """What a restarted directory rebuilds its tables from: this host's group, id,
        endpoint and node, the partitions it owns (with their epochs), and the
        registrations of the types it has loaded."""
        types = []
        for name, blob in list(self._blobs.items()):
            definition = ActorDef(*cloudpickle.loads(blob))  # this host's own copy
            types.append((name, blob, definition.options, frozenset(definition.method_names)))
        return {
            "group": self._group,
            "host_id": self.parts.host_id,
            "endpoint": self.endpoint,
            "node_id": self.parts.node_id,
            "owned": dict(self.parts.owned),
            "types": types,
        }

    def report(self) -> tuple[str, dict[str, int]]:
        """(this process's incarnation, its counters): the directory's ledger keeps what
        an incarnation counted after it is gone."""
        totals = self._totals()
        up_ms = int((time.monotonic() - self._started) * 1000)
        totals["host_ms"] = totals.get("host_ms", 0) + up_ms
        totals["gpu_ms"] = totals.get("gpu_ms", 0) + up_ms * len(self._gpu_ids)
        return self._incarnation, totals

    def quiesce(self, timeout_s: float) -> None:
        """Before this host is stopped: the replies it produced reach their callers, then
        its gRPC server stops (see ``transport._server.quiesce``)."""
        self._io.run(quiesce(self._server, timeout_s), timeout=timeout_s + 10)

    def shutdown(self) -> None:
        """Passivate every identity (on_deactivate runs, state is flushed)."""
        self._upkeep.cancel()
        self._moves.close()
        self._io.run(self.parts.close(), timeout=60)
        flush_spans()
