"""``ff.init``: a real cluster (stateful or FaaS: ``runtime._cluster``) or a simulated one
(``mode="sim"``: ``sim``), the one place that knows both."""

from __future__ import annotations

from typing import Any, Literal, overload

from .errors import FluentError
from .runtime._cluster import Cluster
from .runtime._cluster import init as init_cluster
from .sim import Simulation, start
from .transport._tls import TlsConfig


@overload
def init(*, mode: Literal["sim"], seed: int = 0) -> Simulation: ...


@overload
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
) -> Cluster: ...


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
    seed: int = 0,
    tracing: str | None = None,
) -> Cluster:
    """Start an embedded local cluster (``address=None``) or join one (``"auto"``,
    ``"host:port"``): see ``runtime._cluster.init``. ``mode="sim"``: a simulated cluster
    in this process instead (a ``Simulation``: no Ray, no sockets, virtual time), every
    choice from ``seed``; the other options are a real cluster's (a namespace is ignored)."""
    if mode == "sim":
        given = {"address": address, "store": store, "num_cpus": num_cpus, "num_gpus": num_gpus, "faas": faas,
                 "token": token, "tls": tls, "tracing": tracing}  # fmt: skip
        if any(v is not None for v in given.values()):
            named = ", ".join(k for k, v in given.items() if v is not None)
            raise FluentError(f"sim mode runs in this process: it takes a seed, not {named}")
        return start(seed)
    cluster: Cluster = init_cluster(address=address, mode=mode, store=store, num_cpus=num_cpus, num_gpus=num_gpus,
                                    faas=faas, token=token, bind=bind, tls=tls, namespace=namespace,
                                    tracing=tracing)  # fmt: skip
    return cluster
