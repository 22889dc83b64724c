"""The network's edge: ``Call``, ``Outcome`` and ``Status`` to and from their protobuf
messages. Nothing past this module sees protobuf.

Deadlines across machines: inside a process a call's ``deadline`` is a time on that
process's clock. A call leaves with the seconds left (``budget_s``), and the receiver
turns them back into a deadline on its own clock. A host whose clock is ahead of or
behind its callers' therefore neither runs turns its caller gave up on nor drops live
ones (Orleans sends a time-to-live for the same reason). Only the network's transit time
is charged to nobody; it is small next to any deadline worth setting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from .._call import Call, ErrorInfo, Outcome
from .._config import MAX_CALL_TIMEOUT_S, MAX_KEY_BYTES, MAX_NAME_BYTES
from .._status import HostInfo, Status, TypeRoute
from ..wire._gen import actorhost_pb2 as pb

Clock = Callable[[], float]


def call_to_pb(call: Call, clock: Clock = time.time) -> pb.Call:
    """On the way out: the deadline leaves as the seconds left of it (none if it has none)."""
    budget = max(1e-6, call.deadline - clock()) if call.deadline else 0.0
    m = pb.Call(
        type_name=call.type_name, key=call.key, method=call.method, args=call.args, request_id=call.request_id,
        chain_id=call.chain_id, budget_s=budget,
    )  # fmt: skip
    # Fields usually at their defaults are set only when they are not (a third cheaper).
    if call.call_chain:
        m.call_chain.extend(call.call_chain)
    if call.seq:
        m.seq = call.seq
    if call.one_way:
        m.one_way = True
    if call.attempt:
        m.attempt = call.attempt
    if call.caller:
        m.caller = call.caller
    if call.trace:
        m.trace = call.trace
    return m


MAX_ID_CHARS = 256
"""Longest request id, chain id or trace context a peer may send (ours are 25 to 55)."""
MAX_ADDRESS_CHARS = MAX_NAME_BYTES + 1 + MAX_KEY_BYTES
"""Longest ``Type/key`` address (a caller, a link of a call chain)."""
MAX_CHAIN = 1_000
"""Most identities a call chain may hold (each one a turn waiting on the next)."""


def wire_problem(m: pb.Call) -> str | None:
    """Why a call that arrived from a peer cannot be taken, or None: its ids, caller or
    chain past their bounds (each would be kept per turn, and in the store's reply records),
    or a deadline that is no time. Checked before anything is kept of it."""
    if (
        len(m.request_id) <= MAX_ID_CHARS
        and len(m.chain_id) <= MAX_ID_CHARS
        and len(m.trace) <= MAX_ID_CHARS
        and len(m.caller) <= MAX_ADDRESS_CHARS
        and m.budget_s >= 0.0  # (False for NaN)
        and 0.0 <= m.deadline < math.inf
        and (not m.call_chain or _chain_fits(m.call_chain))
    ):
        return None
    for name in ("request_id", "chain_id", "trace"):
        if len(getattr(m, name)) > MAX_ID_CHARS:
            return f"a call's {name} is at most {MAX_ID_CHARS} characters, not {len(getattr(m, name))}"
    if len(m.caller) > MAX_ADDRESS_CHARS:
        return f"a call's caller is an address of at most {MAX_ADDRESS_CHARS} characters"
    if not m.budget_s >= 0.0 or not 0.0 <= m.deadline < math.inf:
        return f"a call's budget_s and deadline are seconds, >= 0 and finite (got {m.budget_s!r}, {m.deadline!r})"
    return f"a call chain holds at most {MAX_CHAIN} addresses of at most {MAX_ADDRESS_CHARS} characters each"


def _chain_fits(chain: Sequence[str]) -> bool:
    return len(chain) <= MAX_CHAIN and all(len(a) <= MAX_ADDRESS_CHARS for a in chain)


def call_from_pb(m: pb.Call, clock: Clock = time.time) -> Call:
    """On the way in: the deadline on this process's clock, from the budget (a sender that
    gave none keeps its absolute deadline, if any; a budget past the longest timeout, or
    infinite, is that longest). Check it first (``wire_problem``)."""
    deadline = clock() + min(m.budget_s, MAX_CALL_TIMEOUT_S) if m.budget_s > 0 else m.deadline
    return Call(
        m.type_name, m.key, m.method, m.args, m.request_id, deadline,
        tuple(m.call_chain), m.chain_id, m.seq, m.one_way, m.attempt, 0.0, m.caller, m.trace,
    )  # fmt: skip


def outcome_to_pb(outcome: Outcome) -> pb.Reply:
    e = outcome.error
    if e is None:
        return pb.Reply(seq=outcome.seq, value=outcome.value)
    error = pb.Error(code=e.code, message=e.message, exc_module=e.exc_module, exc_type=e.exc_type,
                     exc_args=e.exc_args, traceback=e.traceback)  # fmt: skip
    return pb.Reply(seq=outcome.seq, error=error)


def outcome_from_pb(m: pb.Reply) -> Outcome:
    if m.WhichOneof("outcome") != "error":
        return Outcome(m.value, None, m.seq)
    e = m.error
    return Outcome(b"", ErrorInfo(e.code, e.message, e.exc_module, e.exc_type, e.exc_args, e.traceback), m.seq)


def status_to_pb(s: Status) -> pb.StatusReply:
    hosts = [
        pb.HostInfo(
            group=h.group, shard=h.shard, endpoint=h.endpoint, node_id=h.node_id, live_identities=h.live_identities,
            epoch=h.epoch, gpu_ids=h.gpu_ids, type_names=h.type_names, metrics_url=h.metrics_url, pid=h.pid,
            host_id=h.host_id, partitions=h.partitions,
        )
        for h in s.hosts
    ]  # fmt: skip
    types = [
        pb.TypeRoute(type_name=t.type_name, group=t.group, shards=t.shards, hosts=t.hosts, min_hosts=t.min_hosts,
                     max_hosts=t.max_hosts, placement_problem=t.placement_problem)
        for t in s.types
    ]  # fmt: skip
    return pb.StatusReply(
        host_id=s.host_id, node_id=s.node_id, type_names=s.type_names, live_identities=s.live_identities,
        counters=s.counters, group=s.group, shard=s.shard, epoch=s.epoch, hosts=hosts, types=types,
        partitions=s.partitions, tunnel_port=s.tunnel_port,
    )  # fmt: skip


def status_from_pb(m: pb.StatusReply) -> Status:
    hosts = tuple(
        HostInfo(
            h.group, h.shard, h.endpoint, h.node_id, h.live_identities, h.epoch, tuple(h.gpu_ids),
            tuple(h.type_names), h.metrics_url, h.pid, h.host_id, tuple(h.partitions),
        )
        for h in m.hosts
    )  # fmt: skip
    types = tuple(
        TypeRoute(t.type_name, t.group, t.shards, t.hosts, t.min_hosts, t.max_hosts, t.placement_problem)
        for t in m.types
    )
    return Status(
        m.host_id, m.node_id, tuple(m.type_names), m.live_identities, dict(m.counters), m.group, m.shard,
        m.epoch, hosts, types, tuple(m.partitions), m.tunnel_port,
    )  # fmt: skip
