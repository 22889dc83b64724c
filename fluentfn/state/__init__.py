"""State stores (SQLite, Redis) behind one interface, and the state codec."""

from ._open import check_opens, check_url, default_url, open_store
from ._store import Record, StaleEpoch, Store, VersionConflict, has_reminders

__all__ = [
    "Record",
    "StaleEpoch",
    "Store",
    "VersionConflict",
    "check_opens",
    "check_url",
    "default_url",
    "has_reminders",
    "open_store",
]
