"""State stores (SQLite, Redis) behind one interface, and the state codec."""

from ._open import default_url, open_store
from ._store import Record, StaleEpoch, Store, VersionConflict

__all__ = ["Record", "StaleEpoch", "Store", "VersionConflict", "default_url", "open_store"]
