"""The mailbox and activation table as pure state machines (no Ray, no sockets)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluentfn.errors import Overloaded
from fluentfn.host._activations import Activation, ActivationTable
from fluentfn.host._mailbox import Mailbox, Turn


def test_one_turn_at_a_time_fifo() -> None:
    mb = Mailbox("A/1", limit=10)
    t1, t2, t3 = Turn("c1"), Turn("c2"), Turn("c3")
    assert mb.offer(t1)
    assert not mb.offer(t2)
    assert not mb.offer(t3)
    assert mb.finish(t1) == [t2]
    assert mb.finish(t2) == [t3]
    assert mb.finish(t3) == []
    assert mb.idle


def test_call_chain_reentry_is_admitted() -> None:
    mb = Mailbox("A/1", limit=10)
    outer = Turn("chain", chain=())
    assert mb.offer(outer)
    # A -> B -> A: the call back into A carries A in its chain, same chain id.
    assert mb.offer(Turn("chain", chain=("A/1", "B/1")))
    # Same chain id but A not in the chain (two futures A fired at B): must wait.
    assert not mb.offer(Turn("chain", chain=("B/1",)))
    # A in the chain of a different chain: must wait.
    assert not mb.offer(Turn("other", chain=("A/1", "B/1")))


def test_interleaving_only_between_interleavable_turns() -> None:
    mb = Mailbox("A/1", limit=10)
    a1, a2 = Turn("1", interleave=True), Turn("2", interleave=True)
    sync = Turn("3")
    assert mb.offer(a1) and mb.offer(a2)
    assert not mb.offer(sync)
    # An interleavable turn arriving after a queued exclusive one waits (no starvation).
    late = Turn("4", interleave=True)
    assert not mb.offer(late)
    assert mb.finish(a1) == []
    assert mb.finish(a2) == [sync]
    assert mb.finish(sync) == [late]


def test_bounded_queue() -> None:
    mb = Mailbox("A/1", limit=2)
    assert mb.offer(Turn("a"))
    mb.offer(Turn("b"))
    mb.offer(Turn("c"))
    with pytest.raises(Overloaded):
        mb.offer(Turn("d"))


def test_cancel_waiting() -> None:
    mb = Mailbox("A/1", limit=5)
    t1, t2, t3 = Turn("1"), Turn("2"), Turn("3")
    mb.offer(t1)
    mb.offer(t2)
    mb.offer(t3)
    assert mb.cancel(t2) == []
    assert mb.finish(t1) == [t3]


@given(st.lists(st.sampled_from(["offer", "offer_i", "finish"]), max_size=60))
def test_invariants_hold_for_any_sequence(ops: list[str]) -> None:
    mb = Mailbox("A/1", limit=1000)
    running: list[Turn] = []
    for i, op in enumerate(ops):
        if op.startswith("offer"):
            t = Turn(str(i), interleave=op == "offer_i")
            if mb.offer(t):
                running.append(t)
        elif running:
            t = running.pop(0)
            running += mb.finish(t)
        # Exclusive turns never run beside anything.
        assert len(mb.running) <= 1 or all(t.interleave for t in mb.running)
        assert sorted(map(id, running)) == sorted(map(id, mb.running))
        # Nothing waits while nothing runs.
        assert mb.running or not mb.waiting


def _act(key: str, table: ActivationTable, now: float) -> Activation:
    a = table.new("T", key, f"T/{key}", now)
    a.ready = True
    return a


def test_idle_and_lru() -> None:
    table = ActivationTable()
    a, b, _ = (_act(k, table, t) for k, t in (("a", 0.0), ("b", 1.0), ("c", 2.0)))
    busy: set[str] = set()
    table.touch(a, 5.0)  # a is now the most recent
    assert [x.key for x in table.idle(6.0, lambda _: 4.5, 4.5, busy.__contains__)] == ["b"]
    assert [x.key for x in table.over_cap(1, busy.__contains__)] == ["b", "c"]
    busy.add("T/c")
    assert [x.key for x in table.over_cap(1, busy.__contains__)] == ["b", "a"]  # busy c is skipped, never evicted
    table.remove(b)
    assert len(table) == 2 and table.get("T/b") is None


def test_activation_runs_alone_then_interleaving_starts() -> None:
    mb = Mailbox("A/1", limit=10, activating=True)
    first, second = Turn("1", interleave=True), Turn("2", interleave=True)
    assert mb.offer(first)
    assert not mb.offer(second)  # the first turn is activating the identity
    assert mb.activated() == [second]
    assert mb.running == [first, second]


class _Reference:
    """The table as it was, an ``OrderedDict`` in use order: what ``ActivationTable`` must equal."""

    def __init__(self) -> None:
        self.items: OrderedDict[str, Activation] = OrderedDict()

    def add(self, act: Activation) -> None:
        self.items[act.address] = act

    def touch(self, act: Activation) -> None:
        if act.address in self.items:
            self.items.move_to_end(act.address)

    def remove(self, act: Activation) -> None:
        if self.items.get(act.address) is act:
            del self.items[act.address]


TABLE_OPS = st.lists(
    st.tuples(st.sampled_from(["new", "touch", "remove"]), st.sampled_from("abcd"), st.integers(0, 2)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(TABLE_OPS)
def test_the_table_keeps_use_order_as_an_ordered_dict_would(ops: list[tuple[str, str, int]]) -> None:
    """New identities, uses and removals in any order, of objects in the table or not (one
    made apart, or one removed): the table's order and contents are those of the
    ``OrderedDict`` it replaced, and its least recently used come first."""
    table, reference = ActivationTable(), _Reference()
    objects: dict[tuple[str, int], Activation] = {}
    for now, (op, key, version) in enumerate(ops):
        act = objects.setdefault((key, version), Activation("T", key))
        if op == "new":  # as the admission makes one: only where the table has none
            if table.get(act.address) is None:
                made = table.new("T", key, act.address, float(now))
                reference.add(made)
                objects[(key, version)] = made
        elif op == "touch":
            table.touch(act, float(now))
            reference.touch(act)
        else:
            table.remove(act)
            reference.remove(act)
        assert [id(a) for a in table] == [id(a) for a in reference.items.values()]
        assert len(table) == len(reference.items)
        assert all(table.get(address) is a for address, a in reference.items.items())
