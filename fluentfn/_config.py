"""Every ``FLUENTFN_*`` setting, read in this one module (the README's table lists ``SETTINGS``).

Limits are read once, at import; the others (store, token, home, log level, prices) are
read when used, so a process can change them between clusters. A malformed value is a
``FluentError`` naming the variable, never a bare ``ValueError`` from deep inside.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .errors import FluentError

SETTINGS: dict[str, str] = {
    "FLUENTFN_STORE": "store URL for `ff.init()` when `store=` is not given (default: SQLite under FLUENTFN_HOME)",
    "FLUENTFN_TOKEN": "cluster token for `ff.init()` when `token=` is not given (default: a new random token)",
    "FLUENTFN_HOME": "where the SQLite default lives: `<home>/<namespace>/` (default `~/.fluentfn`)",
    "FLUENTFN_LOG": "log level of fluentfn, Ray and gRPC (default ERROR: quiet)",
    "FLUENTFN_CALL_TIMEOUT_S": "deadline of calls that set none (default 300)",
    "FLUENTFN_RETRY_ATTEMPTS": "retries of a call whose host is unreachable (default 8; moves are waited out)",
    "FLUENTFN_MAX_MESSAGE_BYTES": "largest encoded arguments or result on the wire (default 16 MiB)",
    "FLUENTFN_MAILBOX_LIMIT": "queued turns per identity before `Overloaded` (default 10,000)",
    "FLUENTFN_HOST_INFLIGHT_LIMIT": "admitted or queued calls per host before `Overloaded` (default 100,000)",
    "FLUENTFN_HOST_MAX_LIVE": "live identities per host before idle ones are passivated (default 2,000,000; each "
    "partition gets an even share)",
    "FLUENTFN_SYNC_WORKERS": "threads per host that run sync methods (default 64)",
    "FLUENTFN_TURN_NICE": "how far below its host's event loop a turn thread is scheduled, in nice steps "
    '(default 5; 0: level; Linux only, see "Where a turn runs")',
    "FLUENTFN_SWITCH_INTERVAL_MS": "how long one thread of a host may keep Python's GIL while another waits for "
    "it, in ms (`sys.setswitchinterval`; default 0.5, Python's own is 5; 0: Python's)",
    "FLUENTFN_REPLY_TTL_S": "how long recorded replies are kept for deduplicating retries (default 3600)",
    "FLUENTFN_REPLY_HOLD_S": 'how long an identity with persist="interval" or "never" keeps each reply in '
    "memory for a re-sent request (default 10)",
    "FLUENTFN_SQLITE_SYNC": "SQLite `synchronous` pragma: NORMAL (default; survives process crashes) or FULL "
    "(power loss)",
    "FLUENTFN_RESOLVE_TIMEOUT_S": "how long a caller waits for a host to start (default 120)",
    "FLUENTFN_PLACEMENT_WAIT_S": "how long to wait for a node that fits an actor type's or a function's "
    "resources (default 10)",
    "FLUENTFN_DRAIN_S": "on a partition move, how long running turns get to finish (default 10)",
    "FLUENTFN_QUIESCE_S": "on a partition move, how long it goes on serving, waiting for a moment no turn "
    "runs (default 0.1)",
    "FLUENTFN_HOST_START_S": "how long a new host of a scaled type may take to start before the scale is "
    "undone (default 60)",
    "FLUENTFN_AUTOSCALE_HOST_CPUS": "CPUs each host of an autoscaled type asks Ray for when the type sets no "
    "`num_cpus` (default 0.5), so Ray's autoscaler sees the demand",
    "FLUENTFN_AUTOSCALE_TICK_S": "how often the directory samples load for autoscaling (default 0.5)",
    "FLUENTFN_UVLOOP": "0 turns uvloop off (default on when installed)",
    "FLUENTFN_GC": "0 leaves the collector of a process that calls `ff.init()` as it is (default: tuned while the "
    'cluster is up, see "Garbage collection")',
    "FLUENTFN_LOOP_TURNS": "0 runs every sync turn on a worker thread (default: methods that make no calls run "
    'on the host\'s event loop, see "Where a turn runs")',
    "FLUENTFN_THREAD_STREAMS": "0 sends every blocking call through the process's event loop (default: a thread "
    'blocked on a call has a stream of its own to the host, see "How a call travels")',
    "FLUENTFN_GATEWAY_TUNNEL": "0 runs gateways without their tunnel, so clients that reach only a gateway have it "
    'forward every call (default: a tunnel beside each gateway, see "Through the gateway")',
    "FLUENTFN_PRICES": "price overrides for `fluentfn bench paper` costs and `ff.cost()`: a JSON object or a "
    "JSON file's path",
    "FLUENTFN_OTEL_ENDPOINT": "OTLP/gRPC collector every process exports its turn spans to, when "
    "`ff.init(tracing=)` is not given (default: tracing off)",
    "FLUENTFN_REPORT": "a folder where each cluster writes a record of its usage at shutdown (what "
    "`fluentfn compare` reads)",
    "FLUENTFN_FORCE_MODE": "`stateful` or `faas`: the mode every `ff.init()` uses whatever it asks (how "
    "`fluentfn compare` runs the other mode)",
    "FLUENTFN_TLS_CERT": "with FLUENTFN_TLS_KEY and FLUENTFN_TLS_CA: mutual TLS for `ff.init()` when `tls=` is not "
    "given (PEM files)",
    "FLUENTFN_TLS_KEY": "the private key of FLUENTFN_TLS_CERT",
    "FLUENTFN_TLS_CA": "the CA that signed every endpoint's certificate",
    "FLUENTFN_TLS_SERVER_NAME": "the name in every endpoint's certificate, checked instead of the address dialled",
}


def _raw(name: str) -> str:
    assert name in SETTINGS, name
    return os.environ.get(name, "").strip()


def _number(
    name: str, default: float, *, integer: bool = False, minimum: float = 0.0, maximum: float = math.inf
) -> float:
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise FluentError(f"{name}={raw!r} is not {kind}") from None
    if not math.isfinite(value) or value < minimum or value > maximum:
        top = f" and at most {maximum:g}" if math.isfinite(maximum) else ""
        raise FluentError(f"{name}={raw!r} must be finite and at least {minimum:g}{top}")
    return value


def _int(name: str, default: int, minimum: int = 1) -> int:
    return int(_number(name, default, integer=True, minimum=minimum))


MAX_MESSAGE_BYTES = _int("FLUENTFN_MAX_MESSAGE_BYTES", 16 * 1024 * 1024)
"""Largest encoded argument list or result accepted on the wire."""

MAX_KEY_BYTES = 1024
"""Largest identity key, in UTF-8 bytes."""

MAX_NAME_BYTES = 256
"""Largest type or method name."""

MAX_CALL_TIMEOUT_S = 86_400.0
"""Longest timeout a call may ask for (a day); longer or non-finite ones are refused."""

DEFAULT_CALL_TIMEOUT_S = _number("FLUENTFN_CALL_TIMEOUT_S", 300.0, minimum=0.001, maximum=MAX_CALL_TIMEOUT_S)
"""Deadline given to calls that do not set one."""

RETRY_ATTEMPTS = _int("FLUENTFN_RETRY_ATTEMPTS", 8, minimum=0)
"""How often a caller re-resolves and retries a call whose host is unavailable."""

MAILBOX_LIMIT = _int("FLUENTFN_MAILBOX_LIMIT", 10_000)
"""Queued turns per identity beyond which callers get Overloaded."""

HOST_INFLIGHT_LIMIT = _int("FLUENTFN_HOST_INFLIGHT_LIMIT", 100_000)
"""Calls admitted or queued per host beyond which callers get Overloaded."""

HOST_MAX_LIVE = _int("FLUENTFN_HOST_MAX_LIVE", 2_000_000)
"""Live identities per host beyond which the least recently used idle ones are passivated."""

SYNC_WORKERS = _int("FLUENTFN_SYNC_WORKERS", 64)
"""Threads per host that run synchronous methods (a blocked nested call holds one)."""

TURN_NICE = int(_number("FLUENTFN_TURN_NICE", 5, integer=True, minimum=0, maximum=19))
"""Nice steps between a host's event loop (with the gRPC and control threads it starts)
and its worker threads (sync turns, store work): ``_priority.py``."""

SWITCH_INTERVAL_MS = _number("FLUENTFN_SWITCH_INTERVAL_MS", 0.5, maximum=1000.0)
"""How long one thread of a host may keep the GIL while another waits (``_priority.py``);
0 leaves Python's own (5 ms)."""

REPLY_TTL_S = _number("FLUENTFN_REPLY_TTL_S", 3600.0, minimum=1.0)
"""How long a recorded reply is kept (a retry within it is answered, not re-run)."""

REPLY_HOLD_S = _number("FLUENTFN_REPLY_HOLD_S", 10.0)
"""How long an identity that records no replies in the store (``persist="interval"`` or
``"never"``) keeps each one in memory for a re-sent request, however many turns follow."""

RESOLVE_TIMEOUT_S = _number("FLUENTFN_RESOLVE_TIMEOUT_S", 120.0, minimum=0.1)
"""How long a caller waits for a shard's host to start."""

PLACEMENT_WAIT_S = _number("FLUENTFN_PLACEMENT_WAIT_S", 10.0)
"""How long the directory waits for a node that fits a type's resources."""

DRAIN_S = _number("FLUENTFN_DRAIN_S", 10.0)
"""On a partition move: how long the old host lets running turns finish."""

QUIESCE_S = _number("FLUENTFN_QUIESCE_S", 0.1)
"""On a partition move: how long the old host goes on serving, waiting for a moment no
turn of the partition runs (then it stops admitting, with nothing left to drain)."""

HOST_START_S = _number("FLUENTFN_HOST_START_S", 60.0, minimum=0.1)
"""How long a new host may take to start (and be placed by Ray) before a scale-up is undone."""

AUTOSCALE_HOST_CPUS = _number("FLUENTFN_AUTOSCALE_HOST_CPUS", 0.5)
"""CPUs a host of an autoscaled type reserves when the type gives no ``num_cpus``."""

AUTOSCALE_TICK_S = _number("FLUENTFN_AUTOSCALE_TICK_S", 0.5, minimum=0.01)
"""How often load is sampled for autoscaling."""


def sqlite_sync() -> str:
    """SQLite's ``synchronous`` pragma for store files."""
    value = _raw("FLUENTFN_SQLITE_SYNC").upper() or "NORMAL"
    if value not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise FluentError(f"FLUENTFN_SQLITE_SYNC={value!r} must be NORMAL, FULL, EXTRA or OFF")
    return value


def uvloop_wanted() -> bool:
    return _raw("FLUENTFN_UVLOOP") != "0"


def loop_turns_wanted() -> bool:
    """Whether hosts may run turns of call-free sync methods on their event loop."""
    return _raw("FLUENTFN_LOOP_TURNS") != "0"


def thread_streams_wanted() -> bool:
    """Whether a thread blocked on a call may use a stream of its own (``ThreadStream``)."""
    return _raw("FLUENTFN_THREAD_STREAMS") != "0"


def gateway_tunnel_wanted() -> bool:
    """Whether a gateway runs its tunnel (``transport/_tunnel.py``)."""
    return _raw("FLUENTFN_GATEWAY_TUNNEL") != "0"


def gc_tuning_wanted() -> bool:
    """Whether ``ff.init`` may tune the calling process's cyclic collector (``_gc.tune``)."""
    return _raw("FLUENTFN_GC") != "0"


def log_level() -> str:
    """FLUENTFN_LOG, or ERROR: quiet by default."""
    return _raw("FLUENTFN_LOG").upper() or "ERROR"


def env_store() -> str | None:
    return _raw("FLUENTFN_STORE") or None


def env_token() -> str | None:
    return _raw("FLUENTFN_TOKEN") or None


def env_tls() -> tuple[str, str, str, str | None] | None:
    """(cert, key, CA, server name) from FLUENTFN_TLS_*, or None when unset; a partial set
    is a FluentError (half-configured TLS must not silently become plain text)."""
    files = [_raw(f"FLUENTFN_TLS_{part}") for part in ("CERT", "KEY", "CA")]
    if not any(files):
        return None
    if not all(files):
        raise FluentError("FLUENTFN_TLS_CERT, FLUENTFN_TLS_KEY and FLUENTFN_TLS_CA must be set together")
    return files[0], files[1], files[2], _raw("FLUENTFN_TLS_SERVER_NAME") or None


def env_prices() -> str:
    return _raw("FLUENTFN_PRICES")


def env_tracing() -> str:
    """An OTLP/gRPC endpoint for ``ff.init()`` when ``tracing=`` is not given ("" = off)."""
    return _raw("FLUENTFN_OTEL_ENDPOINT")


def env_report() -> str:
    """A folder where each cluster writes its record at shutdown (``fluentfn compare``)."""
    return _raw("FLUENTFN_REPORT")


def env_force_mode() -> str:
    """The mode every ``ff.init()`` uses whatever it asks (``fluentfn compare``)."""
    return _raw("FLUENTFN_FORCE_MODE")


_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_namespace(namespace: object) -> str:
    """``namespace`` if it is a namespace's name: it names a folder (``home``) and Ray's
    namespace, so nothing that could step out of FLUENTFN_HOME or mean two things."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise FluentError(
            "a namespace is 1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit; "
            f"not {namespace!r:.80}"
        )
    return namespace


def home(namespace: str) -> Path:
    """Where fluentfn keeps a namespace's files (FLUENTFN_HOME, default ~/.fluentfn/<ns>)."""
    base = _raw("FLUENTFN_HOME")
    root = Path(base) if base else Path.home() / ".fluentfn"
    return root / check_namespace(namespace)
