"""Partition placement as a pure function: which host serves which partition.

The policy half of elasticity (issue #12): keys map to a fixed number of partitions, and
partitions to a varying set of hosts. Given the hosts there are now (each on a node) and
where partitions are now, ``assign`` says where they should be:

- every partition is on exactly one live host;
- hosts' partition counts differ by at most one, and so do nodes' where hosts allow;
- as few partitions move as possible: one stays where it is unless its host is gone or
  has more than its share.

No clocks, Ray or sockets; ``tests/test_elastic_policy.py`` checks the rules with
hypothesis. The directory will carry out the moves this returns (drain, flush or hand
over, claim the next epoch); that mechanism is not built yet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Move:
    """Partition ``partition`` goes from ``src`` (None: it had no live host) to ``dst``."""

    partition: int
    src: str | None
    dst: str


def quotas(hosts: dict[str, str], partitions: int) -> dict[str, int]:
    """How many partitions each host should serve: an even split, the remainder going to
    hosts on the nodes with fewest hosts first (so nodes are as even as hosts allow)."""
    if not hosts:
        return {}
    base, extra = divmod(partitions, len(hosts))
    per_node: dict[str, int] = {}
    for node in hosts.values():
        per_node[node] = per_node.get(node, 0) + 1
    order = sorted(hosts, key=lambda h: (per_node[hosts[h]], hosts[h], h))
    return {h: base + (1 if i < extra else 0) for i, h in enumerate(order)}


def assign(partitions: int, hosts: dict[str, str], current: dict[int, str]) -> dict[int, str]:
    """The new placement of ``partitions`` over ``hosts`` (host id -> node id), starting
    from ``current`` (partition -> host id; hosts not in ``hosts`` are gone)."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    if not hosts:
        return {}
    share = quotas(hosts, partitions)
    placed: dict[int, str] = {}
    load = dict.fromkeys(hosts, 0)
    for p in sorted(current):  # keep what may stay, in a stable order
        host = current[p]
        if 0 <= p < partitions and host in load and load[host] < share[host]:
            placed[p] = host
            load[host] += 1
    for p in range(partitions):  # the rest to the hosts furthest below their share
        if p not in placed:
            host = min(hosts, key=lambda h: (load[h] - share[h], load[h], h))
            placed[p] = host
            load[host] += 1
    return placed


def moves(before: dict[int, str], after: dict[int, str], live: set[str]) -> list[Move]:
    """What changes from ``before`` to ``after``; a partition whose host is not in ``live``
    had no host to drain (its move is a recovery, not a handover)."""
    out = []
    for p, dst in sorted(after.items()):
        src = before.get(p)
        if src != dst:
            out.append(Move(p, src if src in live else None, dst))
    return out
