"""fluentfn: addressable, stateful, GPU-schedulable functions on Ray.

See ``README.md`` for the concepts; the public names are exactly those in ``__all__``.
"""

import os as _os

# gRPC reads its log level when it is first imported: keep it quiet unless asked.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from ._actordef import readonly
from ._context import Context, context
from ._faasprofile import FaasProfile
from ._ref import ActorRef, Future, MethodProxy, ref
from .api import ActorType, FunctionType, actor, function
from .client import AsyncClient, Client
from .elastic._autoscale import Autoscale
from .errors import (
    ActorError,
    CallTimeout,
    FluentError,
    FunctionTimeout,
    InvalidRequest,
    NotFound,
    Overloaded,
    Unauthenticated,
    Unavailable,
)
from .runtime._cluster import Cluster, init, shutdown, stats
from .transport._tls import TlsConfig

__version__ = "0.1.0"

__all__ = [
    "ActorError",
    "ActorRef",
    "ActorType",
    "Autoscale",
    "CallTimeout",
    "AsyncClient",
    "Client",
    "Cluster",
    "FaasProfile",
    "Context",
    "FluentError",
    "FunctionTimeout",
    "FunctionType",
    "Future",
    "InvalidRequest",
    "MethodProxy",
    "NotFound",
    "Overloaded",
    "TlsConfig",
    "Unauthenticated",
    "Unavailable",
    "__version__",
    "actor",
    "context",
    "function",
    "init",
    "readonly",
    "ref",
    "shutdown",
    "stats",
]
