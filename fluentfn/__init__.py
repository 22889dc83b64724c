"""fluentfn: addressable, stateful, GPU-schedulable functions on Ray.

See ``README.md`` for the concepts; the public names are exactly those in ``__all__``.
"""

import os as _os

# gRPC reads its log level when it is first imported: keep it quiet unless asked.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
# ... and its experiments. With its EventEngine, every message crosses three threads of
# gRPC's own before Python sees it (I/O thread, completion-queue poller, event loop);
# without it, the poller reads the socket itself: a call's round trip takes 0.6x as long
# on this project's machines. Processes started after this import (a local Ray cluster's
# hosts) inherit the choice. A GRPC_EXPERIMENTS of the user's own, even empty, wins.
_os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener")

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
