"""``fluentfn top``: one frame of the cluster's live view, from two status readings.

Pure: it takes ``Status`` messages (what the gateway's ``Status`` RPC returns) and the
seconds between them, and returns a ``rich`` renderable; the CLI reads, renders, repeats.
"""

from __future__ import annotations

from typing import Any

from ._phases import breakdown, split_counters
from ._status import Status

__all__ = ["frame", "summary"]


def summary(before: Status, after: Status, seconds: float) -> dict[str, Any]:
    """What a frame shows, as data (``fluentfn top --once --json``)."""
    plain_before, _ = split_counters(dict(before.counters))
    plain, phases = split_counters(dict(after.counters))
    per_s = max(seconds, 1e-9)
    rate = {k: round((plain.get(k, 0) - plain_before.get(k, 0)) / per_s, 1) for k in ("calls", "activations")}
    by_method = breakdown(phases)
    types = []
    for t in sorted(after.types, key=lambda t: t.type_name):
        hosts = [h for h in after.hosts if t.type_name in h.type_names]
        methods = {m: b for m, b in by_method.items() if m.split(".", 1)[0] == t.type_name}
        p99 = max((b.get("call_ms", b.get("run_ms", {})).get("p99", 0.0) for b in methods.values()), default=0.0)
        queue = max((b.get("queue_ms", {}).get("p99", 0.0) for b in methods.values()), default=0.0)
        types.append({
            "type": t.type_name, "group": t.group, "hosts": len(hosts), "partitions": t.shards,
            "live": sum(h.live_identities for h in hosts), "calls": sum(b["calls"] for b in methods.values()),
            "p99_ms": p99, "queue_p99_ms": queue, "placement_problem": t.placement_problem,
        })  # fmt: skip
    host_rows = [
        {"group": h.group, "host": h.host_id, "partitions": len(h.partitions), "live": h.live_identities,
         "node": h.node_id[:8], "pid": h.pid}
        for h in sorted(after.hosts, key=lambda h: (h.group, h.host_id))
    ]  # fmt: skip
    return {
        "calls_per_s": rate["calls"],
        "activations_per_s": rate["activations"],
        "live_identities": after.live_identities,
        "overdue_turns": plain.get("overdue_turns", 0),
        "errors": plain.get("errors", 0),
        "reminder_failures": plain.get("reminder_failures", 0),
        "types": types,
        "hosts": host_rows,
    }


def frame(before: Status, after: Status, seconds: float, title: str = "fluentfn top") -> Any:
    """The frame as a ``rich`` renderable."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    s = summary(before, after, seconds)
    head = Text(
        f"{title}   calls/s {s['calls_per_s']:,.1f}   activations/s {s['activations_per_s']:,.1f}   "
        f"live {s['live_identities']:,}   overdue turns {s['overdue_turns']}   errors {s['errors']}   "
        f"reminder failures {s['reminder_failures']}",
        style="bold",
    )
    types = Table(title="types", expand=True)
    for col in ("type", "hosts", "partitions", "live", "calls", "p99 ms", "queue p99 ms"):
        types.add_column(col, justify="left" if col == "type" else "right")
    for t in s["types"]:
        name = t["type"] + (f" [red]({t['placement_problem']})[/red]" if t["placement_problem"] else "")
        types.add_row(name, str(t["hosts"]), str(t["partitions"]), f"{t['live']:,}", f"{t['calls']:,}",
                      f"{t['p99_ms']:.2f}", f"{t['queue_p99_ms']:.2f}")  # fmt: skip
    hosts = Table(title="hosts", expand=True)
    for col in ("group", "host", "partitions", "live", "node", "pid"):
        hosts.add_column(col)
    for h in s["hosts"]:
        hosts.add_row(h["group"], h["host"], str(h["partitions"]), f"{h['live']:,}", h["node"], str(h["pid"]))
    return Group(head, types, hosts)
