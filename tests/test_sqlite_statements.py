"""The SQLite store's writes take as few statements as it can (on a saturated host each
statement is a wait for the GIL, and a transaction holds SQLite's lock, which the other
processes wait for, across them): a turn's record and reply in one statement, a claim in
one, a hand-over's records a statement per batch — each still all or nothing, on a real
SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluentfn.state import open_store
from fluentfn.state._codec import decode_state, encode_state, encode_value
from fluentfn.state._layout import compose
from fluentfn.state._sqlite import _BATCH, _ONE_STATEMENT, SqliteStore
from fluentfn.state._store import StaleEpoch, VersionConflict, WouldBlock, Write

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    assert isinstance(s, SqliteStore)
    yield s
    s.close()


def statements(store: SqliteStore) -> list[str]:
    """The statements this thread's writing connection runs from now on (a trigger's own
    statements, which SQLite reports with a leading comment, left out)."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        # (a trigger's statements are reported as its top statement's text, again)
        if not sql.lstrip().startswith("--") and (not seen or seen[-1] != sql):
            seen.append(sql)

    store._writing_conn().set_trace_callback(trace)
    return seen


def test_a_save_with_no_parts_named_drops_the_records_old_parts(store: SqliteStore) -> None:
    """``parts=None`` (a whole state) is a transaction that also deletes old parts."""
    big = encode_value(b"y" * 100_000)
    store.save("T/p", expected=0, state=compose([("n", encode_value(1))]), fence=None, parts={"big": big})
    store.save("T/p", expected=1, state=encode_state({"n": 2}), fence=None, reply=("r", b"x"))
    record = store.load("T/p")
    assert record is not None and decode_state(record.state) == {"n": 2}
    assert store.get_reply("T/p", "r") == b"x"


def n_of(store: SqliteStore, address: str) -> tuple[int, int] | None:
    record = store.load(address)
    return None if record is None else (record.version, decode_state(record.state)["n"])


def test_a_turns_record_and_reply_are_one_statement_written_together_or_not_at_all(store: SqliteStore) -> None:
    epoch = store.claim_shard("G", 0)
    fence = ("G", 0, epoch)
    assert store.save("T/a", expected=0, state=encode_state({"n": 1}), fence=fence, parts={}, reply=("r1", b"one")) == 1
    seen = statements(store)
    assert store.save("T/a", expected=1, state=encode_state({"n": 2}), fence=fence, parts={}, reply=("r2", b"two")) == 2
    assert len(seen) == 1, seen  # no BEGIN, no COMMIT: the statement is its own transaction
    assert n_of(store, "T/a") == (2, 2)
    assert (store.get_reply("T/a", "r1"), store.get_reply("T/a", "r2")) == (b"one", b"two")

    # The version is not the one expected: neither the record nor the reply is written.
    with pytest.raises(VersionConflict, match="T/a is at version 2, not 1"):
        store.save("T/a", expected=1, state=encode_state({"n": 9}), fence=fence, parts={}, reply=("r3", b"three"))
    assert n_of(store, "T/a") == (2, 2)
    assert store.get_reply("T/a", "r3") is None

    # The same request id again (a turn re-run after a crash): its reply is replaced.
    assert (
        store.save("T/a", expected=2, state=encode_state({"n": 3}), fence=fence, parts={}, reply=("r2", b"again")) == 3
    )
    assert store.get_reply("T/a", "r2") == b"again"

    # The partition moved on: StaleEpoch, nothing written.
    store.claim_shard("G", 0)
    with pytest.raises(StaleEpoch):
        store.save("T/a", expected=3, state=encode_state({"n": 4}), fence=fence, parts={}, reply=("r4", b"four"))
    assert n_of(store, "T/a") == (3, 3)
    assert store.get_reply("T/a", "r4") is None

    # A record that was deleted meanwhile is not made again by a write that expects it.
    store.delete_identity("T/a")
    now = ("G", 0, store.shard_epoch("G", 0))
    with pytest.raises(VersionConflict, match="version 0"):
        store.save("T/a", expected=3, state=encode_state({"n": 4}), fence=now, reply=("r5", b"five"))
    assert store.load("T/a") is None and store.get_reply("T/a", "r5") is None


def test_a_record_alone_is_one_statement_and_waits_for_a_lock_or_refuses_with_nowait(store: SqliteStore) -> None:
    assert store.save("T/b", expected=0, state=encode_state({"n": 1}), fence=None, parts={}) == 1
    seen = statements(store)
    assert store.save("T/b", expected=1, state=encode_state({"n": 2}), fence=None, parts={}) == 2
    assert len(seen) == 1, seen
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(WouldBlock):
            store.save(
                "T/b", expected=2, state=encode_state({"n": 3}), fence=None, parts={}, reply=("r", b"x"), nowait=True
            )
        with pytest.raises(WouldBlock):
            store.save("T/b", expected=2, state=encode_state({"n": 3}), fence=None, parts={}, nowait=True)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert n_of(store, "T/b") == (2, 2)  # refused before anything was written
    assert store.get_reply("T/b", "r") is None
    assert store.save("T/b", expected=2, state=encode_state({"n": 3}), fence=None) == 3


@pytest.mark.skipif(not _ONE_STATEMENT, reason="this SQLite has no RETURNING / UPDATE ... FROM")
def test_a_claim_is_one_statement_and_each_claim_is_the_next_epoch(store: SqliteStore) -> None:
    seen = statements(store)
    assert [store.claim_shard("G", 3, f"owner{i}") for i in range(4)] == [1, 2, 3, 4]
    assert len(seen) == 4, seen
    assert store.shard_owner("G", 3) == (4, "owner3")
    assert store.claim_shard("G", 4) == 1  # another shard has its own epochs


@pytest.mark.skipif(not _ONE_STATEMENT, reason="this SQLite has no RETURNING / UPDATE ... FROM")
def test_a_hand_over_is_a_statement_per_batch_and_all_or_nothing(store: SqliteStore) -> None:
    fence = ("G", 0, store.claim_shard("G", 0))
    n = _BATCH + 7  # more records than one statement takes
    news = [Write(f"T/{i}", 0, encode_state({"n": i}), {}) for i in range(n)]
    seen = statements(store)
    assert store.save_many(news, fence=fence) == [1] * n
    assert len(seen) == 4, [s[:40] for s in seen]  # BEGIN, two batches of inserts, COMMIT
    assert n_of(store, f"T/{n - 1}") == (1, n - 1)

    seen.clear()
    updates = [Write(f"T/{i}", 1, encode_state({"n": 10 * i}), {}) for i in range(20)]
    mixed = [*updates, Write("T/new", 0, encode_state({"n": 5}), {})]
    assert store.save_many(mixed, fence=fence) == [2] * 20 + [1]
    assert len(seen) == 1, [s[:40] for s in seen]  # the updates and the insert: one statement, no BEGIN
    assert n_of(store, "T/19") == (2, 190) and n_of(store, "T/new") == (1, 5)
    # 21 records take the statement of 32 (its text prepared once), the rest rows that write nothing.
    assert seen[0].count("(") == 32
    assert store._writing_conn().execute("SELECT COUNT(*) FROM state").fetchone() == (n + 1,)
    seen.clear()
    again = [Write(f"T/{i}", 2, encode_state({"n": i}), {}) for i in range(17)]
    assert store.save_many(again, fence=fence) == [3] * 17 and seen[0].count("(") == 32
    assert n_of(store, "T/16") == (3, 16) and n_of(store, "T/17") == (2, 170)
    assert store.save_many([], fence=fence) == []
    assert store.save_many([Write("T/free", 0, encode_state({"n": 1}), {})], fence=None) == [1]  # (no fence)
    assert n_of(store, "T/free") == (1, 1)

    before = {a: n_of(store, a) for a in ("T/0", "T/1", "T/new", "T/big")}
    # One record behind (the last of a batch), an insert of a record that exists, an
    # address named twice: nothing of the batch is written.
    for bad, match in (
        ([Write("T/0", 3, encode_state({"n": -1}), {}), Write("T/1", 2, encode_state({"n": -1}), {})], "T/1"),
        ([Write("T/0", 3, encode_state({"n": -1}), {}), Write("T/new", 0, encode_state({"n": -1}), {})], "T/new"),
        ([Write("T/0", 3, encode_state({"n": -1}), {}), Write("T/0", 3, encode_state({"n": -2}), {})], "twice"),
    ):
        with pytest.raises(VersionConflict, match=match):
            store.save_many(bad, fence=fence)
        assert {a: n_of(store, a) for a in before} == before

    # A record with a part goes in the same transaction, its part with it.
    inline = compose([("n", encode_value(7))])
    big = encode_value(b"x" * 100_000)
    both = [Write("T/big", 0, inline, {"big": big}), Write("T/0", 3, encode_state({"n": 1}), {})]
    assert store.save_many(both, fence=fence) == [1, 4]
    record = store.load("T/big")
    assert record is not None and decode_state(record.state) == {"n": 7, "big": b"x" * 100_000}

    # The partition moved on: StaleEpoch from the batch's own statement, nothing written.
    store.claim_shard("G", 0)
    before = {a: n_of(store, a) for a in ("T/0", "T/1")}
    with pytest.raises(StaleEpoch):
        store.save_many(
            [Write("T/0", 4, encode_state({"n": 0}), {}), Write("T/1", 3, encode_state({"n": 0}), {})], fence=fence
        )
    assert {a: n_of(store, a) for a in before} == before


def test_a_write_that_must_not_wait_is_refused_where_every_commit_waits_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``synchronous=FULL``: a turn's write, a hand-over and a claim that must not wait (a
    host's event loop) are refused with nothing written; the same writes that may wait
    are done."""
    monkeypatch.setenv("FLUENTFN_SQLITE_SYNC", "FULL")
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    assert isinstance(s, SqliteStore)
    try:
        with pytest.raises(WouldBlock):
            s.claim_shard("G", 0, nowait=True)
        assert s.shard_epoch("G", 0) == 0
        fence = ("G", 0, s.claim_shard("G", 0))
        with pytest.raises(WouldBlock):
            s.save("T/a", expected=0, state=encode_state({"n": 1}), fence=fence, parts={}, nowait=True)
        with pytest.raises(WouldBlock):
            s.save_many([Write("T/a", 0, encode_state({"n": 1}), {})], fence=fence, nowait=True)
        assert s.load("T/a") is None
        assert s.save_many([Write("T/a", 0, encode_state({"n": 1}), {})], fence=fence) == [1]
        assert n_of(s, "T/a") == (1, 1)
    finally:
        s.close()
