"""fluentfn: addressable, stateful, GPU-schedulable functions on Ray.

See ``README.md`` for the concepts; the public names are exactly those in ``__all__``.
"""

import os as _os

# gRPC reads its log level when it is first imported: keep it quiet unless asked.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from ._context import Context, context  # noqa: E402
from ._faasprofile import FaasProfile  # noqa: E402
from ._ref import ActorRef, Future, MethodProxy, ref  # noqa: E402
from .api import ActorType, FunctionType, actor, function  # noqa: E402
from .client import Client  # noqa: E402
from .errors import (  # noqa: E402
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
from .runtime._cluster import Cluster, init, shutdown, stats  # noqa: E402
from .transport._tls import TlsConfig  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ActorError",
    "ActorRef",
    "ActorType",
    "CallTimeout",
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
    "ref",
    "shutdown",
    "stats",
]
