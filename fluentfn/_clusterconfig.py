"""The cluster's configuration: typed, frozen, made once by ``ff.init`` and handed to
every process of the cluster through the directory."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ._faasprofile import FaasProfile
from .transport._tls import TlsConfig


class Mode(enum.StrEnum):
    """How a cluster runs the application's code (a ``str`` too: ``Mode.FAAS == "faas"``)."""

    STATEFUL = "stateful"  # long-lived hosts keep identities in memory and message directly
    FAAS = "faas"  # the baseline: every call a stateless invocation, data through storage

    @property
    def has_hosts(self) -> bool:
        """Identities live in hosts (stateful); otherwise the platform runs invocations."""
        return self is Mode.STATEFUL


MODES = tuple(m.value for m in Mode)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """What every process of a cluster needs to know about it."""

    token: str
    store: str
    namespace: str
    # Recorded with each partition claim, so a cluster fenced out by another one on the
    # same namespace and store can say so (joiners get the running cluster's id).
    cluster_id: str
    mode: Mode = Mode.STATEFUL
    bind: str = "127.0.0.1"
    tls: TlsConfig | None = None
    store_explicit: bool = False  # the store was chosen (not the node-local default)
    faas: FaasProfile = field(default_factory=FaasProfile)
    tracing: str = ""  # an OTLP/gRPC endpoint every process exports its spans to ("" = off)
    otel_env: tuple[tuple[str, str], ...] = ()  # the driver's OTEL_* variables, for every process
