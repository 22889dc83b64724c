"""State stores (SQLite, Redis) behind one interface, and the state codec."""

from ._store import Record, StaleEpoch, Store, VersionConflict, open_store

__all__ = ["Record", "StaleEpoch", "Store", "VersionConflict", "open_store"]
