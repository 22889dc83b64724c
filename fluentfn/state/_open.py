"""Opening a store by URL (the backends import the interface, never the other way)."""

from __future__ import annotations

from pathlib import Path

from .. import _config
from ..errors import FluentError
from ._store import Store


def default_url(namespace: str) -> str:
    """The embedded default: a SQLite file under FLUENTFN_HOME."""
    path = _config.home(namespace) / "state.db"
    return f"sqlite:///{path}"


def open_store(url: str) -> Store:
    """Open ``sqlite:///path`` or ``redis://host:port/db``."""
    if url.startswith("sqlite:///"):
        from ._sqlite import SqliteStore

        path = Path(url[len("sqlite:///") - 1 :]) if url.startswith("sqlite:////") else Path(url[len("sqlite:///") :])
        return SqliteStore(path, url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from ._redis import RedisStore

        return RedisStore(url)
    raise FluentError(f"unknown store {url!r}: use sqlite:///path or redis://host:port/db")
