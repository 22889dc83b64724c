"""The SQLite store's WAL is checkpointed by a thread of its own, not by the commit that
happens to take it past SQLite's default 1,000 pages; the connections' own automatic
checkpoint is only a bound."""

from __future__ import annotations

import gc
import sqlite3
import time
from pathlib import Path

import pytest

from fluentfn.state import _checkpoint, open_store
from fluentfn.state._checkpoint import BOUND_PAGES
from fluentfn.state._sqlite import SqliteStore

pytestmark = pytest.mark.timeout(120)


def _store(tmp_path: Path) -> SqliteStore:
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    assert isinstance(store, SqliteStore)
    return store


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + 60.0  # generous: a loaded machine schedules the thread late
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within 60 s: {what}")
        time.sleep(0.01)


def test_commits_are_copied_into_the_database_file_by_the_thread(tmp_path: Path) -> None:
    store = _store(tmp_path)
    db = Path(store.path)
    before = db.stat().st_size
    blob = b"x" * 3000
    n = _checkpoint.EVERY_COMMITS + 2  # a checkpoint's worth, in fewer pages than the bound or SQLite's default
    for i in range(n):
        store.save(f"T/{i}", expected=0, state=blob, fence=None, reply=(f"r{i}", b"ok"))
    # The writers' own automatic checkpoint is the bound, so only the thread copies pages
    # into the database file (it grows by the records' pages).
    writer = store._writing_conn()
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BOUND_PAGES
    checkpointer = store._checkpointer
    _until(
        lambda: checkpointer.checkpoints >= 1 and db.stat().st_size >= before + _checkpoint.EVERY_COMMITS * 3000,
        "a checkpoint that copied the WAL into the file",
    )
    # Everything stays readable, from the file and from a connection that opens it afresh.
    other = sqlite3.connect(db)
    assert other.execute("SELECT count(*) FROM state").fetchone()[0] == n
    other.close()
    record = store.load("T/7")
    assert record is not None and record.state == blob
    store.close()


def test_close_stops_the_thread_and_later_commits_still_land(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "EVERY_COMMITS", 1)
    store = _store(tmp_path)
    store.put("k", b"v")
    thread = store._checkpointer._thread
    assert thread is not None
    store.close()
    assert not thread.is_alive()
    store.put("k", b"w")  # a closed store's connections reopen; the bound checkpoints from now on
    assert store.get("k") == b"w"
    assert store._checkpointer._thread is thread  # no new thread after close
    store.close()


def test_an_idle_store_keeps_no_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "IDLE_S", 0.05)
    monkeypatch.setattr(_checkpoint, "EVERY_COMMITS", 1)
    store = _store(tmp_path)
    store.put("k", b"v")
    checkpointer = store._checkpointer
    _until(lambda: checkpointer._thread is None, "the idle thread ended")
    store.put("k", b"w")  # the next commit starts another
    assert checkpointer.threads == 2 and checkpointer._thread is not None
    assert store.get("k") == b"w"
    store.close()


def test_a_store_dropped_without_close_keeps_no_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "IDLE_S", 3600.0)  # not idleness: the store's end stops it
    monkeypatch.setattr(_checkpoint, "EVERY_COMMITS", 1)
    store = _store(tmp_path)
    store.put("k", b"v")
    thread = store._checkpointer._thread
    assert thread is not None and thread.is_alive()
    del store
    gc.collect()
    thread.join(timeout=60.0)
    assert not thread.is_alive()


def _fill(store: SqliteStore, n: int, size: int) -> None:
    for i in range(n):
        store.save(f"T/{i}", expected=0, state=bytes([i % 251]) * size, fence=None, reply=(f"r{i}", b"ok"))


def test_deleted_identities_give_their_space_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "IDLE_S", 0.2)  # the reclaim waits for a quiet moment (or a checkpoint)
    store = _store(tmp_path)
    db = Path(store.path)
    _fill(store, 400, 50_000)  # 20 MB of state
    checkpointer = store._checkpointer
    copier = sqlite3.connect(db)  # all of it in the file now, whatever the thread did:
    # (busy, frames, copied): busy while the thread's own checkpoint runs
    _until(lambda: copier.execute("PRAGMA wal_checkpoint(FULL)").fetchone()[0] == 0, "a full checkpoint")
    copier.close()
    assert db.stat().st_size > 19_000_000
    for i in range(380):
        store.delete_identity(f"T/{i}")
    _until(lambda: db.stat().st_size < 4_000_000, "the deleted records' pages given back")
    # Only the free pages beyond the reserve went: what is left is intact.
    assert checkpointer.reclaimed >= 3000
    other = sqlite3.connect(db)
    assert other.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert other.execute("SELECT count(*) FROM state").fetchone()[0] == 20
    assert other.execute("PRAGMA freelist_count").fetchone()[0] <= _checkpoint.RECLAIM_MIN_PAGES
    other.close()
    for i in range(380, 400):
        record = store.load(f"T/{i}")
        assert record is not None and record.state == bytes([i % 251]) * 50_000
    assert store.load("T/3") is None
    store.close()


def test_writes_need_no_reclaim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Overwritten state frees pages too, and the next writes reuse them: only deletes
    start a reclaim (a file that grows and shrinks with each write would pay twice)."""
    monkeypatch.setattr(_checkpoint, "IDLE_S", 0.05)
    monkeypatch.setattr(_checkpoint, "EVERY_COMMITS", 1)
    store = _store(tmp_path)
    _fill(store, 50, 50_000)
    for i in range(50):
        store.save(f"T/{i}", expected=1, state=b"small", fence=None, reply=(f"s{i}", b"ok"))
    checkpointer = store._checkpointer
    _until(lambda: checkpointer._thread is None, "the idle thread ended")
    assert checkpointer.reclaimed == 0
    assert store.load("T/1") is not None
    store.close()


def test_a_file_made_before_keeps_its_pages_and_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store file made without incremental vacuum (by an earlier fluentfn) is used as it
    is: deletes work, nothing tries to shrink it, the thread still ends when idle."""
    monkeypatch.setattr(_checkpoint, "IDLE_S", 0.05)
    path = tmp_path / "state.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")  # (this is what made the header before: auto_vacuum stays off)
    old.execute("CREATE TABLE early (x)")
    old.close()
    store = _store(tmp_path)
    assert store._conn().execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    _fill(store, 60, 50_000)
    for i in range(60):
        store.delete_identity(f"T/{i}")
    checkpointer = store._checkpointer
    _until(lambda: checkpointer._thread is None, "the idle thread ended")
    assert checkpointer.reclaimed == 0
    assert store.load("T/1") is None
    store.close()


def test_expired_values_and_old_replies_give_space_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "IDLE_S", 0.2)
    store = _store(tmp_path)
    assert store._conn().execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # (2: incremental)
    for i in range(200):
        store.put(f"k{i}", b"v" * 40_000, ttl_s=0.01)
    time.sleep(0.05)
    assert store.prune_expired(time.time()) == 200
    checkpointer = store._checkpointer
    _until(lambda: checkpointer.reclaimed >= 1500, "the expired values' pages given back")
    after_values = checkpointer.reclaimed
    for i in range(200):
        store.save(f"T/{i}", expected=0, state=b"s", fence=None, reply=(f"r{i}", b"r" * 40_000))
    assert store.prune_replies(time.time() + 1.0) == 200
    _until(lambda: checkpointer.reclaimed >= after_values + 1500, "the old replies' pages given back")
    store.put("kept", b"v")
    assert store.get("kept") == b"v"
    assert store.load("T/5") is not None
    store.close()
