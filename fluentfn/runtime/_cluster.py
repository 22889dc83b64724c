"""``ff.init`` / ``ff.shutdown`` / ``ff.Cluster``: starting or joining a cluster."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Any

from .. import _config, _gc, _ref
from .._clusterconfig import MODES, ClusterConfig, Mode
from .._compare import ENV_FORCE_MODE, ENV_REPORT, write_record
from .._config import check_namespace, env_force_mode, env_report, env_store, env_tls, env_token, env_tracing
from .._context import CURRENT
from .._faasprofile import FaasProfile
from .._ioloop import io_loop
from .._logs import log_level, quiet_logs
from .._phases import split_counters
from .._tables import DIRECTORY_NAME, ray_namespace
from .._tracing import configure as configure_tracing
from .._tracing import otel_env
from .._tracing import shutdown as flush_spans
from .._turnlogs import install_log_context
from ..api import ActorType, known_types, on_new_type
from ..directory import Directory
from ..errors import FluentError
from ..state import check_opens, check_url, default_url
from ..transport._auth import new_token
from ..transport._tls import TlsConfig
from ._faas import FaasRuntime
from ._faasinvoke import faas_invoke, start_platform
from ._gateway import Runtime, runtime_for, serve_gateway
from ._hostactor import ShardHost
from ._raycall import get_directory, get_ray, leave_ray
from ._raystart import check_store_fits, join_ray, start_local_ray
from ._registry import registration
from ._stateful import StatefulRuntime

log = logging.getLogger("fluentfn")
_lock = threading.Lock()
_current: Cluster | None = None


class Cluster:
    """A handle on the cluster this process started or joined (a context manager)."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        directory: Any,
        gateway: str,
        mode: str,
        owns_ray: bool,
        server: Any,
        joined_ray: bool,
    ) -> None:
        self.runtime = runtime
        self.directory = directory
        self.gateway = gateway
        self.token: str = runtime.token
        self.mode = mode
        self._owns_ray = owns_ray
        self._joined_ray = joined_ray  # ff.init connected this process to a running Ray
        self._server = server
        self.closed = False
        self._started = time.monotonic()
        self._gc: _gc.Tuned | None = None  # what ff.init changed in this process's collector

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<fluentfn Cluster mode={self.mode} gateway={self.gateway}>"

    def stats(self, *, breakdown: bool = False) -> dict[str, Any]:
        """Cluster-wide counters (see ``ff.stats``)."""
        return _summed(self._raw_stats(), breakdown)

    def cost(self) -> dict[str, Any]:
        """The priced usage so far (see ``ff.cost``)."""
        from .. import _prices

        plain, _ = split_counters(self._raw_stats())
        return _prices.usage_cost(str(self.mode), plain, _prices.prices())

    def _raw_stats(self) -> dict[str, int]:
        """Every process's counters summed, phase timings (``_phases``) included."""
        totals: dict[str, int] = get_directory(lambda: self.directory.stats.remote(), _config.RESOLVE_TIMEOUT_S)
        for k, v in self.runtime.local_stats().items():
            totals[k] = totals.get(k, 0) + v
        return totals

    def stop_hosts(self, actor_type: ActorType | str) -> int:
        """Stop the hosts of a type's group (state is flushed; resources such as GPUs are
        freed). They start again on the next call. Returns how many were stopped."""
        name = self._type_name(actor_type)
        info = get_directory(lambda: self.directory.lookup.remote(name), _config.RESOLVE_TIMEOUT_S)
        stopped: int = get_directory(lambda: self.directory.stop_group.remote(info.group), _config.RESOLVE_TIMEOUT_S)
        self.runtime.forget_routes(info.group)
        return stopped

    def scale(self, actor_type: ActorType | str, hosts: int) -> dict[str, list[int]]:
        """Run ``hosts`` hosts for the type's group (0 stops them all; at most the type's
        ``max_hosts``), moving partitions live; returns once placement has settled, with
        the placement. A host that cannot be placed leaves the type as it was (FluentError
        saying why)."""
        name = self._type_name(actor_type)
        placed: dict[str, list[int]] = get_directory(
            lambda: self.directory.scale.remote(name, hosts), _config.RESOLVE_TIMEOUT_S
        )
        return placed

    def rebalance(self) -> dict[str, dict[str, list[int]]]:
        """Even out every group's partitions over its hosts and nodes; returns the placement
        of each group."""
        placed: dict[str, dict[str, list[int]]] = get_directory(
            lambda: self.directory.rebalance.remote(), _config.RESOLVE_TIMEOUT_S
        )
        return placed

    def placement(self, actor_type: ActorType | str) -> dict[str, list[int]]:
        """Host id -> the partitions it serves; {} when the type has no host."""
        name = self._type_name(actor_type)
        placed: dict[str, list[int]] = get_directory(
            lambda: self.directory.placement.remote(name), _config.RESOLVE_TIMEOUT_S
        )
        return placed

    def _type_name(self, actor_type: ActorType | str) -> str:
        if isinstance(actor_type, ActorType):
            return actor_type.name
        if isinstance(actor_type, str):
            return actor_type
        raise FluentError(f"expected an actor type or its name, not {type(actor_type).__name__}")

    def shutdown(self) -> None:
        """Passivate all identities, stop the gateway, and stop Ray if this process started it;
        disconnect from a running Ray that ``ff.init(address=...)`` joined (the cluster goes on)."""
        global _current
        if self.closed:
            return
        self.closed = True

        io = io_loop()
        report = env_report()
        if report:  # ``fluentfn compare``: what this cluster did, before its hosts go
            try:
                write_record(report, str(self.mode), time.monotonic() - self._started, self._raw_stats(), self.cost())
            except Exception as exc:
                log.warning("the %s record was not written: %s: %s", ENV_REPORT, type(exc).__name__, exc)
        try:
            if self._owns_ray:
                get_ray(self.directory.shutdown_hosts.remote(), timeout=60)
        except Exception as exc:  # shutting down anyway: Ray takes the hosts with it
            log.warning("hosts did not passivate cleanly on shutdown: %s: %s", type(exc).__name__, exc)
        try:
            io.run(self._server.stop(0.5), timeout=5)
            io.run(self.runtime.close(), timeout=5)
        except Exception as exc:
            log.warning("gateway or peer streams did not close cleanly: %s: %s", type(exc).__name__, exc)
        _ref.set_invoker(None)
        on_new_type(None)
        flush_spans()  # this process's spans are sent before it goes on (hosts flush at exit)
        with _lock:
            if _current is self:
                _current = None
        if self._gc is not None:
            self._gc.restore()
        if self._owns_ray or self._joined_ray:
            leave_ray(io)


def init(
    *,
    address: str | None = None,
    mode: str = "stateful",
    store: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    faas: Any = None,
    token: str | None = None,
    bind: str = "127.0.0.1",
    tls: TlsConfig | None = None,
    namespace: str = "default",
    tracing: str | None = None,
) -> Cluster:
    """Start an embedded local cluster (``address=None``) or join one (``"auto"``, ``"host:port"``).

    Returns an ``ff.Cluster``; use it as a context manager or call ``ff.shutdown()``.
    ``FLUENTFN_STORE`` and ``FLUENTFN_TOKEN`` stand in for ``store`` and ``token`` when
    those are not given, and ``RAY_ADDRESS`` (set by Ray job submission and KubeRay's
    RayJob) for ``address``: the same program runs embedded on a laptop and joins the
    cluster when submitted as a job, without code changes. ``tracing``: an OTLP/gRPC
    collector (``"http://host:4317"``; ``FLUENTFN_OTEL_ENDPOINT`` stands in) to which every
    process of the cluster exports a span per turn (needs ``fluentfn[otel]``).
    """
    global _current
    import ray

    if CURRENT.get() is not None or _ref.process_runtime_installed():
        raise FluentError(
            "ff.init() cannot be called inside an actor or function: it already runs in a cluster "
            "(call other actors through their refs)"
        )
    _check_kinds(address=address, token=token, tls=tls)
    if not isinstance(bind, str):
        raise FluentError(f"ff.init's bind takes an address of this machine as a str, not {type(bind).__name__}")
    check_namespace(namespace)
    store = store or env_store()
    if store is not None:
        check_url(store)  # before Ray starts: hosts that cannot open it would never start
    token = token or env_token()
    if tls is None and (files := env_tls()) is not None:
        cert, key, ca, server_name = files
        tls = TlsConfig(cert, key, ca, require_client_cert=True, server_name=server_name)
    address = address or os.environ.get("RAY_ADDRESS", "").strip() or None
    if mode not in MODES:
        raise FluentError(f"mode must be one of {MODES}, not {mode!r}")
    if faas is not None and not isinstance(faas, FaasProfile):
        raise FluentError("faas takes an ff.FaasProfile")
    forced = env_force_mode()
    if forced and forced != mode:  # ``fluentfn compare``: the program's other mode
        if forced not in MODES:
            raise FluentError(f"{ENV_FORCE_MODE} must be one of {MODES}, not {forced!r}")
        mode, faas = forced, None
    profile = faas or FaasProfile()
    tracing = tracing if tracing is not None else env_tracing()
    if tracing and not tracing.startswith(("http://", "https://")):
        raise FluentError(f"tracing takes an OTLP/gRPC endpoint such as 'http://127.0.0.1:4317', not {tracing!r}")
    configure_tracing(tracing, otel_env(), service="fluentfn-driver")  # ImportError without fluentfn[otel]
    install_log_context()
    with _lock:
        if _current is not None and not _current.closed:
            raise FluentError("fluentfn is already initialised in this process: call ff.shutdown() first")
    if address is None:  # hosts on this machine: a store they cannot open fails here, before Ray starts
        check_opens(store or default_url(namespace))
    quiet_logs()
    level = logging.getLevelName(log_level())
    owns_ray = joined_ray = False
    ns = ray_namespace(namespace)
    if not ray.is_initialized():
        if address is None:
            start_local_ray(num_cpus=num_cpus, num_gpus=num_gpus, namespace=ns, level=level)
            owns_ray = True
        else:
            join_ray(address, ns, level)
            joined_ray = True
    with ExitStack() as undo:  # a failure from here on leaves Ray as this call found it
        if owns_ray or joined_ray:
            undo.callback(_undoing, "leaving Ray", leave_ray, io_loop())
        mine = ClusterConfig(
            token=token or new_token(),
            store=store or default_url(namespace),
            namespace=namespace,
            cluster_id=f"{namespace}@{os.urandom(6).hex()}",
            mode=Mode(mode),
            bind=bind,
            tls=tls,
            store_explicit=store is not None,
            faas=profile,
            tracing=tracing,
            otel_env=tuple(sorted(otel_env().items())),
        )
        cluster = _start(undo, mine, address=address, token=token, ns=ns, owns_ray=owns_ray, joined_ray=joined_ray)
        undo.pop_all()
    with _lock:
        _current = cluster
    return cluster


def _check_kinds(**given: Any) -> None:
    """Refuse an argument of the wrong kind at once, with its name (before anything starts)."""
    kinds: dict[str, type] = {"address": str, "token": str, "tls": TlsConfig}
    for name, value in given.items():
        if value is not None and not isinstance(value, kinds[name]):
            raise FluentError(f"ff.init's {name} takes a {kinds[name].__name__} or None, not {type(value).__name__}")


def _undoing(what: str, step: Callable[..., object], *args: Any) -> None:
    """One step of undoing a failed ``ff.init``: a failure here is logged, and the caller
    gets the error that made ``ff.init`` fail."""
    try:
        step(*args)
    except Exception as exc:
        log.warning("a failed ff.init, %s: %s: %s", what, type(exc).__name__, exc)


def _start(
    undo: ExitStack,
    mine: ClusterConfig,
    *,
    address: str | None,
    token: str | None,
    ns: str,
    owns_ray: bool,
    joined_ray: bool,
) -> Cluster:
    """The cluster's directory, this process's runtime and gateway, on a connected Ray;
    ``mine``: the configuration of a cluster this call would make (a running cluster's own
    is used when joining one; ``token``: the one the caller gave, which must match it);
    ``undo`` is given what to take back should a later step fail."""
    import ray

    actor_cls: Any = ray.remote(Directory)
    directory = actor_cls.options(
        name=DIRECTORY_NAME,
        namespace=ns,
        get_if_exists=True,
        lifetime=None if owns_ray else "detached",
        # Ray restarts a directory that dies; it rebuilds its tables from the live hosts
        # (detached, named) while callers on cached routes carry on and the others wait.
        max_restarts=-1,
        max_task_retries=0,
        resources={"node:__internal_head__": 0.001},  # on the head node: it outlives workers
        num_cpus=0,
        max_concurrency=1000,
    ).remote(mine, ShardHost)
    config: ClusterConfig = get_ray(directory.config.remote())  # a running cluster's, when joining one
    fresh = config.cluster_id == mine.cluster_id and not owns_ray  # ours, just made: leave nothing behind
    if fresh:
        undo.callback(_undoing, "removing its directory", ray.kill, directory)
    if address is not None:
        nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        alive = len([node for node in nodes if node.get("Alive")])
        check_store_fits(config.store if config.store_explicit else None, config.store, alive)
    if token is not None and config.token != token:
        raise FluentError("the running cluster has a different token")
    io = io_loop()
    runtime: Runtime
    if not config.mode.has_hosts:
        platform = start_platform(config, faas_invoke, detached=not owns_ray)
        if fresh:
            undo.callback(_undoing, "removing its FaaS platform", ray.kill, platform)
        runtime = FaasRuntime(directory=directory, config=config, io=io)
        if owns_ray:
            io.submit(runtime.reminder_loop())
    else:
        runtime = StatefulRuntime(directory=directory, config=config, io=io)
    undo.callback(_undoing, "closing its peer streams", lambda: io.run(runtime.close(), timeout=5))
    server = io.run(serve_gateway(runtime, directory, config))
    port = server.port
    undo.callback(_undoing, "stopping its gateway", lambda: io.run(server.stop(0.5), timeout=5))
    host = "127.0.0.1" if config.bind in ("0.0.0.0", "::", "") else config.bind
    cluster = Cluster(
        runtime=runtime,
        directory=directory,
        gateway=f"{host}:{port}",
        mode=config.mode,
        owns_ray=owns_ray,
        server=server,
        joined_ray=joined_ray,
    )
    _ref.set_invoker(runtime)
    undo.callback(_undoing, "unsetting its invoker", _ref.set_invoker, None)
    register_types(directory, known_types())
    on_new_type(lambda at: register_types(directory, [at]))
    undo.callback(_undoing, "unsetting its type hook", on_new_type, None)
    cluster._gc = _gc.tune(user_process=True)  # after start-up: Ray's objects are frozen with the rest
    return cluster


def register_types(directory: Any, types: list[ActorType]) -> None:
    """Register types up front, so that code in other processes can call them by name."""
    if types:
        get_ray(directory.register_many.remote([registration(at) for at in types]))


def current() -> Cluster:
    """The cluster of this process; FluentError when there is none."""
    if _current is None or _current.closed:
        raise FluentError("fluentfn is not initialised in this process: call ff.init() first")
    return _current


def shutdown() -> None:
    """Shut down the current cluster handle (no-op when there is none)."""
    if _current is not None:
        _current.shutdown()


def stats(*, breakdown: bool = False) -> dict[str, Any]:
    """Cluster-wide counters: calls, direct_messages, local_calls, storage traffic, ...
    (integers, so two readings subtract). ``breakdown=True`` adds ``"breakdown"``: per
    "Type.method", where its calls' time went (queue, load, run, write, the caller's
    round trip and the network's share; p50/p99/mean in ms, see ``fluentfn._phases``)."""
    return current().stats(breakdown=breakdown)


def cost() -> dict[str, Any]:
    """What the work so far would cost at the price table of ``fluentfn bench paper``
    (``fluentfn._prices``; override with ``FLUENTFN_PRICES``): ``usd``, ``items_usd``
    (stateful: hosts, GPUs, storage; FaaS: requests, compute, storage), ``used`` (the
    host- and GPU-seconds, or invocations and GB-seconds, and the storage traffic)."""
    return current().cost()


def _summed(raw: dict[str, int], breakdown: bool) -> dict[str, Any]:
    from .._phases import breakdown as phases_of
    from .._stats import COUNTERS

    plain, phases = split_counters(raw)
    totals: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    totals.update(plain)
    if breakdown:
        totals["breakdown"] = phases_of(phases)
    return totals


def _connect_worker() -> _ref.Invoker | None:
    """Connect a Ray worker process (a function task) to its namespace's cluster."""
    import ray

    if not ray.is_initialized():
        return None
    ns = ray.get_runtime_context().namespace
    try:
        directory = ray.get_actor(DIRECTORY_NAME, namespace=ns)
    except ValueError:
        return None
    return runtime_for(directory, get_ray(directory.config.remote()))


# ``ActorRef`` calls inside Ray tasks (function runs) connect on first use. Every worker
# that runs fluentfn code has imported this module (the package imports it).
_ref.set_lazy_connect(_connect_worker)
