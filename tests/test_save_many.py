"""A partition's hand-over writes its identities in one store transaction (``save_many``,
on a real SQLite file and a real redis-server): all of them or none; and a hand-over
whose one write fails still writes every identity it can, alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fluentfn._actordef import ActorDef
from fluentfn._ioloop import IoLoop
from fluentfn.host._partitions import PartitionSet
from fluentfn.placement import shard_for
from fluentfn.state import Store
from fluentfn.state._codec import decode_state, encode_state, encode_value
from fluentfn.state._layout import compose
from fluentfn.state._store import StaleEpoch, VersionConflict, Write
from fluentfn.testing import wait_for

from .test_partitions import HELD, call, definition, host, key_in
from .test_store_keys import store  # noqa: F401  (the fixture: a real SQLite file, a real redis-server)

pytestmark = pytest.mark.timeout(120)


def state_of(s: Store, address: str) -> tuple[int, dict[str, Any]] | None:
    record = s.load(address)
    return None if record is None else (record.version, decode_state(record.state))


def test_save_many_writes_all_or_none(store: Store) -> None:  # noqa: F811
    epoch = store.claim_shard("G", 0)
    fence = ("G", 0, epoch)
    assert store.save_many([], fence=fence) == []
    first = [Write("T/a", 0, encode_state({"n": 1})), Write("T/b", 0, encode_state({"n": 2}))]
    assert store.save_many(first, fence=fence) == [1, 1]
    big = encode_value(b"x" * 100_000)
    inline = compose([("n", encode_value(3))])
    assert store.save_many([Write("T/c", 0, inline, {"big": big})], fence=fence) == [1]
    assert state_of(store, "T/c") == (1, {"n": 3, "big": b"x" * 100_000})
    before = {a: state_of(store, a) for a in ("T/a", "T/b", "T/c")}

    # One record's version is wrong: none of them is written.
    bad = [Write("T/a", 1, encode_state({"n": 10})), Write("T/b", 7, encode_state({"n": 20}))]
    with pytest.raises(VersionConflict, match="T/b"):
        store.save_many(bad, fence=fence)
    assert {a: state_of(store, a) for a in before} == before

    # The partition moved on: nothing is written.
    store.claim_shard("G", 0)
    with pytest.raises(StaleEpoch):
        store.save_many([Write("T/a", 1, encode_state({"n": 10}))], fence=fence)
    assert {a: state_of(store, a) for a in before} == before

    # A whole state drops the parts of the last write; versions go up by one each.
    now = ("G", 0, store.shard_epoch("G", 0))
    again = [Write("T/c", 1, encode_state({"n": 4})), Write("T/a", 1, encode_state({"n": 11}))]
    assert store.save_many(again, fence=now) == [2, 2]
    assert state_of(store, "T/c") == (2, {"n": 4})
    assert state_of(store, "T/a") == (2, {"n": 11})


class Counting:
    """A real store that counts its writes (what a hand-over costs in transactions) and
    keeps, for each, whether it was ``urgent``."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.saves = 0
        self.batches = 0
        self.urgent: list[tuple[str, bool]] = []  # ("save" or "save_many", urgent)

    def save(self, *args: Any, **kwargs: Any) -> int:
        self.saves += 1
        self.urgent.append(("save", kwargs.get("urgent", False)))
        version: int = self.inner.save(*args, **kwargs)
        return version

    def save_many(self, *args: Any, **kwargs: Any) -> list[int]:
        self.batches += 1
        self.urgent.append(("save_many", kwargs.get("urgent", False)))
        versions: list[int] = self.inner.save_many(*args, **kwargs)
        return versions

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def counting(tmp_path: Any) -> Iterator[Counting]:
    from fluentfn.state import open_store

    inner = open_store(f"sqlite:///{tmp_path}/state.db")
    yield Counting(inner)
    inner.close()


def two_hosts(io: IoLoop, st: Any, p: int, n: int) -> tuple[ActorDef, PartitionSet, PartitionSet, list[str]]:
    """An interval-mode type on two hosts over ``st``; the first owns partition ``p``;
    ``n`` keys of that partition."""
    d = definition("interval")
    a, b = host(io, st, d, "a"), host(io, st, d, "b")
    a.adopt(p, st.claim_shard(d.options.group, p))
    return d, a, b, [k for k in (f"k{i}" for i in range(400)) if shard_for(k, 4) == p][:n]


def test_an_interval_partition_hands_over_in_one_write(io: IoLoop, counting: Counting) -> None:
    st: Any = counting
    p = 2
    d, a, b, keys = two_hosts(io, st, p, 6)
    for i, k in enumerate(keys):
        assert call(io, a, d, k, "add", i + 1) == i + 1
    counting.saves = counting.batches = 0
    counting.urgent.clear()
    handoff = io.run(a.release(p, grace_s=5.0)).memory
    assert (counting.batches, counting.saves) == (1, 0)  # every identity in one transaction
    assert counting.urgent == [("save_many", True)]  # ahead of the host's other writers
    b.adopt(p, st.claim_shard(d.options.group, p), handoff)
    for i, k in enumerate(keys):  # on_deactivate (+1000) ran before the write
        assert call(io, b, d, k, "add", 0) == i + 1 + 1000


def test_a_hand_over_whose_one_write_fails_writes_each_identity_alone(io: IoLoop, counting: Counting) -> None:
    st: Any = counting
    p = 1
    d, a, b, keys = two_hosts(io, st, p, 3)
    for k in keys:
        assert call(io, a, d, k, "add", 5) == 5
    # Another writer stored one identity behind the owner's back (interval mode had not
    # written it yet): the one write conflicts.
    st.save(f"{d.name}/{keys[0]}", expected=0, state=encode_state({"n": 99}), fence=None)
    handoff = io.run(a.release(p, grace_s=5.0)).memory
    assert counting.batches == 1
    b.adopt(p, st.claim_shard(d.options.group, p), handoff)
    for k in keys[1:]:  # the others' changes were written, one by one
        assert call(io, b, d, k, "add", 0) == 1005
    assert call(io, b, d, keys[0], "add", 0) == 99  # the conflicting one was not overwritten


def test_a_turn_still_running_when_its_partition_is_released_writes_first(io: IoLoop, counting: Counting) -> None:
    """The writes a move waits for go ahead of the host's other writers (``urgent``): a
    ``persist="call"`` turn that was running when the release began writes so; the
    turns before it did not."""
    st: Any = counting
    p = 3
    d = definition("call")
    a, b = host(io, st, d, "a"), host(io, st, d, "b")
    a.adopt(p, st.claim_shard(d.options.group, p))
    key = key_in(p)
    assert call(io, a, d, key, "add", 5) == 5
    assert counting.urgent == [("save", False)]
    engine = a.engines[p]
    HELD[0] = False
    outcome: list[Any] = []
    late = threading.Thread(target=lambda: outcome.append(call(io, a, d, key, "held")))
    late.start()
    try:
        wait_for(lambda: engine.admission.running, timeout=30)
        releasing = io.submit(a.release(p, grace_s=30.0))
        wait_for(lambda: engine.persistence.draining, timeout=30)
    finally:
        HELD[0] = True
    handoff = releasing.result(60).memory
    late.join(60)
    assert outcome == [6]  # it ended within the drain: written, acknowledged
    # the late turn's write, then the hand-over's (on_deactivate changed the state)
    assert counting.urgent == [("save", False), ("save", True), ("save_many", True)]
    b.adopt(p, st.claim_shard(d.options.group, p), handoff)
    assert call(io, b, d, key, "add", 0) == 1006  # on_deactivate's +1000 ran before the hand-over
