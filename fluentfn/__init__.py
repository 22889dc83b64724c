"""fluentfn: addressable, stateful, GPU-schedulable functions on Ray.

See ``README.md`` for the concepts; the public names are exactly those in ``__all__``.
"""

import os as _os
import sys as _sys

# gRPC reads its log level when it is first imported: keep it quiet unless asked.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
# ... and its experiments, once, at import. With its EventEngine, every message crosses
# three threads of gRPC's own before Python sees it (I/O thread, completion-queue poller,
# event loop); without it, the poller reads the socket itself: a call's round trip takes
# 0.6x as long on this project's machines. This process only: the variable is removed
# again once grpc has read it, so that processes started later (Ray's own daemons) keep
# gRPC's defaults; hosts are Ray workers that import fluentfn before grpc, and choose the
# same way. A GRPC_EXPERIMENTS of the user's own, even empty, wins.
if "GRPC_EXPERIMENTS" not in _os.environ and "grpc" not in _sys.modules:
    _os.environ["GRPC_EXPERIMENTS"] = "-event_engine_client,-event_engine_listener"
    _poll = "GRPC_POLL_STRATEGY" not in _os.environ
    if _poll:
        _os.environ["GRPC_POLL_STRATEGY"] = "poll"
    import grpc as _grpc  # noqa: F401  (reads its experiments now)

    del _os.environ["GRPC_EXPERIMENTS"]
    if _poll:
        del _os.environ["GRPC_POLL_STRATEGY"]

from ._actordef import readonly
from ._context import Context, context
from ._faasprofile import FaasProfile
from ._init import init
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
from .runtime._cluster import Cluster, cost, shutdown, stats
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
    "cost",
]
