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


_SCHEMES = ("sqlite:///", "redis://", "rediss://", "unix://")


def shown(url: str) -> str:
    """``url`` as messages may show it: without a password."""
    from ._redis import redact

    try:
        return redact(url)
    except ValueError:  # (not a URL urllib can split: show only its scheme)
        return url.split("://", 1)[0] + "://..."


def check_url(url: object) -> str:
    """``url`` if it names a store ``open_store`` can open, else FluentError (at once: a
    cluster whose hosts cannot open their store would only show it as hosts that never start)."""
    if not isinstance(url, str) or not any(url.startswith(s) and len(url) > len(s) for s in _SCHEMES):
        what = repr(shown(url)) if isinstance(url, str) else type(url).__name__
        raise FluentError(f"unknown store {what}: use sqlite:///path or redis://host:port/db")
    return url


def check_opens(url: str) -> None:
    """Open the store at ``url`` once and close it: FluentError naming the store and why
    it cannot be opened (a SQLite path that cannot be created, a Redis server that does
    not answer). A cluster checks this before it starts hosts that would fail the same way."""
    try:
        store = open_store(url)
    except FluentError as exc:
        raise FluentError(f"the store cannot be opened: {exc}") from None
    except Exception as exc:  # a path that cannot be made, a server's own refusal (a wrong db index, ...)
        raise FluentError(f"the store {shown(url)!r} cannot be opened: {type(exc).__name__}: {exc}") from None
    store.close()


def open_store(url: str) -> Store:
    """Open ``sqlite:///path`` or ``redis://host:port/db``."""
    check_url(url)
    if url.startswith("sqlite:///"):
        from ._sqlite import SqliteStore

        path = Path(url[len("sqlite:///") - 1 :]) if url.startswith("sqlite:////") else Path(url[len("sqlite:///") :])
        return SqliteStore(path, url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from ._redis import RedisStore

        return RedisStore(url)
    raise AssertionError(f"check_url let {url!r} through")  # (every scheme it accepts is opened above)
