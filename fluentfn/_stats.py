"""The counter vocabulary that hosts, FaaS invocations, the gateway and ``ff.stats()`` share."""

from __future__ import annotations

COUNTERS = (
    "calls",
    "direct_messages",
    "local_calls",
    "activations",
    "passivations",
    "errors",
    "messages_via_storage",
    "storage_reads",
    "storage_writes",
    "storage_bytes_read",
    "storage_bytes_written",
    "cold_starts",
    "warm_starts",
    "invocations",
    "billed_ms",
    "object_reads",
    "object_writes",
    "record_reads",
    "record_writes",
    "record_read_units",
    "record_write_units",
    "overdue_turns",
    "malformed_requests",
    "reminder_failures",
)


def new_counters() -> dict[str, int]:
    """A zeroed set of counters."""
    return dict.fromkeys(COUNTERS, 0)
