"""The counter vocabulary that hosts, FaaS invocations, the gateway and ``ff.stats()`` share."""

from __future__ import annotations

from collections.abc import Mapping

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
    "writes_deferred",  # persist="call" writes of loop turns the store did not take at once: done by a worker
    "malformed_requests",
    "reminder_failures",
    "tells_undelivered",  # tells that no host took by their deadline (their senders had returned)
    "host_ms",  # milliseconds hosts were up (what ``ff.cost()`` prices)
    "gpu_ms",  # ... times the GPUs each had
)


def new_counters() -> dict[str, int]:
    """A zeroed set of counters."""
    return dict.fromkeys(COUNTERS, 0)


class Ledger:
    """Cluster counters that outlive host processes (pure bookkeeping).

    Each host process (an *incarnation* of a host id) reports its own counters from zero.
    The ledger keeps the last report of each incarnation; when a host comes back as a new
    incarnation (Ray restarted it after a kill) or is stopped, what the old one counted
    is kept. Counts made after a killed incarnation's last report are lost (at most one
    poll interval's worth)."""

    def __init__(self) -> None:
        self.retired: dict[str, int] = {}
        self._seen: dict[str, tuple[str, dict[str, int]]] = {}

    def seen(self, host: str, incarnation: str, counters: Mapping[str, int]) -> None:
        """``host``'s incarnation ``incarnation`` reported ``counters`` (its totals so far)."""
        previous = self._seen.get(host)
        if previous is not None and previous[0] != incarnation:
            self._retire(previous[1])
        self._seen[host] = (incarnation, dict(counters))

    def ended(self, host: str) -> None:
        """``host`` was stopped: its last report is kept."""
        previous = self._seen.pop(host, None)
        if previous is not None:
            self._retire(previous[1])

    def _retire(self, counters: Mapping[str, int]) -> None:
        for k, v in counters.items():
            self.retired[k] = self.retired.get(k, 0) + v

    def totals(self) -> dict[str, int]:
        """Everything counted: stopped and replaced incarnations, and the last report of
        each current one."""
        out = dict(self.retired)
        for _, counters in self._seen.values():
            for k, v in counters.items():
                out[k] = out.get(k, 0) + v
        return out
