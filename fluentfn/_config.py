"""Process-wide limits and defaults, read once from the environment."""

from __future__ import annotations

import os
from pathlib import Path


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


MAX_MESSAGE_BYTES = _int_env("FLUENTFN_MAX_MESSAGE_BYTES", 16 * 1024 * 1024)
"""Largest encoded argument list or result accepted on the wire."""

MAX_KEY_BYTES = 1024
"""Largest identity key, in UTF-8 bytes."""

MAX_NAME_BYTES = 256
"""Largest type or method name."""

DEFAULT_CALL_TIMEOUT_S = _float_env("FLUENTFN_CALL_TIMEOUT_S", 300.0)
"""Deadline given to calls that do not set one."""

MAX_CALL_TIMEOUT_S = 86_400.0
"""Longest timeout a call may ask for (a day); longer or non-finite ones are refused."""

RETRY_ATTEMPTS = _int_env("FLUENTFN_RETRY_ATTEMPTS", 8)
"""How often a caller re-resolves and retries a call whose host is unavailable."""

MAILBOX_LIMIT = _int_env("FLUENTFN_MAILBOX_LIMIT", 10_000)
"""Queued turns per identity beyond which callers get Overloaded."""

HOST_INFLIGHT_LIMIT = _int_env("FLUENTFN_HOST_INFLIGHT_LIMIT", 100_000)
"""Calls admitted or queued per host beyond which callers get Overloaded."""

HOST_MAX_LIVE = _int_env("FLUENTFN_HOST_MAX_LIVE", 2_000_000)
"""Live identities per host beyond which the least recently used idle ones are passivated."""

SYNC_WORKERS = _int_env("FLUENTFN_SYNC_WORKERS", 64)
"""Threads per host that run synchronous methods (a blocked nested call holds one)."""


def home(namespace: str) -> Path:
    """Where fluentfn keeps a namespace's files (FLUENTFN_HOME, default ~/.fluentfn/<ns>)."""
    base = os.environ.get("FLUENTFN_HOME")
    root = Path(base) if base else Path.home() / ".fluentfn"
    return root / namespace
